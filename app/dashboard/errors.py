"""Error pages: a sentence and a next step in the reader's language, never a traceback."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.enums import MediaType
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.plugins.htmx import ClientRedirect, HTMXRequest
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER, HTTP_500_INTERNAL_SERVER_ERROR

from app.dashboard import i18n
from app.dashboard.auth import LoginRequired
from app.dashboard.i18n import N_
from app.errors import SmsflowsError

log = logging.getLogger("smsflows.dashboard")

# What the reader can do next, by status; the sentence above it comes from the exception.
NEXT_STEPS = {
    400: N_("Go back, correct the form and send it again."),
    401: N_("Sign in, then open the page again."),
    403: N_("Go back to the overview, or ask an admin for a role that may do this."),
    404: N_("Check the address, or start again from the overview."),
    405: N_("Start again from the overview."),
    409: N_("Open the page again to see how things stand now."),
    422: N_("Change what the message names and try again."),
    429: N_("Wait a few minutes and try again."),
    502: N_("Check the gateway and the account, then try again."),
    503: N_("Try again in a minute; if it keeps happening, check the service's log."),
}
TITLES = {
    400: N_("That request could not be understood"),
    401: N_("Please sign in"),
    403: N_("Not allowed"),
    404: N_("Page not found"),
    405: N_("Not allowed here"),
    409: N_("That was done already, or changed meanwhile"),
    422: N_("That cannot be done as given"),
    429: N_("Too many attempts"),
    500: N_("Something went wrong on our side"),
    502: N_("The gateway did not take it"),
    503: N_("Not available right now"),
}


def error_page(request: Request[Any, Any, Any], status: int, message: str) -> Template:
    # Translated here, not in the template: a message may quote what the user typed, and
    # gettext in a template would mark it safe.
    tr = i18n.translations(i18n.locale_of(request)).gettext
    return Template(
        template_name="error.html",
        context={
            "status": status,
            "title": tr(TITLES.get(status, TITLES[500] if status >= 500 else TITLES[400])),
            "message": tr(message),
            "next_step": tr(NEXT_STEPS.get(status, NEXT_STEPS[503] if status >= 500 else NEXT_STEPS[400])),
        },
        status_code=status,
        media_type=MediaType.HTML,
    )


def _login_redirect(request: Request[Any, Any, Any]) -> Response[Any]:
    back = request.url.path if request.method == "GET" else "/"
    if request.url.query and request.method == "GET":
        back += "?" + request.url.query
    target = f"/login?next={quote(back, safe='/')}"
    ended = request.scope.get("smsflows_session_ended")
    if ended:
        target += f"&ended={ended}"  # the sign-in page says why the session ended
    # Error handlers get a plain Request; the HTMX view of the same scope reads its headers.
    if HTMXRequest(request.scope).htmx:
        return ClientRedirect(target)  # a refreshing part of a page: the whole page goes to sign in
    return Redirect(target, status_code=HTTP_303_SEE_OTHER)


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, LoginRequired):
        return _login_redirect(request)
    message = exc.detail
    if isinstance(exc, PermissionDeniedException) and "CSRF" in exc.detail:
        # The form's token is missing or belongs to another browser session.
        message = N_("The form had expired or was not sent from this dashboard.")
    elif isinstance(exc, NotAuthorizedException) and not exc.detail:
        message = N_("Sign in to see this page.")
    return error_page(request, exc.status_code, message)


def on_domain_error(request: Request[Any, Any, Any], exc: SmsflowsError) -> Response[Any]:
    """The status the error carries (404 for what does not exist, 409 for a conflict...), as the
    API answers it, with the domain's own words (in English)."""
    if exc.status_code >= 500:
        log.warning("dashboard page %s: %s", request.url.path, exc)
    return error_page(request, exc.status_code, str(exc))


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("dashboard page %s failed", request.url.path, exc_info=exc)
    return error_page(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        N_("The page could not be made; the details are in the service's log."),
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    HTTPException: on_http_error,
    SmsflowsError: on_domain_error,
    Exception: on_unexpected,
}
