"""Member sign-in rules without a database: addresses, codes, redirects,
SMTP settings, signed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from api.errors import DomainError
from api.mail.smtp import parse_mail_from, parse_smtp_url
from api.member_auth import codes, tokens
from api.member_auth.rate_limits import window_start
from api.member_auth.redirects import safe_next
from api.settings import SettingsError, load_settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET = "s" * 40


def test_the_limits_are_the_issue_s() -> None:
    assert codes.CODE_DIGITS == 6
    assert codes.CODE_TTL_MINUTES == 10
    assert codes.CODE_ATTEMPTS_MAX == 5


@pytest.mark.parametrize(
    ("raw", "stored"),
    [("Ann@Example.COM", "ann@example.com"), ("  bo@x.nl \n", "bo@x.nl")],
)
def test_addresses_are_stored_trimmed_and_lower_case(raw: str, stored: str) -> None:
    assert codes.normalize_email(raw) == stored


@pytest.mark.parametrize(
    "raw",
    ["", "ann", "ann@", "@x.nl", "a@b", "a b@x.nl", "a@x.nl\x00", "a@@x.nl", "x" * 250 + "@x.nl"],
)
def test_bad_addresses_are_invalid_email(raw: str) -> None:
    with pytest.raises(DomainError) as refused:
        codes.normalize_email(raw)
    assert refused.value.code == "invalid_email"


def test_codes_are_six_digits_with_spaces_allowed() -> None:
    assert codes.normalize_code(" 123 456 ") == "123456"
    for bad in ("12345", "1234567", "12a456", "١٢٣٤٥٦"):  # Arabic-Indic digits too
        with pytest.raises(DomainError):
            codes.normalize_code(bad)


def test_the_stored_code_is_keyed_by_the_server_secret_and_the_address() -> None:
    one = codes.code_hmac("a@x.nl", "123456", secret=SECRET)
    assert len(one) == 32
    assert one != codes.code_hmac("a@x.nl", "123456", secret="t" * 40)
    assert one != codes.code_hmac("b@x.nl", "123456", secret=SECRET)
    assert b"123456" not in one


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/history?partner=3", "/history?partner=3"),
        ("/card", "/card"),
        (None, "/"),
        ("", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/\tevil", "/"),
        ("history", "/"),
        ("/sign-in?next=/x", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_only_same_site_paths_are_followed_after_sign_in(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_fixed_windows_start_on_their_boundary() -> None:
    hour = timedelta(hours=1)
    assert window_start(NOW + timedelta(minutes=59), hour) == NOW
    assert window_start(NOW + hour, hour) == NOW + hour


def test_smtp_urls() -> None:
    cfg = parse_smtp_url("smtp://user%40x:p%3Ass@mail.example:587?starttls=1")
    assert (cfg.host, cfg.port, cfg.username, cfg.password) == (
        "mail.example",
        587,
        "user@x",
        "p:ss",
    )
    assert cfg.starttls and not cfg.implicit_tls
    tls = parse_smtp_url("smtps://mail.example")
    assert tls.port == 465 and tls.implicit_tls and tls.username is None
    assert parse_smtp_url("smtp://127.0.0.1:2525").port == 2525
    for bad in (
        "http://x",
        "smtp://",
        "smtp://h:0x",
        "smtp://h?starttls=maybe",
        "smtps://h?starttls=1",
        "smtp://h?tls=1",
    ):
        with pytest.raises(ValueError):
            parse_smtp_url(bad)


def test_mail_from() -> None:
    assert parse_mail_from("Kring <no-reply@kring.example>") == "Kring <no-reply@kring.example>"
    assert parse_mail_from("no-reply@kring.example") == "no-reply@kring.example"
    with pytest.raises(ValueError):
        parse_mail_from("Kring")


def _load(tmp_path: Path, **env: str) -> object:
    return load_settings({"KRING_DATA_DIR": str(tmp_path), **env})


def test_production_without_smtp_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        _load(tmp_path, KRING_MODE="production", KRING_JWT_SECRET=SECRET)
    assert "KRING_SMTP_URL" in str(refused.value) and "\n" not in str(refused.value)
    _load(tmp_path, KRING_MODE="production", KRING_JWT_SECRET=SECRET, KRING_SMTP_URL="smtp://h:25")


def test_bad_mail_settings_name_their_variable_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        _load(tmp_path, KRING_SMTP_URL="smtp://u:hunter2@h:99999")
    assert "KRING_SMTP_URL" in str(refused.value) and "hunter2" not in str(refused.value)
    with pytest.raises(SettingsError, match="KRING_MAIL_FROM"):
        _load(tmp_path, KRING_MAIL_FROM="nobody")


def test_a_session_token_is_refused_by_another_audience_and_after_expiry() -> None:
    sid, member = uuid4(), uuid4()
    token = tokens.issue_session_token(
        sid,
        member,
        audience=tokens.WALLET_AUDIENCE,
        secret=SECRET,
        now=NOW,
        expires_at=NOW + timedelta(hours=1),
    )
    read = tokens.read_session_token(token, audience=tokens.WALLET_AUDIENCE, secret=SECRET, now=NOW)
    assert read is not None and read.session_id == sid and read.member_public_id == member
    assert (
        tokens.read_session_token(
            token, audience=tokens.MEMBER_API_AUDIENCE, secret=SECRET, now=NOW
        )
        is None
    )
    assert (
        tokens.read_session_token(token, audience=tokens.WALLET_AUDIENCE, secret="t" * 40, now=NOW)
        is None
    )
    later = NOW + timedelta(hours=1)
    assert (
        tokens.read_session_token(token, audience=tokens.WALLET_AUDIENCE, secret=SECRET, now=later)
        is None
    )


def test_the_sign_in_ticket_carries_the_address_signed() -> None:
    ticket = tokens.issue_ticket("a@x.nl", "/card", secret=SECRET, now=NOW)
    read = tokens.read_ticket(ticket, secret=SECRET, now=NOW)
    assert read == tokens.Ticket("a@x.nl", "/card")
    assert tokens.read_ticket(ticket, secret="t" * 40, now=NOW) is None
    assert tokens.read_ticket(ticket, secret=SECRET, now=NOW + tokens.TICKET_TTL) is None
