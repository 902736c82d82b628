"""What every portal handler shares: the signed-in staff member (a dependency),
the role and CSRF checks, and the hidden fields of the portal's forms.

A handler module (`controllers`, `webhooks`, ...) imports these; the router in
`controllers` turns the exceptions below into pages.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency

from api.partner_api.auth import PartnerPrincipal
from api.portal import session as sessions
from api.portal.staff import Staff, find_active_staff
from api.web.cookies import csrf_matches
from api.web.state import Runtime, runtime

# Keys the portal's forms carry; the prefix keeps them apart from a partner's own POS keys.
_KEY = re.compile(r"^portal-[0-9a-f]{32}$")


class SignInRequired(Exception):
    """No valid session: send the browser to the sign-in page."""


class FormExpired(Exception):
    """The form's CSRF token does not match the session's."""


class ManagersOnly(Exception):
    """A cashier asked for a page that only the partner's managers may use."""


@dataclass(frozen=True, slots=True)
class StaffSession:
    staff: Staff
    csrf_token: str

    @property
    def principal(self) -> PartnerPrincipal:
        return PartnerPrincipal(self.staff.partner_id, self.staff.partner_public_id)


SignedIn = NamedDependency[StaffSession]


def session_secret(rt: Runtime) -> str:
    return rt.settings.jwt_secret or ""


async def signed_in(request: Request[Any, Any, Any]) -> StaffSession:
    rt = runtime(request.app.state)
    found = sessions.read_session(
        request.cookies.get(sessions.SESSION_COOKIE), secret=session_secret(rt), now=rt.clock.now()
    )
    if found is None:
        raise SignInRequired
    staff = await find_active_staff(rt.db, found.staff_id)
    if staff is None:
        raise SignInRequired
    return StaffSession(staff, found.csrf_token)


def require_manager(who: StaffSession) -> None:
    if who.staff.role != "manager":
        raise ManagersOnly


def require_csrf(form: FormMultiDict, expected: str) -> None:
    if not csrf_matches(expected, form_text(form, sessions.CSRF_FIELD)):
        raise FormExpired


def form_text(form: FormMultiDict, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def new_key() -> str:
    """A fresh idempotency key for a rendered form: sending it twice writes once."""
    return f"portal-{uuid.uuid4().hex}"


def idempotency_key(form: FormMultiDict) -> str:
    key = form_text(form, "idempotency_key")
    if not _KEY.match(key):
        raise FormExpired  # only a tampered or stale form has no key of ours
    return key


def base_context(who: StaffSession, nav: str) -> dict[str, Any]:
    """What base.html needs: who is signed in, the CSRF token, the current nav item."""
    return {"signed_in": who.staff, "csrf_token": who.csrf_token, "nav": nav}
