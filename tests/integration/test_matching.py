"""Matching campaigns: 1:1 up to the budget, never beyond it under 50
concurrent donations; only during the campaign and for its charity; the
partner's statement charges the matched points at its issuance price; the
ledger check stays clean after settlement."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from api.charity import charities, donations, matching
from api.db.pool import transaction
from api.ledger.check import check_ledger
from api.ledger.lots import release_due
from api.settlement.periods import business_date, day_end
from api.settlement.run import settle_day

IBAN = "NL91ABNA0417164300"
MATCH_PRICE_MICROS = 7_000


@pytest.fixture(scope="module")
def funded(make_partner, make_member, client_for, pool, clock):
    async def make(count: int, points: int) -> list[int]:
        shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
        members = []
        async with client_for(shop) as client:
            for _ in range(count):
                card = await make_member()
                await client.earn(card_number=card, amount_cents=points * 100, currency="EUR")
                members.append(
                    await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
                )
        await release_due(pool, clock.now())
        return members

    return make


async def new_charity(pool, clock, name="Dierenasiel"):
    new = charities.CharityIn(name, "", None, IBAN, None, "Stichting Y", True)
    made = await transaction(pool, lambda conn: charities.create_charity(conn, new, clock.now()))
    return made.id


async def new_campaign(pool, clock, partner_id, charity_id, budget, **window):
    now = clock.now()
    new = matching.CampaignIn(
        partner_id,
        charity_id,
        "Winter matching",
        budget,
        window.get("starts_at", now - timedelta(minutes=1)),
        window.get("ends_at", now + timedelta(days=7)),
    )
    made = await transaction(pool, lambda conn: matching.create_campaign(conn, new, now))
    return made.id


async def test_fifty_concurrent_matched_donations_never_exceed_the_budget(
    funded, make_partner, pool, clock
):
    sponsor = await make_partner(issuance_price_micros=MATCH_PRICE_MICROS)
    charity = await new_charity(pool, clock)
    campaign = await new_campaign(pool, clock, sponsor.partner_id, charity, budget=3_050)
    members = await funded(50, 200)
    now = clock.now()
    made = await asyncio.gather(
        *(
            donations.donate(pool, member, charity, 100 + (i % 3) * 50, f"c-{i}", now)
            for i, member in enumerate(members)
        )
    )
    donated = sum(d.points for d in made)
    matched = sum(d.matched_points for d in made)
    assert donated == sum(100 + (i % 3) * 50 for i in range(50)) > 3_050
    assert matched == 3_050
    assert all(d.matched_points <= d.points for d in made)
    used = await pool.fetchval("SELECT used_points FROM matching_campaigns WHERE id = $1", campaign)
    assert used == 3_050
    balance = await pool.fetchval(
        "SELECT balance FROM accounts WHERE charity_id = $1 AND kind = 'charity_points'", charity
    )
    assert balance == donated + matched
    issued = await pool.fetchval(
        "SELECT sum(balance) FROM accounts WHERE partner_id = $1"
        " AND kind = 'partner_points_issued'",
        sponsor.partner_id,
    )
    assert issued == -3_050
    # A further donation finds the budget spent: not matched.
    extra = await funded(1, 200)
    late = await donations.donate(pool, extra[0], charity, 100, "late", now)
    assert late.matched_points == 0 and late.campaign_id is None

    day = business_date(now)
    clock.set(day_end(day) + timedelta(hours=1))
    start = business_date(await pool.fetchval("SELECT min(booked_at) FROM journal_entries"))
    d = start
    while d <= day:
        await settle_day(pool, d, clock.now())
        d += timedelta(days=1)
    line = await pool.fetchrow(
        "SELECT l.points, l.amount_micros, l.amount_cents FROM statement_lines l"
        " JOIN statements s ON s.id = l.statement_id"
        " WHERE s.partner_id = $1 AND l.category = 'sponsored_rewards'",
        sponsor.partner_id,
    )
    assert line["points"] == 3_050
    assert line["amount_micros"] == -3_050 * MATCH_PRICE_MICROS
    assert line["amount_cents"] == -3_050 * MATCH_PRICE_MICROS // 10_000
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []
    from api.settlement.position import liability_now, programme_position

    assert (await programme_position(pool)).liability == await liability_now(pool)


async def test_only_inside_the_window_and_for_its_charity(funded, make_partner, pool, clock):
    sponsor = await make_partner(issuance_price_micros=MATCH_PRICE_MICROS)
    ours = await new_charity(pool, clock, "Ours")
    other = await new_charity(pool, clock, "Other")
    now = clock.now()
    campaign = await new_campaign(
        pool,
        clock,
        sponsor.partner_id,
        ours,
        1_000,
        starts_at=now + timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
    )
    member = (await funded(1, 1_000))[0]
    early = await donations.donate(pool, member, ours, 100, "w-1", now)
    assert early.matched_points == 0
    wrong = await donations.donate(pool, member, other, 100, "w-2", now + timedelta(minutes=90))
    assert wrong.matched_points == 0
    inside = await donations.donate(pool, member, ours, 150, "w-3", now + timedelta(minutes=90))
    assert (inside.matched_points, inside.campaign_id) == (150, campaign)
    await transaction(pool, lambda conn: matching.end_campaign(conn, campaign))
    ended = await donations.donate(pool, member, ours, 100, "w-4", now + timedelta(minutes=91))
    assert ended.matched_points == 0
    # Any-charity campaigns match every charity.
    anyone = await new_campaign(pool, clock, sponsor.partner_id, None, 50)
    partly = await donations.donate(pool, member, other, 100, "w-5", clock.now())
    assert (partly.matched_points, partly.campaign_id) == (50, anyone)
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []


async def test_monthly_charity_settlement_pays_donations_and_matches_at_the_rate(
    funded, make_partner, pool, clock
):
    from api.charity.settlement import settle_charities
    from api.money import cents_half_even
    from api.settlement.payouts import payouts_for_run

    price_micros = 8_000
    sponsor = await make_partner(issuance_price_micros=MATCH_PRICE_MICROS)
    charity = await new_charity(pool, clock, "Settled Cause")
    await new_campaign(pool, clock, sponsor.partner_id, charity, budget=120)
    members = await funded(2, 500)
    now = clock.now()
    await donations.donate(pool, members[0], charity, 333, "s-1", now)  # matched 120
    await donations.donate(pool, members[1], charity, 150, "s-2", now)  # budget spent
    # The next month: the points of this month are converted, once.
    first_of_next = (now.replace(day=28) + timedelta(days=4)).replace(day=1, hour=12)
    clock.set(first_of_next)
    # A donation after the month's end waits for the next month.
    await donations.donate(pool, members[1], charity, 100, "s-3", clock.now())
    made = await settle_charities(pool, clock.now(), price_micros)
    mine = [p for p in made if p.charity_id == charity]
    assert [(p.points, p.amount_cents) for p in mine] == [
        (333 + 120 + 150, cents_half_even((333 + 120 + 150) * price_micros))
    ]
    assert [p for p in await settle_charities(pool, clock.now(), price_micros)] == []
    balance = await pool.fetchval(
        "SELECT balance FROM accounts WHERE charity_id = $1 AND kind = 'charity_points'", charity
    )
    assert balance == 100
    money = await pool.fetchval(
        "SELECT balance FROM accounts WHERE charity_id = $1 AND kind = 'charity_money'", charity
    )
    assert money == cents_half_even(603 * price_micros) == 482

    day = business_date(clock.now())
    clock.set(day_end(day) + timedelta(hours=1))
    last = await pool.fetchval("SELECT max(business_date) FROM settlement_runs")
    d = (
        business_date(await pool.fetchval("SELECT min(booked_at) FROM journal_entries"))
        if last is None
        else last + timedelta(days=1)
    )
    while d <= day:
        await settle_day(pool, d, clock.now())
        d += timedelta(days=1)
    run = await payouts_for_run(pool, day)
    [paid] = [p for p in run.payouts if p.partner_code == f"charity-{charity}"]
    assert (paid.amount_cents, paid.iban, paid.partner_name) == (482, IBAN, "Settled Cause")
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []
    from api.settlement.position import liability_now, programme_position

    assert (await programme_position(pool)).liability == await liability_now(pool)
