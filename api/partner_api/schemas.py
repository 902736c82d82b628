"""Request and response bodies of /partner/v1. Every body is a msgspec Struct.

Limits are part of the contract: amounts, points and text fields have
maximums so that bad input is refused at the edge with a 4xx.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from api.money import AMOUNT_CENTS_MAX, POINTS_MAX

# PostgreSQL text cannot hold NUL; refuse it at the edge rather than fail later.
NO_NUL = r"^[^\x00]*$"

AmountCents = Annotated[int, msgspec.Meta(gt=0, le=AMOUNT_CENTS_MAX, description="Integer cents")]
Points = Annotated[int, msgspec.Meta(gt=0, le=POINTS_MAX, description="Whole points")]
CardNumber = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=32, pattern=NO_NUL, description="16-digit card number"),
]
Currency = Annotated[
    str, msgspec.Meta(min_length=1, max_length=8, pattern=NO_NUL, examples=["EUR"])
]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_NUL)]
HoldMinutes = Annotated[int, msgspec.Meta(gt=0, le=7 * 24 * 60)]
PAGE_SIZE_MAX = 100


class TokenRequest(msgspec.Struct, kw_only=True):
    grant_type: Literal["client_credentials"]
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_NUL)]
    client_secret: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]


class TokenResponse(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class MemberOut(msgspec.Struct, kw_only=True):
    member_id: UUID
    card_number: str
    status: str
    available_points: int
    pending_points: int
    display_name: str | None = None


class EarnRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    card_number: CardNumber
    amount_cents: AmountCents
    currency: Currency
    receipt_ref: ShortText | None = None
    store_id: ShortText | None = None
    occurred_at: datetime | None = None  # time of purchase; now when left out


class AuthorizeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    card_number: CardNumber
    points: Points
    receipt_ref: ShortText | None = None
    store_id: ShortText | None = None
    hold_minutes: HoldMinutes | None = None
    occurred_at: datetime | None = None


class BurnRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    card_number: CardNumber
    points: Points
    receipt_ref: ShortText | None = None
    store_id: ShortText | None = None
    occurred_at: datetime | None = None


class CaptureRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    points: Points | None = None  # all of the hold when left out


class RefundRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    amount_cents: AmountCents
    currency: Currency
    receipt_ref: ShortText | None = None


class TransactionOut(msgspec.Struct, kw_only=True):
    id: UUID
    kind: Literal["earn", "burn", "refund"]
    status: str
    member_id: UUID
    card_number: str
    points: int
    amount_cents: int | None
    currency: str | None
    points_captured: int
    points_refunded: int
    amount_refunded_cents: int
    debt_points: int
    debt_repaid_points: int
    price_micros: int
    receipt_ref: str | None
    store_id: str | None
    original_id: UUID | None
    occurred_at: datetime
    created_at: datetime
    available_at: datetime | None
    hold_expires_at: datetime | None
    finished_at: datetime | None


class TransactionPage(msgspec.Struct, kw_only=True):
    items: list[TransactionOut]
    next_cursor: str | None


# Webhooks ------------------------------------------------------------------

# Longer than the 2000 the service allows, so that a long URL gets its own
# problem code (webhook_url_too_long) instead of a generic schema error.
WebhookUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=NO_NUL)]


class WebhookEndpointCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: WebhookUrl


class WebhookEndpointOut(msgspec.Struct, kw_only=True):
    id: UUID
    url: str
    created_at: datetime
    disabled_at: datetime | None
    # Until then deliveries carry a second signature made with the old secret.
    previous_secret_valid_until: datetime | None


class WebhookEndpointCreated(WebhookEndpointOut, kw_only=True):
    secret: str  # shown once; deliveries are signed with it


class WebhookEndpointList(msgspec.Struct, kw_only=True):
    items: list[WebhookEndpointOut]


class WebhookSecretOut(msgspec.Struct, kw_only=True):
    endpoint_id: UUID
    secret: str
    previous_secret_valid_until: datetime


class WebhookAttemptOut(msgspec.Struct, kw_only=True):
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDeliveryOut(msgspec.Struct, kw_only=True):
    id: int
    event_id: UUID
    event_type: str
    event_created_at: datetime
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    attempt_log: list[WebhookAttemptOut]


class WebhookDeliveryPage(msgspec.Struct, kw_only=True):
    items: list[WebhookDeliveryOut]
    next_cursor: str | None


class NoBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """For POSTs that take no fields: no body, or `{}`."""
