"""A year at the tills, written through the same service calls as /partner/v1.

Time is simulated: a `ManualClock` steps day by day from a year ago to now.
Each night the periodic jobs run as the worker would run them (holds past
their deadline voided, pending points released, old points expired); each
day, the members who shop that day do so concurrently. Every member draws
from their own random stream and only they touch their accounts during the
day, so the history is the same however the connections interleave. At the
end every ended day of the demo year is settled, oldest first (the first run
also carries the launch weeks).

Before spending points a member's balance is read, so the simulation never
asks for points that are not there; a `DomainError` here is a bug and
surfaces.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import asyncpg
import msgspec

from api.clock import ManualClock
from api.demo.cast import (
    LAUNCH_WEEKS,
    PARTNERS,
    PARTNERS_BY_CODE,
    DemoPartner,
    Person,
    launch_of,
    partner_joined_at,
    year_start_of,
)
from api.demo.giving import Giving
from api.jobs import run_due_jobs
from api.partner_api import schemas, services
from api.partner_api.auth import PartnerPrincipal
from api.partner_api.idempotency import Answer
from api.settlement.periods import business_date
from api.settlement.run import settle_day, settle_due

API_PREFIX = "/partner/v1"
CURRENCY = "EUR"
HOLD_MINUTES_DEFAULT = 30  # as the service's default (settings.hold_minutes_default)
NIGHTLY_JOBS_HOUR_UTC = 3
EARN_CENTS_MIN = 100  # below a euro left to pay in cash, the till skips the earn
OTHER_STORE_PERCENT = 15
PARTIAL_CAPTURE_PERCENT = 35
LAUNCH_EARNS_MAX = 3
OPEN_HOLDS_AT_END = 3
SCRIPTED_HOLD_POINTS_MIN = 100
# Debtors fill up this many days before the end; the pump releases the points
# after its two-day window, and the day before the end they spend and refund.
DEBT_SCRIPT_DAYS = 4
# Seasonal trade: (partner kind, month) -> multiplier on visits.
SEASON = {
    ("bookshop", 12): 1.9,
    ("bookshop", 11): 1.2,
    ("online_fashion", 11): 1.5,
    ("online_fashion", 12): 1.6,
    ("online_fashion", 1): 1.3,
    ("cinema", 7): 1.3,
    ("cinema", 8): 1.3,
    ("cinema", 12): 1.3,
    ("fuel_station", 7): 1.3,
    ("fuel_station", 8): 1.2,
    ("cafe", 1): 0.8,
    ("cafe", 6): 1.2,
    ("cafe", 7): 1.2,
    ("supermarket", 12): 1.2,
}


def _decode(answer: Answer) -> schemas.TransactionOut:
    if answer.replayed:  # every demo write has a fresh key
        raise RuntimeError("a demo write was answered as a replay")
    return msgspec.json.decode(answer.body, type=schemas.TransactionOut)


class Tills:
    """The partners' tills: each call is what the HTTP handler would do for it."""

    def __init__(self, pool: asyncpg.Pool, principals: dict[str, PartnerPrincipal]) -> None:
        self.pool = pool
        self.principals = principals

    def _request(self, code: str, path: str, body: msgspec.Struct) -> services.Request:
        return services.Request.of(self.principals[code], str(uuid4()), API_PREFIX + path, body)

    async def earn(
        self, at: datetime, code: str, card: str, amount_cents: int, receipt: str, store: str
    ) -> schemas.TransactionOut:
        body = schemas.EarnRequest(
            card_number=card,
            amount_cents=amount_cents,
            currency=CURRENCY,
            receipt_ref=receipt,
            store_id=store,
        )
        request = self._request(code, "/earn", body)
        return _decode(await services.earn_points(self.pool, ManualClock(at), request, body))

    async def burn(
        self, at: datetime, code: str, card: str, points: int, receipt: str, store: str
    ) -> schemas.TransactionOut:
        body = schemas.BurnRequest(
            card_number=card, points=points, receipt_ref=receipt, store_id=store
        )
        request = self._request(code, "/burns", body)
        answer = await services.authorize_burn(
            self.pool,
            ManualClock(at),
            request,
            body,
            hold_minutes_default=HOLD_MINUTES_DEFAULT,
            capture=True,
        )
        return _decode(answer)

    async def authorize(
        self,
        at: datetime,
        code: str,
        card: str,
        points: int,
        receipt: str,
        store: str,
        hold_minutes: int | None = None,
    ) -> schemas.TransactionOut:
        body = schemas.AuthorizeRequest(
            card_number=card,
            points=points,
            receipt_ref=receipt,
            store_id=store,
            hold_minutes=hold_minutes,
        )
        request = self._request(code, "/burns/authorize", body)
        answer = await services.authorize_burn(
            self.pool,
            ManualClock(at),
            request,
            body,
            hold_minutes_default=HOLD_MINUTES_DEFAULT,
            capture=False,
        )
        return _decode(answer)

    async def finish(
        self, at: datetime, code: str, hold_id: UUID, *, capture: bool, points: int | None = None
    ) -> schemas.TransactionOut:
        body = schemas.CaptureRequest(points=points)
        action = "capture" if capture else "void"
        request = self._request(code, f"/burns/{hold_id}/{action}", body)
        answer = await services.finish_burn(
            self.pool,
            ManualClock(at),
            request,
            hold_id,
            status="captured" if capture else "voided",
            points=points,
        )
        return _decode(answer)

    async def refund(
        self, at: datetime, code: str, earn_id: UUID, amount_cents: int, receipt: str
    ) -> schemas.TransactionOut:
        body = schemas.RefundRequest(
            amount_cents=amount_cents, currency=CURRENCY, receipt_ref=receipt
        )
        request = self._request(code, f"/transactions/{earn_id}/refunds", body)
        answer = await services.refund_earn(self.pool, ManualClock(at), request, earn_id, body)
        return _decode(answer)

    async def available_points(self, member_id: int) -> int:
        balance: int = await self.pool.fetchval(
            "SELECT balance FROM accounts WHERE member_id = $1 AND kind = 'member_available'",
            member_id,
        )
        return balance


@dataclass(frozen=True, slots=True)
class Return:
    """Goods brought back (or an order sent back): a refund of an earlier earn."""

    at: datetime
    partner: DemoPartner
    earn_id: UUID
    amount_cents: int


@dataclass(frozen=True, slots=True)
class Visit:
    at: datetime
    partner: DemoPartner


@dataclass(slots=True)
class Shopper:
    person: Person
    card_number: str
    member_id: int
    rng: random.Random
    # Returns due, by day of the demo year.
    returns: dict[int, list[Return]] = field(default_factory=lambda: defaultdict(list))


def _receipt(partner: DemoPartner, at: datetime, rng: random.Random) -> str:
    return f"{partner.receipt_prefix}-{at:%y%m%d}-{rng.randrange(10_000):04d}"


def _store(shopper: Shopper, partner: DemoPartner) -> str:
    if len(partner.stores) > 1 and shopper.rng.randrange(100) < OTHER_STORE_PERCENT:
        return shopper.rng.choice(partner.stores)
    return shopper.person.home_store[partner.code]


def _at_hours(day_start: datetime, partner: DemoPartner, rng: random.Random) -> datetime:
    opens, closes = partner.hours_utc
    return day_start + timedelta(seconds=rng.uniform(opens * 3600, closes * 3600 - 600))


class Year:
    """The demo year: nightly jobs, then each day's shoppers."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        tills: Tills,
        shoppers: list[Shopper],
        end: datetime,
        giving: Giving | None = None,
    ) -> None:
        self.pool = pool
        self.giving = giving
        self.tills = tills
        self.shoppers = shoppers
        self.end = end
        self.start = year_start_of(end)
        self.last_day = (end - self.start).days
        self.clock = ManualClock(launch_of(end))
        self.partner_joined = {p.code: partner_joined_at(p, end) for p in PARTNERS}

    async def run(self) -> None:
        await self._launch()
        if self.giving is not None:
            await self.giving.open()
        for day in range(self.last_day + 1):
            day_start = self.start + timedelta(days=day)
            self.clock.set(day_start + timedelta(hours=NIGHTLY_JOBS_HOUR_UTC))
            if self.clock.now() <= self.end:
                await run_due_jobs(self.pool, self.clock.now())
                if self.giving is not None:
                    await self.giving.night(day, self.clock.now())
            await self._day(day, day_start)
            if self.giving is not None:
                await self.giving.evening(day, day_start)
            if day == self.last_day - DEBT_SCRIPT_DAYS:
                await self._debtors_fill_up(day_start)
            elif day == self.last_day - 2:
                await self._no_show(day_start)
            elif day == self.last_day - 1:
                await self._debtors_spend_and_refund(day_start)
        await self._open_holds_at_end()
        self.clock.set(self.end)
        await run_due_jobs(self.pool, self.clock.now())
        await self._settle()

    async def _settle(self) -> None:
        """Close every business day that has ended: the statements (for the
        portal and the API) and money entries that the settlement job would
        have written night by night. Run once the history is written, so every
        entry of a day exists when its day closes.

        Settlement goes live the day before the demo year: a first run has no
        earlier close, so it takes everything booked since the launch into one
        opening statement per partner. That spares some 850 runs (and as many
        empty statements per founding partner) for the years between the
        launch weeks and the demo year, when the demo has no trade; then every
        day is settled. `settle_due` closes a bounded number of days per call,
        so it is called until none is left."""
        if await self.pool.fetchval("SELECT NOT EXISTS (SELECT FROM settlement_runs)"):
            go_live = business_date(self.start) - timedelta(days=1)
            await settle_day(self.pool, go_live, self.clock.now())
        while await settle_due(self.pool, self.clock.now()):
            pass

    async def _launch(self) -> None:
        """The programme's first weeks, years ago: its launch customers earn
        a little; what they never spend expires during the demo year."""
        launch = self.clock.now()
        at_launch = [p for p in PARTNERS if self.partner_joined[p.code] <= launch]
        async with asyncio.TaskGroup() as group:
            for shopper in self.shoppers:
                if shopper.person.founder:
                    group.create_task(self._launch_customer(shopper, at_launch))
        # The nightly jobs of the launch weeks at once, after the last return window.
        self.clock.set(launch + timedelta(weeks=2 * LAUNCH_WEEKS, days=31))
        await run_due_jobs(self.pool, self.clock.now())

    async def _launch_customer(self, shopper: Shopper, partners: list[DemoPartner]) -> None:
        rng, person = shopper.rng, shopper.person
        weights = [person.affinity.get(p.code, 0.0) + 0.01 for p in partners]
        joined_day = person.joined_at.replace(hour=0, minute=0, second=0, microsecond=0)
        for index in range(rng.randint(1, LAUNCH_EARNS_MAX)):
            partner = rng.choices(partners, weights)[0]
            if index == 0:  # the first purchase comes with the card
                at = person.joined_at + timedelta(minutes=3)
            else:
                day = joined_day + timedelta(days=rng.randint(1, LAUNCH_WEEKS * 7))
                at = _at_hours(day, partner, rng)
            await self._earn(shopper, partner, at, self._basket(partner, rng), day=None)

    async def _day(self, day: int, day_start: datetime) -> None:
        open_partners = [p for p in PARTNERS if self.partner_joined[p.code] <= day_start]
        plans: list[tuple[Shopper, list[Visit | Return]]] = []
        for shopper in self.shoppers:
            events: list[Visit | Return] = [
                r for r in shopper.returns.pop(day, []) if r.at <= self.end
            ]
            events += self._visits(shopper, day, day_start, open_partners)
            if events:
                events.sort(key=lambda event: event.at)
                plans.append((shopper, events))
        async with asyncio.TaskGroup() as group:
            for shopper, events in plans:
                group.create_task(self._live(shopper, day, events))

    def _visits(
        self, shopper: Shopper, day: int, day_start: datetime, partners: list[DemoPartner]
    ) -> list[Visit]:
        person, rng = shopper.person, shopper.rng
        if person.joined_at >= day_start + timedelta(days=1) or person.dormant:
            return []
        if person.debtor and day >= self.last_day - DEBT_SCRIPT_DAYS:
            return []  # from here on, the script in `_debtors_*` runs their days
        visits: list[Visit] = []
        weekday, month = day_start.weekday(), day_start.month
        for partner in partners:
            chance = (
                partner.visits_per_week
                / 7
                * person.activity
                * person.affinity.get(partner.code, 0.0)
                * partner.weekday_weights[weekday]
                * SEASON.get((partner.kind, month), 1.0)
            )
            if rng.random() < chance:
                at = _at_hours(day_start, partner, rng)
                if person.joined_at < at <= self.end:
                    visits.append(Visit(at, partner))
        if day_start <= person.joined_at:
            # Signed up at the till: the first purchase comes with the card.
            first = next((p for p in partners if p.code in person.favourites), partners[0])
            visits.append(Visit(person.joined_at + timedelta(minutes=3), first))
        return visits

    async def _live(self, shopper: Shopper, day: int, events: list[Visit | Return]) -> None:
        for event in events:
            if isinstance(event, Return):
                await self._return(shopper, event)
            else:
                await self._visit(shopper, event.partner, event.at, day)

    def _basket(self, partner: DemoPartner, rng: random.Random) -> int:
        low, mode, high = partner.basket_cents
        return round(rng.triangular(low, high, mode))

    async def _visit(self, shopper: Shopper, partner: DemoPartner, at: datetime, day: int) -> None:
        rng, person = shopper.rng, shopper.person
        basket_cents = self._basket(partner, rng)
        paid_points = 0
        if rng.random() < person.burn_appetite * partner.burn_appeal:
            available = await self.tills.available_points(shopper.member_id)
            if available >= person.burn_min_points:
                paid_points, bought = await self._pay_with_points(
                    shopper, partner, at, basket_cents, available
                )
                if not bought:
                    return
        cash_cents = basket_cents - paid_points
        if cash_cents >= EARN_CENTS_MIN:
            await self._earn(shopper, partner, at + timedelta(minutes=1), cash_cents, day)

    async def _pay_with_points(
        self,
        shopper: Shopper,
        partner: DemoPartner,
        at: datetime,
        basket_cents: int,
        available: int,
    ) -> tuple[int, bool]:
        """Pay (part of) the basket with points, one point a cent; returns the
        points paid and whether the purchase went ahead."""
        rng, card = shopper.rng, shopper.card_number
        store, receipt = _store(shopper, partner), _receipt(partner, at, rng)
        points = min(available, basket_cents)
        if points >= 200 and rng.random() < 0.5:
            points -= points % 100  # "use 1,200 of my points"
        mode = rng.choices(("burn", "capture", "void", "lapse"), partner.burn_modes)[0]
        code = partner.code
        if mode == "burn":
            await self.tills.burn(at, code, card, points, receipt, store)
            return points, True
        if mode == "capture":
            hold_txn = await self.tills.authorize(at, code, card, points, receipt, store)
            captured = points
            if rng.randrange(100) < PARTIAL_CAPTURE_PERCENT:
                # Less than held: the tank took less, a seat stayed empty, an item
                # was out of stock. The rest of the hold goes back.
                captured = max(1, points * rng.randint(50, 95) // 100)
            await self.tills.finish(
                at + timedelta(minutes=4),
                code,
                hold_txn.id,
                capture=True,
                points=captured if captured < points else None,
            )
            return captured, True
        if mode == "void":  # changed their mind at the till and paid cash
            hold_txn = await self.tills.authorize(at, code, card, points, receipt, store)
            await self.tills.finish(at + timedelta(minutes=2), code, hold_txn.id, capture=False)
            return 0, True
        # A reservation never collected: the hold lapses at its deadline.
        await self.tills.authorize(
            at, code, card, points, receipt, store, hold_minutes=rng.choice((60, 120, 240))
        )
        return 0, False

    async def _earn(
        self,
        shopper: Shopper,
        partner: DemoPartner,
        at: datetime,
        amount_cents: int,
        day: int | None,
    ) -> schemas.TransactionOut:
        rng = shopper.rng
        earn = await self.tills.earn(
            at,
            partner.code,
            shopper.card_number,
            amount_cents,
            _receipt(partner, at, rng),
            _store(shopper, partner),
        )
        if day is not None and rng.random() * 100 < partner.return_percent:
            self._schedule_return(shopper, partner, earn, day)
        return earn

    def _schedule_return(
        self, shopper: Shopper, partner: DemoPartner, earn: schemas.TransactionOut, day: int
    ) -> None:
        rng, amount = shopper.rng, earn.amount_cents or 0
        after = rng.randint(*partner.return_after_days)
        how = rng.choices(("full", "part", "part then rest"), (55, 30, 15))[0]
        first = amount if how == "full" else max(1, rng.randint(amount * 2 // 10, amount * 7 // 10))
        plan = [(after, first)]
        if how == "part then rest" and first < amount:
            plan.append((after + rng.randint(1, 5), amount - first))
        for days_later, cents in plan:
            due = day + days_later
            at = _at_hours(self.start + timedelta(days=due), partner, rng)
            shopper.returns[due].append(Return(at, partner, earn.id, cents))

    async def _return(self, shopper: Shopper, event: Return) -> None:
        receipt = f"RET-{_receipt(event.partner, event.at, shopper.rng)}"
        await self.tills.refund(
            event.at, event.partner.code, event.earn_id, event.amount_cents, receipt
        )

    # Members who end up owing points ----------------------------------------
    # A debtor shops as usual until a few days before the end. Then they fill
    # up at the pump, pay a big shop with every point they have, and the fuel
    # is refunded (the pump misread) after the points are gone: the refund
    # leaves debt that their next earn would repay.

    async def _debtors_fill_up(self, day_start: datetime) -> None:
        pump = PARTNERS_BY_CODE["tankpunt"]
        for shopper in self._debtors():
            at = day_start + timedelta(hours=7, minutes=shopper.rng.randrange(60))
            amount_cents = shopper.rng.randint(8_000, 8_900)
            await self._earn(shopper, pump, at, amount_cents, day=None)

    async def _debtors_spend_and_refund(self, day_start: datetime) -> None:
        shop, pump = PARTNERS_BY_CODE["versmarkt"], PARTNERS_BY_CODE["tankpunt"]
        for shopper in self._debtors():
            fuel = await self.pool.fetchrow(
                "SELECT id, points, amount_cents FROM transactions"
                " WHERE member_id = $1 AND partner_id = $2 AND kind = 'earn'"
                " ORDER BY created_at DESC LIMIT 1",
                shopper.member_id,
                self.tills.principals[pump.code].partner_id,
            )
            available = await self.tills.available_points(shopper.member_id)
            if fuel is None or available < fuel["points"]:
                raise RuntimeError(
                    f"demo debtor {shopper.card_number}: the fuel points were not released"
                )
            at = day_start + timedelta(hours=11)
            receipt = _receipt(shop, at, shopper.rng)
            await self.tills.burn(
                at, shop.code, shopper.card_number, available, receipt, _store(shopper, shop)
            )
            at += timedelta(hours=5)
            receipt = f"RET-{_receipt(pump, at, shopper.rng)}"
            await self.tills.refund(at, pump.code, fuel["id"], fuel["amount_cents"], receipt)

    def _debtors(self) -> list[Shopper]:
        return [s for s in self.shoppers if s.person.debtor]

    # The state at the end -------------------------------------------------------

    async def _richest(self, count: int) -> list[tuple[Shopper, int]]:
        """The `count` members (debtors aside) with the most points available."""
        rows = await self.pool.fetch(
            "SELECT member_id, balance FROM accounts"
            " WHERE kind = 'member_available' AND member_id = ANY($1::bigint[]) AND balance >= $2"
            " ORDER BY balance DESC, member_id LIMIT $3",
            [s.member_id for s in self.shoppers if not s.person.debtor],
            SCRIPTED_HOLD_POINTS_MIN,
            count,
        )
        by_member = {s.member_id: s for s in self.shoppers}
        return [(by_member[r["member_id"]], r["balance"]) for r in rows]

    async def _no_show(self, day_start: datetime) -> None:
        """A seat reserved with points and never collected: the nightly job
        voids the hold at its deadline (the year has more, by chance)."""
        cinema = PARTNERS_BY_CODE["cinema-lumiere"]
        for shopper, available in await self._richest(1):
            at = day_start + timedelta(hours=17)
            await self.tills.authorize(
                at,
                cinema.code,
                shopper.card_number,
                min(available, 1_500),
                _receipt(cinema, at, shopper.rng),
                cinema.stores[0],
                hold_minutes=120,
            )

    async def _open_holds_at_end(self) -> None:
        """A few seat reservations and web orders are still on hold right now."""
        for index, (shopper, available) in enumerate(await self._richest(OPEN_HOLDS_AT_END)):
            partner = PARTNERS_BY_CODE["stijl-online" if index == 1 else "cinema-lumiere"]
            at = self.end - timedelta(minutes=20 + 40 * index)
            points = min(available, 4_000 if index == 1 else 1_500)
            await self.tills.authorize(
                at,
                partner.code,
                shopper.card_number,
                points,
                _receipt(partner, at, shopper.rng),
                partner.stores[0],
                hold_minutes=3 * 24 * 60 if index == 1 else 2 * 24 * 60,
            )
