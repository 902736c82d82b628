"""Points lots: pending points becoming available, available points expiring,
and the SQL that takes points from lots FIFO (earliest expiry first) and puts
them back last-in-first-out.

Release and expiry are set-based and batched. Each batch locks the affected
members' accounts first (the ledger's lock order), then reads the lots under
that lock, so two workers running the same job never apply a lot twice: the
second finds the lots already moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.db.pool import transaction
from api.db.sql import Query
from api.ledger.accounts import lock_members, programme_account
from api.ledger.entries import ENTRY_CTES, ENTRY_RESULT, Postings, entry_params, require_moved
from api.ledger.idempotency import go_cte
from api.webhooks.outbox import HAS_ACTIVE_ENDPOINT, POINTS_RELEASED

LOT_BATCH_MEMBERS_MAX = 500

# Take :take_points from the member's available lots, earliest expiry first.
# Defines `take(id, points)` and `consumed`; expects `go`.
TAKE_FIFO_CTES = """
fifo AS (
    SELECT id, points_remaining,
           sum(points_remaining) OVER (ORDER BY expires_at, id) - points_remaining AS before
    FROM lots
    WHERE member_id = :member_id AND state = 'available' AND points_remaining > 0
      AND id <> coalesce(:skip_lot_id::bigint, 0)
),
take AS (
    SELECT id, least(points_remaining, :take_points::bigint - before) AS points
    FROM fifo WHERE before < :take_points::bigint
),
consumed AS (
    UPDATE lots SET points_remaining = lots.points_remaining - take.points
    FROM take, go WHERE lots.id = take.id
    RETURNING take.points
)"""

# Put :restore_points back into the lots a burn authorization took them from,
# latest expiry first, so that what stays captured is what expires soonest.
RESTORE_HOLD_CTES = """
back AS (
    SELECT hl.lot_id, hl.points,
           sum(hl.points) OVER (ORDER BY l.expires_at DESC, l.id DESC) - hl.points AS before
    FROM hold_lots hl JOIN lots l ON l.id = hl.lot_id
    WHERE hl.transaction_id = :txn_id::uuid
),
give AS (
    SELECT lot_id, least(points, :restore_points::bigint - before) AS points
    FROM back WHERE before < :restore_points::bigint
),
restored AS (
    UPDATE lots SET points_remaining = lots.points_remaining + give.points
    FROM give, go WHERE lots.id = give.lot_id
    RETURNING give.points
)"""


@dataclass(frozen=True, slots=True)
class BatchResult:
    lots: int
    points: int


async def release_due(pool: asyncpg.Pool, now: datetime) -> BatchResult:
    """Make pending lots whose return window has passed available. Runs batches
    until none is due; returns what it moved."""
    total = BatchResult(0, 0)
    while True:
        moved = await transaction(pool, lambda conn: _release_batch(conn, now))
        if moved.lots == 0:
            return total
        total = BatchResult(total.lots + moved.lots, total.points + moved.points)


async def _release_batch(conn: asyncpg.Connection, now: datetime) -> BatchResult:
    member_ids = await conn.fetchval(
        "SELECT coalesce(array_agg(DISTINCT member_id), '{}') FROM"
        " (SELECT member_id FROM lots WHERE state = 'pending' AND available_at <= $1"
        "  ORDER BY available_at LIMIT $2) due",
        now,
        LOT_BATCH_MEMBERS_MAX,
    )
    if not member_ids:
        return BatchResult(0, 0)
    await lock_members(conn, member_ids)
    rows = await conn.fetch(
        f"""
        WITH released AS (
            UPDATE lots SET state = 'available'
            WHERE member_id = ANY($1::bigint[]) AND state = 'pending' AND available_at <= $2
            RETURNING member_id, transaction_id, points_remaining
        ),
        txn AS (
            UPDATE transactions t SET status = 'available'
            FROM released r WHERE t.id = r.transaction_id AND t.status = 'pending'
        ),
        -- One event per released earn, in the batch's transaction (outbox).
        announced AS (
            INSERT INTO webhook_events (id, partner_id, type, payload, created_at)
            SELECT gen_random_uuid(), t.partner_id, '{POINTS_RELEASED}',
                   jsonb_build_object('transaction_id', t.id, 'member_id', m.public_id,
                                      'card_number', m.card_number,
                                      'points', r.points_remaining, 'released_at', $2::timestamptz),
                   $2
            FROM released r
            JOIN transactions t ON t.id = r.transaction_id AND t.kind = 'earn'
            JOIN members m ON m.id = r.member_id
            WHERE r.points_remaining > 0
              AND {HAS_ACTIVE_ENDPOINT.format(partner="t.partner_id")}
        )
        SELECT s.member_id, s.points, s.lots, p.id AS pending_id, a.id AS available_id
        FROM (SELECT member_id, sum(points_remaining)::bigint AS points, count(*) AS lots
              FROM released GROUP BY member_id) s
        JOIN accounts p ON p.member_id = s.member_id AND p.kind = 'member_pending'
        JOIN accounts a ON a.member_id = s.member_id AND a.kind = 'member_available'
        """,
        member_ids,
        now,
    )
    postings = Postings()
    for row in rows:
        postings.move(row["pending_id"], row["available_id"], row["points"])
    await _post(conn, postings, "release", now)
    return BatchResult(sum(r["lots"] for r in rows), sum(r["points"] for r in rows))


async def expire_due(pool: asyncpg.Pool, now: datetime) -> BatchResult:
    """Expire available points whose lots have passed their expiry date; the
    points go to the programme's breakage account."""
    total = BatchResult(0, 0)
    while True:
        moved = await transaction(pool, lambda conn: _expire_batch(conn, now))
        if moved.lots == 0:
            return total
        total = BatchResult(total.lots + moved.lots, total.points + moved.points)


async def _expire_batch(conn: asyncpg.Connection, now: datetime) -> BatchResult:
    member_ids = await conn.fetchval(
        "SELECT coalesce(array_agg(DISTINCT member_id), '{}') FROM"
        " (SELECT member_id FROM lots"
        "  WHERE state = 'available' AND points_remaining > 0 AND expires_at <= $1"
        "  ORDER BY expires_at LIMIT $2) due",
        now,
        LOT_BATCH_MEMBERS_MAX,
    )
    if not member_ids:
        return BatchResult(0, 0)
    await lock_members(conn, member_ids)
    rows = await conn.fetch(
        """
        WITH expired AS (
            UPDATE lots l SET points_remaining = 0
            FROM lots old
            WHERE l.id = old.id AND l.member_id = ANY($1::bigint[]) AND l.state = 'available'
              AND l.points_remaining > 0 AND l.expires_at <= $2
            RETURNING l.member_id, l.id AS lot_id, old.points_remaining AS points
        )
        SELECT e.member_id, sum(e.points)::bigint AS points, count(*) AS lots, a.id AS available_id,
               array_agg(e.lot_id) AS lot_ids, array_agg(e.points) AS lot_points
        FROM expired e JOIN accounts a ON a.member_id = e.member_id AND a.kind = 'member_available'
        GROUP BY e.member_id, a.id
        """,
        member_ids,
        now,
    )
    breakage_id = await programme_account(conn, "programme_breakage")
    postings = Postings()
    for row in rows:
        postings.move(row["available_id"], breakage_id, row["points"])
    entry_id = await _post(conn, postings, "expire", now)
    if entry_id is not None:
        # Which lots the entry emptied: settlement values breakage at their prices.
        await conn.execute(
            "INSERT INTO lot_expiries (entry_id, lot_id, points)"
            " SELECT $1, l, p FROM unnest($2::bigint[], $3::bigint[]) AS x(l, p)",
            entry_id,
            [lot for row in rows for lot in row["lot_ids"]],
            [points for row in rows for points in row["lot_points"]],
        )
    return BatchResult(sum(r["lots"] for r in rows), sum(r["points"] for r in rows))


_POST_ONLY = Query(f"WITH {go_cte(False)}, {ENTRY_CTES} SELECT {ENTRY_RESULT}")


async def _post(
    conn: asyncpg.Connection, postings: Postings, kind: str, now: datetime
) -> int | None:
    """Write a programme entry (no partner, no member); its id, None when empty."""
    if not postings:
        return None
    query = _POST_ONLY
    row = await conn.fetchrow(
        query.text, *query.args(entry_params(postings, kind=kind, booked_at=now))
    )
    require_moved(row, postings)
    return int(row["entry_id"])
