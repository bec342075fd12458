"""Persistence of users.v1: SQLAlchemy Core over asyncpg, aiomysql or aiosqlite."""
