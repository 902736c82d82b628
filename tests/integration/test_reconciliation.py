"""Reconciliation: a partner's own list for a period against Kring's, through the real API.

Issue 3 asks for the proof that a reconciliation reports a missing, an extra
and a mismatched transaction; the first test is that proof, the others pin
the matching rules (duplicates, receipts, uncaptured burns, period edges),
partner isolation, and every refusal.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from api.coalition.partners import set_partner_status
from api.db.pool import transaction
from api.errors import DomainError
from api.ledger.lots import release_due
from api.settlement import reconciliation
from api.settlement.reconciliation import RECONCILIATION_PERIOD_MAX, RECONCILIATION_ROWS_MAX
from tests.conftest import START

PATH = "/partner/v1/reconciliations"
PROBLEM = "application/problem+json"
MINUTE = timedelta(minutes=1)


async def token_for(http: httpx.AsyncClient, creds: Any) -> str:
    # A fresh token each time: tests move the app's clock, and tokens expire by it.
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


async def post_reconciliation(
    http: httpx.AsyncClient,
    token: str,
    start: datetime,
    end: datetime,
    rows: list[dict[str, Any]],
) -> httpx.Response:
    body = {"period_start": start.isoformat(), "period_end": end.isoformat(), "transactions": rows}
    # No Idempotency-Key: the call is read only.
    return await http.post(PATH, json=body, headers={"authorization": f"Bearer {token}"})


async def reconcile(
    http: httpx.AsyncClient,
    creds: Any,
    start: datetime,
    end: datetime,
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    response = await post_reconciliation(http, await token_for(http, creds), start, end, rows)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    assert body["detail"].strip(), body
    return body


async def test_reconciliation_reports_a_missing_an_extra_and_a_mismatched_transaction(
    make_partner, make_member, client_for, http, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    now = clock.now()
    async with client_for(creds) as client:
        by_id = await client.earn(
            card_number=card, amount_cents=10_000, currency="EUR", receipt_ref="R-1"
        )  # 100 points
        await client.earn(card_number=card, amount_cents=2_000, currency="EUR", receipt_ref="R-2")
        unlisted = await client.earn(
            card_number=card, amount_cents=3_000, currency="EUR", receipt_ref="R-3"
        )
        wrong_points = await client.earn(
            card_number=card, amount_cents=4_000, currency="EUR", receipt_ref="R-4"
        )
        wrong_amount = await client.earn(
            card_number=card, amount_cents=5_000, currency="EUR", receipt_ref="R-5"
        )
        await release_due(pool, clock.now())
        burn = await client.burn(card_number=card, points=25, receipt_ref="B-1")
        refund = await client.refund(
            by_id.id, amount_cents=5_000, currency="EUR", receipt_ref="RF-1"
        )  # 50 points back
    unknown = uuid.uuid4()
    rows = [
        {
            "transaction_id": str(by_id.id),
            "receipt_ref": "R-1",
            "kind": "earn",
            "points": 100,
            "amount_cents": 10_000,
        },
        {"receipt_ref": "R-2", "kind": "earn", "points": 20, "amount_cents": 2_000},
        {"transaction_id": str(wrong_points.id), "kind": "earn", "points": 41},
        {"receipt_ref": "R-5", "kind": "earn", "points": 50, "amount_cents": 5_001},
        {"receipt_ref": "B-1", "kind": "burn", "points": 25},
        {"transaction_id": str(refund.id), "kind": "refund", "points": 50, "amount_cents": 5_000},
        {"transaction_id": str(unknown), "kind": "earn", "points": 7, "amount_cents": 700},
        {"receipt_ref": "R-404", "kind": "earn", "points": 9},
    ]

    result = await reconcile(http, creds, now - MINUTE, now + MINUTE, rows)

    assert result["summary"] == {
        "partner_rows": 8,
        "kring_transactions": 7,
        "matched": 4,
        "mismatched": 2,
        "missing_in_kring": 2,
        "missing_in_partner": 1,
        "duplicates": 0,
        "ambiguous": 0,
        "uncaptured_burns": 0,
        "reconciled": False,
    }
    r2 = await _id_of(pool, creds.partner_id, "R-2")
    assert result["matched"] == [
        {"row": 0, "transaction_id": str(by_id.id), "matched_by": "transaction_id"},
        {"row": 1, "transaction_id": r2, "matched_by": "receipt_ref"},
        {"row": 4, "transaction_id": str(burn.id), "matched_by": "receipt_ref"},
        {"row": 5, "transaction_id": str(refund.id), "matched_by": "transaction_id"},
    ]
    assert result["mismatched"] == [
        {
            "row": 2,
            "transaction_id": str(wrong_points.id),
            "matched_by": "transaction_id",
            "fields": ["points"],
            "partner": {"kind": "earn", "points": 41, "amount_cents": None, "receipt_ref": None},
            "kring": {"kind": "earn", "points": 40, "amount_cents": 4_000, "receipt_ref": "R-4"},
        },
        {
            "row": 3,
            "transaction_id": str(wrong_amount.id),
            "matched_by": "receipt_ref",
            "fields": ["amount_cents"],
            "partner": {"kind": "earn", "points": 50, "amount_cents": 5_001, "receipt_ref": "R-5"},
            "kring": {"kind": "earn", "points": 50, "amount_cents": 5_000, "receipt_ref": "R-5"},
        },
    ]
    missing = result["missing_in_kring"]
    assert [(m["row"], m["reason"], m["kring_transaction_id"]) for m in missing] == [
        (6, "not_found", None),
        (7, "not_found", None),
    ]
    assert missing[0]["transaction_id"] == str(unknown)
    assert missing[1]["receipt_ref"] == "R-404"
    assert [m["transaction_id"] for m in result["missing_in_partner"]] == [str(unlisted.id)]
    assert result["missing_in_partner"][0] | {"created_at": None} == {
        "transaction_id": str(unlisted.id),
        "kind": "earn",
        "status": "available",
        "points": 30,
        "amount_cents": 3_000,
        "receipt_ref": "R-3",
        "created_at": None,
    }
    assert result["totals"] == {
        "kring": {
            "transactions": 7,
            "earn_points": 240,
            "earn_amount_cents": 24_000,
            "burn_points": 25,
            "refund_points": 50,
            "refund_amount_cents": 5_000,
            "net_points": 165,
        },
        "partner": {
            "transactions": 8,
            "earn_points": 227,
            "earn_amount_cents": 17_701,
            "burn_points": 25,
            "refund_points": 50,
            "refund_amount_cents": 5_000,
            "net_points": 152,
        },
    }


async def _id_of(pool, partner_id: int, receipt_ref: str) -> str:
    return str(
        await pool.fetchval(
            "SELECT id FROM transactions WHERE partner_id = $1 AND receipt_ref = $2",
            partner_id,
            receipt_ref,
        )
    )


async def test_a_full_match_is_reconciled(make_partner, make_member, client_for, http, clock):
    creds = await make_partner()
    card = await make_member()
    now = clock.now()
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=1_234, currency="EUR")
    rows = [{"transaction_id": str(earn.id), "kind": "earn", "points": 12, "amount_cents": 1_234}]
    result = await reconcile(http, creds, now, now + MINUTE, rows)
    assert result["summary"]["reconciled"] is True
    assert result["summary"]["matched"] == 1
    assert result["period_start"] == now.isoformat().replace("+00:00", "Z")


async def test_duplicate_rows_are_reported_and_matched_once(
    make_partner, make_member, client_for, http, clock
):
    creds = await make_partner()
    card = await make_member()
    now = clock.now()
    async with client_for(creds) as client:
        a = await client.earn(card_number=card, amount_cents=1_000, currency="EUR", receipt_ref="A")
        await client.earn(card_number=card, amount_cents=2_000, currency="EUR", receipt_ref="B")
    row_a = {"transaction_id": str(a.id), "kind": "earn", "points": 10, "amount_cents": 1_000}
    row_b = {"receipt_ref": "B", "kind": "earn", "points": 20, "amount_cents": 2_000}
    rows = [
        row_a,
        row_b,
        row_a,  # the same id again
        row_b,  # the same receipt again
        {"receipt_ref": "A", "kind": "earn", "points": 10},  # A again, by its receipt
    ]
    result = await reconcile(http, creds, now, now + MINUTE, rows)
    assert result["summary"]["matched"] == 2
    assert result["summary"]["duplicates"] == 3
    assert [(d["row"], d["first_row"]) for d in result["duplicates"]] == [(2, 0), (3, 1), (4, 0)]
    assert result["missing_in_kring"] == [] and result["missing_in_partner"] == []
    # Duplicates are left out of the partner's totals, so the totals agree.
    assert result["totals"]["partner"] == result["totals"]["kring"]
    assert result["totals"]["partner"]["earn_points"] == 30
    assert result["summary"]["reconciled"] is False  # the list itself needs fixing


async def test_mismatch_names_every_field_that_differs(
    make_partner, make_member, client_for, http, clock
):
    creds = await make_partner()
    card = await make_member()
    now = clock.now()
    async with client_for(creds) as client:
        earn = await client.earn(
            card_number=card, amount_cents=3_000, currency="EUR", receipt_ref="K-1"
        )
    row = {
        "transaction_id": str(earn.id),
        "receipt_ref": "P-1",
        "kind": "refund",
        "points": 3,
        "amount_cents": 300,
    }
    result = await reconcile(http, creds, now, now + MINUTE, [row])
    [mismatch] = result["mismatched"]
    assert mismatch["fields"] == ["kind", "points", "amount_cents", "receipt_ref"]
    assert mismatch["kring"] == {
        "kind": "earn",
        "points": 30,
        "amount_cents": 3_000,
        "receipt_ref": "K-1",
    }


async def test_a_receipt_that_fits_several_transactions_is_ambiguous(
    make_partner, make_member, client_for, http, clock
):
    creds = await make_partner()
    card = await make_member()
    now = clock.now()
    async with client_for(creds) as client:
        one = await client.earn(card_number=card, amount_cents=100, currency="EUR", receipt_ref="Z")
        two = await client.earn(card_number=card, amount_cents=200, currency="EUR", receipt_ref="Z")
    result = await reconcile(
        http, creds, now, now + MINUTE, [{"receipt_ref": "Z", "kind": "earn", "points": 1}]
    )
    assert result["ambiguous"] == [
        {
            "row": 0,
            "kind": "earn",
            "receipt_ref": "Z",
            "candidate_transaction_ids": [str(one.id), str(two.id)],
        }
    ]
    # The candidates are not reported as missing: the partner is told to send the id.
    assert result["missing_in_partner"] == [] and result["matched"] == []

    # Naming one by id leaves the other as the receipt's only candidate.
    rows = [
        {"transaction_id": str(one.id), "kind": "earn", "points": 1},
        {"receipt_ref": "Z", "kind": "earn", "points": 2},
    ]
    result = await reconcile(http, creds, now, now + MINUTE, rows)
    assert [(m["row"], m["transaction_id"]) for m in result["matched"]] == [
        (0, str(one.id)),
        (1, str(two.id)),
    ]
    assert result["summary"]["reconciled"] is True


async def test_only_captured_burns_count_and_uncaptured_ones_are_listed_apart(
    make_partner, make_member, client_for, http, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    now = clock.now()
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=10_000, currency="EUR", receipt_ref="E")
        await release_due(pool, clock.now())
        partial = await client.authorize(card_number=card, points=50, receipt_ref="P")
        await client.capture(partial.id, points=20)
        voided = await client.authorize(card_number=card, points=10, receipt_ref="V")
        await client.void(voided.id)
        still_open = await client.authorize(card_number=card, points=5, receipt_ref="O")
    rows = [
        {"receipt_ref": "E", "kind": "earn", "points": 100},
        {"receipt_ref": "P", "kind": "burn", "points": 20},  # what was captured, not held
        {"transaction_id": str(voided.id), "kind": "burn", "points": 10},
        {"receipt_ref": "O", "kind": "burn", "points": 5},
    ]
    result = await reconcile(http, creds, now, now + MINUTE, rows)
    assert [(m["row"], m["transaction_id"]) for m in result["matched"]] == [
        (0, await _id_of(pool, creds.partner_id, "E")),
        (1, str(partial.id)),
    ]
    assert [
        (m["row"], m["reason"], m["kring_status"], m["kring_transaction_id"])
        for m in result["missing_in_kring"]
    ] == [
        (2, "not_captured", "voided", str(voided.id)),
        (3, "not_captured", "authorized", str(still_open.id)),
    ]
    assert result["missing_in_partner"] == []
    assert [
        (u["transaction_id"], u["status"], u["points_authorized"])
        for u in result["uncaptured_burns"]
    ] == [(str(voided.id), "voided", 10), (str(still_open.id), "authorized", 5)]
    assert result["totals"]["kring"]["burn_points"] == 20
    assert result["summary"]["kring_transactions"] == 2


async def test_period_is_start_inclusive_end_exclusive_and_a_named_row_outside_it_is_told_apart(
    make_partner, make_member, client_for, http, clock
):
    creds = await make_partner()
    card = await make_member()
    earned_at = clock.now()
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=500, currency="EUR")
    row = {"transaction_id": str(earn.id), "kind": "earn", "points": 5}

    inside = await reconcile(http, creds, earned_at, earned_at + MINUTE, [row])
    assert inside["summary"]["matched"] == 1

    before = await reconcile(http, creds, earned_at - MINUTE, earned_at, [row])
    assert before["summary"]["kring_transactions"] == 0
    [missing] = before["missing_in_kring"]
    assert (missing["reason"], missing["kring_transaction_id"]) == ("outside_period", str(earn.id))
    assert datetime.fromisoformat(missing["kring_created_at"]) == earned_at

    clock.advance(timedelta(days=2))
    later = await reconcile(http, creds, clock.now() - MINUTE, clock.now() + MINUTE, [row])
    assert later["missing_in_kring"][0]["reason"] == "outside_period"
    assert later["missing_in_partner"] == []


async def test_another_partners_transactions_are_never_visible(
    make_partner, make_member, client_for, http, clock
):
    mine, theirs = await make_partner(), await make_partner()
    card = await make_member()
    now = clock.now()
    async with client_for(theirs) as client:
        other = await client.earn(
            card_number=card, amount_cents=7_000, currency="EUR", receipt_ref="SHARED"
        )
    async with client_for(mine) as client:
        own = await client.earn(
            card_number=card, amount_cents=1_000, currency="EUR", receipt_ref="SHARED"
        )
    rows = [
        {"transaction_id": str(other.id), "kind": "earn", "points": 70},
        {"receipt_ref": "SHARED", "kind": "earn", "points": 10},
    ]
    result = await reconcile(http, mine, now, now + MINUTE, rows)
    # Their transaction reads exactly like one that does not exist: no status, no time.
    assert result["missing_in_kring"] == [
        {
            "row": 0,
            "kind": "earn",
            "points": 70,
            "transaction_id": str(other.id),
            "receipt_ref": None,
            "amount_cents": None,
            "reason": "not_found",
            "kring_transaction_id": None,
            "kring_status": None,
            "kring_created_at": None,
        }
    ]
    # The shared receipt matches only my own earn, not ambiguously.
    assert result["matched"] == [
        {"row": 1, "transaction_id": str(own.id), "matched_by": "receipt_ref"}
    ]
    assert result["totals"]["kring"]["transactions"] == 1
    assert result["totals"]["kring"]["earn_points"] == 10
    assert str(other.id) not in json.dumps(result["missing_in_partner"])


async def test_an_empty_list_reports_every_kring_transaction_missing_in_partner(
    make_partner, make_member, client_for, http, clock
):
    creds = await make_partner()
    card = await make_member()
    now = clock.now()
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=900, currency="EUR")
    result = await reconcile(http, creds, now, now + MINUTE, [])
    assert [m["transaction_id"] for m in result["missing_in_partner"]] == [str(earn.id)]
    assert result["totals"]["partner"]["transactions"] == 0


async def test_the_reconciliation_writes_nothing(
    make_partner, make_member, client_for, http, pool, clock
):
    creds = await make_partner()
    card = await make_member()
    now = clock.now()
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=900, currency="EUR")
    counts = "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM idempotency_keys)"
    before = await pool.fetchrow(counts)
    rows = [{"transaction_id": str(earn.id), "kind": "earn", "points": 9}]
    first = await reconcile(http, creds, now, now + MINUTE, rows)
    second = await reconcile(http, creds, now, now + MINUTE, rows)
    assert first == second
    assert await pool.fetchrow(counts) == before


async def test_a_period_with_too_many_kring_transactions_is_refused(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner()
    card = await make_member()
    now = clock.now()
    async with client_for(creds) as client:
        for _ in range(3):
            await client.earn(card_number=card, amount_cents=100, currency="EUR")
    kring = await reconciliation.load_kring_side(
        pool, creds.partner_id, now, now + MINUTE, [], rows_max=3
    )
    assert len(kring) == 3
    with pytest.raises(DomainError) as err:
        await reconciliation.load_kring_side(
            pool, creds.partner_id, now, now + MINUTE, [], rows_max=2
        )
    assert err.value.code == "period_too_busy"


# Refusals --------------------------------------------------------------------------


def _row(**fields: Any) -> dict[str, Any]:
    return {"receipt_ref": "R", "kind": "earn", "points": 1} | fields


def _body(start: datetime, end: datetime, rows: list[dict[str, Any]] | None = None) -> Any:
    return {
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "transactions": [_row()] if rows is None else rows,
    }


def _bad_bodies(now: datetime) -> list[Any]:
    day = timedelta(days=1)
    naive = now.replace(tzinfo=None)
    return [
        pytest.param(_body(now, now - MINUTE), 422, "invalid_period", id="end-before-start"),
        pytest.param(_body(now, now), 422, "invalid_period", id="empty-period"),
        pytest.param(
            _body(now, now) | {"period_start": naive.isoformat()},
            422,
            "invalid_period",
            id="no-time-zone",
        ),
        pytest.param(
            _body(now, now + RECONCILIATION_PERIOD_MAX + MINUTE),
            422,
            "period_too_long",
            id="period-too-long",
        ),
        pytest.param(
            _body(now, now + day, [_row()] * (RECONCILIATION_ROWS_MAX + 1)),
            422,
            "too_many_rows",
            id="too-many-rows",
        ),
        pytest.param(
            _body(now, now + day, [_row(), {"kind": "earn", "points": 1}]),
            422,
            "missing_reference",
            id="row-without-id-or-receipt",
        ),
        pytest.param(
            _body(now, now + day, [_row(kind="burn", amount_cents=100)]),
            422,
            "invalid_row",
            id="burn-with-amount",
        ),
        pytest.param(
            _body(now, now + day) | {"currency": "EUR"},
            422,
            "invalid_request",
            id="unknown-field",
        ),
        pytest.param(
            _body(now, now + day, [_row(store_id="S-1")]),
            422,
            "invalid_request",
            id="unknown-field-in-row",
        ),
        pytest.param(
            _body(now, now + day, [_row(points="1")]),
            422,
            "invalid_request",
            id="points-as-string",
        ),
        pytest.param(
            _body(now, now + day, [_row(points=-1)]),
            422,
            "invalid_request",
            id="negative-points",
        ),
        pytest.param(
            _body(now, now + day, [_row(kind="void")]), 422, "invalid_request", id="unknown-kind"
        ),
        pytest.param(
            _body(now, now + day, [_row(transaction_id="not-a-uuid")]),
            422,
            "invalid_request",
            id="bad-transaction-id",
        ),
        pytest.param(
            {"period_start": now.isoformat(), "transactions": []},
            422,
            "invalid_request",
            id="no-period-end",
        ),
        pytest.param(
            _body(now, now + day) | {"period_end": 1_700_000_000},
            422,
            "invalid_request",
            id="period-as-number",
        ),
    ]


@pytest.mark.parametrize(("body", "status", "code"), _bad_bodies(START))
async def test_bad_input_is_a_problem_with_a_stable_code(make_partner, http, body, status, code):
    creds = await make_partner()
    token = await token_for(http, creds)
    response = await http.post(PATH, json=body, headers={"authorization": f"Bearer {token}"})
    assert_problem(response, status, code)


async def test_malformed_unauthenticated_oversized_and_suspended_are_refused(
    make_partner, http, pool, clock
):
    creds = await make_partner()
    token = await token_for(http, creds)
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    now = clock.now()

    response = await http.post(PATH, content=b'{"period_start": ', headers=auth)
    assert_problem(response, 400, "malformed_json")

    response = await http.post(PATH, json=_body(now, now + MINUTE))
    assert_problem(response, 401, "missing_token")

    huge = json.dumps(_body(now, now + MINUTE, [_row(receipt_ref="x" * 100)] * 30_000)).encode()
    response = await http.post(PATH, content=huge, headers=auth)
    assert_problem(response, 413, "request_too_large")

    await transaction(pool, lambda conn: set_partner_status(conn, creds.partner_id, "suspended"))
    response = await http.post(PATH, json=_body(now, now + MINUTE), headers=auth)
    assert_problem(response, 403, "partner_suspended")


async def test_the_openapi_document_shows_the_endpoint_without_an_idempotency_key(http):
    schema = (await http.get("/schema/openapi.json")).json()
    operation = schema["paths"][PATH]["post"]
    assert "read-only" in operation["summary"]
    assert "Idempotency-Key" not in json.dumps(operation.get("parameters", []))
    assert operation["responses"]["200"]


async def test_a_burn_counts_in_the_period_it_was_captured_in_as_in_the_statement(
    make_partner, make_member, client_for, http, pool, clock
):
    """Authorized before midnight, captured after: the capture's day, in the
    reconciliation as in the settlement statement."""
    from datetime import timedelta

    from api.ledger.lots import release_due
    from api.settlement.periods import business_date, day_end

    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
        await release_due(pool, clock.now())
        day = business_date(clock.now())
        clock.set(day_end(day) - timedelta(minutes=5))
        hold = await client.authorize(
            card_number=card, points=40, receipt_ref="late", hold_minutes=60
        )
        clock.advance(timedelta(minutes=10))  # past midnight
        await client.capture(hold.id, points=40)
    first_day = day_end(day - timedelta(days=1))
    second_day = day_end(day)
    before = await reconcile(http, creds, first_day, second_day, [])
    after = await reconcile(http, creds, second_day, second_day + timedelta(days=1), [])
    assert str(hold.id) not in {t["transaction_id"] for t in before["missing_in_partner"]}
    assert str(hold.id) in {t["transaction_id"] for t in after["missing_in_partner"]}
