"""Admin API: charities (list, create with an IBAN check, change, deactivate)
and partners' matching campaigns (list, create, end). Charities are written
by owner and finance (they carry bank details), campaigns by owner and
marketing; every admin may read both. Every change is audited."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, patch, post, put
from litestar.di import Provide
from litestar.params import JSONBody

from api.admin_auth import audit
from api.admin_auth.guards import ADMIN_SECURITY, Admin, admin_principal, requires_roles
from api.admin_auth.principal import AdminPrincipal, Role
from api.charity import charities, matching
from api.db.pool import transaction
from api.web.bodies import strict_body
from api.web.params import RowId
from api.web.state import runtime

READER_ROLES: tuple[Role, ...] = ("owner", "finance", "support", "marketing")
CHARITY_WRITER_ROLES: tuple[Role, ...] = ("owner", "finance")
CAMPAIGN_WRITER_ROLES: tuple[Role, ...] = ("owner", "marketing")
ALL_ROLES = requires_roles(*READER_ROLES)
CHARITY_WRITERS = requires_roles(*CHARITY_WRITER_ROLES)
CAMPAIGN_WRITERS = requires_roles(*CAMPAIGN_WRITER_ROLES)


class CharityIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    description: str = ""
    logo_url: Annotated[str | None, msgspec.Meta(description="An https:// image address")] = None
    iban: Annotated[str, msgspec.Meta(description="Checked like a partner's; stored compact")]
    bic: Annotated[
        str | None, msgspec.Meta(description="Optional inside the EEA (derived when known)")
    ] = None
    account_holder: str
    anbi: Annotated[bool, msgspec.Meta(description="Dutch ANBI status")] = False


class CharityStatusIn(msgspec.Struct, forbid_unknown_fields=True):
    status: Annotated[str, msgspec.Meta(description="active or inactive")]


class CharityOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    description: str
    logo_url: str | None
    iban: str
    bic: str | None
    account_holder: str
    anbi: bool
    status: str
    created_at: datetime
    donated_points: int
    matched_points: int


class CampaignIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    partner_id: int
    charity_id: Annotated[int | None, msgspec.Meta(description="None: any charity")] = None
    name: str
    budget_points: Annotated[int, msgspec.Meta(description="Points the partner matches at most")]
    starts_at: datetime
    ends_at: datetime


class CampaignOut(msgspec.Struct, kw_only=True):
    id: int
    partner_id: int
    charity_id: int | None
    name: str
    ratio: int
    budget_points: int
    used_points: int
    starts_at: datetime
    ends_at: datetime
    status: str
    created_at: datetime


def _charity_out(c: charities.Charity) -> CharityOut:
    return CharityOut(**dataclasses.asdict(c))


def _campaign_out(c: matching.Campaign) -> CampaignOut:
    return CampaignOut(**dataclasses.asdict(c))


def _domain(body: CharityIn) -> charities.CharityIn:
    return charities.CharityIn(**msgspec.structs.asdict(body))


# The audited changes, shared with the back-office pages (api/backoffice/charities.py).


async def create_charity_audited(
    conn: Any, admin: AdminPrincipal, new: charities.CharityIn, now: datetime
) -> charities.Charity:
    made = await charities.create_charity(conn, new, now)
    await audit.record(
        conn, admin, "charity.create", f"charity:{made.id}", None, _audited(made), now
    )
    return made


async def change_charity_audited(
    conn: Any, admin: AdminPrincipal, charity_id: int, new: charities.CharityIn, now: datetime
) -> charities.Charity:
    before, after = await charities.update_charity(conn, charity_id, new, now)
    await audit.record(
        conn,
        admin,
        "charity.change",
        f"charity:{charity_id}",
        _audited(before),
        _audited(after),
        now,
    )
    return after


async def set_charity_status_audited(
    conn: Any, admin: AdminPrincipal, charity_id: int, status: str, now: datetime
) -> charities.Charity:
    before, after = await charities.set_status(conn, charity_id, status, now)
    await audit.record(
        conn,
        admin,
        "charity.status",
        f"charity:{charity_id}",
        {"status": before.status},
        {"status": after.status},
        now,
    )
    return after


async def create_campaign_audited(
    conn: Any, admin: AdminPrincipal, new: matching.CampaignIn, now: datetime
) -> matching.Campaign:
    made = await matching.create_campaign(conn, new, now)
    await audit.record(
        conn,
        admin,
        "matching_campaign.create",
        f"matching_campaign:{made.id}",
        None,
        dataclasses.asdict(made),
        now,
    )
    return made


async def change_campaign_audited(
    conn: Any,
    admin: AdminPrincipal,
    campaign_id: int,
    *,
    name: str,
    budget_points: int,
    ends_at: datetime,
    now: datetime,
) -> matching.Campaign:
    before, after = await matching.change_campaign(
        conn, campaign_id, name=name, budget_points=budget_points, ends_at=ends_at, now=now
    )
    if before != after:
        await audit.record(
            conn,
            admin,
            "matching_campaign.change",
            f"matching_campaign:{campaign_id}",
            dataclasses.asdict(before),
            dataclasses.asdict(after),
            now,
        )
    return after


async def end_campaign_audited(
    conn: Any, admin: AdminPrincipal, campaign_id: int, now: datetime
) -> matching.Campaign:
    before, after = await matching.end_campaign(conn, campaign_id)
    await audit.record(
        conn,
        admin,
        "matching_campaign.end",
        f"matching_campaign:{campaign_id}",
        {"status": before.status},
        {"status": after.status},
        now,
    )
    return after


class CharityAdminController(Controller):
    path = "/admin/v1/charities"
    tags = ["Admin API: charities"]
    dependencies = {"admin": Provide(admin_principal)}
    security = ADMIN_SECURITY

    @get("/", summary="Every charity, active or not, with its running totals", guards=[ALL_ROLES])
    async def list_charities(
        self, request: Request[Any, Any, Any], admin: Admin
    ) -> list[CharityOut]:
        found = await charities.list_charities(runtime(request.app.state).db, active_only=False)
        return [_charity_out(c) for c in found]

    @post(
        "/",
        summary="Add a charity (IBAN checked: invalid_iban, invalid_bic, account_holder_required)",
        status_code=201,
        guards=[CHARITY_WRITERS],
    )
    async def create(
        self, request: Request[Any, Any, Any], admin: Admin, data: JSONBody[CharityIn]
    ) -> CharityOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, CharityIn)
        now = rt.clock.now()

        made = await transaction(
            rt.db, lambda conn: create_charity_audited(conn, admin, _domain(body), now)
        )
        return _charity_out(made)

    @put("/{charity_id:int}", summary="Change a charity's details", guards=[CHARITY_WRITERS])
    async def change(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        charity_id: RowId,
        data: JSONBody[CharityIn],
    ) -> CharityOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, CharityIn)
        now = rt.clock.now()

        after = await transaction(
            rt.db,
            lambda conn: change_charity_audited(conn, admin, charity_id, _domain(body), now),
        )
        return _charity_out(after)

    @patch(
        "/{charity_id:int}/status",
        summary="Deactivate (or reactivate) a charity: an inactive one takes no donations",
        guards=[CHARITY_WRITERS],
    )
    async def set_status(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        charity_id: RowId,
        data: JSONBody[CharityStatusIn],
    ) -> CharityOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, CharityStatusIn)
        now = rt.clock.now()

        after = await transaction(
            rt.db,
            lambda conn: set_charity_status_audited(conn, admin, charity_id, body.status, now),
        )
        return _charity_out(after)


def _audited(c: charities.Charity) -> dict[str, Any]:
    fields = dataclasses.asdict(c)
    # Running totals change with every donation; they are not what was changed.
    fields.pop("donated_points")
    fields.pop("matched_points")
    return fields


class MatchingCampaignAdminController(Controller):
    path = "/admin/v1/matching-campaigns"
    tags = ["Admin API: charities"]
    dependencies = {"admin": Provide(admin_principal)}
    security = ADMIN_SECURITY

    @get("/", summary="Matching campaigns, newest first, with the budget used", guards=[ALL_ROLES])
    async def list_campaigns(
        self, request: Request[Any, Any, Any], admin: Admin
    ) -> list[CampaignOut]:
        found = await matching.list_campaigns(runtime(request.app.state).db)
        return [_campaign_out(c) for c in found]

    @post(
        "/",
        summary="A partner matches donations 1:1 up to a budget, charged in its settlement",
        status_code=201,
        guards=[CAMPAIGN_WRITERS],
    )
    async def create(
        self, request: Request[Any, Any, Any], admin: Admin, data: JSONBody[CampaignIn]
    ) -> CampaignOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, CampaignIn)
        now = rt.clock.now()

        made = await transaction(
            rt.db,
            lambda conn: create_campaign_audited(
                conn, admin, matching.CampaignIn(**msgspec.structs.asdict(body)), now
            ),
        )
        return _campaign_out(made)

    @post(
        "/{campaign_id:int}/end",
        summary="End a campaign now: it matches nothing more",
        status_code=200,
        guards=[CAMPAIGN_WRITERS],
    )
    async def end(
        self, request: Request[Any, Any, Any], admin: Admin, campaign_id: RowId
    ) -> CampaignOut:
        rt = runtime(request.app.state)
        now = rt.clock.now()

        after = await transaction(
            rt.db, lambda conn: end_campaign_audited(conn, admin, campaign_id, now)
        )
        return _campaign_out(after)
