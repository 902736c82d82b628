"""Referrals: codes and links, the claim rules through the member API, the
rewards paid after the new member's first qualifying purchase (exactly once,
within the monthly cap, reversed by a full refund), racing processors, the
admin API (roles, bad input, audit) and the public join page."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from itertools import count
from typing import Any

import pytest

from api.db.pool import transaction
from api.engagement.referrals import (
    CODE_ALPHABET,
    CODE_LENGTH,
    mailbox,
    month_bounds,
    normalize_code,
    process_referrals,
    referral_code,
)
from api.ledger.check import check_ledger
from tests.conftest import admin_headers, balances

_emails = count(1)


@pytest.fixture(scope="module")
def member(make_member):
    """A member with an address of their own (and a name, when given)."""

    async def make(email: str | None = None, name: str | None = None) -> str:
        return await make_member(
            email=email or f"member{next(_emails)}@example.com", display_name=name
        )

    return make


def problem_code(response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.json()["code"]


async def member_id_of(pool, card: str) -> int:
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


async def code_of(pool, clock, card: str) -> str:
    return await referral_code(pool, await member_id_of(pool, card), clock.now())


async def claim(http, bearer, card: str, code: str):
    return await http.post(
        "/member/v1/referral/claim", json={"code": code}, headers=await bearer(card)
    )


async def refer(http, bearer, pool, clock, referrer: str, referee: str) -> None:
    answer = await claim(http, bearer, referee, await code_of(pool, clock, referrer))
    assert answer.status_code == 201, answer.text


async def process(pool, clock, *cards: str) -> None:
    ids = [await member_id_of(pool, card) for card in cards]
    await transaction(pool, lambda conn: process_referrals(conn, ids, clock.now()))


async def referral_of(pool, referee: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT * FROM referrals WHERE referee_id = $1", await member_id_of(pool, referee)
    )
    return dict(row)


async def rewards_of(pool, card: str) -> list[tuple[str, int, str]]:
    rows = await pool.fetch(
        "SELECT t.kind, t.points, t.memo FROM transactions t JOIN members m ON m.id = t.member_id"
        " WHERE m.card_number = $1 AND t.kind IN ('reward', 'reward_reversal')"
        " ORDER BY t.created_at, t.kind",
        card,
    )
    return [(r["kind"], r["points"], r["memo"]) for r in rows]


async def inbox_of(pool, card: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT i.kind, i.params::text AS params FROM inbox_messages i"
        " JOIN members m ON m.id = i.member_id WHERE m.card_number = $1 ORDER BY i.id",
        card,
    )
    return [(r["kind"], r["params"]) for r in rows]


async def set_terms(pool, **terms: Any) -> None:
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(terms, start=1))
    await pool.execute(f"UPDATE referral_settings SET {sets}", *terms.values())


async def assert_ledger_clean(pool) -> None:
    async with pool.acquire() as conn:
        assert [v.describe() for v in await check_ledger(conn)] == []


@pytest.fixture(scope="module")
async def shop(make_partner):
    return await make_partner()


# Codes and links ----------------------------------------------------------------


async def test_a_members_code_is_made_once_stays_the_same_and_avoids_ambiguous_characters(
    pool, clock, member, http, bearer
):
    card = await member()
    member_id = await member_id_of(pool, card)
    # Two first asks at once make one code.
    first, second = await asyncio.gather(
        referral_code(pool, member_id, clock.now()), referral_code(pool, member_id, clock.now())
    )
    assert first == second == await referral_code(pool, member_id, clock.now())
    assert len(first) == CODE_LENGTH and set(first) <= set(CODE_ALPHABET)
    assert not set("0O1I") & set(CODE_ALPHABET)
    answer = await http.get("/member/v1/referral", headers=await bearer(card))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["code"] == first
    assert body["link"] == f"http://kring.test/join/{first}"
    assert (body["referrer_points"], body["referee_points"], body["min_purchase_cents"]) == (
        250,
        250,
        1000,
    )
    assert (body["friends_joined"], body["can_enter_code"], body["referred_by"]) == (0, True, None)
    codes = {await referral_code(pool, await member_id_of(pool, await member()), clock.now())}
    codes |= {await referral_code(pool, await member_id_of(pool, await member()), clock.now())}
    assert first not in codes and len(codes) == 2
    assert (await http.get("/member/v1/referral")).status_code == 401


def test_typed_codes_and_mailboxes_are_normalised():
    assert normalize_code(" k7qw-3mzp ") == "K7QW3MZP"
    assert normalize_code("K7QW3MZ") is None
    assert normalize_code("K7QW3MZ!") is None
    assert normalize_code("K7QW3MZPX") is None
    assert mailbox("Ann+Kring@Example.com") == "ann@example.com"
    assert mailbox(None) is None


# Claiming -----------------------------------------------------------------------


async def test_claim_rules_each_refused_with_its_code_and_nothing_written(
    pool, clock, member, http, bearer, shop, client_for
):
    referrer = await member("ann@example.com", "Ann Jansen")
    code = await code_of(pool, clock, referrer)
    newcomer = await member()

    unknown = await claim(http, bearer, newcomer, "ZZZZ2222")
    assert (unknown.status_code, problem_code(unknown)) == (404, "referral_code_unknown")
    malformed = await claim(http, bearer, newcomer, "abc")
    assert (malformed.status_code, problem_code(malformed)) == (404, "referral_code_unknown")

    own = await claim(http, bearer, referrer, code)
    assert (own.status_code, problem_code(own)) == (422, "self_referral")

    # The same mailbox under a second account (a "+tag", other case).
    twin = await member("Ann+second@EXAMPLE.com")
    same_mailbox = await claim(http, bearer, twin, code)
    assert (same_mailbox.status_code, problem_code(same_mailbox)) == (422, "self_referral")

    old = await member()
    await pool.execute(
        "UPDATE members SET created_at = $2 WHERE id = $1",
        await member_id_of(pool, old),
        clock.now() - timedelta(days=31),
    )
    too_old = await claim(http, bearer, old, code)
    assert (too_old.status_code, problem_code(too_old)) == (422, "referral_too_late")

    bought = await member()
    async with client_for(shop) as client:
        await client.earn(card_number=bought, amount_cents=500, currency="EUR")
    after_purchase = await claim(http, bearer, bought, code)
    assert (after_purchase.status_code, problem_code(after_purchase)) == (422, "referral_too_late")

    await set_terms(pool, enabled=False)
    try:
        disabled = await claim(http, bearer, newcomer, code)
        assert (disabled.status_code, problem_code(disabled)) == (422, "referrals_disabled")
    finally:
        await set_terms(pool, enabled=True)

    assert (
        await pool.fetchval(
            "SELECT count(*) FROM referrals WHERE referrer_id = $1",
            await member_id_of(pool, referrer),
        )
        == 0
    )

    made = await claim(http, bearer, newcomer, code.lower())  # typed in lower case
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "pending"
    again = await claim(http, bearer, newcomer, code)
    assert again.status_code == 200 and again.json() == made.json()
    other = await claim(http, bearer, newcomer, await code_of(pool, clock, await member()))
    assert (other.status_code, problem_code(other)) == (409, "already_referred")
    # Two members referring each other is not a new member brought in.
    back = await claim(http, bearer, referrer, await code_of(pool, clock, newcomer))
    assert (back.status_code, problem_code(back)) == (422, "self_referral")

    summary = (await http.get("/member/v1/referral", headers=await bearer(newcomer))).json()
    assert (summary["referred_by"], summary["referral_status"], summary["can_enter_code"]) == (
        "Ann",
        "pending",
        False,
    )
    assert (await http.get("/member/v1/referral", headers=await bearer(referrer))).json()[
        "friends_joined"
    ] == 1
    assert await pool.fetchval("SELECT count(*) FROM referrals") >= 1


async def test_claim_bodies_are_checked(pool, clock, member, http, bearer):
    card = await member()
    headers = await bearer(card)
    for body in ({"code": 12345678}, {}, {"code": "K7QW3MZP", "extra": 1}, {"code": "x" * 51}):
        answer = await http.post("/member/v1/referral/claim", json=body, headers=headers)
        assert (answer.status_code, problem_code(answer)) == (422, "invalid_request"), body
    broken = await http.post("/member/v1/referral/claim", content=b"{not json", headers=headers)
    assert broken.status_code == 400
    anonymous = await http.post("/member/v1/referral/claim", json={"code": "K7QW3MZP"})
    assert anonymous.status_code == 401
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM referrals WHERE referee_id = $1", await member_id_of(pool, card)
        )
        == 0
    )


# Processing ---------------------------------------------------------------------


async def test_the_first_qualifying_purchase_rewards_both_exactly_once(
    pool, clock, member, http, bearer, shop, client_for
):
    referrer, referee = await member(), await member()
    await refer(http, bearer, pool, clock, referrer, referee)
    before = await balances(pool, referrer)
    async with client_for(shop) as client:
        await client.earn(card_number=referee, amount_cents=999, currency="EUR")
        await process(pool, clock, referee)
        assert (await referral_of(pool, referee))["status"] == "pending"  # below the minimum
        assert await rewards_of(pool, referee) == []
        await client.earn(card_number=referee, amount_cents=1000, currency="EUR")
    await process(pool, clock, referee)
    await process(pool, clock, referee, referrer)  # again: nothing more
    referral = await referral_of(pool, referee)
    assert referral["status"] == "rewarded" and referral["qualified_at"] == clock.now()
    assert await rewards_of(pool, referrer) == [("reward", 250, "Referral: you invited a friend")]
    assert await rewards_of(pool, referee) == [("reward", 250, "Referral: welcome bonus")]
    ids = await pool.fetch(
        "SELECT member_id FROM transactions WHERE id = ANY($1::uuid[]) AND kind = 'reward'",
        [referral["referrer_reward_id"], referral["referee_reward_id"]],
    )
    assert sorted(r["member_id"] for r in ids) == sorted(
        [await member_id_of(pool, referrer), await member_id_of(pool, referee)]
    )
    assert (await balances(pool, referrer))["available"] == before["available"] + 250
    assert (await balances(pool, referee))["available"] == 250  # the earn's points are pending
    assert [k for k, _ in await inbox_of(pool, referrer)] == ["referral_rewarded"]
    assert '"role": "referee"' in (await inbox_of(pool, referee))[0][1]
    summary = (await http.get("/member/v1/referral", headers=await bearer(referrer))).json()
    assert (summary["friends_rewarded"], summary["rewarded_this_month"]) == (1, 1)
    await assert_ledger_clean(pool)


async def test_the_engagement_processor_pays_after_an_earn_and_reverses_after_a_refund(
    pool, clock, member, http, bearer, shop, client_for
):
    from api.engagement.challenge_progress import process_dirty

    referrer, referee = await member(), await member()
    await refer(http, bearer, pool, clock, referrer, referee)
    async with client_for(shop) as client:
        earn = await client.earn(card_number=referee, amount_cents=2500, currency="EUR")
        await process_dirty(pool, clock.now())
        assert (await referral_of(pool, referee))["status"] == "rewarded"
        await client.refund(earn.id, 2500, "EUR")
    await process_dirty(pool, clock.now())
    assert (await referral_of(pool, referee))["status"] == "reversed"
    assert [k for k, _, _ in await rewards_of(pool, referrer)] == ["reward", "reward_reversal"]
    await assert_ledger_clean(pool)


async def test_a_zero_amount_pays_that_side_nothing(
    pool, clock, member, http, bearer, shop, client_for
):
    referrer, referee = await member(), await member()
    await refer(http, bearer, pool, clock, referrer, referee)
    await set_terms(pool, referrer_points=0, referee_points=40)
    try:
        async with client_for(shop) as client:
            await client.earn(card_number=referee, amount_cents=5000, currency="EUR")
        await process(pool, clock, referee)
    finally:
        await set_terms(pool, referrer_points=250, referee_points=250)
    referral = await referral_of(pool, referee)
    assert referral["status"] == "rewarded" and referral["referrer_reward_id"] is None
    assert await rewards_of(pool, referrer) == []
    assert await rewards_of(pool, referee) == [("reward", 40, "Referral: welcome bonus")]


async def test_a_blocked_referrer_is_paid_nothing(
    pool, clock, member, http, bearer, shop, client_for
):
    referrer, referee = await member(), await member()
    await refer(http, bearer, pool, clock, referrer, referee)
    await pool.execute(
        "UPDATE members SET status = 'blocked' WHERE id = $1", await member_id_of(pool, referrer)
    )
    async with client_for(shop) as client:
        await client.earn(card_number=referee, amount_cents=5000, currency="EUR")
    await process(pool, clock, referee)
    referral = await referral_of(pool, referee)
    assert referral["status"] == "rewarded" and referral["referrer_reward_id"] is None
    assert await rewards_of(pool, referrer) == []
    assert len(await rewards_of(pool, referee)) == 1


async def test_a_full_refund_reverses_both_rewards_for_good(
    pool, clock, member, http, bearer, shop, client_for
):
    referrer, referee = await member(), await member()
    await refer(http, bearer, pool, clock, referrer, referee)
    async with client_for(shop) as client:
        small = await client.earn(card_number=referee, amount_cents=300, currency="EUR")
        big = await client.earn(card_number=referee, amount_cents=4000, currency="EUR")
        await process(pool, clock, referee)
        assert (await referral_of(pool, referee))["status"] == "rewarded"
        await client.refund(big.id, 3000, "EUR")  # partly: the purchase still stands
        await process(pool, clock, referee)
        assert (await referral_of(pool, referee))["status"] == "rewarded"
        await client.refund(big.id, 1000, "EUR")  # the rest: nothing qualifies now
        await client.refund(small.id, 300, "EUR")
        await process(pool, clock, referee)
        referral = await referral_of(pool, referee)
        assert referral["status"] == "reversed"
        assert referral["referrer_reversal_id"] and referral["referee_reversal_id"]
        for card in (referrer, referee):
            assert [k for k, _, _ in await rewards_of(pool, card)] == ["reward", "reward_reversal"]
            assert (await balances(pool, card))["available"] == 0
            assert [k for k, _ in await inbox_of(pool, card)] == [
                "referral_rewarded",
                "referral_reversed",
            ]
        # A new qualifying purchase does not reward the referral again.
        await client.earn(card_number=referee, amount_cents=5000, currency="EUR")
    await process(pool, clock, referee)
    assert (await referral_of(pool, referee))["status"] == "reversed"
    assert len(await rewards_of(pool, referrer)) == 2
    await assert_ledger_clean(pool)


async def test_raising_the_minimum_later_does_not_reverse_a_reward(
    pool, clock, member, http, bearer, shop, client_for
):
    referrer, referee = await member(), await member()
    await refer(http, bearer, pool, clock, referrer, referee)
    async with client_for(shop) as client:
        await client.earn(card_number=referee, amount_cents=1200, currency="EUR")
        await process(pool, clock, referee)
        await set_terms(pool, min_purchase_cents=5000)
        try:
            await client.earn(card_number=referee, amount_cents=300, currency="EUR")
            await process(pool, clock, referee)
        finally:
            await set_terms(pool, min_purchase_cents=1000)
    referral = await referral_of(pool, referee)
    assert (referral["status"], referral["qualified_min_purchase_cents"]) == ("rewarded", 1000)
    assert len(await rewards_of(pool, referrer)) == 1


async def test_two_processors_racing_pay_a_referral_once(
    pool, clock, member, http, bearer, shop, client_for
):
    referrer, referee = await member(), await member()
    await refer(http, bearer, pool, clock, referrer, referee)
    async with client_for(shop) as client:
        await client.earn(card_number=referee, amount_cents=2000, currency="EUR")
    await asyncio.gather(*(process(pool, clock, referee) for _ in range(4)))
    assert (await referral_of(pool, referee))["status"] == "rewarded"
    assert len(await rewards_of(pool, referrer)) == 1
    assert len(await rewards_of(pool, referee)) == 1
    assert (await balances(pool, referrer))["available"] == 250
    await assert_ledger_clean(pool)


async def test_two_referees_of_one_referrer_processed_at_once_keep_the_cap(
    pool, clock, member, http, bearer, shop, client_for
):
    referrer = await member()
    referees = [await member() for _ in range(3)]
    for referee in referees:
        await refer(http, bearer, pool, clock, referrer, referee)
    async with client_for(shop) as client:
        for referee in referees:
            await client.earn(card_number=referee, amount_cents=2000, currency="EUR")
    await set_terms(pool, rewards_per_month_max=1)
    try:
        await asyncio.gather(*(process(pool, clock, referee) for referee in referees))
    finally:
        await set_terms(pool, rewards_per_month_max=5)
    statuses = sorted([(await referral_of(pool, r))["status"] for r in referees])
    assert statuses == ["capped", "capped", "rewarded"]
    assert len(await rewards_of(pool, referrer)) == 1
    capped = [r for r in referees if (await rewards_of(pool, r)) == []]
    assert len(capped) == 2  # a capped referral pays nobody
    await assert_ledger_clean(pool)


async def test_the_monthly_cap_caps_the_third_and_next_month_pays(
    pool, clock, member, http, bearer, shop, client_for
):
    await set_terms(pool, rewards_per_month_max=2)
    try:
        referrer = await member()
        referees = [await member() for _ in range(3)]
        for referee in referees:
            await refer(http, bearer, pool, clock, referrer, referee)
        async with client_for(shop) as client:
            for referee in referees:
                await client.earn(card_number=referee, amount_cents=1500, currency="EUR")
                await process(pool, clock, referee)
        assert [(await referral_of(pool, r))["status"] for r in referees] == [
            "rewarded",
            "rewarded",
            "capped",
        ]
        summary = (await http.get("/member/v1/referral", headers=await bearer(referrer))).json()
        assert (summary["rewarded_this_month"], summary["rewards_per_month_max"]) == (2, 2)
        # The next Amsterdam month: a new friend's purchase pays again.
        _, month_end = month_bounds(clock.now())
        clock.advance(month_end - clock.now() + timedelta(hours=1))
        late = await member()
        await refer(http, bearer, pool, clock, referrer, late)
        async with client_for(shop) as client:
            await client.earn(card_number=late, amount_cents=1500, currency="EUR")
        await process(pool, clock, late, *referees)
        assert (await referral_of(pool, late))["status"] == "rewarded"
        assert (await referral_of(pool, referees[2]))["status"] == "capped"  # capped for good
        assert len(await rewards_of(pool, referrer)) == 3
        # Paused: a cap of 0 pays nobody.
        await set_terms(pool, rewards_per_month_max=0)
        paused = await member()
        await refer(http, bearer, pool, clock, await member(), paused)
        async with client_for(shop) as client:
            await client.earn(card_number=paused, amount_cents=1500, currency="EUR")
        await process(pool, clock, paused)
        assert (await referral_of(pool, paused))["status"] == "capped"
        assert await rewards_of(pool, paused) == []
    finally:
        await set_terms(pool, rewards_per_month_max=5)
    await assert_ledger_clean(pool)


def test_months_are_amsterdam_calendar_months():
    from datetime import UTC, datetime

    start, end = month_bounds(datetime(2026, 3, 31, 22, 30, tzinfo=UTC))  # 1 April, 00:30 local
    assert (start.astimezone(UTC), end.astimezone(UTC)) == (
        datetime(2026, 3, 31, 22, 0, tzinfo=UTC),
        datetime(2026, 4, 30, 22, 0, tzinfo=UTC),
    )
    start, end = month_bounds(datetime(2026, 12, 15, tzinfo=UTC))
    assert end.astimezone(UTC) == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)


# Admin API ----------------------------------------------------------------------

TERMS = {
    "enabled": True,
    "referrer_points": 300,
    "referee_points": 200,
    "min_purchase_cents": 2500,
    "rewards_per_month_max": 5,
    "join_within_days": 30,
}


async def test_admin_reads_and_changes_the_terms_by_role_audited(pool, clock, http):
    marketing = await admin_headers(pool, clock, "marketing", "m@kring.test")
    finance = await admin_headers(pool, clock, "finance", "f@kring.test")
    support = await admin_headers(pool, clock, "support", "s@kring.test")
    current = await http.get("/admin/v1/referral-settings", headers=marketing)
    assert current.status_code == 200, current.text
    before = current.json()
    assert before["referrer_points"] == 250

    anonymous = await http.put("/admin/v1/referral-settings", json=TERMS)
    assert (anonymous.status_code, problem_code(anonymous)) == (401, "missing_token")
    for headers in (finance, support):
        refused = await http.put("/admin/v1/referral-settings", json=TERMS, headers=headers)
        assert (refused.status_code, problem_code(refused)) == (403, "forbidden_role")
    no_read = await http.get("/admin/v1/referral-settings", headers=finance)
    assert (no_read.status_code, problem_code(no_read)) == (403, "forbidden_role")
    assert (await http.get("/admin/v1/referral-settings", headers=support)).status_code == 200

    bad = [
        ({**TERMS, "referrer_points": -1}, "invalid_referral_settings"),
        ({**TERMS, "referee_points": 1_000_001}, "invalid_referral_settings"),
        ({**TERMS, "min_purchase_cents": 0}, "invalid_referral_settings"),
        ({**TERMS, "rewards_per_month_max": -3}, "invalid_referral_settings"),
        ({**TERMS, "join_within_days": 0}, "invalid_referral_settings"),
        ({**TERMS, "referrer_points": "300"}, "invalid_request"),
        ({**TERMS, "surprise": 1}, "invalid_request"),
        ({k: v for k, v in TERMS.items() if k != "enabled"}, "invalid_request"),
    ]
    for body, code in bad:
        answer = await http.put("/admin/v1/referral-settings", json=body, headers=marketing)
        assert (answer.status_code, problem_code(answer)) == (422, code), body
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE action = 'referral_settings.change'"
        )
        == 0
    )

    try:
        changed = await http.put("/admin/v1/referral-settings", json=TERMS, headers=marketing)
        assert changed.status_code == 200, changed.text
        assert changed.json() == TERMS
        assert (await http.get("/admin/v1/referral-settings", headers=marketing)).json() == TERMS
        audit = await pool.fetchrow(
            "SELECT admin_email, admin_role, subject, before::text AS before, after::text AS after"
            " FROM admin_audit_log WHERE action = 'referral_settings.change'"
        )
        assert (audit["admin_email"], audit["admin_role"], audit["subject"]) == (
            "m@kring.test",
            "marketing",
            "referral_settings",
        )
        assert '"referrer_points": 250' in audit["before"]
        assert '"referrer_points": 300' in audit["after"]
    finally:
        await set_terms(pool, referrer_points=250, referee_points=250, min_purchase_cents=1000)


async def test_admin_lists_referrals_filtered_and_paginated(pool, clock, http, member, bearer):
    support = await admin_headers(pool, clock, "support", "s2@kring.test")
    finance = await admin_headers(pool, clock, "finance", "f2@kring.test")
    referrer = await member()
    friends = [await member(), await member(), await member()]
    for friend in friends:
        await refer(http, bearer, pool, clock, referrer, friend)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"referrer": referrer, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await http.get("/admin/v1/referrals", params=params, headers=support)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [item["referee_card_number"] for item in body["items"]]
        assert all(item["referrer_card_number"] == referrer for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(friends))  # newest first, each once
    public_id = str(
        await pool.fetchval("SELECT public_id FROM members WHERE card_number = $1", referrer)
    )
    by_id = await http.get(
        "/admin/v1/referrals", params={"referrer": public_id, "status": "pending"}, headers=support
    )
    assert len(by_id.json()["items"]) == 3
    rewarded = await http.get(
        "/admin/v1/referrals", params={"referrer": referrer, "status": "rewarded"}, headers=support
    )
    assert rewarded.json()["items"] == []
    for params, code in (
        ({"status": "paid"}, "invalid_status"),
        ({"cursor": "nonsense!"}, "invalid_cursor"),
        ({"referrer": "someone"}, "invalid_referrer"),
    ):
        answer = await http.get("/admin/v1/referrals", params=params, headers=support)
        assert (answer.status_code, problem_code(answer)) == (400, code), params
    no_limit = await http.get("/admin/v1/referrals", params={"limit": "0"}, headers=support)
    assert (no_limit.status_code, problem_code(no_limit)) == (422, "invalid_request")
    refused = await http.get("/admin/v1/referrals", headers=finance)
    assert (refused.status_code, problem_code(refused)) == (403, "forbidden_role")
    assert (await http.get("/admin/v1/referrals")).status_code == 401


# Pages --------------------------------------------------------------------------


async def test_the_join_page_names_the_inviter_by_first_name_only(pool, clock, http, member):
    named = await member(name="Bea de Vries")
    page = await http.get(f"/join/{await code_of(pool, clock, named)}")
    assert page.status_code == 200
    assert "Bea invites you to Kring" in page.text and "de Vries" not in page.text
    assert "/sign-in?next=/refer%3Fcode%3D" in page.text
    anonymous = await member()
    page = await http.get(f"/join/{(await code_of(pool, clock, anonymous)).lower()}")
    assert page.status_code == 200 and "A friend invites you to Kring" in page.text
    missing = await http.get("/join/ZZZZ2222")
    assert missing.status_code == 404 and "not valid" in missing.text
