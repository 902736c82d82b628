"""Payments through the sandbox provider: starting one is idempotent, a paid
payment books its EUR entry and calls its purpose's handler exactly once, a
repeated notification changes nothing, a final status never flips, unknown
ids are refused, and the sandbox checkout page works over HTTP."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from api.errors import Conflict, DomainError, NotFound
from api.ledger.check import check_ledger
from api.payments import sandbox
from api.payments.payments import (
    PaymentRow,
    get_payment,
    handle_notification,
    register_purpose,
    start_payment,
)
from api.settings import load_settings
from api.settlement.periods import business_date
from api.settlement.position import programme_position
from api.settlement.run import settle_day

PURPOSE = "test_purchase"
_references = itertools.count(1)
calls: list[tuple[str, int, str]] = []


async def _on_paid(conn: Any, payment: PaymentRow, now: Any) -> None:
    # Inside the notification's transaction: the row is already paid and booked.
    assert payment.status == "paid" and payment.entry_id is not None
    assert await conn.fetchval("SELECT status FROM payments WHERE id = $1", payment.id) == "paid"
    calls.append(("paid", payment.id, payment.status))


async def _on_failed(conn: Any, payment: PaymentRow, now: Any) -> None:
    calls.append(("failed", payment.id, payment.status))


register_purpose(
    PURPOSE, revenue_kind="programme_revenue_vip", on_paid=_on_paid, on_failed=_on_failed
)


@pytest.fixture(scope="module")
def new_payment(make_member, pool, clock):
    async def make(amount_cents: int = 995, sequence: str = "oneoff") -> tuple[int, Any]:
        card = await make_member()
        member = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
        checkout = await start_payment(
            pool,
            purpose=PURPOSE,
            reference=f"ref-{next(_references)}",
            member_id=member,
            amount_cents=amount_cents,
            description="VIP monthly, March 2026",
            redirect_url="/vip/return",
            now=clock.now(),
            sequence=sequence,
        )
        return member, checkout

    return make


async def _provider_id(pool, payment_id: int) -> str:
    return str(
        await pool.fetchval("SELECT provider_payment_id FROM payments WHERE id = $1", payment_id)
    )


async def _set_sandbox(pool, provider_id: str, status: str) -> None:
    await pool.execute("UPDATE sandbox_payments SET status = $2 WHERE id = $1", provider_id, status)


async def _money(pool) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT kind, balance FROM accounts"
        " WHERE kind IN ('programme_psp_clearing', 'programme_revenue_vip')"
    )
    return {r["kind"]: r["balance"] for r in rows}


async def _events(pool, payment_id: int) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT from_status, to_status, source FROM payment_events WHERE payment_id = $1"
        " ORDER BY id",
        payment_id,
    )
    return [(r["from_status"], r["to_status"], r["source"]) for r in rows]


async def test_new_accounts_are_eur_programme_accounts(pool):
    rows = await pool.fetch(
        "SELECT kind, unit, member_id, partner_id FROM accounts"
        " WHERE kind IN ('programme_psp_clearing', 'programme_revenue_vip') ORDER BY kind"
    )
    assert [(r["kind"], r["unit"], r["member_id"], r["partner_id"]) for r in rows] == [
        ("programme_psp_clearing", "EUR", None, None),
        ("programme_revenue_vip", "EUR", None, None),
    ]
    # The unit CHECK knows them: neither can be opened in points.
    with pytest.raises(Exception, match="accounts_unit_of_kind"):
        await pool.execute(
            "INSERT INTO accounts (kind, unit) VALUES ('programme_revenue_vip', 'PTS')"
        )


async def test_start_payment_is_idempotent(new_payment, pool, clock):
    member, first = await new_payment()
    assert first.status == "open"
    assert first.checkout_url is not None and first.checkout_url.startswith(
        "/sandbox/checkout/sbx_"
    )
    reference = await pool.fetchval(
        "SELECT reference FROM payments WHERE id = $1", first.payment_id
    )
    again = await start_payment(
        pool,
        purpose=PURPOSE,
        reference=reference,
        member_id=member,
        amount_cents=995,
        description="VIP monthly, March 2026",
        redirect_url="/vip/return",
        now=clock.now(),
    )
    assert again == first
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE reference = $1", reference) == 1
    assert (
        await pool.fetchval("SELECT count(*) FROM sandbox_payments WHERE member_id = $1", member)
        == 1
    )
    # The same reference for something else is refused.
    with pytest.raises(Conflict) as refused:
        await start_payment(
            pool,
            purpose=PURPOSE,
            reference=reference,
            member_id=member,
            amount_cents=1995,
            description="VIP yearly",
            redirect_url="/vip/return",
            now=clock.now(),
        )
    assert refused.value.code == "payment_reference_reused"


@pytest.mark.parametrize(
    ("amount", "purpose", "sequence", "code"),
    [
        (0, PURPOSE, "oneoff", "invalid_amount"),
        (-5, PURPOSE, "oneoff", "invalid_amount"),
        (100, "no_such_purpose", "oneoff", "unknown_purpose"),
        (100, PURPOSE, "weekly", "invalid_sequence"),
    ],
)
async def test_start_payment_refuses_bad_input(pool, clock, amount, purpose, sequence, code):
    with pytest.raises(DomainError) as refused:
        await start_payment(
            pool,
            purpose=purpose,
            reference="bad",
            member_id=1,
            amount_cents=amount,
            description="x",
            redirect_url="/",
            now=clock.now(),
            sequence=sequence,
        )
    assert refused.value.code == code
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE reference = 'bad'") == 0


async def test_paid_books_the_entry_and_calls_the_handler_once(new_payment, pool, clock):
    before = await _money(pool)
    position_before = await programme_position(pool)
    _, checkout = await new_payment(amount_cents=1250)
    provider_id = await _provider_id(pool, checkout.payment_id)
    # The provider has not moved yet: a notification records itself and changes nothing.
    unchanged = await handle_notification(pool, "sandbox", provider_id, clock.now())
    assert unchanged.status == "open"
    await _set_sandbox(pool, provider_id, "paid")
    paid = await handle_notification(pool, "sandbox", provider_id, clock.now())
    assert paid.status == "paid" and paid.paid_at == clock.now() and paid.entry_id is not None
    after = await _money(pool)
    assert after["programme_psp_clearing"] - before["programme_psp_clearing"] == 1250
    assert after["programme_revenue_vip"] - before["programme_revenue_vip"] == -1250
    postings = await pool.fetch(
        "SELECT a.kind, p.amount, p.unit, e.kind AS entry_kind FROM postings p"
        " JOIN accounts a ON a.id = p.account_id JOIN journal_entries e ON e.id = p.entry_id"
        " WHERE p.entry_id = $1 ORDER BY a.kind",
        paid.entry_id,
    )
    assert [(r["kind"], r["amount"], r["unit"], r["entry_kind"]) for r in postings] == [
        ("programme_psp_clearing", 1250, "EUR", "payment"),
        ("programme_revenue_vip", -1250, "EUR", "payment"),
    ]
    assert calls.count(("paid", checkout.payment_id, "paid")) == 1
    # The programme's figures (`kring position`) show the revenue and the money held.
    position = await programme_position(pool)
    assert position.vip_revenue_cents - position_before.vip_revenue_cents == 1250
    assert position.psp_clearing_cents - position_before.psp_clearing_cents == 1250

    # The same notification again: nothing more but its event.
    clock.advance(timedelta(minutes=1))
    again = await handle_notification(pool, "sandbox", provider_id, clock.now())
    assert again == paid
    assert await _money(pool) == after
    assert [c for c in calls if c[1] == checkout.payment_id] == [
        ("paid", checkout.payment_id, "paid")
    ]
    assert await _events(pool, checkout.payment_id) == [
        ("open", "open", "webhook"),
        ("open", "paid", "webhook"),
        ("paid", "paid", "webhook"),
    ]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM journal_entries e JOIN postings p ON p.entry_id = e.id"
            " JOIN accounts a ON a.id = p.account_id"
            " WHERE e.kind = 'payment' AND a.kind = 'programme_psp_clearing' AND p.amount = 1250"
        )
        == 1
    )


@pytest.mark.parametrize("status", ["failed", "canceled", "expired"])
async def test_failed_canceled_expired_call_on_failed_once(new_payment, pool, clock, status):
    before = await _money(pool)
    _, checkout = await new_payment()
    provider_id = await _provider_id(pool, checkout.payment_id)
    await _set_sandbox(pool, provider_id, status)
    for _ in range(2):
        done = await handle_notification(pool, "sandbox", provider_id, clock.now())
        assert done.status == status and done.entry_id is None and done.paid_at is None
    assert [c for c in calls if c[1] == checkout.payment_id] == [
        ("failed", checkout.payment_id, status)
    ]
    assert await _money(pool) == before
    # A final status never changes again, whatever the provider says later.
    await _set_sandbox(pool, provider_id, "paid")
    still = await handle_notification(pool, "sandbox", provider_id, clock.now())
    assert still.status == status
    assert await _money(pool) == before
    assert len([c for c in calls if c[1] == checkout.payment_id]) == 1
    assert [e[1] for e in await _events(pool, checkout.payment_id)] == [status] * 3


async def test_paid_never_flips(new_payment, pool, clock):
    _, checkout = await new_payment()
    provider_id = await _provider_id(pool, checkout.payment_id)
    await _set_sandbox(pool, provider_id, "paid")
    await handle_notification(pool, "sandbox", provider_id, clock.now())
    await _set_sandbox(pool, provider_id, "failed")
    assert (await handle_notification(pool, "sandbox", provider_id, clock.now())).status == "paid"
    assert [c[0] for c in calls if c[1] == checkout.payment_id] == ["paid"]


async def test_unknown_payment_is_not_found(pool, clock, http):
    with pytest.raises(NotFound) as refused:
        await handle_notification(pool, "sandbox", "sbx_nope", clock.now())
    assert refused.value.code == "payment_not_found"
    for body in ({"data": {"id": "sbx_nope"}}, {"json": {"id": "sbx_nope"}}):
        response = await http.post("/payments/webhooks/sandbox", **body)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "payment_not_found"
    # Mollie is not configured in these tests: its webhook knows no payment.
    response = await http.post("/payments/webhooks/mollie", data={"id": "tr_nope"})
    assert response.status_code == 404 and response.json()["code"] == "payment_not_found"
    # A notification with no id, or a malformed one, is a 422 / 400 problem.
    assert (await http.post("/payments/webhooks/sandbox", data={})).status_code == 422
    bad = await http.post(
        "/payments/webhooks/sandbox", content=b"{", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"


async def test_sandbox_webhook_over_http(new_payment, pool, http):
    _, checkout = await new_payment(amount_cents=700)
    provider_id = await _provider_id(pool, checkout.payment_id)
    await _set_sandbox(pool, provider_id, "paid")
    for _ in range(2):
        response = await http.post("/payments/webhooks/sandbox", json={"id": provider_id})
        assert response.status_code == 200
    payment = await get_payment(pool, checkout.payment_id)
    assert payment.status == "paid"
    assert [c[0] for c in calls if c[1] == checkout.payment_id] == ["paid"]
    assert len(await _events(pool, checkout.payment_id)) == 2


async def _form_token(pool, provider_id: str) -> str:
    return str(
        await pool.fetchval("SELECT form_token FROM sandbox_payments WHERE id = $1", provider_id)
    )


async def test_checkout_page_renders_and_pays(new_payment, pool, http):
    _, checkout = await new_payment(amount_cents=1234567)
    assert checkout.checkout_url is not None
    page = await http.get(checkout.checkout_url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "12.345,67 €" in page.text
    assert "VIP monthly, March 2026" in page.text
    assert ">Pay</button>" in page.text and ">Fail</button>" in page.text
    assert ">Cancel</button>" in page.text
    provider_id = await _provider_id(pool, checkout.payment_id)
    token = await _form_token(pool, provider_id)
    assert f'value="{token}"' in page.text

    # Without the page's token, or with another's, nothing happens.
    forged = await http.post(checkout.checkout_url, data={"action": "pay", "form_token": "x"})
    assert forged.status_code == 403 and forged.json()["code"] == "invalid_form_token"
    bad_action = await http.post(
        checkout.checkout_url, data={"action": "steal", "form_token": token}
    )
    assert bad_action.status_code == 422
    assert (await get_payment(pool, checkout.payment_id)).status == "open"

    paid = await http.post(checkout.checkout_url, data={"action": "pay", "form_token": token})
    assert paid.status_code == 303 and paid.headers["location"] == "/vip/return"
    payment = await get_payment(pool, checkout.payment_id)
    assert payment.status == "paid" and payment.entry_id is not None
    assert await _events(pool, checkout.payment_id) == [("open", "paid", "checkout")]
    # Pressing again (back button) changes nothing; the page now says it is paid.
    again = await http.post(checkout.checkout_url, data={"action": "fail", "form_token": token})
    assert again.status_code == 303
    assert (await get_payment(pool, checkout.payment_id)).status == "paid"
    assert [c[0] for c in calls if c[1] == checkout.payment_id] == ["paid"]
    after = await http.get(checkout.checkout_url)
    assert "This payment is paid" in after.text and "<button" not in after.text


@pytest.mark.parametrize(("action", "status"), [("fail", "failed"), ("cancel", "canceled")])
async def test_checkout_fail_and_cancel(new_payment, pool, http, action, status):
    _, checkout = await new_payment()
    provider_id = await _provider_id(pool, checkout.payment_id)
    token = await _form_token(pool, provider_id)
    response = await http.post(checkout.checkout_url, data={"action": action, "form_token": token})
    assert response.status_code == 303
    assert (await get_payment(pool, checkout.payment_id)).status == status
    assert [c for c in calls if c[1] == checkout.payment_id] == [
        ("failed", checkout.payment_id, status)
    ]


async def test_unknown_checkout_page_is_404(http):
    response = await http.get("/sandbox/checkout/sbx_nope")
    assert response.status_code == 404 and response.json()["code"] == "payment_not_found"


async def test_recurring_payments_complete_at_once(new_payment, pool, clock, http):
    member, first = await new_payment(sequence="first")
    provider_id = await _provider_id(pool, first.payment_id)
    page = await http.get(first.checkout_url)
    assert "Pay, and make renewals fail" in page.text
    token = await _form_token(pool, provider_id)
    await http.post(first.checkout_url, data={"action": "pay_fail_renewals", "form_token": token})
    assert (await get_payment(pool, first.payment_id)).status == "paid"

    async def renew(reference: str) -> Any:
        return await start_payment(
            pool,
            purpose=PURPOSE,
            reference=reference,
            member_id=member,
            amount_cents=995,
            description="VIP renewal",
            redirect_url="/vip/return",
            now=clock.now(),
            sequence="recurring",
        )

    failed = await renew(f"renewal-{member}-1")
    assert failed.status == "failed" and failed.checkout_url is None
    paid = await renew(f"renewal-{member}-2")
    assert paid.status == "paid"
    await sandbox.fail_next_recurring(pool, member)
    assert (await renew(f"renewal-{member}-3")).status == "failed"
    assert (await renew(f"renewal-{member}-4")).status == "paid"
    assert [c[0] for c in calls if c[1] in (failed.payment_id, paid.payment_id)] == [
        "failed",
        "paid",
    ]
    assert (await renew(f"renewal-{member}-2")) == paid  # idempotent after completion too


async def test_production_has_no_sandbox(settings, database_url, clock, pool, tmp_path):
    import httpx

    from api.app import create_app

    production = load_settings(
        {
            "KRING_MODE": "production",
            "KRING_DATA_DIR": str(tmp_path),
            "KRING_JWT_SECRET": "p" * 40,
            "KRING_SMTP_URL": "smtp://127.0.0.1:25",
        }
    )
    app = create_app(production, database_url, clock=clock)
    app.state.runtime.pool = pool
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://kring.test"
        ) as client:
            assert (await client.get("/sandbox/checkout/sbx_x")).status_code == 404
            response = await client.post("/payments/webhooks/sandbox", data={"id": "sbx_x"})
            assert response.status_code == 404
        with pytest.raises(DomainError) as refused:
            await start_payment(
                pool,
                purpose=PURPOSE,
                reference="production",
                member_id=1,
                amount_cents=100,
                description="x",
                redirect_url="/",
                now=clock.now(),
            )
        assert refused.value.code == "payments_unavailable"
    finally:
        create_app(settings, database_url, clock=clock)  # back to this module's settings


def test_settings_check_the_mollie_key(tmp_path):
    from api.settings import SettingsError

    base = {"KRING_DATA_DIR": str(tmp_path), "KRING_JWT_SECRET": "s" * 40}
    ok = load_settings({**base, "KRING_MOLLIE_API_KEY": "test_abcdefghijklmnopqrstuvwxyz1234"})
    assert ok.mollie_api_key is not None and ok.mollie_api_url == "https://api.mollie.com/v2"
    with pytest.raises(SettingsError, match="KRING_MOLLIE_API_KEY"):
        load_settings({**base, "KRING_MOLLIE_API_KEY": "sk_live_123"})
    with pytest.raises(SettingsError, match="KRING_MOLLIE_API_URL"):
        load_settings({**base, "KRING_MOLLIE_API_URL": "ftp://mollie"})


async def test_payments_settle_and_the_ledger_is_sound(pool, clock):
    clock.advance(timedelta(days=1))
    day = business_date(clock.now() - timedelta(days=1))
    await settle_day(pool, day, clock.now())
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []
    unsettled = await pool.fetchval(
        "SELECT count(*) FROM journal_entries e WHERE e.kind = 'payment'"
        " AND NOT EXISTS (SELECT FROM settled_entries s WHERE s.entry_id = e.id)"
    )
    assert unsettled == 0


async def test_migration_0011_goes_down_and_up(pg_server):
    """0011 down restores the kind CHECKs as 0010 left them; up again works."""
    from alembic import command

    from api.db import migrate
    from api.db.embedded import ensure_database

    name = "kring_payments_migration"
    await ensure_database(pg_server.admin_url, name)
    url = pg_server.url_for(name)
    config = migrate.alembic_config(url)

    async def constraints() -> dict[str, str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT conname, pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname"
                " IN ('accounts_kind_check', 'accounts_unit_of_kind', 'journal_entries_kind_check')"
            )
            return {r["conname"]: r["d"] for r in rows}
        finally:
            await conn.close()

    await asyncio.to_thread(command.upgrade, config, "0010")
    before = await constraints()
    await asyncio.to_thread(command.upgrade, config, "0011")
    after = await constraints()
    for kind in ("programme_psp_clearing", "programme_revenue_vip"):
        assert kind in after["accounts_kind_check"] and kind in after["accounts_unit_of_kind"]
    assert "'payment'" in after["journal_entries_kind_check"]
    assert "'partner_money'" in after["accounts_unit_of_kind"]
    await asyncio.to_thread(command.downgrade, config, "0010")
    assert await constraints() == before
    await asyncio.to_thread(command.upgrade, config, "0011")
    assert await constraints() == after


async def test_concurrent_notifications_apply_once(new_payment, pool, clock):
    before = await _money(pool)
    _, checkout = await new_payment(amount_cents=300)
    provider_id = await _provider_id(pool, checkout.payment_id)
    await _set_sandbox(pool, provider_id, "paid")
    done = await asyncio.gather(
        *(handle_notification(pool, "sandbox", provider_id, clock.now()) for _ in range(12))
    )
    assert {d.status for d in done} == {"paid"} and len({d.entry_id for d in done}) == 1
    assert [c[0] for c in calls if c[1] == checkout.payment_id] == ["paid"]
    after = await _money(pool)
    assert after["programme_psp_clearing"] - before["programme_psp_clearing"] == 300
    events = await _events(pool, checkout.payment_id)
    assert len(events) == 12 and [e[1] for e in events].count("paid") == 12
    assert [e for e in events if e[0] == "open"] == [("open", "paid", "webhook")]
