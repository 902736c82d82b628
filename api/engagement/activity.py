"""Purchases that changed: the engagement processor's queue.

Earn and refund statements append their member to `engagement_activity`
(one insert in the same statement, `MARK_ACTIVITY_CTE`; it never conflicts,
so an earn never waits on the processor). The processor takes rows in id
order with SKIP LOCKED and deletes them in the transaction that recomputes
those members (challenge_progress.py): if that transaction fails, the rows
stay for the next run; rows appended meanwhile are the next run's.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

# For the earn and refund statements (expects `go`, :member_id, :booked_at).
MARK_ACTIVITY_CTE = """
marked AS (
    INSERT INTO engagement_activity (member_id, booked_at)
    SELECT :member_id::bigint, :booked_at::timestamptz FROM go
    RETURNING id
)"""


@dataclass(frozen=True, slots=True)
class Taken:
    rows: int
    member_ids: list[int]  # distinct, ascending


async def take(conn: asyncpg.Connection, rows_max: int) -> Taken:
    """Up to `rows_max` of the oldest rows no other processor holds, deleted
    in the caller's transaction; their members."""
    taken = await conn.fetch(
        """
        DELETE FROM engagement_activity WHERE id IN (
            SELECT id FROM engagement_activity ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING member_id
        """,
        rows_max,
    )
    return Taken(len(taken), sorted({r["member_id"] for r in taken}))


async def backlog(db: asyncpg.Pool | asyncpg.Connection) -> int:
    """Rows waiting (for tests and benchmarks)."""
    return int(await db.fetchval("SELECT count(*) FROM engagement_activity"))
