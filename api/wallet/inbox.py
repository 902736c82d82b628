"""The wallet's inbox pages: `/inbox` lists the member's messages (newest
first, unread ones marked, an "older" link per page), `/inbox/{id}` shows one
and marks it read (opening it is reading it; a repeat changes nothing),
`POST /inbox/read-all` marks them all read (the session's CSRF token)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery
from litestar.response import Redirect

from api.engagement import inbox
from api.errors import DomainError
from api.member_auth.guards import WalletSession, require_wallet_csrf, wallet_session
from api.wallet.pages import page
from api.web.params import RowId
from api.web.state import runtime

Who = NamedDependency[WalletSession]
INBOX_PAGE_SIZE = 20


def _base(who: WalletSession) -> dict[str, Any]:
    return {"nav": "inbox", "csrf_token": who.csrf_token}


@get("/inbox", include_in_schema=False)
async def inbox_list(
    request: Request[Any, Any, Any], who: Who, before: FromQuery[str] = ""
) -> Response[str]:
    rt = runtime(request.app.state)
    try:
        before_id = int(before) if before else None
        found = await inbox.list_messages(
            rt.db, who.principal.member_id, before_id=before_id, limit=INBOX_PAGE_SIZE
        )
    except (ValueError, DomainError):
        return page(
            request,
            "wallet/message.html",
            {**_base(who), "title": "Inbox", "message": "That page of your inbox does not exist."},
            status=400,
        )
    return page(
        request,
        "wallet/inbox.html",
        {
            **_base(who),
            "messages": found,
            "older": found[-1].id if len(found) == INBOX_PAGE_SIZE else None,
            "first_page": before_id is None,
        },
    )


@get("/inbox/{message_id:int}", include_in_schema=False)
async def inbox_message(
    request: Request[Any, Any, Any], who: Who, message_id: RowId
) -> Response[str]:
    rt = runtime(request.app.state)
    member_id = who.principal.member_id
    try:
        message = await inbox.get_message(rt.db, member_id, message_id)
    except DomainError:  # another member's looks exactly like one that does not exist
        return page(
            request,
            "wallet/message.html",
            {**_base(who), "title": "Not found", "message": "There is no such message."},
            status=404,
        )
    if message.unread:
        await inbox.mark_read(rt.db, member_id, message_id, rt.clock.now())
    return page(
        request,
        "wallet/inbox_message.html",
        {
            **_base(who),
            "message": message,
            # The badge counts what is unread now that this one is read.
            "inbox_unread": await inbox.unread_count(rt.db, member_id),
        },
    )


@post("/inbox/read-all", include_in_schema=False)
async def inbox_read_all(request: Request[Any, Any, Any], who: Who) -> Response[Any]:
    await require_wallet_csrf(request)
    rt = runtime(request.app.state)
    await inbox.mark_all_read(rt.db, who.principal.member_id, rt.clock.now())
    return Redirect("/inbox", status_code=303)


inbox_wallet_router = Router(
    path="/",
    route_handlers=[inbox_list, inbox_message, inbox_read_all],
    dependencies={"who": Provide(wallet_session)},
)
