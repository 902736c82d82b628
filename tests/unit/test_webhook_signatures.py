"""The partner kit's webhook verifier against Kring's signer: what verifies,
and what is refused (tampered, stale, wrong secret, malformed, rotated)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.webhooks.signing import signature_header
from partners.webhooks import WebhookSignatureError, sign, verify_signature

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BODY = b'{"id":"e1","type":"points.earned","data":{"points":50}}'


def header(secret: str = "s1", *, previous: str | None = None, at: datetime = NOW) -> str:
    return signature_header(
        BODY,
        secret=secret,
        previous_secret=previous,
        previous_secret_expires_at=NOW + timedelta(hours=24) if previous else None,
        now=at,
    )


def test_a_signed_body_verifies():
    verify_signature(BODY, header(), ["s1"], now=NOW.timestamp())


def test_kit_and_server_agree_on_the_signed_message():
    t = int(NOW.timestamp())
    assert header() == f"t={t},v1={sign('s1', t, BODY)}"


def test_a_tampered_body_is_refused():
    with pytest.raises(WebhookSignatureError, match="no signature matches"):
        verify_signature(BODY + b" ", header(), ["s1"], now=NOW.timestamp())


def test_a_wrong_secret_is_refused():
    with pytest.raises(WebhookSignatureError, match="no signature matches"):
        verify_signature(BODY, header(), ["s2"], now=NOW.timestamp())


@pytest.mark.parametrize("skew", [timedelta(seconds=301), timedelta(seconds=-301)])
def test_a_stale_or_future_timestamp_is_refused(skew):
    with pytest.raises(WebhookSignatureError, match="timestamp"):
        verify_signature(BODY, header(at=NOW + skew), ["s1"], now=NOW.timestamp())


def test_the_tolerance_is_the_callers():
    late = NOW + timedelta(minutes=9)
    verify_signature(BODY, header(), ["s1"], tolerance_seconds=600, now=late.timestamp())


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "t=,v1=abc",
        "t=12x,v1=abc",
        "t=1,t=2,v1=abc",
        "v1=abc",
        f"t={int(NOW.timestamp())}",
        "t=1," + "v1=ab," * 300,
        f"t={int(NOW.timestamp())}," + ",".join(["v1=ab"] * 5),
    ],
)
def test_a_missing_or_malformed_header_is_refused(value):
    with pytest.raises(WebhookSignatureError):
        verify_signature(BODY, value, ["s1"], now=NOW.timestamp())


def test_unknown_schemes_are_ignored():
    verify_signature(BODY, header() + ",v2=whatever", ["s1"], now=NOW.timestamp())


def test_during_rotation_both_secrets_verify():
    rotating = header("new", previous="old")
    assert rotating.count("v1=") == 2
    verify_signature(BODY, rotating, ["new"], now=NOW.timestamp())
    verify_signature(BODY, rotating, ["old"], now=NOW.timestamp())
    verify_signature(BODY, rotating, ["other", "new"], now=NOW.timestamp())


def test_after_the_grace_period_only_the_new_secret_signs():
    later = NOW + timedelta(hours=24, seconds=1)
    rotated = header("new", previous="old", at=later)
    assert rotated.count("v1=") == 1
    verify_signature(BODY, rotated, ["new"], now=later.timestamp())
    with pytest.raises(WebhookSignatureError):
        verify_signature(BODY, rotated, ["old"], now=later.timestamp())


def test_no_secrets_is_an_error_not_a_pass():
    with pytest.raises(WebhookSignatureError):
        verify_signature(BODY, header(), [], now=NOW.timestamp())
