"""The points ledger: double entry, append only, integer points.

Plain Python and SQL, no web framework. Every write follows one pattern:
lock the member's accounts (`accounts.lock_member`), compute a plan in
Python, then apply it in one statement built from `entries.ENTRY_CTES`.
"""
