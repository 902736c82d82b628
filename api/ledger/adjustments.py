"""Manual adjustments: an admin credits or debits a member's available points,
with a reason, and a second admin approves the large ones (maker-checker).

- Up to `threshold_points` (settings.adjustment_approval_points) an
  adjustment is booked when it is requested; above it, it waits as `pending`
  until another admin with an approving role books or rejects it. The maker
  can never decide their own (`adjustment_own`, 403; the table's CHECK
  `decided_by <> requested_by` behind it).
- Booking is one balanced `adjustment` journal entry. A credit moves points
  from `programme_adjustments` to the member's available points, in a new
  lot priced 0 that expires like any available points (36 months): the
  programme gives them, as with a promo reward, so they add nothing to the
  liability's money value and cost the programme when redeemed. A debit
  moves points from the member's available lots (earliest expiry first) to
  `programme_adjustments`, traced in `lot_expiries` like a donation, so
  settlement recognises them at their lots' prices as breakage; the guarded
  update makes an overdraft impossible (`insufficient_points`, nothing written).
- Lock order: the member's accounts first (`lock_member`), then the
  adjustment row, then the programme account. Two approvals of one adjustment
  queue on the member's lock; the second finds it booked (`adjustment_decided`).
- Idempotent: the form's key is unique per requesting admin; a repeat returns
  the first adjustment and writes nothing.
- Every step (requested, approved, rejected, booked) is an audit row written
  in the transaction of the change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

from api.admin_auth import audit
from api.admin_auth.principal import AdminPrincipal, Role
from api.clock import add_months
from api.cursors import decode_cursor, encode_cursor, whole_number
from api.db.pool import transaction
from api.db.sql import Query
from api.engagement import inbox
from api.errors import Conflict, DomainError, InsufficientPoints, NotFound
from api.ledger.accounts import MemberAccounts, lock_member, programme_account
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
from api.ledger.terms import POINTS_EXPIRE_AFTER_MONTHS

ENTRY_KIND = "adjustment"
ADJUSTMENT_POINTS_MAX = 10_000_000  # also the table's CHECK
REASON_CHARS_MAX = 500
NOTE_CHARS_MAX = 500
PAGE_SIZE_MAX = 100
STATUSES = ("pending", "booked", "rejected")
# Who may do what (the back-office routes say the same in their opt roles;
# the domain checks again, so no other caller can skip it).
REQUEST_ROLES: tuple[Role, ...] = ("owner", "support")
APPROVE_ROLES: tuple[Role, ...] = ("owner", "finance")


@dataclass(frozen=True, slots=True)
class Adjustment:
    id: int
    member_id: int
    card_number: str
    member_name: str | None
    points: int  # signed: a credit is positive, a debit negative
    reason: str
    needs_approval: bool
    status: str
    requested_by: int
    requested_by_email: str
    requested_at: datetime
    decided_by: int | None
    decided_by_email: str | None
    decided_at: datetime | None
    decision_note: str | None
    entry_id: int | None
    booked_at: datetime | None
    replayed: bool = False  # a repeat of an earlier request: nothing new was written

    @property
    def direction(self) -> str:
        return "credit" if self.points > 0 else "debit"


@dataclass(frozen=True, slots=True)
class AdjustmentRequest:
    member_id: int
    direction: str  # "credit" or "debit"
    points: int
    reason: str
    idempotency_key: str

    @property
    def signed_points(self) -> int:
        return self.points if self.direction == "credit" else -self.points


class InvalidAdjustment(DomainError):
    """A form field is wrong; `field` says which, for the page to point at it."""

    status = 422
    code = "invalid_adjustment"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field


def validate(request: AdjustmentRequest) -> AdjustmentRequest:
    """The request with its reason trimmed, or `InvalidAdjustment` naming the field."""
    if request.direction not in ("credit", "debit"):
        raise InvalidAdjustment("direction", "choose whether to credit or debit the points")
    if not 1 <= request.points <= ADJUSTMENT_POINTS_MAX:
        raise InvalidAdjustment(
            "points", f"the points are a whole number from 1 to {ADJUSTMENT_POINTS_MAX:,}"
        )
    reason = request.reason.strip()
    if not reason:
        raise InvalidAdjustment("reason", "give a reason for the adjustment")
    if len(reason) > REASON_CHARS_MAX:
        raise InvalidAdjustment("reason", f"the reason is at most {REASON_CHARS_MAX} characters")
    if not 1 <= len(request.idempotency_key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        raise InvalidAdjustment("idempotency_key", "the form had expired: reload the page")
    return AdjustmentRequest(
        request.member_id, request.direction, request.points, reason, request.idempotency_key
    )


_COLUMNS = """
    a.id, a.member_id, m.card_number, coalesce(m.display_name, m.email) AS member_name,
    a.points, a.reason, a.needs_approval, a.status,
    a.requested_by, r.email AS requested_by_email, a.requested_at,
    a.decided_by, d.email AS decided_by_email, a.decided_at, a.decision_note,
    a.entry_id, a.booked_at
"""
_FROM = """
FROM adjustments a
JOIN members m ON m.id = a.member_id
JOIN admin_accounts r ON r.id = a.requested_by
LEFT JOIN admin_accounts d ON d.id = a.decided_by
"""


def _adjustment(row: asyncpg.Record, *, replayed: bool = False) -> Adjustment:
    return Adjustment(**dict(row), replayed=replayed)


async def get_adjustment(db: asyncpg.Pool | asyncpg.Connection, adjustment_id: int) -> Adjustment:
    row = await db.fetchrow(f"SELECT {_COLUMNS} {_FROM} WHERE a.id = $1", adjustment_id)
    if row is None:
        raise NotFound("there is no such adjustment", code="adjustment_not_found")
    return _adjustment(row)


def _require_role(admin: AdminPrincipal, roles: tuple[Role, ...], what: str) -> None:
    if admin.role not in roles:
        raise DomainError(
            f"{what} is for {' or '.join(roles)}; you are {admin.role}",
            code="role_not_allowed",
            status=403,
        )


async def _member(conn: asyncpg.Connection, member_id: int) -> MemberAccounts:
    member = await lock_member(conn, member_id)
    if member is None or member.available_id is None:
        raise NotFound("there is no such member", code="member_not_found")
    return member


def _audit_view(adjustment: Adjustment) -> dict[str, Any]:
    # No names, e-mail addresses or card numbers: the audit log is append-only,
    # and a member's erasure must not leave their personal data behind in it.
    view = asdict(adjustment)
    for personal in ("replayed", "card_number", "member_name"):
        view.pop(personal)
    return view


# Booking ---------------------------------------------------------------------

_CREDIT = Query(f"""
WITH {go_cte(False)},
lot AS (
    INSERT INTO lots
        (member_id, state, points_original, points_remaining, available_at, expires_at,
         price_micros)
    SELECT :member_id::bigint, 'available', :points::bigint, :points::bigint,
           :booked_at::timestamptz, :expires_at::timestamptz, 0
    FROM go
),
{ENTRY_CTES}
SELECT {ENTRY_RESULT}
""")

_DEBIT = Query(f"""
WITH {go_cte(False)},
{TAKE_FIFO_CTES},
{ENTRY_CTES},
traced AS (
    INSERT INTO lot_expiries (entry_id, lot_id, points)
    SELECT entry.id, take.id, take.points FROM entry, take
)
SELECT {ENTRY_RESULT}, (SELECT coalesce(sum(points), 0) FROM consumed) AS taken
""")


def _require_points(member: MemberAccounts, points: int) -> None:
    if points < 0 and member.available < -points:
        raise InsufficientPoints(
            f"the member has {member.available:,} points available; a debit of"
            f" {-points:,} would overdraw them"
        )


async def _book(
    conn: asyncpg.Connection, member: MemberAccounts, points: int, reason: str, now: datetime
) -> int:
    """Write the adjustment's one balanced entry (the member is locked), and
    tell the member in their inbox why their balance moved; the entry's id."""
    adjustments_id = await programme_account(conn, "programme_adjustments")
    postings = Postings(first=frozenset(member.account_ids))
    if points > 0:
        postings.move(adjustments_id, member.available_id, points)
        query = _CREDIT
        values: dict[str, Any] = {
            "member_id": member.member_id,
            "points": points,
            "expires_at": add_months(now, POINTS_EXPIRE_AFTER_MONTHS),
        }
    else:
        _require_points(member, points)
        postings.move(member.available_id, adjustments_id, -points)
        query = _DEBIT
        values = {"member_id": member.member_id, "take_points": -points, "skip_lot_id": None}
    row = await conn.fetchrow(
        query.text,
        *query.args(
            {
                **values,
                **entry_params(
                    postings,
                    kind=ENTRY_KIND,
                    booked_at=now,
                    member_id=member.member_id,
                    price_micros=0 if points > 0 else None,
                ),
            }
        ),
    )
    require_moved(row, postings)  # the guard: never below zero, whatever ran meanwhile
    if points < 0 and row["taken"] != -points:
        raise LedgerInvariantError(
            f"lots of member {member.member_id} hold {row['taken']} points, balance said"
            f" {member.available}"
        )
    entry_id = int(row["entry_id"])
    await inbox.post(
        conn,
        member.member_id,
        "adjustment",
        {"points": points, "reason": reason},
        now,
        dedupe_key=f"adjustment:{entry_id}",
    )
    return entry_id


# Requesting ------------------------------------------------------------------


async def request_adjustment(
    pool: asyncpg.Pool,
    admin: AdminPrincipal,
    request: AdjustmentRequest,
    *,
    threshold_points: int,
    now: datetime,
) -> Adjustment:
    """Book the adjustment (up to `threshold_points`) or leave it pending for a
    second admin; a repeat of the key returns the first adjustment."""
    _require_role(admin, REQUEST_ROLES, "requesting an adjustment")
    request = validate(request)
    return await transaction(
        pool, lambda conn: _request(conn, admin, request, threshold_points, now)
    )


async def _request(
    conn: asyncpg.Connection,
    admin: AdminPrincipal,
    request: AdjustmentRequest,
    threshold_points: int,
    now: datetime,
) -> Adjustment:
    member = await _member(conn, request.member_id)
    earlier = await conn.fetchrow(
        f"SELECT {_COLUMNS} {_FROM} WHERE a.requested_by = $1 AND a.idempotency_key = $2",
        admin.admin_id,
        request.idempotency_key,
    )
    if earlier is not None:
        if (earlier["member_id"], earlier["points"], earlier["reason"]) != (
            request.member_id,
            request.signed_points,
            request.reason,
        ):
            raise Conflict(
                "this form was already sent for another adjustment; reload the page",
                code="idempotency_conflict",
            )
        return _adjustment(earlier, replayed=True)
    if member.status == "closed":
        raise Conflict("this member's account is closed", code="member_closed")
    points = request.signed_points
    needs_approval = request.points > threshold_points
    # Refused at once even when it would wait: a checker should not be asked to
    # approve what cannot be booked. `_book` checks again, for what changed since.
    _require_points(member, points)
    before_points = member.available
    entry_id = None if needs_approval else await _book(conn, member, points, request.reason, now)
    try:
        adjustment_id = await conn.fetchval(
            "INSERT INTO adjustments (member_id, points, reason, needs_approval, status,"
            " requested_by, requested_at, entry_id, booked_at, idempotency_key)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            request.member_id,
            points,
            request.reason,
            needs_approval,
            "pending" if needs_approval else "booked",
            admin.admin_id,
            now,
            entry_id,
            None if needs_approval else now,
            request.idempotency_key,
        )
    except asyncpg.UniqueViolationError:
        # The same key, sent at once for another member (whose lock it did not share).
        raise Conflict(
            "this form was already sent for another adjustment; reload the page",
            code="idempotency_conflict",
        ) from None
    adjustment = await get_adjustment(conn, int(adjustment_id))
    subject = f"adjustment:{adjustment.id}"
    await audit.record(
        conn,
        admin,
        "adjustment.requested",
        subject,
        {"member_id": member.member_id, "available_points": before_points},
        {**_audit_view(adjustment), "status": "pending" if needs_approval else "requested"},
        now,
    )
    if not needs_approval:
        await audit.record(
            conn,
            admin,
            "adjustment.booked",
            subject,
            {"status": "requested", "available_points": before_points},
            {
                "status": "booked",
                "entry_id": entry_id,
                "points": points,
                "available_points": before_points + points,
            },
            now,
        )
    return adjustment


# Deciding --------------------------------------------------------------------


async def approve_adjustment(
    pool: asyncpg.Pool, admin: AdminPrincipal, adjustment_id: int, *, now: datetime
) -> Adjustment:
    """Book a pending adjustment as a second admin; one balanced entry."""
    _require_role(admin, APPROVE_ROLES, "approving an adjustment")
    return await transaction(pool, lambda conn: _decide(conn, admin, adjustment_id, None, now))


async def reject_adjustment(
    pool: asyncpg.Pool,
    admin: AdminPrincipal,
    adjustment_id: int,
    *,
    note: str,
    now: datetime,
) -> Adjustment:
    """Refuse a pending adjustment as a second admin; nothing is booked."""
    _require_role(admin, APPROVE_ROLES, "rejecting an adjustment")
    note = note.strip()
    if len(note) > NOTE_CHARS_MAX:
        raise InvalidAdjustment("note", f"the note is at most {NOTE_CHARS_MAX} characters")
    return await transaction(
        pool, lambda conn: _decide(conn, admin, adjustment_id, note or "rejected", now)
    )


async def _decide(
    conn: asyncpg.Connection,
    admin: AdminPrincipal,
    adjustment_id: int,
    rejection_note: str | None,
    now: datetime,
) -> Adjustment:
    member_id = await conn.fetchval(
        "SELECT member_id FROM adjustments WHERE id = $1", adjustment_id
    )
    if member_id is None:
        raise NotFound("there is no such adjustment", code="adjustment_not_found")
    member = await _member(conn, int(member_id))
    # Read under the member's lock: a concurrent decision has committed or waits.
    row = await conn.fetchrow(
        "SELECT status, requested_by, points, reason FROM adjustments WHERE id = $1 FOR UPDATE",
        adjustment_id,
    )
    if row["requested_by"] == admin.admin_id:
        raise DomainError(
            "you requested this adjustment; another admin must approve or reject it",
            code="adjustment_own",
            status=403,
        )
    if row["status"] != "pending":
        raise Conflict(f"this adjustment is {row['status']} already", code="adjustment_decided")
    subject = f"adjustment:{adjustment_id}"
    if rejection_note is not None:
        await conn.execute(
            "UPDATE adjustments SET status = 'rejected', decided_by = $2, decided_at = $3,"
            " decision_note = $4 WHERE id = $1",
            adjustment_id,
            admin.admin_id,
            now,
            rejection_note,
        )
        await audit.record(
            conn,
            admin,
            "adjustment.rejected",
            subject,
            {"status": "pending"},
            {"status": "rejected", "decided_by": admin.admin_id, "note": rejection_note},
            now,
        )
        return await get_adjustment(conn, adjustment_id)
    if member.status == "closed":
        raise Conflict("this member's account is closed", code="member_closed")
    points = int(row["points"])
    entry_id = await _book(conn, member, points, str(row["reason"]), now)
    await conn.execute(
        "UPDATE adjustments SET status = 'booked', decided_by = $2, decided_at = $3,"
        " entry_id = $4, booked_at = $3 WHERE id = $1",
        adjustment_id,
        admin.admin_id,
        now,
        entry_id,
    )
    await audit.record(
        conn,
        admin,
        "adjustment.approved",
        subject,
        {"status": "pending", "decided_by": None},
        {"status": "approved", "decided_by": admin.admin_id},
        now,
    )
    await audit.record(
        conn,
        admin,
        "adjustment.booked",
        subject,
        {"status": "approved", "available_points": member.available},
        {
            "status": "booked",
            "entry_id": entry_id,
            "points": points,
            "available_points": member.available + points,
        },
        now,
    )
    return await get_adjustment(conn, adjustment_id)


# Listing ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdjustmentFilter:
    status: str | None = None  # None: every status
    member_id: int | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise DomainError(
                f"status is one of {', '.join(STATUSES)}", code="invalid_status", status=400
            )


_LIST = f"""
SELECT {_COLUMNS} {_FROM}
WHERE ($1::text IS NULL OR a.status = $1)
  AND ($2::bigint IS NULL OR a.member_id = $2)
  AND ($3::bigint IS NULL OR a.id < $3)
ORDER BY a.id DESC
"""


def decode_adjustment_cursor(cursor: str | None) -> int | None:
    return None if not cursor else int(decode_cursor(cursor, whole_number)[0])


def adjustment_cursor(adjustment: Adjustment) -> str:
    return encode_cursor(adjustment.id)


async def list_adjustments(
    db: asyncpg.Pool | asyncpg.Connection,
    where: AdjustmentFilter,
    *,
    limit: int,
    cursor: str | None = None,
) -> list[Adjustment]:
    """Newest first, at most `limit` (ask for one more to know of a next page)."""
    if not 1 <= limit <= PAGE_SIZE_MAX + 1:
        raise ValueError(f"limit is 1 to {PAGE_SIZE_MAX + 1}")
    rows = await db.fetch(
        _LIST + " LIMIT $4",
        where.status,
        where.member_id,
        decode_adjustment_cursor(cursor),
        limit,
    )
    return [_adjustment(r) for r in rows]


async def iterate_adjustments(
    conn: asyncpg.Connection, where: AdjustmentFilter
) -> AsyncIterator[Adjustment]:
    """Every matching adjustment, newest first, as a server-side cursor (in a
    transaction of the caller's): for CSV exports, which stream."""
    async for row in conn.cursor(_LIST, where.status, where.member_id, None):
        yield _adjustment(row)
