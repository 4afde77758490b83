"""``smsflows audit``: a flow's results rebuilt from the event log and the stored messages,
compared with the live tables, difference by difference, and per flow version.

The event log is append-only and written in the transaction that stores each message, so a
result that differs from it was changed by something other than the flows: a row removed or
edited by hand, a restore from an older backup, a bug.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection, func, select

from app.db.models import FlowEvent, InboundMessage
from app.errors import SmsflowsError
from app.evidence.rebuild import AUDITED, Entries, by_version, events, live, rebuilt, tally
from app.flows.loader import LoadedFlow
from app.privacy.pseudonyms import mask

MAX_LISTED = 200  # differences listed one by one; the count is always whole


class AuditError(SmsflowsError):
    """The flow cannot be audited (a kind without entries)."""

    status_code = 422


class Version(msgspec.Struct, frozen=True):
    hash: str
    current: bool
    """Whether this is the flow file as it is now."""
    outcomes: dict[str, int]
    """The decisions this version made, by outcome."""
    entries: int
    """Live entries (rebuilt from the log) this version made."""


class AuditReport(msgspec.Struct, frozen=True):
    flow: str
    kind: str
    events: int
    rebuilt: dict[str, int]
    """The results as the event log gives them."""
    live: dict[str, int]
    """The results as the live tables give them."""
    versions: list[Version]
    differences: int
    listed: list[str]
    """The first differences, one line each."""

    @property
    def ok(self) -> bool:
        return self.differences == 0


def audit(conn: Connection, flow: LoadedFlow) -> AuditReport:
    if flow.kind not in AUDITED:
        raise AuditError(
            f"flow {flow.id!r} is a {flow.kind} flow, which keeps no results; "
            f"audit works on {', '.join(AUDITED)} flows"
        )
    from_log, made_by = rebuilt(conn, flow)
    in_tables = live(conn, flow)
    found = _entry_differences(flow.kind, from_log, in_tables) + _message_differences(conn, flow.id)
    return AuditReport(
        flow=flow.id,
        kind=flow.kind,
        events=int(conn.scalar(select(func.count()).where(FlowEvent.flow_id == flow.id)) or 0),
        rebuilt=tally(from_log, flow.kind),
        live=tally(in_tables, flow.kind),
        versions=_versions(conn, flow, made_by, from_log),
        differences=len(found),
        listed=found[:MAX_LISTED],
    )


def _show(kind: str, key: Any, value: Any) -> str:
    if kind in ("vote", "code"):
        phone, what = value
        noun = "vote" if kind == "vote" else "redemption"
        return f"{noun} of message {key} ({mask(phone)}, {what})"
    if kind == "survey":
        return f"{value} completed survey(s) of {mask(key)}"
    return f"{mask(key)} {value} on the list"


def _entry_differences(kind: str, from_log: Entries, in_tables: Entries) -> list[str]:
    lines = []
    for key in sorted(from_log.keys() | in_tables.keys(), key=str):
        ours, theirs = from_log.get(key), in_tables.get(key)
        if ours == theirs:
            continue
        if theirs is None:
            lines.append(
                f"missing from the live table: {_show(kind, key, ours)}, which the event log records"
            )
        elif ours is None:
            lines.append(f"not in the event log: {_show(kind, key, theirs)}, which the live table holds")
        else:
            lines.append(
                f"differs: the event log has {_show(kind, key, ours)}, "
                f"the live table {_show(kind, key, theirs)}"
            )
    return lines


def _message_differences(conn: Connection, flow_id: str) -> list[str]:
    """Each decision against the stored message it was made on, and each message the flow
    processed against its decision."""
    logged = events(conn, FlowEvent.flow_id == flow_id)
    messages = {
        m.id: m
        for m in conn.execute(
            select(
                InboundMessage.id, InboundMessage.sender, InboundMessage.flow_id, InboundMessage.status
            ).where(
                InboundMessage.id.in_({e.inbound_id for e in logged if e.inbound_id is not None})
                | (InboundMessage.flow_id == flow_id)
            )
        )
    }
    lines = []
    decided = set()
    for e in logged:
        if e.inbound_id is None:
            continue
        decided.add(e.inbound_id)
        m = messages.get(e.inbound_id)
        if m is None:
            lines.append(f"event {e.id}: its message {e.inbound_id} is not stored")
        elif m.sender != e.sender:
            lines.append(
                f"event {e.id}: message {m.id} came from {mask(m.sender)}, the event says {mask(e.sender)}"
            )
    for m in messages.values():
        if m.flow_id == flow_id and m.status == "processed" and m.id not in decided:
            lines.append(
                f"message {m.id} is marked processed by this flow but the event log has no decision on it"
            )
    return lines


def _versions(
    conn: Connection, flow: LoadedFlow, made_by: dict[Any, str], from_log: Entries
) -> list[Version]:
    rows = conn.execute(
        select(FlowEvent.flow_hash, FlowEvent.outcome, func.count())
        .where(FlowEvent.flow_id == flow.id)
        .group_by(FlowEvent.flow_hash, FlowEvent.outcome)
    ).all()
    outcomes: dict[str, dict[str, int]] = {}
    for h, outcome, n in rows:
        outcomes.setdefault(h or "", {})[outcome] = int(n)
    entries = by_version(made_by, from_log)
    hashes = sorted(outcomes.keys() | entries.keys())
    return [
        Version(
            hash=h,
            current=h == flow.hash,
            outcomes=dict(sorted(outcomes.get(h, {}).items())),
            entries=entries.get(h, 0),
        )
        for h in hashes
    ]
