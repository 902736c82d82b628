"""Sending mail: the `MailSender` interface, SMTP, and the development mailbox.

SMTP uses the standard library's `smtplib` in a worker thread: a sign-in code
is one short message, so a thread per send costs nothing worth a dependency.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

SMTP_TIMEOUT_SECONDS = 10
_PORTS_DEFAULT = {"smtp": 25, "smtps": 465}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    to_address: str
    subject: str
    body_text: str


class MailSender(Protocol):
    #: Whether mail leaves the machine; the development mailbox keeps it here.
    delivers: bool

    async def send(self, mail: OutgoingMail) -> None:
        """Hand the mail over, or raise."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool  # smtps://: TLS from the first byte
    starttls: bool  # smtp://…?starttls=1: upgrade after EHLO


def parse_smtp_url(url: str) -> SmtpConfig:
    """`smtp://user:pass@host:587?starttls=1` or `smtps://user:pass@host:465`.

    Raises ValueError with a sentence saying what is wrong.
    """
    parts = urlsplit(url)
    if parts.scheme not in _PORTS_DEFAULT:
        raise ValueError("must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("names no host")
    try:
        port = parts.port or _PORTS_DEFAULT[parts.scheme]
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"has an unknown option {sorted(unknown)[0]!r} (only starttls)")
    starttls_values = query.get("starttls", ["0"])
    if len(starttls_values) != 1 or starttls_values[0].lower() not in _TRUE | _FALSE:
        raise ValueError("starttls must be 1 or 0")
    starttls = starttls_values[0].lower() in _TRUE
    if starttls and parts.scheme == "smtps":
        raise ValueError("smtps:// is TLS already: drop starttls")
    return SmtpConfig(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        implicit_tls=parts.scheme == "smtps",
        starttls=starttls,
    )


def parse_mail_from(value: str) -> str:
    """A From header (`Kring <no-reply@example.com>` or a bare address), or ValueError."""
    name, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(ch in address for ch in " \r\n"):
        raise ValueError("must be an address such as 'Kring <no-reply@example.com>'")
    return formataddr((name, address)) if name else address


class SmtpSender:
    delivers = True

    def __init__(self, config: SmtpConfig, mail_from: str) -> None:
        self._config = config
        self._mail_from = mail_from

    async def send(self, mail: OutgoingMail) -> None:
        await asyncio.to_thread(self._send_blocking, mail)

    def _send_blocking(self, mail: OutgoingMail) -> None:
        message = EmailMessage()
        message["From"] = self._mail_from
        message["To"] = mail.to_address
        message["Subject"] = mail.subject
        message["Message-ID"] = make_msgid(domain=parseaddr(self._mail_from)[1].rpartition("@")[2])
        message.set_content(mail.body_text)
        cfg = self._config
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if cfg.implicit_tls:
            client = smtplib.SMTP_SSL(
                cfg.host, cfg.port, timeout=SMTP_TIMEOUT_SECONDS, context=context
            )
        else:
            client = smtplib.SMTP(cfg.host, cfg.port, timeout=SMTP_TIMEOUT_SECONDS)
        with client:
            client.ehlo()
            if cfg.starttls:
                client.starttls(context=context)
                client.ehlo()
            if cfg.username is not None:
                client.login(cfg.username, cfg.password or "")
            client.send_message(message)


class DevelopmentMailbox:
    """No SMTP configured: the outbox row is the message; /dev/mailbox shows it."""

    delivers = False

    async def send(self, mail: OutgoingMail) -> None:
        return None


def mail_sender(smtp_url: str | None, mail_from: str) -> MailSender:
    if smtp_url is None:
        return DevelopmentMailbox()
    return SmtpSender(parse_smtp_url(smtp_url), mail_from)
