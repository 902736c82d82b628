"""Back-office: lotteries (/backoffice/lotteries): the list, creating one, the
detail with its published seed hash, running the draw with its progress,
cancelling, and CSV exports of the tickets and the winners.

The draw is `api/engagement/lotteries.py`'s (exactly once, whoever starts
it: the periodic job or an admin here); running it publishes the seed and the
draw document at /lotteries/{id}/verify and /lotteries/{id}/draw.json. Here it
runs as a task started by the request, and the page polls a status fragment
every second until the lottery reads as drawn: the status comes from the
database, so any process answers the poll; only a failure's message is known
to the process that ran the task (another shows "drawing" until the periodic
job draws it). Roles as the admin API's: owner and marketing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath, Parameter
from litestar.response import Redirect, Stream

from api.admin_api.lotteries import ROLES, LotteryIn, PrizeIn, cancel_audited, create_audited
from api.admin_auth import audit
from api.admin_auth.principal import AdminPrincipal
from api.backoffice.csv_export import csv_response
from api.backoffice.guards import AdminSession, SignedInAdmin, form_text, require_csrf
from api.backoffice.listing import PAGE_SIZE
from api.backoffice.pages import PROGRAMME_TZ, base_context, page
from api.backoffice.programme_forms import form_values, invalid, local_input, moment, whole
from api.db.pool import transaction
from api.engagement import lotteries
from api.errors import DomainError, NotFound
from api.web.state import runtime
from api.web.templates import is_htmx

Filter = Annotated[str | None, Parameter(max_length=200)]
CREATE_KEY_FIELD = "create_key"
EXPORT_CHUNK_ROWS = 1_000
# Draws this app runs or ran, by lottery, in the app's state (one database per
# app): the poll reads a failure from here.
_DRAWS_KEY = "kring_backoffice_draws"
log = logging.getLogger(__name__)


def _prizes(text: str) -> list[PrizeIn]:
    """One prize per line, rank 1 first: a whole number is points, anything
    else a voucher described for the winner."""
    prizes = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        digits = line.replace("_", "").replace(" points", "")
        if digits.isascii() and digits.isdigit() and len(digits) <= 18:
            prizes.append(PrizeIn(points=int(digits)))
        else:
            prizes.append(PrizeIn(voucher_text=line))
    return prizes


def _lottery_in(form: FormMultiDict) -> LotteryIn:
    return LotteryIn(
        name=form_text(form, "name"),
        rules=form_text(form, "rules"),
        ticket_price_points=whole(form, "ticket_price_points", "Ticket price"),
        tickets_per_member_max=whole(form, "tickets_per_member_max", "Tickets per member"),
        sales_open_at=moment(form, "sales_open_at", "Sales open"),
        sales_close_at=moment(form, "sales_close_at", "Sales close"),
        draw_at=moment(form, "draw_at", "Draw"),
        prizes=_prizes(form_text(form, "prizes")),
    )


@get("/lotteries", opt={"roles": ROLES}, name="backoffice_lotteries")
async def lotteries_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    status: Filter = None,
    cursor: Filter = None,
) -> Response[str]:
    rt = runtime(request.app.state)
    found = await lotteries.list_for_admin(
        rt.db, now=rt.clock.now(), status=status or None, cursor=cursor, limit=PAGE_SIZE
    )
    context = base_context(who, "lotteries")
    context.update(
        filters={"status": status or ""},
        statuses=[(s, s) for s in lotteries.STATUSES],
        items=found.items,
        next_cursor=found.next_cursor,
    )
    return page(request, "backoffice/lotteries.html", context, fragment="rows")


async def _new_page(
    request: Request[Any, Any, Any],
    who: AdminSession,
    values: dict[str, Any],
    *,
    error: str = "",
    status: int = 200,
) -> Response[str]:
    context = base_context(who, "lotteries")
    context.update(values=values, error=error)
    return page(request, "backoffice/lottery_new.html", context, status=status)


@get("/lotteries/new", opt={"roles": ROLES}, name="backoffice_lottery_new")
async def new_lottery_page(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[str]:
    now = runtime(request.app.state).clock.now().astimezone(PROGRAMME_TZ)
    opens = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    values = {
        "ticket_price_points": "100",
        "tickets_per_member_max": "10",
        "sales_open_at": local_input(opens),
        "sales_close_at": local_input(opens + timedelta(days=14)),
        "draw_at": local_input(opens + timedelta(days=14, hours=12)),
        CREATE_KEY_FIELD: uuid.uuid4().hex,
    }
    return await _new_page(request, who, values)


@post("/lotteries", opt={"roles": ROLES}, name="backoffice_lottery_create")
async def create_lottery(
    request: Request[Any, Any, Any], who: SignedInAdmin
) -> Response[str] | Redirect:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    try:
        key = form_text(form, CREATE_KEY_FIELD)
        if not key:
            raise invalid("The form", "has no key; open a new form", status=400)
        body = _lottery_in(form)
        made = await transaction(
            rt.db, lambda conn: create_audited(conn, who.admin, body, now, key)
        )
    except DomainError as error:
        return await _new_page(
            request, who, form_values(form), error=error.detail, status=error.status
        )
    return Redirect(f"/backoffice/lotteries/{made.id}", status_code=303)


async def _lottery(request: Request[Any, Any, Any], lottery_id: int) -> lotteries.LotteryView:
    rt = runtime(request.app.state)
    view = await lotteries.get_lottery(rt.db, lottery_id, None, rt.clock.now())
    if view is None:
        raise NotFound("there is no such lottery", code="lottery_not_found")
    return view


def _log_failure(task: asyncio.Task[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a lottery draw started in the back-office failed", exc_info=task.exception())


def _draws(request: Request[Any, Any, Any]) -> dict[int, asyncio.Task[bool]]:
    state = request.app.state
    if _DRAWS_KEY not in state:
        state[_DRAWS_KEY] = {}
    found: dict[int, asyncio.Task[bool]] = state[_DRAWS_KEY]
    return found


def _draw_state(request: Request[Any, Any, Any], view: lotteries.LotteryView) -> tuple[str, str]:
    """(state, message) of the draw: idle, running, failed or done."""
    if view.status == "drawn":
        return "done", ""
    task = _draws(request).get(view.id)
    if task is None:
        return "idle", ""
    if not task.done():
        return "running", ""
    error = task.exception()
    if error is not None:
        detail = error.detail if isinstance(error, DomainError) else "the draw failed; try again"
        return "failed", detail
    return ("done", "") if task.result() else ("failed", "the lottery was not drawn")


async def _detail(
    request: Request[Any, Any, Any],
    who: AdminSession,
    lottery_id: int,
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> Response[str]:
    view = await _lottery(request, lottery_id)
    state, failure = _draw_state(request, view)
    context = base_context(who, "lotteries")
    context.update(
        lottery=view,
        draw_state=state,
        in_fragment=is_htmx(request),
        error=error or failure,
        notice=notice,
        drawable=view.status in ("closed", "selling", "scheduled")
        and view.draw_at <= runtime(request.app.state).clock.now(),
    )
    return page(request, "backoffice/lottery.html", context, fragment="draw", status=status)


@get("/lotteries/{lottery_id:int}", opt={"roles": ROLES}, name="backoffice_lottery")
async def lottery_page(
    request: Request[Any, Any, Any], who: SignedInAdmin, lottery_id: FromPath[int]
) -> Response[str]:
    return await _detail(request, who, lottery_id)


@get(
    "/lotteries/{lottery_id:int}/draw/status",
    opt={"roles": ROLES},
    name="backoffice_lottery_draw_status",
)
async def draw_status(
    request: Request[Any, Any, Any], who: SignedInAdmin, lottery_id: FromPath[int]
) -> Response[str]:
    """The draw fragment (htmx polls it every second while the draw runs)."""
    return await _detail(request, who, lottery_id)


async def _draw_audited(
    conn: asyncpg.Connection, admin: AdminPrincipal, lottery_id: int, now: Any
) -> bool:
    drew = await lotteries.draw_lottery_on(conn, lottery_id, now)
    if drew:
        document = json.loads(await lotteries.draw_document(conn, lottery_id) or b"{}")
        await audit.record(
            conn,
            admin,
            "lottery.draw",
            f"lottery:{lottery_id}",
            {"status": "closed"},
            {
                "status": "drawn",
                "seed": document["seed"],
                "ticket_list_sha256": document["ticket_list_sha256"],
                "tickets": len(document["tickets"]),
                "winners": document["winners"],
            },
            now,
        )
    return drew


@post("/lotteries/{lottery_id:int}/draw", opt={"roles": ROLES}, name="backoffice_lottery_draw")
async def run_draw(
    request: Request[Any, Any, Any], who: SignedInAdmin, lottery_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    draws = _draws(request)
    running = draws.get(lottery_id)
    if running is None or running.done():
        try:
            await lotteries.check_drawable(rt.db, lottery_id, now)
        except NotFound:
            raise
        except DomainError as error:
            return await _detail(request, who, lottery_id, error=error.detail, status=error.status)
        admin = who.admin
        task = asyncio.create_task(
            transaction(rt.db, lambda conn: _draw_audited(conn, admin, lottery_id, now))
        )
        task.add_done_callback(_log_failure)
        draws[lottery_id] = task
    return await _detail(request, who, lottery_id, status=202)


@post("/lotteries/{lottery_id:int}/cancel", opt={"roles": ROLES}, name="backoffice_lottery_cancel")
async def cancel_lottery(
    request: Request[Any, Any, Any], who: SignedInAdmin, lottery_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    await _lottery(request, lottery_id)
    try:
        done = await transaction(
            rt.db, lambda conn: cancel_audited(conn, who.admin, lottery_id, now)
        )
    except DomainError as error:
        return await _detail(request, who, lottery_id, error=error.detail, status=error.status)
    notice = f"Cancelled: {done.tickets_refunded} tickets refunded ({done.points_refunded} points)."
    return await _detail(request, who, lottery_id, notice=notice)


async def _tickets(request: Request[Any, Any, Any], lottery_id: int) -> AsyncIterator[list[object]]:
    db = runtime(request.app.state).db
    after = 0
    while True:
        chunk = await lotteries.tickets_after(db, lottery_id, after, EXPORT_CHUNK_ROWS)
        for t in chunk:
            yield [
                t.number,
                t.member_public_id,
                t.holder,
                t.paid,
                t.price_points,
                t.bought_at.isoformat(),
                t.refunded,
                t.won_rank,
            ]
        if len(chunk) < EXPORT_CHUNK_ROWS:
            return
        after = chunk[-1].number


@get(
    "/lotteries/{lottery_id:int}/tickets.csv",
    opt={"roles": ROLES},
    name="backoffice_lottery_tickets_csv",
)
async def tickets_csv(
    request: Request[Any, Any, Any], who: SignedInAdmin, lottery_id: FromPath[int]
) -> Stream:
    await _lottery(request, lottery_id)
    return csv_response(
        f"lottery_{lottery_id}_tickets.csv",
        [
            "number",
            "member_public_id",
            "holder",
            "paid",
            "price_points",
            "bought_at",
            "refunded",
            "won_rank",
        ],
        _tickets(request, lottery_id),
    )


@get(
    "/lotteries/{lottery_id:int}/winners.csv",
    opt={"roles": ROLES},
    name="backoffice_lottery_winners_csv",
)
async def winners_csv(
    request: Request[Any, Any, Any], who: SignedInAdmin, lottery_id: FromPath[int]
) -> Stream:
    view = await _lottery(request, lottery_id)
    return csv_response(
        f"lottery_{lottery_id}_winners.csv",
        ["rank", "ticket_number", "holder", "prize"],
        [[w.rank, w.ticket_number, w.holder, w.prize] for w in view.winners],
    )


HANDLERS: list[Any] = [
    lotteries_page,
    new_lottery_page,
    create_lottery,
    lottery_page,
    draw_status,
    run_draw,
    cancel_lottery,
    tickets_csv,
    winners_csv,
]
