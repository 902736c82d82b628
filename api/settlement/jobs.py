"""Settlement started from the back-office, as a job whose progress any API
process can show.

Why not the pgqueuer queue: its workers run only where `kring serve` runs
jobs or a `kring worker` runs, and there the periodic `settle_statements` job
already settles every ended day on its own. An admin pressing "Run" wants a
day settled now, by the process they are talking to, with progress they can
watch; so the request is recorded in `settlement_jobs` (one per target day:
starting the same day twice finds the first job) and run by the API process
as a task, each day in its own transaction through `settle_day`, which is
itself safe beside the periodic job (a day is claimed once). A job whose
process died stops beating; after JOB_STALE it counts as failed and the day
can be started again, continuing where the runs stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg

from api.admin_auth import audit
from api.admin_auth.principal import AdminPrincipal
from api.clock import Clock
from api.db.pool import transaction
from api.errors import Conflict, DomainError
from api.settlement.approval import run_of_day
from api.settlement.periods import day_end
from api.settlement.run import CATCH_UP_DAYS_MAX, settle_day, unsettled_days

log = logging.getLogger(__name__)

JOB_STALE = timedelta(minutes=5)
ERROR_CHARS_MAX = 500


@dataclass(frozen=True, slots=True)
class SettlementJob:
    id: int
    business_date: date
    status: str  # running, done, failed
    days_total: int
    days_done: int
    current_day: date | None
    error: str | None
    requested_by_email: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def percent(self) -> int:
        return 100 if self.days_total == 0 else self.days_done * 100 // self.days_total


@dataclass(frozen=True, slots=True)
class Started:
    """A job to watch, or (when the day was settled already) the run to open."""

    job: SettlementJob | None
    run_id: int | None
    created: bool


_JOB_SELECT = """
SELECT j.id, j.business_date, j.status, j.days_total, j.days_done, j.current_day, j.error,
       a.email AS requested_by_email, j.created_at, j.finished_at
FROM settlement_jobs j JOIN admin_accounts a ON a.id = j.requested_by_admin_id
"""


async def get_job(db: asyncpg.Pool | asyncpg.Connection, job_id: int) -> SettlementJob | None:
    row = await db.fetchrow(_JOB_SELECT + " WHERE j.id = $1", job_id)
    return None if row is None else SettlementJob(**dict(row))


async def recent_jobs(db: asyncpg.Pool | asyncpg.Connection, limit: int) -> list[SettlementJob]:
    rows = await db.fetch(_JOB_SELECT + " ORDER BY j.created_at DESC, j.id DESC LIMIT $1", limit)
    return [SettlementJob(**dict(r)) for r in rows]


async def start_job(
    pool: asyncpg.Pool, target: date, admin: AdminPrincipal, now: datetime
) -> Started:
    """Record a job settling every unsettled day up to `target`; the caller runs it
    (`run_job`) when `created`. Refusals are DomainErrors and write nothing."""
    if day_end(target) > now:
        raise DomainError(f"{target} has not ended yet", code="period_not_over")

    async def claim(conn: asyncpg.Connection) -> Started:
        # One start at a time: the check and the insert below see the same world.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kring:settlement_jobs'))")
        existing = await conn.fetchrow(
            "SELECT id, status, heartbeat_at FROM settlement_jobs"
            " WHERE business_date = $1 AND status <> 'failed'",
            target,
        )
        if existing is not None and existing["status"] == "running":
            if existing["heartbeat_at"] >= now - JOB_STALE:  # still at work: watch it
                return Started(await get_job(conn, existing["id"]), None, False)
            await conn.execute(
                "UPDATE settlement_jobs SET status = 'failed', finished_at = $2,"
                " error = 'stopped: its process went away' WHERE id = $1",
                existing["id"],
                now,
            )
        settled = await run_of_day(conn, target)
        if settled is not None:  # by a finished job, the periodic job or `kring settle`
            return Started(None, settled, False)
        days = await unsettled_days(conn, target)
        if not days:
            raise Conflict(
                f"{target} comes before the last settled day; its entries are already"
                " in later statements",
                code="settlement_out_of_order",
            )
        if len(days) > CATCH_UP_DAYS_MAX:
            raise Conflict(
                f"{len(days) - 1}+ days are unsettled before {target}: settle up to"
                f" {days[CATCH_UP_DAYS_MAX - 1]} first",
                code="settlement_gap",
            )
        job_id = await conn.fetchval(
            "INSERT INTO settlement_jobs (business_date, requested_by_admin_id, days_total,"
            " created_at, heartbeat_at) VALUES ($1, $2, $3, $4, $4) RETURNING id",
            target,
            admin.admin_id,
            len(days),
            now,
        )
        await audit.record(
            conn,
            admin,
            "settlement.run.start",
            f"settlement_run:{target.isoformat()}",
            None,
            {"days": [day.isoformat() for day in days]},
            now,
        )
        return Started(await get_job(conn, job_id), None, True)

    return await transaction(pool, claim)


async def run_job(pool: asyncpg.Pool, job_id: int, admin_id: int, clock: Clock) -> None:
    """Settle the job's days in order, one transaction each, recording progress.
    A failure is recorded on the job (and logged); days settled before it stay."""
    target = await pool.fetchval("SELECT business_date FROM settlement_jobs WHERE id = $1", job_id)
    try:
        # Read again now: the periodic job may have settled some days meanwhile.
        days = await unsettled_days(pool, target)
        await pool.execute(
            "UPDATE settlement_jobs SET days_total = days_done + $2 WHERE id = $1",
            job_id,
            len(days),
        )
        for day in days:
            await pool.execute(
                "UPDATE settlement_jobs SET current_day = $2, heartbeat_at = $3 WHERE id = $1",
                job_id,
                day,
                clock.now(),
            )
            await settle_day(pool, day, clock.now(), started_by_admin_id=admin_id)
            await pool.execute(
                "UPDATE settlement_jobs SET days_done = days_done + 1, heartbeat_at = $2"
                " WHERE id = $1",
                job_id,
                clock.now(),
            )
    except Exception as failure:
        log.exception("settlement job %d failed", job_id)
        detail = failure.detail if isinstance(failure, DomainError) else "an internal error"
        await pool.execute(
            "UPDATE settlement_jobs SET status = 'failed', error = $2, finished_at = $3"
            " WHERE id = $1",
            job_id,
            detail[:ERROR_CHARS_MAX],
            clock.now(),
        )
        return
    await pool.execute(
        "UPDATE settlement_jobs SET status = 'done', current_day = NULL, finished_at = $2"
        " WHERE id = $1",
        job_id,
        clock.now(),
    )
