"""Reconciliation: a partner's own list of transactions for a period, set against Kring's.

Read only: one statement reads Kring's side, the comparison is plain Python,
nothing is written. No web framework here; `api.partner_api` renders the result.

Kring's side is the partner's transactions booked (Kring's clock) in
`[period_start, period_end)`, as the partner's statements count them: a
captured burn when it was captured, anything else when it was created. They
are counted as money movements:

- earns: the points issued and the purchase's `amount_cents`, whatever their
  status (pending or available; a later refund is its own transaction);
- refunds: the points reversed and the `amount_cents` refunded;
- burns that were captured: the points captured (a partial capture counts
  what was captured, not what was authorized).

Burns still authorized, voided, or expired at their deadline moved no points:
they are never compared, and are listed apart (`uncaptured_burns`), so that a
partner sees the open authorizations that may still be captured.

Matching, in this order:

1. A partner row with a `transaction_id` is matched with the Kring transaction
   of that id (the partner's own only: another partner's id is `not_found`).
2. A row without one is matched by `(kind, receipt_ref)` when exactly one
   counted Kring transaction of the period that step 1 did not take has that
   kind and receipt reference, and no earlier row without an id has it.
   Several candidates make the row `ambiguous` (send the `transaction_id`).

A row that repeats an earlier row's `transaction_id`, or (without an id) an
earlier row's kind and receipt reference, or whose only candidate step 1 has
already matched, is a `duplicate`: reported with the row it repeats, never
matched twice and left out of the partner's totals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from uuid import UUID

import asyncpg

from api.errors import DomainError
from api.ledger.burn import HOLD_MINUTES_MAX

RECONCILIATION_ROWS_MAX = 10_000  # rows a partner may send in one request
RECONCILIATION_PERIOD_MAX = timedelta(days=31)  # a calendar month at most
# Kring's own rows for the period (counted and uncaptured burns). Beyond this
# the answer would be unbounded; the partner reconciles shorter periods instead.
RECONCILIATION_KRING_ROWS_MAX = 2 * RECONCILIATION_ROWS_MAX

BY_TRANSACTION_ID = "transaction_id"
BY_RECEIPT_REF = "receipt_ref"
_by_row = attrgetter("row")


@dataclass(frozen=True, slots=True)
class PartnerRow:
    """One row of the partner's list; `row` is its 0-based position in the request."""

    row: int
    kind: str
    points: int
    transaction_id: UUID | None = None
    receipt_ref: str | None = None
    amount_cents: int | None = None


@dataclass(frozen=True, slots=True)
class KringTransaction:
    transaction_id: UUID
    kind: str
    status: str
    points: int  # points that moved: for a burn, the points captured
    points_authorized: int  # for a burn, what was held; otherwise equal to `points`
    amount_cents: int | None
    receipt_ref: str | None
    created_at: datetime
    in_period: bool  # False: read only because the partner named its id

    @property
    def counted(self) -> bool:
        return self.in_period and (self.kind != "burn" or self.status == "captured")


@dataclass(frozen=True, slots=True)
class Values:
    """What one side says about a transaction."""

    kind: str
    points: int
    amount_cents: int | None
    receipt_ref: str | None


@dataclass(frozen=True, slots=True)
class Match:
    row: int
    transaction_id: UUID
    matched_by: str


@dataclass(frozen=True, slots=True)
class Mismatch:
    row: int
    transaction_id: UUID
    matched_by: str
    fields: list[str]
    partner: Values
    kring: Values


@dataclass(frozen=True, slots=True)
class MissingInKring:
    row: int
    kind: str
    points: int
    transaction_id: UUID | None
    receipt_ref: str | None
    amount_cents: int | None
    reason: str  # not_found, outside_period, not_captured
    kring_transaction_id: UUID | None = None
    kring_status: str | None = None
    kring_created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MissingInPartner:
    transaction_id: UUID
    kind: str
    status: str
    points: int
    amount_cents: int | None
    receipt_ref: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Duplicate:
    row: int
    first_row: int
    kind: str
    transaction_id: UUID | None
    receipt_ref: str | None


@dataclass(frozen=True, slots=True)
class Ambiguous:
    row: int
    kind: str
    receipt_ref: str | None
    candidate_transaction_ids: list[UUID]


@dataclass(frozen=True, slots=True)
class UncapturedBurn:
    transaction_id: UUID
    status: str
    points_authorized: int
    receipt_ref: str | None
    created_at: datetime


@dataclass(slots=True)
class Totals:
    transactions: int = 0
    earn_points: int = 0
    earn_amount_cents: int = 0
    burn_points: int = 0
    refund_points: int = 0
    refund_amount_cents: int = 0
    net_points: int = 0  # earned less burned less refunded

    def add(self, kind: str, points: int, amount_cents: int | None) -> None:
        self.transactions += 1
        if kind == "earn":
            self.earn_points += points
            self.earn_amount_cents += amount_cents or 0
            self.net_points += points
        elif kind == "burn":
            self.burn_points += points
            self.net_points -= points
        else:
            self.refund_points += points
            self.refund_amount_cents += amount_cents or 0
            self.net_points -= points


@dataclass(frozen=True, slots=True)
class SideTotals:
    partner: Totals
    kring: Totals


@dataclass(frozen=True, slots=True)
class Summary:
    partner_rows: int
    kring_transactions: int
    matched: int
    mismatched: int
    missing_in_kring: int
    missing_in_partner: int
    duplicates: int
    ambiguous: int
    uncaptured_burns: int
    reconciled: bool  # both sides agree: nothing missing, mismatched, duplicated or ambiguous


@dataclass(frozen=True, slots=True)
class Reconciliation:
    period_start: datetime
    period_end: datetime
    summary: Summary
    totals: SideTotals
    matched: list[Match]
    mismatched: list[Mismatch]
    missing_in_kring: list[MissingInKring]
    missing_in_partner: list[MissingInPartner]
    duplicates: list[Duplicate]
    ambiguous: list[Ambiguous]
    uncaptured_burns: list[UncapturedBurn]


# Checks ----------------------------------------------------------------------


def check_request(period_start: datetime, period_end: datetime, rows: Sequence[PartnerRow]) -> None:
    """Refuse what cannot be reconciled, before anything is read."""
    for name, moment in (("period_start", period_start), ("period_end", period_end)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise DomainError(
                f"{name} needs a time zone offset, e.g. 2026-03-01T00:00:00+01:00",
                code="invalid_period",
            )
    if period_end <= period_start:
        raise DomainError(
            "period_end must be after period_start (the end is exclusive)",
            code="invalid_period",
        )
    if period_end - period_start > RECONCILIATION_PERIOD_MAX:
        raise DomainError(
            f"a period is at most {RECONCILIATION_PERIOD_MAX.days} days; reconcile a longer"
            " span in parts",
            code="period_too_long",
        )
    if len(rows) > RECONCILIATION_ROWS_MAX:
        raise DomainError(
            f"{len(rows)} transactions sent; at most {RECONCILIATION_ROWS_MAX:,} per request"
            " (reconcile a shorter period)",
            code="too_many_rows",
        )
    for row in rows:
        if row.transaction_id is None and row.receipt_ref is None:
            raise DomainError(
                f"transactions[{row.row}] needs a transaction_id or a receipt_ref to be matched by",
                code="missing_reference",
            )
        if row.kind == "burn" and row.amount_cents is not None:
            raise DomainError(
                f"transactions[{row.row}]: a burn has no amount_cents (only points)",
                code="invalid_row",
            )


# Kring's side: one statement -------------------------------------------------

# The period's transactions, plus those outside it that the partner named by
# id, so that a row dated into the wrong period is told apart from one Kring
# does not have. Both halves are limited to this partner: another partner's
# id reads as not found. A transaction belongs to the period in which Kring
# booked it, as in the partner's statements: a captured burn when it was
# captured (`finished_at`), anything else when it was created. A capture
# comes at most HOLD_MINUTES_MAX after its authorization, so the range scan
# on `transactions_partner_page` starts that much earlier.
_BOOKED_AT = (
    "CASE WHEN t.kind = 'burn' AND t.status = 'captured' THEN t.finished_at ELSE t.created_at END"
)
_KRING_SIDE = f"""
(SELECT t.id, t.kind, t.status, t.points, t.points_captured, t.amount_cents,
        t.receipt_ref, t.created_at, true AS in_period
 FROM transactions t
 WHERE t.partner_id = $1
   AND t.created_at >= $2::timestamptz - make_interval(mins => $6) AND t.created_at < $3
   AND {_BOOKED_AT} >= $2 AND {_BOOKED_AT} < $3
 ORDER BY t.created_at, t.id
 LIMIT $5)
UNION ALL
SELECT t.id, t.kind, t.status, t.points, t.points_captured, t.amount_cents,
       t.receipt_ref, t.created_at, false AS in_period
FROM unnest($4::uuid[]) AS named(id)
JOIN transactions t ON t.id = named.id
WHERE t.partner_id = $1 AND NOT ({_BOOKED_AT} >= $2 AND {_BOOKED_AT} < $3)
"""


async def load_kring_side(
    db: asyncpg.Pool,
    partner_id: int,
    period_start: datetime,
    period_end: datetime,
    named_ids: Iterable[UUID],
    *,
    rows_max: int = RECONCILIATION_KRING_ROWS_MAX,
) -> list[KringTransaction]:
    records = await db.fetch(
        _KRING_SIDE,
        partner_id,
        period_start,
        period_end,
        sorted(set(named_ids)),
        rows_max + 1,
        HOLD_MINUTES_MAX,
    )
    if sum(1 for r in records if r["in_period"]) > rows_max:
        raise DomainError(
            f"Kring has more than {rows_max:,} of your transactions in this period;"
            " reconcile a shorter period",
            code="period_too_busy",
        )
    return [
        KringTransaction(
            transaction_id=r["id"],
            kind=r["kind"],
            status=r["status"],
            points=r["points_captured"] if r["kind"] == "burn" else r["points"],
            points_authorized=r["points"],
            amount_cents=r["amount_cents"],
            receipt_ref=r["receipt_ref"],
            created_at=r["created_at"],
            in_period=r["in_period"],
        )
        for r in records
    ]


async def reconcile(
    db: asyncpg.Pool,
    partner_id: int,
    period_start: datetime,
    period_end: datetime,
    rows: Sequence[PartnerRow],
) -> Reconciliation:
    check_request(period_start, period_end, rows)
    named = (r.transaction_id for r in rows if r.transaction_id is not None)
    kring = await load_kring_side(db, partner_id, period_start, period_end, named)
    return compare(period_start, period_end, rows, kring)


# The comparison: pure ------------------------------------------------------------


def _differences(row: PartnerRow, txn: KringTransaction, matched_by: str) -> list[str]:
    fields = []
    if row.kind != txn.kind:
        fields.append("kind")
    if row.points != txn.points:
        fields.append("points")
    # Optional on the partner's side: compared only when given.
    if row.amount_cents is not None and row.amount_cents != txn.amount_cents:
        fields.append("amount_cents")
    if (
        matched_by == BY_TRANSACTION_ID
        and row.receipt_ref is not None
        and row.receipt_ref != txn.receipt_ref
    ):
        fields.append("receipt_ref")
    return fields


def _missing(row: PartnerRow, reason: str, txn: KringTransaction | None = None) -> MissingInKring:
    return MissingInKring(
        row=row.row,
        kind=row.kind,
        points=row.points,
        transaction_id=row.transaction_id,
        receipt_ref=row.receipt_ref,
        amount_cents=row.amount_cents,
        reason=reason,
        kring_transaction_id=None if txn is None else txn.transaction_id,
        kring_status=None if txn is None or reason != "not_captured" else txn.status,
        kring_created_at=None if txn is None or reason != "outside_period" else txn.created_at,
    )


def _duplicate(row: PartnerRow, first_row: int) -> Duplicate:
    return Duplicate(
        row=row.row,
        first_row=first_row,
        kind=row.kind,
        transaction_id=row.transaction_id,
        receipt_ref=row.receipt_ref,
    )


@dataclass(slots=True)
class _Outcome:
    matched: list[Match] = field(default_factory=list)
    mismatched: list[Mismatch] = field(default_factory=list)
    missing_in_kring: list[MissingInKring] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    ambiguous: list[Ambiguous] = field(default_factory=list)
    taken: dict[UUID, int] = field(default_factory=dict)  # Kring id -> the row that matched it
    partner_totals: Totals = field(default_factory=Totals)

    def pair(self, row: PartnerRow, txn: KringTransaction, matched_by: str) -> None:
        self.taken[txn.transaction_id] = row.row
        fields = _differences(row, txn, matched_by)
        if not fields:
            self.matched.append(Match(row.row, txn.transaction_id, matched_by))
            return
        self.mismatched.append(
            Mismatch(
                row=row.row,
                transaction_id=txn.transaction_id,
                matched_by=matched_by,
                fields=fields,
                partner=Values(row.kind, row.points, row.amount_cents, row.receipt_ref),
                kring=Values(txn.kind, txn.points, txn.amount_cents, txn.receipt_ref),
            )
        )


def compare(
    period_start: datetime,
    period_end: datetime,
    rows: Sequence[PartnerRow],
    kring: Sequence[KringTransaction],
) -> Reconciliation:
    out = _Outcome()
    by_id = {t.transaction_id: t for t in kring}
    counted = [t for t in kring if t.counted]
    by_ref: dict[tuple[str, str], list[KringTransaction]] = defaultdict(list)
    uncaptured_by_ref: dict[tuple[str, str], list[KringTransaction]] = defaultdict(list)
    for t in kring:
        if t.in_period and t.receipt_ref is not None:
            (by_ref if t.counted else uncaptured_by_ref)[(t.kind, t.receipt_ref)].append(t)

    # 1. Rows that name Kring's id. Every id row goes first, so that a receipt
    #    row never takes a transaction that a later row names by id.
    first_with_id: dict[UUID, int] = {}
    for row in rows:
        if row.transaction_id is None:
            continue
        if row.transaction_id in first_with_id:
            out.duplicates.append(_duplicate(row, first_with_id[row.transaction_id]))
            continue
        first_with_id[row.transaction_id] = row.row
        out.partner_totals.add(row.kind, row.points, row.amount_cents)
        txn = by_id.get(row.transaction_id)
        if txn is None:
            out.missing_in_kring.append(_missing(row, "not_found"))
        elif not txn.in_period:
            out.missing_in_kring.append(_missing(row, "outside_period", txn))
        elif not txn.counted:
            out.missing_in_kring.append(_missing(row, "not_captured", txn))
        else:
            out.pair(row, txn, BY_TRANSACTION_ID)

    # 2. Rows matched by kind and receipt reference.
    first_with_ref: dict[tuple[str, str], int] = {}
    in_doubt: set[UUID] = set()
    for row in rows:
        if row.transaction_id is not None or row.receipt_ref is None:
            continue
        key = (row.kind, row.receipt_ref)
        if key in first_with_ref:
            out.duplicates.append(_duplicate(row, first_with_ref[key]))
            continue
        first_with_ref[key] = row.row
        candidates = by_ref.get(key, [])
        free = [t for t in candidates if t.transaction_id not in out.taken]
        if candidates and not free:
            # The partner listed this transaction already, by its id.
            out.duplicates.append(_duplicate(row, out.taken[candidates[0].transaction_id]))
            continue
        out.partner_totals.add(row.kind, row.points, row.amount_cents)
        if len(free) == 1:
            out.pair(row, free[0], BY_RECEIPT_REF)
        elif free:
            ids = [t.transaction_id for t in free]
            in_doubt.update(ids)
            out.ambiguous.append(Ambiguous(row.row, row.kind, row.receipt_ref, ids))
        elif burns := uncaptured_by_ref.get(key):
            out.missing_in_kring.append(_missing(row, "not_captured", burns[-1]))
        else:
            out.missing_in_kring.append(_missing(row, "not_found"))

    kring_totals = Totals()
    missing_in_partner = []
    for t in counted:
        kring_totals.add(t.kind, t.points, t.amount_cents)
        if t.transaction_id not in out.taken and t.transaction_id not in in_doubt:
            missing_in_partner.append(
                MissingInPartner(
                    transaction_id=t.transaction_id,
                    kind=t.kind,
                    status=t.status,
                    points=t.points,
                    amount_cents=t.amount_cents,
                    receipt_ref=t.receipt_ref,
                    created_at=t.created_at,
                )
            )
    uncaptured = [
        UncapturedBurn(t.transaction_id, t.status, t.points_authorized, t.receipt_ref, t.created_at)
        for t in kring
        if t.in_period and not t.counted
    ]
    # Step 1 then step 2 found them; the partner reads them in the order of their list.
    out.matched.sort(key=_by_row)
    out.mismatched.sort(key=_by_row)
    out.missing_in_kring.sort(key=_by_row)
    out.duplicates.sort(key=_by_row)
    summary = Summary(
        partner_rows=len(rows),
        kring_transactions=len(counted),
        matched=len(out.matched),
        mismatched=len(out.mismatched),
        missing_in_kring=len(out.missing_in_kring),
        missing_in_partner=len(missing_in_partner),
        duplicates=len(out.duplicates),
        ambiguous=len(out.ambiguous),
        uncaptured_burns=len(uncaptured),
        reconciled=not (
            out.mismatched
            or out.missing_in_kring
            or missing_in_partner
            or out.duplicates
            or out.ambiguous
        ),
    )
    return Reconciliation(
        period_start=period_start,
        period_end=period_end,
        summary=summary,
        totals=SideTotals(partner=out.partner_totals, kring=kring_totals),
        matched=out.matched,
        mismatched=out.mismatched,
        missing_in_kring=out.missing_in_kring,
        missing_in_partner=missing_in_partner,
        duplicates=out.duplicates,
        ambiguous=out.ambiguous,
        uncaptured_burns=uncaptured,
    )
