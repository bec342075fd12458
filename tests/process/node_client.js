// A Node.js client (npm @grpc/grpc-js + @grpc/proto-loader) for the cross-language test:
// CreateUser, GetUser and one failing call, printed as JSON lines for the test to check.
"use strict";
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, email, googleapisDir] = process.argv.slice(2);
const root = path.join(__dirname, "..", "..", "protos");
const definition = protoLoader.loadSync(
  ["users/v1/user_service.proto"],
  { includeDirs: [root, googleapisDir], longs: String, enums: String, defaults: false },
);
const usersV1 = grpc.loadPackageDefinition(definition).users.v1;
const client = new usersV1.UserService(address, grpc.credentials.createInsecure());

function call(method, request) {
  return new Promise((resolve) => {
    client[method](request, (error, response) =>
      resolve(error ? { code: error.code, details: error.details } : { response }));
  });
}

(async () => {
  const created = await call("CreateUser", {
    user: { name: "Node Client", email, addresses: [{ email: "node@example.org" }] },
  });
  console.log(JSON.stringify({ step: "create", ...created }));
  const fetched = await call("GetUser", { id: created.response.id });
  console.log(JSON.stringify({ step: "get", ...fetched }));
  const invalid = await call("GetUser", { id: "-1" });
  console.log(JSON.stringify({ step: "invalid", ...invalid }));
  client.close();
})();
