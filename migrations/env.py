"""Alembic environment: async, on asyncpg, through SQLAlchemy's async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def run_with(connection: Connection) -> None:
    # Two processes starting at once must not both migrate: the lock and all
    # migrations share one transaction, so DDL lands whole or not at all.
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7275656)")
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


async def run_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(run_with)
    await engine.dispose()


def main() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run_online())
        return
    raise RuntimeError("run migrations from synchronous code (api.db.migrate.upgrade)")


main()
