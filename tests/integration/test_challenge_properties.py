"""Property: random earns, refunds, clock moves and processor runs; after
every run, each enrolment's progress equals what the member's surviving
purchases imply (computed here in Python from the history, independently of
the processor's SQL), a reward stands exactly while the challenge is met,
each payment follows a change from unmet to met (paid exactly once per
such change, every other one reversed), and `ledger check` stays clean.

Each example gets a member of its own, three partners and one challenge of
every kind, restricted to those partners, with random targets and windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.engagement.challenge_progress import (
    ANNIVERSARY_DAYS,
    FROZEN_AFTER_DAYS,
    process_dirty,
)
from api.ledger.check import check_ledger

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
KINDS = ("spend", "purchases", "distinct_partners", "weekly_streak", "nth_purchase", "anniversary")
STEP = st.one_of(
    st.tuples(st.just("earn"), st.integers(0, 2), st.integers(100, 4_000)),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 100)),
    st.tuples(st.just("advance"), st.integers(1, 240)),  # hours
    st.tuples(st.just("process")),
)
TARGETS = st.fixed_dictionaries(
    {
        "spend": st.integers(500, 8_000),
        "purchases": st.integers(1, 4),
        "distinct_partners": st.integers(2, 3),
        "weekly_streak": st.integers(2, 3),
        "nth_purchase": st.integers(2, 5),
        "anniversary": st.just(1),
    }
)


@dataclass
class Purchase:
    id: Any
    partner: int
    booked_at: datetime
    amount: int
    refunded: int = 0

    @property
    def survives(self) -> bool:
        return self.refunded < self.amount


@dataclass
class Challenge:
    id: int
    kind: str
    target: int
    partners: list[int]
    starts_at: datetime
    ends_at: datetime
    reward: int
    enrolled: bool = False  # processed while open, with a purchase changed
    met_before: bool = False  # as of the previous processor run
    payments: int = 0  # times it went from unmet to met


@dataclass
class History:
    member_since: datetime
    purchases: list[Purchase] = field(default_factory=list)
    dirty: bool = False


def _years_between(since: datetime, moment: datetime) -> int:
    """PostgreSQL's age(moment, since) in whole years (UTC)."""
    years = moment.year - since.year
    if (moment.month, moment.day, moment.time()) < (since.month, since.day, since.time()):
        years -= 1
    return years


def _add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February: PostgreSQL lands on the 28th
        return moment.replace(year=moment.year + years, day=28)


def _longest_weekly_run(moments: list[datetime]) -> int:
    mondays = sorted(
        {
            (local := m.astimezone(AMSTERDAM)).date() - timedelta(days=local.weekday())
            for m in moments
        }
    )
    best = run = 0
    previous = None
    for monday in mondays:
        run = run + 1 if previous is not None and monday - previous == timedelta(days=7) else 1
        best = max(best, run)
        previous = monday
    return best


def expected(challenge: Challenge, history: History) -> tuple[int, bool]:
    """(progress, met) from the surviving purchases, by the documented rules."""
    at_partners = [p for p in history.purchases if p.survives and p.partner in challenge.partners]
    window = [p for p in at_partners if challenge.starts_at <= p.booked_at < challenge.ends_at]
    kind, target = challenge.kind, challenge.target
    if kind == "spend":
        progress = sum(p.amount - p.refunded for p in window)
    elif kind == "purchases":
        progress = len(window)
    elif kind == "distinct_partners":
        progress = len({p.partner for p in window})
    elif kind == "weekly_streak":
        progress = _longest_weekly_run([p.booked_at for p in window])
    elif kind == "nth_purchase":
        ever = [p for p in at_partners if p.booked_at < challenge.ends_at]
        before = [p for p in ever if p.booked_at < challenge.starts_at]
        return len(ever), len(ever) >= target and len(before) < target
    else:
        since = history.member_since

        def in_anniversary_week(moment: datetime) -> bool:
            years = _years_between(since, moment)
            return years >= 1 and moment < _add_years(since, years) + timedelta(
                days=ANNIVERSARY_DAYS
            )

        progress = min(1, sum(1 for p in window if in_anniversary_week(p.booked_at)))
    return progress, progress >= target


async def _create_challenges(pool, clock, partner_ids, targets, lengths) -> list[Challenge]:
    now = clock.now()
    made = []
    for kind, days in zip(KINDS, lengths, strict=True):
        starts, ends = now - timedelta(minutes=1), now + timedelta(days=days)
        challenge_id = await pool.fetchval(
            "INSERT INTO challenges (name, kind, target, partner_ids, starts_at, ends_at,"
            " enrolment, audience, reward_points, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, 'automatic', 'everyone', $7, $8, $8) RETURNING id",
            f"{kind} x{targets[kind]}",
            kind,
            targets[kind],
            partner_ids,
            starts,
            ends,
            10 + len(made),
            now,
        )
        made.append(
            Challenge(challenge_id, kind, targets[kind], partner_ids, starts, ends, 10 + len(made))
        )
    return made


async def _check(
    pool, member_id: int, challenges: list[Challenge], history: History, now: datetime
) -> None:
    rows = {
        r["challenge_id"]: r
        for r in await pool.fetch(
            "SELECT e.challenge_id, e.progress, e.met, e.rewarded,"
            " (SELECT count(*) FROM challenge_rewards r WHERE r.enrolment_id = e.id) AS paid,"
            " (SELECT count(*) FROM challenge_rewards r WHERE r.enrolment_id = e.id"
            "  AND r.reversal_id IS NULL) AS standing"
            " FROM challenge_enrolments e WHERE e.member_id = $1",
            member_id,
        )
    }
    standing_points = 0
    for challenge in challenges:
        row = rows.get(challenge.id)
        progress, met = expected(challenge, history)
        assert (row is not None) == challenge.enrolled, challenge
        if row is None:
            continue
        frozen_since = challenge.ends_at + timedelta(days=FROZEN_AFTER_DAYS)
        if now >= frozen_since and not challenge.met_before:
            # Unmet and closed a day ago: frozen, never met again.
            assert (row["met"], row["rewarded"], row["standing"]) == (False, False, 0)
            continue
        assert (row["progress"], row["met"]) == (progress, met), challenge
        assert row["rewarded"] == met
        assert row["standing"] == (1 if met else 0)
        if met and not challenge.met_before:
            challenge.payments += 1
        challenge.met_before = met
        assert row["paid"] == challenge.payments, challenge
        standing_points += challenge.reward if met else 0
    net = await pool.fetchval(
        "SELECT coalesce(sum(CASE kind WHEN 'reward' THEN points ELSE -points END), 0)"
        " FROM transactions WHERE member_id = $1 AND kind IN ('reward', 'reward_reversal')",
        member_id,
    )
    assert net == standing_points
    async with pool.acquire() as conn:
        assert [v.describe() for v in await check_ledger(conn)] == []


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(STEP, min_size=4, max_size=30),
    targets=TARGETS,
    lengths=st.lists(st.integers(2, 30), min_size=6, max_size=6),
    anniversary_in=st.integers(-3, 20),
)
async def test_progress_and_rewards_follow_the_surviving_purchases(
    steps, targets, lengths, anniversary_in, make_partner, make_member, client_for, pool, clock
):
    partners = [await make_partner(return_window_days=0) for _ in range(3)]
    partner_ids = [p.partner_id for p in partners]
    card = await make_member()
    member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
    # The membership anniversary falls `anniversary_in` days from now.
    since = _add_years(clock.now() + timedelta(days=anniversary_in), -1)
    await pool.execute("UPDATE members SET created_at = $2 WHERE id = $1", member_id, since)
    challenges = await _create_challenges(pool, clock, partner_ids, targets, lengths)
    history = History(member_since=since)
    clients = [client_for(p) for p in partners]
    for client in clients:
        await client.__aenter__()
    try:
        for step in [*steps, ("process",)]:
            if step[0] == "earn":
                _, partner, amount = step
                earn = await clients[partner].earn(
                    card_number=card, amount_cents=amount, currency="EUR"
                )
                history.purchases.append(
                    Purchase(earn.id, partner_ids[partner], clock.now(), amount)
                )
                history.dirty = True
            elif step[0] == "refund" and history.purchases:
                _, index, percent = step
                purchase = history.purchases[index % len(history.purchases)]
                left = purchase.amount - purchase.refunded
                if left == 0:
                    continue
                amount = max(1, left * percent // 100)
                partner = partner_ids.index(purchase.partner)
                await clients[partner].refund(purchase.id, amount, "EUR")
                purchase.refunded += amount
                history.dirty = True
            elif step[0] == "advance":
                clock.advance(timedelta(hours=step[1]))
            elif step[0] == "process":
                now = clock.now()
                if history.dirty:  # automatic enrolment: a purchase changed while open
                    for challenge in challenges:
                        challenge.enrolled |= challenge.starts_at <= now < challenge.ends_at
                history.dirty = False
                await process_dirty(pool, now)
                await _check(pool, member_id, challenges, history, now)
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)
        # Later examples' challenges must not see this member's purchases.
        await pool.execute(
            "UPDATE challenges SET ends_at = greatest(starts_at + interval '1 second', $2)"
            " WHERE id = ANY($1::bigint[])",
            [c.id for c in challenges],
            clock.now(),
        )


def test_the_weekly_run_helper_counts_consecutive_amsterdam_weeks():
    monday = datetime(2026, 11, 2, 12, tzinfo=UTC)
    weeks = [
        monday,
        monday + timedelta(days=8),
        monday + timedelta(days=14),
        monday + timedelta(days=35),
    ]
    assert _longest_weekly_run(weeks) == 3
    # Sunday 23:30 UTC is Monday in Amsterdam: the next week.
    assert _longest_weekly_run([datetime(2026, 11, 8, 23, 30, tzinfo=UTC), monday]) == 2
