"""Charities over HTTP: the admin API (roles, the IBAN check, audit), the
member API (list, donate with an Idempotency-Key, history, monthly), the
wallet pages (give, history, the printable statement) and the public page
with its running total."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from api.ledger.check import check_ledger
from api.ledger.lots import release_due
from tests.conftest import balances
from tests.integration.test_admin_lotteries import admin_headers
from tests.integration.test_member_api import problem_code
from tests.integration.test_wallet_pages import wallet_client

CHARITY = {
    "name": "Voedselbank Utrecht",
    "description": "Food parcels for families.",
    "iban": "nl91 abna 0417 1643 00",
    "account_holder": "Stichting Voedselbank Utrecht",
    "anbi": True,
}


@pytest.fixture(scope="module")
async def admins(pool, clock):
    return {
        role: await admin_headers(pool, clock, role, f"{role}@charity.test")
        for role in ("owner", "finance", "support", "marketing")
    }


@pytest.fixture(scope="module")
def funded(make_partner, make_member, client_for, pool, clock):
    async def make(points: int, **member) -> str:
        shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
        card = await make_member(**member)
        async with client_for(shop) as client:
            await client.earn(card_number=card, amount_cents=points * 100, currency="EUR")
        await release_due(pool, clock.now())
        return card

    return make


async def test_admin_roles_iban_check_and_audit(http, admins, pool):
    made = await http.post("/admin/v1/charities", json=CHARITY, headers=admins["finance"])
    assert made.status_code == 201, made.text
    charity = made.json()
    assert charity["iban"] == "NL91ABNA0417164300" and charity["status"] == "active"
    assert charity["bic"] == "ABNANL2A"  # derived from the bank registry
    for role in ("support", "marketing"):
        refused = await http.post("/admin/v1/charities", json=CHARITY, headers=admins[role])
        assert refused.status_code == 403
    assert (await http.post("/admin/v1/charities", json=CHARITY)).status_code == 401
    bad = await http.post(
        "/admin/v1/charities",
        json={**CHARITY, "iban": "NL91ABNA0417164301"},
        headers=admins["owner"],
    )
    assert bad.status_code == 422 and problem_code(bad) == "invalid_iban"
    extra = await http.post(
        "/admin/v1/charities", json={**CHARITY, "colour": "red"}, headers=admins["owner"]
    )
    assert extra.status_code == 422
    logo = await http.post(
        "/admin/v1/charities",
        json={**CHARITY, "logo_url": "javascript:alert(1)"},
        headers=admins["owner"],
    )
    assert problem_code(logo) == "invalid_logo_url"
    changed = await http.put(
        f"/admin/v1/charities/{charity['id']}",
        json={**CHARITY, "name": "Voedselbank Utrecht e.o."},
        headers=admins["owner"],
    )
    assert changed.status_code == 200 and changed.json()["name"] == "Voedselbank Utrecht e.o."
    off = await http.patch(
        f"/admin/v1/charities/{charity['id']}/status",
        json={"status": "inactive"},
        headers=admins["finance"],
    )
    assert off.json()["status"] == "inactive"
    listed = await http.get("/admin/v1/charities", headers=admins["support"])
    assert [c["id"] for c in listed.json()] == [charity["id"]]
    missing = await http.put("/admin/v1/charities/999999", json=CHARITY, headers=admins["owner"])
    assert missing.status_code == 404 and problem_code(missing) == "charity_not_found"
    audit = await pool.fetch(
        "SELECT action, admin_role FROM admin_audit_log WHERE subject = $1 ORDER BY id",
        f"charity:{charity['id']}",
    )
    assert [(a["action"], a["admin_role"]) for a in audit] == [
        ("charity.create", "finance"),
        ("charity.change", "owner"),
        ("charity.status", "finance"),
    ]


async def test_campaign_roles_create_list_end(http, admins, make_partner, clock):
    charity = (await http.post("/admin/v1/charities", json=CHARITY, headers=admins["owner"])).json()
    sponsor = await make_partner()
    now = clock.now()
    body = {
        "partner_id": sponsor.partner_id,
        "charity_id": charity["id"],
        "name": "Spring match",
        "budget_points": 5_000,
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(days=30)).isoformat(),
    }
    refused = await http.post("/admin/v1/matching-campaigns", json=body, headers=admins["finance"])
    assert refused.status_code == 403
    made = await http.post("/admin/v1/matching-campaigns", json=body, headers=admins["marketing"])
    assert made.status_code == 201, made.text
    campaign = made.json()
    assert (campaign["used_points"], campaign["ratio"], campaign["status"]) == (0, 1, "active")
    bad = await http.post(
        "/admin/v1/matching-campaigns",
        json={**body, "budget_points": 0},
        headers=admins["owner"],
    )
    assert problem_code(bad) == "invalid_budget"
    listed = await http.get("/admin/v1/matching-campaigns", headers=admins["support"])
    assert campaign["id"] in [c["id"] for c in listed.json()]
    ended = await http.post(
        f"/admin/v1/matching-campaigns/{campaign['id']}/end", headers=admins["owner"]
    )
    assert ended.json()["status"] == "ended"
    again = await http.post(
        f"/admin/v1/matching-campaigns/{campaign['id']}/end", headers=admins["owner"]
    )
    assert again.status_code == 409 and problem_code(again) == "campaign_ended"


async def test_member_api_donates_once_per_key_and_lists_history(
    http,
    admins,
    funded,
    bearer,
    pool,
):
    charity = (
        await http.post(
            "/admin/v1/charities", json={**CHARITY, "name": "API Cause"}, headers=admins["owner"]
        )
    ).json()
    card = await funded(600)
    headers = await bearer(card)
    listed = await http.get("/member/v1/charities", headers=headers)
    assert listed.status_code == 200
    assert listed.json()["donation_points_min"] == 100
    assert "API Cause" in [c["name"] for c in listed.json()["items"]]
    url = f"/member/v1/charities/{charity['id']}/donations"
    keyless = await http.post(url, json={"points": 200}, headers=headers)
    assert keyless.status_code == 400 and problem_code(keyless) == "idempotency_key_required"
    first = await http.post(url, json={"points": 200}, headers={**headers, "Idempotency-Key": "a"})
    assert first.status_code == 201, first.text
    again = await http.post(url, json={"points": 200}, headers={**headers, "Idempotency-Key": "a"})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    low = await http.post(url, json={"points": 50}, headers={**headers, "Idempotency-Key": "b"})
    assert low.status_code == 422 and problem_code(low) == "donation_below_minimum"
    text = await http.post(url, json={"points": "300"}, headers={**headers, "Idempotency-Key": "c"})
    assert text.status_code == 422
    much = await http.post(url, json={"points": 500}, headers={**headers, "Idempotency-Key": "d"})
    assert much.status_code == 422 and problem_code(much) == "insufficient_points"
    gone = await http.post(
        "/member/v1/charities/999999/donations",
        json={"points": 100},
        headers={**headers, "Idempotency-Key": "e"},
    )
    assert gone.status_code == 404 and problem_code(gone) == "charity_not_found"
    assert (await balances(pool, card))["available"] == 400
    history = await http.get("/member/v1/donations", headers=headers)
    assert [(d["charity_name"], d["points"]) for d in history.json()["items"]] == [
        ("API Cause", 200)
    ]
    monthly = await http.put(
        f"/member/v1/charities/{charity['id']}/monthly-donation",
        json={"points": 150},
        headers=headers,
    )
    assert monthly.status_code == 200 and monthly.json()["active"] is True
    orders = await http.get("/member/v1/donations/monthly", headers=headers)
    assert [o["points"] for o in orders.json()["items"]] == [150]
    stopped = await http.delete(
        f"/member/v1/donations/monthly/{monthly.json()['id']}", headers=headers
    )
    assert stopped.status_code == 200 and stopped.json()["active"] is False
    assert (await http.get("/member/v1/charities", headers={})).status_code == 401
    off = await http.patch(
        f"/admin/v1/charities/{charity['id']}/status",
        json={"status": "inactive"},
        headers=admins["owner"],
    )
    assert off.status_code == 200
    closed = await http.post(url, json={"points": 100}, headers={**headers, "Idempotency-Key": "f"})
    assert closed.status_code == 409 and problem_code(closed) == "charity_inactive"


async def test_wallet_gives_shows_history_statement_and_the_public_total(
    app, http, admins, funded, pool, clock, settings
):
    charity = (
        await http.post(
            "/admin/v1/charities",
            json={**CHARITY, "name": "Wallet Cause <b>"},
            headers=admins["owner"],
        )
    ).json()
    card = await funded(1_000, display_name="Anna de Vries")
    member = await wallet_client(app, pool, clock, settings, card)
    page = await member.get("/charities")
    assert page.status_code == 200 and "Wallet Cause &lt;b&gt;" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    key = re.search(
        rf'action="/charities/{charity["id"]}/donate">\s*<input[^>]*>\s*'
        r'<input type="hidden" name="key" value="([^"]+)"',
        page.text,
    ).group(1)
    url = f"/charities/{charity['id']}/donate"
    refused = await member.post(url, data={"points": "300", "key": key})
    assert refused.status_code == 403  # no CSRF token: nothing given
    form = {"csrf_token": csrf, "points": "300", "key": key}
    given = await member.post(url, data=form)
    assert given.status_code == 200 and "you gave 300 points" in given.text
    again = await member.post(url, data=form)  # a double click
    assert "already made" in again.text
    short = await member.post(url, data={**form, "key": "other", "points": "50"})
    assert short.status_code == 422 and "at least 100 points" in short.text
    assert (await balances(pool, card))["available"] == 700
    history = await member.get("/donations")
    assert "Wallet Cause &lt;b&gt;" in history.text and "300" in history.text
    year = clock.now().astimezone(ZoneInfo("Europe/Amsterdam")).year
    assert f"/donations/statement/{year}" in history.text
    statement = await member.get(f"/donations/statement/{year}")
    assert statement.status_code == 200
    assert "Anna de Vries" in statement.text
    assert f"Donation statement {year}" in statement.text
    assert "donation-statement.css" in statement.text
    assert "About ANBI" in statement.text
    assert re.search(r'data-testid="total-points">300<', statement.text)
    public = await http.get(f"/charities/{charity['id']}")
    assert public.status_code == 200
    assert re.search(r'data-testid="total-points">300<', public.text)
    assert "Sign in to give points" in public.text
    assert (await http.get("/charities/999999")).status_code == 404
    assert (await http.get("/charities")).status_code in (302, 303, 401)
    css = await http.get("/static/css/donation-statement.css")
    assert css.status_code == 200 and "@media print" in css.text
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []


async def test_charity_routes_are_in_the_openapi_schema(http):
    schema = (await http.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    assert "Member API" in paths["/member/v1/charities/{charity_id}/donations"]["post"]["tags"]
    assert "/member/v1/donations" in paths
    assert "/admin/v1/charities" in paths
    assert "/admin/v1/matching-campaigns/{campaign_id}/end" in paths
    assert "/charities" not in paths  # wallet pages are not API


async def test_migration_0013_upgrades_and_downgrades_cleanly(pg_server):
    import asyncio

    import asyncpg
    from alembic import command

    from api.db import migrate
    from api.db.embedded import ensure_database

    name = "kring_charities_migration"
    await ensure_database(pg_server.admin_url, name)
    url = pg_server.url_for(name)
    config = migrate.alembic_config(url)

    async def shape() -> dict[str, str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT conname AS name, pg_get_constraintdef(oid) AS d FROM pg_constraint"
                " WHERE conname IN ('accounts_kind_check', 'accounts_unit_of_kind',"
                " 'journal_entries_kind_check')"
                " UNION ALL SELECT indexname, indexdef FROM pg_indexes"
                " WHERE indexname = 'accounts_programme_kind'"
            )
            return {r["name"]: r["d"] for r in rows}
        finally:
            await conn.close()

    await asyncio.to_thread(command.upgrade, config, "0012")
    before = await shape()
    await asyncio.to_thread(command.upgrade, config, "0013")
    after = await shape()
    assert "'charity_points'" in after["accounts_kind_check"]
    assert "'charity_money'" in after["accounts_unit_of_kind"]
    for kind in ("donation", "donation_match", "charity_payout"):
        assert f"'{kind}'" in after["journal_entries_kind_check"]
    assert "charity_id IS NULL" in after["accounts_programme_kind"]
    await asyncio.to_thread(command.downgrade, config, "0012")
    assert await shape() == before
    await asyncio.to_thread(command.upgrade, config, "0013")
    assert await shape() == after
