"""The wallet's pages over HTTP (in-process app, embedded PostgreSQL): what a
signed-in member sees, fragments for htmx apart from pages, the card's live
token, and the PWA's manifest and service worker."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.coalition.card_tokens import token_key, verify_card_token
from api.db.pool import transaction
from api.member_auth.guards import WALLET_SESSION_COOKIE
from api.member_auth.sessions import open_session
from api.member_auth.tokens import WALLET_AUDIENCE, WALLET_SESSION_TTL, issue_session_token
from api.wallet.controllers import HISTORY_PAGE_SIZE

HX = {"HX-Request": "true"}


async def wallet_client(app: Any, pool, clock, settings, card: str) -> httpx.AsyncClient:
    """An HTTP client holding a wallet session cookie for the member with `card`
    (made with the sign-in's own session functions, as signing in would)."""
    row = await pool.fetchrow("SELECT id, public_id FROM members WHERE card_number = $1", card)
    now = clock.now()
    expires_at = now + WALLET_SESSION_TTL
    session_id = await transaction(
        pool, lambda conn: open_session(conn, row["id"], "wallet", now=now, expires_at=expires_at)
    )
    cookie = issue_session_token(
        session_id,
        row["public_id"],
        audience=WALLET_AUDIENCE,
        secret=settings.jwt_secret,
        now=now,
        expires_at=expires_at,
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://localhost",
        cookies={WALLET_SESSION_COOKIE: cookie},
    )


@pytest.fixture(scope="module")
async def world(app, pool, clock, settings, make_partner, make_member, client_for):
    """Two partners, a member with history at both, and another member."""
    card = await make_member(display_name="Wanda Wallet")
    other_card = await make_member(display_name="Otto Other")
    shop = client_for(await make_partner(code="wallet-books", name="Wallet Books"))
    fuel = client_for(await make_partner(code="wallet-fuel", name="Wallet Fuel"))
    earns = []
    for n in range(HISTORY_PAGE_SIZE + 3):  # more than a page
        earns.append(await shop.earn(card, 1000 + n * 100, "EUR", idempotency_key=f"wb-{n}"))
        clock.advance(timedelta(minutes=1))
    fuel_earn = await fuel.earn(card, 5000, "EUR", idempotency_key="wf-1")
    other_earn = await shop.earn(other_card, 2000, "EUR", idempotency_key="wo-1")
    member = await wallet_client(app, pool, clock, settings, card)
    yield {
        "card": card,
        "member": member,
        "earns": earns,
        "fuel_earn": fuel_earn,
        "other_earn": other_earn,
        "shop": shop,
    }
    await member.aclose()


async def test_pages_need_a_session(http) -> None:
    for path in ("/", "/card", "/card/live", "/history", "/partners"):
        answer = await http.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/sign-in?next=" + path
    assert (await http.get("/history", headers=HX)).headers[
        "hx-redirect"
    ] == "/sign-in?next=/history"


async def test_home_shows_available_pending_with_dates_and_recent(world) -> None:
    answer = await world["member"].get("/")
    assert answer.status_code == 200
    html = answer.text
    assert 'data-testid="available-points">0<' in html
    pending = sum(e.points for e in world["earns"]) + world["fuel_earn"].points
    assert f'data-testid="pending-points">{pending}<' in html
    assert "available on 16 Mar 2026" in html  # 14-day return window from 2 Mar
    assert "Wallet Fuel" in html  # the newest purchase heads the recent list
    assert answer.headers["vary"] == "HX-Request"
    assert answer.headers["cache-control"] == "no-store"


async def test_card_shows_number_barcode_qr_and_a_live_token(world, settings, clock) -> None:
    card = world["card"]
    page = await world["member"].get("/card")
    assert page.status_code == 200
    html = page.text
    spaced = " ".join(card[i : i + 4] for i in range(0, 16, 4))
    assert spaced in html
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="barcode" role="img"' in html
    assert re.search(r'<svg role="img"[^>]*class="qr"', html)
    assert 'style="' not in html  # a CSP without unsafe-inline must not break the codes
    assert 'hx-get="/card/live"' in html and "every 60s" in html

    live = await world["member"].get("/card/live", headers=HX)
    assert live.status_code == 200 and "<html" not in live.text
    assert live.headers["cache-control"] == "no-store"
    assert "<title>Live QR code of your card</title>" in live.text
    token = re.search(r'data-card-token="(K1\.[A-Z2-7]{40})"', live.text)
    assert token is not None
    # What the till scans identifies this member through the partner API.
    found = await world["shop"].identify(token.group(1))
    assert found.card_number == card and found.display_name == "Wanda Wallet"
    checked = verify_card_token(token.group(1), key=token_key(settings.jwt_secret), now=clock.now())
    assert checked.expires_at.isoformat() in live.text


async def test_history_pages_with_htmx_and_filters_by_partner(world) -> None:
    member = world["member"]
    full = await member.get("/history")
    assert full.status_code == 200 and full.text.startswith("<!doctype html>")
    assert full.headers["vary"] == "HX-Request"
    assert full.text.count('class="item earn"') == HISTORY_PAGE_SIZE
    assert '<option value="wallet-fuel">Wallet Fuel</option>' in full.text
    more = re.search(r'hx-get="(/history\?cursor=[^"]+)"', full.text)
    assert more is not None
    second = await member.get(more.group(1).replace("&amp;", "&"), headers=HX)
    assert "<html" not in second.text and second.headers["vary"] == "HX-Request"
    assert second.text.count('class="item earn"') == 4  # 24 in all
    assert "Load more" not in second.text
    # The same URL without HX-Request is a whole page (what the service worker keeps apart).
    assert (await member.get(more.group(1).replace("&amp;", "&"))).text.startswith("<!doctype")

    fuel = await member.get("/history?partner=wallet-fuel", headers=HX)
    assert fuel.text.count('class="item earn"') == 1 and "Wallet Fuel" in fuel.text
    assert "Wallet Books" not in fuel.text
    nobody = await member.get("/history?partner=no-such-partner", headers=HX)
    assert "No transactions at this partner yet." in nobody.text
    bad = await member.get("/history?cursor=not-a-cursor")
    assert bad.status_code == 400 and "cursor" in bad.text


async def test_a_transaction_detail_is_the_members_own(world) -> None:
    member = world["member"]
    earn = world["fuel_earn"]
    own = await member.get(f"/history/{earn.id}")
    assert own.status_code == 200
    assert "Wallet Fuel" in own.text and "50,00 €" in own.text and f"+{earn.points}" in own.text
    assert f'href="/survey/{earn.id}"' in own.text  # within 7 days
    for other in (str(world["other_earn"].id), "not-a-uuid"):
        refused = await member.get(f"/history/{other}")
        assert refused.status_code == 404
        assert "There is no such transaction in your history." in refused.text
        assert "Otto" not in refused.text


async def test_partners_lists_rates(world) -> None:
    answer = await world["member"].get("/partners")
    assert answer.status_code == 200
    assert "Wallet Books" in answer.text and "1 point per €1" in answer.text


async def test_manifest_service_worker_and_offline_page_are_public(http) -> None:
    manifest = await http.get("/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    data = json.loads(manifest.content)
    assert (data["start_url"], data["scope"], data["display"]) == ("/", "/", "standalone")
    assert data["name"] and data["short_name"] and data["theme_color"] and data["background_color"]
    icons = {(i["sizes"], i["purpose"]) for i in data["icons"]}
    assert icons == {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")}
    for icon in data["icons"]:
        png = await http.get(icon["src"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n\x1a\n")
        size = int(icon["sizes"].split("x")[0])
        assert int.from_bytes(png.content[16:20], "big") == size  # IHDR width

    sw = await http.get("/sw.js")
    assert sw.headers["content-type"].startswith("text/javascript")
    assert sw.headers["cache-control"] == "no-cache"
    assert "__KRING" not in sw.text
    version = re.search(r'const VERSION = "([0-9a-f]{16})";', sw.text)
    assert version is not None
    precache = json.loads(re.search(r"const PRECACHE = (\[.*?\]);", sw.text).group(1))
    assert "/offline" in precache and "/static/css/wallet.css" in precache
    for url in precache:
        assert (await http.get(url)).status_code == 200, url

    offline = await http.get("/offline")
    assert offline.status_code == 200 and "You are offline" in offline.text
    assert 'href="/card"' in offline.text


async def test_survey_once_profile_export_and_delete(
    app, pool, clock, settings, world, make_member, client_for, make_partner
) -> None:
    member = world["member"]
    earn = world["earns"][0]
    form = await member.get(f"/survey/{earn.id}")
    assert form.status_code == 200 and 'name="score" value="10"' in form.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    # Without the CSRF token: refused, nothing stored.
    refused = await member.post(f"/survey/{earn.id}", data={"score": "9"})
    assert refused.status_code == 403
    assert await pool.fetchval("SELECT count(*) FROM member_surveys") == 0
    sent = await member.post(
        f"/survey/{earn.id}", data={"score": "9", "comment": "Fine", "csrf_token": csrf}
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"/history/{earn.id}?rated=1"
    again = await member.post(f"/survey/{earn.id}", data={"score": "3", "csrf_token": csrf})
    assert again.status_code == 409 and "rated already" in again.text
    assert await pool.fetchval("SELECT score FROM member_surveys") == 9
    other = await member.post(
        f"/survey/{world['other_earn'].id}", data={"score": "1", "csrf_token": csrf}
    )
    assert other.status_code == 404

    saved = await member.post(
        "/profile",
        data={
            "display_name": "Wanda W.",
            "salutation": "Wanda",
            "expiry_reminders": "on",
            "csrf_token": csrf,
        },
    )
    assert saved.status_code == 200 and "Your profile is saved." in saved.text
    assert 'value="Wanda W."' in saved.text
    export = await member.get("/profile/export")
    assert export.headers["content-disposition"].startswith("attachment")
    assert json.loads(export.content)  # a JSON document

    # Deleting needs the confirmation tick; then the session ends.
    card = await make_member(display_name="Leaving Soon")
    leaver = await wallet_client(app, pool, clock, settings, card)
    page = await leaver.get("/profile/delete")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    unconfirmed = await leaver.post("/profile/delete", data={"csrf_token": token})
    assert unconfirmed.status_code == 422 and "Tick the box" in unconfirmed.text
    assert (
        await pool.fetchval("SELECT status FROM members WHERE card_number = $1", card) == "active"
    )
    gone = await leaver.post("/profile/delete", data={"csrf_token": token, "confirm": "yes"})
    assert gone.status_code == 200 and "Your account is deleted" in gone.text
    assert (await leaver.get("/")).status_code == 303
    await leaver.aclose()


async def test_home_asks_about_the_latest_purchase_until_rated_or_a_week_has_passed(
    app, pool, clock, settings, make_partner, make_member, client_for
) -> None:
    card = await make_member(display_name="Rater")
    async with client_for(await make_partner(name="Survey Bakery")) as till:
        earn = await till.earn(card, 1_500, "EUR")
    member = await wallet_client(app, pool, clock, settings, card)
    home = await member.get("/")
    assert "How was Survey Bakery?" in home.text and f'href="/survey/{earn.id}"' in home.text
    form = await member.get(f"/survey/{earn.id}")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    await member.post(f"/survey/{earn.id}", data={"score": "8", "csrf_token": csrf})
    assert "How was" not in (await member.get("/")).text  # answered: not asked again

    async with client_for(await make_partner(name="Late Grocer")) as till:
        await till.earn(card, 2_000, "EUR")
    assert "How was Late Grocer?" in (await member.get("/")).text
    clock.advance(timedelta(days=7, seconds=1))
    member = await wallet_client(
        app, pool, clock, settings, card
    )  # a fresh session for the new day
    assert "How was" not in (await member.get("/")).text  # the week to rate it is over


async def test_lottery_pages_show_rules_and_odds_and_sell_a_ticket_once(
    app, pool, clock, settings, make_partner, make_member, client_for
) -> None:
    from api.db.pool import transaction
    from api.engagement import lotteries
    from api.ledger.lots import release_due
    from tests.conftest import balances

    card = await make_member(display_name="Player")
    async with client_for(await make_partner(return_window_days=0)) as till:
        await till.earn(card, 5_000, "EUR")  # 50 points
    await release_due(pool, clock.now())
    now = clock.now()
    new = lotteries.NewLottery(
        name="Wallet draw",
        rules="Free entry: one free ticket per member, same odds as a paid one.",
        ticket_price_points=20,
        tickets_per_member_max=2,
        sales_open_at=now - timedelta(minutes=1),
        sales_close_at=now + timedelta(days=1),
        draw_at=now + timedelta(days=1),
        prizes=[lotteries.NewPrize(voucher_text="Cinema for two")],
    )
    made = await transaction(pool, lambda conn: lotteries.create_lottery(conn, new, now))
    member = await wallet_client(app, pool, clock, settings, card)
    listing = await member.get("/lotteries")
    assert listing.status_code == 200 and "Wallet draw" in listing.text
    page = await member.get(f"/lotteries/{made.lottery_id}")
    assert "Free entry: one free ticket per member" in page.text  # rules before purchase
    assert "Cinema for two" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    key = re.search(r'name="purchase_key" value="([^"]+)"', page.text).group(1)
    refused = await member.post(f"/lotteries/{made.lottery_id}/tickets", data={"purchase_key": key})
    assert refused.status_code == 403  # no CSRF token, nothing bought
    form = {"csrf_token": csrf, "purchase_key": key}
    bought = await member.post(f"/lotteries/{made.lottery_id}/tickets", data=form)
    assert bought.status_code == 200 and "is yours" in bought.text
    await member.post(f"/lotteries/{made.lottery_id}/tickets", data=form)  # a double click
    tickets = await pool.fetchval(
        "SELECT count(*) FROM lottery_tickets WHERE lottery_id = $1", made.lottery_id
    )
    assert tickets == 1
    assert (await balances(pool, card))["available"] == 30
