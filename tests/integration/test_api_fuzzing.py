"""API fuzzing with schemathesis against the published OpenAPI document.

The real app runs behind uvicorn on a loopback port (its own event loop,
thread and connection pool) on the module's embedded PostgreSQL. Every
operation of /partner/v1 and /member/v1 in `/schema/openapi.json` gets cases
generated from its schema, both valid and invalid (schemathesis' positive and
negative modes), sent with a partner's or a member's bearer token; each answer
must not be a 5xx and must conform to the document: a documented status code,
the documented content type and a body valid against the documented schema.

Bounded for CI: FUZZ_EXAMPLES_PER_OPERATION cases per operation and mode,
derandomized (the same cases on every run, so a failure reproduces).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.settings import Settings

FUZZ_EXAMPLES_PER_OPERATION = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Operations that end the caller's own session or account: fuzzed last, so the
# member's token works for everything before them.
ENDS_THE_SESSION = ("POST /member/v1/auth/revoke", "DELETE /member/v1/me")


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str, clock: ManualClock) -> Iterator[str]:
    """A second app on the same database, served on loopback from its own thread."""
    application = create_app(settings, database_url, clock=clock)
    config = uvicorn.Config(
        application, host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    for _ in range(500):
        if served.started:
            break
        threading.Event().wait(0.02)
    assert served.started, "uvicorn did not start"
    port = served.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    served.should_exit = True
    thread.join(timeout=10)


def fuzz(
    base_url: str, prefix: str, headers: dict[str, str], failures: list[str]
) -> dict[str, int]:
    """Fuzz every operation under `prefix`; failures are collected, not raised."""
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(prefix):
            operations.append(operation)
    operations.sort(key=lambda op: f"{op.method.upper()} {op.path}" in ENDS_THE_SESSION)
    session = requests.Session()
    counts: dict[str, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, base_url, session, headers, counts, failures)
    return counts


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
    counts: dict[str, int],
    failures: list[str],
) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    reported: list[str] = []

    @settings(
        max_examples=FUZZ_EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        counts[label] = counts.get(label, 0) + 1
        try:
            case.call_and_validate(
                base_url=base_url, session=session, headers=headers, checks=CHECKS
            )
        except Exception as failure:  # schemathesis' failures and failure groups
            if not reported:  # the first failure of each operation and mode
                reported.append(label)
                first = str(failure).strip().splitlines()[:14]
                failures.append(f"{label} ({mode.value}):\n  " + "\n  ".join(first))

    try:
        run()
    except Unsatisfiable:
        # Nothing to negate: the operation takes no input that can be made invalid.
        assert mode == GenerationMode.NEGATIVE, label
    except Exception as error:  # a case that could not even be generated or sent
        failures.append(f"{label} ({mode.value}): {type(error).__name__}: {error}")


async def _partner_token(http: httpx.AsyncClient, creds: Credentials) -> str:
    response = await http.post(
        "/partner/v1/token",
        json={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_the_partner_api_answers_every_generated_case_as_documented(
    server: str,
    http: httpx.AsyncClient,
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
) -> None:
    creds = await make_partner(code="fuzzed-shop")
    for _ in range(3):
        await make_member()
    headers = {"Authorization": f"Bearer {await _partner_token(http, creds)}"}
    failures: list[str] = []
    counts = await asyncio.to_thread(fuzz, server, "/partner/v1", headers, failures)
    assert not failures, "\n".join(failures)
    assert len(counts) >= 15, counts  # every partner operation was fuzzed


async def test_the_member_api_answers_every_generated_case_as_documented(
    server: str,
    make_member: Callable[..., Awaitable[str]],
    bearer: Callable[[str], Awaitable[dict[str, str]]],
) -> None:
    headers = await bearer(await make_member(display_name="Fuzzed Member"))
    failures: list[str] = []
    counts = await asyncio.to_thread(fuzz, server, "/member/v1", headers, failures)
    assert not failures, "\n".join(failures)
    assert len(counts) >= 25, counts  # every member operation was fuzzed


async def test_an_id_beyond_postgresql_bigint_is_refused_not_a_server_error(
    http: httpx.AsyncClient,
    make_member: Callable[..., Awaitable[str]],
    bearer: Callable[[str], Awaitable[dict[str, str]]],
) -> None:
    """Found by the fuzzer: a path id over 2**63 - 1 reached asyncpg, which cannot
    encode it, and answered 500. Now every integer path id is bounded."""
    headers = await bearer(await make_member())
    too_large = str(2**64)
    for method, path in (
        ("POST", f"/member/v1/lotteries/{too_large}/free-ticket"),
        ("POST", f"/member/v1/lotteries/{too_large}/tickets"),
        ("POST", f"/member/v1/challenges/{too_large}/join"),
        ("POST", f"/member/v1/inbox/{too_large}/read"),
        ("DELETE", f"/member/v1/donations/monthly/{too_large}"),
        ("POST", f"/member/v1/charities/{too_large}/donations"),
        ("POST", "/member/v1/lotteries/0/free-ticket"),
    ):
        response = await http.request(method, path, headers=headers, json={})
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), path
