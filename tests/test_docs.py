"""The docs keep up with the code: every setting, route and command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from app.cli import main
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
    text = _read("docs/api.md", "docs/mobitex.md")
    assert _route_pattern(path).search(text), f"route {path} is missing from docs/api.md and docs/mobitex.md"


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
