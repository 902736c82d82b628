"""VIP plans: what a member can buy (price per period) and what it gives.

A plan change applies to periods paid after it: each paid period keeps the
price and benefits it was bought with (`vip_periods`). A deactivated plan
takes no new subscribers; running subscriptions renew on it until they end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.errors import Conflict, DomainError, NotFound

PLAN_CODE_PATTERN = re.compile(r"^[a-z0-9_]{1,40}$")
PLAN_NAME_LENGTH_MAX = 60
PRICE_CENTS_MAX = 100_000
MULTIPLIER_PERMILLE_MIN = 1_000
MULTIPLIER_PERMILLE_MAX = 10_000
MONTHLY_BONUS_POINTS_MAX = 100_000
FREE_LOTTERY_TICKETS_MAX = 10
PERIODS = ("month", "year")


@dataclass(frozen=True, slots=True)
class Plan:
    code: str
    name: str
    period: str  # 'month' | 'year'
    price_cents: int
    multiplier_permille: int  # 1000 = x1
    monthly_bonus_points: int
    free_lottery_tickets: int
    active: bool
    position: int


_COLUMNS = """code, name, period, price_cents, multiplier_permille, monthly_bonus_points,
       free_lottery_tickets, active, position"""


def _plan(row: asyncpg.Record) -> Plan:
    return Plan(**{name: row[name] for name in Plan.__slots__})


def _invalid(detail: str) -> DomainError:
    return DomainError(detail, code="invalid_vip_plan")


def validate_plan(plan: Plan) -> None:
    if not PLAN_CODE_PATTERN.match(plan.code):
        raise _invalid("a plan code is 1 to 40 lower-case letters, digits or underscores")
    if not 0 < len(plan.name.strip()) <= PLAN_NAME_LENGTH_MAX:
        raise _invalid(f"a plan name is 1 to {PLAN_NAME_LENGTH_MAX} characters")
    if plan.period not in PERIODS:
        raise _invalid("period is 'month' or 'year'")
    if not 0 < plan.price_cents <= PRICE_CENTS_MAX:
        raise _invalid(f"price_cents is 1 to {PRICE_CENTS_MAX}")
    if not MULTIPLIER_PERMILLE_MIN <= plan.multiplier_permille <= MULTIPLIER_PERMILLE_MAX:
        raise _invalid(
            f"multiplier_permille is {MULTIPLIER_PERMILLE_MIN} (x1) to {MULTIPLIER_PERMILLE_MAX}"
        )
    if not 0 <= plan.monthly_bonus_points <= MONTHLY_BONUS_POINTS_MAX:
        raise _invalid(f"monthly_bonus_points is 0 to {MONTHLY_BONUS_POINTS_MAX}")
    if not 0 <= plan.free_lottery_tickets <= FREE_LOTTERY_TICKETS_MAX:
        raise _invalid(f"free_lottery_tickets is 0 to {FREE_LOTTERY_TICKETS_MAX}")
    if not -1_000 <= plan.position <= 1_000:
        raise _invalid("position is -1000 to 1000")


async def list_plans(conn: asyncpg.Connection | asyncpg.Pool, *, active_only: bool) -> list[Plan]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM vip_plans WHERE active OR NOT $1 ORDER BY position, code",
        active_only,
    )
    return [_plan(r) for r in rows]


async def get_plan(conn: asyncpg.Connection | asyncpg.Pool, code: str) -> Plan:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM vip_plans WHERE code = $1", code)
    if row is None:
        raise NotFound(f"there is no VIP plan {code!r}", code="vip_plan_not_found")
    return _plan(row)


async def create_plan(conn: asyncpg.Connection, plan: Plan, now: datetime) -> Plan:
    validate_plan(plan)
    row = await conn.fetchrow(
        f"""INSERT INTO vip_plans ({_COLUMNS}, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
        ON CONFLICT (code) DO NOTHING RETURNING {_COLUMNS}""",
        plan.code,
        plan.name.strip(),
        plan.period,
        plan.price_cents,
        plan.multiplier_permille,
        plan.monthly_bonus_points,
        plan.free_lottery_tickets,
        plan.active,
        plan.position,
        now,
    )
    if row is None:
        raise Conflict(f"a VIP plan {plan.code!r} exists", code="vip_plan_exists")
    return _plan(row)


async def update_plan(
    conn: asyncpg.Connection, code: str, changes: dict[str, object], now: datetime
) -> tuple[Plan, Plan]:
    """Change a plan (name, price, benefits, active, position) for periods
    paid from now on; (before, after). The period is fixed once created."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM vip_plans WHERE code = $1 FOR UPDATE", code)
    if row is None:
        raise NotFound(f"there is no VIP plan {code!r}", code="vip_plan_not_found")
    before = _plan(row)
    fields = {name: getattr(before, name) for name in Plan.__slots__}
    unknown = set(changes) - (set(fields) - {"code", "period"})
    if unknown:
        raise _invalid(f"these cannot be changed: {', '.join(sorted(unknown))}")
    fields.update(changes)
    after = Plan(**fields)  # validated just below
    for name in ("name",):
        if not isinstance(getattr(after, name), str):
            raise _invalid(f"{name} is text")
    validate_plan(after)
    await conn.execute(
        """UPDATE vip_plans SET name = $2, price_cents = $3, multiplier_permille = $4,
        monthly_bonus_points = $5, free_lottery_tickets = $6, active = $7, position = $8,
        updated_at = $9 WHERE code = $1""",
        code,
        after.name.strip(),
        after.price_cents,
        after.multiplier_permille,
        after.monthly_bonus_points,
        after.free_lottery_tickets,
        after.active,
        after.position,
        now,
    )
    return before, after
