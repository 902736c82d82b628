"""Challenge definitions through the admin API: owner and marketing define,
change and withdraw challenges (audited, idempotent by key), support and
finance only read, anonymous callers nothing; every bad field has its
problem code and writes nothing; after the start only name, description
and the end may change."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest

from api.admin_auth import accounts
from api.admin_auth.tokens import issue_admin_token
from api.coalition.partners import set_partner_status
from api.db.pool import transaction
from api.engagement import challenge_definitions as defs
from api.engagement.challenge_views import join_challenge
from api.errors import Conflict

SECRET = "test-secret-" + "x" * 40  # tests/conftest.py's settings
ROLES = ("owner", "marketing", "support", "finance")


@pytest.fixture(scope="module")
async def headers(pool, clock) -> dict[str, dict[str, str]]:
    """Authorization headers for one admin of each role."""
    made: dict[str, dict[str, str]] = {}
    for role in ROLES:
        created = await transaction(
            pool,
            lambda conn, role=role: accounts.create_admin(
                conn,
                email=f"{role}@challenges.test",
                role=role,
                password="correct horse battery",
                now=clock.now(),
            ),
        )
        token = issue_admin_token(created.principal.admin_id, secret=SECRET, now=clock.now())
        made[role] = {"Authorization": f"Bearer {token}"}
    return made


def challenge_body(clock, **overrides: Any) -> dict[str, Any]:
    now = clock.now()
    return {
        "name": "Three purchases",
        "description": "Buy three times at any partner.",
        "kind": "purchases",
        "target": 3,
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=30)).isoformat(),
        "enrolment": "opt_in",
        "reward_points": 200,
        **overrides,
    }


def problem(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.status_code, response.json()["code"]


async def create(http, headers, clock, key: str, **overrides: Any) -> dict[str, Any]:
    response = await http.post(
        "/admin/v1/challenges",
        json=challenge_body(clock, **overrides),
        headers={**headers["marketing"], "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def audit_rows(pool, subject: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT action, admin_role FROM admin_audit_log WHERE subject = $1 ORDER BY id", subject
    )
    return [(r["action"], r["admin_role"]) for r in rows]


async def test_create_is_idempotent_by_key_and_audited(http, headers, pool, clock, make_partner):
    sponsor = await make_partner(name="Bakery Bol")
    shop = await make_partner()
    body = challenge_body(
        clock, name="  Coalition tour ", kind="distinct_partners", target=2,
        partner_ids=[shop.partner_id, sponsor.partner_id], sponsor_id=sponsor.partner_id,
    )  # fmt: skip
    key = {**headers["marketing"], "Idempotency-Key": "tour-1"}
    created = await http.post("/admin/v1/challenges", json=body, headers=key)
    assert created.status_code == 201, created.text
    challenge = created.json()
    assert challenge["name"] == "Coalition tour"  # trimmed
    assert challenge["partner_ids"] == sorted([shop.partner_id, sponsor.partner_id])
    assert (challenge["status"], challenge["phase"]) == ("active", "open")
    assert challenge["sponsor_id"] == sponsor.partner_id
    assert challenge["audience"] == "everyone" and challenge["audience_tier"] is None

    again = await http.post("/admin/v1/challenges", json=body, headers=key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == challenge["id"]
    # The same definition written differently (partners in another order) is the same.
    reordered = {**body, "partner_ids": list(reversed(body["partner_ids"]))}
    assert (await http.post("/admin/v1/challenges", json=reordered, headers=key)).status_code == 200
    conflict = await http.post(
        "/admin/v1/challenges", json={**body, "reward_points": 201}, headers=key
    )
    assert problem(conflict) == (409, "idempotency_conflict")
    assert await pool.fetchval("SELECT count(*) FROM challenges WHERE create_key = 'tour-1'") == 1
    assert await audit_rows(pool, f"challenge:{challenge['id']}") == [
        ("challenge.create", "marketing")
    ]
    after = await pool.fetchval(
        "SELECT after::text FROM admin_audit_log WHERE subject = $1",
        f"challenge:{challenge['id']}",
    )
    assert '"reward_points": 200' in after and '"kind": "distinct_partners"' in after


async def test_each_bad_field_has_its_problem_code_and_nothing_is_written(
    http, headers, pool, clock, make_partner
):
    shop = await make_partner()
    other = await make_partner()
    closed = await make_partner()
    await transaction(pool, lambda conn: set_partner_status(conn, closed.partner_id, "suspended"))
    now = clock.now()
    lapsed = {"audience": "lapsed", "lapsed_days": 60}
    personal = {**lapsed, "enrolment": "personal", "personal_days": 14}
    cases: list[tuple[dict[str, Any], str, str | None]] = [
        ({"name": "  "}, "challenge_invalid", "name"),
        ({"name": "x" * 121}, "challenge_invalid", "name"),
        ({"description": "x" * 2001}, "challenge_invalid", "description"),
        ({"kind": "lottery"}, "challenge_invalid", "kind"),
        ({"target": 0}, "challenge_invalid", "target"),
        ({"target": 100_000_001}, "challenge_invalid", "target"),
        ({"kind": "anniversary", "target": 2}, "challenge_invalid", "target"),
        ({"kind": "distinct_partners", "target": 1}, "challenge_invalid", "target"),
        (
            {
                "kind": "distinct_partners",
                "target": 3,
                "partner_ids": [shop.partner_id, other.partner_id],
            },
            "challenge_invalid",
            "target",
        ),
        (
            {
                "kind": "weekly_streak",
                "target": 4,
                "ends_at": (now + timedelta(days=13)).isoformat(),
            },
            "challenge_invalid",
            "target",
        ),
        ({"partner_ids": [shop.partner_id, shop.partner_id]}, "challenge_invalid", "partner_ids"),
        (
            {"kind": "nth_purchase", "target": 10, "partner_ids": [shop.partner_id]},
            "challenge_invalid",
            "partner_ids",
        ),
        ({"partner_ids": [shop.partner_id, 999_999]}, "partner_unknown", "999999"),
        ({"partner_ids": [closed.partner_id]}, "partner_unknown", str(closed.partner_id)),
        ({"partner_ids": [0]}, "partner_unknown", None),
        ({"starts_at": "2026-03-02T09:00:00"}, "challenge_window_invalid", "time zone"),
        ({"ends_at": (now - timedelta(hours=2)).isoformat()}, "challenge_window_invalid", None),
        (
            {
                "starts_at": (now - timedelta(days=3)).isoformat(),
                "ends_at": (now - timedelta(days=1)).isoformat(),
            },
            "challenge_window_invalid",
            "future",
        ),
        ({"ends_at": (now + timedelta(days=1200)).isoformat()}, "challenge_window_invalid", None),
        ({"enrolment": "sometimes"}, "challenge_invalid", "enrolment"),
        ({"enrolment": "personal", "personal_days": 14}, "challenge_invalid", "enrolment"),
        ({**lapsed, "enrolment": "personal"}, "challenge_invalid", "personal_days"),
        ({"personal_days": 14}, "challenge_invalid", "personal_days"),
        ({**personal, "personal_days": 0}, "challenge_invalid", "personal_days"),
        ({**personal, "personal_days": 367}, "challenge_invalid", "personal_days"),
        ({"audience": "friends"}, "challenge_invalid", "audience"),
        ({"audience": "tier"}, "challenge_invalid", "audience_tier"),
        ({"audience_tier": "gold"}, "challenge_invalid", "audience_tier"),
        ({"audience": "tier", "audience_tier": "platinum"}, "audience_tier_unknown", "platinum"),
        ({"audience": "lapsed"}, "challenge_invalid", "lapsed_days"),
        ({"lapsed_days": 30}, "challenge_invalid", "lapsed_days"),
        ({**lapsed, "lapsed_days": 0}, "challenge_invalid", "lapsed_days"),
        ({"reward_points": 0}, "challenge_invalid", "reward_points"),
        ({"reward_points": 1_000_001}, "challenge_invalid", "reward_points"),
        ({"sponsor_id": 999_999}, "sponsor_unknown", None),
        ({"sponsor_id": closed.partner_id}, "sponsor_unknown", None),
        ({"target": "3"}, "invalid_request", "target"),
        ({"colour": "red"}, "invalid_request", "colour"),
        ({"kind": None}, "invalid_request", "kind"),
    ]
    for n, (change, code, mentioned) in enumerate(cases):
        response = await http.post(
            "/admin/v1/challenges",
            json=challenge_body(clock, **change),
            headers={**headers["owner"], "Idempotency-Key": f"bad-{n}"},
        )
        assert problem(response) == (422, code), (change, response.json())
        if mentioned is not None:
            assert mentioned in response.json()["detail"], (change, response.json())

    no_key = await http.post(
        "/admin/v1/challenges", json=challenge_body(clock), headers=headers["owner"]
    )
    assert problem(no_key) == (400, "idempotency_key_missing")
    malformed = await http.post(
        "/admin/v1/challenges",
        content=b'{"name": ',
        headers={**headers["owner"], "Idempotency-Key": "bad-json",
                 "Content-Type": "application/json"},
    )  # fmt: skip
    assert problem(malformed) == (400, "malformed_json")
    assert await pool.fetchval("SELECT count(*) FROM challenges WHERE create_key LIKE 'bad-%'") == 0
    assert (
        await pool.fetchval("SELECT count(*) FROM admin_audit_log WHERE admin_role = 'owner'") == 0
    )


async def test_valid_audiences_and_win_back_are_accepted(http, headers, clock, make_partner):
    sponsor = await make_partner()
    tier = await create(http, headers, clock, "aud-tier", audience="tier", audience_tier="gold")
    assert (tier["audience"], tier["audience_tier"]) == ("tier", "gold")
    winback = await create(
        http, headers, clock, "aud-winback", enrolment="personal", personal_days=14,
        audience="lapsed", lapsed_days=60, kind="spend", target=2_500,
        sponsor_id=sponsor.partner_id,
    )  # fmt: skip
    assert (winback["enrolment"], winback["personal_days"], winback["lapsed_days"]) == (
        "personal",
        14,
        60,
    )
    streak = await create(http, headers, clock, "aud-streak", kind="weekly_streak", target=4)
    assert streak["target"] == 4
    later = await create(
        http, headers, clock, "aud-later",
        starts_at=(clock.now() + timedelta(days=2)).isoformat(), kind="anniversary", target=1,
    )  # fmt: skip
    assert later["phase"] == "scheduled"


async def test_what_may_change_before_and_after_the_start(http, headers, pool, clock, make_member):
    # Admin tokens last 15 minutes: the challenge starts in 5.
    start = clock.now() + timedelta(minutes=5)
    made = await create(
        http, headers, clock, "change-1", starts_at=start.isoformat(),
        ends_at=(start + timedelta(days=14)).isoformat(),
    )  # fmt: skip
    url = f"/admin/v1/challenges/{made['id']}"
    owner = headers["owner"]

    before_start = await http.patch(
        url, json={"target": 5, "kind": "spend", "reward_points": 300}, headers=owner
    )
    assert before_start.status_code == 200, before_start.text
    assert (before_start.json()["kind"], before_start.json()["target"]) == ("spend", 5)
    invalid = await http.patch(url, json={"kind": "anniversary"}, headers=owner)  # target 5
    assert problem(invalid)[1] == "challenge_invalid"
    unknown_tier = await http.patch(
        url, json={"audience": "tier", "audience_tier": "mithril"}, headers=owner
    )
    assert problem(unknown_tier) == (422, "audience_tier_unknown")

    clock.advance(timedelta(minutes=6))  # started
    try:
        member = await pool.fetchval(
            "SELECT id FROM members WHERE card_number = $1", await make_member()
        )
        await join_challenge(pool, member, made["id"], clock.now())
        started = await http.patch(url, json={"target": 6}, headers=owner)
        assert problem(started) == (409, "challenge_started")
        assert "target" in started.json()["detail"]
        for fixed in (
            {"starts_at": clock.now().isoformat()},
            {"sponsor_id": None, "reward_points": 1},
            {"partner_ids": [1]},
            {"audience": "vip"},
            {"enrolment": "automatic"},
        ):
            assert problem(await http.patch(url, json=fixed, headers=owner)) == (
                409,
                "challenge_started",
            ), fixed
        # The same value is no change, so it is allowed.
        same = await http.patch(url, json={"target": 5, "name": "Spend €0.05"}, headers=owner)
        assert same.status_code == 200 and same.json()["name"] == "Spend €0.05"
        new_end = clock.now() + timedelta(days=40)
        moved = await http.patch(
            url, json={"ends_at": new_end.isoformat(), "description": "Longer now"}, headers=owner
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["description"] == "Longer now"
        # The member's window follows the challenge's end.
        counts_until = await pool.fetchval(
            "SELECT counts_until FROM challenge_enrolments WHERE challenge_id = $1", made["id"]
        )
        assert counts_until == new_end
        past = await http.patch(
            url, json={"ends_at": (clock.now() - timedelta(minutes=1)).isoformat()}, headers=owner
        )
        assert problem(past) == (422, "challenge_window_invalid")
        naive = await http.patch(url, json={"ends_at": "2027-01-01T00:00:00"}, headers=owner)
        assert problem(naive) == (422, "challenge_window_invalid")
        assert problem(await http.patch(url, json={"name": ""}, headers=owner)) == (
            422,
            "challenge_invalid",
        )
        assert problem(await http.patch(url, json={"colour": "red"}, headers=owner)) == (
            422,
            "invalid_request",
        )
        missing = await http.patch("/admin/v1/challenges/999999", json={"name": "x"}, headers=owner)
        assert problem(missing) == (404, "challenge_not_found")
        actions = await audit_rows(pool, f"challenge:{made['id']}")
        assert actions == [
            ("challenge.create", "marketing"),
            ("challenge.change", "owner"),
            ("challenge.change", "owner"),
            ("challenge.change", "owner"),
        ]
        detail = (await http.get(url, headers=headers["support"])).json()
        assert detail["counts"] == {"enrolled": 1, "met": 0, "rewarded": 0}
        assert detail["phase"] == "open"
    finally:
        clock.set(start - timedelta(minutes=5))


async def test_withdraw_is_final_audited_once_and_a_no_op_when_repeated(http, headers, pool, clock):
    made = await create(http, headers, clock, "withdraw-1")
    url = f"/admin/v1/challenges/{made['id']}"
    first = await http.post(f"{url}/withdraw", headers=headers["owner"])
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["phase"]) == ("withdrawn", "withdrawn")
    again = await http.post(f"{url}/withdraw", headers=headers["marketing"])
    assert again.status_code == 200 and again.json()["status"] == "withdrawn"
    assert again.json()["updated_at"] == first.json()["updated_at"]
    changed = await http.patch(url, json={"name": "Back again"}, headers=headers["owner"])
    assert problem(changed) == (409, "challenge_withdrawn")
    missing = await http.post("/admin/v1/challenges/999999/withdraw", headers=headers["owner"])
    assert problem(missing) == (404, "challenge_not_found")
    assert await audit_rows(pool, f"challenge:{made['id']}") == [
        ("challenge.create", "marketing"),
        ("challenge.withdraw", "owner"),
    ]


async def test_roles_owner_and_marketing_write_support_and_finance_read(http, headers, pool, clock):
    made = await create(http, headers, clock, "roles-1")
    url = f"/admin/v1/challenges/{made['id']}"
    for role in ROLES:
        listed = await http.get("/admin/v1/challenges", headers=headers[role])
        assert listed.status_code == 200, (role, listed.text)
        one = await http.get(url, headers=headers[role])
        assert one.status_code == 200 and one.json()["counts"]["enrolled"] == 0
    for role in ("support", "finance"):
        writes = [
            http.post(
                "/admin/v1/challenges",
                json=challenge_body(clock),
                headers={**headers[role], "Idempotency-Key": f"roles-{role}"},
            ),
            http.patch(url, json={"name": "Mine now"}, headers=headers[role]),
            http.post(f"{url}/withdraw", headers=headers[role]),
        ]
        for write in writes:
            assert problem(await write) == (403, "forbidden_role"), role
    for request in (
        http.get("/admin/v1/challenges"),
        http.get(url),
        http.post("/admin/v1/challenges", json=challenge_body(clock),
                  headers={"Idempotency-Key": "anon"}),
        http.patch(url, json={"name": "Anonymous"}),
        http.post(f"{url}/withdraw"),
        http.get(url, headers={"Authorization": "Bearer not-a-token"}),
    ):  # fmt: skip
        status, _ = problem(await request)
        assert status == 401
    fresh = (await http.get(url, headers=headers["finance"])).json()
    assert (fresh["name"], fresh["status"]) == ("Three purchases", "active")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE admin_role IN ('support', 'finance')"
        )
        == 0
    )


async def test_list_filters_and_pages_with_a_cursor(http, headers, pool, clock):
    now = clock.now()
    ids = [
        (await create(http, headers, clock, f"page-{n}", name=f"Page {n}"))["id"] for n in range(3)
    ]
    later = await create(
        http, headers, clock, "page-later", starts_at=(now + timedelta(days=5)).isoformat()
    )
    await http.post(f"/admin/v1/challenges/{ids[0]}/withdraw", headers=headers["owner"])
    reader = headers["support"]

    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get("/admin/v1/challenges", params=params, headers=reader)).json()
        assert len(page["items"]) <= 2
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    total = await pool.fetchval("SELECT count(*) FROM challenges")
    assert len(seen) == total and seen == sorted(seen, reverse=True)

    withdrawn = await http.get("/admin/v1/challenges?status=withdrawn", headers=reader)
    withdrawn_ids = {c["id"] for c in withdrawn.json()["items"]}
    assert ids[0] in withdrawn_ids and ids[1] not in withdrawn_ids
    open_now = await http.get(
        "/admin/v1/challenges", params={"open_at": now.isoformat()}, headers=reader
    )
    open_ids = {c["id"] for c in open_now.json()["items"]}
    assert {ids[0], ids[1], ids[2]} <= open_ids and later["id"] not in open_ids
    open_later = await http.get(
        "/admin/v1/challenges",
        params={"open_at": (now + timedelta(days=6)).isoformat(), "status": "active"},
        headers=reader,
    )
    assert later["id"] in {c["id"] for c in open_later.json()["items"]}

    for params, code in (
        ({"cursor": "nonsense"}, "invalid_cursor"),
        ({"status": "deleted"}, "invalid_status"),
        ({"open_at": "2026-03-02T09:00:00"}, "invalid_range"),
    ):
        response = await http.get("/admin/v1/challenges", params=params, headers=reader)
        assert problem(response) == (400, code), params
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "many"}):
        response = await http.get("/admin/v1/challenges", params=params, headers=reader)
        assert 400 <= problem(response)[0] < 500, params
    missing = await http.get("/admin/v1/challenges/999999", headers=reader)
    assert problem(missing) == (404, "challenge_not_found")


async def test_create_challenge_in_python_refuses_the_same_key_for_another_definition(pool, clock):
    new = defs.NewChallenge(
        name="Direct",
        kind="spend",
        target=5_000,
        starts_at=clock.now(),
        ends_at=clock.now() + timedelta(days=7),
        enrolment="automatic",
        reward_points=100,
    )
    first = await transaction(pool, lambda c: defs.create_challenge(c, new, clock.now(), "py-1"))
    again = await transaction(pool, lambda c: defs.create_challenge(c, new, clock.now(), "py-1"))
    assert again == first
    other = msgspec.structs.replace(new, target=6_000)
    with pytest.raises(Conflict) as refused:
        await transaction(pool, lambda c: defs.create_challenge(c, other, clock.now(), "py-1"))
    assert refused.value.code == "idempotency_conflict"
    without_key = await transaction(pool, lambda c: defs.create_challenge(c, new, clock.now()))
    assert without_key.id != first.id


async def test_concurrent_creates_with_one_key_make_one_challenge(pool, clock):
    new = defs.NewChallenge(
        name="Raced",
        kind="purchases",
        target=2,
        starts_at=clock.now(),
        ends_at=clock.now() + timedelta(days=7),
        enrolment="opt_in",
        reward_points=50,
    )

    async def attempt() -> defs.Created:
        return await transaction(
            pool, lambda conn: defs.create_or_replay(conn, new, clock.now(), "raced-1")
        )

    results = await asyncio.gather(*(attempt() for _ in range(8)))
    assert len({r.challenge.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert await pool.fetchval("SELECT count(*) FROM challenges WHERE create_key = 'raced-1'") == 1


async def test_a_new_end_moves_each_members_window(http, headers, pool, clock, make_member):
    now = clock.now()
    made = await create(
        http, headers, clock, "winback-end", enrolment="personal", personal_days=14,
        audience="lapsed", lapsed_days=60, ends_at=(now + timedelta(days=10)).isoformat(),
    )  # fmt: skip
    member = await pool.fetchval(
        "SELECT id FROM members WHERE card_number = $1", await make_member()
    )
    # The win-back job's offer: 14 days from now, cut at the challenge's end.
    await pool.execute(
        "INSERT INTO challenge_enrolments (challenge_id, member_id, enrolled_at, counts_from,"
        " counts_until, updated_at) VALUES ($1, $2, $3, $3, $4, $3)",
        made["id"],
        member,
        now,
        now + timedelta(days=10),
    )

    async def window_end_after(days: int) -> Any:
        url = f"/admin/v1/challenges/{made['id']}"
        ends_at = (now + timedelta(days=days)).isoformat()
        response = await http.patch(url, json={"ends_at": ends_at}, headers=headers["owner"])
        assert response.status_code == 200, response.text
        return await pool.fetchval(
            "SELECT counts_until FROM challenge_enrolments WHERE challenge_id = $1", made["id"]
        )

    assert await window_end_after(30) == now + timedelta(days=14)  # the offer's own end
    assert await window_end_after(5) == now + timedelta(days=5)  # the challenge's end
