"""A connection cut inside a transaction (the server restarting) surfaces as
DatabaseUnavailable, which the API answers 503 `database_unavailable`.

Found by the bank fault test: the rollback asyncpg attempts on the dead
connection raised InterfaceError ("the underlying connection is closed"),
which hid the cause and was answered 500."""

from __future__ import annotations

import asyncpg
import pytest

from api.db.pool import DatabaseUnavailable, transaction


async def test_a_connection_cut_mid_transaction_is_database_unavailable(
    pool: asyncpg.Pool,
) -> None:
    async def work(conn: asyncpg.Connection) -> None:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        # From another connection, as a shutting-down server would.
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        await conn.fetchval("SELECT 1")

    with pytest.raises(DatabaseUnavailable):
        await transaction(pool, work)
    assert await pool.fetchval("SELECT 1") == 1  # the pool carries on
