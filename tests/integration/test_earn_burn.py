"""Earn, burn (both phases) and one-step burn through the partner API."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from api.ledger.lots import release_due
from partners.client import PartnerApiError
from tests.conftest import balances


async def test_earn_makes_pending_points_with_release_date(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(return_window_days=14)
    card = await make_member()
    async with client_for(creds) as client:
        txn = await client.earn(
            card_number=card, amount_cents=4_299, currency="EUR", receipt_ref="R-1"
        )
    assert (txn.kind, txn.status, txn.points) == ("earn", "pending", 42)
    assert txn.available_at == clock.now() + timedelta(days=14)
    assert txn.price_micros == 10_000
    assert await balances(pool, card) == {"available": 0, "pending": 42, "held": 0, "debt": 0}
    entry = await pool.fetchrow(
        "SELECT kind, price_micros FROM journal_entries WHERE transaction_id = $1", txn.id
    )
    assert (entry["kind"], entry["price_micros"]) == ("earn", 10_000)
    postings = await pool.fetch(
        "SELECT a.kind, p.amount FROM postings p JOIN accounts a ON a.id = p.account_id"
        " JOIN journal_entries e ON e.id = p.entry_id WHERE e.transaction_id = $1 ORDER BY p.amount",
        txn.id,
    )
    assert [(p["kind"], p["amount"]) for p in postings] == [
        ("partner_points_issued", -42),
        ("member_pending", 42),
    ]


async def test_earn_rounds_down_at_partner_rate(make_partner, make_member, client_for):
    creds = await make_partner(earn_rate_millipoints_per_euro=1_500)  # 1.5 points per euro
    card = await make_member()
    async with client_for(creds) as client:
        txn = await client.earn(card_number=card, amount_cents=999, currency="EUR")
    assert txn.points == 14  # 9.99 * 1.5 = 14.985, rounded down


async def _member_with_available(make_partner, make_member, client_for, pool, clock, points):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=points * 100, currency="EUR")
    await release_due(pool, clock.now())
    assert (await balances(pool, card))["available"] == points
    return creds, card


async def test_authorize_capture_part_returns_the_rest(
    make_partner, make_member, client_for, pool, clock
):
    creds, card = await _member_with_available(
        make_partner, make_member, client_for, pool, clock, 500
    )
    async with client_for(creds) as client:
        hold = await client.authorize(card_number=card, points=300)
        assert hold.status == "authorized"
        assert await balances(pool, card) == {
            "available": 200,
            "pending": 0,
            "held": 300,
            "debt": 0,
        }
        captured = await client.capture(hold.id, points=120)
    assert (captured.status, captured.points_captured) == ("captured", 120)
    assert await balances(pool, card) == {"available": 380, "pending": 0, "held": 0, "debt": 0}
    redeemed = await pool.fetchval(
        "SELECT sum(balance) FROM accounts a JOIN partners p ON p.id = a.partner_id"
        " WHERE p.public_id = $1 AND a.kind = 'partner_points_redeemed'",
        creds.partner_public_id,
    )
    assert redeemed == 120


async def test_void_puts_points_back_and_later_capture_is_refused(
    make_partner, make_member, client_for, pool, clock
):
    creds, card = await _member_with_available(
        make_partner, make_member, client_for, pool, clock, 100
    )
    async with client_for(creds) as client:
        hold = await client.authorize(card_number=card, points=60)
        voided = await client.void(hold.id)
        assert voided.status == "voided"
        with pytest.raises(PartnerApiError) as err:
            await client.capture(hold.id)
    assert (err.value.status, err.value.code) == (409, "authorization_voided")
    assert await balances(pool, card) == {"available": 100, "pending": 0, "held": 0, "debt": 0}


async def test_void_after_capture_is_refused(make_partner, make_member, client_for, pool, clock):
    creds, card = await _member_with_available(
        make_partner, make_member, client_for, pool, clock, 100
    )
    async with client_for(creds) as client:
        hold = await client.authorize(card_number=card, points=60)
        await client.capture(hold.id)
        with pytest.raises(PartnerApiError) as err:
            await client.void(hold.id)
    assert (err.value.status, err.value.code) == (409, "authorization_captured")
    assert await balances(pool, card) == {"available": 40, "pending": 0, "held": 0, "debt": 0}


async def test_one_step_burn_any_number_of_points(
    make_partner, make_member, client_for, pool, clock
):
    creds, card = await _member_with_available(
        make_partner, make_member, client_for, pool, clock, 100
    )
    async with client_for(creds) as client:
        txn = await client.burn(card_number=card, points=37)
    assert (txn.status, txn.points, txn.points_captured) == ("captured", 37, 37)
    assert txn.price_micros == 8_000
    assert await balances(pool, card) == {"available": 63, "pending": 0, "held": 0, "debt": 0}


async def test_burn_more_than_available_is_refused_and_writes_nothing(
    make_partner, make_member, client_for, pool, clock
):
    creds, card = await _member_with_available(
        make_partner, make_member, client_for, pool, clock, 10
    )
    entries_before = await pool.fetchval("SELECT count(*) FROM journal_entries")
    async with client_for(creds) as client:
        with pytest.raises(PartnerApiError) as err:
            await client.burn(card_number=card, points=11)
    assert (err.value.status, err.value.code) == (422, "insufficient_points")
    assert await pool.fetchval("SELECT count(*) FROM journal_entries") == entries_before
    assert await balances(pool, card) == {"available": 10, "pending": 0, "held": 0, "debt": 0}


async def test_fifty_concurrent_burns_never_overdraw(
    make_partner, make_member, client_for, pool, clock
):
    creds, card = await _member_with_available(
        make_partner, make_member, client_for, pool, clock, 1_000
    )
    async with client_for(creds) as client:
        await client.access_token()

        async def attempt() -> str:
            try:
                await client.burn(card_number=card, points=30)
                return "ok"
            except PartnerApiError as exc:
                return exc.code

        outcomes = await asyncio.gather(*(attempt() for _ in range(50)))
    assert outcomes.count("ok") == 33  # 33 * 30 = 990 <= 1000 < 34 * 30
    assert outcomes.count("insufficient_points") == 17
    assert await balances(pool, card) == {"available": 10, "pending": 0, "held": 0, "debt": 0}


async def test_burn_takes_points_that_expire_first(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        first = await client.earn(card_number=card, amount_cents=5_000, currency="EUR")
        clock.advance(timedelta(days=40))
        second = await client.earn(card_number=card, amount_cents=5_000, currency="EUR")
        await release_due(pool, clock.now())
        await client.burn(card_number=card, points=70)
    lots = {
        r["transaction_id"]: r["points_remaining"]
        for r in await pool.fetch(
            "SELECT transaction_id, points_remaining FROM lots WHERE transaction_id = ANY($1::uuid[])",
            [first.id, second.id],
        )
    }
    assert lots == {first.id: 0, second.id: 30}
