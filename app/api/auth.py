"""Bearer-token guard for ``/api``: off (503) until SMSFLOWS_API_TOKEN is set."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, ServiceUnavailableException
from litestar.handlers import BaseRouteHandler

from app.settings import Settings


def require_token(connection: ASGIConnection[object, object, object, State], _: BaseRouteHandler) -> None:
    settings: Settings = connection.app.state.settings
    if not settings.api_token:
        raise ServiceUnavailableException(
            "The API is disabled: set SMSFLOWS_API_TOKEN to a secret "
            "and send it as 'Authorization: Bearer <token>'."
        )
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    good = hmac.compare_digest(token.strip().encode(), settings.api_token.encode())
    if scheme.lower() != "bearer" or not good:
        raise NotAuthorizedException(
            "Missing or wrong token: send 'Authorization: Bearer <SMSFLOWS_API_TOKEN>'.",
            headers={"WWW-Authenticate": 'Bearer realm="smsflows"'},
        )
