"""The partner kit (client and POS simulator) against an in-memory fake of /partner/v1.

No server, no database: `httpx.MockTransport` answers from `FakeKring`, which
keeps just enough state (tokens, idempotency keys, transactions) to check what
the kit sends and how it reads the answers.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from partners.client import PartnerApiError, PartnerClient, Transaction
from partners.pos_simulator import Simulator, basket_cents
from partners.pos_simulator.cli import load_cards

BASE = "http://kring.test"
NOW = "2025-03-01T12:00:00Z"


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1_000.0

    def __call__(self) -> float:
        return self.now_s


async def no_sleep(_: float) -> None:
    return None


def problem(status: int, code: str, detail: str) -> httpx.Response:
    body = {"type": "about:blank", "title": "x", "status": status, "detail": detail, "code": code}
    return httpx.Response(
        status, content=json.dumps(body), headers={"Content-Type": "application/problem+json"}
    )


class FakeKring:
    """A tiny stand-in for the partner API. Hooks let a test break it on purpose."""

    def __init__(self, *, expires_in: int = 900, available_points: int = 0) -> None:
        self.expires_in = expires_in
        self.available_points = available_points
        self.tokens_issued = 0
        self.valid_tokens: set[str] = set()
        self.requests: list[httpx.Request] = []
        self.answers: dict[
            str, tuple[bytes, int, bytes]
        ] = {}  # key -> (request body, status, body)
        self.transactions: dict[str, dict[str, Any]] = {}
        self.keys_seen: Counter[str] = Counter()
        # Called first for every request; a returned response short-circuits.
        self.before: Callable[[httpx.Request], httpx.Response | None] | None = None

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.before is not None and (early := self.before(request)) is not None:
            return early
        path = request.url.path.removeprefix("/partner/v1")
        if path == "/token":
            body = json.loads(request.content)
            if body != {
                "grant_type": "client_credentials",
                "client_id": "cid",
                "client_secret": "secret",
            }:
                return problem(401, "invalid_client", "unknown client")
            self.tokens_issued += 1
            token = f"tok-{self.tokens_issued}"
            self.valid_tokens.add(token)
            return httpx.Response(
                200,
                json={"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in},
            )
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid_tokens:
            return problem(401, "token_expired", "the access token has expired")
        if request.method == "GET":
            return self.read(path, request)
        key = request.headers.get("Idempotency-Key")
        if not key:
            return problem(400, "idempotency_key_missing", "every POST needs an Idempotency-Key")
        self.keys_seen[key] += 1
        if key in self.answers:
            sent, status, answer = self.answers[key]
            if sent != request.content:
                return problem(409, "idempotency_conflict", "different request")
            return httpx.Response(
                status,
                content=answer,
                headers={"Idempotent-Replayed": "true", "Content-Type": "application/json"},
            )
        response = self.write(path, json.loads(request.content))
        self.answers[key] = (request.content, response.status_code, response.content)
        return response

    def read(self, path: str, request: httpx.Request) -> httpx.Response:
        if path.startswith("/members/"):
            card = path.removeprefix("/members/")
            if card == "0000":
                return problem(404, "member_not_found", "no member with that card")
            return httpx.Response(
                200,
                json={
                    "member_id": str(uuid.UUID(int=int(card) if card.isdigit() else 1)),
                    "card_number": card,
                    "status": "active",
                    "available_points": self.available_points,
                    "pending_points": 0,
                },
            )
        if path == "/transactions":
            ordered = list(self.transactions.values())
            limit = int(request.url.params.get("limit", "100"))
            start = int(request.url.params.get("cursor", "0"))
            page = ordered[start : start + limit]
            nxt = str(start + limit) if start + limit < len(ordered) else None
            return httpx.Response(200, json={"items": page, "next_cursor": nxt})
        tx = self.transactions.get(path.removeprefix("/transactions/"))
        if tx is None:
            return problem(404, "transaction_not_found", "no such transaction")
        return httpx.Response(200, json=tx)

    def write(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if path == "/earn":
            return self.new_tx("earn", "pending", body, points=body["amount_cents"] // 100)
        if path in ("/burns", "/burns/authorize"):
            if body["points"] > self.available_points:
                return problem(422, "insufficient_points", "not enough points")
            status = "captured" if path == "/burns" else "authorized"
            return self.new_tx("burn", status, body, points=body["points"])
        parts = path.strip("/").split("/")
        tx = self.transactions.get(parts[1])
        if tx is None:
            return problem(404, "transaction_not_found", "no such transaction")
        if parts[0] == "burns" and parts[2] == "capture":
            tx.update(status="captured", points_captured=body.get("points", tx["points"]))
            return httpx.Response(200, json=tx)
        if parts[0] == "burns" and parts[2] == "void":
            tx.update(status="voided")
            return httpx.Response(200, json=tx)
        # refunds
        left = tx["amount_cents"] - tx["amount_refunded_cents"]
        if body["amount_cents"] > left:
            return problem(422, "refund_exceeds_purchase", "more than was paid")
        tx["amount_refunded_cents"] += body["amount_cents"]
        return self.new_tx("refund", "done", body, points=0, original_id=tx["id"])

    def new_tx(
        self,
        kind: str,
        status: str,
        body: dict[str, Any],
        *,
        points: int,
        original_id: str | None = None,
    ) -> httpx.Response:
        tx_id = str(uuid.uuid4())
        tx = {
            "id": tx_id,
            "kind": kind,
            "status": status,
            "member_id": str(uuid.UUID(int=1)),
            "card_number": body.get("card_number", "1"),
            "points": points,
            "amount_cents": body.get("amount_cents"),
            "currency": body.get("currency"),
            "points_captured": 0,
            "points_refunded": 0,
            "amount_refunded_cents": 0,
            "debt_points": 0,
            "debt_repaid_points": 0,
            "price_micros": 10_000,
            "receipt_ref": body.get("receipt_ref"),
            "store_id": body.get("store_id"),
            "original_id": original_id,
            "occurred_at": NOW,
            "created_at": NOW,
            "available_at": NOW if kind == "earn" else None,
            "hold_expires_at": NOW if status == "authorized" else None,
            "finished_at": None,
        }
        self.transactions[tx_id] = tx
        return httpx.Response(201, json=tx)


def make_client(
    fake: FakeKring, *, clock: FakeClock | None = None, max_retries: int = 2, base: str = BASE
) -> PartnerClient:
    return PartnerClient(
        base,
        "cid",
        "secret",
        transport=fake.transport(),
        max_retries=max_retries,
        clock=clock or FakeClock(),
        sleep=no_sleep,
    )


def posts(fake: FakeKring, suffix: str) -> list[httpx.Request]:
    return [r for r in fake.requests if r.method == "POST" and r.url.path.endswith(suffix)]


# --- tokens ------------------------------------------------------------------


async def test_token_is_fetched_once_and_sent_as_bearer() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        await kring.identify("1234")
        await kring.identify("1234")
    assert fake.tokens_issued == 1
    gets = [r for r in fake.requests if r.method == "GET"]
    assert [r.headers["Authorization"] for r in gets] == ["Bearer tok-1", "Bearer tok-1"]


async def test_concurrent_first_calls_share_one_token_request() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        await asyncio.gather(*(kring.identify("1234") for _ in range(20)))
    assert fake.tokens_issued == 1


async def test_token_is_refreshed_shortly_before_it_expires() -> None:
    fake = FakeKring(expires_in=600)  # refresh margin: 30 s
    clock = FakeClock()
    async with make_client(fake, clock=clock) as kring:
        await kring.identify("1234")
        clock.now_s += 569
        await kring.identify("1234")
        assert fake.tokens_issued == 1
        clock.now_s += 2  # 29 s left
        await kring.identify("1234")
        assert fake.tokens_issued == 2


async def test_short_lived_tokens_get_a_proportional_margin() -> None:
    fake = FakeKring(expires_in=10)  # margin: a tenth, 1 s
    clock = FakeClock()
    async with make_client(fake, clock=clock) as kring:
        await kring.identify("1234")
        clock.now_s += 8.5
        await kring.identify("1234")
        assert fake.tokens_issued == 1
        clock.now_s += 1
        await kring.identify("1234")
        assert fake.tokens_issued == 2


async def test_a_401_gets_one_new_token_and_one_retry() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        await kring.identify("1234")
        fake.valid_tokens.clear()  # the server rotated its key, say
        member = await kring.identify("1234")
    assert member.card_number == "1234"
    assert fake.tokens_issued == 2
    assert fake.requests[-1].headers["Authorization"] == "Bearer tok-2"


async def test_a_second_401_is_raised() -> None:
    fake = FakeKring()

    def always_401(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/token"):
            return None
        return problem(401, "invalid_token", "the access token is invalid")

    fake.before = always_401
    async with make_client(fake) as kring:
        with pytest.raises(PartnerApiError) as caught:
            await kring.identify("1234")
    assert (caught.value.status, caught.value.code) == (401, "invalid_token")
    assert fake.tokens_issued == 2


async def test_wrong_credentials_raise_the_token_error() -> None:
    fake = FakeKring()
    kring = PartnerClient(BASE, "cid", "wrong", transport=fake.transport())
    async with kring:
        with pytest.raises(PartnerApiError) as caught:
            await kring.earn("1234", 100, "EUR")
    assert (caught.value.status, caught.value.code) == (401, "invalid_client")


# --- idempotency and retries -------------------------------------------------


async def test_every_write_gets_a_fresh_key_unless_one_is_given() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        await kring.earn("1234", 1000, "EUR")
        await kring.earn("1234", 1000, "EUR")
        await kring.earn("1234", 1000, "EUR", idempotency_key="till-7-receipt-42")
    keys = [r.headers["Idempotency-Key"] for r in posts(fake, "/earn")]
    assert len(set(keys)) == 3
    assert str(uuid.UUID(keys[0])) == keys[0]
    assert keys[2] == "till-7-receipt-42"


async def test_a_repeat_with_the_same_key_is_marked_replayed() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        first = await kring.earn("1234", 1000, "EUR", idempotency_key="k1")
        again = await kring.earn("1234", 1000, "EUR", idempotency_key="k1")
    assert not first.replayed
    assert again.replayed
    assert again.id == first.id
    assert len(fake.transactions) == 1


@pytest.mark.parametrize("failure", ["503", "timeout", "connection"])
async def test_failed_attempts_are_retried_with_the_same_key(failure: str) -> None:
    fake = FakeKring()
    failures_left = 2

    def flaky(request: httpx.Request) -> httpx.Response | None:
        nonlocal failures_left
        if not request.url.path.endswith("/earn") or failures_left == 0:
            return None
        failures_left -= 1
        if failure == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if failure == "connection":
            raise httpx.ConnectError("refused", request=request)
        return problem(503, "unavailable", "try again")

    fake.before = flaky
    async with make_client(fake, max_retries=2) as kring:
        earn = await kring.earn("1234", 2599, "EUR")
    attempts = posts(fake, "/earn")
    assert len(attempts) == 3
    assert len({r.headers["Idempotency-Key"] for r in attempts}) == 1
    assert len({r.content for r in attempts}) == 1
    assert earn.amount_cents == 2599


async def test_a_timeout_after_the_server_wrote_is_answered_by_a_replay() -> None:
    """The write happened but the answer was lost: the retry must not earn twice."""
    fake = FakeKring()
    lost = False

    def lose_first_answer(request: httpx.Request) -> httpx.Response | None:
        nonlocal lost
        if request.url.path.endswith("/earn") and not lost:
            lost = True
            fake.before = None
            fake.handle(request)  # the server writes and answers...
            fake.before = lose_first_answer
            raise httpx.ReadTimeout("answer lost", request=request)  # ...into the void
        return None

    fake.before = lose_first_answer
    async with make_client(fake) as kring:
        earn = await kring.earn("1234", 1000, "EUR")
    assert earn.replayed
    assert len(fake.transactions) == 1


async def test_retries_are_bounded_and_end_in_a_transport_error() -> None:
    fake = FakeKring()

    def down(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/token"):
            return None
        raise httpx.ReadTimeout("slow", request=request)

    fake.before = down
    async with make_client(fake, max_retries=3) as kring:
        with pytest.raises(PartnerApiError) as caught:
            await kring.void(uuid.uuid4())
    assert (caught.value.status, caught.value.code) == (0, "timeout")
    assert caught.value.retryable
    assert len(posts(fake, "/void")) == 4


async def test_client_errors_are_not_retried() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        with pytest.raises(PartnerApiError):
            await kring.burn("1234", 50)
    assert len(posts(fake, "/burns")) == 1


# --- errors ------------------------------------------------------------------


async def test_problem_json_is_decoded_into_the_error() -> None:
    fake = FakeKring(available_points=10)
    async with make_client(fake) as kring:
        with pytest.raises(PartnerApiError) as caught:
            await kring.burn("1234", 50)
    error = caught.value
    assert (error.status, error.code, error.detail) == (
        422,
        "insufficient_points",
        "not enough points",
    )
    assert error.body["status"] == 422
    assert not error.retryable


async def test_a_non_json_error_gets_a_code_from_its_status() -> None:
    fake = FakeKring()
    fake.before = lambda r: (
        None
        if r.url.path.endswith("/token")
        else httpx.Response(502, text="<html>bad gateway</html>")
    )
    async with make_client(fake, max_retries=0) as kring:
        with pytest.raises(PartnerApiError) as caught:
            await kring.get_transaction(uuid.uuid4())
    assert (caught.value.status, caught.value.code) == (502, "http_502")
    assert caught.value.body == "<html>bad gateway</html>"


async def test_an_answer_off_the_contract_is_an_error_not_a_crash() -> None:
    fake = FakeKring()
    fake.before = lambda r: (
        None if r.url.path.endswith("/token") else httpx.Response(200, json={"card_number": 12})
    )
    async with make_client(fake) as kring:
        with pytest.raises(PartnerApiError) as caught:
            await kring.identify("1234")
    assert caught.value.code == "invalid_response"


async def test_not_found_keeps_the_server_code() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        with pytest.raises(PartnerApiError) as caught:
            await kring.identify("0000")
    assert (caught.value.status, caught.value.code) == (404, "member_not_found")


# --- what goes over the wire -------------------------------------------------


async def test_bodies_leave_out_unset_fields_and_send_times_as_iso() -> None:
    fake = FakeKring(available_points=100)
    async with make_client(fake) as kring:
        await kring.earn("1234", 1999, "EUR")
        await kring.earn(
            "1234",
            1999,
            "EUR",
            receipt_ref="R1",
            store_id="S1",
            occurred_at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        )
        hold = await kring.authorize("1234", 40, hold_minutes=15)
        await kring.capture(hold.id)
        await kring.capture(hold.id, 10)
        await kring.void(hold.id)
    earns = [json.loads(r.content) for r in posts(fake, "/earn")]
    assert earns[0] == {"card_number": "1234", "amount_cents": 1999, "currency": "EUR"}
    assert earns[1]["occurred_at"] == "2025-03-01T09:30:00Z"
    assert json.loads(posts(fake, "/authorize")[0].content)["hold_minutes"] == 15
    captures = [json.loads(r.content) for r in posts(fake, "/capture")]
    assert captures == [{}, {"points": 10}]
    assert posts(fake, "/void")[0].content == b"{}"


async def test_base_url_may_name_the_api_prefix_or_not() -> None:
    for base in (BASE, BASE + "/", BASE + "/partner/v1", BASE + "/partner/v1/"):
        fake = FakeKring()
        async with make_client(fake, base=base) as kring:
            await kring.identify("1234")
        assert fake.requests[-1].url.path == "/partner/v1/members/1234"


async def test_path_segments_are_escaped() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        with pytest.raises(PartnerApiError):
            await kring.get_transaction("../members/1")
    assert fake.requests[-1].url.raw_path == b"/partner/v1/transactions/..%2Fmembers%2F1"


async def test_refund_and_reads_decode_into_kit_structs() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        earn = await kring.earn("1234", 5000, "EUR")
        refund = await kring.refund(earn.id, 2000, "EUR", receipt_ref="RET-1")
        again = await kring.get_transaction(earn.id)
    assert isinstance(refund, Transaction)
    assert (refund.kind, refund.original_id) == ("refund", earn.id)
    assert again.amount_refunded_cents == 2000
    assert isinstance(again.occurred_at, datetime)


async def test_iterating_follows_cursors_to_the_last_page() -> None:
    fake = FakeKring()
    async with make_client(fake) as kring:
        for n in range(7):
            await kring.earn("1234", 100 + n, "EUR")
        seen = [tx.amount_cents async for tx in kring.iter_transactions(kind="earn", page_size=3)]
    assert seen == [100, 101, 102, 103, 104, 105, 106]
    lists = [r for r in fake.requests if r.url.path.endswith("/transactions")]
    assert [r.url.params.get("cursor") for r in lists] == [None, "3", "6"]
    assert {r.url.params["kind"] for r in lists} == {"earn"}


# --- the POS simulator -------------------------------------------------------


def test_basket_sizes_are_integer_cents_with_a_long_tail() -> None:
    import random

    rng = random.Random(7)
    baskets = [basket_cents(rng) for _ in range(20_000)]
    assert all(isinstance(b, int) and 50 <= b <= 200_000 for b in baskets)
    assert 1_500 <= statistics.median(baskets) <= 3_500
    assert 0.005 < sum(b >= 50_000 for b in baskets) / len(baskets) < 0.02


async def test_simulator_mixes_operations_and_never_over_refunds() -> None:
    fake = FakeKring(available_points=500)
    async with make_client(fake, max_retries=0) as kring:
        simulator = Simulator(
            kring, ["1111", "2222", "3333"], workers=4, duration_s=0.5, seed=1, sleep=no_sleep
        )
        summary = await simulator.run()
    ops = summary.operations
    assert ops["earn"].ok > 50
    for name in ("burn", "authorize", "refund", "identify"):
        assert ops[name].ok > 0, name
    assert ops["capture"].ok + ops["void"].ok > 0
    assert summary.unexpected_errors == 0
    assert not [code for (_, code) in summary.errors if code == "refund_exceeds_purchase"]
    # Each write used its own key exactly once: nothing was sent twice.
    assert set(fake.keys_seen.values()) == {1}
    assert "earn" in summary.render()


async def test_simulator_retries_server_errors_with_the_same_key() -> None:
    fake = FakeKring()
    attempts: Counter[str] = Counter()

    def fail_first_try(request: httpx.Request) -> httpx.Response | None:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or key is None:
            return None
        attempts[key] += 1
        return problem(503, "unavailable", "busy") if attempts[key] == 1 else None

    fake.before = fail_first_try
    async with make_client(fake, max_retries=0) as kring:
        summary = await Simulator(
            kring, ["1111"], workers=2, duration_s=0.2, seed=2, sleep=no_sleep
        ).run()
    assert summary.operations["earn"].retries == summary.operations["earn"].ok > 0
    assert set(attempts.values()) == {2}
    assert summary.unexpected_errors == 0


async def test_simulator_counts_errors_by_code() -> None:
    fake = FakeKring()
    async with make_client(fake, max_retries=0) as kring:
        summary = await Simulator(
            kring, ["0000"], workers=1, duration_s=0.1, seed=3, sleep=no_sleep
        ).run()
    assert summary.errors[("identify", "member_not_found")] > 0


def test_cards_file_accepts_the_kring_member_create_output(tmp_path: Any) -> None:
    path = tmp_path / "cards.json"
    path.write_text(json.dumps(["6280000000000018", "6280000000000026"]))
    assert load_cards(path) == ["6280000000000018", "6280000000000026"]
    path.write_text(json.dumps([{"card_number": "6280000000000018"}]))
    assert load_cards(path) == ["6280000000000018"]
    path.write_text("6280000000000018\n6280000000000026\n")
    assert load_cards(path) == ["6280000000000018", "6280000000000026"]
