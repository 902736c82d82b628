"""Hardening at the HTTP edge: security headers on every response of every
route (whatever its status), HSTS only over TLS, and request body limits that
answer 413 `request_too_large` as problem+json."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute

from api.app import REQUEST_BODY_BYTES_MAX
from api.money import AMOUNT_CENTS_MAX, POINTS_MAX
from api.partner_api.schemas import RECONCILIATION_BODY_BYTES_MAX
from api.settlement.reconciliation import RECONCILIATION_ROWS_MAX
from api.web.security_headers import API_DOCS_CSP, HSTS, NON_HTML_CSP, PAGE_CSP
from tests.integration.test_reconciliation import assert_problem, token_for
from tests.integration.test_wallet_pages import wallet_client

ALWAYS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(self), geolocation=(), microphone=()",
}
# A value for each path parameter type, so that every route can be requested.
_PARAM_VALUES = {
    "uuid": str(uuid.UUID(int=1)),
    "int": "1",
    "str": "x",
    "date": "2026-01-01",
    "path": "x",
}
_PARAM = re.compile(r"\{(\w+):(\w+)\}")


def assert_security_headers(response: httpx.Response, *, tls: bool = False) -> None:
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    for name, value in ALWAYS.items():
        assert response.headers.get(name) == value, (where, name, response.headers)
    csp = response.headers.get("content-security-policy")
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/html"):
        docs = response.request.url.path.startswith("/schema")
        assert csp == (API_DOCS_CSP if docs else PAGE_CSP), (where, csp)
        if not docs:
            assert "unsafe-inline" not in csp, where
    elif content_type.startswith("text/javascript"):
        assert csp == PAGE_CSP, (where, csp)
    else:
        assert csp == NON_HTML_CSP, (where, content_type, csp)
    assert "frame-ancestors 'none'" in csp, where
    if tls:
        assert response.headers.get("strict-transport-security") == HSTS, where
    else:
        assert "strict-transport-security" not in response.headers, where


def every_route_request(app: Any) -> list[tuple[str, str]]:
    """(method, path) for every method of every route the app registers."""
    requests = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = _PARAM.sub(lambda m: _PARAM_VALUES[m.group(2)], route.path)
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            requests.append((method, path))
    return requests


def test_the_policies_allow_no_inline_script_and_only_the_docs_inline_styles() -> None:
    for csp in (PAGE_CSP, API_DOCS_CSP):
        script = next(d for d in csp.split("; ") if d.startswith("script-src"))
        assert script == "script-src 'self'"
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in PAGE_CSP
    assert "style-src 'self' 'unsafe-inline'" in API_DOCS_CSP


@pytest.fixture(scope="module")
async def member(app, pool, clock, settings, make_member):
    card = await make_member(display_name="Hedda Headers")
    client = await wallet_client(app, pool, clock, settings, card)
    yield {"card": card, "wallet": client}
    await client.aclose()


async def test_every_route_carries_the_headers_anonymous_and_signed_in(app, http, member) -> None:
    requests = every_route_request(app)
    assert len(requests) > 100  # every surface, not a handful
    statuses = set()
    for method, path in requests:
        response = await http.request(method, path)
        assert_security_headers(response)
        statuses.add(response.status_code)
        if method == "GET":
            response = await member["wallet"].get(path)
            assert_security_headers(response)
            statuses.add(response.status_code)
    # Pages, redirects and refusals alike.
    assert {200, 303, 401, 404} <= statuses, statuses


@pytest.mark.parametrize(
    "path", ["/", "/card", "/history", "/challenges", "/charities", "/profile", "/inbox"]
)
async def test_wallet_pages_are_html_under_the_page_policy(member, path) -> None:
    response = await member["wallet"].get(path)
    assert response.status_code == 200, (path, response.status_code)
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert_security_headers(response)


async def test_not_found_method_not_allowed_and_docs(http) -> None:
    for response in (
        await http.get("/no/such/page"),
        await http.delete("/health"),
        await http.get("/static/no-such-file.css"),
        await http.get("/schema/openapi.json"),
    ):
        assert_security_headers(response)
    docs = await http.get("/schema")
    assert docs.status_code == 200
    assert docs.headers["content-security-policy"] == API_DOCS_CSP
    # No inline script: Redoc starts from a static file (api/web/api_docs.py).
    assert re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", docs.content) is None, docs.text[:500]
    assert_security_headers(docs)


async def test_hsts_only_when_the_request_came_over_tls(app, http) -> None:
    assert "strict-transport-security" not in (await http.get("/health")).headers
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://kring.test"
    ) as tls:
        for path in ("/health", "/sign-in", "/portal", "/no/such/page", "/schema"):
            assert_security_headers(await tls.get(path), tls=True)


# Body limits ------------------------------------------------------------------

_TOO_LARGE = REQUEST_BODY_BYTES_MAX + 1


async def test_an_oversized_partner_api_body_is_413(make_partner, http) -> None:
    token = await token_for(http, await make_partner())
    body = json.dumps({"card_number": "1" * 16, "note": "x" * _TOO_LARGE}).encode()
    response = await http.post(
        "/partner/v1/earn",
        content=body,
        headers={
            "authorization": f"Bearer {token}",
            "content-type": "application/json",
            "idempotency-key": "too-large-1",
        },
    )
    assert_problem(response, 413, "request_too_large")
    assert_security_headers(response)


async def test_an_oversized_member_api_body_is_413(http, member, bearer) -> None:
    headers = await bearer(member["card"]) | {"content-type": "application/json"}
    body = json.dumps({"display_name": "x" * _TOO_LARGE}).encode()
    response = await http.patch("/member/v1/profile", content=body, headers=headers)
    assert_problem(response, 413, "request_too_large")
    assert_security_headers(response)


async def test_an_oversized_wallet_form_is_413(member) -> None:
    response = await member["wallet"].post(
        "/profile", data={"csrf_token": "x", "display_name": "x" * _TOO_LARGE}
    )
    assert_problem(response, 413, "request_too_large")
    assert_security_headers(response)


async def test_the_reconciliation_endpoint_accepts_its_largest_request(
    make_partner, http, clock
) -> None:
    """RECONCILIATION_ROWS_MAX rows with every field at its longest, pretty-printed,
    fit under the route's own limit; the same body over the app's limit elsewhere
    would be refused."""
    now = clock.now()
    row = {
        "kind": "refund",
        "points": POINTS_MAX,
        "transaction_id": str(uuid.UUID(int=2**128 - 1)),
        "receipt_ref": "R" * 100,
        "amount_cents": AMOUNT_CENTS_MAX,
    }
    body = {
        "period_start": (now - timedelta(days=1)).isoformat(),
        "period_end": now.isoformat(),
        "transactions": [row] * RECONCILIATION_ROWS_MAX,
    }
    content = json.dumps(body, indent=2).encode()
    assert REQUEST_BODY_BYTES_MAX < len(content) < RECONCILIATION_BODY_BYTES_MAX
    token = await token_for(http, await make_partner())
    response = await http.post(
        "/partner/v1/reconciliations",
        content=content,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text[:500]
    assert_security_headers(response)
