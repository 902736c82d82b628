"""The bank-invariant fault test, short form (about two minutes): see
tests/faults/bank.py for what runs, which faults are injected and what is
checked. The long form: `uv run python -m tests.faults.bank --minutes 10`."""

from __future__ import annotations

import pytest

from tests.faults.bank import FAULTS, run_bank

TRAFFIC_SECONDS = 50
FAULT_EVERY_SECONDS = 6.0  # every kind of fault at least once


@pytest.mark.faults
async def test_points_survive_crashes_restarts_timeouts_and_a_drained_pool() -> None:
    report = await run_bank(
        seconds=TRAFFIC_SECONDS,
        clients=16,
        members=20,
        fault_every_seconds=FAULT_EVERY_SECONDS,
    )
    print(report.describe())
    injected = {kind for _, kind in report.faults}
    assert injected == set(FAULTS)
    assert report.short_timeouts > 0
    assert sum(op.acknowledged for op in report.ops) > 200
    assert not report.failures, report.describe()
