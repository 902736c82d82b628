"""Admin API: VIP plans (list, create, change for new periods, deactivate;
owner and marketing write, finance reads; audited) and VIP subscriptions
(list; owner, support and finance read)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from api.admin_auth import audit
from api.admin_auth.guards import ADMIN_SECURITY, Admin, admin_principal, requires_roles
from api.admin_auth.principal import AdminPrincipal, Role
from api.db.pool import transaction
from api.vip import listing, plans
from api.web.bodies import strict_body
from api.web.params import RowId
from api.web.state import runtime

WRITERS: tuple[Role, ...] = ("owner", "marketing")
READERS: tuple[Role, ...] = ("owner", "marketing", "finance")
SUBSCRIPTION_READERS: tuple[Role, ...] = ("owner", "support", "finance")


class VipPlanAdminOut(msgspec.Struct, kw_only=True):
    code: str
    name: str
    period: Annotated[str, msgspec.Meta(description="month | year")]
    price_cents: int
    multiplier_permille: Annotated[int, msgspec.Meta(description="1000 = x1; added to the tier's")]
    monthly_bonus_points: int
    free_lottery_tickets: int
    active: bool
    position: int


class VipPlanIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Annotated[str, msgspec.Meta(max_length=40, examples=["vip_quarterly"])]
    name: Annotated[str, msgspec.Meta(max_length=60)]
    period: Annotated[str, msgspec.Meta(description="month | year")]
    price_cents: int
    multiplier_permille: int
    monthly_bonus_points: int = 0
    free_lottery_tickets: int = 0
    position: int = 0


class VipPlanChangeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    price_cents: int | msgspec.UnsetType = msgspec.UNSET
    multiplier_permille: int | msgspec.UnsetType = msgspec.UNSET
    monthly_bonus_points: int | msgspec.UnsetType = msgspec.UNSET
    free_lottery_tickets: int | msgspec.UnsetType = msgspec.UNSET
    position: int | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class VipSubscriptionAdminOut(msgspec.Struct, kw_only=True):
    id: int
    member_id: Annotated[UUID, msgspec.Meta(description="The member's public id")]
    card_number: str
    plan_code: str
    status: str
    cancel_at_period_end: bool
    current_period_end: datetime | None
    grace_until: datetime | None
    created_at: datetime
    ended_at: datetime | None
    periods_paid: int
    paid_cents: int


class VipPeriodAdminOut(msgspec.Struct, kw_only=True):
    starts_at: datetime
    ends_at: datetime
    plan_code: str
    amount_cents: int
    multiplier_permille: int
    payment_id: str | None


class VipEventAdminOut(msgspec.Struct, kw_only=True):
    at: datetime
    from_status: str | None
    to_status: str
    why: str


class VipSubscriptionDetailOut(msgspec.Struct, kw_only=True):
    subscription: VipSubscriptionAdminOut
    periods: list[VipPeriodAdminOut]
    events: list[VipEventAdminOut]


class VipSubscriptionPageOut(msgspec.Struct, kw_only=True):
    items: list[VipSubscriptionAdminOut]
    next_cursor: str | None


def _subscription_out(row: listing.SubscriptionRow) -> VipSubscriptionAdminOut:
    fields = dataclasses.asdict(row)
    return VipSubscriptionAdminOut(member_id=fields.pop("member_public_id"), **fields)


def _out(plan: plans.Plan) -> VipPlanAdminOut:
    return VipPlanAdminOut(**dataclasses.asdict(plan))


# The audited changes, shared with the back-office pages (api/backoffice/vip.py).


async def create_plan_audited(
    conn: Any, admin: AdminPrincipal, body: VipPlanIn, now: datetime
) -> tuple[plans.Plan, bool]:
    """The plan, and whether this call created it: the same plan sent again
    (the code is its key) is returned as it is; nothing is recorded."""
    new = plans.Plan(active=True, **msgspec.structs.asdict(body))
    existing = await conn.fetchval("SELECT 1 FROM vip_plans WHERE code = $1", new.code)
    if existing is not None and await plans.get_plan(conn, new.code) == new:
        return new, False
    created = await plans.create_plan(conn, new, now)
    await audit.record(
        conn,
        admin,
        "vip_plan.create",
        f"vip_plan:{new.code}",
        None,
        dataclasses.asdict(created),
        now,
    )
    return created, True


async def change_plan_audited(
    conn: Any,
    admin: AdminPrincipal,
    code: str,
    changes: dict[str, object],
    action: str,
    now: datetime,
) -> plans.Plan:
    """`action`: vip_plan.change, or vip_plan.deactivate (retire: no new subscribers)."""
    before, after = await plans.update_plan(conn, code, changes, now)
    if before != after:
        await audit.record(
            conn,
            admin,
            action,
            f"vip_plan:{code}",
            dataclasses.asdict(before),
            dataclasses.asdict(after),
            now,
        )
    return after


class VipAdminController(Controller):
    path = "/admin/v1"
    tags = ["Admin API: VIP"]
    dependencies = {"admin": Provide(admin_principal)}
    security = ADMIN_SECURITY

    @get("/vip-plans", summary="VIP plans, in display order", guards=[requires_roles(*READERS)])
    async def list_plans(
        self, request: Request[Any, Any, Any], admin: Admin
    ) -> list[VipPlanAdminOut]:
        found = await plans.list_plans(runtime(request.app.state).db, active_only=False)
        return [_out(p) for p in found]

    @post(
        "/vip-plans",
        summary="Create a VIP plan (owner, marketing; audited)",
        description="The code is the plan's key: sending the same plan again returns it"
        " (200); another plan under a taken code is `vip_plan_exists` (409). Problems:"
        " `invalid_vip_plan`, `invalid_request` (422).",
        guards=[requires_roles(*WRITERS)],
        status_code=201,
    )
    async def create_plan(
        self, request: Request[Any, Any, Any], admin: Admin, data: JSONBody[VipPlanIn]
    ) -> Response[VipPlanAdminOut]:
        rt = runtime(request.app.state)
        body = await strict_body(request, VipPlanIn)
        now = rt.clock.now()
        made, created = await transaction(
            rt.db, lambda conn: create_plan_audited(conn, admin, body, now)
        )
        return Response(_out(made), status_code=201 if created else 200)

    @patch(
        "/vip-plans/{code:str}",
        summary="Change a VIP plan: price and benefits apply to periods paid from now on",
        description="Only the fields sent change; `period` and `code` never do. Periods"
        " already paid keep what they were bought with. Problems: `vip_plan_not_found` (404),"
        " `invalid_vip_plan`, `invalid_request` (422).",
        guards=[requires_roles(*WRITERS)],
    )
    async def change_plan(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        code: FromPath[str],
        data: JSONBody[VipPlanChangeIn],
    ) -> VipPlanAdminOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, VipPlanChangeIn)
        changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}
        return await self._change(rt, admin, code, changes, "vip_plan.change")

    @post(
        "/vip-plans/{code:str}/deactivate",
        summary="Take no new subscribers on a plan (running subscriptions renew until they end)",
        guards=[requires_roles(*WRITERS)],
        status_code=200,
    )
    async def deactivate_plan(
        self, request: Request[Any, Any, Any], admin: Admin, code: FromPath[str]
    ) -> VipPlanAdminOut:
        rt = runtime(request.app.state)
        return await self._change(rt, admin, code, {"active": False}, "vip_plan.deactivate")

    @staticmethod
    async def _change(
        rt: Any, admin: Admin, code: str, changes: dict[str, object], action: str
    ) -> VipPlanAdminOut:
        now = rt.clock.now()
        after = await transaction(
            rt.db, lambda conn: change_plan_audited(conn, admin, code, changes, action, now)
        )
        return _out(after)

    @get(
        "/vip-subscriptions",
        summary="VIP subscriptions, newest first",
        description="Filter by `status` (pending, active, grace, cancelled, lapsed,"
        " abandoned); pass `next_cursor` back as `cursor`. Problems: `invalid_status`,"
        " `invalid_cursor`, `invalid_limit` (400).",
        guards=[requires_roles(*SUBSCRIPTION_READERS)],
    )
    async def list_subscriptions(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        limit: Annotated[int, QueryParameter(ge=1, le=listing.PAGE_SIZE_MAX)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=40)] = None,
        status: Annotated[str | None, QueryParameter(max_length=20)] = None,
    ) -> VipSubscriptionPageOut:
        page = await listing.list_subscriptions(
            runtime(request.app.state).db, limit=limit, cursor=cursor, status=status
        )
        return VipSubscriptionPageOut(
            items=[_subscription_out(r) for r in page.items], next_cursor=page.next_cursor
        )

    @get(
        "/vip-subscriptions/{subscription_id:int}",
        summary="One VIP subscription with its paid periods and every state change",
        description="Problems: `vip_subscription_not_found` (404).",
        guards=[requires_roles(*SUBSCRIPTION_READERS)],
    )
    async def subscription_detail(
        self, request: Request[Any, Any, Any], admin: Admin, subscription_id: RowId
    ) -> VipSubscriptionDetailOut:
        found = await listing.subscription_detail(runtime(request.app.state).db, subscription_id)
        return VipSubscriptionDetailOut(
            subscription=_subscription_out(found.subscription),
            periods=[VipPeriodAdminOut(**dataclasses.asdict(p)) for p in found.periods],
            events=[VipEventAdminOut(**dataclasses.asdict(e)) for e in found.events],
        )
