"""The Jinja environment: templates from the top-level ``templates/`` folder, i18n, formatting filters."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import pass_context
from jinja2.runtime import Context
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

import app
from app.dashboard import i18n
from app.dashboard.i18n import N_
from app.dashboard.phones import shown_answer, shown_json, shown_phone, shown_text
from app.flows.kinds.survey import SurveyFlow
from app.settings import Settings

STATIC = Path(__file__).with_name("static")
HTMX = "htmx-2.0.11.min.js"


def templates_dir() -> Path:
    """``templates/`` beside ``app/`` in a checkout; ``app/templates`` once installed from a wheel."""
    package = Path(app.__file__).parent
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


def send_mode(settings: Settings) -> str:
    """What sending does now, as the navigation shows it: live, dry-run or fake gateway."""
    if not settings.sends_for_real:
        return "dry-run"
    host = urlsplit(settings.mobitex_url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return "fake gateway"
    return "live"


def _locale(ctx: Context) -> str:
    request = ctx.get("request")
    return i18n.locale_of(request) if request is not None else i18n.DEFAULT


@pass_context
def _gettext(ctx: Context, message: str) -> str:
    return i18n.translations(_locale(ctx)).gettext(message)


@pass_context
def _ngettext(ctx: Context, singular: str, plural: str, n: int) -> str:
    return i18n.translations(_locale(ctx)).ngettext(singular, plural, n)


@pass_context
def _number(ctx: Context, value: float | int | None) -> str:
    return i18n.number(value, _locale(ctx))


@pass_context
def _percent(ctx: Context, share: float) -> str:
    return i18n.percent(share, _locale(ctx))


@pass_context
def _when(ctx: Context, value: datetime | None) -> str:
    return i18n.when(value, _locale(ctx))


@pass_context
def _stamp(ctx: Context, value: datetime | None) -> str:
    return i18n.stamp(value, _locale(ctx))


@pass_context
def _ago(ctx: Context, value: datetime | None) -> str:
    return i18n.ago(value, _locale(ctx))


@pass_context
def _phone(ctx: Context, phone: str | None) -> str:
    """A number whole for operators and admins, masked for viewers (who only read results)."""
    return shown_phone(_user(ctx), phone)


@pass_context
def _phone_text(ctx: Context, text: str | None) -> str:
    """A sentence the service wrote (an error, a reason), its numbers shown as ``phone`` shows one."""
    return shown_text(_user(ctx), text)


@pass_context
def _phone_json(ctx: Context, value: Any) -> Any:
    """JSON (a decision's detail, a message's data) with its numbers shown as ``phone`` shows one."""
    return shown_json(_user(ctx), value)


@pass_context
def _answer(ctx: Context, value: str | None, flow_id: str, step_id: str) -> str:
    """A survey answer, read by its step's type in the running flow file (a phone step's is a number)."""
    request = ctx.get("request")
    flow = request.app.state.flows.current.flows.get(flow_id) if request is not None else None
    definition = flow.definition if flow is not None else None
    step_type = definition.step_type(step_id) if isinstance(definition, SurveyFlow) else None
    return shown_answer(_user(ctx), step_type, value)


@pass_context
def _current_locale(ctx: Context) -> str:
    return _locale(ctx)


@pass_context
def _user(ctx: Context) -> Any:
    request = ctx.get("request")
    return request.scope.get("user") if request is not None else None


@pass_context
def _send_mode(ctx: Context) -> str:
    request = ctx.get("request")
    if request is None:
        return "dry-run"
    return send_mode(request.app.state.settings)


def _configure(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.autoescape = True  # the engine's default; stated here because nothing may turn it off
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(number=_number, percent=_percent, when=_when, stamp=_stamp, ago=_ago)
    env.filters.update(phone=_phone, phone_text=_phone_text, phone_json=_phone_json, answer=_answer)
    env.globals.update(
        current_locale=_current_locale,
        current_user=_user,
        send_mode=_send_mode,
        locales=i18n.LOCALES,
        language_name=i18n.language_name,
        htmx_script=HTMX,
    )
    env.trim_blocks = True
    env.lstrip_blocks = True


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=templates_dir(), engine=JinjaTemplateEngine, engine_callback=_configure)


# Words that reach templates as data (roles, statuses, states, what a figure counts); listed
# here so that extraction puts them in the catalogs.
WORDS = (
    N_("viewer"), N_("operator"), N_("admin"),
    N_("queued"), N_("sending"), N_("sent"), N_("failed"), N_("dry-run"),
    N_("scheduled"), N_("open"), N_("closed"),
    N_("votes"), N_("redemptions"), N_("members"), N_("completed"), N_("messages"),
    N_("joins"), N_("leaves"), N_("hits"),
    N_("pending"), N_("active"), N_("left"), N_("expired"), N_("aborted"),
)  # fmt: skip
