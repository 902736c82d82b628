"""/member/v1/lotteries: list lotteries, buy a ticket (Idempotency-Key), take
the free ticket. Same authentication as the rest of the member API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide

from api.engagement import lotteries
from api.member_auth.guards import api_member
from api.member_auth.principal import MemberPrincipal
from api.web.params import RowId
from api.web.state import runtime

Member = NamedDependency[MemberPrincipal]


class PrizeOut(msgspec.Struct):
    rank: int
    points: int | None
    voucher_text: str | None


class TicketOut(msgspec.Struct):
    lottery_id: int
    number: int
    paid: bool
    price_points: int
    bought_at: datetime


class LotteryOut(msgspec.Struct):
    id: int
    name: str
    rules: str
    status: str
    ticket_price_points: int
    tickets_per_member_max: int
    free_ticket_available: bool
    odds: str
    sales_open_at: datetime
    sales_close_at: datetime
    draw_at: datetime
    tickets_sold: int
    seed_sha256: str | None
    seed: str | None
    verify_url: str
    prizes: list[PrizeOut]
    my_tickets: list[TicketOut]


class LotteryList(msgspec.Struct):
    items: list[LotteryOut]


def _out(view: lotteries.LotteryView) -> LotteryOut:
    return LotteryOut(
        id=view.id,
        name=view.name,
        rules=view.rules,
        status=view.status,
        ticket_price_points=view.ticket_price_points,
        tickets_per_member_max=view.tickets_per_member_max,
        free_ticket_available=view.selling and not view.free_ticket_taken and view.tickets_left > 0,
        odds=view.odds,
        sales_open_at=view.sales_open_at,
        sales_close_at=view.sales_close_at,
        draw_at=view.draw_at,
        tickets_sold=view.tickets_sold,
        seed_sha256=view.seed_sha256_hex,
        seed=view.seed_hex,
        verify_url=f"/lotteries/{view.id}/verify",
        prizes=[PrizeOut(p.rank, p.points, p.voucher_text) for p in view.prizes],
        my_tickets=[
            TicketOut(view.id, t.number, t.paid, t.price_points, t.bought_at)
            for t in view.my_tickets
        ],
    )


def _ticket(ticket: lotteries.Ticket) -> Response[TicketOut]:
    return Response(
        TicketOut(
            ticket.lottery_id, ticket.number, ticket.paid, ticket.price_points, ticket.bought_at
        ),
        status_code=200 if ticket.replayed else 201,
        headers={"Idempotent-Replayed": "true"} if ticket.replayed else {},
    )


class MemberLotteryController(Controller):
    path = "/member/v1/lotteries"
    tags = ["Member API"]
    dependencies = {"member": Provide(api_member)}
    security = [{"memberBearer": []}]

    @get(
        "/",
        summary="Lotteries: rules, odds, prizes, the member's tickets",
        description="Every lottery offers each member one free ticket with the same odds as a "
        "paid one (`free_ticket_available`).",
    )
    async def list_lotteries(self, request: Request[Any, Any, Any], member: Member) -> LotteryList:
        rt = runtime(request.app.state)
        found = await lotteries.list_lotteries(rt.db, member.member_id, rt.clock.now())
        return LotteryList([_out(v) for v in found])

    @post(
        "/{lottery_id:int}/tickets",
        summary="Buy one ticket for the lottery's price in points",
        description="Requires an `Idempotency-Key` header: a repeat returns the first ticket "
        "(200, `Idempotent-Replayed: true`) and takes no points. Errors: `lottery_not_found` "
        "(404), `lottery_not_selling`, `ticket_cap_reached`, `idempotency_conflict` (409), "
        "`insufficient_points` (422), `idempotency_key_required` (400).",
        status_code=201,
    )
    async def buy(
        self, request: Request[Any, Any, Any], member: Member, lottery_id: RowId
    ) -> Response[TicketOut]:
        rt = runtime(request.app.state)
        ticket = await lotteries.buy_ticket(
            rt.db,
            member.member_id,
            lottery_id,
            request.headers.get("idempotency-key"),
            rt.clock.now(),
        )
        return _ticket(ticket)

    @post(
        "/{lottery_id:int}/free-ticket",
        summary="Take the member's one free ticket (same odds as a paid one)",
        description="Once per member and lottery: a repeat returns the same ticket (200).",
        status_code=201,
    )
    async def free_ticket(
        self, request: Request[Any, Any, Any], member: Member, lottery_id: RowId
    ) -> Response[TicketOut]:
        rt = runtime(request.app.state)
        ticket = await lotteries.take_free_ticket(
            rt.db, member.member_id, lottery_id, rt.clock.now()
        )
        return _ticket(ticket)
