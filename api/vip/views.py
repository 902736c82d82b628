"""What a member sees of VIP: the plans with what each would have added to
their last 90 days of earns, their subscription, and whether they are VIP
now. Shared by the member API and the wallet page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.engagement.tiers import multiplier_label
from api.vip import benefits, plans, subscriptions


@dataclass(frozen=True, slots=True)
class PlanOffer:
    plan: plans.Plan
    would_have_earned_extra_points: int  # over the last 90 days' earns

    @property
    def multiplier(self) -> str:
        return multiplier_label(self.plan.multiplier_permille)


@dataclass(frozen=True, slots=True)
class VipOverview:
    offers: list[PlanOffer]
    subscription: subscriptions.Subscription | None
    vip_multiplier_permille: int | None  # now; None: not VIP now
    base_points_90d: int

    @property
    def is_vip(self) -> bool:
        return self.vip_multiplier_permille is not None

    @property
    def can_subscribe(self) -> bool:
        return self.subscription is None or self.subscription.status not in (
            subscriptions.OPEN_STATUSES
        )


async def vip_overview(pool: asyncpg.Pool, member_id: int, now: datetime) -> VipOverview:
    base = await benefits.base_points_since(pool, member_id, now)
    offers = [
        PlanOffer(plan, benefits.extra_points(base, plan.multiplier_permille))
        for plan in await plans.list_plans(pool, active_only=True)
    ]
    return VipOverview(
        offers=offers,
        subscription=await subscriptions.current_subscription(pool, member_id),
        vip_multiplier_permille=await benefits.vip_multiplier(pool, member_id, now),
        base_points_90d=base,
    )


async def is_vip(pool: asyncpg.Pool, member_id: int, now: datetime) -> bool:
    return await benefits.vip_multiplier(pool, member_id, now) is not None
