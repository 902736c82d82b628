"""HTTP handlers of /member/v1: authenticate, parse, call one service function, answer.

Authentication is `api_member` (api/member_auth/guards.py): a member access
token (`Authorization: Bearer`, audience `kring:member`) naming a live session
of an active member; 401 `missing_token`, `invalid_token` or `token_expired`
otherwise.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from api.coalition.member_profile import ACCOUNT_DELETION_CONFIRMATION
from api.coalition.member_views import HISTORY_PAGE_SIZE_MAX
from api.member_api import schemas, services
from api.member_auth.guards import api_member
from api.member_auth.principal import MemberPrincipal
from api.web.bodies import strict_body
from api.web.state import runtime

Member = NamedDependency[MemberPrincipal]
EXPORT_FILENAME = "kring-my-data.json"


class MemberApiController(Controller):
    path = "/member/v1"
    tags = ["Member API"]
    dependencies = {"member": Provide(api_member)}
    security = [{"memberBearer": []}]

    @get(
        "/me",
        summary="The member's balances and card",
        description="Available, pending (by the day each becomes available), held, debt, "
        "points expiring in the next 30 days (by day), tier, card number.",
    )
    async def me(self, request: Request[Any, Any, Any], member: Member) -> schemas.MeOut:
        rt = runtime(request.app.state)
        return await services.me(rt.db, member.member_id, rt.clock.now())

    @get(
        "/transactions",
        summary="The member's transactions, newest first",
        description=f"Cursor-paginated (at most {HISTORY_PAGE_SIZE_MAX} a page); `partner` "
        "filters by partner code. A bad cursor is `invalid_cursor`, a bad limit `invalid_limit`.",
    )
    async def transactions(
        self,
        request: Request[Any, Any, Any],
        member: Member,
        limit: Annotated[int, QueryParameter(description="Page size, 1-50")] = 20,
        cursor: Annotated[
            str | None, QueryParameter(description="`next_cursor` of the previous page")
        ] = None,
        partner: Annotated[str | None, QueryParameter(description="A partner's code")] = None,
    ) -> schemas.MemberTransactionPage:
        rt = runtime(request.app.state)
        return await services.history(
            rt.db, member.member_id, limit=limit, cursor=cursor, partner=partner
        )

    @get(
        "/transactions/{transaction_id:str}",
        summary="One of the member's transactions with its refunds",
        description="Another member's transaction is `transaction_not_found` (404), exactly "
        "like one that does not exist.",
    )
    async def transaction(
        self, request: Request[Any, Any, Any], member: Member, transaction_id: FromPath[str]
    ) -> schemas.MemberTransactionDetailOut:
        rt = runtime(request.app.state)
        return await services.transaction(rt.db, member.member_id, transaction_id, rt.clock.now())

    @get("/partners", summary="Where points are earned and spent, and at what rate")
    async def partners(
        self, request: Request[Any, Any, Any], member: Member
    ) -> schemas.PartnerForMembersList:
        return await services.partners(runtime(request.app.state).db)

    @post(
        "/transactions/{transaction_id:str}/survey",
        summary="Rate a purchase: would you recommend this partner (0-10)?",
        description="Once per purchase (`survey_already_answered`, 409), only the member's own "
        "earns (`transaction_not_found`, 404; `survey_not_applicable`, 422), within 7 days "
        "(`survey_closed`, 422). The unique answer per purchase makes a repeat harmless, so "
        "no idempotency key is needed.",
        status_code=201,
    )
    async def survey(
        self,
        request: Request[Any, Any, Any],
        member: Member,
        transaction_id: FromPath[str],
        data: JSONBody[schemas.SurveyRequest],
    ) -> schemas.SurveyOut:
        rt = runtime(request.app.state)
        body = await strict_body(request, schemas.SurveyRequest)
        return await services.answer_survey(
            rt.db, member.member_id, transaction_id, body, rt.clock.now()
        )

    @get("/profile", summary="The member's profile and communication preferences")
    async def profile(
        self, request: Request[Any, Any, Any], member: Member
    ) -> schemas.MemberProfileOut:
        return await services.profile(runtime(request.app.state).db, member.member_id)

    @patch(
        "/profile",
        summary="Change the profile or preferences",
        description="Only the fields sent change; an empty string clears a text field. "
        "Setting values is naturally idempotent: a repeat leaves the same profile.",
    )
    async def update_profile(
        self,
        request: Request[Any, Any, Any],
        member: Member,
        data: JSONBody[schemas.MemberProfilePatch],
    ) -> schemas.MemberProfileOut:
        body = await strict_body(request, schemas.MemberProfilePatch)
        return await services.update_profile(runtime(request.app.state).db, member.member_id, body)

    @get(
        "/export",
        summary="Download my data",
        description="Everything Kring holds on the member as one JSON document: profile, "
        "preferences, card, balances, transactions, survey answers.",
    )
    async def export(self, request: Request[Any, Any, Any], member: Member) -> Response[Any]:
        document = await services.export(runtime(request.app.state).db, member.member_id)
        return Response(
            content=document,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{EXPORT_FILENAME}"'},
        )

    @delete(
        "/me",
        summary="Delete my account",
        description=f"Needs `confirm={ACCOUNT_DELETION_CONFIRMATION}` "
        "(`confirmation_required`, 422). Available and pending points are forfeited to the "
        "programme; refused while a partner holds points for an unfinished purchase "
        "(`burn_authorization_open`, 409). Personal data is erased and every session and "
        "token ends; transactions stay, anonymous. Deleting twice changes nothing.",
        status_code=200,
    )
    async def delete_me(
        self,
        request: Request[Any, Any, Any],
        member: Member,
        confirm: Annotated[
            str | None,
            QueryParameter(description=f"Must be `{ACCOUNT_DELETION_CONFIRMATION}`"),
        ] = None,
    ) -> schemas.AccountClosureOut:
        rt = runtime(request.app.state)
        return await services.delete_account(rt.db, member.member_id, confirm, rt.clock.now())
