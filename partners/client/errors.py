"""The one error type of the kit."""

from __future__ import annotations

from typing import Any


class PartnerApiError(Exception):
    """The server answered with an error (problem+json), or could not be reached.

    `code` is the server's stable error code (`insufficient_points`,
    `member_not_found`, `idempotency_conflict`, ...) and is what callers branch
    on. When the answer had no problem document the code is `http_<status>`;
    when no answer came at all (timeout, refused connection) `status` is 0 and
    the code is `transport_error`. `body` is the decoded problem document, or
    the raw text when it was not JSON.
    """

    def __init__(self, status: int, code: str, detail: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body

    @property
    def retryable(self) -> bool:
        """True when sending the same request again (same idempotency key) may succeed."""
        return self.status == 0 or self.status == 429 or self.status >= 500

    def __repr__(self) -> str:
        return f"PartnerApiError(status={self.status}, code={self.code!r}, detail={self.detail!r})"
