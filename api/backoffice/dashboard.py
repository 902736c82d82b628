"""The programme health dashboard at /backoffice/dashboard (every role).

The page lists every figure of api/programme_health/ with its written
definition; each figure's chart and table load as an htmx fragment
(`hx-trigger="load"`), so the page appears at once and a slow figure holds up
only itself. Each figure's table is also a CSV download at
/backoffice/dashboard/<key>.csv. `months` (1-36, default 12) sets the window.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.background_tasks import BackgroundTask
from litestar.params import FromPath, QueryParameter

from api.backoffice.csv_export import csv_response
from api.backoffice.guards import ALL_ROLES, SignedInAdmin
from api.backoffice.pages import base_context, page
from api.errors import DomainError, NotFound
from api.programme_health.definitions import FIGURE_LIST, FIGURES
from api.programme_health.figures import Cell, Table, Unit, chart_data, compute_figure
from api.programme_health.rollup import REFRESH_AFTER, is_stale, last_refresh, refresh
from api.programme_health.window import WINDOW_MONTHS, WINDOW_MONTHS_MAX, window_ending
from api.web.state import runtime

CHART_JS = "/static/vendor/chart.js-4.6.1/chart.umd.min.js"
DASHBOARD_JS = "/static/js/dashboard-charts.js"
DASHBOARD_CSS = "/static/css/backoffice-dashboard.css"
MONTH_CHOICES = (3, 6, 12, 24, 36)
Months = Annotated[int | None, QueryParameter(description=f"Window, 1-{WINDOW_MONTHS_MAX} months")]


def _months(months: int | None) -> int:
    chosen = WINDOW_MONTHS if months is None else months
    if not 1 <= chosen <= WINDOW_MONTHS_MAX:
        raise DomainError(f"choose a window of 1 to {WINDOW_MONTHS_MAX} months", status=400)
    return chosen


def _context(who: SignedInAdmin, months: int) -> dict[str, Any]:
    return {
        **base_context(who, "dashboard"),
        "chart_js": CHART_JS,
        "dashboard_js": DASHBOARD_JS,
        "dashboard_css": DASHBOARD_CSS,
        "months": months,
        "month_choices": MONTH_CHOICES,
        "refresh_minutes": int(REFRESH_AFTER.total_seconds() // 60),
    }


def format_cell(cell: Cell, unit: Unit) -> str:
    """A figure's cell as its table shows it (the CSV keeps the raw value)."""
    if cell is None:
        return "no data"
    if unit == "cents" and isinstance(cell, int):
        sign = "-" if cell < 0 else ""
        euros, cents = divmod(abs(cell), 100)
        return f"{sign}€{euros:,}.{cents:02d}"
    if unit in ("points", "count") and isinstance(cell, int):
        return f"{cell:,}"
    if unit == "percent" and isinstance(cell, Decimal):
        return f"{cell}%"
    return str(cell)


def _rows(table: Table) -> list[list[str]]:
    return [
        [format_cell(cell, unit) for cell, unit in zip(row, table.units, strict=True)]
        for row in table.rows
    ]


@get("/dashboard", opt={"roles": ALL_ROLES})
async def dashboard(
    request: Request[Any, Any, Any], who: SignedInAdmin, months: Months = None
) -> Response[str]:
    chosen = _months(months)
    rt = runtime(request.app.state)
    # The charts' fragments read the rollups. Stale ones are rebuilt after this
    # answer is sent (seconds at 10,000 members: the page must not wait), so
    # the charts show the previous rebuild; only the very first is awaited.
    now = rt.clock.now()
    refreshed = await last_refresh(rt.db)
    if refreshed is None:
        refreshed = await refresh(rt.db, now)
    answer = page(
        request,
        "backoffice/dashboard.html",
        {**_context(who, chosen), "figures": FIGURE_LIST, "refreshed": refreshed},
    )
    if is_stale(refreshed, now):
        answer.background = BackgroundTask(refresh, rt.db, now)
    return answer


@get("/dashboard/figures/{key:str}", opt={"roles": ALL_ROLES})
async def figure(
    request: Request[Any, Any, Any], who: SignedInAdmin, key: FromPath[str], months: Months = None
) -> Response[str]:
    """One figure's chart data and table: a fragment for htmx, a page otherwise."""
    if key not in FIGURES:
        raise NotFound("there is no such figure", code="figure_not_found")
    chosen = _months(months)
    rt = runtime(request.app.state)
    found, table = await compute_figure(rt.db, key, window_ending(rt.clock.now(), chosen))
    return page(
        request,
        "backoffice/dashboard_figure.html",
        {
            **_context(who, chosen),
            "figure": found,
            "table": table,
            "cells": _rows(table),
            "numeric": [unit != "label" for unit in table.units],
            # Inside <script type="application/json">: "</" must not end the element.
            "chart_json": json.dumps(chart_data(found, table)).replace("</", "<\\/"),
        },
        fragment="figure",
    )


@get("/dashboard/{filename:str}", opt={"roles": ALL_ROLES})
async def figure_csv(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    filename: FromPath[str],
    months: Months = None,
) -> Response[Any]:
    """GET /backoffice/dashboard/<key>.csv: the figure's table, raw values."""
    key = filename.removesuffix(".csv")
    if not filename.endswith(".csv") or key not in FIGURES:
        raise NotFound("there is no such figure", code="figure_not_found")
    rt = runtime(request.app.state)
    _, table = await compute_figure(rt.db, key, window_ending(rt.clock.now(), _months(months)))
    return csv_response(f"{key}.csv", table.header, table.rows)


HANDLERS: list[Any] = [dashboard, figure, figure_csv]
