"""Fixed-window rate limits shared by every API process (counters in PostgreSQL).

One atomic upsert per hit: the first hit of a window inserts the row, every
later one adds to it, so concurrent requests in several processes count
exactly. A hit over the limit still counts (hammering does not reopen it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from api.errors import DomainError

# Old windows are of no use; rows older than this are deleted now and then.
RATE_LIMIT_ROWS_KEPT = timedelta(days=1)
# Callers that count hits prune old windows on one request in this many.
PRUNE_ONE_IN = 100
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    hits_max: int
    window: timedelta


class RetryLater(DomainError):
    """Refused for now; `retry_after_seconds` goes out as Retry-After."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, code: str, retry_after_seconds: int) -> None:
        super().__init__(detail, code=code)
        self.retry_after_seconds = retry_after_seconds


def window_start(now: datetime, window: timedelta) -> datetime:
    windows = (now - _EPOCH) // window
    return _EPOCH + windows * window


async def hit(
    db: asyncpg.Pool | asyncpg.Connection, limit: Limit, key: str, *, now: datetime
) -> int | None:
    """Count one hit; None if within the limit, else the seconds until the window ends."""
    start = window_start(now, limit.window)
    hits: int = await db.fetchval(
        "INSERT INTO auth_rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1)"
        " ON CONFLICT (bucket, window_start)"
        " DO UPDATE SET hits = auth_rate_limits.hits + 1 RETURNING hits",
        f"{limit.name}:{key}",
        start,
    )
    if hits <= limit.hits_max:
        return None
    return max(1, int((start + limit.window - now).total_seconds() + 0.999))


async def prune(db: asyncpg.Pool | asyncpg.Connection, *, now: datetime) -> None:
    await db.execute(
        "DELETE FROM auth_rate_limits WHERE window_start < $1", now - RATE_LIMIT_ROWS_KEPT
    )


async def require(
    db: asyncpg.Pool | asyncpg.Connection, limit: Limit, key: str, *, now: datetime, what: str
) -> None:
    """Count one hit, or refuse it with 429 `rate_limited` once the window is full."""
    retry_after = await hit(db, limit, key, now=now)
    if retry_after is not None:
        raise RetryLater(
            f"too many {what}: try again in {retry_after} seconds",
            code="rate_limited",
            retry_after_seconds=retry_after,
        )
