"""The bank-invariant fault test, in the style of Jepsen's bank test.

Kring runs as separate processes on an embedded PostgreSQL this harness owns:
`kring serve --workers 2 --no-jobs` (two API processes behind one port, each
with a deliberately tiny pool) and one `kring worker`. Concurrent clients
perform random earns, one-step burns, burn authorizations (then captured,
voided or left to their deadline), refunds, donations and lottery tickets,
each write under an idempotency key that the client sends again, unchanged,
whenever it gets no answer (timeout, dropped connection, 5xx). Some attempts
use a client timeout of a few milliseconds, so requests are abandoned midway.

While they run, faults take turns: SIGKILL of an API process (uvicorn's
supervisor starts another), SIGKILL of the job worker (started again here),
an immediate PostgreSQL restart (`pg_ctl stop -m immediate`, then start:
every connection cut, crash recovery), and a burst of requests far above the
pools' size.

Afterwards (see `check`):
- every acknowledged write was applied exactly once and matches its answer;
  every write answered with a 4xx was not applied; every unacknowledged one
  at most once (counted by its idempotency key, which is also the receipt
  reference of partner transactions);
- no journal entry was written twice for one transaction and step;
- points are conserved: the balances of all accounts sum to zero per unit;
- `ledger check` is clean, before and after settlement;
- settling the day gives statements equal to the ledger (the assertions of
  tests/integration/test_settlement_properties.py);
- jobs: every pending lot that came due was released exactly once (one
  `points.released` event per released earn, written in the release's own
  statement), no authorization is left open past its deadline, every webhook
  event got exactly one delivery row, every delivery marked delivered was
  received, and the receiver got nothing Kring did not send; duplicates at
  the receiver are allowed (at-least-once) and counted.

Run the long form with `uv run python -m tests.faults.bank --minutes 10`;
`tests/faults/test_bank.py` runs a short form in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from api.charity.charities import CharityIn, create_charity
from api.coalition.members import create_member
from api.coalition.partners import Credentials, NewPartner, create_partner
from api.db import migrate
from api.db.embedded import EmbeddedServer, ensure_database
from api.db.pool import create_pool, transaction
from api.engagement.lotteries import NewLottery, NewPrize, create_lottery
from api.ledger.check import check_ledger
from api.member_auth.sessions import open_session
from api.member_auth.tokens import MEMBER_API_AUDIENCE, issue_session_token
from api.settlement.periods import SETTLEMENT_DELAY, business_date, day_end
from api.settlement.run import settle_due
from tests.faults.cluster import (
    Cluster,
    free_port,
    restart_postgres_immediately,
    stop_postgres_if_running,
)

JWT_SECRET = "bank-test-secret-" + "b" * 40
# Small pools, so that the clients alone exhaust them (requests queue for a connection).
API_POOL_SIZE_MAX = 4
ATTEMPTS_MAX = 40
RETRY_PAUSE_SECONDS_MAX = 2.0
TIMEOUT_SECONDS = 15.0
# Share of attempts sent with a client timeout of a few milliseconds.
SHORT_TIMEOUT_SHARE = 0.08
BURST_REQUESTS = 200
HOLD_MINUTES_SHORT = 1
# A job runs every second; a worker killed or cut off restarts within seconds.
JOB_GRACE_SECONDS = 45
QUIESCE_SECONDS_MAX = 90
EVERY_FAULT_SECONDS_MAX = 120
SEED_POINTS = 3_000
FAULTS = ("kill_api_worker", "kill_job_worker", "restart_postgres", "exhaust_pool")


@dataclass
class Op:
    """One logical write and what its client learned about it."""

    kind: str
    key: str
    surface: str  # "partner" or "member"
    actor: str  # partner code or card number
    attempts: int = 0
    status: int | None = None  # the final answer's HTTP status; None: no answer
    body: Any = None
    target: str | None = None  # the transaction a capture, void or refund is about

    @property
    def acknowledged(self) -> bool:
        return self.status is not None

    @property
    def applied_answer(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Report:
    ops: list[Op] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    short_timeouts: int = 0
    no_answer_attempts: int = 0
    answers_5xx: Counter[str] = field(default_factory=Counter)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    receiver_duplicates: int = 0
    server_errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def failures(self) -> list[tuple[str, bool, str]]:
        return [c for c in self.checks if not c[1]]

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))

    def describe(self) -> str:
        lines = [f"bank fault test: {self.seconds:.0f} s of traffic"]
        by_kind: dict[str, Counter[str]] = {}
        for op in self.ops:
            outcome = (
                "unacknowledged"
                if not op.acknowledged
                else "ok"
                if op.applied_answer
                else f"rejected {op.status} {(op.body or {}).get('code', '')}"
            )
            by_kind.setdefault(op.kind, Counter())[outcome] += 1
        lines.append(f"operations: {len(self.ops)}")
        for kind, outcomes in sorted(by_kind.items()):
            detail = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
            lines.append(f"  {kind:<10} {sum(outcomes.values()):>6}: {detail}")
        acked = sum(op.acknowledged for op in self.ops)
        lines.append(f"acknowledged {acked}, unacknowledged {len(self.ops) - acked}")
        retried = sum(op.attempts > 1 for op in self.ops)
        lines.append(
            f"attempts: {sum(op.attempts for op in self.ops)} ({retried} operations retried);"
            f" {self.no_answer_attempts} without an answer,"
            f" {sum(self.answers_5xx.values())} answered 5xx ({dict(self.answers_5xx)}),"
            f" {self.short_timeouts} sent with a millisecond timeout"
        )
        counted = Counter(kind for _, kind in self.faults)
        lines.append(
            "faults: "
            + ", ".join(f"{counted[f]} {f}" for f in FAULTS)
            + " (and the short timeouts)"
        )
        lines.append(f"webhook deliveries received twice or more: {self.receiver_duplicates}")
        if self.server_errors:
            lines.append(f"unhandled errors in the API processes' log: {dict(self.server_errors)}")
        for name, ok, detail in self.checks:
            lines.append(f"  [{'pass' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")
        lines.append("PASSED" if not self.failures else f"FAILED: {len(self.failures)} checks")
        return "\n".join(lines)


def server_errors(log_text: str) -> Counter[str]:
    """The exceptions behind the API's 500s: the last exception line (the one
    the handler got) of each traceback after an "unhandled error" in the log."""
    found: Counter[str] = Counter()
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if "unhandled error" not in line:
            continue
        last = None
        for later in lines[i + 1 :]:
            if later[:4].isdigit() or "unhandled error" in later:  # the next log record
                break
            name = later.split(":", 1)[0]
            if (
                ":" in later
                and not later.startswith((" ", "Traceback", "^"))
                and ("Error" in name or "Exception" in name)
            ):
                last = later[:160]
        if last is not None:
            found[last] += 1
    return found


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # a plain-text answer (uvicorn's own 500) or none
        return None


class WebhookReceiver:
    """A loopback HTTP server that records the event ids posted to it."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with lock:
                    received[json.loads(body)["id"]] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/kring"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class World:
    """What the clients act on."""

    partners: dict[str, Credentials]
    cards: list[str]
    member_tokens: dict[str, str]
    charity_id: int
    lottery_id: int
    partner_tokens: dict[str, str] = field(default_factory=dict)
    earns: list[Op] = field(default_factory=list)
    seed_holds: list[Op] = field(default_factory=list)


class Bank:
    def __init__(
        self,
        *,
        seconds: float,
        clients: int,
        members: int,
        fault_every_seconds: float,
        seed: int,
        root: Path,
        log: Any = print,
    ) -> None:
        self.seconds = seconds
        self.clients = clients
        self.members = members
        self.fault_every_seconds = fault_every_seconds
        self.random = random.Random(seed)
        self.root = root
        self.log = log
        self.report = Report()
        self.stopping = asyncio.Event()
        self.every_fault_injected = asyncio.Event()
        self.started = 0.0
        self.t0 = time.monotonic()

    # --- setup -------------------------------------------------------------------------

    async def setup(self, pool: asyncpg.Pool) -> World:
        now = datetime.now(UTC)
        partners: dict[str, Credentials] = {}
        for new in (
            NewPartner("shop", "Shop", "shop", return_window_days=0),
            NewPartner("cinema", "Cinema", "cinema", return_window_days=14),
        ):
            partners[new.code] = await transaction(
                pool, lambda conn, new=new: create_partner(conn, new, now=now)
            )

        async def people(conn: asyncpg.Connection) -> tuple[list[str], dict[str, str]]:
            cards, tokens = [], {}
            for _ in range(self.members):
                member = await create_member(conn, now=now)
                row = await conn.fetchrow(
                    "SELECT id, public_id FROM members WHERE card_number = $1", member.card_number
                )
                expires_at = now + timedelta(hours=6)
                session = await open_session(conn, row["id"], "api", now=now, expires_at=expires_at)
                tokens[member.card_number] = issue_session_token(
                    session,
                    row["public_id"],
                    audience=MEMBER_API_AUDIENCE,
                    secret=JWT_SECRET,
                    now=now,
                    expires_at=expires_at,
                )
                cards.append(member.card_number)
            return cards, tokens

        cards, tokens = await transaction(pool, people)
        charity = await transaction(
            pool,
            lambda conn: create_charity(
                conn,
                CharityIn(
                    "Voedselbank",
                    "Food for everyone",
                    None,
                    "NL91ABNA0417164300",
                    None,
                    "Stichting Voedselbank",
                    True,
                ),
                now,
            ),
        )
        lottery = await transaction(
            pool,
            lambda conn: create_lottery(
                conn,
                NewLottery(
                    name="Fault draw",
                    rules="Paid tickets only in this test.",
                    ticket_price_points=10,
                    tickets_per_member_max=1_000,
                    sales_open_at=now - timedelta(minutes=1),
                    sales_close_at=now + timedelta(days=2),
                    draw_at=now + timedelta(days=2),
                    prizes=[NewPrize(points=100)],
                ),
                now,
            ),
        )
        return World(partners, cards, tokens, charity.id, lottery.lottery_id)

    # --- one operation -----------------------------------------------------------------

    async def attempt(
        self, http: httpx.AsyncClient, op: Op, method: str, path: str, **kw: Any
    ) -> None:
        """Send `op` until it gets an answer (2xx or 4xx) or ATTEMPTS_MAX
        attempts went unanswered; the same key every time."""
        pause = 0.05
        while op.attempts < ATTEMPTS_MAX:
            op.attempts += 1
            timeout = TIMEOUT_SECONDS
            if self.random.random() < SHORT_TIMEOUT_SHARE:
                timeout = self.random.uniform(0.001, 0.03)
                self.report.short_timeouts += 1
            try:
                response = await http.request(method, path, timeout=timeout, **kw)
            except httpx.HTTPError:
                self.report.no_answer_attempts += 1
            else:
                if response.status_code < 500 and response.status_code != 429:
                    op.status = response.status_code
                    op.body = _json(response)
                    return
                if response.status_code >= 500:
                    code = (_json(response) or {}).get("code", "")
                    self.report.answers_5xx[f"{response.status_code} {code}".strip()] += 1
            await asyncio.sleep(self.random.uniform(0, pause))
            pause = min(pause * 2, RETRY_PAUSE_SECONDS_MAX)

    def partner_headers(self, world: World, code: str, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {world.partner_tokens[code]}", "idempotency-key": key}

    async def partner_write(
        self,
        http: httpx.AsyncClient,
        world: World,
        kind: str,
        code: str,
        path: str,
        body: dict[str, Any] | None,
        target: str | None = None,
    ) -> Op:
        key = f"{kind}-{uuid.uuid4()}"
        op = Op(kind, key, "partner", code, target=target)
        if body is not None and "receipt_ref" in body:
            body["receipt_ref"] = key  # the key, findable in the transactions table
        self.report.ops.append(op)
        await self.attempt(
            http, op, "POST", path, json=body, headers=self.partner_headers(world, code, key)
        )
        return op

    async def member_write(
        self, http: httpx.AsyncClient, world: World, kind: str, card: str, path: str, body: Any
    ) -> Op:
        key = f"{kind}-{uuid.uuid4()}"
        op = Op(kind, key, "member", card)
        self.report.ops.append(op)
        headers = {"authorization": f"Bearer {world.member_tokens[card]}", "idempotency-key": key}
        await self.attempt(http, op, "POST", path, json=body, headers=headers)
        return op

    async def earn(self, http: httpx.AsyncClient, world: World, card: str, cents: int) -> Op:
        code = self.random.choice(list(world.partners))
        op = await self.partner_write(
            http,
            world,
            "earn",
            code,
            "/partner/v1/earn",
            {"card_number": card, "amount_cents": cents, "currency": "EUR", "receipt_ref": ""},
        )
        if op.applied_answer:
            world.earns.append(op)
        return op

    async def random_op(self, http: httpx.AsyncClient, world: World) -> None:
        rnd = self.random
        card = rnd.choice(world.cards)
        code = rnd.choice(list(world.partners))
        roll = rnd.random()
        if roll < 0.28:
            await self.earn(http, world, card, rnd.randint(100, 20_000))
        elif roll < 0.42:
            await self.partner_write(
                http,
                world,
                "burn",
                code,
                "/partner/v1/burns",
                {"card_number": card, "points": rnd.randint(1, 40), "receipt_ref": ""},
            )
        elif roll < 0.60:
            body: dict[str, Any] = {
                "card_number": card,
                "points": rnd.randint(1, 40),
                "receipt_ref": "",
            }
            if rnd.random() < 0.3:
                body["hold_minutes"] = HOLD_MINUTES_SHORT  # left to the deadline job
            held = await self.partner_write(
                http, world, "authorize", code, "/partner/v1/burns/authorize", body
            )
            if not held.applied_answer or "hold_minutes" in body:
                return
            txn = held.body["id"]
            finish = rnd.random()
            if finish < 0.55:
                points = rnd.choice([None, max(1, held.body["points"] // 2)])
                await self.partner_write(
                    http,
                    world,
                    "capture",
                    code,
                    f"/partner/v1/burns/{txn}/capture",
                    {} if points is None else {"points": points},
                    target=txn,
                )
            elif finish < 0.9:
                await self.partner_write(
                    http, world, "void", code, f"/partner/v1/burns/{txn}/void", None, target=txn
                )
        elif roll < 0.70 and world.earns:
            earned = rnd.choice(world.earns)
            cents = rnd.randint(1, max(1, earned.body["amount_cents"] // 2))
            await self.partner_write(
                http,
                world,
                "refund",
                earned.actor,
                f"/partner/v1/transactions/{earned.body['id']}/refunds",
                {"amount_cents": cents, "currency": "EUR", "receipt_ref": ""},
                target=earned.body["id"],
            )
        elif roll < 0.85:
            await self.member_write(
                http,
                world,
                "donation",
                card,
                f"/member/v1/charities/{world.charity_id}/donations",
                {"points": rnd.randint(100, 140)},
            )
        else:
            await self.member_write(
                http,
                world,
                "ticket",
                card,
                f"/member/v1/lotteries/{world.lottery_id}/tickets",
                None,
            )

    # --- the run -----------------------------------------------------------------------

    async def client(self, http: httpx.AsyncClient, world: World) -> None:
        while not self.stopping.is_set():
            await self.random_op(http, world)

    async def faults(
        self, cluster: Cluster, http: httpx.AsyncClient, world: World, pgdata: Path
    ) -> None:
        turn = 0
        while True:
            try:
                await asyncio.wait_for(self.stopping.wait(), self.fault_every_seconds)
                return
            except TimeoutError:
                pass
            fault = FAULTS[turn % len(FAULTS)]
            turn += 1
            self.report.faults.append((time.monotonic() - self.started, fault))
            self.log(f"  t={time.monotonic() - self.started:5.1f}s fault: {fault}")
            if fault == "kill_api_worker":
                victim = cluster.kill_api_worker(turn)
                await self.replaced(cluster, victim)
            elif fault == "kill_job_worker":
                cluster.kill_job_worker(0)
            elif fault == "restart_postgres":
                await asyncio.to_thread(
                    restart_postgres_immediately, pgdata, cluster.database_url, 1.0
                )
            else:
                cards = [self.random.choice(world.cards) for _ in range(BURST_REQUESTS)]
                await asyncio.gather(*(self.earn(http, world, c, 500) for c in cards))
            # Set once the fault is over, so that traffic ran through all of it.
            if {kind for _, kind in self.report.faults} == set(FAULTS):
                self.every_fault_injected.set()

    async def replaced(self, cluster: Cluster, victim: int) -> None:
        """Wait until the supervisor has started a process in the victim's place."""
        for _ in range(300):
            pids = cluster.api_pids()
            if victim not in pids and len(pids) == cluster.api_workers:
                return
            await asyncio.sleep(0.1)

    async def keep_job_worker_running(self, cluster: Cluster) -> None:
        """What systemd would do: a worker that exits (it cannot start while
        PostgreSQL is down, for example) is started again."""
        while not self.stopping.is_set():
            if cluster.workers and cluster.workers[0].poll() is not None:
                cluster.kill_job_worker(0)
            await asyncio.sleep(0.5)

    async def partner_token(self, http: httpx.AsyncClient, creds: Credentials) -> str:
        for _ in range(ATTEMPTS_MAX):
            try:
                answer = await http.post(
                    "/partner/v1/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": creds.client_id,
                        "client_secret": creds.client_secret,
                    },
                )
                if answer.status_code == 200:
                    return str(answer.json()["access_token"])
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        raise RuntimeError("no partner token")

    async def run(self) -> Report:
        self.t0 = time.monotonic()
        server = EmbeddedServer(self.root / "pg")
        try:
            await ensure_database(server.admin_url, "kring")
            url = server.url_for("kring")
            await asyncio.to_thread(migrate.upgrade, url)
            pool = await create_pool(url, min_size=1, max_size=8)
            try:
                world = await self.setup(pool)
                with WebhookReceiver() as receiver:
                    await self.traffic(url, server.pgdata, world, receiver)
                    self.log(f"[{time.monotonic() - self.t0:.0f} s] processes stopped; checking")
                    await self.check(pool, world, receiver)
            finally:
                await pool.close()
        finally:
            server.stop()
            stop_postgres_if_running(server.pgdata)
        return self.report

    async def traffic(
        self, url: str, pgdata: Path, world: World, receiver: WebhookReceiver
    ) -> None:
        cluster = Cluster(
            url,
            self.root / "kring",
            api_workers=2,
            job_workers=1,
            env={
                "KRING_JWT_SECRET": JWT_SECRET,
                "KRING_JOB_INTERVAL_SECONDS": "1",
                "KRING_DB_POOL_MIN_SIZE": "1",
                "KRING_DB_POOL_MAX_SIZE": str(API_POOL_SIZE_MAX),
                "KRING_LOG_LEVEL": "warning",
            },
        )
        try:
            await asyncio.to_thread(cluster.start)
            limits = httpx.Limits(max_connections=self.clients + BURST_REQUESTS)
            async with httpx.AsyncClient(base_url=cluster.base_url, limits=limits) as http:
                for code, creds in world.partners.items():
                    world.partner_tokens[code] = await self.partner_token(http, creds)
                hook = await http.post(
                    "/partner/v1/webhooks/endpoints",
                    json={"url": receiver.url},
                    headers=self.partner_headers(world, "shop", "endpoint"),
                )
                assert hook.status_code == 201, hook.text
                # Points to spend: an earn at the shop for each member, released by the worker.
                await asyncio.gather(
                    *(self.earn_at_shop(http, world, card) for card in world.cards)
                )
                await self.released(cluster)
                # One hold per member left to its deadline: the job must void each, once.
                world.seed_holds = list(
                    await asyncio.gather(*(self.short_hold(http, world, c) for c in world.cards))
                )
                self.log(
                    f"[{time.monotonic() - self.t0:.0f} s] seeded {len(world.cards)} members;"
                    f" traffic for {self.seconds:.0f} s"
                )
                self.started = time.monotonic()
                supervisor = asyncio.create_task(self.keep_job_worker_running(cluster))
                faults = asyncio.create_task(self.faults(cluster, http, world, pgdata))
                clients = [
                    asyncio.create_task(self.client(http, world)) for _ in range(self.clients)
                ]
                await asyncio.sleep(self.seconds)
                # Traffic runs on until every kind of fault has struck it once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.every_fault_injected.wait(), EVERY_FAULT_SECONDS_MAX
                    )
                self.stopping.set()
                await asyncio.gather(*clients, faults)
                self.report.seconds = time.monotonic() - self.started
                await asyncio.to_thread(cluster.wait_healthy)
                self.log(
                    f"[{time.monotonic() - self.t0:.0f} s] traffic stopped; waiting for the jobs"
                )
                await self.quiesce(cluster, world)
                supervisor.cancel()
        finally:
            await asyncio.to_thread(cluster.stop)
            self.report.server_errors = server_errors(cluster.read_log("serve"))

    async def earn_at_shop(self, http: httpx.AsyncClient, world: World, card: str) -> None:
        op = await self.partner_write(
            http,
            world,
            "earn",
            "shop",
            "/partner/v1/earn",
            {
                "card_number": card,
                "amount_cents": SEED_POINTS * 100,
                "currency": "EUR",
                "receipt_ref": "",
            },
        )
        assert op.applied_answer, op

    async def short_hold(self, http: httpx.AsyncClient, world: World, card: str) -> Op:
        op = await self.partner_write(
            http,
            world,
            "authorize",
            "shop",
            "/partner/v1/burns/authorize",
            {
                "card_number": card,
                "points": 1,
                "hold_minutes": HOLD_MINUTES_SHORT,
                "receipt_ref": "",
            },
        )
        assert op.applied_answer, op
        return op

    async def released(self, cluster: Cluster) -> None:
        """Wait until the job worker has released the seed earns (return window 0)."""
        conn = await asyncpg.connect(cluster.database_url)
        try:
            for _ in range(QUIESCE_SECONDS_MAX * 10):
                if not await conn.fetchval(
                    "SELECT count(*) FROM lots WHERE state = 'pending' AND available_at <= now()"
                ):
                    return
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        raise RuntimeError("the job worker did not release the seed earns")

    async def quiesce(self, cluster: Cluster, world: World) -> None:
        """Wait until the seed holds' deadline has passed and the jobs have
        caught up: due lots released, holds past their deadline voided,
        events fanned out to deliveries, due deliveries made."""
        last_deadline = max(
            datetime.fromisoformat(op.body["hold_expires_at"]) for op in world.seed_holds
        )
        pool = await create_pool(cluster.database_url, min_size=1, max_size=2)
        try:
            deadline = time.monotonic() + QUIESCE_SECONDS_MAX
            while time.monotonic() < deadline:
                if datetime.now(UTC) <= last_deadline:
                    await asyncio.sleep(0.5)
                    continue
                await self.keep_job_worker_running_once(cluster)
                left = await pool.fetchrow(
                    """
                    SELECT
                      (SELECT count(*) FROM lots WHERE state = 'pending' AND available_at <= now())
                        AS lots,
                      (SELECT count(*) FROM transactions WHERE kind = 'burn'
                        AND status = 'authorized' AND hold_expires_at <= now()) AS holds,
                      (SELECT count(*) FROM webhook_events e WHERE NOT EXISTS
                        (SELECT FROM webhook_deliveries d WHERE d.event_id = e.id)) AS events,
                      (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'
                        AND next_attempt_at <= now()) AS deliveries
                    """
                )
                if not any(left.values()):
                    return
                await asyncio.sleep(0.5)
            self.log(f"  jobs had not caught up after {QUIESCE_SECONDS_MAX} s: {dict(left)}")
        finally:
            await pool.close()

    async def keep_job_worker_running_once(self, cluster: Cluster) -> None:
        if cluster.workers and cluster.workers[0].poll() is not None:
            cluster.kill_job_worker(0)

    # --- the checks --------------------------------------------------------------------

    async def check(self, pool: asyncpg.Pool, world: World, receiver: WebhookReceiver) -> None:
        report = self.report
        await self.check_partner_writes(pool, world)
        await self.check_member_writes(pool)
        doubled = await pool.fetch(
            "SELECT transaction_id, kind, count(*) FROM journal_entries"
            " WHERE transaction_id IS NOT NULL AND kind IN ('earn', 'authorize', 'void', 'refund')"
            " GROUP BY 1, 2 HAVING count(*) > 1"
        )
        report.check(
            "no journal entry written twice for one transaction", not doubled, str(doubled[:5])
        )
        sums = await pool.fetch("SELECT unit, sum(balance) AS total FROM accounts GROUP BY unit")
        report.check(
            "points and money conserved: all balances sum to 0 per unit",
            all(r["total"] == 0 for r in sums),
            ", ".join(f"{r['unit']} {r['total']}" for r in sums),
        )
        async with pool.acquire() as conn:
            violations = await check_ledger(conn)
        report.check(
            "ledger check clean", not violations, "; ".join(v.describe() for v in violations)
        )
        await self.check_jobs(pool, world, receiver)
        await self.check_settlement(pool, world)

    async def check_partner_writes(self, pool: asyncpg.Pool, world: World) -> None:
        report = self.report
        rows = await pool.fetch(
            "SELECT receipt_ref, count(*) AS n, min(id::text) AS id, min(points) AS points"
            " FROM transactions GROUP BY receipt_ref"
        )
        by_key = {r["receipt_ref"]: r for r in rows}
        keyed = {"earn", "burn", "authorize", "refund"}
        ops = [op for op in report.ops if op.kind in keyed]
        twice = [r for r in rows if r["n"] > 1]
        report.check(
            "no partner write applied twice (transactions per key <= 1)", not twice, str(twice[:5])
        )
        missing = [
            op.key
            for op in ops
            if op.applied_answer
            and (
                op.key not in by_key
                or by_key[op.key]["id"] != op.body["id"]
                or by_key[op.key]["points"] != op.body["points"]
            )
        ]
        report.check(
            "every acknowledged partner write applied once, as answered",
            not missing,
            f"{len(missing)} missing or different: {missing[:5]}",
        )
        rejected = [
            op.key for op in ops if op.acknowledged and not op.applied_answer and op.key in by_key
        ]
        report.check("no write answered with a 4xx was applied", not rejected, str(rejected[:5]))
        ours = {op.key for op in ops}
        strangers = [k for k in by_key if k not in ours]
        report.check("no transaction without a client's key", not strangers, str(strangers[:5]))
        # Captures and voids change their authorization's status.
        finished = await pool.fetch(
            "SELECT id::text AS id, status, points_captured FROM transactions WHERE kind = 'burn'"
        )
        state = {r["id"]: r for r in finished}
        wrong = []
        for op in report.ops:
            if op.kind not in ("capture", "void") or not op.acknowledged:
                continue
            row = state[op.target]
            if op.applied_answer:
                expected = "captured" if op.kind == "capture" else "voided"
                if row["status"] != expected or (
                    op.kind == "capture" and row["points_captured"] != op.body["points_captured"]
                ):
                    wrong.append((op.kind, op.target, row["status"]))
        report.check(
            "every acknowledged capture and void is the hold's final state",
            not wrong,
            str(wrong[:5]),
        )
        # Each hold is captured or voided by one operation at most (the
        # deadline job marks its own `expired`), so a capture or void answered
        # with a 4xx must not have taken effect.
        denied = [
            (op.kind, op.target, state[op.target]["status"])
            for op in report.ops
            if op.kind in ("capture", "void")
            and op.acknowledged
            and not op.applied_answer
            and state[op.target]["status"] == ("captured" if op.kind == "capture" else "voided")
        ]
        report.check(
            "no capture or void answered with a 4xx took effect", not denied, str(denied[:5])
        )
        refunds = await pool.fetch(
            "SELECT original_id::text AS id, sum(amount_cents) AS cents FROM transactions"
            " WHERE kind = 'refund' GROUP BY 1"
        )
        over = [
            r["id"]
            for r in refunds
            if r["cents"]
            > next(op.body["amount_cents"] for op in world.earns if op.body["id"] == r["id"])
        ]
        report.check("no purchase refunded beyond its amount", not over, str(over[:5]))

    async def check_member_writes(self, pool: asyncpg.Pool) -> None:
        report = self.report
        for kind, table, column in (
            ("donation", "donations", "id"),
            ("ticket", "lottery_tickets", "number"),
        ):
            rows = await pool.fetch(
                f"SELECT idempotency_key AS key, count(*) AS n, min({column}) AS id FROM {table}"
                " WHERE idempotency_key IS NOT NULL GROUP BY 1"
            )
            by_key = {r["key"]: r for r in rows}
            ops = [op for op in report.ops if op.kind == kind]
            twice = [r["key"] for r in rows if r["n"] > 1]
            missing = [
                op.key
                for op in ops
                if op.applied_answer
                and (op.key not in by_key or by_key[op.key]["id"] != op.body[column])
            ]
            rejected = [
                op.key
                for op in ops
                if op.acknowledged and not op.applied_answer and op.key in by_key
            ]
            report.check(
                f"{kind}s: acknowledged applied once as answered, 4xx not applied, none twice",
                not (twice or missing or rejected),
                f"twice {twice[:3]}, missing {missing[:3]}, rejected but applied {rejected[:3]}",
            )

    async def check_jobs(self, pool: asyncpg.Pool, world: World, receiver: WebhookReceiver) -> None:
        report = self.report
        released = await pool.fetch(
            "SELECT payload->>'transaction_id' AS id, count(*) AS n FROM webhook_events"
            " WHERE type = 'points.released' GROUP BY 1"
        )
        twice = [r["id"] for r in released if r["n"] > 1]
        events = {r["id"] for r in released}
        unannounced = await pool.fetch(
            "SELECT t.id::text AS id FROM transactions t JOIN partners p ON p.id = t.partner_id"
            " JOIN lots l ON l.transaction_id = t.id"
            " WHERE p.code = 'shop' AND t.kind = 'earn' AND l.state = 'available'"
            " AND l.points_remaining > 0 AND l.points_original > 0"
        )
        lost = [r["id"] for r in unannounced if r["id"] not in events]
        due = await pool.fetchval(
            "SELECT count(*) FROM lots WHERE state = 'pending' AND available_at < now() - $1::interval",
            timedelta(seconds=JOB_GRACE_SECONDS),
        )
        report.check(
            "pending release: every due lot released exactly once",
            not twice and not lost and not due,
            f"released twice {twice[:3]}, released without event {lost[:3]}, still pending {due}",
        )
        open_holds = await pool.fetchval(
            "SELECT count(*) FROM transactions WHERE kind = 'burn' AND status = 'authorized'"
            " AND hold_expires_at < now() - $1::interval",
            timedelta(seconds=JOB_GRACE_SECONDS),
        )
        deadline_voids = await pool.fetchval(
            "SELECT count(*) FROM transactions WHERE kind = 'burn' AND status = 'expired'"
        )
        seed_ids = [op.body["id"] for op in world.seed_holds]
        seed_states = await pool.fetch(
            "SELECT t.status, (SELECT count(*) FROM journal_entries e"
            "  WHERE e.transaction_id = t.id AND e.kind = 'void') AS voids"
            " FROM transactions t WHERE t.id = ANY($1::uuid[])",
            seed_ids,
        )
        seed_ok = len(seed_states) == len(seed_ids) and all(
            (r["status"], r["voids"]) == ("expired", 1) for r in seed_states
        )
        report.check(
            "hold deadlines: every hold left to its deadline voided by the job exactly once,"
            " none left open",
            open_holds == 0 and seed_ok,
            f"{open_holds} open past deadline; {deadline_voids} voided by the job, of which"
            f" {sum(r['status'] == 'expired' for r in seed_states)} of {len(seed_ids)} seeded",
        )
        deliveries = await pool.fetch(
            """
            SELECT e.id::text AS event_id, count(d.id) AS n,
                   count(*) FILTER (WHERE d.status = 'delivered') AS delivered
            FROM webhook_events e LEFT JOIN webhook_deliveries d ON d.event_id = e.id
            GROUP BY e.id
            """
        )
        not_one = [r["event_id"] for r in deliveries if r["n"] != 1]
        delivered = {r["event_id"] for r in deliveries if r["delivered"]}
        never_received = [e for e in delivered if e not in receiver.received]
        unknown = [e for e in receiver.received if e not in {r["event_id"] for r in deliveries}]
        report.receiver_duplicates = sum(1 for n in receiver.received.values() if n > 1)
        report.check(
            "webhooks: one delivery per event, every delivered one received, none invented",
            not not_one and not never_received and not unknown,
            f"{len(deliveries)} events, {len(delivered)} delivered; not one delivery {not_one[:3]},"
            f" marked delivered but not received {never_received[:3]}, unknown {unknown[:3]}",
        )

    async def check_settlement(self, pool: asyncpg.Pool, world: World) -> None:
        from tests.integration.test_settlement_properties import (
            _assert_every_entry_settled_once_in_its_period,
            _assert_lines_equal_transactions,
        )

        report = self.report
        # Settle the day(s) of the run as if they had ended (the processes are stopped).
        later = day_end(business_date(datetime.now(UTC))) + SETTLEMENT_DELAY + timedelta(minutes=1)
        settled = await settle_due(pool, later)
        partner_ids = [c.partner_id for c in world.partners.values()]
        try:
            await _assert_every_entry_settled_once_in_its_period(pool, partner_ids)
            await _assert_lines_equal_transactions(pool, partner_ids)
        except AssertionError as exc:
            report.check("settlement statements equal the ledger", False, str(exc)[:500])
        else:
            statements = sum(r.statements for r in settled)
            report.check("settlement statements equal the ledger", True, f"{statements} statements")
        async with pool.acquire() as conn:
            violations = await check_ledger(conn)
        report.check(
            "ledger check clean after settlement",
            not violations,
            "; ".join(v.describe() for v in violations),
        )


async def run_bank(
    *,
    seconds: float,
    clients: int = 24,
    members: int = 30,
    fault_every_seconds: float = 8.0,
    seed: int | None = None,
    log: Any = print,
) -> Report:
    # The harness's own pool logs each failed reconnect while PostgreSQL restarts.
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    # Short path: PostgreSQL's unix socket path must stay under 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="kb"))
    seed = seed if seed is not None else random.randrange(1 << 30)
    log(f"bank fault test: seed {seed}, {clients} clients, {members} members, in {root}")
    try:
        bank = Bank(
            seconds=seconds,
            clients=clients,
            members=members,
            fault_every_seconds=fault_every_seconds,
            seed=seed,
            root=root,
            log=log,
        )
        return await bank.run()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--fault-every", type=float, default=10.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    report = asyncio.run(
        run_bank(
            seconds=args.minutes * 60,
            clients=args.clients,
            members=args.members,
            fault_every_seconds=args.fault_every,
            seed=args.seed,
        )
    )
    print(report.describe())
    raise SystemExit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
