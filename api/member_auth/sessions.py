"""Member sessions: a row per wallet sign-in or member API token.

The JWT carries the row's id; every request checks that the row is live
(not revoked, not expired) and its member active, in one query, so signing
out, or a blocked or closed account, takes effect at once in every process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg

from api.member_auth.principal import MemberPrincipal

SessionKind = Literal["wallet", "api"]


async def open_session(
    conn: asyncpg.Connection,
    member_id: int,
    kind: SessionKind,
    *,
    now: datetime,
    expires_at: datetime,
) -> UUID:
    session_id: UUID = await conn.fetchval(
        "INSERT INTO member_sessions (member_id, kind, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        member_id,
        kind,
        now,
        expires_at,
    )
    return session_id


async def live_session(
    db: asyncpg.Pool | asyncpg.Connection,
    session_id: UUID,
    member_public_id: UUID,
    kind: SessionKind,
    *,
    now: datetime,
) -> MemberPrincipal | None:
    row = await db.fetchrow(
        "SELECT m.id, m.public_id FROM member_sessions s JOIN members m ON m.id = s.member_id"
        " WHERE s.id = $1 AND s.kind = $2 AND s.revoked_at IS NULL AND s.expires_at > $3"
        " AND m.public_id = $4 AND m.status = 'active'",
        session_id,
        kind,
        now,
        member_public_id,
    )
    if row is None:
        return None
    return MemberPrincipal(member_id=row["id"], public_id=row["public_id"])


async def revoke_session(
    db: asyncpg.Pool | asyncpg.Connection, session_id: UUID, *, now: datetime
) -> None:
    await db.execute(
        "UPDATE member_sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        session_id,
        now,
    )


async def revoke_member_sessions(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int, *, now: datetime
) -> None:
    """Every session and token of a member (e.g. when the account is deleted)."""
    await db.execute(
        "UPDATE member_sessions SET revoked_at = $2 WHERE member_id = $1 AND revoked_at IS NULL",
        member_id,
        now,
    )
