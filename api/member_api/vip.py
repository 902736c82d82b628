"""/member/v1/vip: the VIP plans (with what each would have added to your last
90 days), your subscription, subscribing (returns the checkout to pay at),
cancelling at the period's end and resubscribing. Same authentication as the
rest of the member API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from api.member_api.referrals import site_url
from api.member_auth.guards import api_member
from api.member_auth.principal import MemberPrincipal
from api.vip import subscriptions, views
from api.web.bodies import strict_body
from api.web.state import runtime

Member = NamedDependency[MemberPrincipal]
WALLET_VIP_PATH = "/vip"


class MemberVipPlanOut(msgspec.Struct, kw_only=True):
    code: str
    name: str
    period: Annotated[str, msgspec.Meta(description="month | year")]
    price_cents: int
    currency: str = "EUR"
    multiplier_permille: Annotated[
        int, msgspec.Meta(description="Earn multiplier per mille, added to your tier's")
    ]
    monthly_bonus_points: int
    free_lottery_tickets: int
    would_have_earned_extra_points: Annotated[
        int, msgspec.Meta(description="What this plan would have added to your last 90 days")
    ]


class MemberVipSubscriptionOut(msgspec.Struct, kw_only=True):
    id: int
    plan_code: str
    plan_name: str
    status: Annotated[
        str, msgspec.Meta(description="pending | active | grace | cancelled | lapsed | abandoned")
    ]
    cancel_at_period_end: bool
    current_period_end: datetime | None
    grace_until: datetime | None
    created_at: datetime
    ended_at: datetime | None
    checkout_url: Annotated[str | None, msgspec.Meta(description="pending: where to pay")]


class MemberVipOut(msgspec.Struct, kw_only=True):
    is_vip: Annotated[bool, msgspec.Meta(description="VIP benefits apply now")]
    vip_multiplier_permille: int | None
    base_points_90d: int
    plans: list[MemberVipPlanOut]
    subscription: MemberVipSubscriptionOut | None


class VipSubscribeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    plan_code: Annotated[str, msgspec.Meta(max_length=40, examples=["vip_monthly"])]


class VipResubscribeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    plan_code: Annotated[str, msgspec.Meta(max_length=40)] | None = None


class VipCheckoutOut(msgspec.Struct, kw_only=True):
    subscription: MemberVipSubscriptionOut
    checkout_url: Annotated[
        str | None, msgspec.Meta(description="Send the member here to pay; None: nothing to pay")
    ]


def subscription_out(sub: subscriptions.Subscription) -> MemberVipSubscriptionOut:
    return MemberVipSubscriptionOut(
        id=sub.id,
        plan_code=sub.plan_code,
        plan_name=sub.plan_name,
        status=sub.status,
        cancel_at_period_end=sub.cancel_at_period_end,
        current_period_end=sub.current_period_end,
        grace_until=sub.grace_until,
        created_at=sub.created_at,
        ended_at=sub.ended_at,
        checkout_url=sub.checkout_url,
    )


def overview_out(found: views.VipOverview) -> MemberVipOut:
    return MemberVipOut(
        is_vip=found.is_vip,
        vip_multiplier_permille=found.vip_multiplier_permille,
        base_points_90d=found.base_points_90d,
        plans=[
            MemberVipPlanOut(
                code=o.plan.code,
                name=o.plan.name,
                period=o.plan.period,
                price_cents=o.plan.price_cents,
                multiplier_permille=o.plan.multiplier_permille,
                monthly_bonus_points=o.plan.monthly_bonus_points,
                free_lottery_tickets=o.plan.free_lottery_tickets,
                would_have_earned_extra_points=o.would_have_earned_extra_points,
            )
            for o in found.offers
        ],
        subscription=None if found.subscription is None else subscription_out(found.subscription),
    )


def vip_return_url(request: Request[Any, Any, Any]) -> str:
    """Where the checkout sends the member back to: the wallet's VIP page."""
    return site_url(request) + WALLET_VIP_PATH


def _started(started: subscriptions.Started) -> Response[VipCheckoutOut]:
    return Response(
        VipCheckoutOut(
            subscription=subscription_out(started.subscription),
            checkout_url=started.checkout_url,
        ),
        status_code=201 if started.created else 200,
    )


class MemberVipController(Controller):
    path = "/member/v1/vip"
    tags = ["Member API"]
    dependencies = {"member": Provide(api_member)}
    security = [{"memberBearer": []}]

    @get("/", summary="VIP plans, what each would have added, and your subscription")
    async def overview(self, request: Request[Any, Any, Any], member: Member) -> MemberVipOut:
        rt = runtime(request.app.state)
        return overview_out(await views.vip_overview(rt.db, member.member_id, rt.clock.now()))

    @post(
        "/subscribe",
        summary="Subscribe to a plan: returns the checkout to pay at",
        description="The subscription is pending until the first payment is paid; then"
        " active for one period, renewed automatically. Asking again while it is pending"
        " returns the same checkout (200). Problems: `vip_plan_not_found` (404),"
        " `vip_already_subscribed`, `vip_checkout_open`, `vip_plan_inactive` (409),"
        " `invalid_request` (422).",
        status_code=201,
    )
    async def subscribe(
        self, request: Request[Any, Any, Any], member: Member, data: JSONBody[VipSubscribeIn]
    ) -> Response[VipCheckoutOut]:
        rt = runtime(request.app.state)
        body = await strict_body(request, VipSubscribeIn)
        started = await subscriptions.subscribe(
            rt.db,
            member.member_id,
            body.plan_code,
            redirect_url=vip_return_url(request),
            now=rt.clock.now(),
        )
        return _started(started)

    @post(
        "/cancel",
        summary="Cancel at the end of the paid period (benefits until then)",
        description="In grace (a renewal failed) the subscription ends now. Repeating changes"
        " nothing. Problems: `vip_not_subscribed` (404), `vip_checkout_open` (409).",
        status_code=200,
    )
    async def cancel(
        self, request: Request[Any, Any, Any], member: Member
    ) -> MemberVipSubscriptionOut:
        rt = runtime(request.app.state)
        return subscription_out(await subscriptions.cancel(rt.db, member.member_id, rt.clock.now()))

    @post(
        "/resubscribe",
        summary="Undo a cancellation, or subscribe again after the subscription ended",
        description="Before the period ends a cancellation is undone (nothing to pay,"
        " `checkout_url` null); after the end a new subscription starts (your last plan"
        " unless `plan_code` is given) with a checkout, as `/subscribe`.",
        status_code=201,
    )
    async def resubscribe(
        self, request: Request[Any, Any, Any], member: Member, data: JSONBody[VipResubscribeIn]
    ) -> Response[VipCheckoutOut]:
        rt = runtime(request.app.state)
        body = await strict_body(request, VipResubscribeIn)
        started = await subscriptions.resubscribe(
            rt.db,
            member.member_id,
            body.plan_code,
            redirect_url=vip_return_url(request),
            now=rt.clock.now(),
        )
        return _started(started)
