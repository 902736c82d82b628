"""Members' donations of points to charities. Plain Python + SQL.

The ledger, as for a lottery ticket (api/engagement/lotteries.py):

- A donation moves N points from the member's available lots (FIFO by
  expiry) to the charity's `charity_points` account in one `donation` entry;
  `lot_expiries` records the lots it took from, so settlement values the
  donated points at their lots' prices and they leave the liability as
  expired points do (`donation` is in settlement's valuation next to
  `expire` and `lottery_ticket`): the programme keeps their money to pay the
  charity (charity settlement).
- A matching campaign's points are a second entry in the same transaction
  (`matching.match_donation`).
- Lock order: the member's accounts first, then the campaign row, then
  partner and charity accounts. The idempotency key is looked up under the
  member's lock, so a repeat (even a concurrent one) returns the first donation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from api.charity import matching
from api.charity.charities import charity_account
from api.coalition.member_views import MEMBER_TIME_ZONE
from api.db.pool import transaction
from api.db.sql import Query
from api.errors import Conflict, DomainError, InsufficientPoints, NotFound
from api.ledger.accounts import lock_member
from api.ledger.entries import (
    ENTRY_CTES,
    ENTRY_RESULT,
    LedgerInvariantError,
    Postings,
    entry_params,
    require_moved,
)
from api.ledger.idempotency import IDEMPOTENCY_KEY_LENGTH_MAX, go_cte
from api.ledger.lots import TAKE_FIFO_CTES

DONATION_POINTS_MIN = 100
DONATION_POINTS_MAX = 10_000_000
DONATIONS_LISTED_MAX = 100
STATEMENT_DONATIONS_MAX = 2000


@dataclass(frozen=True, slots=True)
class Donation:
    id: int
    charity_id: int
    charity_name: str
    points: int
    matched_points: int
    campaign_id: int | None
    created_at: datetime
    replayed: bool = False  # a repeat of an earlier request: nothing new was written


def check_key(key: str | None) -> str:
    if key is None or not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        raise DomainError(
            f"an Idempotency-Key header of 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} characters is required",
            code="idempotency_key_required",
            status=400,
        )
    return key


_DONATE = Query(f"""
WITH {go_cte(False)},
{TAKE_FIFO_CTES},
{ENTRY_CTES},
traced AS (
    INSERT INTO lot_expiries (entry_id, lot_id, points)
    SELECT entry.id, take.id, take.points FROM entry, take
)
SELECT {ENTRY_RESULT}, (SELECT coalesce(sum(points), 0) FROM consumed) AS taken
""")

_DONATION_COLUMNS = """
    d.id, d.charity_id, c.name AS charity_name, d.points, d.matched_points, d.campaign_id,
    d.created_at
"""


async def donate(
    pool: asyncpg.Pool,
    member_id: int,
    charity_id: int,
    points: int,
    key: str | None,
    now: datetime,
    *,
    monthly_id: int | None = None,
) -> Donation:
    """Give `points` available points to a charity, matched by an open
    campaign when there is one. `key` (the Idempotency-Key) makes a repeat
    return the first donation; the same key for another charity or amount
    is `idempotency_conflict`."""
    return await transaction(
        pool,
        lambda conn: donate_on(
            conn, member_id, charity_id, points, key, now, monthly_id=monthly_id
        ),
    )


async def donate_on(
    conn: asyncpg.Connection,
    member_id: int,
    charity_id: int,
    points: int,
    key: str | None,
    now: datetime,
    *,
    monthly_id: int | None = None,
) -> Donation:
    """`donate` inside the caller's transaction."""
    key = check_key(key)
    member = await lock_member(conn, member_id)
    if member is None or member.available_id is None:
        raise NotFound("there is no such member", code="member_not_found")
    earlier = await conn.fetchrow(
        f"SELECT {_DONATION_COLUMNS} FROM donations d JOIN charities c ON c.id = d.charity_id"
        " WHERE d.member_id = $1 AND d.idempotency_key = $2",
        member_id,
        key,
    )
    if earlier is not None:
        if earlier["charity_id"] != charity_id or earlier["points"] != points:
            raise Conflict(
                "this Idempotency-Key was used for another donation", code="idempotency_conflict"
            )
        return Donation(**dict(earlier), replayed=True)
    if member.status != "active":
        raise Conflict("this member account is not active", code="member_not_active")
    if points < DONATION_POINTS_MIN:
        raise DomainError(
            f"a donation is at least {DONATION_POINTS_MIN} points", code="donation_below_minimum"
        )
    if points > DONATION_POINTS_MAX:
        raise DomainError(
            f"a donation is at most {DONATION_POINTS_MAX} points", code="donation_above_maximum"
        )
    charity = await conn.fetchrow(
        "SELECT name, status FROM charities WHERE id = $1 FOR SHARE", charity_id
    )
    if charity is None:
        raise NotFound("there is no such charity", code="charity_not_found")
    if charity["status"] != "active":
        raise Conflict("this charity takes no donations now", code="charity_inactive")
    if member.available < points:
        raise InsufficientPoints(
            f"you want to give {points} points; you have {member.available} available"
        )
    target = await charity_account(conn, charity_id)
    postings = Postings(first=frozenset(member.account_ids)).move(
        member.available_id, target, points
    )
    row = await conn.fetchrow(
        _DONATE.text,
        *_DONATE.args(
            {
                "member_id": member_id,
                "take_points": points,
                "skip_lot_id": None,
                **entry_params(postings, kind="donation", booked_at=now, member_id=member_id),
            }
        ),
    )
    require_moved(row, postings)
    if row["taken"] != points:
        raise LedgerInvariantError(
            f"lots of member {member_id} hold {row['taken']} points, balance said {points}"
        )
    match = await matching.match_donation(
        conn,
        member_id=member_id,
        charity_id=charity_id,
        charity_account_id=target,
        points=points,
        now=now,
    )
    donation_id = await conn.fetchval(
        "INSERT INTO donations (member_id, charity_id, points, matched_points, campaign_id,"
        " entry_id, match_entry_id, idempotency_key, monthly_id, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        member_id,
        charity_id,
        points,
        0 if match is None else match.points,
        None if match is None else match.campaign_id,
        row["entry_id"],
        None if match is None else match.entry_id,
        key,
        monthly_id,
        now,
    )
    return Donation(
        int(donation_id),
        charity_id,
        charity["name"],
        points,
        0 if match is None else match.points,
        None if match is None else match.campaign_id,
        now,
    )


async def member_donations(db: Any, member_id: int) -> list[Donation]:
    """The member's donations, newest first (at most DONATIONS_LISTED_MAX)."""
    rows = await db.fetch(
        f"SELECT {_DONATION_COLUMNS} FROM donations d JOIN charities c ON c.id = d.charity_id"
        " WHERE d.member_id = $1 ORDER BY d.created_at DESC, d.id DESC LIMIT $2",
        member_id,
        DONATIONS_LISTED_MAX,
    )
    return [Donation(**dict(r)) for r in rows]


@dataclass(frozen=True, slots=True)
class CharityTotal:
    charity_id: int
    name: str
    anbi: bool
    points: int
    matched_points: int


@dataclass(frozen=True, slots=True)
class YearStatement:
    year: int
    member_name: str
    card_number: str
    donations: list[Donation]
    totals: list[CharityTotal]

    @property
    def points(self) -> int:
        return sum(t.points for t in self.totals)

    @property
    def any_anbi(self) -> bool:
        return any(t.anbi for t in self.totals)


YEAR_MIN = 2000
YEAR_MAX = 2999


async def year_statement(db: Any, member_id: int, year: int) -> YearStatement:
    """The member's donations in calendar year `year` (in the members' time
    zone, as the wallet shows dates) with totals per charity."""
    if not YEAR_MIN <= year <= YEAR_MAX:
        raise NotFound("there is no statement for that year", code="statement_not_found")
    zone = ZoneInfo(MEMBER_TIME_ZONE)
    start = datetime(year, 1, 1, tzinfo=zone)
    end = datetime(year + 1, 1, 1, tzinfo=zone)
    row = await db.fetchrow(
        """
        SELECT m.display_name, m.email, m.card_number,
          (SELECT coalesce(json_agg(json_build_array(d.id, d.charity_id, c.name, d.points,
                                                     d.matched_points, d.campaign_id, d.created_at)
                                    ORDER BY d.created_at, d.id), '[]')::text
           FROM (SELECT * FROM donations WHERE member_id = $1 AND created_at >= $2
                 AND created_at < $3 ORDER BY created_at, id LIMIT $4) d
           JOIN charities c ON c.id = d.charity_id) AS donations,
          (SELECT coalesce(json_agg(json_build_array(c.id, c.name, c.anbi, t.points, t.matched)
                                    ORDER BY c.name, c.id), '[]')::text
           FROM (SELECT charity_id, sum(points) AS points, sum(matched_points) AS matched
                 FROM donations WHERE member_id = $1 AND created_at >= $2 AND created_at < $3
                 GROUP BY charity_id) t
           JOIN charities c ON c.id = t.charity_id) AS totals
        FROM members m WHERE m.id = $1
        """,
        member_id,
        start,
        end,
        STATEMENT_DONATIONS_MAX,
    )
    if row is None:
        raise NotFound("there is no such member", code="member_not_found")
    donations = [
        Donation(i, c, n, p, mp, camp, datetime.fromisoformat(at))
        for i, c, n, p, mp, camp, at in json.loads(row["donations"])
    ]
    totals = [CharityTotal(*t) for t in json.loads(row["totals"])]
    name = row["display_name"] or row["email"] or f"card {row['card_number']}"
    return YearStatement(year, name, row["card_number"], donations, totals)


async def available_points(db: Any, member_id: int) -> int:
    """What the member can give now (read without a lock: for display)."""
    found = await db.fetchval(
        "SELECT balance FROM accounts WHERE member_id = $1 AND kind = 'member_available'",
        member_id,
    )
    return int(found or 0)


async def donation_years(db: Any, member_id: int) -> list[int]:
    """Calendar years (members' time zone) in which the member donated, newest first."""
    rows = await db.fetch(
        "SELECT DISTINCT extract(year FROM created_at AT TIME ZONE $2)::int AS year"
        " FROM donations WHERE member_id = $1 ORDER BY year DESC",
        member_id,
        MEMBER_TIME_ZONE,
    )
    return [int(r["year"]) for r in rows]
