"""The one exception handler of the API: any domain error becomes the JSON error answer
``{"status_code": …, "detail": "…", "extra": …}`` with the status its class names.

It is registered on the application, so it answers for every route. A router that renders HTML
(the dashboard) registers its own handler for ``SmsflowsError``; Litestar uses the handler of the
innermost layer that has one, so those pages get their own rendering and ``/api`` keeps this one.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.types import ExceptionHandlersMap

from app.errors import SmsflowsError

log = logging.getLogger("smsflows.api")


def error_response(request: Request[Any, Any, Any], exc: SmsflowsError) -> Response[dict[str, Any]]:
    if exc.status_code >= 500:  # ours to fix, not the client's: keep a trace in the log
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": str(exc)}
    if exc.extra is not None:
        body["extra"] = exc.extra
    return Response(body, status_code=exc.status_code)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {SmsflowsError: error_response}
