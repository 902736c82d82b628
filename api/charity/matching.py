"""Matching campaigns: a partner matches members' donations 1:1 up to a
budget of points, to one charity or to any. Plain Python + SQL.

A match is its own journal entry (`donation_match`), booked in the donation's
transaction: the partner's points-issued account (one shard) gives the points
straight to the charity, and the entry carries the partner and its issuance
price, so settlement charges the partner on its `sponsored_rewards` line.

The budget is never exceeded: the campaign row is locked (after the member's
accounts: the ledger's lock order), the match is the smaller of the donation
and what the budget has left, and `used_points <= budget_points` is also a
database CHECK.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from api.cursors import decode_cursor, encode_cursor, whole_number
from api.db.sql import Query
from api.errors import Conflict, DomainError, NotFound
from api.ledger.accounts import partner_account, shard_for
from api.ledger.entries import ENTRY_CTES, ENTRY_RESULT, Postings, entry_params, require_moved
from api.ledger.idempotency import go_cte

NAME_LENGTH_MAX = 120
BUDGET_POINTS_MAX = 100_000_000
CAMPAIGNS_LISTED_MAX = 200


@dataclass(frozen=True, slots=True)
class CampaignIn:
    partner_id: int
    charity_id: int | None  # None: any charity
    name: str
    budget_points: int
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    partner_id: int
    charity_id: int | None
    name: str
    ratio: int
    budget_points: int
    used_points: int
    starts_at: datetime
    ends_at: datetime
    status: str
    created_at: datetime


_COLUMNS = (
    "id, partner_id, charity_id, name, ratio, budget_points, used_points, starts_at, ends_at,"
    " status, created_at"
)


async def create_campaign(conn: asyncpg.Connection, new: CampaignIn, now: datetime) -> Campaign:
    name = new.name.strip()
    if not 1 <= len(name) <= NAME_LENGTH_MAX:
        raise DomainError(f"name must be 1 to {NAME_LENGTH_MAX} characters", code="invalid_name")
    if not 1 <= new.budget_points <= BUDGET_POINTS_MAX:
        raise DomainError(f"budget_points must be 1 to {BUDGET_POINTS_MAX}", code="invalid_budget")
    if new.starts_at.tzinfo is None or new.ends_at.tzinfo is None:
        raise DomainError("times need a time zone", code="invalid_time")
    if not new.starts_at < new.ends_at or new.ends_at <= now:
        raise DomainError(
            "a campaign ends after it starts, in the future", code="invalid_campaign_window"
        )
    if await conn.fetchval("SELECT 1 FROM partners WHERE id = $1", new.partner_id) is None:
        raise NotFound("there is no such partner", code="partner_not_found")
    if new.charity_id is not None and (
        await conn.fetchval("SELECT 1 FROM charities WHERE id = $1", new.charity_id) is None
    ):
        raise NotFound("there is no such charity", code="charity_not_found")
    row = await conn.fetchrow(
        "INSERT INTO matching_campaigns (partner_id, charity_id, name, budget_points, starts_at,"
        f" ends_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
        new.partner_id,
        new.charity_id,
        name,
        new.budget_points,
        new.starts_at,
        new.ends_at,
        now,
    )
    return Campaign(**dict(row))


async def end_campaign(conn: asyncpg.Connection, campaign_id: int) -> tuple[Campaign, Campaign]:
    """(before, after) of ending a campaign now: it matches nothing more."""
    before = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM matching_campaigns WHERE id = $1 FOR UPDATE", campaign_id
    )
    if before is None:
        raise NotFound("there is no such matching campaign", code="campaign_not_found")
    if before["status"] == "ended":
        raise Conflict("this campaign has ended already", code="campaign_ended")
    after = await conn.fetchrow(
        f"UPDATE matching_campaigns SET status = 'ended' WHERE id = $1 RETURNING {_COLUMNS}",
        campaign_id,
    )
    return Campaign(**dict(before)), Campaign(**dict(after))


async def list_campaigns(db: Any) -> list[Campaign]:
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM matching_campaigns ORDER BY id DESC LIMIT $1",
        CAMPAIGNS_LISTED_MAX,
    )
    return [Campaign(**dict(r)) for r in rows]


@dataclass(frozen=True, slots=True)
class Match:
    campaign_id: int
    partner_id: int
    points: int
    entry_id: int


_POST = Query(f"WITH {go_cte(False)}, {ENTRY_CTES} SELECT {ENTRY_RESULT}")


async def match_donation(
    conn: asyncpg.Connection,
    *,
    member_id: int,
    charity_id: int,
    charity_account_id: int,
    points: int,
    now: datetime,
) -> Match | None:
    """Match a donation being booked in `conn`'s transaction (the member's
    accounts already locked), from the open campaign for this charity (or
    any) that ends first and has budget left. None when none matches."""
    campaign = await conn.fetchrow(
        "SELECT c.id, c.partner_id, c.budget_points - c.used_points AS left_points,"
        " p.issuance_price_micros"
        " FROM matching_campaigns c JOIN partners p ON p.id = c.partner_id"
        " WHERE c.status = 'active' AND c.starts_at <= $2 AND c.ends_at > $2"
        "   AND (c.charity_id IS NULL OR c.charity_id = $1) AND c.used_points < c.budget_points"
        "   AND p.status = 'active'"
        " ORDER BY c.ends_at, c.id LIMIT 1 FOR UPDATE OF c",
        charity_id,
        now,
    )
    if campaign is None:
        return None
    matched = min(points, int(campaign["left_points"]))
    used = await conn.fetchval(
        "UPDATE matching_campaigns SET used_points = used_points + $2"
        " WHERE id = $1 AND used_points + $2 <= budget_points RETURNING used_points",
        campaign["id"],
        matched,
    )
    if used is None:  # cannot happen under the row lock; the CHECK would refuse it anyway
        return None
    payer = await partner_account(
        conn, campaign["partner_id"], "partner_points_issued", shard_for(member_id)
    )
    postings = Postings().move(payer, charity_account_id, matched)
    row = await conn.fetchrow(
        _POST.text,
        *_POST.args(
            entry_params(
                postings,
                kind="donation_match",
                booked_at=now,
                partner_id=campaign["partner_id"],
                member_id=member_id,
                price_micros=campaign["issuance_price_micros"],
            )
        ),
    )
    require_moved(row, postings)
    return Match(int(campaign["id"]), int(campaign["partner_id"]), matched, int(row["entry_id"]))


async def change_campaign(
    conn: asyncpg.Connection,
    campaign_id: int,
    *,
    name: str,
    budget_points: int,
    ends_at: datetime,
    now: datetime,
) -> tuple[Campaign, Campaign]:
    """(before, after) of changing a running campaign's name, budget or end.
    The partner, charity and start stay (they decide what was matched). The
    budget never drops below what has been matched, and the end never moves
    into the past, so no match already made falls outside the campaign."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM matching_campaigns WHERE id = $1 FOR UPDATE", campaign_id
    )
    if row is None:
        raise NotFound("there is no such matching campaign", code="campaign_not_found")
    before = Campaign(**dict(row))
    if before.status == "ended":
        raise Conflict("this campaign has ended", code="campaign_ended")
    name = name.strip()
    if not 1 <= len(name) <= NAME_LENGTH_MAX:
        raise DomainError(f"name must be 1 to {NAME_LENGTH_MAX} characters", code="invalid_name")
    if not max(1, before.used_points) <= budget_points <= BUDGET_POINTS_MAX:
        raise DomainError(
            f"budget_points must be {max(1, before.used_points)} (matched so far) to"
            f" {BUDGET_POINTS_MAX}",
            code="invalid_budget",
        )
    if ends_at.tzinfo is None:
        raise DomainError("times need a time zone", code="invalid_time")
    if not before.starts_at < ends_at or ends_at <= now:
        raise DomainError(
            "a campaign ends after it starts, in the future", code="invalid_campaign_window"
        )
    after = await conn.fetchrow(
        "UPDATE matching_campaigns SET name = $2, budget_points = $3, ends_at = $4"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        campaign_id,
        name,
        budget_points,
        ends_at,
    )
    return before, Campaign(**dict(after))


async def get_campaign(db: Any, campaign_id: int) -> Campaign:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM matching_campaigns WHERE id = $1", campaign_id)
    if row is None:
        raise NotFound("there is no such matching campaign", code="campaign_not_found")
    return Campaign(**dict(row))


@dataclass(frozen=True, slots=True)
class CampaignPage:
    items: list[Campaign]
    next_cursor: str | None


CAMPAIGN_STATUSES = ("active", "ended")
CAMPAIGN_PAGE_SIZE_MAX = 100


async def list_campaigns_page(
    db: Any, *, status: str | None, cursor: str | None, limit: int
) -> CampaignPage:
    """Campaigns newest first, optionally of one status; keyset-paginated on id."""
    if status is not None and status not in CAMPAIGN_STATUSES:
        raise DomainError("status is active or ended", code="invalid_status", status=400)
    if not 1 <= limit <= CAMPAIGN_PAGE_SIZE_MAX:
        raise DomainError(
            f"limit is 1 to {CAMPAIGN_PAGE_SIZE_MAX}", code="invalid_limit", status=400
        )
    before = None if cursor is None else int(decode_cursor(cursor, whole_number)[0])
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM matching_campaigns WHERE ($1::text IS NULL OR status = $1)"
        " AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        status,
        before,
        limit + 1,
    )
    items = [Campaign(**dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return CampaignPage(items, encode_cursor(items[-1].id) if more else None)
