"""Back-office VIP pages: a plan created (bad input refused on the form),
changed and retired, with the admin API's audit rows; the subscriptions list
by status, one subscription with its events, the CSV; roles."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

from api.payments import sandbox
from api.vip import subscriptions
from tests.conftest import backoffice_session


async def _vip_member(pool: Any, clock: Any, make_member: Any, pay: bool) -> int:
    card = await make_member()
    member_id: int = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
    started = await subscriptions.subscribe(
        pool, member_id, "vip_monthly", redirect_url="/vip", now=clock.now()
    )
    if pay:
        assert started.checkout_url is not None
        provider_id = started.checkout_url.removeprefix(sandbox.CHECKOUT_PATH)
        checkout = await sandbox.get_checkout(pool, provider_id)
        await sandbox.complete_checkout(
            pool, provider_id, "pay", checkout.form_token, clock.now() + timedelta(minutes=1)
        )
    return started.subscription.id


async def test_vip_plans_and_subscriptions(
    http: Any, pool: Any, clock: Any, make_member: Any
) -> None:
    marketing = await backoffice_session(http, pool, clock, "marketing")
    form = {
        "csrf_token": marketing["x-csrf-token"],
        "code": "vip_quarterly",
        "name": "VIP Kwartaal",
        "period": "month",
        "price_cents": "1299",
        "multiplier_permille": "1750",
        "monthly_bonus_points": "150",
        "free_lottery_tickets": "2",
        "position": "5",
    }
    cookie = {"Cookie": marketing["Cookie"]}
    bad = await http.post(
        "/backoffice/vip/plans", headers=cookie, data={**form, "multiplier_permille": "500"}
    )
    assert bad.status_code == 422 and "Multiplier_permille is 1000 (x1) to 10000." in bad.text
    words = await http.post(
        "/backoffice/vip/plans", headers=cookie, data={**form, "price_cents": "12,99"}
    )
    assert (
        words.status_code == 422
        and "Price (cents): &#39;12,99&#39; is not a whole number." in words.text
    )
    assert await pool.fetchval("SELECT count(*) FROM vip_plans WHERE code = 'vip_quarterly'") == 0

    made = await http.post("/backoffice/vip/plans", headers=cookie, data=form)
    assert (
        made.status_code == 303
        and made.headers["location"] == "/backoffice/vip/plans/vip_quarterly"
    )
    row = await pool.fetchrow("SELECT * FROM vip_plans WHERE code = 'vip_quarterly'")
    assert (row["price_cents"], row["multiplier_permille"], row["active"]) == (1299, 1750, True)
    overview = await http.get("/backoffice/vip", headers=marketing)
    assert "VIP Kwartaal" in overview.text and "12,99" in overview.text
    taken = await http.post("/backoffice/vip/plans", headers=cookie, data={**form, "name": "Other"})
    assert taken.status_code == 409 and "A VIP plan &#39;vip_quarterly&#39; exists." in taken.text

    changed = await http.post(
        "/backoffice/vip/plans/vip_quarterly",
        headers=cookie,
        data={**form, "price_cents": "1499", "active": "on"},
    )
    assert changed.status_code == 200 and "Saved." in changed.text
    assert (
        await pool.fetchval("SELECT price_cents FROM vip_plans WHERE code = 'vip_quarterly'")
        == 1499
    )
    audit_rows = await pool.fetch(
        "SELECT action, before::text AS before, after::text AS after FROM admin_audit_log"
        " WHERE subject = 'vip_plan:vip_quarterly' ORDER BY id"
    )
    assert [r["action"] for r in audit_rows] == ["vip_plan.create", "vip_plan.change"]
    assert json.loads(audit_rows[1]["before"])["price_cents"] == 1299
    assert json.loads(audit_rows[1]["after"])["price_cents"] == 1499
    refused = await http.post(
        "/backoffice/vip/plans/vip_quarterly",
        headers=cookie,
        data={**form, "name": "", "active": "on"},
    )
    assert refused.status_code == 422 and "A plan name is 1 to 60 characters." in refused.text
    retired = await http.post("/backoffice/vip/plans/vip_quarterly/retire", headers=marketing)
    assert retired.status_code == 200 and "Retired" in retired.text
    assert await pool.fetchval("SELECT active FROM vip_plans WHERE code = 'vip_quarterly'") is False
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE action = 'vip_plan.deactivate'"
        )
        == 1
    )
    # Marketing writes plans but does not see subscriptions (as the admin API).
    assert (await http.get("/backoffice/vip/subscriptions", headers=marketing)).status_code == 403

    paid = await _vip_member(pool, clock, make_member, pay=True)
    pending = await _vip_member(pool, clock, make_member, pay=False)
    support = await backoffice_session(http, pool, clock, "support")
    assert (
        await http.get("/backoffice/vip/plans/vip_quarterly", headers=support)
    ).status_code == 403
    everything = await http.get("/backoffice/vip/subscriptions", headers=support)
    assert everything.text.count('class="subscription-row"') == 2
    active = await http.get(
        "/backoffice/vip/subscriptions", params={"status": "active"}, headers=support
    )
    assert active.text.count('class="subscription-row"') == 1
    assert f'/backoffice/vip/subscriptions/{paid}"' in active.text
    assert f'/backoffice/vip/subscriptions/{pending}"' not in active.text
    bad_status = await http.get(
        "/backoffice/vip/subscriptions", params={"status": "gold"}, headers=support
    )
    assert bad_status.status_code == 400
    detail = await http.get(f"/backoffice/vip/subscriptions/{paid}", headers=support)
    assert detail.status_code == 200 and detail.text.count('class="event-row"') >= 2
    assert "4,99" in detail.text
    exported = await http.get(
        "/backoffice/vip/subscriptions/export.csv", params={"status": "active"}, headers=support
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(int(r["id"]), r["plan_code"], r["status"], r["paid_cents"]) for r in rows] == [
        (paid, "vip_monthly", "active", "499")
    ]
