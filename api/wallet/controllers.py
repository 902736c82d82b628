"""The wallet's pages at the site root (the PWA's scope is `/`): parse, call
one read model or service, render. Pages for a signed-in member take
`who` (api/member_auth/guards.py: no session → /sign-in and back).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from api.coalition import member_profile as profiles
from api.coalition import member_views as views
from api.coalition import pulse_survey
from api.coalition.card_tokens import CARD_TOKEN_TTL_SECONDS, issue_card_token, token_key
from api.errors import DomainError
from api.member_auth.guards import (
    WalletSession,
    clear_session_cookie,
    require_wallet_csrf,
    wallet_session,
)
from api.vip import views as vip_views
from api.wallet import pwa
from api.wallet.card import card_holder, card_number_groups, code128_svg, qr_svg
from api.wallet.pages import page, render
from api.wallet.pulse import card_context
from api.web.state import Runtime, runtime
from api.web.templates import HTML, as_sentence

Who = NamedDependency[WalletSession]
HISTORY_PAGE_SIZE = 20
HOME_RECENT_MAX = 5
# The page asks for a fresh token well before the old one runs out, so the
# code on screen always has at least half its life left.
CARD_TOKEN_REFRESH_SECONDS = CARD_TOKEN_TTL_SECONDS // 2
PARTNER_CODE_LENGTH_MAX = 64


def _base(who: WalletSession, nav: str) -> dict[str, Any]:
    """What wallet/base.html needs from a signed-in page."""
    return {"nav": nav, "csrf_token": who.csrf_token}


def _not_found(request: Request[Any, Any, Any], who: WalletSession, what: str) -> Response[str]:
    return page(
        request,
        "wallet/message.html",
        {**_base(who, ""), "title": "Not found", "message": what},
        status=404,
    )


def _rt(request: Request[Any, Any, Any]) -> Runtime:
    return runtime(request.app.state)


@get("/", include_in_schema=False)
async def home(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    rt = _rt(request)
    summary = await views.member_summary(rt.db, who.principal.member_id, rt.clock.now())
    recent = await views.member_history(rt.db, who.principal.member_id, HOME_RECENT_MAX, None)
    survey = await views.survey_due(rt.db, who.principal.member_id, rt.clock.now())
    # Shown means offered: the card appears on the view that offers the month's
    # pulse survey, and not again that month (api/coalition/pulse_survey.py).
    pulse = await pulse_survey.offer(rt.db, who.principal.member_id, rt.clock.now())
    return page(
        request,
        "wallet/home.html",
        {
            **_base(who, "home"),
            "summary": summary,
            "recent": recent.items,
            "survey": survey,
            "pulse_shown": pulse.new,
            **card_context(pulse.pulse.status),
            "expiring_window_days": views.EXPIRING_WINDOW_DAYS,
            "is_vip": await vip_views.is_vip(rt.db, who.principal.member_id, rt.clock.now()),
        },
    )


@get("/card", include_in_schema=False)
async def card(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    holder = await card_holder(_rt(request).db, who.principal.member_id)
    if holder is None:
        return _not_found(request, who, "This account has no card.")
    spaced = card_number_groups(holder.card_number)
    return page(
        request,
        "wallet/card.html",
        {
            **_base(who, "card"),
            "holder": holder,
            "card_spaced": spaced,
            "barcode": code128_svg(holder.card_number, label=f"Barcode of card {spaced}"),
            "card_qr": qr_svg(holder.card_number, label=f"QR code of card {spaced}"),
            "refresh_seconds": CARD_TOKEN_REFRESH_SECONDS,
        },
    )


@get("/card/live", include_in_schema=False)
async def card_live(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    """The live QR (a two-minute token), swapped into the card page by htmx."""
    rt = _rt(request)
    holder = await card_holder(rt.db, who.principal.member_id)
    if holder is None:
        return _not_found(request, who, "This account has no card.")
    token = issue_card_token(
        holder.card_number, key=token_key(rt.settings.jwt_secret or ""), now=rt.clock.now()
    )
    context = {
        "token": token,
        "token_qr": qr_svg(token.text, label="Live QR code of your card", css_class="qr live"),
    }
    # Only ever a fragment; never kept by any cache (it stops working in minutes).
    return Response(
        render("wallet/card.html", context, block="live"),
        media_type=HTML,
        headers={"Cache-Control": "no-store", "Vary": "HX-Request"},
    )


@get("/history", include_in_schema=False)
async def history(
    request: Request[Any, Any, Any],
    who: Who,
    partner: FromQuery[str] = "",
    cursor: FromQuery[str] = "",
) -> Response[str]:
    rt = _rt(request)
    partner_code = partner[:PARTNER_CODE_LENGTH_MAX] or None
    try:
        found = await views.member_history(
            rt.db, who.principal.member_id, HISTORY_PAGE_SIZE, cursor or None, partner_code
        )
    except DomainError as exc:
        return page(
            request,
            "wallet/message.html",
            {**_base(who, "history"), "title": "History", "message": exc.detail},
            status=exc.status,
        )
    partners = [] if cursor else await views.partners_for_members(rt.db)
    return page(
        request,
        "wallet/history.html",
        {
            **_base(who, "history"),
            "items": found.items,
            "next_cursor": found.next_cursor,
            "partner": partner_code or "",
            "partners": partners,
        },
        fragment="rows",
    )


@get("/history/{transaction_id:str}", include_in_schema=False)
async def transaction_detail(
    request: Request[Any, Any, Any], who: Who, transaction_id: FromPath[str]
) -> Response[str]:
    rt = _rt(request)
    try:
        ident = UUID(transaction_id)
    except ValueError:
        return _not_found(request, who, "There is no such transaction in your history.")
    detail = await views.member_transaction(rt.db, who.principal.member_id, ident, rt.clock.now())
    if detail is None:  # another member's looks exactly like one that does not exist
        return _not_found(request, who, "There is no such transaction in your history.")
    return page(request, "wallet/transaction.html", {**_base(who, "history"), "detail": detail})


@get("/partners", include_in_schema=False)
async def partners(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    found = await views.partners_for_members(_rt(request).db)
    return page(request, "wallet/partners.html", {**_base(who, "partners"), "partners": found})


def _form_text(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@get("/survey/{transaction_id:str}", include_in_schema=False)
async def survey(
    request: Request[Any, Any, Any], who: Who, transaction_id: FromPath[str]
) -> Response[str]:
    return await _survey_page(request, who, transaction_id)


async def _survey_page(
    request: Request[Any, Any, Any],
    who: WalletSession,
    transaction_id: str,
    *,
    error: str | None = None,
    status: int = 200,
    comment: str = "",
) -> Response[str]:
    rt = _rt(request)
    try:
        ident = UUID(transaction_id)
    except ValueError:
        return _not_found(request, who, "There is no such purchase in your history.")
    detail = await views.member_transaction(rt.db, who.principal.member_id, ident, rt.clock.now())
    if detail is None:
        return _not_found(request, who, "There is no such purchase in your history.")
    return page(
        request,
        "wallet/survey.html",
        {
            **_base(who, "history"),
            "detail": detail,
            "error": error,
            "comment": comment,
            "comment_max": profiles.SURVEY_COMMENT_LENGTH_MAX,
        },
        status=status,
    )


@post("/survey/{transaction_id:str}", include_in_schema=False)
async def survey_answer(
    request: Request[Any, Any, Any], who: Who, transaction_id: FromPath[str]
) -> Response[Any]:
    await require_wallet_csrf(request)
    form = await request.form()
    rt = _rt(request)
    comment = _form_text(form, "comment")
    score_text = _form_text(form, "score")
    try:
        ident = UUID(transaction_id)
    except ValueError:
        return _not_found(request, who, "There is no such purchase in your history.")
    if not score_text.isdigit():
        return await _survey_page(
            request,
            who,
            transaction_id,
            error="Choose a number from 0 to 10.",
            status=422,
            comment=comment,
        )
    try:
        await profiles.answer_survey(
            rt.db,
            who.principal.member_id,
            ident,
            score=int(score_text),
            comment=comment.strip() or None,
            now=rt.clock.now(),
        )
    except DomainError as exc:
        return await _survey_page(
            request,
            who,
            transaction_id,
            error=as_sentence(exc.detail),
            status=exc.status,
            comment=comment,
        )
    return Redirect(f"/history/{ident}?rated=1", status_code=303)


async def _profile_page(
    request: Request[Any, Any, Any],
    who: WalletSession,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    profile = await profiles.get_profile(_rt(request).db, who.principal.member_id)
    if profile is None:
        return _not_found(request, who, "This account no longer exists.")
    return page(
        request,
        "wallet/profile.html",
        {
            **_base(who, "profile"),
            "profile": profile,
            "notice": notice,
            "error": error,
            "name_max": profiles.DISPLAY_NAME_LENGTH_MAX,
            "salutation_max": profiles.SALUTATION_LENGTH_MAX,
        },
        status=status,
    )


@get("/profile", include_in_schema=False)
async def profile(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    return await _profile_page(request, who)


@post("/profile", include_in_schema=False)
async def profile_save(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    await require_wallet_csrf(request)
    form = await request.form()
    changes = profiles.ProfileChanges(
        display_name=_form_text(form, "display_name"),
        salutation=_form_text(form, "salutation"),
        email_news=form.get("email_news") == "on",
        expiry_reminders=form.get("expiry_reminders") == "on",
    )
    try:
        await profiles.update_profile(_rt(request).db, who.principal.member_id, changes)
    except DomainError as exc:
        return await _profile_page(request, who, error=as_sentence(exc.detail), status=exc.status)
    return await _profile_page(request, who, notice="Your profile is saved.")


@get("/profile/export", include_in_schema=False)
async def profile_export(request: Request[Any, Any, Any], who: Who) -> Response[Any]:
    data = await profiles.export_member_data(_rt(request).db, who.principal.member_id)
    if data is None:
        return _not_found(request, who, "This account no longer exists.")
    return Response(
        msgspec.json.encode(data),
        media_type="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="kring-my-data.json"',
            "Cache-Control": "no-store",
        },
    )


@get("/profile/delete", include_in_schema=False)
async def profile_delete_confirm(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    rt = _rt(request)
    summary = await views.member_summary(rt.db, who.principal.member_id, rt.clock.now())
    return page(
        request,
        "wallet/delete.html",
        {**_base(who, "profile"), "summary": summary, "error": None},
    )


@post("/profile/delete", include_in_schema=False)
async def profile_delete(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    await require_wallet_csrf(request)
    form = await request.form()
    rt = _rt(request)
    confirmed = form.get("confirm") == "yes"
    try:
        await profiles.delete_account(
            rt.db,
            who.principal.member_id,
            confirmation=profiles.ACCOUNT_DELETION_CONFIRMATION if confirmed else "",
            now=rt.clock.now(),
        )
    except DomainError as exc:
        summary = await views.member_summary(rt.db, who.principal.member_id, rt.clock.now())
        message = (
            "Tick the box to confirm that you want to delete your account."
            if exc.code == "confirmation_required"
            else as_sentence(exc.detail)
        )
        return page(
            request,
            "wallet/delete.html",
            {**_base(who, "profile"), "summary": summary, "error": message},
            status=exc.status,
        )
    response = page(
        request,
        "wallet/message.html",
        {
            "title": "Your account is deleted",
            "message": "Your points are forfeited and your personal data is erased. Thank you for using Kring.",
        },
    )
    clear_session_cookie(response)
    return response


# The PWA: public, no session --------------------------------------------------


@get(pwa.OFFLINE_PATH, include_in_schema=False)
async def offline() -> Response[str]:
    return Response(_offline_html(), media_type=HTML, headers={"Cache-Control": "no-cache"})


def _offline_html() -> str:
    return render("wallet/offline.html", {})


@get(pwa.MANIFEST_PATH, include_in_schema=False)
async def manifest() -> Response[bytes]:
    return Response(
        pwa.manifest_bytes(),
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


@get("/sw.js", include_in_schema=False)
async def service_worker() -> Response[str]:
    # no-cache: the browser checks for a new worker on every navigation.
    return Response(
        pwa.service_worker_js(_offline_html().encode()),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


wallet_router = Router(
    path="/",
    route_handlers=[
        home,
        card,
        card_live,
        history,
        transaction_detail,
        partners,
        survey,
        survey_answer,
        profile,
        profile_save,
        profile_export,
        profile_delete_confirm,
        profile_delete,
    ],
    dependencies={"who": Provide(wallet_session)},
)
pwa_handlers = [offline, manifest, service_worker]
