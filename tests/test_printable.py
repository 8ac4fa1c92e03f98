"""`printable`: what it lets through unchanged and what it escapes, whichever way it
takes (printable ASCII answers without the regular expression)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.printable import _UNSAFE, _escape, printable


def escaped_by_the_pattern(text: str) -> str:
    return _UNSAFE.sub(_escape, text)


def test_every_ascii_character_reads_as_the_pattern_says() -> None:
    for code in range(128):
        character = chr(code)
        assert printable(f"a{character}b") == escaped_by_the_pattern(f"a{character}b"), code


def test_printable_ascii_comes_back_unchanged() -> None:
    text = "".join(chr(code) for code in range(0x20, 0x7F))
    assert printable(text) is text


def test_controls_line_breaks_and_bidi_are_escaped_and_tabs_are_not() -> None:
    assert printable("a\tb") == "a\tb"
    assert printable("x\x1b[31my\nz\r") == "x\\x1b[31my\\nz\\r"
    assert printable("evil\u202etxt.yaml") == "evil\\u202etxt.yaml"
    assert printable("caf\udce9") == "caf\\xe9"


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=())))
def test_any_text_escapes_as_the_pattern_alone_would(text: str) -> None:
    assert printable(text) == escaped_by_the_pattern(text)


@given(
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x3000, exclude_categories=()))
)
def test_any_text_with_surrogates_and_separators_escapes_as_the_pattern_alone_would(
    text: str,
) -> None:
    assert printable(text) == escaped_by_the_pattern(text)
