"""GSM-7 / UCS-2 measurement, part counting, Mobitex types and Polish transliteration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import SmsflowsError
from app.mobitex.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MessageTooLong,
    check_fits,
    is_gsm7,
    measure,
    transliterate,
)

POLISH = "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ"
GSM_ACCENTED = "éèùìòÇØøÅåÄÖÑÜäöñüàÉÆæß"
EMOJI = "😀"


def test_tables_have_the_gsm_03_38_sizes() -> None:
    assert len(GSM7_BASIC) == 127
    assert set("^{}\\[~]|€\f") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION


def test_polish_text_is_ucs2_and_transliterates_to_gsm7() -> None:
    text = "Zażółć gęślą jaźń"
    assert measure(text).encoding == "ucs2"
    plain = transliterate(text)
    assert plain == "Zazolc gesla jazn"
    assert measure(plain).encoding == "gsm7"
    assert transliterate(POLISH) == "acelnoszzACELNOSZZ"


def test_typographic_characters_transliterate_to_gsm7() -> None:
    assert transliterate("„Tak” – “no” — ‘a’ ’b…\u00a0c") == '"Tak" - "no" - \'a\' \'b... c'


def test_gsm_accented_letters_are_kept_by_transliteration() -> None:
    assert transliterate(GSM_ACCENTED) == GSM_ACCENTED
    assert measure(GSM_ACCENTED).encoding == "gsm7"


def test_characters_outside_gsm7_are_left_for_ucs2() -> None:
    assert transliterate(f"ą {EMOJI} ç") == f"a {EMOJI} ç"
    assert measure(transliterate(f"ą {EMOJI}")).encoding == "ucs2"


def test_160_gsm_characters_are_one_sms_and_161_are_two_parts() -> None:
    assert measure("a" * 160) == measure("b" * 160)
    single, double = measure("a" * 160), measure("a" * 161)
    assert (single.length, single.parts, single.per_part, single.mobitex_type) == (160, 1, 160, "sms")
    assert (double.length, double.parts, double.per_part, double.mobitex_type) == (161, 2, 153, "concat")


def test_459_gsm_characters_are_three_parts_and_460_do_not_fit() -> None:
    assert measure("a" * 306).parts == 2
    assert measure("a" * 307).parts == 3
    full, over = measure("a" * 459), measure("a" * 460)
    assert (full.parts, full.fits, full.mobitex_type) == (3, True, "concat")
    assert (over.parts, over.fits, over.mobitex_type) == (4, False, "concat")


def test_extension_characters_count_two_septets() -> None:
    assert measure("€").length == 2
    assert measure("a[b]").length == 6
    assert measure("{" * 80).parts == 1
    assert measure("{" * 80 + "a").parts == 2


def test_extension_character_at_a_part_boundary_moves_to_the_next_part() -> None:
    text = "a" * 152 + "€" + "a" * 152  # 306 septets: ceil(306/153) = 2, but € cannot straddle
    measured = measure(text)
    assert measured.length == 306
    assert measured.parts == 3
    straddling = measure("a" * 152 + "€" + "a" * 305)  # 459 septets, yet 4 parts
    assert (straddling.length, straddling.parts, straddling.fits) == (459, 4, False)


def test_70_ucs2_units_are_one_part_and_71_are_two() -> None:
    single, double = measure("ą" * 70), measure("ą" * 71)
    assert (single.encoding, single.length, single.parts, single.per_part) == ("ucs2", 70, 1, 70)
    assert single.mobitex_type == "unicode"
    assert (double.length, double.parts, double.per_part) == (71, 2, 67)
    assert double.mobitex_type == "unicode_concat"


def test_201_ucs2_units_are_three_parts_and_202_do_not_fit() -> None:
    assert measure("ą" * 134).parts == 2
    assert measure("ą" * 135).parts == 3
    full, over = measure("ą" * 201), measure("ą" * 202)
    assert (full.parts, full.fits, full.mobitex_type) == (3, True, "unicode_concat")
    assert (over.parts, over.fits) == (4, False)


def test_emoji_counts_two_utf16_units() -> None:
    measured = measure(EMOJI)
    assert (measured.encoding, measured.length, measured.mobitex_type) == ("ucs2", 2, "unicode")
    assert measure(EMOJI * 35).parts == 1
    assert measure(EMOJI * 35 + "a").parts == 2


def test_surrogate_pair_is_never_split_across_parts() -> None:
    text = "ą" * 66 + EMOJI + "ą" * 66  # 134 units: ceil(134/67) = 2, but the pair cannot straddle
    measured = measure(text)
    assert (measured.length, measured.parts) == (134, 3)


def test_cr_and_lf_are_one_septet_each() -> None:
    assert measure("a\r\nb").length == 4
    assert measure("\n" * 160).parts == 1
    assert measure("\r\n" * 80 + "a").parts == 2
    assert measure("\f").length == 2  # form feed is in the extension table


def test_empty_text_is_one_gsm_sms() -> None:
    measured = measure("")
    assert (measured.encoding, measured.length, measured.parts, measured.mobitex_type) == (
        "gsm7",
        0,
        1,
        "sms",
    )


def test_check_fits_returns_the_measurement_when_it_fits() -> None:
    assert check_fits("a" * 459).parts == 3
    assert check_fits("a" * 160, max_parts=1).mobitex_type == "sms"


def test_check_fits_suggests_transliteration_for_polish_text() -> None:
    with pytest.raises(MessageTooLong) as caught:
        check_fits("ż" * 150, max_parts=2)
    error = caught.value
    assert isinstance(error, SmsflowsError)
    assert error.measured.parts == 3
    message = str(error)
    assert "150" in message
    assert "ucs2" in message
    assert "3 parts" in message
    assert "transliterate" in message
    assert "GSM-7" in message


def test_check_fits_names_the_characters_that_force_ucs2() -> None:
    with pytest.raises(MessageTooLong, match=EMOJI) as caught:
        check_fits(EMOJI * 101)
    assert "Polish" not in str(caught.value)


def test_check_fits_says_when_transliteration_would_not_be_enough() -> None:
    with pytest.raises(MessageTooLong, match="even with Polish letters transliterated"):
        check_fits("ż" * 500)


def test_check_fits_on_gsm7_text_only_asks_to_shorten() -> None:
    with pytest.raises(MessageTooLong) as caught:
        check_fits("a" * 161, max_parts=1)
    assert "transliterate" not in str(caught.value)
    assert "161" in str(caught.value)


def test_check_fits_never_exceeds_the_mobitex_ceiling() -> None:
    with pytest.raises(MessageTooLong):
        check_fits("a" * 460, max_parts=10)


# Letters, digits and basic-table punctuation: each is one septet and one UTF-16 unit.
_PLAIN = st.sampled_from(sorted(GSM7_BASIC - set(GSM_ACCENTED)))
_POLISH_OR_PLAIN = st.text(alphabet=st.one_of(_PLAIN, st.sampled_from(POLISH)), max_size=500)
_MIXED = st.text(
    alphabet=st.one_of(
        st.sampled_from(sorted(GSM7_BASIC)),
        st.sampled_from(sorted(GSM7_EXTENSION)),
        st.sampled_from(POLISH + "„”–…\u00a0"),
        st.sampled_from([EMOJI, "ç", "中"]),
        st.characters(),
    ),
    max_size=500,
)


@given(_POLISH_OR_PLAIN)
def test_transliterating_polish_text_never_makes_it_longer(text: str) -> None:
    before, after = measure(text), measure(transliterate(text))
    assert after.encoding == "gsm7"
    assert after.length <= before.length
    assert after.parts <= before.parts


@given(_MIXED, st.one_of(st.sampled_from(["€", "ą", EMOJI, "a", "\n"]), st.characters()))
def test_appending_a_character_never_reduces_the_parts(text: str, extra: str) -> None:
    assert measure(text + extra).parts >= measure(text).parts


@given(_MIXED)
def test_transliterate_is_idempotent(text: str) -> None:
    once = transliterate(text)
    assert transliterate(once) == once


@given(_MIXED)
def test_measurement_is_consistent(text: str) -> None:
    measured = measure(text)
    assert measured.encoding == ("gsm7" if is_gsm7(text) else "ucs2")
    if measured.encoding == "ucs2":
        assert measured.length == len(text.encode("utf-16-le", "surrogatepass")) // 2
    assert (measured.parts == 1) == (measured.length <= measured.per_part)
    assert measured.length <= measured.parts * measured.per_part
    assert measured.fits == (measured.parts <= 3)


def test_shorten_to_parts_cuts_with_an_ellipsis_to_fit() -> None:
    from app.mobitex.encoding import shorten_to_parts

    assert shorten_to_parts("krótko", 1) == "krótko"
    long_gsm = "a" * 400
    cut = shorten_to_parts(long_gsm, 1)
    assert cut.endswith("...") and measure(cut).parts == 1 and len(cut) == 160
    polish = "ż" * 300
    cut = shorten_to_parts(polish, 2)
    assert cut.endswith("…") and measure(cut).parts == 2
    assert shorten_to_parts("b" * 1000, 3).endswith("...") and measure(shorten_to_parts("b" * 1000, 3)).fits
