"""Earn throughput with 20 active challenges and tiers, against the same
server without them, in one run.

    uv run python tests/bench/engagement_bench.py [--rounds 3] [--duration 12] [--clients 32]

Starts `kring serve` (with its job worker, so the engagement processor runs
as it would in production and its work is part of what is measured) on a
fresh data folder with 2,000 members, and alternates, round after round:

- without: no challenge active, every member in the lowest tier (x1.0);
- with: 20 automatic challenges active (every kind, some for a tier only,
  some sponsored), a third of the members Silver (x1.25) and a third Gold
  (x1.5), so earns carry bonus lots and the processor enrols members,
  counts progress and pays rewards while wrk drives POST /partner/v1/earn.

After each "with" run it waits for the processor to finish the backlog and
prints how long that took. Each round also runs pgbench tpcb-like on the
same server, so every figure has its reference from the same run. Issue 5
asks for "with" to keep at least 80% of "without".

Not a pytest test (no `test_` prefix): it needs `wrk` and takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.bench.earn_bench import (  # noqa: E402
    BenchError,
    Postgres,
    RssSampler,
    Server,
    fetch_token_and_check,
    free_port,
    kring_command,
    last_json,
    run_kring,
    run_wrk,
    write_lua,
)

RATIO_MIN: Final = 0.8
CHALLENGES: Final = 20
DRAIN_S_MAX: Final = 300.0

# (kind, target, audience tier or None, sponsored): 20 challenges of every
# kind, some easy (wrk's baskets are 1 to 200 euros, and each member makes
# about 3 to 5 purchases in a run), so rewards are paid while earns are
# measured; fresh ones start with each "with" run.
CHALLENGE_MIX: Final = [
    ("purchases", 3, None, False),
    ("purchases", 10, None, True),
    ("spend", 50_000, None, False),
    ("spend", 150_000, None, True),
    ("distinct_partners", 2, None, False),
    ("weekly_streak", 2, None, False),
    ("nth_purchase", 10, None, False),
    ("nth_purchase", 25, None, True),
    ("anniversary", 1, None, False),
    ("purchases", 8, "silver", False),
    ("purchases", 6, "gold", True),
    ("spend", 80_000, "gold", False),
    ("purchases", 12, None, False),
    ("spend", 100_000, None, False),
    ("purchases", 7, None, True),
    ("distinct_partners", 3, None, False),
    ("weekly_streak", 4, None, False),
    ("purchases", 15, None, False),
    ("spend", 200_000, "silver", True),
    ("nth_purchase", 15, None, False),
]
assert len(CHALLENGE_MIX) == CHALLENGES


@dataclass
class Run:
    label: str
    earn_per_s: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    non_2xx: int
    queue_left: int | None = None
    drain_s: float | None = None
    rewards: int | None = None


async def _switch(url: str, sponsor_id: int, *, on: bool) -> None:
    """Earlier challenges ended; with `on`, 20 new ones starting now (so only
    this run's purchases count, as for a challenge launched today) and the
    members in higher tiers; without, everyone in the lowest tier."""
    conn = await asyncpg.connect(url)
    try:
        # The previous run's challenges ended long ago, as a programme's ended
        # challenges have (their windows move 40 days back): the processor
        # leaves a closed, unmet enrolment alone a day after it closes.
        await conn.execute(
            "UPDATE challenges SET status = 'withdrawn', starts_at = starts_at - interval"
            " '40 days', ends_at = now() - interval '10 days' WHERE ends_at > now()"
        )
        await conn.execute(
            "UPDATE challenge_enrolments SET counts_from = counts_from - interval '40 days',"
            " counts_until = now() - interval '10 days' WHERE counts_until > now()"
        )
        await conn.execute("DELETE FROM member_tiers")
        if on:
            await conn.executemany(
                "INSERT INTO challenges (name, kind, target, starts_at, ends_at, enrolment,"
                " audience, audience_tier, reward_points, sponsor_id, created_at, updated_at)"
                " VALUES ($1, $2, $3, now(), now() + interval '30 days', 'automatic', $4, $5,"
                " 100, $6, now(), now())",
                [
                    (
                        f"Bench {i}: {kind} {target}",
                        kind,
                        target,
                        "tier" if tier else "everyone",
                        tier,
                        sponsor_id if sponsored else None,
                    )
                    for i, (kind, target, tier, sponsored) in enumerate(CHALLENGE_MIX)
                ],
            )
            await conn.execute(
                "INSERT INTO member_tiers (member_id, tier_code, since)"
                " SELECT id, CASE id % 3 WHEN 1 THEN 'silver' ELSE 'gold' END, now()"
                " FROM members WHERE id % 3 <> 0"
            )
        # Start each run with an empty queue.
        await conn.execute("DELETE FROM engagement_activity")
    finally:
        await conn.close()


async def _drain(url: str) -> tuple[int, float, int]:
    """The queue left when wrk stopped (rows), the seconds until the processor
    had taken it all and paid what it made due, and the rewards paid so far."""
    conn = await asyncpg.connect(url)
    try:
        left = int(await conn.fetchval("SELECT count(*) FROM engagement_activity"))
        started = time.monotonic()
        while await conn.fetchval(
            "SELECT (SELECT count(*) FROM engagement_activity) + (SELECT count(*)"
            " FROM challenge_enrolments e JOIN challenges c ON c.id = e.challenge_id"
            " WHERE e.met <> e.rewarded AND (c.status = 'active' OR e.rewarded))"
        ):
            if time.monotonic() - started > DRAIN_S_MAX:
                raise BenchError("the engagement processor did not drain its backlog")
            await asyncio.sleep(0.2)
        rewards = await conn.fetchval("SELECT count(*) FROM challenge_rewards")
        return left, time.monotonic() - started, int(rewards)
    finally:
        await conn.close()


def _measure(server: Server, script: Path, clients: int, duration: int, label: str) -> Run:
    print(f"  {label}: wrk {duration} s ...", file=sys.stderr, flush=True)
    with RssSampler(server) as rss:
        wrk = run_wrk(server.base_url, script, clients, duration)
    return Run(
        label=label,
        earn_per_s=wrk["requests"] / (wrk["duration_us"] / 1e6),
        p50_ms=wrk["p50_us"] / 1000,
        p99_ms=wrk["p99_us"] / 1000,
        rss_mb=rss.peak_bytes / (1024 * 1024),
        non_2xx=int(wrk["status_ge_400"]),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=12, help="seconds per wrk run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument(
        "--worker",
        choices=["in-process", "separate"],
        default="in-process",
        help="the job worker inside `kring serve` (default) or as a `kring worker` process",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("engagement_bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="kring-engagement-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KRING_MODE")}
    env.update(KRING_DATA_DIR=str(data_dir), KRING_LOG_LEVEL="warning")
    server: Server | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        server = Server(
            env, data_dir, free_port(), ["--no-jobs"] if args.worker == "separate" else []
        )
        server.wait_ready()
        if args.worker == "separate":
            worker = subprocess.Popen(
                [*kring_command(), "worker"],
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        creds = last_json(
            run_kring(
                [
                    "partner",
                    "create",
                    "--code",
                    f"bench-{uuid.uuid4().hex[:8]}",
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
        url = run_kring(["db", "url"], env).strip().splitlines()[-1]
        pg = Postgres.from_url(url)
        pg.init_pgbench("pgbench", 1)
        partner_id = asyncio.run(_partner_id(url, creds["client_id"]))
        token = asyncio.run(
            fetch_token_and_check(
                server.base_url, creds["client_id"], creds["client_secret"], cards[0]
            )
        )
        script = data_dir / "earn.lua"
        write_lua(script, cards, token)
        run_wrk(server.base_url, script, args.clients, 3)  # warm-up
        runs: list[Run] = []
        pgbench: list[float] = []
        rewards_before = 0
        for round_ in range(1, args.rounds + 1):
            asyncio.run(_switch(url, partner_id, on=False))
            runs.append(_measure(server, script, args.clients, args.duration, "without"))
            asyncio.run(_switch(url, partner_id, on=True))
            engaged = _measure(server, script, args.clients, args.duration, "with")
            engaged.queue_left, engaged.drain_s, rewards_total = asyncio.run(_drain(url))
            engaged.rewards = rewards_total - rewards_before
            rewards_before = rewards_total
            runs.append(engaged)
            print(f"  round {round_}: pgbench {args.duration} s ...", file=sys.stderr, flush=True)
            pgbench.append(pg.pgbench("pgbench", args.clients, args.duration))
        print(render(runs, pgbench, args))
        problems = [
            line
            for line in server.log_path.read_text(errors="replace").splitlines()
            if "Error" in line or "failed" in line
        ]
        if problems:
            print(f"server log: {len(problems)} error lines, e.g.", *problems[:5], sep="\n  ")
        print(run_kring(["ledger", "check"], env).strip())
        return 0
    except BenchError as exc:
        print(f"engagement_bench: {exc}", file=sys.stderr)
        if server is not None:
            print(server.log_tail(), file=sys.stderr)
        return 1
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        if server is not None:
            server.stop()
        if args.keep:
            print(f"data kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


async def _partner_id(url: str, client_id: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT partner_id FROM partner_credentials WHERE client_id = $1", client_id
            )
        )
    finally:
        await conn.close()


def render(runs: list[Run], pgbench: list[float], args: argparse.Namespace) -> str:
    lines = [
        f"Kring earn with {CHALLENGES} challenges and tiers: {args.rounds} rounds of "
        f"{args.duration} s, {args.clients} clients, {os.cpu_count()} CPUs, job worker {args.worker}",
        "",
        "| round | run | earn/s | p50 ms | p99 ms | RSS MB | queue left at the end | drained in s | rewards paid | pgbench TPS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, run in enumerate(runs):
        round_ = i // 2
        lines.append(
            f"| {round_ + 1} | {run.label} | {run.earn_per_s:,.0f} | {run.p50_ms:.1f} | "
            f"{run.p99_ms:.1f} | {run.rss_mb:.0f} | "
            f"{'-' if run.queue_left is None else f'{run.queue_left:,}'} | "
            f"{'-' if run.drain_s is None else f'{run.drain_s:.1f}'} | "
            f"{'-' if run.rewards is None else f'{run.rewards:,}'} | "
            f"{pgbench[round_]:,.0f} |"
        )
    without = [r.earn_per_s for r in runs if r.label == "without"]
    with_ = [r.earn_per_s for r in runs if r.label == "with"]
    mean_ratio = statistics.mean(with_) / statistics.mean(without)
    median_ratio = statistics.median(with_) / statistics.median(without)
    errors = sum(r.non_2xx for r in runs)
    lines += [
        "",
        f"with / without: {mean_ratio:.2f} by mean, {median_ratio:.2f} by median "
        f"(target >= {RATIO_MIN}: {'met' if mean_ratio >= RATIO_MIN else 'MISSED'}); "
        f"earn/s per pgbench TPS without {statistics.mean(without) / statistics.mean(pgbench):.2f}, "
        f"with {statistics.mean(with_) / statistics.mean(pgbench):.2f}; non-2xx answers: {errors}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
