"""``code``: contests with codes printed on packaging: ``KOD ABC123`` enters code ABC123.

A code is valid when it was imported from the flow's codes file (``smsflows codes import``) or
when it fits the flow's pattern. Exactness does not rest on reads: a code's redemption is unique
per flow, and an entry is the ``seq``-th of its phone under the unique key (flow, phone, seq),
so a code is never used twice and a phone never passes ``per_sender``, whatever arrives at once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import IntegrityError

from app.db.flow_models import Code, Redemption
from app.errors import FlowError
from app.flows.kinds.base import Context, Flow, Outcome
from app.flows.matching import rest_after_first_word

MAX_CODE_LENGTH = 64  # the width of the codes and redemptions columns
_IGNORED = re.compile(r"[\s\-‐‑‒–—]+")  # spaces and every kind of dash a phone may type
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_WELL_FORMED = re.compile(rf"[A-Z0-9]{{1,{MAX_CODE_LENGTH}}}")
_ALPHABETS = {"luhn": "0123456789", "luhn36": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def normalise_code(text: str) -> str:
    """``abc-12 3.`` → ``ABC123``: upper case, no spaces or dashes, no punctuation at the ends.

    The same rule applies to imported codes and to codes in messages, so either can be typed
    the way it is printed.
    """
    return _EDGES.sub("", _IGNORED.sub("", text)).upper()


def is_well_formed(code: str) -> bool:
    """A normalised code is 1 to 64 letters A–Z and digits."""
    return _WELL_FORMED.fullmatch(code) is not None


def luhn_valid(code: str, alphabet: str) -> bool:
    """Luhn mod N over ``alphabet``: the last character checks the others.

    With the digits it is the payment-card Luhn; with 0-9A-Z (mod 36) it catches every single
    mistyped character and most swaps of two neighbours.
    """
    n, total = len(alphabet), 0
    for i, char in enumerate(reversed(code)):
        value = alphabet.find(char)
        if value < 0:
            return False
        if i % 2:
            value *= 2
            value = value // n + value % n
        total += value
    return len(code) > 1 and total % n == 0


class CodeSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: Literal["list", "pattern"]
    file: str | None = None
    column: str | None = None
    pattern: str | None = None
    checksum: Literal["none", "luhn", "luhn36"] = "none"
    per_sender: Annotated[int, msgspec.Meta(ge=1)] = 1

    def __post_init__(self) -> None:
        if self.source == "list":
            if not self.file:
                raise ValueError(
                    'file: a list of codes needs its file, e.g. file = "codes/summer.txt" '
                    "(relative to the flow file)"
                )
            if self.pattern is not None or self.checksum != "none":
                raise ValueError(
                    'source: pattern and checksum belong to source = "pattern"; a list accepts '
                    "exactly the imported codes"
                )
            if self.column is not None and not self.file.lower().endswith(".csv"):
                raise ValueError("column: only a CSV file (name ending in .csv) has columns")
            return
        if self.file is not None or self.column is not None:
            raise ValueError('source: file and column belong to source = "list"')
        if not self.pattern:
            raise ValueError('pattern: a pattern source needs one, e.g. pattern = "^[A-Z0-9]{8}$"')
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern: not a valid regular expression: {exc}") from None


class CodeReplies(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    accepted: str | None = None
    used: str | None = None
    invalid: str | None = None
    limit: str | None = None
    closed: str | None = None


class CodeFlow(Flow, frozen=True, kw_only=True, tag="code"):
    code: CodeSpec
    replies: CodeReplies = CodeReplies()

    def files(self) -> dict[str, str]:
        return {"code.file": self.code.file} if self.code.file else {}

    def codes_file(self, flow_file: Path) -> Path | None:
        """The list of codes, found next to the flow file."""
        return flow_file.parent / self.code.file if self.code.file else None

    def handle(self, ctx: Context) -> Outcome:
        code = normalise_code(rest_after_first_word(ctx.msg.text))
        sender = ctx.msg.sender
        entries = self._entries(ctx.conn, sender)
        if not self._valid(ctx.conn, code):
            return Outcome("invalid", reply="invalid", variables=self._vars(code, entries))
        # Each failed insert means another message just took this code or this phone's next
        # seq and committed; so the loop ends within per_sender + 1 rounds.
        for _ in range(self.code.per_sender + 2):
            holder = ctx.conn.scalar(
                select(Redemption.sender).where(Redemption.flow_id == self.id, Redemption.code == code)
            )
            if holder is not None:
                used = {**self._vars(code, entries), "used_by_you": holder == sender}
                return Outcome("used", reply="used", variables=used)
            if entries >= self.code.per_sender:
                return Outcome("limit", reply="limit", variables=self._vars(code, entries))
            try:
                with ctx.conn.begin_nested():
                    ctx.conn.execute(insert(Redemption).values(self._row(ctx, code, seq=entries + 1)))
            except IntegrityError:
                entries = self._entries(ctx.conn, sender)
                continue
            return Outcome("accepted", reply="accepted", variables=self._vars(code, entries + 1))
        raise FlowError(f"code {code} of {sender} could not be recorded; replay the message")

    def _valid(self, conn: Connection, code: str) -> bool:
        if not is_well_formed(code):
            return False
        spec = self.code
        if spec.source == "list":
            known = conn.scalar(select(Code.code).where(Code.flow_id == self.id, Code.code == code))
            return known is not None
        assert spec.pattern is not None  # checked when the flow file was loaded
        if re.fullmatch(spec.pattern, code, re.IGNORECASE) is None:
            return False
        return spec.checksum == "none" or luhn_valid(code, _ALPHABETS[spec.checksum])

    def _entries(self, conn: Connection, sender: str) -> int:
        count = conn.scalar(
            select(func.count()).where(Redemption.flow_id == self.id, Redemption.sender == sender)
        )
        return int(count or 0)

    def _row(self, ctx: Context, code: str, seq: int) -> dict[str, Any]:
        return {
            "flow_id": self.id,
            "flow_hash": ctx.flow_hash,
            "code": code,
            "sender": ctx.msg.sender,
            "seq": seq,
            "inbound_id": ctx.msg.id,
            "created_at": ctx.now,
        }

    def _vars(self, code: str, entries: int) -> dict[str, Any]:
        return {
            "code": code,
            "entries": entries,
            "entries_left": max(self.code.per_sender - entries, 0),
            "per_sender": self.code.per_sender,
            "used_by_you": False,
        }

    def sample(self) -> dict[str, Any]:
        return self._vars("ABC123", 1)
