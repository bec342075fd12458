"""gRPC transport of users.v1: servicers, proto<->domain conversion, status mapping."""
