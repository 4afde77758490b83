"""Every module imports on its own in a fresh interpreter (commands such as `smsflows worker` start
from one of them): a smoke test that no module depends on another having been imported first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
MODULES = sorted(
    ".".join(p.relative_to(APP.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in APP.rglob("*.py")
    if "migrations" not in p.parts and p.name != "__main__.py"
)


def test_every_module_is_listed() -> None:
    assert "app.outbox.actions" in MODULES and "app.flows.kinds.reply" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_in_a_fresh_interpreter(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
