"""Till traffic: what a busy shop sends to Kring, one checkout at a time.

Each worker plays one till. A checkout is mostly a purchase that earns
points; sometimes the customer pays with points (one-step burn, or a hold
that is captured in part or voided, like a card payment), brings something
back (a partial or full refund of an earlier purchase), or staff look a
transaction up. Every write gets its own idempotency key and a failed attempt
(timeout, dropped connection, 429, 5xx) is sent again with the same key, so a
retry can never earn or burn twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from partners.client import PartnerApiError, PartnerClient, Transaction, new_idempotency_key

T = TypeVar("T")

RETRIES_MAX: Final = 4
RETRY_DELAY_BASE_S: Final = 0.1
RETRY_DELAY_MAX_S: Final = 2.0
# Bounded memory however long the run: latencies beyond this are sampled.
LATENCY_SAMPLES_MAX: Final = 50_000
RECENT_EARNS_MAX: Final = 2_000
RECENT_TRANSACTIONS_MAX: Final = 500
BURN_POINTS_MAX: Final = 2_000

# Basket sizes in cents: a lognormal-like shape (many small baskets, a long
# tail of large ones) as weighted ranges, so amounts are integers from the
# start. Median near 20 euros, about 1 in 100 above 500 euros.
BASKET_RANGES_CENTS: Final[tuple[tuple[int, int, int], ...]] = (
    # (low, high, weight)
    (50, 499, 14),
    (500, 1_499, 24),
    (1_500, 2_999, 22),
    (3_000, 5_999, 18),
    (6_000, 11_999, 12),
    (12_000, 24_999, 6),
    (25_000, 49_999, 3),
    (50_000, 200_000, 1),
)

# Share of checkouts per scenario, in percent.
SCENARIO_WEIGHTS: Final[dict[str, int]] = {
    "purchase": 70,
    "burn": 8,
    "two_phase_burn": 10,
    "refund": 10,
    "lookup": 2,
}
IDENTIFY_BEFORE_PURCHASE_PERCENT: Final = 30
CAPTURE_PERCENT: Final = 75  # of holds; the rest are voided
FULL_REFUND_PERCENT: Final = 40  # of refunds; the rest are partial


def basket_cents(rng: random.Random) -> int:
    low, high, _ = rng.choices(BASKET_RANGES_CENTS, weights=[w for *_, w in BASKET_RANGES_CENTS])[0]
    return rng.randint(low, high)


@dataclass
class OperationStats:
    ok: int = 0
    failed: int = 0
    retries: int = 0
    replays: int = 0
    seen: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def record_latency(self, latency_ms: float, rng: random.Random) -> None:
        # Reservoir sampling keeps the percentiles honest with bounded memory.
        self.seen += 1
        if len(self.latencies_ms) < LATENCY_SAMPLES_MAX:
            self.latencies_ms.append(latency_ms)
            return
        slot = rng.randrange(self.seen)
        if slot < LATENCY_SAMPLES_MAX:
            self.latencies_ms[slot] = latency_ms

    def percentile_ms(self, percent: int) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, (len(ordered) * percent) // 100)
        return ordered[index]


@dataclass
class Summary:
    duration_s: float = 0.0
    workers: int = 0
    operations: dict[str, OperationStats] = field(default_factory=dict)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def op(self, name: str) -> OperationStats:
        return self.operations.setdefault(name, OperationStats())

    @property
    def total_ok(self) -> int:
        return sum(s.ok for s in self.operations.values())

    @property
    def total_failed(self) -> int:
        return sum(s.failed for s in self.operations.values())

    @property
    def unexpected_errors(self) -> int:
        """Failures that point at the server or the network, not at the business rules."""
        return sum(
            n for (_, code), n in self.errors.items() if code in {"timeout", "transport_error"}
        ) + sum(n for (_, code), n in self.errors.items() if code.startswith("http_5"))

    def as_dict(self) -> dict[str, object]:
        return {
            "duration_s": round(self.duration_s, 3),
            "workers": self.workers,
            "operations": {
                name: {
                    "ok": s.ok,
                    "failed": s.failed,
                    "retries": s.retries,
                    "replays": s.replays,
                    "latency_ms_p50": s.percentile_ms(50),
                    "latency_ms_p99": s.percentile_ms(99),
                }
                for name, s in sorted(self.operations.items())
            },
            "errors": [
                {"operation": op, "code": code, "count": n}
                for (op, code), n in self.errors.most_common()
            ],
            "skipped": dict(self.skipped),
        }

    def render(self) -> str:
        ok = self.total_ok
        rate = ok / self.duration_s if self.duration_s > 0 else 0.0
        lines = [
            f"kring-pos: {self.duration_s:.1f} s, {self.workers} tills, "
            f"{ok} calls ok, {self.total_failed} failed, {rate:.1f} ok calls/s",
            "",
            f"{'operation':<12}{'ok':>8}{'failed':>8}{'retries':>9}{'replays':>9}"
            f"{'p50 ms':>9}{'p99 ms':>9}",
        ]
        for name, s in sorted(self.operations.items()):
            lines.append(
                f"{name:<12}{s.ok:>8}{s.failed:>8}{s.retries:>9}{s.replays:>9}"
                f"{_ms(s.percentile_ms(50)):>9}{_ms(s.percentile_ms(99)):>9}"
            )
        if self.errors:
            lines += ["", "errors by code:"]
            for (op, code), n in self.errors.most_common():
                lines.append(f"  {op:<12}{code:<32}{n:>8}")
        if self.skipped:
            lines += ["", "checkouts that fell back to a plain purchase:"]
            for reason, n in self.skipped.most_common():
                lines.append(f"  {reason:<44}{n:>8}")
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@dataclass
class _Earn:
    transaction: Transaction
    refunded_cents: int = 0

    @property
    def refundable_cents(self) -> int:
        return (self.transaction.amount_cents or 0) - self.refunded_cents


class Simulator:
    """Runs `workers` tills against one partner until `duration_s` has passed."""

    def __init__(
        self,
        client: PartnerClient,
        cards: Sequence[str],
        *,
        workers: int,
        duration_s: float,
        currency: str = "EUR",
        stores: int = 5,
        think_ms: int = 0,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not cards:
            raise ValueError("the simulator needs at least one card number")
        if workers < 1:
            raise ValueError("workers must be 1 or more")
        self._client = client
        self._cards = list(cards)
        self._workers = workers
        self._duration_s = duration_s
        self._currency = currency
        self._stores = [f"store-{n:03d}" for n in range(1, max(stores, 1) + 1)]
        self._think_s = think_ms / 1000
        self._rng = random.Random(seed)
        self._clock = clock
        self._sleep = sleep
        self._deadline = 0.0
        self._recent_earns: deque[_Earn] = deque(maxlen=RECENT_EARNS_MAX)
        self._recent: deque[Transaction] = deque(maxlen=RECENT_TRANSACTIONS_MAX)
        self.summary = Summary(workers=workers)

    async def run(self) -> Summary:
        started = self._clock()
        self._deadline = started + self._duration_s
        try:
            async with asyncio.TaskGroup() as group:
                for till in range(self._workers):
                    group.create_task(self._till(till))
        finally:
            self.summary.duration_s = self._clock() - started
        return self.summary

    def stop(self) -> None:
        """Let every till finish its current checkout, then end the run."""
        self._deadline = 0.0

    async def _till(self, till: int) -> None:
        scenarios = list(SCENARIO_WEIGHTS)
        weights = list(SCENARIO_WEIGHTS.values())
        sequence = 0
        while self._clock() < self._deadline:
            sequence += 1
            receipt_ref = f"T{till:02d}-{sequence:07d}"
            scenario = self._rng.choices(scenarios, weights=weights)[0]
            if scenario == "burn":
                await self._burn(receipt_ref)
            elif scenario == "two_phase_burn":
                await self._two_phase_burn(receipt_ref)
            elif scenario == "refund":
                await self._refund(receipt_ref)
            elif scenario == "lookup":
                await self._lookup()
            else:
                await self._purchase(
                    receipt_ref, identify=self._percent(IDENTIFY_BEFORE_PURCHASE_PERCENT)
                )
            if self._think_s > 0:
                await self._sleep(self._rng.uniform(0, 2 * self._think_s))

    # --- scenarios ---------------------------------------------------------

    async def _purchase(self, receipt_ref: str, *, identify: bool) -> None:
        card = self._rng.choice(self._cards)
        if identify and await self._call("identify", lambda _: self._client.identify(card)) is None:
            return
        amount_cents = basket_cents(self._rng)
        store_id = self._rng.choice(self._stores)
        earn = await self._call(
            "earn",
            lambda key: self._client.earn(
                card,
                amount_cents,
                self._currency,
                receipt_ref=receipt_ref,
                store_id=store_id,
                idempotency_key=key,
            ),
        )
        if earn is not None:
            self._recent_earns.append(_Earn(earn))
            self._recent.append(earn)

    async def _points_to_spend(self, receipt_ref: str) -> tuple[str, int] | None:
        """A card with points and an amount to spend, or None after a plain purchase."""
        card = self._rng.choice(self._cards)
        member = await self._call("identify", lambda _: self._client.identify(card))
        if member is None:
            return None
        if member.available_points < 1:
            # New members' points are still pending; they pay with money instead.
            self.summary.skipped["no available points to burn"] += 1
            await self._purchase(receipt_ref, identify=False)
            return None
        points = self._rng.randint(1, min(member.available_points, BURN_POINTS_MAX))
        return card, points

    async def _burn(self, receipt_ref: str) -> None:
        spend = await self._points_to_spend(receipt_ref)
        if spend is None:
            return
        card, points = spend
        burn = await self._call(
            "burn",
            lambda key: self._client.burn(
                card, points, receipt_ref=receipt_ref, idempotency_key=key
            ),
        )
        if burn is not None:
            self._recent.append(burn)

    async def _two_phase_burn(self, receipt_ref: str) -> None:
        spend = await self._points_to_spend(receipt_ref)
        if spend is None:
            return
        card, points = spend
        hold = await self._call(
            "authorize",
            lambda key: self._client.authorize(
                card, points, receipt_ref=receipt_ref, idempotency_key=key
            ),
        )
        if hold is None:
            return
        # The cashier finishes the basket before the hold is settled.
        await self._sleep(self._rng.uniform(0, 0.2))
        if self._percent(CAPTURE_PERCENT):
            take = None if self._percent(50) else self._rng.randint(1, points)
            done = await self._call(
                "capture",
                lambda key: self._client.capture(hold.id, take, idempotency_key=key),
            )
        else:
            done = await self._call(
                "void", lambda key: self._client.void(hold.id, idempotency_key=key)
            )
        if done is not None:
            self._recent.append(done)

    async def _refund(self, receipt_ref: str) -> None:
        earn = self._refundable_earn()
        if earn is None:
            self.summary.skipped["no earlier purchase to refund"] += 1
            await self._purchase(receipt_ref, identify=False)
            return
        left_cents = earn.refundable_cents
        if left_cents == 1 or self._percent(FULL_REFUND_PERCENT):
            amount_cents = left_cents
        else:
            amount_cents = self._rng.randint(1, left_cents - 1)
        # Reserved before the call so two tills cannot refund the same cents.
        earn.refunded_cents += amount_cents
        refund = await self._call(
            "refund",
            lambda key: self._client.refund(
                earn.transaction.id,
                amount_cents,
                earn.transaction.currency or self._currency,
                receipt_ref=f"{receipt_ref}-R",
                idempotency_key=key,
            ),
        )
        if refund is None:
            earn.refunded_cents -= amount_cents
            return
        self._recent.append(refund)
        if earn.refundable_cents > 0:
            self._recent_earns.append(earn)

    async def _lookup(self) -> None:
        if self._recent and self._percent(70):
            known = self._rng.choice(self._recent)
            await self._call("get", lambda _: self._client.get_transaction(known.id))
        else:
            await self._call("list", lambda _: self._client.list_transactions(limit=20))

    def _refundable_earn(self) -> _Earn | None:
        while self._recent_earns:
            # Returns come from any recent purchase, not only the last one.
            index = self._rng.randrange(len(self._recent_earns))
            earn = self._recent_earns[index]
            del self._recent_earns[index]
            if earn.refundable_cents > 0:
                return earn
        return None

    # --- plumbing ----------------------------------------------------------

    def _percent(self, percent: int) -> bool:
        return self._rng.randrange(100) < percent

    async def _call(self, operation: str, send: Callable[[str], Awaitable[T]]) -> T | None:
        """Send until it succeeds, fails for good, or runs out of retries; same key each time."""
        stats = self.summary.op(operation)
        key = new_idempotency_key()
        for attempt in range(RETRIES_MAX + 1):
            started = time.perf_counter()
            try:
                result = await send(key)
            except PartnerApiError as exc:
                if exc.retryable and attempt < RETRIES_MAX:
                    stats.retries += 1
                    ceiling_s = min(RETRY_DELAY_BASE_S * 2**attempt, RETRY_DELAY_MAX_S)
                    await self._sleep(self._rng.uniform(0, ceiling_s))
                    continue
                stats.failed += 1
                self.summary.errors[(operation, exc.code)] += 1
                return None
            stats.ok += 1
            stats.record_latency((time.perf_counter() - started) * 1000, self._rng)
            if isinstance(result, Transaction) and result.replayed:
                stats.replays += 1
            return result
        raise AssertionError("unreachable: the last attempt returns")
