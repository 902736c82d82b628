"""Back-office challenge pages: defining one from the form (with its audit row),
bad input refused on the form with nothing written, changes after the start
limited to name, description and end, the list's filters and pages, the
detail's counts, the CSV export."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from typing import Any

from api.backoffice.pages import PROGRAMME_TZ
from api.engagement.challenge_views import join_challenge
from tests.conftest import backoffice_session


def local(moment: Any) -> str:
    return moment.astimezone(PROGRAMME_TZ).strftime("%Y-%m-%dT%H:%M")


def form(headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"csrf_token": headers["x-csrf-token"], **fields}


async def test_define_change_and_list_challenges(
    http: Any, pool: Any, clock: Any, make_partner: Any, make_member: Any
) -> None:
    marketing = await backoffice_session(http, pool, clock, "marketing")
    cookie_only = {"Cookie": marketing["Cookie"]}
    shop = await make_partner(name="Bakker Jansen")
    sponsor = await make_partner(name="Versmarkt")
    blank = await http.get("/backoffice/challenges/new", headers=marketing)
    assert blank.status_code == 200 and "Bakker Jansen" in blank.text
    key = re.search(r'name="create_key" value="([0-9a-f]+)"', blank.text)
    assert key is not None
    starts = clock.now() + timedelta(days=1)
    good = {
        "create_key": key.group(1),
        "name": "  Three coffees  ",
        "description": "Buy three times at the bakery",
        "kind": "purchases",
        "target": "3",
        "partner_ids": [str(shop.partner_id)],
        "starts_at": local(starts),
        "ends_at": local(starts + timedelta(days=14)),
        "enrolment": "opt_in",
        "audience": "everyone",
        "reward_points": "150",
        "sponsor_id": str(sponsor.partner_id),
    }
    count_before = await pool.fetchval("SELECT count(*) FROM challenges")

    # Bad input: the form again with the message, a 4xx, nothing written.
    bad = await http.post(
        "/backoffice/challenges",
        headers=cookie_only,
        data=form(marketing, **{**good, "target": "three"}),
    )
    assert bad.status_code == 422 and "Target: &#39;three&#39; is not a whole number." in bad.text
    assert 'value="  Three coffees  "' in bad.text or 'value="Three coffees"' in bad.text
    backwards = await http.post(
        "/backoffice/challenges",
        headers=cookie_only,
        data=form(marketing, **{**good, "ends_at": local(starts - timedelta(hours=1))}),
    )
    assert backwards.status_code == 422 and "Ends_at must be after starts_at." in backwards.text
    tier_missing = await http.post(
        "/backoffice/challenges",
        headers=cookie_only,
        data=form(marketing, **{**good, "audience": "tier"}),
    )
    assert tier_missing.status_code == 422
    assert "Audience_tier: is required with audience &#39;tier&#39;." in tier_missing.text
    no_token = await http.post("/backoffice/challenges", headers=cookie_only, data=good)
    assert no_token.status_code == 403
    assert await pool.fetchval("SELECT count(*) FROM challenges") == count_before
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE action = 'challenge.create'"
        )
        == 0
    )

    # A good one: stored as typed, audited as the admin API does, shown.
    made = await http.post(
        "/backoffice/challenges", headers=cookie_only, data=form(marketing, **good)
    )
    assert made.status_code == 303
    challenge_id = int(made.headers["location"].rsplit("/", 1)[1])
    row = await pool.fetchrow("SELECT * FROM challenges WHERE id = $1", challenge_id)
    assert (row["name"], row["kind"], row["target"], row["reward_points"]) == (
        "Three coffees",
        "purchases",
        3,
        150,
    )
    assert list(row["partner_ids"]) == [shop.partner_id] and row["sponsor_id"] == sponsor.partner_id
    assert row["starts_at"] == starts.replace(second=0, microsecond=0)
    logged = await pool.fetchrow(
        "SELECT subject, before, after::text AS after FROM admin_audit_log"
        " WHERE action = 'challenge.create'"
    )
    assert logged["subject"] == f"challenge:{challenge_id}" and logged["before"] is None
    assert json.loads(logged["after"])["reward_points"] == 150
    # The same form sent twice (a double click) makes one challenge.
    again = await http.post(
        "/backoffice/challenges", headers=cookie_only, data=form(marketing, **good)
    )
    assert again.headers["location"] == made.headers["location"]
    assert await pool.fetchval("SELECT count(*) FROM challenges") == count_before + 1

    # Every kind can be defined from the form, with its own fields.
    kinds = {
        "spend": {"target": "5000"},
        "distinct_partners": {"target": "2", "partner_ids": []},
        "weekly_streak": {"target": "2", "partner_ids": []},
        "nth_purchase": {"target": "10", "partner_ids": []},
        "anniversary": {"target": "1", "partner_ids": [], "sponsor_id": ""},
    }
    for kind, fields in kinds.items():
        one = await http.post(
            "/backoffice/challenges",
            headers=cookie_only,
            data=form(
                marketing,
                **{**good, "create_key": f"k-{kind}", "name": f"K {kind}", "kind": kind, **fields},
            ),
        )
        assert one.status_code == 303, (kind, one.text[-2000:])
    winback = await http.post(
        "/backoffice/challenges",
        headers=cookie_only,
        data=form(
            marketing,
            **{
                **good,
                "create_key": "k-winback",
                "name": "Come back",
                "enrolment": "personal",
                "personal_days": "14",
                "audience": "lapsed",
                "lapsed_days": "60",
            },
        ),
    )
    assert winback.status_code == 303
    assert (
        await pool.fetchval("SELECT personal_days FROM challenges WHERE name = 'Come back'") == 14
    )

    # Before the start every field may change.
    early = await http.post(
        f"/backoffice/challenges/{challenge_id}",
        headers=cookie_only,
        data=form(marketing, **{**good, "reward_points": "200"}),
    )
    assert early.status_code == 200 and "Saved." in early.text
    assert (
        await pool.fetchval("SELECT reward_points FROM challenges WHERE id = $1", challenge_id)
        == 200
    )

    # After the start: the locked fields are shown disabled, and a form that
    # changes one anyway is refused with the reason; the name may change.
    clock.advance(timedelta(days=2))
    marketing = await backoffice_session(http, pool, clock, "marketing")  # a new day, a new session
    cookie_only = {"Cookie": marketing["Cookie"]}
    member = await make_member()
    member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", member)
    await join_challenge(pool, member_id, challenge_id, clock.now())
    detail = await http.get(f"/backoffice/challenges/{challenge_id}", headers=marketing)
    assert "<fieldset disabled>" in detail.text and 'id="count-enrolled">1<' in detail.text
    refused = await http.post(
        f"/backoffice/challenges/{challenge_id}",
        headers=cookie_only,
        data=form(marketing, **{**good, "reward_points": "999"}),
    )
    assert refused.status_code == 409
    assert "The challenge has started: reward_points can no longer change" in refused.text
    assert (
        await pool.fetchval("SELECT reward_points FROM challenges WHERE id = $1", challenge_id)
        == 200
    )
    renamed = await http.post(
        f"/backoffice/challenges/{challenge_id}",
        headers=cookie_only,
        data=form(
            marketing, name="Three coffees, please", description="x", ends_at=good["ends_at"]
        ),
    )
    assert renamed.status_code == 200 and "Three coffees, please" in renamed.text
    change = await pool.fetchrow(
        "SELECT before::text AS before, after::text AS after FROM admin_audit_log"
        " WHERE action = 'challenge.change' AND subject = $1 ORDER BY id DESC LIMIT 1",
        f"challenge:{challenge_id}",
    )
    assert json.loads(change["after"])["name"] == "Three coffees, please"
    assert json.loads(change["before"])["name"] == "Three coffees"

    # Support reads but may not write.
    support = await backoffice_session(http, pool, clock, "support")
    assert (
        await http.get(f"/backoffice/challenges/{challenge_id}", headers=support)
    ).status_code == 200
    assert (await http.get("/backoffice/challenges/new", headers=support)).status_code == 403

    # The list: filters and keyset pages.
    listed = await http.get("/backoffice/challenges", params={"kind": "spend"}, headers=marketing)
    assert listed.text.count('class="challenge-row"') == 1 and "K spend" in listed.text
    bad_filter = await http.get(
        "/backoffice/challenges", params={"kind": "lottery"}, headers=marketing
    )
    assert bad_filter.status_code == 400 and "Kind must be one of" in bad_filter.text
    for n in range(50):
        await http.post(
            "/backoffice/challenges",
            headers=cookie_only,
            data=form(
                marketing,
                **{
                    **good,
                    "create_key": f"bulk-{n}",
                    "name": f"Bulk {n}",
                    "starts_at": local(clock.now() + timedelta(days=1)),
                    "ends_at": local(clock.now() + timedelta(days=9)),
                },
            ),
        )
    first = await http.get(
        "/backoffice/challenges", params={"kind": "purchases"}, headers=marketing
    )
    assert first.text.count('class="challenge-row"') == 50
    link = re.search(r'href="(/backoffice/challenges\?[^"]*cursor=[^"]+)"', first.text)
    assert link is not None
    rest = await http.get(
        link.group(1).replace("&amp;", "&"), headers={**marketing, "HX-Request": "true"}
    )
    # 52 purchases challenges: the bulk, the first and the win-back.
    assert rest.text.count('class="challenge-row"') == 2 and "Three coffees, please" in rest.text

    # Withdraw, then the CSV.
    gone = await http.post(
        f"/backoffice/challenges/{challenge_id}/withdraw", headers=cookie_only, data=form(marketing)
    )
    assert gone.status_code == 200 and "Withdrawn." in gone.text
    exported = await http.get(
        "/backoffice/challenges/export.csv", params={"status": "withdrawn"}, headers=marketing
    )
    assert exported.headers["content-disposition"] == 'attachment; filename="challenges.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 1
    assert rows[0]["name"] == "Three coffees, please" and rows[0]["enrolled"] == "1"
    assert rows[0]["reward_points"] == "200" and rows[0]["partner_ids"] == str(shop.partner_id)
    everything = await http.get("/backoffice/challenges/export.csv", headers=marketing)
    assert len(list(csv.DictReader(io.StringIO(everything.text)))) == 57
