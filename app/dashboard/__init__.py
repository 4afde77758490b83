"""The web dashboard: server-rendered pages on the same app as the API.

``create_app`` adds ``dashboard(settings)``: one router (sessions, CSRF, security headers,
HTML error pages apply to it alone, so the API and the webhook keep their own behaviour),
the static files and the template engine.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from litestar import Request, Response, Router
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import NotFoundException
from litestar.exceptions.responses import create_exception_response
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.plugins.htmx import HTMXRequest
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.dashboard.audit import AuditController
from app.dashboard.auth import CookieSessions, LoadUser, session_config
from app.dashboard.contacts import ContactsController
from app.dashboard.draws import DrawsController, FlowDrawsController
from app.dashboard.errors import EXCEPTION_HANDLERS, error_page
from app.dashboard.failures import FailuresController
from app.dashboard.flows import FlowsController
from app.dashboard.headers import SecurityHeaders
from app.dashboard.i18n import N_
from app.dashboard.login import LoginController
from app.dashboard.messages import MessagesController
from app.dashboard.overview import OverviewController
from app.dashboard.send import SendController
from app.dashboard.simulator import SimulatorController
from app.dashboard.templating import STATIC, template_config
from app.dashboard.users import UsersController
from app.settings import Settings

CSRF_COOKIE = "smsflows_csrf"


class Dashboard(msgspec.Struct, frozen=True):
    route_handlers: list[Any]
    template_config: TemplateConfig[Any]


def dashboard(settings: Settings) -> Dashboard:
    csrf_secret = hashlib.sha256(b"csrf:" + (settings.session_secret or "off").encode()).hexdigest()
    csrf = CSRFConfig(
        secret=csrf_secret,
        cookie_name=CSRF_COOKIE,
        cookie_secure=settings.secure_cookies,
        cookie_httponly=True,
        cookie_samesite="lax",
    )
    pages = Router(
        path="/",
        route_handlers=[
            LoginController,
            OverviewController,
            FlowsController,
            MessagesController,
            ContactsController,
            DrawsController,
            FlowDrawsController,
            AuditController,
            SimulatorController,
            FailuresController,
            SendController,
            UsersController,
        ],
        middleware=[
            SecurityHeaders(),
            DefineMiddleware(CookieSessions, config=session_config(settings)),
            DefineMiddleware(CSRFMiddleware, config=csrf),
            LoadUser(),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=HTMXRequest,
        include_in_schema=False,
    )
    static = create_static_files_router(path="/static", directories=[STATIC], include_in_schema=False)
    return Dashboard(route_handlers=[pages, static], template_config=template_config())


def not_found(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[Any]:
    """An address no route knows: JSON under /api (as before), the error page for people."""
    if request.url.path.startswith("/api") or "text/html" not in request.headers.get("accept", ""):
        return create_exception_response(request, exc)
    # A page's own "no such flow" says more than the router's bare "Not Found".
    own = exc.detail and exc.detail != "Not Found"
    return error_page(request, 404, exc.detail if own else N_("There is no page at this address."))


__all__ = ["Dashboard", "dashboard", "not_found"]
