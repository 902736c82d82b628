"""`kring ledger check`: prove the ledger's invariants, name what breaks them.

Each check is one set-based query returning the offending rows; an empty
result everywhere means the ledger is sound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from api.settlement.periods import LATE_ENTRY_WINDOW

LATE_ENTRY_WINDOW_SECONDS = int(LATE_ENTRY_WINDOW.total_seconds())

CHECKS: dict[str, str] = {
    "entry does not balance per unit": """
        SELECT entry_id, unit, sum(amount) AS total FROM postings
        GROUP BY entry_id, unit HAVING sum(amount) <> 0
        ORDER BY entry_id LIMIT 100""",
    "entry has no postings": """
        SELECT e.id AS entry_id FROM journal_entries e
        WHERE NOT EXISTS (SELECT FROM postings p WHERE p.entry_id = e.id)
        ORDER BY e.id LIMIT 100""",
    "account balance differs from the sum of its postings": """
        SELECT a.id AS account_id, a.kind, a.balance, coalesce(s.total, 0) AS postings_total
        FROM accounts a
        LEFT JOIN (SELECT account_id, sum(amount) AS total FROM postings GROUP BY account_id) s
            ON s.account_id = a.id
        WHERE a.balance <> coalesce(s.total, 0)
        ORDER BY a.id LIMIT 100""",
    "posting unit differs from its account's unit": """
        SELECT p.entry_id, p.account_id, p.unit, a.unit AS account_unit
        FROM postings p JOIN accounts a ON a.id = p.account_id
        WHERE p.unit <> a.unit LIMIT 100""",
    "member balance out of range": """
        SELECT id AS account_id, member_id, kind, balance FROM accounts
        WHERE (kind IN ('member_available', 'member_pending', 'member_held') AND balance < 0)
           OR (kind = 'member_debt' AND balance > 0)
        ORDER BY id LIMIT 100""",
    "lots do not add up to the member's pending or available balance": """
        SELECT a.member_id, a.kind, a.balance, coalesce(l.total, 0) AS lots_total
        FROM accounts a
        LEFT JOIN (SELECT member_id, state, sum(points_remaining) AS total FROM lots
                   GROUP BY member_id, state) l
            ON l.member_id = a.member_id AND 'member_' || l.state = a.kind
        WHERE a.kind IN ('member_pending', 'member_available')
          AND a.balance <> coalesce(l.total, 0)
        ORDER BY a.member_id LIMIT 100""",
    "open authorizations do not add up to the member's held balance": """
        SELECT a.member_id, a.balance, coalesce(h.total, 0) AS authorized_total
        FROM accounts a
        LEFT JOIN (SELECT member_id, sum(points) AS total FROM transactions
                   WHERE kind = 'burn' AND status = 'authorized' GROUP BY member_id) h
            ON h.member_id = a.member_id
        WHERE a.kind = 'member_held' AND a.balance <> coalesce(h.total, 0)
        ORDER BY a.member_id LIMIT 100""",
    "authorization's lots do not add up to its points": """
        SELECT t.id AS transaction_id, t.points, coalesce(sum(h.points), 0) AS lots_total
        FROM transactions t LEFT JOIN hold_lots h ON h.transaction_id = t.id
        WHERE t.kind = 'burn'
        GROUP BY t.id HAVING t.points <> coalesce(sum(h.points), 0) LIMIT 100""",
    "member debt differs from refunds' debt less repayments": """
        SELECT a.member_id, a.balance,
               coalesce(sum(t.debt_repaid_points) - sum(t.debt_points), 0) AS expected
        FROM accounts a LEFT JOIN transactions t ON t.member_id = a.member_id
        WHERE a.kind = 'member_debt'
        GROUP BY a.member_id, a.balance
        HAVING a.balance <> coalesce(sum(t.debt_repaid_points) - sum(t.debt_points), 0)
        LIMIT 100""",
    # Charities (api/charity/): a charity's points are what was given to it
    # (donations and matches) less what monthly settlement converted; its
    # money account is the sum of its payouts.
    "charity points differ from donations less payouts": """
        SELECT a.charity_id, a.balance,
               coalesce(d.total, 0) - coalesce(x.points, 0) AS expected
        FROM accounts a
        LEFT JOIN (SELECT charity_id, sum(points + matched_points) AS total FROM donations
                   GROUP BY charity_id) d ON d.charity_id = a.charity_id
        LEFT JOIN (SELECT charity_id, sum(points) AS points FROM charity_payouts
                   GROUP BY charity_id) x ON x.charity_id = a.charity_id
        WHERE a.kind = 'charity_points'
          AND a.balance <> coalesce(d.total, 0) - coalesce(x.points, 0)
        ORDER BY a.charity_id LIMIT 100""",
    "charity money differs from its payouts": """
        SELECT a.charity_id, a.balance, coalesce(x.cents, 0) AS payouts_cents
        FROM accounts a
        LEFT JOIN (SELECT charity_id, sum(amount_cents) AS cents FROM charity_payouts
                   GROUP BY charity_id) x ON x.charity_id = a.charity_id
        WHERE a.kind = 'charity_money' AND a.balance <> coalesce(x.cents, 0)
        ORDER BY a.charity_id LIMIT 100""",
    # Manual adjustments (api/ledger/adjustments.py): a booked adjustment is one
    # `adjustment` entry that moved exactly its points on the member's available
    # account, and every such entry belongs to one booked adjustment.
    "booked adjustment differs from its journal entry": """
        SELECT a.id AS adjustment_id, a.points, e.kind, coalesce(sum(p.amount), 0) AS moved
        FROM adjustments a
        LEFT JOIN journal_entries e ON e.id = a.entry_id
        LEFT JOIN postings p ON p.entry_id = e.id
            AND p.account_id = (SELECT id FROM accounts
                                WHERE member_id = a.member_id AND kind = 'member_available')
        WHERE a.status = 'booked'
        GROUP BY a.id, a.points, e.kind
        HAVING e.kind IS DISTINCT FROM 'adjustment' OR coalesce(sum(p.amount), 0) <> a.points
        LIMIT 100""",
    "adjustment entry without its booked adjustment": """
        SELECT e.id AS entry_id FROM journal_entries e
        WHERE e.kind = 'adjustment'
          AND NOT EXISTS (SELECT FROM adjustments a WHERE a.entry_id = e.id AND a.status = 'booked')
        ORDER BY e.id LIMIT 100""",
    "points are not conserved across all accounts": """
        SELECT unit, sum(balance) AS total FROM accounts GROUP BY unit HAVING sum(balance) <> 0""",
    # Settlement (api/settlement/run.py): every entry in exactly one statement
    # (the primary key of settled_entries), of the right partner, none left behind.
    "entry settled in another partner's statement": """
        SELECT se.entry_id, e.partner_id, s.partner_id AS statement_partner_id
        FROM settled_entries se
        JOIN journal_entries e ON e.id = se.entry_id
        JOIN statements s ON s.id = se.statement_id
        WHERE coalesce(e.partner_id, 0) <> coalesce(s.partner_id, 0) LIMIT 100""",
    "settled entry or its statement does not exist": """
        SELECT se.entry_id, se.statement_id FROM settled_entries se
        WHERE NOT EXISTS (SELECT FROM journal_entries e WHERE e.id = se.entry_id)
           OR NOT EXISTS (SELECT FROM statements s WHERE s.id = se.statement_id) LIMIT 100""",
    "entry left unsettled after its period closed": f"""
        SELECT e.id AS entry_id, e.partner_id, e.booked_at
        FROM journal_entries e
        JOIN (SELECT coalesce(partner_id, 0) AS key, max(period_end) AS closed_until
              FROM statements GROUP BY 1) c ON c.key = coalesce(e.partner_id, 0)
        WHERE e.booked_at < c.closed_until - interval '{LATE_ENTRY_WINDOW_SECONDS} seconds'
          AND NOT EXISTS (SELECT FROM settled_entries se WHERE se.entry_id = e.id)
        ORDER BY e.id LIMIT 100""",
    "statement's net differs from its lines": """
        SELECT s.id AS statement_id, s.net_cents, sum(l.amount_cents) AS lines_cents
        FROM statements s JOIN statement_lines l ON l.statement_id = s.id
        WHERE s.partner_id IS NOT NULL OR l.category IN ('breakage', 'spread')
        GROUP BY s.id HAVING s.net_cents <> sum(l.amount_cents) LIMIT 100""",
    "statement's entry count differs from its settled entries": """
        SELECT s.id AS statement_id, s.entries, count(e.id) AS settled
        FROM statements s
        LEFT JOIN settled_entries se ON se.statement_id = s.id
        LEFT JOIN journal_entries e ON e.id = se.entry_id AND e.kind <> 'settle'
        GROUP BY s.id HAVING s.entries <> count(e.id) LIMIT 100""",
    "partner money differs from the net of its statements": """
        SELECT a.partner_id, a.balance, coalesce(s.total, 0) AS statements_net
        FROM accounts a
        LEFT JOIN (SELECT partner_id, sum(net_cents) AS total FROM statements
                   WHERE partner_id IS NOT NULL GROUP BY partner_id) s
            ON s.partner_id = a.partner_id
        WHERE a.kind = 'partner_money' AND a.balance <> coalesce(s.total, 0) LIMIT 100""",
    "programme float differs from the points liability of the last settlement": """
        SELECT a.balance AS float_cents, r.business_date, r.liability_micros
        FROM accounts a,
             (SELECT business_date, liability_micros FROM settlement_runs
              ORDER BY business_date DESC LIMIT 1) r
        WHERE a.kind = 'programme_float' AND abs(r.liability_micros - a.balance * 10000) > 5000""",
}


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    rows: list[dict[str, Any]]

    def describe(self) -> str:
        lines = [f"FAIL {self.check}: {len(self.rows)} row(s)"]
        lines += [f"  {row}" for row in self.rows]
        return "\n".join(lines)


async def check_ledger(conn: asyncpg.Connection) -> list[Violation]:
    """Run every check in one repeatable-read snapshot; return the violations.

    Inside a caller's transaction the checks see that transaction's view."""
    if conn.is_in_transaction():
        return await _run_checks(conn)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _run_checks(conn)


async def _run_checks(conn: asyncpg.Connection) -> list[Violation]:
    violations = []
    for name, query in CHECKS.items():
        rows = await conn.fetch(query)
        if rows:
            violations.append(Violation(name, [dict(r) for r in rows]))
    return violations
