"""A draw's record, the file a commission signs, and its verification from that file alone.

The record holds the entry list with phones masked, its SHA-256, the seed and its commitment,
the algorithm's name and the winners and reserves; ``verify`` repeats the draw from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from app.draws.canonical import canonical, list_sha256, seed_sha256
from app.draws.entries import DrawRule
from app.draws.selection import ALGORITHM, pick
from app.errors import SmsflowsError

FORMAT = "smsflows-draw/1"


class RecordEntry(msgspec.Struct, frozen=True):
    id: str
    phone: str
    """Masked, e.g. ``48600***456``."""


class Pick(msgspec.Struct, frozen=True):
    position: int
    id: str
    phone: str
    """Masked in the record; whole only in the database, to tell the winner."""


class DrawRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    flow: str
    flow_name: str
    flow_kind: str
    flow_hash: str
    round: int
    reason: str | None
    rule: DrawRule
    algorithm: str
    entries_count: int
    entries_sha256: str
    seed: str
    seed_source: Literal["given", "generated"]
    seed_sha256: str
    committed_at: datetime
    drawn_at: datetime
    drawn_by: str
    winners: list[Pick]
    reserves: list[Pick]
    entries: list[RecordEntry]


class RecordError(SmsflowsError):
    """A record file cannot be read; the message says what is wrong with it."""

    status_code = 400


class Verification(msgspec.Struct, frozen=True):
    ok: bool
    checks: list[str]
    """What was checked, one line each, in order."""
    problems: list[str]
    """What did not hold; empty when ``ok``."""


def encode(record: DrawRecord) -> bytes:
    return msgspec.json.format(msgspec.json.encode(record)) + b"\n"


def decode(data: bytes, source: str = "the record") -> DrawRecord:
    try:
        return msgspec.json.decode(data, type=DrawRecord)
    except msgspec.ValidationError as exc:
        raise RecordError(f"{source} is not a draw record: {exc}") from None
    except msgspec.DecodeError as exc:
        raise RecordError(
            f"{source} is not JSON ({exc}); give the file `smsflows draw run --output` wrote"
        ) from None


def verify(record: DrawRecord) -> Verification:
    """Repeat the draw from the record: the list's count and hash, the seed's commitment, and
    the winners and reserves the algorithm picks from them."""
    checks: list[str] = []
    problems: list[str] = []

    def check(holds: bool, done: str, wrong: str) -> None:
        checks.append(done)
        if not holds:
            problems.append(wrong)

    if record.format != FORMAT or record.algorithm != ALGORITHM:
        problems.append(
            f"the record is {record.format} drawn with {record.algorithm}; this version checks "
            f"{FORMAT} drawn with {ALGORITHM}"
        )
        return Verification(ok=False, checks=checks, problems=problems)
    ids = [e.id for e in record.entries]
    check(
        len(set(ids)) == len(ids),
        "every entry id is listed once",
        "an entry id is listed more than once",
    )
    check(
        ids == canonical(ids),
        "the entries are in canonical order",
        "the entries are not in canonical order (sorted by id)",
    )
    check(
        len(ids) == record.entries_count,
        f"the list has {record.entries_count} entries",
        f"the list has {len(ids)} entries, the record says {record.entries_count}",
    )
    digest = list_sha256(ids)
    check(
        digest == record.entries_sha256,
        f"the list's SHA-256 is {record.entries_sha256}",
        f"the list's SHA-256 is {digest}, the record says {record.entries_sha256}: the list was changed",
    )
    check(
        seed_sha256(record.seed) == record.seed_sha256,
        f"the seed matches its commitment {record.seed_sha256}",
        "the seed does not match its commitment: it is not the seed committed before the draw",
    )
    check(
        record.committed_at <= record.drawn_at,
        "the seed was committed before the draw",
        "the seed's commitment is dated after the draw",
    )
    positions = pick(record.seed, len(ids), len(record.winners) + len(record.reserves))
    expected = [ids[p] for p in positions]
    got = [p.id for p in [*record.winners, *record.reserves]]
    wins, spares = len(record.winners), len(record.reserves)
    check(
        expected == got,
        f"the algorithm picks the same {wins} winner(s) and {spares} reserve(s)",
        f"the algorithm picks {_ids(expected)}; the record names {_ids(got)}",
    )
    return Verification(ok=not problems, checks=checks, problems=problems)


def _ids(ids: list[str]) -> str:
    return ", ".join(ids) or "nobody"
