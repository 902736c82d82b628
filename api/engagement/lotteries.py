"""Lotteries: creating them, selling tickets for points, the free ticket, the
draw and its prizes, cancellation with refunds. Plain Python and SQL; the
draw's arithmetic is in `lottery_draw` (pure), the web layers call these.

The ledger, as for every other write (README "How the ledger keeps every point"):

- A ticket moves its price from the member's available lots (FIFO by expiry)
  to `programme_lottery_pool` in one `lottery_ticket` entry; `lot_expiries`
  records the lots it took from, so settlement recognises those points at
  their lots' prices, exactly like expired points (the ticket kind is in
  settlement's valuation next to `expire`).
- A points prize, or the refund of a cancelled lottery's tickets, moves
  points from the pool to the member as a new available lot priced 0: points
  the programme hands out were never paid for by a partner, so they add
  nothing to the float; when they are redeemed later, the redemption shows as
  negative spread, exactly. When the pool holds fewer points than an entry
  pays out (prizes larger than the tickets sold), `programme_promo` tops the
  pool up in the same entry.
- Lock order: the member's accounts first (`lock_member`), then the lottery
  row (the ticket counter), then programme accounts. A ticket's cap and the
  member's balance are checked under the member's lock, so concurrent
  purchases by one member queue and each sees the ones before it.
- The draw and a cancellation lock the lottery row first and then the
  members they pay; no purchase can hold a member lock while waiting on that
  lottery row by then (sales have closed, or the cancellation refuses it),
  and a deadlock, were it to happen, is retried by `transaction()`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from api.clock import add_months
from api.cursors import decode_cursor, encode_cursor, whole_number
from api.db.pool import transaction
from api.db.sql import Query
from api.engagement import inbox, lottery_draw
from api.errors import Conflict, DomainError, InsufficientPoints, NotFound
from api.ledger.accounts import MemberAccounts, lock_member, lock_members, programme_account
from api.ledger.entries import (
    ENTRY_CTES,
    ENTRY_RESULT,
    LedgerInvariantError,
    Postings,
    entry_params,
    require_moved,
)
from api.ledger.idempotency import IDEMPOTENCY_KEY_LENGTH_MAX, go_cte
from api.ledger.lots import TAKE_FIFO_CTES
from api.ledger.terms import POINTS_EXPIRE_AFTER_MONTHS
from api.vip.window import vip_free_lottery_tickets_at

POOL_ACCOUNT = "programme_lottery_pool"
TOP_UP_ACCOUNT = "programme_promo"
NAME_LENGTH_MAX = 200
RULES_LENGTH_MAX = 10_000
VOUCHER_LENGTH_MAX = 500
PRIZES_MAX = 100
PRIZE_POINTS_MAX = 10_000_000
TICKET_PRICE_POINTS_MAX = 1_000_000
TICKETS_PER_MEMBER_MAX = 1_000
SALES_DAYS_MAX = 366
LOTTERIES_LISTED_MAX = 50
DRAWS_PER_RUN_MAX = 50
STATUSES = ("scheduled", "selling", "closed", "drawn", "cancelled")


# Creating -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewPrize:
    points: int | None = None
    voucher_text: str | None = None


@dataclass(frozen=True, slots=True)
class NewLottery:
    name: str
    rules: str
    ticket_price_points: int
    tickets_per_member_max: int
    sales_open_at: datetime
    sales_close_at: datetime
    draw_at: datetime
    prizes: Sequence[NewPrize]  # in rank order: the first is rank 1


def _invalid(detail: str, code: str) -> DomainError:
    return DomainError(detail, code=code)


def validate_new_lottery(new: NewLottery, now: datetime) -> None:
    if not 1 <= len(new.name.strip()) <= NAME_LENGTH_MAX:
        raise _invalid(f"name must be 1 to {NAME_LENGTH_MAX} characters", "invalid_name")
    if not 1 <= len(new.rules.strip()) <= RULES_LENGTH_MAX:
        raise _invalid(f"rules must be 1 to {RULES_LENGTH_MAX} characters", "invalid_rules")
    if not 1 <= new.ticket_price_points <= TICKET_PRICE_POINTS_MAX:
        raise _invalid(
            f"ticket_price_points must be 1 to {TICKET_PRICE_POINTS_MAX}", "invalid_ticket_price"
        )
    if not 1 <= new.tickets_per_member_max <= TICKETS_PER_MEMBER_MAX:
        raise _invalid(
            f"tickets_per_member_max must be 1 to {TICKETS_PER_MEMBER_MAX}", "invalid_ticket_cap"
        )
    for moment in (new.sales_open_at, new.sales_close_at, new.draw_at):
        if moment.tzinfo is None:
            raise _invalid(
                "times need a time zone (for example 2026-05-01T12:00:00Z)", "invalid_time"
            )
    if not new.sales_open_at < new.sales_close_at:
        raise _invalid("sales must close after they open", "invalid_sales_window")
    if new.sales_close_at <= now:
        raise _invalid("sales must close in the future", "invalid_sales_window")
    if new.sales_close_at - new.sales_open_at > timedelta(days=SALES_DAYS_MAX):
        raise _invalid(f"sales last at most {SALES_DAYS_MAX} days", "invalid_sales_window")
    if not new.sales_close_at <= new.draw_at <= new.sales_close_at + timedelta(days=SALES_DAYS_MAX):
        raise _invalid("the draw is at or after the close of sales", "invalid_draw_time")
    if not 1 <= len(new.prizes) <= PRIZES_MAX:
        raise _invalid(f"a lottery has 1 to {PRIZES_MAX} prizes", "invalid_prizes")
    for prize in new.prizes:
        has_points = prize.points is not None
        has_voucher = prize.voucher_text is not None
        if has_points == has_voucher:
            raise _invalid("each prize is either points or a voucher text", "invalid_prizes")
        if prize.points is not None and not 1 <= prize.points <= PRIZE_POINTS_MAX:
            raise _invalid(f"prize points must be 1 to {PRIZE_POINTS_MAX}", "invalid_prizes")
        if prize.voucher_text is not None and not (
            1 <= len(prize.voucher_text.strip()) <= VOUCHER_LENGTH_MAX
        ):
            raise _invalid(
                f"a voucher text is 1 to {VOUCHER_LENGTH_MAX} characters", "invalid_prizes"
            )


@dataclass(frozen=True, slots=True)
class Created:
    lottery_id: int
    replayed: bool  # the key had made this lottery before; nothing was written


async def create_lottery(
    conn: asyncpg.Connection, new: NewLottery, now: datetime, *, key: str | None = None
) -> Created:
    """A new lottery with a fresh secret seed. With `key` (an admin's
    Idempotency-Key), a repeat returns the lottery the key made."""
    validate_new_lottery(new, now)
    if key is not None:
        made = await conn.fetchval("SELECT id FROM lotteries WHERE create_key = $1", key)
        if made is not None:
            return Created(int(made), replayed=True)
    seed = lottery_draw.new_seed()
    lottery_id: int = await conn.fetchval(
        "INSERT INTO lotteries (name, rules, ticket_price_points, tickets_per_member_max,"
        " sales_open_at, sales_close_at, draw_at, status, seed_sha256, seed, created_at,"
        " create_key)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        new.name.strip(),
        new.rules.strip(),
        new.ticket_price_points,
        new.tickets_per_member_max,
        new.sales_open_at,
        new.sales_close_at,
        new.draw_at,
        "selling" if new.sales_open_at <= now else "scheduled",
        lottery_draw.seed_sha256(seed),
        seed,
        now,
        key,
    )
    await conn.executemany(
        "INSERT INTO lottery_prizes (lottery_id, rank, points, voucher_text) VALUES ($1, $2, $3, $4)",
        [
            (lottery_id, rank, p.points, None if p.voucher_text is None else p.voucher_text.strip())
            for rank, p in enumerate(new.prizes, start=1)
        ],
    )
    return Created(lottery_id, replayed=False)


# Reading ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrizeView:
    rank: int
    points: int | None
    voucher_text: str | None

    @property
    def description(self) -> str:
        return f"{self.points} points" if self.points is not None else str(self.voucher_text)


@dataclass(frozen=True, slots=True)
class TicketView:
    number: int
    paid: bool
    price_points: int
    bought_at: datetime
    refunded: bool


@dataclass(frozen=True, slots=True)
class WinnerView:
    rank: int
    ticket_number: int
    holder: str
    prize: str
    mine: bool


@dataclass(frozen=True, slots=True)
class LotteryView:
    id: int
    name: str
    rules: str
    ticket_price_points: int
    tickets_per_member_max: int
    sales_open_at: datetime
    sales_close_at: datetime
    draw_at: datetime
    status: str
    tickets_sold: int
    seed_sha256_hex: str | None  # published once sales open
    seed_hex: str | None  # published at the draw
    ticket_list_sha256_hex: str | None
    prizes: list[PrizeView]
    winners: list[WinnerView] = field(default_factory=list)
    my_tickets: list[TicketView] = field(default_factory=list)

    @property
    def selling(self) -> bool:
        return self.status == "selling"

    @property
    def free_ticket_taken(self) -> bool:
        return any(not t.paid for t in self.my_tickets)

    @property
    def tickets_left(self) -> int:
        return max(0, self.tickets_per_member_max - len(self.my_tickets))

    @property
    def odds(self) -> str:
        """Every ticket, paid or free, has the same chance."""
        prizes = len(self.prizes)
        if self.tickets_sold == 0:
            return f"{prizes} prize(s); no tickets yet: every ticket has the same chance"
        winning = min(prizes, self.tickets_sold)
        return (
            f"{winning} of the {self.tickets_sold} tickets so far win a prize:"
            f" each ticket has a {winning} in {self.tickets_sold} chance"
        )


def effective_status(
    status: str, sales_open_at: datetime, sales_close_at: datetime, now: datetime
) -> str:
    """The status a reader sees now, before the job has caught up with the clock."""
    if status in ("drawn", "cancelled"):
        return status
    if now < sales_open_at:
        return "scheduled"
    if now < sales_close_at:
        return "selling"
    return "closed"


_LOTTERY_COLUMNS = """
    l.id, l.name, l.rules, l.ticket_price_points, l.tickets_per_member_max, l.sales_open_at,
    l.sales_close_at, l.draw_at, l.status, l.tickets_sold, l.seed_sha256, l.seed,
    d.ticket_list_sha256,
    (SELECT coalesce(json_agg(json_build_array(p.rank, p.points, p.voucher_text)
                              ORDER BY p.rank), '[]')::text
     FROM lottery_prizes p WHERE p.lottery_id = l.id) AS prizes
"""


def _view(row: asyncpg.Record, now: datetime, **more: Any) -> LotteryView:
    status = effective_status(row["status"], row["sales_open_at"], row["sales_close_at"], now)
    drawn = row["status"] == "drawn"
    return LotteryView(
        id=row["id"],
        name=row["name"],
        rules=row["rules"],
        ticket_price_points=row["ticket_price_points"],
        tickets_per_member_max=row["tickets_per_member_max"],
        sales_open_at=row["sales_open_at"],
        sales_close_at=row["sales_close_at"],
        draw_at=row["draw_at"],
        status=status,
        tickets_sold=row["tickets_sold"],
        seed_sha256_hex=None if status == "scheduled" else bytes(row["seed_sha256"]).hex(),
        seed_hex=bytes(row["seed"]).hex() if drawn else None,
        ticket_list_sha256_hex=(
            None if row["ticket_list_sha256"] is None else bytes(row["ticket_list_sha256"]).hex()
        ),
        prizes=[PrizeView(r, p, v) for r, p, v in json.loads(row["prizes"])],
        **more,
    )


async def list_lotteries(db: Any, member_id: int | None, now: datetime) -> list[LotteryView]:
    """Lotteries a member can see: not cancelled, newest draw first (at most
    LOTTERIES_LISTED_MAX), with the member's tickets."""
    rows = await db.fetch(
        f"SELECT {_LOTTERY_COLUMNS},"
        " (SELECT coalesce(json_agg(json_build_array(t.number, t.paid, t.price_points,"
        "   t.bought_at, t.refund_entry_id IS NOT NULL) ORDER BY t.number), '[]')::text"
        "  FROM lottery_tickets t WHERE t.lottery_id = l.id AND t.member_id = $1) AS mine"
        " FROM lotteries l LEFT JOIN lottery_draws d ON d.lottery_id = l.id"
        " WHERE l.status <> 'cancelled' ORDER BY l.draw_at DESC, l.id DESC LIMIT $2",
        member_id,
        LOTTERIES_LISTED_MAX,
    )
    return [_view(r, now, my_tickets=_tickets(r["mine"])) for r in rows]


def _tickets(text: str) -> list[TicketView]:
    return [
        TicketView(n, paid, price, datetime.fromisoformat(at), refunded)
        for n, paid, price, at, refunded in json.loads(text)
    ]


async def get_lottery(
    db: Any, lottery_id: int, member_id: int | None, now: datetime
) -> LotteryView | None:
    """One lottery with its winners once drawn (the member's own marked) and,
    for a member, their tickets. None when there is no such lottery."""
    row = await db.fetchrow(
        f"SELECT {_LOTTERY_COLUMNS},"
        " (SELECT coalesce(json_agg(json_build_array(t.number, t.paid, t.price_points,"
        "   t.bought_at, t.refund_entry_id IS NOT NULL) ORDER BY t.number), '[]')::text"
        "  FROM lottery_tickets t WHERE t.lottery_id = l.id AND t.member_id = $2) AS mine,"
        " (SELECT coalesce(json_agg(json_build_array(w.rank, w.ticket_number, m.public_id,"
        "   w.member_id = $2) ORDER BY w.rank), '[]')::text"
        "  FROM lottery_winners w JOIN members m ON m.id = w.member_id"
        "  WHERE w.lottery_id = l.id) AS winners"
        " FROM lotteries l LEFT JOIN lottery_draws d ON d.lottery_id = l.id WHERE l.id = $1",
        lottery_id,
        member_id,
    )
    if row is None:
        return None
    view = _view(row, now, my_tickets=_tickets(row["mine"]))
    prizes = {p.rank: p.description for p in view.prizes}
    winners = [
        WinnerView(
            rank,
            number,
            lottery_draw.holder_tag(lottery_id, str(public_id)),
            prizes[rank],
            bool(mine),
        )
        for rank, number, public_id, mine in json.loads(row["winners"])
    ]
    return LotteryView(**{**_fields(view), "winners": winners})


def _fields(view: LotteryView) -> dict[str, Any]:
    return {name: getattr(view, name) for name in LotteryView.__dataclass_fields__}


async def draw_document(db: Any, lottery_id: int) -> bytes | None:
    """The published draw JSON, byte for byte; None before the draw."""
    document = await db.fetchval(
        "SELECT document FROM lottery_draws WHERE lottery_id = $1", lottery_id
    )
    return None if document is None else bytes(document)


# Tickets ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ticket:
    lottery_id: int
    number: int
    paid: bool
    price_points: int
    bought_at: datetime
    replayed: bool  # a repeat of an earlier request: nothing new was written


async def _selling_lottery(
    conn: asyncpg.Connection, lottery_id: int, now: datetime
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT id, status, ticket_price_points, tickets_per_member_max, sales_open_at,"
        " sales_close_at FROM lotteries WHERE id = $1",
        lottery_id,
    )
    if row is None:
        raise NotFound("there is no such lottery", code="lottery_not_found")
    status = effective_status(row["status"], row["sales_open_at"], row["sales_close_at"], now)
    if status != "selling":
        raise Conflict(
            f"this lottery is not selling tickets (it is {status})", code="lottery_not_selling"
        )
    return row


async def _under_cap(conn: asyncpg.Connection, lottery: asyncpg.Record, member_id: int) -> None:
    # Counted under the member's lock: concurrent purchases see each other.
    held = await conn.fetchval(
        "SELECT count(*) FROM lottery_tickets WHERE lottery_id = $1 AND member_id = $2",
        lottery["id"],
        member_id,
    )
    if held >= lottery["tickets_per_member_max"]:
        raise Conflict(
            f"you have the most tickets a member may hold here ({lottery['tickets_per_member_max']})",
            code="ticket_cap_reached",
        )


async def _next_number(conn: asyncpg.Connection, lottery_id: int, now: datetime) -> int:
    # Locks the lottery row: tickets are numbered in order of sale, and the
    # draw (which locks this row first) sees every ticket committed before it.
    number = await conn.fetchval(
        "UPDATE lotteries SET tickets_sold = tickets_sold + 1"
        " WHERE id = $1 AND status NOT IN ('drawn', 'cancelled') AND sales_close_at > $2"
        " RETURNING tickets_sold",
        lottery_id,
        now,
    )
    if number is None:
        raise Conflict("this lottery is not selling tickets", code="lottery_not_selling")
    return int(number)


def _check_key(key: str | None) -> None:
    if key is None or not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        raise DomainError(
            f"an Idempotency-Key header of 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} characters is required",
            code="idempotency_key_required",
            status=400,
        )


_BUY = Query(f"""
WITH {go_cte(False)},
{TAKE_FIFO_CTES},
{ENTRY_CTES},
traced AS (
    INSERT INTO lot_expiries (entry_id, lot_id, points)
    SELECT entry.id, take.id, take.points FROM entry, take
),
ticket AS (
    INSERT INTO lottery_tickets
        (lottery_id, number, member_id, paid, price_points, entry_id, idempotency_key, bought_at)
    SELECT :lottery_id::bigint, :number::integer, :member_id::bigint, true, :take_points::bigint,
           entry.id, :key::text, :booked_at::timestamptz
    FROM entry
)
SELECT {ENTRY_RESULT}, (SELECT coalesce(sum(points), 0) FROM consumed) AS taken
""")


async def buy_ticket(
    pool: asyncpg.Pool, member_id: int, lottery_id: int, key: str | None, now: datetime
) -> Ticket:
    """Buy one ticket for the lottery's price. `key` (the client's
    Idempotency-Key) makes a repeat return the first ticket and move nothing;
    the same key for another lottery is `idempotency_conflict`."""
    _check_key(key)
    assert key is not None

    async def work(conn: asyncpg.Connection) -> Ticket:
        member = await _locked_member(conn, member_id)
        earlier = await conn.fetchrow(
            "SELECT lottery_id, number, paid, price_points, bought_at FROM lottery_tickets"
            " WHERE member_id = $1 AND idempotency_key = $2",
            member_id,
            key,
        )
        if earlier is not None:
            if earlier["lottery_id"] != lottery_id:
                raise Conflict(
                    "this Idempotency-Key was used for another lottery", code="idempotency_conflict"
                )
            return Ticket(
                lottery_id,
                earlier["number"],
                True,
                earlier["price_points"],
                earlier["bought_at"],
                True,
            )
        lottery = await _selling_lottery(conn, lottery_id, now)
        await _under_cap(conn, lottery, member_id)
        price = int(lottery["ticket_price_points"])
        if member.available < price:
            raise InsufficientPoints(
                f"a ticket costs {price} points; you have {member.available} available"
            )
        number = await _next_number(conn, lottery_id, now)
        pool_id = await programme_account(conn, POOL_ACCOUNT)
        postings = Postings(first=frozenset(member.account_ids)).move(
            member.available_id, pool_id, price
        )
        row = await conn.fetchrow(
            _BUY.text,
            *_BUY.args(
                {
                    "member_id": member_id,
                    "take_points": price,
                    "skip_lot_id": None,
                    "lottery_id": lottery_id,
                    "number": number,
                    "key": key,
                    **entry_params(
                        postings, kind="lottery_ticket", booked_at=now, member_id=member_id
                    ),
                }
            ),
        )
        require_moved(row, postings)
        if row["taken"] != price:
            raise LedgerInvariantError(
                f"lots of member {member_id} hold {row['taken']} points, balance said {price}"
            )
        return Ticket(lottery_id, number, True, price, now, False)

    return await transaction(pool, work)


async def take_free_ticket(
    pool: asyncpg.Pool, member_id: int, lottery_id: int, now: datetime
) -> Ticket:
    """The free route of entry: one ticket per member per lottery, the same
    odds as a paid one; a VIP member's plan adds its `free_lottery_tickets`
    in the same take (api/vip/), as far as the per-member cap allows. A
    repeat returns the (first) ticket already taken."""

    async def work(conn: asyncpg.Connection) -> Ticket:
        await _locked_member(conn, member_id)
        earlier = await conn.fetchrow(
            "SELECT number, bought_at FROM lottery_tickets"
            " WHERE lottery_id = $1 AND member_id = $2 AND NOT paid ORDER BY number LIMIT 1",
            lottery_id,
            member_id,
        )
        if earlier is not None:
            return Ticket(lottery_id, earlier["number"], False, 0, earlier["bought_at"], True)
        lottery = await _selling_lottery(conn, lottery_id, now)
        await _under_cap(conn, lottery, member_id)
        # Under the cap (_under_cap left room for at least one): VIP extras
        # come only as far as the cap allows.
        entitled = await conn.fetchrow(
            "SELECT $3::bigint - (SELECT count(*) FROM lottery_tickets"
            " WHERE lottery_id = $1 AND member_id = $2) AS room,"
            f" 1 + {vip_free_lottery_tickets_at('$2::bigint', '$4::timestamptz')} AS free",
            lottery_id,
            member_id,
            lottery["tickets_per_member_max"],
            now,
        )
        numbers = [
            await _next_number(conn, lottery_id, now)
            for _ in range(min(int(entitled["free"]), int(entitled["room"])))
        ]
        await conn.execute(
            "INSERT INTO lottery_tickets"
            " (lottery_id, number, member_id, paid, price_points, bought_at, free_index)"
            " SELECT $1, t.number, $3, false, 0, $4, t.i - 1"
            " FROM unnest($2::bigint[]) WITH ORDINALITY AS t(number, i)",
            lottery_id,
            numbers,
            member_id,
            now,
        )
        return Ticket(lottery_id, numbers[0], False, 0, now, False)

    return await transaction(pool, work)


async def _locked_member(conn: asyncpg.Connection, member_id: int) -> MemberAccounts:
    member = await lock_member(conn, member_id)
    if member is None or member.available_id is None:
        raise NotFound("there is no such member", code="member_not_found")
    if member.status != "active":
        raise Conflict("this member account is not active", code="member_not_active")
    return member


# Paying the programme's points out (prizes, refunds) ------------------------


_POST = Query(f"WITH {go_cte(False)}, {ENTRY_CTES} SELECT {ENTRY_RESULT}")


async def _pay_out(
    conn: asyncpg.Connection, payments: dict[int, int], kind: str, now: datetime
) -> int | None:
    """Points from the pool to members (member id -> points) as one entry, each
    as a new available lot priced 0; the promo budget tops the pool up when it
    is short. The members are locked here, in id order. Returns the entry id."""
    payments = {m: p for m, p in payments.items() if p > 0}
    if not payments:
        return None
    await lock_members(conn, sorted(payments))
    accounts = {
        r["member_id"]: r["id"]
        for r in await conn.fetch(
            "SELECT member_id, id FROM accounts WHERE member_id = ANY($1::bigint[])"
            " AND kind = 'member_available'",
            list(payments),
        )
    }
    pool_id = await programme_account(conn, POOL_ACCOUNT)
    pool_points = await conn.fetchval(
        "SELECT balance FROM accounts WHERE id = $1 FOR UPDATE", pool_id
    )
    total = sum(payments.values())
    top_up = max(0, total - int(pool_points))
    postings = Postings(first=frozenset(accounts.values()))
    if top_up:
        postings.move(await programme_account(conn, TOP_UP_ACCOUNT), pool_id, top_up)
    for member_id, points in payments.items():
        postings.move(pool_id, accounts[member_id], points)
    row = await conn.fetchrow(
        _POST.text, *_POST.args(entry_params(postings, kind=kind, booked_at=now))
    )
    require_moved(row, postings)
    expires_at = add_months(now, POINTS_EXPIRE_AFTER_MONTHS)
    await conn.execute(
        "INSERT INTO lots (member_id, state, points_original, points_remaining, available_at,"
        " expires_at, price_micros)"
        " SELECT m, 'available', p, p, $3, $4, 0 FROM unnest($1::bigint[], $2::bigint[]) AS x(m, p)",
        list(payments),
        list(payments.values()),
        now,
        expires_at,
    )
    return int(row["entry_id"])


# Cancelling -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cancelled:
    lottery_id: int
    tickets_refunded: int
    points_refunded: int
    replayed: bool


async def cancel_lottery(pool: asyncpg.Pool, lottery_id: int, now: datetime) -> Cancelled:
    """Cancel a lottery that has not been drawn and refund every paid ticket,
    exactly once: the status changes under the lottery's row lock, and each
    ticket records the entry that refunded it. A repeat reports the first."""
    return await transaction(pool, lambda conn: cancel_lottery_on(conn, lottery_id, now))


async def cancel_lottery_on(conn: asyncpg.Connection, lottery_id: int, now: datetime) -> Cancelled:
    """`cancel_lottery` inside the caller's transaction (e.g. with an audit row)."""
    status = await conn.fetchval(
        "SELECT status FROM lotteries WHERE id = $1 FOR UPDATE", lottery_id
    )
    if status is None:
        raise NotFound("there is no such lottery", code="lottery_not_found")
    if status == "drawn":
        raise Conflict("this lottery has been drawn", code="lottery_already_drawn")
    if status == "cancelled":
        done = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(price_points), 0)::bigint AS points"
            " FROM lottery_tickets WHERE lottery_id = $1 AND refund_entry_id IS NOT NULL",
            lottery_id,
        )
        return Cancelled(lottery_id, done["n"], done["points"], True)
    await conn.execute(
        "UPDATE lotteries SET status = 'cancelled', cancelled_at = $2 WHERE id = $1",
        lottery_id,
        now,
    )
    rows = await conn.fetch(
        "SELECT member_id, count(*) AS n, sum(price_points)::bigint AS points"
        " FROM lottery_tickets WHERE lottery_id = $1 AND paid AND refund_entry_id IS NULL"
        " GROUP BY member_id",
        lottery_id,
    )
    entry_id = await _pay_out(
        conn, {r["member_id"]: r["points"] for r in rows}, "lottery_refund", now
    )
    if entry_id is not None:
        await conn.execute(
            "UPDATE lottery_tickets SET refund_entry_id = $2"
            " WHERE lottery_id = $1 AND paid AND refund_entry_id IS NULL",
            lottery_id,
            entry_id,
        )
        name = await conn.fetchval("SELECT name FROM lotteries WHERE id = $1", lottery_id)
        await inbox.post_many(
            conn,
            [
                inbox.NewMessage(
                    r["member_id"],
                    "lottery_cancelled",
                    {"lottery": name, "points_refunded": int(r["points"])},
                    f"lottery:{lottery_id}:cancelled",
                )
                for r in rows
            ],
            now,
        )
    return Cancelled(lottery_id, sum(r["n"] for r in rows), sum(r["points"] for r in rows), False)


# Drawing --------------------------------------------------------------------


async def draw_lottery(pool: asyncpg.Pool, lottery_id: int, now: datetime) -> bool:
    """Draw the lottery if its draw time has passed and it has not been drawn
    or cancelled; True when this call drew it. Exactly once: the lottery row
    is locked first, and `lottery_draws` has the lottery as its primary key."""
    return await transaction(pool, lambda conn: _draw(conn, lottery_id, now))


async def _draw(conn: asyncpg.Connection, lottery_id: int, now: datetime) -> bool:
    lottery = await conn.fetchrow(
        "SELECT id, name, status, draw_at, seed, seed_sha256 FROM lotteries WHERE id = $1 FOR UPDATE",
        lottery_id,
    )
    if lottery is None or lottery["status"] in ("drawn", "cancelled") or lottery["draw_at"] > now:
        return False
    rows = await conn.fetch(
        "SELECT t.number, t.member_id, m.public_id FROM lottery_tickets t"
        " JOIN members m ON m.id = t.member_id WHERE t.lottery_id = $1 ORDER BY t.number",
        lottery_id,
    )
    prizes = await conn.fetch(
        "SELECT rank, points, voucher_text FROM lottery_prizes WHERE lottery_id = $1 ORDER BY rank",
        lottery_id,
    )
    tickets = [
        lottery_draw.DrawTicket(
            r["number"], lottery_draw.holder_tag(lottery_id, str(r["public_id"]))
        )
        for r in rows
    ]
    seed = bytes(lottery["seed"])
    wins = lottery_draw.draw_winners(seed, tickets, [p["rank"] for p in prizes])
    digest = lottery_draw.ticket_list_sha256(tickets)
    holder_of = {r["number"]: r["member_id"] for r in rows}
    prize_of = {p["rank"]: p for p in prizes}
    document = draw_json(
        lottery_id=lottery_id,
        name=lottery["name"],
        draw_at=lottery["draw_at"],
        drawn_at=now,
        seed=seed,
        tickets=tickets,
        prizes=[(p["rank"], _describe(p)) for p in prizes],
        wins=wins,
    )
    claimed = await conn.fetchval(
        "INSERT INTO lottery_draws (lottery_id, drawn_at, tickets, ticket_list_sha256, document)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING lottery_id",
        lottery_id,
        now,
        len(tickets),
        digest,
        document,
    )
    if claimed is None:
        return False
    payments: dict[int, int] = {}
    for win in wins:
        points = prize_of[win.rank]["points"]
        if points is not None:
            member_id = holder_of[win.ticket_number]
            payments[member_id] = payments.get(member_id, 0) + int(points)
    entry_id = await _pay_out(conn, payments, "lottery_prize", now)
    await conn.executemany(
        "INSERT INTO lottery_winners (lottery_id, rank, ticket_number, member_id) VALUES ($1, $2, $3, $4)",
        [(lottery_id, w.rank, w.ticket_number, holder_of[w.ticket_number]) for w in wins],
    )
    await conn.execute(
        "UPDATE lottery_draws SET entry_id = $2 WHERE lottery_id = $1", lottery_id, entry_id
    )
    await inbox.post_many(
        conn,
        [
            inbox.NewMessage(
                holder_of[w.ticket_number],
                "lottery_won",
                {"lottery": lottery["name"], "prize": _describe(prize_of[w.rank])},
                f"lottery:{lottery_id}:won:{w.rank}",
            )
            for w in wins
        ],
        now,
    )
    await conn.execute("UPDATE lotteries SET status = 'drawn' WHERE id = $1", lottery_id)
    return True


def _describe(prize: asyncpg.Record) -> str:
    return PrizeView(prize["rank"], prize["points"], prize["voucher_text"]).description


def draw_json(
    *,
    lottery_id: int,
    name: str,
    draw_at: datetime,
    drawn_at: datetime,
    seed: bytes,
    tickets: Sequence[lottery_draw.DrawTicket],
    prizes: Sequence[tuple[int, str]],
    wins: Sequence[lottery_draw.Win],
) -> bytes:
    """The published draw document (docs/lottery-draw.md): everything the
    verification script needs, and nothing that names a member."""
    holder = {t.number: t.holder for t in tickets}
    document = {
        "format": lottery_draw.DRAW_FORMAT,
        "lottery": {"id": lottery_id, "name": name, "draw_at": draw_at.isoformat()},
        "drawn_at": drawn_at.isoformat(),
        "seed_sha256": lottery_draw.seed_sha256(seed).hex(),
        "seed": seed.hex(),
        "ticket_list_sha256": lottery_draw.ticket_list_sha256(tickets).hex(),
        "tickets": [{"number": t.number, "holder": t.holder} for t in tickets],
        "prizes": [{"rank": rank, "prize": text} for rank, text in prizes],
        "winners": [
            {"rank": w.rank, "ticket_number": w.ticket_number, "holder": holder[w.ticket_number]}
            for w in wins
        ],
    }
    return json.dumps(document, indent=1, ensure_ascii=False).encode()


async def advance_and_draw(pool: asyncpg.Pool, now: datetime) -> list[int]:
    """The periodic job's work: statuses follow the clock (scheduled → selling
    → closed), then every lottery past its draw time is drawn (at most
    DRAWS_PER_RUN_MAX a run). Returns the ids this run drew."""
    await pool.execute(
        "UPDATE lotteries SET status = CASE WHEN sales_close_at <= $1 THEN 'closed' ELSE 'selling' END"
        " WHERE status IN ('scheduled', 'selling') AND sales_open_at <= $1"
        "   AND status <> CASE WHEN sales_close_at <= $1 THEN 'closed' ELSE 'selling' END",
        now,
    )
    due = await pool.fetch(
        "SELECT id FROM lotteries WHERE status NOT IN ('drawn', 'cancelled') AND draw_at <= $1"
        " ORDER BY draw_at, id LIMIT $2",
        now,
        DRAWS_PER_RUN_MAX,
    )
    return [r["id"] for r in due if await draw_lottery(pool, r["id"], now)]


# The programme's view (back-office) ----------------------------------------

ADMIN_PAGE_SIZE_MAX = 100
_EFFECTIVE_STATUS = (
    "CASE WHEN status IN ('drawn', 'cancelled') THEN status"
    " WHEN $1 < sales_open_at THEN 'scheduled' WHEN $1 < sales_close_at THEN 'selling'"
    " ELSE 'closed' END"
)


@dataclass(frozen=True, slots=True)
class AdminLotteryRow:
    id: int
    name: str
    status: str  # as a reader sees it now (`effective_status`)
    ticket_price_points: int
    tickets_per_member_max: int
    sales_open_at: datetime
    sales_close_at: datetime
    draw_at: datetime
    tickets_sold: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AdminLotteryPage:
    items: list[AdminLotteryRow]
    next_cursor: str | None


async def list_for_admin(
    db: Any, *, now: datetime, status: str | None, cursor: str | None, limit: int
) -> AdminLotteryPage:
    """Every lottery, cancelled ones too, newest first; `status` as readers see
    it now; keyset-paginated on id."""
    if not 1 <= limit <= ADMIN_PAGE_SIZE_MAX:
        raise DomainError(
            f"limit must be 1 to {ADMIN_PAGE_SIZE_MAX}", code="invalid_limit", status=400
        )
    if status is not None and status not in STATUSES:
        raise DomainError(
            f"status must be one of {', '.join(STATUSES)}", code="invalid_status", status=400
        )
    before_id = decode_cursor(cursor, whole_number)[0] if cursor is not None else None
    rows = await db.fetch(
        f"SELECT id, name, {_EFFECTIVE_STATUS} AS status, ticket_price_points,"
        " tickets_per_member_max, sales_open_at, sales_close_at, draw_at, tickets_sold, created_at"
        " FROM lotteries"
        f" WHERE ($2::text IS NULL OR {_EFFECTIVE_STATUS} = $2)"
        " AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        now,
        status,
        before_id,
        limit + 1,
    )
    items = [AdminLotteryRow(**dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return AdminLotteryPage(items, encode_cursor(items[-1].id) if more else None)


@dataclass(frozen=True, slots=True)
class TicketRow:
    number: int
    member_public_id: str
    holder: str  # the draw document's pseudonymous tag
    paid: bool
    price_points: int
    bought_at: datetime
    refunded: bool
    won_rank: int | None


async def tickets_after(db: Any, lottery_id: int, after_number: int, limit: int) -> list[TicketRow]:
    """A lottery's tickets in number order after `after_number` (for exports)."""
    rows = await db.fetch(
        "SELECT t.number, m.public_id::text AS member_public_id, t.paid, t.price_points,"
        " t.bought_at, t.refund_entry_id IS NOT NULL AS refunded, w.rank AS won_rank"
        " FROM lottery_tickets t JOIN members m ON m.id = t.member_id"
        " LEFT JOIN lottery_winners w ON w.lottery_id = t.lottery_id"
        "   AND w.ticket_number = t.number"
        " WHERE t.lottery_id = $1 AND t.number > $2 ORDER BY t.number LIMIT $3",
        lottery_id,
        after_number,
        limit,
    )
    return [
        TicketRow(holder=lottery_draw.holder_tag(lottery_id, r["member_public_id"]), **dict(r))
        for r in rows
    ]


async def check_drawable(db: Any, lottery_id: int, now: datetime) -> None:
    """Refuse a draw that `draw_lottery` would not make, with the reason:
    `lottery_not_found` (404), `lottery_already_drawn`, `lottery_cancelled`,
    `lottery_draw_not_due` (409)."""
    row = await db.fetchrow("SELECT status, draw_at FROM lotteries WHERE id = $1", lottery_id)
    if row is None:
        raise NotFound("there is no such lottery", code="lottery_not_found")
    if row["status"] == "drawn":
        raise Conflict("this lottery has been drawn", code="lottery_already_drawn")
    if row["status"] == "cancelled":
        raise Conflict("this lottery was cancelled", code="lottery_cancelled")
    if row["draw_at"] > now:
        raise Conflict(
            f"the draw is due at {row['draw_at'].isoformat()}, not before",
            code="lottery_draw_not_due",
        )


async def draw_lottery_on(conn: asyncpg.Connection, lottery_id: int, now: datetime) -> bool:
    """`draw_lottery` inside the caller's transaction (e.g. with an audit row)."""
    return await _draw(conn, lottery_id, now)
