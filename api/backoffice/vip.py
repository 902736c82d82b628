"""Back-office: VIP (/backoffice/vip): the plans (create, change for periods
paid from now on, retire: no new subscribers), the subscriptions filtered by
status with their CSV, and one subscription with its periods and events.

Rules in `api/vip/plans.py` and `api/vip/listing.py`; the audited writes are
the admin API's (`api/admin_api/vip.py`). Roles as the API's: plans are
written by owner and marketing and read by finance too; subscriptions are
read by owner, support and finance. /backoffice/vip shows each role its part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath, Parameter
from litestar.response import Redirect, Stream

from api.admin_api.vip import (
    READERS,
    SUBSCRIPTION_READERS,
    WRITERS,
    VipPlanIn,
    change_plan_audited,
    create_plan_audited,
)
from api.backoffice.csv_export import csv_response
from api.backoffice.guards import ALL_ROLES, AdminSession, SignedInAdmin, form_text, require_csrf
from api.backoffice.listing import PAGE_SIZE, every_item
from api.backoffice.pages import base_context, page
from api.backoffice.programme_forms import checked, form_values, whole
from api.db.pool import transaction
from api.errors import DomainError, NotFound
from api.vip import listing, plans
from api.web.state import runtime

Filter = Annotated[str | None, Parameter(max_length=200)]
PLAN_FIELDS = (
    "name",
    "price_cents",
    "multiplier_permille",
    "monthly_bonus_points",
    "free_lottery_tickets",
    "position",
)


def _numbers(form: FormMultiDict) -> dict[str, int]:
    return {
        "price_cents": whole(form, "price_cents", "Price (cents)"),
        "multiplier_permille": whole(form, "multiplier_permille", "Multiplier (permille)"),
        "monthly_bonus_points": whole(form, "monthly_bonus_points", "Monthly bonus points"),
        "free_lottery_tickets": whole(form, "free_lottery_tickets", "Free lottery tickets"),
        "position": whole(form, "position", "Position"),
    }


@get("/vip", opt={"roles": ALL_ROLES}, name="backoffice_vip")
async def vip_page(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[str]:
    role = who.admin.role
    context = base_context(who, "vip")
    context.update(
        plans=(
            await plans.list_plans(runtime(request.app.state).db, active_only=False)
            if role in READERS
            else None
        ),
        may_write=role in WRITERS,
        sees_subscriptions=role in SUBSCRIPTION_READERS,
    )
    return page(request, "backoffice/vip.html", context)


async def _plan_form(
    request: Request[Any, Any, Any],
    who: AdminSession,
    *,
    plan: plans.Plan | None,
    values: dict[str, Any],
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> Response[str]:
    context = base_context(who, "vip")
    context.update(
        plan=plan,
        values=values,
        error=error,
        notice=notice,
        may_write=who.admin.role in WRITERS,
        periods=[(p, p) for p in plans.PERIODS],
    )
    return page(request, "backoffice/vip_plan.html", context, status=status)


def _plan_values(plan: plans.Plan) -> dict[str, Any]:
    return {name: str(getattr(plan, name)) for name in plans.Plan.__slots__}


@get("/vip/plans/new", opt={"roles": WRITERS}, name="backoffice_vip_plan_new")
async def new_plan_page(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[str]:
    values = {
        "period": "month",
        "multiplier_permille": "1500",
        "monthly_bonus_points": "0",
        "free_lottery_tickets": "0",
        "position": "0",
    }
    return await _plan_form(request, who, plan=None, values=values)


@post("/vip/plans", opt={"roles": WRITERS}, name="backoffice_vip_plan_create")
async def create_plan(
    request: Request[Any, Any, Any], who: SignedInAdmin
) -> Response[str] | Redirect:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    try:
        body = VipPlanIn(
            code=form_text(form, "code"),
            name=form_text(form, "name"),
            period=form_text(form, "period"),
            **_numbers(form),
        )
        made, _ = await transaction(
            rt.db, lambda conn: create_plan_audited(conn, who.admin, body, now)
        )
    except DomainError as error:
        return await _plan_form(
            request,
            who,
            plan=None,
            values=form_values(form),
            error=error.detail,
            status=error.status,
        )
    return Redirect(f"/backoffice/vip/plans/{made.code}", status_code=303)


@get("/vip/plans/{code:str}", opt={"roles": READERS}, name="backoffice_vip_plan")
async def plan_page(
    request: Request[Any, Any, Any], who: SignedInAdmin, code: FromPath[str]
) -> Response[str]:
    plan = await plans.get_plan(runtime(request.app.state).db, code)
    return await _plan_form(request, who, plan=plan, values=_plan_values(plan))


async def _change(
    request: Request[Any, Any, Any],
    who: AdminSession,
    code: str,
    changes: dict[str, object] | None,
    form: FormMultiDict,
    action: str,
    notice: str,
) -> Response[str]:
    rt = runtime(request.app.state)
    now = rt.clock.now()
    plan = await plans.get_plan(rt.db, code)  # a missing plan is a 404 page
    try:
        if changes is None:
            changes = {
                "name": form_text(form, "name"),
                **_numbers(form),
                "active": checked(form, "active"),
            }
        given = changes
        after = await transaction(
            rt.db, lambda conn: change_plan_audited(conn, who.admin, code, given, action, now)
        )
    except NotFound:
        raise
    except DomainError as error:
        return await _plan_form(
            request,
            who,
            plan=plan,
            values={**_plan_values(plan), **form_values(form)},
            error=error.detail,
            status=error.status,
        )
    return await _plan_form(request, who, plan=after, values=_plan_values(after), notice=notice)


@post("/vip/plans/{code:str}", opt={"roles": WRITERS}, name="backoffice_vip_plan_change")
async def change_plan(
    request: Request[Any, Any, Any], who: SignedInAdmin, code: FromPath[str]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    return await _change(request, who, code, None, form, "vip_plan.change", "Saved.")


@post("/vip/plans/{code:str}/retire", opt={"roles": WRITERS}, name="backoffice_vip_plan_retire")
async def retire_plan(
    request: Request[Any, Any, Any], who: SignedInAdmin, code: FromPath[str]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    return await _change(
        request,
        who,
        code,
        {"active": False},
        form,
        "vip_plan.deactivate",
        "Retired: no new subscribers; running subscriptions renew until they end.",
    )


@get("/vip/subscriptions", opt={"roles": SUBSCRIPTION_READERS}, name="backoffice_vip_subscriptions")
async def subscriptions_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    status: Filter = None,
    cursor: Filter = None,
) -> Response[str]:
    found = await listing.list_subscriptions(
        runtime(request.app.state).db, limit=PAGE_SIZE, cursor=cursor, status=status or None
    )
    context = base_context(who, "vip")
    context.update(
        filters={"status": status or ""},
        statuses=[(s, s) for s in listing.STATUSES],
        items=found.items,
        next_cursor=found.next_cursor,
    )
    return page(request, "backoffice/vip_subscriptions.html", context, fragment="rows")


async def _subscription_rows(
    request: Request[Any, Any, Any], status: str | None
) -> AsyncIterator[list[object]]:
    db = runtime(request.app.state).db
    async for s in every_item(
        lambda cursor: listing.list_subscriptions(
            db, limit=listing.PAGE_SIZE_MAX, cursor=cursor, status=status
        )
    ):
        yield [
            s.id,
            str(s.member_public_id),
            s.card_number,
            s.plan_code,
            s.status,
            s.cancel_at_period_end,
            None if s.current_period_end is None else s.current_period_end.isoformat(),
            None if s.grace_until is None else s.grace_until.isoformat(),
            s.created_at.isoformat(),
            None if s.ended_at is None else s.ended_at.isoformat(),
            s.periods_paid,
            s.paid_cents,
        ]


@get(
    "/vip/subscriptions/export.csv",
    opt={"roles": SUBSCRIPTION_READERS},
    name="backoffice_vip_subscriptions_csv",
)
async def subscriptions_csv(
    request: Request[Any, Any, Any], who: SignedInAdmin, status: Filter = None
) -> Stream:
    # Checked before the stream starts: a bad status is a page, not a broken file.
    await listing.list_subscriptions(
        runtime(request.app.state).db, limit=1, cursor=None, status=status or None
    )
    return csv_response(
        "vip_subscriptions.csv",
        [
            "id",
            "member_public_id",
            "card_number",
            "plan_code",
            "status",
            "cancel_at_period_end",
            "current_period_end",
            "grace_until",
            "created_at",
            "ended_at",
            "periods_paid",
            "paid_cents",
        ],
        _subscription_rows(request, status or None),
    )


@get(
    "/vip/subscriptions/{subscription_id:int}",
    opt={"roles": SUBSCRIPTION_READERS},
    name="backoffice_vip_subscription",
)
async def subscription_page(
    request: Request[Any, Any, Any], who: SignedInAdmin, subscription_id: FromPath[int]
) -> Response[str]:
    found = await listing.subscription_detail(runtime(request.app.state).db, subscription_id)
    context = base_context(who, "vip")
    context.update(detail=found)
    return page(request, "backoffice/vip_subscription.html", context)


HANDLERS: list[Any] = [
    vip_page,
    new_plan_page,
    create_plan,
    plan_page,
    change_plan,
    retire_plan,
    subscriptions_page,
    subscriptions_csv,
    subscription_page,
]
