"""The member's inbox: posting (once per dedupe key), rendering as the profile
says now, reading and marking read (only one's own), the member API and the
wallet pages, expiry reminders, and the tier and lottery messages."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from api.db.pool import transaction
from api.engagement import inbox
from api.engagement import lotteries as lots
from api.engagement.reminders import (
    EXPIRY_NOTICE_DAYS,
    OncePerDay,
    announce_expiring_points,
    expiry_dedupe_key,
)
from api.engagement.tiers import review_tiers
from api.errors import NotFound
from api.jobs.periodic import PERIODIC_JOBS
from api.ledger.lots import release_due
from api.member_auth.guards import WALLET_SESSION_COOKIE
from api.member_auth.sessions import open_session
from api.member_auth.tokens import (
    MEMBER_API_AUDIENCE,
    WALLET_AUDIENCE,
    WALLET_SESSION_TTL,
    issue_session_token,
)

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


async def member_id_of(pool, card: str) -> int:
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


async def post(pool, member_id: int, kind: str, params: dict[str, Any], now, key=None):
    return await transaction(pool, lambda conn: inbox.post(conn, member_id, kind, params, now, key))


async def messages_of(pool, member_id: int) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT kind, params::text AS params FROM inbox_messages WHERE member_id = $1 ORDER BY id",
        member_id,
    )
    return [(r["kind"], json.loads(r["params"])) for r in rows]


def problem_code(response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.json()["code"]


async def open_token(pool, clock, settings, card: str, kind: str) -> str:
    member = await pool.fetchrow("SELECT id, public_id FROM members WHERE card_number = $1", card)
    now = clock.now()
    expires_at = now + (WALLET_SESSION_TTL if kind == "wallet" else timedelta(hours=1))
    session_id = await transaction(
        pool, lambda conn: open_session(conn, member["id"], kind, now=now, expires_at=expires_at)
    )
    return issue_session_token(
        session_id,
        member["public_id"],
        audience=WALLET_AUDIENCE if kind == "wallet" else MEMBER_API_AUDIENCE,
        secret=settings.jwt_secret or "",
        now=now,
        expires_at=expires_at,
    )


@pytest.fixture(scope="module")
def bearer(pool, clock, settings):
    async def mint(card: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await open_token(pool, clock, settings, card, 'api')}"}

    return mint


@pytest.fixture(scope="module")
def wallet(app, pool, clock, settings):
    async def make(card: str) -> httpx.AsyncClient:
        cookie = await open_token(pool, clock, settings, card, "wallet")
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://localhost",
            cookies={WALLET_SESSION_COOKIE: cookie},
        )

    return make


# Posting and rendering ---------------------------------------------------------


async def test_post_once_per_dedupe_key_and_refuse_unknown_kinds(make_member, pool, clock):
    member = await member_id_of(pool, await make_member())
    now = clock.now()
    params = {"points": 40, "expires_on": "2026-04-01"}
    first = await post(pool, member, "expiry_reminder", params, now, "expiry:2026-04-01")
    again = await post(pool, member, "expiry_reminder", params, now, "expiry:2026-04-01")
    assert isinstance(first, int) and again is None
    # Without a key every post is a message of its own.
    assert await post(pool, member, "tier_up", {"tier": "Silver"}, now) is not None
    assert await post(pool, member, "tier_up", {"tier": "Silver"}, now) is not None
    with pytest.raises(ValueError, match="unknown"):
        await post(pool, member, "free_pizza", {}, now)
    with pytest.raises(ValueError, match="points"):
        await post(pool, member, "challenge_completed", {"challenge": "Try 3 shops"}, now)
    with pytest.raises(ValueError, match="dedupe"):
        await post(pool, member, "tier_up", {"tier": "Gold"}, now, "x" * 201)
    assert [kind for kind, _ in await messages_of(pool, member)] == [
        "expiry_reminder",
        "tier_up",
        "tier_up",
    ]

    other = await member_id_of(pool, await make_member())
    batch = [
        inbox.NewMessage(member, "lottery_won", {"lottery": "Spring", "prize": "Book"}, "w:1"),
        inbox.NewMessage(other, "lottery_won", {"lottery": "Spring", "prize": "Book"}, "w:1"),
        inbox.NewMessage(member, "expiry_reminder", params, "expiry:2026-04-01"),  # a repeat
        inbox.NewMessage(other, "referral_reversed", {"points": 250}),
    ]
    inserted = await transaction(pool, lambda conn: inbox.post_many(conn, batch, now))
    assert inserted == 3
    assert await transaction(pool, lambda conn: inbox.post_many(conn, batch[:3], now)) == 0
    assert await transaction(pool, lambda conn: inbox.post_many(conn, [], now)) == 0
    with pytest.raises(ValueError):
        await transaction(
            pool,
            lambda conn: inbox.post_many(conn, [inbox.NewMessage(other, "nope", {})], now),
        )
    assert [kind for kind, _ in await messages_of(pool, other)] == [
        "lottery_won",
        "referral_reversed",
    ]


async def test_messages_address_the_member_as_their_profile_says_now(make_member, pool, clock):
    member = await member_id_of(pool, await make_member(display_name="Anna de Vries"))
    await post(pool, member, "tier_up", {"tier": "Gold"}, clock.now())

    async def body() -> str:
        (message,) = await inbox.list_messages(pool, member, before_id=None, limit=10)
        return message.body

    assert (await body()).startswith("Hello Anna de Vries,\n\n")
    await pool.execute("UPDATE members SET salutation = 'Ms de Vries' WHERE id = $1", member)
    assert (await body()).startswith("Hello Ms de Vries,\n\n")  # the salutation wins
    await pool.execute(
        "UPDATE members SET salutation = NULL, display_name = NULL WHERE id = $1", member
    )
    assert (await body()).startswith("Hello,\n\n")  # neutral when the profile says nothing
    assert "You reached the Gold tier" in await body()


def test_every_kind_renders_its_parameters():
    samples: dict[str, tuple[dict[str, Any], list[str]]] = {
        "challenge_completed": (
            {"challenge": "Three shops", "points": 1250},
            ["Three shops", "1.250 points"],
        ),
        "challenge_reversed": (
            {"challenge": "Three shops", "points": 300},
            ["no longer met", "300 points"],
        ),
        "challenge_offer": (
            {
                "challenge": "Come back",
                "points": 500,
                "until": "2026-04-05",
                "description": "We miss you.",
            },
            ["We miss you.", "by 5 Apr 2026", "500 bonus points"],
        ),
        "referral_rewarded": (
            {"points": 250, "role": "referrer"},
            ["A friend you referred", "250 points"],
        ),
        "referral_reversed": ({"points": 250}, ["taken back", "250 points"]),
        "expiry_reminder": ({"points": 1500, "expires_on": "2026-03-12"}, ["1.500", "12 Mar 2026"]),
        "donation_skipped": (
            {"charity": "Food bank", "points": 1200, "month": "2026-03"},
            ["Food bank", "1.200 points", "2026-03"],
        ),
        "lottery_won": (
            {"lottery": "Spring draw", "prize": "500 points"},
            ["Spring draw", "won 500 points"],
        ),
        "lottery_cancelled": (
            {"lottery": "Spring draw", "points_refunded": 30},
            ["cancelled", "30 points"],
        ),
        "tier_up": ({"tier": "Silver"}, ["Silver"]),
        "tier_down": ({"tier": "Bronze"}, ["Bronze", "review"]),
        "adjustment": (
            {"points": -1250, "reason": "Duplicate earn"},
            ["We took 1.250 points", "The reason: Duplicate earn."],
        ),
    }
    assert set(samples) == set(inbox.KINDS)
    for kind, (params, expected) in samples.items():
        rendered = inbox.render(kind, params, "Sam")
        assert rendered.subject and "\n" not in rendered.subject, kind
        assert rendered.body.startswith("Hello Sam,\n\n"), kind
        for text in expected:
            assert text in rendered.subject + rendered.body, (kind, text)
    referee = inbox.render("referral_rewarded", {"points": 250, "role": "referee"}, None)
    assert referee.body.startswith("Hello,\n\n") and "joined Kring through a friend" in referee.body
    # A kind this code does not know (written by a newer version) still reads.
    assert inbox.render("something_new", {}, None).subject == "A message from Kring"


# Reading and marking read ---------------------------------------------------------


async def test_list_pages_newest_first_and_marks_only_own_messages(make_member, pool, clock):
    member = await member_id_of(pool, await make_member())
    other = await member_id_of(pool, await make_member())
    now = clock.now()
    ids = [await post(pool, member, "referral_reversed", {"points": n}, now) for n in range(1, 6)]
    foreign = await post(pool, other, "tier_up", {"tier": "Gold"}, now)
    first = await inbox.list_messages(pool, member, before_id=None, limit=2)
    assert [m.id for m in first] == [ids[4], ids[3]]
    second = await inbox.list_messages(pool, member, before_id=first[-1].id, limit=2)
    assert [m.id for m in second] == [ids[2], ids[1]]
    last = await inbox.list_messages(pool, member, before_id=second[-1].id, limit=2)
    assert [m.id for m in last] == [ids[0]]
    assert await inbox.list_messages(pool, member, before_id=ids[0], limit=2) == []
    for bad in ({"before_id": None, "limit": 0}, {"before_id": None, "limit": 51}):
        with pytest.raises(inbox.DomainError) as refused:
            await inbox.list_messages(pool, member, **bad)
        assert (refused.value.code, refused.value.status) == ("invalid_limit", 400)
    with pytest.raises(inbox.DomainError) as refused:
        await inbox.list_messages(pool, member, before_id=0, limit=2)
    assert refused.value.code == "invalid_cursor"

    assert await inbox.unread_count(pool, member) == 5
    assert await inbox.mark_read(pool, member, ids[0], now) is True
    assert await inbox.mark_read(pool, member, ids[0], now) is False  # read already
    assert await inbox.unread_count(pool, member) == 4
    for not_mine in (foreign, 10**12, -1, 2**70):
        with pytest.raises(NotFound) as missing:
            await inbox.mark_read(pool, member, not_mine, now)
        assert missing.value.code == "message_not_found"
        with pytest.raises(NotFound):
            await inbox.get_message(pool, member, not_mine)
    assert await inbox.unread_count(pool, other) == 1  # the foreign one stayed unread
    listed = await inbox.list_messages(pool, member, before_id=None, limit=10)
    assert [m.unread for m in listed] == [True, True, True, True, False]
    assert await inbox.mark_all_read(pool, member, now) == 4
    assert await inbox.mark_all_read(pool, member, now) == 0
    assert await inbox.unread_count(pool, member) == 0
    assert await inbox.unread_count(pool, other) == 1


async def test_member_api_inbox(make_member, pool, clock, http, bearer):
    card = await make_member(display_name="Api Member")
    member = await member_id_of(pool, card)
    other = await member_id_of(pool, await make_member())
    now = clock.now()
    ids = [await post(pool, member, "tier_up", {"tier": f"T{n}"}, now) for n in range(3)]
    foreign = await post(pool, other, "tier_up", {"tier": "Gold"}, now)
    headers = await bearer(card)

    answer = await http.get("/member/v1/inbox", params={"limit": 2}, headers=headers)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["unread"] == 3
    assert [m["id"] for m in page["items"]] == [ids[2], ids[1]]
    assert page["items"][0]["subject"] == "Welcome to T2"
    assert page["items"][0]["body"].startswith("Hello Api Member,")
    assert page["items"][0]["unread"] is True and page["items"][0]["read_at"] is None
    older = await http.get(
        "/member/v1/inbox", params={"limit": 2, "before": page["next_before"]}, headers=headers
    )
    assert [m["id"] for m in older.json()["items"]] == [ids[0]]
    assert older.json()["next_before"] is None

    read = await http.post(f"/member/v1/inbox/{ids[1]}/read", headers=headers)
    assert read.status_code == 200, read.text
    assert read.json() == {"id": ids[1], "marked": True, "unread": 2}
    again = await http.post(f"/member/v1/inbox/{ids[1]}/read", headers=headers)
    assert again.json() == {"id": ids[1], "marked": False, "unread": 2}
    stolen = await http.post(f"/member/v1/inbox/{foreign}/read", headers=headers)
    assert stolen.status_code == 404 and problem_code(stolen) == "message_not_found"
    assert await inbox.unread_count(pool, other) == 1
    missing = await http.post("/member/v1/inbox/999999999/read", headers=headers)
    assert missing.status_code == 404 and problem_code(missing) == "message_not_found"

    for params, status, code in (
        ({"limit": 0}, 400, "invalid_limit"),
        ({"limit": 500}, 400, "invalid_limit"),
        ({"before": 0}, 400, "invalid_cursor"),
        ({"limit": "ten"}, 422, "invalid_request"),
        ({"before": "x"}, 422, "invalid_request"),
    ):
        bad = await http.get("/member/v1/inbox", params=params, headers=headers)
        assert (bad.status_code, problem_code(bad)) == (status, code), (params, bad.text)
    not_a_number = await http.post("/member/v1/inbox/abc/read", headers=headers)
    assert not_a_number.status_code == 404 and problem_code(not_a_number) == "not_found"
    assert await inbox.unread_count(pool, member) == 2

    all_read = await http.post("/member/v1/inbox/read-all", headers=headers)
    assert all_read.status_code == 200 and all_read.json() == {"marked": 2, "unread": 0}
    assert (await http.get("/member/v1/inbox", headers=headers)).json()["unread"] == 0

    for path, method in (
        ("/member/v1/inbox", "GET"),
        (f"/member/v1/inbox/{ids[0]}/read", "POST"),
        ("/member/v1/inbox/read-all", "POST"),
    ):
        for auth, code in (
            ({}, "missing_token"),
            ({"Authorization": "Bearer nope"}, "invalid_token"),
        ):
            refused = await http.request(method, path, headers=auth)
            assert refused.status_code == 401 and problem_code(refused) == code, (path, auth)
    assert await inbox.unread_count(pool, other) == 1  # nothing of theirs moved


async def test_wallet_inbox_pages(make_member, pool, clock, wallet):
    card = await make_member(display_name="Wally")
    member = await member_id_of(pool, card)
    other = await member_id_of(pool, await make_member())
    await pool.execute("UPDATE members SET salutation = 'Mx Wallet' WHERE id = $1", member)
    now = clock.now()
    first = await post(pool, member, "lottery_won", {"lottery": "Spring", "prize": "Book"}, now)
    second = await post(
        pool, member, "expiry_reminder", {"points": 80, "expires_on": "2026-03-20"}, now
    )
    foreign = await post(pool, other, "tier_up", {"tier": "Gold"}, now)
    async with await wallet(card) as client:
        home = await client.get("/")
        assert home.status_code == 200
        assert re.search(r'<span class="badge" aria-hidden="true">2</span>', home.text)
        assert "(2 unread)" in home.text

        listing = await client.get("/inbox")
        assert listing.status_code == 200
        assert listing.text.index("80 points expire on 20 Mar 2026") < listing.text.index(
            "You won in Spring!"
        )  # newest first
        assert listing.text.count('class="item unread"') == 2

        opened = await client.get(f"/inbox/{first}")
        assert opened.status_code == 200
        assert "Hello Mx Wallet," in opened.text and "Your ticket won Book" in opened.text
        assert re.search(r'<span class="badge" aria-hidden="true">1</span>', opened.text)
        assert await inbox.unread_count(pool, member) == 1

        listing = await client.get("/inbox")
        assert listing.text.count('class="item unread"') == 1
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', listing.text).group(1)

        for bad in (f"/inbox/{foreign}", "/inbox/99999999"):
            missing = await client.get(bad)
            assert missing.status_code == 404 and "no such message" in missing.text
        assert await inbox.unread_count(pool, other) == 1
        assert (await client.get("/inbox?before=abc")).status_code == 400

        refused = await client.post("/inbox/read-all", data={})
        assert refused.status_code == 403
        assert await inbox.unread_count(pool, member) == 1
        done = await client.post("/inbox/read-all", data={"csrf_token": csrf})
        assert done.status_code == 303 and done.headers["location"] == "/inbox"
        assert await inbox.unread_count(pool, member) == 0
        after = await client.get("/inbox")
        assert 'class="badge"' not in after.text.split("<main")[0] + after.text.split("</main>")[1]
        assert second is not None


async def test_many_messages_page_with_an_older_link(make_member, pool, clock, wallet):
    card = await make_member()
    member = await member_id_of(pool, card)
    now = clock.now()
    messages = [inbox.NewMessage(member, "referral_reversed", {"points": n}) for n in range(1, 26)]
    assert await transaction(pool, lambda conn: inbox.post_many(conn, messages, now)) == 25
    async with await wallet(card) as client:
        first = await client.get("/inbox")
        assert first.text.count('class="item unread"') == 20
        older = re.search(r'href="/inbox\?before=(\d+)"', first.text)
        assert older is not None
        second = await client.get(f"/inbox?before={older.group(1)}")
        assert second.text.count('class="item unread"') == 5
        assert "before=" not in second.text


# Expiry reminders ----------------------------------------------------------------


@pytest.fixture(scope="module")
def holder(make_partner, make_member, client_for, pool, clock):
    """A member with available points, their lots set to expire `days` ahead."""

    async def make(days: int | list[int], **fields: Any) -> tuple[str, int]:
        shop = await make_partner(return_window_days=0)
        card = await make_member(**fields)
        spans = days if isinstance(days, list) else [days]
        async with client_for(shop) as client:
            for n, _ in enumerate(spans):
                await client.earn(card, 1000 * (n + 1), "EUR")
        await release_due(pool, clock.now())
        member = await member_id_of(pool, card)
        lot_ids = await pool.fetch("SELECT id FROM lots WHERE member_id = $1 ORDER BY id", member)
        for lot, span in zip(lot_ids, spans, strict=True):
            await pool.execute(
                "UPDATE lots SET expires_at = $2 WHERE id = $1",
                lot["id"],
                clock.now() + timedelta(days=span),
            )
        return card, member

    return make


async def test_points_expiring_within_30_days_are_announced_once(holder, pool, clock):
    now = clock.now()
    soon_card, soon = await holder([10, 20, 10], email="soon@example.com", display_name="Sanne")
    _, later = await holder(EXPIRY_NOTICE_DAYS + 1, email="later@example.com")
    _, quiet = await holder(10, email="quiet@example.com")
    await pool.execute("UPDATE members SET expiry_reminders = false WHERE id = $1", quiet)
    _, no_mail = await holder(5)
    _, blocked = await holder(5, email="blocked@example.com")
    await pool.execute("UPDATE members SET status = 'blocked' WHERE id = $1", blocked)
    mail_before = await pool.fetchval("SELECT count(*) FROM mail_outbox")

    assert (
        await announce_expiring_points(pool, now) == 3
    )  # two days for one member, one for another
    assert await announce_expiring_points(pool, now) == 0  # the job running again announces nothing
    day_10 = (now + timedelta(days=10)).astimezone(AMSTERDAM).date()
    day_20 = (now + timedelta(days=20)).astimezone(AMSTERDAM).date()
    assert sorted(await messages_of(pool, soon), key=lambda m: m[1]["expires_on"]) == [
        ("expiry_reminder", {"points": 40, "expires_on": day_10.isoformat()}),
        ("expiry_reminder", {"points": 20, "expires_on": day_20.isoformat()}),
    ]
    keys = await pool.fetch(
        "SELECT dedupe_key FROM inbox_messages WHERE member_id = $1 ORDER BY dedupe_key", soon
    )
    assert [k["dedupe_key"] for k in keys] == [expiry_dedupe_key(day_10), expiry_dedupe_key(day_20)]
    assert await messages_of(pool, later) == []  # 31 days: not yet
    assert await messages_of(pool, quiet) == []  # opted out
    assert await messages_of(pool, blocked) == []
    assert [k for k, _ in await messages_of(pool, no_mail)] == ["expiry_reminder"]

    mails = await pool.fetch(
        "SELECT to_address, subject, body_text FROM mail_outbox WHERE id > 0 ORDER BY id DESC LIMIT $1",
        await pool.fetchval("SELECT count(*) FROM mail_outbox") - mail_before,
    )
    assert sorted(m["to_address"] for m in mails) == ["soon@example.com", "soon@example.com"]
    day_10_text = f"{day_10.day} {day_10:%b %Y}"
    (mail_10,) = [m for m in mails if day_10_text in m["subject"]]
    assert mail_10["subject"] == f"Kring: 40 points expire on {day_10_text}"
    assert mail_10["body_text"].startswith("Hello Sanne,\n\n")
    assert "expiry reminders are on" in mail_10["body_text"]

    # A day later the same lots are not announced again; the 31-day lot now is.
    assert await announce_expiring_points(pool, now + timedelta(days=1)) == 1
    assert [k for k, _ in await messages_of(pool, later)] == ["expiry_reminder"]
    assert await pool.fetchval("SELECT count(*) FROM mail_outbox") - mail_before == 3
    assert soon_card


async def test_the_periodic_job_runs_the_scan_once_a_day():
    assert "announce_expiring_points" in PERIODIC_JOBS
    gate = OncePerDay()
    morning = datetime(2026, 3, 2, 6, 0, tzinfo=AMSTERDAM)
    assert gate.due(morning)
    gate.finished(morning)
    assert not gate.due(morning + timedelta(hours=17))  # 23:00 the same day
    assert gate.due(morning + timedelta(hours=18))  # past midnight in Amsterdam
    assert gate.done_on == date(2026, 3, 2)


# Tier and lottery messages -----------------------------------------------------------


async def test_an_upgrading_earn_posts_tier_up_and_the_review_tier_down(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member(display_name="Tia")
    member = await member_id_of(pool, card)
    async with client_for(shop) as client:
        await client.earn(card, 50_000, "EUR")  # 500 points: still Bronze
        assert await messages_of(pool, member) == []
        await client.earn(card, 60_000, "EUR")  # 1,100 qualifying points: Silver
        await client.earn(card, 10_000, "EUR")  # no further upgrade
    assert await messages_of(pool, member) == [("tier_up", {"tier": "Silver"})]
    (message,) = await inbox.list_messages(pool, member, before_id=None, limit=5)
    assert message.subject == "Welcome to Silver" and message.body.startswith("Hello Tia,")

    # The review moves a Gold member without the points down, and says so.
    down_card = await make_member()
    down = await member_id_of(pool, down_card)
    await pool.execute(
        "INSERT INTO member_tiers (member_id, tier_code, since) VALUES ($1, 'gold', $2)",
        down,
        clock.now(),
    )
    first_of_month = datetime(2026, 4, 1, 8, 0, tzinfo=AMSTERDAM)
    assert await review_tiers(pool, first_of_month) is not None
    assert await messages_of(pool, down) == [("tier_down", {"tier": "Bronze"})]
    assert await messages_of(pool, member) == [("tier_up", {"tier": "Silver"})]  # kept Silver


@pytest.fixture(scope="module")
def funded(make_partner, make_member, client_for, pool, clock):
    async def make(points: int) -> int:
        shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
        card = await make_member()
        async with client_for(shop) as client:
            await client.earn(card, points * 100, "EUR")
        await release_due(pool, clock.now())
        return await member_id_of(pool, card)

    return make


async def _lottery(pool, clock, name: str, prizes: list[lots.NewPrize]) -> int:
    now = clock.now()
    new = lots.NewLottery(
        name=name,
        rules="One free ticket per member; paid tickets have the same odds.",
        ticket_price_points=10,
        tickets_per_member_max=5,
        sales_open_at=now - timedelta(minutes=1),
        sales_close_at=now + timedelta(hours=1),
        draw_at=now + timedelta(hours=1),
        prizes=prizes,
    )
    made = await transaction(pool, lambda conn: lots.create_lottery(conn, new, now))
    return made.lottery_id


async def test_lottery_winners_and_refunded_members_get_messages(funded, pool, clock):
    now = clock.now()
    a, b, c = [await funded(100) for _ in range(3)]
    drawn = await _lottery(
        pool, clock, "Inbox draw", [lots.NewPrize(points=50), lots.NewPrize(voucher_text="Cinema")]
    )
    await lots.buy_ticket(pool, a, drawn, "inbox-a", now)
    await lots.take_free_ticket(pool, b, drawn, now)
    assert await lots.draw_lottery(pool, drawn, now + timedelta(hours=2))
    assert not await lots.draw_lottery(pool, drawn, now + timedelta(hours=2))
    winners = await pool.fetch(
        "SELECT w.member_id, p.points, p.voucher_text FROM lottery_winners w"
        " JOIN lottery_prizes p USING (lottery_id, rank) WHERE w.lottery_id = $1",
        drawn,
    )
    assert {w["member_id"] for w in winners} == {a, b}  # two tickets, two prizes
    for w in winners:
        prize = f"{w['points']} points" if w["points"] else w["voucher_text"]
        assert await messages_of(pool, w["member_id"]) == [
            ("lottery_won", {"lottery": "Inbox draw", "prize": prize})
        ]

    cancelled = await _lottery(pool, clock, "Inbox cancelled", [lots.NewPrize(points=10)])
    for i in range(3):
        await lots.buy_ticket(pool, c, cancelled, f"inbox-c-{i}", now)
    await lots.buy_ticket(pool, a, cancelled, "inbox-a-2", now)
    await lots.take_free_ticket(pool, b, cancelled, now)  # nothing to refund: no message
    await lots.cancel_lottery(pool, cancelled, now)
    await lots.cancel_lottery(pool, cancelled, now)  # a repeat posts nothing more
    assert await messages_of(pool, c) == [
        ("lottery_cancelled", {"lottery": "Inbox cancelled", "points_refunded": 30})
    ]
    assert (await messages_of(pool, a))[-1] == (
        "lottery_cancelled",
        {"lottery": "Inbox cancelled", "points_refunded": 10},
    )
    assert [k for k, _ in await messages_of(pool, b)] == ["lottery_won"]
