"""Members whose purchases changed: the engagement processor's to-do list.

Earn and refund statements add their member to `engagement_dirty` (one
small upsert, `MARK_DIRTY_CTE`); the processor (challenge_progress.py)
takes members off it in batches, in its own transaction, and recomputes
what their purchases imply. A member marked while the processor holds
their row waits for it to commit and is marked again, so a change is
never lost between two looks.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

# For the earn and refund statements (expects `go`, :member_id, :booked_at).
MARK_DIRTY_CTE = """
marked AS (
    INSERT INTO engagement_dirty (member_id, marked_at)
    SELECT :member_id::bigint, :booked_at::timestamptz FROM go
    ON CONFLICT (member_id) DO NOTHING
)"""


async def mark(conn: asyncpg.Connection, member_ids: list[int], now: datetime) -> None:
    await conn.execute(
        "INSERT INTO engagement_dirty (member_id, marked_at)"
        " SELECT unnest($1::bigint[]), $2 ON CONFLICT (member_id) DO NOTHING",
        member_ids,
        now,
    )


async def take_these(conn: asyncpg.Connection, member_ids: list[int]) -> list[int]:
    """Take these members off the list in this transaction; returns those
    that were on it (another processor may have taken some meanwhile)."""
    rows = await conn.fetch(
        "DELETE FROM engagement_dirty WHERE member_id = ANY($1::bigint[]) RETURNING member_id",
        member_ids,
    )
    return sorted(r["member_id"] for r in rows)
