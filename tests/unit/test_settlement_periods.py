"""Settlement periods follow Europe/Amsterdam's calendar (stored as UTC), and
money rounds half-even once per line."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given
from hypothesis import strategies as st

from api.money import cents_half_even
from api.settlement.periods import business_date, day_end, last_due_day, period_ending


def test_a_day_runs_from_local_midnight_to_local_midnight():
    start, end = period_ending("daily", date(2026, 11, 24))
    assert start == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # CET is UTC+1
    assert end == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    summer_start, _ = period_ending("daily", date(2026, 7, 1))
    assert summer_start == datetime(2026, 6, 30, 22, 0, tzinfo=UTC)  # CEST is UTC+2


def test_daylight_saving_days_are_23_and_25_hours_long():
    spring = period_ending("daily", date(2026, 3, 29))
    autumn = period_ending("daily", date(2026, 10, 25))
    assert spring is not None and autumn is not None
    assert spring[1] - spring[0] == timedelta(hours=23)
    assert autumn[1] - autumn[0] == timedelta(hours=25)


def test_weeks_end_on_sunday_and_months_on_their_last_day():
    assert period_ending("weekly", date(2026, 11, 28)) is None  # a Saturday
    week = period_ending("weekly", date(2026, 11, 29))  # a Sunday
    assert week == (day_end(date(2026, 11, 22)), day_end(date(2026, 11, 29)))
    assert period_ending("monthly", date(2026, 11, 29)) is None
    month = period_ending("monthly", date(2026, 11, 30))
    assert month == (day_end(date(2026, 10, 31)), day_end(date(2026, 11, 30)))
    february = period_ending("monthly", date(2028, 2, 29))  # a leap year
    assert february is not None and february[0] == day_end(date(2028, 1, 31))


def test_a_day_is_due_ten_minutes_after_it_ends():
    end = day_end(date(2026, 11, 24))
    assert last_due_day(end + timedelta(minutes=9)) == date(2026, 11, 23)
    assert last_due_day(end + timedelta(minutes=10)) == date(2026, 11, 24)
    assert business_date(end - timedelta(microseconds=1)) == date(2026, 11, 24)
    assert business_date(end) == date(2026, 11, 25)


def test_half_even_rounds_exact_halves_to_the_even_cent():
    assert [cents_half_even(m) for m in (5_000, 15_000, 25_000, -5_000, -15_000, -25_000)] == [
        0, 2, 2, 0, -2, -2,
    ]  # fmt: skip
    assert [cents_half_even(m) for m in (14_999, 15_001, -14_999, -15_001)] == [1, 2, -1, -2]


@given(st.integers(-(10**24), 10**24))
def test_half_even_agrees_with_decimal(micros):
    expected = (Decimal(micros) / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert cents_half_even(micros) == int(expected)
