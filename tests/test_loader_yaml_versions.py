"""Editor and validator agree: a plain scalar YAML 1.1 and YAML 1.2 read apart is refused.

The reconciler reads YAML 1.1 (PyYAML); editors read YAML 1.2's core schema
(yaml-language-server, through eemeli/yaml). Where the two read one plain
scalar as different values or types (`yes`, `1_000`, `10:30`, `1e3`, `0o17`,
`010`), the author sees one thing and the reconciler would judge another, so
the loader refuses it, at its line and column.

Held against a real YAML 1.2 reader, ruamel.yaml, on generated plain scalars
(booleans in every YAML 1.1 spelling, numbers with `_`, 0o, 0x, 0b, sexagesimal,
exponents, .inf and .nan, nulls, dates, plain words): each one our loader
either refuses, or loads as the value ruamel.yaml reads (compared as JSON).

Allowed differences, each with its reason:
- timestamps (`2026-11-01`, `2026-11-01T10:30:00Z`): ruamel.yaml builds dates;
  our loader keeps the text, by design (JSON has no dates), and so does YAML
  1.2's core schema, which has no timestamps: the editor reads the same string.
- where ruamel.yaml's YAML 1.2 resolver goes beyond the core schema: it reads
  digits with underscores (`1_000`), binary (`0b101`) and a sign before
  0o/0x/0b (`-0o17`) as numbers, and a fraction with an unsigned exponent
  (`.5e3`) as a string. The core schema, the editor's reading, decides there:
  our loader refuses the scalar or keeps it as the string the editor reads.
"""

from __future__ import annotations

import datetime
import io
import json
import re
from typing import Any, Final

import pytest
import yaml
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.core.errors import ConfigError
from reconciler.core.loader import dump, load

_REFUSED: Final = object()
_UNREADABLE: Final = object()
_RUAMEL: Final = YAML(typ="safe", pure=True)  # YAML 1.2 unless a document says otherwise


def refusal(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(text.encode(), "environments/x.yaml")
    return caught.value


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "yes",
            '`yes` reads as true in YAML 1.1 but as the string "yes" in YAML 1.2 (your editor)',
            'quote it: "yes", or write true/false',
        ),
        (
            "Off",
            '`Off` reads as false in YAML 1.1 but as the string "Off" in YAML 1.2 (your editor)',
            'quote it: "Off", or write true/false',
        ),
        (
            "1e3",
            '`1e3` reads as the string "1e3" in YAML 1.1 but as the number 1000.0 in YAML 1.2 '
            "(your editor)",
            'quote it: "1e3", or write 1000.0',
        ),
        (
            "0o17",
            '`0o17` reads as the string "0o17" in YAML 1.1 but as the number 15 in YAML 1.2 '
            "(your editor)",
            'quote it: "0o17", or write 15',
        ),
        (
            "010",
            "`010` reads as the number 8 in YAML 1.1 but as the number 10 in YAML 1.2 "
            "(your editor)",
            'quote it: "010", or write 10',
        ),
        (
            "1_000",
            '`1_000` reads as the number 1000 in YAML 1.1 but as the string "1_000" in YAML 1.2 '
            "(your editor)",
            'quote it: "1_000", or write 1000',
        ),
        (
            "10:30",
            '`10:30` reads as the number 630 in YAML 1.1 but as the string "10:30" in YAML 1.2 '
            "(your editor)",
            'quote it: "10:30"',
        ),
    ],
)
def test_a_value_yaml_1_1_and_1_2_read_apart_is_refused_at_its_line_and_column(
    text: str, message: str, hint: str
) -> None:
    error = refusal(f"name: x\ngates:\n  signed_commits: {text}\n")
    assert (error.line, error.column, error.message, error.hint) == (3, 19, message, hint)


def test_a_key_yaml_1_1_and_1_2_read_apart_is_refused_and_told_to_be_quoted() -> None:
    error = refusal("teams:\n  2026_11:\n    members: {}\n")
    assert (error.line, error.column, error.message, error.hint) == (
        2,
        3,
        '`2026_11` reads as the number 202611 in YAML 1.1 but as the string "2026_11" '
        "in YAML 1.2 (your editor)",
        'quote it: "2026_11"',
    )


def test_values_both_versions_read_alike_load_as_before() -> None:
    text = "a: true\nb: 0x10\nc: 1.0e+3\nd: .inf\ne: ~\nf: 1.10\ng: 2026-11-01\nh: 00\n"
    assert load(text.encode(), "f.yaml").data == {
        "a": True,
        "b": 16,
        "c": 1000.0,
        "d": float("inf"),
        "e": None,
        "f": 1.1,
        "g": "2026-11-01",
        "h": 0,
    }


def test_a_text_read_apart_is_refused_every_time_never_remembered_as_a_value() -> None:
    # Plain scalars' values are remembered across files: a refused one must not be.
    for _ in range(2):
        assert refusal("a: yes\n").line == 1
        assert refusal("b: 1\nc: yes\n").line == 2


def test_what_the_reconciler_writes_reads_alike_in_yaml_1_1_and_1_2() -> None:
    # deployments/ and the policy `authorise` writes out hold versions and names that
    # YAML 1.1 reads as strings but YAML 1.2 as numbers: they are quoted.
    data = {"applications": {"1e3": {"version": "0o17", "run": "08"}}, "on": "1_000"}
    text = dump(data)
    assert load(text.encode(), "f.yaml").data == data
    assert _RUAMEL.load(io.StringIO(text)) == data


# -- held against ruamel.yaml ----------------------------------------------------------


def _joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


def _any_case(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: "".join(c.upper() if up else c for c, up in zip(word, upper, strict=True))
    )


_SIGN = st.sampled_from(["", "+", "-"])
_DIGITS = st.text("0123456789", min_size=1, max_size=5)
_GROUPED = st.lists(_DIGITS, min_size=1, max_size=3).map("_".join)
_EXPONENT = _joined(st.sampled_from("eE"), _SIGN, _DIGITS)
_YAML_1_1_BOOLEANS = (
    "y Y yes Yes YES n N no No NO true True TRUE false False FALSE on On ON off Off OFF"
)
_BOOLEANS = st.sampled_from(_YAML_1_1_BOOLEANS.split(" ")) | st.sampled_from(
    ["yes", "no", "true", "false", "on", "off"]
).flatmap(_any_case)
_INTEGERS = _joined(_SIGN, _DIGITS | _GROUPED) | _joined(
    _SIGN,
    st.sampled_from(["0", "0o", "0x", "0b", "0O", "0X"]),
    st.text("0123456789abcdefABCDEF_", min_size=1, max_size=6),
)
_FLOATS = _joined(
    _SIGN,
    st.just("") | _DIGITS | _GROUPED,
    st.just("."),
    st.just("") | _DIGITS | _GROUPED,
    st.just("") | _EXPONENT,
) | _joined(_SIGN, _DIGITS, _EXPONENT)
_SEXAGESIMAL = _joined(
    _SIGN,
    _DIGITS,
    st.lists(st.text("0123456789", min_size=1, max_size=2), min_size=1, max_size=3).map(
        lambda parts: "".join(":" + part for part in parts)
    ),
    st.just("") | _joined(st.just("."), _DIGITS),
)
_SPECIAL = _joined(_SIGN, st.just("."), st.sampled_from(["inf", "nan"]).flatmap(_any_case))
_NULLS = st.sampled_from(["~", "null", "Null", "NULL"]) | _any_case("null")
_DATES = st.builds(
    lambda year, month, day, rest: f"{year:04}-{month:02}-{day:02}{rest}",
    st.integers(1900, 2100),
    st.integers(1, 12),
    st.integers(1, 28),
    st.sampled_from(["", "T10:30:00Z", "t10:30:00.5+01:00", " 10:30:00", "T1:2:3"]),
)
_WORDS = st.from_regex(r"[a-z][a-z0-9.-]{0,10}", fullmatch=True) | st.sampled_from(
    ["1.4.0", "0.6-dev.41", "2026-11-qa-release.1", "8h", "1d12h", "v1.10"]
)
_PLAIN = st.one_of(_BOOLEANS, _INTEGERS, _FLOATS, _SEXAGESIMAL, _SPECIAL, _NULLS, _DATES, _WORDS)


def _is_plain(text: str) -> bool:
    """Whether `k: text` holds `text` as one plain scalar, as every reader parses it."""
    try:
        events = list(yaml.parse(f"k: {text}\n", Loader=yaml.CSafeLoader))
    except yaml.YAMLError:
        return False
    scalars = [event for event in events if isinstance(event, yaml.ScalarEvent)]
    return len(scalars) == 2 and not scalars[1].style and scalars[1].value == text


def _ours(text: str) -> Any:
    try:
        return load(f"k: {text}\n".encode(), "f.yaml").data["k"]
    except ConfigError:
        return _REFUSED


def _ruamel(text: str) -> Any:
    try:
        return _RUAMEL.load(f"k: {text}\n")["k"]
    except Exception:  # any failure: ruamel.yaml has no reading of it
        return _UNREADABLE


def _yaml_1_1(text: str) -> Any:
    try:
        return yaml.load(f"k: {text}\n", Loader=yaml.CSafeLoader)["k"]
    except yaml.YAMLError:
        return _UNREADABLE
    except ValueError:  # an int of more digits than Python converts
        return _UNREADABLE


def _json(value: Any) -> str:
    return json.dumps(value, default=str)  # PyYAML's own 1.1 reading builds dates


def _beyond_the_core_schema(text: str) -> bool:
    """Texts ruamel.yaml reads otherwise than YAML 1.2's core schema (see the docstring)."""
    return bool(
        ("_" in text and text[0] in "+-.0123456789")
        or re.fullmatch(r"[-+]?0b[0-9a-fA-F_]*", text)
        or re.fullmatch(r"[-+]0[xo][0-9a-fA-F_]*", text)
        or re.fullmatch(r"[-+]?\.[0-9]+[eE][0-9]+", text)
    )


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(text=_PLAIN)
@example(text="yes")
@example(text="off")
@example(text="1e3")
@example(text="0o17")
@example(text="10:30")
@example(text="1_000")
@example(text=".inf")
@example(text=".nan")
@example(text="~")
@example(text="2026-11-01")
@example(text="-0o17")
def test_a_plain_scalar_is_refused_or_loads_as_yaml_1_2_reads_it(text: str) -> None:
    assume(_is_plain(text))
    ours, theirs = _ours(text), _ruamel(text)
    if _beyond_the_core_schema(text):
        assert ours is _REFUSED or ours == text
    elif ours is _REFUSED:
        # Refused only where the two versions read it apart (or neither can read it).
        assert (
            theirs is _UNREADABLE
            or _yaml_1_1(text) is _UNREADABLE
            or (_json(_yaml_1_1(text)) != _json(theirs))
        )
    elif isinstance(theirs, datetime.date):
        assert ours == text
    else:
        assert theirs is not _UNREADABLE
        assert _json(ours) == _json(theirs)
