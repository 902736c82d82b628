"""GET /partner/v1/statements: a partner's closed statements, newest first with
a cursor, one with its lines, its CSV streamed; another partner's statement is
not found; bad cursors, ids and limits get their own problem codes. Then the
partner kit's client against the same app: statements, statement,
statement_csv and reconcile."""

from __future__ import annotations

import base64
import csv
import io
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from api.clock import ManualClock
from api.coalition.partners import Credentials, set_partner_status
from api.db.pool import transaction
from api.ledger.lots import release_due
from api.settlement.periods import business_date, day_end, local_midnight
from api.settlement.run import settle_due
from partners.client import PartnerApiError, PartnerClient
from partners.client.models import ReconciliationRow

P = "/partner/v1"
CSV_HEADER = [
    "record",
    "category",
    "transaction_id",
    "entry_id",
    "booked_at",
    "entries",
    "points",
    "price_micros",
    "amount_micros",
    "amount_eur",
]


@dataclass
class Books:
    shop: Credentials
    other: Credentials
    days: list[date]  # the shop's three settled business days, oldest first
    earn_id: uuid.UUID
    burn_id: uuid.UUID
    refund_id: uuid.UUID
    second_earn_id: uuid.UUID


@pytest.fixture(scope="module")
async def books(
    pool: asyncpg.Pool,
    clock: ManualClock,
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> Books:
    """Day 1: earn 123.45 € (123 points at 1 cent), burn 100 points (0.8 cent),
    refund 23.45 € (23 points). Day 2: earn 10 €. Day 3: nothing. All settled."""
    shop = await make_partner(
        code="statement-shop", issuance_price_micros=10_000, return_window_days=0
    )
    other = await make_partner(code="other-shop")
    card = await make_member()
    first = business_date(clock.now())
    async with client_for(shop) as api, client_for(other) as rival:
        earn = await api.earn(card, 12_345, "EUR", receipt_ref="R-1")
        await release_due(pool, clock.now())
        burn = await api.burn(card, 100, receipt_ref="R-2")
        refund = await api.refund(earn.id, 2_345, "EUR", receipt_ref="R-3")
        await rival.earn(card, 500, "EUR")
        clock.set(local_midnight(first + timedelta(days=1)) + timedelta(hours=10))
        second = await api.earn(card, 1_000, "EUR", receipt_ref="R-4")
    clock.set(day_end(first + timedelta(days=2)) + timedelta(hours=1))
    await settle_due(pool, clock.now())
    return Books(
        shop,
        other,
        [first + timedelta(days=n) for n in range(3)],
        earn.id,
        burn.id,
        refund.id,
        second.id,
    )


async def _headers(http: httpx.AsyncClient, creds: Credentials) -> dict[str, str]:
    response = await http.post(
        f"{P}/token",
        json={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


async def test_list_is_newest_first_and_pages_with_a_cursor(
    http: httpx.AsyncClient, books: Books
) -> None:
    headers = await _headers(http, books.shop)
    everything = await http.get(f"{P}/statements", headers=headers)
    assert everything.status_code == 200
    body = everything.json()
    assert [s["first_day"] for s in body["items"]] == [d.isoformat() for d in reversed(books.days)]
    assert body["next_cursor"] is None

    first = await http.get(f"{P}/statements", params={"limit": 2}, headers=headers)
    page = first.json()
    assert [s["first_day"] for s in page["items"]] == [
        books.days[2].isoformat(),
        books.days[1].isoformat(),
    ]
    assert page["next_cursor"]
    rest = await http.get(
        f"{P}/statements", params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers
    )
    assert [s["first_day"] for s in rest.json()["items"]] == [books.days[0].isoformat()]
    assert rest.json()["next_cursor"] is None


async def test_one_statement_with_its_lines(
    http: httpx.AsyncClient, books: Books, pool: asyncpg.Pool
) -> None:
    headers = await _headers(http, books.shop)
    listed = (await http.get(f"{P}/statements", headers=headers)).json()["items"]
    oldest = listed[-1]
    response = await http.get(f"{P}/statements/{oldest['id']}", headers=headers)
    assert response.status_code == 200
    statement = response.json()
    assert statement == oldest
    assert statement["period"] == "daily"
    assert statement["first_day"] == statement["last_day"] == books.days[0].isoformat()
    assert statement["period_start"].startswith(
        local_midnight(books.days[0]).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert statement["currency"] == "EUR"
    lines = {line["category"]: line for line in statement["lines"]}
    assert [line["category"] for line in statement["lines"]] == [
        "points_issued",
        "refunds",
        "points_redeemed",
        "sponsored_rewards",
    ]
    assert lines["points_issued"] == {
        "category": "points_issued",
        "entries": 1,
        "points": 123,
        "amount_micros": -1_230_000,
        "amount_cents": -123,
    }
    assert (lines["refunds"]["points"], lines["refunds"]["amount_cents"]) == (23, 23)
    assert lines["points_redeemed"]["amount_micros"] == 800_000
    assert statement["net_cents"] == -123 + 23 + 80 == -20
    # The ledger entries behind the statement (earn, authorize, capture,
    # refund), not the run's own money entry, which is filed there too.
    settled = await pool.fetch(
        "SELECT e.kind FROM settled_entries se JOIN statements s ON s.id = se.statement_id"
        " JOIN journal_entries e ON e.id = se.entry_id WHERE s.public_id = $1",
        uuid.UUID(statement["id"]),
    )
    assert sorted(r["kind"] for r in settled) == [
        "authorize", "capture", "earn", "refund", "settle",
    ]  # fmt: skip
    assert statement["entries"] == 4

    quiet = listed[0]
    assert quiet["net_cents"] == 0
    assert all(line["entries"] == 0 for line in quiet["lines"])


async def _csv(http: httpx.AsyncClient, headers: dict[str, str], statement_id: str) -> Any:
    return await http.get(f"{P}/statements/{statement_id}/csv", headers=headers)


async def test_csv_lists_lines_net_and_every_entry(http: httpx.AsyncClient, books: Books) -> None:
    headers = await _headers(http, books.shop)
    listed = (await http.get(f"{P}/statements", headers=headers)).json()["items"]
    oldest = listed[-1]
    response = await _csv(http, headers, oldest["id"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="kring-statement-statement-shop-daily-{books.days[0]}.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == CSV_HEADER
    assert rows[1:5] == [
        ["line", "points_issued", "", "", "", "1", "123", "", "-1230000", "-1.23"],
        ["line", "refunds", "", "", "", "1", "23", "", "230000", "0.23"],
        ["line", "points_redeemed", "", "", "", "1", "100", "", "800000", "0.80"],
        ["line", "sponsored_rewards", "", "", "", "0", "0", "", "0", "0.00"],
    ]
    assert rows[5] == ["net", "", "", "", "", str(oldest["entries"]), "", "", "", "-0.20"]
    entries = {(r[1], r[2]): r for r in rows[6:]}
    assert {r[0] for r in rows[6:]} == {"entry"}
    assert set(entries) == {
        ("points_issued", str(books.earn_id)),
        ("points_redeemed", str(books.burn_id)),
        ("refunds", str(books.refund_id)),
    }
    earn_row = entries[("points_issued", str(books.earn_id))]
    assert earn_row[6:9] == ["123", "10000", "-1230000"]

    second = await _csv(http, headers, listed[1]["id"])
    [entry] = [r for r in csv.reader(io.StringIO(second.text)) if r[0] == "entry"]
    assert entry[2] == str(books.second_earn_id)


async def test_another_partners_statement_is_not_found(
    http: httpx.AsyncClient, books: Books
) -> None:
    shop_headers = await _headers(http, books.shop)
    other_headers = await _headers(http, books.other)
    shop_ids = {
        s["id"] for s in (await http.get(f"{P}/statements", headers=shop_headers)).json()["items"]
    }
    other_ids = {
        s["id"] for s in (await http.get(f"{P}/statements", headers=other_headers)).json()["items"]
    }
    assert shop_ids and other_ids and not shop_ids & other_ids
    for statement_id in shop_ids:
        assert_problem(
            await http.get(f"{P}/statements/{statement_id}", headers=other_headers),
            404,
            "statement_not_found",
        )
        assert_problem(await _csv(http, other_headers, statement_id), 404, "statement_not_found")


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("!!!", id="not-base64"),
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param(_cursor(b"yesterday"), id="not-a-time"),
        pytest.param(_cursor(b"2026-03-01T00:00:00"), id="no-zone"),
        pytest.param(_cursor(b"\xff\xfe"), id="not-utf8"),
        pytest.param(_cursor(b"99999-01-01T00:00:00+00:00"), id="year-99999"),
    ],
)
async def test_a_bad_cursor_is_invalid_cursor(
    http: httpx.AsyncClient, books: Books, cursor: str
) -> None:
    headers = await _headers(http, books.shop)
    response = await http.get(f"{P}/statements", params={"cursor": cursor}, headers=headers)
    assert_problem(response, 400, "invalid_cursor")


@pytest.mark.parametrize("limit", ["0", "51", "-1", "ten"])
async def test_a_limit_out_of_range_is_refused(
    http: httpx.AsyncClient, books: Books, limit: str
) -> None:
    headers = await _headers(http, books.shop)
    response = await http.get(f"{P}/statements", params={"limit": limit}, headers=headers)
    assert response.status_code in (400, 422), response.text
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("statement_id", "status", "code"),
    [
        ("not-a-uuid", 400, "invalid_statement_id"),
        ("12345", 400, "invalid_statement_id"),
        (str(uuid.uuid4()) + "0", 400, "invalid_statement_id"),
        (str(uuid.uuid4()), 404, "statement_not_found"),
        ("00000000-0000-0000-0000-000000000000", 404, "statement_not_found"),
    ],
)
async def test_a_bad_or_unknown_id(
    http: httpx.AsyncClient, books: Books, statement_id: str, status: int, code: str
) -> None:
    headers = await _headers(http, books.shop)
    assert_problem(await http.get(f"{P}/statements/{statement_id}", headers=headers), status, code)
    assert_problem(await _csv(http, headers, statement_id), status, code)


async def test_statements_need_a_token(http: httpx.AsyncClient, books: Books) -> None:
    for path in ("/statements", f"/statements/{uuid.uuid4()}", f"/statements/{uuid.uuid4()}/csv"):
        response = await http.get(P + path)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_statements_are_in_the_openapi_document(http: httpx.AsyncClient) -> None:
    document = (await http.get("/schema/openapi.json")).json()
    paths = document["paths"]
    assert "get" in paths[f"{P}/statements"]
    assert "get" in paths[f"{P}/statements/{{statement_id}}"]
    csv_op = paths[f"{P}/statements/{{statement_id}}/csv"]["get"]
    assert "text/csv" in csv_op["responses"]["200"]["content"]
    line = document["components"]["schemas"]["StatementLineOut"]
    assert "micro-euros" in line["properties"]["amount_micros"]["description"]


# The partner kit's client ---------------------------------------------------


async def test_the_kit_reads_statements_and_their_csv(
    books: Books, client_for: Callable[[Credentials], PartnerClient]
) -> None:
    async with client_for(books.shop) as kring:
        page = await kring.statements(limit=2)
        assert [s.first_day for s in page.items] == [books.days[2], books.days[1]]
        assert page.next_cursor is not None
        everything = [s async for s in kring.iter_statements(page_size=1)]
        assert [s.first_day for s in everything] == list(reversed(books.days))
        oldest = await kring.statement(everything[-1].id)
        assert oldest == everything[-1]
        assert oldest.net_cents == -20
        issued = oldest.lines[0]
        assert (issued.category, issued.points, issued.amount_micros, issued.amount_cents) == (
            "points_issued",
            123,
            -1_230_000,
            -123,
        )
        body = await kring.statement_csv(oldest.id)
        assert body.startswith(b"record,category,")
        assert f"entry,points_issued,{books.earn_id},".encode() in body
        chunks = [chunk async for chunk in kring.iter_statement_csv(oldest.id)]
        assert b"".join(chunks) == body

        with pytest.raises(PartnerApiError) as missing:
            await kring.statement(uuid.uuid4())
        assert (missing.value.status, missing.value.code) == (404, "statement_not_found")
        with pytest.raises(PartnerApiError) as bad:
            await kring.statement_csv("not-a-uuid")
        assert (bad.value.status, bad.value.code) == (400, "invalid_statement_id")
        with pytest.raises(PartnerApiError) as cursor:
            await kring.statements(cursor="garbage")
        assert cursor.value.code == "invalid_cursor"


async def test_the_kit_reconciles_a_period(
    books: Books, client_for: Callable[[Credentials], PartnerClient]
) -> None:
    start = local_midnight(books.days[0])
    async with client_for(books.shop) as kring:
        result = await kring.reconcile(
            start,
            start + timedelta(days=2),
            [
                ReconciliationRow(kind="earn", points=123, transaction_id=books.earn_id),
                ReconciliationRow(kind="burn", points=100, receipt_ref="R-2"),
                ReconciliationRow(kind="refund", points=20, transaction_id=books.refund_id),
                ReconciliationRow(kind="earn", points=5, receipt_ref="not-in-kring"),
            ],
        )
        assert result.summary.matched == 2
        assert result.summary.reconciled is False
        [mismatch] = result.mismatched
        assert (mismatch.transaction_id, mismatch.fields) == (books.refund_id, ["points"])
        assert mismatch.kring.points == 23
        [missing] = result.missing_in_kring
        assert (missing.row, missing.reason) == (3, "not_found")
        assert [m.transaction_id for m in result.missing_in_partner] == [books.second_earn_id]
        assert result.totals.kring.earn_points == 133

        with pytest.raises(PartnerApiError) as refused:
            await kring.reconcile(start, start - timedelta(days=1), [])
        assert refused.value.code == "invalid_period"


async def test_a_suspended_partners_live_token_reads_no_statements(
    http: httpx.AsyncClient,
    books: Books,
    pool: asyncpg.Pool,
    make_partner: Callable[..., Awaitable[Credentials]],
) -> None:
    creds = await make_partner()
    headers = await _headers(http, creds)
    await transaction(pool, lambda conn: set_partner_status(conn, creds.partner_id, "suspended"))
    for path in ("/statements", f"/statements/{uuid.uuid4()}", f"/statements/{uuid.uuid4()}/csv"):
        assert_problem(await http.get(P + path, headers=headers), 403, "partner_suspended")
