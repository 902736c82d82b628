"""/member/v1/charities and /member/v1/donations: list charities, donate
points (Idempotency-Key), the donation history, monthly donations. Same
authentication as the rest of the member API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from api.charity import charities, donations, monthly
from api.db.pool import transaction
from api.member_auth.guards import api_member
from api.member_auth.principal import MemberPrincipal
from api.web.bodies import strict_body
from api.web.params import RowId
from api.web.state import runtime

Member = NamedDependency[MemberPrincipal]


class CharityOut(msgspec.Struct):
    id: int
    name: str
    description: str
    logo_url: str | None
    anbi: Annotated[bool, msgspec.Meta(description="Dutch ANBI status (public benefit)")]
    donated_points: Annotated[int, msgspec.Meta(description="Given by members, all time")]
    matched_points: Annotated[int, msgspec.Meta(description="Matched by partners, all time")]
    page_url: str


class CharityList(msgspec.Struct):
    items: list[CharityOut]
    donation_points_min: int


class DonationIn(msgspec.Struct, forbid_unknown_fields=True):
    points: int


class DonationOut(msgspec.Struct):
    id: int
    charity_id: int
    charity_name: str
    points: int
    matched_points: Annotated[
        int, msgspec.Meta(description="Points a partner's matching campaign added")
    ]
    created_at: datetime


class DonationList(msgspec.Struct):
    items: list[DonationOut]


class MonthlyIn(msgspec.Struct, forbid_unknown_fields=True):
    points: int


class MonthlyOut(msgspec.Struct):
    id: int
    charity_id: int
    charity_name: str
    points: int
    active: bool
    next_run_on: date
    last_run_on: date | None
    last_outcome: str | None


class MonthlyList(msgspec.Struct):
    items: list[MonthlyOut]


def charity_out(c: charities.Charity) -> CharityOut:
    return CharityOut(
        c.id,
        c.name,
        c.description,
        c.logo_url,
        c.anbi,
        c.donated_points,
        c.matched_points,
        f"/charities/{c.id}",
    )


def _donation(d: donations.Donation) -> DonationOut:
    return DonationOut(d.id, d.charity_id, d.charity_name, d.points, d.matched_points, d.created_at)


def _monthly(o: monthly.MonthlyDonation) -> MonthlyOut:
    return MonthlyOut(**{f: getattr(o, f) for f in MonthlyOut.__struct_fields__})


class MemberCharityController(Controller):
    path = "/member/v1"
    tags = ["Member API"]
    dependencies = {"member": Provide(api_member)}
    security = [{"memberBearer": []}]

    @get("/charities", summary="Active charities members can give points to")
    async def list_charities(self, request: Request[Any, Any, Any], member: Member) -> CharityList:
        found = await charities.list_charities(runtime(request.app.state).db, active_only=True)
        return CharityList([charity_out(c) for c in found], donations.DONATION_POINTS_MIN)

    @post(
        "/charities/{charity_id:int}/donations",
        summary="Give points to a charity",
        description="Requires an `Idempotency-Key` header: a repeat returns the first donation "
        "(200, `Idempotent-Replayed: true`) and takes no points. An open matching campaign "
        "adds up to the same points (`matched_points`). Errors: `charity_not_found` (404), "
        "`charity_inactive`, `idempotency_conflict` (409), `donation_below_minimum`, "
        "`insufficient_points` (422), `idempotency_key_required` (400).",
        status_code=201,
    )
    async def donate(
        self,
        request: Request[Any, Any, Any],
        member: Member,
        charity_id: RowId,
        data: JSONBody[DonationIn],
    ) -> Response[DonationOut]:
        rt = runtime(request.app.state)
        body = await strict_body(request, DonationIn)
        made = await donations.donate(
            rt.db,
            member.member_id,
            charity_id,
            body.points,
            request.headers.get("idempotency-key"),
            rt.clock.now(),
        )
        return Response(
            _donation(made),
            status_code=200 if made.replayed else 201,
            headers={"Idempotent-Replayed": "true"} if made.replayed else {},
        )

    @get("/donations", summary="The member's donations, newest first")
    async def history(self, request: Request[Any, Any, Any], member: Member) -> DonationList:
        found = await donations.member_donations(runtime(request.app.state).db, member.member_id)
        return DonationList([_donation(d) for d in found])

    @get("/donations/monthly", summary="The member's active monthly donations")
    async def list_monthly(self, request: Request[Any, Any, Any], member: Member) -> MonthlyList:
        found = await monthly.member_monthly(runtime(request.app.state).db, member.member_id)
        return MonthlyList([_monthly(o) for o in found])

    @put(
        "/charities/{charity_id:int}/monthly-donation",
        summary="Give points to a charity every month (set or change the amount)",
        description="The first donation is made on the day it is set, then monthly. A month "
        "in which the member lacks the points is skipped silently (`last_outcome`).",
    )
    async def set_monthly(
        self,
        request: Request[Any, Any, Any],
        member: Member,
        charity_id: RowId,
        data: JSONBody[MonthlyIn],
    ) -> MonthlyOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, MonthlyIn)
        now = rt.clock.now()
        order = await transaction(
            rt.db,
            lambda conn: monthly.set_monthly(conn, member.member_id, charity_id, body.points, now),
        )
        return _monthly(order)

    @delete(
        "/donations/monthly/{order_id:int}",
        summary="Stop a monthly donation",
        status_code=200,
    )
    async def cancel_monthly(
        self, request: Request[Any, Any, Any], member: Member, order_id: RowId
    ) -> MonthlyOut:
        rt = runtime(request.app.state)
        now = rt.clock.now()
        order = await transaction(
            rt.db, lambda conn: monthly.cancel_monthly(conn, member.member_id, order_id, now)
        )
        return _monthly(order)
