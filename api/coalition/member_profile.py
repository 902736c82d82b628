"""What a member changes about themselves: profile and preferences, the
post-purchase survey, a copy of their data, and deleting their account.

Repeats are harmless by construction, so these writes need no idempotency key:

- `update_profile` sets values (it never adds or toggles): sending the same
  change twice leaves the same profile.
- `answer_survey` is unique per transaction (`member_surveys.transaction_id`):
  a repeat is `survey_already_answered` (409) and changes nothing.
- `delete_account` is idempotent: a closed account stays closed, and a second
  call returns the first closure's figures without moving a point.

Deleting an account forfeits the member's available and pending points to the
programme's breakage in one balanced journal entry (see `delete_account`).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from api.coalition.member_views import SURVEY_WINDOW_DAYS
from api.db.pool import transaction
from api.db.sql import Query
from api.errors import Conflict, DomainError, NotFound
from api.ledger.accounts import lock_member, programme_account
from api.ledger.entries import ENTRY_CTES, ENTRY_RESULT, Postings, entry_params, require_moved
from api.ledger.idempotency import go_cte
from api.vip import subscriptions as vip_subscriptions

DISPLAY_NAME_LENGTH_MAX = 100
SALUTATION_LENGTH_MAX = 50
SURVEY_COMMENT_LENGTH_MAX = 1000
SURVEY_SCORE_MAX = 10
EXPORT_TRANSACTIONS_MAX = 100_000  # far above any member's history; bounds the document
ACCOUNT_DELETION_CONFIRMATION = "delete-my-account"
# A closed account's points go to breakage like expired ones (the lots to 0,
# recorded in `lot_expiries`), under their own kind so the journal says why;
# settlement values both at the lots' prices (api/settlement/run.py,
# _VALUATION). The entry carries the member's id; `member_closures.entry_id`
# names it.
FORFEIT_ENTRY_KIND = "forfeit"


def _clean_text(value: str, field: str, length_max: int) -> str | None:
    """Strip; refuse control characters and over-long text; empty means none."""
    text = value.strip()
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") and ch not in "\n" for ch in text):
        raise DomainError(f"{field} contains control characters", code=f"invalid_{field}")
    if len(text) > length_max:
        raise DomainError(f"{field} is at most {length_max} characters", code=f"invalid_{field}")
    return text or None


@dataclass(frozen=True, slots=True)
class Profile:
    public_id: UUID
    card_number: str
    email: str | None
    display_name: str | None
    salutation: str | None  # how to address the member, free text ("Ms", "they/them", ...)
    email_news: bool
    expiry_reminders: bool  # e-mail before points expire
    status: str


@dataclass(frozen=True, slots=True)
class ProfileChanges:
    """None leaves a field as it is; an empty string clears a text field."""

    display_name: str | None = None
    salutation: str | None = None
    email_news: bool | None = None
    expiry_reminders: bool | None = None

    def validated(self) -> ProfileChanges:
        def single_line(value: str | None, field: str, length_max: int) -> str | None:
            if value is None:
                return None
            if "\n" in value:
                raise DomainError(f"{field} is one line", code=f"invalid_{field}")
            return _clean_text(value, field, length_max) or ""

        return ProfileChanges(
            display_name=single_line(self.display_name, "display_name", DISPLAY_NAME_LENGTH_MAX),
            salutation=single_line(self.salutation, "salutation", SALUTATION_LENGTH_MAX),
            email_news=self.email_news,
            expiry_reminders=self.expiry_reminders,
        )


_PROFILE_COLUMNS = """
    public_id, card_number, email, display_name, salutation, email_news, expiry_reminders, status
"""


async def get_profile(pool: asyncpg.Pool | asyncpg.Connection, member_id: int) -> Profile | None:
    row = await pool.fetchrow(f"SELECT {_PROFILE_COLUMNS} FROM members WHERE id = $1", member_id)
    return None if row is None else Profile(**dict(row))


async def update_profile(
    pool: asyncpg.Pool | asyncpg.Connection, member_id: int, changes: ProfileChanges
) -> Profile:
    """Set the given fields (one statement); naturally idempotent (see module doc)."""
    clean = changes.validated()
    row = await pool.fetchrow(
        f"""
        UPDATE members SET
            display_name = CASE WHEN $2::text IS NULL THEN display_name ELSE nullif($2, '') END,
            salutation = CASE WHEN $3::text IS NULL THEN salutation ELSE nullif($3, '') END,
            email_news = coalesce($4, email_news),
            expiry_reminders = coalesce($5, expiry_reminders)
        WHERE id = $1 AND status = 'active'
        RETURNING {_PROFILE_COLUMNS}
        """,
        member_id,
        clean.display_name,
        clean.salutation,
        clean.email_news,
        clean.expiry_reminders,
    )
    if row is None:
        raise NotFound("no such member", code="member_not_found")
    return Profile(**dict(row))


@dataclass(frozen=True, slots=True)
class SurveyAnswer:
    transaction_id: UUID
    score: int
    comment: str | None
    answered_at: datetime


_ANSWER = """
INSERT INTO member_surveys (transaction_id, member_id, partner_id, score, comment, answered_at)
SELECT t.id, t.member_id, t.partner_id, $3, $4, $5
FROM transactions t JOIN members m ON m.id = t.member_id
WHERE t.id = $1 AND t.member_id = $2 AND t.kind = 'earn' AND m.status = 'active'
  AND t.occurred_at >= $5::timestamptz - $6::interval
ON CONFLICT (transaction_id) DO NOTHING
RETURNING transaction_id, score, comment, answered_at
"""

# Why an answer was not stored: one row (or none: not this member's).
_WHY_NOT = """
SELECT t.kind, t.occurred_at, m.status,
       EXISTS (SELECT FROM member_surveys s WHERE s.transaction_id = t.id) AS answered
FROM transactions t JOIN members m ON m.id = t.member_id
WHERE t.id = $1 AND t.member_id = $2
"""


async def answer_survey(
    pool: asyncpg.Pool | asyncpg.Connection,
    member_id: int,
    transaction_id: UUID,
    *,
    score: int,
    comment: str | None,
    now: datetime,
) -> SurveyAnswer:
    """Store a 0-10 "would you recommend" score (and an optional comment) for
    one of the member's own purchases, within SURVEY_WINDOW_DAYS of it, once.

    The unique key on the transaction is the idempotency: a repeat (or a race
    of two) stores one answer; the other gets `survey_already_answered`."""
    if isinstance(score, bool) or not 0 <= score <= SURVEY_SCORE_MAX:
        raise DomainError(f"score must be 0 to {SURVEY_SCORE_MAX}", code="invalid_score")
    text = None if comment is None else _clean_text(comment, "comment", SURVEY_COMMENT_LENGTH_MAX)
    row = await pool.fetchrow(
        _ANSWER,
        transaction_id,
        member_id,
        score,
        text,
        now,
        timedelta(days=SURVEY_WINDOW_DAYS),
    )
    if row is not None:
        return SurveyAnswer(**dict(row))
    why = await pool.fetchrow(_WHY_NOT, transaction_id, member_id)
    if why is None:
        raise NotFound("no such transaction", code="transaction_not_found")
    if why["status"] != "active":
        raise DomainError("this member's account is closed", code="member_closed", status=403)
    if why["kind"] != "earn":
        raise DomainError("only purchases can be rated", code="survey_not_applicable")
    if why["answered"]:
        raise Conflict("this purchase has been rated already", code="survey_already_answered")
    raise DomainError(f"purchases can be rated for {SURVEY_WINDOW_DAYS} days", code="survey_closed")


async def export_member_data(
    pool: asyncpg.Pool | asyncpg.Connection, member_id: int
) -> dict[str, Any] | None:
    """Everything Kring holds on the member, as one JSON-ready document
    (a few queries): profile and card, balances, transactions, survey answers,
    VIP subscriptions, donations and monthly donation orders."""
    member = await pool.fetchrow(
        f"""
        SELECT {_PROFILE_COLUMNS}, m.created_at, m.closed_at,
               coalesce(jsonb_object_agg(a.kind, a.balance) FILTER (WHERE a.id IS NOT NULL),
                        '{{}}') AS balances
        FROM members m LEFT JOIN accounts a ON a.member_id = m.id
        WHERE m.id = $1 GROUP BY m.id
        """,
        member_id,
    )
    if member is None:
        return None
    transactions = await pool.fetch(
        """
        SELECT t.id, p.code AS partner_code, coalesce(p.name, t.memo) AS partner_name,
               t.kind, t.status,
               t.amount_cents, t.currency, t.points, t.points_captured, t.points_refunded,
               t.amount_refunded_cents, t.debt_points, t.debt_repaid_points, t.receipt_ref,
               t.store_id, t.original_id, t.occurred_at, t.created_at, t.available_at,
               t.finished_at
        FROM transactions t LEFT JOIN partners p ON p.id = t.partner_id
        WHERE t.member_id = $1 ORDER BY t.created_at, t.id LIMIT $2
        """,
        member_id,
        EXPORT_TRANSACTIONS_MAX,
    )
    surveys = await pool.fetch(
        "SELECT s.transaction_id, p.code AS partner_code, s.score, s.comment, s.answered_at"
        " FROM member_surveys s JOIN partners p ON p.id = s.partner_id"
        " WHERE s.member_id = $1 ORDER BY s.answered_at, s.id",
        member_id,
    )
    vip = await vip_subscriptions.export_rows(pool, member_id)
    donations = await pool.fetch(
        "SELECT c.name AS charity, d.points, d.matched_points, d.created_at,"
        " d.monthly_id IS NOT NULL AS monthly"
        " FROM donations d JOIN charities c ON c.id = d.charity_id"
        " WHERE d.member_id = $1 ORDER BY d.created_at, d.id",
        member_id,
    )
    monthly = await pool.fetch(
        "SELECT c.name AS charity, o.points, o.active, o.next_run_on, o.last_outcome"
        " FROM monthly_donations o JOIN charities c ON c.id = o.charity_id"
        " WHERE o.member_id = $1 ORDER BY o.id",
        member_id,
    )
    balances = json.loads(member["balances"]) if isinstance(member["balances"], str) else {}
    return {
        "member": {
            "id": str(member["public_id"]),
            "email": member["email"],
            "display_name": member["display_name"],
            "salutation": member["salutation"],
            "status": member["status"],
            "joined_at": member["created_at"].isoformat(),
            "closed_at": _iso(member["closed_at"]),
        },
        "preferences": {
            "email_news": member["email_news"],
            "expiry_reminders": member["expiry_reminders"],
        },
        "card": {"number": member["card_number"]},
        "balances_points": {
            "available": balances.get("member_available", 0),
            "pending": balances.get("member_pending", 0),
            "held": balances.get("member_held", 0),
            "debt": -balances.get("member_debt", 0),
        },
        "transactions": [_jsonable(dict(t)) for t in transactions],
        "surveys": [_jsonable(dict(s)) for s in surveys],
        "vip_subscriptions": vip,
        "donations": [_jsonable(dict(d)) for d in donations],
        "monthly_donations": [_jsonable(dict(o)) for o in monthly],
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, date):  # datetimes too
            out[key] = value.isoformat()
        elif isinstance(value, UUID):
            out[key] = str(value)
        elif isinstance(value, str):
            out[key] = value.strip() if key == "currency" else value
        else:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class Closure:
    closed_at: datetime
    forfeited_available_points: int
    forfeited_pending_points: int
    debt_points: int  # abandoned with the account (see delete_account)
    entry_id: int | None  # the forfeit's journal entry; None when nothing was forfeited


_FORFEIT = Query(f"WITH {go_cte(False)}, {ENTRY_CTES} SELECT {ENTRY_RESULT}")


async def delete_account(
    pool: asyncpg.Pool, member_id: int, *, confirmation: str, now: datetime
) -> Closure:
    """Close the account for good, in one transaction:

    1. lock the member's accounts (the ledger's lock order); refuse with
       `burn_authorization_open` (409) while a burn authorization holds
       points: a partner may still capture it, so nothing is released here;
    2. forfeit available and pending points to `programme_breakage` in one
       balanced entry; every lot with points left goes to 0 and is recorded in
       `lot_expiries`, so settlement recognises the breakage at the lots'
       issuance prices, exactly as for expired points;
    3. debt is written off by abandoning it with the account: it stays on the
       closed member's debt account, which no earn can reach any more (the card
       is gone), and `member_closures.debt_points` records it. The loss was
       already booked when the refund gave the partner its points back (the
       float holds that much less), so the float still equals the liability and
       `kring ledger check` stays clean; moving it to zero would need settlement
       to value a write-off entry, which it does not (yet);
    4. erase personal data: e-mail, names, preferences, survey comments,
       sign-in codes, sessions and mail to the address; the card number is
       replaced by a closed one (never issued: issued cards start 6048) and the
       public id renewed, so neither can be linked to the person. Transactions
       stay, anonymous, because partners' statements reference them.

    Idempotent: a closed account returns its first closure and moves nothing."""
    if confirmation != ACCOUNT_DELETION_CONFIRMATION:
        raise DomainError(
            f"to delete the account, confirm with {ACCOUNT_DELETION_CONFIRMATION!r}",
            code="confirmation_required",
        )
    return await transaction(pool, lambda conn: _delete(conn, member_id, now))


async def delete_account_on(conn: asyncpg.Connection, member_id: int, *, now: datetime) -> Closure:
    """`delete_account` in the caller's transaction, for a caller that writes
    its own record of it there (the back-office's audit row)."""
    return await _delete(conn, member_id, now)


async def _delete(conn: asyncpg.Connection, member_id: int, now: datetime) -> Closure:
    member = await lock_member(conn, member_id)
    if member is None:
        raise NotFound("no such member", code="member_not_found")
    if member.status == "closed":
        done = await conn.fetchrow(
            "SELECT closed_at, available_points, pending_points, debt_points, entry_id"
            " FROM member_closures WHERE member_id = $1",
            member_id,
        )
        if done is None:
            raise Conflict("this account was closed by the programme", code="member_closed")
        return Closure(
            done["closed_at"],
            done["available_points"],
            done["pending_points"],
            done["debt_points"],
            done["entry_id"],
        )
    if member.held > 0:
        raise Conflict(
            "a partner holds points for a purchase that is not finished; try again once it"
            " is captured or voided",
            code="burn_authorization_open",
        )
    entry_id = None
    if member.available or member.pending:
        breakage_id = await programme_account(conn, "programme_breakage")
        postings = (
            Postings(first=frozenset(member.account_ids))
            .move(member.available_id, breakage_id, member.available)
            .move(member.pending_id, breakage_id, member.pending)
        )
        row = await conn.fetchrow(
            _FORFEIT.text,
            *_FORFEIT.args(
                entry_params(postings, kind=FORFEIT_ENTRY_KIND, booked_at=now, member_id=member_id)
            ),
        )
        require_moved(row, postings)
        entry_id = int(row["entry_id"])
        # Under the member's lock the lots add up to the balances just moved.
        emptied = await conn.fetchval(
            """
            WITH emptied AS (
                UPDATE lots l SET points_remaining = 0
                FROM lots old
                WHERE l.id = old.id AND l.member_id = $1 AND l.points_remaining > 0
                RETURNING l.id, old.points_remaining AS points
            ),
            traced AS (
                INSERT INTO lot_expiries (entry_id, lot_id, points)
                SELECT $2, id, points FROM emptied
            )
            SELECT coalesce(sum(points), 0)::bigint FROM emptied
            """,
            member_id,
            entry_id,
        )
        if emptied != member.available + member.pending:
            raise AssertionError(f"lots held {emptied} points, balances {member.available}")
    closed_card = f"0000{member_id:012d}"
    email = await conn.fetchval("SELECT email FROM members WHERE id = $1", member_id)
    await conn.execute(
        """
        UPDATE members SET status = 'closed', closed_at = $2, email = NULL, display_name = NULL,
               salutation = NULL, email_news = false, expiry_reminders = false,
               card_number = $3, public_id = gen_random_uuid()
        WHERE id = $1
        """,
        member_id,
        now,
        closed_card,
    )
    await conn.execute(
        "UPDATE member_surveys SET comment = NULL WHERE member_id = $1 AND comment IS NOT NULL",
        member_id,
    )
    await conn.execute(
        "UPDATE member_sessions SET revoked_at = $2 WHERE member_id = $1 AND revoked_at IS NULL",
        member_id,
        now,
    )
    # The inbox and the referral code go with the account (messages name
    # challenges, lotteries and amounts: the member's history, not ours to keep).
    await conn.execute("DELETE FROM inbox_messages WHERE member_id = $1", member_id)
    await conn.execute("DELETE FROM referral_codes WHERE member_id = $1", member_id)
    await vip_subscriptions.end_for_closed_account(conn, member_id, now)
    if email is not None:
        await conn.execute("DELETE FROM sign_in_codes WHERE email = lower($1)", email)
        await conn.execute("DELETE FROM mail_outbox WHERE lower(to_address) = lower($1)", email)
    await conn.execute(
        "INSERT INTO member_closures"
        " (member_id, closed_at, entry_id, available_points, pending_points, debt_points)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        member_id,
        now,
        entry_id,
        member.available,
        member.pending,
        -member.debt,
    )
    return Closure(now, member.available, member.pending, -member.debt, entry_id)
