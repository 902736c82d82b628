"""The dashboard's rollups: a year of purchases and redemptions summed per
Amsterdam month and member (and partner), and the partner-to-partner flow.

Reading ~500,000 transactions for every chart took seconds on a busy
machine; the figures that need a whole window read these tables instead
(~100,000 rows at 10,000 members, no time-zone arithmetic per row). They are
rebuilt whole, in one transaction, after the dashboard page is sent when the
last rebuild is older than REFRESH_AFTER (the first rebuild ever is awaited):
readers keep seeing the previous rollup until the new one commits. An advisory lock lets one rebuild run at a time;
a second caller does not wait, it uses what is there.

Nothing here moves points or money: the rollups are a copy for reading.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from api.programme_health.window import month_of
from api.settlement.position import liability_now

REFRESH_AFTER = timedelta(minutes=5)
_LOCK_KEY = 0x6B7269_6E67_0007  # "kring", issue 7: the rebuild's advisory lock

_PURCHASES = f"""
SELECT {month_of("created_at")} AS month, member_id, partner_id, 1 AS purchases,
       amount_cents - amount_refunded_cents AS spend_cents, points AS base_points,
       points + bonus_points AS points_earned, 0 AS points_redeemed, 0 AS redemptions
FROM transactions WHERE kind = 'earn' AND created_at < $1
UNION ALL
SELECT {month_of("finished_at")}, member_id, partner_id, 0, 0, 0, 0, points_captured, 1
FROM transactions WHERE kind = 'burn' AND status = 'captured' AND finished_at < $1
"""

_REBUILD = [
    "DELETE FROM health_member_months",
    "DELETE FROM health_partner_months",
    "DELETE FROM health_member_partners",
    "DELETE FROM health_partner_flow",
    """
    CREATE TEMPORARY TABLE health_rows (
        month date, member_id bigint, partner_id bigint, purchases integer,
        spend_cents bigint, base_points bigint, points_earned bigint,
        points_redeemed bigint, redemptions integer
    ) ON COMMIT DROP
    """,
    f"INSERT INTO health_rows {_PURCHASES}",
    """
    INSERT INTO health_member_months
    SELECT month, member_id, sum(purchases), sum(spend_cents), sum(points_earned),
           sum(points_redeemed), sum(redemptions)
    FROM health_rows GROUP BY month, member_id
    """,
    """
    INSERT INTO health_partner_months
    SELECT month, partner_id, sum(purchases), sum(spend_cents), sum(base_points),
           sum(points_redeemed)
    FROM health_rows GROUP BY month, partner_id
    """,
    """
    INSERT INTO health_member_partners
    SELECT member_id, partner_id, array_agg(DISTINCT month ORDER BY month)
    FROM health_rows WHERE purchases > 0 GROUP BY member_id, partner_id
    """,
    # A partial capture puts points back latest expiry first (api/ledger/lots.py
    # RESTORE_HOLD_CTES), so what stays captured is the hold's earliest-expiring
    # points: the running sum in that order finds each lot's captured share. A
    # lot's partner is its purchase's (a tier or VIP bonus lot's, `bonus_for`);
    # lots of rewards have none (0).
    f"""
    INSERT INTO health_partner_flow
    WITH burns AS (
        SELECT id, partner_id, points_captured, {month_of("finished_at")} AS month
        FROM transactions
        WHERE kind = 'burn' AND status = 'captured' AND points_captured > 0
          AND finished_at < $1
    ),
    traced AS (
        SELECT b.month, b.partner_id AS burned_at, b.points_captured, hl.points,
               coalesce(l.transaction_id, l.bonus_for) AS origin,
               sum(hl.points) OVER (PARTITION BY b.id ORDER BY l.expires_at, l.id)
                   - hl.points AS before
        FROM burns b
        JOIN hold_lots hl ON hl.transaction_id = b.id
        JOIN lots l ON l.id = hl.lot_id
    )
    SELECT tr.month, coalesce(e.partner_id, 0), tr.burned_at,
           sum(least(tr.points, tr.points_captured - tr.before))
    FROM traced tr
    LEFT JOIN transactions e ON e.id = tr.origin
    WHERE tr.before < tr.points_captured
    GROUP BY 1, 2, 3
    """,
]


@dataclass(frozen=True, slots=True)
class Refresh:
    refreshed_at: datetime
    took_ms: int
    liability_points: int
    liability_micros: int


async def last_refresh(db: asyncpg.Pool | asyncpg.Connection) -> Refresh | None:
    row = await db.fetchrow(
        "SELECT refreshed_at, took_ms, liability_points, liability_micros"
        " FROM health_refreshes WHERE id = 1"
    )
    if row is None:
        return None
    return Refresh(
        row["refreshed_at"], row["took_ms"], row["liability_points"], int(row["liability_micros"])
    )


async def refresh(pool: asyncpg.Pool, now: datetime) -> Refresh | None:
    """Rebuild the rollups as of `now`; None if another rebuild is running."""
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK_KEY):
            return None
        await conn.execute("SET LOCAL work_mem = '64MB'; SET LOCAL jit = off")
        for statement in _REBUILD:
            if "$1" in statement:
                await conn.execute(statement, now)
            else:
                await conn.execute(statement)
        liability = await liability_now(conn)
        took_ms = round((time.perf_counter() - started) * 1000)
        await conn.execute(
            """
            INSERT INTO health_refreshes
                (id, refreshed_at, took_ms, liability_points, liability_micros)
            VALUES (1, $1, $2, $3, $4)
            ON CONFLICT (id) DO UPDATE SET refreshed_at = $1, took_ms = $2,
                liability_points = $3, liability_micros = $4
            """,
            now,
            took_ms,
            liability.points,
            liability.micros,
        )
    # A rebuild deletes every row it replaces: without this the tables grow by
    # their whole size each time and the figures read the dead rows too.
    await pool.execute(
        "VACUUM (ANALYZE) health_member_months, health_partner_months, health_member_partners,"
        " health_partner_flow"
    )
    return Refresh(now, took_ms, liability.points, liability.micros)


def is_stale(last: Refresh | None, now: datetime) -> bool:
    return last is None or now - last.refreshed_at >= REFRESH_AFTER
