"""Every error of one flow file, not only the first: each field is validated on its own.

msgspec stops at the first wrong value; a person fixing a file wants the whole list at once, each
with the field path and, where a value is refused, the values that would be accepted.
"""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
from typing import Any

import msgspec

_AT = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.S)
DATETIME_HINT = (
    "a TOML date-time with the time of day, e.g. 2026-12-01T20:00:00 (Warsaw time) or "
    "2026-12-01T20:00:00+01:00, without quotes"
)


def every_problem(data: Any, cls: type[msgspec.Struct]) -> list[str]:
    """``path: message`` for each wrong field of ``data`` read as ``cls``; empty when it converts."""
    return _struct(data, cls, "")


def _join(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def _struct(value: Any, cls: type[msgspec.Struct], path: str) -> list[str]:
    if not isinstance(value, dict):
        return _leaf(value, cls, path)
    config = cls.__struct_config__
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    tag = config.tag_field
    problems = [
        f"{_join(path, key)}: unknown field; check its spelling against the fields in docs/flows.md"
        for key in value
        if key not in fields and key != tag and config.forbid_unknown_fields
    ]
    for name, field in fields.items():
        if name in value:
            problems += _value(value[name], field.type, _join(path, name))
        elif field.required:
            problems.append(f"{_join(path, name)}: required, but missing")
    if not problems:  # the fields are right one by one: the checks across fields may still refuse
        problems = _leaf(value, cls, path)
    return problems


def _value(value: Any, annotation: Any, path: str) -> list[str]:
    """Descend into Structs, lists and tables of them; judge anything else whole."""
    target = _strip(annotation)
    members = [m for m in typing.get_args(target) if m is not type(None)] if _is_union(target) else [target]
    if value is None or (len(members) != 1 and not all(_is_struct(m) for m in members)):
        return _leaf(value, annotation, path)
    if len(members) > 1:  # a tagged union of Structs, such as the survey step types
        return _tagged(value, members, path)
    inner = _strip(members[0])
    origin = typing.get_origin(inner)
    if _is_struct(inner):
        return _struct(value, inner, path)
    if origin in (list, tuple) and isinstance(value, list) and (args := typing.get_args(inner)):
        return [p for i, item in enumerate(value) for p in _value(item, args[0], _join(path, i))]
    args = typing.get_args(inner)
    if origin is dict and isinstance(value, dict) and len(args) == 2 and _is_struct(_strip(args[1])):
        return [p for key, item in value.items() for p in _value(item, args[1], _join(path, key))]
    return _leaf(value, annotation, path)


def _tagged(value: Any, members: list[Any], path: str) -> list[str]:
    tag_field = members[0].__struct_config__.tag_field
    by_tag = {str(m.__struct_config__.tag): m for m in members}
    if not isinstance(value, dict):
        return _leaf(value, members[0], path)
    chosen = by_tag.get(str(value.get(tag_field)))
    if chosen is None:
        shown = repr(value[tag_field]) if tag_field in value else "missing"
        return [f"{_join(path, tag_field)}: {shown} is not one of {', '.join(sorted(by_tag))}"]
    return _struct(value, chosen, path)


def _leaf(value: Any, annotation: Any, path: str) -> list[str]:
    try:
        msgspec.convert(value, annotation)
    except msgspec.ValidationError as exc:
        return [_explain(str(exc), value, annotation, path)]
    except ValueError as exc:  # a cross-field check of a Struct's __post_init__
        return [_located(str(exc), path)]
    return []


def _explain(message: str, value: Any, annotation: Any, path: str) -> str:
    found = _AT.match(message)
    if found:
        message, path = found["msg"], path + found["path"]
    text = _located(message, path)
    allowed = _literals(annotation)
    if allowed:
        text += f"; use one of {', '.join(repr(a) for a in allowed)}"
    elif isinstance(value, dt.date | str) and dt.datetime in _flat(annotation):
        text += f"; write {DATETIME_HINT}"
    return text


def _located(message: str, path: str) -> str:
    if re.match(r"^[\w.\-\[\]]+: ", message):  # a check that names its own sub-field
        sub, message = message.split(": ", 1)
        path = _join(path, sub)
    return f"{path.lstrip('.')}: {message}" if path else message


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def _flat(annotation: Any) -> list[Any]:
    annotation = _strip(annotation)
    if _is_union(annotation):
        return [t for arg in typing.get_args(annotation) for t in _flat(arg)]
    return [annotation]


def _literals(annotation: Any) -> list[Any]:
    return [
        v for t in _flat(annotation) if typing.get_origin(t) is typing.Literal for v in typing.get_args(t)
    ]
