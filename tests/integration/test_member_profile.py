"""Profile, surveys, data export and account deletion (forfeit to breakage, erasure)."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from api.coalition.member_profile import (
    ACCOUNT_DELETION_CONFIRMATION,
    ProfileChanges,
    answer_survey,
    delete_account,
    export_member_data,
    get_profile,
    update_profile,
)
from api.errors import DomainError
from api.ledger.check import check_ledger
from api.ledger.lots import release_due
from api.settlement.periods import business_date, day_end
from api.settlement.position import liability_now, programme_position
from api.settlement.run import settle_due
from tests.conftest import balances


async def member_id_of(pool, card: str) -> int:
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


async def breakage(pool) -> int:
    return await pool.fetchval("SELECT balance FROM accounts WHERE kind = 'programme_breakage'")


async def test_profile_changes_only_what_is_sent_and_refuses_bad_text(make_member, pool):
    card = await make_member(email="ann@example.com", display_name="Ann")
    member_id = await member_id_of(pool, card)
    before = await get_profile(pool, member_id)
    assert before is not None and (before.email_news, before.expiry_reminders) == (False, True)
    after = await update_profile(
        pool, member_id, ProfileChanges(salutation=" they/them ", email_news=True)
    )
    assert (after.display_name, after.salutation, after.email_news) == ("Ann", "they/them", True)
    again = await update_profile(pool, member_id, ProfileChanges(salutation="they/them"))
    assert again == after  # setting is idempotent
    cleared = await update_profile(pool, member_id, ProfileChanges(display_name=""))
    assert cleared.display_name is None
    for bad in (ProfileChanges(display_name="x" * 101), ProfileChanges(salutation="a\x00b")):
        with pytest.raises(DomainError) as refused:
            await update_profile(pool, member_id, bad)
        assert refused.value.code.startswith("invalid_")
    assert await get_profile(pool, member_id) == cleared


async def test_survey_once_per_own_purchase_within_seven_days(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    other = await make_member()
    mine = await member_id_of(pool, card)
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=2_000, currency="EUR")
        old = await client.earn(card_number=card, amount_cents=2_000, currency="EUR")
        theirs = await client.earn(card_number=other, amount_cents=2_000, currency="EUR")
        await release_due(pool, clock.now())
        burn = await client.burn(card_number=card, points=5)
    now = clock.now()

    async def answer(txn, score=9, comment=None, at=now):
        return await answer_survey(pool, mine, txn, score=score, comment=comment, now=at)

    async def refused(txn, code, **kw):
        with pytest.raises(DomainError) as error:
            await answer(txn, **kw)
        assert error.value.code == code
        return error.value

    stored = await answer(earn.id, comment="  Friendly staff ")
    assert (stored.score, stored.comment) == (9, "Friendly staff")
    assert (await refused(earn.id, "survey_already_answered", score=3)).status == 409
    assert (await refused(theirs.id, "transaction_not_found")).status == 404
    await refused(uuid4(), "transaction_not_found")
    await refused(burn.id, "survey_not_applicable")
    await refused(old.id, "survey_closed", at=now + timedelta(days=7, seconds=1))
    await refused(old.id, "invalid_score", score=11)
    await refused(old.id, "invalid_score", score=-1)
    await refused(old.id, "invalid_comment", comment="x" * 1001)
    assert (await answer(old.id, score=0, at=now + timedelta(days=7))).score == 0
    rows = await pool.fetch(
        "SELECT transaction_id, score FROM member_surveys WHERE member_id = $1", mine
    )
    assert {(r["transaction_id"], r["score"]) for r in rows} == {(earn.id, 9), (old.id, 0)}


async def test_export_holds_profile_card_balances_transactions_and_surveys(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(name="Bakery")
    card = await make_member(email="bo@example.com", display_name="Bo")
    member_id = await member_id_of(pool, card)
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=1_500, currency="EUR")
    await answer_survey(pool, member_id, earn.id, score=7, comment="ok", now=clock.now())
    document = await export_member_data(pool, member_id)
    assert document is not None
    assert document["member"]["email"] == "bo@example.com"
    assert document["card"] == {"number": card}
    assert document["balances_points"] == {"available": 0, "pending": 15, "held": 0, "debt": 0}
    [txn] = document["transactions"]
    assert (txn["id"], txn["partner_name"], txn["points"], txn["currency"]) == (
        str(earn.id),
        "Bakery",
        15,
        "EUR",
    )
    assert document["surveys"][0]["comment"] == "ok"
    import json

    json.dumps(document)  # a JSON document as it stands


async def test_deletion_forfeits_points_to_breakage_erases_data_and_settles(
    make_partner, make_member, client_for, pool, clock
):
    instant = await make_partner(return_window_days=0)
    slow = await make_partner(return_window_days=14)
    card = await make_member(email="cy@example.com", display_name="Cy")
    member_id = await member_id_of(pool, card)
    async with client_for(instant) as client:
        earn = await client.earn(card_number=card, amount_cents=5_000, currency="EUR")  # 50
        await release_due(pool, clock.now())
        hold = await client.authorize(card_number=card, points=10)
    async with client_for(slow) as client:
        await client.earn(card_number=card, amount_cents=3_000, currency="EUR")  # 30 pending
    await answer_survey(pool, member_id, earn.id, score=10, comment="great", now=clock.now())

    with pytest.raises(DomainError) as unconfirmed:
        await delete_account(pool, member_id, confirmation="yes", now=clock.now())
    assert unconfirmed.value.code == "confirmation_required"
    with pytest.raises(DomainError) as held:
        await delete_account(
            pool, member_id, confirmation=ACCOUNT_DELETION_CONFIRMATION, now=clock.now()
        )
    assert (held.value.code, held.value.status) == ("burn_authorization_open", 409)
    async with client_for(instant) as client:
        await client.void(hold.id)

    await pool.execute(
        "INSERT INTO inbox_messages (member_id, kind, params, created_at)"
        " VALUES ($1, 'tier_up', '{\"tier\": \"Silver\"}', $2)",
        member_id,
        clock.now(),
    )
    await pool.execute(
        "INSERT INTO referral_codes (member_id, code, created_at) VALUES ($1, 'CYCODE22', $2)",
        member_id,
        clock.now(),
    )
    breakage_before = await breakage(pool)
    closure = await delete_account(
        pool, member_id, confirmation=ACCOUNT_DELETION_CONFIRMATION, now=clock.now()
    )
    assert (closure.forfeited_available_points, closure.forfeited_pending_points) == (50, 30)
    assert await breakage(pool) == breakage_before + 80
    closed_card = await pool.fetchval("SELECT card_number FROM members WHERE id = $1", member_id)
    assert closed_card != card
    for table in ("inbox_messages", "referral_codes"):
        assert (
            await pool.fetchval(f"SELECT count(*) FROM {table} WHERE member_id = $1", member_id)
            == 0
        )
    assert await balances(pool, closed_card) == {
        "available": 0,
        "pending": 0,
        "held": 0,
        "debt": 0,
    }
    assert (
        await pool.fetchval(
            "SELECT sum(points_remaining) FROM lots WHERE member_id = $1", member_id
        )
        == 0
    )
    assert (
        await pool.fetchval(
            "SELECT sum(points) FROM lot_expiries WHERE entry_id = $1", closure.entry_id
        )
        == 80
    )
    entry = await pool.fetchrow(
        "SELECT kind, member_id FROM journal_entries WHERE id = $1", closure.entry_id
    )
    assert (entry["kind"], entry["member_id"]) == ("forfeit", member_id)

    # Erasure: nothing left that names the person.
    row = await pool.fetchrow("SELECT * FROM members WHERE id = $1", member_id)
    assert row["status"] == "closed"
    assert (row["email"], row["display_name"], row["salutation"]) == (None, None, None)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM members WHERE email = 'cy@example.com' OR card_number = $1", card
        )
        == 0
    )
    assert (
        await pool.fetchval("SELECT comment FROM member_surveys WHERE transaction_id = $1", earn.id)
        is None
    )
    assert await pool.fetchval("SELECT count(*) FROM transactions WHERE member_id = $1", member_id)

    # Idempotent: a second deletion moves nothing and answers the same.
    again = await delete_account(
        pool, member_id, confirmation=ACCOUNT_DELETION_CONFIRMATION, now=clock.now()
    )
    assert again == closure and await breakage(pool) == breakage_before + 80

    # Settlement values the forfeit at the lots' prices: float = liability.
    clock.set(day_end(business_date(clock.now())) + timedelta(minutes=11))
    await settle_due(pool, clock.now())
    position = await programme_position(pool)
    assert position.liability == await liability_now(pool)
    assert position.breakage_cents >= 80  # 80 points at 1.0 cent
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []


async def test_deletion_with_debt_abandons_it_and_keeps_the_ledger_sound(
    make_partner, make_member, client_for, pool, clock
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    member_id = await member_id_of(pool, card)
    async with client_for(creds) as client:
        earn = await client.earn(card_number=card, amount_cents=2_000, currency="EUR")
        await release_due(pool, clock.now())
        await client.burn(card_number=card, points=15)
        await client.refund(earn.id, amount_cents=2_000, currency="EUR")  # 5 back, 15 debt
        await client.earn(card_number=card, amount_cents=500, currency="EUR")  # repays 5
    closure = await delete_account(
        pool, member_id, confirmation=ACCOUNT_DELETION_CONFIRMATION, now=clock.now()
    )
    assert (closure.debt_points, closure.entry_id) == (10, None)
    assert (
        await pool.fetchval(
            "SELECT debt_points FROM member_closures WHERE member_id = $1", member_id
        )
        == 10
    )
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []
    clock.set(day_end(business_date(clock.now())) + timedelta(minutes=11))
    await settle_due(pool, clock.now())
    assert (await programme_position(pool)).liability == await liability_now(pool)
