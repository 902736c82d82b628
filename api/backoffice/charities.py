"""Back-office: charities (/backoffice/charities): charities (create, change
with the IBAN checked as a partner's, activate or deactivate), each one's
donations, partners' matching campaigns (create, change the name, budget or
end, end now) with the budget used, and the charity payouts; CSV exports of
donations and payouts.

The rules are `api/charity/*`'s; the audited writes are the admin API's
(`api/admin_api/charities.py`). Roles as the API's: every role reads
charities and campaigns; owner and finance write charities (bank details),
owner and marketing write campaigns. The payouts (money and bank transfers,
which the admin API does not list) are for owner and finance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath, Parameter
from litestar.response import Redirect, Stream

from api.admin_api.charities import (
    CAMPAIGN_WRITER_ROLES,
    CHARITY_WRITER_ROLES,
    READER_ROLES,
    change_campaign_audited,
    change_charity_audited,
    create_campaign_audited,
    create_charity_audited,
    end_campaign_audited,
    set_charity_status_audited,
)
from api.backoffice.csv_export import csv_response
from api.backoffice.guards import AdminSession, SignedInAdmin, form_text, require_csrf
from api.backoffice.listing import PAGE_SIZE, every_item
from api.backoffice.pages import PROGRAMME_TZ, base_context, page
from api.backoffice.programme_forms import (
    checked,
    form_values,
    invalid,
    local_input,
    moment,
    optional_text,
    optional_whole,
    whole,
)
from api.charity import charities, listing, matching
from api.coalition.partner_choices import active_partner_choices
from api.db.pool import transaction
from api.errors import DomainError, NotFound
from api.web.state import runtime

Filter = Annotated[str | None, Parameter(max_length=200)]
PAYOUT_ROLES = CHARITY_WRITER_ROLES


def _charity_in(form: FormMultiDict) -> charities.CharityIn:
    return charities.CharityIn(
        name=form_text(form, "name"),
        description=form_text(form, "description"),
        logo_url=optional_text(form, "logo_url"),
        iban=form_text(form, "iban"),
        bic=optional_text(form, "bic"),
        account_holder=form_text(form, "account_holder"),
        anbi=checked(form, "anbi"),
    )


def _charity_values(charity: charities.Charity) -> dict[str, Any]:
    return {
        "name": charity.name,
        "description": charity.description,
        "logo_url": charity.logo_url or "",
        "iban": charity.iban,
        "bic": charity.bic or "",
        "account_holder": charity.account_holder,
        "anbi": "on" if charity.anbi else "",
    }


@get("/charities", opt={"roles": READER_ROLES}, name="backoffice_charities")
async def charities_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    status: Filter = None,
    cursor: Filter = None,
) -> Response[str]:
    db = runtime(request.app.state).db
    role = who.admin.role
    found = await charities.list_charities_page(
        db, status=status or None, cursor=cursor, limit=PAGE_SIZE
    )
    context = base_context(who, "charities")
    context.update(
        filters={"status": status or ""},
        statuses=[(s, s) for s in charities.STATUSES],
        charities=found.items,
        next_cursor=found.next_cursor,
        may_write_charities=role in CHARITY_WRITER_ROLES,
        may_write_campaigns=role in CAMPAIGN_WRITER_ROLES,
        sees_payouts=role in PAYOUT_ROLES,
    )
    return page(request, "backoffice/charities.html", context, fragment="rows")


@get("/charities/campaigns", opt={"roles": READER_ROLES}, name="backoffice_campaigns")
async def campaigns_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    status: Filter = None,
    cursor: Filter = None,
) -> Response[str]:
    db = runtime(request.app.state).db
    found = await matching.list_campaigns_page(
        db, status=status or None, cursor=cursor, limit=PAGE_SIZE
    )
    context = base_context(who, "charities")
    context.update(
        filters={"status": status or ""},
        statuses=[(s, s) for s in matching.CAMPAIGN_STATUSES],
        campaigns=found.items,
        next_cursor=found.next_cursor,
        partners=dict(await active_partner_choices(db)),
        may_write=who.admin.role in CAMPAIGN_WRITER_ROLES,
    )
    return page(request, "backoffice/matching_campaigns.html", context, fragment="rows")


async def _charity_form(
    request: Request[Any, Any, Any],
    who: AdminSession,
    values: dict[str, Any],
    *,
    error: str = "",
    status: int = 200,
) -> Response[str]:
    context = base_context(who, "charities")
    context.update(values=values, error=error)
    return page(request, "backoffice/charity_new.html", context, status=status)


@get("/charities/new", opt={"roles": CHARITY_WRITER_ROLES}, name="backoffice_charity_new")
async def new_charity_page(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[str]:
    return await _charity_form(request, who, {})


@post("/charities", opt={"roles": CHARITY_WRITER_ROLES}, name="backoffice_charity_create")
async def create_charity(
    request: Request[Any, Any, Any], who: SignedInAdmin
) -> Response[str] | Redirect:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    try:
        new = _charity_in(form)
        made = await transaction(
            rt.db, lambda conn: create_charity_audited(conn, who.admin, new, now)
        )
    except DomainError as error:
        return await _charity_form(
            request, who, form_values(form), error=error.detail, status=error.status
        )
    return Redirect(f"/backoffice/charities/{made.id}", status_code=303)


async def _charity_detail(
    request: Request[Any, Any, Any],
    who: AdminSession,
    charity_id: int,
    *,
    cursor: str | None = None,
    values: dict[str, Any] | None = None,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> Response[str]:
    db = runtime(request.app.state).db
    charity = await charities.get_charity(db, charity_id)
    if charity is None:
        raise NotFound("there is no such charity", code="charity_not_found")
    donations = await listing.charity_donations(db, charity_id, cursor=cursor, limit=PAGE_SIZE)
    context = base_context(who, "charities")
    context.update(
        charity=charity,
        values={**_charity_values(charity), **(values or {})},
        donations=donations.items,
        next_cursor=donations.next_cursor,
        may_write=who.admin.role in CHARITY_WRITER_ROLES,
        sees_payouts=who.admin.role in PAYOUT_ROLES,
        error=error,
        notice=notice,
    )
    return page(request, "backoffice/charity.html", context, fragment="rows", status=status)


@get("/charities/{charity_id:int}", opt={"roles": READER_ROLES}, name="backoffice_charity")
async def charity_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    charity_id: FromPath[int],
    cursor: Filter = None,
) -> Response[str]:
    return await _charity_detail(request, who, charity_id, cursor=cursor)


@post(
    "/charities/{charity_id:int}",
    opt={"roles": CHARITY_WRITER_ROLES},
    name="backoffice_charity_change",
)
async def change_charity(
    request: Request[Any, Any, Any], who: SignedInAdmin, charity_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    try:
        new = _charity_in(form)
        await transaction(
            rt.db, lambda conn: change_charity_audited(conn, who.admin, charity_id, new, now)
        )
    except NotFound:
        raise
    except DomainError as error:
        values = {**form_values(form), "anbi": "on" if checked(form, "anbi") else ""}
        return await _charity_detail(
            request, who, charity_id, values=values, error=error.detail, status=error.status
        )
    return await _charity_detail(request, who, charity_id, notice="Saved.")


@post(
    "/charities/{charity_id:int}/status",
    opt={"roles": CHARITY_WRITER_ROLES},
    name="backoffice_charity_status",
)
async def charity_status(
    request: Request[Any, Any, Any], who: SignedInAdmin, charity_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    wanted = form_text(form, "status")
    try:
        after = await transaction(
            rt.db,
            lambda conn: set_charity_status_audited(conn, who.admin, charity_id, wanted, now),
        )
    except NotFound:
        raise
    except DomainError as error:
        return await _charity_detail(
            request, who, charity_id, error=error.detail, status=error.status
        )
    return await _charity_detail(request, who, charity_id, notice=f"Now {after.status}.")


async def _donation_rows(
    request: Request[Any, Any, Any], charity_id: int
) -> AsyncIterator[list[object]]:
    db = runtime(request.app.state).db
    async for d in every_item(
        lambda cursor: listing.charity_donations(
            db, charity_id, cursor=cursor, limit=listing.PAGE_SIZE_MAX
        )
    ):
        yield [
            d.id,
            d.created_at.isoformat(),
            d.card_number,
            d.points,
            d.matched_points,
            d.campaign_id,
            d.monthly,
        ]


@get(
    "/charities/{charity_id:int}/donations.csv",
    opt={"roles": READER_ROLES},
    name="backoffice_charity_donations_csv",
)
async def donations_csv(
    request: Request[Any, Any, Any], who: SignedInAdmin, charity_id: FromPath[int]
) -> Stream:
    if await charities.get_charity(runtime(request.app.state).db, charity_id) is None:
        raise NotFound("there is no such charity", code="charity_not_found")
    return csv_response(
        f"charity_{charity_id}_donations.csv",
        ["id", "at", "card_number", "points", "matched_points", "campaign_id", "monthly"],
        _donation_rows(request, charity_id),
    )


# Matching campaigns -----------------------------------------------------------


async def _campaign_page(
    request: Request[Any, Any, Any],
    who: AdminSession,
    campaign: matching.Campaign | None,
    values: dict[str, Any],
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> Response[str]:
    db = runtime(request.app.state).db
    context = base_context(who, "charities")
    context.update(
        campaign=campaign,
        values=values,
        error=error,
        notice=notice,
        partners=await active_partner_choices(db),
        charities=[(c.id, c.name) for c in await charities.list_charities(db, active_only=True)],
        may_write=who.admin.role in CAMPAIGN_WRITER_ROLES,
    )
    return page(request, "backoffice/matching_campaign.html", context, status=status)


def _campaign_values(campaign: matching.Campaign) -> dict[str, Any]:
    return {
        "name": campaign.name,
        "partner_id": str(campaign.partner_id),
        "charity_id": "" if campaign.charity_id is None else str(campaign.charity_id),
        "budget_points": str(campaign.budget_points),
        "starts_at": local_input(campaign.starts_at),
        "ends_at": local_input(campaign.ends_at),
    }


@get(
    "/charities/campaigns/new",
    opt={"roles": CAMPAIGN_WRITER_ROLES},
    name="backoffice_campaign_new",
)
async def new_campaign_page(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[str]:
    now = runtime(request.app.state).clock.now().astimezone(PROGRAMME_TZ)
    start = now.replace(second=0, microsecond=0)
    values = {
        "starts_at": local_input(start),
        "ends_at": local_input(start + timedelta(days=30)),
    }
    return await _campaign_page(request, who, None, values)


@post(
    "/charities/campaigns", opt={"roles": CAMPAIGN_WRITER_ROLES}, name="backoffice_campaign_create"
)
async def create_campaign(
    request: Request[Any, Any, Any], who: SignedInAdmin
) -> Response[str] | Redirect:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    try:
        partner_id = optional_whole(form, "partner_id", "Partner")
        if partner_id is None:
            raise invalid("Partner", "choose the partner who matches")
        new = matching.CampaignIn(
            partner_id=partner_id,
            charity_id=optional_whole(form, "charity_id", "Charity"),
            name=form_text(form, "name"),
            budget_points=whole(form, "budget_points", "Budget (points)"),
            starts_at=moment(form, "starts_at", "Starts"),
            ends_at=moment(form, "ends_at", "Ends"),
        )
        made = await transaction(
            rt.db, lambda conn: create_campaign_audited(conn, who.admin, new, now)
        )
    except DomainError as error:
        return await _campaign_page(
            request, who, None, form_values(form), error=error.detail, status=error.status
        )
    return Redirect(f"/backoffice/charities/campaigns/{made.id}", status_code=303)


@get(
    "/charities/campaigns/{campaign_id:int}",
    opt={"roles": READER_ROLES},
    name="backoffice_campaign",
)
async def campaign_page(
    request: Request[Any, Any, Any], who: SignedInAdmin, campaign_id: FromPath[int]
) -> Response[str]:
    campaign = await matching.get_campaign(runtime(request.app.state).db, campaign_id)
    return await _campaign_page(request, who, campaign, _campaign_values(campaign))


@post(
    "/charities/campaigns/{campaign_id:int}",
    opt={"roles": CAMPAIGN_WRITER_ROLES},
    name="backoffice_campaign_change",
)
async def change_campaign(
    request: Request[Any, Any, Any], who: SignedInAdmin, campaign_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    campaign = await matching.get_campaign(rt.db, campaign_id)
    try:
        name = form_text(form, "name")
        budget_points = whole(form, "budget_points", "Budget (points)")
        ends_at = moment(form, "ends_at", "Ends")
        after = await transaction(
            rt.db,
            lambda conn: change_campaign_audited(
                conn,
                who.admin,
                campaign_id,
                name=name,
                budget_points=budget_points,
                ends_at=ends_at,
                now=now,
            ),
        )
    except DomainError as error:
        values = {**_campaign_values(campaign), **form_values(form)}
        return await _campaign_page(
            request, who, campaign, values, error=error.detail, status=error.status
        )
    return await _campaign_page(request, who, after, _campaign_values(after), notice="Saved.")


@post(
    "/charities/campaigns/{campaign_id:int}/end",
    opt={"roles": CAMPAIGN_WRITER_ROLES},
    name="backoffice_campaign_end",
)
async def end_campaign(
    request: Request[Any, Any, Any], who: SignedInAdmin, campaign_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    campaign = await matching.get_campaign(rt.db, campaign_id)
    try:
        after = await transaction(
            rt.db, lambda conn: end_campaign_audited(conn, who.admin, campaign_id, now)
        )
    except DomainError as error:
        return await _campaign_page(
            request,
            who,
            campaign,
            _campaign_values(campaign),
            error=error.detail,
            status=error.status,
        )
    return await _campaign_page(
        request, who, after, _campaign_values(after), notice="Ended: it matches nothing more."
    )


# Payouts ------------------------------------------------------------------------


def _charity_filter(charity_id: str | None) -> int | None:
    text = (charity_id or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise invalid("Charity", f"{text!r} is not a charity", status=400)
    return int(text)


@get("/charities/payouts", opt={"roles": PAYOUT_ROLES}, name="backoffice_charity_payouts")
async def payouts_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    charity_id: Filter = None,
    cursor: Filter = None,
) -> Response[str]:
    db = runtime(request.app.state).db
    found = await listing.list_payouts(
        db, charity_id=_charity_filter(charity_id), cursor=cursor, limit=PAGE_SIZE
    )
    context = base_context(who, "charities")
    context.update(
        filters={"charity_id": charity_id or ""},
        charities=[(c.id, c.name) for c in await charities.list_charities(db, active_only=False)],
        items=found.items,
        next_cursor=found.next_cursor,
    )
    return page(request, "backoffice/charity_payouts.html", context, fragment="rows")


async def _payout_rows(
    request: Request[Any, Any, Any], charity_id: int | None
) -> AsyncIterator[list[object]]:
    db = runtime(request.app.state).db
    async for p in every_item(
        lambda cursor: listing.list_payouts(
            db, charity_id=charity_id, cursor=cursor, limit=listing.PAGE_SIZE_MAX
        )
    ):
        yield [
            p.id,
            p.charity_id,
            p.charity_name,
            p.month.isoformat(),
            p.points,
            p.price_micros,
            p.amount_cents,
            p.business_date.isoformat(),
            p.created_at.isoformat(),
        ]


@get(
    "/charities/payouts/export.csv",
    opt={"roles": PAYOUT_ROLES},
    name="backoffice_charity_payouts_csv",
)
async def payouts_csv(
    request: Request[Any, Any, Any], who: SignedInAdmin, charity_id: Filter = None
) -> Stream:
    return csv_response(
        "charity_payouts.csv",
        [
            "id",
            "charity_id",
            "charity_name",
            "month",
            "points",
            "price_micros",
            "amount_cents",
            "business_date",
            "created_at",
        ],
        _payout_rows(request, _charity_filter(charity_id)),
    )


HANDLERS: list[Any] = [
    charities_page,
    campaigns_page,
    new_charity_page,
    create_charity,
    charity_page,
    change_charity,
    charity_status,
    donations_csv,
    new_campaign_page,
    create_campaign,
    campaign_page,
    change_campaign,
    end_campaign,
    payouts_page,
    payouts_csv,
]
