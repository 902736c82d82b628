"""Back-office member pages over HTTP with real sessions: search by e-mail,
name or card, the member's ledger and its CSV, block and unblock (audited, and
a blocked card cannot earn), data export and erasure, and maker-checker
adjustments through the forms (waiting, refused to the maker, approved by a
second admin, a missing reason, a double submit)."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import httpx
import pytest

from api.coalition import member_admin
from api.coalition.member_admin import MemberSearch
from partners.client.errors import PartnerApiError
from tests.conftest import backoffice_session, balances


async def member_id_of(pool: Any, card: str) -> int:
    return int(await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card))


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
async def sessions(http: httpx.AsyncClient, pool: Any, clock: Any) -> dict[str, dict[str, str]]:
    return {
        "support": await backoffice_session(http, pool, clock, "support"),
        "owner": await backoffice_session(http, pool, clock, "owner"),
        "finance": await backoffice_session(http, pool, clock, "finance"),
        "marketing": await backoffice_session(http, pool, clock, "marketing"),
    }


@pytest.fixture(scope="module")
async def greta(make_member: Any, make_partner: Any, client_for: Any, pool: Any, clock: Any) -> str:
    """A member with an earn at 'Ledger Books' (1,234 points pending, then available)."""
    card = await make_member(email="greta.search@example.com", display_name="Greta Garbo-Search")
    shop = client_for(
        await make_partner(code="ledger-books", name="Ledger Books", return_window_days=0)
    )
    await shop.earn(card, 123_400, "EUR", idempotency_key="greta-earn-1")
    from api.ledger.lots import release_due

    await release_due(pool, clock.now())
    return card


async def test_search_finds_by_email_name_or_card(
    http: httpx.AsyncClient, sessions: dict[str, dict[str, str]], greta: str, make_member: Any
) -> None:
    other = await make_member(email="someone.else@example.com", display_name="Other Person")
    finance = sessions["finance"]
    for text in ("GRETA.SEARCH@", "garbo-sea", f"{greta[4:8]} {greta[8:12]}", greta):
        found = await http.get("/backoffice/members", params={"q": text}, headers=finance)
        assert found.status_code == 200, text
        assert greta in found.text and "Greta Garbo-Search" in found.text, text
        assert other not in found.text, text
    member = await member_id_of_http(http, finance, greta)
    assert (
        f'href="/backoffice/members/{member}"'
        in (await http.get("/backoffice/members", params={"q": "greta"}, headers=finance)).text
    )
    # A LIKE wildcard is searched for literally.
    none = await http.get("/backoffice/members", params={"q": "%"}, headers=finance)
    assert "No member matches this search." in none.text
    # Filters: status and tier.
    blocked = await http.get(
        "/backoffice/members", params={"q": "greta", "status": "blocked"}, headers=finance
    )
    assert greta not in blocked.text
    gold = await http.get(
        "/backoffice/members", params={"q": "greta", "tier": "gold"}, headers=finance
    )
    assert greta not in gold.text
    bronze = await http.get(
        "/backoffice/members", params={"q": "greta", "tier": "silver"}, headers=finance
    )
    assert greta in bronze.text
    # htmx asks for the results alone.
    fragment = await http.get(
        "/backoffice/members", params={"q": "greta"}, headers={**finance, "HX-Request": "true"}
    )
    assert fragment.text.lstrip().startswith('<div id="results">') and "<html" not in fragment.text
    bad = await http.get("/backoffice/members", params={"status": "sleeping"}, headers=finance)
    assert bad.status_code == 400


async def member_id_of_http(http: httpx.AsyncClient, headers: dict[str, str], card: str) -> int:
    page = await http.get("/backoffice/members", params={"q": card}, headers=headers)
    match = re.search(r'href="/backoffice/members/(\d+)"', page.text)
    assert match, page.text
    return int(match.group(1))


async def test_members_csv_holds_the_search_result(
    http: httpx.AsyncClient, sessions: dict[str, dict[str, str]], greta: str, pool: Any
) -> None:
    answer = await http.get(
        "/backoffice/members/export.csv", params={"q": "garbo"}, headers=sessions["support"]
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == 'attachment; filename="members.csv"'
    rows = csv_rows(answer.text)
    assert rows == [
        {
            "member_id": str(await member_id_of(pool, greta)),
            "card_number": greta,
            "email": "greta.search@example.com",
            "display_name": "Greta Garbo-Search",
            "status": "active",
            "tier": "silver",
            "available_points": "1234",
            "joined_at": rows[0]["joined_at"],
        }
    ]


async def test_search_pages_with_a_cursor(pool: Any, make_member: Any) -> None:
    cards = [await make_member(display_name=f"Pager Person {n}") for n in range(3)]
    first = await member_admin.search_members(pool, MemberSearch(text="pager person"), limit=2)
    rest = await member_admin.search_members(
        pool,
        MemberSearch(text="pager person"),
        limit=2,
        cursor=member_admin.member_cursor(first[-1]),
    )
    assert [m.card_number for m in first + rest] == list(reversed(cards))


async def test_the_member_page_shows_balances_and_the_ledger(
    http: httpx.AsyncClient, sessions: dict[str, dict[str, str]], greta: str, pool: Any
) -> None:
    member = await member_id_of(pool, greta)
    earn_entry = await pool.fetchval(
        "SELECT id FROM journal_entries WHERE member_id = $1 AND kind = 'earn'", member
    )
    release_entry = await pool.fetchval(
        "SELECT e.id FROM journal_entries e JOIN postings p ON p.entry_id = e.id"
        " JOIN accounts a ON a.id = p.account_id"
        " WHERE a.member_id = $1 AND e.kind = 'release'",
        member,
    )
    page = await http.get(f"/backoffice/members/{member}", headers=sessions["finance"])
    assert page.status_code == 200
    assert 'data-balance="available">1,234<' in page.text
    assert 'data-balance="pending">0<' in page.text
    assert "Silver" in page.text and "Ledger Books" in page.text
    assert f"<td>{earn_entry}</td>" in page.text and f"<td>{release_entry}</td>" in page.text
    # Finance reads but does not change: no block, export or adjustment forms.
    assert "/status" not in page.text and "Adjust points" not in page.text
    support_page = await http.get(f"/backoffice/members/{member}", headers=sessions["support"])
    assert "Adjust points" in support_page.text and "Block" in support_page.text

    ledger = await http.get(f"/backoffice/members/{member}/ledger.csv", headers=sessions["owner"])
    assert ledger.status_code == 200
    assert (
        ledger.headers["content-disposition"]
        == f'attachment; filename="member-{member}-ledger.csv"'
    )
    rows = csv_rows(ledger.text)
    assert [(r["entry_id"], r["kind"]) for r in rows] == [
        (str(release_entry), "release"),
        (str(earn_entry), "earn"),
    ]
    earn = rows[1]
    assert (earn["partner"], earn["points"], earn["pending_points"], earn["available_points"]) == (
        "Ledger Books",
        "1234",
        "1234",
        "0",
    )
    assert (earn["transaction_kind"], earn["amount_cents"], earn["price_micros"]) == (
        "earn",
        "123400",
        "10000",
    )
    assert (rows[0]["pending_points"], rows[0]["available_points"], rows[0]["points"]) == (
        "-1234",
        "1234",
        "0",
    )
    missing = await http.get("/backoffice/members/987654/ledger.csv", headers=sessions["owner"])
    assert missing.status_code == 404


async def test_block_and_unblock_are_audited_and_stop_earning(
    http: httpx.AsyncClient,
    sessions: dict[str, dict[str, str]],
    make_member: Any,
    pool: Any,
) -> None:
    card = await make_member(display_name="Blocky")
    member = await member_id_of(pool, card)
    support = sessions["support"]
    done = await http.post(
        f"/backoffice/members/{member}/status", data={"status": "blocked"}, headers=support
    )
    assert done.status_code == 303 and done.headers["location"] == f"/backoffice/members/{member}"
    assert await pool.fetchval("SELECT status FROM members WHERE id = $1", member) == "blocked"
    page = await http.get(f"/backoffice/members/{member}", headers=support)
    assert "Unblock" in page.text and ">blocked<" in page.text
    again = await http.post(
        f"/backoffice/members/{member}/status", data={"status": "active"}, headers=support
    )
    assert again.status_code == 303
    assert await pool.fetchval("SELECT status FROM members WHERE id = $1", member) == "active"
    trail = await pool.fetch(
        "SELECT action, before::text AS before, after::text AS after FROM admin_audit_log"
        " WHERE subject = $1 ORDER BY id",
        f"member:{member}",
    )
    assert [(r["action"], json.loads(r["before"]), json.loads(r["after"])) for r in trail] == [
        ("member.block", {"status": "active"}, {"status": "blocked"}),
        ("member.unblock", {"status": "blocked"}, {"status": "active"}),
    ]
    # Finance may not block; a bad status is a 4xx page.
    assert (
        await http.post(
            f"/backoffice/members/{member}/status",
            data={"status": "blocked"},
            headers=sessions["finance"],
        )
    ).status_code == 403
    bad = await http.post(
        f"/backoffice/members/{member}/status", data={"status": "gone"}, headers=support
    )
    assert bad.status_code == 422


async def test_a_blocked_member_cannot_earn_or_use_a_session(
    http: httpx.AsyncClient,
    bearer: Any,
    sessions: dict[str, dict[str, str]],
    make_member: Any,
    make_partner: Any,
    client_for: Any,
    pool: Any,
) -> None:
    card = await make_member()
    member = await member_id_of(pool, card)
    api_session = await bearer(card)
    assert (await http.get("/member/v1/me", headers=api_session)).status_code == 200
    await http.post(
        f"/backoffice/members/{member}/status",
        data={"status": "blocked"},
        headers=sessions["owner"],
    )
    # The member's live API session stops working at once.
    assert (await http.get("/member/v1/me", headers=api_session)).status_code == 401
    async with client_for(await make_partner()) as shop:
        with pytest.raises(PartnerApiError) as refused:
            await shop.earn(card, 1000, "EUR", idempotency_key="blocked-earn")
    assert (refused.value.code, refused.value.status) == ("member_blocked", 403)
    assert (await balances(pool, card))["pending"] == 0


async def test_data_export_and_erasure(
    http: httpx.AsyncClient, sessions: dict[str, dict[str, str]], make_member: Any, pool: Any
) -> None:
    card = await make_member(email="erase.me@example.com", display_name="Erase Me")
    member = await member_id_of(pool, card)
    support = sessions["support"]
    export = await http.post(f"/backoffice/members/{member}/export", headers=support, data={})
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/json")
    assert "attachment" in export.headers["content-disposition"]
    document = export.json()
    assert document["card"]["number"] == card
    assert document["member"]["email"] == "erase.me@example.com"

    confirm = await http.get(f"/backoffice/members/{member}/erase", headers=support)
    assert confirm.status_code == 200 and "Type the card number" in confirm.text
    wrong = await http.post(
        f"/backoffice/members/{member}/erase", data={"card_number": "1234"}, headers=support
    )
    assert wrong.status_code == 422
    assert "Type the member&#39;s card number to confirm the erasure." in wrong.text
    assert await pool.fetchval("SELECT status FROM members WHERE id = $1", member) == "active"
    erased = await http.post(
        f"/backoffice/members/{member}/erase",
        data={"card_number": f"{card[:4]} {card[4:]}"},
        headers=support,
    )
    assert erased.status_code == 303
    row = await pool.fetchrow(
        "SELECT status, email, display_name FROM members WHERE id = $1", member
    )
    assert (row["status"], row["email"], row["display_name"]) == ("closed", None, None)
    trail = await pool.fetch(
        "SELECT action, after::text AS after FROM admin_audit_log WHERE subject = $1 ORDER BY id",
        f"member:{member}",
    )
    assert [r["action"] for r in trail] == ["member.data_export", "member.erase"]
    assert "erase.me" not in "".join(r["after"] for r in trail)  # no personal data kept
    assert (
        await http.post(
            f"/backoffice/members/{member}/export", headers=sessions["finance"], data={}
        )
    ).status_code == 403


async def test_adjustments_through_the_pages(
    http: httpx.AsyncClient, sessions: dict[str, dict[str, str]], make_member: Any, pool: Any
) -> None:
    card = await make_member(display_name="Adjust Through Pages")
    member = await member_id_of(pool, card)
    support, owner, finance = sessions["support"], sessions["owner"], sessions["finance"]
    form = {"direction": "credit", "points": "2,000", "reason": "Outage in March"}

    # A missing reason: the form again, with a clear message, nothing written.
    no_reason = await http.post(
        f"/backoffice/members/{member}/adjustments",
        data={**form, "reason": "  ", "idempotency_key": "k-no-reason"},
        headers=support,
    )
    assert no_reason.status_code == 422
    assert "Give a reason for the adjustment." in no_reason.text
    assert 'aria-invalid="true" aria-describedby="reason-error"' in no_reason.text
    assert await pool.fetchval("SELECT count(*) FROM adjustments WHERE member_id = $1", member) == 0

    made = await http.post(
        f"/backoffice/members/{member}/adjustments",
        data={**form, "idempotency_key": "k-large"},
        headers=support,
    )
    assert made.status_code == 303
    location = made.headers["location"]
    adjustment = int(location.rsplit("/", 1)[1])
    # Sent twice (a double click): the same adjustment.
    twice = await http.post(
        f"/backoffice/members/{member}/adjustments",
        data={**form, "idempotency_key": "k-large"},
        headers=support,
    )
    assert twice.headers["location"] == location
    assert await pool.fetchval("SELECT count(*) FROM adjustments WHERE member_id = $1", member) == 1
    waiting = await http.get(location, headers=support)
    assert ">pending<" in waiting.text and 'id="member-available">0<' in waiting.text
    assert (await balances(pool, card))["available"] == 0

    # Support cannot approve; the list shows it pending, with buttons for finance only.
    assert (await http.post(f"{location}/approve", headers=support, data={})).status_code == 403
    listed = await http.get("/backoffice/adjustments", headers=finance)
    assert f'href="/backoffice/adjustments/{adjustment}"' in listed.text
    assert f"Approve adjustment {adjustment}" in listed.text
    assert (
        f"Approve adjustment {adjustment}"
        not in (await http.get("/backoffice/adjustments", headers=support)).text
    )

    # The owner's own request: the owner cannot approve it.
    own = await http.post(
        f"/backoffice/members/{member}/adjustments",
        data={
            "direction": "credit",
            "points": "600",
            "reason": "Compensation",
            "idempotency_key": "o",
        },
        headers=owner,
    )
    own_location = own.headers["location"]
    refused = await http.post(f"{own_location}/approve", headers=owner, data={})
    assert refused.status_code == 403
    assert "You requested this adjustment; another admin must approve or reject it." in (
        refused.text
    )
    assert "You requested this adjustment" in (await http.get(own_location, headers=owner)).text

    approved = await http.post(f"{location}/approve", headers=finance, data={})
    assert approved.status_code == 303 and approved.headers["location"] == location
    booked = await http.get(location, headers=finance)
    assert ">booked<" in booked.text and 'id="member-available">2,000<' in booked.text
    assert (await balances(pool, card))["available"] == 2_000
    # Approving again: a 409 page, nothing more booked.
    again = await http.post(f"{location}/approve", headers=owner, data={})
    assert again.status_code == 409 and "This adjustment is booked already." in again.text
    assert (await balances(pool, card))["available"] == 2_000

    # A small debit books at once; one beyond the balance is refused on the form.
    small = await http.post(
        f"/backoffice/members/{member}/adjustments",
        data={"direction": "debit", "points": "500", "reason": "Typo", "idempotency_key": "s"},
        headers=support,
    )
    assert small.status_code == 303
    assert (await balances(pool, card))["available"] == 1_500
    too_much = await http.post(
        f"/backoffice/members/{member}/adjustments",
        data={"direction": "debit", "points": "1501", "reason": "x", "idempotency_key": "t"},
        headers=support,
    )
    assert too_much.status_code == 422
    assert "The member has 1,500 points available" in too_much.text

    rejected = await http.post(
        f"{own_location}/reject", headers=finance, data={"note": "No evidence"}
    )
    assert rejected.status_code == 303
    assert "No evidence" in (await http.get(own_location, headers=finance)).text

    export = await http.get(
        "/backoffice/adjustments/export.csv",
        params={"status": "all", "member": member},
        headers=finance,
    )
    assert export.headers["content-disposition"] == 'attachment; filename="adjustments.csv"'
    rows = csv_rows(export.text)
    assert [(r["points"], r["status"], r["reason"]) for r in rows] == [
        ("-500", "booked", "Typo"),
        ("600", "rejected", "Compensation"),
        ("2000", "booked", "Outage in March"),
    ]
    assert rows[2]["decided_by"].startswith("backoffice-finance-")
    assert rows[2]["entry_id"] and rows[1]["entry_id"] == ""
    ledger = csv_rows(
        (await http.get(f"/backoffice/members/{member}/ledger.csv", headers=finance)).text
    )
    assert [(r["kind"], r["points"], r["memo"]) for r in ledger] == [
        ("adjustment", "-500", "Typo"),
        ("adjustment", "2000", "Outage in March"),
    ]


async def test_the_ledger_pages_with_a_cursor(greta: str, pool: Any) -> None:
    member = await member_id_of(pool, greta)
    whole = await member_admin.member_ledger(pool, member, limit=10)
    first = await member_admin.member_ledger(pool, member, limit=1)
    rest = await member_admin.member_ledger(
        pool, member, limit=10, cursor=member_admin.ledger_cursor(first[-1])
    )
    assert len(whole) >= 2
    assert [r.entry_id for r in first + rest] == [r.entry_id for r in whole]
