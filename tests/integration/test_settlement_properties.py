"""Property: random interleavings of earn, burn (one step and two phases),
capture, void, refund, release and expiry across several partners and
settlement periods settle exactly.

After each history:
- every ledger entry of the history's partners is in exactly one statement,
  the one whose period its booking time falls in;
- each statement line equals a direct computation from the transactions
  table (points x the price stored on each, rounded half-even with Decimal);
- the float equals the points liability valued directly from lots, holds and
  debt (not through the runs' incremental valuation);
- once the members' points are drained, the partners' nets over all time
  plus the programme's spread and breakage are exactly zero.

Members draw a tier (Bronze, Silver, Gold), so multiplied earns, their bonus
lots at price 0 (burned, expired, refunded) and refunds of them are part of
every history; a history can also upgrade a member at earn time. Bonus
points count in the liability's points and are worth 0 in its money.

Rewards (challenges', referrals') are part of the histories too: paid by a
sponsoring partner (charged on its statement's sponsored_rewards line, the
points worth its issuance price in the liability) or by the promo budget
(worth 0), and taken back (from the reward's lot, other lots, then debt).

Expiry happens 36 months after release; rather than settle 1,100 days per
example, an `age` step moves a member's available lots' expiry to within the
hour, as if those 36 months had passed for them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.db.pool import transaction
from api.ledger.burn import expire_holds
from api.ledger.lots import expire_due, release_due
from api.ledger.rewards import pay_reward, reverse_reward
from api.settlement.periods import SETTLEMENT_DELAY, business_date, day_end
from api.settlement.position import liability_now, programme_position
from api.settlement.run import settle_due
from partners.client.errors import PartnerApiError
from tests.conftest import balances

PARTNERS = st.fixed_dictionaries(
    {
        "issuance_price_micros": st.integers(5_000, 15_000),
        "redemption_price_micros": st.integers(4_000, 12_000),
        "return_window_days": st.integers(0, 3),
        "settlement_period": st.sampled_from(["daily", "daily", "weekly", "monthly"]),
        "earn_rate_millipoints_per_euro": st.sampled_from([1_000, 1_500, 2_000]),
    }
)
FRACTION = st.integers(1, 100)
REWARD = st.tuples(st.just("reward"), st.integers(0, 4), st.integers(0, 2), st.integers(1, 500))
STEP = st.one_of(
    st.tuples(st.just("earn"), st.integers(0, 3), st.integers(0, 2), st.integers(1, 40_000)),
    st.tuples(st.just("burn"), st.integers(0, 3), st.integers(0, 2), FRACTION),
    st.tuples(st.just("authorize"), st.integers(0, 3), st.integers(0, 2), FRACTION),
    st.tuples(st.just("capture"), st.integers(0, 20), FRACTION),
    st.tuples(st.just("void"), st.integers(0, 20)),
    st.tuples(st.just("refund"), st.integers(0, 30), FRACTION),
    st.tuples(st.just("advance"), st.integers(1, 80)),
    st.tuples(st.just("age"), st.integers(0, 2)),
    # A reward (a challenge's, a referral's) from a sponsoring partner or, for
    # an index past the partners, the promo budget; and taking one back.
    REWARD,
    REWARD,  # twice as likely as the other steps: histories are short
    st.tuples(st.just("take_back"), st.integers(0, 20)),
)


TIER = st.sampled_from(["bronze", "silver", "gold"])


async def _promo_balance(pool) -> int:
    return await pool.fetchval(
        "SELECT sum(balance) FROM accounts WHERE kind = 'programme_promo'"
        " AND member_id IS NULL AND partner_id IS NULL"
    )


@dataclass
class History:
    partners: list[Any]
    cards: list[str]
    earns: list[Any] = field(default_factory=list)
    holds: list[Any] = field(default_factory=list)
    rewards: list[Any] = field(default_factory=list)


def half_even_cents(micros: int) -> int:
    return int((Decimal(micros) / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    terms=st.lists(PARTNERS, min_size=2, max_size=4),
    steps=st.lists(STEP, min_size=5, max_size=35),
    tiers=st.lists(TIER, min_size=3, max_size=3),
)
async def test_statements_equal_the_ledger_and_the_programme_adds_up(
    terms, steps, tiers, make_partner, make_member, client_for, pool, clock
):
    partners = [await make_partner(**t) for t in terms]
    history = History(partners, [await make_member() for _ in range(3)])
    promo_before = await _promo_balance(pool)
    for card, tier in zip(history.cards, tiers, strict=True):
        await pool.execute(
            "INSERT INTO member_tiers (member_id, tier_code, since)"
            " SELECT id, $2, $3 FROM members WHERE card_number = $1",
            card,
            tier,
            clock.now(),
        )
    clients = [client_for(p) for p in partners]
    for client in clients:
        await client.__aenter__()
    try:
        for step in steps:
            await _run(step, history, clients, pool, clock)
        await _drain(history, clients, pool, clock)
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)
    await _settle_everything(pool, clock)

    partner_ids = [p.partner_id for p in partners]
    await _assert_every_entry_settled_once_in_its_period(pool, partner_ids)
    await _assert_lines_equal_transactions(pool, partner_ids)
    position = await programme_position(pool)
    assert position.liability == await liability_now(pool)
    assert position.liability.points == 0 and position.liability.micros == 0
    # Some bonus was issued, and none of it was charged to a partner (the lines).
    bonus_issued = await pool.fetchval(
        "SELECT coalesce(sum(bonus_points), 0) FROM transactions t"
        " JOIN members m ON m.id = t.member_id"
        " WHERE t.kind = 'earn' AND m.card_number = ANY($1::text[])",
        history.cards,
    )
    promo_rewards = await pool.fetchval(
        "SELECT coalesce(sum(CASE t.kind WHEN 'reward' THEN t.points ELSE -t.points END), 0)"
        " FROM transactions t JOIN members m ON m.id = t.member_id"
        " WHERE t.kind IN ('reward', 'reward_reversal') AND t.sponsor_id IS NULL"
        " AND m.card_number = ANY($1::text[])",
        history.cards,
    )
    promo_spent = promo_before - await _promo_balance(pool)
    assert promo_rewards <= promo_spent <= bonus_issued + promo_rewards
    assert position.float_cents == 0
    # Nothing is outstanding: what partners paid net is the programme's revenue.
    assert -position.partners_net_cents == position.spread_cents + position.breakage_cents


async def _run(step, history: History, clients, pool, clock) -> None:
    kind = step[0]
    try:
        if kind == "earn":
            _, p, m, cents = step
            p %= len(clients)
            earn = await clients[p].earn(
                card_number=history.cards[m], amount_cents=cents, currency="EUR"
            )
            history.earns.append((p, earn))
        elif kind in ("burn", "authorize"):
            _, p, m, fraction = step
            p %= len(clients)
            available = (await balances(pool, history.cards[m]))["available"]
            points = available * fraction // 100
            if points == 0:
                return
            if kind == "burn":
                await clients[p].burn(card_number=history.cards[m], points=points)
            else:
                hold = await clients[p].authorize(
                    card_number=history.cards[m], points=points, hold_minutes=600
                )
                history.holds.append((p, hold))
        elif kind in ("capture", "void"):
            if not history.holds:
                return
            p, hold = history.holds.pop(step[1] % len(history.holds))
            if kind == "capture":
                await clients[p].capture(hold.id, max(1, hold.points * step[2] // 100))
            else:
                await clients[p].void(hold.id)
        elif kind == "refund":
            if not history.earns:
                return
            p, earn = history.earns[step[1] % len(history.earns)]
            current = await clients[p].get_transaction(earn.id)
            left = current.amount_cents - current.amount_refunded_cents
            if left > 0:
                await clients[p].refund(earn.id, max(1, left * step[2] // 100), "EUR")
        elif kind == "advance":
            clock.advance(timedelta(hours=step[1]))
            await _jobs(pool, clock)
            await settle_due(pool, clock.now())
        elif kind == "reward":
            _, p, m, points = step
            sponsor = history.partners[p].partner_id if p < len(history.partners) else None
            member_id = await pool.fetchval(
                "SELECT id FROM members WHERE card_number = $1", history.cards[m]
            )
            reward_id = await transaction(
                pool,
                lambda conn: pay_reward(
                    conn,
                    member_id=member_id,
                    points=points,
                    sponsor_id=sponsor,
                    memo="Property reward",
                    now=clock.now(),
                ),
            )
            history.rewards.append(reward_id)
        elif kind == "take_back":
            if not history.rewards:
                return
            reward_id = history.rewards.pop(step[1] % len(history.rewards))
            await transaction(pool, lambda conn: reverse_reward(conn, reward_id, clock.now()))
        elif kind == "age":
            member_id = await pool.fetchval(
                "SELECT id FROM members WHERE card_number = $1", history.cards[step[1]]
            )
            await pool.execute(
                "UPDATE lots SET expires_at = $2 WHERE member_id = $1 AND state = 'available'"
                " AND points_remaining > 0",
                member_id,
                clock.now() + timedelta(minutes=30),
            )
    except PartnerApiError as exc:
        # A capture past its hold's deadline is refused; that is a valid history too.
        assert exc.status in (409, 422), exc


async def _jobs(pool, clock) -> None:
    await expire_holds(pool, clock.now())
    await release_due(pool, clock.now())
    await expire_due(pool, clock.now())


async def _drain(history: History, clients, pool, clock) -> None:
    """Finish every hold, repay every debt, release and spend every point."""
    for p, hold in history.holds:
        current = await clients[p].get_transaction(hold.id)
        if current.status == "authorized":
            await clients[p].void(hold.id)
    for card in history.cards:
        debt = (await balances(pool, card))["debt"]
        if debt < 0:  # 1 point per euro at least: earn enough to repay it
            # At any partner: repaid at another issuance price than the debt
            # was made at, which settlement must still value exactly.
            await clients[0].earn(card_number=card, amount_cents=-debt * 100, currency="EUR")
    clock.advance(timedelta(days=4))
    await _jobs(pool, clock)
    for card in history.cards:
        available = (await balances(pool, card))["available"]
        if available:
            await clients[-1].burn(card_number=card, points=available)
        assert await balances(pool, card) == {"available": 0, "pending": 0, "held": 0, "debt": 0}


async def _settle_everything(pool, clock) -> None:
    """Run settlement day by day until weekly and monthly periods have closed too."""
    while await pool.fetchval(
        "SELECT count(*) FROM journal_entries e"
        " WHERE NOT EXISTS (SELECT FROM settled_entries se WHERE se.entry_id = e.id)"
    ):
        clock.set(day_end(business_date(clock.now())) + SETTLEMENT_DELAY + timedelta(minutes=1))
        await settle_due(pool, clock.now())


async def _assert_every_entry_settled_once_in_its_period(pool, partner_ids) -> None:
    misplaced = await pool.fetch(
        """
        SELECT e.id, e.kind, e.booked_at, s.period_start, s.period_end
        FROM journal_entries e
        LEFT JOIN settled_entries se ON se.entry_id = e.id
        LEFT JOIN statements s ON s.id = se.statement_id
        WHERE e.partner_id = ANY($1::bigint[])
          AND (s.id IS NULL OR s.partner_id <> e.partner_id
               OR (e.kind <> 'settle'
                   AND NOT (e.booked_at >= s.period_start AND e.booked_at < s.period_end)))
        """,
        partner_ids,
    )
    assert misplaced == []


async def _assert_lines_equal_transactions(pool, partner_ids) -> None:
    """Recompute each statement from the transactions table, not the postings."""
    statements = await pool.fetch(
        "SELECT id, partner_id, period_start, period_end, net_cents FROM statements"
        " WHERE partner_id = ANY($1::bigint[])",
        partner_ids,
    )
    moves = await pool.fetch(
        """
        SELECT partner_id, 'points_issued' AS category, created_at AS at, points,
               -points::numeric * price_micros AS micros
        FROM transactions WHERE kind = 'earn' AND partner_id = ANY($1::bigint[]) AND points > 0
        UNION ALL
        SELECT partner_id, 'refunds', created_at, points, points::numeric * price_micros
        FROM transactions WHERE kind = 'refund' AND partner_id = ANY($1::bigint[]) AND points > 0
        UNION ALL
        SELECT partner_id, 'points_redeemed', finished_at, points_captured,
               points_captured::numeric * price_micros
        FROM transactions WHERE kind = 'burn' AND status = 'captured'
          AND partner_id = ANY($1::bigint[]) AND points_captured > 0
        UNION ALL
        SELECT sponsor_id, 'sponsored_rewards', created_at,
               CASE kind WHEN 'reward' THEN -points ELSE points END,
               CASE kind WHEN 'reward' THEN -points ELSE points END::numeric * price_micros
        FROM transactions WHERE kind IN ('reward', 'reward_reversal')
          AND sponsor_id = ANY($1::bigint[])
        """,
        partner_ids,
    )
    expected: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for move in moves:
        [statement] = [
            s
            for s in statements
            if s["partner_id"] == move["partner_id"]
            and s["period_start"] <= move["at"] < s["period_end"]
        ]
        line = expected[(statement["id"], move["category"])]
        line[0] += 1
        line[1] += move["points"]
        line[2] += int(move["micros"])
    lines = await pool.fetch(
        "SELECT statement_id, category, entries, points, amount_micros, amount_cents"
        " FROM statement_lines WHERE statement_id = ANY($1::bigint[])",
        [s["id"] for s in statements],
    )
    actual = {(r["statement_id"], r["category"]): r for r in lines}
    for statement in statements:
        net = 0
        for category in ("points_issued", "refunds", "points_redeemed", "sponsored_rewards"):
            entries, points, micros = expected.get((statement["id"], category), [0, 0, 0])
            row = actual[(statement["id"], category)]
            assert (row["entries"], row["points"], int(row["amount_micros"])) == (
                entries,
                abs(points),  # a sponsored line nets rewards (-) and reversals (+)
                micros,
            )
            assert row["amount_cents"] == half_even_cents(micros)
            net += half_even_cents(micros)
        assert statement["net_cents"] == net
