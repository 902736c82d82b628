"""HTTP handlers of /portal: read the form, call one service function, render.

No business rules here: earning and burning go through the partner API's own
service functions (same idempotency, same ledger), staff through `staff`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.params import FromQuery
from litestar.response import Redirect

from api.coalition.card_tokens import card_number_from, token_key
from api.coalition.partners import rotate_credentials
from api.db.pool import transaction
from api.errors import DomainError
from api.member_auth import rate_limits
from api.member_auth.rate_limits import RetryLater
from api.money import format_cents
from api.partner_api import schemas, services
from api.partner_api.idempotency import Answer
from api.portal import session as sessions
from api.portal import statements as statement_pages
from api.portal import webhooks as webhook_pages
from api.portal.credentials import active_clients
from api.portal.forms import normalize_card, parse_euros, parse_points
from api.portal.guards import (
    FormExpired,
    ManagersOnly,
    SignedIn,
    SignInRequired,
    StaffSession,
    base_context,
    form_text,
    idempotency_key,
    new_key,
    require_csrf,
    require_manager,
    session_secret,
    signed_in,
)
from api.portal.pages import page
from api.portal.staff import SIGN_INS_PER_ADDRESS, SIGN_INS_PER_IP, authenticate, normalize_email
from api.web.client_ip import client_ip
from api.web.cookies import cookie_secure, csrf_matches, new_csrf_token
from api.web.state import Runtime, runtime
from api.web.templates import is_htmx

PORTAL = "/portal"
SIGN_IN = f"{PORTAL}/sign-in"
TILL = f"{PORTAL}/till"
TRANSACTIONS_PAGE_SIZE = 25
PORTAL_CURRENCY = "EUR"  # the till takes euros; the service refuses a partner in another currency


def _sign_in_required(request: Request[Any, Any, Any], _: SignInRequired) -> Response[str]:
    if is_htmx(request):  # htmx would swap a redirect's page into the fragment
        return Response("", status_code=200, headers={"HX-Redirect": SIGN_IN})
    return Redirect(SIGN_IN, status_code=303)


def _form_expired(request: Request[Any, Any, Any], _: FormExpired) -> Response[str]:
    return page(
        request,
        "portal/message.html",
        {
            "title": "This form has expired",
            "message": "Reload the page and send the form again.",
            "signed_in": None,
        },
        status=403,
    )


def _managers_only(request: Request[Any, Any, Any], _: ManagersOnly) -> Response[str]:
    return page(
        request,
        "portal/message.html",
        {
            "title": "Managers only",
            "message": "Ask a manager of your shop to do this.",
            "signed_in": None,
        },
        status=403,
    )


# Sign in and out ------------------------------------------------------------


def _sign_in_page(
    request: Request[Any, Any, Any],
    token: str,
    *,
    email: str = "",
    error: str | None = None,
    status: int | None = None,
) -> Response[str]:
    response = page(
        request,
        "portal/sign_in.html",
        {"signed_in": None, "csrf_token": token, "email": email, "error": error},
        status=status or (200 if error is None else 401),
    )
    response.set_cookie(
        sessions.SIGN_IN_CSRF_COOKIE,
        token,
        max_age=int(sessions.SIGN_IN_CSRF_TTL.total_seconds()),
        path=PORTAL,
        secure=cookie_secure(request.url.hostname),
        httponly=True,
        samesite="strict",
    )
    return response


@get("/", include_in_schema=False)
async def portal_home() -> Redirect:
    return Redirect(TILL, status_code=303)


@get("/sign-in", include_in_schema=False)
async def sign_in_form(request: Request[Any, Any, Any]) -> Response[str]:
    return _sign_in_page(request, new_csrf_token())


@post("/sign-in", include_in_schema=False)
async def sign_in(request: Request[Any, Any, Any]) -> Response[str]:
    rt = runtime(request.app.state)
    form = await request.form()
    email = form_text(form, "email")[:300]
    cookie_token = request.cookies.get(sessions.SIGN_IN_CSRF_COOKIE)
    if not csrf_matches(cookie_token, form_text(form, sessions.CSRF_FIELD)):
        return _sign_in_page(
            request,
            new_csrf_token(),
            email=email,
            error="The page had expired: try again.",
        )
    now = rt.clock.now()
    try:
        for limit, key in (
            (SIGN_INS_PER_IP, client_ip(request)),
            (SIGN_INS_PER_ADDRESS, normalize_email(email)),
        ):
            await rate_limits.require(rt.db, limit, key, now=now, what="sign-in attempts")
    except RetryLater as exc:
        refused = _sign_in_page(
            request,
            cookie_token or "",
            email=email,
            error=f"Too many sign-in attempts: try again in {exc.retry_after_seconds // 60 + 1}"
            " minutes.",
            status=429,
        )
        refused.headers["Retry-After"] = str(exc.retry_after_seconds)
        return refused
    async with rt.db.acquire() as conn:
        staff = await authenticate(conn, email, form_text(form, "password"))
    if staff is None:
        return _sign_in_page(
            request, cookie_token or "", email=email, error="Wrong email or password."
        )
    response: Response[str] = Redirect(TILL, status_code=303)
    response.set_cookie(
        sessions.SESSION_COOKIE,
        sessions.issue_session(staff.id, secret=session_secret(rt), now=now),
        max_age=int(sessions.SESSION_TTL.total_seconds()),
        path=PORTAL,
        secure=cookie_secure(request.url.hostname),
        httponly=True,
        samesite="lax",
    )
    response.delete_cookie(sessions.SIGN_IN_CSRF_COOKIE, path=PORTAL)
    return response


@post("/sign-out", include_in_schema=False)
async def sign_out(request: Request[Any, Any, Any], who: SignedIn) -> Response[str]:
    require_csrf(await request.form(), who.csrf_token)
    response: Response[str] = Redirect(SIGN_IN, status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE, path=PORTAL)
    return response


# The till ------------------------------------------------------------------


async def _member_panel(
    rt: Runtime,
    who: StaffSession,
    card: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    earn_key: str | None = None,
    burn_key: str | None = None,
    amount: str = "",
    points: str = "",
) -> dict[str, Any]:
    member: schemas.MemberOut | None = None
    if card:
        try:
            # A scanned wallet QR carries a short-lived token in place of the number.
            number = card_number_from(
                card, key=token_key(rt.settings.jwt_secret or ""), now=rt.clock.now()
            )
            member = await services.identify(rt.db, who.staff.partner_id, number)
        except DomainError as exc:
            error = error or exc.detail
    return {
        **base_context(who, "till"),
        "card": card,
        "member": member,
        "notice": notice,
        "error": error,
        # A fresh key per rendered form: sending the same form twice earns once.
        "earn_key": earn_key or new_key(),
        "burn_key": burn_key or new_key(),
        "amount": amount,
        "points": points,
    }


@get("/till", include_in_schema=False)
async def till(
    request: Request[Any, Any, Any], who: SignedIn, card: FromQuery[str] = ""
) -> Response[str]:
    rt = runtime(request.app.state)
    context = await _member_panel(rt, who, normalize_card(card))
    return page(request, "portal/till.html", context, fragment="member_panel")


def _outcome(answer: Answer) -> schemas.TransactionOut:
    return msgspec.json.decode(answer.body, type=schemas.TransactionOut)


def _invalid(exc: msgspec.ValidationError) -> DomainError:
    return DomainError(f"not accepted: {exc}", code="invalid_request")


@post("/till/earn", include_in_schema=False)
async def till_earn(request: Request[Any, Any, Any], who: SignedIn) -> Response[str]:
    rt = runtime(request.app.state)
    form = await request.form()
    require_csrf(form, who.csrf_token)
    card, key, amount = (
        normalize_card(form_text(form, "card_number")),
        idempotency_key(form),
        form_text(form, "amount"),
    )
    try:
        fields = {"card_number": card, "amount_cents": parse_euros(amount)}
        body = msgspec.convert({**fields, "currency": PORTAL_CURRENCY}, schemas.EarnRequest)
        call = services.Request.of(who.principal, key, request.url.path, body)
        answer = await services.earn_points(rt.db, rt.clock, call, body)
    except msgspec.ValidationError as exc:
        context = await _member_panel(rt, who, card, error=_invalid(exc).detail, earn_key=key)
        return page(request, "portal/till.html", context, fragment="member_panel", status=422)
    except DomainError as exc:
        context = await _member_panel(rt, who, card, error=exc.detail, earn_key=key, amount=amount)
        return page(
            request, "portal/till.html", context, fragment="member_panel", status=exc.status
        )
    done = _outcome(answer)
    notice = f"{done.points} points earned for {format_cents(done.amount_cents or 0)}"
    if done.available_at is not None:
        notice += f", available from {done.available_at:%d %b %Y}"
    if answer.replayed:
        notice = "Already recorded (the form was sent twice): " + notice
    context = await _member_panel(rt, who, card, notice=notice + ".")
    return page(request, "portal/till.html", context, fragment="member_panel", status=201)


@post("/till/burn", include_in_schema=False)
async def till_burn(request: Request[Any, Any, Any], who: SignedIn) -> Response[str]:
    rt = runtime(request.app.state)
    form = await request.form()
    require_csrf(form, who.csrf_token)
    card, key, points = (
        normalize_card(form_text(form, "card_number")),
        idempotency_key(form),
        form_text(form, "points"),
    )
    try:
        fields = {"card_number": card, "points": parse_points(points)}
        body = msgspec.convert(fields, schemas.BurnRequest)
        call = services.Request.of(who.principal, key, request.url.path, body)
        answer = await services.authorize_burn(
            rt.db,
            rt.clock,
            call,
            body,
            hold_minutes_default=rt.settings.hold_minutes_default,
            capture=True,
        )
    except msgspec.ValidationError as exc:
        context = await _member_panel(rt, who, card, error=_invalid(exc).detail, burn_key=key)
        return page(request, "portal/till.html", context, fragment="member_panel", status=422)
    except DomainError as exc:
        context = await _member_panel(rt, who, card, error=exc.detail, burn_key=key, points=points)
        return page(
            request, "portal/till.html", context, fragment="member_panel", status=exc.status
        )
    done = _outcome(answer)
    notice = f"{done.points_captured} points redeemed."
    if answer.replayed:
        notice = "Already recorded (the form was sent twice): " + notice
    context = await _member_panel(rt, who, card, notice=notice)
    return page(request, "portal/till.html", context, fragment="member_panel", status=201)


# Transactions --------------------------------------------------------------


@get("/transactions", include_in_schema=False)
async def transactions(
    request: Request[Any, Any, Any], who: SignedIn, cursor: FromQuery[str | None] = None
) -> Response[str]:
    rt = runtime(request.app.state)
    try:
        found = await services.list_transactions(
            rt.db, who.staff.partner_id, limit=TRANSACTIONS_PAGE_SIZE, cursor=cursor, kind=None
        )
    except DomainError as exc:
        context = {
            **base_context(who, "transactions"),
            "title": "Transactions",
            "message": exc.detail,
        }
        return page(request, "portal/message.html", context, status=exc.status)
    context = {**base_context(who, "transactions"), "page": found}
    return page(request, "portal/transactions.html", context, fragment="rows")


# API credentials (managers) -----------------------------------------------


@get("/credentials", include_in_schema=False)
async def credentials(request: Request[Any, Any, Any], who: SignedIn) -> Response[str]:
    require_manager(who)
    rt = runtime(request.app.state)
    clients = await active_clients(rt.db, who.staff.partner_id)
    context = {**base_context(who, "credentials"), "clients": clients, "issued": None}
    return page(request, "portal/credentials.html", context)


@post("/credentials/rotate", include_in_schema=False)
async def rotate(request: Request[Any, Any, Any], who: SignedIn) -> Response[str]:
    require_manager(who)
    require_csrf(await request.form(), who.csrf_token)
    rt = runtime(request.app.state)
    issued = await transaction(
        rt.db,
        lambda conn: rotate_credentials(conn, who.staff.partner_id, now=rt.clock.now()),
    )
    clients = await active_clients(rt.db, who.staff.partner_id)
    context = {**base_context(who, "credentials"), "clients": clients, "issued": issued}
    # The page shows the new secret once; no-store (set by `page`) keeps it out of caches.
    return page(request, "portal/credentials.html", context, status=201)


portal_router = Router(
    path=PORTAL,
    route_handlers=[
        portal_home,
        sign_in_form,
        sign_in,
        sign_out,
        till,
        till_earn,
        till_burn,
        transactions,
        credentials,
        rotate,
        *webhook_pages.HANDLERS,
        *statement_pages.HANDLERS,
    ],
    dependencies={"who": Provide(signed_in)},
    exception_handlers={
        SignInRequired: _sign_in_required,
        FormExpired: _form_expired,
        ManagersOnly: _managers_only,
    },
    include_in_schema=False,
)
