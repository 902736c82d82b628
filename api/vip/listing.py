"""The programme's view of VIP subscriptions: newest first, keyset-paginated,
filtered by status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from api.errors import DomainError, NotFound

PAGE_SIZE_MAX = 100
STATUSES = ("pending", "active", "grace", "cancelled", "lapsed", "abandoned")


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    id: int
    member_public_id: UUID
    card_number: str
    plan_code: str
    status: str
    cancel_at_period_end: bool
    current_period_end: datetime | None
    grace_until: datetime | None
    created_at: datetime
    ended_at: datetime | None
    periods_paid: int
    paid_cents: int


@dataclass(frozen=True, slots=True)
class SubscriptionPage:
    items: list[SubscriptionRow]
    next_cursor: str | None


_LIST = """
SELECT s.id, m.public_id AS member_public_id, m.card_number, s.plan_code, s.status,
       s.cancel_at_period_end, s.current_period_end, s.grace_until, s.created_at, s.ended_at,
       (SELECT count(*) FROM vip_periods p WHERE p.subscription_id = s.id) AS periods_paid,
       (SELECT coalesce(sum(p.amount_cents), 0) FROM vip_periods p
        WHERE p.subscription_id = s.id) AS paid_cents
FROM vip_subscriptions s JOIN members m ON m.id = s.member_id
WHERE ($1::text IS NULL OR s.status = $1) AND ($2::bigint IS NULL OR s.id < $2)
ORDER BY s.id DESC
LIMIT $3
"""


# The listing's row, for one subscription.
_ONE = _LIST.replace("ORDER BY s.id DESC", "AND s.id = $4")


async def list_subscriptions(
    pool: asyncpg.Pool, *, limit: int, cursor: str | None, status: str | None
) -> SubscriptionPage:
    if status is not None and status not in STATUSES:
        raise DomainError(
            f"status is one of {', '.join(STATUSES)}", code="invalid_status", status=400
        )
    if not 1 <= limit <= PAGE_SIZE_MAX:
        raise DomainError(f"limit is 1 to {PAGE_SIZE_MAX}", code="invalid_limit", status=400)
    before: int | None = None
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise DomainError("this cursor is not valid", code="invalid_cursor", status=400)
        before = int(cursor)
    rows = await pool.fetch(_LIST, status, before, limit + 1)
    items = [SubscriptionRow(**{k: r[k] for k in SubscriptionRow.__slots__}) for r in rows[:limit]]
    more = len(rows) > limit
    return SubscriptionPage(items, str(items[-1].id) if more and items else None)


@dataclass(frozen=True, slots=True)
class PeriodRow:
    starts_at: datetime
    ends_at: datetime
    plan_code: str
    amount_cents: int
    multiplier_permille: int
    payment_id: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    at: datetime
    from_status: str | None
    to_status: str
    why: str


@dataclass(frozen=True, slots=True)
class SubscriptionDetail:
    subscription: SubscriptionRow
    periods: list[PeriodRow]
    events: list[EventRow]


async def subscription_detail(pool: asyncpg.Pool, sub_id: int) -> SubscriptionDetail:
    """One subscription with its paid periods and every state change (support)."""
    row = await pool.fetchrow(_ONE, None, None, 1, sub_id)
    if row is None:
        raise NotFound("there is no such VIP subscription", code="vip_subscription_not_found")
    periods = await pool.fetch(
        "SELECT starts_at, ends_at, plan_code, amount_cents, multiplier_permille, payment_id"
        " FROM vip_periods WHERE subscription_id = $1 ORDER BY starts_at",
        sub_id,
    )
    events = await pool.fetch(
        "SELECT at, from_status, to_status, why FROM vip_subscription_events"
        " WHERE subscription_id = $1 ORDER BY id",
        sub_id,
    )
    return SubscriptionDetail(
        SubscriptionRow(**{k: row[k] for k in SubscriptionRow.__slots__}),
        [PeriodRow(**dict(p)) for p in periods],
        [EventRow(**dict(e)) for e in events],
    )
