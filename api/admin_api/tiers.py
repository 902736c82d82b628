"""Admin API: tiers (list, change). Changes: roles owner and marketing, audited."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, put
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from api.admin_auth import audit
from api.admin_auth.guards import ADMIN_SECURITY, Admin, admin_principal, requires_roles
from api.db.pool import transaction
from api.engagement import tiers
from api.web.bodies import strict_body
from api.web.state import runtime


class TierOut(msgspec.Struct, kw_only=True):
    code: str
    name: str
    threshold_points: Annotated[
        int, msgspec.Meta(description="Qualifying points (12 months, rolling) to reach it")
    ]
    multiplier_permille: Annotated[
        int, msgspec.Meta(description="Earn multiplier per mille: 1250 = x1.25")
    ]
    position: Annotated[int, msgspec.Meta(description="Display order, lowest tier first")]


class TierIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    threshold_points: int
    multiplier_permille: int
    position: int


def _out(tier: tiers.Tier) -> TierOut:
    return TierOut(**dataclasses.asdict(tier))


class TierAdminController(Controller):
    path = "/admin/v1/tiers"
    tags = ["Admin API: tiers"]
    dependencies = {"admin": Provide(admin_principal)}
    guards = [requires_roles("owner", "marketing")]
    security = ADMIN_SECURITY

    @get("/", summary="The tiers, lowest first")
    async def list_tiers(self, request: Request[Any, Any, Any], admin: Admin) -> list[TierOut]:
        return [_out(t) for t in await tiers.list_tiers(runtime(request.app.state).db)]

    @put(
        "/{code:str}",
        summary="Change a tier: name, threshold, multiplier, position (thresholds,"
        " multipliers and positions must rise together; the lowest stays at 0)",
    )
    async def change(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        code: FromPath[str],
        data: JSONBody[TierIn],
    ) -> TierOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, TierIn)
        now = rt.clock.now()
        tier = tiers.Tier(code=code, **msgspec.structs.asdict(body))

        async def work(conn: Any) -> TierOut:
            before, after = await tiers.update_tier(conn, tier)
            await audit.record(
                conn,
                admin,
                "tier.change",
                f"tier:{code}",
                dataclasses.asdict(before),
                dataclasses.asdict(after),
                now,
            )
            return _out(after)

        return await transaction(rt.db, work)
