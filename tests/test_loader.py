"""The safe loader: what it keeps, and what it refuses before anything else sees it."""

from __future__ import annotations

import time

import pytest

from reconciler.errors import ConfigError
from reconciler.loader import MAX_DEPTH, MAX_FILE_BYTES, Position, load


def refusal(text: str | bytes) -> ConfigError:
    raw = text.encode() if isinstance(text, str) else text
    with pytest.raises(ConfigError) as caught:
        load(raw, "plans/x.yaml")
    return caught.value


def test_values_and_keys_keep_their_line_and_column() -> None:
    document = load(b"name: x\napplications:\n  - {name: a, version: '1'}\n", "plans/x.yaml")
    assert document.data == {"name": "x", "applications": [{"name": "a", "version": "1"}]}
    assert document.position(("applications", 0, "version")) == Position(3, 24)
    assert document.key_position(("applications", 0, "version")) == Position(3, 15)
    assert document.position(("applications",)) == Position(3, 3)


def test_position_of_a_missing_path_falls_back_to_the_nearest_ancestor() -> None:
    document = load(b"a:\n  b: 1\n", "f.yaml")
    assert document.position(("a", "c", "d")) == Position(2, 3)


def test_dates_stay_strings_because_json_has_no_dates() -> None:
    assert load(b"when: 2026-11-22\n", "f.yaml").data == {"when": "2026-11-22"}


def test_yaml_1_1_scalars_resolve_as_pyyaml_does() -> None:
    data = load(b"a: 1.10\nb: on\nc: 010\nd: ~\ne: '1.10'\n", "f.yaml").data
    assert data == {"a": 1.1, "b": True, "c": 8, "d": None, "e": "1.10"}


def test_duplicate_keys_are_refused_naming_both_lines() -> None:
    error = refusal("name: a\nstate: ready\nname: b\n")
    assert (error.line, error.column) == (3, 1)
    assert error.message == "duplicate key 'name' (first defined at line 1)"


def test_keys_that_are_not_strings_are_refused_before_they_can_collide() -> None:
    error = refusal("members:\n  1: x\n  true: y\n")
    assert (error.line, error.column) == (2, 3)
    assert error.message == "key '1' is read as the number 1, not a string"
    assert error.hint == "quote it: '1'"


def test_an_alias_bomb_is_refused_at_its_first_anchor_in_milliseconds() -> None:
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    started = time.perf_counter()
    error = refusal(bomb)
    assert time.perf_counter() - started < 1
    assert (error.line, error.message) == (1, "anchor '&a' is not allowed")


def test_a_self_referencing_alias_is_refused() -> None:
    assert refusal("a: &x [*x]\n").message == "anchor '&x' is not allowed"


def test_nesting_is_refused_on_the_event_stream_even_at_depths_that_crash_libyaml() -> None:
    error = refusal("a: " + "[" * 40_000 + "]" * 40_000 + "\n")
    assert error.message == f"nesting deeper than {MAX_DEPTH} levels"
    assert (error.line, error.column) == (1, 4 + MAX_DEPTH - 1)


def test_nesting_up_to_the_limit_loads() -> None:
    depth = MAX_DEPTH
    assert load(("[" * depth + "]" * depth).encode(), "f.yaml").data is not None


def test_files_over_the_size_limit_are_refused_without_parsing() -> None:
    error = refusal(b"a: 1\n" + b"#" * MAX_FILE_BYTES)
    assert error.message == f"file is larger than the limit of {MAX_FILE_BYTES:,} bytes"


def test_bytes_that_are_not_utf8_are_refused_at_their_position() -> None:
    error = refusal(b"name: ok\nnotes: caf\xe9\n")
    assert (error.line, error.column) == (2, 11)
    assert error.message == "not UTF-8: byte 0xe9 cannot be decoded"


def test_custom_tags_are_refused() -> None:
    error = refusal("a: !!python/object:os.system ls\n")
    assert error.message == "tag 'tag:yaml.org,2002:python/object:os.system' is not allowed"


def test_a_second_document_is_refused() -> None:
    error = refusal("a: 1\n---\nb: 2\n")
    assert (error.line, error.message) == (2, "more than one YAML document in this file")


def test_merge_keys_are_refused() -> None:
    assert refusal("a:\n  <<: {b: 1}\n").message == "merge keys ('<<') are not allowed"


def test_syntax_errors_name_line_column_and_a_hint() -> None:
    error = refusal("name: x\n\tstate: ready\n")
    assert (error.line, error.column) == (2, 1)
    assert error.message == "YAML syntax error: found a tab character that violates indentation"
    assert error.hint == "indent with spaces, never tabs"


def test_control_characters_are_refused() -> None:
    error = refusal("name: a\x07b\n")
    assert (error.line, error.column, error.message) == (
        1,
        8,
        "control character U+0007 is not allowed in YAML",
    )


def test_an_empty_file_loads_as_nothing() -> None:
    assert load(b"", "f.yaml").data is None
