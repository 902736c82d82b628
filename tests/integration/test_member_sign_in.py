"""Members sign in with an e-mail code: wallet pages (cookie session, CSRF) and
the member API (bearer tokens). Mail goes to the development mailbox here (no
SMTP configured); tests/integration/test_mail.py proves delivery by SMTP.

Every refusal is checked for what it did not write: no member, no session.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import jwt
import pytest
from litestar import get
from litestar.di import Provide

from api.app import create_app
from api.clock import ManualClock
from api.member_auth import codes, tokens
from api.member_auth.guards import WALLET_SESSION_COOKIE, Member, api_member, wallet_member
from api.settings import Settings

_ips = itertools.count(1)
_emails = itertools.count(1)


@get("/test/me", dependencies={"who": Provide(wallet_member)}, include_in_schema=False)
async def wallet_me(who: Member) -> dict[str, str]:
    return {"public_id": str(who.public_id)}


@get("/test/api-me", dependencies={"who": Provide(api_member)}, include_in_schema=False)
async def api_me(who: Member) -> dict[str, str]:
    return {"public_id": str(who.public_id)}


@pytest.fixture(scope="module")
def app(settings: Settings, database_url: str, clock: ManualClock, pool: asyncpg.Pool) -> Any:
    application = create_app(settings, database_url, clock=clock)
    application.state.runtime.pool = pool
    application.register(wallet_me)
    application.register(api_me)
    return application


@pytest.fixture(scope="module")
def browser(app: Any) -> Callable[..., httpx.AsyncClient]:
    """A client with its own cookie jar and its own IP (so rate limits stay apart)."""

    def make(ip: str | None = None) -> httpx.AsyncClient:
        address = ip or f"10.1.{next(_ips)}.1"
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 40000)),
            # A loopback host: the session cookie is not Secure, so plain http keeps it.
            base_url="http://127.0.0.1",
        )

    return make


def new_email() -> str:
    return f"member{next(_emails)}@example.com"


async def last_code(pool: asyncpg.Pool, email: str) -> str:
    body = await pool.fetchval(
        "SELECT body_text FROM mail_outbox WHERE to_address = $1 ORDER BY id DESC LIMIT 1", email
    )
    assert body is not None, f"no mail to {email}"
    found = re.search(r"\b(\d{6})\b", body)
    assert found is not None
    return found.group(1)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "the form has no CSRF field"
    return found.group(1)


async def ask_code(client: httpx.AsyncClient, email: str, next_path: str = "/") -> httpx.Response:
    form = await client.get("/sign-in", params={"next": next_path})
    assert form.status_code == 200
    return await client.post(
        "/sign-in",
        data={"email": email, "next": next_path, "csrf_token": csrf_of(form.text)},
    )


async def enter_code(client: httpx.AsyncClient, code: str) -> httpx.Response:
    page = await client.get("/sign-in/code")
    assert page.status_code == 200
    return await client.post("/sign-in/code", data={"code": code, "csrf_token": csrf_of(page.text)})


async def sign_in(
    client: httpx.AsyncClient, pool: asyncpg.Pool, email: str, next_path: str = "/"
) -> httpx.Response:
    sent = await ask_code(client, email, next_path)
    assert sent.status_code == 303 and sent.headers["location"] == "/sign-in/code"
    return await enter_code(client, await last_code(pool, email))


async def member_count(pool: asyncpg.Pool, email: str) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM members WHERE email = $1", email)
    return count


async def session_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM member_sessions")
    return count


# Signing up and in ---------------------------------------------------------------


async def test_a_code_signs_up_a_new_member_only_when_verified(
    browser: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool
) -> None:
    client, email = browser(), new_email()
    sent = await ask_code(client, "  " + email.upper() + " ", "/history?page=2")
    assert sent.status_code == 303
    # A code and its mail, but no member for an address nobody has proved yet.
    assert await member_count(pool, email) == 0
    stored = await pool.fetchrow("SELECT * FROM sign_in_codes WHERE email = $1", email)
    code = await last_code(pool, email)
    assert stored is not None and code.encode() not in bytes(stored["code_hmac"])
    assert len(bytes(stored["code_hmac"])) == 32  # HMAC-SHA256, never the code
    page = await client.get("/sign-in/code")
    assert email in page.text and 'autocomplete="one-time-code"' in page.text
    assert 'inputmode="numeric"' in page.text

    done = await enter_code(client, code)
    assert done.status_code == 303 and done.headers["location"] == "/history?page=2"
    cookie = done.headers["set-cookie"]
    assert WALLET_SESSION_COOKIE in cookie and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    member = await pool.fetchrow(
        "SELECT public_id, card_number FROM members WHERE email = $1", email
    )
    assert member is not None and re.fullmatch(r"\d{16}", member["card_number"])
    me = await client.get("/test/me")
    assert me.status_code == 200 and me.json() == {"public_id": str(member["public_id"])}

    # Signing in again finds the same member: no second card.
    other = browser()
    again = await sign_in(other, pool, email)
    assert again.status_code == 303 and again.headers["location"] == "/"
    assert await member_count(pool, email) == 1
    assert (await other.get("/test/me")).json() == {"public_id": str(member["public_id"])}


async def test_the_session_cookie_is_secure_outside_loopback(app: Any, pool: asyncpg.Pool) -> None:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.9.9.9", 40000)),
        base_url="https://wallet.kring.example",
    )
    email = new_email()
    done = await sign_in(client, pool, email)
    assert done.status_code == 303
    assert "secure" in done.headers["set-cookie"].lower()


async def test_a_wrong_code_says_so_and_changes_nothing_but_the_count(
    browser: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool
) -> None:
    client, email = browser(), new_email()
    await ask_code(client, email)
    code = await last_code(pool, email)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    sessions_before = await session_count(pool)
    refused = await enter_code(client, wrong)
    assert refused.status_code == 422
    assert 'role="alert"' in refused.text and "not right" in refused.text
    assert "4 tries left" in refused.text
    assert await member_count(pool, email) == 0
    assert await session_count(pool) == sessions_before
    assert f"{WALLET_SESSION_COOKIE}=" not in refused.headers.get("set-cookie", "")
    # Malformed input is refused without counting as an attempt.
    malformed = await enter_code(client, "12ab56")
    assert malformed.status_code == 422 and "6 digits" in malformed.text
    attempts = await pool.fetchval("SELECT attempts FROM sign_in_codes WHERE email = $1", email)
    assert attempts == 1
    # The right code still works.
    assert (await enter_code(client, code)).status_code == 303


async def test_an_expired_code_is_refused(
    browser: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool, clock: ManualClock
) -> None:
    client, email = browser(), new_email()
    await ask_code(client, email)
    code = await last_code(pool, email)
    clock.advance(timedelta(minutes=codes.CODE_TTL_MINUTES, seconds=1))
    refused = await enter_code(client, code)
    assert refused.status_code == 422 and "expired" in refused.text
    assert await member_count(pool, email) == 0


async def test_a_used_code_cannot_be_used_again(
    http_for: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool
) -> None:
    api, email = http_for(), new_email()
    assert (await api.post("/member/v1/auth/code", json={"email": email})).status_code == 202
    code = await last_code(pool, email)
    first = await api.post("/member/v1/auth/token", json={"email": email, "code": code})
    assert first.status_code == 200
    sessions_before = await session_count(pool)
    again = await api.post("/member/v1/auth/token", json={"email": email, "code": code})
    assert again.status_code == 422 and again.json()["code"] == "code_used"
    assert again.headers["content-type"].startswith("application/problem+json")
    assert await session_count(pool) == sessions_before


async def test_too_many_wrong_codes_start_a_cool_down(
    browser: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool, clock: ManualClock
) -> None:
    client, email = browser(), new_email()
    await ask_code(client, email)
    code = await last_code(pool, email)
    wrong = f"{(int(code) + 7) % 10**6:06d}"
    for _ in range(codes.CODE_ATTEMPTS_MAX - 1):
        assert (await enter_code(client, wrong)).status_code == 422
    last = await enter_code(client, wrong)
    assert last.status_code == 429 and "too many wrong codes" in last.text.lower()
    assert int(last.headers["retry-after"]) == codes.CODE_COOLDOWN_MINUTES * 60
    # Now not even the right code works, and no new code is sent.
    assert (await enter_code(client, code)).status_code == 429
    outbox_before = await pool.fetchval("SELECT count(*) FROM mail_outbox")
    assert (await ask_code(client, email)).status_code == 429
    assert await pool.fetchval("SELECT count(*) FROM mail_outbox") == outbox_before
    assert await member_count(pool, email) == 0

    clock.advance(timedelta(minutes=codes.CODE_COOLDOWN_MINUTES, seconds=1))
    # The old code died with the cool-down; a new one works.
    assert (await enter_code(client, code)).status_code == 422
    assert (await sign_in(client, pool, email)).status_code == 303
    assert await member_count(pool, email) == 1


async def test_codes_are_rate_limited_per_address(
    http_for: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool
) -> None:
    email = new_email()
    for _ in range(codes.CODE_SENDS_PER_ADDRESS_MAX):
        # From different IPs: the address's own limit is what stops it.
        sent = await http_for().post("/member/v1/auth/code", json={"email": email})
        assert sent.status_code == 202
    refused = await http_for().post("/member/v1/auth/code", json={"email": email})
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    mails = await pool.fetchval("SELECT count(*) FROM mail_outbox WHERE to_address = $1", email)
    assert mails == codes.CODE_SENDS_PER_ADDRESS_MAX
    # Another address is not affected.
    assert (
        await http_for().post("/member/v1/auth/code", json={"email": new_email()})
    ).status_code == 202


async def test_codes_are_rate_limited_per_ip(
    http_for: Callable[..., httpx.AsyncClient], browser: Callable[..., httpx.AsyncClient]
) -> None:
    api = http_for("10.200.0.1")
    for _ in range(codes.CODE_SENDS_PER_IP_MAX):
        assert (
            await api.post("/member/v1/auth/code", json={"email": new_email()})
        ).status_code == 202
    refused = await api.post("/member/v1/auth/code", json={"email": new_email()})
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    # The wallet's form from the same IP says so on the page.
    page = await ask_code(browser("10.200.0.1"), new_email())
    assert page.status_code == 429 and 'role="alert"' in page.text and "retry-after" in page.headers
    # Another IP is not affected.
    assert (
        await http_for().post("/member/v1/auth/code", json={"email": new_email()})
    ).status_code == 202


# Sessions --------------------------------------------------------------------------


async def test_without_a_session_a_wallet_page_sends_you_to_sign_in(
    browser: Callable[..., httpx.AsyncClient],
) -> None:
    client = browser()
    page = await client.get("/test/me", params={"tab": "all"})
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=/test/me%3Ftab%3Dall"
    fragment = await client.get("/test/me", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and fragment.headers["hx-redirect"].startswith(
        "/sign-in?next="
    )


async def test_a_forged_session_cookie_is_refused(
    browser: Callable[..., httpx.AsyncClient],
    pool: asyncpg.Pool,
    settings: Settings,
    clock: ManualClock,
) -> None:
    client, email = browser(), new_email()
    await sign_in(client, pool, email)
    real = client.cookies[WALLET_SESSION_COOKIE]
    claims = jwt.decode(real, options={"verify_signature": False})
    # Same claims, signed with another key.
    forged = jwt.encode(claims, "not-the-secret-" + "y" * 40, algorithm="HS256")
    # A real key but the portal's audience (a token for another surface).
    portal_aud = jwt.encode(
        {**claims, "aud": "kring:portal"}, settings.jwt_secret, algorithm="HS256"
    )
    # alg=none.
    unsigned = jwt.encode(claims, None, algorithm="none")
    for bad in (forged, portal_aud, unsigned, real[:-3] + "abc", "garbage"):
        other = browser()
        other.cookies.set(WALLET_SESSION_COOKIE, bad)
        assert (await other.get("/test/me")).status_code == 303
    assert (await client.get("/test/me")).status_code == 200


async def test_an_expired_session_cookie_is_refused(
    browser: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool, clock: ManualClock
) -> None:
    client = browser()
    await sign_in(client, pool, new_email())
    assert (await client.get("/test/me")).status_code == 200
    clock.advance(tokens.WALLET_SESSION_TTL + timedelta(seconds=1))
    assert (await client.get("/test/me")).status_code == 303


async def test_sign_out_revokes_the_session_everywhere(
    browser: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool, settings: Settings
) -> None:
    client = browser()
    await sign_in(client, pool, new_email())
    cookie = client.cookies[WALLET_SESSION_COOKIE]
    assert (await client.get("/test/me")).status_code == 200
    # The token the wallet's pages put in their forms (guards.wallet_csrf_token).
    session_id = UUID(jwt.decode(cookie, options={"verify_signature": False})["sid"])
    csrf = tokens.csrf_token_for(session_id, secret=settings.jwt_secret or "")
    out = await client.post("/sign-out", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/sign-in"
    assert (await client.get("/test/me")).status_code == 303
    # A copy of the cookie kept from before sign-out is refused as well.
    stolen = browser()
    stolen.cookies.set(WALLET_SESSION_COOKIE, cookie)
    assert (await stolen.get("/test/me")).status_code == 303


async def test_a_form_post_without_its_csrf_token_is_refused(
    browser: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool
) -> None:
    client = browser()
    await sign_in(client, pool, new_email())
    for data in ({}, {"csrf_token": "x" * 43}):
        refused = await client.post("/sign-out", data=data)
        assert refused.status_code == 403 and "expired" in refused.text
    assert (await client.get("/test/me")).status_code == 200  # still signed in
    # The sign-in form too: nothing is written without the token.
    other, email = browser(), new_email()
    await other.get("/sign-in")
    refused = await other.post("/sign-in", data={"email": email, "next": "/"})
    assert refused.status_code == 403 and 'role="alert"' in refused.text
    assert await pool.fetchval("SELECT count(*) FROM sign_in_codes WHERE email = $1", email) == 0
    assert await pool.fetchval("SELECT count(*) FROM mail_outbox WHERE to_address = $1", email) == 0


@pytest.mark.parametrize(
    "next_path",
    [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/%0a/evil",
    ],
)
async def test_sign_in_never_redirects_off_site(
    browser: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool, next_path: str
) -> None:
    client = browser()
    done = await sign_in(client, pool, new_email(), next_path)
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\"))
    assert "evil" not in location or location.startswith("/%0a")


# The member API --------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_for(app: Any) -> Callable[..., httpx.AsyncClient]:
    def make(ip: str | None = None) -> httpx.AsyncClient:
        address = ip or f"10.2.{next(_ips) % 250}.{next(_ips) % 250}"
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 40000)),
            base_url="http://kring.test",
        )

    return make


async def test_member_api_token_flow(
    http_for: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool, clock: ManualClock
) -> None:
    api, email = http_for(), new_email()
    sent = await api.post("/member/v1/auth/code", json={"email": email})
    assert sent.status_code == 202 and sent.json()["expires_in"] == 600
    token = await api.post(
        "/member/v1/auth/token", json={"email": email, "code": await last_code(pool, email)}
    )
    assert token.status_code == 200
    body = token.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "kring:member" and claims["iss"] == "kring"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    me = await api.get("/test/api-me", headers=bearer)
    public_id = await pool.fetchval("SELECT public_id FROM members WHERE email = $1", email)
    assert me.status_code == 200 and me.json() == {"public_id": str(public_id)}

    clock.advance(tokens.MEMBER_TOKEN_TTL + timedelta(seconds=1))
    expired = await api.get("/test/api-me", headers=bearer)
    assert expired.status_code == 401 and expired.json()["code"] == "token_expired"


async def test_member_api_refuses_bad_bearers(
    http_for: Callable[..., httpx.AsyncClient],
    browser: Callable[..., httpx.AsyncClient],
    pool: asyncpg.Pool,
) -> None:
    api = http_for()
    missing = await api.get("/test/api-me")
    assert missing.status_code == 401 and missing.json()["code"] == "missing_token"
    for header in ("Bearer nonsense", "Basic abc", "Bearer "):
        bad = await api.get("/test/api-me", headers={"Authorization": header})
        assert bad.status_code == 401 and bad.json()["code"] == "invalid_token"
    # A wallet session cookie is not an API token (another audience).
    client = browser()
    await sign_in(client, pool, new_email())
    cookie = client.cookies[WALLET_SESSION_COOKIE]
    cross = await api.get("/test/api-me", headers={"Authorization": f"Bearer {cookie}"})
    assert cross.status_code == 401 and cross.json()["code"] == "invalid_token"

    email = new_email()
    await api.post("/member/v1/auth/code", json={"email": email})
    body = (
        await api.post(
            "/member/v1/auth/token", json={"email": email, "code": await last_code(pool, email)}
        )
    ).json()
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await api.post("/member/v1/auth/revoke", headers=bearer)).status_code == 204
    revoked = await api.get("/test/api-me", headers=bearer)
    assert revoked.status_code == 401 and revoked.json()["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"email": "not-an-address"}, "invalid_email"),
        ({"email": ""}, "invalid_email"),
        ({"email": "a@b"}, "invalid_email"),
        ({"email": 42}, "invalid_request"),
        ({}, "invalid_request"),
    ],
)
async def test_member_api_code_bad_input(
    http_for: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool, body: dict[str, Any], code: str
) -> None:
    codes_before = await pool.fetchval("SELECT count(*) FROM sign_in_codes")
    refused = await http_for().post("/member/v1/auth/code", json=body)
    assert refused.status_code == 422 and refused.json()["code"] == code
    assert await pool.fetchval("SELECT count(*) FROM sign_in_codes") == codes_before


@pytest.mark.parametrize(
    ("code", "expected"),
    [("12345", "invalid_code"), ("abcdef", "invalid_code"), ("000000", "invalid_code")],
)
async def test_member_api_token_bad_input(
    http_for: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool, code: str, expected: str
) -> None:
    email = new_email()  # never sent a code
    refused = await http_for().post("/member/v1/auth/token", json={"email": email, "code": code})
    assert refused.status_code == 422 and refused.json()["code"] == expected
    assert await member_count(pool, email) == 0


async def test_the_openapi_document_has_the_member_auth_calls(
    http_for: Callable[..., httpx.AsyncClient],
) -> None:
    schema = (await http_for().get("/schema/openapi.json")).json()
    assert "memberBearer" in schema["components"]["securitySchemes"]
    assert "/member/v1/auth/code" in schema["paths"] and "/member/v1/auth/token" in schema["paths"]
    assert schema["paths"]["/member/v1/auth/revoke"]["post"]["security"] == [{"memberBearer": []}]


async def test_prune_deletes_only_what_sign_in_no_longer_needs(
    http_for: Callable[..., httpx.AsyncClient], pool: asyncpg.Pool, clock: ManualClock
) -> None:
    api, email = http_for(), new_email()
    await api.post("/member/v1/auth/code", json={"email": email})
    await codes.prune(pool, now=clock.now())
    assert await pool.fetchval("SELECT count(*) FROM sign_in_codes WHERE email = $1", email) == 1
    clock.advance(codes.SIGN_IN_ROWS_KEPT + timedelta(minutes=codes.CODE_TTL_MINUTES + 1))
    fresh = new_email()
    await api.post("/member/v1/auth/code", json={"email": fresh})
    await codes.prune(pool, now=clock.now())
    left = await pool.fetch("SELECT email FROM sign_in_codes WHERE email = ANY($1)", [email, fresh])
    assert [r["email"] for r in left] == [fresh]
    stale = await pool.fetchval(
        "SELECT count(*) FROM member_sessions WHERE expires_at < $1",
        clock.now() - timedelta(days=1),
    )
    assert stale == 0
