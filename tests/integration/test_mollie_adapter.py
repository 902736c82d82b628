"""The Mollie adapter (mollie-api-python) against a stub of Mollie's
documented payments API on loopback: create a payment, then Mollie's webhook
(`id=tr_…` only) for paid, failed and expired; a duplicated webhook changes
nothing; an unknown id is refused; the API key goes as a Bearer header."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from api.errors import DomainError, NotFound
from api.payments.mollie import MollieProvider, amount_value
from api.payments.payments import PaymentRow, get_payment, register_purpose, start_payment
from api.payments.providers import NewProviderPayment, configure_payments
from api.settings import load_settings

API_KEY = "test_dHar4XY7LxsDOtmnkVtjNVWXLSlXsM"
PURPOSE = "test_mollie"
CHECKOUT = "https://www.mollie.com/checkout/select-method/"
calls: list[tuple[str, int]] = []


async def _on_paid(conn: Any, payment: PaymentRow, now: Any) -> None:
    calls.append(("paid", payment.id))


async def _on_failed(conn: Any, payment: PaymentRow, now: Any) -> None:
    calls.append((payment.status, payment.id))


register_purpose(
    PURPOSE, revenue_kind="programme_revenue_vip", on_paid=_on_paid, on_failed=_on_failed
)


class MollieStub:
    """Answers POST /v2/payments and GET /v2/payments/{id} as Mollie documents
    them (https://docs.mollie.com/reference/create-payment, get-payment)."""

    def __init__(self) -> None:
        self.payments: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/hal+json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _record(self, body: Any = None) -> None:
                stub.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "idempotency_key": self.headers.get("Idempotency-Key"),
                        "body": body,
                    }
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                self._record(body)
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._answer(401, _error(401, "Unauthorized Request", "Missing API key"))
                    return
                if self.path == "/v2/customers":
                    customer_id = "cst_" + secrets.token_hex(5)
                    stub.customers[customer_id] = {
                        "resource": "customer",
                        "id": customer_id,
                        "mode": "test",
                        "name": None,
                        "email": None,
                        "metadata": body.get("metadata"),
                        "createdAt": "2026-03-02T09:00:00+00:00",
                        "_links": {},
                        "mandates": [],
                    }
                    self._answer(201, stub.customers[customer_id])
                    return
                if self.path != "/v2/payments":
                    self._answer(404, _error(404, "Not Found", "No such endpoint"))
                    return
                sequence = body.get("sequenceType", "oneoff")
                customer = stub.customers.get(body.get("customerId", ""))
                if sequence != "oneoff" and customer is None:
                    self._answer(422, _error(422, "Unprocessable Entity", "No customer"))
                    return
                if sequence == "recurring" and not customer["mandates"]:
                    self._answer(
                        422,
                        _error(
                            422,
                            "Unprocessable Entity",
                            "The customer does not have a suitable mandate",
                        ),
                    )
                    return
                payment_id = "tr_" + secrets.token_hex(5)
                stub.payments[payment_id] = {
                    "resource": "payment",
                    "id": payment_id,
                    "mode": "test",
                    "createdAt": "2026-03-02T09:00:00+00:00",
                    "amount": body["amount"],
                    "description": body["description"],
                    "method": None,
                    "metadata": body.get("metadata"),
                    "status": "pending" if sequence == "recurring" else "open",
                    "isCancelable": False,
                    "expiresAt": "2026-03-02T09:15:00+00:00",
                    "profileId": "pfl_QkEhN94Ba",
                    "sequenceType": sequence,
                    "customerId": body.get("customerId"),
                    "redirectUrl": body.get("redirectUrl"),
                    "webhookUrl": body.get("webhookUrl"),
                    "_links": {
                        "self": {
                            "href": f"https://api.mollie.com/v2/payments/{payment_id}",
                            "type": "application/hal+json",
                        },
                        **(
                            {}
                            if sequence == "recurring"
                            else {
                                "checkout": {"href": CHECKOUT + payment_id[3:], "type": "text/html"}
                            }
                        ),
                        "documentation": {
                            "href": "https://docs.mollie.com/reference/create-payment",
                            "type": "text/html",
                        },
                    },
                }
                self._answer(201, stub.payments[payment_id])

            def do_GET(self) -> None:
                self._record()
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._answer(401, _error(401, "Unauthorized Request", "Missing API key"))
                    return
                payment_id = self.path.removeprefix("/v2/payments/").split("?")[0]
                found = stub.payments.get(payment_id)
                if not self.path.startswith("/v2/payments/") or found is None:
                    self._answer(
                        404, _error(404, "Not Found", f"No payment exists with token {payment_id}.")
                    )
                    return
                self._answer(200, found)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def set_status(self, payment_id: str, status: str) -> None:
        self.payments[payment_id]["status"] = status
        if status == "paid":
            self.payments[payment_id]["paidAt"] = "2026-03-02T09:05:00+00:00"
            self.payments[payment_id]["method"] = "ideal"
            customer = self.customers.get(self.payments[payment_id].get("customerId") or "")
            if customer is not None and self.payments[payment_id]["sequenceType"] == "first":
                customer["mandates"].append("mdt_" + secrets.token_hex(5))


def _error(status: int, title: str, detail: str) -> dict[str, Any]:
    return {
        "status": status,
        "title": title,
        "detail": detail,
        "_links": {
            "documentation": {
                "href": "https://docs.mollie.com/overview/handling-errors",
                "type": "text/html",
            }
        },
    }


@pytest.fixture(scope="module")
def stub() -> Iterator[MollieStub]:
    server = MollieStub()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def settings(tmp_path_factory, stub):
    """This module's app pays through Mollie (the stub); the other modules'
    apps configure the sandbox again when they are created."""
    data = str(tmp_path_factory.mktemp("data"))
    base = {"KRING_DATA_DIR": data, "KRING_JWT_SECRET": "test-secret-" + "x" * 40}
    yield load_settings(
        {
            **base,
            "KRING_MOLLIE_API_KEY": API_KEY,
            "KRING_MOLLIE_API_URL": stub.url,
            "KRING_PUBLIC_URL": "https://kring.example",
        }
    )
    configure_payments(load_settings(base))


@pytest.fixture(scope="module")
def new_payment(app, make_member, pool, clock):
    references = iter(range(1, 1000))

    async def make(
        amount_cents: int = 995, sequence: str = "oneoff", member: int | None = None
    ) -> Any:
        if member is None:
            card = await make_member()
            member = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
        return await start_payment(
            pool,
            purpose=PURPOSE,
            reference=f"mollie-{next(references)}",
            member_id=member,
            amount_cents=amount_cents,
            description="Kring VIP monthly",
            redirect_url="https://kring.example/vip/return",
            now=clock.now(),
            sequence=sequence,
        )

    return make


async def _mollie_id(pool, payment_id: int) -> str:
    return str(
        await pool.fetchval("SELECT provider_payment_id FROM payments WHERE id = $1", payment_id)
    )


async def _clearing(pool) -> int:
    return int(
        await pool.fetchval("SELECT balance FROM accounts WHERE kind = 'programme_psp_clearing'")
    )


def test_amount_value():
    assert [amount_value(c) for c in (1, 10, 995, 100000, 12345)] == [
        "0.01",
        "0.10",
        "9.95",
        "1000.00",
        "123.45",
    ]


async def test_create_goes_to_mollie(new_payment, pool, stub):
    checkout = await new_payment(amount_cents=1250)
    assert checkout.status == "open"
    tr = await _mollie_id(pool, checkout.payment_id)
    assert tr.startswith("tr_")
    assert checkout.checkout_url == f"https://www.mollie.com/checkout/select-method/{tr[3:]}"
    created = [r for r in stub.requests if r["method"] == "POST"][-1]
    assert created["path"] == "/v2/payments"
    assert created["authorization"] == f"Bearer {API_KEY}"
    assert created["idempotency_key"] == f"kring-payment-{checkout.payment_id}"
    assert created["body"]["amount"] == {"currency": "EUR", "value": "12.50"}
    assert created["body"]["description"] == "Kring VIP monthly"
    assert created["body"]["redirectUrl"] == "https://kring.example/vip/return"
    assert created["body"]["webhookUrl"] == "https://kring.example/payments/webhooks/mollie"
    assert created["body"]["metadata"] == {"kring_payment_id": checkout.payment_id}
    payment = await get_payment(pool, checkout.payment_id)
    assert payment.provider == "mollie" and payment.status == "open"


async def test_webhook_paid_and_duplicated(new_payment, pool, stub, http):
    checkout = await new_payment(amount_cents=995)
    tr = await _mollie_id(pool, checkout.payment_id)
    before = await _clearing(pool)
    # A webhook before anything happened: the status is fetched, still open.
    response = await http.post("/payments/webhooks/mollie", data={"id": tr})
    assert response.status_code == 200
    assert (await get_payment(pool, checkout.payment_id)).status == "open"
    # Pending (the member is at the bank) is still open for us.
    stub.set_status(tr, "pending")
    assert (await http.post("/payments/webhooks/mollie", data={"id": tr})).status_code == 200
    assert (await get_payment(pool, checkout.payment_id)).status == "open"

    stub.set_status(tr, "paid")
    gets_before = sum(1 for r in stub.requests if r["method"] == "GET" and tr in r["path"])
    for _ in range(2):  # Mollie delivers the same webhook twice
        response = await http.post("/payments/webhooks/mollie", data={"id": tr})
        assert response.status_code == 200 and response.content == b""
    gets = [r for r in stub.requests if r["method"] == "GET" and tr in r["path"]]
    assert len(gets) == gets_before + 2  # the status is always fetched from Mollie
    assert all(r["authorization"] == f"Bearer {API_KEY}" for r in gets)
    payment = await get_payment(pool, checkout.payment_id)
    assert payment.status == "paid" and payment.entry_id is not None
    assert await _clearing(pool) - before == 995
    assert [c for c in calls if c[1] == checkout.payment_id] == [("paid", checkout.payment_id)]
    events = await pool.fetch(
        "SELECT from_status, to_status, source FROM payment_events WHERE payment_id = $1 ORDER BY id",
        checkout.payment_id,
    )
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        ("open", "open"),
        ("open", "open"),
        ("open", "paid"),
        ("paid", "paid"),
    ]
    assert {e["source"] for e in events} == {"webhook"}


@pytest.mark.parametrize("status", ["failed", "expired", "canceled"])
async def test_webhook_failed_expired_canceled(new_payment, pool, stub, http, status):
    checkout = await new_payment()
    tr = await _mollie_id(pool, checkout.payment_id)
    before = await _clearing(pool)
    stub.set_status(tr, status)
    for _ in range(2):
        assert (await http.post("/payments/webhooks/mollie", data={"id": tr})).status_code == 200
    payment = await get_payment(pool, checkout.payment_id)
    assert payment.status == status and payment.entry_id is None
    assert [c for c in calls if c[1] == checkout.payment_id] == [(status, checkout.payment_id)]
    # Mollie cannot turn a final payment into a paid one here.
    stub.set_status(tr, "paid")
    assert (await http.post("/payments/webhooks/mollie", data={"id": tr})).status_code == 200
    assert (await get_payment(pool, checkout.payment_id)).status == status
    assert await _clearing(pool) == before


async def test_webhook_body_is_never_trusted(new_payment, pool, stub, http):
    checkout = await new_payment()
    tr = await _mollie_id(pool, checkout.payment_id)
    # Extra fields claiming it was paid change nothing: Mollie says open.
    response = await http.post("/payments/webhooks/mollie", data={"id": tr, "status": "paid"})
    assert response.status_code == 200
    assert (await get_payment(pool, checkout.payment_id)).status == "open"


async def test_unknown_id_is_refused(pool, stub, http):
    for unknown in ("tr_unknown123", "sbx_whatever", "not-an-id"):
        response = await http.post("/payments/webhooks/mollie", data={"id": unknown})
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "payment_not_found"
    # The adapter maps Mollie's own 404 to payment_not_found too.
    stub.payments.pop("tr_gone", None)
    provider = MollieProvider(API_KEY, stub.url)
    with pytest.raises(NotFound) as refused:
        await provider.fetch("tr_gone")
    assert refused.value.code == "payment_not_found"
    missing = await http.post("/payments/webhooks/mollie", data={})
    assert missing.status_code == 422


async def test_mollie_refusals_are_provider_errors(stub):
    wrong_key = MollieProvider("test_wrongwrongwrongwrongwrongwrong", stub.url)
    with pytest.raises(DomainError) as refused:
        await wrong_key.create(
            NewProviderPayment(
                payment_id=1,
                member_id=1,
                amount_cents=100,
                description="x",
                redirect_url="https://kring.example/",
                webhook_url=None,
            )
        )
    assert refused.value.code == "provider_error" and refused.value.status == 502
    assert stub.requests[-1]["authorization"] == "Bearer test_wrongwrongwrongwrongwrongwrong"


async def test_recurring_through_a_customer_and_its_mandate(new_payment, pool, stub, http):
    before = await _clearing(pool)
    first = await new_payment(amount_cents=995, sequence="first")
    member = await pool.fetchval("SELECT member_id FROM payments WHERE id = $1", first.payment_id)
    customer = await pool.fetchval(
        "SELECT provider_customer_id FROM payment_customers WHERE member_id = $1", member
    )
    assert customer in stub.customers
    assert stub.customers[customer]["metadata"] == {"kring_member_id": member}
    created = [r for r in stub.requests if r["path"] == "/v2/payments"][-1]["body"]
    assert created["sequenceType"] == "first" and created["customerId"] == customer
    assert first.checkout_url is not None

    # A renewal before the first payment is paid: Mollie refuses, so it failed.
    early = await new_payment(sequence="recurring", member=member)
    assert early.status == "failed" and early.checkout_url is None
    assert [c for c in calls if c[1] == early.payment_id] == [("failed", early.payment_id)]
    # Asked again, the same renewal stays failed and nothing is sent again.
    sent = len(stub.requests)
    assert (
        await start_payment(
            pool,
            purpose=PURPOSE,
            reference=(
                await pool.fetchval(
                    "SELECT reference FROM payments WHERE id = $1", early.payment_id
                )
            ),
            member_id=member,
            amount_cents=995,
            description="Kring VIP monthly",
            redirect_url="https://kring.example/vip/return",
            now=(await get_payment(pool, early.payment_id)).created_at,
            sequence="recurring",
        )
    ) == early
    assert len(stub.requests) == sent

    tr_first = await _mollie_id(pool, first.payment_id)
    stub.set_status(tr_first, "paid")  # the mandate is made
    assert (await http.post("/payments/webhooks/mollie", data={"id": tr_first})).status_code == 200
    renewal = await new_payment(sequence="recurring", member=member)
    assert renewal.status == "open" and renewal.checkout_url is None
    created = [r for r in stub.requests if r["path"] == "/v2/payments"][-1]["body"]
    assert created["sequenceType"] == "recurring" and created["customerId"] == customer
    assert "redirectUrl" not in created
    # One customer per member.
    assert (
        len([c for c in stub.customers.values() if c["metadata"]["kring_member_id"] == member]) == 1
    )
    tr = await _mollie_id(pool, renewal.payment_id)
    stub.set_status(tr, "paid")
    assert (await http.post("/payments/webhooks/mollie", data={"id": tr})).status_code == 200
    assert (await get_payment(pool, renewal.payment_id)).status == "paid"
    assert await _clearing(pool) - before == 2 * 995
