"""Programme health figures on a small, fixed coalition, checked against
numbers worked out by hand (the arithmetic is in the comments).

Everything is written through the real service functions (the partner API
for earns, refunds, burns; the survey, VIP, donation, account deletion and
pulse functions) with the module's ManualClock. Times are UTC at noon, so no
event sits near an Amsterdam month boundary; the window is March to May 2026.
All partners have a 0-day return window, default terms: 1 point per euro,
issued at 1.0 cent (10,000 micros) a point.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from markupsafe import escape

from api.charity import charities, donations
from api.coalition import pulse_survey
from api.coalition.member_profile import (
    ACCOUNT_DELETION_CONFIRMATION,
    answer_survey,
    delete_account,
)
from api.db.pool import transaction
from api.ledger.lots import release_due
from api.payments import sandbox
from api.programme_health.definitions import FIGURES
from api.programme_health.figures import COMPUTE, chart_data, compute_figure
from api.programme_health.rollup import refresh
from api.programme_health.window import window_ending
from api.settlement.run import settle_due
from api.vip import subscriptions
from tests.conftest import backoffice_session

HX = {"HX-Request": "true"}

IBAN = "NL91ABNA0417164300"
D = Decimal


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def coalition(make_partner, make_member, client_for, pool, clock) -> None:
    """The fixed data set; the clock is left at 20 May 2026 12:00 UTC."""
    clock.set(at(3, 2, 9))
    alpha_creds = await make_partner(code="alpha", name="Alpha", return_window_days=0)
    beta_creds = await make_partner(code="beta", name="Beta", return_window_days=0)
    cards = [await make_member() for _ in range(5)]
    ids = [await pool.fetchval("SELECT id FROM members WHERE card_number = $1", c) for c in cards]
    m1, m2, m3, m4, m5 = ids
    c1, c2, c3, _, c5 = cards
    food = await transaction(
        pool,
        lambda conn: charities.create_charity(
            conn,
            charities.CharityIn("Food Bank", "", None, IBAN, None, "Stichting F", True),
            clock.now(),
        ),
    )
    await transaction(
        pool,
        lambda conn: charities.create_charity(
            conn,
            charities.CharityIn("Zoo Friends", "", None, IBAN, None, "Stichting Z", False),
            clock.now(),
        ),
    )

    async def vip(member_id: int) -> None:
        started = await subscriptions.subscribe(
            pool, member_id, "vip_monthly", redirect_url="/vip", now=clock.now()
        )
        assert started.checkout_url
        provider_id = started.checkout_url.removeprefix(sandbox.CHECKOUT_PATH)
        checkout = await sandbox.get_checkout(pool, provider_id)
        await sandbox.complete_checkout(pool, provider_id, "pay", checkout.form_token, clock.now())

    async with client_for(alpha_creds) as alpha, client_for(beta_creds) as beta:
        clock.set(at(3, 3))
        await alpha.earn(card_number=c5, amount_cents=2_000, currency="EUR")  # 20 pts
        clock.set(at(3, 10))
        e1a = await alpha.earn(card_number=c1, amount_cents=30_000, currency="EUR")  # 300
        clock.set(at(3, 11))
        await answer_survey(pool, m1, e1a.id, score=10, comment=None, now=clock.now())
        clock.set(at(3, 12))
        e1b = await beta.earn(card_number=c1, amount_cents=5_000, currency="EUR")  # 50
        clock.set(at(3, 13))
        await answer_survey(pool, m1, e1b.id, score=6, comment=None, now=clock.now())
        clock.set(at(3, 15))
        e2a = await alpha.earn(card_number=c2, amount_cents=20_000, currency="EUR")  # 200
        clock.set(at(3, 16))
        await answer_survey(pool, m2, e2a.id, score=5, comment=None, now=clock.now())
        clock.set(at(3, 20))
        await vip(m4)  # paid period 20 Mar - 20 Apr
        clock.set(at(3, 25))
        await subscriptions.cancel(pool, m4, clock.now())  # ends with its period
        clock.set(at(4, 5))
        await alpha.earn(card_number=c1, amount_cents=3_000, currency="EUR")  # 30
        clock.set(at(4, 6))
        await alpha.refund(e2a.id, amount_cents=5_000, currency="EUR")  # -50 of e2a
        clock.set(at(4, 10))
        await release_due(pool, clock.now())
        # m1's lots by expiry: e1a 300, e1b 50, e1c 30: all 120 come from e1a (Alpha).
        await beta.burn(card_number=c1, points=120)
        clock.set(at(4, 12))
        e3 = await beta.earn(card_number=c3, amount_cents=8_000, currency="EUR")  # 80
        clock.set(at(4, 13))
        await answer_survey(pool, m3, e3.id, score=9, comment=None, now=clock.now())
        clock.set(at(4, 15))
        await donations.donate(pool, m1, food.id, 100, "give-1", clock.now())  # from e1a
        clock.set(at(4, 20, 13))
        await release_due(pool, clock.now())
        hold = await alpha.authorize(card_number=c3, points=50)  # from e3 (Beta)
        await alpha.capture(hold.id, 30)
        await pulse_survey.answer(pool, m1, keep=4, more=4, recommend=10, now=clock.now())
        clock.set(at(4, 21))
        await subscriptions.expire_due(pool, clock.now())  # m4's VIP ends in April
        clock.set(at(5, 2))
        await beta.earn(card_number=c2, amount_cents=4_000, currency="EUR")  # 40
        clock.set(at(5, 5))
        await release_due(pool, clock.now())
        # m2's lots by expiry: e2a 150 (Alpha), e2b 40 (Beta): the hold takes 150 + 20;
        # capturing 160 puts 10 back into e2b (latest expiry first): 150 Alpha + 10 Beta.
        hold = await alpha.authorize(card_number=c2, points=170)
        await alpha.capture(hold.id, 160)
    clock.set(at(5, 10))
    await vip(m3)
    clock.set(at(5, 12))
    await delete_account(pool, m5, confirmation=ACCOUNT_DELETION_CONFIRMATION, now=clock.now())
    clock.set(at(5, 14))
    await pulse_survey.answer(pool, m1, keep=5, more=4, recommend=9, now=clock.now())
    await pulse_survey.answer(pool, m2, keep=3, more=2, recommend=6, now=clock.now())
    await pulse_survey.offer(pool, m3, clock.now())
    await pulse_survey.dismiss(pool, m3, clock.now())
    clock.set(at(5, 20))
    while await settle_due(pool, clock.now()):  # business days 2 Mar - 19 May, in batches
        pass
    await refresh(pool, clock.now())  # the dashboard's rollups, as of now


async def test_every_figure_matches_the_hand_computed_value(coalition, pool, clock):
    window = window_ending(clock.now(), 3)
    assert [m.isoformat() for m in window.months] == ["2026-03-01", "2026-04-01", "2026-05-01"]

    async def rows(key: str) -> list[tuple[object, ...]]:
        figure, table = await compute_figure(pool, key, window)
        assert figure.key == key and len(table.header) == len(table.units)
        assert all(len(row) == len(table.header) for row in table.rows)
        chart = chart_data(figure, table)
        assert chart["series"] and all(
            len(s["data"]) == len(chart["labels"]) for s in chart["series"]
        )
        return table.rows

    seen: set[str] = set()

    async def check(key: str, expected: list[tuple[object, ...]]) -> None:
        seen.add(key)
        assert await rows(key) == expected, key

    # Active since 20 Apr 12:00: m3 (capture 20 Apr 13:00), m2 (2 and 5 May) = 2;
    # since 19 Feb: m5, m1, m2, m3 = 4 (m4 only bought VIP).
    await check("active_members", [("last 30 days", 2), ("last 90 days", 4)])
    # Mar: m5, m1, m2; Apr: m1 (earn, burn), m3; May: m2.
    await check("active_members_monthly", [("2026-03", 3), ("2026-04", 2), ("2026-05", 1)])
    # Mar: Alpha 20 + 300 + 200 = 520, Beta 50; Apr: Alpha 30, Beta 80; May: Beta 40.
    await check("earn_by_partner", [("2026-03", 520, 50), ("2026-04", 30, 80), ("2026-05", 0, 40)])
    # Captured: Apr Beta 120 (m1), Alpha 30 (m3); May Alpha 160 (m2).
    await check("burn_by_partner", [("2026-03", 0, 0), ("2026-04", 30, 120), ("2026-05", 160, 0)])
    # Every lot at 1.0 cent a point, so value (cents) = points.
    # 31 Mar: 20 + 300 + 50 + 200 = 570.
    # 30 Apr: 570 + 30 - 50 (refund) - 120 (burn) + 80 - 100 (donated) - 30 (captured) = 380.
    # 19 May and now: 380 + 40 - 160 (captured) - 20 (forfeited) = 240.
    await check(
        "liability",
        [
            ("2026-03 (settled 2026-03-31)", 570, 570),
            ("2026-04 (settled 2026-04-30)", 380, 380),
            ("2026-05 (settled 2026-05-19)", 240, 240),
            ("now", 240, 240),
        ],
    )
    # m5's 20 points forfeited in May at 1.0 cent; the donation is not breakage.
    await check("breakage", [("2026-03", 0, 0), ("2026-04", 0, 0), ("2026-05", 20, 20)])
    # Earned (base + bonus; no bonuses here): Mar 570, Apr 110, May 40; redeemed 0, 150, 160.
    # Apr 150/110 = 136.36..% -> 136.4; window 310/720 = 43.05..% -> 43.1.
    await check(
        "redemption_rate",
        [
            ("2026-03", 570, 0, D("0.0")),
            ("2026-04", 110, 150, D("136.4")),
            ("2026-05", 40, 160, D("400.0")),
            ("window", 720, 310, D("43.1")),
        ],
    )
    # March cohort m5, m1, m2 (3): April m1 bought (1/3 = 33.3), May m2 (33.3).
    # April cohort m3 (1): May 0; June has not started.
    await check(
        "retention_cohorts",
        [
            ("2026-03", 3, D("100.0"), D("33.3"), D("33.3")),
            ("2026-04", 1, D("100.0"), D("0.0"), None),
        ],
    )
    # Mar: m5 1, m1 2, m2 1 purchases: 1/3; Apr: m1 1, m3 1; May: m2 1.
    # Window: m5 1, m1 3, m2 2, m3 1: 2/4 = 50%.
    await check(
        "repeat_purchase_rate",
        [
            ("2026-03", 3, 1, D("33.3")),
            ("2026-04", 2, 0, D("0.0")),
            ("2026-05", 1, 0, D("0.0")),
            ("window", 4, 2, D("50.0")),
        ],
    )
    # Spend less refunds: Alpha 2,000 + 30,000 + (20,000 - 5,000) + 3,000 = 50,000;
    # Beta 5,000 + 8,000 + 4,000 = 17,000; of 67,000: 74.63% and 25.37%.
    await check("share_of_wallet", [("Alpha", 50_000, D("74.6")), ("Beta", 17_000, D("25.4"))])
    # m5 Alpha, m3 Beta: 1 partner; m1 and m2 both: 2 partners; of 4 buyers.
    await check(
        "partners_per_member",
        [
            ("1 partner", 2, D("50.0")),
            ("2 partners", 2, D("50.0")),
            ("3 or more partners", 0, D("0.0")),
        ],
    )
    # Mar Alpha: 10 (promoter), 5 (detractor): 50% - 50% = 0; Beta: 6 (detractor): -100.
    # Apr Beta: 9 (promoter): 100.
    await check(
        "nps_by_partner",
        [
            ("2026-03", D("0.0"), D("-100.0")),
            ("2026-04", None, D("100.0")),
            ("2026-05", None, None),
        ],
    )
    # Bronze (everyone; m5 is closed): m1 30,000 + 5,000 + 3,000 = 38,000;
    # m2 15,000 + 4,000 = 19,000; m3 8,000; m4 0: 65,000 / 4 = 16,250.
    await check(
        "clv_by_tier",
        [("Bronze", 4, 65_000, 16_250), ("Silver", 0, 0, None), ("Gold", 0, 0, None)],
    )
    # Mar: m4 joins (1 of 3 active: 33.3%). Apr: m4 VIP on 1 Apr, ends in Apr (100%
    # churn), none joins (0 of 2). May: m3 joins (1 of 1 active: 100%).
    await check(
        "vip",
        [
            ("2026-03", 0, 1, 0, D("33.3"), None),
            ("2026-04", 1, 0, 1, D("0.0"), D("100.0")),
            ("2026-05", 0, 1, 0, D("100.0"), None),
        ],
    )
    await check("donations_by_charity", [("Food Bank", 1, 1, 100, 0), ("Zoo Friends", 0, 0, 0, 0)])
    # Earned at Alpha: redeemed at Alpha 150 (m2), at Beta 120 (m1);
    # earned at Beta: redeemed at Alpha 30 (m3) + 10 (m2).
    await check("partner_flow", [("Alpha", 150, 120, 270), ("Beta", 40, 0, 40)])
    # Apr: m1 (4, 4, 10): NPS 100. May: offered m1, m2, m3; m3 dismissed;
    # keep (5 + 3)/2 = 4, more (4 + 2)/2 = 3, recommend (9 + 6)/2 = 7.5,
    # NPS: one 9 (promoter), one 6 (detractor) = 0.
    await check(
        "pulse",
        [
            ("2026-03", 0, 0, 0, None, None, None, None),
            ("2026-04", 1, 1, 0, D("4.00"), D("4.00"), D("10.00"), D("100.0")),
            ("2026-05", 3, 2, 1, D("4.00"), D("3.00"), D("7.50"), D("0.0")),
        ],
    )
    assert seen == set(COMPUTE) == set(FIGURES)


async def test_the_dashboard_shows_every_figure_with_its_definition_table_and_csv(
    coalition, http, pool, clock
):
    for role in ("owner", "finance", "support", "marketing"):
        headers = await backoffice_session(http, pool, clock, role)
        page = await http.get("/backoffice/dashboard?months=3", headers=headers)
        assert page.status_code == 200, role
    for f in FIGURES.values():  # definitions beside the charts, fragments loaded by htmx
        assert str(escape(f.definition)) in page.text
        assert f'hx-get="/backoffice/dashboard/figures/{f.key}?months=3"' in page.text
    assert "/static/vendor/chart.js-4.6.1/chart.umd.min.js" in page.text

    share = await http.get(
        "/backoffice/dashboard/figures/share_of_wallet?months=3", headers={**headers, **HX}
    )
    assert share.status_code == 200 and "<html" not in share.text
    cells = [
        re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", tr)
        for tr in re.findall(r"<tr>(.*?)</tr>", share.text, re.S)
    ]
    assert cells == [
        ["partner", "spend (cents)", "share of wallet %"],
        ["Alpha", "€500.00", "74.6%"],
        ["Beta", "€170.00", "25.4%"],
    ]
    found = re.search(
        r'<script type="application/json" id="chart-data-share_of_wallet">(.*?)</script>',
        share.text,
        re.S,
    )
    assert found
    assert json.loads(found.group(1)) == {
        "kind": "bar",
        "labels": ["Alpha", "Beta"],
        "series": [{"label": "share of wallet %", "unit": "percent", "data": [74.6, 25.4]}],
    }
    flow = await http.get("/backoffice/dashboard/figures/partner_flow?months=3", headers=headers)
    assert flow.status_code == 200 and "<html" in flow.text  # without htmx, a page
    assert '<th scope="row">Beta</th><td class="num">40</td>' in flow.text

    answer = await http.get("/backoffice/dashboard/partner_flow.csv?months=3", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="partner_flow.csv"' in answer.headers["content-disposition"]
    assert list(csv.reader(io.StringIO(answer.text))) == [
        ["earned at \\ redeemed at", "Alpha", "Beta", "total"],
        ["Alpha", "150", "120", "270"],
        ["Beta", "40", "0", "40"],
    ]
    for key in FIGURES:
        got = await http.get(f"/backoffice/dashboard/{key}.csv?months=3", headers=headers)
        assert got.status_code == 200, key
    for bad in ("/backoffice/dashboard/nothing.csv", "/backoffice/dashboard/figures/nothing"):
        assert (await http.get(bad, headers=headers)).status_code == 404, bad
    assert (await http.get("/backoffice/dashboard?months=99", headers=headers)).status_code == 400
    assert (await http.get("/backoffice/dashboard")).status_code == 303
