"""The job worker: pgqueuer's QueueManager running Kring's periodic jobs.

Scheduling, with any number of workers: every worker, every tick, asks the
queue for one run of each periodic job, due one interval from now (for the
ledger jobs, `job_interval_seconds`), under a dedupe key named after the job.
pgqueuer's unique index on dedupe keys covers queued and running jobs, so the
cluster holds at most one run of each job at a time, and the next run can
only be queued once the previous one has finished. Runs of one job therefore
start at least one interval apart however many workers there are, and a slow
run delays the next instead of piling more up behind it. Any worker may pick
a run up; when a worker dies mid-run, its job is picked again once its
heartbeat goes stale.

Timing runs on wall-clock time (the database's NOW()); what a job treats as
"now" for the ledger comes from the injected Clock, read when the run starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

from api.clock import Clock
from api.db.pool import create_pool
from api.jobs.housekeeping import JOB_LOG_PRUNE_INTERVAL, prune_job_log
from api.jobs.periodic import (
    CHARITY_SETTLEMENT_INTERVAL,
    PERIODIC_JOBS,
    WINBACK_INTERVAL,
    PeriodicJob,
    offer_winback_challenges,
    process_engagement,
    prune_webhook_log,
    settle_charity_payouts,
)
from api.mail.outbox import deliver_due
from api.mail.smtp import mail_sender
from api.settings import Settings
from api.webhooks.retention import WEBHOOK_LOG_PRUNE_INTERVAL

log = logging.getLogger(__name__)

# Jobs on intervals of their own: the two log prunings, the engagement
# processor (every few seconds), win-back offers (hourly), and mail the
# outbox still holds (needs the settings' mail sender), charity settlement
# (hourly, needs the settings' point price).
OWN_INTERVAL_JOBS = 6
# Each scheduled job (the PERIODIC_JOBS: ledger jobs, webhook delivery,
# settlement, tier review, lottery draws, expiry reminders; plus the
# OWN_INTERVAL_JOBS) runs one transaction at a time; one connection each,
# and one spare.
JOB_POOL_SIZE_MAX = len(PERIODIC_JOBS) + OWN_INTERVAL_JOBS + 1
# A run's end and the next run being queued are at most one tick apart.
TICKS_PER_INTERVAL = 4
TICK_SECONDS_MIN = 0.25
RESTART_DELAY_SECONDS_MIN = 1.0
RESTART_DELAY_SECONDS_MAX = 30.0
STOP_SECONDS_MAX = 30.0
DEDUPE_KEY_PREFIX = "kring:periodic:"


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A queue entrypoint name, how long between its runs, and what a run does."""

    name: str
    interval: timedelta
    run: Callable[[], Awaitable[object]]


def scheduled_jobs(settings: Settings, pool: asyncpg.Pool, clock: Clock) -> list[ScheduledJob]:
    every = timedelta(seconds=settings.job_interval_seconds)
    sender = mail_sender(settings.smtp_url, settings.mail_from)

    def ledger(job: PeriodicJob) -> Callable[[], Awaitable[None]]:
        # The ledger's "now" is read when the run starts, not when it was queued.
        return lambda: job(pool, clock.now())

    return [
        *(ScheduledJob(name, every, ledger(job)) for name, job in PERIODIC_JOBS.items()),
        ScheduledJob("prune_job_log", JOB_LOG_PRUNE_INTERVAL, lambda: prune_job_log(pool)),
        ScheduledJob("prune_webhook_log", WEBHOOK_LOG_PRUNE_INTERVAL, ledger(prune_webhook_log)),
        ScheduledJob(
            "process_engagement",
            timedelta(seconds=settings.engagement_interval_seconds),
            ledger(process_engagement),
        ),
        ScheduledJob("offer_winback", WINBACK_INTERVAL, ledger(offer_winback_challenges)),
        ScheduledJob("deliver_mail", every, lambda: deliver_due(pool, sender, now=clock.now())),
        ScheduledJob(
            "settle_charities",
            CHARITY_SETTLEMENT_INTERVAL,
            lambda: settle_charity_payouts(pool, clock.now(), settings.charity_point_price_micros),
        ),
    ]


async def schedule_runs(queries: Queries, jobs: list[ScheduledJob]) -> None:
    """Queue the next run of each job, one interval from now, unless a run of
    it is already queued or running somewhere (then its dedupe key skips it)."""
    await queries.enqueue(
        [job.name for job in jobs],
        [None] * len(jobs),
        [0] * len(jobs),
        execute_after=[job.interval for job in jobs],
        dedupe_key=[DEDUPE_KEY_PREFIX + job.name for job in jobs],
        on_conflict="skip",
    )


async def _keep_scheduled(
    queries: Queries, jobs: list[ScheduledJob], tick_seconds: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        await schedule_runs(queries, jobs)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick_seconds)


def _entrypoint(job: ScheduledJob) -> Callable[[Job], Awaitable[None]]:
    async def run(_queued: Job) -> None:
        await job.run()

    return run


def build_queue_manager(
    queries: Queries, jobs: list[ScheduledJob], stop: asyncio.Event
) -> QueueManager:
    manager = QueueManager(queries)
    # Setting `stop` ends the manager's loop; it then waits for running jobs.
    manager.shutdown = stop
    for job in jobs:
        # The dedupe key already allows one run at a time; the limit (enforced
        # in SQL across workers) also covers a run re-picked after a stale heartbeat.
        manager.entrypoint(job.name, concurrency_limit=1)(_entrypoint(job))
    return manager


async def run_worker(
    database_url: str, settings: Settings, clock: Clock, stop: asyncio.Event
) -> None:
    """Schedule and run the periodic jobs until `stop` is set; running jobs
    finish first. Raises when the database fails (see `keep_worker_running`).

    A failed job is logged with its traceback (and kept in `pgqueuer_log`);
    its next run comes one interval later, like any other.
    """
    # pgqueuer LISTENs on this connection, so it is its own, outside any pool.
    conn = await asyncpg.connect(database_url, server_settings={"application_name": "kring-worker"})
    try:
        pool = await create_pool(database_url, min_size=1, max_size=JOB_POOL_SIZE_MAX)
        try:
            queries = Queries(AsyncpgDriver(conn))
            jobs = scheduled_jobs(settings, pool, clock)
            manager = build_queue_manager(queries, jobs, stop)
            shortest = min(job.interval for job in jobs).total_seconds()
            tick_seconds = max(shortest / TICKS_PER_INTERVAL, TICK_SECONDS_MIN)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(_keep_scheduled(queries, jobs, tick_seconds, stop))
                tasks.create_task(manager.run())
        finally:
            await pool.close()
    finally:
        await conn.close()


async def keep_worker_running(
    database_url: str, settings: Settings, clock: Clock, stop: asyncio.Event
) -> None:
    """`run_worker` until `stop`, started again after a failure (a database
    restart, a cut connection) with a growing pause, so background work
    resumes on its own instead of dying silently inside `kring serve`."""
    loop = asyncio.get_running_loop()
    delay_seconds = RESTART_DELAY_SECONDS_MIN
    while not stop.is_set():
        started = loop.time()
        try:
            await run_worker(database_url, settings, clock, stop)
        except Exception:
            if loop.time() - started > RESTART_DELAY_SECONDS_MAX:
                delay_seconds = RESTART_DELAY_SECONDS_MIN  # it had been running fine
            log.exception("job worker failed; starting it again in %.0f s", delay_seconds)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_seconds)
            delay_seconds = min(delay_seconds * 2, RESTART_DELAY_SECONDS_MAX)


class WorkerHandle:
    """A worker running in a thread of this process with an event loop of
    its own; `stop()` ends it.

    Its own loop, not a task on the server's: a server saturated with
    requests keeps hundreds of tasks ready, and a worker sharing that loop
    waits behind all of them at every database round trip, so background
    work (challenge progress, webhooks, settlement) would stall exactly when
    it is busiest. In a thread it gets its share of the interpreter."""

    def __init__(
        self, thread: threading.Thread, loop: asyncio.AbstractEventLoop, stop_event: asyncio.Event
    ) -> None:
        self._thread = thread
        self._loop = loop
        self._stop_event = stop_event

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    async def stop(self) -> None:
        """Stop taking jobs, let running ones finish (cancelled after
        STOP_SECONDS_MAX; their transactions roll back), then return."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop_event.set)
        await asyncio.to_thread(self._thread.join, STOP_SECONDS_MAX + 5)
        if self._thread.is_alive():
            log.warning("job worker did not stop within %.0f s", STOP_SECONDS_MAX)


async def start_in_process(database_url: str, settings: Settings, clock: Clock) -> WorkerHandle:
    """Start a worker in a thread of this process (`kring serve`)."""
    started: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = (
        concurrent.futures.Future()
    )

    async def run() -> None:
        stop_event = asyncio.Event()
        started.set_result((asyncio.get_running_loop(), stop_event))
        task = asyncio.create_task(keep_worker_running(database_url, settings, clock, stop_event))
        await stop_event.wait()
        try:
            await asyncio.wait_for(task, STOP_SECONDS_MAX)
        except TimeoutError:
            log.warning("job worker did not stop within %.0f s; cancelled it", STOP_SECONDS_MAX)

    thread = threading.Thread(target=asyncio.run, args=(run(),), name="kring-job-worker")
    thread.daemon = True
    thread.start()
    loop, stop_event = await asyncio.wrap_future(started)
    return WorkerHandle(thread, loop, stop_event)


async def main_worker(database_url: str, settings: Settings, clock: Clock) -> None:
    """The `kring worker` process: run until SIGINT or SIGTERM, then finish
    the running jobs and return."""
    from api.payments.providers import configure_payments

    configure_payments(settings)  # renewals pay through the configured provider
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows; there Ctrl+C still ends the process, as KeyboardInterrupt.
        with suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop_event.set)
    log.info("job worker started; periodic jobs every %d s", settings.job_interval_seconds)
    await keep_worker_running(database_url, settings, clock, stop_event)
    log.info("job worker stopped")
