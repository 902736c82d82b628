"""A partner's bank details: normalised and validated before anything is stored.

Kring pays partners by SEPA credit transfer, so the rules are SEPA's:

- IBAN: spaces and lowercase are accepted and stored compact and uppercase.
  schwifty checks the country's length and format, the ISO 7064 check digits
  and, where the country has one, the national check digit inside the account
  number. An IBAN outside the SEPA zone is refused: no payout could reach it.
- BIC: optional. Inside the EEA a SEPA transfer needs only the IBAN, so when
  none is given we store the one schwifty derives from its bank registry, or
  nothing. Banks in SEPA countries outside the EEA (Switzerland, the UK,
  Monaco, ...) still need a BIC, so there one must be given when schwifty
  cannot derive it. A given BIC must be well formed, in the IBAN's country, and,
  when schwifty knows the IBAN's bank, belong to that bank.
- Account holder: required with an IBAN (banks match the creditor name), 1 to 70
  characters (the SEPA `Nm` limit, also a database CHECK).

Errors are `DomainError`s with the codes `invalid_iban`, `invalid_bic` and
`account_holder_required`, and a detail that names what is wrong.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from schwifty import BIC, IBAN
from schwifty import exceptions as schwifty_errors

from api.errors import DomainError

ACCOUNT_HOLDER_LENGTH_MAX = 70  # SEPA Max70Text, and the partners.account_holder CHECK
IBAN_INPUT_LENGTH_MAX = 64  # 34 characters plus generous spacing; longer input is not an IBAN

# Where SEPA's "IBAN only" rule applies (EU 27 plus Iceland, Liechtenstein, Norway).
EEA_COUNTRY_CODES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IS",
        "IT",
        "LI",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "NO",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)


@dataclass(frozen=True, slots=True)
class BankDetails:
    iban: str  # compact, uppercase
    bic: str | None  # compact, uppercase; None when not needed and not derivable
    account_holder: str


def _iban_error(detail: str) -> DomainError:
    return DomainError(detail, code="invalid_iban")


def _bic_error(detail: str) -> DomainError:
    return DomainError(detail, code="invalid_bic")


def parse_iban(raw: str) -> IBAN:
    """The IBAN in `raw` (spaces and case ignored), or `invalid_iban` saying why not."""
    if len(raw) > IBAN_INPUT_LENGTH_MAX:
        raise _iban_error(f"IBAN is too long ({len(raw)} characters)")
    text = "".join(raw.split()).upper()
    if not text:
        raise _iban_error("IBAN is empty")
    try:
        # schwifty warns (not raises) when it cannot verify a national check
        # digit; the ISO check digits still protect against typing errors.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", schwifty_errors.NationalChecksumNotVerified)
            iban = IBAN(text, validate_bban=True)
    except schwifty_errors.InvalidCountryCode:
        raise _iban_error(f"unknown IBAN country code {text[:2]!r}") from None
    except schwifty_errors.InvalidLength:
        raise _iban_error(_length_detail(text)) from None
    except schwifty_errors.InvalidChecksumDigits:
        raise _iban_error("IBAN check digits do not match") from None
    except schwifty_errors.InvalidBBANChecksum:
        raise _iban_error(
            "the national check digit in the IBAN's account number does not match"
        ) from None
    except schwifty_errors.InvalidStructure:
        raise _iban_error(f"IBAN does not have the format of a {text[:2]} IBAN") from None
    except schwifty_errors.SchwiftyException as exc:  # bank/branch/account code errors
        raise _iban_error(f"IBAN is not valid: {exc}") from None
    if not iban.in_sepa_zone:
        raise _iban_error(
            f"IBAN country {iban.country_code} is not in the SEPA zone;"
            " Kring pays partners by SEPA credit transfer"
        )
    return iban


def _length_detail(text: str) -> str:
    try:
        # A bare IBAN (no validation) only to read the country's expected length.
        expected = IBAN(text, allow_invalid=True).spec.iban_length
    except (schwifty_errors.SchwiftyException, KeyError, AttributeError):
        return f"IBAN has the wrong length ({len(text)} characters)"
    return f"a {text[:2]} IBAN has {expected} characters, this one has {len(text)}"


def parse_bic(raw: str) -> BIC:
    """The BIC in `raw` (spaces and case ignored), or `invalid_bic` saying why not."""
    text = "".join(raw.split()).upper()
    try:
        return BIC(text)
    except schwifty_errors.InvalidLength:
        raise _bic_error(f"a BIC has 8 or 11 characters, {text!r} has {len(text)}") from None
    except schwifty_errors.InvalidCountryCode:
        raise _bic_error(f"BIC {text!r} has an unknown country code {text[4:6]!r}") from None
    except schwifty_errors.SchwiftyException:
        raise _bic_error(f"BIC {text!r} is not well formed") from None


def validate_bank_details(
    iban: str | None, bic: str | None, account_holder: str | None
) -> BankDetails | None:
    """Normalised bank details, None when none were given, or a `DomainError`."""
    holder = account_holder.strip() if account_holder is not None else None
    if iban is None:
        if bic is not None or holder:
            raise _iban_error("an IBAN is required when a BIC or account holder is given")
        return None
    parsed = parse_iban(iban)
    if not holder:
        raise DomainError(
            "an account holder name is required with an IBAN", code="account_holder_required"
        )
    if len(holder) > ACCOUNT_HOLDER_LENGTH_MAX:
        raise DomainError(
            f"account holder name has {len(holder)} characters, at most"
            f" {ACCOUNT_HOLDER_LENGTH_MAX} are allowed",
            code="account_holder_required",
        )
    if not holder.isprintable():
        raise DomainError(
            "account holder name contains control characters", code="account_holder_required"
        )
    derived = parsed.bic  # from schwifty's bank registry; None when the bank is unknown
    if bic is None:
        if derived is None and parsed.country_code not in EEA_COUNTRY_CODES:
            raise _bic_error(
                f"a BIC is required for a {parsed.country_code} IBAN (outside the EEA) and"
                " cannot be derived from this one"
            )
        return BankDetails(parsed.compact, derived.compact if derived else None, holder)
    given = parse_bic(bic)
    _check_bic_matches_iban(given, parsed, derived)
    return BankDetails(parsed.compact, given.compact, holder)


def _check_bic_matches_iban(given: BIC, iban: IBAN, derived: BIC | None) -> None:
    if derived is not None:
        # Institution code and country (the first six characters) identify the
        # bank; branch and location codes legitimately differ between a bank's BICs.
        if given.compact[:6] != derived.compact[:6]:
            raise _bic_error(
                f"BIC {given.compact} does not belong to the bank of this IBAN"
                f" (expected a BIC starting with {derived.compact[:6]})"
            )
    elif given.country_code != iban.country_code:
        raise _bic_error(
            f"BIC {given.compact} is from {given.country_code}, the IBAN from {iban.country_code}"
        )
