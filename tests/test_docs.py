"""The docs keep up with the code: every setting, route, command and flow field is documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from msgspec import inspect as mi

from app.cli import main
from app.flows.kinds import KINDS, kind_names
from app.flows.kinds.base import Flow
from app.main import create_app
from app.settings import PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _read(*names: str) -> str:
    return "\n".join((ROOT / name).read_text(encoding="utf-8") for name in names)


def _route_paths() -> list[str]:
    app = create_app(load_settings({}, None))
    return sorted({route.path for route in app.routes})


def _route_pattern(path: str) -> re.Pattern[str]:
    """``/api/quarantine/{qid:int}/reingest`` matches ``/api/quarantine/{id}/reingest`` in the docs."""
    parts = re.split(r"\{[^}]*\}", path)
    body = r"\{[A-Za-z_][A-Za-z0-9_]*\}".join(re.escape(p) for p in parts)
    # Not a prefix of a longer documented path: `/schema` must appear on its own somewhere.
    return re.compile(body + r"(?![A-Za-z0-9_./{-])")


def _cli_commands() -> list[str]:
    commands = []
    for name, command in main.commands.items():
        commands.append(f"smsflows {name}")
        if isinstance(command, click.Group):
            commands.extend(f"smsflows {name} {sub}" for sub in command.commands)
    return sorted(commands)


def _structs_in(t: mi.Type, found: dict[type, mi.StructType]) -> None:
    """Every Struct a flow file can hold under ``t``: sections, replies, survey steps."""
    if isinstance(t, mi.StructType):
        if t.cls not in found:
            found[t.cls] = t
            for f in t.fields:
                _structs_in(f.type, found)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            _structs_in(member, found)
    elif isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        _structs_in(t.item_type, found)
    elif isinstance(t, mi.DictType):
        _structs_in(t.value_type, found)
    elif isinstance(t, mi.Metadata):
        _structs_in(t.type, found)


def _kind_structs(kind: type[Flow]) -> list[mi.StructType]:
    """The kind's own Structs: its section, its replies and what they hold (not the common fields)."""
    found: dict[type, mi.StructType] = {}
    for f in mi.type_info(kind).fields:
        if f.name not in Flow.__struct_fields__:
            _structs_in(f.type, found)
    return list(found.values())


def _kind_fields() -> list[tuple[str, str]]:
    """(kind, field as written in a flow file) for every field of every kind's own Structs."""
    pairs = set()
    for kind in KINDS:
        tag = str(kind.__struct_config__.tag)
        own = [f for f in mi.type_info(kind).fields if f.name not in Flow.__struct_fields__]
        pairs |= {(tag, f.encode_name) for f in own}
        pairs |= {(tag, f.encode_name) for s in _kind_structs(kind) for f in s.fields}
    return sorted(pairs)


def _kind_choices() -> list[tuple[str, str]]:
    """(kind, value) for every fixed choice of a kind's fields (on_repeat, checksum, step types...)."""
    pairs = set()
    for kind in KINDS:
        tag = str(kind.__struct_config__.tag)
        for s in _kind_structs(kind):
            if s.tag is not None:
                pairs.add((tag, str(s.tag)))
            for f in s.fields:
                t = f.type.types if isinstance(f.type, mi.UnionType) else (f.type,)
                pairs |= {(tag, str(v)) for lit in t if isinstance(lit, mi.LiteralType) for v in lit.values}
    return sorted(pairs)


def _kind_section(kind: str) -> str:
    """The text of docs/flows.md under the heading ``### `kind` ...``, up to the next heading."""
    text = _read("docs/flows.md")
    found = re.search(rf"^### `{re.escape(kind)}`.*?(?=^##)", text + "\n##", re.M | re.S)
    assert found, f"docs/flows.md has no section '### `{kind}`: …' for the {kind} kind"
    return found.group(0)


def _first_code_block(markdown: str) -> tuple[int, list[str]]:
    """The line number where the first fenced block starts, and its commands without comments."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("```"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    commands = [line.split("#", 1)[0].strip() for line in lines[start + 1 : end]]
    return start, [c for c in commands if c]


@pytest.mark.parametrize("name", sorted(Settings.__struct_fields__))
def test_every_setting_is_documented_in_configuration(name: str) -> None:
    variable = f"{PREFIX}{name.upper()}"
    text = _read("docs/configuration.md")
    assert re.search(rf"`{variable}`", text), f"{variable} is missing from docs/configuration.md"


@pytest.mark.parametrize("path", _route_paths())
def test_every_route_is_documented(path: str) -> None:
    text = _read("docs/api.md", "docs/mobitex.md", "docs/dashboard.md")
    assert _route_pattern(path).search(text), (
        f"route {path} is missing from docs/api.md, mobitex.md, dashboard.md"
    )


@pytest.mark.parametrize("command", _cli_commands())
def test_every_cli_command_is_documented(command: str) -> None:
    text = _read("README.md", *(str(p.relative_to(ROOT)) for p in sorted(DOCS.glob("*.md"))))
    assert re.search(rf"{re.escape(command)}(?![\w-])", text), f"`{command}` is missing from README and docs/"


def test_readme_opens_with_make_run_and_make_test() -> None:
    readme = _read("README.md")
    start, commands = _first_code_block(readme)
    assert commands == ["make run", "make test"]
    before = [line for line in readme.splitlines()[:start] if line.strip()]
    assert all(line.startswith("# ") for line in before), "only the title may come before the two commands"


def test_route_pattern_ignores_parameter_names_but_not_the_rest() -> None:
    pattern = _route_pattern("/api/quarantine/{qid:int}/reingest")
    assert pattern.search("POST /api/quarantine/{id}/reingest")
    assert not pattern.search("POST /api/quarantine/1/reingest")
    assert not _route_pattern("/schema").search("see /schema/openapi.json")


@pytest.mark.parametrize("kind", kind_names())
def test_every_flow_kind_has_a_section_in_flows_doc(kind: str) -> None:
    section = _kind_section(kind)
    assert "```toml" in section, f"the {kind} section of docs/flows.md has no complete example file"


@pytest.mark.parametrize("field", ["kind", *(f.encode_name for f in mi.type_info(Flow).fields)])
def test_every_common_flow_field_is_documented(field: str) -> None:
    text = _read("docs/flows.md")
    assert f"| `{field}` |" in text, f"common field {field} is missing from the table in docs/flows.md"


@pytest.mark.parametrize(("kind", "field"), _kind_fields())
def test_every_field_of_every_kind_is_documented_in_its_section(kind: str, field: str) -> None:
    section = _kind_section(kind)
    assert re.search(rf"`\[?{re.escape(field)}\]?`", section), (
        f"{kind}: field {field} is missing from its section of docs/flows.md"
    )


@pytest.mark.parametrize(("kind", "value"), _kind_choices())
def test_every_choice_of_a_kind_field_is_documented(kind: str, value: str) -> None:
    section = _kind_section(kind)
    assert re.search(rf'`"?{re.escape(value)}"?`', section), (
        f"{kind}: the value {value!r} is missing from its section of docs/flows.md"
    )


def test_kind_fields_walk_reaches_survey_steps_and_renamed_fields() -> None:
    fields = _kind_fields()
    assert ("survey", "max_length") in fields and ("survey", "choices") in fields
    assert ("subscription", "list") in fields and ("subscription", "list_id") not in fields
    assert ("survey", "email") in _kind_choices()
