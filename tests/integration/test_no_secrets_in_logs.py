"""Secrets, codes and tokens never reach the logs.

Every sign-in flow (member code by API and by wallet form, admin password with
TOTP and with a recovery code, partner client credentials, portal password)
runs against the real app served by uvicorn on loopback, at DEBUG for every
logger with uvicorn's access log on (more than `kring serve` ever logs). Each
record of every logger (Litestar's and uvicorn's too, which need not propagate
to the root) and everything written to stdout and stderr is searched for each
password, client secret, code, bearer token and session cookie value, right
and wrong alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest
import uvicorn

from api.admin_auth import accounts
from api.clock import ManualClock
from api.db.pool import transaction
from api.logs import RedactSecrets
from api.member_auth.guards import WALLET_SESSION_COOKIE
from api.portal import session as portal_session
from api.portal import staff as portal_staff
from tests.integration.test_member_sign_in import ask_code, csrf_of, last_code

PASSWORD = "Pa55-word-that-must-never-be-logged"
WRONG_PASSWORD = "Wrong-pa55word-also-never-logged"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Everything(logging.Handler):
    """Keeps every record's message, arguments and traceback as text; it filters
    as the handler of `api/logs.py` that every `kring` process logs through."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.addFilter(RedactSecrets())
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.name, str(record.msg), repr(record.args)]
        with contextlib.suppress(Exception):  # a malformed record still shows its raw parts
            parts.append(record.getMessage())
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            parts.append(record.stack_info)
        parts.extend(repr(v) for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES)
        self.texts.append("\n".join(parts))


_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@pytest.fixture
def every_log() -> Iterator[Everything]:
    """A handler on the root and on every logger that exists, all at DEBUG."""
    handler = Everything()
    saved: list[tuple[logging.Logger, int]] = []
    names = [*logging.Logger.manager.loggerDict, "uvicorn", "uvicorn.error", "uvicorn.access"]
    names += ["litestar", "httpx", "httpcore", "asyncpg", "kring"]
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in set(names)]
    for logger in loggers:
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    yield handler
    logging.disable(disabled)
    for logger, level in saved:
        logger.setLevel(level)
        logger.removeHandler(handler)


@pytest.fixture
async def server(app: Any) -> AsyncIterator[str]:
    """The module's app behind a real uvicorn on a loopback port, logging at DEBUG."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",  # the app already shares the module's pool
        log_level="debug",
        access_log=True,
        log_config=None,  # keep our handlers: uvicorn's loggers reach them
    )
    served = uvicorn.Server(config)
    task = asyncio.create_task(served.serve())
    for _ in range(500):  # ten seconds at most
        if served.started:
            break
        await asyncio.sleep(0.02)
    assert served.started
    port = served.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    served.should_exit = True
    await task


async def _partner_flow(base: str, make_partner: Any, secrets: list[str]) -> None:
    creds = await make_partner()
    secrets.append(creds.client_secret)
    async with httpx.AsyncClient(base_url=base) as http:
        wrong = await http.post(
            "/partner/v1/token",
            json={
                "grant_type": "client_credentials",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret[:-4] + "XXXX",
            },
        )
        assert wrong.status_code == 401
        secrets.append(creds.client_secret[:-4] + "XXXX")
        for send in ("json", "data"):
            answer = await http.post(
                "/partner/v1/token",
                **{
                    send: {
                        "grant_type": "client_credentials",
                        "client_id": creds.client_id,
                        "client_secret": creds.client_secret,
                    }
                },
            )
            assert answer.status_code == 200, answer.text
            token = answer.json()["access_token"]
            secrets.append(token)
            used = await http.get(
                "/partner/v1/transactions", headers={"Authorization": f"Bearer {token}"}
            )
            assert used.status_code == 200, used.text
        refused = await http.get(
            "/partner/v1/transactions", headers={"Authorization": f"Bearer {token}x"}
        )
        assert refused.status_code == 401


async def _member_api_flow(base: str, pool: asyncpg.Pool, secrets: list[str]) -> None:
    email = "logs-api@example.com"
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.post("/member/v1/auth/code", json={"email": email})).status_code == 202
        code = await last_code(pool, email)
        wrong_code = f"{(int(code) + 1) % 1_000_000:06d}"
        secrets += [code, wrong_code]
        wrong = await http.post("/member/v1/auth/token", json={"email": email, "code": wrong_code})
        assert wrong.status_code == 422, wrong.text
        answer = await http.post("/member/v1/auth/token", json={"email": email, "code": code})
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        secrets.append(token)
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/member/v1/profile", headers=bearer)).status_code == 200
        assert (await http.post("/member/v1/auth/revoke", headers=bearer)).status_code == 204
        assert (await http.get("/member/v1/profile", headers=bearer)).status_code == 401


async def _wallet_flow(base: str, pool: asyncpg.Pool, secrets: list[str]) -> None:
    email = "logs-wallet@example.com"
    async with httpx.AsyncClient(base_url=base) as browser:
        sent = await ask_code(browser, email)
        assert sent.status_code == 303, sent.text
        code = await last_code(pool, email)
        secrets.append(code)
        for cookie in browser.cookies.jar:
            secrets.append(cookie.value or "")  # the sign-in ticket
        page = await browser.get("/sign-in/code")
        signed_in = await browser.post(
            "/sign-in/code", data={"code": code, "csrf_token": csrf_of(page.text)}
        )
        assert signed_in.status_code == 303, signed_in.text
        session = browser.cookies.get(WALLET_SESSION_COOKIE)
        assert session
        secrets.append(session)
        assert (await browser.get("/")).status_code == 200


async def _admin_flow(
    base: str, pool: asyncpg.Pool, clock: ManualClock, secrets: list[str]
) -> None:
    created = await transaction(
        pool,
        lambda conn: accounts.create_admin(
            conn, email="logs-admin@kring.test", role="owner", password=PASSWORD, now=clock.now()
        ),
    )
    totp = pyotp.parse_uri(created.totp_uri)
    assert isinstance(totp, pyotp.TOTP)
    totp_code = totp.at(clock.now())
    secrets += [PASSWORD, WRONG_PASSWORD, totp_code, totp.secret, *created.recovery_codes]
    async with httpx.AsyncClient(base_url=base) as http:
        body = {"email": created.principal.email, "password": PASSWORD}
        wrong = await http.post(
            "/admin/v1/token", json=body | {"password": WRONG_PASSWORD, "totp_code": totp_code}
        )
        assert wrong.status_code == 401
        for second in ({"totp_code": totp_code}, {"recovery_code": created.recovery_codes[0]}):
            answer = await http.post("/admin/v1/token", json=body | second)
            assert answer.status_code == 200, answer.text
            token = answer.json()["access_token"]
            secrets.append(token)
            used = await http.get("/admin/v1/audit", headers={"Authorization": f"Bearer {token}"})
            assert used.status_code == 200, used.text


async def _portal_flow(
    base: str, make_partner: Any, pool: asyncpg.Pool, clock: ManualClock, secrets: list[str]
) -> None:
    await make_partner(code="logs-shop")
    email = "till@logs-shop.example"
    await transaction(
        pool,
        lambda conn: portal_staff.create_staff(
            conn,
            partner_code="logs-shop",
            email=email,
            display_name="Till",
            password=PASSWORD,
            role="manager",
            now=clock.now(),
        ),
    )
    async with httpx.AsyncClient(base_url=base) as browser:
        for password in (WRONG_PASSWORD, PASSWORD):
            form = await browser.get("/portal/sign-in")
            token = _CSRF.search(form.text)
            assert token is not None
            secrets.append(token[1])
            answer = await browser.post(
                "/portal/sign-in",
                data={"email": email, "password": password, "csrf_token": token[1]},
            )
        assert answer.status_code == 303, answer.text
        session = browser.cookies.get(portal_session.SESSION_COOKIE)
        assert session
        secrets.append(session)
        assert (await browser.get("/portal/till")).status_code == 200


async def test_no_secret_code_or_token_is_logged(
    every_log: Everything,
    server: str,
    capfd: pytest.CaptureFixture[str],
    make_partner: Any,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Any,
) -> None:
    secrets: list[str] = [settings.jwt_secret]
    await _partner_flow(server, make_partner, secrets)
    await _member_api_flow(server, pool, secrets)
    await _wallet_flow(server, pool, secrets)
    await _admin_flow(server, pool, clock, secrets)
    await _portal_flow(server, make_partner, pool, clock, secrets)

    # The capture works: uvicorn logged each request, and Litestar's logger is heard.
    logging.getLogger("litestar").debug("probe-litestar")
    logged = "\n".join(every_log.texts)
    assert "probe-litestar" in logged
    assert "POST /partner/v1/token" in logged and "POST /admin/v1/token" in logged
    assert len(every_log.texts) > 20, every_log.texts
    printed = capfd.readouterr()
    everything = "\n".join([logged, printed.out, printed.err])
    for secret in secrets:
        assert len(secret) >= 6, secret
        assert secret not in everything, f"logged: {secret[:4]}…"
        if secret.count(".") == 2:  # a JWT: not even its signature
            assert secret.rsplit(".", 1)[1] not in everything
