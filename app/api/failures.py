"""The last resort for errors nobody handled: logged with their traceback, answered with a clean 500."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.exceptions.responses import create_exception_response

log = logging.getLogger("smsflows.api")


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Log the traceback for the operator; tell the client nothing about the inside, only what to do."""
    if isinstance(exc, HTTPException):
        # Raised on purpose by Litestar (a client gone before its body arrived): known, no traceback.
        log.warning("%s %s: %s", request.method, request.url.path, exc.detail)
        return create_exception_response(request, exc)
    log.error("unhandled %s on %s %s", exc.__class__.__name__, request.method, request.url.path, exc_info=exc)
    return Response(
        {
            "status_code": 500,
            "detail": "Internal Server Error: the error is logged with its details; try again later",
        },
        status_code=500,
    )
