"""Challenge progress and rewards: every kind's progress from purchases,
rewards paid exactly once, reversed by a refund, funded by the promo budget
or charged to a sponsor in settlement; win-back offers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from api.engagement.challenge_progress import offer_winback, process_dirty
from api.ledger.check import check_ledger
from api.settlement.periods import SETTLEMENT_DELAY, business_date, day_end
from api.settlement.run import settle_due
from tests.conftest import balances

DAY = timedelta(days=1)


async def member_id_of(pool, card: str) -> int:
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


async def new_challenge(pool, clock, **fields) -> int:
    """A challenge row as the admin API would write it (defaults: automatic,
    everyone, 2 purchases, 100 points from the promo budget, open 30 days)."""
    now = clock.now()
    values = {
        "name": "Shop twice",
        "kind": "purchases",
        "target": 2,
        "partner_ids": [],
        "starts_at": now - timedelta(minutes=1),
        "ends_at": now + timedelta(days=30),
        "enrolment": "automatic",
        "personal_days": None,
        "audience": "everyone",
        "audience_tier": None,
        "lapsed_days": None,
        "reward_points": 100,
        "sponsor_id": None,
        **fields,
    }
    columns = ", ".join(values)
    marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await pool.fetchval(
        f"INSERT INTO challenges ({columns}, created_at, updated_at)"
        f" VALUES ({marks}, ${len(values) + 1}, ${len(values) + 1}) RETURNING id",
        *values.values(),
        now,
    )


async def enrolment(pool, challenge_id: int, card: str):
    return await pool.fetchrow(
        "SELECT progress, met, rewarded, counts_from, counts_until FROM challenge_enrolments"
        " WHERE challenge_id = $1 AND member_id = $2",
        challenge_id,
        await member_id_of(pool, card),
    )


async def rewards_of(pool, card: str) -> list[tuple[str, int]]:
    rows = await pool.fetch(
        "SELECT kind, points FROM transactions WHERE member_id = $1"
        " AND kind IN ('reward', 'reward_reversal') ORDER BY created_at, kind",
        await member_id_of(pool, card),
    )
    return [(r["kind"], r["points"]) for r in rows]


async def withdraw_others(pool, keep: int) -> None:
    """Each test looks at one challenge: the earlier tests' are withdrawn."""
    await pool.execute("UPDATE challenges SET status = 'withdrawn' WHERE id <> $1", keep)


async def assert_ledger_clean(pool) -> None:
    async with pool.acquire() as conn:
        assert [v.describe() for v in await check_ledger(conn)] == []


async def test_an_earn_marks_the_member_and_the_processor_enrols_and_counts(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    challenge = await new_challenge(pool, clock)
    await withdraw_others(pool, challenge)
    async with client_for(shop) as client:
        await client.earn(card_number=card, amount_cents=1_000, currency="EUR")
        member = await member_id_of(pool, card)
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM engagement_activity WHERE member_id = $1", member
            )
            == 1
        )
        assert (await process_dirty(pool, clock.now())).rows >= 1
        assert await pool.fetchval("SELECT count(*) FROM engagement_activity") == 0
        first = await enrolment(pool, challenge, card)
        assert (first["progress"], first["met"], first["rewarded"]) == (1, False, False)
        before = await balances(pool, card)

        await client.earn(card_number=card, amount_cents=1_000, currency="EUR")
        await process_dirty(pool, clock.now())
        second = await enrolment(pool, challenge, card)
        assert (second["progress"], second["met"], second["rewarded"]) == (2, True, True)
        after = await balances(pool, card)
        # The reward is available at once; the purchase's 10 points are pending.
        assert after["available"] - before["available"] == 100
        assert after["pending"] - before["pending"] == 10
        assert await rewards_of(pool, card) == [("reward", 100)]

        # Processing again (a retried job, a third earn) pays nothing more.
        await client.earn(card_number=card, amount_cents=1_000, currency="EUR")
        await process_dirty(pool, clock.now())
        await process_dirty(pool, clock.now())
    assert await rewards_of(pool, card) == [("reward", 100)]
    message = await pool.fetchrow(
        "SELECT kind, params FROM inbox_messages WHERE member_id = $1 AND kind = 'challenge_completed'",
        await member_id_of(pool, card),
    )
    assert message is not None and "Shop twice" in message["params"]
    await assert_ledger_clean(pool)


async def test_a_refund_that_unmeets_a_challenge_reverses_its_reward_and_a_new_purchase_pays_again(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    challenge = await new_challenge(pool, clock, name="Spend 50", kind="spend", target=5_000)
    await withdraw_others(pool, challenge)
    async with client_for(shop) as client:
        big = await client.earn(card_number=card, amount_cents=6_000, currency="EUR")
        await process_dirty(pool, clock.now())
        assert (await enrolment(pool, challenge, card))["rewarded"]
        # A partial refund that leaves 50.00: still met.
        await client.refund(big.id, 1_000, "EUR")
        await process_dirty(pool, clock.now())
        row = await enrolment(pool, challenge, card)
        assert (row["progress"], row["met"], row["rewarded"]) == (5_000, True, True)
        # Another cent refunded: no longer met; the reward is taken back.
        await client.refund(big.id, 1, "EUR")
        await process_dirty(pool, clock.now())
        row = await enrolment(pool, challenge, card)
        assert (row["progress"], row["met"], row["rewarded"]) == (4_999, False, False)
        assert await rewards_of(pool, card) == [("reward", 100), ("reward_reversal", 100)]
        assert (await balances(pool, card))["available"] == 0
        # Buying again meets it again: a second payment (cycle 2), one standing.
        await client.earn(card_number=card, amount_cents=100, currency="EUR")
        await process_dirty(pool, clock.now())
    cycles = await pool.fetch(
        "SELECT cycle, reversal_id IS NOT NULL AS reversed FROM challenge_rewards r"
        " JOIN challenge_enrolments e ON e.id = r.enrolment_id WHERE e.challenge_id = $1"
        " ORDER BY cycle",
        challenge,
    )
    assert [(c["cycle"], c["reversed"]) for c in cycles] == [(1, True), (2, False)]
    assert (await balances(pool, card))["available"] == 100
    await assert_ledger_clean(pool)


async def test_a_reversal_of_a_spent_reward_leaves_debt_that_the_next_earn_repays(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    challenge = await new_challenge(pool, clock, target=1, reward_points=300)
    await withdraw_others(pool, challenge)
    async with client_for(shop) as client:
        purchase = await client.earn(card_number=card, amount_cents=2_000, currency="EUR")
        await process_dirty(pool, clock.now())
        await client.burn(card_number=card, points=250)  # spends most of the reward
        await client.refund(purchase.id, 2_000, "EUR")
        await process_dirty(pool, clock.now())
        after = await balances(pool, card)
        assert (after["available"], after["debt"]) == (0, -250)
        reversal = await pool.fetchrow(
            "SELECT points, debt_points FROM transactions WHERE member_id = $1"
            " AND kind = 'reward_reversal'",
            await member_id_of(pool, card),
        )
        assert (reversal["points"], reversal["debt_points"]) == (300, 250)
        # The next purchase repays debt first, and meets the challenge again.
        await client.earn(card_number=card, amount_cents=1_000, currency="EUR")
        await process_dirty(pool, clock.now())
    final = await balances(pool, card)
    assert final["debt"] == -240  # 10 points repaid
    assert final["available"] == 300  # the reward paid again (cycle 2)
    await assert_ledger_clean(pool)


async def test_kinds_distinct_partners_weekly_streak_nth_purchase_and_anniversary(
    make_partner, make_member, client_for, pool, clock
):
    shops = [await make_partner() for _ in range(3)]
    start = clock.now()
    distinct = await new_challenge(
        pool, clock, name="Three shops", kind="distinct_partners", target=3
    )
    streak = await new_challenge(
        pool, clock, name="Streak", kind="weekly_streak", target=3, ends_at=start + 60 * DAY
    )
    nth = await new_challenge(pool, clock, name="Fifth", kind="nth_purchase", target=5)
    card = await make_member()
    await pool.execute(
        "UPDATE challenges SET status = 'withdrawn' WHERE id <> ALL($1::bigint[])",
        [distinct, streak, nth],
    )
    clients = [client_for(s) for s in shops]
    for c in clients:
        await c.__aenter__()
    try:
        # Two purchases at shop 0 and one at shop 1 in week 1.
        await clients[0].earn(card_number=card, amount_cents=500, currency="EUR")
        await clients[0].earn(card_number=card, amount_cents=500, currency="EUR")
        await clients[1].earn(card_number=card, amount_cents=500, currency="EUR")
        await process_dirty(pool, clock.now())
        assert (await enrolment(pool, distinct, card))["progress"] == 2
        assert (await enrolment(pool, streak, card))["progress"] == 1
        assert (await enrolment(pool, nth, card))["progress"] == 3
        # Week 2 skipped, weeks 3 and 4: the longest run is 2 weeks.
        clock.advance(14 * DAY)
        await clients[2].earn(card_number=card, amount_cents=500, currency="EUR")
        clock.advance(7 * DAY)
        await clients[2].earn(card_number=card, amount_cents=500, currency="EUR")
        await process_dirty(pool, clock.now())
        assert (await enrolment(pool, distinct, card))["met"]
        s = await enrolment(pool, streak, card)
        assert (s["progress"], s["met"]) == (2, False)
        n = await enrolment(pool, nth, card)
        assert (n["progress"], n["met"]) == (5, True)
        clock.advance(7 * DAY)
        await clients[0].earn(card_number=card, amount_cents=500, currency="EUR")
        await process_dirty(pool, clock.now())
        assert (await enrolment(pool, streak, card))["met"]
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)
    assert sorted(p for _, p in await rewards_of(pool, card)) == [100, 100, 100]

    # A member whose 5th purchase came before the window never meets it.
    veteran = await make_member()
    async with client_for(shops[0]) as client:
        for _ in range(5):
            await client.earn(card_number=veteran, amount_cents=100, currency="EUR")
        clock.advance(DAY)
        late = await new_challenge(pool, clock, name="Fifth again", kind="nth_purchase", target=5)
        await client.earn(card_number=veteran, amount_cents=100, currency="EUR")
        await process_dirty(pool, clock.now())
    row = await enrolment(pool, late, veteran)
    assert (row["progress"], row["met"]) == (6, False)

    # Anniversary: a member who joined a year ago buys within the week.
    year_ago = clock.now() - timedelta(days=366)
    jubilee = await make_member()
    await pool.execute(
        "UPDATE members SET created_at = $2 WHERE card_number = $1", jubilee, year_ago
    )
    anniversary = await new_challenge(
        pool, clock, name="Happy anniversary", kind="anniversary", target=1
    )
    async with client_for(shops[1]) as client:
        await client.earn(card_number=jubilee, amount_cents=100, currency="EUR")
        await client.earn(card_number=card, amount_cents=100, currency="EUR")  # joined this year
        await process_dirty(pool, clock.now())
    assert (await enrolment(pool, anniversary, jubilee))["met"]
    assert not (await enrolment(pool, anniversary, card))["met"]
    await assert_ledger_clean(pool)


async def test_opt_in_audience_and_withdrawn_challenges_are_not_enrolled_or_paid(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    opt_in = await new_challenge(pool, clock, name="Join me", enrolment="opt_in", target=1)
    gold = await new_challenge(
        pool, clock, name="Gold only", audience="tier", audience_tier="gold", target=1
    )
    everyone = await new_challenge(pool, clock, name="Soon withdrawn", target=1)
    await pool.execute(
        "UPDATE challenges SET status = 'withdrawn' WHERE id <> ALL($1::bigint[])",
        [opt_in, gold, everyone],
    )
    async with client_for(shop) as client:
        await client.earn(card_number=card, amount_cents=100, currency="EUR")
        await pool.execute("UPDATE challenges SET status = 'withdrawn' WHERE id = $1", everyone)
        await process_dirty(pool, clock.now())
    assert await enrolment(pool, opt_in, card) is None
    assert await enrolment(pool, gold, card) is None
    assert await enrolment(pool, everyone, card) is None
    assert await rewards_of(pool, card) == []


async def test_two_processors_racing_pay_one_reward(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    cards = [await make_member() for _ in range(20)]
    challenge = await new_challenge(pool, clock, name="Race", target=1)
    await withdraw_others(pool, challenge)
    async with client_for(shop) as client:
        for card in cards:
            await client.earn(card_number=card, amount_cents=100, currency="EUR")
    # Mark them again, as if each had bought twice more, and race.
    await asyncio.gather(*(process_dirty(pool, clock.now()) for _ in range(3)))
    paid = await pool.fetchval(
        "SELECT count(*) FROM challenge_rewards r JOIN challenge_enrolments e"
        " ON e.id = r.enrolment_id WHERE e.challenge_id = $1",
        challenge,
    )
    assert paid == 20
    for card in cards:
        assert await rewards_of(pool, card) == [("reward", 100)]
    await assert_ledger_clean(pool)


async def test_a_sponsored_challenge_is_charged_on_the_sponsors_statement(
    make_partner, make_member, client_for, pool, clock
):
    sponsor = await make_partner(issuance_price_micros=12_000)
    shop = await make_partner(issuance_price_micros=10_000)
    sponsor_id = sponsor.partner_id
    card = await make_member()
    challenge = await new_challenge(
        pool, clock, name="Sponsored", target=1, reward_points=250, sponsor_id=sponsor_id
    )
    await withdraw_others(pool, challenge)
    async with client_for(shop) as client:
        earn = await client.earn(card_number=card, amount_cents=1_000, currency="EUR")
        await process_dirty(pool, clock.now())
    lot = await pool.fetchrow(
        "SELECT l.price_micros, l.state FROM lots l JOIN transactions t ON t.id = l.transaction_id"
        " WHERE t.kind = 'reward' AND t.member_id = $1",
        await member_id_of(pool, card),
    )
    assert (lot["price_micros"], lot["state"]) == (12_000, "available")
    day = business_date(clock.now())
    clock.set(day_end(day) + SETTLEMENT_DELAY + timedelta(minutes=1))
    await settle_due(pool, clock.now())
    line = await pool.fetchrow(
        "SELECT l.entries, l.points, l.amount_micros, l.amount_cents FROM statement_lines l"
        " JOIN statements s ON s.id = l.statement_id"
        " WHERE s.partner_id = $1 AND l.category = 'sponsored_rewards' AND l.entries > 0",
        sponsor_id,
    )
    # 250 points at 1.2 cent: the sponsor owes 3.00.
    assert (line["entries"], line["points"], line["amount_micros"], line["amount_cents"]) == (
        1,
        250,
        -3_000_000,
        -300,
    )
    # Reversed the next day: the sponsor is credited in full.
    async with client_for(shop) as client:
        await client.refund(earn.id, 1_000, "EUR")
        await process_dirty(pool, clock.now())
    day = business_date(clock.now())
    clock.set(day_end(day) + SETTLEMENT_DELAY + timedelta(minutes=1))
    await settle_due(pool, clock.now())
    back = await pool.fetchrow(
        "SELECT l.points, l.amount_cents FROM statement_lines l"
        " JOIN statements s ON s.id = l.statement_id"
        " WHERE s.partner_id = $1 AND l.category = 'sponsored_rewards'"
        " ORDER BY s.period_end DESC LIMIT 1",
        sponsor_id,
    )
    assert (back["points"], back["amount_cents"]) == (250, 300)
    await assert_ledger_clean(pool)


async def test_win_back_offers_a_personal_challenge_to_lapsed_members_once(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    lapsed, active, new = [await make_member() for _ in range(3)]
    async with client_for(shop) as client:
        await client.earn(card_number=lapsed, amount_cents=100, currency="EUR")
        clock.advance(61 * DAY)
        await client.earn(card_number=active, amount_cents=100, currency="EUR")
    challenge = await new_challenge(
        pool,
        clock,
        name="We miss you",
        description="Buy once in the next 14 days",
        target=1,
        enrolment="personal",
        personal_days=14,
        audience="lapsed",
        lapsed_days=60,
        reward_points=200,
        ends_at=clock.now() + 365 * DAY,
    )
    await withdraw_others(pool, challenge)
    # Earlier tests' members are lapsed too by now: each is offered it once.
    assert await offer_winback(pool, clock.now()) >= 1
    assert await offer_winback(pool, clock.now()) == 0
    offered = await enrolment(pool, challenge, lapsed)
    assert offered["counts_until"] - offered["counts_from"] == 14 * DAY
    assert await enrolment(pool, challenge, active) is None
    assert await enrolment(pool, challenge, new) is None
    message = await pool.fetchrow(
        "SELECT params FROM inbox_messages WHERE member_id = $1 AND kind = 'challenge_offer'",
        await member_id_of(pool, lapsed),
    )
    assert message is not None and "We miss you" in message["params"]
    async with client_for(shop) as client:
        await client.earn(card_number=lapsed, amount_cents=100, currency="EUR")
        await process_dirty(pool, clock.now())
    assert await rewards_of(pool, lapsed) == [("reward", 200)]
    await assert_ledger_clean(pool)
