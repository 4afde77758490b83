"""``flows check`` judges each reply by its longest form and lists every error of a file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from app.flows.check import check_dir
from tests.conftest import write_flows

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
LONG_LABEL = "Bartłomiej Wielkopolski i Zespół Pieśni i Tańca Ziemi Kaliskiej"
VOTE = f"""
id = "final"
kind = "vote"
numbers = ["70120"]
keywords = ["GLOS"]
max_parts = 1

[vote]
options = {{ A = ["ANNA"], B = ["BARTEK"] }}
labels = {{ A = "Anna", B = "{LONG_LABEL}" }}

[replies]
accepted = "Dziekujemy!"
repeat = "Twoj glos na {{{{ label }}}} juz mamy. Kolejny glos mozesz oddac w nastepnym odcinku programu."
"""


def test_a_reply_is_measured_with_every_label_and_the_longest_counts(tmp_path: Path) -> None:
    report = check_dir(write_flows(tmp_path, final=VOTE), NOW)
    repeat = next(r for r in report.flows[0].replies if r.name == "repeat")
    assert LONG_LABEL in repeat.sample  # with the first label, Anna, it fits in one part
    assert repeat.parts > repeat.max_parts == 1
    assert not repeat.ok
    assert any("replies.repeat" in e for e in report.errors), report.errors


BROKEN = """
id = "ankieta"
kind = "survey"
numbers = ["70120"]
keywords = ["ANKIETA"]
starts = 2026-06-01
typo_tolerance = "yes"

[survey]
timeout_minutes = 30

[[survey.steps]]
id = "ocena"
type = "number"
ask = "Jak oceniasz program?"

[[survey.steps]]
id = "uwagi"
type = "text"
ask = "Co poprawic?"
max_length = "duzo"

[replies]
done = "Dziekujemy!"
"""


def test_every_error_of_a_file_is_listed_with_the_values_that_would_do(tmp_path: Path) -> None:
    report = check_dir(write_flows(tmp_path, ankieta=BROKEN), NOW)
    where = f"{tmp_path / 'ankieta.toml'}: "
    assert [e.removeprefix(where).split(":")[0] for e in report.errors] == [
        "starts",
        "typo_tolerance",
        "survey.steps[0].type",
        "survey.steps[1].max_length",
    ], report.errors
    starts, _, step_type, _ = report.errors
    assert "e.g. 2026-12-01T20:00:00" in starts
    assert "'number' is not one of choice, email, integer, phone, text" in step_type
