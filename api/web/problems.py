"""Every error leaves as RFC 9457 application/problem+json with a stable `code`."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.exceptions.http_exceptions import (
    MethodNotAllowedException,
    NotAuthorizedException,
    RequestEntityTooLarge,
)

from api.db.pool import CONNECTION_LOST_ERRORS, DatabaseUnavailable
from api.errors import DomainError

log = logging.getLogger("kring.errors")
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    title: str
    status: int
    code: str
    detail: str
    errors: list[dict[str, Any]] | None = None


def problem(
    status: int, code: str, title: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> Response[Problem]:
    body = Problem(
        type=f"https://kring.example/problems/{code}",
        title=title,
        status=status,
        code=code,
        detail=detail,
        errors=errors,
    )
    return Response(content=body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    return problem(exc.status, exc.code, exc.title, exc.detail)


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    malformed = any(
        "malformed" in str(e.get("message", "")).lower() for e in errors if isinstance(e, dict)
    )
    if malformed or "malformed" in str(exc.detail).lower() or "JSON" in str(exc.detail):
        return problem(
            400, "malformed_json", "Malformed request body", "the request body is not valid JSON"
        )
    # An empty body surfaces from Litestar as a bare KeyError on `data`.
    if any(e.get("message") in ("'data'", "data") for e in errors if isinstance(e, dict)):
        return problem(
            422,
            "invalid_request",
            "The request is not valid",
            "the request needs a JSON object body",
        )
    fields = "; ".join(
        f"{e.get('key', 'body')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)
    )
    return problem(
        422,
        "invalid_request",
        "The request is not valid",
        fields or str(exc.detail),
        errors=[e for e in errors if isinstance(e, dict)] or None,
    )


_HTTP_CODES = {
    NotFoundException: (404, "not_found", "Not found"),
    MethodNotAllowedException: (405, "method_not_allowed", "Method not allowed"),
    NotAuthorizedException: (401, "unauthorized", "Authentication required"),
    RequestEntityTooLarge: (413, "request_too_large", "Request body too large"),
}


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    for kind, (status, code, title) in _HTTP_CODES.items():
        if isinstance(exc, kind):
            return problem(status, code, title, str(exc.detail))
    status = exc.status_code
    if status == 400:
        # Litestar raises a bare 400 when the body cannot be decoded at all.
        return problem(
            400,
            "malformed_json",
            "Malformed request body",
            f"the body is not valid JSON: {exc.detail}",
        )
    if status >= 500:
        log.error("server error: %s", exc.detail)
        return problem(
            status, "internal_error", "Internal error", "something went wrong on our side"
        )
    return problem(status, "bad_request", "Bad request", str(exc.detail))


def unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "internal_error", "Internal error", "something went wrong on our side")


# A restarting database is over in seconds; a client retries after this.
DATABASE_RETRY_AFTER_SECONDS = 1


def database_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    # One line, no traceback: every request during a restart lands here.
    log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    response = problem(
        503,
        "database_unavailable",
        "Service unavailable",
        "the database cannot be reached just now; send the request again"
        " (with the same Idempotency-Key)",
    )
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DatabaseUnavailable: database_unavailable,
    **{error: database_unavailable for error in CONNECTION_LOST_ERRORS},
    DomainError: domain_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
