"""Refunds reverse points in proportion; spent points become debt that later earnings repay."""

from __future__ import annotations

from api.ledger.lots import release_due
from tests.conftest import balances


async def test_partial_refunds_reverse_in_proportion_and_add_up_exactly(
    make_partner, make_member, client_for, pool
):
    creds = await make_partner()
    card = await make_member()
    async with client_for(creds) as client:
        earn = await client.earn(
            card_number=card, amount_cents=10_001, currency="EUR"
        )  # 100 points
        first = await client.refund(earn.id, amount_cents=3_333, currency="EUR")
        second = await client.refund(earn.id, amount_cents=3_333, currency="EUR")
        last = await client.refund(earn.id, amount_cents=3_335, currency="EUR")
        after = await client.get_transaction(earn.id)
    # floor(100 * 3333 / 10001) = 33, floor(100 * 6666 / 10001) = 66 → 33, then the rest: 34
    assert [first.points, second.points, last.points] == [33, 33, 34]
    assert (after.points_refunded, after.amount_refunded_cents) == (100, 10_001)
    assert first.original_id == earn.id and first.kind == "refund"
    assert await balances(pool, card) == {"available": 0, "pending": 0, "held": 0, "debt": 0}


async def test_refund_after_spending_creates_debt_that_the_next_earn_repays(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        earn = await client.earn(
            card_number=card, amount_cents=10_000, currency="EUR"
        )  # 100 points
        await release_due(pool, clock.now())
        await client.burn(card_number=card, points=80)
        refund = await client.refund(earn.id, amount_cents=10_000, currency="EUR")
        assert (refund.points, refund.debt_points) == (100, 80)
        assert await balances(pool, card) == {"available": 0, "pending": 0, "held": 0, "debt": -80}

        repay = await client.earn(card_number=card, amount_cents=5_000, currency="EUR")  # 50 points
        assert (repay.points, repay.debt_repaid_points) == (50, 50)
        assert await balances(pool, card) == {"available": 0, "pending": 0, "held": 0, "debt": -30}

        rest = await client.earn(card_number=card, amount_cents=4_500, currency="EUR")  # 45 points
        assert (rest.points, rest.debt_repaid_points) == (45, 30)
    assert await balances(pool, card) == {"available": 0, "pending": 15, "held": 0, "debt": 0}


async def test_refund_takes_other_available_points_before_making_debt(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        kept = await client.earn(card_number=card, amount_cents=6_000, currency="EUR")  # 60
        earn = await client.earn(card_number=card, amount_cents=4_000, currency="EUR")  # 40
        await release_due(pool, clock.now())
        await client.burn(card_number=card, points=70)  # takes 60 + 10 (same expiry; FIFO by id)
        refund = await client.refund(earn.id, amount_cents=4_000, currency="EUR")
    assert kept.points == 60
    assert (refund.points, refund.debt_points) == (40, 10)
    assert await balances(pool, card) == {"available": 0, "pending": 0, "held": 0, "debt": -10}


async def test_refund_of_pending_points_takes_them_from_the_pending_lot(
    make_partner, make_member, client_for, pool
):
    creds = await make_partner(return_window_days=14)
    card = await make_member()
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=2_000, currency="EUR")
        await client.refund(earn.id, amount_cents=500, currency="EUR")
    assert await balances(pool, card) == {"available": 0, "pending": 15, "held": 0, "debt": 0}
    assert (
        await pool.fetchval("SELECT points_remaining FROM lots WHERE transaction_id = $1", earn.id)
        == 15
    )
