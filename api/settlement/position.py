"""The programme's position: what it owes in points, what it has earned.

Settlement keeps the EUR accounts so that, to the cent,

    Σ partner_money + float + spread + breakage = 0        (double entry)
    float = the points liability after the last run        (api/settlement/run.py)

so the money partners owe the programme, net of what it owes them, is exactly
the value of the points still outstanding plus the revenue recognised.

`liability_now` values the liability directly from the lots and the open
authorizations (member debt counts in points, at no value), independently of the runs' incremental
valuation; with every entry settled the two agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg


@dataclass(frozen=True, slots=True)
class Liability:
    points: int
    micros: int  # each outstanding point at the issuance price of the lot it sits in


@dataclass(frozen=True, slots=True)
class ProgrammePosition:
    settled_through: date | None  # the last business day settled
    liability: Liability  # after that day's run
    float_cents: int
    spread_cents: int
    breakage_cents: int
    partners_net_cents: int  # Σ partner_money: positive = the programme owes partners
    # Money beside the points: VIP memberships paid (api/payments/, booked when
    # a payment is paid: PSP clearing +, VIP revenue -), what the payment
    # provider still holds for the programme, and what charities are owed for
    # donated points converted at the programme rate (api/charity/settlement.py).
    vip_revenue_cents: int = 0  # positive: earned
    psp_clearing_cents: int = 0  # positive: the provider holds it for the programme
    charities_owed_cents: int = 0  # Σ charity_money: positive = the programme owes them


_LIABILITY_NOW = """
SELECT
    (SELECT coalesce(sum(points_remaining), 0) FROM lots)
  + (SELECT coalesce(sum(hl.points), 0) FROM hold_lots hl
     JOIN transactions t ON t.id = hl.transaction_id WHERE t.status = 'authorized')
  + (SELECT coalesce(sum(balance), 0) FROM accounts WHERE kind = 'member_debt') AS points,
    (SELECT coalesce(sum(points_remaining::numeric * price_micros), 0) FROM lots)
  + (SELECT coalesce(sum(hl.points::numeric * l.price_micros), 0) FROM hold_lots hl
     JOIN transactions t ON t.id = hl.transaction_id JOIN lots l ON l.id = hl.lot_id
     WHERE t.status = 'authorized')
    -- Member debt counts in points but is worth nothing: the programme owes
    -- nothing for it, and what an earn is paid for repaying it is spread.
    AS micros
"""


async def liability_now(conn: asyncpg.Connection | asyncpg.Pool) -> Liability:
    """The points liability as the ledger stands, settled or not."""
    row = await conn.fetchrow(_LIABILITY_NOW)
    return Liability(int(row["points"]), int(row["micros"]))


async def programme_position(conn: asyncpg.Connection | asyncpg.Pool) -> ProgrammePosition:
    row = await conn.fetchrow(
        """
        SELECT r.business_date, r.liability_points, r.liability_micros,
               sum(a.balance) FILTER (WHERE a.kind = 'programme_float')::bigint AS float_cents,
               sum(a.balance) FILTER (WHERE a.kind = 'programme_revenue_spread')::bigint AS spread,
               sum(a.balance) FILTER (WHERE a.kind = 'programme_revenue_breakage')::bigint
                   AS breakage,
               coalesce(sum(a.balance) FILTER (WHERE a.kind = 'partner_money'), 0)::bigint
                   AS partners,
               coalesce(-sum(a.balance) FILTER (WHERE a.kind = 'programme_revenue_vip'), 0)::bigint
                   AS vip_revenue,
               coalesce(sum(a.balance) FILTER (WHERE a.kind = 'programme_psp_clearing'), 0)::bigint
                   AS psp_clearing,
               coalesce(sum(a.balance) FILTER (WHERE a.kind = 'charity_money'), 0)::bigint
                   AS charities
        FROM accounts a
        LEFT JOIN (SELECT business_date, liability_points, liability_micros
                   FROM settlement_runs ORDER BY business_date DESC LIMIT 1) r ON true
        WHERE a.unit = 'EUR'
        GROUP BY r.business_date, r.liability_points, r.liability_micros
        """
    )
    return ProgrammePosition(
        settled_through=row["business_date"],
        liability=Liability(row["liability_points"] or 0, int(row["liability_micros"] or 0)),
        float_cents=row["float_cents"],
        spread_cents=row["spread"],
        breakage_cents=row["breakage"],
        partners_net_cents=row["partners"],
        vip_revenue_cents=row["vip_revenue"],
        psp_clearing_cents=row["psp_clearing"],
        charities_owed_cents=row["charities"],
    )
