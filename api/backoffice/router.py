"""The back-office router: every page module's handlers under /backoffice,
one guard that enforces each route's roles, and the pages that refusals get."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler

from api.backoffice import (
    audit_log,
    dashboard,
    members,
    partners,
    programme,
    settlement,
    sign_in,
)
from api.backoffice.guards import (
    FormExpired,
    RoleRefused,
    SignInRequired,
    enforce_roles,
    route_roles,
    signed_in_admin,
)
from api.backoffice.pages import page, register_page_roles
from api.backoffice.session import PATH
from api.errors import DomainError
from api.web.templates import as_sentence, is_htmx


def _message(
    request: Request[Any, Any, Any], title: str, message: str, status: int
) -> Response[str]:
    return page(
        request,
        "backoffice/message.html",
        {"title": title, "message": message, "signed_in": None, "nav": ""},
        fragment="main",
        status=status,
    )


def _sign_in_required(request: Request[Any, Any, Any], _: SignInRequired) -> Response[str]:
    if is_htmx(request):  # htmx would swap the sign-in page into a fragment
        return Response("", status_code=200, headers={"HX-Redirect": sign_in.SIGN_IN})
    return Response(
        "", status_code=303, headers={"Location": sign_in.SIGN_IN, "Cache-Control": "no-store"}
    )


def _role_refused(request: Request[Any, Any, Any], refused: RoleRefused) -> Response[str]:
    allowed = " or ".join(refused.allowed) or "nobody"
    return _message(
        request,
        "Not for your role",
        f"This page is for {allowed}; you are signed in as {refused.role}.",
        403,
    )


def _form_expired(request: Request[Any, Any, Any], _: FormExpired) -> Response[str]:
    return _message(request, "This form has expired", "Reload the page and send it again.", 403)


def _domain_error(request: Request[Any, Any, Any], error: DomainError) -> Response[str]:
    # A refused change (bad input, a conflict, not found) as a page, with its status.
    return _message(request, "That did not work", as_sentence(error.detail), error.status)


HANDLERS: list[Any] = [
    *sign_in.HANDLERS,
    *dashboard.HANDLERS,
    *members.HANDLERS,
    *partners.HANDLERS,
    *settlement.HANDLERS,
    *programme.HANDLERS,
    *audit_log.HANDLERS,
]


def _page_roles(handlers: list[Any]) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for handler in handlers:
        if isinstance(handler, HTTPRouteHandler) and "GET" in handler.http_methods:
            for path in handler.paths:
                found[PATH + path.rstrip("/")] = route_roles(handler)
    return found


register_page_roles(_page_roles(HANDLERS))

backoffice_router = Router(
    path=PATH,
    route_handlers=HANDLERS,
    guards=[enforce_roles],
    dependencies={"who": Provide(signed_in_admin)},
    exception_handlers={
        SignInRequired: _sign_in_required,
        RoleRefused: _role_refused,
        FormExpired: _form_expired,
        DomainError: _domain_error,
    },
    include_in_schema=False,
)
