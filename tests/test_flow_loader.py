"""Flow files: errors name the file and the field path; the set is checked as a whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import FlowFileError
from app.flows.loader import load_dir
from tests.conftest import write_flows

AUTOREPLY = """
id = "{id}"
kind = "autoreply"
numbers = ["70120"]
keywords = ["{kw}"]
{extra}
[replies]
reply = "{reply}"
"""


def autoreply(id: str = "info", kw: str = "INFO", reply: str = "Witaj!", extra: str = "") -> str:
    return AUTOREPLY.format(id=id, kw=kw, reply=reply, extra=extra)


def _error(tmp_path: Path, **files: str) -> str:
    with pytest.raises(FlowFileError) as err:
        load_dir(write_flows(tmp_path / "flows", **files))
    return str(err.value)


def test_missing_or_empty_folder_is_an_empty_set(tmp_path: Path) -> None:
    assert load_dir(tmp_path / "nothing").flows == {}
    assert load_dir(write_flows(tmp_path / "empty")).flows == {}


def test_good_flow_loads_with_a_stable_hash(tmp_path: Path) -> None:
    first = load_dir(write_flows(tmp_path / "a", info=autoreply()))
    again = load_dir(write_flows(tmp_path / "b", info="# a comment\n" + autoreply()))
    changed = load_dir(write_flows(tmp_path / "c", info=autoreply(reply="Cześć!")))
    assert first.flows["info"].hash == again.flows["info"].hash
    assert first.flows["info"].hash != changed.flows["info"].hash


def test_unknown_field_is_named_with_its_path(tmp_path: Path) -> None:
    message = _error(tmp_path, info=autoreply(extra="keyword = 'X'"))
    assert "info.toml" in message and "keyword" in message


def test_unknown_kind_lists_the_kinds(tmp_path: Path) -> None:
    message = _error(tmp_path, x='id = "x"\nkind = "votes"\n')
    assert "x.toml: kind: 'votes' is not a flow kind" in message and "vote" in message


def test_alias_used_by_two_options_is_reported_with_the_option_path(tmp_path: Path) -> None:
    vote = """
id = "v"
kind = "vote"
keywords = ["GLOS"]
[vote]
options = { A = ["ANNA", "1"], B = ["BARTEK", "1"] }
"""
    message = _error(tmp_path, vote=vote)
    assert "vote.toml: vote.options.B: alias '1' is already used by option A" in message


def test_keyword_conflict_on_one_number_in_overlapping_windows_is_an_error(tmp_path: Path) -> None:
    message = _error(tmp_path, a=autoreply(id="a"), b=autoreply(id="b"))
    assert "INFO on number 70120 is already claimed by" in message


def test_same_keyword_in_windows_that_do_not_overlap_is_fine(tmp_path: Path) -> None:
    early = autoreply(id="a", extra="ends = 2026-01-01T00:00:00+01:00")
    late = autoreply(id="b", extra="starts = 2026-01-01T00:00:00+01:00")
    assert set(load_dir(write_flows(tmp_path / "f", a=early, b=late)).flows) == {"a", "b"}


def test_all_numbers_flow_conflicts_with_a_number_flow(tmp_path: Path) -> None:
    anywhere = autoreply(id="b").replace('numbers = ["70120"]\n', "")
    assert "already claimed" in _error(tmp_path, a=autoreply(id="a"), b=anywhere)


def test_reply_over_the_part_limit_is_an_error_with_advice(tmp_path: Path) -> None:
    message = _error(tmp_path, info=autoreply(reply="Zażółć " * 30, extra="max_parts = 1"))
    assert "replies.reply" in message and "over max_parts = 1" in message and "transliterate" in message


def test_template_with_unknown_variable_is_an_error(tmp_path: Path) -> None:
    message = _error(tmp_path, info=autoreply(reply="Głos na {{ optoin }}"))
    assert "replies.reply" in message and "optoin" in message


def test_template_syntax_error_names_the_reply(tmp_path: Path) -> None:
    assert "replies.reply: template error" in _error(tmp_path, info=autoreply(reply="{{ oops"))


def test_window_ending_before_it_starts_is_an_error(tmp_path: Path) -> None:
    extra = "starts = 2026-01-02T00:00:00+01:00\nends = 2026-01-01T00:00:00+01:00"
    assert "ends: must be later than starts" in _error(tmp_path, info=autoreply(extra=extra))


def test_duplicate_flow_id_is_an_error(tmp_path: Path) -> None:
    assert "is already used by" in _error(tmp_path, a=autoreply(id="x", kw="A"), b=autoreply(id="x", kw="B"))


def test_window_without_offset_is_warsaw_time(tmp_path: Path) -> None:
    flows = load_dir(write_flows(tmp_path / "f", info=autoreply(extra="starts = 2026-07-01T20:00:00")))
    lo, _ = flows.flows["info"].definition.window()
    assert lo.isoformat() == "2026-07-01T18:00:00+00:00"
