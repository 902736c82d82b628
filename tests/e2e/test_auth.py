"""Partner authentication: client credentials, access tokens, suspension.

Every refusal is a 4xx problem+json with a stable code, and a refused write
moves nothing (DESIGN, "Errors and bad input").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest

from api.coalition.partners import rotate_credentials, set_partner_status
from api.db.pool import transaction
from api.partner_api.auth import AUDIENCE
from api.signed_tokens import ALGORITHM, ISSUER
from tests.e2e.test_bad_input import (
    AUTO,
    Api,
    P,
    assert_problem,
    authorize,
    body_for,
    open_shop,
    token_for,
    writes_nothing,
)


@pytest.fixture
async def shop(make_partner, make_member, http, pool, clock):
    return await open_shop(make_partner, make_member, http, pool, clock)


def claims_for(shop, clock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(shop.creds.partner_public_id),
        "pid": shop.creds.partner_id,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def calls(shop, pool, http, headers: dict[str, str]):
    """A read and a write with these headers; the write must move nothing."""
    read = await http.get(f"{P}/transactions", headers=headers)
    member = await http.get(f"{P}/members/{shop.card}", headers=headers)
    async with writes_nothing(pool, shop.card):
        write = await http.post(
            f"{P}/earn",
            json=body_for("/earn", shop.card),
            headers=headers | {"idempotency-key": "auth-test"},
        )
        burn = await http.post(
            f"{P}/burns",
            json=body_for("/burns", shop.card),
            headers=headers | {"idempotency-key": "auth-test-2"},
        )
    return read, member, write, burn


# Access tokens ------------------------------------------------------------------


async def test_no_authorization_header_is_401_missing_token(shop, pool, http):
    for response in await calls(shop, pool, http, {}):
        problem = assert_problem(response, 401, "missing_token")
        assert "Bearer" in problem["detail"]


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc", "bearer-abc", "Bearer a b c"],
)
async def test_malformed_authorization_header_is_401_invalid_token(shop, pool, http, header):
    for response in await calls(shop, pool, http, {"authorization": header}):
        assert_problem(response, 401, "invalid_token")


def forged_tokens(shop, clock, secret: str) -> dict[str, str]:
    good = claims_for(shop, clock)
    return {
        "other-secret": jwt.encode(good, "another-secret-" + "y" * 40, algorithm=ALGORITHM),
        "alg-none": jwt.encode(good, None, algorithm="none"),
        "alg-none-unsigned-with-good-header": (
            jwt.encode(good, secret, algorithm=ALGORITHM).rsplit(".", 1)[0] + "."
        ),
        "alg-hs512-same-secret": jwt.encode(good, secret, algorithm="HS512"),
        "tampered-payload": _tamper(jwt.encode(good, secret, algorithm=ALGORITHM), shop, clock),
        "wrong-audience": jwt.encode(
            claims_for(shop, clock, aud="kring:member-app"), secret, algorithm=ALGORITHM
        ),
        "no-audience": jwt.encode(claims_for(shop, clock, aud=None), secret, algorithm=ALGORITHM),
        "wrong-issuer": jwt.encode(
            claims_for(shop, clock, iss="someone-else"), secret, algorithm=ALGORITHM
        ),
        "no-expiry": jwt.encode(claims_for(shop, clock, exp=None), secret, algorithm=ALGORITHM),
        "string-expiry": jwt.encode(
            claims_for(shop, clock, exp="tomorrow"), secret, algorithm=ALGORITHM
        ),
        "issued-in-the-future": jwt.encode(
            claims_for(shop, clock, iat=int(clock.now().timestamp()) + 3_600),
            secret,
            algorithm=ALGORITHM,
        ),
        "bad-subject": jwt.encode(
            claims_for(shop, clock, sub="partner-1"), secret, algorithm=ALGORITHM
        ),
        "not-a-jwt": "not.a.jwt",
        "garbage": "x" * 2_000,
    }


def _tamper(token: str, shop, clock) -> str:
    header, _, signature = token.split(".")
    other = jwt.encode(
        claims_for(shop, clock, pid=shop.creds.partner_id + 1), "k" * 40, algorithm=ALGORITHM
    )
    return ".".join([header, other.split(".")[1], signature])


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS512 forgery
@pytest.mark.parametrize(
    "kind",
    [
        "other-secret",
        "alg-none",
        "alg-none-unsigned-with-good-header",
        "alg-hs512-same-secret",
        "tampered-payload",
        "wrong-audience",
        "no-audience",
        "wrong-issuer",
        "no-expiry",
        "string-expiry",
        "issued-in-the-future",
        "bad-subject",
        "not-a-jwt",
        "garbage",
    ],
)
async def test_forged_or_foreign_token_is_401_invalid_token(
    shop, pool, http, clock, settings, kind
):
    token = forged_tokens(shop, clock, settings.jwt_secret)[kind]
    for response in await calls(shop, pool, http, {"authorization": f"Bearer {token}"}):
        assert_problem(response, 401, "invalid_token")


async def test_expired_token_is_401_token_expired(shop, pool, http, clock, settings):
    token = await token_for(http, shop.creds)
    clock.advance(timedelta(seconds=settings.partner_token_ttl_seconds + 1))
    for response in await calls(shop, pool, http, {"authorization": f"Bearer {token}"}):
        problem = assert_problem(response, 401, "token_expired")
        assert "expired" in problem["detail"]
    # A new token works again.
    fresh = Api(http, await token_for(http, shop.creds))
    assert (await fresh.get("/transactions")).status_code == 200


# The token endpoint ---------------------------------------------------------------


def grant(creds, **changes: Any) -> dict[str, Any]:
    body = {
        "grant_type": "client_credentials",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_wrong_or_unknown_client_is_401_invalid_client(shop, pool, http, form):
    cases = [
        grant(shop.creds, client_secret=shop.creds.client_secret + "x"),
        grant(shop.creds, client_secret=shop.creds.client_secret[:-1]),
        grant(shop.creds, client_secret="ks_" + "A" * 43),
        grant(shop.creds, client_id="kp_000000000000000000000000"),
        grant(shop.creds, client_id=shop.creds.client_id.upper()),
    ]
    for body in cases:
        async with writes_nothing(pool):
            response = await (
                http.post(f"{P}/token", data=body) if form else http.post(f"{P}/token", json=body)
            )
        assert_problem(response, 401, "invalid_client")
        assert "access_token" not in response.text


@pytest.mark.parametrize(
    "changes",
    [
        {"grant_type": "password"},
        {"grant_type": None},
        {"client_id": None},
        {"client_secret": None},
        {"client_id": ""},
        {"client_secret": ""},
        {"client_id": "c" * 101},
        {"client_secret": "s" * 201},
        {"client_secret": 12345},
    ],
)
async def test_bad_token_request_is_400_invalid_request(shop, http, changes):
    body = grant(shop.creds, **changes)
    response = await http.post(f"{P}/token", json=body)
    assert_problem(response, 400, "invalid_request")
    if not isinstance(changes.get("client_secret"), int):
        form = await http.post(f"{P}/token", data=body)
        assert_problem(form, 400, "invalid_request")


@pytest.mark.parametrize(
    ("raw", "content_type", "code"),
    [
        (
            b'{"grant_type": "client_credentials", "client_id": "',
            "application/json",
            "malformed_json",
        ),
        (b"not json", "application/json", "malformed_json"),
        (b"[]", "application/json", "invalid_request"),
        (b"", "application/json", "malformed_json"),
        (b"grant_type=client_credentials", None, "malformed_json"),
        (
            b"client_id=\xff\xfe&client_secret=x&grant_type=client_credentials",
            "application/x-www-form-urlencoded",
            "invalid_request",
        ),
    ],
)
async def test_malformed_token_request_is_400(http, raw, content_type, code):
    headers = {"content-type": content_type} if content_type else {}
    response = await http.post(f"{P}/token", content=raw, headers=headers)
    assert_problem(response, 400, code)


async def test_oversized_token_request_is_413(http):
    response = await http.post(
        f"{P}/token",
        content=b'{"client_id": "' + b"x" * 200_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 413, "request_too_large")


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_nul_character_in_client_id_is_400_invalid_request(shop, http, form):
    # PostgreSQL text cannot hold NUL: it is refused at the edge, before any query.
    body = grant(shop.creds, client_id=shop.creds.client_id + "\u0000")
    response = await (
        http.post(f"{P}/token", data=body) if form else http.post(f"{P}/token", json=body)
    )
    assert_problem(response, 400, "invalid_request")


async def test_rotated_credentials_refuse_the_old_secret(shop, pool, http, clock):
    old = shop.creds
    new = await transaction(
        pool, lambda conn: rotate_credentials(conn, old.partner_id, now=clock.now())
    )
    assert new.client_id != old.client_id
    for body in (
        grant(old),
        grant(old, client_id=new.client_id),
        grant(new, client_secret=old.client_secret),
    ):
        response = await http.post(f"{P}/token", json=body)
        assert_problem(response, 401, "invalid_client")
    token = await token_for(http, new)
    assert (await Api(http, token).get("/transactions")).status_code == 200


async def test_suspended_partner_gets_no_token_and_its_live_token_does_nothing(shop, pool, http):
    token = await token_for(http, shop.creds)  # taken while still active
    hold = await authorize(shop, points=10)
    await transaction(
        pool, lambda conn: set_partner_status(conn, shop.creds.partner_id, "suspended")
    )
    try:
        for body in (grant(shop.creds), grant(shop.creds, client_secret="wrong")):
            response = await http.post(f"{P}/token", json=body)
            assert_problem(response, 401, "invalid_client")
        api = Api(http, token)
        for path in (
            "/earn",
            "/burns/authorize",
            "/burns",
            f"/burns/{hold}/capture",
            f"/burns/{hold}/void",
        ):
            async with writes_nothing(pool, shop.card):
                response = await api.post(
                    path,
                    body_for(path, shop.card)
                    if path.startswith("/earn") or path in ("/burns", "/burns/authorize")
                    else {},
                )
            problem = assert_problem(response, 403, "partner_suspended")
            assert "suspended" in problem["detail"]
        for path in (f"/transactions/{hold}", "/transactions", f"/members/{shop.card}"):
            assert_problem(await api.get(path), 403, "partner_suspended")
    finally:
        await transaction(
            pool, lambda conn: set_partner_status(conn, shop.creds.partner_id, "active")
        )
    again = Api(http, await token_for(http, shop.creds))
    assert (await again.post("/earn", body_for("/earn", shop.card))).status_code == 201


async def test_token_of_one_partner_does_not_reach_another(
    make_partner, make_member, http, pool, clock
):
    a = await open_shop(make_partner, make_member, http, pool, clock)
    b = await open_shop(make_partner, make_member, http, pool, clock)
    hold = await authorize(a)
    listed = await b.api.get("/transactions")
    assert {item["id"] for item in listed.json()["items"]}.isdisjoint({a.earn_id, hold})
    for method, path in (("GET", f"/transactions/{a.earn_id}"), ("POST", f"/burns/{hold}/void")):
        async with writes_nothing(pool, a.card, b.card):
            response = await (b.api.get(path) if method == "GET" else b.api.post(path, AUTO))
        assert_problem(response, 404, "transaction_not_found")
