"""Back-office: challenges (/backoffice/challenges): the list with its filters
and CSV export, defining one (all six kinds), changing one (after the start
only name, description and end), withdrawing, and the detail with its counts.

The rules are `api/engagement/challenge_definitions.py`'s; the audited writes
are the admin API's (`api/admin_api/challenges.py`), so a change made here
leaves the same audit row as one made over the API. Roles as the API's:
owner and marketing write, every role reads.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath, Parameter
from litestar.response import Redirect, Stream

from api.admin_api.challenges import (
    READERS,
    WRITERS,
    change_audited,
    create_audited,
    withdraw_audited,
)
from api.backoffice.csv_export import csv_response
from api.backoffice.guards import AdminSession, SignedInAdmin, form_text, require_csrf
from api.backoffice.listing import PAGE_SIZE, every_item
from api.backoffice.pages import PROGRAMME_TZ, base_context, page
from api.backoffice.programme_forms import (
    form_values,
    invalid,
    local_input,
    moment,
    optional_whole,
    whole,
    whole_list,
)
from api.coalition.partner_choices import active_partner_choices
from api.db.pool import transaction
from api.engagement import challenge_definitions as defs
from api.engagement.tiers import list_tiers
from api.errors import DomainError, NotFound
from api.web.state import runtime

Filter = Annotated[str | None, Parameter(max_length=200)]
KIND_LABELS = {
    "spend": "Spend (target in cents)",
    "purchases": "Purchases (target: count)",
    "distinct_partners": "Different partners (target: partners, at least 2)",
    "weekly_streak": "Weekly streak (target: weeks in a row)",
    "nth_purchase": "Nth purchase ever (target: N)",
    "anniversary": "Anniversary week (target: 1)",
}
CREATE_KEY_FIELD = "create_key"


def _definition(form: FormMultiDict) -> defs.NewChallenge:
    """The challenge the form describes; `form_invalid` for a field that does not parse."""
    return defs.NewChallenge(
        name=form_text(form, "name"),
        description=form_text(form, "description"),
        kind=form_text(form, "kind"),
        target=whole(form, "target", "Target"),
        partner_ids=whole_list(form, "partner_ids", "Partners"),
        starts_at=moment(form, "starts_at", "Starts"),
        ends_at=moment(form, "ends_at", "Ends"),
        enrolment=form_text(form, "enrolment"),
        personal_days=optional_whole(form, "personal_days", "Personal days"),
        audience=form_text(form, "audience") or "everyone",
        audience_tier=form_text(form, "audience_tier") or None,
        lapsed_days=optional_whole(form, "lapsed_days", "Lapsed days"),
        reward_points=whole(form, "reward_points", "Reward points"),
        sponsor_id=optional_whole(form, "sponsor_id", "Sponsor"),
    )


def _change(form: FormMultiDict) -> defs.ChallengeChange:
    """Only the fields the form sent: a started challenge's form sends only
    what may still change (the others are shown disabled)."""
    given: dict[str, Any] = {}
    if "name" in form:
        given["name"] = form_text(form, "name")
    if "description" in form:
        given["description"] = form_text(form, "description")
    if "ends_at" in form:
        given["ends_at"] = moment(form, "ends_at", "Ends")
    if "kind" in form:
        definition = _definition(form)
        for field in defs.FIXED_AT_START:
            given[field] = getattr(definition, field)
    return defs.ChallengeChange(**given)


def _values(challenge: defs.Challenge) -> dict[str, Any]:
    values: dict[str, Any] = {
        name: "" if value is None else str(value)
        for name, value in msgspec.structs.asdict(challenge).items()
    }
    values.update(
        starts_at=local_input(challenge.starts_at),
        ends_at=local_input(challenge.ends_at),
        partner_ids=[str(p) for p in challenge.partner_ids],
    )
    return values


def _listed(values: dict[str, Any], name: str) -> dict[str, Any]:
    chosen = values.get(name, [])
    return {**values, name: chosen if isinstance(chosen, list) else [chosen]}


async def _choices(request: Request[Any, Any, Any]) -> dict[str, Any]:
    db = runtime(request.app.state).db
    return {
        "kinds": [(k, KIND_LABELS[k]) for k in defs.KINDS],
        "enrolments": [(e, e.replace("_", " ")) for e in defs.ENROLMENTS],
        "audiences": [(a, a) for a in defs.AUDIENCES],
        "partners": await active_partner_choices(db),
        "tiers": [(t.code, t.name) for t in await list_tiers(db)],
    }


async def _form_page(
    request: Request[Any, Any, Any],
    who: AdminSession,
    *,
    values: dict[str, Any],
    error: str = "",
    status: int = 200,
) -> Response[str]:
    context = base_context(who, "challenges")
    context.update(await _choices(request))
    context.update(values=_listed(values, "partner_ids"), error=error)
    return page(request, "backoffice/challenge_new.html", context, status=status)


@get("/challenges", opt={"roles": READERS}, name="backoffice_challenges")
async def challenges_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    status: Filter = None,
    kind: Filter = None,
    cursor: Filter = None,
) -> Response[str]:
    rt = runtime(request.app.state)
    filters = {"status": status or "", "kind": kind or ""}
    found = await defs.list_challenges(
        rt.db, status=status or None, kind=kind or None, cursor=cursor, limit=PAGE_SIZE
    )
    context = base_context(who, "challenges")
    context.update(
        filters=filters,
        challenges=found.items,
        next_cursor=found.next_cursor,
        now=rt.clock.now(),
        kinds=[(k, k.replace("_", " ")) for k in defs.KINDS],
        statuses=[(s, s) for s in defs.STATUSES],
        may_write=who.admin.role in WRITERS,
    )
    return page(request, "backoffice/challenges.html", context, fragment="rows")


async def _export_rows(
    request: Request[Any, Any, Any], status: str | None, kind: str | None
) -> AsyncIterator[list[object]]:
    db = runtime(request.app.state).db
    async for c in every_item(
        lambda cursor: defs.list_challenges(
            db, status=status, kind=kind, cursor=cursor, limit=defs.PAGE_SIZE_MAX
        )
    ):
        counts = await defs.challenge_counts(db, c.id)
        yield [
            c.id,
            c.name,
            c.kind,
            c.target,
            " ".join(str(p) for p in c.partner_ids),
            c.starts_at.isoformat(),
            c.ends_at.isoformat(),
            c.enrolment,
            c.personal_days,
            c.audience,
            c.audience_tier,
            c.lapsed_days,
            c.reward_points,
            c.sponsor_id,
            c.status,
            counts.enrolled,
            counts.met,
            counts.rewarded,
        ]


@get("/challenges/export.csv", opt={"roles": READERS}, name="backoffice_challenges_csv")
async def challenges_csv(
    request: Request[Any, Any, Any], who: SignedInAdmin, status: Filter = None, kind: Filter = None
) -> Stream:
    # Checked before the stream starts, so a bad filter is a page, not a broken download.
    await defs.list_challenges(
        runtime(request.app.state).db, status=status or None, kind=kind or None, limit=1
    )
    return csv_response(
        "challenges.csv",
        [
            "id",
            "name",
            "kind",
            "target",
            "partner_ids",
            "starts_at",
            "ends_at",
            "enrolment",
            "personal_days",
            "audience",
            "audience_tier",
            "lapsed_days",
            "reward_points",
            "sponsor_id",
            "status",
            "enrolled",
            "met",
            "rewarded",
        ],
        _export_rows(request, status or None, kind or None),
    )


@get("/challenges/new", opt={"roles": WRITERS}, name="backoffice_challenge_new")
async def new_challenge_page(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[str]:
    # A suggestion: from tomorrow 00:00 for 30 days.
    today = runtime(request.app.state).clock.now().astimezone(PROGRAMME_TZ)
    start = today.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    values = {
        "kind": "purchases",
        "enrolment": "opt_in",
        "audience": "everyone",
        "starts_at": local_input(start),
        "ends_at": local_input(start + timedelta(days=30)),
        CREATE_KEY_FIELD: uuid.uuid4().hex,
    }
    return await _form_page(request, who, values=values)


@post("/challenges", opt={"roles": WRITERS}, name="backoffice_challenge_create")
async def create_challenge(
    request: Request[Any, Any, Any], who: SignedInAdmin
) -> Response[str] | Redirect:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    try:
        key = form_text(form, CREATE_KEY_FIELD)
        if not key:
            raise invalid("The form", "has no key; open a new form", status=400)
        new = _definition(form)
        made = await transaction(rt.db, lambda conn: create_audited(conn, who.admin, new, now, key))
    except DomainError as error:
        return await _form_page(
            request, who, values=form_values(form), error=error.detail, status=error.status
        )
    return Redirect(f"/backoffice/challenges/{made.challenge.id}", status_code=303)


async def _detail_page(
    request: Request[Any, Any, Any],
    who: AdminSession,
    challenge_id: int,
    *,
    values: dict[str, Any] | None = None,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> Response[str]:
    rt = runtime(request.app.state)
    challenge = await defs.get_challenge(rt.db, challenge_id)
    counts = await defs.challenge_counts(rt.db, challenge_id)
    now = rt.clock.now()
    context = base_context(who, "challenges")
    context.update(await _choices(request))
    context.update(
        challenge=challenge,
        counts=counts,
        phase=challenge.phase(now),
        locked=now >= challenge.starts_at or challenge.status == "withdrawn",
        values=_listed({**_values(challenge), **(values or {})}, "partner_ids"),
        may_write=who.admin.role in WRITERS,
        error=error,
        notice=notice,
    )
    return page(request, "backoffice/challenge.html", context, status=status)


@get("/challenges/{challenge_id:int}", opt={"roles": READERS}, name="backoffice_challenge")
async def challenge_page(
    request: Request[Any, Any, Any], who: SignedInAdmin, challenge_id: FromPath[int]
) -> Response[str]:
    return await _detail_page(request, who, challenge_id)


@post("/challenges/{challenge_id:int}", opt={"roles": WRITERS}, name="backoffice_challenge_change")
async def change_challenge(
    request: Request[Any, Any, Any], who: SignedInAdmin, challenge_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    try:
        change = _change(form)
        await transaction(
            rt.db, lambda conn: change_audited(conn, who.admin, challenge_id, change, now)
        )
    except NotFound:
        raise
    except DomainError as error:
        return await _detail_page(
            request,
            who,
            challenge_id,
            values=form_values(form),
            error=error.detail,
            status=error.status,
        )
    return await _detail_page(request, who, challenge_id, notice="Saved.")


@post(
    "/challenges/{challenge_id:int}/withdraw",
    opt={"roles": WRITERS},
    name="backoffice_challenge_withdraw",
)
async def withdraw_challenge(
    request: Request[Any, Any, Any], who: SignedInAdmin, challenge_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    await transaction(rt.db, lambda conn: withdraw_audited(conn, who.admin, challenge_id, now))
    return await _detail_page(request, who, challenge_id, notice="Withdrawn.")


HANDLERS: list[Any] = [
    challenges_page,
    challenges_csv,
    new_challenge_page,
    create_challenge,
    challenge_page,
    change_challenge,
    withdraw_challenge,
]
