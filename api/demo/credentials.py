"""The demo's credentials file and the summary printed after `kring demo`.

Client secrets exist in clear only at creation (the database keeps a hash),
so the demo writes them, once, to `<data_dir>/demo-credentials.json`,
readable by the owner only. Every later run reads the file back for the
summary.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

import msgspec

CREDENTIALS_FILE = "demo-credentials.json"
LOCAL_API_URL = "http://127.0.0.1:8000/partner/v1"


class PartnerCredentials(msgspec.Struct, kw_only=True):
    code: str
    name: str
    kind: str
    earn_rate_millipoints_per_euro: int
    return_window_days: int
    client_id: str
    client_secret: str
    # A manager account for the portal (/portal); empty in files from before.
    portal_email: str = ""
    portal_password: str = ""


class SampleMember(msgspec.Struct, kw_only=True):
    card_number: str
    display_name: str
    email: str
    note: str


class AdminCredentials(msgspec.Struct, kw_only=True):
    """A back-office admin of the demo: one per role, so roles can be tried."""

    email: str
    role: str
    password: str
    totp_uri: str
    recovery_codes: list[str]


class DemoCredentials(msgspec.Struct, kw_only=True):
    created_at: datetime
    api_url: str
    partners: list[PartnerCredentials]
    sample_members: list[SampleMember] = []
    # Empty in files from before the back-office.
    admins: list[AdminCredentials] = []


class DemoStats(msgspec.Struct, kw_only=True):
    partners: int
    members: int
    transactions: dict[str, int]  # by kind
    launch_at: datetime | None  # the oldest transaction
    daily_from: datetime | None  # the first of the last year's
    last_at: datetime | None
    open_holds: int
    members_in_debt: int
    expired_points: int
    # Settlement: runs (business days closed) and statements, and what the
    # last settled day owes partners, paid or flagged (api/settlement/payouts.py).
    settled_days: int = 0
    statements: int = 0
    last_settled: date | None = None
    payouts: int = 0
    payout_cents: int = 0
    flagged: int = 0
    flagged_cents: int = 0
    partners_without_iban: list[str] = []
    # Giving and VIP (api/demo/giving.py).
    charities: int = 0
    donations: int = 0
    donated_points: int = 0
    matched_points: int = 0
    monthly_orders: int = 0
    vip_members: int = 0


def credentials_path(data_dir: Path) -> Path:
    return data_dir / CREDENTIALS_FILE


def write_credentials(path: Path, credentials: DemoCredentials) -> None:
    """Write atomically, owner-only: the file holds live API secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(msgspec.json.format(msgspec.json.encode(credentials), indent=2) + b"\n")
    os.replace(staging, path)


def read_credentials(path: Path) -> DemoCredentials | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=DemoCredentials)
    except (OSError, msgspec.DecodeError):
        return None


def _curl(api_url: str, partner: PartnerCredentials, card_number: str) -> str:
    return (
        f"  TOKEN=$(curl -s {api_url}/token -d grant_type=client_credentials \\\n"
        f"      -d client_id={partner.client_id} -d client_secret={partner.client_secret} \\\n"
        '      | sed -E \'s/.*"access_token":"([^"]+)".*/\\1/\')\n'
        f'  curl -s {api_url}/earn -H "Authorization: Bearer $TOKEN" \\\n'
        "      -H \"Idempotency-Key: try-$RANDOM$RANDOM\" -H 'Content-Type: application/json' \\\n"
        f'      -d \'{{"card_number": "{card_number}", "amount_cents": 4250, '
        '"currency": "EUR"}\''
    )


def _euros(cents: int) -> str:
    whole, part = divmod(cents, 100)
    return f"EUR {whole:,}.{part:02d}"


def _settlement_line(stats: DemoStats) -> str:
    if stats.last_settled is None:
        return "No business day is settled yet (`kring settle` closes every day that has ended)."
    day = stats.last_settled.isoformat()
    owed_cents = stats.payout_cents + stats.flagged_cents
    line = (
        f"Settled {stats.settled_days:,} business days ({stats.statements:,} statements);"
        f" {day} owes {stats.payouts + stats.flagged} partner(s) {_euros(owed_cents)}"
    )
    if stats.flagged:
        line += f", {_euros(stats.flagged_cents)} of it flagged"
    line += f" (`kring payouts --period {day}`)"
    if stats.partners_without_iban:
        line += f"; no IBAN on file for {', '.join(stats.partners_without_iban)}"
    return line + "."


def render_summary(
    stats: DemoStats,
    *,
    created: bool,
    path: Path | None,
    credentials: DemoCredentials | None,
    api_url: str | None = None,
) -> str:
    """The summary to print; `api_url` is where the server answers (it may
    differ from the URL recorded when the demo was created)."""
    total = sum(stats.transactions.values())
    kinds = ", ".join(f"{count:,} {kind}s" for kind, count in sorted(stats.transactions.items()))
    lines = [
        ("Created" if created else "Already loaded:")
        + f" the Kring demo coalition: {stats.partners} partners, {stats.members:,} members,"
        + f" {total:,} transactions ({kinds}).",
    ]
    if stats.launch_at and stats.daily_from and stats.last_at:
        lines.append(
            f"Launched {stats.launch_at:%B %Y}; a day-by-day history from"
            f" {stats.daily_from:%Y-%m-%d} to {stats.last_at:%Y-%m-%d}."
        )
    lines.append(
        f"Right now: {stats.open_holds} open burn authorization(s),"
        f" {stats.members_in_debt} member(s) owing points after a refund;"
        f" {stats.expired_points:,} points have expired so far."
    )
    lines.append(_settlement_line(stats))
    if stats.charities:
        lines.append(
            f"Giving: {stats.donations:,} donations of {stats.donated_points:,} points to"
            f" {stats.charities} charities, {stats.matched_points:,} more points matched by a"
            f" partner's campaign; {stats.monthly_orders} monthly donation(s) running;"
            f" {stats.vip_members} VIP member(s)."
        )
    if credentials is None:
        where = f" ({path})" if path else ""
        lines += [
            "",
            f"The partners' API credentials are not on file here{where}: they were"
            " shown when the demo was created.",
            "New ones: `kring partner rotate-secret --code versmarkt` (the old ones stop working).",
        ]
        return "\n".join(lines)
    if not credentials.sample_members:  # written last, after the history
        lines.append(
            "The demo's history did not finish loading when it was created;"
            " for the full demo, start again from an empty database."
        )
    lines.append("")
    for partner in credentials.partners:
        rate = partner.earn_rate_millipoints_per_euro / 1000
        lines.append(
            f"  {partner.code:<20} {partner.name:<20} {partner.kind:<15}"
            f" {rate:g} pt/EUR, return window {partner.return_window_days} d"
        )
    lines.append("")
    if path is not None:
        lines.append(f"Partner API credentials and sample cards: {path} (keep it private)")
    else:
        lines.append("Partner API credentials (shown once):")
        lines += [f"  {p.code}: {p.client_id} {p.client_secret}" for p in credentials.partners]
    for member in credentials.sample_members:
        lines.append(
            f"  card {member.card_number}  {member.display_name} <{member.email}>: {member.note}"
        )
    first = credentials.partners[0]
    card = credentials.sample_members[0].card_number if credentials.sample_members else "<card>"
    lines += [
        "",
        f"Try it with `kring serve` running: a token for {first.name}, then an earn of EUR 42.50:",
        _curl(api_url or credentials.api_url, first, card),
    ]
    if first.portal_email:
        portal = (api_url or credentials.api_url).removesuffix("/partner/v1") + "/portal"
        lines += [
            "",
            f"Partner portal (till, transactions): {portal}",
            f"  sign in as {first.portal_email} / {first.portal_password}",
        ]
    base = (api_url or credentials.api_url).removesuffix("/partner/v1")
    if credentials.sample_members:
        lines += [
            "",
            f"Member wallet: {base}/ (sign in as {credentials.sample_members[0].email};"
            f" the code is in {base}/dev/mailbox)",
        ]
    if credentials.admins:
        owner = credentials.admins[0]
        lines += [
            "",
            f"Back-office: {base}/backoffice, one admin per role"
            f" ({', '.join(a.email for a in credentials.admins)}); passwords, TOTP set-up"
            " URIs and recovery codes are in the credentials file.",
            f"  sign in as {owner.email} / {owner.password} with the code from"
            f" `kring admin code --email {owner.email}` (development only)",
        ]
    return "\n".join(lines)
