"""Settlement periods: business days in the programme's time zone, stored as UTC bounds.

A partner's statements follow the calendar of Europe/Amsterdam, because "the
24th" on a statement should mean the shop's 24th, not UTC's. A day's period
ends at the next local midnight; a week ends at local midnight starting
Monday; a month at local midnight starting the 1st. Daylight-saving days are
23 or 25 hours long, and that is correct.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

SETTLEMENT_TIMEZONE = ZoneInfo("Europe/Amsterdam")
Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")
# How long after its booking time an entry may still commit. An entry booked
# before a period closed but committed after the run lands in the next
# period; settlement looks this far back for such late arrivals, and
# `kring ledger check` reports an entry older than this that no statement holds.
LATE_ENTRY_WINDOW = timedelta(hours=6)
# A run waits this long after midnight, so most in-flight writes have landed.
SETTLEMENT_DELAY = timedelta(minutes=10)


def local_midnight(day: date) -> datetime:
    """The UTC instant at which `day` starts in the settlement time zone."""
    return datetime.combine(day, time(0), tzinfo=SETTLEMENT_TIMEZONE).astimezone(UTC)


def business_date(moment: datetime) -> date:
    """The local calendar day `moment` falls on."""
    return moment.astimezone(SETTLEMENT_TIMEZONE).date()


def day_end(day: date) -> datetime:
    """The UTC end (exclusive) of business day `day`: the next local midnight."""
    return local_midnight(day + timedelta(days=1))


def period_ending(period: Period, day: date) -> tuple[datetime, datetime] | None:
    """(start, end) of the `period` that closes at the end of `day`, or None
    when no such period ends that day (a weekly period ends on Sundays, a
    monthly one on the last day of the month)."""
    next_day = day + timedelta(days=1)
    if period == "daily":
        return local_midnight(day), local_midnight(next_day)
    if period == "weekly":
        if next_day.isoweekday() != 1:
            return None
        return local_midnight(next_day - timedelta(days=7)), local_midnight(next_day)
    if next_day.day != 1:
        return None
    return local_midnight(day.replace(day=1)), local_midnight(next_day)


def last_due_day(now: datetime) -> date:
    """The latest business day a run may settle at `now`: the day that ended
    at least SETTLEMENT_DELAY ago."""
    return business_date(now - SETTLEMENT_DELAY) - timedelta(days=1)
