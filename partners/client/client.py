"""An async client for the Kring partner API (/partner/v1).

    async with PartnerClient("https://kring.example", client_id, secret) as kring:
        member = await kring.identify("6280000000000018")
        earn = await kring.earn(member.card_number, 12_99, "EUR", receipt_ref="R-1")

The client gets an access token on first use and a new one shortly before it
expires, or once when the server answers 401. Every write carries an
`Idempotency-Key`; the client retries timeouts, dropped connections, 429 and
5xx answers with the *same* key (so a retry can never earn or burn twice), and
callers that retry on their own pass the key they used the first time.

The client does not second-guess the server: amounts, points and references
go out as given and a bad value comes back as a `PartnerApiError` with the
server's code. Nothing here imports the server package.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
import msgspec

from partners.client.errors import PartnerApiError
from partners.client.models import (
    PAGE_SIZE_MAX,
    STATEMENTS_PAGE_SIZE_MAX,
    AuthorizeRequest,
    BurnRequest,
    CaptureRequest,
    EarnRequest,
    Member,
    Reconciliation,
    ReconciliationRequest,
    ReconciliationRow,
    RefundRequest,
    Statement,
    StatementPage,
    Token,
    TokenRequest,
    Transaction,
    TransactionPage,
)

API_PREFIX: Final = "/partner/v1"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
REPLAY_HEADER: Final = "Idempotent-Replayed"
USER_AGENT: Final = "kring-partner-kit/0.1"

RETRIES_MAX_DEFAULT: Final = 2
RETRY_DELAY_BASE_S: Final = 0.2
RETRY_DELAY_MAX_S: Final = 5.0
# Get a new token this long before the old one expires, so a request signed
# just before expiry does not arrive just after it. Capped at a tenth of the
# token's life for servers that hand out very short tokens.
TOKEN_REFRESH_MARGIN_S: Final = 30.0
# A pager that keeps returning cursors is a server bug; stop rather than loop.
PAGES_MAX: Final = 100_000
PROBLEM_TEXT_MAX: Final = 2_000

RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})

S = TypeVar("S")

_encoder = msgspec.json.Encoder()
_token_decoder = msgspec.json.Decoder(Token)
_member_decoder = msgspec.json.Decoder(Member)
_transaction_decoder = msgspec.json.Decoder(Transaction)
_page_decoder = msgspec.json.Decoder(TransactionPage)
_statement_decoder = msgspec.json.Decoder(Statement)
_statement_page_decoder = msgspec.json.Decoder(StatementPage)
_reconciliation_decoder = msgspec.json.Decoder(Reconciliation)
CSV_MEDIA_TYPE: Final = "text/csv"
CSV_CHUNK_BYTES: Final = 64 * 1024

Id = UUID | str


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


class PartnerClient:
    """One partner's connection to Kring; safe to share between tasks."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | httpx.Timeout = 10.0,
        max_retries: int = RETRIES_MAX_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        limits: httpx.Limits | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        root = base_url.rstrip("/")
        if not root.endswith(API_PREFIX):
            root += API_PREFIX
        self._http = httpx.AsyncClient(
            base_url=root,
            transport=transport,
            timeout=timeout,
            limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=100),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        self._client_id = client_id
        self._client_secret = client_secret
        self._max_retries = max_retries
        self._clock = clock
        self._sleep = sleep
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- members -----------------------------------------------------------

    async def identify(self, card_number: str) -> Member:
        """The member behind a card, with balances; `member_not_found` if none."""
        response = await self._call("GET", f"/members/{_segment(card_number)}")
        return _decode(_member_decoder, response)

    # --- earning -----------------------------------------------------------

    async def earn(
        self,
        card_number: str,
        amount_cents: int,
        currency: str,
        *,
        receipt_ref: str | None = None,
        store_id: str | None = None,
        occurred_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """Points for a purchase; they stay pending for the partner's return window."""
        body = EarnRequest(
            card_number=card_number,
            amount_cents=amount_cents,
            currency=currency,
            receipt_ref=receipt_ref,
            store_id=store_id,
            occurred_at=occurred_at,
        )
        return await self._write("/earn", body, idempotency_key)

    async def refund(
        self,
        transaction_id: Id,
        amount_cents: int,
        currency: str,
        *,
        receipt_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """Give back part or all of an earn's purchase; its points are reversed in proportion."""
        body = RefundRequest(amount_cents=amount_cents, currency=currency, receipt_ref=receipt_ref)
        return await self._write(
            f"/transactions/{_segment(transaction_id)}/refunds", body, idempotency_key
        )

    # --- burning -----------------------------------------------------------

    async def authorize(
        self,
        card_number: str,
        points: int,
        *,
        receipt_ref: str | None = None,
        store_id: str | None = None,
        hold_minutes: int | None = None,
        occurred_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """Hold points for a burn; capture or void it before `hold_expires_at`."""
        body = AuthorizeRequest(
            card_number=card_number,
            points=points,
            receipt_ref=receipt_ref,
            store_id=store_id,
            hold_minutes=hold_minutes,
            occurred_at=occurred_at,
        )
        return await self._write("/burns/authorize", body, idempotency_key)

    async def capture(
        self,
        transaction_id: Id,
        points: int | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """Take held points (all of the hold when `points` is None); the rest go back."""
        body = CaptureRequest(points=points)
        return await self._write(
            f"/burns/{_segment(transaction_id)}/capture", body, idempotency_key
        )

    async def void(self, transaction_id: Id, *, idempotency_key: str | None = None) -> Transaction:
        """Release a hold: the points go back to the member's available balance."""
        return await self._write(f"/burns/{_segment(transaction_id)}/void", None, idempotency_key)

    async def burn(
        self,
        card_number: str,
        points: int,
        *,
        receipt_ref: str | None = None,
        store_id: str | None = None,
        occurred_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """Authorize and capture in one call."""
        body = BurnRequest(
            card_number=card_number,
            points=points,
            receipt_ref=receipt_ref,
            store_id=store_id,
            occurred_at=occurred_at,
        )
        return await self._write("/burns", body, idempotency_key)

    # --- reading -----------------------------------------------------------

    async def get_transaction(self, transaction_id: Id) -> Transaction:
        response = await self._call("GET", f"/transactions/{_segment(transaction_id)}")
        return _decode(_transaction_decoder, response)

    async def list_transactions(
        self,
        limit: int | None = None,
        cursor: str | None = None,
        kind: str | None = None,
    ) -> TransactionPage:
        """One page, newest first; pass `next_cursor` back for the next page."""
        params: dict[str, str | int] = {}
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        if kind is not None:
            params["kind"] = kind
        response = await self._call("GET", "/transactions", params=params)
        return _decode(_page_decoder, response)

    async def iter_transactions(
        self, kind: str | None = None, *, page_size: int = PAGE_SIZE_MAX
    ) -> AsyncIterator[Transaction]:
        """Every transaction, page by page, until the server has no next cursor."""
        cursor: str | None = None
        for _ in range(PAGES_MAX):
            page = await self.list_transactions(limit=page_size, cursor=cursor, kind=kind)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            if page.next_cursor == cursor:
                raise PartnerApiError(200, "invalid_response", "the server repeated a page cursor")
            cursor = page.next_cursor
        raise PartnerApiError(200, "invalid_response", f"more than {PAGES_MAX} pages")

    # --- statements and reconciliation ---------------------------------------

    async def statements(
        self, limit: int | None = None, cursor: str | None = None
    ) -> StatementPage:
        """One page of closed settlement statements, newest period first; pass
        `next_cursor` back for the next page."""
        params: dict[str, str | int] = {}
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._call("GET", "/statements", params=params)
        return _decode(_statement_page_decoder, response)

    async def iter_statements(
        self, *, page_size: int = STATEMENTS_PAGE_SIZE_MAX
    ) -> AsyncIterator[Statement]:
        """Every statement, newest first, page by page."""
        cursor: str | None = None
        for _ in range(PAGES_MAX):
            page = await self.statements(limit=page_size, cursor=cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            if page.next_cursor == cursor:
                raise PartnerApiError(200, "invalid_response", "the server repeated a page cursor")
            cursor = page.next_cursor
        raise PartnerApiError(200, "invalid_response", f"more than {PAGES_MAX} pages")

    async def statement(self, statement_id: Id) -> Statement:
        """One statement with its lines; `statement_not_found` if it is not yours."""
        response = await self._call("GET", f"/statements/{_segment(statement_id)}")
        return _decode(_statement_decoder, response)

    async def statement_csv(self, statement_id: Id) -> bytes:
        """The statement's CSV, whole (see `iter_statement_csv` for large ones)."""
        return b"".join([chunk async for chunk in self.iter_statement_csv(statement_id)])

    async def iter_statement_csv(
        self, statement_id: Id, *, chunk_bytes: int = CSV_CHUNK_BYTES
    ) -> AsyncIterator[bytes]:
        """The statement's CSV as the server streams it, in chunks.

        A refused token is renewed once before the first byte; a connection
        lost in the middle raises `PartnerApiError` (`transport_error`): the
        CSV never changes, so ask for it again from the start."""
        path = f"/statements/{_segment(statement_id)}/csv"
        refreshed = False
        while True:
            token = await self.access_token()
            headers = {"Authorization": f"Bearer {token}", "Accept": CSV_MEDIA_TYPE}
            try:
                async with self._http.stream("GET", path, headers=headers) as response:
                    if response.status_code == 401 and not refreshed:
                        refreshed = True
                        self._forget_token(token)
                        continue
                    if response.status_code >= 400:
                        await response.aread()
                        raise _error_from(response)
                    async for chunk in response.aiter_bytes(chunk_bytes):
                        yield chunk
                    return
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                code = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport_error"
                raise PartnerApiError(0, code, str(exc) or type(exc).__name__) from exc

    async def reconcile(
        self,
        period_start: datetime,
        period_end: datetime,
        transactions: Sequence[ReconciliationRow],
    ) -> Reconciliation:
        """Compare your own transactions for `[period_start, period_end)` with
        Kring's. Read only: no idempotency key, safe to repeat."""
        body = ReconciliationRequest(
            period_start=period_start, period_end=period_end, transactions=list(transactions)
        )
        response = await self._call(
            "POST",
            "/reconciliations",
            content=_encoder.encode(body),
            headers={"Content-Type": "application/json"},
        )
        return _decode(_reconciliation_decoder, response)

    # --- tokens ------------------------------------------------------------

    async def access_token(self) -> str:
        """A valid bearer token, fetched or refreshed if needed."""
        token = self._token
        if token is not None and self._clock() < self._token_refresh_at:
            return token
        async with self._token_lock:
            # Another task may have refreshed while this one waited.
            if self._token is not None and self._clock() < self._token_refresh_at:
                return self._token
            return await self._fetch_token()

    async def _fetch_token(self) -> str:
        asked_at = self._clock()
        body = _encoder.encode(
            TokenRequest(client_id=self._client_id, client_secret=self._client_secret)
        )
        response = await self._send(
            "POST", "/token", content=body, headers={"Content-Type": "application/json"}
        )
        if response.status_code >= 400:
            raise _error_from(response)
        token = _decode(_token_decoder, response)
        if token.expires_in <= 0:
            raise PartnerApiError(response.status_code, "invalid_response", "token already expired")
        margin_s = min(TOKEN_REFRESH_MARGIN_S, token.expires_in / 10)
        self._token = token.access_token
        self._token_refresh_at = asked_at + token.expires_in - margin_s
        return token.access_token

    def _forget_token(self, token: str) -> None:
        # Only the token that was refused: a newer one fetched meanwhile stays.
        if self._token == token:
            self._token = None

    # --- plumbing ----------------------------------------------------------

    async def _write(self, path: str, body: msgspec.Struct | None, key: str | None) -> Transaction:
        content = _encoder.encode(body) if body is not None else b"{}"
        response = await self._call(
            "POST",
            path,
            content=content,
            headers={
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: key if key is not None else new_idempotency_key(),
            },
        )
        transaction = _decode(_transaction_decoder, response)
        transaction.replayed = response.headers.get(REPLAY_HEADER, "").lower() == "true"
        return transaction

    async def _call(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        """An authenticated request; a 401 gets one new token and one more try."""
        refreshed = False
        while True:
            token = await self.access_token()
            all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
            response = await self._send(
                method, path, content=content, headers=all_headers, params=params
            )
            if response.status_code == 401 and not refreshed:
                refreshed = True
                self._forget_token(token)
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response

    async def _send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None,
        headers: Mapping[str, str],
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        """One request, retried on timeouts, dropped connections, 429 and 5xx.

        Every retry sends the same bytes and headers, so a write keeps its
        idempotency key and the server answers a repeat with the first result.
        """
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            try:
                response = await self._http.request(
                    method, path, content=content, headers=headers, params=params
                )
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if last:
                    code = (
                        "timeout" if isinstance(exc, httpx.TimeoutException) else "transport_error"
                    )
                    raise PartnerApiError(0, code, str(exc) or type(exc).__name__) from exc
                await self._sleep(_retry_delay_s(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                await response.aread()
                await self._sleep(_retry_delay_s(attempt, response.headers.get("Retry-After")))
                continue
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")


def _segment(value: Id) -> str:
    return quote(str(value), safe="")


def _retry_delay_s(attempt: int, retry_after: str | None) -> float:
    if retry_after is not None and retry_after.strip().isdigit():
        return min(float(retry_after.strip()), RETRY_DELAY_MAX_S)
    # Full jitter: clients that failed together do not retry together.
    ceiling_s = min(RETRY_DELAY_BASE_S * (2**attempt), RETRY_DELAY_MAX_S)
    return random.uniform(0, ceiling_s)


def _decode(decoder: msgspec.json.Decoder[S], response: httpx.Response) -> S:
    try:
        return decoder.decode(response.content)
    except msgspec.DecodeError as exc:
        raise PartnerApiError(
            response.status_code,
            "invalid_response",
            f"the server's answer does not match the contract: {exc}",
            response.text[:PROBLEM_TEXT_MAX],
        ) from None


def _error_from(response: httpx.Response) -> PartnerApiError:
    status = response.status_code
    code = f"http_{status}"
    detail = response.reason_phrase
    try:
        body: Any = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        text = response.text[:PROBLEM_TEXT_MAX]
        return PartnerApiError(status, code, text or detail, text)
    # Lenient on purpose: a proxy's JSON error must still become a PartnerApiError.
    if isinstance(body, dict):
        if isinstance(body.get("code"), str) and body["code"]:
            code = body["code"]
        for field in ("detail", "title"):
            if isinstance(body.get(field), str) and body[field]:
                detail = body[field]
                break
    return PartnerApiError(status, code, detail, body)
