"""Journal entries and postings: the one way points move.

`Postings` is built in Python and refuses to be written unbalanced. `ENTRY_CTES`
is the SQL fragment that writes an entry, its postings and the account
balances in the same statement, with guards so that a member's available,
pending and held balances never go below zero and debt never above zero. The
statement reports how many balances moved; `require_moved` turns a shortfall
into `InsufficientPoints`, and the caller's transaction rolls back whole.

Every fragment user must define a CTE named `go` that yields one row when the
write should happen (an idempotency claim won) and none otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from api.errors import InsufficientPoints


class LedgerInvariantError(Exception):
    """A bug: code tried to write something the ledger's rules forbid."""


@dataclass
class Postings:
    """The lines of one journal entry, balanced per unit before any SQL runs."""

    lines: dict[int, int] = field(default_factory=dict)
    units: dict[int, str] = field(default_factory=dict)
    # Accounts to lock before the others (a member's, by the ledger's lock order).
    first: frozenset[int] = frozenset()

    def add(self, account_id: int, amount: int, unit: str = "PTS") -> Postings:
        if amount == 0:
            return self
        if self.units.setdefault(account_id, unit) != unit:
            raise LedgerInvariantError(f"account {account_id} posted in two units")
        self.lines[account_id] = self.lines.get(account_id, 0) + amount
        if self.lines[account_id] == 0:
            del self.lines[account_id]
            del self.units[account_id]
        return self

    def move(self, source: int, target: int, amount: int, unit: str = "PTS") -> Postings:
        """`amount` leaves `source` and arrives at `target`."""
        if amount < 0:
            raise LedgerInvariantError("move amounts are non-negative")
        return self.add(source, -amount, unit).add(target, amount, unit)

    def check(self) -> None:
        totals: dict[str, int] = defaultdict(int)
        for account_id, amount in self.lines.items():
            totals[self.units[account_id]] += amount
        unbalanced = {unit: total for unit, total in totals.items() if total != 0}
        if unbalanced:
            raise LedgerInvariantError(f"unbalanced entry: {unbalanced}")

    def __bool__(self) -> bool:
        return bool(self.lines)

    def params(self) -> dict[str, Any]:
        """Parameters for ENTRY_CTES in one global lock order: the member's
        accounts first, then the rest, each by id, so that concurrent entries
        take row locks in the same order and do not deadlock."""
        self.check()
        ids = sorted(self.lines, key=lambda i: (i not in self.first, i))
        return {
            "line_accounts": ids,
            "line_amounts": [self.lines[i] for i in ids],
            "line_units": [self.units[i] for i in ids],
        }


# Guarded kinds are listed in SQL so that the guard holds for any caller.
def entry_ctes(*, balances_after: tuple[str, ...] = ()) -> str:
    """The entry, its postings and the guarded balance updates.

    With `balances_after` (names of CTEs with a RETURNING clause), the
    balances are updated only once those CTEs and the postings have run. A
    statement's data-modifying CTEs run in no order PostgreSQL promises; this
    makes the balance update, which takes the row locks that concurrent
    writers queue on (a partner's points shard), the statement's last write,
    so those locks are held for little more than the commit."""
    gate = "go"
    waits = ""
    if balances_after:
        gate = "written"
        counts = " + ".join(
            f"(SELECT count(*) FROM {name})" for name in ("posted", *balances_after)
        )
        waits = f"""
written AS (
    SELECT go.go FROM go WHERE {counts} >= 0
),"""
    return f"""
entry AS (
    INSERT INTO journal_entries
        (kind, transaction_id, partner_id, member_id, price_micros, booked_at)
    SELECT :entry_kind, :entry_transaction_id, :entry_partner_id, :entry_member_id,
           :entry_price_micros, :booked_at
    FROM go
    WHERE cardinality(:line_accounts::bigint[]) > 0
    RETURNING id
),
line AS (
    SELECT * FROM unnest(:line_accounts::bigint[], :line_amounts::bigint[], :line_units::text[])
        AS l(account_id, amount, unit)
),
posted AS (
    INSERT INTO postings (entry_id, account_id, unit, amount)
    SELECT entry.id, line.account_id, line.unit, line.amount FROM entry, line
    RETURNING entry_id
),{waits}
moved AS (
    UPDATE accounts a SET balance = a.balance + line.amount
    FROM line, {gate}
    WHERE a.id = line.account_id AND a.unit = line.unit
      AND (a.kind NOT IN ('member_available', 'member_pending', 'member_held')
           OR a.balance + line.amount >= 0)
      AND (a.kind <> 'member_debt' OR a.balance + line.amount <= 0)
    RETURNING a.id
)
"""


ENTRY_CTES = entry_ctes()

ENTRY_RESULT = """
    (SELECT count(*) FROM go) AS went,
    (SELECT id FROM entry) AS entry_id,
    (SELECT count(*) FROM moved) AS moved
"""


def entry_params(
    postings: Postings,
    *,
    kind: str,
    booked_at: Any,
    transaction_id: Any = None,
    partner_id: int | None = None,
    member_id: int | None = None,
    price_micros: int | None = None,
) -> dict[str, Any]:
    return {
        "entry_kind": kind,
        "entry_transaction_id": transaction_id,
        "entry_partner_id": partner_id,
        "entry_member_id": member_id,
        "entry_price_micros": price_micros,
        "booked_at": booked_at,
        **postings.params(),
    }


def require_moved(row: Any, postings: Postings) -> None:
    """Raise when a guard stopped a balance from moving (the caller rolls back)."""
    if row["went"] and row["moved"] != len(postings.lines):
        raise InsufficientPoints("the member does not have enough points for this")
