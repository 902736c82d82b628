"""Opaque page cursors: what a list hands out as `next_cursor` and takes back.

A cursor is the URL-safe base64 (unpadded) of the last row's sort key, its
parts joined by "|". Anything that does not decode into the expected parts is
`invalid_cursor` (400), whoever asks: partners, members or admins.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Any

from api.errors import DomainError

SEPARATOR = "|"


def encode_cursor(*parts: object) -> str:
    """The cursor for a sort key; datetimes as ISO 8601."""
    text = SEPARATOR.join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def aware_datetime(text: str) -> datetime:
    """A converter for `decode_cursor`: an ISO 8601 instant with its offset."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("a cursor's time carries its offset")
    return moment


def whole_number(text: str) -> int:
    """A converter for `decode_cursor`: a non-negative id."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError("not an id")
    return int(text)


def decode_cursor(cursor: str, *converters: Callable[[str], Any]) -> tuple[Any, ...]:
    """The sort key in `cursor`, each part through its converter (e.g.
    `aware_datetime`, `whole_number`, `UUID`); `invalid_cursor` otherwise."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = text.split(SEPARATOR)
        if len(parts) != len(converters):
            raise ValueError("wrong number of parts")
        return tuple(convert(part) for convert, part in zip(converters, parts, strict=True))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise DomainError(
            "the cursor is not one this API gave out", code="invalid_cursor", status=400
        ) from None
