"""Housekeeping for the queue itself: pgqueuer keeps a log row for every
queued, picked and finished job and folds them into per-second statistics,
and deletes neither. The periodic jobs alone add some 26,000 log rows a day
at the default interval, so old rows are pruned."""

from __future__ import annotations

import logging
from datetime import timedelta

import asyncpg

log = logging.getLogger(__name__)

JOB_LOG_RETENTION = timedelta(days=14)
JOB_LOG_PRUNE_INTERVAL = timedelta(hours=1)
JOB_LOG_PRUNE_BATCH_ROWS_MAX = 10_000
_TABLES = ("pgqueuer_log", "pgqueuer_statistics")


async def prune_job_log(pool: asyncpg.Pool) -> int:
    """Delete queue log and statistics rows past JOB_LOG_RETENTION; returns how
    many. Batched so that a long backlog never holds one huge transaction.

    The cut-off is the database's NOW(), not the injected Clock: pgqueuer
    stamps these rows with the database's time, and a test clock set months
    ahead must not wipe the log.
    """
    deleted = 0
    for table in _TABLES:
        while True:
            status = await pool.execute(
                f"DELETE FROM {table} WHERE id IN"
                f" (SELECT id FROM {table} WHERE created < now() - $1::interval LIMIT $2)",
                JOB_LOG_RETENTION,
                JOB_LOG_PRUNE_BATCH_ROWS_MAX,
            )
            batch = int(status.rsplit(" ", 1)[1])  # "DELETE <rows>"
            deleted += batch
            if batch < JOB_LOG_PRUNE_BATCH_ROWS_MAX:
                break
    if deleted:
        log.info("pruned %d job log rows older than %s", deleted, JOB_LOG_RETENTION)
    return deleted
