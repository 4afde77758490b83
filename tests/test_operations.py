"""What operators install and run: the tested versions, and the systemd units of the docs."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "LimitNOFILE": "65536",
    "EnvironmentFile": "/srv/smsflows/.env",
    "CapabilityBoundingSet": "",
}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_dependency_is_pinned_to_the_version_the_tests_ran_with() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = _pins()
    for line in declared:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in constraints.txt: run `make constraints`"
        assert req.specifier.contains(pins[name]), f"{req.name}=={pins[name]} is outside {req.specifier}"
    for name, version in pins.items():
        assert metadata.version(name) == version, (
            f"{name}: {metadata.version(name)} installed, {version} pinned"
        )


def test_make_installs_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r'pip install --quiet -e "\.\[dev\]" -c constraints\.txt', makefile)
    assert re.search(r"^\$\(BIN\)/\.installed: pyproject\.toml constraints\.txt$", makefile, re.M)


def _units() -> dict[str, str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    blocks = re.findall(r"```ini\n# /etc/systemd/system/(\S+)\n(.*?)```", text, re.S)
    return dict(blocks)


def test_the_documented_units_carry_the_hardening() -> None:
    units = _units()
    assert set(units) == {"smsflows.service", "smsflows-worker.service"}
    for name, body in units.items():
        unit = configparser.ConfigParser(interpolation=None, strict=True)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read_string(body)
        service = unit["Service"]
        for key, value in HARDENING.items():
            assert service.get(key) == value, f"{name}: {key}"
        assert service["ReadWritePaths"] == "/srv/smsflows/var", name


def test_systemd_accepts_the_documented_units(tmp_path: Path) -> None:
    """systemd-analyze verify reads each unit as systemd would (unknown keys, bad values, a missing
    program); the units point at this checkout's own smsflows in place of /srv/smsflows."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed to check the units: apt-get install systemd"
    home = tmp_path / "srv"
    (home / ".venv" / "bin").mkdir(parents=True)
    (home / "var").mkdir()
    (home / ".env").write_text("SMSFLOWS_LOG_LEVEL=INFO\n")
    (home / ".venv" / "bin" / "smsflows").symlink_to(Path(sys.executable).parent / "smsflows")
    for name, body in _units().items():
        (tmp_path / name).write_text(body.replace("/srv/smsflows", str(home)))
        result = subprocess.run(
            [analyze, "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=120
        )
        assert (result.returncode, result.stderr.strip()) == (0, ""), (name, result.stderr)
