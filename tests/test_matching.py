"""Keyword normalisation and the keyword index."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.flows.matching import ANY_NUMBER, KeywordIndex, fold, rest_after_first_word, within_one_edit, words


def test_fold_removes_case_diacritics_and_edge_punctuation() -> None:
    assert fold("Głos!") == "GLOS"
    assert fold("«ŻÓŁĆ»") == "ZOLC"
    assert fold("...ąę...") == "AE"
    assert fold("A-1") == "A-1"


def test_words_split_on_spaces_and_separators() -> None:
    assert words("  Głos:  a! ") == ["GLOS", "A"]
    assert words("GŁOS, 2") == ["GLOS", "2"]
    assert words("!!!") == []


def test_rest_after_first_word_keeps_the_raw_text() -> None:
    assert rest_after_first_word("KOD  ab-12 3") == "ab-12 3"
    assert rest_after_first_word("KOD") == ""


@given(st.text(alphabet="ąćęłńóśźżĄĆĘŁŃÓŚŹŻabcXYZ019 .,!?:", max_size=40))
def test_folding_is_idempotent_and_ascii_for_polish_text(text: str) -> None:
    folded = words(text)
    assert words(" ".join(folded)) == folded
    assert all(w.isascii() for w in folded)


@given(st.text(alphabet="ABCDEFGHIJ", min_size=5, max_size=12), st.data())
def test_one_edit_is_recognised(word: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(word) - 1))
    assert within_one_edit(word, word[:i] + word[i + 1 :])  # deletion
    assert within_one_edit(word, word[:i] + "Z" + word[i + 1 :])  # substitution
    assert within_one_edit(word, word[:i] + "Z" + word[i:])  # insertion
    assert not within_one_edit(word, "ZZ" + word[2:] + "ZZ")


def test_index_prefers_exact_hits_and_falls_back_to_any_number() -> None:
    index: KeywordIndex[str] = KeywordIndex()
    index.add(["70120"], "GLOS", "vote", typo_tolerant=False)
    index.add([ANY_NUMBER], "INFO", "info", typo_tolerant=False)
    assert index.lookup("70120", "GLOS") == ["vote"]
    assert index.lookup("4112", "GLOS") == []
    assert index.lookup("4112", "INFO") == ["info"]


def test_typo_tolerance_only_for_flows_that_ask_for_it() -> None:
    index: KeywordIndex[str] = KeywordIndex()
    index.add(["70120"], "KONKURS", "contest", typo_tolerant=True)
    index.add(["70120"], "GLOSUJ", "vote", typo_tolerant=False)
    assert index.lookup("70120", "KONKRS") == ["contest"]
    assert index.lookup("70120", "KONKURSS") == ["contest"]
    assert index.lookup("70120", "KOKNURS") == ["contest"]  # transposition
    assert index.lookup("70120", "GLOSUK") == []
    assert index.lookup("70120", "KONK") == []
