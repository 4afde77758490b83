"""Flow files → a FlowSet: decoded, validated, templates compiled, keywords indexed.

A FlowSet is built whole or not at all: one broken file means the running set stays.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import msgspec

from app.errors import FlowFileError
from app.flows.kinds import KINDS, kind_names
from app.flows.kinds.base import Flow
from app.flows.matching import ANY_NUMBER, KeywordIndex, fold
from app.flows.problems import every_problem
from app.flows.samples import longest, sample_variants
from app.flows.sms_templates import CLOSED_SAMPLE, COMMON_SAMPLE, Reply
from app.mobitex.encoding import SmsEncoding
from app.mobitex.mo_form import normalise_number

_ANY_FLOW: Any = Union[KINDS]  # noqa: UP007 - msgspec needs the tagged union as one type
_PATH = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")


@dataclass(eq=False)
class LoadedFlow:
    """A flow as the engine uses it: definition, version hash, compiled replies."""

    definition: Flow
    path: Path
    hash: str
    numbers: tuple[str, ...]
    keywords: tuple[str, ...]
    replies: dict[str, Reply]

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def kind(self) -> str:
        return str(type(self.definition).__struct_config__.tag)

    @property
    def answer_tag(self) -> str | None:
        """The tag of sent messages whose answers this flow takes (a ``reply`` flow's), or None."""
        return self.definition.answer_tag()

    def sample(self) -> dict[str, Any]:
        return {
            **COMMON_SAMPLE,
            **CLOSED_SAMPLE,
            "flow": self.id,
            "flow_name": self.definition.name or self.id,
            **self.definition.sample(),
        }

    @functools.cached_property
    def blanks(self) -> dict[str, Any]:
        """Every variable ``flows check`` knows, empty: a reply that passed the check never meets
        an undefined variable because its outcome did not set one another reply uses."""
        return dict.fromkeys(self.sample(), "")

    def check_replies(self) -> dict[str, SmsEncoding]:
        variants = sample_variants(self.definition, self.sample())
        return {
            name: reply.check(longest(reply, variants)[0], self.definition.max_parts)
            for name, reply in self.replies.items()
        }


@dataclass
class FlowSet:
    flows: dict[str, LoadedFlow] = field(default_factory=dict)
    index: KeywordIndex[LoadedFlow] = field(default_factory=KeywordIndex)
    fallbacks: dict[str, LoadedFlow] = field(default_factory=dict)
    conversational: bool = False
    answers: dict[str, LoadedFlow] = field(default_factory=dict)  # tag → the flow taking its answers
    replies_per_day: int = 0  # SMSFLOWS_REPLIES_PER_DAY: the cap of replies to one phone (0: none)

    def fallback_for(self, number: str) -> LoadedFlow | None:
        return self.fallbacks.get(number) or self.fallbacks.get(ANY_NUMBER)

    def answer_flow(self, tag: str, number: str) -> LoadedFlow | None:
        """The flow that takes answers to messages sent with ``tag``, arriving on ``number``."""
        flow = self.answers.get(tag)
        return flow if flow is not None and (ANY_NUMBER in flow.numbers or number in flow.numbers) else None


def parse_flow(path: Path, raw: bytes) -> LoadedFlow:
    """Decode one file; every error names the file and the field path."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FlowFileError(f"{path}: not valid TOML: {exc}") from None
    kind = data.get("kind")
    if kind not in kind_names():
        raise FlowFileError(
            f"{path}: kind: {kind!r} is not a flow kind; use one of {', '.join(kind_names())}"
        )
    try:
        definition: Flow = msgspec.convert(data, _ANY_FLOW)
    except msgspec.ValidationError as exc:
        # msgspec names the first wrong value only; a person fixing the file wants them all.
        kind_class = next(k for k in KINDS if k.__struct_config__.tag == kind)
        problems = every_problem(data, kind_class) or [_with_path(str(exc))]
        raise FlowFileError("\n".join(f"{path}: {problem}" for problem in problems)) from None
    for where, name in definition.files().items():
        if not (path.parent / name).is_file():
            raise FlowFileError(
                f"{path}: {where}: file {path.parent / name} not found "
                "(the path is relative to the flow file)"
            )
    numbers = tuple(sorted({normalise_number(n) for n in definition.numbers})) or (ANY_NUMBER,)
    for n in numbers:
        if n != ANY_NUMBER and not n.isdigit():
            raise FlowFileError(f"{path}: numbers: {n!r} is not a phone number or short code")
    keywords = tuple(dict.fromkeys(fold(k) for k in definition.all_keywords()))
    if any(not k or " " in k for k in keywords):
        raise FlowFileError(f"{path}: keywords: each keyword is one word of letters or digits")
    replies = {
        name: Reply(source, f"{path}: replies.{name}", transliterate_text=definition.transliterate)
        for name, source in definition.reply_templates().items()
        if source is not None
    }
    digest = hashlib.sha256(msgspec.json.encode(definition)).hexdigest()[:12]
    return LoadedFlow(definition, path, digest, numbers, keywords, replies)


def _with_path(message: str) -> str:
    """``Expected int - at `$.vote.per_sender``` → ``vote.per_sender: Expected int``."""
    found = _PATH.match(message)
    path, text = (found["path"].lstrip("."), found["msg"]) if found else ("", message)
    if unknown := _UNKNOWN.match(text):  # the misspelt field itself is the path worth showing
        path = f"{path}.{unknown['name']}" if path else unknown["name"]
        text = "unknown field; check its spelling against the fields in docs/flows.md"
    elif ": " in text and re.match(r"^[\w.\-\[\]]+: ", text):  # a cross-field check gave a sub-path
        sub, text = text.split(": ", 1)
        path = f"{path}.{sub}" if path else sub
    return f"{path}: {text}" if path else text


def build(flows: list[LoadedFlow]) -> FlowSet:
    """Index the flows and check the set as a whole (ids, keyword conflicts, fallbacks)."""
    fs = FlowSet()
    errors: list[str] = []
    for f in flows:
        if f.id in fs.flows:
            errors.append(f"{f.path}: id: {f.id!r} is already used by {fs.flows[f.id].path}")
            continue
        fs.flows[f.id] = f
        if not f.definition.enabled:
            continue
        fs.conversational |= type(f.definition).conversational
        if type(f.definition).is_fallback:
            for n in f.numbers:
                if n in fs.fallbacks:
                    errors.append(f"{f.path}: numbers: {n} already has the fallback {fs.fallbacks[n].path}")
                fs.fallbacks[n] = f
        if (tag := f.definition.answer_tag()) is not None:
            if tag in fs.answers:
                errors.append(f"{f.path}: reply.tag: {tag!r} is already taken by {fs.answers[tag].path}")
            fs.answers[tag] = f
        for kw in f.keywords:
            fs.index.add(f.numbers, kw, f, typo_tolerant=f.definition.typo_tolerance and len(kw) >= 5)
    errors.extend(_conflicts(fs))
    if errors:
        raise FlowFileError("\n".join(errors))
    return fs


def _conflicts(fs: FlowSet) -> list[str]:
    """Two flows claiming one keyword on one number at overlapping times cannot both win."""
    errors = []
    for (number, kw), claimants in fs.index.exact.items():
        rivals = list(claimants)
        if number != ANY_NUMBER:
            rivals += fs.index.exact.get((ANY_NUMBER, kw), [])
        for i, a in enumerate(rivals):
            for b in rivals[i + 1 :]:
                (a_lo, a_hi), (b_lo, b_hi) = a.definition.window(), b.definition.window()
                if a is not b and a_lo < b_hi and b_lo < a_hi:
                    where = "every number" if number == ANY_NUMBER else f"number {number}"
                    errors.append(
                        f"{b.path}: keywords: {kw} on {where} is already claimed by {a.path} at "
                        "overlapping times; give one of them other keywords, other numbers or a window "
                        "that does not overlap"
                    )
    return sorted(set(errors))


def flow_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.toml") if p.is_file()) if directory.is_dir() else []


def load_dir(directory: Path, *, check_replies: bool = True) -> FlowSet:
    """Load every ``*.toml`` in the folder; a missing or empty folder is an empty set."""
    loaded, errors = [], []
    for path in flow_files(directory):
        try:
            flow = parse_flow(path, path.read_bytes())
            if check_replies:
                flow.check_replies()
            loaded.append(flow)
        except FlowFileError as exc:
            errors.append(str(exc))
    if errors:
        raise FlowFileError("\n".join(errors))
    return build(loaded)


def find_flow(directory: Path, flow_id: str) -> LoadedFlow:
    """The flow with this id among the folder's files; other files' errors do not stand in the way."""
    broken, ids = [], []
    for path in flow_files(directory):
        try:
            flow = parse_flow(path, path.read_bytes())
        except (FlowFileError, OSError):
            broken.append(path.name)
            continue
        if flow.id == flow_id:
            return flow
        ids.append(flow.id)
    known = f"flows there: {', '.join(sorted(ids))}" if ids else "no flows there"
    hint = f"; {', '.join(broken)} did not load (run `smsflows flows check`)" if broken else ""
    raise FlowFileError(f"no flow {flow_id!r} in {directory} ({known}){hint}; check SMSFLOWS_FLOWS_DIR")
