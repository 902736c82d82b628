"""VIP over HTTP: the member API (plans with what they would have added,
subscribe to a checkout, cancel, resubscribe, bad input), the admin API
(roles, plan changes for new periods, audit, bad input, the subscription
listing) and the `vip` challenge audience."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count

from api.engagement.audience import in_audience
from api.payments import sandbox
from tests.conftest import admin_headers
from tests.integration.test_wallet_pages import wallet_client

_admins = count(1)


def problem_code(response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.json()["code"]


async def pay(pool, clock, checkout_url: str) -> None:
    provider_id = checkout_url.removeprefix(sandbox.CHECKOUT_PATH)
    checkout = await sandbox.get_checkout(pool, provider_id)
    await sandbox.complete_checkout(pool, provider_id, "pay", checkout.form_token, clock.now())


async def test_member_subscribes_cancels_and_resubscribes(
    http, make_partner, make_member, client_for, bearer, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    async with client_for(shop) as client:
        await client.earn(card_number=card, amount_cents=20_000, currency="EUR")  # 200 points
    clock.advance(timedelta(seconds=1))
    headers = await bearer(card)

    overview = (await http.get("/member/v1/vip/", headers=headers)).json()
    assert overview["is_vip"] is False and overview["subscription"] is None
    assert overview["base_points_90d"] == 200
    monthly = next(p for p in overview["plans"] if p["code"] == "vip_monthly")
    assert (monthly["price_cents"], monthly["multiplier_permille"]) == (499, 1500)
    assert monthly["would_have_earned_extra_points"] == 100

    # Bad input: unknown plan, wrong types, unknown fields, no token.
    r = await http.post("/member/v1/vip/subscribe", json={"plan_code": "nope"}, headers=headers)
    assert (r.status_code, problem_code(r)) == (404, "vip_plan_not_found")
    r = await http.post("/member/v1/vip/subscribe", json={"plan_code": 5}, headers=headers)
    assert (r.status_code, problem_code(r)) == (422, "invalid_request")
    r = await http.post(
        "/member/v1/vip/subscribe", json={"plan_code": "vip_monthly", "x": 1}, headers=headers
    )
    assert r.status_code == 422
    r = await http.post("/member/v1/vip/subscribe", json={"plan_code": "vip_monthly"})
    assert r.status_code == 401
    r = await http.post("/member/v1/vip/cancel", headers=headers)
    assert (r.status_code, problem_code(r)) == (404, "vip_not_subscribed")

    r = await http.post(
        "/member/v1/vip/subscribe", json={"plan_code": "vip_monthly"}, headers=headers
    )
    assert r.status_code == 201, r.text
    started = r.json()
    assert started["subscription"]["status"] == "pending"
    assert started["checkout_url"].startswith(sandbox.CHECKOUT_PATH)
    again = await http.post(
        "/member/v1/vip/subscribe", json={"plan_code": "vip_monthly"}, headers=headers
    )
    assert again.status_code == 200 and again.json()["checkout_url"] == started["checkout_url"]
    r = await http.post("/member/v1/vip/cancel", headers=headers)
    assert (r.status_code, problem_code(r)) == (409, "vip_checkout_open")

    await pay(pool, clock, started["checkout_url"])
    overview = (await http.get("/member/v1/vip/", headers=headers)).json()
    assert overview["is_vip"] is True and overview["vip_multiplier_permille"] == 1500
    assert overview["subscription"]["status"] == "active"

    clock.advance(timedelta(seconds=1))
    async with client_for(shop) as client:
        await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
    latest = (await http.get("/member/v1/transactions?limit=1", headers=headers)).json()
    item = latest["items"][0]
    assert (item["multiplier_permille"], item["vip_multiplier_permille"]) == (1500, 1500)
    assert item["bonus_label"] == "x1.5 VIP: +50 bonus points"

    r = await http.post(
        "/member/v1/vip/subscribe", json={"plan_code": "vip_monthly"}, headers=headers
    )
    assert (r.status_code, problem_code(r)) == (409, "vip_already_subscribed")
    r = await http.post("/member/v1/vip/cancel", headers=headers)
    assert r.status_code == 200 and r.json()["cancel_at_period_end"] is True
    r = await http.post("/member/v1/vip/resubscribe", json={}, headers=headers)
    assert r.status_code == 200 and r.json()["checkout_url"] is None
    assert r.json()["subscription"]["cancel_at_period_end"] is False

    # The `vip` audience holds for this member now, not for the one without VIP.
    other = await make_member()
    sql = f"""SELECT m.card_number, {in_audience("$1::timestamptz")} AS yes FROM members m,
        (SELECT 'vip'::text AS audience, NULL::text AS audience_tier, 0 AS lapsed_days) c
        WHERE m.card_number = ANY($2::text[])"""
    rows = {r["card_number"]: r["yes"] for r in await pool.fetch(sql, clock.now(), [card, other])}
    assert rows == {card: True, other: False}


async def test_admin_plans_roles_changes_and_audit(http, pool, clock):
    owner = await admin_headers(pool, clock, "owner")
    marketing = await admin_headers(pool, clock, "marketing")
    finance = await admin_headers(pool, clock, "finance")
    support = await admin_headers(pool, clock, "support")

    r = await http.get("/admin/v1/vip-plans", headers=finance)
    assert r.status_code == 200
    assert [p["code"] for p in r.json()][:2] == ["vip_monthly", "vip_yearly"]
    r = await http.get("/admin/v1/vip-plans", headers=support)
    assert (r.status_code, problem_code(r)) == (403, "forbidden_role")
    assert (await http.get("/admin/v1/vip-plans")).status_code == 401

    plan = {
        "code": "vip_plus",
        "name": "VIP Plus",
        "period": "month",
        "price_cents": 999,
        "multiplier_permille": 2000,
        "monthly_bonus_points": 250,
    }
    r = await http.post("/admin/v1/vip-plans", json=plan, headers=finance)
    assert (r.status_code, problem_code(r)) == (403, "forbidden_role")
    for bad, code in [
        ({**plan, "period": "week"}, "invalid_vip_plan"),
        ({**plan, "price_cents": 0}, "invalid_vip_plan"),
        ({**plan, "multiplier_permille": 900}, "invalid_vip_plan"),
        ({**plan, "code": "Bad Code"}, "invalid_vip_plan"),
        ({**plan, "price_cents": "999"}, "invalid_request"),
        ({**plan, "extra": 1}, "invalid_request"),
    ]:
        r = await http.post("/admin/v1/vip-plans", json=bad, headers=marketing)
        assert (r.status_code, problem_code(r)) == (422, code), bad
    assert await pool.fetchval("SELECT count(*) FROM vip_plans WHERE code = 'vip_plus'") == 0

    r = await http.post("/admin/v1/vip-plans", json=plan, headers=marketing)
    assert r.status_code == 201 and r.json()["active"] is True
    r = await http.post("/admin/v1/vip-plans", json=plan, headers=marketing)
    assert r.status_code == 200  # the same plan again
    r = await http.post("/admin/v1/vip-plans", json={**plan, "price_cents": 1}, headers=owner)
    assert (r.status_code, problem_code(r)) == (409, "vip_plan_exists")

    r = await http.patch("/admin/v1/vip-plans/vip_plus", json={"price_cents": 1299}, headers=owner)
    assert r.status_code == 200 and r.json()["price_cents"] == 1299
    r = await http.patch("/admin/v1/vip-plans/vip_plus", json={"period": "year"}, headers=owner)
    assert r.status_code == 422
    r = await http.patch("/admin/v1/vip-plans/nope", json={"price_cents": 1}, headers=owner)
    assert (r.status_code, problem_code(r)) == (404, "vip_plan_not_found")
    r = await http.post("/admin/v1/vip-plans/vip_plus/deactivate", headers=marketing)
    assert r.status_code == 200 and r.json()["active"] is False

    actions = [
        a["action"]
        for a in await pool.fetch(
            "SELECT action FROM admin_audit_log WHERE subject = 'vip_plan:vip_plus' ORDER BY id"
        )
    ]
    assert actions == ["vip_plan.create", "vip_plan.change", "vip_plan.deactivate"]


async def test_admin_lists_subscriptions(http, make_member, pool, clock):
    card = await make_member()
    member = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
    from api.vip import subscriptions

    started = await subscriptions.subscribe(
        pool, member, "vip_yearly", redirect_url="/vip", now=clock.now()
    )
    assert started.checkout_url
    await pay(pool, clock, started.checkout_url)
    support = await admin_headers(pool, clock, "support")
    marketing = await admin_headers(pool, clock, "marketing")
    r = await http.get("/admin/v1/vip-subscriptions?status=active&limit=1", headers=support)
    assert r.status_code == 200
    page = r.json()
    assert page["items"][0]["card_number"] == card
    assert page["items"][0]["paid_cents"] == 4900 and page["items"][0]["periods_paid"] == 1
    sub_id = page["items"][0]["id"]
    r = await http.get(f"/admin/v1/vip-subscriptions/{sub_id}", headers=support)
    assert r.status_code == 200, r.text
    detail = r.json()
    assert [(e["from_status"], e["to_status"]) for e in detail["events"]] == [
        (None, "pending"),
        ("pending", "active"),
    ]
    assert [p["amount_cents"] for p in detail["periods"]] == [4900]
    r = await http.get("/admin/v1/vip-subscriptions/999999", headers=support)
    assert (r.status_code, problem_code(r)) == (404, "vip_subscription_not_found")
    r = await http.get("/admin/v1/vip-subscriptions?status=bogus", headers=support)
    assert (r.status_code, problem_code(r)) == (400, "invalid_status")
    r = await http.get("/admin/v1/vip-subscriptions?cursor=abc", headers=support)
    assert (r.status_code, problem_code(r)) == (400, "invalid_cursor")
    r = await http.get("/admin/v1/vip-subscriptions", headers=marketing)
    assert (r.status_code, problem_code(r)) == (403, "forbidden_role")


async def test_wallet_vip_page_forms(app, make_member, pool, clock, settings):
    card = await make_member()
    async with await wallet_client(app, pool, clock, settings, card) as wallet:
        page = await wallet.get("/vip")
        assert page.status_code == 200
        assert "VIP Monthly: 4,99" in page.text and "You are not VIP" in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        token = csrf.group(1)
        # No CSRF token: refused, nothing made.
        r = await wallet.post("/vip/subscribe", data={"plan_code": "vip_monthly"})
        assert r.status_code == 403
        r = await wallet.post("/vip/subscribe", data={"plan_code": "nope", "csrf_token": token})
        assert r.status_code == 404 and "There is no VIP plan" in r.text
        r = await wallet.post("/vip/cancel", data={"csrf_token": token})
        assert r.status_code == 404 and "You have no VIP subscription" in r.text
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM vip_subscriptions s JOIN members m ON m.id = s.member_id"
                " WHERE m.card_number = $1",
                card,
            )
            == 0
        )
        r = await wallet.post(
            "/vip/subscribe", data={"plan_code": "vip_monthly", "csrf_token": token}
        )
        assert r.status_code == 303
        assert r.headers["location"].startswith(sandbox.CHECKOUT_PATH)
        await pay(pool, clock, r.headers["location"])
        page = await wallet.get("/vip")
        assert 'data-testid="vip-badge"' in page.text and "Renews on" in page.text
        home = await wallet.get("/")
        assert 'data-testid="vip-badge"' in home.text
        r = await wallet.post("/vip/cancel", data={"csrf_token": token})
        assert r.status_code == 200 and "no renewal" in r.text
        assert "Keep my VIP membership" in r.text
        r = await wallet.post("/vip/resubscribe", data={"csrf_token": token})
        assert r.status_code == 200 and "Cancel at the end of the period" in r.text


async def test_vip_routes_are_in_the_openapi_schema_without_renamed_components(http):
    schema = (await http.get("/schema/openapi.json")).json()
    for path in (
        "/member/v1/vip",
        "/member/v1/vip/subscribe",
        "/admin/v1/vip-plans",
        "/admin/v1/vip-subscriptions",
    ):
        assert path in schema["paths"], path
    components = set(schema["components"]["schemas"])
    assert {"MemberVipOut", "VipCheckoutOut", "VipPlanAdminOut", "VipPlanIn"} <= components
