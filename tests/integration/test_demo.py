"""`kring demo`: a believable coalition with a year of history, written through
the partner API's services (the module's ledger check runs at teardown),
settled day by day, seeded once however often it is called, with credentials
that work."""

from __future__ import annotations

import json
import random
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from schwifty import IBAN

from api.admin_auth import accounts as admin_accounts
from api.admin_auth.principal import ROLES
from api.charity.charities import list_charities
from api.charity.matching import list_campaigns
from api.coalition.partners import verify_credentials
from api.demo import DEMO_CODES, seed_demo
from api.demo.cast import draw_people
from api.demo.credentials import CREDENTIALS_FILE
from api.ledger.check import check_ledger
from api.portal.staff import authenticate
from api.settlement.payouts import payouts_for_run
from api.settlement.periods import business_date, last_due_day
from api.vip.benefits import vip_multiplier

MEMBERS = 40
TABLES = (
    "partners",
    "partner_credentials",
    "members",
    "accounts",
    "transactions",
    "journal_entries",
    "postings",
    "lots",
    "hold_lots",
    "idempotency_keys",
    "charities",
    "matching_campaigns",
    "donations",
    "monthly_donations",
    "vip_subscriptions",
    "payments",
)


@pytest.fixture(scope="module")
async def demo(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    data_dir = tmp_path_factory.mktemp("demo")
    summary = await seed_demo(database_url, data_dir=data_dir, members=MEMBERS)
    return summary, data_dir


async def test_partners_have_distinct_kinds_and_their_own_terms(demo, pool):
    rows = await pool.fetch(
        "SELECT code, kind, earn_rate_millipoints_per_euro AS rate, return_window_days AS window"
        " FROM partners WHERE code = ANY($1::text[])",
        DEMO_CODES,
    )
    partners = {r["code"]: r for r in rows}
    assert len(partners) >= 5
    assert len({r["kind"] for r in rows}) == len(rows)
    assert all(code.islower() and " " not in code for code in partners)
    assert (partners["versmarkt"]["rate"], partners["versmarkt"]["window"]) == (1_000, 14)
    assert partners["tankpunt"]["rate"] < 1_000 and partners["tankpunt"]["window"] <= 2
    assert partners["cinema-lumiere"]["rate"] == 2_000
    assert partners["stijl-online"]["window"] == 30


async def test_members_have_names_mail_and_joined_over_the_year(demo, pool):
    rows = await pool.fetch("SELECT email, display_name, created_at FROM members")
    assert len(rows) == MEMBERS
    assert len({r["email"] for r in rows}) == MEMBERS
    assert all(r["email"].endswith(("@example.org", "@example.nl")) for r in rows)
    assert all(r["display_name"] and " " in r["display_name"] for r in rows)
    year_ago = datetime.now(UTC) - timedelta(days=365)
    join_months = {r["created_at"].strftime("%Y-%m") for r in rows if r["created_at"] > year_ago}
    assert len(join_months) >= 6


async def test_history_covers_the_last_year_day_by_day(demo, pool):
    now = datetime.now(UTC)
    first, last = await pool.fetchrow("SELECT min(created_at), max(created_at) FROM transactions")
    assert now - timedelta(hours=1) < last <= now
    # The launch customers' first purchases, years ago, are the oldest.
    assert now - timedelta(days=42 * 31) < first < now - timedelta(days=39 * 30)
    months = await pool.fetchval(
        "SELECT count(DISTINCT date_trunc('month', created_at)) FROM transactions"
        " WHERE created_at > $1",
        now - timedelta(days=365),
    )
    assert months >= 12
    # Members shop at several partners, some at just one.
    spread = await pool.fetch(
        "SELECT count(DISTINCT partner_id) AS n FROM transactions WHERE kind = 'earn'"
        " GROUP BY member_id"
    )
    assert max(r["n"] for r in spread) >= 3


async def test_every_state_of_the_ledger_shows(demo, pool):
    states = {
        (r["kind"], r["status"])
        for r in await pool.fetch("SELECT DISTINCT kind, status FROM transactions")
    }
    assert {
        ("earn", "pending"),
        ("earn", "available"),
        ("burn", "captured"),
        ("burn", "voided"),
        ("burn", "expired"),  # holds left to lapse
        ("burn", "authorized"),  # open right now
        ("refund", "completed"),
    } <= states
    refunds = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE amount_refunded_cents = amount_cents) AS full,"
        "       count(*) FILTER (WHERE amount_refunded_cents < amount_cents) AS part"
        " FROM transactions WHERE kind = 'earn' AND amount_refunded_cents > 0"
    )
    assert refunds["full"] > 0 and refunds["part"] > 0
    partial_captures = await pool.fetchval(
        "SELECT count(*) FROM transactions"
        " WHERE kind = 'burn' AND status = 'captured' AND points_captured < points"
    )
    assert partial_captures > 0
    entries = dict(await pool.fetch("SELECT kind, count(*) FROM journal_entries GROUP BY kind"))
    assert entries.keys() >= {"earn", "release", "authorize", "capture", "void", "refund", "expire"}
    expired_lots = await pool.fetchval(
        "SELECT count(*) FROM lots WHERE state = 'available' AND expires_at <= now()"
        " AND points_remaining = 0"
    )
    assert expired_lots > 0
    assert await pool.fetchval("SELECT balance FROM accounts WHERE kind = 'programme_breakage'") > 0
    in_debt = await pool.fetchval(
        "SELECT count(*) FROM accounts WHERE kind = 'member_debt' AND balance < 0"
    )
    assert in_debt >= 1


async def test_every_till_write_went_through_the_partner_api_services(demo, pool):
    # Each request stores its idempotency key: one per earn, refund and burn
    # (a one-step burn captures in the same request), one more per capture or
    # void sent later. Holds that lapsed were voided by the nightly job, keyless;
    # the VIP monthly bonuses are rewards the nightly job pays, keyless too.
    expected = await pool.fetchval(
        "SELECT count(*) + count(*) FILTER (WHERE kind = 'burn' AND status IN"
        "  ('captured', 'voided') AND finished_at > created_at) FROM transactions"
        " WHERE kind <> 'reward'"
    )
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys") == expected


async def test_credentials_file_works_and_summary_points_to_it(demo, pool):
    summary, data_dir = demo
    path = data_dir / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in summary and "curl" in summary
    content = json.loads(path.read_text())
    assert [p["code"] for p in content["partners"]] == DEMO_CODES
    assert content["partners"][0]["client_secret"] in summary  # in the ready-to-paste curl
    async with pool.acquire() as conn:
        for partner in content["partners"]:
            found = await verify_credentials(conn, partner["client_id"], partner["client_secret"])
            assert found is not None
            code = await conn.fetchval("SELECT code FROM partners WHERE id = $1", found[0])
            assert code == partner["code"]
            # Each partner has a portal manager whose password is in the file.
            staff = await authenticate(conn, partner["portal_email"], partner["portal_password"])
            assert staff is not None and staff.role == "manager"
    first = content["partners"][0]
    assert f"sign in as {first['portal_email']} / {first['portal_password']}" in summary
    # The wallet sign-in line names a sample member whose address is on file.
    email = content["sample_members"][0]["email"]
    assert f"(sign in as {email};" in summary
    assert await pool.fetchval("SELECT count(*) FROM members WHERE email = $1", email) == 1
    cards = [m["card_number"] for m in content["sample_members"]]
    assert len(cards) >= 3
    # One back-office admin per role; the owner's password and the code that
    # `kring admin code` prints sign in through the admin checks.
    assert [a["role"] for a in content["admins"]] == list(ROLES)
    owner = content["admins"][0]
    assert f"sign in as {owner['email']} / {owner['password']}" in summary
    now = datetime.now(UTC)
    admin = await admin_accounts.sign_in(
        pool,
        email=owner["email"],
        password=owner["password"],
        totp_code=await admin_accounts.current_totp_code(pool, owner["email"], now=now),
        recovery_code=None,
        ip="127.0.0.1",
        now=now,
    )
    assert admin.role == "owner"
    assert pyotp.parse_uri(owner["totp_uri"]).verify(
        await admin_accounts.current_totp_code(pool, owner["email"], now=now), for_time=now
    )
    known = await pool.fetchval(
        "SELECT count(*) FROM members WHERE card_number = ANY($1::text[])", cards
    )
    assert known == len(cards)


async def test_a_second_call_writes_nothing_and_repeats_the_summary(demo, database_url, pool):
    summary, data_dir = demo
    path = data_dir / CREDENTIALS_FILE
    file_before = path.read_bytes()
    counts_before = [await pool.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES]

    again = await seed_demo(database_url, data_dir=data_dir, members=MEMBERS)

    assert [await pool.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES] == counts_before
    assert path.read_bytes() == file_before
    assert again.startswith("Already loaded")
    assert again.split("\n", 1)[1] == summary.split("\n", 1)[1]

    # `serve --demo --port 8123` prints curl examples for the port it serves on.
    elsewhere = await seed_demo(
        database_url, data_dir=data_dir, api_url="http://127.0.0.1:8123/partner/v1"
    )
    assert "http://127.0.0.1:8123/partner/v1/token" in elsewhere
    assert "http://127.0.0.1:8000" not in elsewhere


async def test_a_second_call_without_the_file_says_where_to_get_credentials(
    demo, database_url, pool, tmp_path
):
    again = await seed_demo(database_url, data_dir=tmp_path, members=MEMBERS)
    assert "rotate-secret" in again
    assert not (tmp_path / CREDENTIALS_FILE).exists()


def test_the_cast_is_the_same_for_the_same_seed():
    end = datetime(2026, 3, 2, 12, tzinfo=UTC)

    def cast(seed: int) -> list[tuple[str, str, datetime]]:
        people = draw_people(random.Random(seed), MEMBERS, end)
        return [(p.display_name, p.email, p.joined_at) for p in people]

    assert cast(7) == cast(7)
    assert cast(7) != cast(8)


async def test_every_ended_day_is_settled_and_the_ledger_checks_clean(demo, pool):
    summary, _ = demo
    runs = await pool.fetchrow(
        "SELECT count(*) AS days, min(business_date) AS first, max(business_date) AS last"
        " FROM settlement_runs"
    )
    # Settlement went live the day before the demo year, and every day since
    # that has ended is settled, none skipped; the first run took the launch
    # customers' entries from years before.
    year_ago = business_date(datetime.now(UTC) - timedelta(days=365))
    assert year_ago - timedelta(days=2) <= runs["first"] <= year_ago
    assert runs["last"] >= last_due_day(datetime.now(UTC)) - timedelta(days=1)
    assert runs["days"] == (runs["last"] - runs["first"]).days + 1
    first_run_of_oldest_entry = await pool.fetchval(
        "SELECT r.business_date FROM journal_entries e"
        " JOIN settled_entries se ON se.entry_id = e.id JOIN statements s ON s.id = se.statement_id"
        " JOIN settlement_runs r ON r.id = s.run_id ORDER BY e.booked_at LIMIT 1"
    )
    assert first_run_of_oldest_entry == runs["first"]
    statements = dict(
        await pool.fetch(
            "SELECT p.code, count(*) FROM statements s JOIN partners p ON p.id = s.partner_id"
            " GROUP BY p.code"
        )
    )
    assert set(statements) == set(DEMO_CODES)
    # The café joined 150 days ago: a statement for each day since.
    assert 149 <= statements["cafe-de-hoek"] <= 151
    assert (
        await pool.fetchval("SELECT count(*) FROM statements WHERE partner_id IS NULL")
        == (runs["days"])
    )
    assert f"Settled {runs['days']:,} business days" in summary
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []


async def test_all_partners_but_the_cafe_can_be_paid(demo, pool):
    banks = dict(
        await pool.fetch("SELECT code, iban FROM partners WHERE code = ANY($1::text[])", DEMO_CODES)
    )
    assert [code for code, iban in banks.items() if iban is None] == ["cafe-de-hoek"]
    # A day the café is owed money shows it flagged, the others paid.
    day = await pool.fetchval(
        "SELECT max(r.business_date) FROM settlement_runs r JOIN statements s ON s.run_id = r.id"
        " JOIN partners p ON p.id = s.partner_id"
        " WHERE p.code = 'cafe-de-hoek' AND s.net_cents > 0"
    )
    assert day is not None
    run = await payouts_for_run(pool, day)
    assert [(f.partner_code, f.code) for f in run.flagged] == [("cafe-de-hoek", "missing_iban")]
    assert all(p.iban for p in run.payouts)


async def test_members_give_to_three_charities_and_the_supermarket_matches(demo, pool):
    charities = await list_charities(pool, active_only=True)
    assert len(charities) == 3
    assert sum(c.anbi for c in charities) == 2
    for charity in charities:
        assert IBAN(charity.iban).country_code == "NL"
        assert charity.logo_url and charity.logo_url.startswith("https://")
        assert charity.donated_points > 0
    gifts = await pool.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE matched_points > 0) AS matched,"
        " count(*) FILTER (WHERE monthly_id IS NOT NULL) AS monthly,"
        " count(DISTINCT member_id) AS members, min(created_at) AS first FROM donations"
    )
    assert gifts["matched"] > 0 and gifts["n"] > gifts["matched"]
    assert gifts["monthly"] > 0 and gifts["members"] >= 3
    assert gifts["first"] > datetime.now(UTC) - timedelta(days=366)
    # One campaign, by the supermarket for the food bank, over the year: its
    # budget ran out, never over.
    campaigns = await list_campaigns(pool)
    assert len(campaigns) == 1
    campaign = campaigns[0]
    partner = await pool.fetchval("SELECT code FROM partners WHERE id = $1", campaign.partner_id)
    assert partner == "versmarkt"
    assert campaign.used_points <= campaign.budget_points
    assert campaign.used_points == campaign.budget_points
    assert campaign.used_points == await pool.fetchval(
        "SELECT sum(matched_points) FROM donations WHERE campaign_id = $1", campaign.id
    )
    last_match = await pool.fetchval(
        "SELECT max(created_at) FROM donations WHERE campaign_id = $1", campaign.id
    )
    assert last_match < campaign.ends_at - timedelta(days=14)  # ran out during the year
    orders = await pool.fetchval("SELECT count(*) FROM monthly_donations WHERE active")
    assert orders >= 2
    summary, _ = demo
    assert f"{gifts['n']:,} donations" in summary and "3 charities" in summary


async def test_some_members_are_vip_and_one_is_a_sample_card(demo, pool):
    summary, data_dir = demo
    now = datetime.now(UTC)
    vip = await pool.fetch("SELECT member_id FROM vip_subscriptions WHERE status = 'active'")
    assert len(vip) >= 3
    for row in vip:
        assert await vip_multiplier(pool, row["member_id"], now) == 1500
    # Paid at the sandbox checkout, renewed off-session, with monthly bonuses.
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE status = 'paid'") > len(vip)
    assert await pool.fetchval("SELECT count(*) FROM vip_bonus_grants") > len(vip)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM transactions WHERE kind = 'earn' AND vip_multiplier_permille > 1000"
        )
        > 0
    )
    content = json.loads((data_dir / CREDENTIALS_FILE).read_text())
    vip_samples = [m for m in content["sample_members"] if "VIP" in m["note"]]
    assert vip_samples
    vip_cards = await pool.fetch(
        "SELECT card_number FROM members WHERE id = ANY($1::bigint[])",
        [r["member_id"] for r in vip],
    )
    assert {m["card_number"] for m in vip_samples} <= {r["card_number"] for r in vip_cards}
    assert f"card {vip_samples[0]['card_number']}" in summary
