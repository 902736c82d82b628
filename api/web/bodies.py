"""Decoding JSON request bodies strictly, for every JSON API surface."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from api.errors import DomainError

B = TypeVar("B", bound=msgspec.Struct)


async def strict_body(request: Request[Any, Any, Any], body_type: type[B]) -> B:
    """Decode the body strictly: "100" is not an integer, 1700000000 is not a time.

    Litestar has already decoded `data` for the handler signature (and for the
    OpenAPI document), but leniently; this strict pass is the one we act on."""
    raw = await request.body()
    try:
        return msgspec.json.decode(raw or b"null", type=body_type, strict=True)
    except msgspec.ValidationError as exc:
        raise DomainError(f"the request is not valid: {exc}", code="invalid_request") from None
    except msgspec.DecodeError:
        raise DomainError(
            "the request body is not valid JSON", code="malformed_json", status=400
        ) from None
