"""What members see of challenges, and joining one: the list per audience
(everyone, a tier, lapsed, win-back offers once made), the join rules and
their problem codes, the member API routes and the wallet page's form."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.db.pool import transaction
from api.engagement import challenge_definitions as defs
from api.engagement.challenge_views import (
    MemberChallenge,
    join_challenge,
    list_member_challenges,
    progress_text,
)
from api.errors import DomainError
from api.member_auth.guards import WALLET_SESSION_COOKIE
from api.member_auth.sessions import open_session
from api.member_auth.tokens import (
    MEMBER_API_AUDIENCE,
    WALLET_AUDIENCE,
    WALLET_SESSION_TTL,
    issue_session_token,
)


async def member_id_of(pool, card: str) -> int:
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


async def session_token(pool, clock, settings, card: str, kind: str) -> str:
    """A member API token or wallet cookie, minted as sign-in does."""
    member = await pool.fetchrow("SELECT id, public_id FROM members WHERE card_number = $1", card)
    now = clock.now()
    expires_at = now + (timedelta(hours=1) if kind == "api" else WALLET_SESSION_TTL)
    session_id = await transaction(
        pool, lambda conn: open_session(conn, member["id"], kind, now=now, expires_at=expires_at)
    )
    return issue_session_token(
        session_id,
        member["public_id"],
        audience=MEMBER_API_AUDIENCE if kind == "api" else WALLET_AUDIENCE,
        secret=settings.jwt_secret or "",
        now=now,
        expires_at=expires_at,
    )


async def make_challenge(pool, clock, name: str, **fields: Any) -> int:
    now = clock.now()
    definition: dict[str, Any] = {
        "name": name,
        "kind": "purchases",
        "target": 3,
        "starts_at": now - timedelta(days=1),
        "ends_at": now + timedelta(days=30),
        "enrolment": "opt_in",
        "reward_points": 200,
        **fields,
    }
    new = defs.NewChallenge(**definition)
    made = await transaction(pool, lambda conn: defs.create_challenge(conn, new, now))
    return made.id


@pytest.fixture(scope="module")
async def world(pool, clock, make_partner, make_member, client_for) -> dict[str, Any]:
    """Members of each audience and one challenge of each sort."""
    shop = await make_partner(name="Corner Shop")
    sponsor = await make_partner(name="Bakery Bol")
    cards = {name: await make_member() for name in ("new", "gold", "lapsed", "recent")}
    await pool.execute(
        "INSERT INTO member_tiers (member_id, tier_code, since) VALUES ($1, 'gold', $2)",
        await member_id_of(pool, cards["gold"]),
        clock.now(),
    )
    start = clock.now()
    clock.set(start - timedelta(days=100))  # the lapsed member's last purchase
    await client_for(shop).earn(cards["lapsed"], 2_000, "EUR", idempotency_key="lapsed-1")
    clock.set(start - timedelta(days=2))
    await client_for(shop).earn(cards["recent"], 2_000, "EUR", idempotency_key="recent-1")
    clock.set(start)
    ids = {
        "open": await make_challenge(pool, clock, "Three purchases", sponsor_id=sponsor.partner_id),
        "gold": await make_challenge(
            pool, clock, "Gold spend", kind="spend", target=5_000, audience="tier",
            audience_tier="gold",
        ),
        "auto": await make_challenge(
            pool, clock, "Two partners", kind="distinct_partners", target=2, enrolment="automatic"
        ),
        "lapsed": await make_challenge(
            pool, clock, "Come back", target=1, audience="lapsed", lapsed_days=60
        ),
        "personal": await make_challenge(
            pool, clock, "We miss you", kind="spend", target=1_000, enrolment="personal",
            personal_days=14, audience="lapsed", lapsed_days=60,
        ),
        "later": await make_challenge(
            pool, clock, "Next month", starts_at=start + timedelta(days=3),
            ends_at=start + timedelta(days=30),
        ),
        "withdrawn": await make_challenge(pool, clock, "Withdrawn"),
        "first": await make_challenge(pool, clock, "Your first purchase", kind="nth_purchase",
                                      target=1),
        "vip": await make_challenge(pool, clock, "VIP only", audience="vip"),
    }  # fmt: skip
    await transaction(pool, lambda conn: defs.withdraw_challenge(conn, ids["withdrawn"], start))
    members = {name: await member_id_of(pool, card) for name, card in cards.items()}
    return {"cards": cards, "members": members, "ids": ids, "shop": shop}


def by_name(found: list[MemberChallenge]) -> dict[str, MemberChallenge]:
    return {c.name: c for c in found}


def test_progress_text_per_kind() -> None:
    assert progress_text("spend", 1_250, 5_000) == "€12.50 of €50.00"
    assert progress_text("spend", 9_999, 123_456) == "€99.99 of €1,234.56"
    assert progress_text("purchases", 3, 5) == "3 of 5 purchases"
    assert progress_text("purchases", 0, 1) == "0 of 1 purchase"
    assert progress_text("purchases", 7, 5) == "5 of 5 purchases"  # never past the target
    assert progress_text("distinct_partners", 2, 3) == "2 of 3 partners"
    assert progress_text("weekly_streak", 2, 4) == "2 of 4 weeks in a row"
    assert progress_text("nth_purchase", 7, 10) == "purchase 7 of 10"
    assert progress_text("anniversary", 0, 1) == "buy in the week of your anniversary"
    assert progress_text("anniversary", 1, 1) == "bought in the week of your anniversary"
    with pytest.raises(ValueError):
        progress_text("lottery", 1, 1)


async def test_each_audience_sees_its_challenges(world, pool, clock) -> None:
    m, now = world["members"], clock.now()

    new = by_name(await list_member_challenges(pool, m["new"], now))
    assert set(new) == {"Three purchases", "Two partners", "Your first purchase"}
    assert (new["Three purchases"].state, new["Three purchases"].can_join) == ("open", True)
    assert new["Three purchases"].sponsor_name == "Bakery Bol"
    assert new["Three purchases"].progress_text == "0 of 3 purchases"
    auto = new["Two partners"]
    assert (auto.state, auto.state_text, auto.progress, auto.can_join) == (
        "automatic", "Counts automatically", 0, False,
    )  # fmt: skip
    assert new["Your first purchase"].progress_text == "purchase 0 of 1"

    gold = by_name(await list_member_challenges(pool, m["gold"], now))
    assert set(gold) == {"Three purchases", "Gold spend", "Two partners", "Your first purchase"}
    assert gold["Gold spend"].progress_text == "€0.00 of €50.00"

    # Bought 100 days ago: lapsed (60 days), and past the first purchase.
    lapsed = by_name(await list_member_challenges(pool, m["lapsed"], now))
    assert set(lapsed) == {"Three purchases", "Two partners", "Come back"}
    recent = by_name(await list_member_challenges(pool, m["recent"], now))
    assert set(recent) == {"Three purchases", "Two partners"}

    # A win-back offer appears once the job has offered it (an enrolment).
    await pool.execute(
        "INSERT INTO challenge_enrolments (challenge_id, member_id, enrolled_at, counts_from,"
        " counts_until, updated_at) VALUES ($1, $2, $3, $3, $4, $3)",
        world["ids"]["personal"],
        m["lapsed"],
        now,
        now + timedelta(days=14),
    )
    offered = by_name(await list_member_challenges(pool, m["lapsed"], now))
    personal = offered["We miss you"]
    assert (personal.state, personal.enrolled, personal.can_join) == ("joined", True, False)
    assert personal.until == now + timedelta(days=14)
    assert personal.progress_text == "€0.00 of €10.00"
    # Enrolments come first, ending soonest.
    assert next(iter(offered)) == "We miss you"


async def test_join_rules_and_problem_codes(world, pool, clock) -> None:
    m, ids, now = world["members"], world["ids"], clock.now()

    joined = await join_challenge(pool, m["recent"], ids["open"], now)
    assert not joined.replayed
    c = joined.challenge
    assert (c.state, c.enrolled, c.counts_from, c.counts_until) == ("joined", True, now, c.ends_at)
    again = await join_challenge(pool, m["recent"], ids["open"], now + timedelta(minutes=1))
    assert again.replayed and again.challenge.counts_from == now
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM challenge_enrolments WHERE challenge_id = $1 AND member_id = $2",
            ids["open"],
            m["recent"],
        )
        == 1
    )
    row = await pool.fetchrow(
        "SELECT enrolled_at, updated_at, progress, met, rewarded FROM challenge_enrolments"
        " WHERE challenge_id = $1 AND member_id = $2",
        ids["open"],
        m["recent"],
    )
    assert dict(row) == {
        "enrolled_at": now, "updated_at": now, "progress": 0, "met": False, "rewarded": False,
    }  # fmt: skip
    listed = by_name(await list_member_challenges(pool, m["recent"], now))
    assert listed["Three purchases"].state == "joined"

    refused = [
        (m["new"], 999_999, 404, "challenge_not_found"),
        (m["new"], ids["auto"], 409, "challenge_not_joinable"),
        (m["new"], ids["personal"], 409, "challenge_not_joinable"),
        (m["new"], ids["withdrawn"], 409, "challenge_not_joinable"),
        (m["new"], ids["later"], 409, "challenge_closed"),
        (m["new"], ids["gold"], 403, "not_in_audience"),
        (m["new"], ids["lapsed"], 403, "not_in_audience"),
        (m["new"], ids["vip"], 403, "not_in_audience"),
        (m["recent"], ids["first"], 403, "not_in_audience"),  # made a purchase already
    ]
    for member_id, challenge_id, status, code in refused:
        with pytest.raises(DomainError) as problem:
            await join_challenge(pool, member_id, challenge_id, now)
        assert (problem.value.status, problem.value.code) == (status, code), challenge_id
    assert (await join_challenge(pool, m["gold"], ids["gold"], now)).challenge.state == "joined"
    assert (await join_challenge(pool, m["lapsed"], ids["lapsed"], now)).challenge.enrolled

    ends_soon = await make_challenge(pool, clock, "Ends soon", ends_at=now + timedelta(hours=1))
    with pytest.raises(DomainError) as ended:
        await join_challenge(pool, m["new"], ends_soon, now + timedelta(hours=1))
    assert ended.value.code == "challenge_closed"


async def test_withdrawn_ended_and_recently_met_enrolments(world, pool, clock) -> None:
    member, now = world["members"]["gold"], clock.now()
    shown = await make_challenge(pool, clock, "Met last week")
    gone = await make_challenge(pool, clock, "Met long ago")
    missed = await make_challenge(pool, clock, "Missed")
    withdrawn = await make_challenge(pool, clock, "Withdrawn after joining")
    for challenge_id in (shown, gone, missed, withdrawn):
        await join_challenge(pool, member, challenge_id, now)
    await pool.execute(
        "UPDATE challenge_enrolments SET counts_from = $2::timestamptz - interval '20 days',"
        " counts_until = $2::timestamptz - interval '1 day', met = $3,"
        " met_at = $4, progress = 3 WHERE challenge_id = $1 AND member_id = $5",
        shown, now, True, now - timedelta(days=7), member,
    )  # fmt: skip
    await pool.execute(
        "UPDATE challenge_enrolments SET counts_from = $2::timestamptz - interval '20 days',"
        " counts_until = $2::timestamptz - interval '1 day', met = true,"
        " met_at = $2::timestamptz - interval '40 days', progress = 3 WHERE challenge_id = $1 AND member_id = $3",
        gone, now, member,
    )  # fmt: skip
    await pool.execute(
        "UPDATE challenge_enrolments SET counts_from = $2::timestamptz - interval '20 days',"
        " counts_until = $2::timestamptz - interval '1 day'"
        " WHERE challenge_id = $1 AND member_id = $3",
        missed, now, member,
    )  # fmt: skip
    await transaction(pool, lambda conn: defs.withdraw_challenge(conn, withdrawn, now))
    # Withdrawing leaves enrolments (and any reward paid) as they were.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM challenge_enrolments WHERE challenge_id = $1", withdrawn
        )
        == 1
    )
    listed = by_name(await list_member_challenges(pool, member, now))
    assert "Met last week" in listed and listed["Met last week"].state == "met"
    assert listed["Met last week"].progress_text == "3 of 3 purchases"
    assert not {"Met long ago", "Missed", "Withdrawn after joining"} & set(listed)


async def test_member_api_lists_and_joins(world, http, pool, clock, settings) -> None:
    card, ids = world["cards"]["new"], world["ids"]
    token = await session_token(pool, clock, settings, card, "api")
    auth = {"Authorization": f"Bearer {token}"}

    listed = await http.get("/member/v1/challenges", headers=auth)
    assert listed.status_code == 200, listed.text
    items = {c["name"]: c for c in listed.json()["items"]}
    three = items["Three purchases"]
    assert (three["state"], three["can_join"], three["progress_text"]) == (
        "open", True, "0 of 3 purchases",
    )  # fmt: skip
    assert three["reward_points"] == 200 and three["sponsor_name"] == "Bakery Bol"

    joined = await http.post(f"/member/v1/challenges/{ids['open']}/join", headers=auth)
    assert joined.status_code == 201, joined.text
    assert (joined.json()["state"], joined.json()["counts_from"]) == (
        "joined",
        clock.now().isoformat().replace("+00:00", "Z"),
    )
    again = await http.post(f"/member/v1/challenges/{ids['open']}/join", headers=auth)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    for path, status, code in (
        (f"/member/v1/challenges/{ids['auto']}/join", 409, "challenge_not_joinable"),
        (f"/member/v1/challenges/{ids['gold']}/join", 403, "not_in_audience"),
        (f"/member/v1/challenges/{ids['later']}/join", 409, "challenge_closed"),
        ("/member/v1/challenges/999999/join", 404, "challenge_not_found"),
    ):
        response = await http.post(path, headers=auth)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert (response.status_code, response.json()["code"]) == (status, code), path
    for headers in ({}, {"Authorization": "Bearer nonsense"}):
        assert (await http.get("/member/v1/challenges", headers=headers)).status_code == 401
        assert (
            await http.post(f"/member/v1/challenges/{ids['open']}/join", headers=headers)
        ).status_code == 401
    schema = (await http.get("/schema/openapi.json")).json()
    assert "/member/v1/challenges/{challenge_id}/join" in schema["paths"]
    assert "/admin/v1/challenges/{challenge_id}" in schema["paths"]


async def test_wallet_page_lists_and_joins_with_the_csrf_token(world, app, pool, clock, settings):
    card, ids = world["cards"]["gold"], world["ids"]
    cookie = await session_token(pool, clock, settings, card, "wallet")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://localhost",
        cookies={WALLET_SESSION_COOKIE: cookie},
    ) as wallet:
        page = await wallet.get("/challenges")
        assert page.status_code == 200
        assert 'href="/challenges" aria-current="page"' in page.text
        assert "Three purchases" in page.text and "sponsored by Bakery Bol" in page.text
        assert re.search(r'<progress id="challenge-\d+-progress" max="3" value="0">', page.text)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        forged = await wallet.post(f"/challenges/{ids['open']}/join", data={})
        assert forged.status_code == 403
        assert "Three purchases" not in {
            c.name for c in await list_member_challenges(pool, world["members"]["gold"], clock.now())
            if c.enrolled
        }  # fmt: skip
        joined = await wallet.post(f"/challenges/{ids['open']}/join", data={"csrf_token": csrf})
        assert joined.status_code == 200 and "You joined" in joined.text
        fragment = await wallet.post(
            f"/challenges/{ids['auto']}/join",
            data={"csrf_token": csrf},
            headers={"HX-Request": "true"},
        )
        assert fragment.status_code == 409 and "<html" not in fragment.text
        assert 'role="alert"' in fragment.text
    anonymous = await httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ).get("/challenges")
    assert anonymous.status_code == 303


async def test_concurrent_joins_make_one_enrolment(world, pool, clock) -> None:
    member, now = world["members"]["new"], clock.now()
    challenge_id = await make_challenge(pool, clock, "Raced join")
    results = await asyncio.gather(
        *(join_challenge(pool, member, challenge_id, now) for _ in range(8))
    )
    assert sum(not r.replayed for r in results) == 1
    assert {r.challenge.state for r in results} == {"joined"}
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM challenge_enrolments WHERE challenge_id = $1", challenge_id
        )
        == 1
    )


def test_states_and_their_words() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    base = MemberChallenge(
        id=1, name="x", description="", kind="purchases", target=3, progress=0,
        reward_points=10, sponsor_name=None, enrolment="opt_in", starts_at=now,
        ends_at=datetime(2027, 1, 1, tzinfo=UTC), enrolled=False, counts_from=None,
        counts_until=None, met=False, rewarded=False,
    )  # fmt: skip
    assert (base.state, base.can_join) == ("open", True)
    assert base.last_moment.date().isoformat() == "2026-12-31"  # "until 31 Dec"
    joined = replace(base, enrolled=True, counts_from=now, counts_until=base.ends_at, progress=5)
    assert (joined.state, joined.can_join, joined.progress_shown) == ("joined", False, 3)
    assert replace(joined, met=True).state_text == "Completed: the reward is on its way"
    assert replace(joined, met=True, rewarded=True).state_text == "Completed, reward paid"
    assert replace(base, enrolment="automatic").state_text == "Counts automatically"
