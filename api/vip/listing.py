"""The programme's view of VIP subscriptions: newest first, keyset-paginated,
filtered by status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from api.errors import DomainError

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
