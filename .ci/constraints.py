"""Print constraints.txt: the installed version of every package smsflows[dev] needs, transitively.

Run with the project's interpreter after the whole suite passed on an upgraded .venv:
    .venv/bin/python .ci/constraints.py > constraints.txt   (or: make constraints)
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# Tested versions of every package smsflows and its dev tools install: `make` and CI install with
# `pip install -e ".[dev]" -c constraints.txt`. After upgrading and running the whole suite, regenerate
# it from the .venv (see docs/operations.md#reproducible-installs)."""


def needed(root: str = "smsflows", extras: tuple[str, ...] = ("dev",)) -> dict[str, str]:
    found: dict[str, str] = {}
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ("", *wanted)):
                continue
            key = canonicalize_name(req.name)
            if key in found:
                continue
            try:
                dist = metadata.distribution(req.name)
            except metadata.PackageNotFoundError:
                continue  # an optional dependency for another platform
            found[key] = f"{dist.metadata['Name']}=={dist.version}"
            todo.append((req.name, tuple(req.extras)))
    return found


if __name__ == "__main__":
    print(HEADER)
    print("\n".join(line for _, line in sorted(needed().items())))
