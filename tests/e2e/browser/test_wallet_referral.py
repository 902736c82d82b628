"""Referrals in headless Chromium at a phone's size: the refer page shows the
member's code and link; Share hands the link to the Web Share API when the
browser has it (stubbed here) and copies it otherwise; a friend opens the
link, signs up with the e-mail code, comes back to the refer page with the
code filled in and claims it; another new member claims a code typed into
the form; a wrong code is refused on the page. axe-core finds no serious or
critical violations on the refer and join pages.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from playwright.async_api import Browser, BrowserContext, expect

from api.clock import ManualClock
from api.db.pool import transaction
from api.engagement.referrals import referral_code
from api.member_auth.guards import WALLET_SESSION_COOKIE
from api.member_auth.sessions import open_session
from api.member_auth.tokens import WALLET_AUDIENCE, WALLET_SESSION_TTL, issue_session_token
from api.settings import Settings
from tests.e2e.browser import test_wallet as wallet_browser
from tests.e2e.browser.conftest import ACTION_TIMEOUT_MS, PHONE, screenshot

# Records what the page hands to the share sheet instead of opening one.
SHARE_STUB = """
window.__shared = [];
Object.defineProperty(Navigator.prototype, "share", {
  configurable: true,
  value: function (data) { window.__shared.push(data); return Promise.resolve(); },
});
"""
NO_SHARE = "delete Navigator.prototype.share; delete navigator.share;"


async def session_context(
    browser: Browser,
    base_url: str,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    card: str,
) -> BrowserContext:
    """A phone context holding a wallet session for the member, opened with
    the sign-in's own session functions."""
    row = await pool.fetchrow("SELECT id, public_id FROM members WHERE card_number = $1", card)
    now = clock.now()
    expires_at = now + WALLET_SESSION_TTL
    session_id = await transaction(
        pool, lambda conn: open_session(conn, row["id"], "wallet", now=now, expires_at=expires_at)
    )
    token = issue_session_token(
        session_id,
        row["public_id"],
        audience=WALLET_AUDIENCE,
        secret=settings.jwt_secret or "",
        now=now,
        expires_at=expires_at,
    )
    context = await browser.new_context(base_url=base_url, **PHONE)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    await context.add_cookies(
        [{"name": WALLET_SESSION_COOKIE, "value": token, "url": base_url, "httpOnly": True}]
    )
    return context


async def code_of(pool: asyncpg.Pool, clock: ManualClock, card: str) -> str:
    member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
    return await referral_code(pool, member_id, clock.now())


async def test_the_refer_page_shares_the_link_and_a_friend_claims_the_code(
    browser: Browser,
    live_server: str,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    make_member: Any,
) -> None:
    ann = await make_member(email="ann@example.com", display_name="Ann Jansen")
    context = await session_context(browser, live_server, pool, clock, settings, ann)
    await context.add_init_script(SHARE_STUB)
    page = await context.new_page()
    await page.goto("/refer")
    code = await code_of(pool, clock, ann)
    link = f"{live_server}/join/{code}"
    await expect(page.get_by_role("heading", level=1)).to_have_text("Refer a friend")
    await expect(page.get_by_test_id("referral-code")).to_have_value(code)
    await expect(page.get_by_test_id("referral-link")).to_have_value(link)
    await expect(page.get_by_role("link", name="Refer")).to_have_attribute("aria-current", "page")
    await expect(page.get_by_text("250 points for you, 250 points for your friend")).to_be_visible()
    await page.get_by_role("button", name="Share").click()
    await expect(page.locator("#share-status")).to_have_text("Shared.")
    shared = await page.evaluate("window.__shared")
    assert len(shared) == 1 and shared[0]["url"] == link and code in shared[0]["text"]
    await screenshot(page, "wallet-phone-refer")
    assert await wallet_browser.axe_violations(page) == []
    await context.close()

    # Without Web Share, the button copies the link.
    context = await session_context(browser, live_server, pool, clock, settings, ann)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    await context.add_init_script(NO_SHARE)
    page = await context.new_page()
    await page.goto("/refer")
    await page.get_by_role("button", name="Share").click()
    await expect(page.locator("#share-status")).to_have_text(re.compile("Link copied"))
    assert await page.evaluate("navigator.clipboard.readText()") == link
    await context.close()

    # A friend opens the link, signs up with the mailed code, and claims it.
    context = await browser.new_context(base_url=live_server, **PHONE)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(link)
    await expect(page.get_by_test_id("inviter")).to_have_text("Ann invites you to Kring")
    await expect(page.get_by_text("Jansen")).to_have_count(0)
    assert await wallet_browser.axe_violations(page) == []
    await screenshot(page, "wallet-phone-join")
    await page.get_by_role("link", name="Join or sign in").click()
    email = "bob@example.com"
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_role("button", name="Send me a code").click()
    await expect(page).to_have_url(re.compile(r"/sign-in/code$"))
    mail = await pool.fetchval(
        "SELECT body_text FROM mail_outbox WHERE to_address = $1 ORDER BY id DESC LIMIT 1", email
    )
    sign_in_code = re.search(r"\b(\d{6})\b", mail)
    assert sign_in_code is not None
    await page.get_by_label("Sign-in code").fill(sign_in_code.group(1))
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(re.compile(rf"/refer\?code={code}$"))
    await expect(page.get_by_role("textbox", name="Friend's code")).to_have_value(code)
    await page.get_by_role("button", name="Use this code").click()
    await expect(page.locator(".notice")).to_have_text(
        "Your friend's code is in. Your welcome points come after your first purchase."
    )
    await expect(page.get_by_test_id("referred")).to_contain_text("You joined with Ann's code.")
    await screenshot(page, "wallet-phone-refer-claimed")
    bob = await pool.fetchval("SELECT id FROM members WHERE email = $1", email)
    row = await pool.fetchrow(
        "SELECT r.status, m.card_number FROM referrals r JOIN members m ON m.id = r.referrer_id"
        " WHERE r.referee_id = $1",
        bob,
    )
    assert (row["status"], row["card_number"]) == ("pending", ann)
    await context.close()


async def test_a_new_member_types_a_code_into_the_form(
    browser: Browser,
    live_server: str,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    make_member: Any,
) -> None:
    cas = await make_member(email="cas@example.com")
    dee = await make_member(email="dee@example.com")
    code = await code_of(pool, clock, cas)
    context = await session_context(browser, live_server, pool, clock, settings, dee)
    page = await context.new_page()
    await page.goto("/refer")
    await page.get_by_role("textbox", name="Friend's code").fill("ZZZZ2222")
    await page.get_by_role("button", name="Use this code").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "There is no member with that referral code."
    )
    await expect(page.get_by_role("textbox", name="Friend's code")).to_have_value("ZZZZ2222")
    await page.get_by_role("textbox", name="Friend's code").fill(code.lower())
    await page.get_by_role("button", name="Use this code").click()
    await expect(page.locator(".notice")).to_contain_text("Your friend's code is in.")
    await expect(page.get_by_test_id("referred")).to_contain_text("a friend's code")
    await expect(page.get_by_role("textbox", name="Friend's code")).to_have_count(0)
    assert await wallet_browser.axe_violations(page) == []
    await context.close()
