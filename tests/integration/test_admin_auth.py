"""Admin accounts: password plus a mandatory second factor (TOTP or a
single-use recovery code), 15-minute bearer tokens for /admin/v1, the role
guard, and the append-only audit log with its owner-only listing.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest
from click.testing import CliRunner
from litestar import get
from litestar.di import Provide

from api import signed_tokens
from api.admin_auth import accounts, audit
from api.admin_auth.guards import Admin, admin_principal, requires_roles
from api.admin_auth.tokens import issue_admin_token
from api.app import create_app
from api.cli import main
from api.clock import ManualClock
from api.db.pool import transaction
from api.settings import Settings

PASSWORD = "correct horse battery"
SECRET = "test-secret-" + "x" * 40  # tests/conftest.py's settings
_emails = itertools.count(1)
_ips = itertools.count(1)


@get(
    "/test/admin/finance",
    guards=[requires_roles("owner", "finance")],
    dependencies={"admin": Provide(admin_principal)},
    include_in_schema=False,
)
async def finance_only(admin: Admin) -> dict[str, Any]:
    return {"admin_id": admin.admin_id, "role": admin.role}


@pytest.fixture(scope="module")
def app(settings: Settings, database_url: str, clock: ManualClock, pool: asyncpg.Pool) -> Any:
    application = create_app(settings, database_url, clock=clock)
    application.state.runtime.pool = pool
    application.register(finance_only)
    return application


def client(app: Any) -> httpx.AsyncClient:
    """A client with its own IP, so that per-IP limits stay apart between tests."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(f"10.7.{next(_ips)}.1", 40000)),
        base_url="http://kring.test",
    )


async def new_admin(
    pool: asyncpg.Pool, clock: ManualClock, role: str = "owner"
) -> accounts.CreatedAdmin:
    email = f"admin{next(_emails)}@kring.test"
    return await transaction(
        pool,
        lambda conn: accounts.create_admin(
            conn, email=email, role=role, password=PASSWORD, now=clock.now()
        ),
    )


def totp_now(created: accounts.CreatedAdmin, clock: ManualClock) -> str:
    totp = pyotp.parse_uri(created.totp_uri)
    assert isinstance(totp, pyotp.TOTP)
    return totp.at(clock.now())


async def sign_in(
    http: httpx.AsyncClient, created: accounts.CreatedAdmin, **overrides: Any
) -> httpx.Response:
    body: dict[str, Any] = {"email": created.principal.email, "password": PASSWORD, **overrides}
    return await http.post("/admin/v1/token", json=body)


async def test_guard_refuses_without_token_and_wrong_role(
    app: Any, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    async with client(app) as http:
        response = await http.get("/test/admin/finance")
        assert response.status_code == 401
        assert response.json()["code"] == "missing_token"
        marketing = await new_admin(pool, clock, role="marketing")
        finance = await new_admin(pool, clock, role="finance")
        for created, status in ((marketing, 403), (finance, 200)):
            token = issue_admin_token(created.principal.admin_id, secret=SECRET, now=clock.now())
            response = await http.get(
                "/test/admin/finance", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == status, response.text
        assert response.json() == {"admin_id": finance.principal.admin_id, "role": "finance"}
        denied = await http.get(
            "/test/admin/finance",
            headers={
                "Authorization": "Bearer "
                + issue_admin_token(marketing.principal.admin_id, secret=SECRET, now=clock.now())
            },
        )
        assert denied.json()["code"] == "forbidden_role"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def token_for(
    http: httpx.AsyncClient, created: accounts.CreatedAdmin, clock: ManualClock
) -> str:
    response = await sign_in(http, created, totp_code=totp_now(created, clock))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_token_flow_with_password_and_totp(
    app: Any, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    owner = await new_admin(pool, clock)
    async with client(app) as http:
        response = await sign_in(http, owner, totp_code=totp_now(owner, clock))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 900
        me = await http.get("/test/admin/finance", headers=bearer(body["access_token"]))
        assert me.json() == {"admin_id": owner.principal.admin_id, "role": "owner"}
    assert owner.totp_uri.startswith("otpauth://totp/")
    assert len(owner.recovery_codes) == accounts.RECOVERY_CODES_COUNT
    stored = await pool.fetchval(
        "SELECT password_hash FROM admin_accounts WHERE id = $1", owner.principal.admin_id
    )
    assert stored.startswith("$argon2id$")


async def test_every_wrong_credential_is_the_same_answer(
    app: Any, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    admin = await new_admin(pool, clock)
    code = totp_now(admin, clock)
    wrong_code = f"{(int(code) + 1) % 1_000_000:06d}"
    async with client(app) as http:
        attempts = [
            await sign_in(http, admin, password="not the password", totp_code=code),
            await sign_in(http, admin, email="nobody@kring.test", totp_code=code),
            await sign_in(http, admin, totp_code=wrong_code),
            await sign_in(http, admin, recovery_code="AAAA-BBBB-CCCC-DDDD"),
        ]
        for response in attempts:
            assert response.status_code == 401, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == "invalid_credentials"
        assert len({r.json()["detail"] for r in attempts}) == 1
        # The wrong password did not burn the code: it still works once.
        assert (await sign_in(http, admin, totp_code=code)).status_code == 200
        neither = await sign_in(http, admin)
        both = await sign_in(http, admin, totp_code=code, recovery_code="x")
        assert neither.status_code == both.status_code == 422


async def test_a_totp_code_works_once_within_its_window(
    app: Any, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    admin = await new_admin(pool, clock)
    totp = pyotp.parse_uri(admin.totp_uri)
    assert isinstance(totp, pyotp.TOTP)
    async with client(app) as http:
        code = totp.at(clock.now())
        assert (await sign_in(http, admin, totp_code=code)).status_code == 200
        replay = await sign_in(http, admin, totp_code=code)
        assert replay.json()["code"] == "invalid_credentials"
        # The previous step's code is within the drift window, but older than the last used.
        older = totp.at(clock.now() - timedelta(seconds=30))
        assert (await sign_in(http, admin, totp_code=older)).status_code == 401
        clock.advance(timedelta(seconds=30))
        assert (await sign_in(http, admin, totp_code=totp.at(clock.now()))).status_code == 200
        # A code two steps away is outside the window.
        clock.advance(timedelta(seconds=30))
        stale = totp.at(clock.now() - timedelta(seconds=90))
        assert (await sign_in(http, admin, totp_code=stale)).status_code == 401


async def test_a_recovery_code_works_once(app: Any, pool: asyncpg.Pool, clock: ManualClock) -> None:
    admin = await new_admin(pool, clock)
    first, second = admin.recovery_codes[:2]
    async with client(app) as http:
        # Typed from paper: case and dashes do not matter.
        typed = first.lower().replace("-", " ")
        assert (await sign_in(http, admin, recovery_code=typed)).status_code == 200
        again = await sign_in(http, admin, recovery_code=first)
        assert again.json()["code"] == "invalid_credentials"
        assert (await sign_in(http, admin, recovery_code=second)).status_code == 200
    used = await pool.fetchval(
        "SELECT count(*) FROM admin_recovery_codes WHERE admin_id = $1 AND used_at IS NOT NULL",
        admin.principal.admin_id,
    )
    assert used == 2


async def test_a_disabled_admin_stops_at_once(
    app: Any, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    admin = await new_admin(pool, clock, role="finance")
    async with client(app) as http:
        token = await token_for(http, admin, clock)
        assert (await http.get("/test/admin/finance", headers=bearer(token))).status_code == 200
        await transaction(
            pool,
            lambda conn: accounts.disable_admin(conn, admin.principal.email, now=clock.now()),
        )
        refused = await http.get("/test/admin/finance", headers=bearer(token))
        assert refused.status_code == 401
        assert refused.json()["code"] == "admin_disabled"
        clock.advance(timedelta(seconds=30))
        again = await sign_in(http, admin, totp_code=totp_now(admin, clock))
        assert again.json()["code"] == "invalid_credentials"


async def test_expired_forged_and_foreign_tokens_are_refused(
    app: Any, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    admin = await new_admin(pool, clock)
    admin_id = admin.principal.admin_id
    async with client(app) as http:
        token = issue_admin_token(admin_id, secret=SECRET, now=clock.now())
        forged = issue_admin_token(admin_id, secret="another-secret-" + "y" * 40, now=clock.now())
        foreign = signed_tokens.mint(
            {"sub": str(admin_id)},
            audience="kring:member",
            secret=SECRET,
            now=clock.now(),
            expires_at=clock.now() + timedelta(minutes=5),
        )
        cases = [
            (bearer(forged), "invalid_token"),
            (bearer(foreign), "invalid_token"),
            ({"Authorization": f"Basic {token}"}, "invalid_token"),
            ({}, "missing_token"),
        ]
        for headers, code in cases:
            response = await http.get("/test/admin/finance", headers=headers)
            assert (response.status_code, response.json()["code"]) == (401, code)
        clock.advance(timedelta(minutes=15))
        expired = await http.get("/test/admin/finance", headers=bearer(token))
        assert (expired.status_code, expired.json()["code"]) == (401, "token_expired")


async def test_sign_in_is_rate_limited_per_address(
    app: Any, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    admin = await new_admin(pool, clock)
    async with client(app) as http:
        for _ in range(accounts.SIGN_INS_PER_ADDRESS_MAX):
            wrong = await sign_in(http, admin, password="not the password", totp_code="000000")
            assert wrong.status_code == 401
    # Another IP, the same address: still limited, even with the right credentials.
    async with client(app) as http:
        limited = await sign_in(http, admin, totp_code=totp_now(admin, clock))
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1


async def test_audit_rows_commit_with_their_change_and_never_change(
    pool: asyncpg.Pool, clock: ManualClock
) -> None:
    admin = (await new_admin(pool, clock)).principal

    async def change(conn: asyncpg.Connection) -> int:
        return await audit.record(
            conn, admin, "test.change", "thing:1", {"rate": 1}, {"rate": 2}, clock.now()
        )

    audit_id = await transaction(pool, change)
    row = await pool.fetchrow("SELECT * FROM admin_audit_log WHERE id = $1", audit_id)
    assert (row["admin_email"], row["admin_role"], row["action"]) == (
        admin.email,
        "owner",
        "test.change",
    )

    async def change_then_fail(conn: asyncpg.Connection) -> None:
        await audit.record(conn, admin, "test.rolled_back", "thing:2", None, {}, clock.now())
        raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await transaction(pool, change_then_fail)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE action = 'test.rolled_back'"
        )
        == 0
    )
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            await audit.record(conn, admin, "test.loose", "thing:3", None, None, clock.now())
    for statement in (
        "UPDATE admin_audit_log SET action = 'rewritten' WHERE id = $1",
        "DELETE FROM admin_audit_log WHERE id = $1",
    ):
        with pytest.raises(asyncpg.exceptions.RestrictViolationError):
            await pool.execute(statement, audit_id)
    with pytest.raises(asyncpg.exceptions.RestrictViolationError):
        await pool.execute("TRUNCATE admin_audit_log")


async def test_audit_listing_is_owner_only_filtered_and_paginated(
    app: Any, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    owner = await new_admin(pool, clock)
    marketing = await new_admin(pool, clock, role="marketing")
    clock.advance(timedelta(minutes=1))  # after every other test's rows
    start = clock.now()
    for i in range(5):
        who = owner if i % 2 == 0 else marketing

        async def write(
            conn: asyncpg.Connection, who: accounts.CreatedAdmin = who, i: int = i
        ) -> int:
            return await audit.record(
                conn, who.principal, f"listing.{i % 2}", f"n:{i}", None, {"i": i}, clock.now()
            )

        await transaction(pool, write)
        clock.advance(timedelta(minutes=1))
    async with client(app) as http:
        owner_token = await token_for(http, owner, clock)
        marketing_token = await token_for(http, marketing, clock)
        denied = await http.get("/admin/v1/audit", headers=bearer(marketing_token))
        assert (denied.status_code, denied.json()["code"]) == (403, "forbidden_role")

        async def listing(**params: Any) -> dict[str, Any]:
            response = await http.get("/admin/v1/audit", params=params, headers=bearer(owner_token))
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        first = await listing(limit=2, since=start.isoformat())
        second = await listing(limit=2, since=start.isoformat(), cursor=first["next_cursor"])
        third = await listing(limit=2, since=start.isoformat(), cursor=second["next_cursor"])
        pages = [first, second, third]
        subjects = [e["subject"] for page in pages for e in page["items"]]
        assert subjects == ["n:4", "n:3", "n:2", "n:1", "n:0"]
        assert third["next_cursor"] is None
        by_admin = await listing(admin_id=marketing.principal.admin_id)
        assert [e["subject"] for e in by_admin["items"]] == ["n:3", "n:1"]
        by_action = await listing(action="listing.0")
        assert [e["after"] for e in by_action["items"]] == [{"i": 4}, {"i": 2}, {"i": 0}]
        window = await listing(
            since=(start + timedelta(minutes=1)).isoformat(),
            until=(start + timedelta(minutes=3)).isoformat(),
        )
        assert [e["subject"] for e in window["items"]] == ["n:2", "n:1"]
        bad = await http.get(
            "/admin/v1/audit", params={"cursor": "nonsense"}, headers=bearer(owner_token)
        )
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cursor")


@pytest.fixture
def root_logger_restored() -> Iterator[None]:
    # `kring` configures the root logger for its process; in-process, that
    # handler would outlive the runner's captured stderr and log into a closed stream.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_cli_creates_and_disables_an_admin(
    database_url: str, tmp_path: Path, root_logger_restored: None
) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "KRING_DATA_DIR": str(tmp_path)}
    create = ["admin", "create", "--email", "cli-admin@kring.test", "--role", "support"]
    created = runner.invoke(main, [*create, "--password-stdin"], input=PASSWORD + "\n", env=env)
    assert created.exit_code == 0, created.output
    lines = created.stdout.splitlines()
    uri = next(line for line in lines if line.startswith("otpauth://totp/"))
    assert "secret=" in uri and "issuer=Kring" in uri
    codes = [line for line in lines if re.fullmatch(r"([A-Z2-7]{4}-){3}[A-Z2-7]{4}", line)]
    assert len(codes) == accounts.RECOVERY_CODES_COUNT
    again = runner.invoke(main, [*create, "--password-stdin"], input=PASSWORD + "\n", env=env)
    assert again.exit_code == 1 and "admin_exists" in again.stderr
    disabled = runner.invoke(main, ["admin", "disable", "--email", "cli-admin@kring.test"], env=env)
    assert disabled.exit_code == 0, disabled.output
    unknown = runner.invoke(main, ["admin", "disable", "--email", "nobody@kring.test"], env=env)
    assert unknown.exit_code == 1 and "admin_not_found" in unknown.stderr
