"""Joining a challenge in headless Chromium at a phone's size: an admin
defines an opt-in "3 purchases" challenge through the admin API, the member
opens /challenges from the wallet's tabs and joins it, a partner's earn is
booked through the partner API, the engagement processor runs, and after a
reload the progress bar reads 1 of 3. axe-core finds no serious or critical
accessibility violations before and after joining."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from playwright.async_api import Browser, expect

from api.admin_auth import accounts
from api.admin_auth.tokens import issue_admin_token
from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.engagement.challenge_progress import process_dirty
from api.settings import Settings
from partners.client import PartnerClient
from tests.e2e.browser.conftest import screenshot
from tests.e2e.browser.test_wallet import axe_violations, serving, signed_in_context


async def test_a_member_joins_a_challenge_and_sees_progress_after_an_earn(
    browser: Browser,
    app: Any,
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> None:
    card = await make_member(display_name="Cas Challenge")
    shop = await make_partner(code="challenge-deli", name="Challenge Deli")
    admin = await transaction(
        pool,
        lambda conn: accounts.create_admin(
            conn,
            email="marketing@challenge-browser.test",
            role="marketing",
            password="correct horse battery",
            now=clock.now(),
        ),
    )
    token = issue_admin_token(
        admin.principal.admin_id, secret=settings.jwt_secret or "", now=clock.now()
    )
    created = await http.post(
        "/admin/v1/challenges",
        json={
            "name": "Three visits",
            "description": "Shop three times this month at any partner.",
            "kind": "purchases",
            "target": 3,
            "starts_at": (clock.now() - timedelta(hours=1)).isoformat(),
            "ends_at": (clock.now() + timedelta(days=30)).isoformat(),
            "enrolment": "opt_in",
            "reward_points": 200,
            "sponsor_id": shop.partner_id,
        },
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "browser-three"},
    )
    assert created.status_code == 201, created.text
    challenge_id = created.json()["id"]

    async with serving(app) as (base_url, _server):
        context = await signed_in_context(browser, base_url, pool, clock, settings, card)
        page = await context.new_page()
        await page.goto("/")
        await (
            page.get_by_role("navigation", name="Wallet")
            .get_by_role("link", name="Challenges")
            .click()
        )
        await expect(page.get_by_role("heading", level=1)).to_have_text("Challenges")
        card_item = page.get_by_test_id(f"challenge-{challenge_id}")
        await expect(card_item.get_by_role("heading", name="Three visits")).to_be_visible()
        await expect(card_item).to_contain_text("200 points")
        await expect(card_item).to_contain_text("sponsored by Challenge Deli")
        await expect(card_item).to_contain_text("Open to join")
        bar = card_item.get_by_role("progressbar", name="0 of 3 purchases")
        await expect(bar).to_have_attribute("value", "0")
        await expect(bar).to_have_attribute("max", "3")
        assert await axe_violations(page) == []

        await card_item.get_by_role("button", name="Join").click()
        await expect(page.get_by_role("status")).to_contain_text("You joined “Three visits”")
        await expect(card_item.get_by_test_id("challenge-state")).to_have_text("Joined")
        await expect(card_item.get_by_role("button", name="Join")).to_have_count(0)
        assert await axe_violations(page) == []
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM challenge_enrolments e JOIN members m ON m.id = e.member_id"
                " WHERE e.challenge_id = $1 AND m.card_number = $2",
                challenge_id,
                card,
            )
            == 1
        )

        clock.advance(timedelta(minutes=1))  # the purchase comes after joining
        await client_for(shop).earn(card, 1_800, "EUR", idempotency_key="browser-challenge-1")
        assert (await process_dirty(pool, clock.now())).rows >= 1

        await page.reload()
        card_item = page.get_by_test_id(f"challenge-{challenge_id}")
        bar = card_item.get_by_role("progressbar", name="1 of 3 purchases")
        await expect(bar).to_have_attribute("value", "1")
        await expect(card_item.get_by_test_id("progress-text")).to_have_text("1 of 3 purchases")
        await screenshot(page, "wallet-phone-challenges")
        assert await axe_violations(page) == []
        await context.close()
