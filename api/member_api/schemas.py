"""Request and response bodies of /member/v1. Every body is a msgspec Struct.

Amounts are integer cents, points whole points; dates a member sees are
calendar days in Europe/Amsterdam. No internal ids and no partner prices.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from api.coalition.member_profile import (
    DISPLAY_NAME_LENGTH_MAX,
    SALUTATION_LENGTH_MAX,
    SURVEY_COMMENT_LENGTH_MAX,
)


def _doc(text: str, **meta: Any) -> msgspec.Meta:
    return msgspec.Meta(description=text, **meta)


class PointsOnDate(msgspec.Struct, kw_only=True):
    on: Annotated[date, _doc("Calendar day (Europe/Amsterdam)")]
    points: int


class SurveyDueOut(msgspec.Struct, kw_only=True):
    transaction_id: Annotated[UUID, _doc("The purchase to rate (POST …/transactions/{id}/survey)")]
    partner_name: str
    open_until: Annotated[datetime, _doc("The last moment it can be rated")]


class MeOut(msgspec.Struct, kw_only=True):
    member_id: Annotated[UUID, _doc("The member's public id")]
    card_number: Annotated[str, _doc("16-digit card number shown at the till")]
    display_name: str | None
    salutation: Annotated[str | None, _doc("How the member wants to be addressed")]
    tier: Annotated[str, _doc("The member's tier (Bronze, Silver, Gold as configured)")]
    tier_multiplier_permille: Annotated[
        int, _doc("The tier's earn multiplier per mille (1250 = x1.25)")
    ] = 1000
    qualifying_points: Annotated[
        int, _doc("Points earned in the last 12 months less refunds: what tiers count")
    ] = 0
    next_tier: Annotated[str | None, _doc("The next tier's name; null in the top tier")] = None
    points_to_next_tier: Annotated[
        int, _doc("Qualifying points still needed for the next tier (0 in the top tier)")
    ] = 0
    available_points: Annotated[int, _doc("Points that can be spent now")]
    pending_points: Annotated[int, _doc("Points waiting for the partner's return window")]
    held_points: Annotated[int, _doc("Points reserved by a partner for an unfinished purchase")]
    debt_points: Annotated[
        int, _doc("Points owed after refunds of points already spent; repaid by future earns")
    ]
    pending: Annotated[list[PointsOnDate], _doc("When pending points become available, by day")]
    expiring_points: Annotated[int, _doc("Available points that expire in the next 30 days")]
    expiring: Annotated[list[PointsOnDate], _doc("Those points by expiry day")]
    survey_due: Annotated[
        SurveyDueOut | None,
        _doc("The latest purchase that can still be rated (within 7 days, not yet rated)"),
    ] = None


class MemberTransactionOut(msgspec.Struct, kw_only=True):
    id: UUID
    partner_code: Annotated[str | None, _doc("The partner; null for a reward")]
    partner_name: Annotated[str, _doc("The partner's name; for a reward, what it was for")]
    kind: Annotated[str, _doc("earn, burn, refund, reward or reward_reversal")]
    status: Annotated[
        str, _doc("pending, available, authorized, captured, voided, expired or completed")
    ]
    amount_cents: Annotated[int | None, _doc("The purchase or refund amount, integer cents")]
    currency: str | None
    points: int
    points_refunded: Annotated[int, _doc("Earn: points reversed by its refunds so far")]
    amount_refunded_cents: Annotated[int, _doc("Earn: money refunded so far")]
    refunds: Annotated[int, _doc("Earn: how many refunds it has had")]
    debt_points: Annotated[int, _doc("Refund: points already spent, which became debt")]
    debt_repaid_points: Annotated[int, _doc("Earn: points that repaid debt")]
    original_id: Annotated[UUID | None, _doc("Refund: the purchase it refunds")]
    occurred_at: datetime
    created_at: datetime
    available_at: Annotated[datetime | None, _doc("Earn: when its points become available")]
    bonus_points: Annotated[
        int, _doc("Earn: tier bonus on top of `points`; refund: the bonus it reversed")
    ] = 0
    multiplier_permille: Annotated[
        int | None,
        _doc("Earn: the multiplier applied, per mille (1250 = x1.25): tier and VIP combined"),
    ] = None
    vip_multiplier_permille: Annotated[
        int | None, _doc("Earn: the VIP membership's multiplier in it; null without VIP")
    ] = None
    bonus_label: Annotated[
        str | None,
        _doc(
            "Earn: e.g. 'x1.25 Silver: +25 bonus points', 'x1.75 Silver + VIP: …'; null"
            " without a bonus"
        ),
    ] = None


class MemberTransactionPage(msgspec.Struct, kw_only=True):
    items: list[MemberTransactionOut]
    next_cursor: Annotated[
        str | None, _doc("Pass as `cursor` for the next (older) page; null on the last page")
    ]


class MemberRefundOut(msgspec.Struct, kw_only=True):
    id: UUID
    amount_cents: int | None
    points: int
    debt_points: int
    created_at: datetime


class SurveyStateOut(msgspec.Struct, kw_only=True):
    can_answer: Annotated[bool, _doc("A purchase not yet rated, within 7 days")]
    open_until: Annotated[datetime | None, _doc("Purchases only: the survey's last moment")]
    score: Annotated[int | None, _doc("The member's answer, once given")]


class MemberTransactionDetailOut(msgspec.Struct, kw_only=True):
    transaction: MemberTransactionOut
    points_captured: Annotated[int, _doc("Burn: points taken by capture")]
    store_id: str | None
    receipt_ref: str | None
    refunds: list[MemberRefundOut]
    survey: SurveyStateOut


class PartnerForMembersOut(msgspec.Struct, kw_only=True):
    code: str
    name: str
    kind: str
    earn_rate: Annotated[str, _doc("Human-readable, e.g. '1.5 points per €1'")]
    earn_rate_millipoints_per_euro: Annotated[int, _doc("The same rate, exactly: 1000 = 1/€")]
    can_earn: bool
    can_burn: bool
    pending_days: Annotated[int, _doc("Earned points become available after this many days")]


class PartnerForMembersList(msgspec.Struct, kw_only=True):
    items: list[PartnerForMembersOut]


class SurveyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    score: Annotated[
        int, _doc("0-10: how likely are you to recommend this partner? (`invalid_score`)")
    ]
    comment: Annotated[
        str | None,
        _doc(f"Optional, at most {SURVEY_COMMENT_LENGTH_MAX} characters (`invalid_comment`)"),
    ] = None


class SurveyOut(msgspec.Struct, kw_only=True):
    transaction_id: UUID
    score: int
    comment: str | None
    answered_at: datetime


class MemberProfileOut(msgspec.Struct, kw_only=True):
    member_id: UUID
    card_number: str
    email: str | None
    display_name: str | None
    salutation: str | None
    email_news: Annotated[bool, _doc("E-mail news from the programme")]
    expiry_reminders: Annotated[bool, _doc("E-mail before points expire")]


class MemberProfilePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the fields sent change; an empty string clears a text field."""

    display_name: Annotated[
        str | None, _doc(f"One line, at most {DISPLAY_NAME_LENGTH_MAX} characters")
    ] = None
    salutation: Annotated[
        str | None,
        _doc(
            "How to address the member (e.g. 'Ms', 'Mx', 'they/them'), one line,"
            f" at most {SALUTATION_LENGTH_MAX} characters"
        ),
    ] = None
    email_news: bool | None = None
    expiry_reminders: bool | None = None


class AccountClosureOut(msgspec.Struct, kw_only=True):
    closed_at: datetime
    forfeited_available_points: int
    forfeited_pending_points: int
    debt_points: Annotated[int, _doc("Debt written off with the account")]
