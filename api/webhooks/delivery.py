"""The webhook job: fan new events out to deliveries, then deliver what is due.

At least once: a delivery is leased (its `next_attempt_at` pushed past the
lease) in a short transaction before the HTTP call, and its outcome written
after. A worker that dies mid-call leaves the lease to run out, and the
delivery is tried again; a receiver may therefore see an event twice and
should de-duplicate on `Kring-Event-Id`. Events only exist once the ledger
write that made them committed (the outbox), so a rolled-back write is never
announced.

Several workers are safe: fan-out and leasing take rows with
`FOR UPDATE SKIP LOCKED`, so each event is fanned out once and each due
delivery goes to one worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec

from api.webhooks.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)

log = logging.getLogger(__name__)

FAN_OUT_BATCH_MAX = 500
DELIVERY_BATCH_MAX = 100
# Batches per run: a run ends within a bounded time, the next run carries on.
DELIVERY_BATCHES_PER_RUN_MAX = 10
DELIVERY_CONCURRENCY_MAX = 16
DELIVERY_TIMEOUT_SECONDS = 5.0
# Longer than any attempt can take (timeout, plus connect), so a live lease
# is never taken over; a dead worker's lease runs out after this.
DELIVERY_LEASE = timedelta(seconds=60)
# Attempt n (1-based) failing waits BACKOFF_BASE * 2^(n-1), capped, plus up to
# BACKOFF_JITTER of that, so receivers that fail together do not retry together.
WEBHOOK_BACKOFF_BASE = timedelta(seconds=30)
WEBHOOK_BACKOFF_MAX = timedelta(hours=6)
WEBHOOK_BACKOFF_JITTER = 0.2
# 12 attempts span about 26 hours (30 s doubling to the 6 h cap), then `failed`.
WEBHOOK_ATTEMPTS_MAX = 12
ERROR_CHARS_MAX = 500
USER_AGENT = "Kring-Webhooks/1"


@dataclass(frozen=True, slots=True)
class RunResult:
    fanned_out: int
    delivered: int
    failed_attempts: int


def backoff(attempts: int, *, jitter: float | None = None) -> timedelta:
    """How long after failed attempt number `attempts` (1-based) to try again."""
    doublings = min(max(attempts - 1, 0), WEBHOOK_ATTEMPTS_MAX)
    delay = min(WEBHOOK_BACKOFF_BASE * (1 << doublings), WEBHOOK_BACKOFF_MAX)
    spread = random.uniform(0, WEBHOOK_BACKOFF_JITTER) if jitter is None else jitter
    return delay * (1 + spread)


_FAN_OUT = """
WITH batch AS (
    SELECT id, partner_id FROM webhook_events
    WHERE fanned_out_at IS NULL
    ORDER BY created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
made AS (
    INSERT INTO webhook_deliveries (event_id, endpoint_id, next_attempt_at)
    SELECT b.id, w.id, $1 FROM batch b
    JOIN webhook_endpoints w ON w.partner_id = b.partner_id AND w.disabled_at IS NULL
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
)
UPDATE webhook_events e SET fanned_out_at = $1 FROM batch b WHERE e.id = b.id
"""


async def fan_out(pool: asyncpg.Pool, now: datetime) -> int:
    """One delivery per new event and active endpoint of its partner; returns
    how many events were fanned out."""
    total = 0
    while True:
        status = await pool.execute(_FAN_OUT, now, FAN_OUT_BATCH_MAX)
        count = int(status.rsplit(" ", 1)[-1])
        total += count
        if count < FAN_OUT_BATCH_MAX:
            return total


_LEASE = """
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN webhook_endpoints w ON w.id = d.endpoint_id AND w.disabled_at IS NULL
    WHERE d.status = 'pending' AND d.next_attempt_at <= $1
    ORDER BY d.next_attempt_at
    LIMIT $3
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d SET next_attempt_at = $2
FROM due, webhook_events e, webhook_endpoints w
WHERE d.id = due.id AND e.id = d.event_id AND w.id = d.endpoint_id
RETURNING d.id, d.attempts, e.id AS event_id, e.type, e.created_at, e.payload::text AS payload,
          w.url, w.secret, w.previous_secret, w.previous_secret_expires_at
"""

_RECORD = """
WITH attempt AS (
    INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, error, duration_ms)
    VALUES ($1, $2, $3, $4, $5)
)
UPDATE webhook_deliveries
SET attempts = attempts + 1,
    status = CASE WHEN $6 THEN 'delivered'
                  WHEN attempts + 1 >= $7 THEN 'failed'
                  ELSE 'pending' END,
    delivered_at = CASE WHEN $6 THEN $2 END,
    next_attempt_at = CASE WHEN $6 THEN next_attempt_at ELSE $8 END
WHERE id = $1 AND status = 'pending'
"""


class _Envelope(msgspec.Struct, kw_only=True):
    id: str
    type: str
    created_at: datetime
    data: msgspec.Raw


def body_of(record: asyncpg.Record) -> bytes:
    """What is posted: the event's id, type and time around its payload."""
    return msgspec.json.encode(
        _Envelope(
            id=str(record["event_id"]),
            type=record["type"],
            created_at=record["created_at"],
            data=msgspec.Raw(record["payload"].encode()),
        )
    )


@dataclass(frozen=True, slots=True)
class _Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def _post(client: httpx.AsyncClient, record: asyncpg.Record, now: datetime) -> _Outcome:
    body = body_of(record)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: str(record["event_id"]),
        EVENT_TYPE_HEADER: record["type"],
        SIGNATURE_HEADER: signature_header(
            body,
            secret=record["secret"],
            previous_secret=record["previous_secret"],
            previous_secret_expires_at=record["previous_secret_expires_at"],
            now=now,
        ),
    }
    started = time.monotonic()
    try:
        # Streamed and never read: only the status matters, and a receiver
        # cannot make Kring download a large answer.
        async with client.stream("POST", record["url"], content=body, headers=headers) as answer:
            status_code: int | None = answer.status_code
        error = None
    except httpx.HTTPError as exc:
        status_code, error = None, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS_MAX]
    duration_ms = int((time.monotonic() - started) * 1000)
    return _Outcome(status_code, error, duration_ms)


async def _record(
    pool: asyncpg.Pool, record: asyncpg.Record, outcome: _Outcome, now: datetime
) -> None:
    retry_at = now + backoff(record["attempts"] + 1)
    await pool.execute(
        _RECORD,
        record["id"],
        now,
        outcome.status_code,
        outcome.error,
        outcome.duration_ms,
        outcome.delivered,
        WEBHOOK_ATTEMPTS_MAX,
        retry_at,
    )


async def deliver_due(
    pool: asyncpg.Pool, now: datetime, *, transport: Any = None
) -> tuple[int, int]:
    """Attempt every delivery due at `now` (bounded per run); returns
    (delivered, failed attempts)."""
    delivered = failed = 0
    limit = asyncio.Semaphore(DELIVERY_CONCURRENCY_MAX)
    async with httpx.AsyncClient(
        timeout=DELIVERY_TIMEOUT_SECONDS, follow_redirects=False, transport=transport
    ) as client:

        async def attempt(record: asyncpg.Record) -> bool:
            async with limit:
                outcome = await _post(client, record, now)
            await _record(pool, record, outcome, now)
            return outcome.delivered

        for _ in range(DELIVERY_BATCHES_PER_RUN_MAX):
            leased = await pool.fetch(_LEASE, now, now + DELIVERY_LEASE, DELIVERY_BATCH_MAX)
            results = await asyncio.gather(*(attempt(r) for r in leased))
            delivered += sum(results)
            failed += len(results) - sum(results)
            if len(leased) < DELIVERY_BATCH_MAX:
                break
    return delivered, failed


async def run_webhooks(pool: asyncpg.Pool, now: datetime) -> RunResult:
    fanned_out = await fan_out(pool, now)
    delivered, failed = await deliver_due(pool, now)
    if fanned_out or delivered or failed:
        log.info(
            "webhooks: %d events fanned out, %d delivered, %d attempts failed",
            fanned_out,
            delivered,
            failed,
        )
    return RunResult(fanned_out, delivered, failed)
