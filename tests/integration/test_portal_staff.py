"""The partner portal without a browser: staff accounts, the session cookie,
CSRF, and the till earning through the partner API's own services."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.clock import ManualClock
from api.coalition.partners import Credentials, verify_credentials
from api.db.pool import transaction
from api.errors import DomainError
from api.money import format_cents
from api.portal import session as sessions
from api.portal.forms import parse_euros, parse_points
from api.portal.staff import Staff, authenticate, create_staff
from api.web.cookies import cookie_secure
from tests.conftest import balances

KRING = str(Path(sys.executable).parent / "kring")
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("12,50", 1250),
        ("12.50", 1250),
        ("12.5", 1250),
        ("12", 1200),
        (" 0,07 ", 7),
        ("€ 3,00", 300),
    ],
)
def test_euros_typed_at_the_till_become_integer_cents(text: str, cents: int) -> None:
    assert parse_euros(text) == cents


@pytest.mark.parametrize("text", ["", "12,505", "1.250,00", "-3", "0", "0,00", "1e3", "12,", "abc"])
def test_amounts_that_are_not_euros_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(DomainError) as caught:
        parse_euros(text)
    assert caught.value.code == "invalid_amount" and caught.value.detail


def test_points_and_cents_formatting() -> None:
    assert parse_points(" 250 ") == 250
    for bad in ["0", "2.5", "-1", "many"]:
        with pytest.raises(DomainError):
            parse_points(bad)
    assert format_cents(123456) == "1.234,56 €"
    assert format_cents(7) == "0,07 €"
    assert format_cents(-123) == "-1,23 €"
    assert format_cents(-123456) == "-1.234,56 €"


@pytest.fixture(scope="module")
async def shop(make_partner: Callable[..., Awaitable[Credentials]]) -> Credentials:
    return await make_partner(code="portal-shop", name="Portal Shop")


@pytest.fixture(scope="module")
async def cashier(pool: asyncpg.Pool, clock: ManualClock, shop: Credentials) -> Staff:
    return await transaction(
        pool,
        lambda conn: create_staff(
            conn,
            partner_code="portal-shop",
            email=" Kim@Portal-Shop.example ",
            display_name="Kim",
            password=PASSWORD,
            now=clock.now(),
        ),
    )


async def test_staff_sign_in_checks_the_hash_and_the_account(
    pool: asyncpg.Pool, clock: ManualClock, cashier: Staff
) -> None:
    assert cashier.email == "kim@portal-shop.example" and cashier.role == "cashier"
    stored = await pool.fetchval(
        "SELECT password_hash FROM partner_staff WHERE id = $1", cashier.id
    )
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    async with pool.acquire() as conn:
        assert await authenticate(conn, "KIM@portal-shop.example", PASSWORD) == cashier
        assert await authenticate(conn, "kim@portal-shop.example", PASSWORD + "!") is None
        assert await authenticate(conn, "nobody@portal-shop.example", PASSWORD) is None
    with pytest.raises(DomainError) as caught:
        await transaction(
            pool,
            lambda conn: create_staff(
                conn,
                partner_code="portal-shop",
                email="kim@portal-shop.example",
                display_name="Kim again",
                password=PASSWORD,
                now=clock.now(),
            ),
        )
    assert caught.value.code == "staff_exists"
    with pytest.raises(DomainError) as caught:
        await transaction(
            pool,
            lambda conn: create_staff(
                conn,
                partner_code="portal-shop",
                email="short@portal-shop.example",
                display_name="Short",
                password="short",
                now=clock.now(),
            ),
        )
    assert caught.value.code == "invalid_password"


def test_session_tokens_are_for_the_portal_only_and_expire(clock: ManualClock) -> None:
    secret = "s" * 40
    token = sessions.issue_session(7, secret=secret, now=clock.now())
    found = sessions.read_session(token, secret=secret, now=clock.now())
    assert found is not None and found.staff_id == 7 and len(found.csrf_token) > 30
    later = clock.now() + sessions.SESSION_TTL + timedelta(seconds=1)
    assert sessions.read_session(token, secret=secret, now=later) is None
    assert sessions.read_session(token, secret="t" * 40, now=clock.now()) is None
    assert sessions.read_session(token + "x", secret=secret, now=clock.now()) is None
    assert cookie_secure("portal.kring.example")
    assert not cookie_secure("127.0.0.1") and not cookie_secure("localhost")


@pytest.fixture
def browser_like(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.kring.test"
    )


async def _sign_in(client: httpx.AsyncClient) -> httpx.Response:
    form = await client.get("/portal/sign-in")
    token = _CSRF.search(form.text)
    assert token is not None
    return await client.post(
        "/portal/sign-in",
        data={"email": "kim@portal-shop.example", "password": PASSWORD, "csrf_token": token[1]},
    )


async def test_sign_in_sets_a_strict_session_cookie(
    browser_like: httpx.AsyncClient, cashier: Staff
) -> None:
    assert (await browser_like.get("/portal/till")).headers["location"] == "/portal/sign-in"
    response = await _sign_in(browser_like)
    assert response.status_code == 303 and response.headers["location"] == "/portal/till"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("kring_portal=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    assert "Max-Age=28800" in cookie and "Path=/portal" in cookie
    till = await browser_like.get("/portal/till")
    assert till.status_code == 200 and "Kim" in till.text and "<main" in till.text


async def test_sign_in_refuses_a_forged_form_and_a_wrong_password(app: Any, cashier: Staff) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.kring.test"
    ) as client:
        # No cookie from the sign-in page: a cross-site login attempt.
        forged = await client.post(
            "/portal/sign-in",
            data={"email": cashier.email, "password": PASSWORD, "csrf_token": "guess"},
        )
        assert forged.status_code == 401 and "kring_portal=" not in str(forged.headers)
        form = await client.get("/portal/sign-in")
        token = _CSRF.search(form.text)
        assert token is not None
        wrong = await client.post(
            "/portal/sign-in",
            data={"email": cashier.email, "password": "not the password", "csrf_token": token[1]},
        )
        assert wrong.status_code == 401 and "Wrong email or password." in wrong.text


async def test_the_till_earns_once_for_a_form_sent_twice(
    browser_like: httpx.AsyncClient,
    pool: asyncpg.Pool,
    cashier: Staff,
    make_member: Callable[..., Awaitable[str]],
) -> None:
    card = await make_member(display_name="Ada")
    await _sign_in(browser_like)
    till = await browser_like.get("/portal/till", params={"card": card})
    assert "Ada" in till.text
    csrf, key = _CSRF.search(till.text), _KEY.search(till.text)
    assert csrf is not None and key is not None
    form = {
        "csrf_token": csrf[1],
        "idempotency_key": key[1],
        "card_number": card,
        "amount": "12,50",
    }
    first = await browser_like.post("/portal/till/earn", data=form)
    assert first.status_code == 201 and "12 points earned for 12,50 €" in first.text
    again = await browser_like.post("/portal/till/earn", data=form, headers={"HX-Request": "true"})
    assert again.status_code == 201 and "Already recorded" in again.text
    assert "<html" not in again.text and 'id="member-panel"' in again.text  # the fragment
    assert (await balances(pool, card))["pending"] == 12
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM transactions WHERE receipt_ref IS NULL AND member_id = (SELECT id FROM members WHERE card_number = $1)",
            card,
        )
        == 1
    )

    bad = await browser_like.post("/portal/till/earn", data={**form, "amount": "12,505"})
    assert bad.status_code == 422 and "type it like 12,50" in bad.text
    assert "application/problem+json" not in bad.headers["content-type"]
    forged = await browser_like.post("/portal/till/earn", data={**form, "csrf_token": "forged"})
    assert forged.status_code == 403 and "expired" in forged.text
    too_many = await browser_like.post(
        "/portal/till/burn",
        data={**form, "idempotency_key": "portal-" + "0" * 32, "points": "500"},
    )
    assert too_many.status_code == 422 and "error" in too_many.text
    assert (await balances(pool, card))["pending"] == 12


async def test_transactions_page_loads_more_as_a_fragment(
    browser_like: httpx.AsyncClient, cashier: Staff
) -> None:
    await _sign_in(browser_like)
    page = await browser_like.get("/portal/transactions")
    assert page.status_code == 200 and "12,50 €" in page.text
    bad = await browser_like.get("/portal/transactions", params={"cursor": "nonsense"})
    assert bad.status_code == 400 and "cursor" in bad.text


async def test_a_disabled_account_is_signed_out_at_once(
    browser_like: httpx.AsyncClient, pool: asyncpg.Pool, clock: ManualClock, cashier: Staff
) -> None:
    await _sign_in(browser_like)
    assert (await browser_like.get("/portal/till")).status_code == 200
    await pool.execute(
        "UPDATE partner_staff SET disabled_at = $2 WHERE id = $1", cashier.id, clock.now()
    )
    try:
        assert (await browser_like.get("/portal/till")).status_code == 303
        htmx = await browser_like.get("/portal/till", headers={"HX-Request": "true"})
        assert htmx.headers["hx-redirect"] == "/portal/sign-in"
    finally:
        await pool.execute("UPDATE partner_staff SET disabled_at = NULL WHERE id = $1", cashier.id)


async def test_kring_staff_create_reads_the_password_from_stdin(
    database_url: str, shop: Credentials, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    environ = {**os.environ, "DATABASE_URL": database_url, "KRING_DATA_DIR": str(tmp_path)}
    args = [KRING, "staff", "create", "--partner", "portal-shop", "--email", "lee@shop.example"]
    args += ["--name", "Lee", "--password-stdin", "--role", "manager"]
    result = await asyncio.to_thread(
        subprocess.run, args, input=PASSWORD + "\n", env=environ, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "lee@shop.example (manager)" in result.stdout
    async with pool.acquire() as conn:
        assert await authenticate(conn, "lee@shop.example", PASSWORD) is not None
    unknown = await asyncio.to_thread(
        subprocess.run,
        [*args[:4], "no-such-partner", *args[5:]],
        input=PASSWORD + "\n",
        env=environ,
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 1 and "partner_not_found" in unknown.stderr


async def test_only_managers_rotate_api_credentials(
    app: Any, pool: asyncpg.Pool, clock: ManualClock, shop: Credentials, cashier: Staff
) -> None:
    await transaction(
        pool,
        lambda conn: create_staff(
            conn,
            partner_code="portal-shop",
            email="max@portal-shop.example",
            display_name="Max",
            password=PASSWORD,
            role="manager",
            now=clock.now(),
        ),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.kring.test"
    ) as as_cashier:
        await _sign_in(as_cashier)
        refused = await as_cashier.get("/portal/credentials")
        assert refused.status_code == 403 and "Managers only" in refused.text
        assert "API access" not in (await as_cashier.get("/portal/till")).text
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.kring.test"
    ) as as_manager:
        form = await as_manager.get("/portal/sign-in")
        token = _CSRF.search(form.text)
        assert token is not None
        await as_manager.post(
            "/portal/sign-in",
            data={"email": "max@portal-shop.example", "password": PASSWORD, "csrf_token": token[1]},
        )
        page = await as_manager.get("/portal/credentials")
        assert page.status_code == 200 and shop.client_id in page.text
        assert (await as_manager.post("/portal/credentials/rotate")).status_code == 403
        csrf = _CSRF.search(page.text)
        assert csrf is not None
        rotated = await as_manager.post("/portal/credentials/rotate", data={"csrf_token": csrf[1]})
        assert rotated.status_code == 201 and rotated.headers["cache-control"] == "no-store"
    secret = re.search(r'data-testid="client-secret">([^<]+)<', rotated.text)
    client_id = re.search(r'data-testid="client-id">([^<]+)<', rotated.text)
    assert secret is not None and client_id is not None
    async with pool.acquire() as conn:
        assert await verify_credentials(conn, shop.client_id, shop.client_secret) is None
        assert await verify_credentials(conn, client_id[1], secret[1]) is not None
