"""The member API's use of the domain: call one read model or write, shape the answer.

Every call is scoped by the authenticated member's internal id: another
member's transaction is `transaction_not_found`, exactly like a missing one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.coalition import member_profile, member_views
from api.errors import NotFound
from api.member_api import schemas


def _transaction(item: member_views.HistoryItem) -> schemas.MemberTransactionOut:
    return schemas.MemberTransactionOut(
        id=item.id,
        partner_code=item.partner_code,
        partner_name=item.partner_name,
        kind=item.kind,
        status=item.status,
        amount_cents=item.amount_cents,
        currency=None if item.currency is None else item.currency.strip(),
        points=item.points,
        points_refunded=item.points_refunded,
        amount_refunded_cents=item.amount_refunded_cents,
        refunds=item.refunds,
        debt_points=item.debt_points,
        debt_repaid_points=item.debt_repaid_points,
        original_id=item.original_id,
        occurred_at=item.occurred_at,
        created_at=item.created_at,
        available_at=item.available_at,
        bonus_points=item.bonus_points,
        multiplier_permille=item.multiplier_permille,
        vip_multiplier_permille=item.vip_multiplier_permille,
        bonus_label=item.bonus_label,
    )


def _missing_member() -> NotFound:
    # The token's session was live a moment ago; the account went meanwhile.
    return NotFound("no such member", code="member_not_found")


async def me(pool: asyncpg.Pool, member_id: int, now: datetime) -> schemas.MeOut:
    summary = await member_views.member_summary(pool, member_id, now)
    if summary is None:
        raise _missing_member()
    due = await member_views.survey_due(pool, member_id, now)
    return schemas.MeOut(
        member_id=summary.public_id,
        card_number=summary.card_number,
        display_name=summary.display_name,
        salutation=summary.salutation,
        tier=summary.tier,
        tier_multiplier_permille=summary.tier_progress.multiplier_permille,
        qualifying_points=summary.tier_progress.qualifying_points,
        next_tier=summary.tier_progress.next_tier_name,
        points_to_next_tier=summary.tier_progress.points_to_next_tier,
        available_points=summary.available_points,
        pending_points=summary.pending_points,
        held_points=summary.held_points,
        debt_points=summary.debt_points,
        pending=[schemas.PointsOnDate(on=p.on, points=p.points) for p in summary.pending],
        expiring_points=summary.expiring_points,
        expiring=[schemas.PointsOnDate(on=p.on, points=p.points) for p in summary.expiring],
        survey_due=None
        if due is None
        else schemas.SurveyDueOut(
            transaction_id=due.transaction_id,
            partner_name=due.partner_name,
            open_until=due.open_until,
        ),
    )


async def history(
    pool: asyncpg.Pool, member_id: int, *, limit: int, cursor: str | None, partner: str | None
) -> schemas.MemberTransactionPage:
    page = await member_views.member_history(pool, member_id, limit, cursor, partner)
    return schemas.MemberTransactionPage(
        items=[_transaction(i) for i in page.items], next_cursor=page.next_cursor
    )


def parse_transaction_id(raw: str) -> UUID:
    """A malformed id is as unknown as another member's: the same 404."""
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound("no such transaction", code="transaction_not_found") from None


async def transaction(
    pool: asyncpg.Pool, member_id: int, raw_id: str, now: datetime
) -> schemas.MemberTransactionDetailOut:
    detail = await member_views.member_transaction(
        pool, member_id, parse_transaction_id(raw_id), now
    )
    if detail is None:
        raise NotFound("no such transaction", code="transaction_not_found")
    return schemas.MemberTransactionDetailOut(
        transaction=_transaction(detail.transaction),
        points_captured=detail.points_captured,
        store_id=detail.store_id,
        receipt_ref=detail.receipt_ref,
        refunds=[
            schemas.MemberRefundOut(
                id=r.id,
                amount_cents=r.amount_cents,
                points=r.points,
                debt_points=r.debt_points,
                created_at=r.created_at,
            )
            for r in detail.refunds
        ],
        survey=schemas.SurveyStateOut(
            can_answer=detail.survey.can_answer,
            open_until=detail.survey.open_until,
            score=detail.survey.score,
        ),
    )


async def partners(pool: asyncpg.Pool) -> schemas.PartnerForMembersList:
    return schemas.PartnerForMembersList(
        items=[
            schemas.PartnerForMembersOut(
                code=p.code,
                name=p.name,
                kind=p.kind,
                earn_rate=p.earn_rate,
                earn_rate_millipoints_per_euro=p.earn_rate_millipoints_per_euro,
                can_earn=p.can_earn,
                can_burn=p.can_burn,
                pending_days=p.pending_days,
            )
            for p in await member_views.partners_for_members(pool)
        ]
    )


async def answer_survey(
    pool: asyncpg.Pool, member_id: int, raw_id: str, body: schemas.SurveyRequest, now: datetime
) -> schemas.SurveyOut:
    answer = await member_profile.answer_survey(
        pool,
        member_id,
        parse_transaction_id(raw_id),
        score=body.score,
        comment=body.comment,
        now=now,
    )
    return schemas.SurveyOut(
        transaction_id=answer.transaction_id,
        score=answer.score,
        comment=answer.comment,
        answered_at=answer.answered_at,
    )


def _profile(profile: member_profile.Profile) -> schemas.MemberProfileOut:
    return schemas.MemberProfileOut(
        member_id=profile.public_id,
        card_number=profile.card_number,
        email=profile.email,
        display_name=profile.display_name,
        salutation=profile.salutation,
        email_news=profile.email_news,
        expiry_reminders=profile.expiry_reminders,
    )


async def profile(pool: asyncpg.Pool, member_id: int) -> schemas.MemberProfileOut:
    found = await member_profile.get_profile(pool, member_id)
    if found is None:
        raise _missing_member()
    return _profile(found)


async def update_profile(
    pool: asyncpg.Pool, member_id: int, body: schemas.MemberProfilePatch
) -> schemas.MemberProfileOut:
    changes = member_profile.ProfileChanges(
        display_name=body.display_name,
        salutation=body.salutation,
        email_news=body.email_news,
        expiry_reminders=body.expiry_reminders,
    )
    return _profile(await member_profile.update_profile(pool, member_id, changes))


async def export(pool: asyncpg.Pool, member_id: int) -> dict[str, Any]:
    document = await member_profile.export_member_data(pool, member_id)
    if document is None:
        raise _missing_member()
    return document


async def delete_account(
    pool: asyncpg.Pool, member_id: int, confirm: str | None, now: datetime
) -> schemas.AccountClosureOut:
    closure = await member_profile.delete_account(
        pool, member_id, confirmation=confirm or "", now=now
    )
    return schemas.AccountClosureOut(
        closed_at=closure.closed_at,
        forfeited_available_points=closure.forfeited_available_points,
        forfeited_pending_points=closure.forfeited_pending_points,
        debt_points=closure.debt_points,
    )
