"""Admin API: referral terms (read, change) and the referrals list.
Reading: roles owner, marketing, support. Changing the terms: owner and
marketing, audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, put
from litestar.di import Provide
from litestar.params import JSONBody, QueryParameter

from api.admin_auth import audit
from api.admin_auth.guards import ADMIN_SECURITY, Admin, admin_principal, requires_roles
from api.db.pool import transaction
from api.engagement import referrals
from api.web.bodies import strict_body
from api.web.state import runtime


class ReferralSettingsOut(msgspec.Struct, kw_only=True):
    enabled: Annotated[bool, msgspec.Meta(description="False: no new claims, no rewards")]
    referrer_points: Annotated[int, msgspec.Meta(description="Paid to the member who invited")]
    referee_points: Annotated[int, msgspec.Meta(description="Paid to the new member")]
    min_purchase_cents: Annotated[
        int, msgspec.Meta(description="The new member's first qualifying purchase, at least")
    ]
    rewards_per_month_max: Annotated[
        int,
        msgspec.Meta(
            description="Referrals a referrer is rewarded for per calendar month (Amsterdam);"
            " beyond it a referral is capped (nobody is paid). 0 pauses referral rewards."
        ),
    ]
    join_within_days: Annotated[
        int, msgspec.Meta(description="A new member may enter a code this long after joining")
    ]


class ReferralSettingsIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool
    referrer_points: int
    referee_points: int
    min_purchase_cents: int
    rewards_per_month_max: int
    join_within_days: int


class ReferralOut(msgspec.Struct, kw_only=True):
    id: int
    referrer_id: Annotated[UUID, msgspec.Meta(description="The referrer's public member id")]
    referrer_card_number: str
    referee_id: Annotated[UUID, msgspec.Meta(description="The new member's public member id")]
    referee_card_number: str
    created_at: datetime
    status: Annotated[str, msgspec.Meta(description="pending, rewarded, reversed or capped")]
    qualified_at: datetime | None
    referrer_reward_id: UUID | None
    referee_reward_id: UUID | None
    referrer_reversal_id: UUID | None
    referee_reversal_id: UUID | None


class ReferralPageOut(msgspec.Struct, kw_only=True):
    items: list[ReferralOut]
    next_cursor: str | None


def _settings_out(value: referrals.ReferralSettings) -> ReferralSettingsOut:
    return ReferralSettingsOut(
        enabled=value.enabled,
        referrer_points=value.referrer_points,
        referee_points=value.referee_points,
        min_purchase_cents=value.min_purchase_cents,
        rewards_per_month_max=value.rewards_per_month_max,
        join_within_days=value.join_within_days,
    )


def _referral_out(row: referrals.ReferralRow) -> ReferralOut:
    return ReferralOut(
        id=row.id,
        referrer_id=row.referrer_public_id,
        referrer_card_number=row.referrer_card_number,
        referee_id=row.referee_public_id,
        referee_card_number=row.referee_card_number,
        created_at=row.created_at,
        status=row.status,
        qualified_at=row.qualified_at,
        referrer_reward_id=row.referrer_reward_id,
        referee_reward_id=row.referee_reward_id,
        referrer_reversal_id=row.referrer_reversal_id,
        referee_reversal_id=row.referee_reversal_id,
    )


class ReferralAdminController(Controller):
    path = "/admin/v1"
    tags = ["Admin API: referrals"]
    dependencies = {"admin": Provide(admin_principal)}
    guards = [requires_roles("owner", "marketing", "support")]
    security = ADMIN_SECURITY

    @get("/referral-settings", summary="The referral terms")
    async def get_settings(
        self, request: Request[Any, Any, Any], admin: Admin
    ) -> ReferralSettingsOut:
        return _settings_out(await referrals.get_settings(runtime(request.app.state).db))

    @put(
        "/referral-settings",
        summary="Change the referral terms (owner, marketing; audited)",
        description="Points 0 to 1,000,000 each (0 pays that side nothing), minimum purchase"
        " 1 to 100,000,000 cents, monthly cap 0 to 1,000 (0 pauses rewards), join window 1 to"
        " 365 days. They apply to referrals qualifying from now on. Problems:"
        " `invalid_referral_settings`, `invalid_request` (422), `forbidden_role` (403).",
        guards=[requires_roles("owner", "marketing")],
    )
    async def change_settings(
        self, request: Request[Any, Any, Any], admin: Admin, data: JSONBody[ReferralSettingsIn]
    ) -> ReferralSettingsOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, ReferralSettingsIn)
        now = rt.clock.now()
        new = referrals.ReferralSettings(**msgspec.structs.asdict(body))

        async def work(conn: Any) -> ReferralSettingsOut:
            before, after = await referrals.update_settings(conn, new, now)
            await audit.record(
                conn,
                admin,
                "referral_settings.change",
                "referral_settings",
                referrals.settings_dict(before),
                referrals.settings_dict(after),
                now,
            )
            return _settings_out(after)

        return await transaction(rt.db, work)

    @get(
        "/referrals",
        summary="Referrals, newest first",
        description="Filter by `status` (pending, rewarded, reversed, capped) and `referrer`"
        " (a card number or a member's public id); pass `next_cursor` back as `cursor`."
        " Problems: `invalid_status`, `invalid_referrer`, `invalid_cursor`, `invalid_limit`"
        " (400).",
    )
    async def list_referrals(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        limit: Annotated[int, QueryParameter(ge=1, le=referrals.PAGE_SIZE_MAX)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        status: Annotated[str | None, QueryParameter(max_length=20)] = None,
        referrer: Annotated[str | None, QueryParameter(max_length=100)] = None,
    ) -> ReferralPageOut:
        page = await referrals.list_referrals(
            runtime(request.app.state).db,
            limit=limit,
            cursor=cursor,
            status=status,
            referrer=referrer,
        )
        return ReferralPageOut(
            items=[_referral_out(r) for r in page.items], next_cursor=page.next_cursor
        )
