"""Domain rules of users.v1: no grpc, no SQLAlchemy."""
