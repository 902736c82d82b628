"""The asyncpg pool and the unit of work.

All runtime SQL goes through asyncpg: the ledger's hot paths are a handful of
statements each, and asyncpg's prepared statements keep them cheap.
`transaction()` is the one transaction boundary: it commits when the block
ends normally, rolls back on any exception, and retries the whole block when
PostgreSQL reports a deadlock or serialization failure, so a caller writes its
transaction once as a function of a connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSACTION_ATTEMPTS_MAX = 5
POOL_START_SECONDS_MAX = 120.0
POOL_START_PAUSE_SECONDS_MAX = 2.0


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached just now: it is restarting, recovering
    or failing over. Nothing was written; the API answers 503 and the client
    sends the request again (with the same Idempotency-Key)."""


# What a PostgreSQL that is restarting answers (or not) to a new connection:
# refused, no socket yet, "the database system is starting up", a timeout.
_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.exceptions.CannotConnectNowError)
# And to a connection it had: cut mid-statement, closed by the shutdown, or
# the socket gone under a write (BrokenPipeError, ConnectionResetError: the
# API makes no other outgoing connections while it answers a request).
CONNECTION_LOST_ERRORS = (
    ConnectionError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg's connect, with "the server is not there" as one error type."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except _CONNECT_ERRORS as exc:
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc


RETRYABLE_ERRORS = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


class KringConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """A pooled connection that skips asyncpg's reset query on release.

    The reset (RESET ALL, CLOSE ALL, UNLISTEN *, advisory unlock) costs a round
    trip per request; Kring keeps no session state on pooled connections (no
    SET, LISTEN, cursors or session advisory locks), so there is nothing to reset.
    """

    def get_reset_query(self) -> str:
        return ""


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        connection_class=KringConnection,
        connect=_connect,
        min_size=min_size,
        max_size=max_size,
        # The statement cache is per connection; the ledger uses few statements.
        statement_cache_size=256,
        server_settings={
            "application_name": "kring",
            "timezone": "UTC",
            # Every statement is prepared and looks rows up by key, where a
            # generic plan is right; letting PostgreSQL re-plan the long ledger
            # CTEs per call (custom plans) cost more CPU than running them.
            "plan_cache_mode": "force_generic_plan",
        },
    )
    assert pool is not None
    return pool


async def create_pool_when_reachable(
    url: str,
    *,
    min_size: int,
    max_size: int,
    wait_seconds: float = POOL_START_SECONDS_MAX,
) -> asyncpg.Pool:
    """`create_pool`, waiting up to `wait_seconds` for a PostgreSQL that is
    not reachable yet instead of failing at once.

    An API process can start while the database restarts: under
    `serve --workers N` the supervisor replaces a crashed process at any
    moment, and uvicorn stops the whole server when a replacement fails to
    start. Once the pool exists, it reconnects on its own (asyncpg replaces
    closed connections on acquire)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    pause_seconds = 0.1
    while True:
        try:
            return await create_pool(url, min_size=min_size, max_size=max_size)
        except (DatabaseUnavailable, *CONNECTION_LOST_ERRORS) as exc:
            if loop.time() + pause_seconds > deadline:
                raise
            log.warning("database not reachable (%s); retrying in %.1f s", exc, pause_seconds)
            await asyncio.sleep(pause_seconds)
            pause_seconds = min(pause_seconds * 2, POOL_START_PAUSE_SECONDS_MAX)


def _connection_gone(conn: asyncpg.Connection) -> bool:
    """Whether the connection died under us. When the server cuts it, the
    pool may already have taken the proxy back, and then even asking whether
    it is closed raises; we never release it ourselves inside `transaction`."""
    try:
        return bool(conn.is_closed())
    except asyncpg.exceptions.InterfaceError:
        return True


async def transaction(pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work(conn)` in one database transaction, retrying on deadlock."""
    for attempt in range(1, TRANSACTION_ATTEMPTS_MAX + 1):
        try:
            async with pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        return await work(conn)
                except asyncpg.exceptions.InterfaceError as exc:
                    if not _connection_gone(conn):
                        raise
                    # The server went away mid-transaction (a restart): the
                    # rollback asyncpg then tries on the dead connection fails
                    # with this error, hiding the cause. Nothing was committed.
                    raise DatabaseUnavailable(f"connection lost: {exc}") from exc
        except RETRYABLE_ERRORS:
            if attempt == TRANSACTION_ATTEMPTS_MAX:
                raise
            log.info("transaction retry %d after deadlock/serialization failure", attempt)
            await asyncio.sleep(random.uniform(0, 0.005 * attempt))
    raise AssertionError("unreachable")
