"""The portal's statements pages without a browser: cashiers and managers read
them, the list pages with htmx "Load more", a statement shows its lines with
exact and rounded amounts, the CSV is the API's own stream, and another
shop's statement, a bad id or a bad cursor give a readable page, not JSON."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.money import format_cents
from api.portal.staff import create_staff
from api.portal.statements import STATEMENTS_PAGE_SIZE, exact_euros
from api.settlement.periods import business_date, day_end
from api.settlement.run import settle_due
from partners.client import PartnerClient

PASSWORD = "correct horse battery"
MANAGER = "max@ledger-cafe.example"
CASHIER = "cas@ledger-cafe.example"
DAYS = STATEMENTS_PAGE_SIZE + 2  # more than one page
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ROWS = re.compile(r'<tr data-testid="statement">')


@dataclass
class Cafe:
    creds: Credentials
    other: Credentials
    first_day: date
    earn_id: uuid.UUID


@pytest.fixture(scope="module")
async def cafe(
    pool: asyncpg.Pool,
    clock: ManualClock,
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> Cafe:
    # 0.7777 cent per point: a line's exact amount has more decimals than its cents.
    creds = await make_partner(code="ledger-cafe", name="Ledger Cafe", issuance_price_micros=7_777)
    other = await make_partner(code="other-cafe")
    for email, role in ((MANAGER, "manager"), (CASHIER, "cashier")):
        await transaction(
            pool,
            lambda conn, email=email, role=role: create_staff(
                conn,
                partner_code="ledger-cafe",
                email=email,
                display_name=email.split("@")[0].title(),
                password=PASSWORD,
                role=role,
                now=clock.now(),
            ),
        )
    card = await make_member()
    first_day = business_date(clock.now())
    async with client_for(creds) as api:
        earn = await api.earn(card, 12_345, "EUR")  # 123 points
    clock.set(day_end(first_day + timedelta(days=DAYS - 1)) + timedelta(hours=1))
    await settle_due(pool, clock.now())
    return Cafe(creds, other, first_day, earn.id)


async def _signed_in(app: Any, email: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.kring.test"
    )
    form = await client.get("/portal/sign-in")
    token = _CSRF.search(form.text)
    assert token is not None
    signed = await client.post(
        "/portal/sign-in", data={"email": email, "password": PASSWORD, "csrf_token": token[1]}
    )
    assert signed.status_code == 303, signed.text
    return client


@pytest.fixture
async def cashier(app: Any, cafe: Cafe) -> AsyncIterator[httpx.AsyncClient]:
    client = await _signed_in(app, CASHIER)
    yield client
    await client.aclose()


@pytest.fixture
async def manager(app: Any, cafe: Cafe) -> AsyncIterator[httpx.AsyncClient]:
    client = await _signed_in(app, MANAGER)
    yield client
    await client.aclose()


def test_amounts_read_as_euros_with_a_sign() -> None:
    assert format_cents(-123) == "-1,23 €"
    assert format_cents(-5) == "-0,05 €"
    assert format_cents(123_456) == "1.234,56 €"
    assert format_cents(0) == "0,00 €"
    assert exact_euros(-956_571) == "-0,956571 €"
    assert exact_euros(1_230_000) == "1,23 €"
    assert exact_euros(-1_234_567_890_000) == "-1.234.567,89 €"


async def test_a_cashier_lists_statements_newest_first_and_loads_more(
    cashier: httpx.AsyncClient, cafe: Cafe
) -> None:
    page = await cashier.get("/portal/statements")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<a href="/portal/statements" aria-current="page">Statements</a>' in page.text
    assert len(_ROWS.findall(page.text)) == STATEMENTS_PAGE_SIZE
    newest = cafe.first_day + timedelta(days=DAYS - 1)
    assert (
        f"{newest:%a} {newest.day} {newest:%b %Y}" in page.text.split('data-testid="statement"')[1]
    )
    more = re.search(r'hx-get="(/portal/statements\?cursor=[^"]+)"', page.text)
    assert more is not None

    fragment = await cashier.get(more[1].replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    rows = fragment.text.split('data-testid="statement"')[1:]
    assert len(rows) == DAYS - STATEMENTS_PAGE_SIZE
    oldest = rows[-1]
    assert f"{cafe.first_day.day} {cafe.first_day:%b %Y}" in oldest
    # 123 points x 0.7777 cent = 95.6571 cent: the shop pays 0,96 €.
    assert "-0,96 €" in oldest
    assert "You pay Kring" in oldest
    assert "Load more" not in fragment.text


async def test_a_statement_shows_its_lines_and_the_rounding(
    cashier: httpx.AsyncClient, cafe: Cafe
) -> None:
    oldest = (await _all_ids(cashier))[-1]  # on the second page
    page = await cashier.get(f"/portal/statements/{oldest}")
    assert page.status_code == 200
    text = page.text
    issued = text.split('data-testid="line-points_issued"')[1].split("</tr>")[0]
    assert "Points issued" in issued
    assert ">123<" in issued
    assert "-0,956571 €" in issued  # exact
    assert "-0,96 €" in issued  # rounded once
    redeemed = text.split('data-testid="line-points_redeemed"')[1].split("</tr>")[0]
    assert "0,00 €" in redeemed
    assert 'data-testid="statement-net"' in text
    # The sales behind the lines, not the statement's own count (which holds the run's entry).
    assert "<dt>Entries</dt><dd>1</dd>" in text
    assert "You pay Kring" in text
    assert "rounded half-even to the cent once" in text
    assert f'href="/portal/statements/{oldest}/csv" download>Download CSV</a>' in text


async def _all_ids(client: httpx.AsyncClient) -> list[str]:
    ids: list[str] = []
    url: str | None = "/portal/statements"
    while url is not None:
        page = await client.get(url, headers={"HX-Request": "true"})
        ids += re.findall(r'href="/portal/statements/([0-9a-f-]{36})"', page.text)
        more = re.search(r'hx-get="(/portal/statements\?cursor=[^"]+)"', page.text)
        url = None if more is None else more[1].replace("&amp;", "&")
    return ids


async def test_the_csv_download_is_the_apis_csv(
    manager: httpx.AsyncClient,
    cafe: Cafe,
    client_for: Callable[[Credentials], PartnerClient],
) -> None:
    oldest = (await _all_ids(manager))[-1]
    response = await manager.get(f"/portal/statements/{oldest}/csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="kring-statement-ledger-cafe-daily-{cafe.first_day}.csv"'
    )
    async with client_for(cafe.creds) as api:
        assert response.content == await api.statement_csv(oldest)
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[1] == ["line", "points_issued", "", "", "", "1", "123", "", "-956571", "-0.96"]
    [entry] = [r for r in rows if r[0] == "entry"]
    assert entry[1:3] == ["points_issued", str(cafe.earn_id)]


async def test_another_shops_statement_is_not_found(
    cashier: httpx.AsyncClient, cafe: Cafe, client_for: Callable[[Credentials], PartnerClient]
) -> None:
    async with client_for(cafe.other) as rival:
        theirs = (await rival.statements(limit=1)).items[0].id
    for path in (f"/portal/statements/{theirs}", f"/portal/statements/{theirs}/csv"):
        response = await cashier.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "There is no such statement for your shop." in response.text


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/portal/statements/not-a-uuid", 400, "This is not a statement link"),
        ("/portal/statements/not-a-uuid/csv", 400, "This is not a statement link"),
        ("/portal/statements?cursor=garbage", 400, "This list link is not valid any more"),
    ],
)
async def test_bad_links_get_a_readable_page(
    cashier: httpx.AsyncClient, path: str, status: int, message: str
) -> None:
    response = await cashier.get(path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert message in response.text


async def test_signed_out_staff_are_sent_to_sign_in(app: Any, cafe: Cafe) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.kring.test"
    ) as anonymous:
        for path in ("/portal/statements", f"/portal/statements/{uuid.uuid4()}/csv"):
            response = await anonymous.get(path)
            assert response.status_code == 303
            assert response.headers["location"] == "/portal/sign-in"
