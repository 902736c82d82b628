"""The months a figure covers, and the small arithmetic every figure shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal

from api.settlement.periods import SETTLEMENT_TIMEZONE

WINDOW_MONTHS = 12
WINDOW_MONTHS_MAX = 36
# The SQL that buckets a timestamptz into its Amsterdam month (a date, the 1st).
TZ = "Europe/Amsterdam"


def month_of(column: str) -> str:
    return f"date_trunc('month', {column} AT TIME ZONE '{TZ}')::date"


def add_months(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_start(month: date) -> datetime:
    """The UTC instant a month starts in Amsterdam."""
    return datetime.combine(month, time(0), tzinfo=SETTLEMENT_TIMEZONE).astimezone(UTC)


def month_label(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


@dataclass(frozen=True, slots=True)
class Window:
    """[start of the first month, now): `months` are their first days."""

    now: datetime
    months: tuple[date, ...]

    @property
    def start(self) -> datetime:
        return month_start(self.months[0])


def window_ending(now: datetime, months: int = WINDOW_MONTHS) -> Window:
    if not 1 <= months <= WINDOW_MONTHS_MAX:
        raise ValueError(f"a window is 1 to {WINDOW_MONTHS_MAX} months")
    local = now.astimezone(SETTLEMENT_TIMEZONE)
    last = date(local.year, local.month, 1)
    return Window(now, tuple(add_months(last, k) for k in range(1 - months, 1)))


def percent(numerator: int, denominator: int) -> Decimal | None:
    """100 x n / d, half-even to one decimal; None when d is 0."""
    if denominator == 0:
        return None
    return (Decimal(100 * numerator) / Decimal(denominator)).quantize(
        Decimal("0.1"), ROUND_HALF_EVEN
    )


def average(total: int, count: int, places: str = "0.01") -> Decimal | None:
    if count == 0:
        return None
    return (Decimal(total) / Decimal(count)).quantize(Decimal(places), ROUND_HALF_EVEN)


def whole_cents(total_cents: int, count: int) -> int | None:
    """An average in cents, half-even to the cent."""
    if count == 0:
        return None
    return int((Decimal(total_cents) / Decimal(count)).quantize(Decimal(1), ROUND_HALF_EVEN))
