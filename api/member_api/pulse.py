"""/member/v1/pulse: the monthly pulse survey (api/coalition/pulse_survey.py)
for app clients. GET offers this month's survey (the first GET of a month
records the offer); POST answers it; POST /pulse/dismiss declines it. Both
writes are idempotent per member and Amsterdam month."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from api.coalition import pulse_survey
from api.member_auth.guards import api_member
from api.member_auth.principal import MemberPrincipal
from api.web.bodies import strict_body
from api.web.state import runtime

Member = NamedDependency[MemberPrincipal]


class PulseQuestion(msgspec.Struct):
    name: str
    text: str
    min: int
    max: int


class PulseOut(msgspec.Struct):
    month: Annotated[date, msgspec.Meta(description="First day of the Amsterdam month")]
    status: Annotated[str, msgspec.Meta(description="offered, answered or dismissed")]
    offered_at: datetime
    answered_at: datetime | None
    dismissed_at: datetime | None
    keep: int | None
    more: int | None
    recommend: int | None
    questions: list[PulseQuestion]


class PulseAnswerIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    keep: Annotated[int, msgspec.Meta(description="1-5: will you keep using Kring's partners?")]
    more: Annotated[int, msgspec.Meta(description="1-5: will you use them more?")]
    recommend: Annotated[int, msgspec.Meta(description="0-10: would you recommend Kring?")]


QUESTIONS = [
    PulseQuestion(
        "keep", pulse_survey.QUESTIONS["keep"], pulse_survey.LIKERT_MIN, pulse_survey.LIKERT_MAX
    ),
    PulseQuestion(
        "more", pulse_survey.QUESTIONS["more"], pulse_survey.LIKERT_MIN, pulse_survey.LIKERT_MAX
    ),
    PulseQuestion("recommend", pulse_survey.QUESTIONS["recommend"], 0, pulse_survey.RECOMMEND_MAX),
]


def pulse_out(p: pulse_survey.Pulse) -> PulseOut:
    return PulseOut(
        p.month,
        p.status,
        p.offered_at,
        p.answered_at,
        p.dismissed_at,
        p.keep_score,
        p.more_score,
        p.recommend_score,
        QUESTIONS,
    )


class MemberPulseController(Controller):
    path = "/member/v1/pulse"
    tags = ["Member API"]
    dependencies = {"member": Provide(api_member)}
    security = [{"memberBearer": []}]

    @get(
        "/",
        summary="This month's pulse survey",
        description="At most once per Amsterdam month: the first GET of a month records the "
        "offer (`status` offered); later GETs that month return the same survey with its "
        "answer or dismissal.",
    )
    async def current(self, request: Request[Any, Any, Any], member: Member) -> PulseOut:
        rt = runtime(request.app.state)
        offered = await pulse_survey.offer(rt.db, member.member_id, rt.clock.now())
        return pulse_out(offered.pulse)

    @post(
        "/",
        summary="Answer this month's pulse survey",
        description="All three answers. Repeating the same answer returns it (200); a "
        "different one is `pulse_already_answered` (409); after dismissing, "
        "`pulse_dismissed` (409). Out of range: `invalid_keep`, `invalid_more`, "
        "`invalid_recommend` (422); a wrong body `invalid_request` (422) or "
        "`malformed_json` (400).",
        status_code=200,
    )
    async def answer(
        self, request: Request[Any, Any, Any], member: Member, data: JSONBody[PulseAnswerIn]
    ) -> PulseOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, PulseAnswerIn)
        stored = await pulse_survey.answer(
            rt.db,
            member.member_id,
            keep=body.keep,
            more=body.more,
            recommend=body.recommend,
            now=rt.clock.now(),
        )
        return pulse_out(stored)

    @post(
        "/dismiss",
        summary="Not this month",
        description="Declines this month's survey; repeating changes nothing. After "
        "answering: `pulse_already_answered` (409).",
        status_code=200,
    )
    async def dismiss(self, request: Request[Any, Any, Any], member: Member) -> PulseOut:
        rt = runtime(request.app.state)
        stored = await pulse_survey.dismiss(rt.db, member.member_id, rt.clock.now())
        return pulse_out(stored)
