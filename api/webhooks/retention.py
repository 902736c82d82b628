"""How long the webhook log is kept: events whose deliveries are all finished
(delivered, or failed: out of attempts or abandoned when the endpoint was
disabled) are deleted with their deliveries and attempts once they are
WEBHOOK_LOG_RETENTION old.

Never deleted: an event not yet fanned out, and an event with a delivery still
`pending` (being retried, or leased to a worker right now). Nothing turns a
finished delivery back into a pending one, and new deliveries are only made
for events not yet fanned out, so an event chosen here stays finished.

Retention counts from the event's creation (Kring's clock, like every other
timestamp in these tables). The last retry of a delivery comes about 26 hours
after the event (`WEBHOOK_ATTEMPTS_MAX` with backoff), far inside the window,
so the log of every finished delivery stays readable for about 30 days.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

log = logging.getLogger(__name__)

WEBHOOK_LOG_RETENTION_DAYS = 30
WEBHOOK_LOG_RETENTION = timedelta(days=WEBHOOK_LOG_RETENTION_DAYS)
WEBHOOK_LOG_PRUNE_INTERVAL = timedelta(hours=1)
# Each batch is one short statement (it commits by itself); a run stops after
# BATCHES_PER_RUN_MAX and the next run carries on, so a long backlog never
# holds one huge transaction or one endless run.
WEBHOOK_LOG_PRUNE_BATCH_EVENTS_MAX = 1_000
WEBHOOK_LOG_PRUNE_BATCHES_PER_RUN_MAX = 50

# One statement per batch: choose finished events, then delete their attempts,
# deliveries and the events. Foreign keys are checked at the end of the
# statement, when all three deletes are done. SKIP LOCKED: two runs at once
# (two workers) take different events instead of waiting on each other.
_PRUNE_BATCH = """
WITH batch AS (
    SELECT e.id FROM webhook_events e
    WHERE e.created_at < $1
      AND e.fanned_out_at IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending'
      )
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
gone_deliveries AS (
    DELETE FROM webhook_deliveries d USING batch b
    WHERE d.event_id = b.id AND d.status <> 'pending'
    RETURNING d.id
),
gone_attempts AS (
    DELETE FROM webhook_attempts a USING gone_deliveries g
    WHERE a.delivery_id = g.id
    RETURNING 1
),
gone_events AS (
    DELETE FROM webhook_events e USING batch b
    WHERE e.id = b.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone_events) AS events,
       (SELECT count(*) FROM gone_deliveries) AS deliveries,
       (SELECT count(*) FROM gone_attempts) AS attempts
"""


@dataclass(frozen=True, slots=True)
class PruneResult:
    events: int
    deliveries: int
    attempts: int


async def prune_webhook_log(
    pool: asyncpg.Pool,
    now: datetime,
    *,
    retention: timedelta = WEBHOOK_LOG_RETENTION,
    batch_events_max: int = WEBHOOK_LOG_PRUNE_BATCH_EVENTS_MAX,
    batches_max: int = WEBHOOK_LOG_PRUNE_BATCHES_PER_RUN_MAX,
) -> PruneResult:
    """Delete finished events older than `retention` (with their deliveries
    and attempts), in batches; returns how many rows of each went."""
    if retention <= timedelta(0) or batch_events_max < 1 or batches_max < 1:
        raise ValueError("retention, batch size and batch count must be positive")
    cutoff = now - retention
    events = deliveries = attempts = 0
    for _ in range(batches_max):
        row = await pool.fetchrow(_PRUNE_BATCH, cutoff, batch_events_max)
        assert row is not None  # an aggregate query always answers one row
        events += row["events"]
        deliveries += row["deliveries"]
        attempts += row["attempts"]
        if row["events"] < batch_events_max:
            break
    if events:
        log.info(
            "pruned the webhook log before %s: %d events, %d deliveries, %d attempts",
            cutoff.isoformat(),
            events,
            deliveries,
            attempts,
        )
    return PruneResult(events, deliveries, attempts)
