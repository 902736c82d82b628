"""Spending points, in two phases like a card payment: where a point dies.

Authorize moves points from available to held (taking them from lots FIFO by
expiry) until a deadline; capture sends all or part of the hold to the
partner and puts the rest back; void, or the deadline passing, puts it all
back into the lots it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import msgspec

from api.db.pool import transaction
from api.db.sql import Query
from api.errors import Conflict, DomainError, InsufficientPoints
from api.ids import new_transaction_id
from api.ledger.accounts import MemberAccounts, lock_member, partner_account, shard_for
from api.ledger.entries import (
    ENTRY_CTES,
    ENTRY_RESULT,
    LedgerInvariantError,
    Postings,
    entry_params,
    require_moved,
)
from api.ledger.idempotency import Claim, claim_params, go_cte
from api.ledger.lots import RESTORE_HOLD_CTES, TAKE_FIFO_CTES
from api.ledger.terms import PartnerTerms
from api.ledger.transactions import TransactionRow, load_transaction
from api.webhooks.outbox import BURN_AUTHORIZATION_EXPIRED, OUTBOX_CTE, Event, event_params

HOLD_MINUTES_MAX = 7 * 24 * 60
EXPIRED_HOLDS_BATCH_MAX = 200


@dataclass(frozen=True, slots=True)
class AuthorizePlan:
    transaction_id: UUID
    partner_id: int
    member_id: int
    points: int
    price_micros: int
    receipt_ref: str | None
    store_id: str | None
    occurred_at: datetime
    booked_at: datetime
    hold_expires_at: datetime
    postings: Postings

    @property
    def row(self) -> TransactionRow:
        return TransactionRow(
            id=self.transaction_id,
            partner_id=self.partner_id,
            member_id=self.member_id,
            kind="burn",
            status="authorized",
            amount_cents=None,
            currency=None,
            points=self.points,
            points_captured=0,
            points_refunded=0,
            amount_refunded_cents=0,
            debt_points=0,
            debt_repaid_points=0,
            price_micros=self.price_micros,
            receipt_ref=self.receipt_ref,
            store_id=self.store_id,
            original_id=None,
            occurred_at=self.occurred_at,
            created_at=self.booked_at,
            available_at=None,
            hold_expires_at=self.hold_expires_at,
            finished_at=None,
        )


@dataclass(frozen=True, slots=True)
class FinishPlan:
    hold: TransactionRow
    status: str  # captured, voided or expired
    points_captured: int
    points_restored: int
    booked_at: datetime
    postings: Postings
    event: Event | None = None  # announced in the same statement (webhook outbox)

    @property
    def row(self) -> TransactionRow:
        return self.hold.replace(
            status=self.status, points_captured=self.points_captured, finished_at=self.booked_at
        )


def plan_authorize(
    terms: PartnerTerms,
    member: MemberAccounts,
    *,
    points: int,
    hold_minutes: int,
    receipt_ref: str | None,
    store_id: str | None,
    occurred_at: datetime,
    now: datetime,
) -> AuthorizePlan:
    if points <= 0:
        raise DomainError("points must be a positive whole number", code="invalid_points")
    if not 0 < hold_minutes <= HOLD_MINUTES_MAX:
        raise DomainError(
            f"hold_minutes must be between 1 and {HOLD_MINUTES_MAX}", code="invalid_hold"
        )
    if member.available < points:
        raise InsufficientPoints(
            f"the member has {member.available} points available, {points} were asked"
        )
    return AuthorizePlan(
        transaction_id=new_transaction_id(),
        partner_id=terms.partner_id,
        member_id=member.member_id,
        points=points,
        price_micros=terms.redemption_price_micros,
        receipt_ref=receipt_ref,
        store_id=store_id,
        occurred_at=occurred_at,
        booked_at=now,
        hold_expires_at=now + timedelta(minutes=hold_minutes),
        postings=Postings(first=frozenset(member.account_ids)).move(
            member.available_id, member.held_id, points
        ),
    )


def _authorize_statement(with_claim: bool) -> Query:
    return Query(f"""
WITH {go_cte(with_claim)},
txn AS (
    INSERT INTO transactions
        (id, partner_id, member_id, kind, status, points, price_micros, receipt_ref, store_id,
         occurred_at, created_at, hold_expires_at)
    SELECT :txn_id::uuid, :partner_id::bigint, :member_id::bigint, 'burn', 'authorized',
           :take_points::bigint, :price_micros::integer, :receipt_ref::text, :store_id::text,
           :occurred_at::timestamptz, :booked_at::timestamptz, :hold_expires_at::timestamptz
    FROM go
    RETURNING id
),
{TAKE_FIFO_CTES},
held AS (
    INSERT INTO hold_lots (transaction_id, lot_id, points)
    SELECT txn.id, take.id, take.points FROM txn, take
),
{ENTRY_CTES}
SELECT {ENTRY_RESULT}, (SELECT coalesce(sum(points), 0) FROM consumed) AS taken
""")


_AUTHORIZE = {flag: _authorize_statement(flag) for flag in (True, False)}


async def apply_authorize(
    conn: asyncpg.Connection, plan: AuthorizePlan, claim: Claim | None
) -> bool:
    query = _AUTHORIZE[claim is not None]
    row = await conn.fetchrow(
        query.text,
        *query.args(
            {
                **claim_params(claim),
                "txn_id": plan.transaction_id,
                "partner_id": plan.partner_id,
                "member_id": plan.member_id,
                "take_points": plan.points,
                "skip_lot_id": None,
                "price_micros": plan.price_micros,
                "receipt_ref": plan.receipt_ref,
                "store_id": plan.store_id,
                "occurred_at": plan.occurred_at,
                "hold_expires_at": plan.hold_expires_at,
                **entry_params(
                    plan.postings,
                    kind="authorize",
                    booked_at=plan.booked_at,
                    transaction_id=plan.transaction_id,
                    partner_id=plan.partner_id,
                    member_id=plan.member_id,
                    price_micros=plan.price_micros,
                ),
            }
        ),
    )
    require_moved(row, plan.postings)
    if row["went"] and row["taken"] != plan.points:
        raise LedgerInvariantError(
            f"lots of member {plan.member_id} hold {row['taken']} points, balance said {plan.points}"
        )
    return bool(row["went"])


def plan_finish(
    hold: TransactionRow,
    member: MemberAccounts,
    points_redeemed_id: int,
    *,
    status: str,
    capture_points: int,
    now: datetime,
) -> FinishPlan:
    """Capture `capture_points` (0 for a void or expiry) and put the rest back."""
    if hold.status != "authorized":
        raise Conflict(f"this burn is already {hold.status}", code=f"authorization_{hold.status}")
    assert hold.kind == "burn" and hold.hold_expires_at is not None
    if status == "captured" and now > hold.hold_expires_at:
        raise Conflict(
            "the authorization passed its deadline and can no longer be captured",
            code="authorization_expired",
        )
    if not 0 <= capture_points <= hold.points:
        raise DomainError(
            f"capture between 1 and the {hold.points} authorized points",
            code="invalid_points",
        )
    restored = hold.points - capture_points
    postings = (
        Postings(first=frozenset(member.account_ids))
        .add(member.held_id, -hold.points)
        .add(points_redeemed_id, capture_points)
        .add(member.available_id, restored)
    )
    return FinishPlan(hold, status, capture_points, restored, now, postings)


def _finish_statement(with_claim: bool) -> Query:
    return Query(f"""
WITH {go_cte(with_claim)},
finished AS (
    UPDATE transactions SET status = :status::text, points_captured = :points_captured::bigint,
                            finished_at = :booked_at::timestamptz
    FROM go
    WHERE id = :txn_id::uuid AND status = 'authorized'
    RETURNING id
),
{RESTORE_HOLD_CTES},
{ENTRY_CTES},
{OUTBOX_CTE}
SELECT {ENTRY_RESULT},
       (SELECT count(*) FROM finished) AS finished,
       (SELECT coalesce(sum(points), 0) FROM restored) AS restored
""")


_FINISH = {flag: _finish_statement(flag) for flag in (True, False)}
ENTRY_KIND_FOR_STATUS = {"captured": "capture", "voided": "void", "expired": "void"}


async def apply_finish(conn: asyncpg.Connection, plan: FinishPlan, claim: Claim | None) -> bool:
    query = _FINISH[claim is not None]
    hold = plan.hold
    row = await conn.fetchrow(
        query.text,
        *query.args(
            {
                **claim_params(claim),
                **event_params(plan.event, hold.partner_id),
                "status": plan.status,
                "points_captured": plan.points_captured,
                "txn_id": hold.id,
                "restore_points": plan.points_restored,
                **entry_params(
                    plan.postings,
                    kind=ENTRY_KIND_FOR_STATUS[plan.status],
                    booked_at=plan.booked_at,
                    transaction_id=hold.id,
                    partner_id=hold.partner_id,
                    member_id=hold.member_id,
                    price_micros=hold.price_micros,
                ),
            }
        ),
    )
    if not row["went"]:
        return False
    require_moved(row, plan.postings)
    if row["finished"] != 1 or row["restored"] != plan.points_restored:
        raise LedgerInvariantError(f"burn {hold.id} did not finish cleanly")
    return True


async def expire_holds(pool: asyncpg.Pool, now: datetime) -> int:
    """Void every authorization past its deadline; returns how many."""
    due = await pool.fetch(
        "SELECT id FROM transactions WHERE status = 'authorized' AND hold_expires_at < $1"
        " ORDER BY hold_expires_at LIMIT $2",
        now,
        EXPIRED_HOLDS_BATCH_MAX,
    )
    expired = 0
    for record in due:
        transaction_id: UUID = record["id"]

        async def expire(conn: asyncpg.Connection, txn: UUID = transaction_id) -> int:
            return await _expire_one(conn, txn, now)

        expired += await transaction(pool, expire)
    if len(due) == EXPIRED_HOLDS_BATCH_MAX:
        expired += await expire_holds(pool, now)
    return expired


async def _expire_one(conn: asyncpg.Connection, transaction_id: UUID, now: datetime) -> int:
    hold = await load_transaction(conn, transaction_id)
    if hold is None:
        return 0
    member = await lock_member(conn, hold.member_id)
    # Re-read under the member lock: another worker or a capture may have won.
    hold = await load_transaction(conn, transaction_id)
    if member is None or hold is None or hold.status != "authorized":
        return 0
    redeemed_id = await partner_account(
        conn, hold.partner_id, "partner_points_redeemed", shard_for(hold.id.int)
    )
    plan = plan_finish(hold, member, redeemed_id, status="expired", capture_points=0, now=now)
    await apply_finish(conn, replace(plan, event=_expired_event(hold, member, now)), None)
    return 1


class _ExpiredPayload(msgspec.Struct, kw_only=True):
    # A job has no API answer to reuse: a small payload naming the hold.
    transaction_id: UUID
    member_id: UUID
    card_number: str
    points: int
    hold_expires_at: datetime | None
    expired_at: datetime


def _expired_event(hold: TransactionRow, member: MemberAccounts, now: datetime) -> Event:
    payload = _ExpiredPayload(
        transaction_id=hold.id,
        member_id=member.public_id,
        card_number=member.card_number,
        points=hold.points,
        hold_expires_at=hold.hold_expires_at,
        expired_at=now,
    )
    return Event(BURN_AUTHORIZATION_EXPIRED, msgspec.json.encode(payload))
