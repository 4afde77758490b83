"""SMS reply templates of flow files: Jinja2 in a sandbox, so a flow file cannot reach into the service."""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.errors import FlowFileError
from app.mobitex.encoding import SmsEncoding, measure, shorten_to_parts, transliterate

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


# Distinct texts remembered per reply; past it the memo starts over (a reply that quotes the
# sender's number is new every time and must not grow without bound).
_MEMO_SIZE = 1024


class Reply:
    """A compiled reply template and how to turn it into SMS text."""

    def __init__(self, source: str, where: str, *, transliterate_text: bool) -> None:
        try:
            self._template = _ENV.from_string(source)
            # The names the template reads: its text depends on their values and nothing else.
            self._reads = tuple(sorted(meta.find_undeclared_variables(_ENV.parse(source))))
        except TemplateSyntaxError as exc:
            raise FlowFileError(f"{where}: template error on line {exc.lineno}: {exc.message}") from None
        self.source = source
        self.where = where
        self.transliterate = transliterate_text
        self._memo: dict[tuple[Any, ...], tuple[str, SmsEncoding]] = {}

    def sms(self, variables: dict[str, Any], max_parts: int) -> tuple[str, SmsEncoding]:
        """The reply as sent: rendered, cut to ``max_parts`` parts, and measured.

        Most replies read a few variables that repeat ("Głos na {{ option }} przyjęty"), so the
        result is remembered by the values the template reads; during a vote that spares the
        render and both measurements for nearly every message.
        """
        try:
            key: tuple[Any, ...] | None = (max_parts, *(variables[name] for name in self._reads))
            done = self._memo.get(key)  # type: ignore[arg-type]
        except (KeyError, TypeError):  # reads a global such as range(), or an unhashable value
            key, done = None, None
        if done is not None:
            return done
        text = shorten_to_parts(self.render(variables), max_parts)
        done = (text, measure(text))
        if key is not None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = done
        return done

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
