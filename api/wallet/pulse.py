"""The pulse survey card on the wallet's home page (api/coalition/pulse_survey.py).

The home page shows the card when its view offered the month's survey; the
card's form posts to `/pulse` with the session's CSRF token (htmx swaps the
card for its answer; without JavaScript the same handler renders a page).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, post
from litestar.di import NamedDependency, Provide

from api.coalition import pulse_survey
from api.errors import DomainError
from api.member_auth.guards import WalletSession, require_wallet_csrf, wallet_session
from api.wallet.pages import page
from api.web.state import runtime
from api.web.templates import as_sentence

Who = NamedDependency[WalletSession]
FIELDS = ("keep", "more", "recommend")
QUESTIONS = [
    {
        "name": "keep",
        "text": pulse_survey.QUESTIONS["keep"],
        "min": pulse_survey.LIKERT_MIN,
        "max": pulse_survey.LIKERT_MAX,
        "low": "certainly not",
        "high": "certainly",
    },
    {
        "name": "more",
        "text": pulse_survey.QUESTIONS["more"],
        "min": pulse_survey.LIKERT_MIN,
        "max": pulse_survey.LIKERT_MAX,
        "low": "certainly not",
        "high": "certainly",
    },
    {
        "name": "recommend",
        "text": pulse_survey.QUESTIONS["recommend"],
        "min": 0,
        "max": pulse_survey.RECOMMEND_MAX,
        "low": "not at all likely",
        "high": "extremely likely",
    },
]


def card_context(
    status: str, *, error: str | None = None, values: dict[str, str] | None = None
) -> dict[str, Any]:
    """What pulse_card.html needs (the home page adds it to its own context)."""
    return {
        "pulse_status": status,
        "pulse_error": error,
        "pulse_values": values or {},
        "pulse_questions": QUESTIONS,
    }


def _card(
    request: Request[Any, Any, Any], who: WalletSession, context: dict[str, Any], status: int
) -> Response[str]:
    return page(
        request,
        "wallet/pulse.html",
        {"nav": "home", "csrf_token": who.csrf_token, **context},
        fragment="card",
        status=status,
    )


@post("/pulse", include_in_schema=False)
async def pulse_answer(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    await require_wallet_csrf(request)
    form = await request.form()
    rt = runtime(request.app.state)
    member_id, now = who.principal.member_id, rt.clock.now()
    values = {name: v for name in FIELDS if isinstance(v := form.get(name), str)}
    try:
        if form.get("action") == "dismiss":
            stored = await pulse_survey.dismiss(rt.db, member_id, now)
        else:
            missing = [name for name in FIELDS if not values.get(name, "").isdigit()]
            if missing:
                return _card(
                    request,
                    who,
                    card_context(
                        "offered",
                        error="Choose an answer to each of the three questions.",
                        values=values,
                    ),
                    422,
                )
            stored = await pulse_survey.answer(
                rt.db,
                member_id,
                keep=int(values["keep"]),
                more=int(values["more"]),
                recommend=int(values["recommend"]),
                now=now,
            )
    except DomainError as exc:
        return _card(
            request,
            who,
            card_context("offered", error=as_sentence(exc.detail), values=values),
            exc.status,
        )
    return _card(request, who, card_context(stored.status), 200)


pulse_wallet_router = Router(
    path="/",
    route_handlers=[pulse_answer],
    dependencies={"who": Provide(wallet_session)},
)
