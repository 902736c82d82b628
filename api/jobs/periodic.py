"""The periodic jobs: what runs every `job_interval_seconds`, and a way to run
them all once by hand.

Each job is a function of a pool and the moment it runs for. The ledger
functions lock the members' accounts and re-read under that lock, so two
runs of one job that overlap (two workers, or a worker and a test) never
apply the same lot or hold twice; the queue keeps overlap rare, the ledger
makes it harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

import asyncpg

from api.charity.monthly import donate_due
from api.charity.settlement import settle_charities
from api.engagement.challenge_progress import offer_winback, process_dirty
from api.engagement.lotteries import advance_and_draw
from api.engagement.reminders import OncePerDay, announce_expiring_points
from api.engagement.tiers import review_tiers
from api.ledger.burn import expire_holds
from api.ledger.lots import BatchResult, expire_due, release_due
from api.settlement.run import settle_due
from api.vip import benefits as vip_benefits
from api.vip import subscriptions as vip_subscriptions
from api.webhooks.delivery import run_webhooks
from api.webhooks.retention import prune_webhook_log as _prune_webhook_log

log = logging.getLogger(__name__)

PeriodicJob = Callable[[asyncpg.Pool, datetime], Awaitable[None]]


async def release_pending_points(pool: asyncpg.Pool, now: datetime) -> None:
    """Pending points whose partner's return window has passed become available."""
    moved = await release_due(pool, now)
    if moved.lots:
        log.info("released %d points in %d lots", moved.points, moved.lots)


async def expire_points(pool: asyncpg.Pool, now: datetime) -> None:
    """Available points past their expiry date go to the programme's breakage."""
    moved = await expire_due(pool, now)
    if moved.lots:
        log.info("expired %d points from %d lots", moved.points, moved.lots)


async def expire_burn_authorizations(pool: asyncpg.Pool, now: datetime) -> None:
    """Burn authorizations past their deadline are voided; the points return."""
    voided = await expire_holds(pool, now)
    if voided:
        log.info("voided %d burn authorizations past their deadline", voided)


async def deliver_webhooks(pool: asyncpg.Pool, now: datetime) -> None:
    """New events become deliveries; due deliveries are posted, signed."""
    await run_webhooks(pool, now)


async def prune_webhook_log(pool: asyncpg.Pool, now: datetime) -> None:
    """Finished webhook events past their retention go, with their deliveries and
    attempts. Scheduled hourly by the worker (`WEBHOOK_LOG_PRUNE_INTERVAL`),
    not every interval: it is housekeeping, nothing waits for it."""
    await _prune_webhook_log(pool, now)


async def settle_statements(pool: asyncpg.Pool, now: datetime) -> None:
    """Close every business day that has ended: statements and money entries."""
    for result in await settle_due(pool, now):
        if result.created:
            log.info(
                "settled %s: %d statements, %d entries",
                result.business_date,
                result.statements,
                result.entries,
            )


async def draw_lotteries(pool: asyncpg.Pool, now: datetime) -> None:
    """Lottery statuses follow the clock; lotteries past their draw time are
    drawn, each exactly once however many workers race (api/engagement/lotteries.py)."""
    for lottery_id in await advance_and_draw(pool, now):
        log.info("drew lottery %d", lottery_id)


async def review_member_tiers(pool: asyncpg.Pool, now: datetime) -> None:
    """On the first day of a month (Amsterdam), once: members move down to the
    tier their qualifying points support (upgrades happen at earn time)."""
    moved = await review_tiers(pool, now)
    if moved is not None:
        log.info("tier review: %d members moved down", moved)


_expiry_reminders = OncePerDay()


async def announce_expiring_points_job(pool: asyncpg.Pool, now: datetime) -> None:
    """Once a day (Amsterdam) per process: points expiring within 30 days are
    announced in the inbox (and by mail), each member and day once."""
    if not _expiry_reminders.due(now):
        return
    posted = await announce_expiring_points(pool, now)
    _expiry_reminders.finished(now)
    if posted:
        log.info("announced expiring points: %d reminders", posted)


# About 4,000 purchases a run: the next run, a few seconds later, reads the
# clock afresh.
ENGAGEMENT_BATCHES_PER_RUN = 8


async def process_engagement(pool: asyncpg.Pool, now: datetime) -> None:
    """Members whose purchases changed: automatic enrolment, challenge
    progress, rewards paid or reversed, referrals. Scheduled every
    `engagement_interval_seconds` (a few seconds), not every interval."""
    done = await process_dirty(pool, now, batches_max=ENGAGEMENT_BATCHES_PER_RUN)
    if done.rewards_paid or done.rewards_reversed:
        log.info(
            "engagement: %d purchases looked at, %d rewards paid, %d reversed",
            done.rows,
            done.rewards_paid,
            done.rewards_reversed,
        )


WINBACK_INTERVAL = timedelta(hours=1)


async def offer_winback_challenges(pool: asyncpg.Pool, now: datetime) -> None:
    """Lapsed members are offered the open win-back challenges (hourly)."""
    offered = await offer_winback(pool, now)
    if offered:
        log.info("win-back: %d offers made", offered)


async def donate_monthly(pool: asyncpg.Pool, now: datetime) -> None:
    """Monthly donations due today are made, each order and month once; a
    month the member lacks the points is skipped silently (api/charity/monthly.py)."""
    run = await donate_due(pool, now)
    if run.donated or run.skipped:
        log.info("monthly donations: %d made, %d skipped", run.donated, run.skipped)


async def renew_vip_subscriptions(pool: asyncpg.Pool, now: datetime) -> None:
    """VIP periods that ended: cancelled ones end, unpaid ones go into grace,
    grace past its end lapses; then renewals due within a day are charged and
    failed ones retried daily during grace (api/vip/subscriptions.py)."""
    ended = await vip_subscriptions.expire_due(pool, now)
    started = await vip_subscriptions.renew_due(pool, now)
    if ended or started:
        log.info("VIP: %d subscriptions moved at period end, %d renewals charged", ended, started)


async def grant_vip_monthly_bonus(pool: asyncpg.Pool, now: datetime) -> None:
    """Each VIP member's monthly bonus points, once per Amsterdam month."""
    done = await vip_benefits.grant_monthly_bonus(pool, now)
    if done.members:
        log.info("VIP monthly bonus: %d points to %d members", done.points, done.members)


CHARITY_SETTLEMENT_INTERVAL = timedelta(hours=1)


async def settle_charity_payouts(pool: asyncpg.Pool, now: datetime, price_micros: int) -> None:
    """Each charity's points of the last ended month become a euro payout at
    the programme's rate, once per charity and month (api/charity/settlement.py).
    Scheduled hourly by the worker, with the rate from the settings."""
    for payout in await settle_charities(pool, now, price_micros):
        log.info(
            "charity %d: %d points of %s paid as %d cents",
            payout.charity_id,
            payout.points,
            payout.month,
            payout.amount_cents,
        )


# The queue's entrypoint names; they are stored in pgqueuer's tables, so a
# rename needs the old name kept until queued jobs under it have drained.
PERIODIC_JOBS: MappingProxyType[str, PeriodicJob] = MappingProxyType(
    {
        "release_pending_points": release_pending_points,
        "expire_points": expire_points,
        "expire_burn_authorizations": expire_burn_authorizations,
        "deliver_webhooks": deliver_webhooks,
        "settle_statements": settle_statements,
        "review_member_tiers": review_member_tiers,
        "draw_lotteries": draw_lotteries,
        "announce_expiring_points": announce_expiring_points_job,
        "renew_vip_subscriptions": renew_vip_subscriptions,
        "grant_vip_monthly_bonus": grant_vip_monthly_bonus,
        "donate_monthly": donate_monthly,
    }
)


@dataclass(frozen=True, slots=True)
class DueJobsResult:
    holds_voided: int
    released: BatchResult
    expired: BatchResult


async def run_due_jobs(pool: asyncpg.Pool, now: datetime) -> DueJobsResult:
    """Run every periodic job once, in this task, without the queue.

    The order matters: a voided hold puts points back into lots that may
    already be past expiry, so holds go first and expiry last.
    """
    holds_voided = await expire_holds(pool, now)
    released = await release_due(pool, now)
    expired = await expire_due(pool, now)
    return DueJobsResult(holds_voided=holds_voided, released=released, expired=expired)
