"""Bank details (IBAN, BIC, account holder), the SEPA payout file built from them, and
the programme's own payout account in the settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from xml.etree import ElementTree

import pytest
import xmlschema

from api.coalition.banking import BankDetails, validate_bank_details
from api.coalition.partners import NewPartner
from api.errors import DomainError
from api.settings import Settings, SettingsError, load_settings
from api.settlement.payouts import (
    PAIN001_SCHEMA,
    DebtorAccount,
    PartnerOwed,
    Payout,
    build_pain001,
    flag_missing_bank_details,
)

NS = {"p": f"urn:iso:std:iso:20022:tech:xsd:{PAIN001_SCHEMA}"}
DEBTOR = DebtorAccount("Kring B.V.", "NL91ABNA0417164300", "ABNANL2A")
PERIOD_END = date(2026, 11, 24)


def refused(code: str, iban: str | None, bic: str | None = None, holder: str | None = "X") -> str:
    with pytest.raises(DomainError) as caught:
        validate_bank_details(iban, bic, holder)
    assert caught.value.code == code, caught.value.detail
    return caught.value.detail


# -- IBAN ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "compact", "bic"),
    [
        ("NL91ABNA0417164300", "NL91ABNA0417164300", "ABNANL2A"),
        ("nl91 abna 0417 1643 00", "NL91ABNA0417164300", "ABNANL2A"),
        ("DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "COBADEFFXXX"),
        ("BE71 0961 2345 6769", "BE71096123456769", "GKCCBEBB"),
        # A valid Belgian IBAN whose bank schwifty does not know: no BIC, and
        # inside the EEA none is needed.
        ("be68 5390 0754 7034", "BE68539007547034", None),
    ],
)
def test_valid_ibans_are_stored_compact_with_a_derived_bic(
    raw: str, compact: str, bic: str | None
) -> None:
    assert validate_bank_details(raw, None, "  Versmarkt B.V. ") == BankDetails(
        compact, bic, "Versmarkt B.V."
    )


def test_wrong_check_digits_are_named() -> None:
    detail = refused("invalid_iban", "NL92ABNA0417164300")
    assert detail == "IBAN check digits do not match"


def test_wrong_length_says_how_long_it_should_be() -> None:
    detail = refused("invalid_iban", "NL91ABNA041716430")
    assert "18" in detail and "17" in detail


def test_unknown_country_is_named() -> None:
    assert "'XX'" in refused("invalid_iban", "XX91ABNA0417164300")


def test_a_wrong_national_check_digit_is_refused() -> None:
    # Belgian account numbers carry their own mod-97 check in the last two digits;
    # these IBAN check digits are right for the mistyped account number.
    assert "national check digit" in refused("invalid_iban", "BE41539007547035")


def test_iban_outside_sepa_cannot_be_paid_and_is_refused() -> None:
    assert "SEPA" in refused("invalid_iban", "TR330006100519786457841326")


@pytest.mark.parametrize("raw", ["", "   ", "NL91-ABNA-0417-1643-00", "NL91ABNA0417164300" * 4])
def test_junk_is_an_invalid_iban(raw: str) -> None:
    refused("invalid_iban", raw)


# -- BIC and account holder ---------------------------------------------------


def test_a_given_bic_is_normalised_and_must_belong_to_the_ibans_bank() -> None:
    bank = validate_bank_details("NL91ABNA0417164300", "abna nl2a xxx", "Versmarkt")
    assert bank is not None and bank.bic == "ABNANL2AXXX"
    assert "ABNANL" in refused("invalid_bic", "NL91ABNA0417164300", "RABONL2U")


def test_bic_country_must_match_when_the_bank_is_unknown() -> None:
    assert validate_bank_details("BE68539007547034", "GKCCBEBB", "X") is not None
    refused("invalid_bic", "BE68539007547034", "ABNANL2A")


@pytest.mark.parametrize("bic", ["ABNANL2", "ABNAZZ2A", "ABNA-NL2A"])
def test_malformed_bic_is_refused(bic: str) -> None:
    refused("invalid_bic", "NL91ABNA0417164300", bic)


def test_outside_the_eea_a_bic_is_required_when_it_cannot_be_derived() -> None:
    # Switzerland is in SEPA but not the EEA, and schwifty does not know this bank.
    refused("invalid_bic", "CH9300762011623852957")
    assert validate_bank_details("CH9300762011623852957", "UBSWCHZH80A", "X") is not None


@pytest.mark.parametrize("holder", [None, "", "   ", "x" * 71, "Bad\nName"])
def test_account_holder_is_required_with_an_iban(holder: str | None) -> None:
    refused("account_holder_required", "NL91ABNA0417164300", holder=holder)


def test_no_details_at_all_is_fine_but_a_holder_without_iban_is_not() -> None:
    assert validate_bank_details(None, None, None) is None
    refused("invalid_iban", None, holder="Versmarkt")
    refused("invalid_iban", None, bic="ABNANL2A", holder=None)


def test_new_partner_validation_refuses_a_bad_iban() -> None:
    with pytest.raises(DomainError) as caught:
        NewPartner(
            "versmarkt", "Versmarkt", "shop", iban="NL00ABNA0417164300", account_holder="V"
        ).validate()
    assert caught.value.code == "invalid_iban"


# -- pain.001 -----------------------------------------------------------------


def payout(code: str, iban: str, amount_cents: int, holder: str = "Holder") -> Payout:
    return Payout(
        partner_code=code,
        partner_name=code.title(),
        account_holder=holder,
        iban=iban,
        bic=None,
        amount_cents=amount_cents,
        end_to_end_id=f"KRING-20261124-{code}",
        remittance_info=f"KRING 2026-11-24 {code}",
    )


PAYOUTS = [
    payout("versmarkt", "DE89370400440532013000", 1_234_567, "Versmarkt GmbH"),
    payout("boekhuis", "BE71096123456769", 5, "Boekhuis"),
    payout("cafe", "NL91ABNA0417164300", 100, "Café Zoë"),
]


def build(payouts: list[Payout]) -> bytes:
    return build_pain001(
        DEBTOR, payouts, execution_date=date(2026, 11, 26), message_id="KRING-PAYOUT-20261124"
    )


def test_pain001_validates_against_the_bundled_xsd_with_exact_amounts() -> None:
    xml = build(PAYOUTS)
    # Validate here too, independently of sepaxml's own check on export.
    xsd = files("sepaxml") / "schemas" / f"{PAIN001_SCHEMA}.xsd"
    xmlschema.XMLSchema(str(xsd)).validate(xml.decode())

    root = ElementTree.fromstring(xml)
    header = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", NS)
    assert header is not None
    assert header.findtext("p:MsgId", namespaces=NS) == "KRING-PAYOUT-20261124"
    assert header.findtext("p:NbOfTxs", namespaces=NS) == "3"
    assert header.findtext("p:CtrlSum", namespaces=NS) == "12346.72"
    amounts = [a.text for a in root.iterfind(".//p:CdtTrfTxInf/p:Amt/p:InstdAmt", NS)]
    assert amounts == ["12345.67", "0.05", "1.00"]
    # The control sum equals the cents added as integers, not as floats.
    total = sum(Decimal(a or "") for a in amounts)
    assert total * 100 == sum(p.amount_cents for p in PAYOUTS)
    assert [e.text for e in root.iterfind(".//p:CdtTrfTxInf/p:CdtrAcct/p:Id/p:IBAN", NS)] == [
        p.iban for p in PAYOUTS
    ]
    # The debtor and its bank appear once, and every amount is in euro.
    assert root.findtext(".//p:DbtrAcct/p:Id/p:IBAN", namespaces=NS) == DEBTOR.iban
    assert root.findtext(".//p:DbtrAgt/p:FinInstnId/p:BICFI", namespaces=NS) == "ABNANL2A"
    assert {a.get("Ccy") for a in root.iterfind(".//p:InstdAmt", NS)} == {"EUR"}
    assert root.findtext(".//p:ReqdExctnDt/p:Dt", namespaces=NS) == "2026-11-26"


@pytest.mark.parametrize("amount_cents", [0, -100])
def test_a_non_positive_amount_is_refused(amount_cents: int) -> None:
    with pytest.raises(DomainError) as caught:
        build([replace(PAYOUTS[0], amount_cents=amount_cents)])
    assert caught.value.code == "invalid_payout"


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(DomainError) as caught:
        build([])
    assert caught.value.code == "invalid_payout"


def test_a_hand_built_payout_with_a_bad_iban_never_reaches_the_file() -> None:
    with pytest.raises(DomainError) as caught:
        build([replace(PAYOUTS[0], iban="DE00370400440532013000")])
    assert caught.value.code == "invalid_iban"


def test_non_euro_or_float_amounts_are_refused() -> None:
    for bad in (replace(PAYOUTS[0], currency="USD"), replace(PAYOUTS[0], amount_cents=12.5)):
        with pytest.raises(DomainError):
            build([bad])


# -- flagging -----------------------------------------------------------------


def test_partners_without_a_valid_iban_are_flagged_not_skipped() -> None:
    owed = [
        PartnerOwed("versmarkt", "Versmarkt", 1_234_567, "de89 3704 0044 0532 0130 00", None, "V"),
        PartnerOwed("boekhuis", "Boekhuis", 500, None, None, None),
        PartnerOwed("cafe", "Cafe", 700, "NL92ABNA0417164300", None, "Cafe"),
        PartnerOwed("kiosk", "Kiosk", 300, "NL91ABNA0417164300", None, None),
        PartnerOwed("owes-us", "Owes Us", -900, None, None, None),  # not a payout
        PartnerOwed("square", "Square", 0, None, None, None),
    ]
    payouts, flagged = flag_missing_bank_details(owed, period_end=PERIOD_END)
    assert [p.partner_code for p in payouts] == ["versmarkt"]
    assert payouts[0].iban == "DE89370400440532013000"
    assert payouts[0].remittance_info == "KRING 2026-11-24 versmarkt"
    assert payouts[0].end_to_end_id == "KRING-20261124-versmarkt"
    assert [(f.partner_code, f.code, f.amount_cents) for f in flagged] == [
        ("boekhuis", "missing_iban", 500),
        ("cafe", "invalid_iban", 700),
        ("kiosk", "account_holder_required", 300),
    ]
    assert flagged[1].reason == "IBAN check digits do not match"
    # What is owed is either paid or flagged: nothing goes missing.
    assert sum(p.amount_cents for p in payouts) + sum(f.amount_cents for f in flagged) == sum(
        o.amount_cents for o in owed if o.amount_cents > 0
    )
    build(payouts)  # and what is paid makes a valid file


def test_a_long_partner_code_still_fits_the_end_to_end_id() -> None:
    code = "a" * 63
    payouts, _ = flag_missing_bank_details(
        [PartnerOwed(code, "A", 1, "NL91ABNA0417164300", None, "A")], period_end=PERIOD_END
    )
    assert len(payouts[0].end_to_end_id) == 35
    assert payouts[0].remittance_info.endswith(code)
    build(payouts)


def test_long_codes_that_share_their_start_keep_distinct_end_to_end_ids() -> None:
    codes = ["a" * 40 + "-noord", "a" * 40 + "-zuid"]
    payouts, _ = flag_missing_bank_details(
        [PartnerOwed(code, "A", 1, "NL91ABNA0417164300", None, "A") for code in codes],
        period_end=PERIOD_END,
    )
    ids = [p.end_to_end_id for p in payouts]
    assert len(set(ids)) == 2 and all(len(i) == 35 for i in ids)
    assert all(i.startswith("KRING-20261124-aaaa") for i in ids)
    build(payouts)


def test_a_partner_owed_twice_for_one_period_is_refused() -> None:
    owed = PartnerOwed("cafe", "Cafe", 100, "NL91ABNA0417164300", None, "Cafe")
    with pytest.raises(DomainError) as caught:
        flag_missing_bank_details([owed, owed], period_end=PERIOD_END)
    assert caught.value.code == "invalid_payout"


# -- the programme's payout account (settings) --------------------------------


def payout_settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"KRING_DATA_DIR": str(tmp_path), **env})


def test_the_payout_account_is_optional_and_stored_normalised(tmp_path: Path) -> None:
    unset = payout_settings(tmp_path)
    assert (unset.payout_account_name, unset.payout_iban, unset.payout_bic) == (None, None, None)
    given = payout_settings(
        tmp_path,
        KRING_PAYOUT_ACCOUNT_NAME=" Kring B.V. ",
        KRING_PAYOUT_IBAN="nl91 abna 0417 1643 00",
    )
    assert (given.payout_account_name, given.payout_iban, given.payout_bic) == (
        "Kring B.V.",
        "NL91ABNA0417164300",
        "ABNANL2A",  # derived from the IBAN's bank
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KRING_PAYOUT_IBAN": "NL92ABNA0417164300"}, "KRING_PAYOUT_IBAN"),
        ({"KRING_PAYOUT_IBAN": "US12345678901234"}, "KRING_PAYOUT_IBAN"),
        ({"KRING_PAYOUT_BIC": "RABONL2U"}, "KRING_PAYOUT_BIC"),
        ({"KRING_PAYOUT_BIC": "ABN"}, "KRING_PAYOUT_BIC"),
        ({"KRING_PAYOUT_ACCOUNT_NAME": ""}, "KRING_PAYOUT_ACCOUNT_NAME"),
        ({"KRING_PAYOUT_ACCOUNT_NAME": "x" * 71}, "KRING_PAYOUT_ACCOUNT_NAME"),
        # A Belgian bank schwifty does not know: the file needs its BIC.
        ({"KRING_PAYOUT_IBAN": "BE68539007547034"}, "KRING_PAYOUT_BIC"),
    ],
)
def test_a_bad_payout_account_names_its_variable(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    good = {
        "KRING_PAYOUT_ACCOUNT_NAME": "Kring B.V.",
        "KRING_PAYOUT_IBAN": "NL91ABNA0417164300",
    }
    with pytest.raises(SettingsError) as caught:
        payout_settings(tmp_path, **(good | env))
    assert str(caught.value).startswith(variable), caught.value
    assert "\n" not in str(caught.value)


def test_a_payout_bic_or_name_without_an_iban_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^KRING_PAYOUT_IBAN is required"):
        payout_settings(tmp_path, KRING_PAYOUT_BIC="ABNANL2A")
    with pytest.raises(SettingsError, match=r"^KRING_PAYOUT_ACCOUNT_NAME"):
        payout_settings(tmp_path, KRING_PAYOUT_IBAN="NL91ABNA0417164300")


def test_kring_payouts_refuses_without_the_programmes_account(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from api.cli import main

    env: dict[str, str | None] = {
        "KRING_DATA_DIR": str(tmp_path),
        "KRING_PAYOUT_ACCOUNT_NAME": None,
        "KRING_PAYOUT_IBAN": None,
        "KRING_PAYOUT_BIC": None,
    }
    result = CliRunner().invoke(main, ["payouts", "--period", "2026-11-24"], env=env)
    assert result.exit_code == 2
    assert "KRING_PAYOUT_ACCOUNT_NAME and KRING_PAYOUT_IBAN" in result.output
    assert not (tmp_path / "pgdata").exists()  # refused before touching the database
