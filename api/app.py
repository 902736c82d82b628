"""create_app(): the one place that assembles the Kring web application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from api.admin_api.challenges import ChallengeAdminController
from api.admin_api.charities import CharityAdminController, MatchingCampaignAdminController
from api.admin_api.lotteries import LotteryAdminController
from api.admin_api.referrals import ReferralAdminController
from api.admin_api.tiers import TierAdminController
from api.admin_api.vip import VipAdminController
from api.admin_auth.controllers import ADMIN_AUTH_HANDLERS
from api.backoffice.router import backoffice_router
from api.clock import Clock
from api.db.pool import create_pool_when_reachable
from api.lottery_pages.controllers import lottery_public_handlers, lottery_wallet_router
from api.member_api.challenges import MemberChallengeController
from api.member_api.charity import MemberCharityController
from api.member_api.controllers import MemberApiController
from api.member_api.inbox import MemberInboxController
from api.member_api.lotteries import MemberLotteryController
from api.member_api.pulse import MemberPulseController
from api.member_api.referrals import MemberReferralController
from api.member_api.vip import MemberVipController
from api.member_auth.controllers import member_auth_handlers
from api.member_auth.guards import WALLET_EXCEPTION_HANDLERS
from api.partner_api.controllers import (
    PartnerController,
    ReconciliationController,
    StatementController,
    TokenController,
    WebhookController,
)
from api.payments.controllers import PAYMENT_HANDLERS
from api.payments.providers import configure_payments
from api.portal.controllers import portal_router
from api.settings import Settings
from api.wallet.challenges import challenge_wallet_router
from api.wallet.charity import charity_public_handlers, charity_wallet_router
from api.wallet.controllers import pwa_handlers, wallet_router
from api.wallet.inbox import inbox_wallet_router
from api.wallet.pulse import pulse_wallet_router
from api.wallet.referrals import referral_public_handlers, referral_wallet_router
from api.wallet.vip import vip_wallet_router
from api.web.api_docs import StaticRedocRenderPlugin
from api.web.openapi_problems import document_problems
from api.web.problems import EXCEPTION_HANDLERS
from api.web.security_headers import add_security_headers
from api.web.state import Runtime, runtime

# JSON APIs and forms; the reconciliation route allows more
# (api/partner_api/schemas.py RECONCILIATION_BODY_BYTES_MAX).
REQUEST_BODY_BYTES_MAX = 64 * 1024
STATIC_DIR = Path(__file__).resolve().parents[1] / "pwa" / "static"
# Vendored so that the API docs render with no network (one pinned file).
REDOC_JS = "/static/vendor/redoc-2.5.1.standalone.js"


@get("/health", tags=["Operations"], summary="Liveness and database reachability")
async def health(request: Request[Any, Any, Any]) -> dict[str, str]:
    await runtime(request.app.state).db.fetchval("SELECT 1")
    return {"status": "ok"}


def create_app(
    settings: Settings,
    database_url: str,
    *,
    clock: Clock | None = None,
    run_jobs: bool = False,
) -> Litestar:
    rt = Runtime(settings=settings, clock=clock or Clock())
    configure_payments(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rt.pool = await create_pool_when_reachable(
            database_url, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size
        )
        worker = None
        if run_jobs:
            from api.jobs import start_in_process

            worker = await start_in_process(database_url, settings, rt.clock)
        # Everything allocated at start lives for the whole process: keep it out
        # of the collector's generations, so collections stay short under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await rt.pool.close()
            rt.pool = None

    app = Litestar(
        route_handlers=[
            health,
            TokenController,
            PartnerController,
            portal_router,
            backoffice_router,
            WebhookController,
            ReconciliationController,
            StatementController,
            wallet_router,
            challenge_wallet_router,
            inbox_wallet_router,
            referral_wallet_router,
            *referral_public_handlers,
            *pwa_handlers,
            MemberApiController,
            MemberLotteryController,
            MemberInboxController,
            MemberChallengeController,
            MemberReferralController,
            MemberVipController,
            vip_wallet_router,
            MemberCharityController,
            MemberPulseController,
            pulse_wallet_router,
            charity_wallet_router,
            *charity_public_handlers,
            lottery_wallet_router,
            *lottery_public_handlers,
            *member_auth_handlers(settings.mode),
            *ADMIN_AUTH_HANDLERS,
            LotteryAdminController,
            TierAdminController,
            ChallengeAdminController,
            ReferralAdminController,
            VipAdminController,
            CharityAdminController,
            MatchingCampaignAdminController,
            *PAYMENT_HANDLERS,
            create_static_files_router(
                path="/static", directories=[STATIC_DIR], include_in_schema=False
            ),
        ],
        lifespan=[lifespan],
        exception_handlers={**EXCEPTION_HANDLERS, **WALLET_EXCEPTION_HANDLERS},
        request_max_body_size=REQUEST_BODY_BYTES_MAX,
        # Every response, including 404s and 413s from before any handler ran.
        before_send=[add_security_headers],
        openapi_config=OpenAPIConfig(
            title="Kring",
            version="1.0.0",
            description="Kring's partner API: identify members, earn and burn points, refunds.",
            path="/schema",
            render_plugins=[StaticRedocRenderPlugin(js_url=REDOC_JS)],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
                    # Member API access tokens (POST /member/v1/auth/token), one hour.
                    "memberBearer": SecurityScheme(
                        type="http", scheme="bearer", bearer_format="JWT"
                    ),
                    # Admin API access tokens (POST /admin/v1/token), 15 minutes.
                    "adminBearer": SecurityScheme(
                        type="http", scheme="bearer", bearer_format="JWT"
                    ),
                }
            ),
        ),
        debug=False,
        # No handler of Litestar's own: its logger propagates to the root handler of
        # `api/logs.py`, which redacts secrets.
        logging_config=None,
    )
    app.state.runtime = rt
    document_problems(app)
    return app
