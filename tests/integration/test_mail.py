"""Mail: sign-in codes delivered by a real SMTP server on loopback (aiosmtpd),
a refused send reported rather than lost, and the development mailbox, which
exists in development and not in production.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from api.app import create_app
from api.clock import ManualClock
from api.mail.outbox import SENT_BODY_PLACEHOLDER
from api.member_auth.guards import WALLET_SESSION_COOKIE
from api.settings import Settings, load_settings


class Inbox:
    """Collects what the SMTP server accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append((envelope, message_from_bytes(content)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _settings(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Settings:
    return load_settings(
        {
            "KRING_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "KRING_JWT_SECRET": "test-secret-" + "x" * 40,
            **env,
        }
    )


def _client(app: Any, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://127.0.0.1"
    )


def _app(settings: Settings, database_url: str, clock: ManualClock, pool: asyncpg.Pool) -> Any:
    application = create_app(settings, database_url, clock=clock)
    application.state.runtime.pool = pool
    return application


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_the_code_arrives_by_smtp_and_signs_in(
    smtp_server: tuple[Inbox, int],
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    inbox, port = smtp_server
    settings = _settings(
        tmp_path_factory,
        KRING_SMTP_URL=f"smtp://127.0.0.1:{port}",
        KRING_MAIL_FROM="Kring Wallet <wallet@kring.example>",
    )
    client = _client(_app(settings, database_url, clock, pool), "10.3.0.1")
    form = await client.get("/sign-in")
    sent = await client.post(
        "/sign-in", data={"email": "Smtp.Reader@Example.com", "csrf_token": _csrf(form.text)}
    )
    assert sent.status_code == 303 and sent.headers["location"] == "/sign-in/code"

    assert len(inbox.messages) == 1
    envelope, message = inbox.messages[0]
    assert envelope.rcpt_tos == ["smtp.reader@example.com"]
    assert message["From"] == "Kring Wallet <wallet@kring.example>"
    assert message["To"] == "smtp.reader@example.com"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    found = re.search(rb"\b(\d{6})\b", body)
    assert found is not None
    code = found.group(1).decode()
    assert code in str(message["Subject"])

    # Sent: the outbox keeps the row but not the code.
    row = await pool.fetchrow(
        "SELECT sent_at, body_text FROM mail_outbox WHERE to_address = 'smtp.reader@example.com'"
    )
    assert row is not None and row["sent_at"] is not None
    assert row["body_text"] == SENT_BODY_PLACEHOLDER and code not in row["body_text"]

    page = await client.get("/sign-in/code")
    done = await client.post("/sign-in/code", data={"code": code, "csrf_token": _csrf(page.text)})
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert WALLET_SESSION_COOKIE in client.cookies
    card = await pool.fetchval(
        "SELECT card_number FROM members WHERE email = 'smtp.reader@example.com'"
    )
    assert card is not None and len(card) == 16


async def test_a_refused_send_is_reported_and_kept_unsent(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    # Nothing listens on this port: the connection is refused.
    settings = _settings(tmp_path_factory, KRING_SMTP_URL=f"smtp://127.0.0.1:{free_port()}")
    app = _app(settings, database_url, clock, pool)
    api = _client(app, "10.3.0.2")
    refused = await api.post("/member/v1/auth/code", json={"email": "down@example.com"})
    assert refused.status_code == 503 and refused.json()["code"] == "mail_unavailable"
    row = await pool.fetchrow(
        "SELECT sent_at, attempts, last_error FROM mail_outbox WHERE to_address = 'down@example.com'"
    )
    assert row is not None and row["sent_at"] is None
    assert row["attempts"] == 1 and row["last_error"]

    browser = _client(app, "10.3.0.3")
    form = await browser.get("/sign-in")
    page = await browser.post(
        "/sign-in", data={"email": "down2@example.com", "csrf_token": _csrf(form.text)}
    )
    assert page.status_code == 503 and 'role="alert"' in page.text
    assert "could not send" in page.text


async def test_the_development_mailbox_lists_mail_newest_first(
    app: Any, pool: asyncpg.Pool
) -> None:
    api = _client(app, "10.3.0.4")
    for email in ("first@example.com", "second@example.com"):
        assert (await api.post("/member/v1/auth/code", json={"email": email})).status_code == 202
    mailbox = await api.get("/dev/mailbox")
    assert mailbox.status_code == 200
    text = mailbox.text
    assert text.index("second@example.com") < text.index("first@example.com")
    code = await pool.fetchval(
        "SELECT body_text FROM mail_outbox WHERE to_address = 'second@example.com'"
    )
    found = re.search(r"\b(\d{6})\b", code)
    assert found is not None and found.group(1) in text
    assert "Development mailbox" in text


async def test_there_is_no_mailbox_in_production(
    smtp_server: tuple[Inbox, int],
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    _, port = smtp_server
    settings = _settings(
        tmp_path_factory, KRING_MODE="production", KRING_SMTP_URL=f"smtp://127.0.0.1:{port}"
    )
    api = _client(_app(settings, database_url, clock, pool), "10.3.0.5")
    missing = await api.get("/dev/mailbox")
    assert missing.status_code == 404
    assert "/dev/mailbox" not in (await api.get("/schema/openapi.json")).json()["paths"]


async def test_the_job_sends_queued_mail_and_retries_a_refused_send_later(
    smtp_server: tuple[Inbox, int], clock: ManualClock, pool: asyncpg.Pool
) -> None:
    from datetime import timedelta

    from api.mail.outbox import MAIL_ATTEMPTS_MAX, deliver_due, enqueue
    from api.mail.smtp import OutgoingMail, mail_sender

    inbox, port = smtp_server
    await pool.execute("UPDATE mail_outbox SET sent_at = $1 WHERE sent_at IS NULL", clock.now())
    async with pool.acquire() as conn:
        await enqueue(
            conn, OutgoingMail("later@example.com", "Points expire", "120 points"), now=clock.now()
        )
    down = mail_sender(f"smtp://127.0.0.1:{free_port()}", "Kring <no-reply@kring.test>")
    up = mail_sender(f"smtp://127.0.0.1:{port}", "Kring <no-reply@kring.test>")
    # Not yet: the writer gets a minute to send it itself.
    assert await deliver_due(pool, up, now=clock.now()) == 0
    clock.advance(timedelta(minutes=1))
    assert await deliver_due(pool, down, now=clock.now()) == 0  # refused, recorded
    row = await pool.fetchrow(
        "SELECT attempts, last_error, sent_at FROM mail_outbox WHERE to_address = 'later@example.com'"
    )
    assert (row["attempts"], row["sent_at"]) == (1, None) and row["last_error"]
    # The second attempt waits 4 minutes from the mail's creation.
    assert await deliver_due(pool, up, now=clock.now()) == 0
    clock.advance(timedelta(minutes=3))
    before = len(inbox.messages)
    assert await deliver_due(pool, up, now=clock.now()) == 1
    assert [m["Subject"] for _, m in inbox.messages[before:]] == ["Points expire"]
    assert await deliver_due(pool, up, now=clock.now() + timedelta(days=1)) == 0
    # A mail that kept failing stays unsent after the last attempt.
    await pool.execute(
        "UPDATE mail_outbox SET sent_at = NULL, attempts = $1 WHERE to_address = 'later@example.com'",
        MAIL_ATTEMPTS_MAX,
    )
    assert await deliver_due(pool, up, now=clock.now() + timedelta(days=30)) == 0
