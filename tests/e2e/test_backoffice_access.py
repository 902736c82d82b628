"""Who gets into the back-office: sign-in with password and a second factor,
and the role matrix over every /backoffice route.

The matrix walks the router's own handlers, so a page added later is covered
without touching this file: anonymous callers, member and partner credentials
are sent to sign-in; each admin role succeeds exactly where the route's
`opt["roles"]` says and gets a 403 page elsewhere.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest

from api.admin_auth import accounts as admin_accounts
from api.admin_auth.principal import ROLES
from api.backoffice import session as sessions
from api.backoffice.csv_export import csv_response
from api.backoffice.guards import route_roles
from api.backoffice.router import HANDLERS
from api.db.pool import transaction
from tests.conftest import ADMIN_PASSWORD, JWT_SECRET, backoffice_session

SIGN_IN = "/backoffice/sign-in"
_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def _concrete(path: str) -> str:
    """A path with its parameters filled in: ids that exist nowhere."""

    def fill(match: re.Match[str]) -> str:
        kind = match.group(2) or "str"
        return {"int": "987654", "uuid": str(uuid.UUID(int=7))}.get(kind, "no-such-thing")

    return _PARAM.sub(fill, path)


def _routes() -> list[tuple[str, str, tuple[str, ...], bool]]:
    found = []
    for handler in HANDLERS:
        for path in handler.paths:
            for method in sorted(handler.http_methods):
                if method in {"HEAD", "OPTIONS"}:
                    continue
                public = handler.opt.get("public") is True
                found.append((method, "/backoffice" + path, route_roles(handler), public))
    return found


ROUTES = _routes()


def _id(route: tuple[str, str, tuple[str, ...], bool]) -> str:
    return f"{route[0]} {route[1]}"


async def _call(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    url = _concrete(path)
    if method == "GET":
        return await http.get(url, headers=headers)
    return await http.request(method, url, headers=headers, data={})


def test_every_route_says_who_may_use_it() -> None:
    assert ROUTES, "the back-office has routes"
    for method, path, roles, public in ROUTES:
        assert public or roles, f"{method} {path} names no roles (it would be refused to all)"
        assert not (public and roles), f"{method} {path} is public and role-bound at once"
    public = {(m, p) for m, p, _, is_public in ROUTES if is_public}
    assert public == {("GET", SIGN_IN), ("POST", SIGN_IN)}


@pytest.fixture(scope="module")
async def role_sessions(
    http: httpx.AsyncClient, pool: Any, clock: Any
) -> dict[str, dict[str, str]]:
    return {role: await backoffice_session(http, pool, clock, role) for role in ROLES}


@pytest.mark.parametrize("route", [r for r in ROUTES if not r[3]], ids=_id)
async def test_role_matrix(
    http: httpx.AsyncClient,
    role_sessions: dict[str, dict[str, str]],
    make_partner: Any,
    make_member: Any,
    client_for: Any,
    bearer: Any,
    clock: Any,
    pool: Any,
    route: tuple[str, str, tuple[str, ...], bool],
) -> None:
    method, path, allowed, _ = route
    # Anonymous, and credentials of the other surfaces: sent to sign-in, shown nothing.
    partner_token = await client_for(await make_partner()).access_token()
    portal_like = sessions.issue_session(1, 0, secret="another-secret-" + "y" * 40, now=clock.now())
    strangers: list[dict[str, str]] = [
        {},
        {"Authorization": f"Bearer {partner_token}"},
        await bearer(await make_member()),
        {"Cookie": f"{sessions.SESSION_COOKIE}=not-a-session"},
        {"Cookie": f"{sessions.SESSION_COOKIE}={portal_like}"},
    ]
    for headers in strangers:
        answer = await _call(http, method, path, headers)
        assert answer.status_code == 303, (headers, answer.status_code, answer.text[:200])
        assert answer.headers["location"] == SIGN_IN
    signed_in = role_sessions
    if path == "/backoffice/sign-out":  # it ends the session: spend fresh ones
        signed_in = {role: await backoffice_session(http, pool, clock, role) for role in ROLES}
    for role in ROLES:
        answer = await _call(http, method, path, signed_in[role])
        if role in allowed:
            assert answer.status_code != 403 and answer.status_code < 500, (
                role,
                answer.status_code,
                answer.text[:300],
            )
            if path != "/backoffice/sign-out":
                assert answer.headers.get("location") != SIGN_IN
        else:
            assert answer.status_code == 403, (role, answer.status_code)
            assert "Not for your role" in answer.text


async def test_sign_in_needs_the_password_and_a_fresh_code(
    http: httpx.AsyncClient, pool: Any, clock: Any
) -> None:
    created = await transaction(
        pool,
        lambda conn: admin_accounts.create_admin(
            conn, email="ops@example.com", role="support", password=ADMIN_PASSWORD, now=clock.now()
        ),
    )
    totp = pyotp.parse_uri(created.totp_uri)

    async def attempt(password: str, code: str) -> httpx.Response:
        form = await http.get(SIGN_IN)
        assert form.status_code == 200 and 'name="code"' in form.text
        token = form.cookies[sessions.SIGN_IN_CSRF_COOKIE]
        http.cookies.clear()
        return await http.post(
            SIGN_IN,
            data={
                "csrf_token": token,
                "email": "Ops@Example.com",
                "password": password,
                "code": code,
            },
            headers={"Cookie": f"{sessions.SIGN_IN_CSRF_COOKIE}={token}"},
        )

    wrong_password = await attempt("not the password", totp.at(clock.now()))
    assert wrong_password.status_code == 401
    assert "Wrong e-mail, password or code." in wrong_password.text
    assert sessions.SESSION_COOKIE not in wrong_password.cookies
    wrong_code = await attempt(
        ADMIN_PASSWORD, "000000" if totp.at(clock.now()) != "000000" else "111111"
    )
    assert wrong_code.status_code == 401

    good = await attempt(ADMIN_PASSWORD, totp.at(clock.now()))
    assert good.status_code == 303 and good.headers["location"] == "/backoffice/dashboard"
    set_cookie = good.headers["set-cookie"]
    assert (
        "HttpOnly" in set_cookie
        and "SameSite=strict" in set_cookie
        and "Path=/backoffice" in set_cookie
    )
    # The same code does not work twice.
    replay = await attempt(ADMIN_PASSWORD, totp.at(clock.now()))
    assert replay.status_code == 401
    # A recovery code works once.
    recovery = await attempt(ADMIN_PASSWORD, created.recovery_codes[0])
    assert recovery.status_code == 303
    assert (await attempt(ADMIN_PASSWORD, created.recovery_codes[0])).status_code == 401


async def test_a_form_without_its_token_is_refused(http: httpx.AsyncClient) -> None:
    form = await http.get(SIGN_IN)
    http.cookies.clear()
    answer = await http.post(
        SIGN_IN,
        data={"csrf_token": "forged", "email": "a@example.com", "password": "x", "code": "123456"},
        headers={
            "Cookie": f"{sessions.SIGN_IN_CSRF_COOKIE}={form.cookies[sessions.SIGN_IN_CSRF_COOKIE]}"
        },
    )
    assert answer.status_code == 403 and "The page had expired" in answer.text


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(
    http: httpx.AsyncClient, pool: Any, clock: Any
) -> None:
    headers = await backoffice_session(http, pool, clock, "finance")
    cookie_only = {"Cookie": headers["Cookie"]}
    refused = await http.post("/backoffice/sign-out", headers=cookie_only, data={"csrf_token": "x"})
    assert refused.status_code == 403 and "This form has expired" in refused.text
    done = await http.post("/backoffice/sign-out", headers=headers, data={})
    assert done.status_code == 303 and done.headers["location"] == SIGN_IN
    # The session ends on the server: the same cookie, sent again, is refused.
    again = await http.get("/backoffice/dashboard", headers=headers)
    assert again.status_code == 303 and again.headers["location"] == SIGN_IN
    assert (
        'kring_backoffice=""' in done.headers["set-cookie"]
        or "Max-Age=0" in done.headers["set-cookie"]
    )


async def test_a_disabled_admin_or_an_old_session_is_signed_out(
    http: httpx.AsyncClient, pool: Any, clock: Any
) -> None:
    headers = await backoffice_session(http, pool, clock, "owner", email="leaver@example.com")
    assert (await http.get("/backoffice/", headers=headers)).status_code == 303
    home = await http.get("/backoffice/", headers=headers)
    assert home.headers["location"] == "/backoffice/dashboard"
    await transaction(
        pool, lambda conn: admin_accounts.disable_admin(conn, "leaver@example.com", now=clock.now())
    )
    gone = await http.get("/backoffice/", headers=headers)
    assert gone.headers["location"] == SIGN_IN
    # htmx asks for a redirect of the whole page instead of a fragment.
    swapped = await http.get("/backoffice/", headers={**headers, "HX-Request": "true"})
    assert swapped.status_code == 200 and swapped.headers["HX-Redirect"] == SIGN_IN

    expired = sessions.issue_session(
        1, 0, secret=JWT_SECRET, now=clock.now() - sessions.SESSION_TTL - timedelta(seconds=1)
    )
    assert sessions.read_session(expired, secret=JWT_SECRET, now=clock.now()) is None


async def test_csv_export_streams_and_defuses_formulas() -> None:
    response = csv_response(
        "people.csv",
        ["name", "balance_points", "note"],
        [['=HYPERLINK("x")', -5, None], ['Ann, "Jr"', 12, "+31 6"]],
    )
    assert response.headers["Content-Disposition"] == 'attachment; filename="people.csv"'
    body = b"".join([chunk async for chunk in response.iterator])  # type: ignore[union-attr]
    assert body.decode() == (
        'name,balance_points,note\r\n"\'=HYPERLINK(""x"")",-5,\r\n"Ann, ""Jr""",12,\'+31 6\r\n'
    )
    with pytest.raises(ValueError):
        csv_response("../x.csv", ["a"], [])
