"""The last resort for errors nobody handled: logged with their traceback, answered with a clean 500."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response

log = logging.getLogger("smsflows.api")


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Log the traceback for the operator; tell the client nothing about the inside, only what to do."""
    log.error("unhandled %s on %s %s", exc.__class__.__name__, request.method, request.url.path, exc_info=exc)
    return Response(
        {
            "status_code": 500,
            "detail": "Internal Server Error: the error is logged with its details; try again later",
        },
        status_code=500,
    )
