"""Parsing what staff type at the till: euros as text, points, card numbers."""

from __future__ import annotations

import re

from api.errors import DomainError
from api.money import AMOUNT_CENTS_MAX, POINTS_MAX

# Digits, then optionally a decimal comma or point and one or two digits.
# No thousands separators: "1.250" would be ambiguous between 1250 and 1.25.
_EUROS = re.compile(r"^(\d{1,12})(?:[.,](\d{1,2}))?$")
_POINTS = re.compile(r"^\d{1,13}$")
CARD_INPUT_LENGTH_MAX = 64  # a card number as printed, or a wallet card token (43)


def parse_euros(text: str) -> int:
    """ "12,50", "12.50", "12.5", "12" -> integer cents. No float is involved."""
    match = _EUROS.match(text.strip().removeprefix("€").strip())
    if match is None:
        raise DomainError(
            f"{text.strip()!r} is not an amount in euros: type it like 12,50",
            code="invalid_amount",
        )
    euros, fraction = match.group(1), match.group(2) or "0"
    cents = int(euros) * 100 + int(fraction.ljust(2, "0"))
    if not 0 < cents <= AMOUNT_CENTS_MAX:
        raise DomainError("the amount must be more than 0,00 €", code="invalid_amount")
    return cents


def parse_points(text: str) -> int:
    cleaned = text.strip()
    if not _POINTS.match(cleaned) or not 0 < int(cleaned) <= POINTS_MAX:
        raise DomainError(
            f"{cleaned!r} is not a number of points: type whole points, like 250",
            code="invalid_points",
        )
    return int(cleaned)


def normalize_card(text: str) -> str:
    """Staff may type the card with spaces or dashes, as printed."""
    return re.sub(r"[\s-]", "", text[:CARD_INPUT_LENGTH_MAX])
