"""The report behind ``smsflows flows check``: every file validated, the set judged as a whole, and
each reply rendered with sample data and measured as SMS, so a mistake shows before the service
loads it. Unlike the loader, it does not stop at the first error: it lists them all.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import msgspec

from app.errors import FlowFileError
from app.flows.kinds.base import WARSAW, Flow
from app.flows.loader import LoadedFlow, build, flow_files, parse_flow
from app.flows.samples import longest, sample_variants
from app.mobitex.encoding import measure

ENCODING_NAMES = {"gsm7": "GSM-7", "ucs2": "UCS-2"}


class ReplyCheck(msgspec.Struct, frozen=True):
    """One reply rendered with sample data."""

    name: str
    encoding: str
    length: int
    parts: int
    max_parts: int
    sample: str
    ok: bool


class FlowCheck(msgspec.Struct, frozen=True):
    id: str
    kind: str
    name: str
    file: str
    numbers: list[str]
    keywords: list[str]
    window: str
    status: str
    replies: list[ReplyCheck]
    repeats: str  # how often a reply without news may go to one phone


class CheckReport(msgspec.Struct, frozen=True):
    directory: str
    flows: list[FlowCheck]
    errors: list[str]
    replies_per_day: int = 0  # SMSFLOWS_REPLIES_PER_DAY: replies to one phone a day (0: no cap)


def flow_status(flow: Flow, at: datetime) -> str:
    """``disabled``, ``enabled`` (no window), or where ``at`` falls in the window:
    ``upcoming``, ``open`` or ``closed``."""
    if not flow.enabled:
        return "disabled"
    if flow.starts is None and flow.ends is None:
        return "enabled"
    lo, hi = flow.window()
    return "upcoming" if at < lo else "open" if at < hi else "closed"


def window_text(flow: Flow) -> str:
    """The window in Warsaw time, as people plan campaigns."""
    if flow.starts is None and flow.ends is None:
        return "always"
    lo, hi = flow.window()
    start = _warsaw(lo) if flow.starts is not None else "…"
    end = _warsaw(hi) if flow.ends is not None else "…"
    return f"{start} – {end}"


def _warsaw(value: datetime) -> str:
    return value.astimezone(WARSAW).strftime("%Y-%m-%d %H:%M")


def check_dir(directory: Path, now: datetime, replies_per_day: int = 0) -> CheckReport:
    """Check every ``*.toml`` in the folder and the set they make; collect every error."""
    errors: list[str] = []
    if not directory.is_dir():
        errors.append(f"{directory}: no such folder; pass the folder of flow files or set SMSFLOWS_FLOWS_DIR")
    loaded: list[LoadedFlow] = []
    flows: list[FlowCheck] = []
    for path in flow_files(directory):
        try:
            flow = parse_flow(path, path.read_bytes())
        except FlowFileError as exc:
            errors.extend(str(exc).splitlines())  # one line per wrong field
            continue
        except OSError as exc:
            errors.append(f"{path}: cannot be read: {exc.strerror}")
            continue
        replies, reply_errors = check_replies(flow)
        errors.extend(reply_errors)
        loaded.append(flow)
        flows.append(_flow_check(flow, replies, now))
    try:
        build(loaded)
    except FlowFileError as exc:
        errors.extend(str(exc).splitlines())
    return CheckReport(directory=str(directory), flows=flows, errors=errors, replies_per_day=replies_per_day)


def check_replies(flow: LoadedFlow) -> tuple[list[ReplyCheck], list[str]]:
    """Render each reply with every value known now (all options, labels, answers) and keep the
    longest; one over ``max_parts`` is an error."""
    variants, max_parts = sample_variants(flow.definition, flow.sample()), flow.definition.max_parts
    checks, errors = [], []
    for name, reply in flow.replies.items():
        try:
            sample, text = longest(reply, variants)  # the worst case is what gets sent and paid
        except FlowFileError as exc:
            errors.append(str(exc))
            continue
        measured = measure(text)
        try:
            reply.check(sample, max_parts)
            ok = True
        except FlowFileError as exc:
            errors.append(str(exc))
            ok = False
        checks.append(
            ReplyCheck(
                name=name,
                encoding=ENCODING_NAMES[measured.encoding],
                length=measured.length,
                parts=measured.parts,
                max_parts=max_parts,
                sample=text,
                ok=ok,
            )
        )
    return checks, errors


def _flow_check(flow: LoadedFlow, replies: list[ReplyCheck], now: datetime) -> FlowCheck:
    d = flow.definition
    return FlowCheck(
        id=flow.id,
        kind=flow.kind,
        name=d.name,
        file=str(flow.path),
        numbers=list(flow.numbers),
        keywords=list(flow.keywords),
        window=window_text(d),
        status=flow_status(d, now),
        replies=replies,
        repeats=repeats_text(d),
    )


def repeats_text(flow: Flow) -> str:
    """How often a reply without news (a repeat, an invalid message, a closed flow) may go to a phone."""
    if flow.answer_every_message:
        return "every message answered"
    if flow.conversational:
        return "retries up to max_retries"
    if flow.quiet_minutes == 0:
        return "every time"
    return f"once in {flow.quiet_minutes} min"
