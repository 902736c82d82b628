"""The bodies of the Kring partner API, as the kit sees them.

These Structs are the kit's own copy of the contract: partners install the
kit without the server, so nothing here imports `api.*`. Decoding is lenient
where the server may grow (unknown fields are ignored, `kind` and `status`
are plain strings) and strict where a mistake would move points (integers
stay integers; a float where an integer belongs is refused).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

import msgspec

# Limits the server enforces; checking them here turns a round trip into a
# local ValueError with the same meaning.
PAGE_SIZE_MAX: Final = 100
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255

KIND_EARN: Final = "earn"
KIND_BURN: Final = "burn"
KIND_REFUND: Final = "refund"

STATUS_PENDING: Final = "pending"
STATUS_AUTHORIZED: Final = "authorized"
STATUS_CAPTURED: Final = "captured"
STATUS_VOIDED: Final = "voided"


class Token(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_in: int


class Member(msgspec.Struct, kw_only=True):
    member_id: UUID
    card_number: str
    status: str
    available_points: int
    pending_points: int
    display_name: str | None = None


class Transaction(msgspec.Struct, kw_only=True):
    """One earn, burn or refund as the server reports it.

    `replayed` is not part of the body: the client sets it from the
    `Idempotent-Replayed` response header, so a caller that retried can tell
    "this is the answer to my first attempt" from "this happened now".
    """

    id: UUID
    kind: str
    status: str
    member_id: UUID
    card_number: str
    points: int
    amount_cents: int | None = None
    currency: str | None = None
    points_captured: int = 0
    points_refunded: int = 0
    amount_refunded_cents: int = 0
    debt_points: int = 0
    debt_repaid_points: int = 0
    price_micros: int = 0
    receipt_ref: str | None = None
    store_id: str | None = None
    original_id: UUID | None = None
    occurred_at: datetime | None = None
    created_at: datetime | None = None
    available_at: datetime | None = None
    hold_expires_at: datetime | None = None
    finished_at: datetime | None = None
    replayed: bool = False


class TransactionPage(msgspec.Struct, kw_only=True):
    items: list[Transaction]
    next_cursor: str | None = None


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document; every field is optional on the wire."""

    type: str | None = None
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    code: str | None = None


# Request bodies. `omit_defaults` leaves out fields the caller did not set, so
# the server applies its own defaults (time of purchase = now, default hold).


class TokenRequest(msgspec.Struct, kw_only=True):
    client_id: str
    client_secret: str
    grant_type: str = "client_credentials"


class EarnRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    card_number: str
    amount_cents: int
    currency: str
    receipt_ref: str | None = None
    store_id: str | None = None
    occurred_at: datetime | None = None


class AuthorizeRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    card_number: str
    points: int
    receipt_ref: str | None = None
    store_id: str | None = None
    hold_minutes: int | None = None
    occurred_at: datetime | None = None


class BurnRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    card_number: str
    points: int
    receipt_ref: str | None = None
    store_id: str | None = None
    occurred_at: datetime | None = None


class CaptureRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    points: int | None = None


class RefundRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    amount_cents: int
    currency: str
    receipt_ref: str | None = None
