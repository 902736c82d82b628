"""Payment routes: providers' webhooks and the sandbox's checkout page.

- `POST /payments/webhooks/mollie`: Mollie's webhook, form `id=tr_…`; the
  status is fetched from Mollie. 200 with an empty body once applied (a repeat
  changes nothing); 404 `payment_not_found` for an id that is not ours, or
  when no Mollie key is configured.
- `POST /payments/webhooks/sandbox`: the same for the sandbox, form `id=…` or
  JSON `{"id": "…"}`.
- `GET /sandbox/checkout/{id}`: the sandbox's checkout page (Pay, Fail,
  Cancel; "Pay, and make renewals fail" for a first payment of a recurring
  series); `POST` the same URL with `action` and the page's `form_token`.

The sandbox is development only: with `KRING_MODE=production` its routes
answer 404 and no payment is made with it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_303_SEE_OTHER

from api.errors import DomainError, NotFound
from api.money import format_cents
from api.payments import sandbox
from api.payments.mollie import MollieProvider
from api.payments.payments import handle_notification
from api.payments.providers import payment_not_found, sandbox_offered
from api.web.state import Runtime, runtime
from api.web.templates import Pages, html

_pages = Pages(filters={"cents": format_cents})


class _Notification(msgspec.Struct, forbid_unknown_fields=True):
    id: str


async def _notified_id(request: Request[Any, Any, Any]) -> str:
    """The payment id of a notification: form `id`, or JSON `{"id": …}`."""
    if request.headers.get("content-type", "").startswith("application/json"):
        raw = await request.body()
        try:
            return msgspec.json.decode(raw, type=_Notification, strict=True).id
        except msgspec.MsgspecError:
            raise DomainError("the notification is not valid", code="invalid_request") from None
    form = await request.form()
    value = form.get("id")
    if not isinstance(value, str) or not value:
        raise DomainError("the notification carries no payment id", code="invalid_request")
    return value


def _require_sandbox(rt: Runtime) -> None:
    if not sandbox_offered(rt.settings):
        raise NotFound("there is no sandbox here", code="not_found")


@post("/payments/webhooks/mollie", tags=["Payments"], summary="Mollie's payment webhook")
async def mollie_webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
    rt = runtime(request.app.state)
    payment_id = await _notified_id(request)
    key = rt.settings.mollie_api_key
    if key is None:
        raise payment_not_found()
    provider = MollieProvider.cached(key, rt.settings.mollie_api_url)
    await handle_notification(rt.db, "mollie", payment_id, rt.clock.now(), provider=provider)
    return Response(b"", status_code=200)


@post("/payments/webhooks/sandbox", include_in_schema=False)
async def sandbox_webhook(request: Request[Any, Any, Any]) -> Response[bytes]:
    rt = runtime(request.app.state)
    _require_sandbox(rt)
    payment_id = await _notified_id(request)
    await handle_notification(rt.db, sandbox.NAME, payment_id, rt.clock.now())
    return Response(b"", status_code=200)


@get("/sandbox/checkout/{provider_payment_id:str}", include_in_schema=False)
async def sandbox_checkout_page(
    request: Request[Any, Any, Any], provider_payment_id: FromPath[str]
) -> Response[str]:
    rt = runtime(request.app.state)
    _require_sandbox(rt)
    checkout = await sandbox.get_checkout(rt.db, provider_payment_id)
    return html(_pages.render("payments/sandbox_checkout.html", {"checkout": checkout}))


@post("/sandbox/checkout/{provider_payment_id:str}", include_in_schema=False)
async def sandbox_checkout_submit(
    request: Request[Any, Any, Any], provider_payment_id: FromPath[str]
) -> Response[str]:
    rt = runtime(request.app.state)
    _require_sandbox(rt)
    form = await request.form()
    action, token = form.get("action"), form.get("form_token")
    checkout = await sandbox.complete_checkout(
        rt.db,
        provider_payment_id,
        action if isinstance(action, str) else "",
        token if isinstance(token, str) else "",
        rt.clock.now(),
    )
    return Response(
        "",
        status_code=HTTP_303_SEE_OTHER,
        headers={"Location": checkout.redirect_url, "Cache-Control": "no-store"},
    )


PAYMENT_HANDLERS = [mollie_webhook, sandbox_webhook, sandbox_checkout_page, sandbox_checkout_submit]
