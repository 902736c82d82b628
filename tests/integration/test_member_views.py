"""The member's read models: balances by day, history pages, one transaction, partners."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import uuid4

import pytest

from api.clock import add_months
from api.coalition.member_views import (
    PointsOnDate,
    member_history,
    member_summary,
    member_transaction,
    partners_for_members,
    points_per_euro,
)
from api.errors import DomainError
from api.ledger.lots import release_due


async def member_id_of(pool, card: str) -> int:
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


def test_points_per_euro_is_exact_from_integers():
    assert points_per_euro(1000) == "1 point per €1"
    assert points_per_euro(1500) == "1.5 points per €1"
    assert points_per_euro(250) == "0.25 points per €1"
    assert points_per_euro(2000) == "2 points per €1"
    assert points_per_euro(1) == "0.001 points per €1"
    assert points_per_euro(0) == "no points"


async def test_summary_shows_balances_pending_by_day_expiring_and_debt(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner(return_window_days=14, name="Book Shop")
    instant = await make_partner(return_window_days=0)
    card = await make_member(display_name="Ann")
    member_id = await member_id_of(pool, card)
    start = clock.now()
    async with client_for(shop) as client:
        await client.earn(card_number=card, amount_cents=1_000, currency="EUR")  # 10
        await client.earn(card_number=card, amount_cents=2_000, currency="EUR")  # 20
    async with client_for(instant) as client:
        await client.earn(card_number=card, amount_cents=5_000, currency="EUR")  # 50
        await release_due(pool, clock.now())
        await client.authorize(card_number=card, points=5)
    summary = await member_summary(pool, member_id, clock.now())
    assert summary is not None
    assert (summary.available_points, summary.pending_points, summary.held_points) == (45, 30, 5)
    assert summary.debt_points == 0
    assert summary.pending == [PointsOnDate((start + timedelta(days=14)).date(), 30)]
    assert summary.expiring == [] and summary.expiring_points == 0
    assert (summary.card_number, summary.display_name, summary.tier) == (card, "Ann", "Bronze")

    # Ten days before the released lot's expiry (36 months): it shows as expiring.
    later = add_months(start, 36) - timedelta(days=10)
    soon = await member_summary(pool, member_id, later)
    assert soon is not None
    assert soon.expiring_points == 45
    assert soon.expiring == [PointsOnDate(add_months(start, 36).date(), 45)]
    assert await member_summary(pool, 10**12, clock.now()) is None


async def test_summary_reports_debt_as_a_positive_number(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=1_000, currency="EUR")
        await release_due(pool, clock.now())
        await client.burn(card_number=card, points=10)
        await client.refund(earn.id, amount_cents=1_000, currency="EUR")
    summary = await member_summary(pool, await member_id_of(pool, card), clock.now())
    assert summary is not None and summary.debt_points == 10 and summary.available_points == 0


async def test_history_pages_newest_first_filters_by_partner_and_summarises_refunds(
    make_partner, make_member, client_for, pool, clock
):
    cafe = await make_partner(code="cafe-hist", name="Café")
    fuel = await make_partner(code="fuel-hist", name="Fuel")
    card = await make_member()
    other = await make_member()
    member_id = await member_id_of(pool, card)
    ids = []
    async with client_for(cafe) as client:
        for cents in (1_000, 2_000, 3_000):
            ids.append((await client.earn(card_number=card, amount_cents=cents, currency="EUR")).id)
            clock.advance(timedelta(seconds=1))
        await client.earn(card_number=other, amount_cents=9_900, currency="EUR")
        refund = await client.refund(ids[0], amount_cents=500, currency="EUR")
    async with client_for(fuel) as client:
        ids.append((await client.earn(card_number=card, amount_cents=4_000, currency="EUR")).id)

    first = await member_history(pool, member_id, 2, None)
    assert [i.id for i in first.items] == [ids[3], refund.id]
    assert first.next_cursor is not None
    second = await member_history(pool, member_id, 2, first.next_cursor)
    third = await member_history(pool, member_id, 2, second.next_cursor)
    assert [i.id for i in second.items] + [i.id for i in third.items] == [ids[2], ids[1], ids[0]]
    assert third.next_cursor is None
    purchase = third.items[-1]
    assert (purchase.partner_name, purchase.kind, purchase.points) == ("Café", "earn", 10)
    assert (purchase.refunds, purchase.points_refunded, purchase.amount_refunded_cents) == (
        1,
        5,
        500,
    )

    cafe_only = await member_history(pool, member_id, 50, None, partner_code="cafe-hist")
    assert {i.partner_code for i in cafe_only.items} == {"cafe-hist"}
    assert len(cafe_only.items) == 4  # three earns and a refund, not the other member's
    assert (await member_history(pool, member_id, 50, None, partner_code="nope")).items == []
    with pytest.raises(DomainError) as bad:
        await member_history(pool, member_id, 10, "not-a-cursor")
    assert bad.value.code == "invalid_cursor"
    with pytest.raises(DomainError):
        await member_history(pool, member_id, 0, None)


async def test_transaction_detail_is_only_the_members_own(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(name="Cinema")
    card = await make_member()
    other = await make_member()
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
        refund = await client.refund(earn.id, amount_cents=2_500, currency="EUR")
    mine = await member_id_of(pool, card)
    detail = await member_transaction(pool, mine, earn.id, clock.now())
    assert detail is not None
    assert (detail.transaction.partner_name, detail.transaction.points) == ("Cinema", 100)
    assert [(r.id, r.points, r.amount_cents) for r in detail.refunds] == [(refund.id, 25, 2_500)]
    assert detail.survey.can_answer and detail.survey.score is None
    assert await member_transaction(pool, await member_id_of(pool, other), earn.id) is None
    assert await member_transaction(pool, mine, uuid4()) is None
    late = await member_transaction(pool, mine, earn.id, clock.now() + timedelta(days=8))
    assert late is not None and not late.survey.can_answer


async def test_partners_for_members_lists_active_partners_with_rates_and_no_prices(
    make_partner, pool
):
    await make_partner(code="double-pts", name="Double", earn_rate_millipoints_per_euro=2_000)
    suspended = await make_partner(code="gone-away", name="Gone")
    await pool.execute(
        "UPDATE partners SET status = 'suspended' WHERE id = $1", suspended.partner_id
    )
    partners = {p.code: p for p in await partners_for_members(pool)}
    assert "gone-away" not in partners
    double = partners["double-pts"]
    assert (double.earn_rate, double.can_earn, double.can_burn) == ("2 points per €1", True, True)
    assert not hasattr(double, "issuance_price_micros")


def test_pending_dates_are_calendar_days():
    assert PointsOnDate(date(2026, 3, 16), 1).on.isoformat() == "2026-03-16"
