"""Bad input to the partner API, sent raw over HTTP.

DESIGN, "Errors and bad input": every refusal is a 4xx
`application/problem+json` with a stable `code` and a `detail` that says what
is wrong, never a 500, and never a partial write. Each test here sends one
kind of bad request and checks both halves: the exact problem, and that the
ledger (entries, postings, transactions, lots, idempotency keys, account
balances, members) is byte-for-byte what it was before.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from api.coalition.cards import CARD_PREFIX, luhn_check_digit
from api.coalition.members import set_member_status
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.ledger.lots import release_due
from api.money import AMOUNT_CENTS_MAX, POINTS_MAX
from tests.conftest import balances

PROBLEM = "application/problem+json"
P = "/partner/v1"
# Every table a partner API call can write to. Counts prove nothing was
# appended; the digest proves nothing was updated in place either.
TABLES = (
    "journal_entries",
    "postings",
    "transactions",
    "idempotency_keys",
    "lots",
    "hold_lots",
    "accounts",
    "members",
)
AUTO: Any = object()  # "send a fresh Idempotency-Key"


# Helpers (test_auth.py imports these) --------------------------------------


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and code."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith(PROBLEM), response.headers
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == response.status_code, body
    assert isinstance(body.get("detail"), str) and body["detail"].strip(), body
    return body


async def snapshot(pool: asyncpg.Pool, cards: tuple[str, ...] = ()) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for table in TABLES:
        row = await pool.fetchrow(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            f" AS digest FROM {table} t"
        )
        state[table] = (row["n"], row["digest"])
    for card in cards:
        state[f"balances:{card}"] = await balances(pool, card)
    return state


@asynccontextmanager
async def writes_nothing(pool: asyncpg.Pool, *cards: str) -> AsyncIterator[None]:
    before = await snapshot(pool, cards)
    yield
    after = await snapshot(pool, cards)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"a refused request wrote: {changed}"


async def token_for(http: httpx.AsyncClient, creds: Credentials) -> str:
    response = await http.post(
        f"{P}/token",
        json={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@dataclass
class Api:
    """Raw requests with a real token: headers and bodies exactly as given."""

    http: httpx.AsyncClient
    token: str

    def headers(self, key: Any = AUTO, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        headers: dict[str, Any] = {"authorization": f"Bearer {self.token}"}
        if key is AUTO:
            headers["idempotency-key"] = f"test-{uuid.uuid4()}"
        elif key is not None:
            headers["idempotency-key"] = key
        return headers | (extra or {})

    async def post(
        self,
        path: str,
        json: Any = AUTO,
        *,
        content: bytes | None = None,
        key: Any = AUTO,
        headers: dict[str, Any] | None = None,
    ) -> httpx.Response:
        if content is not None:
            extra = {"content-type": "application/json"} | (headers or {})
            return await self.http.post(P + path, content=content, headers=self.headers(key, extra))
        if json is AUTO:
            return await self.http.post(P + path, headers=self.headers(key, headers))
        return await self.http.post(P + path, json=json, headers=self.headers(key, headers))

    async def get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.get(P + path, params=params, headers=self.headers(key=None))


@dataclass
class Shop:
    creds: Credentials
    api: Api
    card: str  # a member with 100 available points
    earn_id: str  # the 100.00 EUR purchase that gave them


async def open_shop(make_partner, make_member, http, pool, clock) -> Shop:
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    api = Api(http, await token_for(http, creds))
    earn = await api.post("/earn", {"card_number": card, "amount_cents": 10_000, "currency": "EUR"})
    assert earn.status_code == 201, earn.text
    await release_due(pool, clock.now())
    assert await balances(pool, card) == {"available": 100, "pending": 0, "held": 0, "debt": 0}
    return Shop(creds, api, card, earn.json()["id"])


async def authorize(shop: Shop, points: int = 10, **extra: Any) -> str:
    response = await shop.api.post(
        "/burns/authorize", {"card_number": shop.card, "points": points, **extra}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def unissued_card() -> str:
    body = CARD_PREFIX + "".join(secrets.choice("0123456789") for _ in range(11))
    return body + luhn_check_digit(body)


def with_wrong_check_digit(card: str) -> str:
    return card[:-1] + str((int(card[-1]) + 1) % 10)


def cursor_of(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


@pytest.fixture
async def shop(make_partner, make_member, http, pool, clock) -> Shop:
    return await open_shop(make_partner, make_member, http, pool, clock)


# Amounts and points ---------------------------------------------------------


def bad_numbers(maximum: int) -> list[Any]:
    return [
        pytest.param(-1, id="negative"),
        pytest.param(-(2**64), id="very-negative"),
        pytest.param(0, id="zero"),
        pytest.param(maximum + 1, id="over-max"),
        pytest.param(2**63, id="2**63"),
        pytest.param(2**64, id="2**64"),
        pytest.param(10**30, id="10**30"),
        pytest.param(12.5, id="fraction"),
        pytest.param(True, id="bool"),
        pytest.param([5], id="list"),
        pytest.param({"value": 5}, id="object"),
        pytest.param("abc", id="word"),
        # Strict: a number in a string or a float is not an integer, even when Litestar's
        # lenient first pass would convert it.
        pytest.param("10", id="numeric-string"),
        pytest.param("1e1", id="exponent-string"),
        pytest.param(10.0, id="integral-float"),
    ]


@pytest.mark.parametrize("value", [*bad_numbers(AMOUNT_CENTS_MAX), pytest.param(None, id="null")])
@pytest.mark.parametrize("endpoint", ["earn", "refund"])
async def test_bad_amount_is_refused_and_writes_nothing(shop, pool, endpoint, value):
    if endpoint == "earn":
        path, body = "/earn", {"card_number": shop.card, "amount_cents": value, "currency": "EUR"}
    else:
        path, body = (
            f"/transactions/{shop.earn_id}/refunds",
            {"amount_cents": value, "currency": "EUR"},
        )
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(path, body)
    problem = assert_problem(response, 422, "invalid_request")
    assert "amount_cents" in problem["detail"]


@pytest.mark.parametrize("value", [*bad_numbers(POINTS_MAX), pytest.param(None, id="null")])
@pytest.mark.parametrize("endpoint", ["/burns/authorize", "/burns"])
async def test_bad_points_for_a_burn_is_refused_and_writes_nothing(shop, pool, endpoint, value):
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(endpoint, {"card_number": shop.card, "points": value})
    problem = assert_problem(response, 422, "invalid_request")
    assert "points" in problem["detail"]


@pytest.mark.parametrize("value", bad_numbers(POINTS_MAX))
async def test_bad_points_for_a_capture_is_refused_and_writes_nothing(shop, pool, value):
    hold = await authorize(shop, points=10)
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(f"/burns/{hold}/capture", {"points": value})
    problem = assert_problem(response, 422, "invalid_request")
    assert "points" in problem["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/earn", {"currency": "EUR"}, "amount_cents"),
        ("/earn", {"amount_cents": 100}, "currency"),
        ("/earn", {"amount_cents": 100, "currency": "EUR", "card_number": None}, "card_number"),
        ("/burns/authorize", {}, "points"),
        ("/burns", {}, "points"),
        ("refund", {"currency": "EUR"}, "amount_cents"),
        ("refund", {"amount_cents": 100}, "currency"),
    ],
)
async def test_missing_field_is_refused_and_writes_nothing(shop, pool, path, body, field):
    if path == "refund":
        path = f"/transactions/{shop.earn_id}/refunds"
    else:
        body = {"card_number": shop.card, **body}
        body = {k: v for k, v in body.items() if v is not None}
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(path, body)
    problem = assert_problem(response, 422, "invalid_request")
    assert field in problem["detail"]


# Currencies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "status", "code"),
    [
        ("XYZ", 422, "unknown_currency"),
        ("eur", 422, "unknown_currency"),
        ("EU", 422, "unknown_currency"),
        ("USD", 422, "currency_not_supported"),
        ("", 422, "invalid_request"),
        ("EURO-EURO", 422, "invalid_request"),  # over the 8-character limit
        (978, 422, "invalid_request"),
    ],
)
@pytest.mark.parametrize("endpoint", ["earn", "refund"])
async def test_bad_currency_is_refused_and_writes_nothing(
    shop, pool, endpoint, currency, status, code
):
    if endpoint == "earn":
        path, body = "/earn", {"card_number": shop.card, "amount_cents": 500, "currency": currency}
    else:
        path, body = (
            f"/transactions/{shop.earn_id}/refunds",
            {"amount_cents": 500, "currency": currency},
        )
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(path, body)
    assert_problem(response, status, code)


# Members and card numbers ---------------------------------------------------

WRITES = ["/earn", "/burns/authorize", "/burns"]


def body_for(path: str, card: str) -> dict[str, Any]:
    if path == "/earn":
        return {"card_number": card, "amount_cents": 1_000, "currency": "EUR"}
    return {"card_number": card, "points": 5}


@pytest.mark.parametrize("path", [*WRITES, "identify"])
async def test_unknown_member_is_404(shop, pool, path):
    card = unissued_card()
    async with writes_nothing(pool, shop.card):
        if path == "identify":
            response = await shop.api.get(f"/members/{card}")
        else:
            response = await shop.api.post(path, body_for(path, card))
    assert_problem(response, 404, "member_not_found")


@pytest.mark.parametrize(
    ("status", "code"), [("blocked", "member_blocked"), ("closed", "member_closed")]
)
@pytest.mark.parametrize("path", [*WRITES, "identify"])
async def test_blocked_or_closed_member_is_403_and_keeps_their_points(
    make_partner, make_member, http, pool, clock, path, status, code
):
    shop = await open_shop(make_partner, make_member, http, pool, clock)
    member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", shop.card)
    await transaction(pool, lambda conn: set_member_status(conn, member_id, status))
    async with writes_nothing(pool, shop.card):
        if path == "identify":
            response = await shop.api.get(f"/members/{shop.card}")
        else:
            response = await shop.api.post(path, body_for(path, shop.card))
    assert_problem(response, 403, code)
    assert await balances(pool, shop.card) == {"available": 100, "pending": 0, "held": 0, "debt": 0}


def bad_cards(card: str) -> list[str]:
    return [
        with_wrong_check_digit(card),
        card[:-1],  # 15 digits
        card + "0",  # 17 digits
        card[:4] + " " + card[4:8] + " " + card[8:12] + " " + card[12:],  # spaced
        "abcdefghijklmnop",
        "\uff16" * 16,  # full-width digits: isdigit() but not ASCII
    ]


@pytest.mark.parametrize("path", [*WRITES, "identify"])
async def test_bad_card_number_is_422_invalid_card_number(shop, pool, path):
    for card in bad_cards(shop.card):
        async with writes_nothing(pool, shop.card):
            if path == "identify":
                response = await shop.api.get(f"/members/{card}")
            else:
                response = await shop.api.post(path, body_for(path, card))
        assert_problem(response, 422, "invalid_card_number")


@pytest.mark.parametrize("path", WRITES)
@pytest.mark.parametrize(
    "card", ["", "6" * 33, 6048000000000000], ids=["empty", "too-long", "number"]
)
async def test_card_number_of_wrong_shape_is_invalid_request(shop, pool, path, card):
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(path, body_for(path, card))
    problem = assert_problem(response, 422, "invalid_request")
    assert "card_number" in problem["detail"]


# Malformed bodies ---------------------------------------------------------------

BODY_PATHS = ["/earn", "/burns/authorize", "/burns", "refund", "capture"]


async def body_path(shop: Shop, path: str) -> str:
    if path == "refund":
        return f"/transactions/{shop.earn_id}/refunds"
    if path == "capture":
        return f"/burns/{await authorize(shop)}/capture"
    return path


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        pytest.param(b'{"card_number": "6048', 400, "malformed_json", id="truncated"),
        pytest.param(b'{"points": 5,}', 400, "malformed_json", id="trailing-comma"),
        pytest.param(b"not json at all", 400, "malformed_json", id="not-json"),
        pytest.param(b"\xff\xfe\x00{", 400, "malformed_json", id="binary"),
        pytest.param(b'{"points": 1e400}', 400, "malformed_json", id="number-out-of-range"),
        pytest.param(b"[]", 422, "invalid_request", id="array"),
        pytest.param(b'[{"points": 5}]', 422, "invalid_request", id="array-of-object"),
        pytest.param(b'"points"', 422, "invalid_request", id="string"),
        pytest.param(b"42", 422, "invalid_request", id="number"),
    ],
)
@pytest.mark.parametrize("path", BODY_PATHS)
async def test_malformed_json_is_refused_and_writes_nothing(shop, pool, path, raw, status, code):
    target = await body_path(shop, path)
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(target, content=raw)
    assert_problem(response, status, code)


@pytest.mark.parametrize(
    ("raw", "status", "code"), [(b"", 422, "invalid_request"), (b"null", 422, "invalid_request")]
)
@pytest.mark.parametrize("path", ["/earn", "/burns/authorize", "/burns", "refund"])
async def test_empty_or_null_body_is_refused(shop, pool, path, raw, status, code):
    target = await body_path(shop, path)
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(target, content=raw)
    assert_problem(response, status, code)


@pytest.mark.parametrize("path", ["/earn", "/burns"])
async def test_form_body_is_malformed_json(shop, pool, path):
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(
            path,
            content=f"card_number={shop.card}&amount_cents=100&currency=EUR&points=5".encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert_problem(response, 400, "malformed_json")


@pytest.mark.parametrize("path", BODY_PATHS)
async def test_unknown_field_is_refused_and_writes_nothing(shop, pool, path):
    target = await body_path(shop, path)
    bodies = {
        "/earn": {"card_number": shop.card, "amount_cents": 100, "currency": "EUR"},
        "/burns/authorize": {"card_number": shop.card, "points": 5},
        "/burns": {"card_number": shop.card, "points": 5},
        "refund": {"amount_cents": 100, "currency": "EUR"},
        "capture": {"points": 5},
    }
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(target, {**bodies[path], "points_bonus": 1_000})
    problem = assert_problem(response, 422, "invalid_request")
    assert "points_bonus" in problem["detail"]


# Text limits, NUL bytes, body size ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("receipt_ref", "R" * 101),
        ("receipt_ref", ""),
        ("receipt_ref", 12345),
        ("store_id", "S" * 101),
        ("store_id", ""),
        ("hold_minutes", 0),
        ("hold_minutes", 7 * 24 * 60 + 1),
        ("hold_minutes", -5),
    ],
)
async def test_out_of_range_optional_fields_are_invalid_request(shop, pool, field, value):
    path = "/burns/authorize" if field == "hold_minutes" else "/earn"
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(path, {**body_for(path, shop.card), field: value})
    problem = assert_problem(response, 422, "invalid_request")
    assert field in problem["detail"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/earn", "receipt_ref"),
        ("/earn", "store_id"),
        ("/burns", "receipt_ref"),
        ("/burns/authorize", "store_id"),
        ("refund", "receipt_ref"),
    ],
)
async def test_nul_character_in_text_is_invalid_request(shop, pool, path, field):
    if path == "refund":
        target, body = (
            f"/transactions/{shop.earn_id}/refunds",
            {"amount_cents": 100, "currency": "EUR"},
        )
    else:
        target, body = path, body_for(path, shop.card)
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(target, {**body, field: "R-\u0000-1"})
    assert_problem(response, 422, "invalid_request")


async def test_huge_text_field_is_413(shop, pool):
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(
            "/earn", {**body_for("/earn", shop.card), "receipt_ref": "R" * 100_000}
        )
    assert_problem(response, 413, "request_too_large")


@pytest.mark.parametrize("path", ["/earn", "/burns", "refund"])
async def test_body_over_the_size_limit_is_413(shop, pool, path):
    target = await body_path(shop, path)
    raw = b'{"receipt_ref": "' + b"x" * 200_000 + b'"}'
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(target, content=raw)
    assert_problem(response, 413, "request_too_large")


async def test_oversized_body_without_content_length_is_413(shop, pool):
    async def chunks():
        for _ in range(50):
            yield b"x" * 4_096

    async with writes_nothing(pool, shop.card):
        response = await shop.api.http.post(
            f"{P}/earn",
            content=chunks(),
            headers=shop.api.headers(extra={"content-type": "application/json"}),
        )
    assert_problem(response, 413, "request_too_large")


# occurred_at ------------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        pytest.param(timedelta(hours=1), id="future"),
        pytest.param(timedelta(minutes=6), id="just-past-skew"),
        pytest.param(timedelta(days=365 * 100), id="far-future"),
        pytest.param(-timedelta(days=31), id="31-days-old"),
        pytest.param(-timedelta(days=365 * 20), id="ancient"),
    ],
)
@pytest.mark.parametrize("path", WRITES)
async def test_occurred_at_out_of_window_is_invalid_occurred_at(shop, pool, clock, path, when):
    occurred_at = (clock.now() + when).isoformat()
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(
            path, {**body_for(path, shop.card), "occurred_at": occurred_at}
        )
    assert_problem(response, 422, "invalid_occurred_at")


@pytest.mark.parametrize("path", WRITES)
async def test_occurred_at_without_time_zone_is_invalid_occurred_at(shop, pool, clock, path):
    naive = clock.now().replace(tzinfo=None).isoformat()
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(path, {**body_for(path, shop.card), "occurred_at": naive})
    assert_problem(response, 422, "invalid_occurred_at")


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-02-30T10:00:00Z", "9999-99-99", "0001-01-01T00:00:00+25:00", ""]
)
async def test_occurred_at_that_is_no_date_is_invalid_request(shop, pool, value):
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(
            "/earn", {**body_for("/earn", shop.card), "occurred_at": value}
        )
    problem = assert_problem(response, 422, "invalid_request")
    assert "occurred_at" in problem["detail"]


async def test_occurred_at_at_the_edges_of_the_window_is_accepted(shop, clock):
    for when in (-timedelta(days=29), timedelta(minutes=4)):
        body = {**body_for("/earn", shop.card), "occurred_at": (clock.now() + when).isoformat()}
        response = await shop.api.post("/earn", body)
        assert response.status_code == 201, response.text


# Idempotency ------------------------------------------------------------------


async def post_targets(shop: Shop) -> list[tuple[str, Any]]:
    hold = await authorize(shop)
    return [
        ("/earn", body_for("/earn", shop.card)),
        ("/burns/authorize", body_for("/burns/authorize", shop.card)),
        ("/burns", body_for("/burns", shop.card)),
        (f"/burns/{hold}/capture", {"points": 5}),
        (f"/burns/{hold}/void", AUTO),
        (f"/transactions/{shop.earn_id}/refunds", {"amount_cents": 100, "currency": "EUR"}),
    ]


@pytest.mark.parametrize("key", [None, ""], ids=["absent", "empty"])
async def test_every_post_without_an_idempotency_key_is_400(shop, pool, key):
    for path, body in await post_targets(shop):
        async with writes_nothing(pool, shop.card):
            response = await shop.api.post(path, body, key=key)
        problem = assert_problem(response, 400, "idempotency_key_missing")
        assert "Idempotency-Key" in problem["detail"]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k" * 256, id="256-chars"),
        pytest.param("k" * 5_000, id="5000-chars"),
        pytest.param("caf\xe9".encode("latin-1"), id="non-ascii"),
    ],
)
async def test_every_post_with_an_invalid_idempotency_key_is_400(shop, pool, key):
    for path, body in await post_targets(shop):
        async with writes_nothing(pool, shop.card):
            response = await shop.api.post(path, body, key=key)
        assert_problem(response, 400, "idempotency_key_invalid")


async def test_a_255_character_key_is_accepted(shop, pool):
    response = await shop.api.post("/earn", body_for("/earn", shop.card), key="k" * 255)
    assert response.status_code == 201, response.text


async def test_same_key_with_another_body_is_409_and_the_first_answer_stands(shop, pool):
    key = "till-3-receipt-77"
    first_body = {"card_number": shop.card, "amount_cents": 1_000, "currency": "EUR"}
    first = await shop.api.post("/earn", first_body, key=key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    for other in (
        {**first_body, "amount_cents": 99_900},
        {**first_body, "receipt_ref": "R-2"},
        {**first_body, "store_id": "S1"},
    ):
        async with writes_nothing(pool, shop.card):
            response = await shop.api.post("/earn", other, key=key)
        assert_problem(response, 409, "idempotency_conflict")
    # The same key on another endpoint is another request too.
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post("/burns", body_for("/burns", shop.card), key=key)
    assert_problem(response, 409, "idempotency_conflict")

    again = await shop.api.post("/earn", first_body, key=key)
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    stored = await shop.api.get(f"/transactions/{first.json()['id']}")
    assert (stored.json()["amount_cents"], stored.json()["points"]) == (1_000, 10)
    assert await balances(pool, shop.card) == {
        "available": 100,
        "pending": 10,
        "held": 0,
        "debt": 0,
    }


@pytest.mark.parametrize(
    "index", range(6), ids=["earn", "authorize", "burn", "capture", "void", "refund"]
)
async def test_same_key_with_the_same_body_replays_the_first_answer(shop, pool, index):
    path, body = (await post_targets(shop))[index]
    if path.endswith("/void"):  # a capture and a void of one hold cannot both succeed
        path, body = f"/burns/{await authorize(shop)}/void", AUTO
    key = f"replay-{index}"
    first = await shop.api.post(path, body, key=key)
    assert first.status_code in (200, 201), first.text
    assert "idempotent-replayed" not in first.headers
    async with writes_nothing(pool, shop.card):
        again = await shop.api.post(path, body, key=key)
        if body is not AUTO:  # other whitespace and key order: still the same request
            raw = json.dumps(dict(reversed(list(body.items()))), indent=4).encode()
            third = await shop.api.post(path, content=raw, key=key)
            assert (third.status_code, third.content) == (first.status_code, first.content)
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert again.headers["content-type"].startswith("application/json")
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_refused_request_does_not_use_up_its_key(shop, pool):
    key = "retry-after-fix"
    async with writes_nothing(pool, shop.card):
        refused = await shop.api.post(
            "/earn", {"card_number": shop.card, "amount_cents": 100, "currency": "USD"}, key=key
        )
    assert_problem(refused, 422, "currency_not_supported")
    fixed = await shop.api.post(
        "/earn", {"card_number": shop.card, "amount_cents": 100, "currency": "EUR"}, key=key
    )
    assert fixed.status_code == 201, fixed.text
    assert "idempotent-replayed" not in fixed.headers


async def test_keys_are_scoped_to_the_partner(make_partner, make_member, http, pool, clock):
    a = await open_shop(make_partner, make_member, http, pool, clock)
    b = await open_shop(make_partner, make_member, http, pool, clock)
    first = await a.api.post("/earn", body_for("/earn", a.card), key="shared-key")
    other = await b.api.post(
        "/earn", {**body_for("/earn", b.card), "amount_cents": 2_000}, key="shared-key"
    )
    assert (first.status_code, other.status_code) == (201, 201), other.text
    assert "idempotent-replayed" not in other.headers
    assert other.json()["id"] != first.json()["id"]
    assert other.json()["card_number"] == b.card


# Another partner's transactions, unknown ids ------------------------------------


async def test_another_partners_transactions_are_404_and_untouched(
    make_partner, make_member, http, pool, clock
):
    a = await open_shop(make_partner, make_member, http, pool, clock)
    b = await open_shop(make_partner, make_member, http, pool, clock)
    hold = await authorize(a, points=30)
    burn = await a.api.post("/burns", {"card_number": a.card, "points": 5})
    assert burn.status_code == 201
    attempts = [
        ("GET", f"/transactions/{a.earn_id}", None),
        ("GET", f"/transactions/{hold}", None),
        ("GET", f"/transactions/{burn.json()['id']}", None),
        ("POST", f"/burns/{hold}/capture", {"points": 10}),
        ("POST", f"/burns/{hold}/capture", AUTO),
        ("POST", f"/burns/{hold}/void", AUTO),
        ("POST", f"/burns/{burn.json()['id']}/void", AUTO),
        ("POST", f"/transactions/{a.earn_id}/refunds", {"amount_cents": 5_000, "currency": "EUR"}),
    ]
    for method, path, body in attempts:
        async with writes_nothing(pool, a.card, b.card):
            if method == "GET":
                response = await b.api.get(path)
            else:
                response = await b.api.post(path, body)
        assert_problem(response, 404, "transaction_not_found")
    # And A's hold is still whole: A can capture it.
    captured = await a.api.post(f"/burns/{hold}/capture", AUTO)
    assert (captured.status_code, captured.json()["points_captured"]) == (200, 30)


@pytest.mark.parametrize(
    ("method", "template", "body"),
    [
        ("GET", "/transactions/{}", None),
        ("POST", "/burns/{}/capture", AUTO),
        ("POST", "/burns/{}/void", AUTO),
        ("POST", "/transactions/{}/refunds", {"amount_cents": 100, "currency": "EUR"}),
    ],
)
async def test_unknown_or_malformed_transaction_ids(shop, pool, method, template, body):
    cases = [
        (str(uuid.uuid4()), 404, "transaction_not_found"),
        ("00000000-0000-0000-0000-000000000000", 404, "transaction_not_found"),
        ("not-a-uuid", 404, "not_found"),
        ("12345", 404, "not_found"),
        (str(uuid.uuid4()) + "0", 404, "not_found"),
    ]
    for ident, status, code in cases:
        path = template.format(ident)
        async with writes_nothing(pool, shop.card):
            response = await (shop.api.get(path) if method == "GET" else shop.api.post(path, body))
        assert_problem(response, status, code)


async def test_capture_or_void_of_an_earn_is_404(shop, pool):
    for action in ("capture", "void"):
        async with writes_nothing(pool, shop.card):
            response = await shop.api.post(f"/burns/{shop.earn_id}/{action}", AUTO)
        assert_problem(response, 404, "transaction_not_found")


# Burn state machine -------------------------------------------------------------


async def test_capture_after_void_is_409(shop, pool):
    hold = await authorize(shop, points=40)
    assert (await shop.api.post(f"/burns/{hold}/void", AUTO)).status_code == 200
    for action, body in (("capture", AUTO), ("capture", {"points": 1}), ("void", AUTO)):
        async with writes_nothing(pool, shop.card):
            response = await shop.api.post(f"/burns/{hold}/{action}", body)
        assert_problem(response, 409, "authorization_voided")
    assert await balances(pool, shop.card) == {"available": 100, "pending": 0, "held": 0, "debt": 0}


async def test_void_after_capture_is_409(shop, pool):
    hold = await authorize(shop, points=40)
    assert (await shop.api.post(f"/burns/{hold}/capture", {"points": 15})).status_code == 200
    for action, body in (("void", AUTO), ("capture", AUTO), ("capture", {"points": 25})):
        async with writes_nothing(pool, shop.card):
            response = await shop.api.post(f"/burns/{hold}/{action}", body)
        assert_problem(response, 409, "authorization_captured")
    assert await balances(pool, shop.card) == {"available": 85, "pending": 0, "held": 0, "debt": 0}


async def test_void_of_a_one_step_burn_is_409(shop, pool):
    burn = await shop.api.post("/burns", {"card_number": shop.card, "points": 7})
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(f"/burns/{burn.json()['id']}/void", AUTO)
    assert_problem(response, 409, "authorization_captured")


async def test_capture_after_the_deadline_is_409(shop, pool, clock):
    hold = await authorize(shop, points=20, hold_minutes=1)
    clock.advance(timedelta(minutes=1, seconds=1))
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(f"/burns/{hold}/capture", AUTO)
    assert_problem(response, 409, "authorization_expired")
    assert await balances(pool, shop.card) == {"available": 80, "pending": 0, "held": 20, "debt": 0}
    voided = await shop.api.post(f"/burns/{hold}/void", AUTO)  # the points can still go back
    assert voided.status_code == 200, voided.text


@pytest.mark.parametrize("points", [11, 1_000, POINTS_MAX])
async def test_capture_of_more_than_authorized_is_422(shop, pool, points):
    hold = await authorize(shop, points=10)
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(f"/burns/{hold}/capture", {"points": points})
    assert_problem(response, 422, "invalid_points")
    assert await balances(pool, shop.card) == {"available": 90, "pending": 0, "held": 10, "debt": 0}


@pytest.mark.parametrize("path", ["/burns/authorize", "/burns"])
async def test_burn_of_more_than_available_is_422(shop, pool, path):
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(path, {"card_number": shop.card, "points": 101})
    assert_problem(response, 422, "insufficient_points")


# Refunds ----------------------------------------------------------------------


@pytest.mark.parametrize("amount", [10_001, AMOUNT_CENTS_MAX])
async def test_refund_of_more_than_the_purchase_is_422(shop, pool, amount):
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(
            f"/transactions/{shop.earn_id}/refunds", {"amount_cents": amount, "currency": "EUR"}
        )
    assert_problem(response, 422, "refund_exceeds_purchase")


async def test_refund_past_what_is_left_is_422_then_409_when_all_is_refunded(shop, pool):
    path = f"/transactions/{shop.earn_id}/refunds"
    assert (
        await shop.api.post(path, {"amount_cents": 6_000, "currency": "EUR"})
    ).status_code == 201
    async with writes_nothing(pool, shop.card):
        response = await shop.api.post(path, {"amount_cents": 4_001, "currency": "EUR"})
    assert_problem(response, 422, "refund_exceeds_purchase")
    assert (
        await shop.api.post(path, {"amount_cents": 4_000, "currency": "EUR"})
    ).status_code == 201
    for amount in (1, 10_000):
        async with writes_nothing(pool, shop.card):
            response = await shop.api.post(path, {"amount_cents": amount, "currency": "EUR"})
        assert_problem(response, 409, "already_refunded")
    assert await balances(pool, shop.card) == {"available": 0, "pending": 0, "held": 0, "debt": 0}


async def test_refund_of_a_burn_or_a_refund_is_422_not_refundable(shop, pool):
    burn = await shop.api.post("/burns", {"card_number": shop.card, "points": 5})
    hold = await authorize(shop, points=5)
    refund = await shop.api.post(
        f"/transactions/{shop.earn_id}/refunds", {"amount_cents": 100, "currency": "EUR"}
    )
    assert (burn.status_code, refund.status_code) == (201, 201)
    for ident in (burn.json()["id"], hold, refund.json()["id"]):
        async with writes_nothing(pool, shop.card):
            response = await shop.api.post(
                f"/transactions/{ident}/refunds", {"amount_cents": 100, "currency": "EUR"}
            )
        assert_problem(response, 422, "not_refundable")


# Routes and methods -------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/partner/v1/nope", "/partner/v2/earn", "/partner/v1/earn/extra", "/partner", "/nope"]
)
async def test_unknown_route_is_404_problem(shop, path):
    for method in ("GET", "POST"):
        response = await shop.api.http.request(method, path, headers=shop.api.headers())
        assert_problem(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/earn"),
        ("PUT", "/earn"),
        ("DELETE", "/transactions"),
        ("POST", "/transactions"),
        ("PATCH", "/transactions/{earn}"),
        ("GET", "/burns/{earn}/capture"),
        ("DELETE", "/burns/{earn}/void"),
        ("POST", "/members/{card}"),
        ("GET", "/token"),
    ],
)
async def test_wrong_method_is_405_problem(shop, pool, method, path):
    path = P + path.format(earn=shop.earn_id, card=shop.card)
    async with writes_nothing(pool, shop.card):
        response = await shop.api.http.request(method, path, headers=shop.api.headers(), json={})
    assert_problem(response, 405, "method_not_allowed")


# Listing transactions -----------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("!!!", id="not-base64"),
        pytest.param("garbage", id="garbage"),
        pytest.param(cursor_of(b"2026-03-01T00:00:00+00:00|not-a-uuid"), id="bad-uuid"),
        pytest.param(cursor_of(b"yesterday|" + str(uuid.uuid4()).encode()), id="bad-date"),
        pytest.param(cursor_of(b"a|b|c"), id="three-parts"),
        pytest.param(cursor_of(b"\xff\xfe|\x00"), id="not-utf8"),
        pytest.param(cursor_of(b"99999-01-01|" + str(uuid.uuid4()).encode()), id="year-99999"),
        pytest.param("", id="empty"),
    ],
)
async def test_bad_cursor_is_400_invalid_cursor(shop, cursor):
    response = await shop.api.get("/transactions", {"cursor": cursor})
    problem = assert_problem(response, 400, "invalid_cursor")
    assert "cursor" in problem["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": -1},
        {"limit": 101},
        {"limit": 1000},
        {"limit": "ten"},
        {"limit": 2**64},
        {"kind": "bonus"},
        {"cursor": "c" * 201},
    ],
)
async def test_bad_list_parameters_are_422(shop, params):
    response = await shop.api.get("/transactions", params)
    problem = assert_problem(response, 422, "invalid_request")
    assert next(iter(params)) in problem["detail"]


async def test_a_partner_lists_only_its_own_transactions(
    make_partner, make_member, http, pool, clock
):
    a = await open_shop(make_partner, make_member, http, pool, clock)
    b = await open_shop(make_partner, make_member, http, pool, clock)
    await authorize(a, points=3)
    await authorize(b, points=4)
    for shop, other in ((a, b), (b, a)):
        own = {
            str(r["id"])
            for r in await pool.fetch(
                "SELECT t.id FROM transactions t JOIN partners p ON p.id = t.partner_id WHERE p.public_id = $1",
                shop.creds.partner_public_id,
            )
        }
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
            page = await shop.api.get("/transactions", params)
            assert page.status_code == 200, page.text
            seen += [item["id"] for item in page.json()["items"]]
            assert {item["card_number"] for item in page.json()["items"]} <= {shop.card}
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == len(own) == 2
        assert set(seen) == own
        whole = await shop.api.get("/transactions", {"limit": 100})
        assert {item["id"] for item in whole.json()["items"]} == own
        assert other.earn_id not in seen


async def test_writes_nothing_notices_a_write(shop, pool):
    """The guard used above is not vacuous: a real write trips it."""
    with pytest.raises(AssertionError, match="a refused request wrote"):
        async with writes_nothing(pool, shop.card):
            await shop.api.post("/burns", {"card_number": shop.card, "points": 1})
    hold = await authorize(shop, points=2)
    with pytest.raises(AssertionError, match="a refused request wrote"):
        async with writes_nothing(pool):  # an update in place, no new rows
            await pool.execute(
                "UPDATE transactions SET receipt_ref = 'x' WHERE id = $1", uuid.UUID(hold)
            )
