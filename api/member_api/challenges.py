"""/member/v1/challenges: the member's challenges with progress, and joining
one. Same authentication as the rest of the member API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide

from api.engagement import challenge_views as views
from api.member_auth.guards import api_member
from api.member_auth.principal import MemberPrincipal
from api.partner_api.idempotency import REPLAY_HEADER
from api.web.params import RowId
from api.web.state import runtime

Member = NamedDependency[MemberPrincipal]


class ChallengeOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    description: str
    kind: str
    target: Annotated[int, msgspec.Meta(description="spend: cents; otherwise a count")]
    progress: Annotated[int, msgspec.Meta(description="In the target's unit")]
    progress_text: Annotated[str, msgspec.Meta(description='For example "3 of 5 purchases"')]
    reward_points: int
    sponsor_name: Annotated[
        str | None, msgspec.Meta(description="The partner that pays the reward, if any")
    ]
    enrolment: Annotated[str, msgspec.Meta(description="opt_in | automatic | personal")]
    state: Annotated[
        str,
        msgspec.Meta(
            description="open (join it) | joined | automatic (counts without joining)"
            " | met | rewarded"
        ),
    ]
    can_join: bool
    starts_at: datetime
    ends_at: datetime
    counts_from: Annotated[
        datetime | None, msgspec.Meta(description="Purchases from here count (once enrolled)")
    ]
    counts_until: Annotated[
        datetime | None, msgspec.Meta(description="Purchases before this count (once enrolled)")
    ]
    met: bool
    rewarded: bool


class ChallengeList(msgspec.Struct):
    items: list[ChallengeOut]


def _out(c: views.MemberChallenge) -> ChallengeOut:
    return ChallengeOut(
        id=c.id,
        name=c.name,
        description=c.description,
        kind=c.kind,
        target=c.target,
        progress=c.progress,
        progress_text=c.progress_text,
        reward_points=c.reward_points,
        sponsor_name=c.sponsor_name,
        enrolment=c.enrolment,
        state=c.state,
        can_join=c.can_join,
        starts_at=c.starts_at,
        ends_at=c.ends_at,
        counts_from=c.counts_from,
        counts_until=c.counts_until,
        met=c.met,
        rewarded=c.rewarded,
    )


class MemberChallengeController(Controller):
    path = "/member/v1/challenges"
    tags = ["Member API"]
    dependencies = {"member": Provide(api_member)}
    security = [{"memberBearer": []}]

    @get(
        "/",
        summary="The member's challenges with progress, and those they can join",
        description="Enrolments still open or met in the last 30 days, then open opt-in"
        " challenges of the member's audience (`can_join`) and automatic ones that count"
        " without joining.",
    )
    async def list_challenges(
        self, request: Request[Any, Any, Any], member: Member
    ) -> ChallengeList:
        rt = runtime(request.app.state)
        found = await views.list_member_challenges(rt.db, member.member_id, rt.clock.now())
        return ChallengeList([_out(c) for c in found])

    @post(
        "/{challenge_id:int}/join",
        summary="Join an open opt-in challenge; purchases count from now",
        description="Joining again returns the enrolment (200, `Idempotent-Replayed: true`)."
        " Errors: `challenge_not_found` (404), `challenge_not_joinable` (409: automatic,"
        " personal or withdrawn), `challenge_closed` (409), `not_in_audience` (403).",
        status_code=201,
    )
    async def join(
        self, request: Request[Any, Any, Any], member: Member, challenge_id: RowId
    ) -> Response[ChallengeOut]:
        rt = runtime(request.app.state)
        joined = await views.join_challenge(rt.db, member.member_id, challenge_id, rt.clock.now())
        return Response(
            _out(joined.challenge),
            status_code=200 if joined.replayed else 201,
            headers={REPLAY_HEADER: "true"} if joined.replayed else {},
        )
