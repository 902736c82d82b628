"""What VIP gives, and when.

A member is VIP at an instant when a paid period covers it
([starts_at, ends_at)), or while their subscription is in grace (a renewal
failed): from the last period's end until `grace_until`, with that period's
benefits. Nothing else counts: a job that runs late never stretches or cuts
the window, which is why every benefit reads this rule (`vip_multiplier_at`)
rather than the subscription's status alone.

Benefits:
- the earn multiplier, combined with the tier additively: bonus = base x
  ((tier - 1000) + (vip - 1000)) // 1000, one bonus lot from the promo
  budget at price 0 (api/ledger/earn.py); the transaction's
  `multiplier_permille` is the combined one, `vip_multiplier_permille` the
  VIP part;
- monthly bonus points (`grant_monthly_bonus`): once per member and
  Europe/Amsterdam month while VIP, a promo-funded reward
  (api/ledger/rewards.pay_reward, a lot priced 0), recorded in
  `vip_bonus_grants` whose primary key makes it once;
- VIP-only challenges: the `vip` audience (api/engagement/audience.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from api.db.pool import transaction
from api.ledger.accounts import lock_member
from api.ledger.rewards import pay_reward
from api.vip.window import vip_multiplier_at

log = logging.getLogger(__name__)

BONUS_TIME_ZONE = ZoneInfo("Europe/Amsterdam")
BONUS_BATCH_MEMBERS_MAX = 500
WOULD_HAVE_EARNED_DAYS = 90
MONTHLY_BONUS_MEMO = "VIP monthly bonus"


async def vip_multiplier(
    conn: asyncpg.Connection | asyncpg.Pool, member_id: int, at: datetime
) -> int | None:
    value = await conn.fetchval(
        f"SELECT {vip_multiplier_at('$1::bigint', '$2::timestamptz')}", member_id, at
    )
    return None if value is None else int(value)


async def base_points_since(
    conn: asyncpg.Connection | asyncpg.Pool, member_id: int, now: datetime
) -> int:
    """The base points of the member's earns in the last 90 days, less refunds."""
    value = await conn.fetchval(
        "SELECT coalesce(sum(points - points_refunded), 0) FROM transactions"
        " WHERE member_id = $1 AND kind = 'earn' AND created_at >= $2 AND created_at < $3",
        member_id,
        now - timedelta(days=WOULD_HAVE_EARNED_DAYS),
        now,
    )
    return int(value)


def extra_points(base_points: int, multiplier_permille: int) -> int:
    return base_points * (multiplier_permille - 1000) // 1000


def bonus_month(now: datetime) -> date:
    return now.astimezone(BONUS_TIME_ZONE).date().replace(day=1)


@dataclass(frozen=True, slots=True)
class BonusRun:
    members: int
    points: int


_DUE = f"""
SELECT s.member_id, s.id AS subscription_id, vp.monthly_bonus_points
FROM vip_subscriptions s
JOIN members m ON m.id = s.member_id AND m.status = 'active'
JOIN LATERAL (
    SELECT p.monthly_bonus_points FROM vip_periods p
    WHERE p.subscription_id = s.id AND p.starts_at <= $1 ORDER BY p.starts_at DESC LIMIT 1
) vp ON true
WHERE s.status IN ('active', 'grace') AND s.member_id > $3
  AND vp.monthly_bonus_points > 0
  AND {vip_multiplier_at("s.member_id", "$1")} IS NOT NULL
  AND NOT EXISTS (SELECT FROM vip_bonus_grants g WHERE g.member_id = s.member_id AND g.month = $2)
ORDER BY s.member_id
LIMIT $4
"""


async def grant_monthly_bonus(pool: asyncpg.Pool, now: datetime) -> BonusRun:
    """Pay each member VIP at `now` their plan's monthly bonus for this
    Amsterdam month, once: the member is locked first, then the grant row is
    claimed (primary key), then the points paid, in one transaction, so two
    workers pay once."""
    month = bonus_month(now)
    after, members, points = 0, 0, 0
    while True:
        due = await pool.fetch(_DUE, now, month, after, BONUS_BATCH_MEMBERS_MAX)
        if not due:
            return BonusRun(members, points)
        for row in due:
            after = row["member_id"]

            async def work(conn: asyncpg.Connection, row: asyncpg.Record = row) -> int:
                await lock_member(conn, row["member_id"])
                claimed = await conn.fetchval(
                    "INSERT INTO vip_bonus_grants"
                    " (member_id, month, subscription_id, points, transaction_id, granted_at)"
                    " VALUES ($1, $2, $3, $4, gen_random_uuid(), $5)"
                    " ON CONFLICT DO NOTHING RETURNING member_id",
                    row["member_id"],
                    month,
                    row["subscription_id"],
                    row["monthly_bonus_points"],
                    now,
                )
                if claimed is None:
                    return 0
                txn_id = await pay_reward(
                    conn,
                    member_id=row["member_id"],
                    points=row["monthly_bonus_points"],
                    sponsor_id=None,
                    memo=MONTHLY_BONUS_MEMO,
                    now=now,
                )
                await conn.execute(
                    "UPDATE vip_bonus_grants SET transaction_id = $3"
                    " WHERE member_id = $1 AND month = $2",
                    row["member_id"],
                    month,
                    txn_id,
                )
                return int(row["monthly_bonus_points"])

            paid = await transaction(pool, work)
            if paid:
                members += 1
                points += paid
