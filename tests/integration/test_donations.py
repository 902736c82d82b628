"""Donations of points: FIFO from the member's lots, one balanced entry to the
charity's account, the minimum, insufficient points, idempotent repeats,
inactive and unknown charities, the history and the yearly statement, and
settlement staying exact (`ledger check`)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.charity import charities, donations
from api.coalition.member_profile import export_member_data
from api.db.pool import transaction
from api.errors import DomainError
from api.ledger.check import check_ledger
from api.ledger.lots import release_due
from api.settlement.periods import business_date, day_end
from api.settlement.run import settle_day
from tests.conftest import balances

IBAN = "NL91ABNA0417164300"


async def member_id(pool, card):
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


@pytest.fixture(scope="module")
def funded(make_partner, make_member, client_for, pool, clock):
    async def make(points: int) -> tuple[str, int]:
        shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
        card = await make_member()
        if points:
            async with client_for(shop) as client:
                await client.earn(card_number=card, amount_cents=points * 100, currency="EUR")
            await release_due(pool, clock.now())
        return card, await member_id(pool, card)

    return make


@pytest.fixture(scope="module")
def new_charity(pool, clock):
    async def make(name: str = "Voedselbank", anbi: bool = True) -> int:
        new = charities.CharityIn(name, "Food for everyone", None, IBAN, None, "Stichting X", anbi)
        made = await transaction(
            pool, lambda conn: charities.create_charity(conn, new, clock.now())
        )
        return made.id

    return make


async def charity_balance(pool, charity_id):
    return await pool.fetchval(
        "SELECT balance FROM accounts WHERE charity_id = $1 AND kind = 'charity_points'",
        charity_id,
    )


async def test_a_donation_moves_points_from_lots_to_the_charity(funded, new_charity, pool, clock):
    card, member = await funded(500)
    charity = await new_charity()
    made = await donations.donate(pool, member, charity, 300, "d-1", clock.now())
    assert (made.points, made.matched_points, made.replayed) == (300, 0, False)
    assert (await balances(pool, card))["available"] == 200
    assert await charity_balance(pool, charity) == 300
    entry = await pool.fetchrow(
        "SELECT kind, member_id FROM journal_entries WHERE id ="
        " (SELECT entry_id FROM donations WHERE id = $1)",
        made.id,
    )
    assert (entry["kind"], entry["member_id"]) == ("donation", member)
    traced = await pool.fetchval(
        "SELECT sum(x.points) FROM lot_expiries x JOIN donations d ON d.entry_id = x.entry_id"
        " WHERE d.id = $1",
        made.id,
    )
    assert traced == 300
    assert (
        await pool.fetchval("SELECT sum(points_remaining) FROM lots WHERE member_id = $1", member)
        == 200
    )
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []


async def test_a_repeat_with_the_key_returns_the_first_donation(funded, new_charity, pool, clock):
    card, member = await funded(500)
    charity = await new_charity()
    first = await donations.donate(pool, member, charity, 200, "same", clock.now())
    again = await donations.donate(pool, member, charity, 200, "same", clock.now())
    assert again.replayed and again.id == first.id
    assert (await balances(pool, card))["available"] == 300
    with pytest.raises(DomainError) as caught:
        await donations.donate(pool, member, charity, 250, "same", clock.now())
    assert caught.value.code == "idempotency_conflict"
    with pytest.raises(DomainError) as caught:
        await donations.donate(pool, member, charity, 250, None, clock.now())
    assert caught.value.code == "idempotency_key_required"


async def test_refusals(funded, new_charity, pool, clock):
    card, member = await funded(150)
    charity = await new_charity()
    cases = [
        (charity, 99, "donation_below_minimum"),
        (charity, 151, "insufficient_points"),
        (999_999, 100, "charity_not_found"),
    ]
    for i, (target, points, code) in enumerate(cases):
        with pytest.raises(DomainError) as caught:
            await donations.donate(pool, member, target, points, f"bad-{i}", clock.now())
        assert caught.value.code == code
    await transaction(
        pool, lambda conn: charities.set_status(conn, charity, "inactive", clock.now())
    )
    with pytest.raises(DomainError) as caught:
        await donations.donate(pool, member, charity, 100, "inactive", clock.now())
    assert caught.value.code == "charity_inactive"
    assert (await balances(pool, card))["available"] == 150
    assert await charity_balance(pool, charity) == 0


async def test_history_and_year_statement(funded, new_charity, pool, clock):
    _card, member = await funded(1_000)
    a = await new_charity("Alpha Fund", anbi=True)
    b = await new_charity("Beta Trust", anbi=False)
    now = clock.now()
    await donations.donate(pool, member, a, 100, "h-1", now)
    await donations.donate(pool, member, b, 200, "h-2", now + timedelta(seconds=1))
    await donations.donate(pool, member, a, 300, "h-3", now + timedelta(seconds=2))
    history = await donations.member_donations(pool, member)
    assert [d.points for d in history] == [300, 200, 100]
    year = now.astimezone(ZoneInfo("Europe/Amsterdam")).year
    statement = await donations.year_statement(pool, member, year)
    assert [(t.name, t.points, t.anbi) for t in statement.totals] == [
        ("Alpha Fund", 400, True),
        ("Beta Trust", 200, False),
    ]
    assert statement.points == 600 and statement.any_anbi
    assert len(statement.donations) == 3
    empty = await donations.year_statement(pool, member, year - 1)
    assert empty.donations == [] and empty.points == 0


async def test_settlement_after_donations_keeps_the_ledger_check_clean(
    funded, new_charity, pool, clock
):
    _card, member = await funded(400)
    charity = await new_charity()
    now = clock.now()
    await donations.donate(pool, member, charity, 250, "settle-1", now)
    day = business_date(now)
    clock.set(day_end(day) + timedelta(hours=1))
    start = business_date(await pool.fetchval("SELECT min(booked_at) FROM journal_entries"))
    d = start
    while d <= day:
        await settle_day(pool, d, clock.now())
        d += timedelta(days=1)
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []
    from api.settlement.position import liability_now, programme_position

    assert (await programme_position(pool)).liability == await liability_now(pool)


async def test_monthly_donation_runs_once_a_month_and_skips_a_short_month(
    funded, new_charity, pool, clock
):
    from api.charity import monthly

    card, member = await funded(450)
    charity = await new_charity("Monthly Cause")
    start = clock.now()
    order = await transaction(
        pool, lambda conn: monthly.set_monthly(conn, member, charity, 200, start)
    )
    assert order.next_run_on == start.date()
    # Setting it again changes the points of the same order.
    again = await transaction(
        pool, lambda conn: monthly.set_monthly(conn, member, charity, 200, start)
    )
    assert again.id == order.id
    await asyncio.gather(monthly.donate_due(pool, start), monthly.donate_due(pool, start))
    await monthly.donate_due(pool, start + timedelta(days=3))
    rows = await pool.fetch("SELECT points FROM donations WHERE monthly_id = $1", order.id)
    assert [r["points"] for r in rows] == [200]
    next_month = start + timedelta(days=31)
    await monthly.donate_due(pool, next_month)
    assert (await balances(pool, card))["available"] == 50
    # The third month the member has 50 points: skipped, nothing moves, and the
    # member is told in the inbox (once, however often the job runs).
    third = next_month + timedelta(days=31)
    run = await monthly.donate_due(pool, third)
    assert (run.donated, run.skipped) == (0, 1)
    await monthly.donate_due(pool, third)
    told = await pool.fetch(
        "SELECT params FROM inbox_messages WHERE member_id = $1 AND kind = 'donation_skipped'",
        member,
    )
    assert len(told) == 1 and '"points": 200' in told[0]["params"]
    [state] = await monthly.member_monthly(pool, member)
    assert state.last_outcome == "skipped_insufficient_points"
    assert state.next_run_on > third.date()
    assert (
        await pool.fetchval("SELECT count(*) FROM donations WHERE monthly_id = $1", order.id) == 2
    )
    # The member's data export lists the gifts and the order.
    exported = await export_member_data(pool, member)
    assert exported is not None
    assert [(d["points"], d["monthly"]) for d in exported["donations"]] == [
        (200, True),
        (200, True),
    ]
    assert [(o["points"], o["last_outcome"]) for o in exported["monthly_donations"]] == [
        (200, "skipped_insufficient_points")
    ]
    json.dumps(exported)  # JSON as it is served
    cancelled = await transaction(
        pool, lambda conn: monthly.cancel_monthly(conn, member, order.id, third)
    )
    assert not cancelled.active
    assert await monthly.member_monthly(pool, member) == []
    with pytest.raises(DomainError) as caught:
        await transaction(pool, lambda conn: monthly.set_monthly(conn, member, charity, 50, third))
    assert caught.value.code == "donation_below_minimum"


async def test_the_statement_year_is_the_members_calendar_year(funded, new_charity, pool, clock):
    # 23:30 UTC on 31 December is already New Year in Amsterdam.
    year = clock.now().year + 1
    clock.set(datetime(year, 12, 31, 23, 30, tzinfo=UTC))
    _card, member = await funded(200)
    charity = await new_charity("New Year Cause")
    await donations.donate(pool, member, charity, 100, "ny", clock.now())
    assert (await donations.year_statement(pool, member, year)).donations == []
    assert (await donations.year_statement(pool, member, year + 1)).points == 100
    assert await donations.donation_years(pool, member) == [year + 1]
    with pytest.raises(DomainError) as caught:
        await donations.year_statement(pool, member, 1999)
    assert caught.value.code == "statement_not_found"
