"""/member/v1/referral: the member's referral code, link and terms, and
claiming a friend's code. Same authentication as the rest of the member API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from api.engagement import referrals
from api.member_auth.guards import api_member
from api.member_auth.principal import MemberPrincipal
from api.web.bodies import strict_body
from api.web.state import runtime

Member = NamedDependency[MemberPrincipal]


def site_url(request: Request[Any, Any, Any]) -> str:
    """The address members reach this site at (scheme and host), for links."""
    return str(request.base_url).rstrip("/")


class ReferralSummaryOut(msgspec.Struct, kw_only=True):
    code: Annotated[str, msgspec.Meta(examples=["K7QW3MZP"])]
    link: Annotated[str, msgspec.Meta(description="Share this: it opens the join page")]
    enabled: bool
    referrer_points: Annotated[int, msgspec.Meta(description="You get these per friend")]
    referee_points: Annotated[int, msgspec.Meta(description="Your friend gets these")]
    min_purchase_cents: Annotated[
        int, msgspec.Meta(description="After the friend's first purchase of at least this")
    ]
    rewards_per_month_max: Annotated[
        int, msgspec.Meta(description="Friends you are rewarded for per calendar month")
    ]
    friends_joined: int
    friends_rewarded: int
    rewarded_this_month: int
    referred_by: Annotated[
        str | None, msgspec.Meta(description="Who invited you (first name or 'a friend')")
    ]
    referral_status: Annotated[
        str | None, msgspec.Meta(description="Your own referral: pending, rewarded, ...")
    ]
    can_enter_code: Annotated[bool, msgspec.Meta(description="You may still enter a code")]
    enter_code_until: datetime | None


class ClaimIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Annotated[
        str, msgspec.Meta(max_length=referrals.CODE_INPUT_CHARS_MAX, examples=["K7QW3MZP"])
    ]


class ClaimOut(msgspec.Struct, kw_only=True):
    status: Annotated[str, msgspec.Meta(description="pending until your first purchase")]
    created_at: datetime
    referee_points: Annotated[int, msgspec.Meta(description="What you get after it")]
    min_purchase_cents: int


def summary_out(summary: referrals.ReferralSummary) -> ReferralSummaryOut:
    return ReferralSummaryOut(
        code=summary.code,
        link=summary.link,
        enabled=summary.enabled,
        referrer_points=summary.referrer_points,
        referee_points=summary.referee_points,
        min_purchase_cents=summary.min_purchase_cents,
        rewards_per_month_max=summary.rewards_per_month_max,
        friends_joined=summary.friends_joined,
        friends_rewarded=summary.friends_rewarded,
        rewarded_this_month=summary.rewarded_this_month,
        referred_by=summary.referred_by,
        referral_status=summary.referral_status,
        can_enter_code=summary.can_enter_code,
        enter_code_until=summary.enter_code_until,
    )


class MemberReferralController(Controller):
    path = "/member/v1/referral"
    tags = ["Member API"]
    dependencies = {"member": Provide(api_member)}
    security = [{"memberBearer": []}]

    @get(
        "/",
        summary="Your referral code and link, the terms, and how your invitations went",
        description="The code is made on the first call and stays the same.",
    )
    async def summary(self, request: Request[Any, Any, Any], member: Member) -> ReferralSummaryOut:
        rt = runtime(request.app.state)
        found = await referrals.referral_summary(
            rt.db, member.member_id, rt.clock.now(), base_url=site_url(request)
        )
        return summary_out(found)

    @post(
        "/claim",
        summary="Enter a friend's referral code",
        description="Within the join window and before your first purchase; both of you are"
        " rewarded after your first qualifying purchase. Claiming the same code again"
        " returns the referral (200). Problems: `referral_code_unknown` (404),"
        " `already_referred` (409), `self_referral`, `referral_too_late`,"
        " `referrals_disabled`, `invalid_request` (422).",
        status_code=201,
    )
    async def claim(
        self, request: Request[Any, Any, Any], member: Member, data: JSONBody[ClaimIn]
    ) -> Response[ClaimOut]:
        rt = runtime(request.app.state)
        body = await strict_body(request, ClaimIn)
        referral = await referrals.claim_referral(
            rt.db, member.member_id, body.code, rt.clock.now()
        )
        terms = await referrals.get_settings(rt.db)
        return Response(
            ClaimOut(
                status=referral.status,
                created_at=referral.created_at,
                referee_points=terms.referee_points,
                min_purchase_cents=terms.min_purchase_cents,
            ),
            status_code=200 if referral.replayed else 201,
        )
