"""Units and limits for points and money. Integers only, everywhere.

Points are whole points; money is integer cents; per-point prices are integer
micro-euros (0.8 cent per point = 8_000 micros). Rounding happens in exactly
the places named here.
"""

from __future__ import annotations

from functools import lru_cache

import pycountry

AMOUNT_CENTS_MAX = 100_000_000_00  # one hundred million euros in one purchase
POINTS_MAX = 1_000_000_000_000
PRICE_MICROS_MAX = 100_000_000  # 100 euros per point: far beyond any real price
EARN_RATE_MILLIPOINTS_PER_EURO_MAX = 1_000_000
MICROS_PER_CENT = 10_000


def earn_points(amount_cents: int, rate_millipoints_per_euro: int) -> int:
    """Points for a purchase, rounded down to whole points (DESIGN: earn rounds down)."""
    if amount_cents < 0 or rate_millipoints_per_euro < 0:
        raise ValueError("earn_points takes non-negative amounts")
    return (amount_cents * rate_millipoints_per_euro) // 100_000


def proportional_points(points: int, part_cents: int, whole_cents: int) -> int:
    """Points that belong to `part_cents` of a `whole_cents` purchase, rounded down.

    Used for partial refunds; the last refund of a purchase takes whatever is
    left so that the reversed total equals the earned total exactly.
    """
    if whole_cents <= 0 or not 0 <= part_cents <= whole_cents:
        raise ValueError("proportional_points needs 0 <= part <= whole and whole > 0")
    return (points * part_cents) // whole_cents


@lru_cache(maxsize=512)
def is_iso_currency(code: str) -> bool:
    return len(code) == 3 and code.isupper() and pycountry.currencies.get(alpha_3=code) is not None


def cents_half_even(micros: int) -> int:
    """Micro-euros to cents, the exact half to the even cent (banker's rounding).

    Settlement rounds once per statement line, never per transaction (DESIGN).
    Floor division keeps it exact for negative amounts too: -15_000 micros
    (-1.5 cents) is -2 cents, -25_000 is -2 cents, -5_000 is 0.
    """
    cents, remainder = divmod(micros, MICROS_PER_CENT)
    twice = 2 * remainder
    if twice > MICROS_PER_CENT or (twice == MICROS_PER_CENT and cents % 2 == 1):
        cents += 1
    return cents


def format_cents(cents: int) -> str:
    """1250 -> "12,50 €", -123 -> "-1,23 €" (how pages show money; the API
    speaks integer cents). Sign first: floor division of a negative amount
    would read -123 as -2 euros and 77 cents."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole:,}".replace(",", ".") + f",{part:02d} €"
