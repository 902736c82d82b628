"""Shared fixtures: one embedded PostgreSQL per test session, a fresh database
per test module (cloned from a migrated template), and the ledger check run
when each module finishes: a module that leaves the ledger unsound fails.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest

from api.admin_auth import accounts as admin_accounts
from api.admin_auth.tokens import issue_admin_token
from api.app import create_app
from api.backoffice import session as backoffice_sessions
from api.clock import ManualClock
from api.coalition.members import create_member
from api.coalition.partners import Credentials, NewPartner, create_partner
from api.db import migrate
from api.db.embedded import EmbeddedServer, ensure_database
from api.db.pool import create_pool, transaction
from api.ledger.check import check_ledger
from api.member_auth.sessions import open_session
from api.member_auth.tokens import MEMBER_API_AUDIENCE, issue_session_token
from api.settings import Settings, load_settings
from partners.client import PartnerClient

TEMPLATE_DB = "kring_template"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_database_numbers = itertools.count(1)
_codes = itertools.count(1)
_admin_emails = itertools.count(1)
JWT_SECRET = "test-secret-" + "x" * 40  # the `settings` fixture's


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedServer]:
    # Short path: PostgreSQL's unix socket path must stay under 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="kt"))
    server = EmbeddedServer(root / "pg")
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_url(pg_server: EmbeddedServer) -> str:
    await ensure_database(pg_server.admin_url, TEMPLATE_DB)
    url = pg_server.url_for(TEMPLATE_DB)
    await asyncio.to_thread(migrate.upgrade, url)  # Alembic's env runs its own event loop
    return url


@pytest.fixture(scope="module")
async def database_url(pg_server: EmbeddedServer, template_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this module; ledger-checked at the end."""
    name = f"kring_test_{os.getpid()}_{next(_database_numbers)}"
    await ensure_database(pg_server.admin_url, name, template=TEMPLATE_DB)
    url = pg_server.url_for(name)
    yield url
    conn = await asyncpg.connect(url)
    try:
        violations = await check_ledger(conn)
    finally:
        await conn.close()
    assert not violations, "ledger check failed:\n" + "\n".join(v.describe() for v in violations)


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=2, max_size=30)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        {
            "KRING_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "KRING_JWT_SECRET": JWT_SECRET,
        }
    )


@pytest.fixture(scope="module")
def app(settings: Settings, database_url: str, clock: ManualClock, pool: asyncpg.Pool) -> Any:
    """The real application, served in-process; it shares the module's pool."""
    application = create_app(settings, database_url, clock=clock)
    application.state.runtime.pool = pool
    return application


@pytest.fixture(scope="module")
def make_partner(pool: asyncpg.Pool, clock: ManualClock) -> Callable[..., Awaitable[Credentials]]:
    async def make(**terms: Any) -> Credentials:
        code = terms.pop("code", f"partner-{next(_codes)}")
        new = NewPartner(
            code=code, name=terms.pop("name", code.title()), kind=terms.pop("kind", "shop"), **terms
        )
        return await transaction(pool, lambda conn: create_partner(conn, new, now=clock.now()))

    return make


@pytest.fixture(scope="module")
def make_member(pool: asyncpg.Pool, clock: ManualClock) -> Callable[..., Awaitable[str]]:
    async def make(**fields: Any) -> str:
        member = await transaction(
            pool, lambda conn: create_member(conn, now=clock.now(), **fields)
        )
        return member.card_number

    return make


@pytest.fixture(scope="module")
def client_for(app: Any) -> Callable[[Credentials], PartnerClient]:
    """A partner's API client talking to the in-process app."""

    def make(creds: Credentials) -> PartnerClient:
        return PartnerClient(
            "http://kring.test",
            creds.client_id,
            creds.client_secret,
            transport=httpx.ASGITransport(app=app),
        )

    return make


@pytest.fixture(scope="module")
def http(app: Any) -> httpx.AsyncClient:
    """A raw HTTP client on the in-process app, for malformed and hostile requests."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kring.test")


async def balances(pool: asyncpg.Pool, card_number: str) -> dict[str, int]:
    """The member's account balances by kind (available, pending, held, debt)."""
    rows = await pool.fetch(
        "SELECT a.kind, a.balance FROM accounts a JOIN members m ON m.id = a.member_id"
        " WHERE m.card_number = $1",
        card_number,
    )
    return {r["kind"].removeprefix("member_"): r["balance"] for r in rows}


@pytest.fixture(scope="module")
def bearer(
    pool: asyncpg.Pool, clock: ManualClock, settings: Settings
) -> Callable[[str], Awaitable[dict[str, str]]]:
    """Headers with a member API access token for a card, minted as the
    sign-in flow does."""

    async def mint(card: str) -> dict[str, str]:
        member = await pool.fetchrow(
            "SELECT id, public_id FROM members WHERE card_number = $1", card
        )
        now = clock.now()
        expires_at = now + timedelta(hours=1)
        session_id = await transaction(
            pool,
            lambda conn: open_session(conn, member["id"], "api", now=now, expires_at=expires_at),
        )
        token = issue_session_token(
            session_id,
            member["public_id"],
            audience=MEMBER_API_AUDIENCE,
            secret=settings.jwt_secret or "",
            now=now,
            expires_at=expires_at,
        )
        return {"Authorization": f"Bearer {token}"}

    return mint


async def admin_headers(
    pool: asyncpg.Pool, clock: ManualClock, role: str, email: str | None = None
) -> dict[str, str]:
    """Headers with an admin API token for a new admin of `role`."""
    address = email or f"admin-{role}-{next(_admin_emails)}@example.com"
    created = await transaction(
        pool,
        lambda conn: admin_accounts.create_admin(
            conn, email=address, role=role, password=ADMIN_PASSWORD, now=clock.now()
        ),
    )
    token = issue_admin_token(created.principal.admin_id, secret=JWT_SECRET, now=clock.now())
    return {"Authorization": f"Bearer {token}"}


ADMIN_PASSWORD = "correct horse battery"


async def backoffice_session(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    clock: ManualClock,
    role: str,
    email: str | None = None,
) -> dict[str, str]:
    """Headers of a back-office session for a new admin of `role`, signed in
    through the real sign-in form (password and the TOTP code of `clock.now()`).

    The cookie goes in an explicit header: the session cookie is Secure off
    loopback, and the test client speaks plain HTTP. The CSRF header is the
    one htmx sends, which every back-office form also accepts."""
    address = email or f"backoffice-{role}-{next(_admin_emails)}@example.com"
    created = await transaction(
        pool,
        lambda conn: admin_accounts.create_admin(
            conn, email=address, role=role, password=ADMIN_PASSWORD, now=clock.now()
        ),
    )
    form = await http.get("/backoffice/sign-in")
    sign_in_csrf = form.cookies[backoffice_sessions.SIGN_IN_CSRF_COOKIE]
    answer = await http.post(
        "/backoffice/sign-in",
        data={
            "csrf_token": sign_in_csrf,
            "email": address,
            "password": ADMIN_PASSWORD,
            "code": pyotp.parse_uri(created.totp_uri).at(clock.now()),
        },
        headers={"Cookie": f"{backoffice_sessions.SIGN_IN_CSRF_COOKIE}={sign_in_csrf}"},
    )
    assert answer.status_code == 303, answer.text
    cookie = answer.cookies[backoffice_sessions.SESSION_COOKIE]
    claims = backoffice_sessions.read_session(cookie, secret=JWT_SECRET, now=clock.now())
    assert claims is not None
    http.cookies.clear()
    return {
        "Cookie": f"{backoffice_sessions.SESSION_COOKIE}={cookie}",
        backoffice_sessions.CSRF_HEADER: claims.csrf_token,
    }
