"""Monthly donations: a member gives N points a month to a charity. Plain
Python + SQL.

The job (`donate_due`) donates each standing order on its `next_run_on` day
(UTC), with the idempotency key `monthly:<id>:<YYYY-MM>`: a month is donated
at most once however often or concurrently the job runs. A month in which
the member lacks the points, or whose donation is refused (a member no longer
active), is skipped silently: no message, nothing moves; the order records
`last_outcome` (shown in the wallet) and moves to the next month.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from api.charity import donations
from api.db.pool import transaction
from api.engagement import inbox
from api.errors import Conflict, DomainError, InsufficientPoints, NotFound

MONTHLY_DUE_PER_RUN_MAX = 500
MONTHLY_LISTED_MAX = 50


@dataclass(frozen=True, slots=True)
class MonthlyDonation:
    id: int
    charity_id: int
    charity_name: str
    points: int
    active: bool
    next_run_on: date
    last_run_on: date | None
    last_outcome: str | None


_COLUMNS = """
    o.id, o.charity_id, c.name AS charity_name, o.points, o.active, o.next_run_on,
    o.last_run_on, o.last_outcome
"""


def next_month(day: date) -> date:
    """The same day a calendar month later, clamped to the month's last day."""
    index = day.month  # 0-based index of the next month
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


async def set_monthly(
    conn: asyncpg.Connection, member_id: int, charity_id: int, points: int, now: datetime
) -> MonthlyDonation:
    """Start (or change the points of) the member's monthly donation to a
    charity. The first donation is made by the job on the day it is set."""
    if not donations.DONATION_POINTS_MIN <= points <= donations.DONATION_POINTS_MAX:
        raise DomainError(
            f"a monthly donation is {donations.DONATION_POINTS_MIN} to"
            f" {donations.DONATION_POINTS_MAX} points",
            code="donation_below_minimum"
            if points < donations.DONATION_POINTS_MIN
            else "donation_above_maximum",
        )
    status = await conn.fetchval("SELECT status FROM charities WHERE id = $1", charity_id)
    if status is None:
        raise NotFound("there is no such charity", code="charity_not_found")
    if status != "active":
        raise Conflict("this charity takes no donations now", code="charity_inactive")
    order_id = await conn.fetchval(
        "INSERT INTO monthly_donations (member_id, charity_id, points, next_run_on, created_at,"
        " updated_at) VALUES ($1, $2, $3, $4, $5, $5)"
        " ON CONFLICT (member_id, charity_id) WHERE active"
        " DO UPDATE SET points = EXCLUDED.points, updated_at = EXCLUDED.updated_at"
        " RETURNING id",
        member_id,
        charity_id,
        points,
        now.date(),
        now,
    )
    found = await _get(conn, member_id, int(order_id))
    assert found is not None
    return found


async def cancel_monthly(
    conn: asyncpg.Connection, member_id: int, order_id: int, now: datetime
) -> MonthlyDonation:
    """Stop a monthly donation; a repeat is harmless."""
    done = await conn.fetchval(
        "UPDATE monthly_donations SET active = false, updated_at = $3"
        " WHERE id = $1 AND member_id = $2 RETURNING id",
        order_id,
        member_id,
        now,
    )
    if done is None:
        raise NotFound("there is no such monthly donation", code="monthly_donation_not_found")
    found = await _get(conn, member_id, order_id)
    assert found is not None
    return found


async def _get(db: asyncpg.Connection, member_id: int, order_id: int) -> MonthlyDonation | None:
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM monthly_donations o JOIN charities c ON c.id = o.charity_id"
        " WHERE o.id = $1 AND o.member_id = $2",
        order_id,
        member_id,
    )
    return None if row is None else MonthlyDonation(**dict(row))


async def member_monthly(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int
) -> list[MonthlyDonation]:
    """The member's active monthly donations."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM monthly_donations o JOIN charities c ON c.id = o.charity_id"
        " WHERE o.member_id = $1 AND o.active ORDER BY c.name, o.id LIMIT $2",
        member_id,
        MONTHLY_LISTED_MAX,
    )
    return [MonthlyDonation(**dict(r)) for r in rows]


@dataclass(frozen=True, slots=True)
class MonthlyRun:
    donated: int
    skipped: int


async def donate_due(pool: asyncpg.Pool, now: datetime) -> MonthlyRun:
    """Donate every standing order due today or earlier (the job). Each order
    is its own transaction: one member's shortfall does not hold up others."""
    today = now.date()
    due = await pool.fetch(
        "SELECT id FROM monthly_donations WHERE active AND next_run_on <= $1"
        " ORDER BY next_run_on, id LIMIT $2",
        today,
        MONTHLY_DUE_PER_RUN_MAX,
    )
    donated = skipped = 0
    for row in due:
        outcome = await _run_one(pool, int(row["id"]), now)
        donated += outcome == "donated"
        skipped += outcome == "skipped_insufficient_points"
    return MonthlyRun(donated, skipped)


async def _run_one(pool: asyncpg.Pool, order_id: int, now: datetime) -> str | None:
    async def work(conn: asyncpg.Connection) -> str | None:
        order = await conn.fetchrow(
            "SELECT member_id, charity_id, points, next_run_on FROM monthly_donations"
            " WHERE id = $1 AND active FOR UPDATE",
            order_id,
        )
        if order is None or order["next_run_on"] > now.date():
            return None  # another run did it, or it was cancelled meanwhile
        month = order["next_run_on"].strftime("%Y-%m")
        outcome = "donated"
        try:
            async with conn.transaction():  # a savepoint: a refusal leaves the order row
                await donations.donate_on(
                    conn,
                    order["member_id"],
                    order["charity_id"],
                    order["points"],
                    f"monthly:{order_id}:{month}",
                    now,
                    monthly_id=order_id,
                )
        except InsufficientPoints:
            outcome = "skipped_insufficient_points"
            await inbox.post(
                conn,
                order["member_id"],
                "donation_skipped",
                {
                    "charity": await conn.fetchval(
                        "SELECT name FROM charities WHERE id = $1", order["charity_id"]
                    ),
                    "points": order["points"],
                    "month": month,
                },
                now,
                dedupe_key=f"monthly:{order_id}:{month}:skipped",
            )
        except DomainError:
            # The charity or the member is no longer active: the order stops.
            await conn.execute(
                "UPDATE monthly_donations SET active = false, updated_at = $2 WHERE id = $1",
                order_id,
                now,
            )
            return None
        await conn.execute(
            "UPDATE monthly_donations SET next_run_on = $2, last_run_on = $3, last_outcome = $4,"
            " updated_at = $5 WHERE id = $1",
            order_id,
            next_month(order["next_run_on"]),
            order["next_run_on"],
            outcome,
            now,
        )
        return outcome

    return await transaction(pool, work)
