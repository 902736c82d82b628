"""The portal's webhooks page without a browser: managers only, CSRF on every
form, writes through the partner API's services with the form's idempotency
key (a form sent twice writes once), bad URLs refused with a readable
message, and the delivery log paginated as htmx fragments."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.portal.staff import create_staff
from api.portal.webhooks import DELIVERY_LOG_PAGE_SIZE
from api.webhooks.delivery import deliver_due, fan_out
from api.webhooks.endpoints import PREVIOUS_SECRET_VALID
from partners.client import PartnerClient

PASSWORD = "correct horse battery"
MANAGER = "mia@hook-shop.example"
CASHIER = "cai@hook-shop.example"
HOOK_URL = "http://127.0.0.1:9/kring-hooks"  # plain http is allowed to loopback in development
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_KEYS = re.compile(r'name="idempotency_key" value="([^"]+)"')
_SECRET = re.compile(r'data-testid="issued-secret"[^>]*value="([^"]+)"')


@pytest.fixture(scope="module")
async def shop(
    pool: asyncpg.Pool, clock: ManualClock, make_partner: Callable[..., Awaitable[Credentials]]
) -> Credentials:
    creds = await make_partner(code="hook-shop", name="Hook Shop")
    for email, role in ((MANAGER, "manager"), (CASHIER, "cashier")):
        await transaction(
            pool,
            lambda conn, email=email, role=role: create_staff(
                conn,
                partner_code="hook-shop",
                email=email,
                display_name=email.split("@")[0].title(),
                password=PASSWORD,
                role=role,
                now=clock.now(),
            ),
        )
    return creds


async def _signed_in(app: Any, email: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.kring.test"
    )
    form = await client.get("/portal/sign-in")
    token = _CSRF.search(form.text)
    assert token is not None
    signed = await client.post(
        "/portal/sign-in", data={"email": email, "password": PASSWORD, "csrf_token": token[1]}
    )
    assert signed.status_code == 303, signed.text
    return client


@pytest.fixture
async def manager(app: Any, shop: Credentials) -> AsyncIterator[httpx.AsyncClient]:
    client = await _signed_in(app, MANAGER)
    yield client
    await client.aclose()


@pytest.fixture
async def cashier(app: Any, shop: Credentials) -> AsyncIterator[httpx.AsyncClient]:
    client = await _signed_in(app, CASHIER)
    yield client
    await client.aclose()


def _csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None
    return found[1]


async def _endpoints(pool: asyncpg.Pool, shop: Credentials) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, url, secret, previous_secret, previous_secret_expires_at, disabled_at"
        " FROM webhook_endpoints WHERE partner_id = $1 ORDER BY created_at, id",
        shop.partner_id,
    )


def _form_for(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to `action`."""
    start = html.index(f'action="{action}"')
    form = html[start : html.index("</form>", start)]
    key = _KEYS.search(form)
    assert key is not None
    return {"csrf_token": _csrf(form), "idempotency_key": key[1]}


async def test_cashiers_get_no_webhooks_page_and_no_link(
    cashier: httpx.AsyncClient, pool: asyncpg.Pool, shop: Credentials
) -> None:
    till = await cashier.get("/portal/till")
    assert till.status_code == 200 and "/portal/webhooks" not in till.text
    form = {"csrf_token": _csrf(till.text), "idempotency_key": "portal-" + "a" * 32}
    refused = [
        await cashier.get("/portal/webhooks"),
        await cashier.post("/portal/webhooks", data={**form, "url": HOOK_URL}),
        await cashier.post(
            f"/portal/webhooks/{'0' * 8}-0000-0000-0000-{'0' * 12}/disable", data=form
        ),
        await cashier.get(f"/portal/webhooks/{'0' * 8}-0000-0000-0000-{'0' * 12}"),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert all("Managers only" in r.text for r in refused)
    assert await _endpoints(pool, shop) == []


async def test_a_manager_registers_an_endpoint_once_and_sees_the_secret_once(
    manager: httpx.AsyncClient, pool: asyncpg.Pool, shop: Credentials
) -> None:
    listing = await manager.get("/portal/webhooks")
    assert listing.status_code == 200 and "None yet" in listing.text
    assert 'href="/portal/webhooks" aria-current="page"' in listing.text
    form = {**_form_for(listing.text, "/portal/webhooks"), "url": HOOK_URL}

    # Refused: no CSRF token, no key of ours, bad URLs. Nothing is written.
    assert (
        await manager.post("/portal/webhooks", data={**form, "csrf_token": ""})
    ).status_code == 403
    no_key = await manager.post("/portal/webhooks", data={**form, "idempotency_key": "mine"})
    assert no_key.status_code == 403 and "expired" in no_key.text
    for url, says in [
        ("ftp://pos.example/hooks", "must be http(s)://host/"),
        ("http://pos.example/hooks", "must use https"),
        ("https://user:pw@pos.example/hooks", "must not carry credentials"),
        ("", "Type the URL"),
        ("https://pos.example/" + "a" * 2100, "longer than 2000 characters"),
    ]:
        bad = await manager.post("/portal/webhooks", data={**form, "url": url})
        assert bad.status_code == 422, (url, bad.status_code)
        assert says in bad.text and 'aria-invalid="true"' in bad.text and 'role="alert"' in bad.text
        assert "application/problem+json" not in bad.headers["content-type"]
    kept = await manager.post("/portal/webhooks", data={**form, "url": "ftp://pos.example/hooks"})
    assert 'value="ftp://pos.example/hooks"' in kept.text  # what was typed stays, to fix it
    assert form["idempotency_key"] in kept.text  # same key: the failure stored nothing
    assert await _endpoints(pool, shop) == []

    created = await manager.post("/portal/webhooks", data=form)
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    secret = _SECRET.search(created.text)
    assert secret is not None and secret[1].startswith("whsec_")
    assert "Copy the secret now" in created.text and "Active" in created.text
    [row] = await _endpoints(pool, shop)
    assert (row["url"], row["secret"], row["disabled_at"]) == (HOOK_URL, secret[1], None)

    # The same form again (a double tap, a reload): the first answer, nothing new.
    again = await manager.post("/portal/webhooks", data=form)
    assert again.status_code == 201 and "Already done" in again.text
    replayed_secret = _SECRET.search(again.text)
    assert replayed_secret is not None and replayed_secret[1] == secret[1]
    assert len(await _endpoints(pool, shop)) == 1
    # The listing never shows a secret.
    assert secret[1] not in (await manager.get("/portal/webhooks")).text


async def test_rotating_keeps_the_old_secret_signing_for_the_grace_period(
    manager: httpx.AsyncClient, pool: asyncpg.Pool, shop: Credentials, clock: ManualClock
) -> None:
    [before] = await _endpoints(pool, shop)
    listing = await manager.get("/portal/webhooks")
    assert "One secret" in listing.text
    action = f"/portal/webhooks/{before['id']}/rotate-secret"
    form = _form_for(listing.text, action)
    assert (await manager.post(action, data={**form, "csrf_token": "forged"})).status_code == 403
    assert (await _endpoints(pool, shop))[0]["secret"] == before["secret"]

    rotated = await manager.post(action, data=form)
    assert rotated.status_code == 200 and "New signing secret" in rotated.text
    new_secret = _SECRET.search(rotated.text)
    assert new_secret is not None and new_secret[1] != before["secret"]
    [after] = await _endpoints(pool, shop)
    assert (after["secret"], after["previous_secret"]) == (new_secret[1], before["secret"])
    assert after["previous_secret_expires_at"] == clock.now() + PREVIOUS_SECRET_VALID
    until = f"{clock.now() + PREVIOUS_SECRET_VALID:%d %b %Y %H:%M}"
    assert f"old secret too until {until} UTC" in rotated.text
    assert f"Rotated: the old secret also signs until {until} UTC" in rotated.text

    replayed = await manager.post(action, data=form)
    assert "Already done" in replayed.text and new_secret[1] in replayed.text
    assert (await _endpoints(pool, shop))[0]["secret"] == new_secret[1]  # rotated once


async def test_disabling_an_endpoint_and_what_cannot_be_done_after(
    manager: httpx.AsyncClient,
    pool: asyncpg.Pool,
    shop: Credentials,
    make_partner: Callable[..., Awaitable[Credentials]],
    clock: ManualClock,
) -> None:
    [endpoint] = await _endpoints(pool, shop)
    listing = await manager.get("/portal/webhooks")
    action = f"/portal/webhooks/{endpoint['id']}/disable"
    assert 'hx-confirm="Disable ' in listing.text
    form = _form_for(listing.text, action)
    rotate_form = _form_for(listing.text, f"/portal/webhooks/{endpoint['id']}/rotate-secret")

    disabled = await manager.post(action, data=form)
    assert disabled.status_code == 200 and f"{HOOK_URL} is disabled" in disabled.text
    assert (await _endpoints(pool, shop))[0]["disabled_at"] == clock.now()
    assert f"{action}" not in disabled.text  # no more buttons for it
    assert "Disabled " in disabled.text

    stale = await manager.post(f"/portal/webhooks/{endpoint['id']}/rotate-secret", data=rotate_form)
    assert stale.status_code == 409 and "is disabled" in stale.text

    # Another partner's endpoint is not there for this manager.
    other = await make_partner()
    other_id = "0190a0a0-0000-7000-8000-000000000001"
    await pool.execute(
        "INSERT INTO webhook_endpoints (id, partner_id, url, secret, created_at)"
        " VALUES ($1, $2, 'https://other.example/h', 'whsec_other', $3)",
        other_id,
        other.partner_id,
        clock.now(),
    )
    listing = await manager.get("/portal/webhooks")
    theirs = f"/portal/webhooks/{other_id}/disable"
    hidden = {"csrf_token": _csrf(listing.text), "idempotency_key": "portal-" + "b" * 32}
    refused = await manager.post(theirs, data=hidden)
    assert refused.status_code == 404 and "no such webhook endpoint" in refused.text.lower()
    assert await pool.fetchval(
        "SELECT disabled_at IS NULL FROM webhook_endpoints WHERE id = $1", other_id
    )
    assert (await manager.get(f"/portal/webhooks/{other_id}")).status_code == 404


async def test_the_delivery_log_shows_attempts_and_loads_more_as_a_fragment(
    manager: httpx.AsyncClient,
    pool: asyncpg.Pool,
    shop: Credentials,
    clock: ManualClock,
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> None:
    listing = await manager.get("/portal/webhooks")
    url = "http://127.0.0.1:9/flaky"
    created = await manager.post(
        "/portal/webhooks", data={**_form_for(listing.text, "/portal/webhooks"), "url": url}
    )
    assert created.status_code == 201
    endpoint_id = await pool.fetchval(
        "SELECT id FROM webhook_endpoints WHERE partner_id = $1 AND url = $2",
        shop.partner_id,
        url,
    )
    card = await make_member()
    sales = DELIVERY_LOG_PAGE_SIZE + 3
    async with client_for(shop) as client:
        for n in range(sales):
            await client.earn(card, 1_000 + n, "EUR")
    failing = httpx.MockTransport(lambda request: httpx.Response(500))
    await fan_out(pool, clock.now())
    await deliver_due(pool, clock.now(), transport=failing)

    log = await manager.get(f"/portal/webhooks/{endpoint_id}")
    assert log.status_code == 200 and url in log.text
    assert log.text.count('data-testid="delivery"') == DELIVERY_LOG_PAGE_SIZE
    assert "points.earned" in log.text and "HTTP 500" in log.text and "pending" in log.text
    retry_at = await pool.fetchval(
        "SELECT max(next_attempt_at) FROM webhook_deliveries WHERE endpoint_id = $1", endpoint_id
    )
    assert retry_at > clock.now() and f"{retry_at:%d %b %Y %H:%M}" in log.text
    more = re.search(r'hx-get="(/portal/webhooks/[^"]+\?cursor=[^"]+)"', log.text)
    assert more is not None
    rest = await manager.get(more[1], headers={"HX-Request": "true"})
    assert rest.status_code == 200 and "<html" not in rest.text
    assert rest.text.count('data-testid="delivery"') == sales - DELIVERY_LOG_PAGE_SIZE
    assert "Load more" not in rest.text

    bad = await manager.get(f"/portal/webhooks/{endpoint_id}", params={"cursor": "nonsense"})
    assert bad.status_code == 400 and "cursor" in bad.text
    unknown = await manager.get("/portal/webhooks/0190a0a0-0000-7000-8000-00000000dead")
    assert unknown.status_code == 404
