"""The admin audit log: who changed what, when, and how it was before and after.

`record` is called inside the transaction that makes the change, on the same
connection, so that the change and its row commit or roll back together.
The table is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE
(migrations/versions/0007_admin_accounts.py).

    async def change_rate(conn, admin, partner_code, new_rate, now):
        before = await read_rate(conn, partner_code)
        after = await write_rate(conn, partner_code, new_rate)
        await audit.record(conn, admin, "partner.rate.change", f"partner:{partner_code}",
                           before, after, now)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from api.admin_auth.principal import AdminPrincipal
from api.cursors import aware_datetime, decode_cursor, encode_cursor, whole_number
from api.errors import DomainError

ACTION_CHARS_MAX = 100
SUBJECT_CHARS_MAX = 200
PAGE_SIZE_MAX = 100


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    admin_id: int
    admin_email: str
    admin_role: str
    action: str
    subject: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: list[AuditEntry]
    next_cursor: str | None


def _json(value: dict[str, Any] | None) -> str | None:
    # default=str: dates, UUIDs and Decimals read back as their text.
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


async def record(
    conn: asyncpg.Connection,
    admin: AdminPrincipal,
    action: str,
    subject: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime,
) -> int:
    """Append one audit row in the caller's transaction; its id."""
    if not action or len(action) > ACTION_CHARS_MAX:
        raise ValueError(f"an audit action has 1 to {ACTION_CHARS_MAX} characters: {action!r}")
    if len(subject) > SUBJECT_CHARS_MAX:
        raise ValueError(f"an audit subject has at most {SUBJECT_CHARS_MAX} characters")
    if not conn.is_in_transaction():
        # Outside a transaction the row could commit while the change rolls back.
        raise RuntimeError("audit.record must run in the transaction of the change it records")
    audit_id: int = await conn.fetchval(
        "INSERT INTO admin_audit_log"
        " (at, admin_id, admin_email, admin_role, action, subject, before, after)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8::text::jsonb) RETURNING id",
        now,
        admin.admin_id,
        admin.email,
        admin.role,
        action,
        subject,
        _json(before),
        _json(after),
    )
    return audit_id


def _encode_cursor(at: datetime, audit_id: int) -> str:
    return encode_cursor(at, audit_id)


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    at, audit_id = decode_cursor(cursor, aware_datetime, whole_number)
    return at, audit_id


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        admin_id=row["admin_id"],
        admin_email=row["admin_email"],
        admin_role=row["admin_role"],
        action=row["action"],
        subject=row["subject"],
        before=None if row["before"] is None else json.loads(row["before"]),
        after=None if row["after"] is None else json.loads(row["after"]),
    )


async def list_entries(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    limit: int,
    cursor: str | None = None,
    admin_id: int | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    subject: str | None = None,
) -> AuditPage:
    """Newest first; `since` inclusive, `until` exclusive; `subject` exact
    ("challenge:7"); keyset-paginated on (at, id)."""
    if not 1 <= limit <= PAGE_SIZE_MAX:
        raise DomainError(f"limit must be 1 to {PAGE_SIZE_MAX}", code="invalid_limit", status=400)
    if any(moment is not None and moment.tzinfo is None for moment in (since, until)):
        raise DomainError(
            "since and until need a time zone (2026-03-02T09:00:00Z)",
            code="invalid_range",
            status=400,
        )
    if since is not None and until is not None and since >= until:
        raise DomainError("since must be before until", code="invalid_range", status=400)
    after_at, after_id = _decode_cursor(cursor) if cursor is not None else (None, None)
    # One statement with optional filters: a NULL parameter switches its filter off.
    rows = await db.fetch(
        "SELECT id, at, admin_id, admin_email, admin_role, action, subject,"
        " before::text AS before, after::text AS after FROM admin_audit_log"
        " WHERE ($1::bigint IS NULL OR admin_id = $1)"
        " AND ($2::text IS NULL OR action = $2)"
        " AND ($3::timestamptz IS NULL OR at >= $3)"
        " AND ($4::timestamptz IS NULL OR at < $4)"
        " AND ($5::timestamptz IS NULL OR (at, id) < ($5, $6::bigint))"
        " AND ($8::text IS NULL OR subject = $8)"
        " ORDER BY at DESC, id DESC LIMIT $7",
        admin_id,
        action,
        since,
        until,
        after_at,
        after_id,
        limit + 1,
        subject,
    )
    items = [_entry(row) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = _encode_cursor(items[-1].at, items[-1].id) if more else None
    return AuditPage(items=items, next_cursor=next_cursor)


async def admins_seen(db: asyncpg.Pool | asyncpg.Connection) -> list[tuple[int, str]]:
    """Every admin who has a row in the log, with their latest e-mail (for a filter)."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (admin_id) admin_id, admin_email FROM admin_audit_log"
        " ORDER BY admin_id, at DESC"
    )
    return [(row["admin_id"], row["admin_email"]) for row in rows]
