"""Giving and VIP in the demo year, through the services the wallet and the
admin API use.

Before the year the admins add three charities and the supermarket opens a
matching campaign for the food bank over the whole year, with a budget that
runs out during it. Some members give points now and then from the wallet, in
the evening, after the day's shopping; a few set up a monthly donation, made
by the nightly job (skipped in a month they lack the points). A handful of
regulars subscribe to VIP during the year and pay at the sandbox checkout;
their renewals are charged off-session by the nightly job and their monthly
bonus paid, so they are VIP when the demo starts.

The evening's gifts are written one after another in time order, not
concurrently: they share the campaign's budget, so who is matched must not
depend on how connections interleave. Each member draws from a stream of
their own, apart from their shopping stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import uuid4

import asyncpg

from api.charity import donations, matching, monthly
from api.charity.charities import CharityIn, create_charity
from api.db.pool import transaction
from api.demo.cast import (
    CHARITIES,
    DAYS_OF_HISTORY,
    MATCHED_CHARITY,
    MATCHING_BUDGET_POINTS_PER_MEMBER,
    MATCHING_PARTNER,
    PARTNERS_BY_CODE,
)
from api.payments import sandbox
from api.vip import benefits as vip_benefits
from api.vip import subscriptions as vip_subscriptions

GIVER_PERCENT = 35
GIFTS_PER_YEAR = (4, 12)  # a giver's gifts a year: (min, max) of their habit
GIFT_MIN_AVAILABLE = 200  # gives only with at least this much available
GIFT_SHARE_PERCENT = (25, 70)
GIFT_POINTS_MAX = 3_000
MONTHLY_PERCENT = 5
MONTHLY_MIN = 3
MONTHLY_POINTS = (100, 150, 200, 250)
EVENING_UTC = (18.5, 21.5)  # 19:30 to 23:30 in Amsterdam, summer or winter
VIP_PLAN = "vip_monthly"
VIP_YEARLY_PLAN = "vip_yearly"
# The days (before the end) on which VIP members subscribe; the first takes a year.
VIP_DAYS_BEFORE_END = (200, 150, 110, 75, 40)
VIP_REDIRECT = "/vip"
_STREAM = 0x6B72696E67  # mixes a member's seed into their giving stream


@dataclass(slots=True)
class Giver:
    member_id: int
    joined_at: datetime
    rng: random.Random
    chance_per_day: float
    charity: str  # CHARITIES key
    # (day of the demo year, points) of their monthly donation, if they set one.
    monthly_from: tuple[int, int] | None = None


class Giving:
    """The charities, the campaign, the members' gifts and the VIP members."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        members: list[tuple[int, datetime, int, bool, bool]],
        partner_ids: dict[str, int],
        start: datetime,
        end: datetime,
        rng: random.Random,
    ) -> None:
        """`members`: (member id, joined at, seed, steady, frequent) for each
        member; only `steady` ones (not scripted debtors, not gone quiet) give
        or become VIP, frequent shoppers first."""
        self.pool = pool
        self.partner_ids = partner_ids
        self.start = start
        self.end = end
        self.last_day = (end - start).days
        self.members = len(members)
        self.charity_ids: dict[str, int] = {}
        keys = [c.key for c in CHARITIES]
        weights = [c.weight for c in CHARITIES]
        self.givers: list[Giver] = []
        for member_id, joined_at, seed, steady, _ in members:
            own = random.Random(seed ^ _STREAM)
            if not steady or own.randrange(100) >= GIVER_PERCENT:
                continue
            self.givers.append(
                Giver(
                    member_id,
                    joined_at,
                    own,
                    own.uniform(*GIFTS_PER_YEAR) / DAYS_OF_HISTORY,
                    own.choices(keys, weights)[0],
                )
            )
        monthly_count = max(MONTHLY_MIN, len(self.givers) * MONTHLY_PERCENT // GIVER_PERCENT)
        for chosen_giver in rng.sample(self.givers, min(monthly_count, len(self.givers))):
            first_day = max(30, (chosen_giver.joined_at - start).days + 14)
            if first_day < self.last_day - 60:
                day = rng.randint(first_day, self.last_day - 60)
                chosen_giver.monthly_from = (day, rng.choice(MONTHLY_POINTS))
        first_vip_at = start + timedelta(days=self.last_day - VIP_DAYS_BEFORE_END[0])
        candidates = [m for m in members if m[3] and m[1] < first_vip_at]
        frequent = [m[0] for m in candidates if m[4]]
        others = [m[0] for m in candidates if not m[4]]
        rng.shuffle(frequent)
        rng.shuffle(others)
        chosen = (frequent + others)[: len(VIP_DAYS_BEFORE_END)]
        self.vip: dict[int, tuple[int, str]] = {}  # day -> (member, plan)
        for index, member_id in enumerate(chosen):
            plan = VIP_YEARLY_PLAN if index == 0 else VIP_PLAN
            self.vip[self.last_day - VIP_DAYS_BEFORE_END[index]] = (member_id, plan)
        self.vip_from = min(self.vip, default=self.last_day + 1)

    async def open(self) -> None:
        """The charities and the campaign, a week before the demo year."""
        at = self.start - timedelta(days=7)

        async def work(conn: asyncpg.Connection) -> None:
            for c in CHARITIES:
                new = CharityIn(
                    name=c.name,
                    description=c.description,
                    logo_url=c.logo_url,
                    iban=c.iban,
                    bic=None,
                    account_holder=c.account_holder,
                    anbi=c.anbi,
                )
                self.charity_ids[c.key] = (await create_charity(conn, new, at)).id
            partner = PARTNERS_BY_CODE[MATCHING_PARTNER]
            await matching.create_campaign(
                conn,
                matching.CampaignIn(
                    partner_id=self.partner_ids[MATCHING_PARTNER],
                    charity_id=self.charity_ids[MATCHED_CHARITY],
                    name=f"{partner.name} doubles your gift to the food bank",
                    budget_points=MATCHING_BUDGET_POINTS_PER_MEMBER * self.members,
                    starts_at=self.start,
                    ends_at=self.start + timedelta(days=DAYS_OF_HISTORY),
                ),
                at,
            )

        await transaction(self.pool, work)

    async def night(self, day: int, now: datetime) -> None:
        """The nightly jobs of giving and VIP, as the worker runs them."""
        await monthly.donate_due(self.pool, now)
        if day >= self.vip_from:
            await vip_subscriptions.expire_due(self.pool, now)
            await vip_subscriptions.renew_due(self.pool, now, redirect_url=VIP_REDIRECT)
            await vip_benefits.grant_monthly_bonus(self.pool, now)

    async def evening(self, day: int, day_start: datetime) -> None:
        """The evening's wallet use: gifts, new monthly donations, VIP sign-ups."""
        plans: list[tuple[datetime, int, Giver | None]] = []
        for giver in self.givers:
            rng = giver.rng
            at = day_start + timedelta(hours=rng.uniform(*EVENING_UTC))
            wants = rng.random() < giver.chance_per_day
            sets_monthly = giver.monthly_from is not None and giver.monthly_from[0] == day
            if giver.joined_at < at <= self.end and (wants or sets_monthly):
                plans.append((at, giver.member_id, giver))
        if day in self.vip:
            at = day_start + timedelta(hours=EVENING_UTC[0])
            if at <= self.end:
                plans.append((at, self.vip[day][0], None))
        plans.sort(key=lambda plan: (plan[0], plan[1]))
        for at, member_id, who in plans:
            if who is None:
                await self._subscribe(at, member_id, self.vip[day][1])
            elif who.monthly_from is not None and who.monthly_from[0] == day:
                await self._set_monthly(at, who, who.monthly_from[1])
            else:
                await self._give(at, who)

    async def _set_monthly(self, at: datetime, giver: Giver, points: int) -> None:
        charity_id = self.charity_ids[giver.charity]

        async def work(conn: asyncpg.Connection) -> monthly.MonthlyDonation:
            return await monthly.set_monthly(conn, giver.member_id, charity_id, points, at)

        await transaction(self.pool, work)

    async def _give(self, at: datetime, giver: Giver) -> None:
        available = await donations.available_points(self.pool, giver.member_id)
        if available < GIFT_MIN_AVAILABLE:
            return
        share = giver.rng.randint(*GIFT_SHARE_PERCENT)
        points = min(GIFT_POINTS_MAX, available * share // 100)
        points = max(donations.DONATION_POINTS_MIN, points - points % 50)
        # Now and then to another charity than their own.
        key = giver.charity
        if giver.rng.random() < 0.2:
            key = giver.rng.choice([c.key for c in CHARITIES])
        gift = await donations.donate(
            self.pool, giver.member_id, self.charity_ids[key], points, str(uuid4()), at
        )
        if gift.replayed:
            raise RuntimeError("a demo donation was answered as a replay")

    async def _subscribe(self, at: datetime, member_id: int, plan: str) -> None:
        """Subscribe in the wallet and pay at the (sandbox) checkout."""
        started = await vip_subscriptions.subscribe(
            self.pool, member_id, plan, redirect_url=VIP_REDIRECT, now=at
        )
        if started.checkout_url is None:
            raise RuntimeError(f"demo VIP member {member_id}: no checkout to pay")
        provider_id = started.checkout_url.removeprefix(sandbox.CHECKOUT_PATH)
        checkout = await sandbox.get_checkout(self.pool, provider_id)
        await sandbox.complete_checkout(
            self.pool, provider_id, "pay", checkout.form_token, at + timedelta(minutes=2)
        )
        status = (
            await vip_subscriptions.get_subscription(self.pool, started.subscription.id)
        ).status
        if status != "active":
            raise RuntimeError(f"demo VIP member {member_id}: subscription {status}, not active")
