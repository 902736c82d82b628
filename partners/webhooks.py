"""Verify Kring's webhook signatures (for partners' receivers).

Kring signs each delivery with HMAC-SHA256 over `f"{t}.".encode() + body`,
where `t` is the Unix time of sending, and sends it as

    Kring-Signature: t=1767340800,v1=5f0c...,v1=9a1b...

There are two `v1` values while a secret is being rotated (one per valid
secret). Verify the raw body bytes, before parsing the JSON:

    verify_signature(await request.body(), request.headers["Kring-Signature"], [secret])

This module depends on the standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Kring-Signature"
EVENT_ID_HEADER = "Kring-Event-Id"
EVENT_TYPE_HEADER = "Kring-Event-Type"
TOLERANCE_SECONDS_DEFAULT = 300
# A header longer than this is not one Kring sent; refuse before parsing.
SIGNATURE_HEADER_CHARS_MAX = 1000
SIGNATURES_PER_HEADER_MAX = 4


class WebhookSignatureError(Exception):
    """The delivery cannot be trusted; the message says why."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex `v1` signature of `body` sent at `timestamp` (Unix seconds)."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > SIGNATURE_HEADER_CHARS_MAX:
        raise WebhookSignatureError("the signature header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not value:
            raise WebhookSignatureError(f"malformed signature header part {part!r}")
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise WebhookSignatureError("the signature header needs one numeric t=")
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
        # Other schemes (v2=...) are ignored, so Kring can add one without breaking receivers.
    if timestamp is None:
        raise WebhookSignatureError("the signature header has no t= timestamp")
    if not signatures:
        raise WebhookSignatureError("the signature header has no v1= signature")
    if len(signatures) > SIGNATURES_PER_HEADER_MAX:
        raise WebhookSignatureError("the signature header has too many signatures")
    return timestamp, signatures


def verify_signature(
    body: bytes,
    header: str | None,
    secrets: list[str],
    *,
    tolerance_seconds: int = TOLERANCE_SECONDS_DEFAULT,
    now: float | None = None,
) -> None:
    """Return if `body` was signed by Kring with one of `secrets` within
    `tolerance_seconds` of `now`; raise `WebhookSignatureError` otherwise.

    The tolerance bounds replays: a captured delivery cannot be sent again
    later. Pass both secrets while you rotate yours."""
    if not header:
        raise WebhookSignatureError(f"the {SIGNATURE_HEADER} header is missing")
    if not secrets:
        raise WebhookSignatureError("no secret to verify with")
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookSignatureError(
            f"the signature timestamp is more than {tolerance_seconds} s away (a replay?)"
        )
    for secret in secrets:
        expected = sign(secret, timestamp, body)
        for candidate in signatures:
            # compare_digest takes time independent of where the strings differ.
            if hmac.compare_digest(expected.encode(), candidate.encode()):
                return
    raise WebhookSignatureError("no signature matches (wrong secret or altered body)")
