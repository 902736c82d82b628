"""Programme health figures: one set-based query (rarely two) per figure.

Each function takes a pool or connection and a `Window` and returns a
`Table`: the figure's numbers as the dashboard shows them, as its accessible
table and as CSV. The definitions (api/programme_health/definitions.py) say
exactly what each number counts; the SQL here is that sentence.

Counting happens in SQL; ratios and rounding happen here, with Decimal, so
the test can compute the same numbers by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeAlias

import asyncpg

from api.money import cents_half_even
from api.programme_health.definitions import FIGURES, Figure
from api.programme_health.rollup import last_refresh
from api.programme_health.window import (
    TZ,
    Window,
    add_months,
    average,
    month_label,
    month_of,
    percent,
    whole_cents,
)
from api.settlement.position import Liability, liability_now

Cell = int | str | Decimal | None
# What a column holds, so a chart puts it on the right axis.
Unit = Literal["label", "count", "points", "cents", "percent", "score"]
PERCENT: Unit = "percent"
POINTS: Unit = "points"
Db: TypeAlias = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True, slots=True)
class Table:
    header: tuple[str, ...]
    units: tuple[Unit, ...]
    rows: list[tuple[Cell, ...]]


# A purchase, a redemption (api/programme_health/definitions.py).
_ACTIVITY = f"""
SELECT member_id, {month_of("created_at")} AS month, created_at AS at
FROM transactions
WHERE kind = 'earn' AND created_at >= $1 AND created_at < $2
UNION ALL
SELECT member_id, {month_of("finished_at")}, finished_at
FROM transactions
WHERE kind = 'burn' AND status = 'captured' AND finished_at >= $1 AND finished_at < $2
"""


async def active_members(db: Db, window: Window) -> Table:
    row = await db.fetchrow(
        f"""
        SELECT count(DISTINCT member_id) FILTER (WHERE at >= $3) AS d30,
               count(DISTINCT member_id) AS d90
        FROM ({_ACTIVITY}) a
        """,
        window.now - timedelta(days=90),
        window.now,
        window.now - timedelta(days=30),
    )
    return Table(
        ("period", "active members"),
        ("label", "count"),
        [("last 30 days", row["d30"]), ("last 90 days", row["d90"])],
    )


async def _active_by_month(db: Db, window: Window) -> dict[date, int]:
    rows = await db.fetch(
        """
        SELECT month, count(*) AS n FROM health_member_months
        WHERE month = ANY($1::date[]) AND (purchases > 0 OR redemptions > 0)
        GROUP BY month
        """,
        list(window.months),
    )
    return {r["month"]: r["n"] for r in rows}


async def active_members_monthly(db: Db, window: Window) -> Table:
    active = await _active_by_month(db, window)
    return Table(
        ("month", "active members"),
        ("label", "count"),
        [(month_label(m), active.get(m, 0)) for m in window.months],
    )


def _pivot(
    window: Window, rows: Sequence[Mapping[str, Any]], unit: Unit, first: str = "month"
) -> Table:
    """(month, series, value) rows into one row per month, one column per series."""
    names = sorted({r["series"] for r in rows})
    values = {(r["month"], r["series"]): r["value"] for r in rows}
    return Table(
        (first, *names),
        ("label", *([unit] * len(names))),
        [
            (month_label(m), *(_int_or_none(values.get((m, n)), unit) for n in names))
            for m in window.months
        ],
    )


def _int_or_none(value: Any, unit: Unit) -> Cell:
    if value is None:
        return 0 if unit in ("points", "count", "cents") else None
    return value if isinstance(value, Decimal) and unit in ("percent", "score") else int(value)


async def earn_by_partner(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        SELECT h.month, p.name AS series, sum(h.base_points) AS value
        FROM health_partner_months h JOIN partners p ON p.id = h.partner_id
        WHERE h.month = ANY($1::date[]) AND h.purchases > 0
        GROUP BY 1, 2
        """,
        list(window.months),
    )
    return _pivot(window, rows, "points")


async def burn_by_partner(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        SELECT h.month, p.name AS series, sum(h.points_redeemed) AS value
        FROM health_partner_months h JOIN partners p ON p.id = h.partner_id
        WHERE h.month = ANY($1::date[]) AND h.points_redeemed > 0
        GROUP BY 1, 2
        """,
        list(window.months),
    )
    return _pivot(window, rows, "points")


async def liability(db: Db, window: Window) -> Table:
    runs = await db.fetch(
        """
        SELECT DISTINCT ON (date_trunc('month', business_date))
               business_date, liability_points, liability_micros
        FROM settlement_runs
        WHERE business_date >= $1 AND business_date < $2::timestamptz AT TIME ZONE 'Europe/Amsterdam'
        ORDER BY date_trunc('month', business_date), business_date DESC
        """,
        window.months[0],
        window.now,
    )
    # The ledger's own valuation, as of the rollups' last refresh (reading
    # every lot again for each view would cost as much as the rest together).
    refreshed = await last_refresh(db)
    now = (
        Liability(refreshed.liability_points, refreshed.liability_micros)
        if refreshed is not None
        else await liability_now(db)
    )
    rows: list[tuple[Cell, ...]] = [
        (
            f"{month_label(r['business_date'])} (settled {r['business_date'].isoformat()})",
            int(r["liability_points"]),
            cents_half_even(int(r["liability_micros"])),
        )
        for r in runs
    ]
    rows.append(("now", now.points, cents_half_even(now.micros)))
    return Table(
        ("as at", "points outstanding", "value (cents)"), ("label", "points", "cents"), rows
    )


async def breakage(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        f"""
        SELECT {month_of("e.booked_at")} AS month, sum(x.points) AS points,
               sum(x.points::numeric * l.price_micros) AS micros
        FROM journal_entries e
        JOIN lot_expiries x ON x.entry_id = e.id
        JOIN lots l ON l.id = x.lot_id
        WHERE e.kind IN ('expire', 'forfeit') AND e.booked_at >= $1 AND e.booked_at < $2
        GROUP BY 1
        """,
        window.start,
        window.now,
    )
    by_month = {r["month"]: r for r in rows}
    out: list[tuple[Cell, ...]] = []
    for m in window.months:
        r = by_month.get(m)
        out.append(
            (month_label(m), int(r["points"]), cents_half_even(int(r["micros"])))
            if r
            else (month_label(m), 0, 0)
        )
    return Table(("month", "points expired", "value (cents)"), ("label", "points", "cents"), out)


async def redemption_rate(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        SELECT month, sum(points_earned)::bigint AS issued,
               sum(points_redeemed)::bigint AS redeemed
        FROM health_member_months WHERE month = ANY($1::date[]) GROUP BY month
        """,
        list(window.months),
    )
    by_month = {r["month"]: (r["issued"], r["redeemed"]) for r in rows}
    out: list[tuple[Cell, ...]] = []
    for m in window.months:
        issued, redeemed = by_month.get(m, (0, 0))
        out.append((month_label(m), issued, redeemed, percent(redeemed, issued)))
    issued_total = sum(v[0] for v in by_month.values())
    redeemed_total = sum(v[1] for v in by_month.values())
    out.append(("window", issued_total, redeemed_total, percent(redeemed_total, issued_total)))
    return Table(
        ("month", "points earned", "points redeemed", "redemption rate %"),
        ("label", "points", "points", "percent"),
        out,
    )


async def retention_cohorts(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        WITH firsts AS (
            SELECT member_id, min(month) AS cohort FROM health_member_months
            WHERE purchases > 0 GROUP BY member_id HAVING min(month) >= $1
        )
        SELECT f.cohort,
               ((extract(year FROM h.month) - extract(year FROM f.cohort)) * 12
                + extract(month FROM h.month) - extract(month FROM f.cohort))::int AS k,
               count(*) AS members
        FROM firsts f
        JOIN health_member_months h ON h.member_id = f.member_id AND h.purchases > 0
        WHERE h.month = ANY($2::date[])
        GROUP BY 1, 2
        """,
        window.months[0],
        list(window.months),
    )
    counts = {(r["cohort"], r["k"]): r["members"] for r in rows}
    months = len(window.months)
    out: list[tuple[Cell, ...]] = []
    last = window.months[-1]
    for cohort in window.months:
        size = counts.get((cohort, 0), 0)
        if size == 0:
            continue
        cells: list[Cell] = []
        for k in range(months):
            started = add_months(cohort, k) <= last
            cells.append(percent(counts.get((cohort, k), 0), size) if started else None)
        out.append((month_label(cohort), size, *cells))
    return Table(
        ("cohort", "members", *(f"M+{k}" for k in range(months))),
        ("label", "count", *(PERCENT for _ in range(months))),
        out,
    )


async def repeat_purchase_rate(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        SELECT month, count(*) AS buyers, count(*) FILTER (WHERE purchases >= 2) AS repeaters
        FROM health_member_months WHERE month = ANY($1::date[]) AND purchases > 0
        GROUP BY month
        """,
        list(window.months),
    )
    # Not the sum of the months: a member with one purchase in each of two
    # months is a repeater over the window.
    total = await db.fetchrow(
        """
        SELECT count(*) AS buyers, count(*) FILTER (WHERE n >= 2) AS repeaters FROM (
            SELECT member_id, sum(purchases) AS n FROM health_member_months
            WHERE month = ANY($1::date[]) AND purchases > 0 GROUP BY member_id
        ) x
        """,
        list(window.months),
    )
    by_month = {r["month"]: (r["buyers"], r["repeaters"]) for r in rows if r["month"]}
    out: list[tuple[Cell, ...]] = []
    for m in window.months:
        buyers, repeaters = by_month.get(m, (0, 0))
        out.append((month_label(m), buyers, repeaters, percent(repeaters, buyers)))
    out.append(
        (
            "window",
            total["buyers"],
            total["repeaters"],
            percent(total["repeaters"], total["buyers"]),
        )
    )
    return Table(
        ("month", "members buying", "members buying 2+ times", "repeat-purchase rate %"),
        ("label", "count", "count", "percent"),
        out,
    )


async def share_of_wallet(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        SELECT p.name, sum(h.spend_cents)::bigint AS spend
        FROM health_partner_months h JOIN partners p ON p.id = h.partner_id
        WHERE h.month = ANY($1::date[]) AND h.purchases > 0
        GROUP BY p.name ORDER BY spend DESC, p.name
        """,
        list(window.months),
    )
    total = sum(r["spend"] for r in rows)
    return Table(
        ("partner", "spend (cents)", "share of wallet %"),
        ("label", "cents", "percent"),
        [(r["name"], r["spend"], percent(r["spend"], total)) for r in rows],
    )


async def partners_per_member(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        SELECT least(partners, 3) AS used, count(*) AS members FROM (
            SELECT member_id, count(*) AS partners FROM health_member_partners
            WHERE months && $1::date[] GROUP BY member_id
        ) x GROUP BY 1
        """,
        list(window.months),
    )
    counts = {r["used"]: r["members"] for r in rows}
    buyers = sum(counts.values())
    labels = {1: "1 partner", 2: "2 partners", 3: "3 or more partners"}
    return Table(
        ("partners used", "members", "share of buying members %"),
        ("label", "count", "percent"),
        [(labels[k], counts.get(k, 0), percent(counts.get(k, 0), buyers)) for k in (1, 2, 3)],
    )


async def nps_by_partner(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        f"""
        SELECT {month_of("s.answered_at")} AS month, p.name AS series, count(*) AS answers,
               count(*) FILTER (WHERE s.score >= 9) AS promoters,
               count(*) FILTER (WHERE s.score <= 6) AS detractors
        FROM member_surveys s JOIN partners p ON p.id = s.partner_id
        WHERE s.answered_at >= $1 AND s.answered_at < $2
        GROUP BY 1, 2
        """,
        window.start,
        window.now,
    )
    return _pivot(
        window,
        [
            {
                "month": r["month"],
                "series": r["series"],
                "value": percent(r["promoters"] - r["detractors"], r["answers"]),
            }
            for r in rows
        ],
        "percent",
    )


async def clv_by_tier(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        WITH lowest AS (SELECT code FROM tiers ORDER BY position LIMIT 1),
        spend AS (
            SELECT member_id, sum(spend_cents) AS cents
            FROM health_member_months GROUP BY member_id
        )
        SELECT t.name, t.position, count(m.id) AS members,
               coalesce(sum(s.cents), 0)::bigint AS cents
        FROM tiers t
        LEFT JOIN (members m
                   LEFT JOIN member_tiers mt ON mt.member_id = m.id
                   LEFT JOIN spend s ON s.member_id = m.id)
          ON t.code = coalesce(mt.tier_code, (SELECT code FROM lowest))
         AND m.status <> 'closed' AND m.created_at < $1
        GROUP BY t.name, t.position ORDER BY t.position
        """,
        window.now,
    )
    return Table(
        ("tier", "members", "spend to date (cents)", "lifetime value per member (cents)"),
        ("label", "count", "cents", "cents"),
        [
            (r["name"], r["members"], r["cents"], whole_cents(r["cents"], r["members"]))
            for r in rows
        ],
    )


async def vip(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        f"""
        WITH b AS (
            SELECT month, (month::timestamp AT TIME ZONE '{TZ}') AS starts,
                   least(((month + interval '1 month')::timestamp AT TIME ZONE '{TZ}'), $2) AS ends
            FROM unnest($1::date[]) AS month
        ),
        firsts AS (SELECT member_id, min(starts_at) AS first_at FROM vip_periods GROUP BY member_id)
        SELECT b.month,
               (SELECT count(DISTINCT member_id) FROM vip_periods p
                WHERE p.starts_at <= b.starts AND p.ends_at > b.starts) AS at_start,
               (SELECT count(*) FROM firsts f
                WHERE f.first_at >= b.starts AND f.first_at < b.ends) AS joined,
               (SELECT count(*) FROM vip_subscriptions s
                WHERE s.status IN ('cancelled', 'lapsed')
                  AND s.ended_at >= b.starts AND s.ended_at < b.ends) AS ended
        FROM b ORDER BY b.month
        """,
        list(window.months),
        window.now,
    )
    active = await _active_by_month(db, window)
    return Table(
        (
            "month",
            "VIP members at start",
            "new VIP members",
            "VIP subscriptions ended",
            "conversion %",
            "churn %",
        ),
        ("label", "count", "count", "count", "percent", "percent"),
        [
            (
                month_label(r["month"]),
                r["at_start"],
                r["joined"],
                r["ended"],
                percent(r["joined"], active.get(r["month"], 0)),
                percent(r["ended"], r["at_start"]),
            )
            for r in rows
        ],
    )


async def donations_by_charity(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        SELECT c.name, count(d.id) AS donations, count(DISTINCT d.member_id) AS donors,
               coalesce(sum(d.points), 0)::bigint AS points,
               coalesce(sum(d.matched_points), 0)::bigint AS matched
        FROM charities c
        LEFT JOIN donations d ON d.charity_id = c.id AND d.created_at >= $1 AND d.created_at < $2
        GROUP BY c.id, c.name ORDER BY c.name
        """,
        window.start,
        window.now,
    )
    return Table(
        ("charity", "donations", "donors", "points donated", "points matched"),
        ("label", "count", "count", "points", "points"),
        [(r["name"], r["donations"], r["donors"], r["points"], r["matched"]) for r in rows],
    )


PROGRAMME_REWARDS = "programme rewards"


async def partner_flow(db: Db, window: Window) -> Table:
    # Traced when the rollups are rebuilt (api/programme_health/rollup.py).
    rows = await db.fetch(
        """
        SELECT ep.name AS earned_at, bp.name AS burned_at, sum(f.points)::bigint AS points
        FROM health_partner_flow f
        JOIN partners bp ON bp.id = f.burned_partner_id
        LEFT JOIN partners ep ON ep.id = f.earned_partner_id
        WHERE f.month = ANY($1::date[])
        GROUP BY 1, 2
        """,
        list(window.months),
    )
    cells = {(r["earned_at"] or PROGRAMME_REWARDS, r["burned_at"]): r["points"] for r in rows}
    burned_at = sorted({b for _, b in cells})
    earned_at = sorted({e for e, _ in cells} - {PROGRAMME_REWARDS})
    if any(e == PROGRAMME_REWARDS for e, _ in cells):
        earned_at.append(PROGRAMME_REWARDS)
    return Table(
        ("earned at \\ redeemed at", *burned_at, "total"),
        ("label", *(POINTS for _ in range(len(burned_at) + 1))),
        [
            (
                e,
                *(cells.get((e, b), 0) for b in burned_at),
                sum(cells.get((e, b), 0) for b in burned_at),
            )
            for e in earned_at
        ],
    )


async def pulse(db: Db, window: Window) -> Table:
    rows = await db.fetch(
        """
        SELECT month, count(*) AS offered,
               count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,
               count(*) FILTER (WHERE dismissed_at IS NOT NULL) AS dismissed,
               coalesce(sum(keep_score), 0) AS keep_total, count(keep_score) AS keep_n,
               coalesce(sum(more_score), 0) AS more_total, count(more_score) AS more_n,
               coalesce(sum(recommend_score), 0) AS rec_total, count(recommend_score) AS rec_n,
               count(*) FILTER (WHERE recommend_score >= 9) AS promoters,
               count(*) FILTER (WHERE recommend_score <= 6) AS detractors
        FROM pulse_surveys
        WHERE month >= $1 AND offered_at < $2
        GROUP BY month
        """,
        window.months[0],
        window.now,
    )
    by_month = {r["month"]: r for r in rows}
    out: list[tuple[Cell, ...]] = []
    for m in window.months:
        r = by_month.get(m)
        if r is None:
            out.append((month_label(m), 0, 0, 0, None, None, None, None))
            continue
        out.append(
            (
                month_label(m),
                r["offered"],
                r["answered"],
                r["dismissed"],
                average(r["keep_total"], r["keep_n"]),
                average(r["more_total"], r["more_n"]),
                average(r["rec_total"], r["rec_n"]),
                percent(r["promoters"] - r["detractors"], r["rec_n"]),
            )
        )
    return Table(
        (
            "month",
            "offered",
            "answered",
            "dismissed",
            "keep using (1-5)",
            "use more (1-5)",
            "recommend (0-10)",
            "recommend NPS",
        ),
        ("label", "count", "count", "count", "score", "score", "score", "percent"),
        out,
    )


Compute = Callable[[Db, Window], Awaitable[Table]]
COMPUTE: dict[str, Compute] = {
    "active_members": active_members,
    "active_members_monthly": active_members_monthly,
    "earn_by_partner": earn_by_partner,
    "burn_by_partner": burn_by_partner,
    "liability": liability,
    "breakage": breakage,
    "redemption_rate": redemption_rate,
    "retention_cohorts": retention_cohorts,
    "repeat_purchase_rate": repeat_purchase_rate,
    "share_of_wallet": share_of_wallet,
    "partners_per_member": partners_per_member,
    "nps_by_partner": nps_by_partner,
    "clv_by_tier": clv_by_tier,
    "vip": vip,
    "donations_by_charity": donations_by_charity,
    "partner_flow": partner_flow,
    "pulse": pulse,
}
assert COMPUTE.keys() == FIGURES.keys(), "every figure has a definition and a query"


# A figure aggregates a year of purchases (~500,000 rows for 10,000 members):
# with the default 4 MB its sorts and hashes spill to disk, and the JIT spends
# more compiling than it saves. Both set per transaction, for figures only.
FIGURE_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off"


async def compute_figure(db: Db, key: str, window: Window) -> tuple[Figure, Table]:
    """The figure `key` (KeyError if there is none) over `window`, read in one
    read-only transaction (one snapshot when a figure takes two queries)."""
    compute = COMPUTE[key]
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return FIGURES[key], await _read(conn, compute, window)
    return FIGURES[key], await _read(db, compute, window)


async def _read(conn: asyncpg.Connection, compute: Compute, window: Window) -> Table:
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        await conn.execute(FIGURE_SETTINGS)
        return await compute(conn, window)


def chart_data(figure: Figure, table: Table) -> dict[str, Any]:
    """The JSON a chart is drawn from (pwa/static/js/dashboard-charts.js)."""
    skip = figure.skip_columns
    if figure.series_in == "columns":
        labels = [str(row[0]) for row in table.rows if row[0] != "window"]
        rows = [row for row in table.rows if row[0] != "window"]
        series = [
            {
                "label": table.header[c],
                "unit": table.units[c],
                "data": [_number(row[c]) for row in rows],
            }
            for c in range(1 + skip, len(table.header))
        ]
    else:
        labels = list(table.header[1 + skip :])
        series = [
            {
                "label": str(row[0]),
                "unit": table.units[1 + skip] if len(table.units) > 1 + skip else "count",
                "data": [_number(cell) for cell in row[1 + skip :]],
            }
            for row in table.rows
        ]
    return {"kind": figure.chart, "labels": labels, "series": series}


def _number(cell: Cell) -> float | int | None:
    if isinstance(cell, Decimal):
        return float(cell)  # drawn only: the table and the CSV keep the exact figure
    if isinstance(cell, int):
        return cell
    return None
