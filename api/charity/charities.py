"""Charities: created and changed by admins, listed to members, each with a
`charity_points` account that donations and matches credit. Plain Python + SQL.

Bank details are checked exactly like a partner's (`api.coalition.banking`):
charities are paid by SEPA credit transfer too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from api.coalition.banking import validate_bank_details
from api.cursors import decode_cursor, encode_cursor, whole_number
from api.errors import DomainError, NotFound

NAME_LENGTH_MAX = 120
DESCRIPTION_LENGTH_MAX = 2000
LOGO_URL_LENGTH_MAX = 500
CHARITIES_LISTED_MAX = 200
STATUSES = ("active", "inactive")


@dataclass(frozen=True, slots=True)
class CharityIn:
    name: str
    description: str
    logo_url: str | None
    iban: str
    bic: str | None
    account_holder: str
    anbi: bool


@dataclass(frozen=True, slots=True)
class Charity:
    id: int
    name: str
    description: str
    logo_url: str | None
    iban: str
    bic: str | None
    account_holder: str
    anbi: bool
    status: str
    created_at: datetime
    donated_points: int  # by members, all time
    matched_points: int  # by partners' matching campaigns, all time

    @property
    def total_points(self) -> int:
        return self.donated_points + self.matched_points

    @property
    def active(self) -> bool:
        return self.status == "active"


def _validated(new: CharityIn) -> tuple[str, str, str | None, str, str | None, str]:
    name = new.name.strip()
    if not 1 <= len(name) <= NAME_LENGTH_MAX:
        raise DomainError(f"name must be 1 to {NAME_LENGTH_MAX} characters", code="invalid_name")
    description = new.description.strip()
    if len(description) > DESCRIPTION_LENGTH_MAX:
        raise DomainError(
            f"description is at most {DESCRIPTION_LENGTH_MAX} characters",
            code="invalid_description",
        )
    logo = new.logo_url.strip() if new.logo_url else None
    if logo is not None and (
        not logo.startswith("https://") or len(logo) > LOGO_URL_LENGTH_MAX or not logo.isprintable()
    ):
        raise DomainError(
            f"logo_url is an https:// address of at most {LOGO_URL_LENGTH_MAX} characters",
            code="invalid_logo_url",
        )
    bank = validate_bank_details(new.iban, new.bic, new.account_holder)
    if bank is None:  # an IBAN is always given: a charity is paid by transfer
        raise DomainError("an IBAN is required", code="invalid_iban")
    return name, description, logo, bank.iban, bank.bic, bank.account_holder


_COLUMNS = """
    c.id, c.name, c.description, c.logo_url, c.iban, c.bic, c.account_holder, c.anbi,
    c.status, c.created_at,
    coalesce((SELECT sum(d.points) FROM donations d WHERE d.charity_id = c.id), 0)::bigint
        AS donated_points,
    coalesce((SELECT sum(d.matched_points) FROM donations d WHERE d.charity_id = c.id), 0)::bigint
        AS matched_points
"""


def _charity(row: asyncpg.Record) -> Charity:
    return Charity(**dict(row))


async def create_charity(conn: asyncpg.Connection, new: CharityIn, now: datetime) -> Charity:
    """A new active charity and its points account, in the caller's transaction."""
    name, description, logo, iban, bic, holder = _validated(new)
    charity_id = await conn.fetchval(
        "INSERT INTO charities (name, description, logo_url, iban, bic, account_holder, anbi,"
        " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
        name,
        description,
        logo,
        iban,
        bic,
        holder,
        new.anbi,
        now,
    )
    await conn.execute(
        "INSERT INTO accounts (kind, unit, charity_id)"
        " VALUES ('charity_points', 'PTS', $1), ('charity_money', 'EUR', $1)",
        charity_id,
    )
    found = await get_charity(conn, int(charity_id))
    assert found is not None
    return found


async def update_charity(
    conn: asyncpg.Connection, charity_id: int, new: CharityIn, now: datetime
) -> tuple[Charity, Charity]:
    """(before, after) of a change to a charity's details (not its status)."""
    before = await _locked(conn, charity_id)
    name, description, logo, iban, bic, holder = _validated(new)
    await conn.execute(
        "UPDATE charities SET name = $2, description = $3, logo_url = $4, iban = $5, bic = $6,"
        " account_holder = $7, anbi = $8, updated_at = $9 WHERE id = $1",
        charity_id,
        name,
        description,
        logo,
        iban,
        bic,
        holder,
        new.anbi,
        now,
    )
    after = await get_charity(conn, charity_id)
    assert after is not None
    return before, after


async def set_status(
    conn: asyncpg.Connection, charity_id: int, status: str, now: datetime
) -> tuple[Charity, Charity]:
    """(before, after) of activating or deactivating a charity. An inactive
    charity takes no donations; its monthly donations stop (are deactivated)."""
    if status not in STATUSES:
        raise DomainError("status is active or inactive", code="invalid_status")
    before = await _locked(conn, charity_id)
    await conn.execute(
        "UPDATE charities SET status = $2, updated_at = $3 WHERE id = $1", charity_id, status, now
    )
    if status == "inactive":
        await conn.execute(
            "UPDATE monthly_donations SET active = false, updated_at = $2"
            " WHERE charity_id = $1 AND active",
            charity_id,
            now,
        )
    after = await get_charity(conn, charity_id)
    assert after is not None
    return before, after


async def _locked(conn: asyncpg.Connection, charity_id: int) -> Charity:
    if await conn.fetchval("SELECT id FROM charities WHERE id = $1 FOR UPDATE", charity_id) is None:
        raise NotFound("there is no such charity", code="charity_not_found")
    found = await get_charity(conn, charity_id)
    assert found is not None
    return found


async def get_charity(db: Any, charity_id: int) -> Charity | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM charities c WHERE c.id = $1", charity_id)
    return None if row is None else _charity(row)


async def list_charities(db: Any, *, active_only: bool) -> list[Charity]:
    """Charities by name (at most CHARITIES_LISTED_MAX), with their totals."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM charities c WHERE (NOT $1 OR c.status = 'active')"
        " ORDER BY c.name, c.id LIMIT $2",
        active_only,
        CHARITIES_LISTED_MAX,
    )
    return [_charity(r) for r in rows]


async def charity_account(
    conn: asyncpg.Connection, charity_id: int, kind: str = "charity_points"
) -> int:
    account_id = await conn.fetchval(
        "SELECT id FROM accounts WHERE charity_id = $1 AND kind = $2", charity_id, kind
    )
    if account_id is None:
        raise LookupError(f"charity {charity_id} has no {kind} account")
    return int(account_id)


@dataclass(frozen=True, slots=True)
class CharityPage:
    items: list[Charity]
    next_cursor: str | None


CHARITY_PAGE_SIZE_MAX = 100


async def list_charities_page(
    db: Any, *, status: str | None, cursor: str | None, limit: int
) -> CharityPage:
    """Charities newest first, optionally of one status; keyset-paginated on id."""
    if status is not None and status not in STATUSES:
        raise DomainError("status is active or inactive", code="invalid_status", status=400)
    if not 1 <= limit <= CHARITY_PAGE_SIZE_MAX:
        raise DomainError(
            f"limit is 1 to {CHARITY_PAGE_SIZE_MAX}", code="invalid_limit", status=400
        )
    before = None if cursor is None else int(decode_cursor(cursor, whole_number)[0])
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM charities c WHERE ($1::text IS NULL OR c.status = $1)"
        " AND ($2::bigint IS NULL OR c.id < $2) ORDER BY c.id DESC LIMIT $3",
        status,
        before,
        limit + 1,
    )
    items = [_charity(r) for r in rows[:limit]]
    more = len(rows) > limit
    return CharityPage(items, encode_cursor(items[-1].id) if more else None)
