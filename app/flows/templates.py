"""Reply templates: Jinja2 in a sandbox, so a flow file cannot reach into the service."""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.errors import FlowFileError
from app.mobitex.encoding import SmsEncoding, measure, transliterate

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)

# Variables every reply can use; each kind documents the ones it adds.
COMMON_SAMPLE: dict[str, Any] = {
    "sender": "48600123456",
    "number": "70120",
    "text": "GLOS A",
    "keyword": "GLOS",
    "flow": "example",
    "flow_name": "Example",
}

# Variables of the ``closed`` reply every kind can send (see Flow.closed).
CLOSED_SAMPLE: dict[str, Any] = {"opens": "2026-12-01 20:00", "closes": "2026-12-01 22:00", "not_yet": False}


class Reply:
    """A compiled reply template and how to turn it into SMS text."""

    def __init__(self, source: str, where: str, *, transliterate_text: bool) -> None:
        try:
            self._template = _ENV.from_string(source)
        except TemplateSyntaxError as exc:
            raise FlowFileError(f"{where}: template error on line {exc.lineno}: {exc.message}") from None
        self.source = source
        self.where = where
        self.transliterate = transliterate_text

    def render(self, variables: dict[str, Any]) -> str:
        try:
            text = self._template.render(variables).strip()
        except UndefinedError as exc:
            raise FlowFileError(f"{self.where}: {exc.message}; see docs/flows.md for the variables") from None
        except SecurityError as exc:
            raise FlowFileError(f"{self.where}: not allowed in a template: {exc}") from None
        except Exception as exc:  # e.g. a division by zero: a broken file must not crash a reload
            raise FlowFileError(f"{self.where}: cannot render: {exc.__class__.__name__}: {exc}") from None
        return transliterate(text) if self.transliterate else text

    def check(self, sample: dict[str, Any], max_parts: int) -> SmsEncoding:
        """Render with sample data; a reply longer than ``max_parts`` SMS parts is an error."""
        measured = measure(self.render(sample))
        if measured.parts > max_parts or not measured.fits:
            hint = "" if self.transliterate or measured.encoding == "gsm7" else " or set transliterate = true"
            raise FlowFileError(
                f"{self.where}: with sample data this reply is {measured.length} {measured.encoding} "
                f"characters in {measured.parts} parts, over max_parts = {max_parts}; shorten it{hint}"
            )
        return measured
