"""Refunding an earn: points go back in proportion to the money refunded.

The points come back from where they are: first the purchase's own lot
(pending or available), then the member's other available points (FIFO),
and what the member has already spent becomes debt that later earnings repay.
A member's available balance never goes negative.

A tier bonus (api/engagement/tiers.py) is reversed in the same proportion as
the base points, back to the programme's promo budget, but only as far as
the earn's own bonus lot still holds it: bonus points the member has already
spent are not clawed back, and a bonus never becomes debt. The programme
gave them; the partner never paid for them, so there is nothing to settle.
The refund's `points` stay the base points (settlement values those); its
`bonus_points` say how much bonus it reversed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from api.db.sql import Query
from api.engagement.activity import MARK_ACTIVITY_CTE
from api.errors import Conflict, DomainError
from api.ids import new_transaction_id
from api.ledger.accounts import MemberAccounts, shard_for
from api.ledger.entries import (
    ENTRY_CTES,
    ENTRY_RESULT,
    LedgerInvariantError,
    Postings,
    entry_params,
    require_moved,
)
from api.ledger.idempotency import Claim, claim_params, go_cte
from api.ledger.lots import TAKE_FIFO_CTES as _TAKE_FIFO_ONE_SKIP
from api.ledger.transactions import TransactionRow, load_transaction
from api.webhooks.outbox import OUTBOX_CTE, Event, event_params

# The base points come from lots other than the earn's own two (its base lot
# is taken first, its bonus lot only ever goes back to the promo budget).
_SKIP_ONE = "AND id <> coalesce(:skip_lot_id::bigint, 0)"
assert _SKIP_ONE in _TAKE_FIFO_ONE_SKIP
TAKE_FIFO_CTES = _TAKE_FIFO_ONE_SKIP.replace(
    _SKIP_ONE,
    "AND id <> coalesce(:skip_lot_id::bigint, 0) AND id <> coalesce(:bonus_lot_id::bigint, 0)",
)


@dataclass(frozen=True, slots=True)
class BonusLot:
    """An earn's tier bonus and the lot it sits in."""

    bonus_points: int  # credited by the earn
    reversed_points: int  # reversed by its refunds so far
    lot_id: int | None
    lot_state: str | None
    lot_remaining: int
    promo_account_id: int | None  # where a reversal goes (a promo-budget shard)


NO_BONUS = BonusLot(0, 0, None, None, 0, None)


@dataclass(frozen=True, slots=True)
class RefundableEarn:
    earn: TransactionRow
    lot_id: int | None
    lot_state: str | None
    lot_remaining: int
    bonus: BonusLot = NO_BONUS


@dataclass(frozen=True, slots=True)
class RefundPlan:
    refund_id: UUID
    refundable: RefundableEarn
    amount_cents: int
    points: int
    from_lot: int
    from_available: int
    debt_points: int
    receipt_ref: str | None
    booked_at: datetime
    postings: Postings
    bonus_points: int = 0  # tier bonus reversed, from the earn's bonus lot
    event: Event | None = None  # announced in the same statement (webhook outbox)

    @property
    def row(self) -> TransactionRow:
        earn = self.refundable.earn
        return earn.replace(
            id=self.refund_id,
            kind="refund",
            status="completed",
            amount_cents=self.amount_cents,
            points=self.points,
            points_captured=0,
            points_refunded=0,
            amount_refunded_cents=0,
            debt_points=self.debt_points,
            debt_repaid_points=0,
            receipt_ref=self.receipt_ref,
            store_id=None,
            original_id=earn.id,
            occurred_at=self.booked_at,
            created_at=self.booked_at,
            available_at=None,
            hold_expires_at=None,
            finished_at=self.booked_at,
        )


_LOTS = """
SELECT t.bonus_points,
       (SELECT coalesce(sum(r.bonus_points), 0)::bigint FROM transactions r
        WHERE r.original_id = t.id AND r.kind = 'refund') AS bonus_reversed,
       l.id AS lot_id, l.state AS lot_state, coalesce(l.points_remaining, 0) AS lot_remaining,
       b.id AS bonus_lot_id, b.state AS bonus_lot_state,
       coalesce(b.points_remaining, 0) AS bonus_lot_remaining,
       promo.id AS promo_account_id
FROM transactions t
LEFT JOIN lots l ON l.transaction_id = t.id
LEFT JOIN lots b ON b.bonus_for = t.id
LEFT JOIN accounts promo ON promo.kind = 'programme_promo' AND promo.member_id IS NULL
                        AND promo.partner_id IS NULL AND promo.shard = $2
WHERE t.id = $1
"""


async def load_refundable(conn: asyncpg.Connection, transaction_id: UUID) -> RefundableEarn | None:
    """The earn, its lot and its bonus lot; call with the member's accounts locked."""
    earn = await load_transaction(conn, transaction_id)
    if earn is None or earn.kind != "earn":
        return None
    row = await conn.fetchrow(_LOTS, transaction_id, shard_for(transaction_id.int))
    bonus = BonusLot(
        bonus_points=row["bonus_points"],
        reversed_points=row["bonus_reversed"],
        lot_id=row["bonus_lot_id"],
        lot_state=row["bonus_lot_state"],
        lot_remaining=row["bonus_lot_remaining"],
        promo_account_id=row["promo_account_id"],
    )
    return RefundableEarn(earn, row["lot_id"], row["lot_state"], row["lot_remaining"], bonus)


def plan_refund(
    refundable: RefundableEarn,
    member: MemberAccounts,
    points_issued_id: int,
    *,
    amount_cents: int,
    receipt_ref: str | None,
    now: datetime,
) -> RefundPlan:
    earn = refundable.earn
    assert earn.amount_cents is not None
    refundable_cents = earn.amount_cents - earn.amount_refunded_cents
    if refundable_cents == 0:
        raise Conflict("this purchase is already fully refunded", code="already_refunded")
    if not 0 < amount_cents <= refundable_cents:
        raise DomainError(
            f"refund amount must be between 1 and the {refundable_cents} cents not yet refunded",
            code="refund_exceeds_purchase",
        )
    # Cumulative rounding: after the last refund exactly all points are reversed.
    refunded_after = (
        earn.points * (earn.amount_refunded_cents + amount_cents)
    ) // earn.amount_cents
    points = refunded_after - earn.points_refunded
    from_lot = min(points, refundable.lot_remaining)
    lot_is_available = refundable.lot_state == "available"
    bonus = refundable.bonus
    bonus_is_available = bonus.lot_state == "available"
    others_available = (
        member.available
        - (refundable.lot_remaining if lot_is_available else 0)
        - (bonus.lot_remaining if bonus_is_available else 0)
    )
    from_available = min(points - from_lot, others_available)
    debt = points - from_lot - from_available
    lot_account = member.available_id if lot_is_available else member.pending_id
    # The bonus, in the same cumulative proportion, as far as its lot holds it.
    bonus_due = (
        bonus.bonus_points * (earn.amount_refunded_cents + amount_cents)
    ) // earn.amount_cents - bonus.reversed_points
    bonus_back = max(0, min(bonus_due, bonus.lot_remaining))
    postings = (
        Postings(first=frozenset(member.account_ids))
        .add(points_issued_id, points)
        .add(lot_account, -from_lot)
        .add(member.available_id, -from_available)
        .add(member.debt_id, -debt)
    )
    if bonus_back:
        if bonus.promo_account_id is None:
            raise LedgerInvariantError("a bonus reversal needs the programme promo account")
        bonus_account = member.available_id if bonus_is_available else member.pending_id
        postings.move(bonus_account, bonus.promo_account_id, bonus_back)
    return RefundPlan(
        refund_id=new_transaction_id(),
        refundable=refundable,
        amount_cents=amount_cents,
        points=points,
        from_lot=from_lot,
        from_available=from_available,
        debt_points=debt,
        receipt_ref=receipt_ref,
        booked_at=now,
        postings=postings,
        bonus_points=bonus_back,
    )


def _statement(with_claim: bool) -> Query:
    return Query(f"""
WITH {go_cte(with_claim)},
refund AS (
    INSERT INTO transactions
        (id, partner_id, member_id, kind, status, amount_cents, currency, points, debt_points,
         price_micros, receipt_ref, original_id, occurred_at, created_at, finished_at,
         bonus_points)
    SELECT :refund_id::uuid, :partner_id::bigint, :member_id::bigint, 'refund', 'completed',
           :amount_cents::bigint, :currency::text, :points::bigint, :debt_points::bigint,
           :price_micros::integer, :receipt_ref::text, :earn_id::uuid,
           :booked_at::timestamptz, :booked_at::timestamptz, :booked_at::timestamptz,
           :bonus_back::bigint
    FROM go
),
bonus_lot AS (
    UPDATE lots SET points_remaining = points_remaining - :bonus_back::bigint
    FROM go
    WHERE id = :bonus_lot_id::bigint AND :bonus_back::bigint > 0
    RETURNING :bonus_back::bigint AS points
),
original AS (
    UPDATE transactions
    SET points_refunded = points_refunded + :points::bigint,
        amount_refunded_cents = amount_refunded_cents + :amount_cents::bigint
    FROM go
    WHERE id = :earn_id::uuid AND amount_refunded_cents = :refunded_before::bigint
    RETURNING id
),
own_lot AS (
    UPDATE lots SET points_remaining = points_remaining - :from_lot::bigint
    FROM go
    WHERE id = :skip_lot_id::bigint AND :from_lot::bigint > 0
    RETURNING :from_lot::bigint AS points
),
{MARK_ACTIVITY_CTE},
{TAKE_FIFO_CTES},
-- Remember which other lots gave points: settlement values them at their price.
traced AS (
    INSERT INTO refund_lots (transaction_id, lot_id, points)
    SELECT :refund_id::uuid, take.id, take.points FROM take, go WHERE take.points > 0
),
{ENTRY_CTES},
{OUTBOX_CTE}
SELECT {ENTRY_RESULT},
       (SELECT count(*) FROM original) AS original_updated,
       (SELECT coalesce(sum(points), 0) FROM own_lot) + (SELECT coalesce(sum(points), 0) FROM consumed)
           AS taken,
       (SELECT coalesce(sum(points), 0) FROM bonus_lot) AS bonus_taken
""")


_REFUND = {flag: _statement(flag) for flag in (True, False)}


async def apply_refund(conn: asyncpg.Connection, plan: RefundPlan, claim: Claim | None) -> bool:
    query = _REFUND[claim is not None]
    earn = plan.refundable.earn
    row = await conn.fetchrow(
        query.text,
        *query.args(
            {
                **claim_params(claim),
                **event_params(plan.event, earn.partner_id),
                "refund_id": plan.refund_id,
                "partner_id": earn.partner_id,
                "member_id": earn.member_id,
                "amount_cents": plan.amount_cents,
                "currency": earn.currency,
                "points": plan.points,
                "debt_points": plan.debt_points,
                "price_micros": earn.price_micros,
                "receipt_ref": plan.receipt_ref,
                "earn_id": earn.id,
                "refunded_before": earn.amount_refunded_cents,
                "from_lot": plan.from_lot,
                "skip_lot_id": plan.refundable.lot_id,
                "take_points": plan.from_available,
                "bonus_back": plan.bonus_points,
                "bonus_lot_id": plan.refundable.bonus.lot_id,
                **entry_params(
                    plan.postings,
                    kind="refund",
                    booked_at=plan.booked_at,
                    transaction_id=plan.refund_id,
                    partner_id=earn.partner_id,
                    member_id=earn.member_id,
                    price_micros=earn.price_micros,
                ),
            }
        ),
    )
    if not row["went"]:
        return False
    require_moved(row, plan.postings)
    if (
        row["original_updated"] != 1
        or row["taken"] != plan.from_lot + plan.from_available
        or row["bonus_taken"] != plan.bonus_points
    ):
        raise LedgerInvariantError(f"refund of {earn.id} did not add up")
    return True
