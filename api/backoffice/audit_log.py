"""Back-office: the audit log (/backoffice/audit), filtered and paginated, with
each change's before and after as a readable diff, and its CSV export.

Owner only, as the admin API's /admin/v1/audit: the log shows every admin's
changes, bank details and admin accounts included. The rows are read with
`api/admin_auth/audit.py` `list_entries`, the admin API's own query.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.params import Parameter
from litestar.response import Stream

from api.admin_auth import audit
from api.backoffice.csv_export import csv_response
from api.backoffice.guards import OWNER, SignedInAdmin
from api.backoffice.listing import PAGE_SIZE, every_item
from api.backoffice.pages import base_context, page
from api.backoffice.programme_forms import local_moment
from api.errors import DomainError
from api.web.state import runtime

ROLES = OWNER
FILTER_CHARS_MAX = 200
Query = Annotated[str | None, Parameter(max_length=FILTER_CHARS_MAX)]


@dataclass(frozen=True, slots=True)
class DiffLine:
    field: str
    before: str
    after: str
    kind: str  # added | removed | changed | same


def _shown(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[DiffLine]:
    """One line per field of either side, changed ones first noticed by `kind`."""
    old, new = before or {}, after or {}
    lines = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            kind = "added"
        elif name not in new:
            kind = "removed"
        else:
            kind = "same" if old[name] == new[name] else "changed"
        lines.append(
            DiffLine(
                name,
                _shown(old[name]) if name in old else "",
                _shown(new[name]) if name in new else "",
                kind,
            )
        )
    return lines


@dataclass(frozen=True, slots=True)
class Filters:
    admin_id: int | None
    action: str | None
    subject: str | None
    since: datetime | None
    until: datetime | None
    text: dict[str, str]  # as typed, for the form and the next-page link


def _filters(
    admin_id: str | None,
    action: str | None,
    subject: str | None,
    since: str | None,
    until: str | None,
) -> Filters:
    text = {
        "admin_id": (admin_id or "").strip(),
        "action": (action or "").strip(),
        "subject": (subject or "").strip(),
        "since": (since or "").strip(),
        "until": (until or "").strip(),
    }
    admin = text["admin_id"]
    if admin and not (admin.isascii() and admin.isdigit() and len(admin) <= 18):
        raise DomainError("admin: give the admin's number", code="invalid_filter", status=400)
    return Filters(
        admin_id=int(admin) if admin else None,
        action=text["action"] or None,
        subject=text["subject"] or None,
        since=local_moment(text["since"], "from", status=400),
        until=local_moment(text["until"], "until", status=400),
        text=text,
    )


async def _page(
    request: Request[Any, Any, Any], filters: Filters, cursor: str | None, limit: int = PAGE_SIZE
) -> audit.AuditPage:
    return await audit.list_entries(
        runtime(request.app.state).db,
        limit=limit,
        cursor=cursor,
        admin_id=filters.admin_id,
        action=filters.action,
        subject=filters.subject,
        since=filters.since,
        until=filters.until,
    )


@get("/audit", opt={"roles": ROLES}, name="backoffice_audit")
async def audit_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    admin_id: Query = None,
    action: Query = None,
    subject: Query = None,
    since: Query = None,
    until: Query = None,
    cursor: Query = None,
) -> Response[str]:
    context = base_context(who, "audit")
    status = 200
    try:
        filters = _filters(admin_id, action, subject, since, until)
        found = await _page(request, filters, cursor)
        context.update(filters=filters.text, entries=found.items, next_cursor=found.next_cursor)
    except DomainError as error:
        status = error.status
        context.update(
            error=error.detail,
            entries=[],
            next_cursor=None,
            filters={
                k: v or ""
                for k, v in {
                    "admin_id": admin_id,
                    "action": action,
                    "subject": subject,
                    "since": since,
                    "until": until,
                }.items()
            },
        )
    context.update(diff=diff, admins=await audit.admins_seen(runtime(request.app.state).db))
    return page(request, "backoffice/audit.html", context, fragment="rows", status=status)


async def _all_rows(
    request: Request[Any, Any, Any], filters: Filters
) -> AsyncIterator[list[object]]:
    async for e in every_item(
        lambda cursor: _page(request, filters, cursor, limit=audit.PAGE_SIZE_MAX)
    ):
        yield [
            e.id,
            e.at.isoformat(),
            e.admin_id,
            e.admin_email,
            e.admin_role,
            e.action,
            e.subject,
            None if e.before is None else json.dumps(e.before, sort_keys=True),
            None if e.after is None else json.dumps(e.after, sort_keys=True),
        ]


@get("/audit/export.csv", opt={"roles": ROLES}, name="backoffice_audit_csv")
async def audit_csv(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    admin_id: Query = None,
    action: Query = None,
    subject: Query = None,
    since: Query = None,
    until: Query = None,
) -> Stream:
    filters = _filters(admin_id, action, subject, since, until)
    return csv_response(
        "admin_audit_log.csv",
        [
            "id",
            "at",
            "admin_id",
            "admin_email",
            "admin_role",
            "action",
            "subject",
            "before",
            "after",
        ],
        _all_rows(request, filters),
    )


HANDLERS: list[Any] = [audit_page, audit_csv]
