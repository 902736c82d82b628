"""The bodies of the Kring partner API, as the kit sees them.

These Structs are the kit's own copy of the contract: partners install the
kit without the server, so nothing here imports `api.*`. Decoding is lenient
where the server may grow (unknown fields are ignored, `kind` and `status`
are plain strings) and strict where a mistake would move points (integers
stay integers; a float where an integer belongs is refused).
"""

from __future__ import annotations

from datetime import date, datetime
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


# Statements -----------------------------------------------------------------
# Amounts are signed from the partner's side: positive = the programme pays
# the partner. `amount_micros` is exact (1 cent = 10,000 micros); each line's
# `amount_cents` is it rounded half-even once; `net_cents` sums the lines' cents.

STATEMENTS_PAGE_SIZE_MAX: Final = 50

CATEGORY_POINTS_ISSUED: Final = "points_issued"
CATEGORY_REFUNDS: Final = "refunds"
CATEGORY_POINTS_REDEEMED: Final = "points_redeemed"
CATEGORY_SPONSORED_REWARDS: Final = "sponsored_rewards"


class StatementLine(msgspec.Struct, kw_only=True):
    category: str
    entries: int
    points: int
    amount_micros: int
    amount_cents: int


class Statement(msgspec.Struct, kw_only=True):
    id: UUID
    period: str
    period_start: datetime
    period_end: datetime  # exclusive
    first_day: date  # business days in Europe/Amsterdam
    last_day: date
    currency: str
    entries: int
    net_cents: int
    closed_at: datetime
    lines: list[StatementLine]


class StatementPage(msgspec.Struct, kw_only=True):
    items: list[Statement]
    next_cursor: str | None = None


# Reconciliation ---------------------------------------------------------------
# POST /reconciliations compares the partner's own list for a period with
# Kring's; it writes nothing, so it takes no idempotency key.

RECONCILIATION_ROWS_MAX: Final = 10_000


class ReconciliationRow(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One transaction as your books have it: give `transaction_id`, `receipt_ref`, or both."""

    kind: str
    points: int
    transaction_id: UUID | None = None
    receipt_ref: str | None = None
    amount_cents: int | None = None


class ReconciliationRequest(msgspec.Struct, kw_only=True):
    period_start: datetime
    period_end: datetime
    transactions: list[ReconciliationRow]


class ReconciliationValues(msgspec.Struct, kw_only=True):
    kind: str
    points: int
    amount_cents: int | None = None
    receipt_ref: str | None = None


class ReconciliationMatch(msgspec.Struct, kw_only=True):
    row: int
    transaction_id: UUID
    matched_by: str


class ReconciliationMismatch(msgspec.Struct, kw_only=True):
    row: int
    transaction_id: UUID
    matched_by: str
    fields: list[str]
    partner: ReconciliationValues
    kring: ReconciliationValues


class ReconciliationMissingInKring(msgspec.Struct, kw_only=True):
    row: int
    kind: str
    points: int
    reason: str  # not_found, outside_period, not_captured
    transaction_id: UUID | None = None
    receipt_ref: str | None = None
    amount_cents: int | None = None
    kring_transaction_id: UUID | None = None
    kring_status: str | None = None
    kring_created_at: datetime | None = None


class ReconciliationMissingInPartner(msgspec.Struct, kw_only=True):
    transaction_id: UUID
    kind: str
    status: str
    points: int
    created_at: datetime
    amount_cents: int | None = None
    receipt_ref: str | None = None


class ReconciliationDuplicate(msgspec.Struct, kw_only=True):
    row: int
    first_row: int
    kind: str
    transaction_id: UUID | None = None
    receipt_ref: str | None = None


class ReconciliationAmbiguous(msgspec.Struct, kw_only=True):
    row: int
    kind: str
    candidate_transaction_ids: list[UUID]
    receipt_ref: str | None = None


class ReconciliationUncapturedBurn(msgspec.Struct, kw_only=True):
    transaction_id: UUID
    status: str
    points_authorized: int
    created_at: datetime
    receipt_ref: str | None = None


class ReconciliationTotals(msgspec.Struct, kw_only=True):
    transactions: int
    earn_points: int
    earn_amount_cents: int
    burn_points: int
    refund_points: int
    refund_amount_cents: int
    net_points: int


class ReconciliationSideTotals(msgspec.Struct, kw_only=True):
    partner: ReconciliationTotals
    kring: ReconciliationTotals


class ReconciliationSummary(msgspec.Struct, kw_only=True):
    partner_rows: int
    kring_transactions: int
    matched: int
    mismatched: int
    missing_in_kring: int
    missing_in_partner: int
    duplicates: int
    ambiguous: int
    uncaptured_burns: int
    reconciled: bool


class Reconciliation(msgspec.Struct, kw_only=True):
    period_start: datetime
    period_end: datetime
    summary: ReconciliationSummary
    totals: ReconciliationSideTotals
    matched: list[ReconciliationMatch] = []
    mismatched: list[ReconciliationMismatch] = []
    missing_in_kring: list[ReconciliationMissingInKring] = []
    missing_in_partner: list[ReconciliationMissingInPartner] = []
    duplicates: list[ReconciliationDuplicate] = []
    ambiguous: list[ReconciliationAmbiguous] = []
    uncaptured_burns: list[ReconciliationUncapturedBurn] = []
