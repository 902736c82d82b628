"""Back-office charity pages: a charity with a bad IBAN refused on the form
and nothing stored, a good one created, changed and deactivated (audited as
the admin API does); a matching campaign created, its budget used shown,
changed within its rules and ended; donations per charity and the charity
payouts listed and exported as CSV; roles."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

from api.backoffice.pages import PROGRAMME_TZ
from api.charity import donations
from api.charity.settlement import settle_charities
from api.ledger.lots import release_due
from tests.conftest import backoffice_session

IBAN = "NL91ABNA0417164300"
PRICE_MICROS = 8_000


def local(moment: Any) -> str:
    return moment.astimezone(PROGRAMME_TZ).strftime("%Y-%m-%dT%H:%M")


async def test_charities_campaigns_donations_and_payouts(
    http: Any, pool: Any, clock: Any, make_partner: Any, make_member: Any, client_for: Any
) -> None:
    finance = await backoffice_session(http, pool, clock, "finance")
    cookie = {"Cookie": finance["Cookie"]}
    token = finance["x-csrf-token"]
    good = {
        "csrf_token": token,
        "name": "Voedselbank Utrecht",
        "description": "Food for everyone",
        "logo_url": "https://example.org/logo.png",
        "iban": "nl91 abna 0417 1643 00",
        "bic": "",
        "account_holder": "Stichting Voedselbank",
        "anbi": "on",
    }
    bad = await http.post(
        "/backoffice/charities", headers=cookie, data={**good, "iban": "NL91ABNA0417164301"}
    )
    assert bad.status_code == 422 and 'class="error"' in bad.text and "IBAN" in bad.text
    assert 'value="Voedselbank Utrecht"' in bad.text
    http_logo = await http.post(
        "/backoffice/charities", headers=cookie, data={**good, "logo_url": "http://x.org/a.png"}
    )
    assert http_logo.status_code == 422 and "Logo_url is an https:// address" in http_logo.text
    assert (
        await pool.fetchval("SELECT count(*) FROM charities WHERE name = 'Voedselbank Utrecht'")
        == 0
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM admin_audit_log WHERE action = 'charity.create'")
        == 0
    )

    made = await http.post("/backoffice/charities", headers=cookie, data=good)
    assert made.status_code == 303
    charity_id = int(made.headers["location"].rsplit("/", 1)[1])
    row = await pool.fetchrow(
        "SELECT iban, anbi, logo_url FROM charities WHERE id = $1", charity_id
    )
    assert (row["iban"], row["anbi"], row["logo_url"]) == (
        IBAN,
        True,
        "https://example.org/logo.png",
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM accounts WHERE charity_id = $1", charity_id) == 2
    )
    changed = await http.post(
        f"/backoffice/charities/{charity_id}",
        headers=cookie,
        data={**good, "anbi": "", "name": "Voedselbank"},
    )
    assert changed.status_code == 200 and "Saved." in changed.text
    assert await pool.fetchval("SELECT anbi FROM charities WHERE id = $1", charity_id) is False
    change = await pool.fetchrow(
        "SELECT before::text AS before, after::text AS after FROM admin_audit_log"
        " WHERE action = 'charity.change' AND subject = $1",
        f"charity:{charity_id}",
    )
    assert (
        json.loads(change["before"])["anbi"] is True
        and json.loads(change["after"])["anbi"] is False
    )
    bad_change = await http.post(
        f"/backoffice/charities/{charity_id}", headers=cookie, data={**good, "iban": "DE00"}
    )
    assert bad_change.status_code == 422
    assert (
        await pool.fetchval("SELECT name FROM charities WHERE id = $1", charity_id) == "Voedselbank"
    )

    # Marketing starts a matching campaign (finance may not).
    sponsor = await make_partner(name="Versmarkt", issuance_price_micros=10_000)
    marketing = await backoffice_session(http, pool, clock, "marketing")
    assert (
        await http.get("/backoffice/charities/campaigns/new", headers=finance)
    ).status_code == 403
    assert (await http.get("/backoffice/charities/new", headers=marketing)).status_code == 403
    campaign_form = {
        "csrf_token": marketing["x-csrf-token"],
        "name": "Versmarkt verdubbelt",
        "partner_id": str(sponsor.partner_id),
        "charity_id": str(charity_id),
        "budget_points": "300",
        "starts_at": local(clock.now()),
        "ends_at": local(clock.now() + timedelta(days=20)),
    }
    mcookie = {"Cookie": marketing["Cookie"]}
    no_partner = await http.post(
        "/backoffice/charities/campaigns", headers=mcookie, data={**campaign_form, "partner_id": ""}
    )
    assert (
        no_partner.status_code == 422
        and "Partner: choose the partner who matches." in no_partner.text
    )
    started = await http.post(
        "/backoffice/charities/campaigns", headers=mcookie, data=campaign_form
    )
    assert started.status_code == 303
    campaign_id = int(started.headers["location"].rsplit("/", 1)[1])

    # Two members donate; the campaign matches up to its budget.
    shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
    member_ids = []
    for _ in range(2):
        card = await make_member()
        async with client_for(shop) as client:
            await client.earn(card_number=card, amount_cents=50_000, currency="EUR")
        member_ids.append(
            await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
        )
    await release_due(pool, clock.now())
    await donations.donate(pool, member_ids[0], charity_id, 200, "bo-1", clock.now())
    await donations.donate(pool, member_ids[1], charity_id, 150, "bo-2", clock.now())
    detail = await http.get(f"/backoffice/charities/campaigns/{campaign_id}", headers=marketing)
    assert 'id="budget-figures">300 of 300 points' in detail.text

    # Changing it: not below what was matched; the end not into the past.
    low = await http.post(
        f"/backoffice/charities/campaigns/{campaign_id}",
        headers=mcookie,
        data={**campaign_form, "budget_points": "100"},
    )
    assert low.status_code == 422 and "Budget_points must be 300 (matched so far)" in low.text
    raised = await http.post(
        f"/backoffice/charities/campaigns/{campaign_id}",
        headers=mcookie,
        data={**campaign_form, "budget_points": "1000", "name": "Versmarkt verdubbelt meer"},
    )
    assert raised.status_code == 200 and 'id="budget-figures">300 of 1,000 points' in raised.text
    logged = await pool.fetchrow(
        "SELECT before::text AS before, after::text AS after FROM admin_audit_log"
        " WHERE action = 'matching_campaign.change' AND subject = $1",
        f"matching_campaign:{campaign_id}",
    )
    assert json.loads(logged["before"])["budget_points"] == 300
    assert json.loads(logged["after"])["budget_points"] == 1000
    ended = await http.post(f"/backoffice/charities/campaigns/{campaign_id}/end", headers=marketing)
    assert ended.status_code == 200 and "Ended" in ended.text
    assert (
        await pool.fetchval("SELECT status FROM matching_campaigns WHERE id = $1", campaign_id)
        == "ended"
    )
    overview = await http.get("/backoffice/charities/campaigns", headers=marketing)
    assert "Versmarkt verdubbelt meer" in overview.text and "300 of 1,000" in overview.text
    active = await http.get(
        "/backoffice/charities/campaigns", params={"status": "active"}, headers=marketing
    )
    assert active.text.count('class="campaign-row"') == 0
    listed = await http.get("/backoffice/charities", params={"status": "active"}, headers=marketing)
    assert listed.text.count('class="charity-row"') == 1 and "Voedselbank" in listed.text

    # Donations of the charity: the page and the CSV.
    page = await http.get(f"/backoffice/charities/{charity_id}", headers=finance)
    assert page.text.count('class="donation-row"') == 2
    exported = await http.get(f"/backoffice/charities/{charity_id}/donations.csv", headers=finance)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["points"], r["matched_points"], r["campaign_id"]) for r in rows] == [
        ("150", "100", str(campaign_id)),  # the budget's last 100
        ("200", "200", str(campaign_id)),
    ]

    # The month ends; settlement pays the charity; the payouts list shows it.
    first_of_next = (clock.now().replace(day=28) + timedelta(days=4)).replace(day=1, hour=12)
    clock.set(first_of_next)
    await settle_charities(pool, clock.now(), PRICE_MICROS)
    finance = await backoffice_session(http, pool, clock, "finance")
    payouts = await http.get(
        "/backoffice/charities/payouts", params={"charity_id": charity_id}, headers=finance
    )
    assert payouts.status_code == 200 and payouts.text.count('class="payout-row"') == 1
    assert "Voedselbank" in payouts.text and "5,20 €" in payouts.text  # 650 points at 0.8 cent
    payout_csv = await http.get(
        "/backoffice/charities/payouts/export.csv",
        params={"charity_id": charity_id},
        headers=finance,
    )
    payout_rows = list(csv.DictReader(io.StringIO(payout_csv.text)))
    assert [
        (r["charity_name"], r["points"], r["amount_cents"], r["price_micros"]) for r in payout_rows
    ] == [("Voedselbank", "650", "520", "8000")]
    bad_filter = await http.get(
        "/backoffice/charities/payouts", params={"charity_id": "x"}, headers=finance
    )
    assert bad_filter.status_code == 400
    support = await backoffice_session(http, pool, clock, "support")
    assert (await http.get("/backoffice/charities/payouts", headers=support)).status_code == 403
    assert (
        await http.get(f"/backoffice/charities/{charity_id}", headers=support)
    ).status_code == 200

    # Deactivated: no more donations.
    off = await http.post(
        f"/backoffice/charities/{charity_id}/status", headers=finance, data={"status": "inactive"}
    )
    assert off.status_code == 200 and "Now inactive." in off.text
    assert (
        await pool.fetchval("SELECT status FROM charities WHERE id = $1", charity_id) == "inactive"
    )
