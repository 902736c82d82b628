"""Short-lived signed card tokens: what the wallet's live QR code carries.

A member's card number is printed and stays valid for ever; a screenshot of
it works at any till. The wallet therefore also shows, while online, a token
that names the card and an expiry, signed with a server key: a till that
scans it identifies the member only for `CARD_TOKEN_TTL_SECONDS`.

The text is `K1.` and 40 base32 characters (upper case and digits), so a QR
code holds it in alphanumeric mode: 43 characters fit a version 3 code (29 x
29 modules) at error correction M, dense but easy for a till's camera. The
40 characters encode 25 bytes: the card number (7 bytes, big-endian), the
expiry in Unix seconds (4 bytes) and the first 14 bytes of
HMAC-SHA256(key, "kring-card-token-v1" || those 11 bytes) (112 bits, far more
than an online guesser could try in two minutes).

The card number is readable from the token (it is not secret: the static
card prints it); what the token adds is that it stops working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.coalition.cards import CARD_LENGTH, is_valid_card_number
from api.errors import DomainError

CARD_TOKEN_PREFIX = "K1."
CARD_TOKEN_TTL_SECONDS = 120
# A till's clock and ours may differ a little; a token from the future beyond
# this is not one we issued.
CARD_TOKEN_SKEW_SECONDS = 30
CARD_TOKEN_LENGTH = len(CARD_TOKEN_PREFIX) + 40
_CARD_BYTES = 7  # 16 decimal digits < 2**56
_EXPIRY_BYTES = 4  # Unix seconds, good until 2106
_MAC_BYTES = 14
_PAYLOAD_BYTES = _CARD_BYTES + _EXPIRY_BYTES
_DOMAIN = b"kring-card-token-v1"
_KEY_LABEL = b"kring card tokens"
_BASE32 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


class CardTokenInvalid(DomainError):
    status = 422
    code = "card_token_invalid"
    title = "The card token is not valid"


class CardTokenExpired(DomainError):
    status = 422
    code = "card_token_expired"
    title = "The card token has expired"


@dataclass(frozen=True, slots=True)
class CardToken:
    text: str
    card_number: str
    expires_at: datetime


def token_key(server_secret: str) -> bytes:
    """The signing key, derived from the server's secret so that a card token
    and a partner access token are never signed with the same key."""
    if not server_secret:
        raise ValueError("card tokens need a server secret")
    return hmac.new(server_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def issue_card_token(
    card_number: str, *, key: bytes, now: datetime, ttl_seconds: int = CARD_TOKEN_TTL_SECONDS
) -> CardToken:
    if not is_valid_card_number(card_number):
        raise ValueError("not a card number")
    expires_at = datetime.fromtimestamp(int(now.timestamp()) + ttl_seconds, UTC)
    payload = int(card_number).to_bytes(_CARD_BYTES, "big") + int(expires_at.timestamp()).to_bytes(
        _EXPIRY_BYTES, "big"
    )
    text = CARD_TOKEN_PREFIX + base64.b32encode(payload + _mac(key, payload)).decode("ascii")
    return CardToken(text=text, card_number=card_number, expires_at=expires_at)


def looks_like_card_token(text: str) -> bool:
    """True for anything a till should treat as a token rather than a card number."""
    return text.upper().startswith(CARD_TOKEN_PREFIX)


def verify_card_token(text: str, *, key: bytes, now: datetime) -> CardToken:
    """The card a token names, or CardTokenInvalid / CardTokenExpired.

    The signature is checked before the expiry is read, so a tampered token is
    always `card_token_invalid` whatever its expiry says."""
    text = text.strip().upper()  # some scanners report alphanumeric QR text in lower case
    body = text[len(CARD_TOKEN_PREFIX) :]
    if (
        not text.startswith(CARD_TOKEN_PREFIX)
        or len(text) != CARD_TOKEN_LENGTH
        or not set(body) <= _BASE32
    ):
        raise CardTokenInvalid("this is not a Kring card token")
    try:
        raw = base64.b32decode(body)
    except binascii.Error:
        raise CardTokenInvalid("this is not a Kring card token") from None
    payload, mac = raw[:_PAYLOAD_BYTES], raw[_PAYLOAD_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise CardTokenInvalid("the card token's signature does not match")
    card_number = str(int.from_bytes(payload[:_CARD_BYTES], "big")).zfill(CARD_LENGTH)
    expires_at = datetime.fromtimestamp(int.from_bytes(payload[_CARD_BYTES:], "big"), UTC)
    if not is_valid_card_number(card_number):
        raise CardTokenInvalid("the card token names no card")  # signed by us: never happens
    if expires_at > now + timedelta(seconds=CARD_TOKEN_TTL_SECONDS + CARD_TOKEN_SKEW_SECONDS):
        raise CardTokenInvalid("the card token's expiry is too far ahead")
    if now >= expires_at:
        raise CardTokenExpired("the card token has expired: ask the member to show the card again")
    return CardToken(text=text, card_number=card_number, expires_at=expires_at)


def card_number_from(text: str, *, key: bytes, now: datetime) -> str:
    """What a till typed or scanned, as a card number: a token is verified and
    resolved; anything else is passed on as the card number it claims to be."""
    if looks_like_card_token(text):
        return verify_card_token(text, key=key, now=now).card_number
    return text
