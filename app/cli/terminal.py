"""Text from messages made safe to print: a terminal never receives a control character from an SMS.

An SMS (or anything derived from one: an answer, a code, an error quoting it) may carry escape
sequences that recolour the terminal, rewrite its title or move the cursor over earlier lines, and
bidirectional marks that show text in another order than it is stored. They are shown as visible
escapes (``\\x1b``, ``\\u202e``) instead, so the operator sees what was sent; line breaks stay.
"""

from __future__ import annotations

import re

from rich.text import Text

# C0 and C1 controls but the line feed, DEL, and the bidirectional embeddings, overrides and isolates.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written out as an escape."""
    return _CONTROL.sub(_visible, text)


def plain(text: str, style: str = "") -> Text:
    """A rich cell that shows ``text`` as it is: no markup, no control characters."""
    return Text(printable(text), style=style)
