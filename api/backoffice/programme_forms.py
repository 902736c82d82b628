"""Reading the programme pages' forms and filters: text in, typed values out.

A value that does not parse is a `form_invalid` DomainError naming the field,
so a handler re-renders its form with the message (422) exactly as it does
for the domain's own refusals; nothing is written before every field parsed.
Times are typed by admins in the programme's time zone (Amsterdam), as the
pages show them (`<input type="datetime-local">`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar.datastructures import FormMultiDict

from api.backoffice.guards import form_text
from api.backoffice.pages import PROGRAMME_TZ
from api.errors import DomainError

FORM_INVALID = "form_invalid"
LOCAL_MINUTE = "%Y-%m-%dT%H:%M"


def invalid(label: str, problem: str, *, status: int = 422) -> DomainError:
    return DomainError(f"{label}: {problem}", code=FORM_INVALID, status=status)


def whole(form: FormMultiDict, name: str, label: str) -> int:
    """A required whole number."""
    found = optional_whole(form, name, label)
    if found is None:
        raise invalid(label, "is required")
    return found


def optional_whole(form: FormMultiDict, name: str, label: str) -> int | None:
    text = form_text(form, name).replace("_", "")
    if not text:
        return None
    if not (text.lstrip("-").isascii() and text.lstrip("-").isdigit()) or len(text) > 18:
        raise invalid(label, f"{text!r} is not a whole number")
    return int(text)


def local_moment(text: str, label: str, *, status: int = 422) -> datetime | None:
    """'2026-05-01T09:30' (or a date) read in Amsterdam time; None when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(label, f"{text!r} is not a date and time", status=status) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PROGRAMME_TZ)
    return moment


def moment(form: FormMultiDict, name: str, label: str) -> datetime:
    found = local_moment(form_text(form, name), label)
    if found is None:
        raise invalid(label, "is required")
    return found


def optional_text(form: FormMultiDict, name: str) -> str | None:
    return form_text(form, name) or None


def checked(form: FormMultiDict, name: str) -> bool:
    return form_text(form, name) in ("on", "true", "1", "yes")


def whole_list(form: FormMultiDict, name: str, label: str) -> list[int]:
    """Ids ticked in a multi-select or typed as '3, 5'."""
    found: list[int] = []
    for value in form.getall(name, []):
        for part in str(value).replace(",", " ").split():
            if not part.isascii() or not part.isdigit() or len(part) > 18:
                raise invalid(label, f"{part!r} is not an id")
            found.append(int(part))
    return found


def local_input(value: datetime | None) -> str:
    """A time as a datetime-local input shows it (Amsterdam)."""
    return "" if value is None else value.astimezone(PROGRAMME_TZ).strftime(LOCAL_MINUTE)


def form_values(form: FormMultiDict | None) -> dict[str, Any]:
    """What the admin typed, to put back into a re-rendered form."""
    if form is None:
        return {}
    values: dict[str, Any] = {}
    for key in form:
        listed = form.getall(key, [])
        values[key] = listed if len(listed) > 1 else (listed[0] if listed else "")
    return values
