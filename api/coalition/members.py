"""Members: joining (with a card and ledger accounts), blocking, finding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from api.coalition.cards import new_card_number
from api.errors import DomainError, NotFound
from api.ledger.accounts import open_member_accounts

CARD_ATTEMPTS_MAX = 5


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    public_id: UUID
    card_number: str
    email: str | None
    display_name: str | None
    status: str


async def create_member(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    email: str | None = None,
    display_name: str | None = None,
    card_number: str | None = None,
) -> Member:
    for _ in range(CARD_ATTEMPTS_MAX):
        number = card_number or new_card_number()
        row = await conn.fetchrow(
            "INSERT INTO members (card_number, email, display_name, created_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (card_number) DO NOTHING"
            " RETURNING id, public_id, card_number, email, display_name, status",
            number,
            email,
            display_name,
            now,
        )
        if row is not None:
            await open_member_accounts(conn, row["id"])
            return Member(**dict(row))
        if card_number is not None:
            raise DomainError("that card number is taken", code="card_number_taken")
    raise RuntimeError("could not draw a free card number")


async def set_member_status(conn: asyncpg.Connection, member_id: int, status: str) -> None:
    done = await conn.execute("UPDATE members SET status = $2 WHERE id = $1", member_id, status)
    if done == "UPDATE 0":
        raise NotFound("no such member", code="member_not_found")


def require_active_member(status: str) -> None:
    if status == "blocked":
        raise DomainError("this member is blocked", code="member_blocked", status=403)
    if status != "active":
        raise DomainError("this member's account is closed", code="member_closed", status=403)
