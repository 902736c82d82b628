"""Request and response bodies of /partner/v1. Every body is a msgspec Struct.

Limits are part of the contract: amounts, points and text fields have
maximums so that bad input is refused at the edge with a 4xx.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from api.money import AMOUNT_CENTS_MAX, POINTS_MAX
from api.settlement.reconciliation import RECONCILIATION_PERIOD_MAX, RECONCILIATION_ROWS_MAX

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
    # The member's tier and VIP bonus (funded by the programme, not charged to
    # the partner): on an earn, the points added on top of `points`; on a
    # refund, the bonus it reversed. `multiplier_permille`: the earn's
    # multiplier, tier and VIP combined (1000 = x1.0), null on burns and refunds.
    bonus_points: int = 0
    multiplier_permille: int | None = None


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


# Reconciliation ------------------------------------------------------------
# The rules (what counts on Kring's side, how rows are matched) are in
# api/settlement/reconciliation.py; the descriptions below repeat them for
# the partner's developer, who reads them in the OpenAPI document.

# 10,000 rows of about 250 bytes, pretty-printed, fit with room to spare;
# the row limit itself (too_many_rows) is checked after decoding.
RECONCILIATION_BODY_BYTES_MAX = 4 * 1024 * 1024

TransactionKind = Literal["earn", "burn", "refund"]
RowIndex = Annotated[int, msgspec.Meta(description="0-based position in your `transactions`")]
MatchedBy = Annotated[
    Literal["transaction_id", "receipt_ref"],
    msgspec.Meta(description="`transaction_id` when you sent Kring's id, else `receipt_ref`"),
]


class ReconciliationRow(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One transaction as your books have it. Send `transaction_id` (Kring's id, from the
    answer to the earn, burn or refund), `receipt_ref`, or both; at least one
    (`missing_reference` otherwise). A row without `transaction_id` is matched by kind
    and receipt reference."""

    kind: TransactionKind
    points: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=POINTS_MAX,
            description="Points earned, burned (captured) or reversed by the refund",
        ),
    ]
    transaction_id: Annotated[
        UUID | None,
        msgspec.Meta(description="Kring's id (from the answer to the earn, burn or refund)"),
    ] = None
    receipt_ref: (
        Annotated[
            ShortText,
            msgspec.Meta(
                description="Matched by kind and receipt_ref when there is no transaction_id; "
                "a row needs one of the two (`missing_reference`)"
            ),
        ]
        | None
    ) = None
    amount_cents: (
        Annotated[
            int,
            msgspec.Meta(
                gt=0,
                le=AMOUNT_CENTS_MAX,
                description="Purchase amount (earn) or refunded amount (refund); compared only "
                "when given. A burn has none (`invalid_row`).",
            ),
        ]
        | None
    ) = None


class ReconciliationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Your transactions for `[period_start, period_end)`."""

    period_start: Annotated[
        datetime, msgspec.Meta(description="With a zone offset (`invalid_period` without)")
    ]
    period_end: Annotated[
        datetime,
        msgspec.Meta(
            description="Exclusive; after period_start (`invalid_period`), at most "
            f"{RECONCILIATION_PERIOD_MAX.days} days later (`period_too_long`)"
        ),
    ]
    # The limit is checked after decoding, so that it has its own problem code.
    transactions: Annotated[
        list[ReconciliationRow],
        msgspec.Meta(description=f"At most {RECONCILIATION_ROWS_MAX:,} rows (`too_many_rows`)"),
    ]


class ReconciliationValues(msgspec.Struct, kw_only=True):
    kind: TransactionKind
    points: int
    amount_cents: int | None
    receipt_ref: str | None


class ReconciliationMatch(msgspec.Struct, kw_only=True):
    row: RowIndex
    transaction_id: UUID
    matched_by: MatchedBy


class ReconciliationMismatch(msgspec.Struct, kw_only=True):
    """A pair that both sides have, but with different values."""

    row: RowIndex
    transaction_id: UUID
    matched_by: MatchedBy
    fields: Annotated[
        list[Literal["kind", "points", "amount_cents", "receipt_ref"]],
        msgspec.Meta(
            description="What differs. `amount_cents` only when you sent one; `receipt_ref` "
            "only when you sent it with the transaction_id."
        ),
    ]
    partner: ReconciliationValues
    kring: ReconciliationValues


class ReconciliationMissingInKring(msgspec.Struct, kw_only=True):
    """A row of yours that Kring does not count in this period. `reason`: `not_found` (no
    transaction of yours has this id, or no counted one this kind and receipt reference),
    `outside_period` (Kring has it, created at `kring_created_at`), `not_captured` (a burn
    that is still authorized, or was voided or expired: no points moved; `kring_status`)."""

    row: RowIndex
    kind: TransactionKind
    points: int
    transaction_id: UUID | None
    receipt_ref: str | None
    amount_cents: int | None
    reason: Annotated[
        Literal["not_found", "outside_period", "not_captured"],
        msgspec.Meta(
            description="`not_found`: none of your transactions has this id (or, without one, "
            "no counted transaction of the period has this kind and receipt_ref); "
            "`outside_period`: Kring has it, created at `kring_created_at`; `not_captured`: a "
            "burn still authorized, or voided or expired (`kring_status`): no points moved"
        ),
    ]
    kring_transaction_id: Annotated[
        UUID | None, msgspec.Meta(description="For `outside_period` and `not_captured`")
    ]
    kring_status: Annotated[str | None, msgspec.Meta(description="For `not_captured`")]
    kring_created_at: Annotated[datetime | None, msgspec.Meta(description="For `outside_period`")]


class ReconciliationMissingInPartner(msgspec.Struct, kw_only=True):
    """A transaction Kring counts in this period that your list does not have."""

    transaction_id: UUID
    kind: TransactionKind
    status: str
    points: int
    amount_cents: int | None
    receipt_ref: str | None
    created_at: datetime


class ReconciliationDuplicate(msgspec.Struct, kw_only=True):
    """A row that repeats `first_row` (same transaction_id, or same kind and receipt
    reference, or the receipt row of a transaction you also listed by id). It is not
    matched again and not in your totals."""

    row: RowIndex
    first_row: RowIndex
    kind: TransactionKind
    transaction_id: UUID | None
    receipt_ref: str | None


class ReconciliationAmbiguous(msgspec.Struct, kw_only=True):
    """A row whose kind and receipt reference fit several Kring transactions: send the
    `transaction_id`. The candidates are not reported as missing in your list."""

    row: RowIndex
    kind: TransactionKind
    receipt_ref: str | None
    candidate_transaction_ids: list[UUID]


class ReconciliationUncapturedBurn(msgspec.Struct, kw_only=True):
    """A burn created in the period that moved no points (still authorized, voided or
    expired). Not compared; listed so that open authorizations are visible."""

    transaction_id: UUID
    status: str
    points_authorized: int
    receipt_ref: str | None
    created_at: datetime


class ReconciliationTotals(msgspec.Struct, kw_only=True):
    """Sums over one side: your rows less duplicates, or Kring's counted transactions."""

    transactions: int
    earn_points: int
    earn_amount_cents: int
    burn_points: int
    refund_points: int
    refund_amount_cents: int
    net_points: Annotated[int, msgspec.Meta(description="earned less burned less refunded")]


class ReconciliationSideTotals(msgspec.Struct, kw_only=True):
    partner: ReconciliationTotals
    kring: ReconciliationTotals


class ReconciliationSummary(msgspec.Struct, kw_only=True):
    partner_rows: int
    kring_transactions: Annotated[
        int, msgspec.Meta(description="Earns, refunds and captured burns in the period")
    ]
    matched: int
    mismatched: int
    missing_in_kring: int
    missing_in_partner: int
    duplicates: int
    ambiguous: int
    uncaptured_burns: int
    reconciled: Annotated[
        bool,
        msgspec.Meta(description="Nothing missing, mismatched, duplicated or ambiguous"),
    ]


class ReconciliationOut(msgspec.Struct, kw_only=True):
    """Kring's side: your earns (points, purchase amount), refunds (points, refunded amount)
    and captured burns (points captured) created in `[period_start, period_end)`."""

    period_start: datetime
    period_end: datetime
    summary: ReconciliationSummary
    totals: Annotated[
        ReconciliationSideTotals,
        msgspec.Meta(
            description="Your rows less duplicates (amounts over the rows that gave one), and "
            "Kring's counted transactions"
        ),
    ]
    matched: Annotated[
        list[ReconciliationMatch], msgspec.Meta(description="Pairs that agree, in row order")
    ]
    mismatched: Annotated[
        list[ReconciliationMismatch],
        msgspec.Meta(description="Pairs that differ, with the fields that differ"),
    ]
    missing_in_kring: Annotated[
        list[ReconciliationMissingInKring],
        msgspec.Meta(description="Your rows that Kring does not count in this period"),
    ]
    missing_in_partner: Annotated[
        list[ReconciliationMissingInPartner],
        msgspec.Meta(description="Kring's counted transactions of the period not in your list"),
    ]
    duplicates: Annotated[
        list[ReconciliationDuplicate],
        msgspec.Meta(
            description="Rows repeating `first_row` (same transaction_id; or same kind and "
            "receipt_ref; or the receipt of a transaction you also listed by id): not matched "
            "again, not in your totals"
        ),
    ]
    ambiguous: Annotated[
        list[ReconciliationAmbiguous],
        msgspec.Meta(
            description="Rows whose kind and receipt_ref fit several Kring transactions: send "
            "the transaction_id. The candidates are not reported as missing in your list."
        ),
    ]
    uncaptured_burns: Annotated[
        list[ReconciliationUncapturedBurn],
        msgspec.Meta(
            description="Burns created in the period that moved no points (still authorized, "
            "voided or expired): not compared, listed so that open authorizations show"
        ),
    ]


# Statements ----------------------------------------------------------------
# Written once by a settlement run (api/settlement/run.py) and never changed.
# Signs are the partner's view: positive = the programme pays the partner.

StatementCategory = Literal["points_issued", "refunds", "points_redeemed", "sponsored_rewards"]
STATEMENTS_PAGE_SIZE_DEFAULT = 20


class StatementLineOut(msgspec.Struct, kw_only=True):
    """One category of a statement: its entries' points times the price stored on each
    entry, summed exactly, then rounded half-even to the cent once (never per entry)."""

    category: Annotated[
        StatementCategory,
        msgspec.Meta(
            description="`points_issued` (earns at your till: you pay), `refunds` (points "
            "reversed by your refunds: paid back to you), `points_redeemed` (burns captured "
            "at your till: the programme pays you), `sponsored_rewards`"
        ),
    ]
    entries: Annotated[int, msgspec.Meta(description="Ledger entries behind this line")]
    points: Annotated[int, msgspec.Meta(description="Whole points, always 0 or more")]
    amount_micros: Annotated[
        int,
        msgspec.Meta(
            description="Exact amount in micro-euros (1 cent = 10,000), signed: positive = "
            "the programme pays you"
        ),
    ]
    amount_cents: Annotated[
        int,
        msgspec.Meta(description="`amount_micros` rounded half-even to whole cents, once"),
    ]


class StatementOut(msgspec.Struct, kw_only=True):
    """A closed settlement statement of yours for one period."""

    id: Annotated[UUID, msgspec.Meta(description="The statement's id")]
    period: Annotated[
        Literal["daily", "weekly", "monthly"],
        msgspec.Meta(description="Your settlement period"),
    ]
    period_start: Annotated[
        datetime, msgspec.Meta(description="Start of the period (UTC instant, inclusive)")
    ]
    period_end: Annotated[
        datetime, msgspec.Meta(description="End of the period (UTC instant, exclusive)")
    ]
    first_day: Annotated[
        date,
        msgspec.Meta(description="First business day of the period (Europe/Amsterdam calendar)"),
    ]
    last_day: Annotated[
        date,
        msgspec.Meta(description="Last business day of the period (Europe/Amsterdam calendar)"),
    ]
    currency: Annotated[str, msgspec.Meta(examples=["EUR"])]
    entries: Annotated[
        int,
        msgspec.Meta(
            description="Every ledger entry of yours the statement settles, including those "
            "that move no money (such as points becoming available) and the settlement's own "
            "money entry; each line's `entries` counts only the entries behind that line"
        ),
    ]
    net_cents: Annotated[
        int,
        msgspec.Meta(
            description="Sum of the lines' `amount_cents`: positive = the programme pays you, "
            "negative = you pay the programme"
        ),
    ]
    closed_at: Annotated[datetime, msgspec.Meta(description="When the settlement run closed it")]
    lines: Annotated[
        list[StatementLineOut],
        msgspec.Meta(
            description="One per category, in the order points_issued, refunds, "
            "points_redeemed, sponsored_rewards"
        ),
    ]


class StatementPage(msgspec.Struct, kw_only=True):
    items: Annotated[list[StatementOut], msgspec.Meta(description="Newest period first")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Pass as `cursor` for the next page; null on the last page"),
    ]
