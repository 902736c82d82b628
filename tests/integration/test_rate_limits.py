"""Sign-in and token rate limits hold across API processes: two applications
(two `create_app` calls, each with its own connection pool, as two processes
would have) on one database count every hit together, whichever one answers."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from api.admin_auth import accounts
from api.app import create_app
from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import create_pool, transaction
from api.member_auth import codes
from api.partner_api import auth as partner_auth
from api.portal import session as portal_session
from api.portal import staff as portal_staff
from api.settings import Settings
from tests.integration.test_reconciliation import assert_problem

PASSWORD = "correct horse battery"
_ips = itertools.count(1)
_emails = itertools.count(1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
async def two_apps(
    settings: Settings, database_url: str, clock: ManualClock
) -> AsyncIterator[tuple[Any, Any]]:
    apps = []
    pools: list[asyncpg.Pool] = []
    for _ in range(2):
        application = create_app(settings, database_url, clock=clock)
        pool = await create_pool(database_url, min_size=1, max_size=4)
        application.state.runtime.pool = pool
        apps.append(application)
        pools.append(pool)
    yield apps[0], apps[1]
    for pool in pools:
        await pool.close()


ClientPair = tuple[httpx.AsyncClient, httpx.AsyncClient]


@pytest.fixture
def clients(two_apps: tuple[Any, Any]) -> Callable[[], ClientPair]:
    """One client on each application, both from the same (new) IP address."""

    def make() -> ClientPair:
        ip = f"10.9.{next(_ips)}.1"
        return (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=two_apps[0], client=(ip, 40000)),
                base_url="http://localhost",
            ),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=two_apps[1], client=(ip, 40001)),
                base_url="http://localhost",
            ),
        )

    return make


def assert_rate_limited(response: httpx.Response, window: timedelta) -> None:
    assert_problem(response, 429, "rate_limited")
    assert 0 < int(response.headers["retry-after"]) <= window.total_seconds()


def _token_body(client_id: str, client_secret: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }


async def test_partner_token_requests_per_client_are_counted_across_processes(
    clients: Callable[[], ClientPair],
    make_partner: Callable[..., Awaitable[Credentials]],
    pool: asyncpg.Pool,
    clock: ManualClock,
) -> None:
    creds = await make_partner()
    wrong = _token_body(creds.client_id, "not-the-secret")
    pair = clients()
    for n in range(partner_auth.TOKEN_REQUESTS_PER_CLIENT_MAX):
        # A new address every ten: the client's own limit is what stops it.
        if n % 10 == 0:
            pair = clients()
        response = await pair[n % 2].post("/partner/v1/token", json=wrong)
        assert_problem(response, 401, "invalid_client")
    for app_client in pair:
        refused = await app_client.post("/partner/v1/token", json=wrong)
        assert_rate_limited(refused, partner_auth.TOKEN_REQUEST_WINDOW)
    # Past the limit even the right secret waits: guessing cannot go on meanwhile.
    right = _token_body(creds.client_id, creds.client_secret)
    assert_rate_limited(
        await pair[0].post("/partner/v1/token", json=right), partner_auth.TOKEN_REQUEST_WINDOW
    )
    hits = await pool.fetchval(
        "SELECT sum(hits) FROM auth_rate_limits WHERE bucket = $1",
        f"partner-token:client:{creds.client_id}",
    )
    assert hits == partner_auth.TOKEN_REQUESTS_PER_CLIENT_MAX + 3
    # Another client is not affected; the next window opens again.
    other = await make_partner()
    ok = await pair[1].post(
        "/partner/v1/token", json=_token_body(other.client_id, other.client_secret)
    )
    assert ok.status_code == 200, ok.text
    clock.advance(partner_auth.TOKEN_REQUEST_WINDOW)
    again = await pair[1].post("/partner/v1/token", json=right)
    assert again.status_code == 200 and again.json()["token_type"] == "Bearer"


async def test_partner_token_requests_per_ip_are_counted_across_processes(
    clients: Callable[[], ClientPair], make_partner: Callable[..., Awaitable[Credentials]]
) -> None:
    creds = await make_partner()
    pair = clients()
    for n in range(partner_auth.TOKEN_REQUESTS_PER_IP_MAX):
        # A different (unknown) client id each time: the address's limit stops them.
        response = await pair[n % 2].post(
            "/partner/v1/token", json=_token_body(f"sprayed-{n}", "guess")
        )
        assert response.status_code == 401, response.text
    right = _token_body(creds.client_id, creds.client_secret)
    for app_client in pair:
        assert_rate_limited(
            await app_client.post("/partner/v1/token", json=right),
            partner_auth.TOKEN_REQUEST_WINDOW,
        )
    # From another address the same credentials work.
    ok = await clients()[0].post("/partner/v1/token", json=right)
    assert ok.status_code == 200, ok.text


async def test_the_token_endpoint_documents_its_limit(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/partner/v1/token"]["post"]
    assert "rate_limited" in operation["description"]
    assert "Retry-After" in operation["description"]
    assert "429" in operation["responses"]


async def test_portal_sign_in_attempts_are_counted_across_processes(
    clients: Callable[[], ClientPair],
    make_partner: Callable[..., Awaitable[Credentials]],
    pool: asyncpg.Pool,
    clock: ManualClock,
) -> None:
    await make_partner(code="limits-shop")
    email = f"till{next(_emails)}@limits-shop.example"
    await transaction(
        pool,
        lambda conn: portal_staff.create_staff(
            conn,
            partner_code="limits-shop",
            email=email,
            display_name="Till",
            password=PASSWORD,
            now=clock.now(),
        ),
    )

    async def attempt(client: httpx.AsyncClient, password: str) -> httpx.Response:
        form = await client.get("/portal/sign-in")
        token = _CSRF.search(form.text)
        assert token is not None
        return await client.post(
            "/portal/sign-in",
            data={"email": email, "password": password, "csrf_token": token[1]},
        )

    pair = clients()
    for n in range(portal_staff.SIGN_INS_PER_ADDRESS_MAX):
        if n % 5 == 0:
            pair = clients()
        wrong = await attempt(pair[n % 2], "wrong password")
        assert wrong.status_code == 401 and "Wrong email or password." in wrong.text
    for app_client in pair:
        refused = await attempt(app_client, PASSWORD)
        assert refused.status_code == 429, refused.status_code
        assert "Too many sign-in attempts" in refused.text
        assert (
            0 < int(refused.headers["retry-after"]) <= portal_staff.SIGN_IN_WINDOW.total_seconds()
        )
        assert f"{portal_session.SESSION_COOKIE}=" not in refused.headers.get("set-cookie", "")
    clock.advance(portal_staff.SIGN_IN_WINDOW)
    signed_in = await attempt(clients()[1], PASSWORD)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/portal/till"


async def test_admin_sign_in_attempts_are_counted_across_processes(
    clients: Callable[[], ClientPair], pool: asyncpg.Pool, clock: ManualClock
) -> None:
    email = f"limits-admin{next(_emails)}@kring.test"
    await transaction(
        pool,
        lambda conn: accounts.create_admin(
            conn, email=email, role="owner", password=PASSWORD, now=clock.now()
        ),
    )
    body = {"email": email, "password": "wrong", "totp_code": "000000"}
    pair = clients()
    for n in range(accounts.SIGN_INS_PER_ADDRESS_MAX):
        if n % 5 == 0:
            pair = clients()
        assert_problem(
            await pair[n % 2].post("/admin/v1/token", json=body), 401, "invalid_credentials"
        )
    for app_client in pair:
        assert_rate_limited(
            await app_client.post("/admin/v1/token", json=body), accounts.SIGN_IN_WINDOW
        )


async def test_member_codes_are_counted_across_processes(
    clients: Callable[[], ClientPair],
) -> None:
    email = f"limits-member{next(_emails)}@example.com"
    for n in range(codes.CODE_SENDS_PER_ADDRESS_MAX):
        pair = clients()
        sent = await pair[n % 2].post("/member/v1/auth/code", json={"email": email})
        assert sent.status_code == 202, sent.text
    for app_client in pair:
        assert_rate_limited(
            await app_client.post("/member/v1/auth/code", json={"email": email}),
            codes.CODE_SEND_WINDOW,
        )
    # Entering codes is limited per IP, across both processes.
    pair = clients()
    for n in range(codes.CODE_CHECKS_PER_IP_MAX):
        answer = await pair[n % 2].post(
            "/member/v1/auth/token",
            json={"email": f"guess{n}-{email}", "code": f"{n:06d}"},
        )
        assert answer.status_code == 422, answer.text
    for app_client in pair:
        assert_rate_limited(
            await app_client.post("/member/v1/auth/token", json={"email": email, "code": "123456"}),
            codes.CODE_CHECK_WINDOW,
        )
