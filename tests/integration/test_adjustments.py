"""Manual adjustments with maker-checker (api/ledger/adjustments.py): a large
adjustment waits and moves nothing, its maker cannot decide it, a second
admin books exactly one balanced entry, a double approval books once, small
ones book at once, a debit never overdraws, every step is audited, and
settlement values the adjusted points exactly (`ledger check`, liability)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest

from api.admin_auth import accounts as admin_accounts
from api.admin_auth.principal import AdminPrincipal
from api.db.pool import transaction
from api.engagement import inbox
from api.errors import DomainError
from api.ledger import adjustments
from api.ledger.adjustments import AdjustmentFilter, AdjustmentRequest
from api.ledger.check import check_ledger
from api.ledger.lots import release_due
from api.settlement.periods import business_date, day_end
from api.settlement.position import liability_now, programme_position
from api.settlement.run import settle_day
from tests.conftest import ADMIN_PASSWORD, balances

THRESHOLD = 500
_keys = itertools.count(1)
_emails = itertools.count(1)


@pytest.fixture(scope="module")
def make_admin(pool, clock):
    async def make(role: str) -> AdminPrincipal:
        created = await transaction(
            pool,
            lambda conn: admin_accounts.create_admin(
                conn,
                email=f"adj-{role}-{next(_emails)}@example.com",
                role=role,
                password=ADMIN_PASSWORD,
                now=clock.now(),
            ),
        )
        return created.principal

    return make


@pytest.fixture(scope="module")
def funded(make_partner, make_member, client_for, pool, clock):
    """A member with `points` available, earned at a partner pricing them at 1 cent."""

    async def make(points: int) -> tuple[str, int]:
        shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
        card = await make_member(display_name="Adjusted Member")
        if points:
            async with client_for(shop) as client:
                await client.earn(card_number=card, amount_cents=points * 100, currency="EUR")
            await release_due(pool, clock.now())
        member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
        return card, member_id

    return make


def ask(member_id: int, direction: str, points: int, reason: str = "goodwill") -> AdjustmentRequest:
    return AdjustmentRequest(member_id, direction, points, reason, f"key-{next(_keys)}")


async def entry_postings(pool, entry_id: int) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT a.kind, p.amount FROM postings p JOIN accounts a ON a.id = p.account_id"
        " WHERE p.entry_id = $1",
        entry_id,
    )
    return {r["kind"]: r["amount"] for r in rows}


async def audit_rows(pool, adjustment_id: int) -> list[dict]:
    rows = await pool.fetch(
        "SELECT admin_id, action, before::text AS before, after::text AS after"
        " FROM admin_audit_log WHERE subject = $1 ORDER BY id",
        f"adjustment:{adjustment_id}",
    )
    import json

    return [
        {
            "admin_id": r["admin_id"],
            "action": r["action"],
            "before": json.loads(r["before"]) if r["before"] else None,
            "after": json.loads(r["after"]) if r["after"] else None,
        }
        for r in rows
    ]


async def test_a_large_adjustment_waits_for_a_second_admin(funded, make_admin, pool, clock):
    card, member = await funded(100)
    maker = await make_admin("support")
    checker = await make_admin("finance")
    entries_before = await pool.fetchval("SELECT count(*) FROM journal_entries")

    made = await adjustments.request_adjustment(
        pool,
        maker,
        ask(member, "credit", 2_000, "  Lost receipts from the March outage  "),
        threshold_points=THRESHOLD,
        now=clock.now(),
    )
    assert (made.status, made.points, made.needs_approval, made.entry_id) == (
        "pending",
        2_000,
        True,
        None,
    )
    assert made.reason == "Lost receipts from the March outage"
    assert (await balances(pool, card))["available"] == 100
    assert await pool.fetchval("SELECT count(*) FROM journal_entries") == entries_before

    # The maker cannot approve (or reject) their own, even as an approving role.
    owner_maker = await make_admin("owner")
    own = await adjustments.request_adjustment(
        pool, owner_maker, ask(member, "credit", 900), threshold_points=THRESHOLD, now=clock.now()
    )
    with pytest.raises(DomainError) as refused:
        await adjustments.approve_adjustment(pool, owner_maker, own.id, now=clock.now())
    assert (refused.value.code, refused.value.status) == ("adjustment_own", 403)
    with pytest.raises(DomainError) as refused:
        await adjustments.reject_adjustment(pool, owner_maker, own.id, note="", now=clock.now())
    assert refused.value.code == "adjustment_own"
    # Support may not approve at all.
    with pytest.raises(DomainError) as refused:
        await adjustments.approve_adjustment(
            pool, await make_admin("support"), made.id, now=clock.now()
        )
    assert refused.value.code == "role_not_allowed"
    assert (await balances(pool, card))["available"] == 100

    approved = await adjustments.approve_adjustment(pool, checker, made.id, now=clock.now())
    assert (approved.status, approved.decided_by, approved.booked_at) == (
        "booked",
        checker.admin_id,
        clock.now(),
    )
    assert approved.entry_id is not None
    entry = await pool.fetchrow(
        "SELECT kind, member_id FROM journal_entries WHERE id = $1", approved.entry_id
    )
    assert (entry["kind"], entry["member_id"]) == ("adjustment", member)
    assert await entry_postings(pool, approved.entry_id) == {
        "programme_adjustments": -2_000,
        "member_available": 2_000,
    }
    assert await pool.fetchval("SELECT count(*) FROM journal_entries") == entries_before + 1
    assert (await balances(pool, card))["available"] == 2_100
    # The credited points sit in a lot priced 0 that expires in 36 months.
    lot = await pool.fetchrow(
        "SELECT points_remaining, price_micros, expires_at FROM lots"
        " WHERE member_id = $1 AND points_original = 2000",
        member,
    )
    assert (lot["points_remaining"], lot["price_micros"]) == (2_000, 0)
    assert lot["expires_at"].year == clock.now().year + 3

    trail = await audit_rows(pool, made.id)
    assert [(r["action"], r["admin_id"]) for r in trail] == [
        ("adjustment.requested", maker.admin_id),
        ("adjustment.approved", checker.admin_id),
        ("adjustment.booked", checker.admin_id),
    ]
    assert trail[0]["before"] == {"member_id": member, "available_points": 100}
    assert trail[0]["after"]["status"] == "pending" and trail[0]["after"]["points"] == 2_000
    assert trail[1]["before"]["status"] == "pending"
    assert trail[1]["after"] == {"status": "approved", "decided_by": checker.admin_id}
    assert trail[2]["before"]["available_points"] == 100
    assert trail[2]["after"]["available_points"] == 2_100
    assert trail[2]["after"]["entry_id"] == approved.entry_id

    # Decided once: a second approval or a rejection is refused.
    with pytest.raises(DomainError) as again:
        await adjustments.approve_adjustment(pool, checker, made.id, now=clock.now())
    assert (again.value.code, again.value.status) == ("adjustment_decided", 409)

    # Another checker rejects the owner's own request: nothing moves.
    rejected = await adjustments.reject_adjustment(
        pool, checker, own.id, note="No ticket", now=clock.now()
    )
    assert (rejected.status, rejected.decision_note, rejected.entry_id) == (
        "rejected",
        "No ticket",
        None,
    )
    assert (await balances(pool, card))["available"] == 2_100
    assert [r["action"] for r in await audit_rows(pool, own.id)] == [
        "adjustment.requested",
        "adjustment.rejected",
    ]
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []


async def test_two_approvals_at_once_book_once(funded, make_admin, pool, clock):
    card, member = await funded(0)
    maker = await make_admin("owner")
    checkers = [await make_admin("finance") for _ in range(2)] + [await make_admin("owner")]
    made = await adjustments.request_adjustment(
        pool, maker, ask(member, "credit", 5_000), threshold_points=THRESHOLD, now=clock.now()
    )
    results = await asyncio.gather(
        *(
            adjustments.approve_adjustment(pool, checker, made.id, now=clock.now())
            for checker in checkers
            for _ in range(2)
        ),
        return_exceptions=True,
    )
    booked = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(booked) == 1
    assert all(isinstance(r, DomainError) and r.code == "adjustment_decided" for r in refused)
    assert (await balances(pool, card))["available"] == 5_000
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM journal_entries WHERE kind = 'adjustment' AND member_id = $1",
            member,
        )
        == 1
    )


async def test_a_small_adjustment_books_at_once_and_a_repeat_books_nothing(
    funded, make_admin, pool, clock
):
    card, member = await funded(300)
    maker = await make_admin("support")
    request = ask(member, "debit", THRESHOLD, "Duplicate earn at the till")
    made = await adjustments.request_adjustment(
        pool, maker, ask(member, "credit", 40), threshold_points=THRESHOLD, now=clock.now()
    )
    assert (made.status, made.needs_approval, made.decided_by) == ("booked", False, None)
    assert (await balances(pool, card))["available"] == 340
    # A debit at the threshold is booked at once too, from the oldest lots first.
    debit = await adjustments.request_adjustment(
        pool,
        maker,
        AdjustmentRequest(member, "debit", 320, request.reason, request.idempotency_key),
        threshold_points=THRESHOLD,
        now=clock.now(),
    )
    assert (debit.status, debit.points) == ("booked", -320)
    assert debit.entry_id is not None
    assert await entry_postings(pool, debit.entry_id) == {
        "member_available": -320,
        "programme_adjustments": 320,
    }
    traced = await pool.fetch(
        "SELECT l.price_micros, x.points FROM lot_expiries x JOIN lots l ON l.id = x.lot_id"
        " WHERE x.entry_id = $1 ORDER BY l.expires_at",
        debit.entry_id,
    )
    assert [(r["price_micros"], r["points"]) for r in traced] == [(10_000, 300), (0, 20)]
    assert (await balances(pool, card))["available"] == 20
    # The same form sent again (a double click): the first answer, nothing booked.
    repeat = await adjustments.request_adjustment(
        pool,
        maker,
        AdjustmentRequest(member, "debit", 320, request.reason, request.idempotency_key),
        threshold_points=THRESHOLD,
        now=clock.now(),
    )
    assert (repeat.id, repeat.replayed) == (debit.id, True)
    assert (await balances(pool, card))["available"] == 20
    # Two at once with one key: still one.
    key = AdjustmentRequest(member, "credit", 10, "Birthday", "double-click-key")
    twice = await asyncio.gather(
        *(
            adjustments.request_adjustment(
                pool, maker, key, threshold_points=THRESHOLD, now=clock.now()
            )
            for _ in range(3)
        )
    )
    assert len({t.id for t in twice}) == 1
    assert (await balances(pool, card))["available"] == 30
    # The same key for something else is a conflict.
    with pytest.raises(DomainError) as conflict:
        await adjustments.request_adjustment(
            pool,
            maker,
            AdjustmentRequest(member, "credit", 11, "Birthday", "double-click-key"),
            threshold_points=THRESHOLD,
            now=clock.now(),
        )
    assert conflict.value.code == "idempotency_conflict"
    trail = await audit_rows(pool, made.id)
    assert [r["action"] for r in trail] == ["adjustment.requested", "adjustment.booked"]
    assert trail[1]["before"]["available_points"] == 300
    assert trail[1]["after"]["available_points"] == 340
    # The member is told, once per booked entry, in words: the three booked ones.
    told = await inbox.list_messages(pool, member, before_id=None, limit=10)
    assert sorted(m.subject for m in told) == [
        "We added 10 points to your balance",
        "We added 40 points to your balance",
        "We took 320 points from your balance",
    ]
    debit_message = next(m for m in told if m.subject.startswith("We took"))
    assert debit_message.body.endswith(
        "corrected your available balance by 320 points. The reason: Duplicate earn at the till."
    )


async def test_a_debit_beyond_the_balance_is_refused_and_writes_nothing(
    funded, make_admin, pool, clock
):
    card, member = await funded(200)
    maker = await make_admin("support")
    checker = await make_admin("finance")
    before = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM journal_entries) AS entries,"
        " (SELECT count(*) FROM adjustments) AS adjustments,"
        " (SELECT count(*) FROM admin_audit_log) AS audits"
    )
    with pytest.raises(DomainError) as refused:
        await adjustments.request_adjustment(
            pool, maker, ask(member, "debit", 201), threshold_points=THRESHOLD, now=clock.now()
        )
    assert (refused.value.code, refused.value.status) == ("insufficient_points", 422)
    after = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM journal_entries) AS entries,"
        " (SELECT count(*) FROM adjustments) AS adjustments,"
        " (SELECT count(*) FROM admin_audit_log) AS audits"
    )
    assert dict(after) == dict(before)
    # A large debit beyond the balance is refused when requested, too.
    with pytest.raises(DomainError) as refused:
        await adjustments.request_adjustment(
            pool, maker, ask(member, "debit", 600), threshold_points=THRESHOLD, now=clock.now()
        )
    assert refused.value.code == "insufficient_points"
    # If the points are gone by approval, the approval is refused and the
    # adjustment stays pending.
    await adjustments.request_adjustment(
        pool, maker, ask(member, "credit", 500), threshold_points=THRESHOLD, now=clock.now()
    )
    large = await adjustments.request_adjustment(
        pool, maker, ask(member, "debit", 600), threshold_points=THRESHOLD, now=clock.now()
    )
    await adjustments.request_adjustment(
        pool, maker, ask(member, "debit", 300), threshold_points=THRESHOLD, now=clock.now()
    )
    with pytest.raises(DomainError) as short:
        await adjustments.approve_adjustment(pool, checker, large.id, now=clock.now())
    assert short.value.code == "insufficient_points"
    assert (await adjustments.get_adjustment(pool, large.id)).status == "pending"
    assert (await balances(pool, card))["available"] == 400
    assert [r["action"] for r in await audit_rows(pool, large.id)] == ["adjustment.requested"]


@pytest.mark.parametrize(
    ("direction", "points", "reason", "field"),
    [
        ("credit", 10, "   ", "reason"),
        ("credit", 10, "", "reason"),
        ("credit", 0, "why", "points"),
        ("credit", 10_000_001, "why", "points"),
        ("sideways", 10, "why", "direction"),
        ("credit", 10, "x" * 501, "reason"),
    ],
)
async def test_bad_requests_name_the_field(
    funded, make_admin, pool, clock, direction, points, reason, field
):
    _card, member = await funded(0)
    maker = await make_admin("owner")
    with pytest.raises(adjustments.InvalidAdjustment) as bad:
        await adjustments.request_adjustment(
            pool,
            maker,
            AdjustmentRequest(member, direction, points, reason, "k"),
            threshold_points=THRESHOLD,
            now=clock.now(),
        )
    assert (bad.value.field, bad.value.status) == (field, 422)
    with pytest.raises(DomainError) as role:
        await adjustments.request_adjustment(
            pool,
            await make_admin("finance"),
            ask(member, "credit", 1),
            threshold_points=THRESHOLD,
            now=clock.now(),
        )
    assert role.value.code == "role_not_allowed"


async def test_listing_filters_and_pages(funded, make_admin, pool, clock):
    _card, member = await funded(0)
    maker = await make_admin("owner")
    made = [
        await adjustments.request_adjustment(
            pool, maker, ask(member, "credit", p), threshold_points=THRESHOLD, now=clock.now()
        )
        for p in (1_000, 10, 2_000)
    ]
    pending = await adjustments.list_adjustments(
        pool, AdjustmentFilter(status="pending", member_id=member), limit=10
    )
    assert [a.id for a in pending] == [made[2].id, made[0].id]
    first = await adjustments.list_adjustments(pool, AdjustmentFilter(member_id=member), limit=2)
    rest = await adjustments.list_adjustments(
        pool,
        AdjustmentFilter(member_id=member),
        limit=2,
        cursor=adjustments.adjustment_cursor(first[-1]),
    )
    assert [a.id for a in first + rest] == [m.id for m in reversed(made)]
    with pytest.raises(DomainError):
        AdjustmentFilter(status="nonsense")


async def test_settlement_values_adjusted_points_exactly(funded, make_admin, pool, clock):
    _card, member = await funded(400)
    maker = await make_admin("support")
    now = clock.now()
    for request in (ask(member, "debit", 150), ask(member, "credit", 60)):
        await adjustments.request_adjustment(
            pool, maker, request, threshold_points=THRESHOLD, now=now
        )
    day = business_date(now)
    clock.set(day_end(day) + timedelta(hours=1))
    start = business_date(await pool.fetchval("SELECT min(booked_at) FROM journal_entries"))
    d = start
    while d <= day:
        await settle_day(pool, d, clock.now())
        d += timedelta(days=1)
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []
    assert (await programme_position(pool)).liability == await liability_now(pool)
