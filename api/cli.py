"""The `kring` command: serve, worker, db, demo, partner, member, staff, admin, settle, payouts, ledger."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from api.clock import Clock
from api.db import migrate
from api.db.connect import Database, open_database
from api.db.pool import create_pool, transaction
from api.logs import configure_logging
from api.serving import WORKERS_MAX
from api.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


class Context:
    def __init__(self) -> None:
        try:
            self.settings: Settings = load_settings()
        except SettingsError as exc:
            click.echo(f"kring: configuration error: {exc}", err=True)
            sys.exit(2)
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = open_database(self.settings)
        return self._database

    def close(self) -> None:
        """Stop the embedded server if this process is the last one using it."""
        if self._database is not None and self._database.embedded is not None:
            self._database.embedded.stop()
        self._database = None

    def migrated_url(self) -> str:
        url = self.database.url
        migrate.upgrade(url)
        return url

    def run_db(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run `work(pool)` against the migrated database."""
        url = self.migrated_url()

        async def main() -> T:
            pool = await create_pool(url, min_size=1, max_size=4)
            try:
                return await work(pool)
            finally:
                await pool.close()

        return asyncio.run(main())


pass_context = click.make_pass_decorator(Context, ensure=True)


@click.group()
def main() -> None:
    """Kring: one points currency for a coalition of partner merchants."""
    configure_logging()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Load the demo coalition first (once).")
@click.option("--no-jobs", is_flag=True, help="Do not run the job worker in this process.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, WORKERS_MAX),
    help="API processes behind the one port (the job worker still runs once).",
)
@pass_context
def serve(ctx: Context, host: str, port: int, demo: bool, no_jobs: bool, workers: int) -> None:
    """Run the API (and a job worker) on HOST:PORT."""
    import uvicorn

    from api.app import create_app

    url = ctx.migrated_url()
    if demo:
        _seed_demo(ctx, url, api_url=f"http://{host}:{port}/partner/v1")
    if workers > 1:
        from api.serving import serve_processes

        click.echo(
            f"Kring listening on http://{host}:{port} with {workers} API processes"
            "  (API docs: /schema)"
        )
        try:
            serve_processes(
                ctx.settings, url, host=host, port=port, workers=workers, run_jobs=not no_jobs
            )
        finally:
            ctx.close()
        return
    app = create_app(ctx.settings, url, run_jobs=not no_jobs)
    click.echo(f"Kring listening on http://{host}:{port}  (API docs: /schema)")
    # Uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with
    # the handler it found; make that handler an exit, so that the embedded
    # PostgreSQL is stopped on the way out instead of being left running.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level=ctx.settings.log_level,
            # Uvicorn's loggers propagate to the root handler, which redacts secrets.
            log_config=None,
        )
    finally:
        ctx.close()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@main.command()
@pass_context
def worker(ctx: Context) -> None:
    """Run a job worker alone (release, expiry, hold deadlines)."""
    from api.jobs import main_worker

    url = ctx.migrated_url()
    asyncio.run(main_worker(url, ctx.settings, Clock()))


@main.group()
def db() -> None:
    """Database commands."""


@db.command("upgrade")
@pass_context
def db_upgrade(ctx: Context) -> None:
    """Apply all migrations."""
    ctx.migrated_url()
    click.echo("database is up to date")


@db.command("url")
@pass_context
def db_url(ctx: Context) -> None:
    """Print the database URL (starting the embedded server if needed)."""
    click.echo(ctx.database.url)


def _seed_demo(ctx: Context, url: str, *, api_url: str | None = None) -> None:
    from api.demo import seed_demo

    summary = asyncio.run(seed_demo(url, data_dir=ctx.settings.data_dir, api_url=api_url))
    click.echo(summary)


@main.command()
@pass_context
def demo(ctx: Context) -> None:
    """Create the demo coalition (partners, members, a year of history) if empty."""
    _seed_demo(ctx, ctx.migrated_url())


@main.group()
def partner() -> None:
    """Partner commands."""


@partner.command("create")
@click.option("--code", required=True, help="Short unique code, e.g. 'bakker-bart'.")
@click.option("--name", required=True)
@click.option("--kind", default="shop", show_default=True)
@click.option(
    "--earn-rate",
    "earn_rate",
    type=int,
    default=None,
    help="Millipoints per euro (1000 = 1 point/EUR).",
)
@click.option("--issuance-price", type=int, default=None, help="Micro-euros per point issued.")
@click.option("--redemption-price", type=int, default=None, help="Micro-euros per point burned.")
@click.option("--return-window-days", type=int, default=None)
@click.option("--iban", default=None, help="Payout account; spaces and lowercase are fine.")
@click.option("--bic", default=None, help="Optional inside the EEA (derived when possible).")
@click.option("--account-holder", default=None, help="Name on the account; required with --iban.")
@click.option("--json", "as_json", is_flag=True, help="Print id, client id and secret as JSON.")
@pass_context
def partner_create(
    ctx: Context,
    code: str,
    name: str,
    kind: str,
    earn_rate: int | None,
    issuance_price: int | None,
    redemption_price: int | None,
    return_window_days: int | None,
    iban: str | None,
    bic: str | None,
    account_holder: str | None,
    as_json: bool,
) -> None:
    """Create a partner and print its API credentials (the secret is shown once)."""
    from api.coalition.partners import NewPartner, create_partner
    from api.errors import DomainError

    overrides = {
        "earn_rate_millipoints_per_euro": earn_rate,
        "issuance_price_micros": issuance_price,
        "redemption_price_micros": redemption_price,
        "return_window_days": return_window_days,
    }
    terms: dict[str, int] = {k: v for k, v in overrides.items() if v is not None}
    new = NewPartner(
        code,
        name,
        kind,
        iban=iban,
        bic=bic,
        account_holder=account_holder,
        **terms,  # type: ignore[arg-type]  # ints for int fields
    )
    try:
        creds = ctx.run_db(
            lambda pool: transaction(
                pool, lambda conn: create_partner(conn, new, now=Clock().now())
            )
        )
    except DomainError as exc:
        click.echo(f"kring: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)
    out = {
        "partner_id": str(creds.partner_public_id),
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
    }
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(
            f"partner {code}: {out['partner_id']}\nclient id: {creds.client_id}\n"
            f"client secret (shown once): {creds.client_secret}"
        )


@partner.command("set-bank")
@click.option("--code", required=True)
@click.option("--iban", required=True, help="Payout account; spaces and lowercase are fine.")
@click.option("--bic", default=None, help="Optional inside the EEA (derived when possible).")
@click.option("--account-holder", required=True, help="Name on the account.")
@pass_context
def partner_set_bank(
    ctx: Context, code: str, iban: str, bic: str | None, account_holder: str
) -> None:
    """Set the bank account a partner's payouts go to (validated; nothing is written if not)."""
    from api.coalition.partners import set_bank_details
    from api.errors import DomainError

    async def work(pool: Any) -> Any:
        async def inner(conn: Any) -> Any:
            partner_id = await conn.fetchval("SELECT id FROM partners WHERE code = $1", code)
            if partner_id is None:
                raise DomainError(f"no partner with code {code!r}", code="partner_not_found")
            return await set_bank_details(
                conn, partner_id, iban=iban, bic=bic, account_holder=account_holder
            )

        return await transaction(pool, inner)

    try:
        bank = ctx.run_db(work)
    except DomainError as exc:
        click.echo(f"kring: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)
    click.echo(f"partner {code}: IBAN {bank.iban}, BIC {bank.bic or '-'}, {bank.account_holder}")


@partner.command("rotate-secret")
@click.option("--code", required=True)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def partner_rotate(ctx: Context, code: str, as_json: bool) -> None:
    """Issue new credentials for a partner; the old ones stop working."""
    from api.coalition.partners import rotate_credentials

    async def work(pool: Any) -> Any:
        async def inner(conn: Any) -> Any:
            partner_id = await conn.fetchval("SELECT id FROM partners WHERE code = $1", code)
            if partner_id is None:
                return None
            return await rotate_credentials(conn, partner_id, now=Clock().now())

        return await transaction(pool, inner)

    creds = ctx.run_db(work)
    if creds is None:
        click.echo(f"kring: no partner with code {code!r}", err=True)
        sys.exit(1)
    out = {
        "partner_id": str(creds.partner_public_id),
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
    }
    click.echo(
        json.dumps(out)
        if as_json
        else f"client id: {creds.client_id}\nclient secret: {creds.client_secret}"
    )


@main.group()
def member() -> None:
    """Member commands."""


@member.command("create")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print the card numbers as a JSON list.")
@pass_context
def member_create(ctx: Context, count: int, as_json: bool) -> None:
    """Create members (with cards) and print their card numbers."""
    from api.coalition.members import create_member

    async def work(pool: Any) -> list[str]:
        async def inner(conn: Any) -> list[str]:
            now = Clock().now()
            return [(await create_member(conn, now=now)).card_number for _ in range(count)]

        return await transaction(pool, inner)

    cards = ctx.run_db(work)
    click.echo(json.dumps(cards) if as_json else "\n".join(cards))


@main.group()
def staff() -> None:
    """Partner portal staff accounts."""


@staff.command("create")
@click.option("--partner", "partner_code", required=True, help="The partner's code.")
@click.option("--email", required=True, help="The sign-in name.")
@click.option("--name", required=True, help="Shown in the portal.")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from stdin.")
@click.option("--role", type=click.Choice(["cashier", "manager"]), default="cashier")
@pass_context
def staff_create(
    ctx: Context, partner_code: str, email: str, name: str, password_stdin: bool, role: str
) -> None:
    """Create a portal account (the password never appears in the process list)."""
    from api.errors import DomainError
    from api.portal.staff import create_staff

    password = sys.stdin.readline().rstrip("\r\n")
    try:
        created = ctx.run_db(
            lambda pool: transaction(
                pool,
                lambda conn: create_staff(
                    conn,
                    partner_code=partner_code,
                    email=email,
                    display_name=name,
                    password=password,
                    role=role,  # type: ignore[arg-type]  # click.Choice limits it to a Role
                    now=Clock().now(),
                ),
            )
        )
    except DomainError as exc:
        click.echo(f"kring: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)
    click.echo(f"staff {created.email} ({created.role}) can sign in to {created.partner_name}")


@main.group()
def admin() -> None:
    """Programme admin accounts (the back-office's and the admin API's sign-in)."""


@admin.command("create")
@click.option("--email", required=True, help="The sign-in name.")
@click.option(
    "--role", type=click.Choice(["owner", "finance", "support", "marketing"]), required=True
)
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from stdin.")
@pass_context
def admin_create(ctx: Context, email: str, role: str, password_stdin: bool) -> None:
    """Create an admin; prints the TOTP set-up URI and the recovery codes, once."""
    from api.admin_auth.accounts import create_admin
    from api.errors import DomainError

    password = sys.stdin.readline().rstrip("\r\n")
    try:
        created = ctx.run_db(
            lambda pool: transaction(
                pool,
                lambda conn: create_admin(
                    conn, email=email, role=role, password=password, now=Clock().now()
                ),
            )
        )
    except DomainError as exc:
        click.echo(f"kring: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)
    click.echo(f"admin {created.principal.email} ({created.principal.role}) created")
    click.echo("Add this to an authenticator app (or show it as a QR code):")
    click.echo(created.totp_uri)
    click.echo("Recovery codes, each usable once; they are not shown again:")
    for code in created.recovery_codes:
        click.echo(code)


@admin.command("code")
@click.option("--email", required=True)
@pass_context
def admin_code(ctx: Context, email: str) -> None:
    """The admin's current TOTP code (development and demo only: it reads the
    stored secret, which is what the second factor exists to keep off this machine)."""
    from api.admin_auth.accounts import current_totp_code
    from api.errors import DomainError

    if ctx.settings.mode == "production":
        click.echo("kring: admin code is for development and demos only", err=True)
        sys.exit(2)
    try:
        code = ctx.run_db(lambda pool: current_totp_code(pool, email, now=Clock().now()))
    except DomainError as exc:
        click.echo(f"kring: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)
    click.echo(code)


@admin.command("disable")
@click.option("--email", required=True)
@pass_context
def admin_disable(ctx: Context, email: str) -> None:
    """Disable an admin; their access tokens stop working at once."""
    from api.admin_auth.accounts import disable_admin
    from api.errors import DomainError

    try:
        disabled = ctx.run_db(
            lambda pool: transaction(
                pool, lambda conn: disable_admin(conn, email, now=Clock().now())
            )
        )
    except DomainError as exc:
        click.echo(f"kring: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)
    click.echo(f"admin {disabled.email} disabled")


@main.command()
@click.option(
    "--period",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The business day to close (Europe/Amsterdam), e.g. 2026-11-24."
    " Default: every day that has ended and is not settled yet.",
)
@pass_context
def settle(ctx: Context, day: datetime | None) -> None:
    """Close settlement periods: statements, lines and the money entries."""
    from api.errors import DomainError
    from api.settlement.run import settle_day, settle_due

    now = Clock().now()

    async def work(pool: Any) -> list[Any]:
        if day is None:
            return await settle_due(pool, now)
        return [await settle_day(pool, day.date(), now)]

    try:
        results = ctx.run_db(work)
    except DomainError as exc:
        click.echo(f"kring: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)
    if not results:
        click.echo("nothing to settle: every ended day is settled")
    for result in results:
        verb = "settled" if result.created else "already settled"
        click.echo(
            f"{result.business_date}: {verb}, {result.statements} statements,"
            f" {result.entries} entries"
        )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@pass_context
def position(ctx: Context, as_json: bool) -> None:
    """The programme's position after the last settlement: liability, float, revenue."""
    from api.settlement.position import programme_position
    from api.settlement.statements import euros

    figures = ctx.run_db(programme_position)
    liability_cents = figures.float_cents  # the float is kept equal to the liability
    out = {
        "settled_through": None
        if figures.settled_through is None
        else str(figures.settled_through),
        "liability_points": figures.liability.points,
        "liability_micros": figures.liability.micros,
        "float_cents": figures.float_cents,
        "spread_cents": figures.spread_cents,
        "breakage_cents": figures.breakage_cents,
        "partners_net_cents": figures.partners_net_cents,
        "vip_revenue_cents": figures.vip_revenue_cents,
        "psp_clearing_cents": figures.psp_clearing_cents,
        "charities_owed_cents": figures.charities_owed_cents,
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"settled through       {out['settled_through'] or 'nothing settled yet'}")
    click.echo(
        f"points liability      {figures.liability.points:,} points, EUR {euros(liability_cents)}"
        " (the float holds it)"
    )
    click.echo(f"spread earned         EUR {euros(figures.spread_cents)}")
    click.echo(f"breakage recognised   EUR {euros(figures.breakage_cents)}")
    click.echo(
        f"partners, net         EUR {euros(figures.partners_net_cents)}"
        " (positive: the programme owes them)"
    )
    click.echo(f"VIP revenue           EUR {euros(figures.vip_revenue_cents)}")
    click.echo(
        f"at the payment provider EUR {euros(figures.psp_clearing_cents)} (VIP payments received)"
    )
    click.echo(f"charities owed        EUR {euros(figures.charities_owed_cents)}")


@main.command()
@click.option(
    "--period",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    required=True,
    help="The settled business day whose statements to pay, e.g. 2026-11-24.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the pain.001 file. Default: kring-payouts-<period>.xml here.",
)
@click.option(
    "--execution-date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The day the bank should pay. Default: the next weekday.",
)
@pass_context
def payouts(
    ctx: Context, day: datetime, output: Path | None, execution_date: datetime | None
) -> None:
    """Write the SEPA payout file (pain.001) for a settled day; list flagged partners."""
    from api.errors import DomainError
    from api.settlement.payouts import (
        DebtorAccount,
        build_pain001,
        next_weekday,
        payouts_for_run,
    )
    from api.settlement.periods import business_date
    from api.settlement.statements import euros

    settings = ctx.settings
    if settings.payout_account_name is None or settings.payout_iban is None:
        click.echo(
            "kring: payouts need the programme's bank account: set KRING_PAYOUT_ACCOUNT_NAME"
            " and KRING_PAYOUT_IBAN (and KRING_PAYOUT_BIC when it cannot be derived)",
            err=True,
        )
        sys.exit(2)
    assert settings.payout_bic is not None  # settings derive it or refuse to start
    debtor = DebtorAccount(settings.payout_account_name, settings.payout_iban, settings.payout_bic)
    today = business_date(Clock().now())
    when = execution_date.date() if execution_date is not None else next_weekday(today)
    if when < today:
        click.echo(f"kring: --execution-date {when} is in the past", err=True)
        sys.exit(2)
    period = day.date()
    try:
        run = ctx.run_db(lambda pool: payouts_for_run(pool, period))
    except DomainError as exc:
        click.echo(f"kring: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)
    for payout in run.payouts:
        click.echo(
            f"pay      {payout.partner_code:<24} EUR {euros(payout.amount_cents):>12}"
            f"  {payout.account_holder}, {payout.iban}"
        )
    for flag in run.flagged:
        click.echo(
            f"flagged  {flag.partner_code:<24} EUR {euros(flag.amount_cents):>12}"
            f"  not paid: {flag.code}: {flag.reason}",
            err=True,
        )
    if run.flagged:
        click.echo(
            f"{len(run.flagged)} partner(s) owed EUR {euros(run.flagged_cents)} are not in the"
            " file: fix their bank details with `kring partner set-bank`",
            err=True,
        )
    if not run.payouts:
        if run.flagged:
            click.echo(f"no payout file written: every partner owed money for {period} is flagged")
        else:
            click.echo(f"no payout file written: no partner is owed money for {period}")
        return
    try:
        xml = build_pain001(debtor, run.payouts, execution_date=when, message_id=run.message_id)
    except DomainError as exc:
        click.echo(f"kring: {exc.code}: {exc.detail}", err=True)
        sys.exit(1)
    path = output if output is not None else Path(f"kring-payouts-{period.isoformat()}.xml")
    try:
        _write_atomically(path, xml)
    except OSError as exc:
        click.echo(f"kring: cannot write {path}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(
        f"wrote {path}: {len(run.payouts)} payout(s), EUR {euros(run.payout_cents)},"
        f" paid on {when} from {debtor.iban}"
    )


def _write_atomically(path: Path, content: bytes) -> None:
    """A half-written payout file never sits where a bank upload could pick it up."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_bytes(content)
    os.replace(staging, path)


@main.group()
def ledger() -> None:
    """Ledger commands."""


@ledger.command("check")
@pass_context
def ledger_check(ctx: Context) -> None:
    """Prove the ledger's invariants; exit 1 and name the rows that break them."""
    from api.ledger.check import CHECKS, check_ledger

    async def work(pool: Any) -> Any:
        async with pool.acquire() as conn:
            return await check_ledger(conn)

    violations = ctx.run_db(work)
    for violation in violations:
        click.echo(violation.describe())
    if violations:
        click.echo(f"ledger check FAILED: {len(violations)} of {len(CHECKS)} checks", err=True)
        sys.exit(1)
    click.echo(f"ledger check passed: {len(CHECKS)} checks")
