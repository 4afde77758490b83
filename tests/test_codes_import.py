"""Importing contest codes: normalised, idempotent, bad lines reported; and the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.flows.codes_import import (
    CHUNK,
    CodeImportError,
    ImportReport,
    Progressed,
    import_codes,
    list_flow,
)
from app.flows.kinds.code import CodeFlow, CodeSpec
from tests.conftest import make_settings, write_flows

SMSFLOWS = [sys.executable, "-m", "app.cli"]
CONTEST = """
id = "summer"
kind = "code"
keywords = ["KOD"]

[code]
source = "list"
file = "FILE"
COLUMN
"""


def contest(file: str = "codes/summer.txt", column: str | None = None) -> str:
    return CONTEST.replace("FILE", file).replace("COLUMN", f'column = "{column}"' if column else "")


def list_of(column: str | None = None, file: str = "codes.txt") -> CodeFlow:
    return CodeFlow(id="summer", keywords=["KOD"], code=CodeSpec(source="list", file=file, column=column))


async def _import(
    database_url: str,
    flow: CodeFlow,
    path: Path,
    chunk_size: int = CHUNK,
    on_progress: Progressed | None = None,
) -> tuple[ImportReport, list[str]]:
    """Import into a migrated database; returns the report and the codes now stored."""
    engine = create_engine(make_settings(database_url))
    try:
        await upgrade(engine)
        report = await import_codes(engine, flow, path, on_progress, chunk_size)
        async with engine.connect() as conn:
            stored = (await conn.execute(text("SELECT code FROM codes ORDER BY code"))).scalars().all()
    finally:
        await engine.dispose()
    return report, list(stored)


def _file(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


MESSY = "ABC123\nabc-123\n  def 456 \n\nBAD$CODE\n" + "A" * 65 + "\r\nGHI789\nGHI789"


async def test_import_normalises_codes_and_reports_bad_lines_with_their_numbers(
    database_url: str, tmp_path: Path
) -> None:
    report, stored = await _import(database_url, list_of(), _file(tmp_path, "codes.txt", MESSY))
    assert stored == ["ABC123", "DEF456", "GHI789"]
    assert (report.read, report.new, report.bad_lines) == (5, 3, 2)
    assert [(b.line, b.text) for b in report.bad] == [(5, "BAD$CODE"), (6, "A" * 65)]
    assert report.bad[1].reason == "longer than 64 characters"
    assert "3 new, 2 already imported or repeated in the file" in report.summary()
    assert report.problems()[1] == "  line 5: 'BAD$CODE': a code has only letters A-Z and digits"


async def test_import_again_adds_only_the_new_codes(database_url: str, tmp_path: Path) -> None:
    first = _file(tmp_path, "a.txt", "\n".join(f"CODE{i:04d}" for i in range(10)))
    second = _file(tmp_path, "b.txt", "\n".join(f"CODE{i:04d}" for i in range(5, 17)))
    progress: list[tuple[int, int]] = []
    report, _ = await _import(database_url, list_of(), first, chunk_size=3)
    assert (report.read, report.new) == (10, 10)
    again, _ = await _import(database_url, list_of(), first, chunk_size=3)
    assert (again.read, again.new) == (10, 0)
    more, stored = await _import(
        database_url, list_of(), second, chunk_size=4, on_progress=lambda *p: progress.append(p)
    )
    assert (more.read, more.new) == (12, 7)
    assert len(stored) == 17
    assert progress[-1] == (second.stat().st_size, 12) and len(progress) == 3


async def test_csv_takes_the_named_column_with_any_separator_and_an_excel_bom(
    database_url: str, tmp_path: Path
) -> None:
    csv = "\ufeffnr;Kod;partia\r\n1;AB-12;lato\r\n2;ab12;lato\r\n3;;lato\r\n\r\n4;CD 34;zima\r\n"
    path = _file(tmp_path, "codes.csv", csv)
    report, stored = await _import(database_url, list_of(column="kod", file="codes.csv"), path)
    assert stored == ["AB12", "CD34"]
    assert [(b.line, b.text, b.reason) for b in report.bad] == [(4, "3;;lato", "no code in it")]


async def test_csv_without_a_column_takes_the_first_and_skips_the_header(
    database_url: str, tmp_path: Path
) -> None:
    path = _file(tmp_path, "codes.csv", 'code,prize\nXY1,mug\n"XY2",cap\n')
    report, stored = await _import(database_url, list_of(file="codes.csv"), path)
    assert stored == ["XY1", "XY2"] and report.bad_lines == 0


async def test_csv_without_the_named_column_is_a_clear_error(database_url: str, tmp_path: Path) -> None:
    path = _file(tmp_path, "codes.csv", "nr,code\n1,AB12\n")
    with pytest.raises(CodeImportError, match=r"no column 'kod' \(columns: nr, code\); set code.column"):
        await _import(database_url, list_of(column="kod", file="codes.csv"), path)


async def test_bytes_that_are_not_utf8_make_a_bad_line_not_a_crash(database_url: str, tmp_path: Path) -> None:
    path = _file(tmp_path, "codes.txt", b"AB12\nZA\xbfOLC\nCD34\n")
    report, stored = await _import(database_url, list_of(), path)
    assert stored == ["AB12", "CD34"] and [b.line for b in report.bad] == [2]


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SMSFLOWS, *args], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_codes_import_command_imports_the_flow_file_and_says_what_was_new(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", summer=contest())
    (flows / "codes").mkdir()
    (flows / "codes" / "summer.txt").write_text("AB12\nab-12\nCD34\nAB#12\n", encoding="utf-8")
    env = {"SMSFLOWS_DATABASE_URL": database_url, "SMSFLOWS_FLOWS_DIR": str(flows)}
    assert _run(["db", "upgrade"], env, tmp_path).returncode == 0
    first = _run(["codes", "import", "summer"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "summer: 3 code(s) read from" in first.stdout and "2 new, 1 already imported" in first.stdout
    assert "line 4: 'AB#12': a code has only letters A-Z and digits" in first.stderr
    extra = _file(tmp_path, "batch2.txt", "CD34\nEF56\n")
    second = _run(["codes", "import", "summer", str(extra)], env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "2 code(s) read" in second.stdout and "1 new" in second.stdout


@pytest.mark.parametrize(
    ("flow", "args", "expected"),
    [
        (contest(), ["codes", "import", "winter"], "no flow 'winter' in"),
        (
            contest().replace(
                'source = "list"\nfile = "codes/summer.txt"', 'source = "pattern"\npattern = "X"'
            ),
            ["codes", "import", "summer"],
            "flow 'summer' checks codes by its pattern",
        ),
        (contest(), ["codes", "import", "summer", "nowhere.txt"], "nowhere.txt: no such file"),
    ],
)
def test_codes_import_command_explains_what_it_cannot_do(
    tmp_path: Path, flow: str, args: list[str], expected: str
) -> None:
    flows = write_flows(tmp_path / "flows", summer=flow)
    (flows / "codes").mkdir()
    (flows / "codes" / "summer.txt").write_text("AB12\n", encoding="utf-8")
    env = {
        "SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        "SMSFLOWS_FLOWS_DIR": str(flows),
    }
    result = _run(args, env, tmp_path)
    assert result.returncode != 0
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_list_flow_finds_the_codes_file_next_to_the_flow_file(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", summer=contest("../shared/summer.txt"))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "summer.txt").write_text("AB12\n", encoding="utf-8")
    flow, codes_file = list_flow(flows, "summer")
    assert flow.id == "summer" and codes_file.resolve() == (tmp_path / "shared" / "summer.txt").resolve()
