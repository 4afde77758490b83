"""How uvicorn runs the app: one place for the options the CLI and the tests share."""

from __future__ import annotations

from typing import Any

from app.settings import Settings


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``."""
    return {
        "log_level": settings.log_level.lower(),
        "access_log": False,  # a line per MO at thousands a second is noise; failures are logged by us
        # X-Forwarded-For is judged by SMSFLOWS_TRUSTED_PROXIES in the webhook; uvicorn's own
        # rewriting of the client address would let a forged header through.
        "proxy_headers": False,
        "server_header": False,
    }
