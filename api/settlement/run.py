"""Settlement runs: where money is settled.

A run closes one business day. In one database transaction it

1. claims the day (`settlement_runs`, unique per day: a second worker waits on
   the claim, then finds the day settled and does nothing);
2. opens a statement for every partner whose period ends that day, and the
   programme's own statement;
3. files every ledger entry booked before the period's end that no statement
   holds yet into its partner's statement (`settled_entries`, whose primary
   key makes "exactly once" a constraint);
4. writes each statement's lines: the exact sum of points x the price stored
   on each entry, rounded half-even once per line;
5. posts the money side, balanced EUR entries: each partner's net to its
   `partner_money` account against the programme float, then the revenue the
   day recognised (breakage, spread) out of the float, so that the float
   equals the points liability valued at the lots' issuance prices;
6. announces `statement.closed` to each partner (webhook outbox, same transaction).

Everything is set-based SQL over the day's entries; Python only rounds the few
line totals and builds the handful of money entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from api.db.pool import transaction
from api.db.sql import Query
from api.errors import Conflict, DomainError
from api.ledger.accounts import programme_account
from api.ledger.entries import ENTRY_CTES, ENTRY_RESULT, Postings, entry_params, require_moved
from api.ledger.idempotency import go_cte
from api.money import cents_half_even
from api.settlement.periods import (
    LATE_ENTRY_WINDOW,
    Period,
    business_date,
    day_end,
    last_due_day,
    period_ending,
)
from api.webhooks.outbox import STATEMENT_CLOSED, Event, enqueue

# Categories of a partner statement, in the order a statement shows them.
PARTNER_CATEGORIES = ("points_issued", "refunds", "points_redeemed", "sponsored_rewards")
PROGRAMME_CATEGORIES = ("breakage", "spread", "liability")
CATEGORY_OF_ENTRY_KIND = {
    "earn": "points_issued",
    "refund": "refunds",
    "capture": "points_redeemed",
    # A sponsor pays for the rewards it sponsors (api/ledger/rewards.py) and
    # is credited for those taken back: one line, net.
    "reward": "sponsored_rewards",
    "reward_reversal": "sponsored_rewards",
    # A partner matching members' donations (api/charity/matching.py) pays
    # for the points it gives the charity as for a sponsored reward.
    "donation_match": "sponsored_rewards",
}
# A run settles at most this many days in one call (a worker that was down
# for a long time catches up over several ticks, each bounded).
CATCH_UP_DAYS_MAX = 62
# Where the first run looks from: before any entry can have been booked.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RunResult:
    business_date: date
    run_id: int
    created: bool  # False: the day was already settled (by this or another worker)
    statements: int
    entries: int


async def settle_day(
    pool: asyncpg.Pool, day: date, now: datetime, *, started_by_admin_id: int | None = None
) -> RunResult:
    """Close business day `day`: safe to call again, and from two workers at once.

    `started_by_admin_id` names the admin who asked for it from the back-office
    (None for the periodic job); they may not approve the run's payouts."""
    period_end = day_end(day)
    if period_end > now:
        raise DomainError(f"{day} has not ended yet", code="period_not_over")
    return await transaction(
        pool, lambda conn: _settle(conn, day, period_end, now, started_by_admin_id)
    )


async def unsettled_days(conn: asyncpg.Connection | asyncpg.Pool, target: date) -> list[date]:
    """The days a settlement up to `target` must close, oldest first: every
    day after the last settled one (or, before the first run, from the day of
    the first booked entry), at most CATCH_UP_DAYS_MAX + 1 of them, so a
    caller can tell "too many" from "exactly the maximum"."""
    last = await conn.fetchval("SELECT max(business_date) FROM settlement_runs")
    if last is None:
        first_booked = await conn.fetchval("SELECT min(booked_at) FROM journal_entries")
        last = target - timedelta(days=1) if first_booked is None else _day_before(first_booked)
    days: list[date] = []
    day = last + timedelta(days=1)
    while day <= target and len(days) <= CATCH_UP_DAYS_MAX:
        days.append(day)
        day += timedelta(days=1)
    return days


async def settle_due(pool: asyncpg.Pool, now: datetime) -> list[RunResult]:
    """Settle every day that has ended and has no run yet, oldest first (the job)."""
    days = await unsettled_days(pool, last_due_day(now))
    return [await settle_day(pool, day, now) for day in days[:CATCH_UP_DAYS_MAX]]


def _day_before(moment: datetime) -> date:
    return business_date(moment) - timedelta(days=1)


async def _settle(
    conn: asyncpg.Connection,
    day: date,
    period_end: datetime,
    now: datetime,
    started_by_admin_id: int | None = None,
) -> RunResult:
    latest = await conn.fetchval("SELECT max(business_date) FROM settlement_runs")
    if latest is not None and latest >= day:
        done = await conn.fetchrow(
            "SELECT id, statements, entries FROM settlement_runs WHERE business_date = $1", day
        )
        if done is None:
            raise Conflict(
                f"{day} comes before {latest}, the last settled day; its entries are"
                " already in later statements",
                code="settlement_out_of_order",
            )
        return RunResult(day, done["id"], False, done["statements"], done["entries"])
    if latest is not None and latest < day - timedelta(days=1):
        raise Conflict(
            f"settle {latest + timedelta(days=1)} first: days are settled in order",
            code="settlement_gap",
        )
    # The pool plans statements generically, which suits the ledger's key
    # lookups; a run's statements scan a day of entries and want plans made
    # for their actual parameters.
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    run_id = await conn.fetchval(
        "INSERT INTO settlement_runs (business_date, period_end, started_at, started_by_admin_id)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
        day,
        period_end,
        now,
        started_by_admin_id,
    )
    if run_id is None:  # another worker settled it while we waited on its claim
        done = await conn.fetchrow(
            "SELECT id, statements, entries FROM settlement_runs WHERE business_date = $1", day
        )
        return RunResult(day, done["id"], False, done["statements"], done["entries"])
    previous = await conn.fetchrow(
        "SELECT period_end, liability_points, liability_micros FROM settlement_runs"
        " WHERE business_date < $1 ORDER BY business_date DESC LIMIT 1",
        day,
    )
    statements = await _open_statements(conn, run_id, day, period_end, previous, now)
    filed, partner_lines, members = await _file_and_sum(conn, statements, period_end)
    entries = sum(filed.values())
    position = await _recognise(conn, run_id, previous, partner_lines, members)
    await _post_money(conn, statements, filed, partner_lines, position, now)
    await conn.execute(
        "UPDATE settlement_runs SET finished_at = $2, statements = $3, entries = $4,"
        " liability_points = $5, liability_micros = $6 WHERE id = $1",
        run_id,
        now,
        len(statements),
        entries,
        position.liability_points,
        position.liability_micros,
    )
    await _announce(conn, run_id, now)
    return RunResult(day, run_id, True, len(statements), entries)


@dataclass(frozen=True, slots=True)
class _Opened:
    statement_id: int
    partner_id: int | None
    money_account_id: int | None
    since: datetime  # the earliest booking time the run files into it


async def _open_statements(
    conn: asyncpg.Connection,
    run_id: int,
    day: date,
    period_end: datetime,
    previous: asyncpg.Record | None,
    now: datetime,
) -> list[_Opened]:
    partners = await conn.fetch(
        """
        SELECT p.id, p.settlement_period, p.created_at, money.id AS money_account_id,
               (SELECT max(s.period_end) FROM statements s WHERE s.partner_id = p.id) AS last_end
        FROM partners p
        JOIN accounts money ON money.partner_id = p.id AND money.kind = 'partner_money'
        WHERE p.created_at < $1
        ORDER BY p.id
        """,
        period_end,
    )
    keys: list[int] = [0]  # 0 is the programme's statement
    periods: list[Period] = ["daily"]
    starts = [day_end(day - timedelta(days=1))]
    sinces = [EARLIEST if previous is None else previous["period_end"] - LATE_ENTRY_WINDOW]
    money: dict[int, int | None] = {0: None}
    for partner in partners:
        bounds = period_ending(partner["settlement_period"], day)
        if bounds is None:
            continue
        keys.append(partner["id"])
        periods.append(partner["settlement_period"])
        starts.append(bounds[0])
        # Entries still unsettled can be no older than the last close (less the
        # window for late commits) or, for a new partner, than the partner.
        sinces.append((partner["last_end"] or partner["created_at"]) - LATE_ENTRY_WINDOW)
        money[partner["id"]] = partner["money_account_id"]
    rows = await conn.fetch(
        """
        INSERT INTO statements (run_id, partner_id, period, period_start, period_end, closed_at,
                                since)
        SELECT $1, nullif(k, 0), p, s, $2, $3, c
        FROM unnest($4::bigint[], $5::text[], $6::timestamptz[], $7::timestamptz[]) AS x(k, p, s, c)
        RETURNING id, coalesce(partner_id, 0) AS key, since
        """,
        run_id,
        period_end,
        now,
        keys,
        periods,
        starts,
        sinces,
    )
    return [_Opened(r["id"], r["key"] or None, money[r["key"]], r["since"]) for r in rows]


@dataclass(frozen=True, slots=True)
class _Line:
    statement_id: int
    category: str
    entries: int
    points: int
    amount_micros: int

    @property
    def amount_cents(self) -> int:
        return cents_half_even(self.amount_micros)


# Files every unsettled entry booked in [since, period end) into its
# statement, and sums the money lines of what it filed, in one statement: one
# range scan of the journal hash-joined to the run's statements by partner
# (key 0: the programme's own entries). An entry settled already (a late
# arrival is looked for from `since` on) conflicts and is skipped, so the
# primary key, not a check beforehand, is what keeps "exactly once".
_FILE_AND_SUM = """
WITH filed AS (
    INSERT INTO settled_entries (entry_id, statement_id)
    SELECT e.id, s.id
    FROM journal_entries e
    JOIN unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS s(key, id, since)
      ON s.key = coalesce(e.partner_id, 0)
    WHERE e.booked_at < $4 AND e.booked_at >= $5 AND e.booked_at >= s.since
    ON CONFLICT (entry_id) DO NOTHING
    RETURNING entry_id, statement_id
)
SELECT f.statement_id, e.kind, count(*) AS entries, sum(p.amount)::bigint AS points,
       sum(p.amount::numeric * e.price_micros) AS micros
FROM filed f
JOIN journal_entries e ON e.id = f.entry_id
JOIN postings p ON p.entry_id = f.entry_id
JOIN accounts a ON a.id = p.account_id
WHERE e.kind IN ('earn', 'refund', 'capture', 'reward', 'reward_reversal', 'donation_match')
  AND a.kind IN ('partner_points_issued', 'partner_points_redeemed')
GROUP BY f.statement_id, e.kind
UNION ALL
SELECT statement_id, 'filed', count(*), 0, 0 FROM filed GROUP BY statement_id
UNION ALL
-- How the members' points (available, pending, held, debt: the liability in
-- points) moved, whoever moved them: partners, expiry, or the programme; and
-- what the earns that repaid debt were paid for those points (debt is worth
-- nothing to the float, so that payment is the programme's, as spread).
SELECT 0, 'members', 0, coalesce(sum(p.amount), 0)::bigint,
       coalesce(sum(p.amount::numeric * e.price_micros)
                FILTER (WHERE a.kind = 'member_debt' AND e.kind = 'earn'), 0)
FROM filed f
JOIN journal_entries e ON e.id = f.entry_id
JOIN postings p ON p.entry_id = f.entry_id
JOIN accounts a ON a.id = p.account_id
WHERE a.member_id IS NOT NULL
"""


@dataclass(slots=True)
class _MembersMoved:
    points: int  # onto members' accounts, debt included (negative when spent)
    debt_repaid_micros: int  # Σ points of debt repaid by earns x those earns' prices
    # Sponsored rewards (negative: the sponsors owe) and their reversals
    # (positive), as the sponsors' statements value them.
    sponsored_micros: int = 0
    sponsored_back_micros: int = 0
    # Donation matches (negative: the partners owe) and their points: paid
    # for, but never a member's, so no liability: recognised with breakage
    # (the programme holds that money for the charities' payouts).
    matched_micros: int = 0
    matched_points: int = 0


async def _file_and_sum(
    conn: asyncpg.Connection, statements: list[_Opened], period_end: datetime
) -> tuple[dict[int, int], list[_Line], _MembersMoved]:
    """(entries filed per statement, each partner statement's lines, how the
    filed entries moved members' points). A line
    is Σ points x stored price per category, signed as the partner sees it:
    an earn's posting on the partner's issued account is negative, because
    the partner owes for those points."""
    rows = await conn.fetch(
        _FILE_AND_SUM,
        [o.partner_id or 0 for o in statements],
        [o.statement_id for o in statements],
        [o.since for o in statements],
        period_end,
        min(o.since for o in statements),
    )
    filed = {r["statement_id"]: r["entries"] for r in rows if r["kind"] == "filed"}
    members = next(r for r in rows if r["kind"] == "members")
    moved = _MembersMoved(members["points"], int(members["micros"]))
    found: dict[tuple[int, str], tuple[int, int, int]] = {}  # entries, points, micros
    for r in rows:
        category = CATEGORY_OF_ENTRY_KIND.get(r["kind"])
        if category is None:
            continue
        entries, points, micros = found.get((r["statement_id"], category), (0, 0, 0))
        found[(r["statement_id"], category)] = (
            entries + r["entries"],
            points + r["points"],
            micros + int(r["micros"]),
        )
        if r["kind"] == "reward":
            moved.sponsored_micros += int(r["micros"])
        elif r["kind"] == "reward_reversal":
            moved.sponsored_back_micros += int(r["micros"])
        elif r["kind"] == "donation_match":
            moved.matched_micros += int(r["micros"])
            moved.matched_points -= r["points"]
    lines = []
    for opened in statements:
        if opened.partner_id is None:
            continue
        for category in PARTNER_CATEGORIES:
            entries, points, micros = found.get((opened.statement_id, category), (0, 0, 0))
            lines.append(_Line(opened.statement_id, category, entries, abs(points), micros))
    return filed, lines, moved


class _Position(msgspec.Struct, frozen=True):
    """What the run recognised for the programme, and the liability after it."""

    breakage_points: int
    breakage_micros: int
    spread_points: int
    spread_micros: int  # exact: lots' prices less redemption and refund prices
    liability_points: int
    liability_micros: int


# How the day's entries change the points liability, valued at the price of
# the lots the points left: a capture's points are the hold's lots less what
# went back (latest expiry first, as `RESTORE_HOLD_CTES` puts them back); a
# refund's come from the purchase's own lot (the earn's price), from debt
# (worth nothing: a debt is not a point the programme owes) and
# from other lots (`refund_lots`); an expiry's, or a closed account's
# forfeit, from `lot_expiries`.
_VALUATION = """
WITH run_entries AS (
    SELECT e.id, e.kind, e.transaction_id
    FROM statements s
    JOIN settled_entries se ON se.statement_id = s.id
    JOIN journal_entries e ON e.id = se.entry_id
    WHERE s.run_id = $1
      AND e.kind IN ('capture', 'refund', 'reward_reversal', 'expire', 'forfeit', 'lottery_ticket',
                     'donation', 'adjustment')
),
hold AS (
    SELECT hl.points, l.price_micros, t.points - t.points_captured AS restore,
           sum(hl.points) OVER (PARTITION BY t.id ORDER BY l.expires_at DESC, l.id DESC)
               - hl.points AS before
    FROM run_entries r
    JOIN transactions t ON t.id = r.transaction_id
    JOIN hold_lots hl ON hl.transaction_id = t.id
    JOIN lots l ON l.id = hl.lot_id
    WHERE r.kind = 'capture'
),
captured AS (
    SELECT coalesce(sum(c), 0)::bigint AS points,
           coalesce(sum(c::numeric * price_micros), 0) AS micros
    FROM (SELECT points - greatest(0, least(points, restore - before)) AS c, price_micros
          FROM hold) x
),
refunded AS (
    SELECT coalesce(sum(t.points), 0)::bigint AS points,
           coalesce(sum((t.points - coalesce(o.points, 0) - t.debt_points)::numeric
                        * t.price_micros + coalesce(o.micros, 0)), 0) AS micros
    FROM run_entries r
    JOIN transactions t ON t.id = r.transaction_id
    LEFT JOIN LATERAL (
        SELECT sum(x.points) AS points, sum(x.points::numeric * l.price_micros) AS micros
        FROM refund_lots x JOIN lots l ON l.id = x.lot_id
        WHERE x.transaction_id = t.id
    ) o ON true
    WHERE r.kind IN ('refund', 'reward_reversal')
),
expired AS (
    SELECT coalesce(sum(x.points), 0)::bigint AS points,
           coalesce(sum(x.points::numeric * l.price_micros), 0) AS micros
    FROM run_entries r
    JOIN lot_expiries x ON x.entry_id = r.id
    JOIN lots l ON l.id = x.lot_id
    -- closed accounts', tickets', donations' and debit adjustments' points too
    -- (a credit adjustment's lot is priced 0 and has no lot_expiries rows)
    WHERE r.kind IN ('expire', 'forfeit', 'lottery_ticket', 'donation', 'adjustment')
)
SELECT captured.points AS captured_points, captured.micros AS captured_micros,
       refunded.points AS refunded_points, refunded.micros AS refunded_micros,
       expired.points AS expired_points, expired.micros AS expired_micros
FROM captured, refunded, expired
"""


async def _recognise(
    conn: asyncpg.Connection,
    run_id: int,
    previous: asyncpg.Record | None,
    partner_lines: list[_Line],
    members: _MembersMoved,
) -> _Position:
    """The liability after the run and the revenue it recognised, exactly.
    In points it is simply what the members' accounts hold; in money each
    point counts at the price of the lot it sits in (points the programme
    issues, e.g. prizes and tier bonuses, sit in lots priced 0)."""
    moved = await conn.fetchrow(_VALUATION, run_id)

    def total(category: str, field: str) -> int:
        return sum(getattr(line, field) for line in partner_lines if line.category == category)

    # A sponsored reward is issued like an earn, its reversal credited like a
    # refund (its points leave the liability as a refund's do, `_VALUATION`).
    issued_micros = -total("points_issued", "amount_micros") - members.sponsored_micros
    redeemed_micros = total("points_redeemed", "amount_micros")
    refunds_micros = total("refunds", "amount_micros") + members.sponsored_back_micros
    captured_micros = int(moved["captured_micros"])
    refunded_micros = int(moved["refunded_micros"])
    expired_micros = int(moved["expired_micros"])
    before_points = 0 if previous is None else previous["liability_points"]
    before_micros = 0 if previous is None else int(previous["liability_micros"])
    return _Position(
        breakage_points=moved["expired_points"] + members.matched_points,
        breakage_micros=expired_micros - members.matched_micros,
        spread_points=moved["captured_points"],
        spread_micros=(captured_micros - redeemed_micros)
        + (refunded_micros - refunds_micros)
        + members.debt_repaid_micros,
        liability_points=before_points + members.points,
        liability_micros=before_micros
        + issued_micros
        - members.debt_repaid_micros
        - captured_micros
        - refunded_micros
        - expired_micros,
    )


_POST_MONEY = Query(f"WITH {go_cte(False)}, {ENTRY_CTES} SELECT {ENTRY_RESULT}")


async def _post_money(
    conn: asyncpg.Connection,
    statements: list[_Opened],
    filed: dict[int, int],
    partner_lines: list[_Line],
    position: _Position,
    now: datetime,
) -> None:
    """The EUR entries of the run, each filed in the statement it belongs to,
    then the statements' totals and lines."""
    float_id = await programme_account(conn, "programme_float")
    spread_id = await programme_account(conn, "programme_revenue_spread")
    breakage_id = await programme_account(conn, "programme_revenue_breakage")
    float_before = await conn.fetchval(
        "SELECT balance FROM accounts WHERE id = $1 FOR UPDATE", float_id
    )
    net_by_statement: dict[int, int] = {}
    for line in partner_lines:
        net_by_statement[line.statement_id] = (
            net_by_statement.get(line.statement_id, 0) + line.amount_cents
        )
    lines = list(partner_lines)
    money_entries: list[tuple[int, int]] = []  # (entry id, statement id)
    for opened in statements:
        if opened.partner_id is None:
            continue
        net = net_by_statement.get(opened.statement_id, 0)
        assert opened.money_account_id is not None
        postings = Postings().add(opened.money_account_id, net, "EUR").add(float_id, -net, "EUR")
        entry_id = await _post(conn, postings, now, partner_id=opened.partner_id)
        if entry_id is not None:
            money_entries.append((entry_id, opened.statement_id))
    # Recognise revenue so that the float equals the liability, in cents: the
    # breakage at its lots' prices, and the spread as the rest, which carries
    # the rounding of the day's statement lines (a few cents at most).
    float_after_partners = float_before - sum(net_by_statement.values())
    liability_cents = cents_half_even(position.liability_micros)
    breakage_cents = cents_half_even(position.breakage_micros)
    spread_cents = float_after_partners - liability_cents - breakage_cents
    programme = next(o for o in statements if o.partner_id is None)
    postings = (
        Postings()
        .add(float_id, -(spread_cents + breakage_cents), "EUR")
        .add(spread_id, spread_cents, "EUR")
        .add(breakage_id, breakage_cents, "EUR")
    )
    entry_id = await _post(conn, postings, now, partner_id=None)
    if entry_id is not None:
        money_entries.append((entry_id, programme.statement_id))
    net_by_statement[programme.statement_id] = spread_cents + breakage_cents
    lines += [
        _Line(
            programme.statement_id,
            "breakage",
            0,
            position.breakage_points,
            position.breakage_micros,
        ),
        _Line(programme.statement_id, "spread", 0, position.spread_points, position.spread_micros),
        _Line(
            programme.statement_id,
            "liability",
            0,
            position.liability_points,
            position.liability_micros,
        ),
    ]
    await conn.execute(
        "INSERT INTO settled_entries (entry_id, statement_id)"
        " SELECT * FROM unnest($1::bigint[], $2::bigint[])",
        [entry for entry, _ in money_entries],
        [statement for _, statement in money_entries],
    )
    await conn.execute(
        """
        INSERT INTO statement_lines
            (statement_id, category, entries, points, amount_micros, amount_cents)
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[],
                             $5::numeric[], $6::bigint[])
        """,
        [line.statement_id for line in lines],
        [line.category for line in lines],
        [line.entries for line in lines],
        [line.points for line in lines],
        [line.amount_micros for line in lines],
        # The spread line's cents are the residual above, not its micros rounded.
        [spread_cents if line.category == "spread" else line.amount_cents for line in lines],
    )
    await conn.execute(
        """
        UPDATE statements s SET net_cents = x.net, entries = x.entries
        FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS x(id, net, entries)
        WHERE s.id = x.id
        """,
        [o.statement_id for o in statements],
        [net_by_statement.get(o.statement_id, 0) for o in statements],
        # The journal entries behind the statement, not its own money entry.
        [filed.get(o.statement_id, 0) for o in statements],
    )


async def _post(
    conn: asyncpg.Connection, postings: Postings, now: datetime, *, partner_id: int | None
) -> int | None:
    if not postings:
        return None
    query = _POST_MONEY
    row = await conn.fetchrow(
        query.text,
        *query.args(entry_params(postings, kind="settle", booked_at=now, partner_id=partner_id)),
    )
    require_moved(row, postings)
    return int(row["entry_id"])


class _ClosedPayload(msgspec.Struct, kw_only=True):
    statement_id: str
    period: str
    period_start: datetime
    period_end: datetime
    currency: str
    net_cents: int
    lines: list[dict[str, Any]]


async def _announce(conn: asyncpg.Connection, run_id: int, now: datetime) -> None:
    rows = await conn.fetch(
        """
        SELECT s.partner_id, s.public_id, s.period, s.period_start, s.period_end, s.currency,
               s.net_cents,
               (SELECT json_agg(json_build_object('category', l.category, 'entries', l.entries,
                                                  'points', l.points,
                                                  'amount_cents', l.amount_cents)
                                ORDER BY l.category)
                FROM statement_lines l WHERE l.statement_id = s.id)::text AS lines
        FROM statements s
        WHERE s.run_id = $1 AND s.partner_id IS NOT NULL
        """,
        run_id,
    )
    for row in rows:
        payload = _ClosedPayload(
            statement_id=str(row["public_id"]),
            period=row["period"],
            period_start=row["period_start"],
            period_end=row["period_end"],
            currency=row["currency"].strip(),
            net_cents=row["net_cents"],
            lines=msgspec.json.decode(row["lines"] or "[]"),
        )
        event = Event(STATEMENT_CLOSED, msgspec.json.encode(payload))
        await enqueue(conn, row["partner_id"], event, now=now)
