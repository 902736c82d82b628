"""`kring-pos`: drive realistic till traffic against a Kring partner API.

    kring-pos --base-url http://127.0.0.1:8000 --client-id ID --client-secret SECRET \\
        --cards-file cards.json --duration 30 --concurrency 8
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Final

import click
import httpx

from partners.client import PartnerApiError, PartnerClient
from partners.pos_simulator.traffic import Simulator, Summary

CARDS_MAX: Final = 1_000_000
CONCURRENCY_MAX: Final = 1_024
DURATION_S_MAX: Final = 24 * 3600


def load_cards(path: Path) -> list[str]:
    """Card numbers from a JSON list (strings, or objects with `card_number`) or one per line."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(data, dict) and isinstance(data.get("cards"), list):
        data = data["cards"]
    if not isinstance(data, list):
        raise click.BadParameter("expected a JSON list of card numbers", param_hint="--cards-file")
    cards: list[str] = []
    for item in data:
        if isinstance(item, dict):
            item = item.get("card_number")
        if not isinstance(item, str | int) or isinstance(item, bool) or str(item) == "":
            raise click.BadParameter(f"not a card number: {item!r}", param_hint="--cards-file")
        cards.append(str(item))
    return cards


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--base-url", required=True, envvar="KRING_BASE_URL", help="e.g. http://127.0.0.1:8000"
)
@click.option("--client-id", required=True, envvar="KRING_CLIENT_ID")
@click.option("--client-secret", required=True, envvar="KRING_CLIENT_SECRET")
@click.option(
    "--cards-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON list of card numbers (the output of `kring member create --json`).",
)
@click.option("--card", "cards", multiple=True, help="A card number; repeat for more.")
@click.option(
    "--duration",
    type=click.FloatRange(0, DURATION_S_MAX),
    default=30.0,
    show_default=True,
    help="Seconds.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, CONCURRENCY_MAX),
    default=8,
    show_default=True,
    help="Tills sending at once.",
)
@click.option("--currency", default="EUR", show_default=True)
@click.option(
    "--stores",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="Distinct store ids.",
)
@click.option(
    "--think-ms",
    type=click.IntRange(0, 60_000),
    default=0,
    show_default=True,
    help="Mean pause between checkouts per till.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 300),
    default=5.0,
    show_default=True,
    help="Seconds per attempt.",
)
@click.option("--seed", type=int, default=None, help="Make the traffic mix reproducible.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def main(
    base_url: str,
    client_id: str,
    client_secret: str,
    cards_file: Path | None,
    cards: tuple[str, ...],
    duration: float,
    concurrency: int,
    currency: str,
    stores: int,
    think_ms: int,
    timeout: float,
    seed: int | None,
    as_json: bool,
) -> None:
    """Play CONCURRENCY tills: mostly earns, some burns (one-step and two-phase), some refunds.

    Exits 1 when calls failed for reasons of the server or network (timeouts,
    5xx after retries) or nothing succeeded; business refusals such as
    insufficient_points are counted, not fatal.
    """
    all_cards = list(cards) + (load_cards(cards_file) if cards_file else [])
    if not all_cards:
        raise click.UsageError("give --cards-file or at least one --card")
    if len(all_cards) > CARDS_MAX:
        raise click.UsageError(f"at most {CARDS_MAX} cards")
    try:
        summary = asyncio.run(
            _run(
                base_url,
                client_id,
                client_secret,
                all_cards,
                concurrency=concurrency,
                duration_s=duration,
                currency=currency,
                stores=stores,
                think_ms=think_ms,
                timeout_s=timeout,
                seed=seed,
            )
        )
    except PartnerApiError as exc:
        # Only the first token request gets here: nothing can run without it.
        click.echo(f"kring-pos: cannot sign in: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(summary.as_dict(), indent=2) if as_json else summary.render())
    if summary.unexpected_errors or summary.total_ok == 0:
        sys.exit(1)


async def _run(
    base_url: str,
    client_id: str,
    client_secret: str,
    cards: list[str],
    *,
    concurrency: int,
    duration_s: float,
    currency: str,
    stores: int,
    think_ms: int,
    timeout_s: float,
    seed: int | None,
) -> Summary:
    # The simulator retries on its own (and counts it), so the client does not.
    async with PartnerClient(
        base_url,
        client_id,
        client_secret,
        timeout=timeout_s,
        max_retries=0,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    ) as client:
        await client.access_token()
        simulator = Simulator(
            client,
            cards,
            workers=concurrency,
            duration_s=duration_s,
            currency=currency,
            stores=stores,
            think_ms=think_ms,
            seed=seed,
        )
        # Ctrl-C ends the run early and still prints the summary.
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, simulator.stop)
        try:
            return await simulator.run()
        finally:
            loop.remove_signal_handler(signal.SIGINT)
