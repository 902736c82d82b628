"""Back-office lottery pages: creating one (bad input refused on the form),
the draw refused before its time, then run from the page with its progress
fragment polled until done; the winners shown are the ones anyone recomputes
from the published draw; audit rows; the ticket and winner CSVs; cancelling."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import timedelta
from typing import Any

from api.backoffice.pages import PROGRAMME_TZ
from api.engagement import lotteries as lots
from api.engagement import lottery_draw
from tests.conftest import backoffice_session


def local(moment: Any) -> str:
    return moment.astimezone(PROGRAMME_TZ).strftime("%Y-%m-%dT%H:%M")


async def test_create_draw_and_export_a_lottery(
    http: Any, pool: Any, clock: Any, make_member: Any
) -> None:
    owner = await backoffice_session(http, pool, clock, "owner")
    cookie = {"Cookie": owner["Cookie"]}
    token = owner["x-csrf-token"]
    blank = await http.get("/backoffice/lotteries/new", headers=owner)
    key = re.search(r'name="create_key" value="([0-9a-f]+)"', blank.text)
    assert blank.status_code == 200 and key is not None
    now = clock.now()
    good = {
        "csrf_token": token,
        "create_key": key.group(1),
        "name": "Spring draw",
        "rules": "One ticket, one chance. Three prizes.",
        "ticket_price_points": "100",
        "tickets_per_member_max": "5",
        "sales_open_at": local(now - timedelta(minutes=5)),
        "sales_close_at": local(now + timedelta(days=1)),
        "draw_at": local(now + timedelta(days=1, hours=1)),
        "prizes": "5000\nDinner for two at De Gouden Lepel\n250\n",
    }
    before = await pool.fetchval("SELECT count(*) FROM lotteries")
    no_prizes = await http.post(
        "/backoffice/lotteries", headers=cookie, data={**good, "prizes": ""}
    )
    assert no_prizes.status_code == 422 and "A lottery has 1 to 100 prizes." in no_prizes.text
    early_draw = await http.post(
        "/backoffice/lotteries",
        headers=cookie,
        data={**good, "draw_at": local(now + timedelta(hours=2))},
    )
    assert (
        early_draw.status_code == 422
        and "The draw is at or after the close of sales." in early_draw.text
    )
    assert 'value="Spring draw"' in early_draw.text  # what was typed stays
    assert await pool.fetchval("SELECT count(*) FROM lotteries") == before

    made = await http.post("/backoffice/lotteries", headers=cookie, data=good)
    assert made.status_code == 303
    lottery_id = int(made.headers["location"].rsplit("/", 1)[1])
    prizes = await pool.fetch(
        "SELECT rank, points, voucher_text FROM lottery_prizes WHERE lottery_id = $1 ORDER BY rank",
        lottery_id,
    )
    assert [tuple(p) for p in prizes] == [
        (1, 5000, None),
        (2, None, "Dinner for two at De Gouden Lepel"),
        (3, 250, None),
    ]
    seed_hash = bytes(
        await pool.fetchval("SELECT seed_sha256 FROM lotteries WHERE id = $1", lottery_id)
    ).hex()
    detail = await http.get(made.headers["location"], headers=owner)
    assert seed_hash in detail.text and "selling" in detail.text
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE action = 'lottery.create' AND subject = $1",
            f"lottery:{lottery_id}",
        )
        == 1
    )

    # Tickets: seven members take their free ticket.
    for _ in range(7):
        card = await make_member()
        member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
        await lots.take_free_ticket(pool, member_id, lottery_id, clock.now())

    # Before the draw time the draw is refused with the reason.
    refused = await http.post(
        f"/backoffice/lotteries/{lottery_id}/draw", headers={**owner, "HX-Request": "true"}
    )
    assert refused.status_code == 409 and "The draw is due at" in refused.text
    assert await pool.fetchval("SELECT status FROM lotteries WHERE id = $1", lottery_id) != "drawn"

    clock.advance(timedelta(days=1, hours=2))
    owner = await backoffice_session(http, pool, clock, "owner")
    started = await http.post(
        f"/backoffice/lotteries/{lottery_id}/draw", headers={**owner, "HX-Request": "true"}
    )
    assert started.status_code == 202 and 'id="draw-status"' in started.text
    assert "<h1>" not in started.text  # the fragment only
    states = [re.search(r'data-state="(\w+)"', started.text).group(1)]  # type: ignore[union-attr]
    for _ in range(100):
        if states[-1] == "done":
            break
        await asyncio.sleep(0.05)
        poll = await http.get(
            f"/backoffice/lotteries/{lottery_id}/draw/status",
            headers={**owner, "HX-Request": "true"},
        )
        assert poll.status_code == 200
        state = re.search(r'data-state="(\w+)"', poll.text).group(1)  # type: ignore[union-attr]
        if state == "running":
            assert 'hx-trigger="every 1s"' in poll.text
        states.append(state)
        done_fragment = poll.text
    assert states[-1] == "done" and set(states) <= {"running", "done"}
    assert (
        "hx-trigger" not in done_fragment
        and "Draw done: 3 winner(s) of 7 ticket(s)" in done_fragment
    )

    # The winners shown are the ones the published draw recomputes to.
    document = json.loads(await lots.draw_document(pool, lottery_id) or b"{}")
    seed = bytes.fromhex(document["seed"])
    assert lottery_draw.seed_sha256(seed).hex() == seed_hash
    tickets = [lottery_draw.DrawTicket(t["number"], t["holder"]) for t in document["tickets"]]
    wins = lottery_draw.draw_winners(seed, tickets, [1, 2, 3])
    shown = re.findall(
        r'<tr class="winner"><td>(\d+)</td><td>(\d+)</td><td><code>(\w+)</code>', done_fragment
    )
    holder = {t.number: t.holder for t in tickets}
    assert shown == [(str(w.rank), str(w.ticket_number), holder[w.ticket_number]) for w in wins]
    assert document["seed"] in done_fragment
    logged = await pool.fetchrow(
        "SELECT after::text AS after FROM admin_audit_log WHERE action = 'lottery.draw' AND subject = $1",
        f"lottery:{lottery_id}",
    )
    assert json.loads(logged["after"])["seed"] == document["seed"]
    # Drawn once: running it again is refused.
    again = await http.post(f"/backoffice/lotteries/{lottery_id}/draw", headers=owner)
    assert again.status_code == 409 and "This lottery has been drawn." in again.text

    # CSVs.
    tickets_csv = await http.get(f"/backoffice/lotteries/{lottery_id}/tickets.csv", headers=owner)
    rows = list(csv.DictReader(io.StringIO(tickets_csv.text)))
    assert [int(r["number"]) for r in rows] == list(range(1, 8))
    assert {int(r["number"]): r["won_rank"] for r in rows if r["won_rank"]} == {
        w.ticket_number: str(w.rank) for w in wins
    }
    assert all(r["paid"] == "false" and r["holder"] == holder[int(r["number"])] for r in rows)
    winners_csv = await http.get(f"/backoffice/lotteries/{lottery_id}/winners.csv", headers=owner)
    assert list(csv.reader(io.StringIO(winners_csv.text)))[1:] == [
        [str(w.rank), str(w.ticket_number), holder[w.ticket_number], p]
        for w, p in zip(
            wins, ["5000 points", "Dinner for two at De Gouden Lepel", "250 points"], strict=True
        )
    ]

    # The list, filtered; cancelling another one refunds and is audited.
    listed = await http.get("/backoffice/lotteries", params={"status": "drawn"}, headers=owner)
    assert "Spring draw" in listed.text and listed.text.count('class="lottery-row"') == 1
    other = await http.post(
        "/backoffice/lotteries",
        headers={"Cookie": owner["Cookie"]},
        data={
            **good,
            "csrf_token": owner["x-csrf-token"],
            "create_key": "other",
            "name": "Autumn",
            "sales_open_at": local(clock.now()),
            "sales_close_at": local(clock.now() + timedelta(days=2)),
            "draw_at": local(clock.now() + timedelta(days=2)),
        },
    )
    other_id = int(other.headers["location"].rsplit("/", 1)[1])
    cancelled = await http.post(f"/backoffice/lotteries/{other_id}/cancel", headers=owner)
    assert cancelled.status_code == 200 and "Cancelled: 0 tickets refunded" in cancelled.text
    assert (
        await pool.fetchval("SELECT status FROM lotteries WHERE id = $1", other_id) == "cancelled"
    )
    # Marketing may, support may not (as the admin API).
    support = await backoffice_session(http, pool, clock, "support")
    assert (await http.get("/backoffice/lotteries", headers=support)).status_code == 403
