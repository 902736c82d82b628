"""The `kring` command as operators and scripts use it, in real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.db.embedded import EmbeddedServer

KRING = str(Path(sys.executable).parent / "kring")


def run(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environ |= {"KRING_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run([KRING, *args], env=environ, capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kring")


def test_a_wrong_setting_stops_with_one_line_naming_the_variable(data_dir: Path) -> None:
    result = run(data_dir, "db", "upgrade", env={"KRING_MODE": "prod"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "KRING_MODE" in result.stderr and "Traceback" not in result.stderr
    result = run(data_dir, "db", "upgrade", env={"KRING_DB_POOL_MAX_SIZE": "lots"})
    assert result.returncode == 2 and "KRING_DB_POOL_MAX_SIZE" in result.stderr
    result = run(data_dir, "db", "upgrade", env={"KRING_MODE": "production"})
    assert result.returncode == 2 and "KRING_JWT_SECRET" in result.stderr


def test_partner_create_prints_credentials_as_json(data_dir: Path) -> None:
    result = run(
        data_dir, "partner", "create", "--code", "bakkerij-vos", "--name", "Bakkerij Vos", "--json"
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"partner_id", "client_id", "client_secret"}
    again = run(
        data_dir, "partner", "create", "--code", "bakkerij-vos", "--name", "Other", "--json"
    )
    assert again.returncode == 1 and "partner_exists" in again.stderr


def test_ledger_check_passes_then_names_a_corrupted_row(data_dir: Path) -> None:
    assert run(data_dir, "member", "create", "--count", "2", "--json").returncode == 0
    ok = run(data_dir, "ledger", "check")
    assert ok.returncode == 0 and "passed" in ok.stdout

    def corrupt(sql: str) -> None:
        # The embedded server runs while some process holds it; hold it here.
        server = EmbeddedServer(data_dir / "pgdata")

        async def execute() -> None:
            conn = await asyncpg.connect(server.url_for("kring"))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(execute())
        server.stop()

    account = "(SELECT min(id) FROM accounts WHERE kind = 'member_available')"
    corrupt(f"UPDATE accounts SET balance = 5 WHERE id = {account}")
    bad = run(data_dir, "ledger", "check")
    assert bad.returncode == 1
    assert "account balance differs from the sum of its postings" in bad.stdout
    assert "'balance': 5" in bad.stdout
    corrupt(f"UPDATE accounts SET balance = 0 WHERE id = {account}")
    assert run(data_dir, "ledger", "check").returncode == 0


@pytest.fixture
def server_process(data_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "KRING_DATA_DIR": str(data_dir)
    }
    proc = subprocess.Popen(
        [KRING, "serve", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            proc.kill()
            pytest.fail("server did not start: " + (proc.stdout.read() if proc.stdout else ""))
        yield base, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def server(server_process: tuple[str, subprocess.Popen[str]]) -> str:
    return server_process[0]


def test_serve_answers_on_its_port_and_keeps_data_across_restarts(
    data_dir: Path, server: str
) -> None:
    creds = json.loads(
        run(
            data_dir, "partner", "create", "--code", "cafe-noord", "--name", "Café Noord", "--json"
        ).stdout
    )
    card = json.loads(run(data_dir, "member", "create", "--json").stdout)[0]
    schema = httpx.get(f"{server}/schema/openapi.json").json()
    assert "/partner/v1/earn" in schema["paths"]
    docs = httpx.get(f"{server}/schema")
    assert docs.status_code == 200 and "/static/vendor/redoc-2.5.1.standalone.js" in docs.text
    assert httpx.get(f"{server}/static/vendor/redoc-2.5.1.standalone.js").status_code == 200
    token = httpx.post(
        f"{server}/partner/v1/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
        },
    ).json()["access_token"]
    earned = httpx.post(
        f"{server}/partner/v1/earn",
        json={"card_number": card, "amount_cents": 1_250, "currency": "EUR"},
        headers={"authorization": f"Bearer {token}", "idempotency-key": "first"},
    )
    assert earned.status_code == 201 and earned.json()["points"] == 12
    (data_dir / "earned-id").write_text(earned.json()["id"])


def test_data_survives_a_restart(data_dir: Path, server: str) -> None:
    creds = json.loads(
        run(data_dir, "partner", "rotate-secret", "--code", "cafe-noord", "--json").stdout
    )
    token = httpx.post(
        f"{server}/partner/v1/token",
        json={
            "grant_type": "client_credentials",
            **{k: creds[k] for k in ("client_id", "client_secret")},
        },
    ).json()["access_token"]
    txn_id = (data_dir / "earned-id").read_text()
    found = httpx.get(
        f"{server}/partner/v1/transactions/{txn_id}", headers={"authorization": f"Bearer {token}"}
    )
    assert found.status_code == 200 and found.json()["points"] == 12


def test_sigterm_stops_the_server_and_its_embedded_database(data_dir: Path, server_process) -> None:
    import psutil

    def postgres_running() -> bool:
        return any(
            str(data_dir) in " ".join(p.info["cmdline"] or [])
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres"
        )

    _, proc = server_process
    assert postgres_running()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 15
    while postgres_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not postgres_running()


PAYOUT_ACCOUNT = {
    "KRING_PAYOUT_ACCOUNT_NAME": "Kring B.V.",
    "KRING_PAYOUT_IBAN": "NL91ABNA0417164300",
}


def settle_a_day_of_burns(data_dir: Path, day: date) -> None:
    """Book `day` at a shop and two partners where points are burned (one
    without an IBAN), through the partner API's services, and settle it."""
    from api.coalition.members import create_member
    from api.coalition.partners import NewPartner, create_partner
    from api.db import migrate
    from api.db.embedded import start_embedded
    from api.db.pool import create_pool, transaction
    from api.demo.history import Tills
    from api.ledger.lots import release_due
    from api.partner_api.auth import PartnerPrincipal
    from api.settlement.periods import day_end, local_midnight
    from api.settlement.run import settle_day

    partners = [
        NewPartner("cli-shop", "Shop", "shop", return_window_days=0),
        NewPartner(
            "cli-cafe", "Cafe", "cafe", iban="NL44RABO0123456789", account_holder="Cafe B.V."
        ),
        NewPartner("cli-kiosk", "Kiosk", "kiosk"),
    ]
    opened = local_midnight(day) + timedelta(hours=8)

    async def book(url: str) -> None:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:

            async def cast(conn: asyncpg.Connection) -> tuple[dict[str, Any], str]:
                made = {p.code: await create_partner(conn, p, now=opened) for p in partners}
                return made, (await create_member(conn, now=opened)).card_number

            made, card = await transaction(pool, cast)
            tills = Tills(
                pool,
                {c: PartnerPrincipal(m.partner_id, m.partner_public_id) for c, m in made.items()},
            )
            at = opened + timedelta(hours=1)
            await tills.earn(at, "cli-shop", card, 10_000, "R1", "till-1")  # 100 points
            await release_due(pool, at)
            await tills.burn(at, "cli-cafe", card, 50, "R2", "till-1")  # 50 x 0.8 cent
            await tills.burn(at, "cli-kiosk", card, 25, "R3", "till-1")
            await settle_day(pool, day, day_end(day) + timedelta(hours=1))
        finally:
            await pool.close()

    server, url = start_embedded(data_dir)
    try:
        migrate.upgrade(url)
        asyncio.run(book(url))
    finally:
        server.stop()


def test_payouts_writes_the_sepa_file_of_a_settled_day_only(data_dir: Path, tmp_path: Path) -> None:
    from api.settlement.periods import business_date

    day = business_date(datetime.now(UTC)) - timedelta(days=2)
    settle_a_day_of_burns(data_dir, day)

    unsettled = run(
        data_dir, "payouts", "--period", str(day + timedelta(days=1)), env=PAYOUT_ACCOUNT
    )
    assert unsettled.returncode == 1
    assert f"period_not_settled: {day + timedelta(days=1)} is not settled yet" in unsettled.stderr
    assert not list(tmp_path.iterdir())

    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environ |= {"KRING_DATA_DIR": str(data_dir), **PAYOUT_ACCOUNT}
    settled = subprocess.run(
        [KRING, "payouts", "--period", str(day)],
        env=environ,
        cwd=tmp_path,  # the file goes to the current directory by default
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert settled.returncode == 0, settled.stderr
    assert "cli-cafe" in settled.stdout and "EUR         0.40" in settled.stdout
    assert "cli-shop" not in settled.stdout + settled.stderr  # it owes the programme
    assert "flagged  cli-kiosk" in settled.stderr and "missing_iban" in settled.stderr
    xml = (tmp_path / f"kring-payouts-{day}.xml").read_text()
    assert "<CtrlSum>0.40</CtrlSum>" in xml and "NL44RABO0123456789" in xml
    assert f"<EndToEndId>KRING-{day:%Y%m%d}-cli-cafe</EndToEndId>" in xml
    assert "NL91ABNA0417164300" in xml  # paid from the programme's account
    # The same day again is a no-op; the programme's position explains every cent.
    again = run(data_dir, "settle", "--period", str(day))
    assert again.returncode == 0 and f"{day}: already settled" in again.stdout
    position = json.loads(run(data_dir, "position", "--json").stdout)
    assert position["partners_net_cents"] == -100 + 40 + 20  # shop pays, cafe and kiosk are paid
    assert (position["liability_points"], position["float_cents"]) == (25, 25)  # at 1.0 cent
    assert position["spread_cents"] == 75 * 2_000 // 10_000  # 75 burned at 1.0 - 0.8 cent
    assert -position["partners_net_cents"] == (
        position["spread_cents"] + position["breakage_cents"] + position["float_cents"]
    )
