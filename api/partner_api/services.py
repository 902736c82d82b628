"""What each partner API call does, as one database transaction.

Shape of every write: (1) one statement reads the partner's terms, any
stored answer for the idempotency key, and the member with their accounts
locked; (2) the domain plans the change in Python; (3) the answer is
rendered; (4) one statement writes the plan, the answer and the key. A
replay returns the stored answer before anything is validated, so a repeat
gets the first answer even if the world has changed since.

The earn of a member without debt is the one exception, and the hot path:
it only adds points, so step (1) takes no lock and step (4) commits by
itself; no explicit transaction is needed for a single statement.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from api.clock import Clock
from api.coalition.cards import is_valid_card_number
from api.coalition.members import require_active_member
from api.coalition.partners import TERMS_COLUMNS, require_active_partner, terms_from, terms_joins
from api.cursors import aware_datetime, decode_cursor, encode_cursor
from api.db.pool import RETRYABLE_ERRORS, transaction
from api.engagement.tiers import (
    MEMBER_TIER_COLUMNS,
    MemberTier,
    member_tier_from,
    member_tier_joins,
)
from api.errors import DomainError, NotFound
from api.ledger import burn, earn, refund
from api.ledger.accounts import (
    MEMBER_ACCOUNTS_COLUMNS,
    MemberAccounts,
    lock_member,
    member_accounts_from,
    member_accounts_lateral,
    shard_for,
)
from api.ledger.idempotency import Claim, StoredAnswer, stored_answer
from api.ledger.terms import PartnerTerms
from api.ledger.transactions import COLUMNS, TransactionRow, row_from
from api.money import is_iso_currency
from api.partner_api import schemas
from api.partner_api.auth import PartnerPrincipal
from api.partner_api.idempotency import Answer, fingerprint, replay
from api.settings import Mode
from api.settlement import reconciliation, statements
from api.settlement.periods import business_date
from api.webhooks import endpoints as webhook_endpoints
from api.webhooks.outbox import POINTS_BURNED, POINTS_EARNED, POINTS_REFUNDED, Event
from api.webhooks.urls import validate_webhook_url

OCCURRED_AT_FUTURE_SKEW = timedelta(minutes=5)
OCCURRED_AT_PAST_MAX = timedelta(days=30)

_encode = msgspec.json.Encoder().encode


def _card_context_sql(*, lock: bool, tier: bool = False) -> str:
    # An earn also reads the member's tier, a promo-budget shard (its bonus) and
    # the member's VIP multiplier at the earn's moment ($5).
    return f"""
SELECT {TERMS_COLUMNS},
       k.request_sha256, k.response_status, k.response_body,
       {MEMBER_ACCOUNTS_COLUMNS}{"," + MEMBER_TIER_COLUMNS if tier else ""}
FROM partners p
{terms_joins("$4")}
LEFT JOIN idempotency_keys k ON k.partner_id = p.id AND k.key = $2
LEFT JOIN members m ON m.card_number = $3
{member_accounts_lateral(lock=lock)}
{member_tier_joins("$4", "$5::timestamptz") if tier else ""}
WHERE p.id = $1
"""


_CARD_CONTEXT = {lock: _card_context_sql(lock=lock) for lock in (True, False)}
_EARN_CONTEXT = {lock: _card_context_sql(lock=lock, tier=True) for lock in (True, False)}

_TRANSACTION_CONTEXT = f"""
SELECT {TERMS_COLUMNS},
       k.request_sha256, k.response_status, k.response_body,
       t.member_id AS txn_member_id
FROM partners p
{terms_joins("$4")}
LEFT JOIN idempotency_keys k ON k.partner_id = p.id AND k.key = $2
LEFT JOIN transactions t ON t.id = $3 AND t.partner_id = p.id
WHERE p.id = $1
"""


class Request(msgspec.Struct, frozen=True):
    """A write as the service sees it: who, which key, the fingerprint."""

    partner: PartnerPrincipal
    key: str
    request_sha256: bytes

    @classmethod
    def of(cls, partner: PartnerPrincipal, key: str, path: str, body: msgspec.Struct) -> Request:
        return cls(partner, key, fingerprint(path, _encode(body)))


def _stored(row: asyncpg.Record) -> StoredAnswer | None:
    if row["request_sha256"] is None:
        return None
    return StoredAnswer(row["request_sha256"], row["response_status"], row["response_body"])


# (bonus points, multiplier per mille) of a transaction: an earn's tier bonus,
# or the bonus a refund reversed; (0, None) where no tier applied.
Bonus = tuple[int, int | None]
NO_BONUS: Bonus = (0, None)


def render(
    row: TransactionRow, member_public_id: UUID, card_number: str, bonus: Bonus = NO_BONUS
) -> schemas.TransactionOut:
    return schemas.TransactionOut(
        id=row.id,
        kind=row.kind,  # type: ignore[arg-type]  # the table's CHECK limits kind to the Literal
        status=row.status,
        member_id=member_public_id,
        card_number=card_number,
        points=row.points,
        amount_cents=row.amount_cents,
        currency=row.currency,
        points_captured=row.points_captured,
        points_refunded=row.points_refunded,
        amount_refunded_cents=row.amount_refunded_cents,
        debt_points=row.debt_points,
        debt_repaid_points=row.debt_repaid_points,
        price_micros=row.price_micros,
        receipt_ref=row.receipt_ref,
        store_id=row.store_id,
        original_id=row.original_id,
        occurred_at=row.occurred_at,
        created_at=row.created_at,
        available_at=row.available_at,
        hold_expires_at=row.hold_expires_at,
        finished_at=row.finished_at,
        bonus_points=bonus[0],
        multiplier_permille=bonus[1],
    )


def _claim(
    request: Request,
    status: int,
    row: TransactionRow,
    member: MemberAccounts,
    now: datetime,
    bonus: Bonus = NO_BONUS,
) -> Claim:
    body = _encode(render(row, member.public_id, member.card_number, bonus))
    return Claim(request.partner.partner_id, request.key, request.request_sha256, status, body, now)


def _require_card(card_number: str) -> None:
    if not is_valid_card_number(card_number):
        raise DomainError(
            "the card number is not a valid 16-digit Kring card number (check digit)",
            code="invalid_card_number",
        )


def _require_currency(currency: str, terms: PartnerTerms) -> None:
    if not is_iso_currency(currency):
        raise DomainError(f"{currency!r} is not an ISO 4217 currency", code="unknown_currency")
    if currency != terms.currency:
        raise DomainError(
            f"this partner settles in {terms.currency}, not {currency}",
            code="currency_not_supported",
        )


def _occurred_at(value: datetime | None, now: datetime) -> datetime:
    if value is None:
        return now
    if value.tzinfo is None:
        raise DomainError("occurred_at needs a time zone offset", code="invalid_occurred_at")
    if value > now + OCCURRED_AT_FUTURE_SKEW or value < now - OCCURRED_AT_PAST_MAX:
        raise DomainError(
            "occurred_at must be within the last 30 days and not in the future",
            code="invalid_occurred_at",
        )
    return value


async def _card_context_row(
    conn: asyncpg.Connection, request: Request, card_number: str, sql: str, *extra: object
) -> asyncpg.Record:
    # The card number (valid, so all digits) picks the partner-account shard.
    shard = shard_for(int(card_number[:-1]))
    row = await conn.fetchrow(
        sql, request.partner.partner_id, request.key, card_number, shard, *extra
    )
    if row is None:
        raise NotFound("partner not found", code="partner_not_found")
    return row


async def _card_context(
    conn: asyncpg.Connection, request: Request, card_number: str, *, lock: bool = True
) -> tuple[PartnerTerms, StoredAnswer | None, MemberAccounts | None]:
    row = await _card_context_row(conn, request, card_number, _CARD_CONTEXT[lock])
    return terms_from(row), _stored(row), member_accounts_from(row)


@dataclasses.dataclass(frozen=True, slots=True)
class _EarnContext:
    terms: PartnerTerms
    stored: StoredAnswer | None
    member: MemberAccounts | None
    tier: MemberTier | None
    promo_account_id: int | None


async def _earn_context(
    conn: asyncpg.Connection, request: Request, card_number: str, *, lock: bool, now: datetime
) -> _EarnContext:
    row = await _card_context_row(conn, request, card_number, _EARN_CONTEXT[lock], now)
    member = member_accounts_from(row)
    return _EarnContext(
        terms_from(row),
        _stored(row),
        member,
        None if member is None else member_tier_from(row),
        row["promo_account_id"],
    )


def _require_member(member: MemberAccounts | None) -> MemberAccounts:
    if member is None:
        raise NotFound("no member has this card number", code="member_not_found")
    require_active_member(member.status)
    return member


class _LostRace(Exception):
    """Another request with the same key committed first; roll back, then replay."""


async def _run(
    pool: asyncpg.Pool,
    request: Request,
    work: Callable[[asyncpg.Connection], Awaitable[Answer]],
) -> Answer:
    try:
        return await transaction(pool, work)
    except _LostRace:
        return await _replay_stored(pool, request)
    except DomainError:
        # A repeat sent while its first attempt was still running (the
        # client timed out) read no stored answer, then queued on the
        # member's lock behind that attempt and found the state it left: the
        # points gone, the hold voided. The first attempt's answer is the
        # true one; a 4xx here would deny a write that was applied.
        async with pool.acquire() as conn:
            stored = await stored_answer(conn, request.partner.partner_id, request.key)
        if stored is None:
            raise
        return replay(stored, request.request_sha256)


async def _replay_stored(pool: asyncpg.Pool, request: Request) -> Answer:
    async with pool.acquire() as conn:
        stored = await stored_answer(conn, request.partner.partner_id, request.key)
    if stored is None:  # the winner rolled back after all; the client may retry
        raise DomainError(
            "a request with this Idempotency-Key is in flight",
            code="idempotency_conflict",
            status=409,
        )
    return replay(stored, request.request_sha256)


async def earn_points(
    pool: asyncpg.Pool, clock: Clock, request: Request, body: schemas.EarnRequest
) -> Answer:
    _require_card(body.card_number)
    # The common case, a member without debt, only adds points: it needs no
    # member lock and no explicit transaction. One read, then one statement
    # that writes everything and commits by itself, all or nothing.
    async with pool.acquire() as conn:
        # One moment for the VIP read and the booking: VIP covers it or not.
        now = clock.now()
        context = await _earn_context(conn, request, body.card_number, lock=False, now=now)
        if context.stored is not None:
            return replay(context.stored, request.request_sha256)
        member = _earning_member(context.terms, body, context.member)
        if member.debt == 0:
            try:
                return await _plan_and_apply_earn(conn, now, request, body, context, member)
            except _LostRace:
                return await _replay_stored(pool, request)
            except RETRYABLE_ERRORS:
                # The statement rolled back whole; the locked path below retries.
                pass

    async def locked(conn: asyncpg.Connection) -> Answer:
        # The earn repays debt, so the debt must be read under the member lock
        # (or the unlocked attempt met a deadlock: the lock order prevents that here).
        now = clock.now()
        context = await _earn_context(conn, request, body.card_number, lock=True, now=now)
        if context.stored is not None:
            return replay(context.stored, request.request_sha256)
        member = _earning_member(context.terms, body, context.member)
        return await _plan_and_apply_earn(conn, now, request, body, context, member)

    return await _run(pool, request, locked)


def _earning_member(
    terms: PartnerTerms, body: schemas.EarnRequest, member: MemberAccounts | None
) -> MemberAccounts:
    require_active_partner(terms)
    _require_currency(body.currency, terms)
    return _require_member(member)


async def _plan_and_apply_earn(
    conn: asyncpg.Connection,
    now: datetime,
    request: Request,
    body: schemas.EarnRequest,
    context: _EarnContext,
    member: MemberAccounts,
) -> Answer:
    plan = earn.plan_earn(
        context.terms,
        member,
        amount_cents=body.amount_cents,
        currency=body.currency,
        receipt_ref=body.receipt_ref,
        store_id=body.store_id,
        occurred_at=_occurred_at(body.occurred_at, now),
        now=now,
        tier=context.tier,
        promo_account_id=context.promo_account_id,
    )
    claim = _claim(
        request, 201, plan.row, member, now, bonus=(plan.bonus_points, plan.multiplier_permille)
    )
    # The webhook carries the answer's own bytes: what the till saw is what is announced.
    plan = dataclasses.replace(plan, event=Event(POINTS_EARNED, claim.response_body))
    if not await earn.apply_earn(conn, plan, claim):
        raise _LostRace
    return Answer(201, claim.response_body)


async def authorize_burn(
    pool: asyncpg.Pool,
    clock: Clock,
    request: Request,
    body: schemas.AuthorizeRequest | schemas.BurnRequest,
    *,
    hold_minutes_default: int,
    capture: bool,
) -> Answer:
    """Authorize a burn; with `capture`, capture it in the same transaction."""
    _require_card(body.card_number)

    async def work(conn: asyncpg.Connection) -> Answer:
        terms, stored, member = await _card_context(conn, request, body.card_number)
        if stored is not None:
            return replay(stored, request.request_sha256)
        require_active_partner(terms)
        member = _require_member(member)
        now = clock.now()
        hold_minutes = getattr(body, "hold_minutes", None) or hold_minutes_default
        plan = burn.plan_authorize(
            terms,
            member,
            points=body.points,
            hold_minutes=hold_minutes,
            receipt_ref=body.receipt_ref,
            store_id=body.store_id,
            occurred_at=_occurred_at(body.occurred_at, now),
            now=now,
        )
        if not capture:
            claim = _claim(request, 201, plan.row, member, now)
            if not await burn.apply_authorize(conn, plan, claim):
                raise _LostRace
            return Answer(201, claim.response_body)
        # One-step burn: authorize and capture all, the claim written with the capture.
        finish = burn.plan_finish(
            plan.row,
            _after_authorize(member, plan.points),
            terms.points_redeemed_id,
            status="captured",
            capture_points=plan.points,
            now=now,
        )
        claim = _claim(request, 201, finish.row, member, now)
        await burn.apply_authorize(conn, plan, None)
        finish = dataclasses.replace(finish, event=Event(POINTS_BURNED, claim.response_body))
        if not await burn.apply_finish(conn, finish, claim):
            raise _LostRace
        return Answer(201, claim.response_body)

    return await _run(pool, request, work)


def _after_authorize(member: MemberAccounts, points: int) -> MemberAccounts:
    return dataclasses.replace(
        member, available=member.available - points, held=member.held + points
    )


async def _transaction_context(
    conn: asyncpg.Connection, request: Request, transaction_id: UUID
) -> tuple[PartnerTerms, StoredAnswer | None, int | None]:
    row = await conn.fetchrow(
        _TRANSACTION_CONTEXT,
        request.partner.partner_id,
        request.key,
        transaction_id,
        shard_for(transaction_id.int),
    )
    if row is None:
        raise NotFound("partner not found", code="partner_not_found")
    return terms_from(row), _stored(row), row["txn_member_id"]


def _transaction_not_found() -> NotFound:
    # The same answer for "does not exist" and "belongs to another partner".
    return NotFound("no such transaction for this partner", code="transaction_not_found")


async def finish_burn(
    pool: asyncpg.Pool,
    clock: Clock,
    request: Request,
    transaction_id: UUID,
    *,
    status: str,
    points: int | None,
) -> Answer:
    async def work(conn: asyncpg.Connection) -> Answer:
        terms, stored, member_id = await _transaction_context(conn, request, transaction_id)
        if stored is not None:
            return replay(stored, request.request_sha256)
        require_active_partner(terms)
        if member_id is None:
            raise _transaction_not_found()
        member = await lock_member(conn, member_id)
        hold = await _load_own(conn, transaction_id, request.partner.partner_id)
        if hold is None or hold.kind != "burn" or member is None:
            raise _transaction_not_found()
        now = clock.now()
        capture_points = (
            0 if status != "captured" else (points if points is not None else hold.points)
        )
        plan = burn.plan_finish(
            hold,
            member,
            terms.points_redeemed_id,
            status=status,
            capture_points=capture_points,
            now=now,
        )
        claim = _claim(request, 200, plan.row, member, now)
        if status == "captured":
            plan = dataclasses.replace(plan, event=Event(POINTS_BURNED, claim.response_body))
        if not await burn.apply_finish(conn, plan, claim):
            raise _LostRace
        return Answer(200, claim.response_body)

    return await _run(pool, request, work)


async def refund_earn(
    pool: asyncpg.Pool,
    clock: Clock,
    request: Request,
    transaction_id: UUID,
    body: schemas.RefundRequest,
) -> Answer:
    async def work(conn: asyncpg.Connection) -> Answer:
        terms, stored, member_id = await _transaction_context(conn, request, transaction_id)
        if stored is not None:
            return replay(stored, request.request_sha256)
        require_active_partner(terms)
        if member_id is None:
            raise _transaction_not_found()
        member = await lock_member(conn, member_id)
        refundable = await refund.load_refundable(conn, transaction_id)
        if refundable is None or member is None:
            raise DomainError("only earn transactions can be refunded", code="not_refundable")
        _require_currency(body.currency, terms)
        now = clock.now()
        plan = refund.plan_refund(
            refundable,
            member,
            terms.points_issued_id,
            amount_cents=body.amount_cents,
            receipt_ref=body.receipt_ref,
            now=now,
        )
        claim = _claim(request, 201, plan.row, member, now, bonus=(plan.bonus_points, None))
        plan = dataclasses.replace(plan, event=Event(POINTS_REFUNDED, claim.response_body))
        if not await refund.apply_refund(conn, plan, claim):
            raise _LostRace
        return Answer(201, claim.response_body)

    return await _run(pool, request, work)


async def _load_own(
    conn: asyncpg.Connection, transaction_id: UUID, partner_id: int
) -> TransactionRow | None:
    record = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM transactions WHERE id = $1 AND partner_id = $2",
        transaction_id,
        partner_id,
    )
    return None if record is None else row_from(record)


# Reads ---------------------------------------------------------------------

_MEMBER_READ = """
SELECT m.public_id, m.card_number, m.status, m.display_name,
       max(a.balance) FILTER (WHERE a.kind = 'member_available') AS available,
       max(a.balance) FILTER (WHERE a.kind = 'member_pending') AS pending
FROM members m JOIN accounts a ON a.member_id = m.id
WHERE m.card_number = $1
GROUP BY m.id
"""


async def require_active(pool: asyncpg.Pool, partner_id: int) -> None:
    """Reads check the partner too: a suspended partner's live token reads nothing."""
    status = await pool.fetchval("SELECT status FROM partners WHERE id = $1", partner_id)
    if status != "active":
        raise DomainError("this partner is suspended", code="partner_suspended", status=403)


async def identify(pool: asyncpg.Pool, partner_id: int, card_number: str) -> schemas.MemberOut:
    _require_card(card_number)
    await require_active(pool, partner_id)
    row = await pool.fetchrow(_MEMBER_READ, card_number)
    if row is None:
        raise NotFound("no member has this card number", code="member_not_found")
    require_active_member(row["status"])
    return schemas.MemberOut(
        member_id=row["public_id"],
        card_number=row["card_number"],
        status=row["status"],
        available_points=row["available"],
        pending_points=row["pending"],
        display_name=row["display_name"],
    )


_TXN_READ = f"""
SELECT {", ".join("t." + c for c in COLUMNS.split(", "))},
       t.bonus_points, t.multiplier_permille,
       m.public_id AS member_public_id, m.card_number
FROM transactions t JOIN members m ON m.id = t.member_id
"""


def _render_read(record: asyncpg.Record) -> schemas.TransactionOut:
    return render(
        row_from(record),
        record["member_public_id"],
        record["card_number"],
        (record["bonus_points"], record["multiplier_permille"]),
    )


async def get_transaction(
    pool: asyncpg.Pool, partner_id: int, transaction_id: UUID
) -> schemas.TransactionOut:
    await require_active(pool, partner_id)
    record = await pool.fetchrow(
        _TXN_READ + " WHERE t.id = $1 AND t.partner_id = $2", transaction_id, partner_id
    )
    if record is None:
        raise _transaction_not_found()
    return _render_read(record)


def encode_transaction_cursor(created_at: datetime, transaction_id: UUID) -> str:
    return encode_cursor(created_at, transaction_id)


def decode_transaction_cursor(cursor: str) -> tuple[datetime, UUID]:
    created_at, transaction_id = decode_cursor(cursor, aware_datetime, UUID)
    return created_at, transaction_id


async def list_transactions(
    pool: asyncpg.Pool, partner_id: int, *, limit: int, cursor: str | None, kind: str | None
) -> schemas.TransactionPage:
    await require_active(pool, partner_id)
    params: list[Any] = [partner_id, kind, limit + 1]
    where = "t.partner_id = $1 AND ($2::text IS NULL OR t.kind = $2)"
    if cursor is not None:
        created_at, ident = decode_transaction_cursor(cursor)
        params += [created_at, ident]
        where += " AND (t.created_at, t.id) < ($4, $5)"
    records = await pool.fetch(
        _TXN_READ + f" WHERE {where} ORDER BY t.created_at DESC, t.id DESC LIMIT $3", *params
    )
    items = [_render_read(r) for r in records[:limit]]
    next_cursor = None
    if len(records) > limit:
        last = records[limit - 1]
        next_cursor = encode_transaction_cursor(last["created_at"], last["id"])
    return schemas.TransactionPage(items=items, next_cursor=next_cursor)


# Webhooks ------------------------------------------------------------------
# Same shape as the ledger writes: replay a stored answer first, then plan,
# render the answer, and write it with the idempotency claim in one statement.


def _endpoint_out(endpoint: webhook_endpoints.Endpoint) -> schemas.WebhookEndpointOut:
    return schemas.WebhookEndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        created_at=endpoint.created_at,
        disabled_at=endpoint.disabled_at,
        previous_secret_valid_until=endpoint.previous_secret_expires_at,
    )


def _webhook_claim(request: Request, status: int, body: bytes, now: datetime) -> Claim:
    return Claim(request.partner.partner_id, request.key, request.request_sha256, status, body, now)


async def create_webhook_endpoint(
    pool: asyncpg.Pool,
    clock: Clock,
    mode: Mode,
    request: Request,
    body: schemas.WebhookEndpointCreate,
) -> Answer:
    partner_id = request.partner.partner_id

    async def work(conn: asyncpg.Connection) -> Answer:
        stored = await stored_answer(conn, partner_id, request.key)
        if stored is not None:
            return replay(stored, request.request_sha256)
        await webhook_endpoints.lock_partner(conn, partner_id)
        url = validate_webhook_url(body.url, mode)
        await webhook_endpoints.require_room(conn, partner_id)
        now = clock.now()
        endpoint = webhook_endpoints.new_endpoint(partner_id, url, now)
        secret = webhook_endpoints.new_secret()
        out = _endpoint_out(endpoint)
        answer = _encode(
            schemas.WebhookEndpointCreated(**msgspec.structs.asdict(out), secret=secret)
        )
        claim = _webhook_claim(request, 201, answer, now)
        if not await webhook_endpoints.insert_endpoint(conn, endpoint, secret, claim):
            raise _LostRace
        return Answer(201, answer)

    return await _run(pool, request, work)


async def rotate_webhook_secret(
    pool: asyncpg.Pool, clock: Clock, request: Request, endpoint_id: UUID
) -> Answer:
    partner_id = request.partner.partner_id

    async def work(conn: asyncpg.Connection) -> Answer:
        stored = await stored_answer(conn, partner_id, request.key)
        if stored is not None:
            return replay(stored, request.request_sha256)
        await webhook_endpoints.lock_partner(conn, partner_id)
        endpoint = await webhook_endpoints.locked_endpoint(conn, partner_id, endpoint_id)
        webhook_endpoints.require_enabled(endpoint)
        now = clock.now()
        secret = webhook_endpoints.new_secret()
        valid_until = now + webhook_endpoints.PREVIOUS_SECRET_VALID
        answer = _encode(
            schemas.WebhookSecretOut(
                endpoint_id=endpoint.id, secret=secret, previous_secret_valid_until=valid_until
            )
        )
        claim = _webhook_claim(request, 200, answer, now)
        if not await webhook_endpoints.rotate_secret(conn, endpoint, secret, valid_until, claim):
            raise _LostRace
        return Answer(200, answer)

    return await _run(pool, request, work)


async def disable_webhook_endpoint(
    pool: asyncpg.Pool, clock: Clock, request: Request, endpoint_id: UUID
) -> Answer:
    partner_id = request.partner.partner_id

    async def work(conn: asyncpg.Connection) -> Answer:
        stored = await stored_answer(conn, partner_id, request.key)
        if stored is not None:
            return replay(stored, request.request_sha256)
        await webhook_endpoints.lock_partner(conn, partner_id)
        endpoint = await webhook_endpoints.locked_endpoint(conn, partner_id, endpoint_id)
        now = clock.now()
        # Disabling twice is not an error: the answer shows when it was disabled.
        disabled = dataclasses.replace(endpoint, disabled_at=endpoint.disabled_at or now)
        answer = _encode(_endpoint_out(disabled))
        claim = _webhook_claim(request, 200, answer, now)
        if not await webhook_endpoints.disable(conn, endpoint, now, claim):
            raise _LostRace
        return Answer(200, answer)

    return await _run(pool, request, work)


async def list_webhook_endpoints(
    pool: asyncpg.Pool, partner_id: int
) -> schemas.WebhookEndpointList:
    await require_active(pool, partner_id)
    found = await webhook_endpoints.list_endpoints(pool, partner_id)
    return schemas.WebhookEndpointList(items=[_endpoint_out(e) for e in found])


def _delivery_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    # Delivery ids are bigints; 18 digits keep the value inside one.
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise DomainError(
            "the cursor is not one this API gave out", code="invalid_cursor", status=400
        )
    return int(cursor)


async def list_webhook_deliveries(
    pool: asyncpg.Pool, partner_id: int, endpoint_id: UUID, *, limit: int, cursor: str | None
) -> schemas.WebhookDeliveryPage:
    await require_active(pool, partner_id)
    deliveries, more = await webhook_endpoints.list_deliveries(
        pool, partner_id, endpoint_id, limit=limit, before_id=_delivery_cursor(cursor)
    )
    items = [
        schemas.WebhookDeliveryOut(
            id=d.id,
            event_id=d.event_id,
            event_type=d.event_type,
            event_created_at=d.event_created_at,
            status=d.status,  # type: ignore[arg-type]  # the table's CHECK limits status to the Literal
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            delivered_at=d.delivered_at,
            attempt_log=[
                schemas.WebhookAttemptOut(
                    attempted_at=a.attempted_at,
                    status_code=a.status_code,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
                for a in d.attempt_log
            ],
        )
        for d in deliveries
    ]
    next_cursor = str(deliveries[-1].id) if more and deliveries else None
    return schemas.WebhookDeliveryPage(items=items, next_cursor=next_cursor)


# Reconciliation ------------------------------------------------------------


async def reconcile(
    pool: asyncpg.Pool, partner_id: int, body: schemas.ReconciliationRequest
) -> schemas.ReconciliationOut:
    """Read only: compares, writes nothing, so it needs no idempotency key."""
    rows = [
        reconciliation.PartnerRow(
            row=index,
            kind=r.kind,
            points=r.points,
            transaction_id=r.transaction_id,
            receipt_ref=r.receipt_ref,
            amount_cents=r.amount_cents,
        )
        for index, r in enumerate(body.transactions)
    ]
    await require_active(pool, partner_id)
    result = await reconciliation.reconcile(
        pool, partner_id, body.period_start, body.period_end, rows
    )
    # The domain's dataclasses carry the schema's field names.
    return msgspec.convert(result, schemas.ReconciliationOut, from_attributes=True)


# Statements ----------------------------------------------------------------
# Read only: a closed statement never changes. Every read takes the partner's
# id, so another partner's statement is "not found", never "forbidden".

# The read model allows pages of up to STATEMENTS_PAGE_MAX; a page asks it for
# one more row than it shows, to know whether there is a next page.
STATEMENTS_LIMIT_MAX = 50
assert STATEMENTS_LIMIT_MAX < statements.STATEMENTS_PAGE_MAX
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _statement_out(statement: statements.Statement) -> schemas.StatementOut:
    return schemas.StatementOut(
        id=statement.public_id,
        period=statement.period,  # type: ignore[arg-type]  # the table's CHECK limits period to the Literal
        period_start=statement.period_start,
        period_end=statement.period_end,
        first_day=business_date(statement.period_start),
        last_day=business_date(statement.period_end) - timedelta(days=1),
        currency=statement.currency,
        entries=statement.entries,
        net_cents=statement.net_cents,
        closed_at=statement.closed_at,
        lines=[
            schemas.StatementLineOut(
                category=line.category,  # type: ignore[arg-type]  # the table's CHECK limits category
                entries=line.entries,
                points=line.points,
                amount_micros=line.amount_micros,
                amount_cents=line.amount_cents,
            )
            for line in statement.lines
        ],
    )


def encode_statement_cursor(period_end: datetime) -> str:
    return encode_cursor(period_end)


def decode_statement_cursor(cursor: str) -> datetime:
    period_end: datetime = decode_cursor(cursor, aware_datetime)[0]
    return period_end


def parse_statement_id(text: str) -> UUID:
    """A statement id from a URL: anything but a UUID is refused with its own code."""
    try:
        return UUID(text)
    except ValueError:
        raise DomainError(
            f"{text[:60]!r} is not a statement id (a UUID)",
            code="invalid_statement_id",
            status=400,
        ) from None


async def list_statements(
    pool: asyncpg.Pool, partner_id: int, *, limit: int, cursor: str | None
) -> schemas.StatementPage:
    if not 1 <= limit <= STATEMENTS_LIMIT_MAX:
        raise DomainError(f"limit must be 1 to {STATEMENTS_LIMIT_MAX}", code="invalid_request")
    # A partner has at most one statement per period end (unique index
    # statements_partner_period), so the period end alone is an exact cursor:
    # (period_end, id) < (cursor, 0) is period_end < cursor.
    before = None if cursor is None else (decode_statement_cursor(cursor), 0)
    await require_active(pool, partner_id)
    found = await statements.list_statements(pool, partner_id, limit=limit + 1, before=before)
    next_cursor = None
    if len(found) > limit:
        next_cursor = encode_statement_cursor(found[limit - 1].period_end)
    return schemas.StatementPage(
        items=[_statement_out(s) for s in found[:limit]], next_cursor=next_cursor
    )


async def _own_statement(
    pool: asyncpg.Pool, partner_id: int, statement_id: str
) -> statements.Statement:
    public_id = parse_statement_id(statement_id)
    await require_active(pool, partner_id)
    found = await statements.get_statement(pool, partner_id, public_id)
    if found is None:
        # The same answer for "does not exist" and "belongs to another partner".
        raise NotFound("no such statement for this partner", code="statement_not_found")
    return found


async def get_statement(
    pool: asyncpg.Pool, partner_id: int, statement_id: str
) -> schemas.StatementOut:
    return _statement_out(await _own_statement(pool, partner_id, statement_id))


@dataclasses.dataclass(frozen=True, slots=True)
class StatementDownload:
    filename: str
    chunks: AsyncIterator[bytes]  # streamed: the entry rows are read with a cursor


def statement_filename(statement: statements.Statement) -> str:
    """Named after the period's first business day in Europe/Amsterdam (the
    statement's own `csv_filename` takes the UTC date of the start, which is
    the day before for a period that starts at local midnight)."""
    code = _FILENAME_UNSAFE.sub("_", statement.partner_code)
    first_day = business_date(statement.period_start).isoformat()
    return f"kring-statement-{code}-{statement.period}-{first_day}.csv"


async def statement_download(
    pool: asyncpg.Pool, partner_id: int, statement_id: str
) -> StatementDownload:
    found = await _own_statement(pool, partner_id, statement_id)
    return StatementDownload(statement_filename(found), statements.statement_csv(pool, found))
