"""Earning points for a purchase: where a point is born.

The member's new points first repay any debt left by earlier refunds; the
rest go into a pending lot that becomes available after the partner's return
window and expires 36 months after that.

The member's tier multiplies an earn (api/engagement/tiers.py), and so does
a VIP membership (api/vip/benefits.py; their extras add): the bonus,
base x (multiplier - 1000) // 1000, comes from the programme's promo budget
into a lot of its own at price 0 (the partner pays for the base points only;
the programme's cost shows when bonus points are redeemed, as negative
spread). `points` stays the base points, which settlement and refunds value;
the bonus never repays debt. The same statement upgrades the member when the
earn lifts their 12-month qualifying points past a higher tier's threshold,
so the new multiplier applies from the next earn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from api.clock import add_months
from api.db.sql import Query
from api.engagement.activity import MARK_ACTIVITY_CTE
from api.engagement.tiers import UPGRADE_CTES, MemberTier, bonus_points, upgrade_params
from api.ids import new_transaction_id
from api.ledger.accounts import MemberAccounts
from api.ledger.entries import ENTRY_RESULT, Postings, entry_ctes, entry_params, require_moved
from api.ledger.idempotency import Claim, claim_params, go_cte
from api.ledger.terms import POINTS_EXPIRE_AFTER_MONTHS, PartnerTerms
from api.ledger.transactions import TransactionRow
from api.money import earn_points
from api.webhooks.outbox import OUTBOX_CTE, Event, event_params


@dataclass(frozen=True, slots=True)
class EarnPlan:
    transaction_id: UUID
    partner_id: int
    member_id: int
    amount_cents: int
    currency: str
    points: int
    debt_repaid_points: int
    lot_points: int
    price_micros: int
    receipt_ref: str | None
    store_id: str | None
    occurred_at: datetime
    booked_at: datetime
    available_at: datetime
    expires_at: datetime
    postings: Postings
    tier: MemberTier | None = None  # the stored tier the earn was multiplied by
    bonus_points: int = 0
    # What the write announces (webhook outbox), in the same statement; the
    # caller adds it once the answer is rendered (`dataclasses.replace`).
    event: Event | None = None

    @property
    def status(self) -> str:
        # Points that all went to repaying debt leave nothing to wait for.
        return "pending" if self.lot_points > 0 else "available"

    @property
    def multiplier_permille(self) -> int | None:
        # Tier and VIP combined (the VIP part is stored beside it).
        return None if self.tier is None else self.tier.earn_multiplier_permille

    @property
    def vip_multiplier_permille(self) -> int | None:
        return None if self.tier is None else self.tier.vip_multiplier_permille

    @property
    def row(self) -> TransactionRow:
        return TransactionRow(
            id=self.transaction_id,
            partner_id=self.partner_id,
            member_id=self.member_id,
            kind="earn",
            status=self.status,
            amount_cents=self.amount_cents,
            currency=self.currency,
            points=self.points,
            points_captured=0,
            points_refunded=0,
            amount_refunded_cents=0,
            debt_points=0,
            debt_repaid_points=self.debt_repaid_points,
            price_micros=self.price_micros,
            receipt_ref=self.receipt_ref,
            store_id=self.store_id,
            original_id=None,
            occurred_at=self.occurred_at,
            created_at=self.booked_at,
            available_at=self.available_at,
            hold_expires_at=None,
            finished_at=None,
        )


def plan_earn(
    terms: PartnerTerms,
    member: MemberAccounts,
    *,
    amount_cents: int,
    currency: str,
    receipt_ref: str | None,
    store_id: str | None,
    occurred_at: datetime,
    now: datetime,
    tier: MemberTier | None = None,
    promo_account_id: int | None = None,
) -> EarnPlan:
    points = earn_points(amount_cents, terms.earn_rate_millipoints_per_euro)
    debt_repaid = min(points, -member.debt)
    lot_points = points - debt_repaid
    bonus = 0 if tier is None else bonus_points(points, tier.earn_multiplier_permille)
    if bonus and promo_account_id is None:
        raise LookupError("a tier or VIP bonus needs the programme promo account")
    available_at = occurred_at + timedelta(days=terms.return_window_days)
    postings = (
        Postings(first=frozenset(member.account_ids))
        .add(terms.points_issued_id, -points)
        .add(member.debt_id, debt_repaid)
        .add(member.pending_id, lot_points + bonus)
    )
    if bonus:
        assert promo_account_id is not None
        postings.add(promo_account_id, -bonus)
    return EarnPlan(
        transaction_id=new_transaction_id(),
        partner_id=terms.partner_id,
        member_id=member.member_id,
        amount_cents=amount_cents,
        currency=currency,
        points=points,
        debt_repaid_points=debt_repaid,
        lot_points=lot_points,
        price_micros=terms.issuance_price_micros,
        receipt_ref=receipt_ref,
        store_id=store_id,
        occurred_at=occurred_at,
        booked_at=now,
        available_at=available_at,
        expires_at=add_months(available_at, POINTS_EXPIRE_AFTER_MONTHS),
        postings=postings,
        tier=tier,
        bonus_points=bonus,
    )


# Concurrent earns at one partner queue on its points shard's row lock (64
# shards), held from the balance update to the commit. Every other write of
# the earn runs first, so the lock is held for the commit and little else
# (profiled under 32 clients: the balance update was ~0.1 ms of work but
# waited 1.5 ms on average, 4.8 ms at p90, for the lock).
_ENTRY_CTES = entry_ctes(balances_after=("txn", "lot", "bonus_lot", "marked", "upgraded"))


def _statement(with_claim: bool) -> Query:
    return Query(f"""
WITH {go_cte(with_claim)},
txn AS (
    INSERT INTO transactions
        (id, partner_id, member_id, kind, status, amount_cents, currency, points,
         debt_repaid_points, price_micros, receipt_ref, store_id, occurred_at, created_at,
         available_at, bonus_points, multiplier_permille, tier_code, vip_multiplier_permille)
    SELECT :txn_id::uuid, :partner_id::bigint, :member_id::bigint, 'earn', :status::text,
           :amount_cents::bigint, :currency::text, :points::bigint, :debt_repaid::bigint,
           :price_micros::integer, :receipt_ref::text, :store_id::text,
           :occurred_at::timestamptz, :booked_at::timestamptz, :available_at::timestamptz,
           :bonus_points::bigint, :multiplier_permille::integer, :tier_code::text,
           :vip_multiplier_permille::integer
    FROM go
    RETURNING id
),
lot AS (
    INSERT INTO lots
        (member_id, transaction_id, state, points_original, points_remaining,
         available_at, expires_at, price_micros)
    SELECT :member_id::bigint, txn.id, 'pending', :lot_points::bigint, :lot_points::bigint,
           :available_at::timestamptz, :expires_at::timestamptz, :price_micros::integer
    FROM txn
    WHERE :lot_points::bigint > 0
    RETURNING id
),
-- The tier bonus: the programme issued it, nobody paid for it (price 0).
bonus_lot AS (
    INSERT INTO lots
        (member_id, bonus_for, state, points_original, points_remaining,
         available_at, expires_at, price_micros)
    SELECT :member_id::bigint, txn.id, 'pending', :bonus_points::bigint, :bonus_points::bigint,
           :available_at::timestamptz, :expires_at::timestamptz, 0
    FROM txn
    WHERE :bonus_points::bigint > 0
    RETURNING id
),
{MARK_ACTIVITY_CTE},
{UPGRADE_CTES},
{_ENTRY_CTES},
{OUTBOX_CTE}
SELECT {ENTRY_RESULT}
""")


_WITH_CLAIM = _statement(True)
_WITHOUT_CLAIM = _statement(False)
_NO_TIER = {
    "tier_code": None,
    "tier_threshold": None,
    "next_threshold": None,
    "qualifying_since": None,
}


async def apply_earn(conn: asyncpg.Connection, plan: EarnPlan, claim: Claim | None) -> bool:
    """Write the plan (and its event, in the same statement); False when the
    claim was already taken (nothing written)."""
    query = _WITHOUT_CLAIM if claim is None else _WITH_CLAIM
    tier_params = (
        _NO_TIER
        if plan.tier is None
        else upgrade_params(
            plan.tier, member_id=plan.member_id, points=plan.points, now=plan.booked_at
        )
    )
    row = await conn.fetchrow(
        query.text,
        *query.args(
            {
                **claim_params(claim),
                **event_params(plan.event, plan.partner_id),
                **tier_params,
                "txn_id": plan.transaction_id,
                "partner_id": plan.partner_id,
                "member_id": plan.member_id,
                "amount_cents": plan.amount_cents,
                "currency": plan.currency,
                "points": plan.points,
                "debt_repaid": plan.debt_repaid_points,
                "price_micros": plan.price_micros,
                "receipt_ref": plan.receipt_ref,
                "store_id": plan.store_id,
                "occurred_at": plan.occurred_at,
                "available_at": plan.available_at,
                "expires_at": plan.expires_at,
                "lot_points": plan.lot_points,
                "status": plan.status,
                "bonus_points": plan.bonus_points,
                "multiplier_permille": plan.multiplier_permille,
                "vip_multiplier_permille": plan.vip_multiplier_permille,
                **entry_params(
                    plan.postings,
                    kind="earn",
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
    return bool(row["went"])
