"""`kring demo`: a believable coalition with a year of history.

Six partners with their own terms (all but one with bank details), a few
hundred members with their own habits, and a year of purchases, payments with
points, returns, releases and expiries, all written through the partner API's
service functions, so the ledger is exactly what a year of real traffic would
have left; then every ended day of the demo year is settled (the first run
also carries the launch weeks), so statements and payouts exist as the
settlement job would have left them.

Seeding is idempotent: when the demo partners exist, `seed_demo` writes
nothing and returns the summary again (a history that failed half-way is
not retried; the summary says so). A PostgreSQL advisory lock makes two
processes started with `--demo` at once seed it only once.
"""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from api.admin_auth.accounts import create_admin
from api.admin_auth.principal import ROLES
from api.coalition.members import Member, create_member
from api.coalition.partners import Credentials, create_partner
from api.db.pool import create_pool, transaction
from api.demo.cast import PARTNERS, draw_people, partner_joined_at, year_start_of
from api.demo.credentials import (
    LOCAL_API_URL,
    AdminCredentials,
    DemoCredentials,
    DemoStats,
    PartnerCredentials,
    SampleMember,
    credentials_path,
    read_credentials,
    render_summary,
    write_credentials,
)
from api.demo.giving import Giving
from api.demo.history import Shopper, Tills, Year
from api.partner_api.auth import PartnerPrincipal
from api.portal.staff import create_staff
from api.settlement.payouts import payouts_for_run
from api.vip import benefits as vip_benefits

__all__ = ["DEMO_CODES", "seed_demo"]

DEMO_CODES = [p.code for p in PARTNERS]
DEMO_CONNECTIONS = 8
_LOCK_KEY = "kring-demo-seed"


async def seed_demo(
    database_url: str,
    *,
    data_dir: Path | None = None,
    members: int = 300,
    seed: int = 7,
    api_url: str | None = None,
) -> str:
    """Create the demo coalition unless it exists; return the summary to print.

    `api_url` (e.g. http://127.0.0.1:8123/partner/v1) goes into the printed
    curl examples; the default is the default port."""
    path = credentials_path(data_dir) if data_dir is not None else None
    lock = await asyncpg.connect(database_url)
    try:
        await lock.execute("SELECT pg_advisory_lock(hashtext($1))", _LOCK_KEY)
        pool = await create_pool(_without_commit_wait(database_url), max_size=DEMO_CONNECTIONS)
        try:
            exists = await pool.fetchval(
                "SELECT EXISTS (SELECT FROM partners WHERE code = ANY($1::text[]))", DEMO_CODES
            )
            if exists:
                credentials = read_credentials(path) if path is not None else None
                return render_summary(
                    await _stats(pool),
                    created=False,
                    path=path,
                    credentials=credentials,
                    api_url=api_url,
                )
            credentials = await _create(pool, path, members=members, seed=seed)
            return render_summary(
                await _stats(pool),
                created=True,
                path=path,
                credentials=credentials,
                api_url=api_url,
            )
        finally:
            await pool.close()
    finally:
        await lock.close()  # ends the session, and with it the advisory lock


def _admin_email(role: str) -> str:
    return f"{role}@kring.example"


def _portal_email(code: str) -> str:
    return f"manager@{code}.example"


def _without_commit_wait(database_url: str) -> str:
    """The URL with `synchronous_commit=off` for these sessions only (asyncpg
    passes unknown URL parameters on as server settings). Each commit then
    returns before its WAL reaches the disk, which makes the year's ~20,000
    small transactions load markedly faster; a crash could lose the last
    moments of the seeding, never leave the ledger inconsistent."""
    separator = "&" if "?" in database_url else "?"
    return f"{database_url}{separator}synchronous_commit=off"


async def _create(
    pool: asyncpg.Pool, path: Path | None, *, members: int, seed: int
) -> DemoCredentials:
    end = datetime.now(UTC)
    rng = random.Random(seed)
    people = draw_people(rng, members, end)
    # Random, not seeded: the demo's passwords should not be guessable from the code.
    portal_passwords = {p.code: secrets.token_urlsafe(12) for p in PARTNERS}
    admin_passwords = {role: secrets.token_urlsafe(12) for role in ROLES}

    async def cast(
        conn: asyncpg.Connection,
    ) -> tuple[dict[str, Credentials], list[Member], list[AdminCredentials]]:
        partners = {
            p.code: await create_partner(conn, p.new_partner(), now=partner_joined_at(p, end))
            for p in PARTNERS
        }
        for p in PARTNERS:
            await create_staff(
                conn,
                partner_code=p.code,
                email=_portal_email(p.code),
                display_name=f"{p.name} manager",
                password=portal_passwords[p.code],
                role="manager",
                now=partner_joined_at(p, end),
            )
        cards = [
            await create_member(
                conn, now=person.joined_at, email=person.email, display_name=person.display_name
            )
            for person in people
        ]
        admins = []
        for role in ROLES:
            created = await create_admin(
                conn,
                email=_admin_email(role),
                role=role,
                password=admin_passwords[role],
                now=year_start_of(end),
            )
            admins.append(
                AdminCredentials(
                    email=created.principal.email,
                    role=role,
                    password=admin_passwords[role],
                    totp_uri=created.totp_uri,
                    recovery_codes=created.recovery_codes,
                )
            )
        return partners, cards, admins

    partners, cards, admins = await transaction(pool, cast)
    credentials = DemoCredentials(
        created_at=end,
        api_url=LOCAL_API_URL,
        partners=[
            PartnerCredentials(
                code=p.code,
                name=p.name,
                kind=p.kind,
                earn_rate_millipoints_per_euro=p.earn_rate_millipoints_per_euro,
                return_window_days=p.return_window_days,
                client_id=partners[p.code].client_id,
                client_secret=partners[p.code].client_secret,
                portal_email=_portal_email(p.code),
                portal_password=portal_passwords[p.code],
            )
            for p in PARTNERS
        ],
        admins=admins,
    )
    # The secrets exist only now: keep them before the long part, so that
    # a failure in the history still leaves working credentials behind.
    if path is not None:
        write_credentials(path, credentials)

    shoppers = [
        Shopper(person, member.card_number, member.id, random.Random(person.seed))
        for person, member in zip(people, cards, strict=True)
    ]
    principals = {
        code: PartnerPrincipal(c.partner_id, c.partner_public_id) for code, c in partners.items()
    }
    giving = Giving(
        pool,
        [
            (
                s.member_id,
                s.person.joined_at,
                s.person.seed,
                not (s.person.debtor or s.person.dormant),
                s.person.rhythm == "frequent",
            )
            for s in shoppers
        ],
        {code: c.partner_id for code, c in partners.items()},
        year_start_of(end),
        end,
        random.Random(seed),
    )
    await Year(pool, Tills(pool, principals), shoppers, end, giving).run()

    credentials.sample_members = await _sample_members(pool, shoppers, end)
    if path is not None:
        write_credentials(path, credentials)
    return credentials


async def _sample_members(
    pool: asyncpg.Pool, shoppers: list[Shopper], end: datetime
) -> list[SampleMember]:
    """A handful of cards worth looking at, each in a different state; the
    VIP ones say so (and one VIP member is among them)."""
    rows = await pool.fetch(
        """
        SELECT m.id,
               max(a.balance) FILTER (WHERE a.kind = 'member_available') AS available,
               max(a.balance) FILTER (WHERE a.kind = 'member_pending') AS pending,
               max(a.balance) FILTER (WHERE a.kind = 'member_held') AS held,
               max(a.balance) FILTER (WHERE a.kind = 'member_debt') AS debt
        FROM members m JOIN accounts a ON a.member_id = m.id
        WHERE m.id = ANY($1::bigint[])
        GROUP BY m.id ORDER BY m.id
        """,
        [s.member_id for s in shoppers],
    )
    balances = {r["id"]: r for r in rows}
    by_id = {s.member_id: s for s in shoppers}
    picks: list[tuple[int, str]] = []

    def pick(member_id: int | None, note: str) -> None:
        if member_id is not None and member_id not in (m for m, _ in picks):
            picks.append((member_id, note))

    def first(candidates: list[int]) -> int | None:
        return candidates[0] if candidates else None

    regulars = sorted(
        (s for s in shoppers if s.person.rhythm == "frequent" and not s.person.debtor),
        key=lambda s: (-balances[s.member_id]["available"], s.member_id),
    )
    pick(first([s.member_id for s in regulars]), "frequent shopper, many points to spend")
    pick(first([m for m, r in balances.items() if r["held"] > 0]), "has points on hold right now")
    pick(first([m for m, r in balances.items() if r["debt"] < 0]), "owes points after a refund")
    newest = max(shoppers, key=lambda s: s.person.joined_at)
    pick(newest.member_id, "joined most recently")
    pick(
        first([s.member_id for s in shoppers if s.person.dormant]),
        "launch customer gone quiet; their points expired",
    )

    vip = {
        r["member_id"]: r["plan"]
        for r in await pool.fetch(
            "SELECT s.member_id, p.name AS plan FROM vip_subscriptions s"
            " JOIN vip_plans p ON p.code = s.plan_code"
            " WHERE s.status = 'active' AND s.member_id = ANY($1::bigint[])"
            " ORDER BY s.member_id",
            [s.member_id for s in shoppers],
        )
        if await vip_benefits.vip_multiplier(pool, r["member_id"], end) is not None
    }
    vip_pick = None
    if vip and not any(member_id in vip for member_id, _ in picks):
        vip_pick = min(vip)
        pick(vip_pick, f"VIP member ({vip[vip_pick]}): x1.5 points and a monthly bonus")

    samples = []
    for member_id, note in picks:
        if member_id in vip and member_id != vip_pick:
            note = f"{note}; VIP ({vip[member_id]})"
        shopper, r = by_id[member_id], balances[member_id]
        detail = f"{r['available']} available, {r['pending']} pending"
        if r["held"]:
            detail += f", {r['held']} held"
        if r["debt"]:
            detail += f", {-r['debt']} owed"
        samples.append(
            SampleMember(
                card_number=shopper.card_number,
                display_name=shopper.person.display_name,
                email=shopper.person.email,
                note=f"{note} ({detail})",
            )
        )
    return samples


async def _stats(pool: asyncpg.Pool) -> DemoStats:
    row = await pool.fetchrow(
        """
        WITH demo AS (
            SELECT t.kind, t.status, t.created_at FROM transactions t
            JOIN partners p ON p.id = t.partner_id WHERE p.code = ANY($1::text[])
        ),
        span AS (SELECT min(created_at) AS launch_at, max(created_at) AS last_at FROM demo)
        SELECT (SELECT count(*) FROM partners WHERE code = ANY($1::text[])) AS partners,
               (SELECT count(*) FROM members) AS members,
               (SELECT count(*) FROM accounts
                WHERE kind = 'member_debt' AND balance < 0) AS in_debt,
               (SELECT balance FROM accounts WHERE kind = 'programme_breakage') AS expired,
               (SELECT count(*) FROM demo WHERE status = 'authorized') AS open_holds,
               (SELECT min(created_at) FROM demo, span
                WHERE created_at > span.last_at - interval '366 days') AS daily_from,
               span.launch_at, span.last_at
        FROM span
        """,
        DEMO_CODES,
    )
    counts = await pool.fetch(
        "SELECT t.kind, count(*) AS n FROM transactions t JOIN partners p ON p.id = t.partner_id"
        " WHERE p.code = ANY($1::text[]) GROUP BY t.kind",
        DEMO_CODES,
    )
    settled = await pool.fetchrow(
        "SELECT count(*) AS days, max(business_date) AS last,"
        " (SELECT count(*) FROM statements) AS statements FROM settlement_runs"
    )
    run = await payouts_for_run(pool, settled["last"]) if settled["last"] is not None else None
    without_iban = await pool.fetch(
        "SELECT code FROM partners WHERE code = ANY($1::text[]) AND iban IS NULL ORDER BY code",
        DEMO_CODES,
    )
    giving = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM charities) AS charities,"
        " (SELECT count(*) FROM donations) AS donations,"
        " (SELECT coalesce(sum(points), 0)::bigint FROM donations) AS donated,"
        " (SELECT coalesce(sum(matched_points), 0)::bigint FROM donations) AS matched,"
        " (SELECT count(*) FROM monthly_donations WHERE active) AS monthly,"
        " (SELECT count(*) FROM vip_subscriptions WHERE status = 'active') AS vip"
    )
    return DemoStats(
        charities=giving["charities"],
        donations=giving["donations"],
        donated_points=giving["donated"],
        matched_points=giving["matched"],
        monthly_orders=giving["monthly"],
        vip_members=giving["vip"],
        partners=row["partners"],
        members=row["members"],
        transactions={r["kind"]: r["n"] for r in counts},
        launch_at=row["launch_at"],
        daily_from=row["daily_from"],
        last_at=row["last_at"],
        open_holds=row["open_holds"],
        members_in_debt=row["in_debt"],
        expired_points=row["expired"],
        settled_days=settled["days"],
        statements=settled["statements"],
        last_settled=settled["last"],
        payouts=len(run.payouts) if run else 0,
        payout_cents=run.payout_cents if run else 0,
        flagged=len(run.flagged) if run else 0,
        flagged_cents=run.flagged_cents if run else 0,
        partners_without_iban=[r["code"] for r in without_iban],
    )
