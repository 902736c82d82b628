"""Payouts the programme owes partners, as a SEPA credit-transfer file (pain.001).

The file is built by sepaxml in the ISO 20022 2019 version `pain.001.001.09`:
the version the EPC's SEPA Credit Transfer customer-to-bank implementation
guidelines have specified since the November 2023 rulebook, and which banks
across SEPA now accept (the older `pain.001.001.03` is being retired by
banks). sepaxml validates every file against the XSD it ships before returning
it, and we ask for that explicitly: a file that fails is an error, never
written out.

Money stays integer cents up to the library: sepaxml refuses non-integer
amounts and turns cents into "12345.67" by string slicing, not division.

Partners owed money without usable bank details are returned as flagged, with
the reason, so that a run shows them to an admin instead of dropping them.

`payouts_for_run` reads what one business day's settlement run owes: every
partner statement of that run with a positive net (the programme owes the
partner), with the partner's stored bank details. A partner on weekly or
monthly statements has a statement only in the run of the day its period
ends, so it is paid from that day's file and no other. Charities are paid in
the same file: the monthly charity payouts made on that business day
(api/charity/settlement.py), as `charity-<id>`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg
from sepaxml import SepaTransfer  # type: ignore[import-untyped]  # sepaxml ships no type hints
from sepaxml.validation import ValidationError  # type: ignore[import-untyped]  # same package

from api.charity.settlement import charity_payouts_on
from api.coalition.banking import validate_bank_details
from api.errors import DomainError, NotFound

PAIN001_SCHEMA = "pain.001.001.09"
PAYOUT_CURRENCY = "EUR"  # SEPA credit transfers are in euro only
PAYOUT_CENTS_MAX = 999_999_999_99  # the SEPA credit transfer ceiling: 999,999,999.99 EUR
PAYOUTS_PER_FILE_MAX = 10_000  # far beyond a coalition's partners; bounds memory and file size
MESSAGE_ID_LENGTH_MAX = 35  # ISO 20022 Max35Text
END_TO_END_ID_LENGTH_MAX = 35
REMITTANCE_LENGTH_MAX = 140  # unstructured remittance (Ustrd), Max140Text
END_TO_END_DIGEST_LENGTH = 8  # hex characters of the partner code's digest in a shortened id

# The EPC's basic Latin character set, which every SEPA bank must carry
# unchanged; identifiers outside it may be rewritten or rejected on the way.
_SEPA_TEXT = re.compile(r"[A-Za-z0-9/\-?:().,'+ ]+")


@dataclass(frozen=True, slots=True)
class DebtorAccount:
    """The programme's own account that payouts are paid from."""

    name: str
    iban: str
    bic: str


@dataclass(frozen=True, slots=True)
class Payout:
    partner_code: str
    partner_name: str
    account_holder: str
    iban: str
    bic: str | None
    amount_cents: int
    end_to_end_id: str  # reaches the partner's bank statement; <= 35 SEPA characters
    remittance_info: str  # e.g. "KRING 2026-11-24 versmarkt"; <= 140 characters
    currency: str = PAYOUT_CURRENCY

    def validate(self) -> None:
        # `bool` is an `int`; an amount of True cents is a bug, not one cent.
        if type(self.amount_cents) is not int or self.amount_cents <= 0:
            raise DomainError(
                f"payout to {self.partner_code} must be a positive whole number of cents,"
                f" got {self.amount_cents!r}",
                code="invalid_payout",
            )
        if self.amount_cents > PAYOUT_CENTS_MAX:
            raise DomainError(
                f"payout to {self.partner_code} exceeds the SEPA maximum", code="invalid_payout"
            )
        if self.currency != PAYOUT_CURRENCY:
            raise DomainError(
                f"SEPA payouts are in EUR, not {self.currency!r}", code="invalid_payout"
            )
        if not 0 < len(self.end_to_end_id) <= END_TO_END_ID_LENGTH_MAX or not _SEPA_TEXT.fullmatch(
            self.end_to_end_id
        ):
            raise DomainError(
                f"end-to-end id {self.end_to_end_id!r} must be 1 to 35 SEPA characters",
                code="invalid_payout",
            )
        if not 0 < len(self.remittance_info) <= REMITTANCE_LENGTH_MAX:
            raise DomainError(
                "remittance information must be 1 to 140 characters", code="invalid_payout"
            )


@dataclass(frozen=True, slots=True)
class PartnerOwed:
    """A partner the programme owes `amount_cents`, with its stored bank details."""

    partner_code: str
    partner_name: str
    amount_cents: int
    iban: str | None
    bic: str | None
    account_holder: str | None


@dataclass(frozen=True, slots=True)
class FlaggedPayout:
    """A payout that cannot be made until the partner's bank details are fixed."""

    partner_code: str
    partner_name: str
    amount_cents: int
    code: str  # missing_iban, invalid_iban, invalid_bic, account_holder_required
    reason: str


def next_weekday(day: date) -> date:
    """The first Monday-to-Friday after `day` (banks move a holiday to their next day):
    the default execution date of a payout file made on `day`."""
    day += timedelta(days=1)
    while day.isoweekday() > 5:
        day += timedelta(days=1)
    return day


def payout_references(partner_code: str, period_end: date) -> tuple[str, str]:
    """(end-to-end id, remittance information) for a partner's payout for a period."""
    remittance = f"KRING {period_end.isoformat()} {partner_code}"
    end_to_end = f"KRING-{period_end:%Y%m%d}-{partner_code}"
    if len(end_to_end) > END_TO_END_ID_LENGTH_MAX:
        # Partner codes run to 63 characters and two long ones may share their
        # first twenty: the id keeps the date and what fits of the code, then a
        # digest of the whole code, so that ids in one file stay apart. The
        # remittance line carries the code whole.
        digest = hashlib.sha256(partner_code.encode()).hexdigest()[:END_TO_END_DIGEST_LENGTH]
        keep = END_TO_END_ID_LENGTH_MAX - END_TO_END_DIGEST_LENGTH - 1
        end_to_end = f"{end_to_end[:keep]}-{digest}"
    return end_to_end, remittance


def flag_missing_bank_details(
    partners_with_amounts: Iterable[PartnerOwed], *, period_end: date
) -> tuple[list[Payout], list[FlaggedPayout]]:
    """Split what is owed into payouts and flagged partners; nobody owed money is dropped.

    Stored details are validated again: they may predate a rule, or schwifty's
    bank registry may have changed. Partners with nothing owed (amount <= 0, they
    owe the programme or are square) are not payouts and are left out.
    """
    payouts: list[Payout] = []
    flagged: list[FlaggedPayout] = []
    seen_codes: set[str] = set()
    for owed in partners_with_amounts:
        if owed.amount_cents <= 0:
            continue
        # One payout per partner and period: a second would pay twice, and its
        # end-to-end id would repeat the first's.
        if owed.partner_code in seen_codes:
            raise DomainError(
                f"{owed.partner_code} is owed twice for {period_end}", code="invalid_payout"
            )
        seen_codes.add(owed.partner_code)
        if owed.iban is None:
            flagged.append(_flag(owed, "missing_iban", "no IBAN on file"))
            continue
        try:
            bank = validate_bank_details(owed.iban, owed.bic, owed.account_holder)
        except DomainError as exc:
            flagged.append(_flag(owed, exc.code, exc.detail))
            continue
        assert bank is not None  # an IBAN was given: details or an error
        end_to_end, remittance = payout_references(owed.partner_code, period_end)
        payouts.append(
            Payout(
                partner_code=owed.partner_code,
                partner_name=owed.partner_name,
                account_holder=bank.account_holder,
                iban=bank.iban,
                bic=bank.bic,
                amount_cents=owed.amount_cents,
                end_to_end_id=end_to_end,
                remittance_info=remittance,
            )
        )
    return payouts, flagged


def _flag(owed: PartnerOwed, code: str, reason: str) -> FlaggedPayout:
    return FlaggedPayout(owed.partner_code, owed.partner_name, owed.amount_cents, code, reason)


@dataclass(frozen=True, slots=True)
class RunPayouts:
    """What one business day's settlement run owes partners: paid or flagged."""

    business_date: date
    payouts: list[Payout]
    flagged: list[FlaggedPayout]

    @property
    def message_id(self) -> str:
        """The file's message id: one per business day, so that a bank refuses
        the same day's file uploaded twice instead of paying it twice."""
        return f"KRING-PAYOUT-{self.business_date:%Y%m%d}"

    @property
    def payout_cents(self) -> int:
        return sum(payout.amount_cents for payout in self.payouts)

    @property
    def flagged_cents(self) -> int:
        return sum(flag.amount_cents for flag in self.flagged)


# The partner statements of one run that the programme owes money on. A run's
# statements all end at the run's period end, and a partner has at most one
# statement per period end (a unique index), so a partner appears once.
_OWED_IN_RUN = """
SELECT p.code, p.name, s.net_cents, p.iban, p.bic, p.account_holder
FROM statements s
JOIN partners p ON p.id = s.partner_id
WHERE s.run_id = $1 AND s.net_cents > 0
ORDER BY p.code
"""


async def payouts_for_run(conn: asyncpg.Connection | asyncpg.Pool, day: date) -> RunPayouts:
    """The payouts (and flagged partners) of business day `day`'s settlement run.

    Raises `period_not_settled` when the day has no run yet. Statements never
    change once closed, so reading the run and its statements in two queries
    is consistent.
    """
    run_id = await conn.fetchval("SELECT id FROM settlement_runs WHERE business_date = $1", day)
    if run_id is None:
        raise NotFound(
            f"{day} is not settled yet: there is no settlement run for it"
            " (`kring settle` closes every day that has ended)",
            code="period_not_settled",
        )
    rows = await conn.fetch(_OWED_IN_RUN, run_id)
    owed = [
        PartnerOwed(
            partner_code=row["code"],
            partner_name=row["name"],
            amount_cents=row["net_cents"],
            iban=row["iban"],
            bic=row["bic"],
            account_holder=row["account_holder"],
        )
        for row in rows
    ]
    owed += [
        PartnerOwed(
            partner_code=f"charity-{charity.charity_id}",
            partner_name=charity.name,
            amount_cents=charity.amount_cents,
            iban=charity.iban,
            bic=charity.bic,
            account_holder=charity.account_holder,
        )
        for charity in await charity_payouts_on(conn, day)
    ]
    payouts, flagged = flag_missing_bank_details(owed, period_end=day)
    return RunPayouts(day, payouts, flagged)


class _Transfer(SepaTransfer):  # type: ignore[misc]  # the base class is untyped
    """sepaxml's transfer with our message id instead of a random one.

    sepaxml writes the group header in its constructor from `self.msg_id`,
    which it has just set to a random value; we put ours in first.
    """

    def __init__(self, config: dict[str, Any], schema: str, message_id: str) -> None:
        self._kring_message_id = message_id
        super().__init__(config, schema=schema, clean=True)

    def _create_header(self) -> None:
        self.msg_id = self._kring_message_id
        super()._create_header()


def build_pain001(
    debtor: DebtorAccount, payouts: list[Payout], *, execution_date: date, message_id: str
) -> bytes:
    """One pain.001 file paying every payout from `debtor` on `execution_date`.

    All transfers go in one batch (one payment information block, batch booking),
    so the programme's statement shows one debit; the file's control sum and
    count are computed by sepaxml from integer cents and checked by the XSD.
    """
    if not payouts:
        raise DomainError("a payout file needs at least one payout", code="invalid_payout")
    if len(payouts) > PAYOUTS_PER_FILE_MAX:
        raise DomainError(
            f"at most {PAYOUTS_PER_FILE_MAX} payouts per file, got {len(payouts)}",
            code="invalid_payout",
        )
    if not 0 < len(message_id) <= MESSAGE_ID_LENGTH_MAX or not _SEPA_TEXT.fullmatch(message_id):
        raise DomainError(
            f"message id {message_id!r} must be 1 to 35 SEPA characters", code="invalid_payout"
        )
    debtor_bank = validate_bank_details(debtor.iban, debtor.bic, debtor.name)
    assert debtor_bank is not None and debtor_bank.bic is not None  # both were given
    for payout in payouts:
        payout.validate()

    transfer = _Transfer(
        {
            "name": debtor_bank.account_holder,
            "IBAN": debtor_bank.iban,
            "BIC": debtor_bank.bic,
            "batch": True,
            "currency": PAYOUT_CURRENCY,
        },
        PAIN001_SCHEMA,
        message_id,
    )
    for payout in payouts:
        # Re-validated here too: a Payout built by hand must not reach a bank
        # with an IBAN that was never checked.
        bank = validate_bank_details(payout.iban, payout.bic, payout.account_holder)
        assert bank is not None
        payment: dict[str, Any] = {
            "name": bank.account_holder,
            "IBAN": bank.iban,
            "amount": payout.amount_cents,  # int cents: sepaxml refuses anything else
            "execution_date": execution_date,
            "description": payout.remittance_info,
            "endtoend_id": payout.end_to_end_id,
        }
        if bank.bic is not None:
            payment["BIC"] = bank.bic
        transfer.add_payment(payment)
    try:
        xml: bytes = transfer.export(validate=True)
    except ValidationError as exc:
        raise DomainError(
            f"the payout file does not validate against {PAIN001_SCHEMA}: {exc.__cause__}",
            code="invalid_payout",
        ) from exc
    return xml
