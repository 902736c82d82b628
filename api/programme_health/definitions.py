"""What each programme health figure is: key, title, chart and written definition.

Shared words, used exactly in every definition:

- month: a calendar month in Europe/Amsterdam (the settlement calendar,
  api/settlement/periods.py), labelled YYYY-MM.
- window: the 12 months ending with the month that contains "now" (that last
  month runs up to now, not to its end). Every figure counts what was booked
  in [start of the first month, now).
- purchase: an earn transaction at a partner's till (transactions.kind =
  'earn'), counted when it was booked (created_at), refunded later or not.
- spend: a purchase's amount less what was refunded of it (amount_cents -
  amount_refunded_cents), in cents.
- redemption: a burn captured at a partner's till, counted when it was
  captured (finished_at), for the points captured.
- active member: a member with at least one purchase or redemption.
- percentages: 100 x numerator / denominator, rounded half-even to one
  decimal; empty when the denominator is 0.
- freshness: figures over whole months read the dashboard's rollups
  (api/programme_health/rollup.py), rebuilt in the background when the
  dashboard is opened and they are older than 5 minutes; "now" for them is
  the last rebuild's time. The
  30/90-day active members, breakage, NPS, donations and the pulse survey are
  read live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChartKind = Literal["line", "bar", "stacked"]
# Which way a table becomes chart series: "columns" = every column after the
# first is a series over the first column's labels; "rows" = every row is a
# series over the column headers (after `skip_columns` leading columns).
SeriesIn = Literal["columns", "rows"]


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    title: str
    definition: str
    chart: ChartKind
    series_in: SeriesIn = "columns"
    skip_columns: int = 0  # leading value columns left out of the chart (still in the table)


FIGURE_LIST: tuple[Figure, ...] = (
    Figure(
        "active_members",
        "Active members, last 30 and 90 days",
        "Members with at least one purchase or redemption at any partner in the 30 days"
        " (and the 90 days) before now; each member counted once.",
        "bar",
    ),
    Figure(
        "active_members_monthly",
        "Active members per month",
        "For each month of the window: members with at least one purchase or redemption"
        " in that month; each member counted once per month.",
        "line",
    ),
    Figure(
        "earn_by_partner",
        "Points earned per partner per month",
        "For each month and partner: the base points of purchases at that partner booked in"
        " the month (what the partner pays for), before refunds; tier and VIP bonus points,"
        " which the programme issues, are not included.",
        "stacked",
    ),
    Figure(
        "burn_by_partner",
        "Points redeemed per partner per month",
        "For each month and partner: the points captured by redemptions at that partner in"
        " the month. Authorizations still open, voided or expired count nothing.",
        "stacked",
    ),
    Figure(
        "liability",
        "Points liability outstanding and its value",
        "Points members hold (pending, available and held by open authorizations, less member"
        " debt) and their value at the issuance price of the lot each point sits in, rounded"
        " half-even to the cent. One row per month: as settled by the last settlement run of"
        " that month (its business date shown); the last row: the ledger as it stands now.",
        "bar",
    ),
    Figure(
        "breakage",
        "Breakage: points expired per month",
        "For each month: points that expired unused (or were forfeited when a member deleted"
        " their account) and their value at the issuance price of the lots they expired from,"
        " rounded half-even to the cent. Donated points and lottery tickets are not breakage.",
        "bar",
    ),
    Figure(
        "redemption_rate",
        "Redemption rate per month",
        "For each month: points redeemed in the month / points earned in the month (base plus"
        " tier and VIP bonus points of purchases booked in the month), as a percentage. The"
        " last row is the whole window.",
        "line",
        skip_columns=2,
    ),
    Figure(
        "retention_cohorts",
        "Monthly retention cohorts",
        "A cohort is the members whose first purchase ever fell in a month of the window."
        " Column M+k: the percentage of the cohort with at least one purchase in the k-th"
        " month after the cohort month (M+0 is the cohort month itself, always 100%). Empty"
        " where that month has not started yet.",
        "line",
        series_in="rows",
        skip_columns=1,
    ),
    Figure(
        "repeat_purchase_rate",
        "Repeat-purchase rate per month",
        "For each month: members with 2 or more purchases in the month / members with at"
        " least 1 purchase in the month, as a percentage. The last row is the whole window"
        " (2+ purchases in the window / 1+ in the window).",
        "line",
        skip_columns=2,
    ),
    Figure(
        "share_of_wallet",
        "Cross-partner share of wallet",
        "For each partner: the spend of all members at that partner in the window / the"
        " spend of all members at all partners in the window, as a percentage.",
        "bar",
        skip_columns=1,
    ),
    Figure(
        "partners_per_member",
        "Members by number of partners used",
        "Members with at least one purchase in the window, by how many different partners"
        " they bought at in the window (1, 2, 3 or more), and that count / all members with a"
        " purchase in the window, as a percentage. '2 or more' adds up the last two rows.",
        "bar",
        skip_columns=1,
    ),
    Figure(
        "nps_by_partner",
        "NPS per partner per month (post-purchase survey)",
        "For each month and partner: of the post-purchase survey answers (0-10, 'would you"
        " recommend') given in the month about a purchase at that partner, the percentage of"
        " promoters (9-10) minus the percentage of detractors (0-6). Empty without answers.",
        "line",
    ),
    Figure(
        "clv_by_tier",
        "Customer lifetime value to date per tier",
        "Historical, not predicted: for each tier, the members currently in it (not closed,"
        " joined before now; a member without a tier row is in the lowest tier), their total"
        " spend at all partners since they joined up to now, and that total / the number of"
        " members in the tier (members who never bought count as 0), rounded half-even to the"
        " cent.",
        "bar",
        skip_columns=2,
    ),
    Figure(
        "vip",
        "VIP conversion and churn per month",
        "For each month: VIP members at its start (a paid VIP period covers the first"
        " instant of the month); new VIP members (whose first paid VIP period ever started in"
        " the month); VIP subscriptions that ended in the month (cancelled or lapsed);"
        " conversion = new VIP members / active members of the month; churn = subscriptions"
        " ended / VIP members at the start of the month; both as percentages.",
        "line",
        skip_columns=3,
    ),
    Figure(
        "donations_by_charity",
        "Donations per charity",
        "For each charity: donations members made in the window, the distinct members who"
        " donated, the points they gave and the points partners added by matching.",
        "bar",
        skip_columns=2,
    ),
    Figure(
        "partner_flow",
        "Partner-to-partner flow of points",
        "Traced through the ledger's lots: each redemption in the window took its points"
        " from the member's lots (earliest expiry first, hold_lots) and each lot came from a"
        " purchase at one partner (a tier or VIP bonus counts for the purchase's partner;"
        " challenge, referral, lottery and VIP rewards are 'programme rewards'). A cell is"
        " the points earned at the row's partner that were redeemed at the column's partner"
        " in the window, whenever they were earned.",
        "stacked",
    ),
    Figure(
        "pulse",
        "Loyalty tracker: monthly pulse survey",
        "For each month: members the wallet offered the pulse survey, how many answered and"
        " dismissed it, the average answer to 'will you keep using Kring's partners' and"
        " 'will you use them more' (1-5), the average 'would you recommend Kring' (0-10),"
        " and its NPS: percentage of answers 9-10 minus percentage 0-6. Averages are rounded"
        " half-even to two decimals; empty without answers.",
        "line",
        skip_columns=3,
    ),
)

FIGURES: dict[str, Figure] = {figure.key: figure for figure in FIGURE_LIST}
