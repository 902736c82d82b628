"""Admin accounts: password plus a mandatory second factor (TOTP or a
single-use recovery code), 15-minute bearer tokens for /admin/v1, the role
guard, and the append-only audit log with its owner-only listing.
"""

from __future__ import annotations

import itertools
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest
from litestar import get
from litestar.di import Provide

from api.admin_auth import accounts
from api.admin_auth.guards import Admin, admin_principal, requires_roles
from api.admin_auth.tokens import issue_admin_token
from api.app import create_app
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
