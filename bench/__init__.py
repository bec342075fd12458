"""`make bench`: the service on PostgreSQL under load, against the raw asyncpg driver."""
