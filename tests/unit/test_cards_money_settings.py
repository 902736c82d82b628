"""Pure rules: card check digits, integer money, settings validation, SQL parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.clock import add_months
from api.coalition.cards import is_valid_card_number, luhn_check_digit, new_card_number
from api.db.sql import Query
from api.money import earn_points, is_iso_currency, proportional_points
from api.settings import SettingsError, load_settings


def test_luhn_matches_the_published_example() -> None:
    assert luhn_check_digit("7992739871") == "3"  # the textbook example: 79927398713
    assert is_valid_card_number("4539578763621486")  # a well-known valid 16-digit test number


def test_card_numbers_carry_a_check_digit_that_catches_typos() -> None:
    number = new_card_number()
    assert is_valid_card_number(number) and len(number) == 16 and number.startswith("6048")
    typo = number[:5] + str((int(number[5]) + 1) % 10) + number[6:]
    assert not is_valid_card_number(typo)
    swapped = number[:3] + number[4] + number[3] + number[5:]
    assert number[3] == number[4] or not is_valid_card_number(swapped)
    for bad in (
        "",
        "123",
        "60480000000000000",
        "6048abcd00000000",
        "\uff16\uff10\uff14\uff18" + "\uff10" * 12,  # full-width digits: isdigit() but not ASCII
    ):
        assert not is_valid_card_number(bad)


def test_earn_rounds_down_and_never_uses_floats() -> None:
    assert earn_points(999, 1_000) == 9
    assert earn_points(10_000, 1_500) == 150
    assert earn_points(99, 1_000) == 0
    assert earn_points(10**10, 1_000_000) == 10**11
    assert isinstance(earn_points(12_345, 1_000), int)


def test_proportional_points_round_down() -> None:
    assert proportional_points(100, 3_333, 10_001) == 33
    assert proportional_points(100, 10_001, 10_001) == 100
    with pytest.raises(ValueError):
        proportional_points(100, 2, 1)


def test_currency_codes_come_from_iso_4217() -> None:
    assert is_iso_currency("EUR") and is_iso_currency("USD")
    assert not is_iso_currency("XYZ") and not is_iso_currency("eur") and not is_iso_currency("EURO")


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 3, 2, tzinfo=UTC), 36) == datetime(2029, 3, 2, tzinfo=UTC)


def test_settings_defaults_and_errors_name_the_variable(tmp_path: Path) -> None:
    settings = load_settings({"KRING_DATA_DIR": str(tmp_path)})
    assert settings.data_dir == tmp_path and settings.database_url is None
    assert settings.jwt_secret and (tmp_path / "jwt-secret").exists()
    assert load_settings({"KRING_DATA_DIR": str(tmp_path)}).jwt_secret == settings.jwt_secret
    cases = {
        "KRING_MODE": "staging",
        "KRING_PARTNER_TOKEN_TTL_SECONDS": "-5",
        "DATABASE_URL": "mysql://x",
        "KRING_JWT_SECRET": "short",
        "KRING_LOG_LEVEL": "loud",
    }
    for name, value in cases.items():
        with pytest.raises(SettingsError, match=name):
            load_settings({"KRING_DATA_DIR": str(tmp_path), name: value})


def test_named_sql_parameters_compile_to_positions_and_skip_casts() -> None:
    query = Query("SELECT :a::bigint, :b, :a, 'x'::text WHERE y = :b")
    assert query.text == "SELECT $1::bigint, $2, $1, 'x'::text WHERE y = $2"
    assert query.args({"a": 1, "b": 2}) == [1, 2]
    with pytest.raises(KeyError, match="b"):
        query.args({"a": 1})


def test_adjustment_approval_threshold_is_a_whole_number_of_points(tmp_path: Path) -> None:
    base = {"KRING_DATA_DIR": str(tmp_path)}
    assert load_settings(base).adjustment_approval_points == 500
    assert (
        load_settings({**base, "KRING_ADJUSTMENT_APPROVAL_POINTS": "0"}).adjustment_approval_points
        == 0
    )
    assert (
        load_settings(
            {**base, "KRING_ADJUSTMENT_APPROVAL_POINTS": "2500"}
        ).adjustment_approval_points
        == 2500
    )
    for bad in ("-1", "1.5", "many", "10000001"):
        with pytest.raises(SettingsError, match="KRING_ADJUSTMENT_APPROVAL_POINTS"):
            load_settings({**base, "KRING_ADJUSTMENT_APPROVAL_POINTS": bad})
