"""Back-office settlement: a run started from the page as a job with progress,
once per day; approval by a second admin before the SEPA file is released;
flagged payouts shown; CSV exports of runs, statements, a statement and
payouts; the pain.001 file validates against its schema."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import timedelta
from importlib.resources import files
from typing import Any
from xml.etree import ElementTree

import asyncpg
import httpx
import pytest
import xmlschema

from api.errors import DomainError
from api.ledger.lots import release_due
from api.settings import Settings, load_settings
from api.settlement import jobs
from api.settlement.payouts import PAIN001_SCHEMA
from api.settlement.periods import business_date, day_end
from tests.conftest import JWT_SECRET, backoffice_session

NS = {"p": f"urn:iso:std:iso:20022:tech:xsd:{PAIN001_SCHEMA}"}
JOB_WAIT_SECONDS_MAX = 20.0


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The module's app pays from this account (the default settings have none).
    return load_settings(
        {
            "KRING_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "KRING_JWT_SECRET": JWT_SECRET,
            "KRING_PAYOUT_ACCOUNT_NAME": "Kring B.V.",
            "KRING_PAYOUT_IBAN": "NL91ABNA0417164300",
        }
    )


async def admin_id(pool: Any, email: str) -> int:
    found: int = await pool.fetchval("SELECT id FROM admin_accounts WHERE email = $1", email)
    return found


async def wait_for_job(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> str:
    """Poll the progress fragment as the page's htmx does, until the job ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + JOB_WAIT_SECONDS_MAX
    while True:
        fragment = await http.get(url, headers={**headers, "HX-Request": "true"})
        assert fragment.status_code == 200 and "<html" not in fragment.text
        if 'data-status="running"' not in fragment.text:
            assert 'hx-trigger="every 1s"' not in fragment.text
            return fragment.text
        assert 'hx-trigger="every 1s"' in fragment.text
        assert loop.time() < deadline, "the settlement job did not finish"
        await asyncio.sleep(0.05)


async def test_run_approve_and_pay_from_the_pages(
    http: httpx.AsyncClient,
    pool: Any,
    clock: Any,
    make_partner: Any,
    make_member: Any,
    client_for: Any,
) -> None:
    shop = await make_partner(code="st-shop", return_window_days=0)
    books = await make_partner(
        code="st-books", iban="DE89 3704 0044 0532 0130 00", account_holder="Bücher GmbH"
    )
    kiosk = await make_partner(code="st-kiosk")  # no bank details: flagged
    card = await make_member()
    async with client_for(shop) as client:
        await client.earn(card_number=card, amount_cents=100_000, currency="EUR")  # 1,000 points
    await release_due(pool, clock.now())
    async with client_for(books) as client:
        await client.burn(card_number=card, points=250)  # 250 x 0.8 cent = 2.00 EUR
    async with client_for(kiosk) as client:
        await client.burn(card_number=card, points=50)  # 0.40 EUR, flagged
    day = business_date(clock.now())
    clock.set(day_end(day) + timedelta(hours=1))

    maker = await backoffice_session(http, pool, clock, "finance", email="maker@example.com")
    checker = await backoffice_session(http, pool, clock, "finance", email="checker@example.com")
    support = await backoffice_session(http, pool, clock, "support")

    page = await http.get("/backoffice/settlement", headers=maker)
    assert page.status_code == 200 and f'value="{day.isoformat()}"' in page.text  # yesterday
    assert "Run settlement" in page.text
    assert "Run settlement" not in (await http.get("/backoffice/settlement", headers=support)).text

    started = await http.post("/backoffice/settlement/runs", headers=maker, data={"day": str(day)})
    assert started.status_code == 303, started.text
    job_url = started.headers["location"]
    assert re.fullmatch(r"/backoffice/settlement/jobs/\d+", job_url)
    done = await wait_for_job(http, job_url, maker)
    assert 'data-status="done"' in done and "Done: 1 of 1 days settled." in done
    assert "st-books" in done and "st-shop" in done and "st-kiosk" in done

    run = await pool.fetchrow("SELECT * FROM settlement_runs WHERE business_date = $1", day)
    assert run["started_by_admin_id"] == await admin_id(pool, "maker@example.com")
    assert run["approved_at"] is None
    nets = dict(
        await pool.fetch(
            "SELECT p.code, s.net_cents FROM statements s JOIN partners p ON p.id = s.partner_id"
            " WHERE s.run_id = $1",
            run["id"],
        )
    )
    assert nets == {"st-shop": -1000, "st-books": 200, "st-kiosk": 40}

    # Starting the same day again runs nothing: it shows the run.
    again = await http.post("/backoffice/settlement/runs", headers=checker, data={"day": str(day)})
    assert again.status_code == 303
    assert again.headers["location"] == f"/backoffice/settlement/runs/{run['id']}"
    assert await pool.fetchval("SELECT count(*) FROM settlement_jobs") == 1
    assert await pool.fetchval("SELECT count(*) FROM settlement_runs") == 1

    run_url = f"/backoffice/settlement/runs/{run['id']}"
    awaiting = await http.get(run_url, headers=checker)
    assert awaiting.status_code == 200 and 'id="awaiting"' in awaiting.text
    assert "sepa.xml" not in awaiting.text and 'id="approve"' in awaiting.text
    assert "st-kiosk" in awaiting.text and "missing_iban" in awaiting.text  # flagged
    refused = await http.get(f"{run_url}/sepa.xml", headers=checker)
    assert refused.status_code == 409 and "awaiting approval" in refused.text

    # The maker may not check their own run; support may not approve at all.
    own = await http.get(run_url, headers=maker)
    assert 'id="approve"' not in own.text and "You started this run" in own.text
    self_approval = await http.post(f"{run_url}/approve", headers=maker, data={})
    assert self_approval.status_code == 403 and "another admin must approve" in self_approval.text
    assert (await http.post(f"{run_url}/approve", headers=support, data={})).status_code == 403
    assert await pool.fetchval("SELECT approved_at FROM settlement_runs") is None

    approved = await http.post(f"{run_url}/approve", headers=checker, data={})
    assert approved.status_code == 200 and 'id="sepa-download"' in approved.text
    assert "checker@example.com" in approved.text
    audit = await pool.fetchrow(
        "SELECT admin_email, before::text AS before, after::text AS after FROM admin_audit_log"
        " WHERE action = 'settlement.run.approve'"
    )
    assert audit["admin_email"] == "checker@example.com"
    assert '"payout_cents": 200' in audit["after"] and '"flagged_cents": 40' in audit["after"]
    twice = await http.post(f"{run_url}/approve", headers=maker, data={})
    assert twice.status_code == 409

    sepa = await http.get(f"{run_url}/sepa.xml", headers=checker)
    assert sepa.status_code == 200 and sepa.headers["content-type"].startswith("application/xml")
    assert f"kring-payouts-{day.isoformat()}.xml" in sepa.headers["content-disposition"]
    xsd = files("sepaxml") / "schemas" / f"{PAIN001_SCHEMA}.xsd"
    xmlschema.XMLSchema(str(xsd)).validate(sepa.text)
    root = ElementTree.fromstring(sepa.content)
    paid = [
        (
            tx.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=NS),
            tx.findtext("p:Amt/p:InstdAmt", namespaces=NS),
        )
        for tx in root.iterfind(".//p:CdtTrfTxInf", NS)
    ]
    assert paid == [("DE89370400440532013000", "2.00")]
    assert root.findtext(".//p:GrpHdr/p:MsgId", namespaces=NS) == f"KRING-PAYOUT-{day:%Y%m%d}"
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE action = 'settlement.payouts.download'"
        )
        == 1
    )
    assert (await http.get(f"{run_url}/sepa.xml", headers=support)).status_code == 403

    payouts = await http.get(f"{run_url}/payouts.csv", headers=checker)
    rows = list(csv.reader(io.StringIO(payouts.text)))
    assert rows[0] == [
        "partner_code",
        "partner_name",
        "amount_cents",
        "account_holder",
        "iban",
        "bic",
        "end_to_end_id",
        "status",
        "reason",
    ]
    assert rows[1][:3] == ["st-books", "St-Books", "200"] and rows[1][4] == "DE89370400440532013000"
    assert rows[1][7] == "payout"
    assert rows[2] == ["st-kiosk", "St-Kiosk", "40", "", "", "", "", "flagged", "no IBAN on file"]

    runs = list(
        csv.reader(
            io.StringIO((await http.get("/backoffice/settlement/export.csv", headers=support)).text)
        )
    )
    assert runs[0][:6] == [
        "business_date",
        "period_end",
        "statements",
        "entries",
        "owed_to_partners_cents",
        "owed_by_partners_cents",
    ]
    assert [r[0] for r in runs[1:]] == [day.isoformat()]
    assert runs[1][4:6] == ["240", "1000"] and runs[1][7:10] == [
        "maker@example.com",
        "approved",
        "checker@example.com",
    ]

    statements = await http.get(
        f"/backoffice/settlement/statements/export.csv?run={run['id']}", headers=support
    )
    listed = {r[2]: r[8] for r in list(csv.reader(io.StringIO(statements.text)))[1:]}
    assert listed == {"st-books": "200", "st-kiosk": "40", "st-shop": "-1000"}

    books_statement = await pool.fetchval(
        "SELECT s.id FROM statements s JOIN partners p ON p.id = s.partner_id"
        " WHERE p.code = 'st-books'"
    )
    detail = await http.get(f"/backoffice/settlement/statements/{books_statement}", headers=support)
    assert detail.status_code == 200 and "points redeemed" in detail.text
    assert re.search(r'id="net">2,00\s*€<', detail.text), detail.text
    one = await http.get(
        f"/backoffice/settlement/statements/{books_statement}/statement.csv", headers=support
    )
    lines = list(csv.reader(io.StringIO(one.text)))
    assert lines[0][:2] == ["record", "category"]
    assert ["line", "points_redeemed", "", "", "", "1", "250", "", "2000000", "2.00"] in lines
    assert ["net", "", "", "", "", "2", "", "", "", "2.00"] in lines  # authorize + capture

    # Filters and the statements page.
    filtered = await http.get(
        "/backoffice/settlement/statements?partner=st-books&period=daily", headers=support
    )
    assert (
        filtered.status_code == 200
        and "st-books" in filtered.text
        and "st-kiosk" not in filtered.text
    )
    bad = await http.get("/backoffice/settlement/statements?period=yearly", headers=support)
    assert bad.status_code == 400
    awaiting_only = await http.get("/backoffice/settlement?status=awaiting", headers=support)
    assert f"/backoffice/settlement/runs/{run['id']}" not in awaiting_only.text

    # The database itself refuses a checker who is the maker.
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "UPDATE settlement_runs SET approved_by_admin_id = started_by_admin_id,"
            " approved_at = now() WHERE id = $1",
            run["id"],
        )


async def test_two_starts_of_one_day_make_one_job_and_one_run(
    http: httpx.AsyncClient, pool: Any, clock: Any
) -> None:
    # The day after the first test's: its entries (none) close in one run.
    day = business_date(clock.now())
    clock.set(day_end(day) + timedelta(hours=1))
    first = await backoffice_session(http, pool, clock, "owner")
    second = await backoffice_session(http, pool, clock, "finance")
    jobs_before = await pool.fetchval("SELECT count(*) FROM settlement_jobs")
    answers = await asyncio.gather(
        http.post("/backoffice/settlement/runs", headers=first, data={"day": str(day)}),
        http.post("/backoffice/settlement/runs", headers=second, data={"day": str(day)}),
    )
    assert [a.status_code for a in answers] == [303, 303]
    locations = {a.headers["location"] for a in answers}
    jobs = [loc for loc in locations if "/jobs/" in loc]
    # Both watch the one job, or the second found the day settled already.
    assert len(jobs) == 1, locations
    done = await wait_for_job(http, jobs[0], second)
    assert "Done: 1 of 1 days settled." in done
    assert await pool.fetchval("SELECT count(*) FROM settlement_jobs") == jobs_before + 1
    assert (
        await pool.fetchval("SELECT count(*) FROM settlement_runs WHERE business_date = $1", day)
        == 1
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM admin_audit_log WHERE action = 'settlement.run.start'"
            " AND subject = $1",
            f"settlement_run:{day.isoformat()}",
        )
        == 1
    )


async def test_a_day_that_has_not_ended_or_a_bad_day_is_refused(
    http: httpx.AsyncClient, pool: Any, clock: Any
) -> None:
    owner = await backoffice_session(http, pool, clock, "owner")
    today = business_date(clock.now())
    future = await http.post("/backoffice/settlement/runs", headers=owner, data={"day": str(today)})
    assert future.status_code == 422 and "has not ended yet" in future.text
    garbage = await http.post("/backoffice/settlement/runs", headers=owner, data={"day": "soon"})
    assert garbage.status_code == 400 and "must be a date" in garbage.text
    jobs_before = await pool.fetchval("SELECT count(*) FROM settlement_jobs")
    empty = await http.post("/backoffice/settlement/runs", headers=owner, data={})
    assert empty.status_code == 422
    assert await pool.fetchval("SELECT count(*) FROM settlement_jobs") == jobs_before


async def test_a_failed_job_says_why_and_the_day_can_be_started_again(
    http: httpx.AsyncClient, pool: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = business_date(clock.now())
    clock.set(day_end(day) + timedelta(hours=1))
    owner = await backoffice_session(http, pool, clock, "owner")

    async def refuse(*_: Any, **__: Any) -> None:
        raise DomainError("the database said no", code="test_refusal")

    monkeypatch.setattr(jobs, "settle_day", refuse)
    first = await http.post("/backoffice/settlement/runs", headers=owner, data={"day": str(day)})
    failed = await wait_for_job(http, first.headers["location"], owner)
    assert 'data-status="failed"' in failed
    assert "Stopped after 0 of 1 days: The database said no." in failed
    assert (
        await pool.fetchval("SELECT count(*) FROM settlement_runs WHERE business_date = $1", day)
        == 0
    )

    monkeypatch.undo()
    second = await http.post("/backoffice/settlement/runs", headers=owner, data={"day": str(day)})
    assert second.headers["location"] != first.headers["location"]
    done = await wait_for_job(http, second.headers["location"], owner)
    assert "Done: 1 of 1 days settled." in done
    statuses = await pool.fetch(
        "SELECT status FROM settlement_jobs WHERE business_date = $1 ORDER BY id", day
    )
    assert [r["status"] for r in statuses] == ["failed", "done"]
