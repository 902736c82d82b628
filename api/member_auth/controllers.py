"""HTTP handlers of member sign-in: the wallet's sign-in pages, sign-out, the
development mailbox, and the member API's /member/v1/auth calls.

Thin: read the form or body, call `codes`, set or clear the cookie, render.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import Provide
from litestar.params import FromQuery, JSONBody
from litestar.response import Redirect

from api.errors import DomainError
from api.mail.outbox import MailNotSent, deliver, latest_mail
from api.mail.smtp import mail_sender
from api.member_auth import codes, tokens
from api.member_auth.guards import (
    CSRF_FIELD,
    SIGN_IN_PATH,
    Member,
    Wallet,
    api_member,
    clear_session_cookie,
    find_wallet_session,
    require_wallet_csrf,
    set_session_cookie,
    wallet_session,
)
from api.member_auth.pages import page
from api.member_auth.rate_limits import RetryLater
from api.member_auth.redirects import safe_next
from api.member_auth.sessions import revoke_session
from api.web.client_ip import client_ip
from api.web.cookies import cookie_secure, csrf_matches, new_csrf_token
from api.web.state import Runtime, runtime
from api.web.templates import as_sentence

log = logging.getLogger("kring.member_auth")

SIGN_IN_CODE_PATH = f"{SIGN_IN_PATH}/code"
# Before sign-in there is no session: the sign-in forms use a double-submit
# token (a random value in a Strict cookie and in the form) against CSRF.
SIGN_IN_CSRF_COOKIE = "kring_wallet_csrf"
# The address between the two forms, signed (tokens.TICKET_AUDIENCE), so the
# code page needs no state and the address is not in any URL.
TICKET_COOKIE = "kring_wallet_ticket"
SIGN_IN_CSRF_CHARS_MAX = 100
EMAIL_FIELD_CHARS_MAX = 1000
CODE_FIELD_CHARS_MAX = 50
_NO_NUL = r"^[^\x00]*$"


def _secret(rt: Runtime) -> str:
    return rt.settings.jwt_secret or ""


def _form_text(form: FormMultiDict, name: str, chars_max: int) -> str:
    value = form.get(name)
    return value[:chars_max] if isinstance(value, str) else ""


async def _send(rt: Runtime, mail_id: int) -> None:
    """Send after commit; the caller tells the person if the mail server refused."""
    sender = mail_sender(rt.settings.smtp_url, rt.settings.mail_from)
    await deliver(rt.db, mail_id, sender, now=rt.clock.now())


def _set_short_cookie(
    response: Response[Any], request: Request[Any, Any, Any], name: str, value: str
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(tokens.TICKET_TTL.total_seconds()),
        path=SIGN_IN_PATH,
        secure=cookie_secure(request.url.hostname),
        httponly=True,
        samesite="strict",
    )


def _sign_in_csrf_token(request: Request[Any, Any, Any], *, fresh: bool) -> str:
    """The double-submit token: the cookie's, kept across the two forms, or a new one."""
    current = request.cookies.get(SIGN_IN_CSRF_COOKIE)
    if fresh or not current or len(current) > SIGN_IN_CSRF_CHARS_MAX:
        return new_csrf_token()
    return current


MAIL_FAILED = "We could not send the mail just now. Try again in a minute."


# The wallet's sign-in pages --------------------------------------------------


def _email_page(
    request: Request[Any, Any, Any],
    *,
    next_path: str,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    retry_after: int | None = None,
    fresh_token: bool = False,
) -> Response[str]:
    token = _sign_in_csrf_token(request, fresh=fresh_token)
    response = page(
        "wallet/sign_in.html",
        {
            "title": "Sign in",
            "csrf_field": CSRF_FIELD,
            "csrf_token": token,
            "next": next_path,
            "email": email,
            "error": error,
        },
        status=status,
    )
    _set_short_cookie(response, request, SIGN_IN_CSRF_COOKIE, token)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@get(SIGN_IN_PATH, include_in_schema=False)
async def sign_in_form(
    request: Request[Any, Any, Any], next: FromQuery[str] = "/"
) -> Response[str]:
    next_path = safe_next(next)
    if await find_wallet_session(request) is not None:
        return Redirect(next_path, status_code=303)
    return _email_page(request, next_path=next_path)


@post(SIGN_IN_PATH, include_in_schema=False)
async def sign_in_send(request: Request[Any, Any, Any]) -> Response[str]:
    rt = runtime(request.app.state)
    form = await request.form()
    email = _form_text(form, "email", EMAIL_FIELD_CHARS_MAX)
    next_path = safe_next(_form_text(form, "next", 2000))
    if not csrf_matches(
        request.cookies.get(SIGN_IN_CSRF_COOKIE), _form_text(form, CSRF_FIELD, 200)
    ):
        return _email_page(
            request,
            next_path=next_path,
            email=email,
            error="The page had expired. Send it again.",
            status=403,
            fresh_token=True,
        )
    now = rt.clock.now()
    try:
        mail_id = await codes.request_code(
            rt.db, email, ip=client_ip(request), secret=_secret(rt), now=now
        )
        await _send(rt, mail_id)
    except RetryLater as exc:
        return _email_page(
            request,
            next_path=next_path,
            email=email,
            error=as_sentence(exc.detail),
            status=429,
            retry_after=exc.retry_after_seconds,
        )
    except DomainError as exc:
        return _email_page(
            request, next_path=next_path, email=email, error=as_sentence(exc.detail), status=422
        )
    except MailNotSent:
        return _email_page(request, next_path=next_path, email=email, error=MAIL_FAILED, status=503)
    normalized = codes.normalize_email(email)
    response: Response[str] = Redirect(SIGN_IN_CODE_PATH, status_code=303)
    _set_short_cookie(
        response,
        request,
        TICKET_COOKIE,
        tokens.issue_ticket(normalized, next_path, secret=_secret(rt), now=now),
    )
    return response


def _code_page(
    request: Request[Any, Any, Any],
    ticket: tokens.Ticket,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    retry_after: int | None = None,
    fresh_token: bool = False,
) -> Response[str]:
    token = _sign_in_csrf_token(request, fresh=fresh_token)
    response = page(
        "wallet/sign_in_code.html",
        {
            "title": "Enter your code",
            "csrf_field": CSRF_FIELD,
            "csrf_token": token,
            "email": ticket.email,
            "next": ticket.next_path,
            "code_digits": codes.CODE_DIGITS,
            "code_ttl_minutes": codes.CODE_TTL_MINUTES,
            "error": error,
            "notice": notice,
        },
        status=status,
    )
    _set_short_cookie(response, request, SIGN_IN_CSRF_COOKIE, token)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _ticket(request: Request[Any, Any, Any]) -> tokens.Ticket | None:
    rt = runtime(request.app.state)
    return tokens.read_ticket(
        request.cookies.get(TICKET_COOKIE), secret=_secret(rt), now=rt.clock.now()
    )


@get(SIGN_IN_CODE_PATH, include_in_schema=False)
async def sign_in_code_form(request: Request[Any, Any, Any]) -> Response[str]:
    ticket = _ticket(request)
    if ticket is None:
        return Redirect(SIGN_IN_PATH, status_code=303)
    return _code_page(request, ticket)


@post(SIGN_IN_CODE_PATH, include_in_schema=False)
async def sign_in_code(request: Request[Any, Any, Any]) -> Response[str]:
    rt = runtime(request.app.state)
    ticket = _ticket(request)
    if ticket is None:
        return Redirect(SIGN_IN_PATH, status_code=303)
    form = await request.form()
    if not csrf_matches(
        request.cookies.get(SIGN_IN_CSRF_COOKIE), _form_text(form, CSRF_FIELD, 200)
    ):
        return _code_page(
            request,
            ticket,
            error="The page had expired. Enter the code again.",
            status=403,
            fresh_token=True,
        )
    try:
        signed_in = await codes.verify_code(
            rt.db,
            ticket.email,
            _form_text(form, "code", CODE_FIELD_CHARS_MAX),
            ip=client_ip(request),
            secret=_secret(rt),
            now=rt.clock.now(),
            session_kind="wallet",
            session_ttl=tokens.WALLET_SESSION_TTL,
        )
    except RetryLater as exc:
        return _code_page(
            request,
            ticket,
            error=as_sentence(exc.detail),
            status=429,
            retry_after=exc.retry_after_seconds,
        )
    except DomainError as exc:
        return _code_page(request, ticket, error=as_sentence(exc.detail), status=exc.status)
    now = rt.clock.now()
    response: Response[str] = Redirect(safe_next(ticket.next_path), status_code=303)
    set_session_cookie(
        response,
        request,
        tokens.issue_session_token(
            signed_in.session_id,
            signed_in.principal.public_id,
            audience=tokens.WALLET_AUDIENCE,
            secret=_secret(rt),
            now=now,
            expires_at=signed_in.expires_at,
        ),
        int(tokens.WALLET_SESSION_TTL.total_seconds()),
    )
    response.delete_cookie(TICKET_COOKIE, path=SIGN_IN_PATH)
    response.delete_cookie(SIGN_IN_CSRF_COOKIE, path=SIGN_IN_PATH)
    return response


@post(
    "/sign-out",
    include_in_schema=False,
    dependencies={"who": Provide(wallet_session)},
)
async def sign_out(request: Request[Any, Any, Any], who: Wallet) -> Response[str]:
    await require_wallet_csrf(request)
    rt = runtime(request.app.state)
    await revoke_session(rt.db, who.session_id, now=rt.clock.now())
    response: Response[str] = Redirect(SIGN_IN_PATH, status_code=303)
    clear_session_cookie(response)
    return response


@get("/dev/mailbox", include_in_schema=False)
async def dev_mailbox(request: Request[Any, Any, Any]) -> Response[str]:
    """Mail as the outbox holds it, newest first. Registered only in development."""
    rt = runtime(request.app.state)
    messages = await latest_mail(rt.db)
    return page(
        "wallet/mailbox.html",
        {
            "title": "Development mailbox",
            "messages": messages,
            "smtp": rt.settings.smtp_url is not None,
        },
    )


# The member API: /member/v1/auth ---------------------------------------------

EmailText = Annotated[
    str,
    msgspec.Meta(max_length=EMAIL_FIELD_CHARS_MAX, pattern=_NO_NUL, examples=["ann@example.com"]),
]
CodeText = Annotated[
    str, msgspec.Meta(max_length=CODE_FIELD_CHARS_MAX, pattern=_NO_NUL, examples=["042917"])
]


class CodeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: EmailText


class CodeSent(msgspec.Struct, kw_only=True):
    status: str = "sent"
    expires_in: int = codes.CODE_TTL_MINUTES * 60


class TokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: EmailText
    code: CodeText


class AccessToken(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_in: int


class MemberAuthController(Controller):
    path = "/member/v1/auth"
    tags = ["Member API: authentication"]

    @post(
        "/code",
        summary="Mail a one-time sign-in code",
        description=(
            f"Mails a {codes.CODE_DIGITS}-digit code to the address, valid for"
            f" {codes.CODE_TTL_MINUTES} minutes and one use; asking again replaces it."
            " An unknown address gets a code too: verifying it creates the member."
            " Errors: `invalid_email` (422), `rate_limited` (429, Retry-After),"
            " `too_many_attempts` (429 while the address cools down), `mail_unavailable` (503)."
        ),
        status_code=202,
    )
    async def code(self, request: Request[Any, Any, Any], data: JSONBody[CodeRequest]) -> CodeSent:
        rt = runtime(request.app.state)
        mail_id = await codes.request_code(
            rt.db, data.email, ip=client_ip(request), secret=_secret(rt), now=rt.clock.now()
        )
        try:
            await _send(rt, mail_id)
        except MailNotSent:
            raise DomainError(
                "the mail could not be sent just now: try again in a minute",
                code="mail_unavailable",
                status=503,
            ) from None
        return CodeSent()

    @post(
        "/token",
        summary="Trade the code for an access token",
        description=(
            "Returns a bearer token for /member/v1 (one hour). Errors: `invalid_email`,"
            " `invalid_code`, `code_expired`, `code_used` (422); `too_many_attempts` (429:"
            f" {codes.CODE_ATTEMPTS_MAX} wrong codes start a {codes.CODE_COOLDOWN_MINUTES}"
            " minute cool-down), `rate_limited` (429, Retry-After); `member_blocked`,"
            " `member_closed` (403)."
        ),
        status_code=200,
    )
    async def token(
        self, request: Request[Any, Any, Any], data: JSONBody[TokenRequest]
    ) -> AccessToken:
        rt = runtime(request.app.state)
        now = rt.clock.now()
        signed_in = await codes.verify_code(
            rt.db,
            data.email,
            data.code,
            ip=client_ip(request),
            secret=_secret(rt),
            now=now,
            session_kind="api",
            session_ttl=tokens.MEMBER_TOKEN_TTL,
        )
        token = tokens.issue_session_token(
            signed_in.session_id,
            signed_in.principal.public_id,
            audience=tokens.MEMBER_API_AUDIENCE,
            secret=_secret(rt),
            now=now,
            expires_at=signed_in.expires_at,
        )
        return AccessToken(
            access_token=token,
            token_type="Bearer",
            expires_in=int(tokens.MEMBER_TOKEN_TTL.total_seconds()),
        )

    @post(
        "/revoke",
        summary="Revoke this access token (sign out)",
        status_code=204,
        security=[{"memberBearer": []}],
        dependencies={"member": Provide(api_member)},
    )
    async def revoke(self, request: Request[Any, Any, Any], member: Member) -> None:
        rt = runtime(request.app.state)
        header = request.headers.get("authorization")
        claims = tokens.verify_member_token(
            tokens.bearer_token(header), secret=_secret(rt), now=rt.clock.now()
        )
        await revoke_session(rt.db, claims.session_id, now=rt.clock.now())


def member_auth_handlers(mode: str) -> list[Any]:
    """The routes of this package; the mailbox does not exist in production."""
    handlers: list[Any] = [
        sign_in_form,
        sign_in_send,
        sign_in_code_form,
        sign_in_code,
        sign_out,
        MemberAuthController,
    ]
    if mode != "production":
        handlers.append(dev_mailbox)
    return handlers
