"""What a member sees of their own data: balances, history, one transaction,
where to earn. Read models for the wallet pages and the member API.

Plain SQL, set-based, at most three round trips each, no web framework. Every
query is scoped by the member's internal id, so a transaction of another
member is indistinguishable from one that does not exist.

Dates a member sees (when pending points become available, when points
expire) are calendar days in the programme's time zone, Europe/Amsterdam.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

import asyncpg

from api.cursors import aware_datetime, decode_cursor, encode_cursor
from api.engagement.tiers import (
    TIER_PROGRESS_SQL,
    TierProgress,
    multiplier_label,
    qualifying_since,
    tier_progress_from,
)
from api.errors import DomainError

MEMBER_TIME_ZONE = "Europe/Amsterdam"
EXPIRING_WINDOW_DAYS = 30
HISTORY_PAGE_SIZE_MAX = 50
REFUNDS_PER_TRANSACTION_MAX = 100  # a purchase's refunds listed in its detail
SURVEY_WINDOW_DAYS = 7  # a purchase can be rated this long after it happened


@dataclass(frozen=True, slots=True)
class PointsOnDate:
    on: date  # a calendar day in MEMBER_TIME_ZONE
    points: int


@dataclass(frozen=True, slots=True)
class MemberSummary:
    public_id: UUID
    card_number: str
    display_name: str | None
    salutation: str | None
    status: str
    available_points: int
    pending_points: int
    held_points: int  # reserved by open burn authorizations
    debt_points: int  # owed after refunds of spent points (positive; 0 without debt)
    pending: list[PointsOnDate]  # when pending points become available, by day
    expiring_points: int  # in the next EXPIRING_WINDOW_DAYS
    expiring: list[PointsOnDate]  # by expiry day
    tier: str  # the tier's name (Bronze, Silver, Gold, as configured)
    tier_progress: TierProgress  # qualifying points and what the next tier needs


_SUMMARY_MEMBER = f"""
SELECT s.*, tp.* FROM (
SELECT m.public_id, m.card_number, m.display_name, m.salutation, m.status,
       coalesce(max(a.balance) FILTER (WHERE a.kind = 'member_available'), 0) AS available,
       coalesce(max(a.balance) FILTER (WHERE a.kind = 'member_pending'), 0) AS pending,
       coalesce(max(a.balance) FILTER (WHERE a.kind = 'member_held'), 0) AS held,
       coalesce(max(a.balance) FILTER (WHERE a.kind = 'member_debt'), 0) AS debt
FROM members m LEFT JOIN accounts a ON a.member_id = m.id
WHERE m.id = $1
GROUP BY m.id
) s CROSS JOIN ({TIER_PROGRESS_SQL}) tp
"""

# Pending lots by the day they become available, and available lots expiring
# within the window by the day they expire: one scan of the member's lots.
_SUMMARY_LOTS = f"""
SELECT state, (CASE WHEN state = 'pending' THEN available_at ELSE expires_at END
               AT TIME ZONE '{MEMBER_TIME_ZONE}')::date AS on_day,
       sum(points_remaining)::bigint AS points
FROM lots
WHERE member_id = $1 AND points_remaining > 0
  AND (state = 'pending' OR (state = 'available' AND expires_at <= $2))
GROUP BY 1, 2
ORDER BY 2
"""


async def member_summary(
    pool: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime
) -> MemberSummary | None:
    """The wallet's home: balances, tier and progress, pending and expiring
    points by day (two queries)."""
    member = await pool.fetchrow(_SUMMARY_MEMBER, member_id, qualifying_since(now))
    if member is None:
        return None
    lots = await pool.fetch(_SUMMARY_LOTS, member_id, now + timedelta(days=EXPIRING_WINDOW_DAYS))
    pending = [PointsOnDate(r["on_day"], r["points"]) for r in lots if r["state"] == "pending"]
    progress = tier_progress_from(member)
    expiring = [PointsOnDate(r["on_day"], r["points"]) for r in lots if r["state"] == "available"]
    return MemberSummary(
        public_id=member["public_id"],
        card_number=member["card_number"],
        display_name=member["display_name"],
        salutation=member["salutation"],
        status=member["status"],
        available_points=member["available"],
        pending_points=member["pending"],
        held_points=member["held"],
        debt_points=-member["debt"],
        pending=pending,
        expiring_points=sum(p.points for p in expiring),
        expiring=expiring,
        tier=progress.name,
        tier_progress=progress,
    )


@dataclass(frozen=True, slots=True)
class HistoryItem:
    id: UUID
    partner_code: str | None  # None: a reward (the programme or a sponsor gave it)
    partner_name: str  # a reward's: what it was for
    kind: str  # earn, burn, refund, reward, reward_reversal
    status: str
    amount_cents: int | None
    currency: str | None
    points: int
    points_refunded: int  # earn: points reversed by its refunds so far
    amount_refunded_cents: int  # earn: money refunded so far
    refunds: int  # earn: how many refunds it has had
    debt_points: int  # refund: points the member had already spent (became debt)
    debt_repaid_points: int  # earn: points that went to repay debt
    original_id: UUID | None  # refund: the purchase it refunds
    occurred_at: datetime
    created_at: datetime
    available_at: datetime | None  # earn: when its points become available
    bonus_points: int  # earn: tier bonus on top of `points`; refund: bonus reversed
    multiplier_permille: int | None  # earn: the tier multiplier applied (1000 = x1)
    tier_name: str | None  # earn: the tier that multiplied it
    vip_multiplier_permille: int | None  # earn: a VIP membership's part (api/vip/)

    @property
    def _multiplied_by(self) -> str:
        """Who multiplied: the tier, the tier + VIP, or VIP when the tier adds nothing."""
        tier = self.tier_name or ""
        if self.vip_multiplier_permille is None or self.multiplier_permille is None:
            return tier
        tier_permille = self.multiplier_permille - (self.vip_multiplier_permille - 1000)
        return f"{tier} + VIP" if tier and tier_permille > 1000 else "VIP"

    @property
    def bonus_label(self) -> str | None:
        """ "x1.25 Silver: +25 bonus points" for a multiplied earn, "x1.75 Silver +
        VIP: +75 bonus points" with a VIP membership (the multiplier is the combined one)."""
        if self.kind != "earn" or not self.bonus_points or self.multiplier_permille is None:
            return None
        unit = "point" if self.bonus_points == 1 else "points"
        return (
            f"{multiplier_label(self.multiplier_permille)} {self._multiplied_by}:"
            f" +{self.bonus_points} bonus {unit}"
        ).replace(" :", ":")


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[HistoryItem]
    next_cursor: str | None


_ITEM_COLUMNS = """
    t.id, p.code AS partner_code, coalesce(p.name, t.memo, 'Kring') AS partner_name, t.kind, t.status, t.amount_cents,
    t.currency, t.points, t.points_refunded, t.amount_refunded_cents, t.debt_points,
    t.debt_repaid_points, t.original_id, t.occurred_at, t.created_at, t.available_at,
    t.bonus_points, t.multiplier_permille,
    (SELECT tr.name FROM tiers tr WHERE tr.code = t.tier_code) AS tier_name,
    t.vip_multiplier_permille,
    (SELECT count(*) FROM transactions r WHERE r.original_id = t.id) AS refunds
"""

# Keyset pagination on transactions_member_page (member_id, created_at DESC, id DESC).
_HISTORY = f"""
SELECT {_ITEM_COLUMNS}
FROM transactions t LEFT JOIN partners p ON p.id = t.partner_id
WHERE t.member_id = $1
  AND ($2::text IS NULL OR p.code = $2)
  AND ($3::timestamptz IS NULL OR (t.created_at, t.id) < ($3, $4::uuid))
ORDER BY t.created_at DESC, t.id DESC
LIMIT $5
"""


def _item(row: asyncpg.Record) -> HistoryItem:
    return HistoryItem(**{name: row[name] for name in HistoryItem.__slots__})


def encode_history_cursor(created_at: datetime, transaction_id: UUID) -> str:
    return encode_cursor(created_at, transaction_id)


def decode_history_cursor(cursor: str) -> tuple[datetime, UUID]:
    created_at, transaction_id = decode_cursor(cursor, aware_datetime, UUID)
    return created_at, transaction_id


async def member_history(
    pool: asyncpg.Pool | asyncpg.Connection,
    member_id: int,
    limit: int,
    cursor: str | None,
    partner_code: str | None = None,
) -> HistoryPage:
    """The member's transactions, newest first, `limit` (≤ HISTORY_PAGE_SIZE_MAX)
    a page; `cursor` is the previous page's `next_cursor`. One query."""
    if not 1 <= limit <= HISTORY_PAGE_SIZE_MAX:
        raise DomainError(
            f"limit must be 1 to {HISTORY_PAGE_SIZE_MAX}", code="invalid_limit", status=400
        )
    after: tuple[datetime | None, UUID | None] = (None, None)
    if cursor is not None:
        after = decode_history_cursor(cursor)
    rows = await pool.fetch(_HISTORY, member_id, partner_code, after[0], after[1], limit + 1)
    items = [_item(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_history_cursor(last.created_at, last.id)
    return HistoryPage(items, next_cursor)


@dataclass(frozen=True, slots=True)
class RefundItem:
    id: UUID
    amount_cents: int | None
    points: int
    debt_points: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SurveyState:
    can_answer: bool  # an earn, not yet rated, within the window
    open_until: datetime | None  # earns only: the end of the window
    score: int | None  # the member's answer, once given


@dataclass(frozen=True, slots=True)
class TransactionDetail:
    transaction: HistoryItem
    points_captured: int  # burn: points taken by capture
    store_id: str | None
    receipt_ref: str | None
    refunds: list[RefundItem]
    survey: SurveyState


_DETAIL = f"""
SELECT {_ITEM_COLUMNS}, t.points_captured, t.store_id, t.receipt_ref,
       s.score AS survey_score
FROM transactions t
LEFT JOIN partners p ON p.id = t.partner_id
LEFT JOIN member_surveys s ON s.transaction_id = t.id
WHERE t.id = $1 AND t.member_id = $2
"""

_REFUNDS = """
SELECT id, amount_cents, points, debt_points, created_at FROM transactions
WHERE original_id = $1 AND member_id = $2 AND kind = 'refund'
ORDER BY created_at, id
LIMIT $3
"""


@dataclass(frozen=True, slots=True)
class SurveyDue:
    transaction_id: UUID
    partner_name: str
    occurred_at: datetime
    open_until: datetime


async def survey_due(
    pool: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime
) -> SurveyDue | None:
    """The member's latest purchase that can still be rated (an earn within
    SURVEY_WINDOW_DAYS, not rated yet): what the home page asks about. One
    query, on the member's transactions index."""
    row = await pool.fetchrow(
        """
        SELECT t.id, p.name, t.occurred_at
        FROM transactions t
        JOIN partners p ON p.id = t.partner_id
        WHERE t.member_id = $1 AND t.kind = 'earn' AND t.occurred_at > $2
          AND NOT EXISTS (SELECT FROM member_surveys s WHERE s.transaction_id = t.id)
        ORDER BY t.created_at DESC, t.id DESC
        LIMIT 1
        """,
        member_id,
        now - timedelta(days=SURVEY_WINDOW_DAYS),
    )
    if row is None:
        return None
    open_until = row["occurred_at"] + timedelta(days=SURVEY_WINDOW_DAYS)
    return SurveyDue(row["id"], row["name"], row["occurred_at"], open_until)


def survey_state(kind: str, occurred_at: datetime, score: int | None, now: datetime) -> SurveyState:
    if kind != "earn":
        return SurveyState(False, None, score)
    open_until = occurred_at + timedelta(days=SURVEY_WINDOW_DAYS)
    return SurveyState(score is None and now <= open_until, open_until, score)


async def member_transaction(
    pool: asyncpg.Pool | asyncpg.Connection,
    member_id: int,
    transaction_id: UUID,
    now: datetime | None = None,
) -> TransactionDetail | None:
    """One of the member's transactions with its refunds and survey state;
    None when it is not this member's (or does not exist). Two queries.
    `now` decides whether the survey is still open (default: the database's clock)."""
    row = await pool.fetchrow(_DETAIL, transaction_id, member_id)
    if row is None:
        return None
    refunds = await pool.fetch(_REFUNDS, transaction_id, member_id, REFUNDS_PER_TRANSACTION_MAX)
    moment = now if now is not None else await pool.fetchval("SELECT now()")
    return TransactionDetail(
        transaction=_item(row),
        points_captured=row["points_captured"],
        store_id=row["store_id"],
        receipt_ref=row["receipt_ref"],
        refunds=[RefundItem(**dict(r)) for r in refunds],
        survey=survey_state(row["kind"], row["occurred_at"], row["survey_score"], moment),
    )


@dataclass(frozen=True, slots=True)
class PartnerForMembers:
    code: str
    name: str
    kind: str
    earn_rate_millipoints_per_euro: int
    earn_rate: str  # e.g. "1.5 points per €1"; "no points" when the rate is 0
    can_earn: bool
    can_burn: bool
    pending_days: int  # earned points become available after this many days


def points_per_euro(millipoints_per_euro: int, currency_symbol: str = "€") -> str:
    """A human-readable rate from integers: 1000 → "1 point per €1",
    1500 → "1.5 points per €1", 250 → "0.25 points per €1", 0 → "no points"."""
    if millipoints_per_euro <= 0:
        return "no points"
    whole, thousandths = divmod(millipoints_per_euro, 1000)
    number = str(whole)
    if thousandths:
        number += "." + f"{thousandths:03d}".rstrip("0")
    unit = "point" if millipoints_per_euro == 1000 else "points"
    return f"{number} {unit} per {currency_symbol}1"


_CURRENCY_SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$"}

_PARTNERS = """
SELECT code, name, kind, currency, earn_rate_millipoints_per_euro, return_window_days
FROM partners WHERE status = 'active' ORDER BY name, code
"""


async def partners_for_members(pool: asyncpg.Pool | asyncpg.Connection) -> list[PartnerForMembers]:
    """Active partners: where a member can earn and spend points, at what rate.
    No prices: what a partner pays the programme is not the member's business."""
    rows = await pool.fetch(_PARTNERS)
    return [
        PartnerForMembers(
            code=r["code"],
            name=r["name"],
            kind=r["kind"],
            earn_rate_millipoints_per_euro=r["earn_rate_millipoints_per_euro"],
            earn_rate=points_per_euro(
                r["earn_rate_millipoints_per_euro"],
                _CURRENCY_SYMBOLS.get(r["currency"].strip(), r["currency"].strip() + " "),
            ),
            can_earn=r["earn_rate_millipoints_per_euro"] > 0,
            can_burn=True,  # every active partner accepts points
            pending_days=r["return_window_days"],
        )
        for r in rows
    ]
