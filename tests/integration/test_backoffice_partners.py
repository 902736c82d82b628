"""Back-office partner pages: create (secret shown once, stored hashed), terms
that apply from the next earn, suspension, credential rotation, bank details
checked by schwifty, the list and its CSV; every change audited with before
and after, in the change's transaction."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.coalition.partners import Credentials
from partners.client import PartnerApiError, PartnerClient
from tests.conftest import backoffice_session


async def audit_rows(pool: Any, action: str, subject: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT admin_email, before::text AS before, after::text AS after FROM admin_audit_log"
        " WHERE action = $1 AND subject = $2 ORDER BY id",
        action,
        subject,
    )
    return [
        {
            "admin_email": r["admin_email"],
            "before": None if r["before"] is None else json.loads(r["before"]),
            "after": None if r["after"] is None else json.loads(r["after"]),
        }
        for r in rows
    ]


def shown(text: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">([^<]*)<', text)
    assert found, f"#{element_id} is not on the page"
    return found.group(1).strip()


@pytest.fixture(scope="module")
async def owner(http: httpx.AsyncClient, pool: Any, clock: Any) -> dict[str, str]:
    return await backoffice_session(http, pool, clock, "owner", email="owner@example.com")


@pytest.fixture(scope="module")
async def finance(http: httpx.AsyncClient, pool: Any, clock: Any) -> dict[str, str]:
    return await backoffice_session(http, pool, clock, "finance", email="finance@example.com")


async def test_owner_creates_a_partner_and_sees_its_secret_once(
    http: httpx.AsyncClient, pool: Any, owner: dict[str, str], app: Any, make_member: Any
) -> None:
    form = await http.get("/backoffice/partners/new", headers=owner)
    assert form.status_code == 200 and 'name="issuance_price_micros"' in form.text

    created = await http.post(
        "/backoffice/partners",
        headers=owner,
        data={
            "code": "bo-bakery",
            "name": "Bakker Bart",
            "kind": "bakery",
            "settlement_period": "weekly",
            "earn_rate_millipoints_per_euro": "2000",
            "issuance_price_micros": "12000",
            "redemption_price_micros": "9000",
            "return_window_days": "0",
            "iban": "nl91 abna 0417 1643 00",
            "account_holder": "Bakker Bart BV",
        },
    )
    assert created.status_code == 201, created.text
    client_id = shown(created.text, "client-id")
    secret = shown(created.text, "client-secret")
    assert secret.startswith("ks_") and "shown only this once" in created.text

    row = await pool.fetchrow(
        "SELECT p.*, c.secret_sha256 FROM partners p"
        " JOIN partner_credentials c ON c.partner_id = p.id WHERE p.code = 'bo-bakery'"
    )
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).digest()
    assert (row["earn_rate_millipoints_per_euro"], row["issuance_price_micros"]) == (2000, 12000)
    assert (row["redemption_price_micros"], row["return_window_days"]) == (9000, 0)
    assert (row["settlement_period"], row["iban"], row["bic"]) == (
        "weekly",
        "NL91ABNA0417164300",
        "ABNANL2A",
    )
    # The secret is nowhere else: not on the detail page, not in the audit row.
    detail = await http.get("/backoffice/partners/bo-bakery", headers=owner)
    assert detail.status_code == 200 and secret not in detail.text and client_id in detail.text
    [entry] = await audit_rows(pool, "partner.create", "partner:bo-bakery")
    assert entry["admin_email"] == "owner@example.com" and entry["before"] is None
    assert entry["after"]["issuance_price_micros"] == 12000
    assert secret not in json.dumps(entry)

    # The credentials work: 2 points per euro.
    card = await make_member()
    creds = Credentials(row["id"], row["public_id"], client_id, secret)
    async with _client(app, creds) as client:
        earned = await client.earn(card_number=card, amount_cents=1000, currency="EUR")
    assert earned.points == 20 and earned.price_micros == 12000

    again = await http.post(
        "/backoffice/partners",
        headers=owner,
        data={**_minimal("bo-bakery"), "name": "Other"},
    )
    assert again.status_code == 422 and "exists" in again.text


def _minimal(code: str) -> dict[str, str]:
    return {
        "code": code,
        "name": code.title(),
        "kind": "shop",
        "settlement_period": "daily",
        "earn_rate_millipoints_per_euro": "1000",
        "issuance_price_micros": "10000",
        "redemption_price_micros": "8000",
        "return_window_days": "14",
    }


def _client(app: Any, creds: Credentials) -> PartnerClient:
    return PartnerClient(
        "http://kring.test",
        creds.client_id,
        creds.client_secret,
        transport=httpx.ASGITransport(app=app),
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("code", "Bad Code!", "lowercase letters"),
        ("earn_rate_millipoints_per_euro", "1.5", "whole number"),
        ("issuance_price_micros", "-1", "whole number"),
        ("return_window_days", "400", "Return window must be 0 to 365 days"),
        ("iban", "NL00ABNA0417164300", "IBAN"),
        ("kind", "k" * 51, "at most 50"),
    ],
)
async def test_a_bad_new_partner_is_a_4xx_page_and_writes_nothing(
    http: httpx.AsyncClient,
    pool: Any,
    owner: dict[str, str],
    field: str,
    value: str,
    message: str,
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM partners")
    data = {**_minimal("bo-refused"), field: value, "account_holder": "Someone"}
    answer = await http.post("/backoffice/partners", headers=owner, data=data)
    assert 400 <= answer.status_code < 500 and message in answer.text, answer.text[-2000:]
    assert await pool.fetchval("SELECT count(*) FROM partners") == before


async def test_new_terms_apply_to_the_next_earn_and_are_audited(
    http: httpx.AsyncClient,
    pool: Any,
    finance: dict[str, str],
    make_partner: Any,
    make_member: Any,
    client_for: Any,
) -> None:
    creds = await make_partner(code="bo-terms", issuance_price_micros=10_000)
    card = await make_member()
    async with client_for(creds) as client:
        first = await client.earn(card_number=card, amount_cents=1000, currency="EUR")
        changed = await http.post(
            "/backoffice/partners/bo-terms/terms",
            headers=finance,
            data={
                "earn_rate_millipoints_per_euro": "3000",
                "issuance_price_micros": "11000",
                "redemption_price_micros": "8000",
                "return_window_days": "7",
            },
        )
        assert changed.status_code == 200, changed.text
        assert "New terms apply from the next transaction" in changed.text
        assert shown(changed.text, "earn-rate") == "3,000 millipoints per euro"
        second = await client.earn(card_number=card, amount_cents=1000, currency="EUR")
    assert (first.points, first.price_micros) == (10, 10_000)
    assert (second.points, second.price_micros) == (30, 11_000)
    assert second.available_at is not None and second.created_at is not None
    assert second.available_at - second.created_at == timedelta(days=7)
    # The first entry keeps the price it was booked with.
    prices = await pool.fetch(
        "SELECT e.price_micros FROM journal_entries e JOIN transactions t ON t.id = e.transaction_id"
        " WHERE t.id = ANY($1::uuid[]) AND e.kind = 'earn' ORDER BY e.id",
        [first.id, second.id],
    )
    assert [r["price_micros"] for r in prices] == [10_000, 11_000]
    [entry] = await audit_rows(pool, "partner.terms.change", "partner:bo-terms")
    assert entry["admin_email"] == "finance@example.com"
    assert entry["before"] == {
        "earn_rate_millipoints_per_euro": 1000,
        "issuance_price_micros": 10_000,
        "redemption_price_micros": 8000,
        "return_window_days": 14,
    }
    assert entry["after"]["earn_rate_millipoints_per_euro"] == 3000
    assert entry["after"]["return_window_days"] == 7

    bad = await http.post(
        "/backoffice/partners/bo-terms/terms",
        headers=finance,
        data={
            "earn_rate_millipoints_per_euro": "abc",
            "issuance_price_micros": "11000",
            "redemption_price_micros": "8000",
            "return_window_days": "7",
        },
    )
    assert bad.status_code == 422 and "Earn rate: type a whole number" in bad.text
    assert len(await audit_rows(pool, "partner.terms.change", "partner:bo-terms")) == 1


async def test_support_reads_but_cannot_change_terms(
    http: httpx.AsyncClient, pool: Any, clock: Any, make_partner: Any
) -> None:
    await make_partner(code="bo-readonly", iban="NL91ABNA0417164300", account_holder="Shop BV")
    support = await backoffice_session(http, pool, clock, "support")
    detail = await http.get("/backoffice/partners/bo-readonly", headers=support)
    assert detail.status_code == 200 and "Save terms" not in detail.text
    assert "NL91ABNA0417164300" not in detail.text and "NL91 … 4300" in detail.text
    refused = await http.post(
        "/backoffice/partners/bo-readonly/terms", headers=support, data=_minimal("x")
    )
    assert refused.status_code == 403


async def test_a_suspended_partner_cannot_earn(
    http: httpx.AsyncClient,
    pool: Any,
    owner: dict[str, str],
    make_partner: Any,
    make_member: Any,
    client_for: Any,
) -> None:
    creds = await make_partner(code="bo-suspend")
    card = await make_member()
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=500, currency="EUR")
        answer = await http.post(
            "/backoffice/partners/bo-suspend/status", headers=owner, data={"status": "suspended"}
        )
        assert answer.status_code == 200 and shown(answer.text, "partner-status") == "suspended"
        with pytest.raises(PartnerApiError) as refused:
            await client.earn(card_number=card, amount_cents=500, currency="EUR")
    assert refused.value.code == "partner_suspended"
    async with client_for(creds) as fresh:  # no new token either
        with pytest.raises(PartnerApiError):
            await fresh.earn(card_number=card, amount_cents=500, currency="EUR")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM transactions t JOIN partners p ON p.id = t.partner_id"
            " WHERE p.code = 'bo-suspend'"
        )
        == 1
    )
    [entry] = await audit_rows(pool, "partner.status.change", "partner:bo-suspend")
    assert (entry["before"], entry["after"]) == ({"status": "active"}, {"status": "suspended"})
    again = await http.post(
        "/backoffice/partners/bo-suspend/status", headers=owner, data={"status": "suspended"}
    )
    assert again.status_code == 422 and "suspended already" in again.text


async def test_rotating_credentials_shows_the_new_secret_once_and_stops_the_old(
    http: httpx.AsyncClient,
    pool: Any,
    owner: dict[str, str],
    app: Any,
    make_partner: Any,
    make_member: Any,
) -> None:
    old = await make_partner(code="bo-rotate")
    card = await make_member()
    answer = await http.post("/backoffice/partners/bo-rotate/credentials", headers=owner, data={})
    assert answer.status_code == 200
    new_id, new_secret = shown(answer.text, "client-id"), shown(answer.text, "client-secret")
    assert new_id != old.client_id
    stored = await pool.fetchval(
        "SELECT secret_sha256 FROM partner_credentials WHERE client_id = $1 AND revoked_at IS NULL",
        new_id,
    )
    assert stored == hashlib.sha256(new_secret.encode()).digest()
    async with _client(app, old) as stale:
        with pytest.raises(PartnerApiError):
            await stale.earn(card_number=card, amount_cents=500, currency="EUR")
    fresh = Credentials(old.partner_id, old.partner_public_id, new_id, new_secret)
    async with _client(app, fresh) as client:
        assert (await client.earn(card_number=card, amount_cents=500, currency="EUR")).points == 5
    reread = await http.get("/backoffice/partners/bo-rotate", headers=owner)
    assert new_secret not in reread.text and new_id in reread.text
    [entry] = await audit_rows(pool, "partner.credentials.rotate", "partner:bo-rotate")
    assert entry["before"] == {"client_ids": [old.client_id]}
    assert entry["after"] == {"client_ids": [new_id]}


async def test_bank_details_are_checked_and_audited(
    http: httpx.AsyncClient, pool: Any, finance: dict[str, str], make_partner: Any
) -> None:
    await make_partner(code="bo-bank")
    bad = await http.post(
        "/backoffice/partners/bo-bank/bank",
        headers=finance,
        data={"iban": "NL45RABO0123456789", "account_holder": "Bank BV"},
    )
    assert bad.status_code == 422
    assert 'id="bank-error"' in bad.text and "IBAN" in shown(bad.text, "bank-error")
    assert await pool.fetchval("SELECT iban FROM partners WHERE code = 'bo-bank'") is None
    assert await audit_rows(pool, "partner.bank.change", "partner:bo-bank") == []

    good = await http.post(
        "/backoffice/partners/bo-bank/bank",
        headers=finance,
        data={"iban": "de89 3704 0044 0532 0130 00", "account_holder": "Bank GmbH"},
    )
    assert good.status_code == 200 and "Bank details saved" in good.text
    assert shown(good.text, "iban") == "DE89370400440532013000"
    [entry] = await audit_rows(pool, "partner.bank.change", "partner:bo-bank")
    assert entry["before"] == {"iban": None, "bic": None, "account_holder": None}
    assert entry["after"]["iban"] == "DE89370400440532013000"
    assert entry["after"]["account_holder"] == "Bank GmbH"


async def test_list_filters_pages_and_exports_csv(
    http: httpx.AsyncClient, pool: Any, owner: dict[str, str], make_partner: Any
) -> None:
    for number in range(55):
        await make_partner(code=f"bo-list-{number:02d}", kind="listkind")
    await make_partner(code="bo-list-zz", name="=cmd()", kind="otherkind")
    first = await http.get("/backoffice/partners?kind=listkind", headers=owner)
    assert first.status_code == 200
    codes = re.findall(r'href="/backoffice/partners/(bo-list-\d\d)"', first.text)
    assert codes == [f"bo-list-{n:02d}" for n in range(50)]
    cursor = re.search(r'cursor=([A-Za-z0-9_-]+)"', first.text)
    assert cursor
    rest = await http.get(
        f"/backoffice/partners?kind=listkind&cursor={cursor.group(1)}",
        headers={**owner, "HX-Request": "true"},
    )
    assert re.findall(r'href="/backoffice/partners/(bo-list-\d\d)"', rest.text) == [
        f"bo-list-{n:02d}" for n in range(50, 55)
    ]
    assert "<html" not in rest.text and "Next page" not in rest.text

    named = await http.get("/backoffice/partners?name=LIST-0", headers=owner)
    assert re.findall(r'href="/backoffice/partners/(bo-list-\d\d)"', named.text) == [
        f"bo-list-{n:02d}" for n in range(10)
    ]

    exported = await http.get("/backoffice/partners/export.csv?kind=otherkind", headers=owner)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert 'filename="partners.csv"' in exported.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0][:4] == ["code", "name", "kind", "status"]
    assert rows[1:] == [
        [
            "bo-list-zz",
            "'=cmd()",
            "otherkind",
            "active",
            "EUR",
            "1000",
            "10000",
            "8000",
            "14",
            "daily",
            "false",
            rows[1][11],
        ]
    ]


async def test_a_missing_partner_is_a_404_page(
    http: httpx.AsyncClient, owner: dict[str, str]
) -> None:
    answer = await http.get("/backoffice/partners/no-such-partner", headers=owner)
    assert answer.status_code == 404 and "There is no partner" in answer.text
