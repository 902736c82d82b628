"""The authorization matrix: every route of every surface, every principal.

`ROUTES` classifies each (method, path) the app registers; a route missing
from it fails the test by name, so a new route cannot ship unclassified.
Each route is then requested by anonymous, member A and B, partner A and B
(API token and portal manager session), partner A's cashier and an admin of
each role, with A's own resources in the path where the route takes one:

- a surface's credentials work only on that surface (a member or partner
  token never reaches /admin/v1, an admin token no member or partner route);
- admin routes answer each role exactly as ROUTES says (403 `forbidden_role`);
- B asking for A's resource (transaction, hold, statement, webhook endpoint,
  inbox message, monthly donation) gets 404 or 403, never the resource;
- and after everyone but A has been through every route, A's rows are exactly
  as they were: nobody changed another's data.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import asyncpg
import httpx
import pytest
from litestar.routes import HTTPRoute

from api.charity import charities, monthly
from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.engagement import inbox
from api.ledger.lots import release_due
from api.member_auth import tokens as member_tokens
from api.member_auth.guards import WALLET_SESSION_COOKIE
from api.member_auth.sessions import open_session
from api.member_auth.tokens import WALLET_AUDIENCE, WALLET_SESSION_TTL, issue_session_token
from api.portal import session as portal_session
from api.portal import staff as portal_staff
from api.settings import Settings
from api.settlement.periods import business_date, day_end
from api.settlement.run import settle_due
from tests.conftest import admin_headers
from tests.integration.test_donations import IBAN
from tests.integration.test_reconciliation import token_for

Surface = Literal[
    "public", "member_api", "wallet", "partner_api", "portal", "portal_manager", "admin"
]
ADMIN_ROLES = ("owner", "finance", "support", "marketing")
ALL_ADMINS = ADMIN_ROLES
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Rule:
    surface: Surface
    roles: tuple[str, ...] = ()  # admin routes: who may
    # This route takes one of A's resources in its path (see `owned_by_a`).
    owned: str | None = None
    # Ends or replaces the caller's own session or credentials: requested last.
    last: bool = False
    # A valid JSON body, where an empty one would be refused before the owner is.
    body: dict[str, Any] | None = None


PUBLIC = Rule("public")
MEMBER = Rule("member_api")
WALLET = Rule("wallet")
PARTNER = Rule("partner_api")
PORTAL = Rule("portal")
MANAGER = Rule("portal_manager")


def admin(*roles: str) -> Rule:
    return Rule("admin", roles=roles)


ROUTES: dict[tuple[str, str], Rule] = {
    # Operations, documents, static files, the PWA shell.
    ("GET", "/health"): PUBLIC,
    ("GET", "/schema"): PUBLIC,
    ("GET", "/schema/openapi.json"): PUBLIC,
    ("GET", "/schema/redoc"): PUBLIC,
    ("GET", "/schema/{path:str}"): PUBLIC,
    ("GET", "/static/{file_path:path}"): PUBLIC,
    ("GET", "/manifest.webmanifest"): PUBLIC,
    ("GET", "/sw.js"): PUBLIC,
    ("GET", "/offline"): PUBLIC,
    # Signing in (rate limited, tested in test_rate_limits.py).
    ("GET", "/sign-in"): PUBLIC,
    ("POST", "/sign-in"): PUBLIC,
    ("GET", "/sign-in/code"): PUBLIC,
    ("POST", "/sign-in/code"): PUBLIC,
    ("POST", "/sign-out"): Rule("public", last=True),
    ("GET", "/dev/mailbox"): PUBLIC,  # development only: absent in production
    ("POST", "/member/v1/auth/code"): PUBLIC,
    ("POST", "/member/v1/auth/token"): PUBLIC,
    ("POST", "/partner/v1/token"): PUBLIC,
    ("POST", "/admin/v1/token"): PUBLIC,
    ("GET", "/portal/sign-in"): PUBLIC,
    ("POST", "/portal/sign-in"): PUBLIC,
    # Public pages: a referral link, the lottery proofs, the charities, partners.
    ("GET", "/join/{code:str}"): PUBLIC,
    ("GET", "/partners"): PUBLIC,
    ("GET", "/lotteries/{lottery_id:int}/draw.json"): PUBLIC,
    ("GET", "/lotteries/{lottery_id:int}/verify"): PUBLIC,
    ("GET", "/charities"): PUBLIC,
    ("GET", "/charities/{charity_id:int}"): PUBLIC,
    # Payment providers' notifications (the status is always fetched from the
    # provider, never taken from the body) and the sandbox checkout page, whose
    # unguessable payment id is the capability.
    ("POST", "/payments/webhooks/mollie"): PUBLIC,
    ("POST", "/payments/webhooks/sandbox"): PUBLIC,
    ("GET", "/sandbox/checkout/{provider_payment_id:str}"): PUBLIC,
    ("POST", "/sandbox/checkout/{provider_payment_id:str}"): PUBLIC,
    # The member API.
    ("POST", "/member/v1/auth/revoke"): Rule("member_api", last=True),
    ("GET", "/member/v1/me"): MEMBER,
    ("DELETE", "/member/v1/me"): Rule("member_api", last=True),
    ("GET", "/member/v1/profile"): MEMBER,
    ("PATCH", "/member/v1/profile"): MEMBER,
    ("GET", "/member/v1/export"): MEMBER,
    ("GET", "/member/v1/partners"): MEMBER,
    ("GET", "/member/v1/transactions"): MEMBER,
    ("GET", "/member/v1/transactions/{transaction_id:str}"): Rule("member_api", owned="member_tx"),
    ("POST", "/member/v1/transactions/{transaction_id:str}/survey"): Rule(
        "member_api", owned="member_tx", body={"score": 9}
    ),
    ("GET", "/member/v1/challenges"): MEMBER,
    ("POST", "/member/v1/challenges/{challenge_id:int}/join"): MEMBER,
    ("GET", "/member/v1/charities"): MEMBER,
    ("POST", "/member/v1/charities/{charity_id:int}/donations"): MEMBER,
    ("PUT", "/member/v1/charities/{charity_id:int}/monthly-donation"): MEMBER,
    ("GET", "/member/v1/donations"): MEMBER,
    ("GET", "/member/v1/donations/monthly"): MEMBER,
    ("DELETE", "/member/v1/donations/monthly/{order_id:int}"): Rule("member_api", owned="order"),
    ("GET", "/member/v1/inbox"): MEMBER,
    ("GET", "/member/v1/pulse"): MEMBER,
    ("POST", "/member/v1/pulse"): MEMBER,
    ("POST", "/member/v1/pulse/dismiss"): MEMBER,
    ("POST", "/member/v1/inbox/read-all"): MEMBER,
    ("POST", "/member/v1/inbox/{message_id:int}/read"): Rule("member_api", owned="message"),
    ("GET", "/member/v1/lotteries"): MEMBER,
    ("POST", "/member/v1/lotteries/{lottery_id:int}/free-ticket"): MEMBER,
    ("POST", "/member/v1/lotteries/{lottery_id:int}/tickets"): MEMBER,
    ("GET", "/member/v1/referral"): MEMBER,
    ("POST", "/member/v1/referral/claim"): MEMBER,
    ("GET", "/member/v1/vip"): MEMBER,
    ("POST", "/member/v1/vip/subscribe"): MEMBER,
    ("POST", "/member/v1/vip/cancel"): MEMBER,
    ("POST", "/member/v1/vip/resubscribe"): MEMBER,
    # The wallet (session cookie).
    ("GET", "/"): WALLET,
    ("GET", "/card"): WALLET,
    ("GET", "/card/live"): WALLET,
    ("GET", "/history"): WALLET,
    ("GET", "/history/{transaction_id:str}"): Rule("wallet", owned="member_tx"),
    ("GET", "/survey/{transaction_id:str}"): Rule("wallet", owned="member_tx"),
    ("POST", "/survey/{transaction_id:str}"): Rule("wallet", owned="member_tx"),
    ("GET", "/challenges"): WALLET,
    ("POST", "/challenges/{challenge_id:int}/join"): WALLET,
    ("POST", "/charities/{charity_id:int}/donate"): WALLET,
    ("POST", "/charities/{charity_id:int}/monthly"): WALLET,
    ("GET", "/donations"): WALLET,
    ("POST", "/donations/monthly/{order_id:int}/cancel"): Rule("wallet", owned="order"),
    ("GET", "/donations/statement/{year:int}"): WALLET,
    ("GET", "/inbox"): WALLET,
    ("POST", "/pulse"): WALLET,
    ("POST", "/inbox/read-all"): WALLET,
    ("GET", "/inbox/{message_id:int}"): Rule("wallet", owned="message"),
    ("GET", "/lotteries"): WALLET,
    ("GET", "/lotteries/{lottery_id:int}"): WALLET,
    ("POST", "/lotteries/{lottery_id:int}/free-ticket"): WALLET,
    ("POST", "/lotteries/{lottery_id:int}/tickets"): WALLET,
    ("GET", "/profile"): WALLET,
    ("POST", "/profile"): WALLET,
    ("GET", "/profile/delete"): WALLET,
    ("POST", "/profile/delete"): Rule("wallet", last=True),
    ("GET", "/profile/export"): WALLET,
    ("GET", "/refer"): WALLET,
    ("POST", "/refer/claim"): WALLET,
    ("GET", "/vip"): WALLET,
    ("POST", "/vip/subscribe"): WALLET,
    ("POST", "/vip/cancel"): WALLET,
    ("POST", "/vip/resubscribe"): WALLET,
    # The partner API. A card number is what a till scans: any partner identifies.
    ("GET", "/partner/v1/members/{card_number:str}"): PARTNER,
    ("POST", "/partner/v1/earn"): PARTNER,
    ("POST", "/partner/v1/burns"): PARTNER,
    ("POST", "/partner/v1/burns/authorize"): PARTNER,
    ("POST", "/partner/v1/burns/{transaction_id:uuid}/capture"): Rule("partner_api", owned="hold"),
    ("POST", "/partner/v1/burns/{transaction_id:uuid}/void"): Rule("partner_api", owned="hold"),
    ("GET", "/partner/v1/transactions"): PARTNER,
    ("GET", "/partner/v1/transactions/{transaction_id:uuid}"): Rule(
        "partner_api", owned="partner_tx"
    ),
    ("POST", "/partner/v1/transactions/{transaction_id:uuid}/refunds"): Rule(
        "partner_api", owned="partner_tx", body={"amount_cents": 100, "currency": "EUR"}
    ),
    ("POST", "/partner/v1/reconciliations"): PARTNER,
    ("GET", "/partner/v1/statements"): PARTNER,
    ("GET", "/partner/v1/statements/{statement_id:str}"): Rule("partner_api", owned="statement"),
    ("GET", "/partner/v1/statements/{statement_id:str}/csv"): Rule(
        "partner_api", owned="statement"
    ),
    ("GET", "/partner/v1/webhooks/endpoints"): PARTNER,
    ("POST", "/partner/v1/webhooks/endpoints"): PARTNER,
    ("GET", "/partner/v1/webhooks/endpoints/{endpoint_id:uuid}/deliveries"): Rule(
        "partner_api", owned="endpoint"
    ),
    ("POST", "/partner/v1/webhooks/endpoints/{endpoint_id:uuid}/disable"): Rule(
        "partner_api", owned="endpoint"
    ),
    ("POST", "/partner/v1/webhooks/endpoints/{endpoint_id:uuid}/rotate-secret"): Rule(
        "partner_api", owned="endpoint"
    ),
    # The portal (partner staff session cookie; some pages managers only).
    ("GET", "/portal"): PUBLIC,  # a redirect to the till, which is guarded
    ("POST", "/portal/sign-out"): Rule("portal", last=True),
    ("GET", "/portal/till"): PORTAL,
    ("POST", "/portal/till/earn"): PORTAL,
    ("POST", "/portal/till/burn"): PORTAL,
    ("GET", "/portal/transactions"): PORTAL,
    ("GET", "/portal/statements"): PORTAL,
    ("GET", "/portal/statements/{statement_id:str}"): Rule("portal", owned="statement"),
    ("GET", "/portal/statements/{statement_id:str}/csv"): Rule("portal", owned="statement"),
    ("GET", "/portal/credentials"): MANAGER,
    ("POST", "/portal/credentials/rotate"): Rule("portal_manager", last=True),
    ("GET", "/portal/webhooks"): MANAGER,
    ("POST", "/portal/webhooks"): MANAGER,
    ("GET", "/portal/webhooks/{endpoint_id:uuid}"): Rule("portal_manager", owned="endpoint"),
    ("POST", "/portal/webhooks/{endpoint_id:uuid}/disable"): Rule(
        "portal_manager", owned="endpoint"
    ),
    ("POST", "/portal/webhooks/{endpoint_id:uuid}/rotate-secret"): Rule(
        "portal_manager", owned="endpoint"
    ),
    # The admin API: each route's roles, as its guards should say.
    ("GET", "/admin/v1/audit"): admin("owner"),
    ("GET", "/admin/v1/challenges"): admin("owner", "marketing", "support", "finance"),
    ("POST", "/admin/v1/challenges"): admin("owner", "marketing"),
    ("GET", "/admin/v1/challenges/{challenge_id:int}"): admin(
        "owner", "marketing", "support", "finance"
    ),
    ("PATCH", "/admin/v1/challenges/{challenge_id:int}"): admin("owner", "marketing"),
    ("POST", "/admin/v1/challenges/{challenge_id:int}/withdraw"): admin("owner", "marketing"),
    ("GET", "/admin/v1/charities"): admin(*ALL_ADMINS),
    ("POST", "/admin/v1/charities"): admin("owner", "finance"),
    ("PUT", "/admin/v1/charities/{charity_id:int}"): admin("owner", "finance"),
    ("PATCH", "/admin/v1/charities/{charity_id:int}/status"): admin("owner", "finance"),
    ("GET", "/admin/v1/matching-campaigns"): admin(*ALL_ADMINS),
    ("POST", "/admin/v1/matching-campaigns"): admin("owner", "marketing"),
    ("POST", "/admin/v1/matching-campaigns/{campaign_id:int}/end"): admin("owner", "marketing"),
    ("POST", "/admin/v1/lotteries"): admin("owner", "marketing"),
    ("POST", "/admin/v1/lotteries/{lottery_id:int}/cancel"): admin("owner", "marketing"),
    ("GET", "/admin/v1/referral-settings"): admin("owner", "marketing", "support"),
    ("PUT", "/admin/v1/referral-settings"): admin("owner", "marketing"),
    ("GET", "/admin/v1/referrals"): admin("owner", "marketing", "support"),
    ("GET", "/admin/v1/tiers"): admin("owner", "marketing"),
    ("PUT", "/admin/v1/tiers/{code:str}"): admin("owner", "marketing"),
    ("GET", "/admin/v1/vip-plans"): admin("owner", "marketing", "finance"),
    ("POST", "/admin/v1/vip-plans"): admin("owner", "marketing"),
    ("PATCH", "/admin/v1/vip-plans/{code:str}"): admin("owner", "marketing"),
    ("POST", "/admin/v1/vip-plans/{code:str}/deactivate"): admin("owner", "marketing"),
    ("GET", "/admin/v1/vip-subscriptions"): admin("owner", "support", "finance"),
    ("GET", "/admin/v1/vip-subscriptions/{subscription_id:int}"): admin(
        "owner", "support", "finance"
    ),
}


def backoffice_route(path: str) -> bool:
    """The back-office's pages have their own role matrix test (issue 7), which
    covers them; this one leaves every /backoffice route to it."""
    return path == "/backoffice" or path.startswith("/backoffice/")


def registered_routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            found.append((method, route.path))
    return found


def test_every_route_is_classified(app: Any) -> None:
    registered = registered_routes(app)
    unclassified = [
        f"{method} {path}"
        for method, path in registered
        if (method, path) not in ROUTES and not backoffice_route(path)
    ]
    assert not unclassified, "classify these routes in ROUTES: " + ", ".join(unclassified)
    stale = [f"{m} {p}" for m, p in ROUTES if (m, p) not in set(registered)]
    assert not stale, "ROUTES names routes the app no longer has: " + ", ".join(stale)
    assert backoffice_route("/backoffice/partners") and not backoffice_route("/backofficers")


# The principals -----------------------------------------------------------------


@dataclass
class Principal:
    name: str
    kind: Literal["anonymous", "member", "partner", "cashier", "admin"]
    side: Literal["A", "B", ""] = ""
    role: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""  # for wallet or portal forms


@dataclass
class World:
    principals: list[Principal]
    owned_by_a: dict[str, str]  # resource kind -> A's id
    member_a_id: int
    partner_a_id: int


async def _wallet_session(
    pool: asyncpg.Pool, clock: ManualClock, settings: Settings, card: str
) -> tuple[str, str]:
    row = await pool.fetchrow("SELECT id, public_id FROM members WHERE card_number = $1", card)
    now = clock.now()
    expires_at = now + WALLET_SESSION_TTL
    session_id = await transaction(
        pool, lambda conn: open_session(conn, row["id"], "wallet", now=now, expires_at=expires_at)
    )
    secret = settings.jwt_secret or ""
    cookie = issue_session_token(
        session_id,
        row["public_id"],
        audience=WALLET_AUDIENCE,
        secret=secret,
        now=now,
        expires_at=expires_at,
    )
    return cookie, member_tokens.csrf_token_for(session_id, secret=secret)


async def _portal_session(
    pool: asyncpg.Pool, clock: ManualClock, settings: Settings, partner_code: str, role: str
) -> tuple[str, str]:
    staff = await transaction(
        pool,
        lambda conn: portal_staff.create_staff(
            conn,
            partner_code=partner_code,
            email=f"{role}@{partner_code}.example",
            display_name=role.title(),
            password=PASSWORD,
            role=role,  # type: ignore[arg-type]  # a test's literal
            now=clock.now(),
        ),
    )
    cookie = portal_session.issue_session(
        staff.id, secret=settings.jwt_secret or "", now=clock.now()
    )
    found = portal_session.read_session(cookie, secret=settings.jwt_secret or "", now=clock.now())
    assert found is not None
    return cookie, found.csrf_token


@pytest.fixture(scope="module")
async def world(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    bearer: Callable[[str], Awaitable[dict[str, str]]],
) -> World:
    partner_a = await make_partner(code="matrix-a", return_window_days=0)
    partner_b = await make_partner(code="matrix-b", return_window_days=0)
    card_a = await make_member(display_name="Member A")
    card_b = await make_member(display_name="Member B")

    async def post(creds: Credentials, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = await token_for(http, creds)
        response = await http.post(
            f"/partner/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    # A's purchase, settled into A's statement; then a hold still open.
    earn_body = {"card_number": card_a, "amount_cents": 5_000, "currency": "EUR"}
    earn = await post(partner_a, "/earn", earn_body)
    await post(partner_b, "/earn", {**earn_body, "card_number": card_b})
    await release_due(pool, clock.now())
    clock.set(day_end(business_date(clock.now())) + timedelta(hours=1))
    await settle_due(pool, clock.now())
    statement_id = await pool.fetchval(
        "SELECT s.public_id FROM statements s WHERE s.partner_id ="
        " (SELECT id FROM partners WHERE code = 'matrix-a') LIMIT 1"
    )
    assert statement_id is not None
    hold = await post(partner_a, "/burns/authorize", {"card_number": card_a, "points": 10})
    endpoint = await post(
        partner_a, "/webhooks/endpoints", {"url": "https://matrix-a.example/hooks"}
    )
    member_a_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card_a)
    message_id = await transaction(
        pool,
        lambda conn: inbox.post(conn, member_a_id, "tier_up", {"tier": "Silver"}, clock.now()),
    )
    charity = await transaction(
        pool,
        lambda conn: charities.create_charity(
            conn,
            charities.CharityIn("Matrix Cause", "Help", None, IBAN, None, "Stichting M", True),
            clock.now(),
        ),
    )
    order = await transaction(
        pool, lambda conn: monthly.set_monthly(conn, member_a_id, charity.id, 100, clock.now())
    )

    principals = [Principal("anonymous", "anonymous")]
    for side, card in (("A", card_a), ("B", card_b)):
        cookie, csrf = await _wallet_session(pool, clock, settings, card)
        principals.append(
            Principal(
                f"member {side}",
                "member",
                side,  # type: ignore[arg-type]
                headers=await bearer(card) | {"X-CSRF-Token": csrf},
                cookies={WALLET_SESSION_COOKIE: cookie},
                csrf=csrf,
            )
        )
    for side, creds, code in (("A", partner_a, "matrix-a"), ("B", partner_b, "matrix-b")):
        cookie, csrf = await _portal_session(pool, clock, settings, code, "manager")
        principals.append(
            Principal(
                f"partner {side}",
                "partner",
                side,  # type: ignore[arg-type]
                headers={"Authorization": f"Bearer {await token_for(http, creds)}"},
                cookies={portal_session.SESSION_COOKIE: cookie},
                csrf=csrf,
            )
        )
    cookie, csrf = await _portal_session(pool, clock, settings, "matrix-a", "cashier")
    principals.append(
        Principal(
            "cashier A",
            "cashier",
            "A",
            cookies={portal_session.SESSION_COOKIE: cookie},
            csrf=csrf,
        )
    )
    for role in ADMIN_ROLES:
        principals.append(
            Principal(
                f"admin {role}", "admin", role=role, headers=await admin_headers(pool, clock, role)
            )
        )
    return World(
        principals=principals,
        owned_by_a={
            "member_tx": earn["id"],
            "partner_tx": earn["id"],
            "hold": hold["id"],
            "statement": str(statement_id),
            "endpoint": endpoint["id"],
            "message": str(message_id),
            "order": str(order.id),
        },
        member_a_id=member_a_id,
        partner_a_id=await pool.fetchval("SELECT id FROM partners WHERE code = 'matrix-a'"),
    )


# Requests and what each principal must get ----------------------------------------

_PARAM = re.compile(r"\{(\w+):(\w+)\}")
_DUMMY = {"uuid": str(uuid.UUID(int=1)), "int": "1", "str": "x", "path": "x"}


def concrete_path(path: str, rule: Rule, world: World) -> str:
    def value(match: re.Match[str]) -> str:
        if rule.owned is not None and match.group(1) in (
            "transaction_id",
            "statement_id",
            "endpoint_id",
            "message_id",
            "order_id",
        ):
            return world.owned_by_a[rule.owned]
        return _DUMMY[match.group(2)]

    return _PARAM.sub(value, path)


async def request_as(
    http: httpx.AsyncClient, who: Principal, method: str, path: str, rule: Rule
) -> httpx.Response:
    headers = dict(who.headers)
    if who.cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in who.cookies.items())
    kwargs: dict[str, Any] = {}
    if method != "GET":
        if path.startswith(("/partner/v1", "/member/v1", "/admin/v1")):
            headers["Idempotency-Key"] = str(uuid.uuid4())
            kwargs["json"] = rule.body or {}
        else:
            kwargs["data"] = {"csrf_token": who.csrf}
    return await http.request(method, path, headers=headers, **kwargs)


def _to_sign_in(response: httpx.Response, sign_in: str) -> bool:
    if response.status_code == 303:
        return response.headers.get("location", "").startswith(sign_in)
    return response.headers.get("hx-redirect", "").startswith(sign_in)


def _problem_code(response: httpx.Response) -> str:
    if "json" not in response.headers.get("content-type", ""):
        return ""
    code = response.json().get("code", "") if response.content else ""
    return str(code)


def allowed(rule: Rule, who: Principal) -> bool:
    match rule.surface:
        case "public":
            return True
        case "member_api" | "wallet":
            return who.kind == "member"
        case "partner_api":
            return who.kind == "partner"
        case "portal":
            return who.kind in ("partner", "cashier")
        case "portal_manager":
            return who.kind == "partner"
        case "admin":
            return who.kind == "admin" and who.role in rule.roles
    return False


def check(response: httpx.Response, rule: Rule, who: Principal) -> str | None:
    """What is wrong with this answer, or None."""
    status = response.status_code
    if status >= 500:
        return f"{status}"
    if rule.surface == "public":
        return None
    if allowed(rule, who):
        if rule.last:
            return None  # the caller's own session may be gone by now: by design
        if status == 401 or (_to_sign_in(response, "/sign-in") and rule.surface == "wallet"):
            return f"refused the rightful caller: {status}"
        if rule.surface.startswith("portal") and _to_sign_in(response, "/portal/sign-in"):
            return "refused the rightful caller: sent to sign in"
        if status == 403 and _problem_code(response) == "forbidden_role":
            return "refused the rightful role"
        if rule.owned and who.side == "B" and status not in (403, 404):
            return f"B reached A's {rule.owned}: {status}"
        return None
    # Not this caller's surface, or not this admin's role.
    if rule.surface in ("member_api", "partner_api") or (
        rule.surface == "admin" and who.kind != "admin"
    ):
        return None if status == 401 else f"expected 401, got {status}"
    if rule.surface == "admin":
        if status == 403 and _problem_code(response) == "forbidden_role":
            return None
        return f"expected 403 forbidden_role, got {status}"
    if rule.surface == "wallet":
        return None if _to_sign_in(response, "/sign-in") else f"not sent to sign in: {status}"
    if rule.surface == "portal_manager" and who.kind == "cashier":
        return None if status == 403 else f"a cashier got {status}"
    # The portal, for anyone who is not its staff.
    return None if _to_sign_in(response, "/portal/sign-in") else f"not sent to sign in: {status}"


_A_ROWS = {
    "members": "SELECT to_jsonb(t)::text FROM members t WHERE id = $1",
    "accounts": "SELECT to_jsonb(t)::text FROM accounts t WHERE member_id = $1 ORDER BY 1",
    "member sessions": (
        "SELECT to_jsonb(t)::text FROM member_sessions t WHERE member_id = $1 ORDER BY 1"
    ),
    "inbox": "SELECT to_jsonb(t)::text FROM inbox_messages t WHERE member_id = $1 ORDER BY 1",
    "monthly donations": (
        "SELECT to_jsonb(t)::text FROM monthly_donations t WHERE member_id = $1 ORDER BY 1"
    ),
    "member transactions": (
        "SELECT to_jsonb(t)::text FROM transactions t WHERE member_id = $1 ORDER BY 1"
    ),
}
_PARTNER_A_ROWS = {
    "partner": "SELECT to_jsonb(t)::text FROM partners t WHERE id = $1",
    "partner transactions": (
        "SELECT to_jsonb(t)::text FROM transactions t WHERE partner_id = $1 ORDER BY 1"
    ),
    "credentials": (
        "SELECT to_jsonb(t)::text FROM partner_credentials t WHERE partner_id = $1 ORDER BY 1"
    ),
    "staff": "SELECT to_jsonb(t)::text FROM partner_staff t WHERE partner_id = $1 ORDER BY 1",
    "webhook endpoints": (
        "SELECT to_jsonb(t)::text FROM webhook_endpoints t WHERE partner_id = $1 ORDER BY 1"
    ),
    "statements": "SELECT to_jsonb(t)::text FROM statements t WHERE partner_id = $1 ORDER BY 1",
}


async def rows_of_a(pool: asyncpg.Pool, world: World) -> dict[str, list[str]]:
    found = {}
    for name, sql in _A_ROWS.items():
        found[name] = [r[0] for r in await pool.fetch(sql, world.member_a_id)]
    for name, sql in _PARTNER_A_ROWS.items():
        found[name] = [r[0] for r in await pool.fetch(sql, world.partner_a_id)]
    return found


async def test_nobody_reads_or_changes_what_is_not_theirs(
    app: Any, http: httpx.AsyncClient, pool: asyncpg.Pool, world: World
) -> None:
    routes = sorted(
        (
            (method, path, ROUTES[method, path])
            for method, path in registered_routes(app)
            if (method, path) in ROUTES
        ),
        key=lambda r: r[2].last,
    )
    before = await rows_of_a(pool, world)
    others = [p for p in world.principals if p.side != "A"]
    a_side = [p for p in world.principals if p.side == "A"]
    problems: list[str] = []
    for group in (others, a_side):
        for method, path, rule in routes:
            concrete = concrete_path(path, rule, world)
            for who in group:
                response = await request_as(http, who, method, concrete, rule)
                wrong = check(response, rule, who)
                if wrong:
                    problems.append(f"{who.name}: {method} {concrete}: {wrong}")
        if group is others:
            assert not problems, "\n".join(problems)
            # Everyone but A has been everywhere; A's rows are as they were.
            assert await rows_of_a(pool, world) == before
    assert not problems, "\n".join(problems)
    assert len(routes) > 140
