"""Webhooks end to end: ledger writes announce events in their own statement,
the job delivers them signed to a real HTTP receiver on loopback, failures
are retried with backoff and logged, rolled-back writes announce nothing,
and secret rotation signs with both secrets for its grace period only."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from api.db.pool import transaction
from api.errors import DomainError
from api.ledger import refund
from api.ledger.burn import expire_holds
from api.ledger.lots import release_due
from api.webhooks.delivery import WEBHOOK_BACKOFF_BASE, WEBHOOK_BACKOFF_JITTER, run_webhooks
from api.webhooks.outbox import STATEMENT_CLOSED, Event, enqueue
from api.webhooks.urls import validate_webhook_url
from partners.client import PartnerApiError
from partners.webhooks import WebhookSignatureError, verify_signature


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.body)
        return decoded


class Receiver:
    """A tiny HTTP/1.1 server on 127.0.0.1 that records every POST and answers
    with scripted statuses per path (200 when the script is empty)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: dict[str, deque[int]] = defaultdict(deque)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == "/" + path]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            _method, path, _version = head[0].split(" ", 2)
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in head[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            script = self.script[path.lstrip("/")]
            status = script.popleft() if script else 200
            self.requests.append(Received(path, headers, body, status))
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture(scope="module")
async def receiver():
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


async def token(http, creds) -> dict[str, str]:
    answer = await http.post(
        "/partner/v1/token",
        json={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def create_endpoint(http, creds, url: str) -> dict[str, Any]:
    answer = await http.post(
        "/partner/v1/webhooks/endpoints",
        json={"url": url},
        headers={**await token(http, creds), "Idempotency-Key": f"ep-{uuid.uuid4()}"},
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def deliveries(http, creds, endpoint_id: str, **params: Any) -> dict[str, Any]:
    answer = await http.get(
        f"/partner/v1/webhooks/endpoints/{endpoint_id}/deliveries",
        params=params,
        headers=await token(http, creds),
    )
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


def verify(received: Received, secrets: list[str], clock) -> None:
    verify_signature(
        received.body,
        received.headers.get("kring-signature"),
        secrets,
        now=clock.now().timestamp(),
    )


async def events_of(pool, creds) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM webhook_events WHERE partner_id = $1", creds.partner_id
    )
    return count


async def test_ledger_writes_are_delivered_signed_and_verify_with_the_kit(
    make_partner, make_member, client_for, http, pool, clock, receiver
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    endpoint = await create_endpoint(http, creds, receiver.url("ledger"))
    async with client_for(creds) as client:
        earned = await client.earn(card, 5_000, "EUR")
        refunded = await client.refund(earned.id, 1_000, "EUR")
        await release_due(pool, clock.now())
        burned = await client.burn(card, 10)
        held = await client.authorize(card, 5, hold_minutes=1)
    clock.advance(timedelta(minutes=2))
    assert await expire_holds(pool, clock.now()) == 1

    result = await run_webhooks(pool, clock.now())
    assert result.fanned_out == result.delivered == 5

    got = receiver.at("ledger")
    by_type = {r.headers["kring-event-type"]: r for r in got}
    assert set(by_type) == {
        "points.earned",
        "points.refunded",
        "points.released",
        "points.burned",
        "burn.authorization_expired",
    }
    for received in got:
        verify(received, [endpoint["secret"]], clock)
        assert received.headers["kring-event-id"] == received.event["id"]
        assert received.event["type"] == received.headers["kring-event-type"]
    # The payload of an API write is the very answer the till got.
    assert by_type["points.earned"].event["data"]["id"] == str(earned.id)
    assert by_type["points.earned"].event["data"]["points"] == earned.points == 50
    assert by_type["points.refunded"].event["data"]["id"] == str(refunded.id)
    assert by_type["points.burned"].event["data"]["id"] == str(burned.id)
    assert by_type["points.burned"].event["data"]["status"] == "captured"
    released = by_type["points.released"].event["data"]
    assert (released["transaction_id"], released["points"]) == (str(earned.id), 40)
    expired = by_type["burn.authorization_expired"].event["data"]
    assert (expired["transaction_id"], expired["points"]) == (str(held.id), 5)

    # A tampered body does not verify.
    with pytest.raises(WebhookSignatureError):
        verify_signature(
            got[0].body.replace(b"points", b"pOints"),
            got[0].headers["kring-signature"],
            [endpoint["secret"]],
            now=clock.now().timestamp(),
        )
    # Delivered once: the next run has nothing to do.
    assert (await run_webhooks(pool, clock.now())).delivered == 0
    assert len(receiver.at("ledger")) == 5


async def test_a_failing_receiver_is_retried_with_backoff_and_the_attempts_are_logged(
    make_partner, make_member, client_for, http, pool, clock, receiver
):
    creds = await make_partner()
    card = await make_member()
    endpoint = await create_endpoint(http, creds, receiver.url("flaky"))
    receiver.script["flaky"].extend([500, 500])
    async with client_for(creds) as client:
        await client.earn(card, 1_000, "EUR")

    await run_webhooks(pool, clock.now())
    assert [r.status for r in receiver.at("flaky")] == [500]
    # Not before the first backoff has passed...
    clock.advance(WEBHOOK_BACKOFF_BASE - timedelta(seconds=1))
    await run_webhooks(pool, clock.now())
    assert len(receiver.at("flaky")) == 1
    # ...and due once it has (with its jitter).
    clock.advance(WEBHOOK_BACKOFF_BASE * WEBHOOK_BACKOFF_JITTER + timedelta(seconds=2))
    await run_webhooks(pool, clock.now())
    assert [r.status for r in receiver.at("flaky")] == [500, 500]
    # The second wait doubles.
    clock.advance(2 * WEBHOOK_BACKOFF_BASE - timedelta(seconds=1))
    await run_webhooks(pool, clock.now())
    assert len(receiver.at("flaky")) == 2
    clock.advance(2 * WEBHOOK_BACKOFF_BASE * WEBHOOK_BACKOFF_JITTER + timedelta(seconds=2))
    await run_webhooks(pool, clock.now())
    assert [r.status for r in receiver.at("flaky")] == [500, 500, 200]
    assert len({r.headers["kring-event-id"] for r in receiver.at("flaky")}) == 1
    for received in receiver.at("flaky"):
        verify(received, [endpoint["secret"]], clock)

    page = await deliveries(http, creds, endpoint["id"])
    [delivery] = page["items"]
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 3
    assert delivery["event_type"] == "points.earned"
    log = delivery["attempt_log"]
    assert [a["status_code"] for a in log] == [500, 500, 200]
    assert all(a["duration_ms"] >= 0 and a["error"] is None for a in log)


async def test_nothing_is_announced_or_delivered_for_a_write_that_did_not_happen(
    make_partner, make_member, client_for, http, pool, clock, receiver, monkeypatch
):
    creds = await make_partner()
    card = await make_member()
    await create_endpoint(http, creds, receiver.url("rollback"))
    async with client_for(creds) as client:
        earned = await client.earn(card, 2_000, "EUR")
        with pytest.raises(PartnerApiError) as refused:
            await client.burn(card, 1_000)
        assert refused.value.code == "insufficient_points"
    assert await events_of(pool, creds) == 1  # the earn

    real_apply = refund.apply_refund

    async def apply_then_fail(conn, plan, claim):
        await real_apply(conn, plan, claim)
        # The refund statement, its event included, ran; now its transaction rolls back.
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM webhook_events WHERE partner_id = $1", creds.partner_id
            )
            == 2
        )
        raise RuntimeError("deliberate rollback after the ledger statement")

    monkeypatch.setattr(refund, "apply_refund", apply_then_fail)
    answer = await http.post(
        f"/partner/v1/transactions/{earned.id}/refunds",
        json={"amount_cents": 500, "currency": "EUR"},
        headers={**await token(http, creds), "Idempotency-Key": "rolled-back-refund"},
    )
    assert answer.status_code == 500
    monkeypatch.undo()
    assert await events_of(pool, creds) == 1

    await run_webhooks(pool, clock.now())
    assert [r.headers["kring-event-type"] for r in receiver.at("rollback")] == ["points.earned"]


async def test_a_partner_without_endpoints_writes_no_events(
    make_partner, make_member, client_for, http, pool, clock, receiver
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        earned = await client.earn(card, 3_000, "EUR")
        await client.refund(earned.id, 1_000, "EUR")
        await release_due(pool, clock.now())
        await client.burn(card, 5)
    assert await events_of(pool, creds) == 0

    # A disabled endpoint counts as none.
    endpoint = await create_endpoint(http, creds, receiver.url("disabled"))
    answer = await http.post(
        f"/partner/v1/webhooks/endpoints/{endpoint['id']}/disable",
        headers={**await token(http, creds), "Idempotency-Key": "disable-1"},
    )
    assert answer.status_code == 200 and answer.json()["disabled_at"] is not None
    async with client_for(creds) as client:
        await client.earn(card, 3_000, "EUR")
    assert await events_of(pool, creds) == 0


async def test_concurrent_runs_deliver_each_event_once_and_the_log_pages(
    make_partner, make_member, client_for, http, pool, clock, receiver
):
    creds = await make_partner()
    card = await make_member()
    endpoint = await create_endpoint(http, creds, receiver.url("busy"))
    async with client_for(creds) as client:
        earns = await asyncio.gather(*(client.earn(card, 100 + i, "EUR") for i in range(12)))
    await asyncio.gather(*(run_webhooks(pool, clock.now()) for _ in range(3)))

    got = receiver.at("busy")
    assert sorted(r.event["data"]["id"] for r in got) == sorted(str(e.id) for e in earns)

    seen: list[int] = []
    cursor = None
    for _ in range(10):
        page = await deliveries(
            http, creds, endpoint["id"], limit=5, **({"cursor": cursor} if cursor else {})
        )
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 12
    assert seen == sorted(seen, reverse=True)


async def test_endpoint_writes_are_idempotent(make_partner, http, receiver):
    creds = await make_partner()
    headers = {**await token(http, creds), "Idempotency-Key": "create-once"}
    url = receiver.url("idem")
    first = await http.post("/partner/v1/webhooks/endpoints", json={"url": url}, headers=headers)
    again = await http.post("/partner/v1/webhooks/endpoints", json={"url": url}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = await http.post(
        "/partner/v1/webhooks/endpoints", json={"url": url + "x"}, headers=headers
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    listed = await http.get("/partner/v1/webhooks/endpoints", headers=headers)
    assert [e["id"] for e in listed.json()["items"]] == [first.json()["id"]]
    assert "secret" not in listed.json()["items"][0]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://127.0.0.1/hook", "invalid_webhook_url"),
        ("not a url", "invalid_webhook_url"),
        ("https://", "invalid_webhook_url"),
        ("https://example.com:99999/hook", "invalid_webhook_url"),
        ("http://example.com/hook", "webhook_url_not_https"),
        ("https://user:password@example.com/hook", "webhook_url_credentials"),
        ("https://example.com/" + "a" * 2000, "webhook_url_too_long"),
    ],
)
async def test_bad_urls_are_refused_with_a_problem_code(make_partner, http, pool, url, code):
    creds = await make_partner()
    answer = await http.post(
        "/partner/v1/webhooks/endpoints",
        json={"url": url},
        headers={**await token(http, creds), "Idempotency-Key": "bad-url"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == code
    assert not await pool.fetchval(
        "SELECT count(*) FROM webhook_endpoints WHERE partner_id = $1", creds.partner_id
    )


async def test_webhook_writes_need_a_key_and_see_only_own_endpoints(make_partner, http, receiver):
    owner, other = await make_partner(), await make_partner()
    answer = await http.post(
        "/partner/v1/webhooks/endpoints",
        json={"url": receiver.url("x")},
        headers=await token(http, owner),
    )
    assert answer.status_code == 400 and answer.json()["code"] == "idempotency_key_missing"
    endpoint = await create_endpoint(http, owner, receiver.url("mine"))
    for path in ("rotate-secret", "disable"):
        answer = await http.post(
            f"/partner/v1/webhooks/endpoints/{endpoint['id']}/{path}",
            headers={**await token(http, other), "Idempotency-Key": f"steal-{path}"},
        )
        assert answer.status_code == 404
        assert answer.json()["code"] == "webhook_endpoint_not_found"
    answer = await http.get(
        f"/partner/v1/webhooks/endpoints/{endpoint['id']}/deliveries",
        headers=await token(http, other),
    )
    assert answer.status_code == 404
    answer = await http.get(
        f"/partner/v1/webhooks/endpoints/{endpoint['id']}/deliveries",
        params={"cursor": "not-a-cursor"},
        headers=await token(http, owner),
    )
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_cursor"


async def test_enqueue_announces_outside_a_ledger_statement(
    make_partner, http, pool, clock, receiver
):
    with_endpoint, without = await make_partner(), await make_partner()
    await create_endpoint(http, with_endpoint, receiver.url("statements"))

    async def close_statements(conn):
        for creds in (with_endpoint, without):
            event = Event(STATEMENT_CLOSED, b'{"statement_id": "s-1"}')
            await enqueue(conn, creds.partner_id, event, now=clock.now())

    await transaction(pool, close_statements)
    assert (await events_of(pool, with_endpoint), await events_of(pool, without)) == (1, 0)
    await run_webhooks(pool, clock.now())
    [received] = receiver.at("statements")
    assert received.event["type"] == STATEMENT_CLOSED
    assert received.event["data"] == {"statement_id": "s-1"}


def test_production_requires_https_to_a_public_address():
    assert validate_webhook_url("https://hooks.example.com/k", "production")
    assert validate_webhook_url("http://localhost:8080/k", "development")
    for url, code in [
        ("http://localhost:8080/k", "webhook_url_not_https"),
        ("https://127.0.0.1/k", "webhook_url_internal"),
        ("https://10.1.2.3/k", "webhook_url_internal"),
        ("https://169.254.169.254/latest", "webhook_url_internal"),
        ("https://[::1]/k", "webhook_url_internal"),
    ]:
        with pytest.raises(DomainError) as refused:
            validate_webhook_url(url, "production")
        assert refused.value.code == code, url


# Last in the module: it moves the clock a day on.
async def test_rotation_signs_with_both_secrets_until_the_old_one_expires(
    make_partner, make_member, client_for, http, pool, clock, receiver
):
    creds = await make_partner()
    card = await make_member()
    endpoint = await create_endpoint(http, creds, receiver.url("rotation"))
    old = endpoint["secret"]
    answer = await http.post(
        f"/partner/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret",
        headers={**await token(http, creds), "Idempotency-Key": "rotate-1"},
    )
    assert answer.status_code == 200, answer.text
    new = answer.json()["secret"]
    assert new != old

    async with client_for(creds) as client:
        await client.earn(card, 1_000, "EUR")
    await run_webhooks(pool, clock.now())
    [during] = receiver.at("rotation")
    assert during.headers["kring-signature"].count("v1=") == 2
    verify(during, [new], clock)
    verify(during, [old], clock)

    clock.advance(timedelta(hours=24, minutes=1))
    async with client_for(creds) as client:  # a new client: the old token expired
        await client.earn(card, 1_000, "EUR")
    await run_webhooks(pool, clock.now())
    after = receiver.at("rotation")[1]
    assert after.headers["kring-signature"].count("v1=") == 1
    verify(after, [new], clock)
    with pytest.raises(WebhookSignatureError, match="no signature matches"):
        verify(after, [old], clock)
    # The receiver's replay window: the first delivery is refused a day later.
    with pytest.raises(WebhookSignatureError, match="timestamp"):
        verify(during, [new], clock)
