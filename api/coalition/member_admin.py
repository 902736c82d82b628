"""What programme admins do with members: find them, read a member's profile
and full ledger, block and unblock, export their data and erase the account.
Plain Python + SQL; the back-office pages (api/backoffice/member_pages.py)
call it. Every change is audited in its own transaction; the audit rows carry
no personal data (the log is append-only, and an erasure must be complete).

What a block stops (enforced where those things happen, not here): partners'
earn, burn authorization and identify (`member_blocked`, 403, through
`require_active_member`), signing in to the wallet or the member API
(`member_blocked` at the code check), every existing wallet and API session at
its next request (`live_session` reads `status = 'active'`), rewards,
donations, lottery tickets and VIP subscriptions (`member_not_active`).
Refunds, captures and voids of earlier purchases still work, so partners can
finish what was started, and admins can still adjust a blocked member.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.admin_auth import audit
from api.admin_auth.principal import AdminPrincipal
from api.coalition.member_profile import Closure, delete_account_on, export_member_data
from api.coalition.members import set_member_status
from api.cursors import decode_cursor, encode_cursor, whole_number
from api.db.pool import transaction
from api.errors import Conflict, DomainError, NotFound
from api.vip.window import vip_multiplier_at

MEMBER_STATUSES = ("active", "blocked", "closed")
SEARCH_CHARS_MAX = 100
PAGE_SIZE_MAX = 100
CARD_DIGITS_MIN = 3  # fewer digits grouped with spaces match half the cards


# Search ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberSearch:
    text: str = ""  # part of an e-mail address, a name or a card number
    status: str | None = None
    tier: str | None = None

    def __post_init__(self) -> None:
        if len(self.text) > SEARCH_CHARS_MAX:
            raise DomainError(
                f"search for at most {SEARCH_CHARS_MAX} characters", code="invalid_search"
            )
        if self.status is not None and self.status not in MEMBER_STATUSES:
            raise DomainError(
                f"status is one of {', '.join(MEMBER_STATUSES)}", code="invalid_status", status=400
            )


@dataclass(frozen=True, slots=True)
class MemberRow:
    id: int
    card_number: str
    email: str | None
    display_name: str | None
    status: str
    tier_code: str
    tier_name: str
    available_points: int
    created_at: datetime


# What a search looks in: the expression of the trigram index
# `members_search_trgm` (migration 0015), written the same so the planner uses it.
SEARCH_TEXT = (
    "(coalesce(m.email, '') || ' ' || coalesce(m.display_name, '') || ' ' || m.card_number)"
)


def _like(text: str) -> str:
    """A LIKE pattern that finds `text` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_TIER = """
LEFT JOIN member_tiers mt ON mt.member_id = m.id
CROSS JOIN (SELECT code FROM tiers ORDER BY position LIMIT 1) lowest
JOIN tiers t ON t.code = coalesce(mt.tier_code, lowest.code)
"""


def _search_sql(search: MemberSearch, after_id: int | None) -> tuple[str, list[Any]]:
    """The query for a search: only the conditions asked for, so the planner
    can use the trigram indexes (migration 0015) for the text."""
    conditions: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    text = search.text.strip()
    if text:
        matches = [f"{SEARCH_TEXT} ILIKE {arg(_like(text))}"]
        digits = "".join(ch for ch in text if ch not in " -")
        if (
            digits != text
            and digits.isascii()
            and digits.isdigit()
            and len(digits) >= CARD_DIGITS_MIN
        ):
            # A card number typed in groups ("6048 1234"): as printed on the card.
            matches.append(f"m.card_number LIKE {arg(_like(digits))}")
        conditions.append("(" + " OR ".join(matches) + ")")
    if search.status is not None:
        conditions.append(f"m.status = {arg(search.status)}")
    if search.tier is not None:
        conditions.append(f"t.code = {arg(search.tier)}")
    if after_id is not None:
        conditions.append(f"m.id < {arg(after_id)}")
    where = " AND ".join(conditions) or "true"
    return (
        f"""
        SELECT m.id, m.card_number, m.email, m.display_name, m.status, t.code AS tier_code,
               t.name AS tier_name, av.balance AS available_points, m.created_at
        FROM members m
        {_TIER}
        JOIN accounts av ON av.member_id = m.id AND av.kind = 'member_available'
        WHERE {where}
        ORDER BY m.id DESC
        """,
        args,
    )


def member_cursor(row: MemberRow) -> str:
    return encode_cursor(row.id)


def _after(cursor: str | None) -> int | None:
    return None if not cursor else int(decode_cursor(cursor, whole_number)[0])


async def search_members(
    db: asyncpg.Pool | asyncpg.Connection,
    search: MemberSearch,
    *,
    limit: int,
    cursor: str | None = None,
) -> list[MemberRow]:
    """Newest members first, at most `limit` (ask one more to know of a next page)."""
    if not 1 <= limit <= PAGE_SIZE_MAX + 1:
        raise ValueError(f"limit is 1 to {PAGE_SIZE_MAX + 1}")
    sql, args = _search_sql(search, _after(cursor))
    rows = await db.fetch(f"{sql} LIMIT {limit}", *args)
    return [MemberRow(**dict(r)) for r in rows]


async def iterate_members(
    conn: asyncpg.Connection, search: MemberSearch
) -> AsyncIterator[MemberRow]:
    """Every member the search finds, as a server-side cursor in the caller's
    transaction: for the CSV export, which streams."""
    sql, args = _search_sql(search, None)
    async for row in conn.cursor(sql, *args):
        yield MemberRow(**dict(row))


async def tier_choices(db: asyncpg.Pool | asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await db.fetch("SELECT code, name FROM tiers ORDER BY position")
    return [(r["code"], r["name"]) for r in rows]


# One member -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberProfile:
    id: int
    public_id: UUID
    card_number: str
    email: str | None
    display_name: str | None
    status: str
    created_at: datetime
    closed_at: datetime | None
    tier_code: str
    tier_name: str
    vip: bool
    vip_status: str | None  # the latest subscription's status, if any
    available_points: int
    pending_points: int
    held_points: int
    debt_points: int  # positive: what the member owes


async def member_profile(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime
) -> MemberProfile:
    row = await db.fetchrow(
        f"""
        SELECT m.id, m.public_id, m.card_number, m.email, m.display_name, m.status,
               m.created_at, m.closed_at, t.code AS tier_code, t.name AS tier_name,
               {vip_multiplier_at("m.id", "$2::timestamptz")} IS NOT NULL AS vip,
               (SELECT status FROM vip_subscriptions WHERE member_id = m.id
                ORDER BY id DESC LIMIT 1) AS vip_status,
               max(a.balance) FILTER (WHERE a.kind = 'member_available') AS available_points,
               max(a.balance) FILTER (WHERE a.kind = 'member_pending') AS pending_points,
               max(a.balance) FILTER (WHERE a.kind = 'member_held') AS held_points,
               -max(a.balance) FILTER (WHERE a.kind = 'member_debt') AS debt_points
        FROM members m
        {_TIER}
        JOIN accounts a ON a.member_id = m.id
        WHERE m.id = $1
        GROUP BY m.id, t.code, t.name
        """,
        member_id,
        now,
    )
    if row is None:
        raise NotFound("there is no such member", code="member_not_found")
    return MemberProfile(**dict(row))


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One journal entry as it moved the member's points (each account's change)."""

    entry_id: int
    booked_at: datetime
    kind: str
    transaction_id: UUID | None
    transaction_kind: str | None
    transaction_status: str | None
    partner_name: str | None
    amount_cents: int | None
    price_micros: int | None
    available: int
    pending: int
    held: int
    debt: int
    memo: str | None  # a reward's memo, an adjustment's reason
    adjustment_id: int | None

    @property
    def points(self) -> int:
        """The net change of what the member holds (owes, for debt)."""
        return self.available + self.pending + self.held + self.debt


LEDGER_HEADER = (
    "entry_id",
    "booked_at",
    "kind",
    "transaction_id",
    "transaction_kind",
    "transaction_status",
    "partner",
    "amount_cents",
    "price_micros",
    "points",
    "available_points",
    "pending_points",
    "held_points",
    "debt_points",
    "memo",
    "adjustment_id",
)


def ledger_csv_row(row: LedgerRow) -> tuple[object, ...]:
    return (
        row.entry_id,
        row.booked_at.isoformat(),
        row.kind,
        None if row.transaction_id is None else str(row.transaction_id),
        row.transaction_kind,
        row.transaction_status,
        row.partner_name,
        row.amount_cents,
        row.price_micros,
        row.points,
        row.available,
        row.pending,
        row.held,
        row.debt,
        row.memo,
        row.adjustment_id,
    )


# Every entry that posted to one of the member's accounts: earns, burns,
# refunds, rewards, adjustments, and the batch entries (release, expiry) that
# carry no member id but move the member's points.
_LEDGER = """
SELECT e.id AS entry_id, e.booked_at, e.kind, e.transaction_id,
       t.kind AS transaction_kind, t.status AS transaction_status,
       p.name AS partner_name, t.amount_cents, e.price_micros,
       coalesce(sum(po.amount) FILTER (WHERE a.kind = 'member_available'), 0)::bigint AS available,
       coalesce(sum(po.amount) FILTER (WHERE a.kind = 'member_pending'), 0)::bigint AS pending,
       coalesce(sum(po.amount) FILTER (WHERE a.kind = 'member_held'), 0)::bigint AS held,
       coalesce(sum(po.amount) FILTER (WHERE a.kind = 'member_debt'), 0)::bigint AS debt,
       coalesce(adj.reason, t.memo) AS memo, adj.id AS adjustment_id
FROM accounts a
JOIN postings po ON po.account_id = a.id
JOIN journal_entries e ON e.id = po.entry_id
LEFT JOIN transactions t ON t.id = e.transaction_id
LEFT JOIN partners p ON p.id = coalesce(e.partner_id, t.partner_id)
LEFT JOIN adjustments adj ON adj.entry_id = e.id
WHERE a.member_id = $1 AND ($2::bigint IS NULL OR e.id < $2)
GROUP BY e.id, t.kind, t.status, p.name, t.amount_cents, t.memo, adj.id, adj.reason
ORDER BY e.id DESC
"""


def ledger_cursor(row: LedgerRow) -> str:
    return encode_cursor(row.entry_id)


async def member_ledger(
    db: asyncpg.Pool | asyncpg.Connection,
    member_id: int,
    *,
    limit: int,
    cursor: str | None = None,
) -> list[LedgerRow]:
    """The member's entries, newest first, at most `limit`."""
    if not 1 <= limit <= PAGE_SIZE_MAX + 1:
        raise ValueError(f"limit is 1 to {PAGE_SIZE_MAX + 1}")
    rows = await db.fetch(f"{_LEDGER} LIMIT {limit}", member_id, _after(cursor))
    return [LedgerRow(**dict(r)) for r in rows]


async def iterate_ledger(conn: asyncpg.Connection, member_id: int) -> AsyncIterator[LedgerRow]:
    async for row in conn.cursor(_LEDGER, member_id, None):
        yield LedgerRow(**dict(row))


# Changes (audited) -------------------------------------------------------------

_BLOCK_ACTIONS = {"blocked": "member.block", "active": "member.unblock"}


async def change_status(
    pool: asyncpg.Pool, admin: AdminPrincipal, member_id: int, status: str, *, now: datetime
) -> str:
    """Block (`blocked`) or unblock (`active`) a member; the status before.
    A closed account stays closed; asking for the status it has changes nothing."""
    if status not in _BLOCK_ACTIONS:
        raise DomainError("a member can be blocked or made active", code="invalid_status")

    async def work(conn: asyncpg.Connection) -> str:
        before = await conn.fetchval(
            "SELECT status FROM members WHERE id = $1 FOR UPDATE", member_id
        )
        if before is None:
            raise NotFound("there is no such member", code="member_not_found")
        if before == "closed":
            raise Conflict("this member's account is closed", code="member_closed")
        if before != status:
            await set_member_status(conn, member_id, status)
            await audit.record(
                conn,
                admin,
                _BLOCK_ACTIONS[status],
                f"member:{member_id}",
                {"status": before},
                {"status": status},
                now,
            )
        return str(before)

    return await transaction(pool, work)


async def export_data(
    pool: asyncpg.Pool, admin: AdminPrincipal, member_id: int, *, now: datetime
) -> dict[str, Any]:
    """The member's data export (the document the member can download), with
    an audit row saying who took it."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        document = await export_member_data(conn, member_id)
        if document is None:
            raise NotFound("there is no such member", code="member_not_found")
        await audit.record(
            conn,
            admin,
            "member.data_export",
            f"member:{member_id}",
            None,
            {"transactions": len(document["transactions"])},
            now,
        )
        return document

    return await transaction(pool, work)


async def erase_member(
    pool: asyncpg.Pool,
    admin: AdminPrincipal,
    member_id: int,
    *,
    confirm_card_number: str,
    now: datetime,
) -> Closure:
    """Close the account and erase the member's personal data
    (`member_profile.delete_account`), once the admin has typed the member's
    card number; audited with balances only."""

    async def work(conn: asyncpg.Connection) -> Closure:
        member = await conn.fetchrow(
            "SELECT status, card_number FROM members WHERE id = $1", member_id
        )
        if member is None:
            raise NotFound("there is no such member", code="member_not_found")
        if member["status"] == "closed":
            raise Conflict("this member's account is closed already", code="member_closed")
        typed = "".join(ch for ch in confirm_card_number if ch not in " -")
        if typed != member["card_number"]:
            raise DomainError(
                "type the member's card number to confirm the erasure",
                code="confirmation_required",
            )
        closure = await delete_account_on(conn, member_id, now=now)
        await audit.record(
            conn,
            admin,
            "member.erase",
            f"member:{member_id}",
            {"status": member["status"]},
            {
                "status": "closed",
                "forfeited_available_points": closure.forfeited_available_points,
                "forfeited_pending_points": closure.forfeited_pending_points,
                "debt_points": closure.debt_points,
                "entry_id": closure.entry_id,
            },
            now,
        )
        return closure

    return await transaction(pool, work)
