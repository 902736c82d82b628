"""Back-office pages: partners (list, CSV, create, detail, terms, status, bank
details, credentials, webhooks read-only).

Roles: every role reads (support answers partners, marketing plans campaigns
with them; only owner and finance see a full IBAN); owner and finance change
money terms and bank details; only the owner creates, suspends or reactivates
a partner and rotates its credentials. Changes are audited in their own
transaction (api/coalition/partner_admin.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from api.admin_auth.principal import Role
from api.backoffice.csv_export import csv_response
from api.backoffice.guards import (
    ALL_ROLES,
    OWNER,
    AdminSession,
    SignedInAdmin,
    form_text,
    require_csrf,
)
from api.backoffice.listing import PAGE_SIZE, page_of
from api.backoffice.pages import base_context, page
from api.coalition import partner_admin
from api.coalition.partners import (
    DEFAULT_EARN_RATE_MILLIPOINTS_PER_EURO,
    DEFAULT_ISSUANCE_PRICE_MICROS,
    DEFAULT_REDEMPTION_PRICE_MICROS,
    DEFAULT_RETURN_WINDOW_DAYS,
    Credentials,
    NewPartner,
)
from api.cursors import decode_cursor
from api.db.pool import transaction
from api.errors import DomainError
from api.settlement.periods import PERIODS
from api.web.state import runtime
from api.web.templates import as_sentence
from api.webhooks.endpoints import list_endpoints

PARTNER_READ_ROLES: tuple[Role, ...] = ALL_ROLES
PARTNER_MONEY_ROLES: tuple[Role, ...] = ("owner", "finance")
PARTNER_OWNER_ROLES: tuple[Role, ...] = OWNER
# Form inputs are cut to these before they are checked: the columns' own
# limits are smaller, so a longer value is refused by the check, not stored.
TEXT_INPUT_CHARS_MAX = 200
NUMBER_INPUT_CHARS_MAX = 12
CSV_BATCH_ROWS = 500

_TERM_FIELDS = (
    ("earn_rate_millipoints_per_euro", "Earn rate"),
    ("issuance_price_micros", "Issuance price"),
    ("redemption_price_micros", "Redemption price"),
    ("return_window_days", "Return window"),
)


def _text(form: FormMultiDict, name: str) -> str:
    return form_text(form, name)[:TEXT_INPUT_CHARS_MAX]


def _whole_numbers(
    form: FormMultiDict, fields: Sequence[tuple[str, str]], errors: dict[str, str]
) -> dict[str, int]:
    """The form's whole-number fields; a missing or malformed one goes to `errors`."""
    found: dict[str, int] = {}
    for name, label in fields:
        raw = form_text(form, name).replace("_", "")[:NUMBER_INPUT_CHARS_MAX]
        if raw.isascii() and raw.isdigit():
            found[name] = int(raw)
        else:
            errors[name] = f"{label}: type a whole number of 0 or more."
    return found


def _filter(value: str | None) -> str | None:
    return value.strip() or None if value else None


def _context(who: AdminSession, **fields: Any) -> dict[str, Any]:
    return {
        **base_context(who, "partners"),
        "can_edit_money": who.admin.role in PARTNER_MONEY_ROLES,
        "is_owner": who.admin.role in PARTNER_OWNER_ROLES,
        **fields,
    }


@get("/partners", opt={"roles": PARTNER_READ_ROLES})
async def partners_list(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    status: FromQuery[str | None] = None,
    kind: FromQuery[str | None] = None,
    name: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    db = runtime(request.app.state).db
    filters = {"status": _filter(status), "kind": _filter(kind), "name": _filter(name)}
    after = decode_cursor(cursor, str)[0] if cursor else None
    rows = await partner_admin.list_partners(db, limit=PAGE_SIZE + 1, after_code=after, **filters)
    listed = page_of(rows, lambda row: (row.code,))
    context = _context(
        who,
        partners=listed.items,
        next_cursor=listed.next_cursor,
        filters={key: value or "" for key, value in filters.items()},
        kinds=await partner_admin.partner_kinds(db),
        statuses=partner_admin.PARTNER_STATUSES,
        appending=cursor is not None,
    )
    fragment = "rows" if cursor is not None else "table"
    return page(request, "backoffice/partners.html", context, fragment=fragment)


async def _csv_rows(
    request: Request[Any, Any, Any], filters: dict[str, str | None]
) -> AsyncIterator[Sequence[object]]:
    db = runtime(request.app.state).db
    after: str | None = None
    while True:  # a page at a time, so no transaction stays open while the file downloads
        rows = await partner_admin.list_partners(
            db, limit=CSV_BATCH_ROWS, after_code=after, **filters
        )
        for row in rows:
            yield (
                row.code,
                row.name,
                row.kind,
                row.status,
                row.currency,
                row.earn_rate_millipoints_per_euro,
                row.issuance_price_micros,
                row.redemption_price_micros,
                row.return_window_days,
                row.settlement_period,
                row.iban is not None,
                row.created_at.isoformat(),
            )
        if len(rows) < CSV_BATCH_ROWS:
            return
        after = rows[-1].code


@get("/partners/export.csv", opt={"roles": PARTNER_READ_ROLES})
async def partners_csv(
    request: Request[Any, Any, Any],
    status: FromQuery[str | None] = None,
    kind: FromQuery[str | None] = None,
    name: FromQuery[str | None] = None,
) -> Stream:
    filters = {"status": _filter(status), "kind": _filter(kind), "name": _filter(name)}
    return csv_response(
        "partners.csv",
        [
            "code",
            "name",
            "kind",
            "status",
            "currency",
            "earn_rate_millipoints_per_euro",
            "issuance_price_micros",
            "redemption_price_micros",
            "return_window_days",
            "settlement_period",
            "has_bank_details",
            "created_at",
        ],
        _csv_rows(request, filters),
    )


def _new_form_defaults() -> dict[str, str]:
    return {
        "code": "",
        "name": "",
        "kind": "shop",
        "earn_rate_millipoints_per_euro": str(DEFAULT_EARN_RATE_MILLIPOINTS_PER_EURO),
        "issuance_price_micros": str(DEFAULT_ISSUANCE_PRICE_MICROS),
        "redemption_price_micros": str(DEFAULT_REDEMPTION_PRICE_MICROS),
        "return_window_days": str(DEFAULT_RETURN_WINDOW_DAYS),
        "settlement_period": "daily",
        "iban": "",
        "bic": "",
        "account_holder": "",
    }


def _new_page(
    request: Request[Any, Any, Any],
    who: AdminSession,
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    error: str | None = None,
    created: Credentials | None = None,
    status: int = 200,
) -> Response[str]:
    context = _context(
        who,
        values=values,
        errors=errors or {},
        error=error,
        created=created,
        periods=PERIODS,
    )
    # The page may show a client secret: `page` sends it no-store.
    return page(request, "backoffice/partners_new.html", context, status=status)


@get("/partners/new", opt={"roles": PARTNER_OWNER_ROLES})
async def partner_new_form(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[str]:
    return _new_page(request, who, values=_new_form_defaults())


@post("/partners", opt={"roles": PARTNER_OWNER_ROLES})
async def partner_create(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[str]:
    rt = runtime(request.app.state)
    form = await request.form()
    require_csrf(request, form, who)
    values = {key: _text(form, key) for key in _new_form_defaults()}
    errors: dict[str, str] = {}
    terms = _whole_numbers(form, _TERM_FIELDS, errors)
    code = values["code"].lower()
    if not partner_admin.valid_code(code):
        errors["code"] = "A code is 2 to 63 lowercase letters, digits and hyphens."
    if not values["name"]:
        errors["name"] = "Type the partner's name."
    if not 1 <= len(values["kind"]) <= partner_admin.KIND_CHARS_MAX:
        errors["kind"] = (
            f"Type the kind of business (at most {partner_admin.KIND_CHARS_MAX} characters)."
        )
    if errors:
        return _new_page(request, who, values=values, errors=errors, status=422)
    new = NewPartner(
        code=code,
        name=values["name"],
        kind=values["kind"],
        settlement_period=values["settlement_period"],
        iban=values["iban"] or None,
        bic=values["bic"] or None,
        account_holder=values["account_holder"] or None,
        earn_rate_millipoints_per_euro=terms["earn_rate_millipoints_per_euro"],
        issuance_price_micros=terms["issuance_price_micros"],
        redemption_price_micros=terms["redemption_price_micros"],
        return_window_days=terms["return_window_days"],
    )
    try:
        created = await transaction(
            rt.db,
            lambda conn: partner_admin.create_partner_audited(conn, new, who.admin, rt.clock.now()),
        )
    except DomainError as refused:
        return _new_page(
            request, who, values=values, error=as_sentence(refused.detail), status=refused.status
        )
    return _new_page(request, who, values=values, created=created, status=201)


async def _detail(
    request: Request[Any, Any, Any],
    who: AdminSession,
    code: str,
    *,
    status: int = 200,
    **fields: Any,
) -> Response[str]:
    db = runtime(request.app.state).db
    partner = await partner_admin.get_partner(db, code)
    context = _context(
        who,
        partner=partner,
        client_ids=await partner_admin.active_client_ids(db, partner.id),
        endpoints=await list_endpoints(db, partner.id),
        deliveries=await partner_admin.recent_webhook_deliveries(db, partner.id),
        show_iban=who.admin.role in PARTNER_MONEY_ROLES,
        **{"notice": None, "error": None, "errors": {}, "issued": None, "values": {}, **fields},
    )
    return page(request, "backoffice/partner.html", context, status=status)


@get("/partners/{code:str}", opt={"roles": PARTNER_READ_ROLES})
async def partner_detail(
    request: Request[Any, Any, Any], who: SignedInAdmin, code: FromPath[str]
) -> Response[str]:
    return await _detail(request, who, code)


@post("/partners/{code:str}/terms", opt={"roles": PARTNER_MONEY_ROLES})
async def partner_terms(
    request: Request[Any, Any, Any], who: SignedInAdmin, code: FromPath[str]
) -> Response[str]:
    rt = runtime(request.app.state)
    form = await request.form()
    require_csrf(request, form, who)
    await partner_admin.get_partner(rt.db, code)  # a missing partner is a 404 page first
    errors: dict[str, str] = {}
    terms = _whole_numbers(form, _TERM_FIELDS, errors)
    values = {name: form_text(form, name)[:NUMBER_INPUT_CHARS_MAX] for name, _ in _TERM_FIELDS}
    if errors:
        return await _detail(request, who, code, status=422, errors=errors, values=values)
    change = partner_admin.PartnerTermsChange(**terms)
    try:
        await transaction(
            rt.db,
            lambda conn: partner_admin.change_terms(conn, code, change, who.admin, rt.clock.now()),
        )
    except DomainError as refused:
        return await _detail(
            request,
            who,
            code,
            status=refused.status,
            error=as_sentence(refused.detail),
            values=values,
        )
    return await _detail(request, who, code, notice="New terms apply from the next transaction.")


@post("/partners/{code:str}/status", opt={"roles": PARTNER_OWNER_ROLES})
async def partner_status(
    request: Request[Any, Any, Any], who: SignedInAdmin, code: FromPath[str]
) -> Response[str]:
    rt = runtime(request.app.state)
    form = await request.form()
    require_csrf(request, form, who)
    await partner_admin.get_partner(rt.db, code)
    wanted = form_text(form, "status")
    try:
        changed = await transaction(
            rt.db,
            lambda conn: partner_admin.change_status(conn, code, wanted, who.admin, rt.clock.now()),
        )
    except DomainError as refused:
        return await _detail(
            request, who, code, status=refused.status, error=as_sentence(refused.detail)
        )
    notice = (
        "The partner is suspended: its credentials and tokens no longer work."
        if changed.status == "suspended"
        else "The partner is active again."
    )
    return await _detail(request, who, code, notice=notice)


@post("/partners/{code:str}/bank", opt={"roles": PARTNER_MONEY_ROLES})
async def partner_bank(
    request: Request[Any, Any, Any], who: SignedInAdmin, code: FromPath[str]
) -> Response[str]:
    rt = runtime(request.app.state)
    form = await request.form()
    require_csrf(request, form, who)
    await partner_admin.get_partner(rt.db, code)
    values = {key: _text(form, key) for key in ("iban", "bic", "account_holder")}
    try:
        await transaction(
            rt.db,
            lambda conn: partner_admin.change_bank_details(
                conn,
                code,
                iban=values["iban"],
                bic=values["bic"] or None,
                account_holder=values["account_holder"] or None,
                admin=who.admin,
                now=rt.clock.now(),
            ),
        )
    except DomainError as refused:
        return await _detail(
            request,
            who,
            code,
            status=refused.status,
            errors={"bank": as_sentence(refused.detail)},
            values=values,
        )
    return await _detail(request, who, code, notice="Bank details saved.")


@post("/partners/{code:str}/credentials", opt={"roles": PARTNER_OWNER_ROLES})
async def partner_rotate(
    request: Request[Any, Any, Any], who: SignedInAdmin, code: FromPath[str]
) -> Response[str]:
    rt = runtime(request.app.state)
    require_csrf(request, await request.form(), who)
    await partner_admin.get_partner(rt.db, code)
    issued = await transaction(
        rt.db,
        lambda conn: partner_admin.rotate_credentials_audited(
            conn, code, who.admin, rt.clock.now()
        ),
    )
    return await _detail(
        request,
        who,
        code,
        issued=issued,
        notice="New credentials issued; the old ones stopped working.",
    )


HANDLERS: list[Any] = [
    partners_list,
    partners_csv,
    partner_new_form,
    partner_create,
    partner_detail,
    partner_terms,
    partner_status,
    partner_bank,
    partner_rotate,
]
