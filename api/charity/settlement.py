"""Charity settlement: once a month the points given to each charity
(donations and partners' matches) are turned into euros at the programme's
rate (`KRING_CHARITY_POINT_PRICE_MICROS`, 8000 = 0.8 cent a point) and paid
by SEPA transfer. Plain Python + SQL.

Month M is settled on or after the first business day (Amsterdam) of M+1:
it converts the points booked to the charity before M+1 began less those
converted already, so a month is converted once (`UNIQUE (charity_id,
month)`) however often the job runs, and points given after the month's
end wait for the next month. One `charity_payout` entry per charity and month:

- PTS: the points leave `charity_points` for `programme_breakage` (the
  programme recognised their money when they were donated: donated points
  are valued as breakage at their lots' prices; matched points' money came
  from the matching partners and was recognised with breakage too);
- EUR: the payout leaves breakage revenue for the charity's `charity_money`
  account (what the programme owes the charity, as `partner_money` is for a
  partner).

The payout is in the SEPA file of the business day it was made on
(`payouts_for_run`), once that day is settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial

import asyncpg

from api.charity.charities import charity_account
from api.db.pool import transaction
from api.db.sql import Query
from api.ledger.accounts import programme_account
from api.ledger.entries import ENTRY_CTES, ENTRY_RESULT, Postings, entry_params, require_moved
from api.ledger.idempotency import go_cte
from api.money import cents_half_even
from api.settlement.periods import business_date, local_midnight

CHARITIES_PER_RUN_MAX = 500
_POST = Query(f"WITH {go_cte(False)}, {ENTRY_CTES} SELECT {ENTRY_RESULT}")


@dataclass(frozen=True, slots=True)
class CharityPayout:
    charity_id: int
    month: date
    points: int
    amount_cents: int
    business_date: date


def month_to_settle(now: datetime) -> date:
    """The month (its first day) whose points are converted now: the last one
    that has ended in Amsterdam."""
    today = business_date(now)
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)


# Points booked to each charity before the cutoff, less those converted.
_DUE = """
SELECT c.id AS charity_id, a.id AS account_id,
       coalesce((SELECT sum(p.amount) FROM postings p JOIN journal_entries e ON e.id = p.entry_id
                 WHERE p.account_id = a.id AND e.kind IN ('donation', 'donation_match')
                   AND e.booked_at < $1), 0)::bigint
     - coalesce((SELECT sum(x.points) FROM charity_payouts x WHERE x.charity_id = c.id), 0)::bigint
       AS points
FROM charities c JOIN accounts a ON a.charity_id = c.id AND a.kind = 'charity_points'
WHERE NOT EXISTS (SELECT FROM charity_payouts x WHERE x.charity_id = c.id AND x.month = $2)
ORDER BY c.id LIMIT $3
"""


async def settle_charities(
    pool: asyncpg.Pool, now: datetime, price_micros: int
) -> list[CharityPayout]:
    """Convert every charity's points of the last ended month (the job). Safe
    to run again and from two workers: each charity and month once."""
    if price_micros < 0:
        raise ValueError("the charity point price is not negative")
    month = month_to_settle(now)
    cutoff = local_midnight((month.replace(day=28) + timedelta(days=4)).replace(day=1))
    due = await pool.fetch(_DUE, cutoff, month, CHARITIES_PER_RUN_MAX)
    made: list[CharityPayout] = []
    for charity_id in [int(r["charity_id"]) for r in due if r["points"] > 0]:
        payout = await transaction(
            pool,
            partial(
                _convert,
                charity_id=charity_id,
                month=month,
                cutoff=cutoff,
                price_micros=price_micros,
                now=now,
            ),
        )
        if payout is not None:
            made.append(payout)
    return made


async def _convert(
    conn: asyncpg.Connection,
    *,
    charity_id: int,
    month: date,
    cutoff: datetime,
    price_micros: int,
    now: datetime,
) -> CharityPayout | None:
    # The charity row lock serialises two workers on one charity and month;
    # the unique (charity_id, month) is the last word.
    await conn.execute("SELECT 1 FROM charities WHERE id = $1 FOR UPDATE", charity_id)
    done = await conn.fetchval(
        "SELECT 1 FROM charity_payouts WHERE charity_id = $1 AND month = $2", charity_id, month
    )
    if done:
        return None
    points_id = await charity_account(conn, charity_id)
    points = await conn.fetchval(
        "SELECT coalesce((SELECT sum(p.amount) FROM postings p"
        "  JOIN journal_entries e ON e.id = p.entry_id WHERE p.account_id = $1"
        "  AND e.kind IN ('donation', 'donation_match') AND e.booked_at < $2), 0)::bigint"
        " - coalesce((SELECT sum(points) FROM charity_payouts WHERE charity_id = $3), 0)::bigint",
        points_id,
        cutoff,
        charity_id,
    )
    if points <= 0:
        return None
    amount_cents = cents_half_even(points * price_micros)
    postings = (
        Postings()
        .move(points_id, await programme_account(conn, "programme_breakage"), points)
        .move(
            await programme_account(conn, "programme_revenue_breakage"),
            await charity_account(conn, charity_id, "charity_money"),
            amount_cents,
            "EUR",
        )
    )
    row = await conn.fetchrow(
        _POST.text,
        *_POST.args(
            entry_params(postings, kind="charity_payout", booked_at=now, price_micros=price_micros)
        ),
    )
    require_moved(row, postings)
    day = business_date(now)
    await conn.execute(
        "INSERT INTO charity_payouts (charity_id, month, points, price_micros, amount_cents,"
        " business_date, entry_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        charity_id,
        month,
        points,
        price_micros,
        amount_cents,
        day,
        row["entry_id"],
        now,
    )
    return CharityPayout(charity_id, month, int(points), amount_cents, day)


@dataclass(frozen=True, slots=True)
class CharityOwed:
    charity_id: int
    name: str
    amount_cents: int
    iban: str
    bic: str | None
    account_holder: str


async def charity_payouts_on(db: asyncpg.Connection | asyncpg.Pool, day: date) -> list[CharityOwed]:
    """The charity payouts made on business day `day`, with bank details."""
    rows = await db.fetch(
        "SELECT c.id, c.name, sum(x.amount_cents)::bigint AS amount_cents, c.iban, c.bic,"
        " c.account_holder FROM charity_payouts x JOIN charities c ON c.id = x.charity_id"
        " WHERE x.business_date = $1 AND x.amount_cents > 0"
        " GROUP BY c.id ORDER BY c.id",
        day,
    )
    return [CharityOwed(*r) for r in rows]
