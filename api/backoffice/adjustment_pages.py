"""Back-office adjustment pages: the list (pending first by default), one
adjustment, approving and rejecting (maker-checker), and the CSV export.

Requests are made on the member's page (api/backoffice/member_pages.py).
Roles: owner, support and finance read; owner and finance decide, never on
their own request (`api.ledger.adjustments` refuses it with `adjustment_own`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Stream

from api.backoffice.csv_export import csv_response
from api.backoffice.guards import SignedInAdmin, form_text, require_csrf
from api.backoffice.listing import PAGE_SIZE, page_of
from api.backoffice.member_pages import MEMBER_VIEW_ROLES, stream_rows
from api.backoffice.pages import base_context, page
from api.coalition import member_admin
from api.ledger import adjustments
from api.ledger.adjustments import Adjustment, AdjustmentFilter
from api.web.state import runtime

PATH = "/backoffice/adjustments"
# The list's status choices; "all" switches the filter off.
STATUS_CHOICES = ("pending", "booked", "rejected", "all")


def adjustment_filter(status: str | None, member: int | None) -> AdjustmentFilter:
    chosen = (status or "pending").strip()
    return AdjustmentFilter(status=None if chosen == "all" else chosen, member_id=member)


def _query(where: AdjustmentFilter) -> str:
    fields: dict[str, object] = {"status": where.status or "all"}
    if where.member_id is not None:
        fields["member"] = where.member_id
    return urlencode(fields)


@get("/adjustments", opt={"roles": MEMBER_VIEW_ROLES})
async def adjustments_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    status: FromQuery[str | None] = None,
    member: FromQuery[int | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    db = runtime(request.app.state).db
    where = adjustment_filter(status, member)
    rows = await adjustments.list_adjustments(db, where, limit=PAGE_SIZE + 1, cursor=cursor)
    listed = page_of(rows, lambda a: (a.id,))
    return page(
        request,
        "backoffice/adjustments.html",
        {
            **base_context(who, "adjustments"),
            "where": where,
            "status_choice": where.status or "all",
            "status_choices": STATUS_CHOICES,
            "query": _query(where),
            "rows": listed.items,
            "next_cursor": listed.next_cursor,
            "can_decide": who.admin.role in adjustments.APPROVE_ROLES,
        },
        fragment="results",
    )


ADJUSTMENTS_CSV_HEADER = (
    "adjustment_id",
    "member_id",
    "card_number",
    "points",
    "reason",
    "status",
    "needs_approval",
    "requested_by",
    "requested_at",
    "decided_by",
    "decided_at",
    "decision_note",
    "entry_id",
    "booked_at",
)


def _csv_row(a: Adjustment) -> tuple[object, ...]:
    return (
        a.id,
        a.member_id,
        a.card_number,
        a.points,
        a.reason,
        a.status,
        a.needs_approval,
        a.requested_by_email,
        a.requested_at.isoformat(),
        a.decided_by_email,
        None if a.decided_at is None else a.decided_at.isoformat(),
        a.decision_note,
        a.entry_id,
        None if a.booked_at is None else a.booked_at.isoformat(),
    )


@get("/adjustments/export.csv", opt={"roles": MEMBER_VIEW_ROLES})
async def adjustments_csv(
    request: Request[Any, Any, Any],
    status: FromQuery[str | None] = None,
    member: FromQuery[int | None] = None,
) -> Stream:
    where = adjustment_filter(status, member)
    return csv_response(
        "adjustments.csv",
        ADJUSTMENTS_CSV_HEADER,
        stream_rows(
            runtime(request.app.state).db,
            lambda conn: adjustments.iterate_adjustments(conn, where),
            _csv_row,
        ),
    )


@get("/adjustments/{adjustment_id:int}", opt={"roles": MEMBER_VIEW_ROLES})
async def adjustment_detail(
    request: Request[Any, Any, Any], who: SignedInAdmin, adjustment_id: FromPath[int]
) -> Response[str]:
    rt = runtime(request.app.state)
    adjustment = await adjustments.get_adjustment(rt.db, adjustment_id)
    member = await member_admin.member_profile(rt.db, adjustment.member_id, rt.clock.now())
    return page(
        request,
        "backoffice/adjustment.html",
        {
            **base_context(who, "adjustments"),
            "adjustment": adjustment,
            "member": member,
            "own": adjustment.requested_by == who.admin.admin_id,
            "can_decide": who.admin.role in adjustments.APPROVE_ROLES,
        },
    )


@post("/adjustments/{adjustment_id:int}/approve", opt={"roles": adjustments.APPROVE_ROLES})
async def adjustment_approve(
    request: Request[Any, Any, Any], who: SignedInAdmin, adjustment_id: FromPath[int]
) -> Response[str]:
    require_csrf(request, await request.form(), who)
    rt = runtime(request.app.state)
    await adjustments.approve_adjustment(rt.db, who.admin, adjustment_id, now=rt.clock.now())
    return Redirect(f"{PATH}/{adjustment_id}", status_code=303)


@post("/adjustments/{adjustment_id:int}/reject", opt={"roles": adjustments.APPROVE_ROLES})
async def adjustment_reject(
    request: Request[Any, Any, Any], who: SignedInAdmin, adjustment_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    await adjustments.reject_adjustment(
        rt.db, who.admin, adjustment_id, note=form_text(form, "note"), now=rt.clock.now()
    )
    return Redirect(f"{PATH}/{adjustment_id}", status_code=303)


HANDLERS: list[Any] = [
    adjustments_page,
    adjustments_csv,
    adjustment_detail,
    adjustment_approve,
    adjustment_reject,
]
