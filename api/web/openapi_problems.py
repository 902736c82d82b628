"""Every refusal of the JSON APIs, documented in the OpenAPI document.

Any call of /partner/v1, /member/v1 or /admin/v1 may be refused with a 4xx
application/problem+json body (`api/web/problems.py`): a bad or missing token,
a body that does not parse or validate, something not found, a conflict, a
rate limit. Litestar documents only the 400 it raises itself, with its own
body shape, which is not what Kring sends. This rewrites each operation's 4xx
answers to the problem shape and adds a `4XX` range for the rest, once, when
the app is built; each operation's description names its own problem codes.
"""

from __future__ import annotations

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin  # the app's own; not re-exported
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Schema

from api.web.problems import PROBLEM_MEDIA_TYPE

API_PREFIXES = ("/partner/v1", "/member/v1", "/admin/v1")
_TEXT = Schema(type=OpenAPIType.STRING)
PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    title="Problem",
    description="RFC 9457 problem details; clients branch on `code`.",
    required=["type", "title", "status", "code", "detail"],
    properties={
        "type": _TEXT,
        "title": _TEXT,
        "status": Schema(type=OpenAPIType.INTEGER),
        "code": _TEXT,
        "detail": _TEXT,
        "errors": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT)),
    },
)
_PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=PROBLEM_SCHEMA)}
ANY_REFUSAL = "4XX"


def document_problems(app: Litestar) -> None:
    openapi = app.plugins.get(OpenAPIPlugin).provide_openapi()
    for path, item in (openapi.paths or {}).items():
        if not path.startswith(API_PREFIXES):
            continue
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            responses = operation.responses or {}
            for status, response in list(responses.items()):
                if status.startswith("4") and isinstance(response, OpenAPIResponse):
                    response.content = dict(_PROBLEM_CONTENT)
            responses.setdefault(
                ANY_REFUSAL,
                OpenAPIResponse(
                    description="Refused: a problem with a stable `code` (see the description"
                    " above; 401 for a missing, invalid or expired token, 422 for a body that"
                    " does not validate, 429 `rate_limited` with Retry-After)",
                    content=dict(_PROBLEM_CONTENT),
                ),
            )
            operation.responses = responses
