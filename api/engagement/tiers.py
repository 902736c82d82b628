"""Tiers: Bronze, Silver, Gold (configurable) on qualifying points, and the
earn multiplier each tier gives.

- Qualifying points: base points earned in the last QUALIFYING_WINDOW_MONTHS
  (booking time, rolling) less what refunds took back from those earns.
  Tier bonus points never qualify.
- Upgrades happen at earn time, in the earn's own statement
  (`UPGRADE_CTES`): the earn uses the tier the member had when it was read,
  so an upgrade applies from the next earn.
- Downgrades happen only at the monthly review (`review_tiers`), on the first
  day of a month in Europe/Amsterdam, never mid-month.
- A member without a `member_tiers` row is in the lowest tier (threshold 0).

Plain SQL and Python, no web framework.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from api.clock import add_months
from api.errors import DomainError, NotFound
from api.vip.window import combined_multiplier_permille, vip_multiplier_at

QUALIFYING_WINDOW_MONTHS = 12
REVIEW_TIME_ZONE = ZoneInfo("Europe/Amsterdam")
REVIEW_BATCH_MEMBERS_MAX = 1_000
MULTIPLIER_PERMILLE_BASE = 1_000
MULTIPLIER_PERMILLE_MAX = 10_000
TIER_NAME_LENGTH_MAX = 40


def bonus_points(base_points: int, multiplier_permille: int) -> int:
    """The tier bonus on top of an earn's base points, rounded down."""
    return base_points * (multiplier_permille - MULTIPLIER_PERMILLE_BASE) // 1000


def qualifying_since(now: datetime) -> datetime:
    return add_months(now, -QUALIFYING_WINDOW_MONTHS)


@dataclass(frozen=True, slots=True)
class MemberTier:
    """A member's stored tier as the earn path reads it."""

    code: str
    name: str
    multiplier_permille: int
    threshold_points: int
    next_threshold_points: int | None  # None: the top tier, nothing to upgrade to
    # The member's VIP multiplier at the earn's moment (api/vip/benefits.py), None: not VIP.
    vip_multiplier_permille: int | None = None

    @property
    def earn_multiplier_permille(self) -> int:
        """Tier and VIP combined: their extras add (x1.25 Silver + x1.5 VIP = x1.75)."""
        return combined_multiplier_permille(self.multiplier_permille, self.vip_multiplier_permille)


# Joins the member `m`'s tier (`tier`), the next tier's threshold, the
# programme promo shard (`promo`, for `shard_param`) and the member's VIP
# multiplier at the instant `at_param` (`vip`) to a read of the member.
def member_tier_joins(shard_param: str, at_param: str) -> str:
    return f"""
LEFT JOIN member_tiers mt ON mt.member_id = m.id
LEFT JOIN LATERAL (
    SELECT code, name, multiplier_permille, threshold_points FROM tiers
    WHERE code = mt.tier_code OR (mt.tier_code IS NULL AND threshold_points = 0)
) tier ON true
LEFT JOIN LATERAL (
    SELECT min(threshold_points) AS next_threshold FROM tiers
    WHERE threshold_points > tier.threshold_points
) next_tier ON true
LEFT JOIN accounts promo ON promo.kind = 'programme_promo' AND promo.member_id IS NULL
                        AND promo.partner_id IS NULL AND promo.shard = {shard_param}
LEFT JOIN LATERAL (
    SELECT {vip_multiplier_at("m.id", at_param)} AS multiplier_permille
) vip ON true
"""


MEMBER_TIER_COLUMNS = """
    tier.code AS tier_code, tier.name AS tier_name,
    tier.multiplier_permille AS tier_multiplier_permille,
    tier.threshold_points AS tier_threshold_points, next_tier.next_threshold,
    promo.id AS promo_account_id, vip.multiplier_permille AS vip_multiplier_permille
"""


def member_tier_from(row: asyncpg.Record) -> MemberTier:
    if row["tier_code"] is None:
        raise LookupError("no tier with threshold 0: the tiers table needs a lowest tier")
    return MemberTier(
        code=row["tier_code"],
        name=row["tier_name"],
        multiplier_permille=row["tier_multiplier_permille"],
        threshold_points=row["tier_threshold_points"],
        next_threshold_points=row["next_threshold"],
        vip_multiplier_permille=row["vip_multiplier_permille"],
    )


# The upgrade check, for the earn statement (expects `go`; parameters
# :member_id, :points, :booked_at, :qualifying_since, :tier_code,
# :tier_threshold, :next_threshold). The sum runs on the member's
# transactions index and is skipped for a member in the top tier. The
# upsert's WHERE re-reads the stored tier under its row lock, so two racing
# earns upgrade once and never downwards.
UPGRADE_CTES = """
qualifying AS (
    SELECT :points::bigint + coalesce(sum(q.points - q.points_refunded), 0)::bigint AS points
    FROM transactions q
    WHERE :next_threshold::bigint IS NOT NULL
      AND q.member_id = :member_id::bigint AND q.kind = 'earn'
      AND q.created_at >= :qualifying_since::timestamptz
),
upgrade_to AS (
    SELECT tr.code, tr.threshold_points
    FROM tiers tr, qualifying, go
    WHERE :next_threshold::bigint IS NOT NULL
      AND tr.threshold_points <= qualifying.points
      AND tr.threshold_points > :tier_threshold::bigint
    ORDER BY tr.threshold_points DESC
    LIMIT 1
),
upgraded AS (
    INSERT INTO member_tiers AS cur (member_id, tier_code, since)
    SELECT :member_id::bigint, upgrade_to.code, :booked_at::timestamptz FROM upgrade_to
    ON CONFLICT (member_id) DO UPDATE SET tier_code = excluded.tier_code, since = excluded.since
    WHERE (SELECT threshold_points FROM tiers WHERE code = cur.tier_code)
        < (SELECT threshold_points FROM tiers WHERE code = excluded.tier_code)
    RETURNING tier_code
),
upgrade_logged AS (
    INSERT INTO tier_history (member_id, from_tier, to_tier, at, reason, qualifying_points)
    SELECT :member_id::bigint, :tier_code::text, upgraded.tier_code, :booked_at::timestamptz,
           'upgrade', (SELECT points FROM qualifying)
    FROM upgraded
),
-- The member's inbox (api/engagement/inbox.py renders `tier_up`).
upgrade_announced AS (
    INSERT INTO inbox_messages (member_id, kind, params, created_at)
    SELECT :member_id::bigint, 'tier_up', jsonb_build_object('tier', tr.name),
           :booked_at::timestamptz
    FROM upgraded JOIN tiers tr ON tr.code = upgraded.tier_code
)"""


def upgrade_params(
    tier: MemberTier, *, member_id: int, points: int, now: datetime
) -> dict[str, object]:
    return {
        "member_id": member_id,
        "points": points,
        "booked_at": now,
        "qualifying_since": qualifying_since(now),
        "tier_code": tier.code,
        "tier_threshold": tier.threshold_points,
        "next_threshold": tier.next_threshold_points,
    }


# Review --------------------------------------------------------------------

_REVIEW_BATCH = """
WITH batch AS (
    SELECT mt.member_id, mt.tier_code, ct.threshold_points
    FROM member_tiers mt JOIN tiers ct ON ct.code = mt.tier_code
    WHERE mt.member_id > $1 AND ct.threshold_points > 0
    ORDER BY mt.member_id
    LIMIT $4
),
qualified AS (
    SELECT b.*, coalesce(
        (SELECT sum(t.points - t.points_refunded)::bigint FROM transactions t
         WHERE t.member_id = b.member_id AND t.kind = 'earn' AND t.created_at >= $2), 0
    ) AS points
    FROM batch b
),
target AS (
    SELECT q.member_id, q.tier_code AS from_tier, q.points, s.code AS to_tier
    FROM qualified q
    CROSS JOIN LATERAL (
        SELECT code, threshold_points FROM tiers WHERE threshold_points <= q.points
        ORDER BY threshold_points DESC LIMIT 1
    ) s
    WHERE s.threshold_points < q.threshold_points  -- down only: upgrades happen at earn time
),
moved AS (
    -- Re-checked under the row lock: an earn that upgraded meanwhile wins.
    UPDATE member_tiers mt SET tier_code = target.to_tier, since = $3
    FROM target
    WHERE mt.member_id = target.member_id AND mt.tier_code = target.from_tier
    RETURNING mt.member_id, target.from_tier, target.to_tier, target.points
),
logged AS (
    INSERT INTO tier_history (member_id, from_tier, to_tier, at, reason, qualifying_points)
    SELECT member_id, from_tier, to_tier, $3, 'review', points FROM moved
),
announced AS (
    -- The member's inbox (api/engagement/inbox.py renders `tier_down`).
    INSERT INTO inbox_messages (member_id, kind, params, created_at)
    SELECT moved.member_id, 'tier_down', jsonb_build_object('tier', tr.name), $3
    FROM moved JOIN tiers tr ON tr.code = moved.to_tier
)
SELECT (SELECT max(member_id) FROM batch) AS last_member_id, (SELECT count(*) FROM moved) AS moved
"""


def review_month(now: datetime) -> date | None:
    """The month a review on `now` is for: only on a month's first day in
    Amsterdam; None on any other day (downgrades never happen mid-month)."""
    local = now.astimezone(REVIEW_TIME_ZONE).date()
    return local if local.day == 1 else None


async def review_tiers(pool: asyncpg.Pool, now: datetime) -> int | None:
    """The monthly review: move members down to the tier their qualifying
    points support. Runs on the first day of a month (Amsterdam) and once per
    month: `tier_reviews` records a finished month. Batches are safe to
    repeat and to race (the UPDATE re-checks the tier it read), so a crash
    mid-review or two workers at once do no harm. Returns the members moved,
    or None when no review was due."""
    month = review_month(now)
    if month is None:
        return None
    if await pool.fetchval("SELECT 1 FROM tier_reviews WHERE month = $1", month):
        return None
    since = qualifying_since(now)
    moved_total, after = 0, 0
    while True:
        row = await pool.fetchrow(_REVIEW_BATCH, after, since, now, REVIEW_BATCH_MEMBERS_MAX)
        if row["last_member_id"] is None:
            break
        moved_total += row["moved"]
        after = row["last_member_id"]
    await pool.execute(
        "INSERT INTO tier_reviews (month, reviewed_at, members_moved) VALUES ($1, $2, $3)"
        " ON CONFLICT (month) DO NOTHING",
        month,
        now,
        moved_total,
    )
    return moved_total


# What a member sees -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierProgress:
    code: str
    name: str
    multiplier_permille: int
    qualifying_points: int
    next_tier_name: str | None  # None in the top tier
    next_tier_threshold_points: int | None
    points_to_next_tier: int  # 0 in the top tier

    @property
    def multiplier(self) -> str:
        return multiplier_label(self.multiplier_permille)


TIER_PROGRESS_SQL = """
SELECT tier.code, tier.name, tier.multiplier_permille, tier.threshold_points,
       nt.name AS next_name, nt.threshold_points AS next_threshold,
       coalesce((SELECT sum(t.points - t.points_refunded) FROM transactions t
                 WHERE t.member_id = $1 AND t.kind = 'earn' AND t.created_at >= $2), 0)
           AS qualifying
FROM (SELECT $1::bigint AS id) m
LEFT JOIN member_tiers mt ON mt.member_id = m.id
JOIN tiers tier ON tier.code = mt.tier_code OR (mt.tier_code IS NULL AND tier.threshold_points = 0)
LEFT JOIN LATERAL (
    SELECT name, threshold_points FROM tiers WHERE threshold_points > tier.threshold_points
    ORDER BY threshold_points LIMIT 1
) nt ON true
"""


async def tier_progress(
    conn: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime
) -> TierProgress:
    """The member's tier and how far the next one is (one query)."""
    row = await conn.fetchrow(TIER_PROGRESS_SQL, member_id, qualifying_since(now))
    if row is None:
        raise LookupError("no tier with threshold 0: the tiers table needs a lowest tier")
    return tier_progress_from(row)


def tier_progress_from(row: asyncpg.Record) -> TierProgress:
    """From a row with TIER_PROGRESS_SQL's columns."""
    qualifying = int(row["qualifying"])
    next_threshold = row["next_threshold"]
    return TierProgress(
        code=row["code"],
        name=row["name"],
        multiplier_permille=row["multiplier_permille"],
        qualifying_points=qualifying,
        next_tier_name=row["next_name"],
        next_tier_threshold_points=next_threshold,
        points_to_next_tier=0 if next_threshold is None else max(0, next_threshold - qualifying),
    )


def multiplier_label(multiplier_permille: int) -> str:
    """1250 → "x1.25", 1000 → "x1", 1500 → "x1.5"."""
    whole, thousandths = divmod(multiplier_permille, 1000)
    number = str(whole)
    if thousandths:
        number += "." + f"{thousandths:03d}".rstrip("0")
    return f"x{number}"


# Definitions (admin) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tier:
    code: str
    name: str
    threshold_points: int
    multiplier_permille: int
    position: int


_TIER_COLUMNS = "code, name, threshold_points, multiplier_permille, position"


async def list_tiers(conn: asyncpg.Pool | asyncpg.Connection) -> list[Tier]:
    rows = await conn.fetch(f"SELECT {_TIER_COLUMNS} FROM tiers ORDER BY threshold_points")
    return [Tier(**dict(r)) for r in rows]


def validate_tier(tier: Tier, others: list[Tier]) -> None:
    """A tier set stays ordered: one tier at threshold 0, thresholds, multipliers
    and positions all rising together."""
    if not tier.name.strip() or len(tier.name) > TIER_NAME_LENGTH_MAX:
        raise DomainError(
            f"a tier name has 1 to {TIER_NAME_LENGTH_MAX} characters", code="invalid_tier"
        )
    if not MULTIPLIER_PERMILLE_BASE <= tier.multiplier_permille <= MULTIPLIER_PERMILLE_MAX:
        raise DomainError("multiplier_permille must be 1000 to 10000", code="invalid_tier")
    if tier.threshold_points < 0 or tier.position < 1:
        raise DomainError("threshold and position must not be negative", code="invalid_tier")
    ordered = sorted([*others, tier], key=lambda t: t.threshold_points)
    if ordered[0].threshold_points != 0:
        raise DomainError("the lowest tier's threshold must stay 0", code="invalid_tier")
    for lower, higher in itertools.pairwise(ordered):
        if not (
            lower.threshold_points < higher.threshold_points
            and lower.multiplier_permille <= higher.multiplier_permille
            and lower.position < higher.position
        ):
            raise DomainError(
                "tiers must rise together: threshold, multiplier and position",
                code="invalid_tier",
            )


async def update_tier(conn: asyncpg.Connection, tier: Tier) -> tuple[Tier, Tier]:
    """Change a tier's name, threshold, multiplier or position, in the caller's
    transaction (with its audit row); (before, after). A threshold change
    moves nobody at once: upgrades follow at the next earn, downgrades at the
    next monthly review. Earns read the tiers without a lock; one that races
    a change uses the definition it read."""
    # Changes to the tier set are serialised, so each validates the whole set.
    await conn.execute("LOCK TABLE tiers IN SHARE ROW EXCLUSIVE MODE")
    tiers = await list_tiers(conn)
    before = next((t for t in tiers if t.code == tier.code), None)
    if before is None:
        raise NotFound(f"no tier {tier.code!r}", code="tier_not_found")
    validate_tier(tier, [t for t in tiers if t.code != tier.code])
    await conn.execute(
        "UPDATE tiers SET name = $2, threshold_points = $3, multiplier_permille = $4,"
        " position = $5 WHERE code = $1",
        tier.code,
        tier.name,
        tier.threshold_points,
        tier.multiplier_permille,
        tier.position,
    )
    return before, tier
