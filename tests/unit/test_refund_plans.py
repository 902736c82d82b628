"""Property: however a purchase is refunded, in however many parts and from
whatever state the member is in, each refund's postings balance, nothing is
taken that is not there, and the parts add up to exactly the earned points."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from api.ledger.accounts import MemberAccounts
from api.ledger.refund import RefundableEarn, plan_refund
from api.ledger.transactions import TransactionRow

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ISSUED_ID = 100


def _member(available: int) -> MemberAccounts:
    return MemberAccounts(
        1, uuid4(), "6048000000000000", "active", 11, 12, 13, 14, available, 0, 0, 0
    )


def _earn(amount_cents: int, points: int) -> TransactionRow:
    return TransactionRow(
        id=uuid4(), partner_id=1, member_id=1, kind="earn", status="available",
        amount_cents=amount_cents, currency="EUR", points=points, points_captured=0,
        points_refunded=0, amount_refunded_cents=0, debt_points=0, debt_repaid_points=0,
        price_micros=10_000, receipt_ref=None, store_id=None, original_id=None,
        occurred_at=NOW, created_at=NOW, available_at=NOW, hold_expires_at=None, finished_at=None,
    )  # fmt: skip


@given(
    amount_cents=st.integers(1, 10**9),
    rate=st.integers(0, 5_000),
    lot_state=st.sampled_from(["pending", "available"]),
    spent_share=st.floats(0, 1),
    other_available=st.integers(0, 10**6),
    cuts=st.lists(st.floats(0.01, 1), min_size=1, max_size=6),
)
def test_refunds_conserve_points(amount_cents, rate, lot_state, spent_share, other_available, cuts):
    points = amount_cents * rate // 100_000
    lot_remaining = points - int(points * spent_share)  # the rest was spent already
    available = other_available + (lot_remaining if lot_state == "available" else 0)
    member = _member(available)
    refundable = RefundableEarn(_earn(amount_cents, points), 7, lot_state, lot_remaining)
    reversed_total = 0

    # Refund in parts: each a share of what is left, the last one all of the rest.
    for index, cut in enumerate(cuts):
        earn = refundable.earn
        left = earn.amount_cents - earn.amount_refunded_cents
        if left == 0:
            break
        part = left if index == len(cuts) - 1 else max(1, int(left * cut))
        plan = plan_refund(
            refundable, member, ISSUED_ID, amount_cents=part, receipt_ref=None, now=NOW
        )

        plan.postings.check()  # balanced, or it raises
        assert plan.points >= 0 and plan.debt_points >= 0
        assert plan.from_lot <= refundable.lot_remaining
        others = member.available - (refundable.lot_remaining if lot_state == "available" else 0)
        assert plan.from_available <= others
        assert plan.from_lot + plan.from_available + plan.debt_points == plan.points
        assert plan.postings.lines.get(ISSUED_ID, 0) == plan.points
        reversed_total += plan.points

        taken_from_available = plan.from_available + (
            plan.from_lot if lot_state == "available" else 0
        )
        member = dataclasses.replace(member, available=member.available - taken_from_available)
        assert member.available >= 0
        refundable = dataclasses.replace(
            refundable,
            earn=earn.replace(
                points_refunded=earn.points_refunded + plan.points,
                amount_refunded_cents=earn.amount_refunded_cents + part,
            ),
            lot_remaining=refundable.lot_remaining - plan.from_lot,
        )

    if refundable.earn.amount_refunded_cents == amount_cents:
        assert reversed_total == points
    assert reversed_total <= points
