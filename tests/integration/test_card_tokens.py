"""The wallet's short-lived card token: signed, expiring, and accepted by the
partner API's identify (and nothing else about the API changes)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import segno

from api.coalition.card_tokens import (
    CARD_TOKEN_LENGTH,
    CARD_TOKEN_TTL_SECONDS,
    CardTokenExpired,
    CardTokenInvalid,
    issue_card_token,
    token_key,
    verify_card_token,
)
from partners.client import PartnerApiError

KEY = token_key("a-server-secret-" + "k" * 32)


def _flip(text: str, index: int) -> str:
    """The token with one base32 character changed."""
    char = text[index]
    return text[:index] + ("B" if char == "A" else "A") + text[index + 1 :]


def test_a_token_names_its_card_until_it_expires(clock) -> None:
    card = "6048000000000019"
    token = issue_card_token(card, key=KEY, now=clock.now())
    assert len(token.text) == CARD_TOKEN_LENGTH == 43
    assert token.text.startswith("K1.") and token.text[3:].isalnum()
    assert token.expires_at == clock.now() + timedelta(seconds=CARD_TOKEN_TTL_SECONDS)
    assert verify_card_token(token.text, key=KEY, now=clock.now()).card_number == card
    last_second = token.expires_at - timedelta(seconds=1)
    assert verify_card_token(token.text.lower(), key=KEY, now=last_second).card_number == card
    with pytest.raises(CardTokenExpired):
        verify_card_token(token.text, key=KEY, now=token.expires_at)
    # Short and alphanumeric: a version 3 QR code at error correction M.
    qr = segno.make_qr(token.text, error="m")
    assert qr.mode == "alphanumeric" and qr.version <= 3


def test_a_changed_or_foreign_token_is_invalid(clock) -> None:
    now = clock.now()
    token = issue_card_token("6048000000000019", key=KEY, now=now).text
    for index in (3, 10, 14, 20, 30, 42):  # card, expiry and signature characters
        with pytest.raises(CardTokenInvalid):
            verify_card_token(_flip(token, index), key=KEY, now=now)
    other_key = token_key("another-server-secret-" + "z" * 32)
    with pytest.raises(CardTokenInvalid):
        verify_card_token(token, key=other_key, now=now)
    for junk in (
        "K1.",
        "K1." + "A" * 40,
        "K1." + "1" * 40,
        token[:-1],
        token + "A",
        "K2" + token[2:],
    ):
        with pytest.raises(CardTokenInvalid):
            verify_card_token(junk, key=KEY, now=now)
    # Tampered and expired at once: the signature is checked first.
    with pytest.raises(CardTokenInvalid):
        verify_card_token(_flip(token, 42), key=KEY, now=now + timedelta(days=1))
    # Signed with our key but expiring far ahead: not one we issued.
    far = issue_card_token("6048000000000019", key=KEY, now=now, ttl_seconds=3600).text
    with pytest.raises(CardTokenInvalid):
        verify_card_token(far, key=KEY, now=now)


async def test_the_partner_api_identifies_the_member_by_token(
    settings, clock, make_partner, make_member, client_for
) -> None:
    card = await make_member(display_name="Tok En")
    other = await make_member(display_name="Someone Else")
    client = client_for(await make_partner(code="token-shop"))
    key = token_key(settings.jwt_secret)
    token = issue_card_token(card, key=key, now=clock.now()).text

    by_token = await client.identify(token)
    by_number = await client.identify(card)
    assert by_token == by_number
    assert by_token.card_number == card and by_token.display_name == "Tok En"
    assert (
        await client.identify(issue_card_token(other, key=key, now=clock.now()).text)
    ).card_number == other

    # An earn then needs the card number that identify returned.
    await client.earn(by_token.card_number, 1000, "EUR", idempotency_key="token-earn-1")
    assert (await client.identify(token)).pending_points == 10

    with pytest.raises(PartnerApiError) as tampered:
        await client.identify(_flip(token, 20))
    assert (tampered.value.status, tampered.value.code) == (422, "card_token_invalid")

    clock.advance(timedelta(seconds=CARD_TOKEN_TTL_SECONDS))
    try:
        with pytest.raises(PartnerApiError) as expired:
            await client.identify(token)
        assert (expired.value.status, expired.value.code) == (422, "card_token_expired")
        # The problem document says why, for the cashier.
        assert isinstance(expired.value.body, dict)
        assert "expired" in expired.value.body["detail"]
        # The printed card number never expires.
        assert (await client.identify(card)).card_number == card
    finally:
        clock.advance(-timedelta(seconds=CARD_TOKEN_TTL_SECONDS))
