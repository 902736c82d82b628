"""Signing in to the back-office (password and a second factor), signing out, home.

The checks are the admin API's own (`admin_auth.accounts.sign_in`): argon2
password, a TOTP code that works once or a recovery code that works once, and
rate limits per address and per IP kept in the database, so they hold across
API processes.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from api.admin_auth import accounts
from api.backoffice import session as sessions
from api.backoffice.guards import ALL_ROLES, SignedInAdmin, form_text, require_csrf
from api.backoffice.pages import page
from api.errors import DomainError
from api.member_auth.rate_limits import RetryLater
from api.web.client_ip import client_ip
from api.web.cookies import cookie_secure, csrf_matches, new_csrf_token
from api.web.state import runtime
from api.web.templates import as_sentence

HOME = f"{sessions.PATH}/dashboard"
SIGN_IN = f"{sessions.PATH}/sign-in"
_TOTP_CODE = re.compile(r"^\d{6}$")
EMAIL_CHARS_MAX = 320


def _sign_in_page(
    request: Request[Any, Any, Any],
    token: str,
    *,
    email: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    response = page(
        request,
        "backoffice/sign_in.html",
        {"signed_in": None, "csrf_token": token, "email": email, "error": error, "nav": ""},
        status=status,
    )
    response.set_cookie(
        sessions.SIGN_IN_CSRF_COOKIE,
        token,
        max_age=int(sessions.SIGN_IN_CSRF_TTL.total_seconds()),
        path=sessions.PATH,
        secure=cookie_secure(request.url.hostname),
        httponly=True,
        samesite="strict",
    )
    return response


@get("/", opt={"roles": ALL_ROLES})
async def home() -> Redirect:
    return Redirect(HOME, status_code=303)


@get("/sign-in", opt={"public": True})
async def sign_in_form(request: Request[Any, Any, Any]) -> Response[str]:
    return _sign_in_page(request, new_csrf_token())


@post("/sign-in", opt={"public": True})
async def sign_in(request: Request[Any, Any, Any]) -> Response[str]:
    rt = runtime(request.app.state)
    form = await request.form()
    email = form_text(form, "email")[:EMAIL_CHARS_MAX]
    cookie_token = request.cookies.get(sessions.SIGN_IN_CSRF_COOKIE)
    if not csrf_matches(cookie_token, form_text(form, sessions.CSRF_FIELD)):
        return _sign_in_page(
            request,
            new_csrf_token(),
            email=email,
            error="The page had expired: try again.",
            status=403,
        )
    code = form_text(form, "code").replace(" ", "")
    is_totp = bool(_TOTP_CODE.match(code))
    try:
        admin = await accounts.sign_in(
            rt.db,
            email=email,
            password=form_text(form, "password"),
            totp_code=code if is_totp else None,
            recovery_code=None if is_totp else code,
            ip=client_ip(request),
            now=rt.clock.now(),
        )
    except RetryLater as refused:
        refusal = _sign_in_page(
            request,
            cookie_token or "",
            email=email,
            error=as_sentence(refused.detail),
            status=429,
        )
        refusal.headers["Retry-After"] = str(refused.retry_after_seconds)
        return refusal
    except DomainError:
        return _sign_in_page(
            request,
            cookie_token or "",
            email=email,
            error="Wrong e-mail, password or code.",
            status=401,
        )
    response: Response[str] = Redirect(HOME, status_code=303)
    response.set_cookie(
        sessions.SESSION_COOKIE,
        sessions.issue_session(
            admin.admin_id,
            await accounts.session_generation(rt.db, admin.admin_id),
            secret=rt.settings.jwt_secret or "",
            now=rt.clock.now(),
        ),
        max_age=int(sessions.SESSION_TTL.total_seconds()),
        path=sessions.PATH,
        secure=cookie_secure(request.url.hostname),
        httponly=True,
        # Strict: no other site can make the browser send it, not even a top-level link.
        samesite="strict",
    )
    response.delete_cookie(sessions.SIGN_IN_CSRF_COOKIE, path=sessions.PATH)
    return response


@post("/sign-out", opt={"roles": ALL_ROLES})
async def sign_out(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[str]:
    require_csrf(request, await request.form(), who)
    # On the server too: a copy of the cookie stops working now, not in 8 hours.
    await accounts.end_backoffice_sessions(runtime(request.app.state).db, who.admin.admin_id)
    response: Response[str] = Redirect(SIGN_IN, status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE, path=sessions.PATH)
    return response


HANDLERS: list[Any] = [home, sign_in_form, sign_in, sign_out]
