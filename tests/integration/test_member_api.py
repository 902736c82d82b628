"""The member API /member/v1: a member sees and changes only their own data."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from api.coalition.member_profile import ACCOUNT_DELETION_CONFIRMATION
from api.db.pool import transaction
from api.ledger.lots import release_due
from tests.conftest import balances


def problem_code(response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()["code"]


async def test_member_reads_only_their_own_data(
    make_partner, make_member, client_for, http, bearer, pool, clock
):
    creds = await make_partner(code="api-shop", name="Shop", return_window_days=14)
    ann, bob = await make_member(display_name="Ann"), await make_member(display_name="Bob")
    async with client_for(creds) as client:
        ann_earn = await client.earn(card_number=ann, amount_cents=4_000, currency="EUR")
        bob_earn = await client.earn(card_number=bob, amount_cents=7_000, currency="EUR")
        refund = await client.refund(ann_earn.id, amount_cents=1_000, currency="EUR")
    as_ann = await bearer(ann)

    me = await http.get("/member/v1/me", headers=as_ann)
    assert me.status_code == 200
    body = me.json()
    assert (body["card_number"], body["display_name"], body["tier"]) == (ann, "Ann", "Bronze")
    assert (body["available_points"], body["pending_points"]) == (0, 30)
    assert body["pending"] == [
        {"on": (clock.now() + timedelta(days=14)).date().isoformat(), "points": 30}
    ]
    # Ann's own purchase is the one to rate, never Bob's.
    assert body["survey_due"]["transaction_id"] == str(ann_earn.id)
    assert body["survey_due"]["partner_name"] == "Shop"

    page = (await http.get("/member/v1/transactions?limit=1", headers=as_ann)).json()
    assert [t["id"] for t in page["items"]] == [str(refund.id)]
    rest = await http.get(
        "/member/v1/transactions", params={"cursor": page["next_cursor"]}, headers=as_ann
    )
    assert [t["id"] for t in rest.json()["items"]] == [str(ann_earn.id)]
    assert rest.json()["next_cursor"] is None
    assert rest.json()["items"][0]["refunds"] == 1
    filtered = await http.get("/member/v1/transactions?partner=other", headers=as_ann)
    assert filtered.json()["items"] == []
    bad = await http.get("/member/v1/transactions?cursor=xyz", headers=as_ann)
    assert (bad.status_code, problem_code(bad)) == (400, "invalid_cursor")

    detail = await http.get(f"/member/v1/transactions/{ann_earn.id}", headers=as_ann)
    assert detail.status_code == 200
    assert detail.json()["refunds"][0]["points"] == 10
    assert detail.json()["survey"]["can_answer"] is True

    # Bob's transaction, a missing one and a malformed id look the same.
    for ident in (bob_earn.id, uuid4(), "not-an-id"):
        other = await http.get(f"/member/v1/transactions/{ident}", headers=as_ann)
        assert (other.status_code, problem_code(other)) == (404, "transaction_not_found")
        survey = await http.post(
            f"/member/v1/transactions/{ident}/survey", json={"score": 10}, headers=as_ann
        )
        assert (survey.status_code, problem_code(survey)) == (404, "transaction_not_found")
    assert await pool.fetchval("SELECT count(*) FROM member_surveys") == 0

    partners = (await http.get("/member/v1/partners", headers=as_ann)).json()["items"]
    shop = next(p for p in partners if p["code"] == "api-shop")
    assert shop["earn_rate"] == "1 point per €1" and "issuance_price_micros" not in shop


async def test_without_a_valid_token_nothing_is_served(http):
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = await http.get("/member/v1/me", headers=headers)
        assert response.status_code == 401
        assert problem_code(response) in ("missing_token", "invalid_token")


async def test_survey_through_the_api(make_partner, make_member, client_for, http, bearer, clock):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=2_000, currency="EUR")
        late = await client.earn(card_number=card, amount_cents=2_000, currency="EUR")
    headers = await bearer(card)
    url = f"/member/v1/transactions/{earn.id}/survey"
    for body in ({"score": 11}, {"score": -1}):
        refused = await http.post(url, json=body, headers=headers)
        assert (refused.status_code, problem_code(refused)) == (422, "invalid_score")
    wrong_type = await http.post(url, json={"score": "9"}, headers=headers)
    assert (wrong_type.status_code, problem_code(wrong_type)) == (422, "invalid_request")
    first = await http.post(url, json={"score": 9, "comment": "nice"}, headers=headers)
    assert first.status_code == 201 and first.json()["score"] == 9
    twice = await http.post(url, json={"score": 3}, headers=headers)
    assert (twice.status_code, problem_code(twice)) == (409, "survey_already_answered")
    clock.advance(timedelta(days=8))
    headers = await bearer(card)  # a fresh token: the first one has expired
    closed = await http.post(
        f"/member/v1/transactions/{late.id}/survey", json={"score": 5}, headers=headers
    )
    assert (closed.status_code, problem_code(closed)) == (422, "survey_closed")


async def test_profile_export_and_deletion(
    make_partner, make_member, client_for, http, bearer, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member(email="dee@example.com", display_name="Dee")
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=3_000, currency="EUR")
        await release_due(pool, clock.now())
    headers = await bearer(card)

    patched = await http.patch(
        "/member/v1/profile", json={"salutation": "Mx", "email_news": True}, headers=headers
    )
    assert patched.status_code == 200
    assert (patched.json()["salutation"], patched.json()["email_news"]) == ("Mx", True)
    too_long = await http.patch(
        "/member/v1/profile", json={"display_name": "x" * 101}, headers=headers
    )
    assert (too_long.status_code, problem_code(too_long)) == (422, "invalid_display_name")
    unknown = await http.patch("/member/v1/profile", json={"card_number": "1"}, headers=headers)
    assert unknown.status_code in (400, 422)
    profile = (await http.get("/member/v1/profile", headers=headers)).json()
    assert (profile["display_name"], profile["salutation"]) == ("Dee", "Mx")

    export = await http.get("/member/v1/export", headers=headers)
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    assert export.json()["member"]["email"] == "dee@example.com"
    assert export.json()["balances_points"]["available"] == 30

    unconfirmed = await http.delete("/member/v1/me", headers=headers)
    assert (unconfirmed.status_code, problem_code(unconfirmed)) == (422, "confirmation_required")
    deleted = await http.delete(
        f"/member/v1/me?confirm={ACCOUNT_DELETION_CONFIRMATION}", headers=headers
    )
    assert deleted.status_code == 200
    assert deleted.json()["forfeited_available_points"] == 30
    assert await pool.fetchval("SELECT count(*) FROM members WHERE card_number = $1", card) == 0
    after = await http.get("/member/v1/me", headers=headers)
    assert after.status_code == 401  # every session ended with the account
    closed_card = await pool.fetchval("SELECT card_number FROM members WHERE status = 'closed'")
    assert await balances(pool, closed_card) == {"available": 0, "pending": 0, "held": 0, "debt": 0}


async def test_member_api_is_in_the_openapi_schema(http):
    schema = (await http.get("/schema/openapi.json")).json()
    member_paths = [p for p in schema["paths"] if p.startswith("/member/v1/")]
    assert "/member/v1/me" in member_paths and "/member/v1/transactions" in member_paths
    me = schema["paths"]["/member/v1/me"]
    assert "Member API" in me["get"]["tags"] and me["get"]["security"] == [{"memberBearer": []}]
    # Names do not collide with the partner API's (Litestar would rename both).
    components = schema["components"]["schemas"]
    assert {"TransactionOut", "MemberTransactionOut", "MemberTransactionPage"} <= set(components)
    assert "score" in components["SurveyRequest"]["properties"]
    assert components["MeOut"]["properties"]["debt_points"].get("description")


async def test_a_member_buys_lottery_tickets_and_takes_the_free_one(
    make_partner, make_member, client_for, http, bearer, pool, clock
):
    from api.engagement import lotteries

    creds = await make_partner(code="lotto-shop", return_window_days=0)
    card = await make_member(display_name="Lucky")
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=10_000, currency="EUR")  # 100 points
    await release_due(pool, clock.now())
    now = clock.now()
    new = lotteries.NewLottery(
        name="Member API draw",
        rules="One free ticket per member, same odds.",
        ticket_price_points=30,
        tickets_per_member_max=3,
        sales_open_at=now - timedelta(minutes=1),
        sales_close_at=now + timedelta(days=1),
        draw_at=now + timedelta(days=1),
        prizes=[lotteries.NewPrize(points=100)],
    )
    made = await transaction(pool, lambda conn: lotteries.create_lottery(conn, new, now))
    headers = await bearer(card)
    path = f"/member/v1/lotteries/{made.lottery_id}"

    listed = await http.get("/member/v1/lotteries", headers=headers)
    [shown] = [x for x in listed.json()["items"] if x["id"] == made.lottery_id]
    assert shown["free_ticket_available"] is True

    no_key = await http.post(f"{path}/tickets", headers=headers)
    assert no_key.status_code == 400
    first = await http.post(f"{path}/tickets", headers={**headers, "Idempotency-Key": "t1"})
    assert first.status_code == 201
    again = await http.post(f"{path}/tickets", headers={**headers, "Idempotency-Key": "t1"})
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert (await balances(pool, card))["available"] == 70  # one ticket paid, once
    free = await http.post(f"{path}/free-ticket", headers=headers)
    assert free.status_code == 201
    assert (await http.post(f"{path}/free-ticket", headers=headers)).json() == free.json()
    await http.post(f"{path}/tickets", headers={**headers, "Idempotency-Key": "t2"})
    capped = await http.post(f"{path}/tickets", headers={**headers, "Idempotency-Key": "t3"})
    assert capped.status_code == 409 and capped.json()["code"] == "ticket_cap_reached"
    assert (await balances(pool, card))["available"] == 40
    missing = await http.post(
        "/member/v1/lotteries/999999/tickets", headers={**headers, "Idempotency-Key": "t4"}
    )
    assert missing.status_code == 404 and missing.json()["code"] == "lottery_not_found"
