"""/portal/webhooks (managers): the partner's webhook endpoints, registering
one, rotating its secret, disabling it, and each endpoint's delivery log.

Every write goes through the partner API's own service function (same
validation, same idempotency claim, same SQL), with the form's hidden
`idempotency_key`: a form sent twice (a double tap, a reload) writes once and
shows the first answer again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery

from api.errors import DomainError
from api.partner_api import schemas, services
from api.portal.guards import (
    SignedIn,
    StaffSession,
    base_context,
    form_text,
    idempotency_key,
    new_key,
    require_csrf,
    require_manager,
)
from api.portal.pages import page
from api.web.state import Runtime, runtime
from api.web.templates import is_htmx

WEBHOOKS = "/portal/webhooks"
DELIVERY_LOG_PAGE_SIZE = 20
URL_INPUT_CHARS_MAX = 4096  # the service names anything past 2000 itself (webhook_url_too_long)
_TEMPLATE = "portal/webhooks.html"
_LOG_TEMPLATE = "portal/webhook_deliveries.html"


@dataclass(frozen=True, slots=True)
class EndpointRow:
    """An endpoint as the page lists it, with fresh keys for its two forms."""

    endpoint: schemas.WebhookEndpointOut
    rotating_until: datetime | None  # the old secret still signs until then
    rotate_key: str
    disable_key: str


@dataclass(frozen=True, slots=True)
class Issued:
    """A secret shown once: after registering an endpoint or rotating its secret."""

    url: str
    secret: str
    previous_valid_until: datetime | None
    replayed: bool


def _message(exc: DomainError) -> str:
    if exc.code == "idempotency_conflict":
        return "This form was already sent with other values: reload the page and try again."
    return exc.detail


async def _page_context(
    rt: Runtime,
    who: StaffSession,
    *,
    url: str = "",
    register_key: str | None = None,
    url_error: str | None = None,
    error: str | None = None,
    notice: str | None = None,
    issued: Issued | None = None,
) -> dict[str, Any]:
    found = await services.list_webhook_endpoints(rt.db, who.staff.partner_id)
    now = rt.clock.now()
    rows = [
        EndpointRow(
            e,
            e.previous_secret_valid_until
            if e.previous_secret_valid_until is not None and e.previous_secret_valid_until > now
            else None,
            new_key(),
            new_key(),
        )
        for e in found.items
    ]
    return {
        **base_context(who, "webhooks"),
        "endpoints": rows,
        "url": url,
        "register_key": register_key or new_key(),
        "url_error": url_error,
        "error": error,
        "notice": notice,
        "issued": issued,
    }


async def _render(
    request: Request[Any, Any, Any], who: SignedIn, *, status: int = 200, **fields: Any
) -> Response[str]:
    context = await _page_context(runtime(request.app.state), who, **fields)
    # The page may show a secret: `page` sends it no-store, so no cache keeps it.
    return page(request, _TEMPLATE, context, status=status)


@get("/webhooks", include_in_schema=False)
async def webhooks_page(request: Request[Any, Any, Any], who: SignedIn) -> Response[str]:
    require_manager(who)
    return await _render(request, who)


@post("/webhooks", include_in_schema=False)
async def register_endpoint(request: Request[Any, Any, Any], who: SignedIn) -> Response[str]:
    require_manager(who)
    rt = runtime(request.app.state)
    form = await request.form()
    require_csrf(form, who.csrf_token)
    key = idempotency_key(form)
    url = form_text(form, "url").strip()[:URL_INPUT_CHARS_MAX]
    try:
        body = msgspec.convert({"url": url}, schemas.WebhookEndpointCreate)
        call = services.Request.of(who.principal, key, request.url.path, body)
        answer = await services.create_webhook_endpoint(
            rt.db, rt.clock, rt.settings.mode, call, body
        )
    except msgspec.ValidationError:
        return await _render(
            request, who, status=422, url=url, register_key=key, url_error="Type the URL."
        )
    except DomainError as exc:
        return await _render(
            request, who, status=exc.status, url=url, register_key=key, url_error=_message(exc)
        )
    created = msgspec.json.decode(answer.body, type=schemas.WebhookEndpointCreated)
    issued = Issued(created.url, created.secret, None, answer.replayed)
    return await _render(request, who, status=answer.status, issued=issued)


async def _endpoint_write(
    request: Request[Any, Any, Any], who: StaffSession
) -> tuple[Runtime, services.Request]:
    require_manager(who)
    form = await request.form()
    require_csrf(form, who.csrf_token)
    call = services.Request.of(
        who.principal, idempotency_key(form), request.url.path, schemas.NoBody()
    )
    return runtime(request.app.state), call


@post("/webhooks/{endpoint_id:uuid}/rotate-secret", include_in_schema=False)
async def rotate_endpoint_secret(
    request: Request[Any, Any, Any], who: SignedIn, endpoint_id: FromPath[UUID]
) -> Response[str]:
    rt, call = await _endpoint_write(request, who)
    try:
        answer = await services.rotate_webhook_secret(rt.db, rt.clock, call, endpoint_id)
    except DomainError as exc:
        return await _render(request, who, status=exc.status, error=_message(exc))
    rotated = msgspec.json.decode(answer.body, type=schemas.WebhookSecretOut)
    endpoints = await services.list_webhook_endpoints(rt.db, who.staff.partner_id)
    url = next((e.url for e in endpoints.items if e.id == rotated.endpoint_id), "")
    issued = Issued(url, rotated.secret, rotated.previous_secret_valid_until, answer.replayed)
    return await _render(request, who, issued=issued)


@post("/webhooks/{endpoint_id:uuid}/disable", include_in_schema=False)
async def disable_endpoint(
    request: Request[Any, Any, Any], who: SignedIn, endpoint_id: FromPath[UUID]
) -> Response[str]:
    rt, call = await _endpoint_write(request, who)
    try:
        answer = await services.disable_webhook_endpoint(rt.db, rt.clock, call, endpoint_id)
    except DomainError as exc:
        return await _render(request, who, status=exc.status, error=_message(exc))
    disabled = msgspec.json.decode(answer.body, type=schemas.WebhookEndpointOut)
    notice = f"{disabled.url} is disabled: nothing more is sent to it."
    return await _render(request, who, notice=notice)


@get("/webhooks/{endpoint_id:uuid}", include_in_schema=False)
async def delivery_log(
    request: Request[Any, Any, Any],
    who: SignedIn,
    endpoint_id: FromPath[UUID],
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    """The endpoint's deliveries, newest first; "Load more" asks for the next
    rows as a fragment (htmx), or the next page without JavaScript."""
    require_manager(who)
    rt = runtime(request.app.state)
    base = base_context(who, "webhooks")
    try:
        found = await services.list_webhook_deliveries(
            rt.db, who.staff.partner_id, endpoint_id, limit=DELIVERY_LOG_PAGE_SIZE, cursor=cursor
        )
    except DomainError as exc:
        context = {**base, "title": "Delivery log", "message": _message(exc)}
        return page(request, "portal/message.html", context, status=exc.status)
    endpoint = None
    if not is_htmx(request):  # "Load more" swaps rows only; the heading is already there
        endpoints = await services.list_webhook_endpoints(rt.db, who.staff.partner_id)
        endpoint = next((e for e in endpoints.items if e.id == endpoint_id), None)
    context = {**base, "endpoint": endpoint, "page": found, "endpoint_id": endpoint_id}
    return page(request, _LOG_TEMPLATE, context, fragment="delivery_rows")


HANDLERS = [
    webhooks_page,
    register_endpoint,
    rotate_endpoint_secret,
    disable_endpoint,
    delivery_log,
]
