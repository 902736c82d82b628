"""HTTP handlers of /partner/v1: parse, call one service function, answer."""

from __future__ import annotations

import random
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Stream

from api.coalition.card_tokens import card_number_from, token_key
from api.coalition.partners import verify_credentials
from api.errors import DomainError, Unauthorized
from api.member_auth import rate_limits
from api.partner_api import auth, schemas, services
from api.partner_api.auth import PartnerPrincipal, bearer_token, issue_token, verify_token
from api.partner_api.idempotency import HEADER, REPLAY_HEADER, Answer, require_key
from api.settlement.reconciliation import (
    RECONCILIATION_KRING_ROWS_MAX,
    RECONCILIATION_PERIOD_MAX,
    RECONCILIATION_ROWS_MAX,
)
from api.web.bodies import strict_body
from api.web.client_ip import client_ip
from api.web.problems import PROBLEM_MEDIA_TYPE, Problem
from api.web.state import runtime

KeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name=HEADER,
        required=False,
        description="Required on every POST: 1-255 printable ASCII characters. A repeat with "
        "the same body returns the first answer with `Idempotent-Replayed: true`.",
    ),
]


async def current_partner(request: Request[Any, Any, Any]) -> PartnerPrincipal:
    rt = runtime(request.app.state)
    token = bearer_token(request.headers.get("authorization"))
    return verify_token(token, secret=rt.settings.jwt_secret or "", now=rt.clock.now())


Partner = NamedDependency[PartnerPrincipal]


def _respond(answer: Answer) -> Response[Any]:
    headers = {REPLAY_HEADER: "true"} if answer.replayed else {}
    return Response(
        content=answer.body,  # pre-encoded JSON, stored with its key
        status_code=answer.status,
        media_type="application/json",
        headers=headers,
    )


B = TypeVar("B", bound=msgspec.Struct)


async def _request(
    partner: PartnerPrincipal, key: str | None, request: Request[Any, Any, Any], body_type: type[B]
) -> tuple[services.Request, B]:
    body = await strict_body(request, body_type)
    return services.Request.of(partner, require_key(key), request.url.path, body), body


class TokenController(Controller):
    path = "/partner/v1"
    tags = ["Partner API: authentication"]

    @post(
        "/token",
        summary="Exchange client credentials for an access token",
        description="OAuth 2.0 client credentials grant. Send `grant_type=client_credentials`, "
        "`client_id` and `client_secret` as a form or as JSON. The token is a JWT valid for "
        "`expires_in` seconds; send it as `Authorization: Bearer <token>`.\n\n"
        f"Rate limited, for every API process together: {auth.TOKEN_REQUESTS_PER_CLIENT_MAX}"
        f" requests per `client_id` and {auth.TOKEN_REQUESTS_PER_IP_MAX} per IP address a"
        " minute, counted whether they succeed or not; past that, 429 `rate_limited`"
        " (problem+json) with `Retry-After` in seconds. Errors: `invalid_client` (401),"
        " `invalid_request` and `malformed_json` (400).",
        status_code=200,
        responses={
            429: ResponseSpec(
                data_container=Problem,
                media_type=PROBLEM_MEDIA_TYPE,
                description="Too many token requests: `rate_limited`, with Retry-After",
            )
        },
    )
    async def token(self, request: Request[Any, Any, Any]) -> schemas.TokenResponse:
        rt = runtime(request.app.state)
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        try:
            if content_type.startswith("application/x-www-form-urlencoded"):
                data = msgspec.convert(dict(parse_qsl(raw.decode())), schemas.TokenRequest)
            else:
                data = msgspec.json.decode(raw, type=schemas.TokenRequest)
        except msgspec.ValidationError as exc:
            raise DomainError(f"token request: {exc}", code="invalid_request", status=400) from None
        except msgspec.DecodeError:
            raise DomainError(
                "the token request is not valid JSON", code="malformed_json", status=400
            ) from None
        except UnicodeDecodeError:
            raise DomainError(
                "token request is not UTF-8", code="invalid_request", status=400
            ) from None
        now = rt.clock.now()
        if random.randrange(rate_limits.PRUNE_ONE_IN) == 0:
            await rate_limits.prune(rt.db, now=now)
        # The address first: spraying client ids from one place stops there.
        await rate_limits.require(
            rt.db, auth.TOKEN_REQUESTS_PER_IP, client_ip(request), now=now, what="token requests"
        )
        await rate_limits.require(
            rt.db, auth.TOKEN_REQUESTS_PER_CLIENT, data.client_id, now=now, what="token requests"
        )
        async with rt.db.acquire() as conn:
            found = await verify_credentials(conn, data.client_id, data.client_secret)
        if found is None:
            raise Unauthorized("unknown client or wrong secret", code="invalid_client")
        ttl = rt.settings.partner_token_ttl_seconds
        token = issue_token(
            PartnerPrincipal(*found),
            secret=rt.settings.jwt_secret or "",
            now=now,
            ttl_seconds=ttl,
        )
        return schemas.TokenResponse(access_token=token, token_type="Bearer", expires_in=ttl)


class PartnerController(Controller):
    """Handlers declare `data` so that Litestar documents each body in the
    OpenAPI schema; they act on `strict_body`, which refuses what the lenient
    first pass lets through."""

    path = "/partner/v1"
    tags = ["Partner API"]
    dependencies = {"partner": Provide(current_partner)}
    security = [{"bearer": []}]

    @get(
        "/members/{card_number:str}",
        summary="Identify a member by card number or card token",
        description="The path takes the 16-digit card number, or the short-lived token that "
        "the member's wallet shows as a QR code while online (`K1.` and 40 characters, valid "
        "for two minutes): `card_token_expired` once it has run out, `card_token_invalid` "
        "if it was altered or is not ours.",
    )
    async def identify(
        self, request: Request[Any, Any, Any], partner: Partner, card_number: FromPath[str]
    ) -> schemas.MemberOut:
        rt = runtime(request.app.state)
        card = card_number_from(
            card_number, key=token_key(rt.settings.jwt_secret or ""), now=rt.clock.now()
        )
        return await services.identify(rt.db, partner.partner_id, card)

    @post("/earn", summary="Earn points for a purchase", status_code=201)
    async def earn(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        data: JSONBody[schemas.EarnRequest],
        idempotency_key: KeyHeader = None,
    ) -> Response[schemas.TransactionOut]:
        rt = runtime(request.app.state)
        call, body = await _request(partner, idempotency_key, request, schemas.EarnRequest)
        return _respond(await services.earn_points(rt.db, rt.clock, call, body))

    @post(
        "/burns/authorize",
        summary="Hold points for a burn until captured or voided",
        status_code=201,
    )
    async def authorize(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        data: JSONBody[schemas.AuthorizeRequest],
        idempotency_key: KeyHeader = None,
    ) -> Response[schemas.TransactionOut]:
        return await self._burn(
            request, partner, schemas.AuthorizeRequest, idempotency_key, capture=False
        )

    @post("/burns", summary="Burn points in one step (authorize and capture)", status_code=201)
    async def burn(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        data: JSONBody[schemas.BurnRequest],
        idempotency_key: KeyHeader = None,
    ) -> Response[schemas.TransactionOut]:
        return await self._burn(
            request, partner, schemas.BurnRequest, idempotency_key, capture=True
        )

    async def _burn(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        body_type: type[schemas.AuthorizeRequest] | type[schemas.BurnRequest],
        key: str | None,
        *,
        capture: bool,
    ) -> Response[schemas.TransactionOut]:
        rt = runtime(request.app.state)
        call, body = await _request(partner, key, request, body_type)
        answer = await services.authorize_burn(
            rt.db,
            rt.clock,
            call,
            body,
            hold_minutes_default=rt.settings.hold_minutes_default,
            capture=capture,
        )
        return _respond(answer)

    @post(
        "/burns/{transaction_id:uuid}/capture",
        summary="Capture all or part of a hold",
        status_code=200,
    )
    async def capture(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        transaction_id: FromPath[UUID],
        data: JSONBody[schemas.CaptureRequest | None] = None,
        idempotency_key: KeyHeader = None,
    ) -> Response[schemas.TransactionOut]:
        return await self._finish(request, partner, transaction_id, idempotency_key, "captured")

    @post(
        "/burns/{transaction_id:uuid}/void",
        summary="Void a hold: the points go back",
        status_code=200,
    )
    async def void(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        transaction_id: FromPath[UUID],
        idempotency_key: KeyHeader = None,
    ) -> Response[schemas.TransactionOut]:
        return await self._finish(request, partner, transaction_id, idempotency_key, "voided")

    async def _finish(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        transaction_id: UUID,
        key: str | None,
        status: Literal["captured", "voided"],
    ) -> Response[schemas.TransactionOut]:
        rt = runtime(request.app.state)
        # A capture or void may come without a body; `{}` and no body mean "all".
        if not await request.body():
            body = schemas.CaptureRequest()
            call = services.Request.of(partner, require_key(key), request.url.path, body)
        else:
            call, body = await _request(partner, key, request, schemas.CaptureRequest)
        if status == "voided" and body.points is not None:
            raise DomainError("a void takes no points", code="invalid_request")
        answer = await services.finish_burn(
            rt.db,
            rt.clock,
            call,
            transaction_id,
            status=status,
            points=body.points,
        )
        return _respond(answer)

    @post(
        "/transactions/{transaction_id:uuid}/refunds",
        summary="Refund all or part of a purchase: its points are reversed in proportion",
        status_code=201,
    )
    async def refund(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        transaction_id: FromPath[UUID],
        data: JSONBody[schemas.RefundRequest],
        idempotency_key: KeyHeader = None,
    ) -> Response[schemas.TransactionOut]:
        rt = runtime(request.app.state)
        call, body = await _request(partner, idempotency_key, request, schemas.RefundRequest)
        return _respond(await services.refund_earn(rt.db, rt.clock, call, transaction_id, body))

    @get("/transactions/{transaction_id:uuid}", summary="Get one of your transactions")
    async def get_transaction(
        self, request: Request[Any, Any, Any], partner: Partner, transaction_id: FromPath[UUID]
    ) -> schemas.TransactionOut:
        return await services.get_transaction(
            runtime(request.app.state).db, partner.partner_id, transaction_id
        )

    @get("/transactions", summary="List your transactions, newest first")
    async def list_transactions(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        limit: Annotated[int, QueryParameter(ge=1, le=schemas.PAGE_SIZE_MAX)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        kind: Annotated[Literal["earn", "burn", "refund"] | None, QueryParameter()] = None,
    ) -> schemas.TransactionPage:
        return await services.list_transactions(
            runtime(request.app.state).db, partner.partner_id, limit=limit, cursor=cursor, kind=kind
        )


class WebhookController(Controller):
    """Webhook endpoints and their delivery log. Deliveries are signed with
    `Kring-Signature` (see `partners.webhooks.verify_signature`)."""

    path = "/partner/v1/webhooks"
    tags = ["Partner API: webhooks"]
    dependencies = {"partner": Provide(current_partner)}
    security = [{"bearer": []}]

    @post(
        "/endpoints",
        summary="Register a webhook endpoint; the answer shows its secret once",
        status_code=201,
    )
    async def create_endpoint(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        data: JSONBody[schemas.WebhookEndpointCreate],
        idempotency_key: KeyHeader = None,
    ) -> Response[schemas.WebhookEndpointCreated]:
        rt = runtime(request.app.state)
        call, body = await _request(
            partner, idempotency_key, request, schemas.WebhookEndpointCreate
        )
        answer = await services.create_webhook_endpoint(
            rt.db, rt.clock, rt.settings.mode, call, body
        )
        return _respond(answer)

    @get("/endpoints", summary="List your webhook endpoints, newest first")
    async def list_endpoints(
        self, request: Request[Any, Any, Any], partner: Partner
    ) -> schemas.WebhookEndpointList:
        return await services.list_webhook_endpoints(
            runtime(request.app.state).db, partner.partner_id
        )

    @post(
        "/endpoints/{endpoint_id:uuid}/rotate-secret",
        summary="New signing secret; the old one also signs for 24 hours",
        status_code=200,
    )
    async def rotate_secret(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        endpoint_id: FromPath[UUID],
        idempotency_key: KeyHeader = None,
    ) -> Response[schemas.WebhookSecretOut]:
        rt = runtime(request.app.state)
        call = await _no_body_request(partner, idempotency_key, request)
        return _respond(await services.rotate_webhook_secret(rt.db, rt.clock, call, endpoint_id))

    @post(
        "/endpoints/{endpoint_id:uuid}/disable",
        summary="Stop deliveries to an endpoint; pending ones are abandoned",
        status_code=200,
    )
    async def disable_endpoint(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        endpoint_id: FromPath[UUID],
        idempotency_key: KeyHeader = None,
    ) -> Response[schemas.WebhookEndpointOut]:
        rt = runtime(request.app.state)
        call = await _no_body_request(partner, idempotency_key, request)
        return _respond(await services.disable_webhook_endpoint(rt.db, rt.clock, call, endpoint_id))

    @get(
        "/endpoints/{endpoint_id:uuid}/deliveries",
        summary="The delivery log of an endpoint: deliveries with their attempts, newest first",
    )
    async def list_deliveries(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        endpoint_id: FromPath[UUID],
        limit: Annotated[int, QueryParameter(ge=1, le=schemas.PAGE_SIZE_MAX)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> schemas.WebhookDeliveryPage:
        return await services.list_webhook_deliveries(
            runtime(request.app.state).db,
            partner.partner_id,
            endpoint_id,
            limit=limit,
            cursor=cursor,
        )


async def _no_body_request(
    partner: PartnerPrincipal, key: str | None, request: Request[Any, Any, Any]
) -> services.Request:
    # No body and `{}` are the same request (the same fingerprint).
    if not await request.body():
        body = schemas.NoBody()
        return services.Request.of(partner, require_key(key), request.url.path, body)
    call, _ = await _request(partner, key, request, schemas.NoBody)
    return call


class ReconciliationController(Controller):
    """Compare your own list of transactions for a period with Kring's. Read only."""

    path = "/partner/v1"
    tags = ["Partner API: reconciliation"]
    dependencies = {"partner": Provide(current_partner)}
    security = [{"bearer": []}]

    @post(
        "/reconciliations",
        summary="Reconcile your transactions for a period with Kring's "
        "(read-only: no Idempotency-Key needed)",
        description="Send your transactions for `[period_start, period_end)` (at most "
        f"{RECONCILIATION_PERIOD_MAX.days} days, at most {RECONCILIATION_ROWS_MAX:,} rows). Kring's side is your earns, refunds and captured burns created "
        "in the period; burns still authorized, voided or expired moved no points and are "
        "listed apart as `uncaptured_burns`. Rows with `transaction_id` are matched by it, "
        "others by kind and `receipt_ref` when that is unique on both sides. The answer lists "
        "matched rows, mismatched pairs (which fields differ), rows missing in Kring, Kring "
        "transactions missing in your list, duplicate and ambiguous rows, and totals per "
        "side. Nothing is written: repeat it as often as you like. Problems: "
        "`invalid_period`, `period_too_long`, `too_many_rows`, `missing_reference`, "
        "`invalid_row`, `period_too_busy` (more than "
        f"{RECONCILIATION_KRING_ROWS_MAX:,} Kring transactions: use a shorter period), "
        "`invalid_request`, `malformed_json`, `request_too_large` (over "
        f"{schemas.RECONCILIATION_BODY_BYTES_MAX // (1024 * 1024)} MiB).",
        status_code=200,
        request_max_body_size=schemas.RECONCILIATION_BODY_BYTES_MAX,
    )
    async def reconcile(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        data: JSONBody[schemas.ReconciliationRequest],
    ) -> schemas.ReconciliationOut:
        body = await strict_body(request, schemas.ReconciliationRequest)
        return await services.reconcile(runtime(request.app.state).db, partner.partner_id, body)


class StatementController(Controller):
    """Your settlement statements: one per settlement period (daily unless agreed
    otherwise), closed after the period's last business day in Europe/Amsterdam.
    Read only."""

    path = "/partner/v1/statements"
    tags = ["Partner API: statements"]
    dependencies = {"partner": Provide(current_partner)}
    security = [{"bearer": []}]

    @get(
        "/",
        summary="List your statements, newest period first",
        description="Cursor-paginated: pass `next_cursor` back as `cursor`. Problems: "
        "`invalid_cursor` (400), `invalid_request` (a `limit` outside 1 to "
        f"{services.STATEMENTS_LIMIT_MAX}).",
    )
    async def list_statements(
        self,
        request: Request[Any, Any, Any],
        partner: Partner,
        limit: Annotated[
            int, QueryParameter(ge=1, le=services.STATEMENTS_LIMIT_MAX)
        ] = schemas.STATEMENTS_PAGE_SIZE_DEFAULT,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> schemas.StatementPage:
        return await services.list_statements(
            runtime(request.app.state).db, partner.partner_id, limit=limit, cursor=cursor
        )

    @get(
        "/{statement_id:str}",
        summary="Get one of your statements with its lines",
        description="Problems: `invalid_statement_id` (400: not a UUID), "
        "`statement_not_found` (404: no statement of yours has this id).",
    )
    async def get_statement(
        self, request: Request[Any, Any, Any], partner: Partner, statement_id: FromPath[str]
    ) -> schemas.StatementOut:
        return await services.get_statement(
            runtime(request.app.state).db, partner.partner_id, statement_id
        )

    @get(
        "/{statement_id:str}/csv",
        summary="Download one of your statements as CSV (streamed)",
        description="`text/csv; charset=utf-8`, sent as an attachment. First a header row, "
        "then one `line` row per category (points, exact `amount_micros`, and `amount_eur` "
        "rounded half-even once per line), a `net` row, then one `entry` row per ledger "
        "entry behind the lines (transaction id, entry id, booking time, points, the price "
        "stored on the entry and its exact `amount_micros`). Problems: `invalid_statement_id`, "
        "`statement_not_found`.",
        media_type="text/csv",
        response_description="The statement as CSV",
    )
    async def statement_csv(
        self, request: Request[Any, Any, Any], partner: Partner, statement_id: FromPath[str]
    ) -> Stream:
        download = await services.statement_download(
            runtime(request.app.state).db, partner.partner_id, statement_id
        )
        return Stream(
            download.chunks,
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="{download.filename}"',
                "Cache-Control": "no-store",
            },
        )
