"""Accounts: opening them, locking a member's, finding the programme's.

Lock order, which keeps concurrent writes free of deadlocks: a write first
locks all of one member's accounts (in id order, `lock_member`), and only then
posts, touching partner and programme accounts last.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

MEMBER_KINDS = ("member_available", "member_pending", "member_held", "member_debt")
PARTNER_KINDS = ("partner_points_issued", "partner_points_redeemed")
PROGRAMME_KINDS = ("programme_breakage", "programme_promo", "programme_adjustments")
MONEY_KINDS = (
    "partner_money",
    "programme_float",
    "programme_revenue_spread",
    "programme_revenue_breakage",
)
# Each partner points account, and the programme promo budget, is this many
# rows (migrations 0001, 0008, 0019): writes for different members land on
# different rows and do not queue on one lock. 64 since 0019: with 16, the
# earn statement spent most of its time under 32 clients waiting for a shard.
PARTNER_ACCOUNT_SHARDS = 64


def shard_for(key: int) -> int:
    """The partner-account shard a write uses. Any shard is correct; spreading
    writes by card number or transaction id keeps them off each other's locks."""
    return key % PARTNER_ACCOUNT_SHARDS


@dataclass(frozen=True, slots=True)
class MemberAccounts:
    """A member's four accounts and their balances as read (locked or not)."""

    member_id: int
    public_id: UUID
    card_number: str
    status: str
    available_id: int
    pending_id: int
    held_id: int
    debt_id: int
    available: int
    pending: int
    held: int
    debt: int

    @property
    def account_ids(self) -> tuple[int, int, int, int]:
        return (self.available_id, self.pending_id, self.held_id, self.debt_id)


def member_accounts_lateral(*, lock: bool) -> str:
    """A LATERAL join yielding member `m`'s account ids and balances (as
    MemberAccounts fields); with `lock`, the accounts are locked FOR UPDATE
    in id order, which is the ledger's lock order."""
    locking = "ORDER BY id FOR UPDATE" if lock else ""
    return f"""
LEFT JOIN LATERAL (
    SELECT
        max(x.id) FILTER (WHERE x.kind = 'member_available') AS available_id,
        max(x.id) FILTER (WHERE x.kind = 'member_pending') AS pending_id,
        max(x.id) FILTER (WHERE x.kind = 'member_held') AS held_id,
        max(x.id) FILTER (WHERE x.kind = 'member_debt') AS debt_id,
        max(x.balance) FILTER (WHERE x.kind = 'member_available') AS available,
        max(x.balance) FILTER (WHERE x.kind = 'member_pending') AS pending,
        max(x.balance) FILTER (WHERE x.kind = 'member_held') AS held,
        max(x.balance) FILTER (WHERE x.kind = 'member_debt') AS debt
    FROM (SELECT id, kind, balance FROM accounts WHERE member_id = m.id {locking}) x
) acc ON true
"""


MEMBER_ACCOUNTS_COLUMNS = """
    m.id AS member_id, m.public_id AS member_public_id, m.card_number,
    m.status AS member_status, acc.*
"""


def member_accounts_from(row: asyncpg.Record) -> MemberAccounts | None:
    if row["member_id"] is None:
        return None
    return MemberAccounts(
        member_id=row["member_id"],
        public_id=row["member_public_id"],
        card_number=row["card_number"],
        status=row["member_status"],
        available_id=row["available_id"],
        pending_id=row["pending_id"],
        held_id=row["held_id"],
        debt_id=row["debt_id"],
        available=row["available"],
        pending=row["pending"],
        held=row["held"],
        debt=row["debt"],
    )


async def lock_member(conn: asyncpg.Connection, member_id: int) -> MemberAccounts | None:
    row = await conn.fetchrow(
        f"SELECT {MEMBER_ACCOUNTS_COLUMNS} FROM members m {member_accounts_lateral(lock=True)}"
        " WHERE m.id = $1",
        member_id,
    )
    return None if row is None else member_accounts_from(row)


async def lock_members(conn: asyncpg.Connection, member_ids: list[int]) -> None:
    """Lock several members' accounts at once, in the global id order."""
    await conn.execute(
        "SELECT id FROM accounts WHERE member_id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
        member_ids,
    )


async def open_member_accounts(conn: asyncpg.Connection, member_id: int) -> None:
    await conn.execute(
        "INSERT INTO accounts (kind, unit, member_id) SELECT k, 'PTS', $1 FROM unnest($2::text[]) k",
        member_id,
        list(MEMBER_KINDS),
    )


async def open_partner_accounts(conn: asyncpg.Connection, partner_id: int) -> None:
    await conn.execute(
        "INSERT INTO accounts (kind, unit, partner_id, shard)"
        " SELECT k, 'PTS', $1, s FROM unnest($2::text[]) k, generate_series(0, $3 - 1) s",
        partner_id,
        list(PARTNER_KINDS),
        PARTNER_ACCOUNT_SHARDS,
    )
    # The money side: one EUR account, written only by settlement (no contention).
    await conn.execute(
        "INSERT INTO accounts (kind, unit, partner_id) VALUES ('partner_money', 'EUR', $1)",
        partner_id,
    )


async def partner_account(conn: asyncpg.Connection, partner_id: int, kind: str, shard: int) -> int:
    account_id = await conn.fetchval(
        "SELECT id FROM accounts WHERE partner_id = $1 AND kind = $2 AND shard = $3",
        partner_id,
        kind,
        shard,
    )
    if account_id is None:
        raise LookupError(f"partner {partner_id} has no {kind} account")
    return int(account_id)


async def programme_account(conn: asyncpg.Connection, kind: str) -> int:
    account_id = await conn.fetchval(
        "SELECT id FROM accounts WHERE kind = $1 AND member_id IS NULL AND partner_id IS NULL",
        kind,
    )
    if account_id is None:
        raise LookupError(f"no programme account {kind}")
    return int(account_id)
