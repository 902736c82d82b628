"""The programme's view of giving: one charity's donations and the charity
payouts, newest first, keyset-paginated on id. Plain Python + SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from api.cursors import decode_cursor, encode_cursor, whole_number
from api.errors import DomainError

PAGE_SIZE_MAX = 500


def _before(cursor: str | None, limit: int) -> int | None:
    if not 1 <= limit <= PAGE_SIZE_MAX:
        raise DomainError(f"limit is 1 to {PAGE_SIZE_MAX}", code="invalid_limit", status=400)
    return None if cursor is None else int(decode_cursor(cursor, whole_number)[0])


@dataclass(frozen=True, slots=True)
class DonationRow:
    id: int
    created_at: datetime
    card_number: str
    points: int
    matched_points: int
    campaign_id: int | None
    monthly: bool  # from a monthly donation order


@dataclass(frozen=True, slots=True)
class DonationPage:
    items: list[DonationRow]
    next_cursor: str | None


async def charity_donations(
    db: Any, charity_id: int, *, cursor: str | None, limit: int
) -> DonationPage:
    before = _before(cursor, limit)
    rows = await db.fetch(
        "SELECT d.id, d.created_at, m.card_number, d.points, d.matched_points, d.campaign_id,"
        " d.monthly_id IS NOT NULL AS monthly"
        " FROM donations d JOIN members m ON m.id = d.member_id"
        " WHERE d.charity_id = $1 AND ($2::bigint IS NULL OR d.id < $2)"
        " ORDER BY d.id DESC LIMIT $3",
        charity_id,
        before,
        limit + 1,
    )
    items = [DonationRow(**dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return DonationPage(items, encode_cursor(items[-1].id) if more else None)


@dataclass(frozen=True, slots=True)
class PayoutRow:
    id: int
    charity_id: int
    charity_name: str
    month: date
    points: int
    price_micros: int
    amount_cents: int
    business_date: date
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PayoutPage:
    items: list[PayoutRow]
    next_cursor: str | None


async def list_payouts(
    db: Any, *, charity_id: int | None, cursor: str | None, limit: int
) -> PayoutPage:
    """Charity payouts (one per charity and month settled), optionally of one charity."""
    before = _before(cursor, limit)
    rows = await db.fetch(
        "SELECT x.id, x.charity_id, c.name AS charity_name, x.month, x.points, x.price_micros,"
        " x.amount_cents, x.business_date, x.created_at"
        " FROM charity_payouts x JOIN charities c ON c.id = x.charity_id"
        " WHERE ($1::bigint IS NULL OR x.charity_id = $1) AND ($2::bigint IS NULL OR x.id < $2)"
        " ORDER BY x.id DESC LIMIT $3",
        charity_id,
        before,
        limit + 1,
    )
    items = [PayoutRow(**dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return PayoutPage(items, encode_cursor(items[-1].id) if more else None)
