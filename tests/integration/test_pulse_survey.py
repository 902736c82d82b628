"""The monthly pulse survey: offered at most once per Amsterdam month, on the
wallet's home page and in the member API; answered or dismissed once;
idempotent per member-month; bad input refused with its problem code or a
message on the page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from tests.integration.test_wallet_pages import HX, wallet_client

CARD = 'data-testid="pulse-card"'


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


async def row(pool, card: str, month: str):
    return await pool.fetchrow(
        "SELECT p.* FROM pulse_surveys p JOIN members m ON m.id = p.member_id"
        " WHERE m.card_number = $1 AND p.month = $2::text::date",
        card,
        month,
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def test_the_api_offers_once_a_month_and_answers_idempotently(
    http, make_member, bearer, pool, clock
):
    clock.set(at(6, 30, 21))  # 30 June 23:00 in Amsterdam
    card = await make_member()
    headers = await bearer(card)
    first = await http.get("/member/v1/pulse", headers=headers)
    assert first.status_code == 200
    body = first.json()
    assert (body["month"], body["status"], body["keep"]) == ("2026-06-01", "offered", None)
    assert [q["name"] for q in body["questions"]] == ["keep", "more", "recommend"]
    again = await http.get("/member/v1/pulse", headers=headers)
    assert again.json()["offered_at"] == body["offered_at"]  # one offer a month
    for bad, status, code in (
        ({"keep": 6, "more": 3, "recommend": 8}, 422, "invalid_keep"),
        ({"keep": 3, "more": 0, "recommend": 8}, 422, "invalid_more"),
        ({"keep": 3, "more": 3, "recommend": 11}, 422, "invalid_recommend"),
        ({"keep": 3, "more": 3, "recommend": "8"}, 422, "invalid_request"),
        ({"keep": 3, "more": 3}, 422, "invalid_request"),
        ({"keep": 3, "more": 3, "recommend": 8, "extra": 1}, 422, "invalid_request"),
    ):
        refused = await http.post("/member/v1/pulse", json=bad, headers=headers)
        assert refused.status_code == status, bad
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == code, bad
    malformed = await http.post(
        "/member/v1/pulse", content=b"{", headers={**headers, "Content-Type": "application/json"}
    )
    assert (malformed.status_code, malformed.json()["code"]) == (400, "malformed_json")
    assert (await row(pool, card, "2026-06-01"))["answered_at"] is None  # nothing written

    answer = {"keep": 4, "more": 3, "recommend": 9}
    answered = await http.post("/member/v1/pulse", json=answer, headers=headers)
    assert answered.status_code == 200
    assert answered.json()["status"] == "answered"
    repeat = await http.post("/member/v1/pulse", json=answer, headers=headers)
    assert repeat.status_code == 200 and repeat.json() == answered.json()
    changed = await http.post("/member/v1/pulse", json={**answer, "recommend": 2}, headers=headers)
    assert (changed.status_code, changed.json()["code"]) == (409, "pulse_already_answered")
    dismissed = await http.post("/member/v1/pulse/dismiss", headers=headers)
    assert (dismissed.status_code, dismissed.json()["code"]) == (409, "pulse_already_answered")
    stored = await row(pool, card, "2026-06-01")
    assert (stored["keep_score"], stored["more_score"], stored["recommend_score"]) == (4, 3, 9)

    clock.set(at(6, 30, 22))  # 1 July 00:00 in Amsterdam: a new month
    headers = await bearer(card)  # the first token lived an hour
    july = (await http.get("/member/v1/pulse", headers=headers)).json()
    assert (july["month"], july["status"]) == ("2026-07-01", "offered")
    assert (await http.post("/member/v1/pulse/dismiss", headers=headers)).json()[
        "status"
    ] == "dismissed"
    after = await http.post("/member/v1/pulse", json=answer, headers=headers)
    assert (after.status_code, after.json()["code"]) == (409, "pulse_dismissed")
    assert (await http.get("/member/v1/pulse")).status_code == 401


async def test_the_wallet_card_shows_once_a_month_and_takes_answers(
    app, make_member, pool, clock, settings
):
    clock.set(at(8, 3))
    card = await make_member()
    member = await wallet_client(app, pool, clock, settings, card)
    home = await member.get("/")
    assert home.status_code == 200 and CARD in home.text
    assert "Will you keep using Kring" in home.text
    assert (await row(pool, card, "2026-08-01"))["offered_at"] == at(8, 3)
    assert CARD not in (await member.get("/")).text  # shown once this month
    csrf = csrf_of(home.text)

    missing = await member.post(
        "/pulse", data={"keep": "4", "more": "2", "csrf_token": csrf}, headers=HX
    )
    assert missing.status_code == 422
    assert "Choose an answer to each of the three questions." in missing.text
    assert 'value="4" checked' in missing.text  # what was chosen stays chosen
    assert "<html" not in missing.text  # htmx gets the card alone
    out_of_range = await member.post(
        "/pulse", data={"keep": "9", "more": "2", "recommend": "7", "csrf_token": csrf}
    )
    assert out_of_range.status_code == 422
    assert "keep must be a whole number from 1 to 5" in out_of_range.text.lower()
    assert "<html" in out_of_range.text  # without htmx, a whole page
    no_csrf = await member.post("/pulse", data={"keep": "4", "more": "2", "recommend": "7"})
    assert no_csrf.status_code == 403
    assert (await row(pool, card, "2026-08-01"))["answered_at"] is None

    sent = await member.post(
        "/pulse",
        data={"keep": "4", "more": "2", "recommend": "7", "action": "answer", "csrf_token": csrf},
        headers=HX,
    )
    assert sent.status_code == 200 and "Thank you" in sent.text
    saved = await row(pool, card, "2026-08-01")
    assert (saved["keep_score"], saved["more_score"], saved["recommend_score"]) == (4, 2, 7)

    clock.set(at(9, 1))
    september = await member.get("/")
    assert CARD in september.text  # next month, once again
    dismissed = await member.post(
        "/pulse", data={"action": "dismiss", "csrf_token": csrf}, headers=HX
    )
    assert dismissed.status_code == 200 and "Maybe next month" in dismissed.text
    assert (await row(pool, card, "2026-09-01"))["dismissed_at"] == at(9, 1)
    assert CARD not in (await member.get("/")).text
    await member.aclose()
