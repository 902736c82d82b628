"""The webhook log's retention job: finished events (every delivery delivered
or failed) older than WEBHOOK_LOG_RETENTION go with their deliveries and
attempts, in bounded batches; events still being retried, events not yet
fanned out and recent events stay."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.clock import ManualClock
from api.db.pool import transaction
from api.jobs.worker import scheduled_jobs
from api.webhooks.delivery import WEBHOOK_ATTEMPTS_MAX, WEBHOOK_BACKOFF_MAX, deliver_due, fan_out
from api.webhooks.outbox import STATEMENT_CLOSED, Event, enqueue
from api.webhooks.retention import (
    WEBHOOK_LOG_PRUNE_INTERVAL,
    WEBHOOK_LOG_RETENTION,
    WEBHOOK_LOG_RETENTION_DAYS,
    prune_webhook_log,
)

OLD_EARNS = 5
# The receivers, by path: "ok" takes everything, the others always fail.
_STATUS_BY_PATH = {"/ok": 200, "/gone": 503, "/flaky": 500}


def _receiver(request: httpx.Request) -> httpx.Response:
    return httpx.Response(_STATUS_BY_PATH[request.url.path])


RECEIVER = httpx.MockTransport(_receiver)


async def _deliver(pool: Any, clock: ManualClock) -> None:
    await fan_out(pool, clock.now())
    await deliver_due(pool, clock.now(), transport=RECEIVER)


async def _headers(http: httpx.AsyncClient, creds: Any) -> dict[str, str]:
    answer = await http.post(
        "/partner/v1/token",
        json={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    )
    assert answer.status_code == 200, answer.text
    return {
        "Authorization": f"Bearer {answer.json()['access_token']}",
        "Idempotency-Key": f"cleanup-{uuid.uuid4()}",
    }


async def _endpoint(http: httpx.AsyncClient, creds: Any, path: str) -> str:
    answer = await http.post(
        "/partner/v1/webhooks/endpoints",
        json={"url": f"http://127.0.0.1{path}"},
        headers=await _headers(http, creds),
    )
    assert answer.status_code == 201, answer.text
    endpoint_id: str = answer.json()["id"]
    return endpoint_id


async def _counts(pool: Any, partner_id: int) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM webhook_events WHERE partner_id = $1) AS events,"
        " (SELECT count(*) FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
        "  WHERE e.partner_id = $1) AS deliveries,"
        " (SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
        "  JOIN webhook_events e ON e.id = d.event_id WHERE e.partner_id = $1) AS attempts",
        partner_id,
    )
    return row["events"], row["deliveries"], row["attempts"]


def test_the_retention_is_named_and_the_job_runs_hourly(settings: Any, clock: ManualClock) -> None:
    assert WEBHOOK_LOG_RETENTION == timedelta(days=WEBHOOK_LOG_RETENTION_DAYS) == timedelta(days=30)
    jobs = {job.name: job for job in scheduled_jobs(settings, pool=None, clock=clock)}  # type: ignore[arg-type]
    assert jobs["prune_webhook_log"].interval == WEBHOOK_LOG_PRUNE_INTERVAL == timedelta(hours=1)


async def test_a_run_is_bounded_and_the_next_run_carries_on(
    make_partner: Any,
    make_member: Any,
    client_for: Any,
    http: httpx.AsyncClient,
    pool: Any,
    clock: ManualClock,
) -> None:
    shop = await make_partner()
    card = await make_member()
    await _endpoint(http, shop, "/ok")
    async with client_for(shop) as client:
        for n in range(5):
            await client.earn(card, 1_000 + n, "EUR")
    await _deliver(pool, clock)
    clock.advance(WEBHOOK_LOG_RETENTION + timedelta(minutes=1))
    first = await prune_webhook_log(pool, clock.now(), batch_events_max=2, batches_max=2)
    assert first.events == 4 and (await _counts(pool, shop.partner_id))[0] == 1
    second = await prune_webhook_log(pool, clock.now(), batch_events_max=2, batches_max=2)
    assert second.events == 1 and await _counts(pool, shop.partner_id) == (0, 0, 0)
    with pytest.raises(ValueError):
        await prune_webhook_log(pool, clock.now(), retention=timedelta(0))


async def test_finished_events_past_retention_go_and_nothing_still_retrying_does(
    make_partner: Any,
    make_member: Any,
    client_for: Any,
    http: httpx.AsyncClient,
    pool: Any,
    clock: ManualClock,
) -> None:
    start = clock.now()
    shop, flaky_shop = await make_partner(), await make_partner()
    card = await make_member()
    await _endpoint(http, shop, "/ok")
    gone = await _endpoint(http, shop, "/gone")
    await _endpoint(http, flaky_shop, "/flaky")

    async with client_for(shop) as client:
        for n in range(OLD_EARNS):
            await client.earn(card, 1_000 + n, "EUR")
    async with client_for(flaky_shop) as client:
        await client.earn(card, 2_000, "EUR")
    await _deliver(pool, clock)
    # Disabling "gone" abandons its pending deliveries: they become `failed`.
    disabled = await http.post(
        f"/partner/v1/webhooks/endpoints/{gone}/disable", headers=await _headers(http, shop)
    )
    assert disabled.status_code == 200, disabled.text
    assert await _counts(pool, shop.partner_id) == (OLD_EARNS, 2 * OLD_EARNS, 2 * OLD_EARNS)
    statuses = await pool.fetch(
        "SELECT d.status, count(*) AS n FROM webhook_deliveries d"
        " JOIN webhook_events e ON e.id = d.event_id WHERE e.partner_id = $1 GROUP BY d.status",
        shop.partner_id,
    )
    assert {r["status"]: r["n"] for r in statuses} == {"delivered": OLD_EARNS, "failed": OLD_EARNS}

    # Two hours later: one more sale, delivered; it is inside the retention at the end.
    clock.advance(timedelta(hours=2))
    async with client_for(shop) as client:
        recent = await client.earn(card, 3_000, "EUR")
    await _deliver(pool, clock)  # also retries the flaky delivery: still pending
    # An old event that was never fanned out (a fan-out still to come) must stay.
    unfanned = Event(STATEMENT_CLOSED, b'{"statement": "old"}')
    await transaction(pool, lambda conn: enqueue(conn, shop.partner_id, unfanned, now=start))

    clock.set(start + WEBHOOK_LOG_RETENTION + timedelta(hours=1))
    # Not a minute past retention for the recent sale; the old ones are an hour past.
    before = await _counts(pool, shop.partner_id)
    flaky_before = await _counts(pool, flaky_shop.partner_id)
    assert flaky_before == (1, 1, 2)

    pruned = await prune_webhook_log(pool, clock.now(), batch_events_max=2)
    assert (pruned.events, pruned.deliveries, pruned.attempts) == (
        OLD_EARNS,
        2 * OLD_EARNS,
        2 * OLD_EARNS,
    )
    assert await _counts(pool, shop.partner_id) == (
        before[0] - OLD_EARNS,
        before[1] - 2 * OLD_EARNS,
        before[2] - 2 * OLD_EARNS,
    )
    left = await pool.fetch(
        "SELECT type, payload, fanned_out_at IS NULL AS unfanned FROM webhook_events"
        " WHERE partner_id = $1 ORDER BY created_at",
        shop.partner_id,
    )
    assert [(r["type"], r["unfanned"]) for r in left] == [
        ("statement.closed", True),
        ("points.earned", False),
    ]
    assert str(recent.id) in left[1]["payload"]
    # The event still being retried keeps its delivery and every attempt.
    assert await _counts(pool, flaky_shop.partner_id) == flaky_before
    # Nothing more to do: a second run deletes nothing.
    assert (await prune_webhook_log(pool, clock.now())).events == 0

    # Once the flaky delivery runs out of attempts it is finished, and goes too.
    while (
        await pool.fetchval(
            "SELECT status FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
            " WHERE e.partner_id = $1",
            flaky_shop.partner_id,
        )
        == "pending"
    ):
        clock.advance(WEBHOOK_BACKOFF_MAX * 2)
        await deliver_due(pool, clock.now(), transport=RECEIVER)
    assert await _counts(pool, flaky_shop.partner_id) == (1, 1, WEBHOOK_ATTEMPTS_MAX)
    pruned = await prune_webhook_log(pool, clock.now())
    assert await _counts(pool, flaky_shop.partner_id) == (0, 0, 0)
    assert pruned.attempts >= WEBHOOK_ATTEMPTS_MAX
