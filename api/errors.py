"""The one error type of the domain.

A `DomainError` carries a stable `code` that clients may branch on, the HTTP
status it maps to, and a sentence for humans. The web layer renders it as
RFC 9457 problem+json; domain code never imports the web framework.
"""

from __future__ import annotations


class DomainError(Exception):
    status = 422
    code = "invalid_request"
    title = "The request cannot be processed"

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict with the current state"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class InsufficientPoints(DomainError):
    status = 422
    code = "insufficient_points"
    title = "Not enough points"
