"""The points ledger: double entry, append only, integer points.

Plain Python and SQL, no web framework. Every write follows one pattern:
lock the member's accounts (`accounts.lock_member`), compute a plan in
Python (`plan_*`, pure), then apply it in one statement built from
`entries.ENTRY_CTES` (`apply_*`). An earn without debt to repay skips the
lock: it only adds points, so nothing it reads can be taken from under it.

Where points move: `earn.py` (born), `burn.py` (spent), `refund.py`
(reversed, or owed), `lots.py` (released, expired), `check.py` (proven).
"""
