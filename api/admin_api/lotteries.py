"""Admin API: lotteries (create, cancel). Roles: owner, marketing. Audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, post
from litestar.di import Provide
from litestar.params import JSONBody

from api.admin_auth import audit
from api.admin_auth.guards import ADMIN_SECURITY, Admin, admin_principal, requires_roles
from api.admin_auth.principal import AdminPrincipal, Role
from api.db.pool import transaction
from api.engagement import lotteries
from api.partner_api.controllers import KeyHeader
from api.partner_api.idempotency import require_key
from api.web.bodies import strict_body
from api.web.params import RowId
from api.web.state import runtime

ROLES: tuple[Role, ...] = ("owner", "marketing")


class PrizeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    points: Annotated[int | None, msgspec.Meta(description="Points from the lottery pool")] = None
    voucher_text: Annotated[
        str | None, msgspec.Meta(description="A partner voucher, described for the winner")
    ] = None


class LotteryIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    rules: Annotated[str, msgspec.Meta(description="Shown before purchase, with the odds")]
    ticket_price_points: int
    tickets_per_member_max: Annotated[int, msgspec.Meta(description="Paid and free together")]
    sales_open_at: datetime
    sales_close_at: datetime
    draw_at: datetime
    prizes: Annotated[list[PrizeIn], msgspec.Meta(description="In rank order: first is rank 1")]


class LotteryCreated(msgspec.Struct, kw_only=True):
    id: int
    status: str
    seed_sha256: Annotated[
        str, msgspec.Meta(description="Published when sales open; the seed is revealed at the draw")
    ]


class LotteryCancelled(msgspec.Struct, kw_only=True):
    id: int
    tickets_refunded: int
    points_refunded: int
    replayed: Annotated[bool, msgspec.Meta(description="True: it was cancelled already")]


# The audited changes, shared with the back-office pages (api/backoffice/lotteries.py).


async def create_audited(
    conn: Any, admin: AdminPrincipal, body: LotteryIn, now: datetime, key: str | None
) -> LotteryCreated:
    new = lotteries.NewLottery(
        name=body.name,
        rules=body.rules,
        ticket_price_points=body.ticket_price_points,
        tickets_per_member_max=body.tickets_per_member_max,
        sales_open_at=body.sales_open_at,
        sales_close_at=body.sales_close_at,
        draw_at=body.draw_at,
        prizes=[lotteries.NewPrize(p.points, p.voucher_text) for p in body.prizes],
    )
    made = await lotteries.create_lottery(conn, new, now, key=key)
    lottery_id = made.lottery_id
    row = await conn.fetchrow("SELECT status, seed_sha256 FROM lotteries WHERE id = $1", lottery_id)
    if not made.replayed:
        await audit.record(
            conn,
            admin,
            "lottery.create",
            f"lottery:{lottery_id}",
            None,
            {**msgspec.to_builtins(body), "id": lottery_id},
            now,
        )
    return LotteryCreated(id=lottery_id, status=row["status"], seed_sha256=row["seed_sha256"].hex())


async def cancel_audited(
    conn: Any, admin: AdminPrincipal, lottery_id: int, now: datetime
) -> LotteryCancelled:
    done = await lotteries.cancel_lottery_on(conn, lottery_id, now)
    if not done.replayed:
        await audit.record(
            conn,
            admin,
            "lottery.cancel",
            f"lottery:{lottery_id}",
            None,
            {"tickets_refunded": done.tickets_refunded, "points_refunded": done.points_refunded},
            now,
        )
    return LotteryCancelled(
        id=lottery_id,
        tickets_refunded=done.tickets_refunded,
        points_refunded=done.points_refunded,
        replayed=done.replayed,
    )


class LotteryAdminController(Controller):
    path = "/admin/v1/lotteries"
    tags = ["Admin API: lotteries"]
    dependencies = {"admin": Provide(admin_principal)}
    guards = [requires_roles(*ROLES)]
    security = ADMIN_SECURITY

    @post(
        "/",
        summary="Create a lottery (Idempotency-Key: a repeat returns the lottery it made)",
        status_code=201,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        data: JSONBody[LotteryIn],
        idempotency_key: KeyHeader = None,
    ) -> LotteryCreated:
        rt = runtime(request.app.state)
        body = await strict_body(request, LotteryIn)
        key = require_key(idempotency_key)
        now = rt.clock.now()
        return await transaction(rt.db, lambda conn: create_audited(conn, admin, body, now, key))

    @post(
        "/{lottery_id:int}/cancel",
        summary="Cancel a lottery not yet drawn: every paid ticket is refunded, once",
        status_code=200,
    )
    async def cancel(
        self, request: Request[Any, Any, Any], admin: Admin, lottery_id: RowId
    ) -> LotteryCancelled:
        rt = runtime(request.app.state)
        now = rt.clock.now()

        return await transaction(rt.db, lambda conn: cancel_audited(conn, admin, lottery_id, now))
