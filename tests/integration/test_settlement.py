"""Settlement runs: statements per partner and day, lines rounded once, every
entry settled exactly once, the money side balanced; re-runs and races are
harmless. The clock is under the test's control."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

import pytest

from api.errors import DomainError
from api.ledger.lots import expire_due, release_due
from api.money import cents_half_even
from api.settlement.periods import business_date, day_end
from api.settlement.position import liability_now, programme_position
from api.settlement.run import settle_day, settle_due
from tests.conftest import balances


async def lines_of(pool, statement_id):
    rows = await pool.fetch(
        "SELECT category, entries, points, amount_micros, amount_cents FROM statement_lines"
        " WHERE statement_id = $1",
        statement_id,
    )
    return {
        r["category"]: (r["entries"], r["points"], int(r["amount_micros"]), r["amount_cents"])
        for r in rows
    }


async def test_a_day_of_earns_and_burns_settles_into_one_statement_per_partner(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
    cafe = await make_partner(redemption_price_micros=8_000)
    card = await make_member()
    day = business_date(clock.now())
    async with client_for(shop) as a, client_for(cafe) as b:
        await a.earn(card_number=card, amount_cents=12_345, currency="EUR")  # 123 points
        await release_due(pool, clock.now())
        await b.burn(card_number=card, points=100)
    clock.set(day_end(day) + timedelta(hours=1))
    result = await settle_day(pool, day, clock.now())
    assert result.created
    shop_statement = await pool.fetchrow(
        "SELECT id, net_cents, entries FROM statements WHERE partner_id = $1", shop.partner_id
    )
    cafe_statement = await pool.fetchrow(
        "SELECT id, net_cents, entries FROM statements WHERE partner_id = $1", cafe.partner_id
    )
    assert shop_statement["net_cents"] == -123
    assert (await lines_of(pool, shop_statement["id"]))["points_issued"] == (
        1,
        123,
        -1_230_000,
        -123,
    )
    assert cafe_statement["net_cents"] == 80
    assert (await lines_of(pool, cafe_statement["id"]))["points_redeemed"] == (1, 100, 800_000, 80)


async def test_statement_read_model_and_csv(make_partner, make_member, client_for, pool, clock):
    from api.settlement.statements import get_statement, list_statements, statement_csv

    shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
    card = await make_member()
    day = business_date(clock.now())
    async with client_for(shop) as a:
        await a.earn(card_number=card, amount_cents=1_000, currency="EUR")
    clock.set(day_end(day) + timedelta(hours=1))
    await settle_due(pool, clock.now())
    [statement] = await list_statements(pool, shop.partner_id, limit=10)
    assert statement == await get_statement(pool, shop.partner_id, statement.public_id)
    assert [line.category for line in statement.lines] == [
        "points_issued",
        "refunds",
        "points_redeemed",
        "sponsored_rewards",
    ]
    body = b"".join([chunk async for chunk in statement_csv(pool, statement)]).decode()
    assert "line,points_issued,,,,1,10,,-100000,-0.10" in body


async def statements_of(pool, partner_id):
    return await pool.fetch(
        "SELECT id, period, period_start, period_end, net_cents, entries FROM statements"
        " WHERE partner_id = $1 ORDER BY period_end",
        partner_id,
    )


async def settle_through_today(pool, clock):
    """Move to just after today's close and settle every day up to it."""
    clock.set(day_end(business_date(clock.now())) + timedelta(minutes=11))
    return await settle_due(pool, clock.now())


async def test_re_running_a_day_changes_nothing(make_partner, make_member, client_for, pool, clock):
    await settle_through_today(pool, clock)  # earlier tests' days are closed
    shop = await make_partner()
    card = await make_member()
    async with client_for(shop) as a:
        await a.earn(card_number=card, amount_cents=5_000, currency="EUR")
    day = business_date(clock.now())
    [result] = await settle_through_today(pool, clock)
    assert result.created and result.business_date == day
    before = await pool.fetch(
        "SELECT * FROM statements s JOIN statement_lines l ON l.statement_id = s.id ORDER BY s.id, l.category"
    )
    balances_before = await pool.fetch(
        "SELECT id, balance FROM accounts WHERE unit = 'EUR' ORDER BY id"
    )
    again = await settle_day(pool, day, clock.now())
    assert not again.created and again.run_id == result.run_id
    assert await settle_due(pool, clock.now()) == []  # nothing left to settle
    after = await pool.fetch(
        "SELECT * FROM statements s JOIN statement_lines l ON l.statement_id = s.id ORDER BY s.id, l.category"
    )
    assert after == before
    assert (
        await pool.fetch("SELECT id, balance FROM accounts WHERE unit = 'EUR' ORDER BY id")
        == balances_before
    )


async def test_two_runs_racing_produce_one_set_of_statements(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    async with client_for(shop) as a:
        for cents in (1_000, 2_000, 3_000):
            await a.earn(card_number=card, amount_cents=cents, currency="EUR")
    day = business_date(clock.now())
    clock.set(day_end(day) + timedelta(minutes=11))
    first, second = await asyncio.gather(
        settle_day(pool, day, clock.now()), settle_day(pool, day, clock.now())
    )
    assert sorted([first.created, second.created]) == [False, True]
    assert first.run_id == second.run_id
    assert (
        await pool.fetchval("SELECT count(*) FROM settlement_runs WHERE business_date = $1", day)
        == 1
    )
    [statement] = await statements_of(pool, shop.partner_id)
    assert statement["net_cents"] == -60  # 60 points at 1.0 cent
    duplicates = await pool.fetchval(
        "SELECT count(*) FROM (SELECT entry_id FROM settled_entries GROUP BY entry_id HAVING count(*) > 1) d"
    )
    assert duplicates == 0


async def test_an_entry_that_arrives_after_the_close_lands_in_the_next_period(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    day = business_date(clock.now())
    async with client_for(shop) as a:
        await a.earn(card_number=card, amount_cents=1_000, currency="EUR")
        booked_late_at = day_end(day) - timedelta(seconds=1)
        clock.set(day_end(day) + timedelta(minutes=11))
        await settle_day(pool, day, clock.now())
        [closed] = await statements_of(pool, shop.partner_id)
        # Booked a second before the close, committed after it (a slow till).
        clock.set(booked_late_at)
        late = await a.earn(card_number=card, amount_cents=2_000, currency="EUR")
    clock.set(day_end(day + timedelta(days=1)) + timedelta(minutes=11))
    await settle_due(pool, clock.now())
    first, second = await statements_of(pool, shop.partner_id)
    assert dict(first) == dict(closed)  # a closed statement never changes
    assert (first["net_cents"], second["net_cents"]) == (-10, -20)
    entry_statement = await pool.fetchval(
        "SELECT se.statement_id FROM journal_entries e JOIN settled_entries se ON se.entry_id = e.id"
        " WHERE e.transaction_id = $1",
        late.id,
    )
    assert entry_statement == second["id"]


async def test_weekly_and_monthly_partners_get_one_statement_per_period(
    make_partner, make_member, client_for, pool, clock
):
    await settle_through_today(pool, clock)
    daily = await make_partner()
    weekly = await make_partner(settlement_period="weekly")
    monthly = await make_partner(settlement_period="monthly")
    card = await make_member()
    first_day = business_date(clock.now())
    for _ in range(10):
        for creds in (daily, weekly, monthly):
            async with client_for(creds) as client:
                await client.earn(card_number=card, amount_cents=1_000, currency="EUR")
        await settle_through_today(pool, clock)
    last_day = business_date(clock.now()) - timedelta(days=1)
    daily_statements = await statements_of(pool, daily.partner_id)
    assert len(daily_statements) == 10 and all(s["net_cents"] == -10 for s in daily_statements)
    weekly_statements = await statements_of(pool, weekly.partner_id)
    sundays = [
        first_day + timedelta(days=i)
        for i in range(10)
        if (first_day + timedelta(days=i)).isoweekday() == 7
    ]
    assert [
        business_date(s["period_end"]) - timedelta(days=1) for s in weekly_statements
    ] == sundays
    assert all(s["period"] == "weekly" for s in weekly_statements)
    month_ends = [
        first_day + timedelta(days=i)
        for i in range((last_day - first_day).days + 1)
        if (first_day + timedelta(days=i + 1)).day == 1
    ]
    assert len(await statements_of(pool, monthly.partner_id)) == len(month_ends)
    # What has not closed yet is still waiting, not lost.
    unsettled = await pool.fetchval(
        "SELECT count(*) FROM journal_entries e WHERE e.partner_id = ANY($1::bigint[])"
        " AND NOT EXISTS (SELECT FROM settled_entries se WHERE se.entry_id = e.id)",
        [weekly.partner_id, monthly.partner_id],
    )
    settled_weekly = sum(s["entries"] for s in weekly_statements)
    assert (
        unsettled
        + settled_weekly
        + sum(s["entries"] for s in await statements_of(pool, monthly.partner_id))
        >= 20
    )


async def test_days_are_settled_in_order_and_only_once_ended(pool, clock):
    await settle_through_today(pool, clock)
    today = business_date(clock.now())
    with pytest.raises(DomainError) as not_over:
        await settle_day(pool, today, clock.now())
    assert not_over.value.code == "period_not_over"
    clock.advance(timedelta(days=3))
    with pytest.raises(DomainError) as gap:
        await settle_day(pool, today + timedelta(days=1), clock.now())
    assert gap.value.code == "settlement_gap"
    await settle_due(pool, clock.now())
    with pytest.raises(DomainError) as before_first:
        await settle_day(pool, date(2020, 1, 1), clock.now())
    assert before_first.value.code == "settlement_out_of_order"


async def test_money_side_spread_breakage_and_refunds_from_other_lots(
    make_partner, make_member, client_for, pool, clock
):
    """Points issued at 1.2 cent, burned at a partner paying 0.8: the spread is
    0.4 cent a point; points that expire are breakage at their lot's price; a
    refund whose points come from another partner's lot is valued at that lot."""
    await settle_through_today(pool, clock)
    start = await programme_position(pool)
    dear = await make_partner(issuance_price_micros=12_000, return_window_days=0)
    cheap = await make_partner(issuance_price_micros=9_000, return_window_days=0)
    spender = await make_partner(redemption_price_micros=8_000)
    card = await make_member()
    async with client_for(dear) as d, client_for(cheap) as c, client_for(spender) as s:
        bought = await c.earn(
            card_number=card, amount_cents=50_00, currency="EUR"
        )  # lot B: 50 at 0.9c
        await d.earn(card_number=card, amount_cents=100_00, currency="EUR")  # lot A: 100 at 1.2c
        await release_due(pool, clock.now())
        await s.burn(
            card_number=card, points=60
        )  # FIFO (same expiry, then by id): 50 of B, 10 of A
        # Refund cheap's purchase in full: its own lot is spent, so the 50
        # points come from lot A, worth 1.2 cent each, while cheap gets 0.9 back.
        refund = await c.refund(bought.id, 50_00, "EUR")
    assert await pool.fetch(
        "SELECT points FROM refund_lots WHERE transaction_id = $1", refund.id
    ) == [(50,)]
    member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
    await pool.execute(
        "UPDATE lots SET expires_at = $2 WHERE member_id = $1 AND points_remaining > 0",
        member_id,
        clock.now() + timedelta(minutes=1),
    )
    clock.advance(timedelta(minutes=2))
    await expire_due(pool, clock.now())  # the 40 points left of dear's lot expire
    await settle_through_today(pool, clock)
    end = await programme_position(pool)
    spread = end.spread_cents - start.spread_cents
    breakage = end.breakage_cents - start.breakage_cents
    # Captured: 50 x (0.9 - 0.8) + 10 x (1.2 - 0.8) = 9 cents; the refund took
    # 60 cents of liability for 45 cents paid back: 15 cents.
    assert spread == 9 + 15
    assert breakage == 40 * 12_000 // 10_000  # lot A's last 40 points: 48 cents
    assert end.float_cents == start.float_cents
    partners_net = end.partners_net_cents - start.partners_net_cents
    assert (
        partners_net == -120 + (-45 + 45) + 48
    )  # dear pays 1.20, cheap is refunded, spender earns 0.48
    assert -partners_net == spread + breakage


async def test_statement_closed_is_announced_to_partners_with_an_endpoint(
    make_partner, make_member, client_for, pool, clock
):
    await settle_through_today(pool, clock)
    shop = await make_partner()
    quiet = await make_partner()
    await pool.execute(
        "INSERT INTO webhook_endpoints (id, partner_id, url, secret, created_at)"
        " VALUES (gen_random_uuid(), $1, 'http://127.0.0.1:9/hooks', 'whsec_test', $2)",
        shop.partner_id,
        clock.now(),
    )
    card = await make_member()
    async with client_for(shop) as a, client_for(quiet) as q:
        await a.earn(card_number=card, amount_cents=2_500, currency="EUR")
        await q.earn(card_number=card, amount_cents=2_500, currency="EUR")
    await settle_through_today(pool, clock)
    events = await pool.fetch(
        "SELECT partner_id, payload FROM webhook_events WHERE type = 'statement.closed'"
        " AND partner_id = ANY($1::bigint[])",
        [shop.partner_id, quiet.partner_id],
    )
    assert [e["partner_id"] for e in events] == [shop.partner_id]
    payload = json.loads(events[0]["payload"])
    assert payload["net_cents"] == -25
    assert {line["category"]: line["amount_cents"] for line in payload["lines"]}[
        "points_issued"
    ] == -25


async def test_the_csv_pages_through_entries_without_losing_or_repeating_one(
    make_partner, make_member, client_for, pool, clock, monkeypatch
):
    from api.settlement import statements as read

    await settle_through_today(pool, clock)
    shop = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(shop) as a:
        earns = [
            await a.earn(card_number=card, amount_cents=100 * n, currency="EUR")
            for n in range(1, 6)
        ]
        await release_due(pool, clock.now())
        burn = await a.burn(card_number=card, points=3)
    await settle_through_today(pool, clock)
    [statement] = await read.list_statements(pool, shop.partner_id, limit=1)
    monkeypatch.setattr(
        read, "CSV_PAGE_ROWS", 2
    )  # pages of two: 6 rows over 3 pages and an empty one
    body = b"".join([chunk async for chunk in read.statement_csv(pool, statement)]).decode()
    entry_rows = [line.split(",") for line in body.splitlines() if line.startswith("entry,")]
    assert [row[2] for row in entry_rows] == [str(e.id) for e in earns] + [str(burn.id)]
    assert [row[1] for row in entry_rows] == ["points_issued"] * 5 + ["points_redeemed"]


async def test_debt_repaid_at_another_price_leaves_no_money_behind(
    make_partner, make_member, client_for, pool, clock
):
    """Debt is worth nothing to the float: the refund that creates it costs the
    programme its price, the earn that repays it brings in its own, both as
    spread; when the member is square, so is the float."""
    await settle_through_today(pool, clock)
    start = await programme_position(pool)
    cheap = await make_partner(issuance_price_micros=5_000, return_window_days=0)
    spender = await make_partner(redemption_price_micros=4_000)
    dear = await make_partner(issuance_price_micros=15_000, return_window_days=0)
    card = await make_member()
    async with client_for(cheap) as a, client_for(spender) as b, client_for(dear) as c:
        bought = await a.earn(card_number=card, amount_cents=100_00, currency="EUR")  # 100 at 0.5c
        await release_due(pool, clock.now())
        await b.burn(card_number=card, points=100)  # paid 0.4c each
        await a.refund(bought.id, 100_00, "EUR")  # 100 points of debt; cheap gets 50c back
        await c.earn(card_number=card, amount_cents=100_00, currency="EUR")  # repays it at 1.5c
    assert (await balances(pool, card))["debt"] == 0
    await settle_through_today(pool, clock)
    end = await programme_position(pool)
    assert end.liability == await liability_now(pool)
    # (Weekly partners of an earlier test settle meanwhile and move the float,
    # so the float is checked against the liability, not against its start.)
    assert end.float_cents == cents_half_even(end.liability.micros)
    nets = await pool.fetch(
        "SELECT partner_id, sum(net_cents) AS net FROM statements"
        " WHERE partner_id = ANY($1::bigint[]) GROUP BY partner_id",
        [cheap.partner_id, spender.partner_id, dear.partner_id],
    )
    assert {r["partner_id"]: r["net"] for r in nets} == {
        cheap.partner_id: -50 + 50,  # paid for 100 points, refunded for them
        spender.partner_id: 40,  # redeemed 100 at 0.4c
        dear.partner_id: -150,  # paid for 100 points that repaid the debt
    }
    # Burned at 0.1c below issue (10c), refund of spent points (-50c), repayment (+150c).
    assert end.spread_cents - start.spread_cents == 10 - 50 + 150
