"""/member/v1/inbox: the member's messages (rendered, newest first, with the
unread count), marking one or all read. Same authentication as the rest of
the member API. Marking read is naturally idempotent: a repeat changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from api.engagement import inbox
from api.member_auth.guards import api_member
from api.member_auth.principal import MemberPrincipal
from api.web.params import RowId
from api.web.state import runtime

Member = NamedDependency[MemberPrincipal]
INBOX_PAGE_SIZE_DEFAULT = 20


class MessageOut(msgspec.Struct):
    id: int
    kind: str
    subject: str
    body: str
    created_at: datetime
    read_at: datetime | None
    unread: bool


class InboxPage(msgspec.Struct):
    items: list[MessageOut]
    unread: int
    # Pass as `before` for the next (older) page; None on the last page.
    next_before: int | None


class MarkedRead(msgspec.Struct):
    id: int
    marked: bool  # false: it had been read before
    unread: int


class AllMarkedRead(msgspec.Struct):
    marked: int
    unread: int


def _out(view: inbox.MessageView) -> MessageOut:
    return MessageOut(
        id=view.id,
        kind=view.kind,
        subject=view.subject,
        body=view.body,
        created_at=view.created_at,
        read_at=view.read_at,
        unread=view.unread,
    )


class MemberInboxController(Controller):
    path = "/member/v1/inbox"
    tags = ["Member API"]
    dependencies = {"member": Provide(api_member)}
    security = [{"memberBearer": []}]

    @get(
        "/",
        summary="The member's inbox, newest first, with the unread count",
        description=f"Keyset-paginated: `before` is the previous page's `next_before` (at most "
        f"{inbox.INBOX_PAGE_SIZE_MAX} a page). Messages address the member as their profile "
        "says now. A bad limit is `invalid_limit`, a bad `before` `invalid_cursor` (400). "
        f"`unread` counts up to {inbox.UNREAD_COUNTED_MAX}.",
    )
    async def list_inbox(
        self,
        request: Request[Any, Any, Any],
        member: Member,
        limit: Annotated[
            int, QueryParameter(description=f"Page size, 1-{inbox.INBOX_PAGE_SIZE_MAX}")
        ] = INBOX_PAGE_SIZE_DEFAULT,
        before: Annotated[
            int | None, QueryParameter(description="`next_before` of the previous page")
        ] = None,
    ) -> InboxPage:
        db = runtime(request.app.state).db
        found = await inbox.list_messages(db, member.member_id, before_id=before, limit=limit)
        unread = await inbox.unread_count(db, member.member_id)
        return InboxPage(
            items=[_out(v) for v in found],
            unread=unread,
            next_before=found[-1].id if len(found) == limit else None,
        )

    @post(
        "/{message_id:int}/read",
        summary="Mark one message read",
        description="Only the member's own messages: another member's is `message_not_found` "
        "(404), exactly like one that does not exist.",
        status_code=200,
    )
    async def read(
        self, request: Request[Any, Any, Any], member: Member, message_id: RowId
    ) -> MarkedRead:
        rt = runtime(request.app.state)
        marked = await inbox.mark_read(rt.db, member.member_id, message_id, rt.clock.now())
        return MarkedRead(
            id=message_id, marked=marked, unread=await inbox.unread_count(rt.db, member.member_id)
        )

    @post("/read-all", summary="Mark every message read", status_code=200)
    async def read_all(self, request: Request[Any, Any, Any], member: Member) -> AllMarkedRead:
        rt = runtime(request.app.state)
        marked = await inbox.mark_all_read(rt.db, member.member_id, rt.clock.now())
        return AllMarkedRead(
            marked=marked, unread=await inbox.unread_count(rt.db, member.member_id)
        )
