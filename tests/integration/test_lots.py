"""Pending points become available after the return window; available points
expire FIFO 36 months later; holds past their deadline are voided. The clock
is under the test's control."""

from __future__ import annotations

from datetime import timedelta

from api.clock import add_months
from api.ledger.burn import expire_holds
from api.ledger.lots import expire_due, release_due
from tests.conftest import balances


async def test_release_moves_exactly_the_lots_whose_window_passed(
    make_partner, make_member, client_for, pool, clock
):
    short = await make_partner(return_window_days=2)
    long = await make_partner(return_window_days=30)
    card = await make_member()
    async with client_for(short) as a, client_for(long) as b:
        early = await a.earn(card_number=card, amount_cents=1_000, currency="EUR")
        late = await b.earn(card_number=card, amount_cents=2_000, currency="EUR")

    clock.advance(timedelta(days=2) - timedelta(seconds=1))
    await release_due(pool, clock.now())
    assert await balances(pool, card) == {"available": 0, "pending": 30, "held": 0, "debt": 0}
    clock.advance(timedelta(seconds=1))
    moved = await release_due(pool, clock.now())
    assert await balances(pool, card) == {"available": 10, "pending": 20, "held": 0, "debt": 0}
    assert moved.points == 10
    states = dict(
        await pool.fetch(
            "SELECT transaction_id, state FROM lots WHERE transaction_id = ANY($1::uuid[])",
            [early.id, late.id],
        )
    )
    assert states == {early.id: "available", late.id: "pending"}
    status = await pool.fetchval("SELECT status FROM transactions WHERE id = $1", early.id)
    assert status == "available"

    assert (await release_due(pool, clock.now())).lots == 0  # a second run finds nothing
    clock.advance(timedelta(days=28))
    await release_due(pool, clock.now())
    assert await balances(pool, card) == {"available": 30, "pending": 0, "held": 0, "debt": 0}


async def test_expiry_takes_oldest_points_36_months_after_they_became_available(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        old = await client.earn(card_number=card, amount_cents=5_000, currency="EUR")
        await release_due(pool, clock.now())
        expires_at = add_months(clock.now(), 36)
        clock.advance(timedelta(days=60))
        young = await client.earn(card_number=card, amount_cents=3_000, currency="EUR")
        await release_due(pool, clock.now())
        await client.burn(card_number=card, points=20)  # from the old lot first

    clock.set(expires_at - timedelta(seconds=1))
    await expire_due(pool, clock.now())  # other modules' members may expire; ours not yet
    assert await balances(pool, card) == {"available": 60, "pending": 0, "held": 0, "debt": 0}
    breakage_before = await pool.fetchval(
        "SELECT balance FROM accounts WHERE kind = 'programme_breakage'"
    )
    clock.set(expires_at)
    result = await expire_due(pool, clock.now())
    assert await balances(pool, card) == {"available": 30, "pending": 0, "held": 0, "debt": 0}
    remaining = dict(
        await pool.fetch(
            "SELECT transaction_id, points_remaining FROM lots WHERE transaction_id = ANY($1::uuid[])",
            [old.id, young.id],
        )
    )
    assert remaining == {old.id: 0, young.id: 30}
    breakage = await pool.fetchval("SELECT balance FROM accounts WHERE kind = 'programme_breakage'")
    assert breakage - breakage_before == result.points >= 30
    expired_here = await pool.fetchval(
        "SELECT sum(p.amount) FROM postings p JOIN journal_entries e ON e.id = p.entry_id"
        " JOIN accounts a ON a.id = p.account_id JOIN members m ON m.id = a.member_id"
        " WHERE e.kind = 'expire' AND m.card_number = $1",
        card,
    )
    assert expired_here == -30
    assert (await expire_due(pool, clock.now())).lots == 0


async def test_holds_past_their_deadline_are_voided(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
        await release_due(pool, clock.now())
        hold = await client.authorize(card_number=card, points=40, hold_minutes=15)
        clock.advance(timedelta(minutes=15))
        assert await expire_holds(pool, clock.now()) == 0  # at the deadline it still stands
        clock.advance(timedelta(seconds=1))
        assert await expire_holds(pool, clock.now()) == 1
        after = await client.get_transaction(hold.id)
    assert after.status == "expired"
    assert await balances(pool, card) == {"available": 100, "pending": 0, "held": 0, "debt": 0}
    assert await expire_holds(pool, clock.now()) == 0
