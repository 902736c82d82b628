"""A partner's bank details on the database: bad ones are refused and write nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import main
from api.coalition.partners import set_bank_details
from api.db.pool import transaction
from api.errors import DomainError


async def partner_row(pool, code):
    return await pool.fetchrow(
        "SELECT id, iban, bic, account_holder FROM partners WHERE code = $1", code
    )


async def test_a_bad_iban_is_refused_at_creation_and_nothing_is_written(make_partner, pool):
    partners_before = await pool.fetchval("SELECT count(*) FROM partners")
    accounts_before = await pool.fetchval("SELECT count(*) FROM accounts")
    with pytest.raises(DomainError) as caught:
        await make_partner(
            code="bad-iban", iban="NL92ABNA0417164300", account_holder="Versmarkt B.V."
        )
    assert caught.value.code == "invalid_iban"
    assert caught.value.detail == "IBAN check digits do not match"
    assert await partner_row(pool, "bad-iban") is None
    assert await pool.fetchval("SELECT count(*) FROM partners") == partners_before
    assert await pool.fetchval("SELECT count(*) FROM accounts") == accounts_before


async def test_an_iban_without_account_holder_is_refused(make_partner, pool):
    with pytest.raises(DomainError) as caught:
        await make_partner(code="no-holder", iban="NL91ABNA0417164300")
    assert caught.value.code == "account_holder_required"
    assert await partner_row(pool, "no-holder") is None


async def test_a_good_iban_is_stored_compact_with_its_bic(make_partner, pool):
    await make_partner(
        code="versmarkt", iban="nl91 abna 0417 1643 00", account_holder=" Versmarkt B.V. "
    )
    row = await partner_row(pool, "versmarkt")
    assert (row["iban"], row["bic"], row["account_holder"]) == (
        "NL91ABNA0417164300",
        "ABNANL2A",
        "Versmarkt B.V.",
    )


async def test_a_partner_without_bank_details_can_still_be_created(make_partner, pool):
    await make_partner(code="no-bank-yet")
    row = await partner_row(pool, "no-bank-yet")
    assert (row["iban"], row["bic"], row["account_holder"]) == (None, None, None)


async def test_set_bank_details_validates_before_writing(make_partner, pool):
    await make_partner(code="boekhuis")
    partner_id = (await partner_row(pool, "boekhuis"))["id"]
    bank = await transaction(
        pool,
        lambda conn: set_bank_details(
            conn, partner_id, iban="DE89 3704 0044 0532 0130 00", account_holder="Boekhuis GmbH"
        ),
    )
    assert bank.iban == "DE89370400440532013000"
    for iban, bic, code in [
        ("DE00370400440532013000", None, "invalid_iban"),
        ("NL91ABNA0417164300", "RABONL2U", "invalid_bic"),
    ]:
        with pytest.raises(DomainError) as caught:
            await transaction(
                pool,
                lambda conn, iban=iban, bic=bic: set_bank_details(
                    conn, partner_id, iban=iban, bic=bic, account_holder="Other"
                ),
            )
        assert caught.value.code == code
    row = await partner_row(pool, "boekhuis")
    assert (row["iban"], row["bic"], row["account_holder"]) == (
        "DE89370400440532013000",
        "COBADEFFXXX",
        "Boekhuis GmbH",
    )
    with pytest.raises(DomainError) as caught:
        await transaction(
            pool,
            lambda conn: set_bank_details(
                conn, -1, iban="NL91ABNA0417164300", account_holder="Nobody"
            ),
        )
    assert caught.value.code == "partner_not_found"


@pytest.fixture
def root_logger_restored():
    # `kring` configures the root logger for its process; in-process, that
    # handler would outlive the runner's captured stderr and log into a closed stream.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_cli_sets_and_refuses_bank_details(
    database_url: str, tmp_path: Path, root_logger_restored: None
) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "KRING_DATA_DIR": str(tmp_path)}

    def kring(*args: str):
        return runner.invoke(main, list(args), env=env)

    bad = kring(
        "partner", "create", "--code", "cli-bad", "--name", "Cli Bad",
        "--iban", "NL92ABNA0417164300", "--account-holder", "Cli Bad B.V.",
    )  # fmt: skip
    assert bad.exit_code == 1
    assert bad.stderr.strip() == "kring: invalid_iban: IBAN check digits do not match"
    created = kring(
        "partner", "create", "--code", "cli-good", "--name", "Cli Good",
        "--iban", "NL91ABNA0417164300", "--account-holder", "Cli Good B.V.", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    moved = kring(
        "partner", "set-bank", "--code", "cli-good",
        "--iban", "be71 0961 2345 6769", "--account-holder", "Cli Good BV",
    )  # fmt: skip
    assert moved.exit_code == 0, moved.stderr
    assert "BE71096123456769" in moved.stdout
    refused = kring(
        "partner", "set-bank", "--code", "cli-good",
        "--iban", "BE71096123456769", "--bic", "ABNANL2A", "--account-holder", "X",
    )  # fmt: skip
    assert refused.exit_code == 1 and refused.stderr.startswith("kring: invalid_bic: ")
    missing = kring(
        "partner", "set-bank", "--code", "nobody", "--iban", "BE71096123456769",
        "--account-holder", "X",
    )  # fmt: skip
    assert missing.exit_code == 1 and "partner_not_found" in missing.stderr
