# users.v1 — every developer and CI command goes through here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_INCLUDE = $$($(BIN)/python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
GOOGLEAPIS = $$($(BIN)/python -c 'import google.rpc, os; print(os.path.dirname(os.path.dirname(list(google.rpc.__path__)[0])))')
PROTOS := $(wildcard protos/users/v1/*.proto)

.PHONY: run test unit lint gen check-gen bench dbs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --silent
	touch $@

# API.md: `make run` logs every call (the server's default is failed and slow calls only).
run: $(BIN)/.installed
	$(BIN)/python -m service serve --access-log all

gen: $(BIN)/.installed
	rm -rf generated/users
	mkdir -p generated
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos -I $(PROTO_INCLUDE) -I $(GOOGLEAPIS) \
	  --python_out=generated --grpc_python_out=generated \
	  --mypy_out=generated --mypy_grpc_out=generated $(PROTOS)
	touch generated/users/__init__.py generated/users/v1/__init__.py generated/users/py.typed

check-gen: $(BIN)/.installed
	@tmp=$$(mktemp -d); cp -r generated "$$tmp/before"; $(MAKE) --no-print-directory gen >/dev/null; \
	if ! diff -r -x __pycache__ "$$tmp/before" generated >/dev/null; then \
	  echo "generated/ is stale: run 'make gen' and commit the result"; diff -r -x __pycache__ "$$tmp/before" generated | head -20; exit 1; fi; \
	echo "generated/ is up to date"

lint: $(BIN)/.installed node_modules/.installed check-gen
	$(BIN)/ruff check service users_client tests bench deploy/grafana
	$(BIN)/ruff format --check service users_client tests bench deploy/grafana
	$(BIN)/mypy service users_client tests bench deploy/grafana/dashboard.py
	npx --no-install buf lint
	bash scripts/buf_breaking.sh
	$(BIN)/kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
	bash scripts/prometheus.sh
	promtool check rules deploy/prometheus/users-v1.rules.yaml
	promtool test rules deploy/prometheus/users-v1.rules.test.yaml
	$(BIN)/python deploy/grafana/dashboard.py --check

dbs:
	bash scripts/test-databases.sh

test: $(BIN)/.installed node_modules/.installed
	bash scripts/test-databases.sh
	bash scripts/prometheus.sh
	$(BIN)/pytest -q

# Use cases on in-memory fakes of the ports, and pure rules: no database, a few seconds.
unit: $(BIN)/.installed
	$(BIN)/pytest -q tests/unit tests/domain

# Every suite, one after another (about 25 minutes): the unary table against raw asyncpg,
# the ceiling against a bare grpc.aio server (issue 7), listing and bulk at a million users,
# overload up to 4,000 calls in flight (issue 11), the WatchUsers change stream (issue 13;
# overload and watch need ../shared/anchors for its Go client; export: the operator
# commands against the raw RPCs, issue 16).
bench: $(BIN)/.installed
	bash scripts/test-databases.sh
	$(BIN)/python -m bench --suite unary
	$(BIN)/python -m bench --suite ceiling
	$(BIN)/python -m bench --suite listing
	$(BIN)/python -m bench --suite bulk
	$(BIN)/python -m bench --suite overload
	$(BIN)/python -m bench --suite scale
	$(BIN)/python -m bench --suite watch
	$(BIN)/python -m bench --suite export

clean:
	rm -rf $(VENV) node_modules .mypy_cache .pytest_cache .ruff_cache users.db
