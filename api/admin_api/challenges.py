"""Admin API: challenges (create, list, read with counts, change, withdraw).

Roles: owner and marketing write; support and finance read. Every change is
audited in its own transaction. The rules are in
`api/engagement/challenge_definitions.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.di import Provide
from litestar.params import JSONBody, QueryParameter

from api.admin_auth import audit
from api.admin_auth.guards import ADMIN_SECURITY, Admin, admin_principal, requires_roles
from api.admin_auth.principal import AdminPrincipal, Role
from api.db.pool import transaction
from api.engagement import challenge_definitions as defs
from api.partner_api.controllers import KeyHeader
from api.partner_api.idempotency import REPLAY_HEADER, require_key
from api.web.bodies import strict_body
from api.web.params import RowId
from api.web.state import runtime

WRITERS: tuple[Role, ...] = ("owner", "marketing")
READERS: tuple[Role, ...] = ("owner", "marketing", "support", "finance")


class ChallengeOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    description: str
    kind: str
    target: int
    partner_ids: list[int]
    starts_at: datetime
    ends_at: datetime
    enrolment: str
    personal_days: int | None
    audience: str
    audience_tier: str | None
    lapsed_days: int | None
    reward_points: int
    sponsor_id: Annotated[
        int | None, msgspec.Meta(description="null: the programme's promo budget pays")
    ]
    status: Annotated[str, msgspec.Meta(description="active | withdrawn")]
    phase: Annotated[
        str, msgspec.Meta(description="scheduled | open | ended | withdrawn, at the time of asking")
    ]
    created_at: datetime
    updated_at: datetime


class CountsOut(msgspec.Struct, kw_only=True):
    enrolled: int
    met: Annotated[int, msgspec.Meta(description="Enrolments whose progress meets the target")]
    rewarded: Annotated[int, msgspec.Meta(description="Enrolments whose reward stands")]


class ChallengeDetailOut(ChallengeOut, kw_only=True):
    counts: CountsOut


class ChallengePageOut(msgspec.Struct, kw_only=True):
    items: list[ChallengeOut]
    next_cursor: Annotated[
        str | None, msgspec.Meta(description="Pass back as `cursor` for the next page")
    ]


def _fields(challenge: defs.Challenge, now: datetime) -> dict[str, Any]:
    return {**msgspec.structs.asdict(challenge), "phase": challenge.phase(now)}


def _out(challenge: defs.Challenge, now: datetime) -> ChallengeOut:
    return ChallengeOut(**_fields(challenge, now))


def _audited(challenge: defs.Challenge) -> dict[str, Any]:
    builtins: dict[str, Any] = msgspec.to_builtins(challenge)
    return builtins


# The audited changes, shared with the back-office pages (api/backoffice/challenges.py):
# the change and its audit row in the caller's transaction, one record per change.


async def create_audited(
    conn: Any, admin: AdminPrincipal, new: defs.NewChallenge, now: datetime, key: str | None
) -> defs.Created:
    made = await defs.create_or_replay(conn, new, now, key)
    if not made.replayed:
        await audit.record(
            conn,
            admin,
            "challenge.create",
            f"challenge:{made.challenge.id}",
            None,
            _audited(made.challenge),
            now,
        )
    return made


async def change_audited(
    conn: Any,
    admin: AdminPrincipal,
    challenge_id: int,
    change: defs.ChallengeChange,
    now: datetime,
) -> defs.Challenge:
    before, after = await defs.change_challenge(conn, challenge_id, change, now)
    if after != before:
        await audit.record(
            conn,
            admin,
            "challenge.change",
            f"challenge:{challenge_id}",
            _audited(before),
            _audited(after),
            now,
        )
    return after


async def withdraw_audited(
    conn: Any, admin: AdminPrincipal, challenge_id: int, now: datetime
) -> defs.Challenge:
    done = await defs.withdraw_challenge(conn, challenge_id, now)
    if not done.replayed:
        await audit.record(
            conn,
            admin,
            "challenge.withdraw",
            f"challenge:{challenge_id}",
            {"status": done.before.status},
            {"status": done.after.status},
            now,
        )
    return done.after


class ChallengeAdminController(Controller):
    path = "/admin/v1/challenges"
    tags = ["Admin API: challenges"]
    dependencies = {"admin": Provide(admin_principal)}
    # Guards add up (controller and route): each route names its roles.
    security = ADMIN_SECURITY

    @post(
        "/",
        summary="Define a challenge (Idempotency-Key: a repeat returns the challenge it made)",
        description="Problems: `challenge_invalid` (the detail names the field),"
        " `challenge_window_invalid`, `audience_tier_unknown`, `partner_unknown`,"
        " `sponsor_unknown`, `invalid_request` (422); `idempotency_key_missing` (400);"
        " `idempotency_conflict` (409: the key made a different challenge).",
        status_code=201,
        guards=[requires_roles(*WRITERS)],
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        data: JSONBody[defs.NewChallenge],
        idempotency_key: KeyHeader = None,
    ) -> Response[ChallengeOut]:
        rt = runtime(request.app.state)
        key = require_key(idempotency_key)
        body = await strict_body(request, defs.NewChallenge)
        now = rt.clock.now()

        made = await transaction(rt.db, lambda conn: create_audited(conn, admin, body, now, key))
        return Response(
            _out(made.challenge, now),
            status_code=200 if made.replayed else 201,
            headers={REPLAY_HEADER: "true"} if made.replayed else {},
        )

    @get(
        "/",
        summary="Challenges, newest first",
        description="Filter by `status` (active, withdrawn) and `open_at` (challenges whose"
        " window holds that instant); pass `next_cursor` back as `cursor`. Problems:"
        " `invalid_cursor`, `invalid_status`, `invalid_limit`, `invalid_range` (400).",
        guards=[requires_roles(*READERS)],
    )
    async def list_challenges(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        limit: Annotated[int, QueryParameter(ge=1, le=defs.PAGE_SIZE_MAX)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        status: Annotated[str | None, QueryParameter(max_length=20)] = None,
        open_at: Annotated[datetime | None, QueryParameter()] = None,
    ) -> ChallengePageOut:
        rt = runtime(request.app.state)
        found = await defs.list_challenges(
            rt.db, status=status, open_at=open_at, cursor=cursor, limit=limit
        )
        now = rt.clock.now()
        return ChallengePageOut(
            items=[_out(c, now) for c in found.items], next_cursor=found.next_cursor
        )

    @get(
        "/{challenge_id:int}",
        summary="One challenge with its counts: enrolled, met, rewarded",
        description="Problems: `challenge_not_found` (404).",
        guards=[requires_roles(*READERS)],
    )
    async def read(
        self, request: Request[Any, Any, Any], admin: Admin, challenge_id: RowId
    ) -> ChallengeDetailOut:
        rt = runtime(request.app.state)
        challenge = await defs.get_challenge(rt.db, challenge_id)
        counts = await defs.challenge_counts(rt.db, challenge_id)
        return ChallengeDetailOut(
            **_fields(challenge, rt.clock.now()),
            counts=CountsOut(**msgspec.structs.asdict(counts)),
        )

    @patch(
        "/{challenge_id:int}",
        summary="Change a challenge: only the fields given",
        description="name, description and ends_at (not into the past) change at any time;"
        " the rest only before the start. Problems: `challenge_started`,"
        " `challenge_withdrawn` (409), `challenge_not_found` (404), and the problems of"
        " POST.",
        guards=[requires_roles(*WRITERS)],
    )
    async def change(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        challenge_id: RowId,
        data: JSONBody[defs.ChallengeChange],
    ) -> ChallengeOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, defs.ChallengeChange)
        now = rt.clock.now()

        changed = await transaction(
            rt.db, lambda conn: change_audited(conn, admin, challenge_id, body, now)
        )
        return _out(changed, now)

    @post(
        "/{challenge_id:int}/withdraw",
        summary="Withdraw a challenge: no new enrolments or rewards; rewards paid stand",
        description="A repeat changes nothing. Problems: `challenge_not_found` (404).",
        status_code=200,
        guards=[requires_roles(*WRITERS)],
    )
    async def withdraw(
        self, request: Request[Any, Any, Any], admin: Admin, challenge_id: RowId
    ) -> ChallengeOut:
        rt = runtime(request.app.state)
        now = rt.clock.now()

        withdrawn = await transaction(
            rt.db, lambda conn: withdraw_audited(conn, admin, challenge_id, now)
        )
        return _out(withdrawn, now)
