"""Admin API for lotteries: owner and marketing create and cancel, others are
refused; a create is idempotent by key; every change writes an audit row in
its own transaction; bad input is a problem with a stable code."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from tests.conftest import admin_headers


def lottery_body(clock, **overrides: Any) -> dict[str, Any]:
    now = clock.now()
    return {
        "name": "Spring draw",
        "rules": "One free ticket per member, same odds as a paid one.",
        "ticket_price_points": 50,
        "tickets_per_member_max": 3,
        "sales_open_at": (now - timedelta(minutes=1)).isoformat(),
        "sales_close_at": (now + timedelta(days=7)).isoformat(),
        "draw_at": (now + timedelta(days=7, hours=1)).isoformat(),
        "prizes": [{"points": 1000}, {"voucher_text": "Cinema for two"}],
        **overrides,
    }


async def test_marketing_creates_and_cancels_a_lottery_audited_and_idempotent(
    http: httpx.AsyncClient, pool, clock
) -> None:
    marketing = await admin_headers(pool, clock, "marketing", "m@kring.test")
    headers = {**marketing, "Idempotency-Key": "spring-1"}
    created = await http.post("/admin/v1/lotteries", json=lottery_body(clock), headers=headers)
    assert created.status_code == 201, created.text
    lottery = created.json()
    assert lottery["status"] == "selling" and len(lottery["seed_sha256"]) == 64
    again = await http.post("/admin/v1/lotteries", json=lottery_body(clock), headers=headers)
    assert again.json()["id"] == lottery["id"]
    assert await pool.fetchval("SELECT count(*) FROM lotteries WHERE name = 'Spring draw'") == 1

    cancelled = await http.post(f"/admin/v1/lotteries/{lottery['id']}/cancel", headers=marketing)
    assert cancelled.status_code == 200
    assert cancelled.json() == {
        "id": lottery["id"], "tickets_refunded": 0, "points_refunded": 0, "replayed": False,
    }  # fmt: skip
    twice = await http.post(f"/admin/v1/lotteries/{lottery['id']}/cancel", headers=marketing)
    assert twice.json()["replayed"] is True
    audit = await pool.fetch("SELECT action, subject, admin_role FROM admin_audit_log ORDER BY id")
    assert [(a["action"], a["subject"], a["admin_role"]) for a in audit] == [
        ("lottery.create", f"lottery:{lottery['id']}", "marketing"),
        ("lottery.cancel", f"lottery:{lottery['id']}", "marketing"),
    ]


async def test_other_roles_anonymous_and_bad_input_are_refused(
    http: httpx.AsyncClient, pool, clock
) -> None:
    finance = await admin_headers(pool, clock, "finance", "f@kring.test")
    owner = await admin_headers(pool, clock, "owner", "o@kring.test")
    anonymous = await http.post("/admin/v1/lotteries", json=lottery_body(clock))
    assert anonymous.status_code == 401
    refused = await http.post(
        "/admin/v1/lotteries", json=lottery_body(clock), headers={**finance, "Idempotency-Key": "f"}
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden_role")
    cases = [
        ({}, {"Idempotency-Key": None}, "idempotency_key_missing"),
        ({"ticket_price_points": 0}, {}, "invalid_ticket_price"),
        ({"prizes": []}, {}, "invalid_prizes"),
        ({"prizes": [{"points": 5, "voucher_text": "both"}]}, {}, "invalid_prizes"),
        ({"ticket_price_points": "50"}, {}, "invalid_request"),
        ({"colour": "red"}, {}, "invalid_request"),
    ]
    for n, (change, header_change, code) in enumerate(cases):
        headers = {**owner, "Idempotency-Key": f"bad-{n}", **header_change}
        headers = {k: v for k, v in headers.items() if v is not None}
        response = await http.post(
            "/admin/v1/lotteries", json=lottery_body(clock, **change), headers=headers
        )
        assert response.status_code in (400, 422), (change, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code, (change, response.json())
    missing = await http.post("/admin/v1/lotteries/999999/cancel", headers=owner)
    assert (missing.status_code, missing.json()["code"]) == (404, "lottery_not_found")
    # Nothing refused was written, nor audited.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM lotteries WHERE create_key = 'f' OR create_key LIKE 'bad-%'"
        )
        == 0
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE admin_role IN ('owner', 'finance')"
        )
        == 0
    )
