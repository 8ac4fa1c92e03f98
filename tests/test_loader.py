"""The safe loader: what it keeps, and what it refuses before anything else sees it."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reconciler.core.documents import MAX_FILE_BYTES, JsonPath, Position
from reconciler.core.errors import ConfigError
from reconciler.core.loader import MAX_DEPTH, dump, load


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
    data = load(b"a: 1.10\nb: TRUE\nc: 0x10\nd: ~\ne: '1.10'\nf: 1.0e+3\n", "f.yaml").data
    assert data == {"a": 1.1, "b": True, "c": 16, "d": None, "e": "1.10", "f": 1000.0}


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


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 999, 1_001, 40_000])
def test_nesting_is_refused_with_our_message_whatever_libyaml_refuses_first(depth: int) -> None:
    # libyaml's own limit (1,000 levels since 0.2.6, none before) must not change
    # the finding: ours names the node that first goes too deep.
    error = refusal("a: " + "[" * depth + "]" * depth + "\n")
    assert error.message == f"nesting deeper than {MAX_DEPTH} levels"
    assert (error.line, error.column) == (1, 4 + MAX_DEPTH - 1)


def test_a_syntax_error_libyaml_finds_is_still_reported_as_a_syntax_error() -> None:
    error = refusal("a: [1, 2\nb: 3\n")
    assert error.message.startswith("YAML syntax error")
    assert error.line is not None


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
    assert error.message.startswith("YAML syntax error: ")  # the rest is libyaml's words
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


def test_hidden_line_breaks_are_refused_at_their_position() -> None:
    for character, name in (("\x85", "NEL"), ("\u2028", "LINE SEPARATOR")):
        error = refusal(f"name: a\nnotes: b{character}c\n")
        assert (error.line, error.column) == (2, 9)
        assert (
            error.message == f"line break character U+{ord(character):04X} ({name}) is not allowed"
        )
    error = refusal("notes: 'a\u2029b'\n")
    assert error.message == "line break character U+2029 (PARAGRAPH SEPARATOR) is not allowed"


def test_a_repeated_plain_text_resolves_and_is_explained_the_same_every_time() -> None:
    # Plain scalars' values are remembered across files; the hint's text must not be.
    for _ in range(2):
        document = load(b"a: 1.10\nb: [1.10, '1.10']\nc: {1.10x: True}\n", "f.yaml")
        assert document.data == {"a": 1.1, "b": [1.1, "1.10"], "c": {"1.10x": True}}
        assert document.plain_text == {("a",): "1.10", ("b", 0): "1.10", ("c", "1.10x"): "True"}


def test_a_key_that_repeats_in_another_mapping_is_not_a_duplicate() -> None:
    document = load(b"- {name: a, version: '1'}\n- {name: b, version: '2'}\n", "f.yaml")
    assert document.key_position((1, "name")) == Position(2, 4)
    error = refusal("- {name: a}\n- {name: b, name: c}\n")
    assert (error.line, error.column) == (2, 13)
    assert error.message == "duplicate key 'name' (first defined at line 2)"


def test_an_explicit_tag_is_checked_against_its_type_as_a_key_and_as_a_value() -> None:
    assert load(b"!!str 1: !!int '2'\n", "f.yaml").data == {"1": 2}
    assert refusal("!!int 1: x\n").message == "key '1' is read as the number 1, not a string"
    error = refusal("a: !!int 0x_\n")
    assert (error.message, error.hint) == (
        "'0x_' is not a valid int",
        "remove the tag, or write a valid int",
    )


def test_a_plain_value_read_as_a_number_that_cannot_be_built_is_told_to_be_quoted() -> None:
    # Some plain texts pass PyYAML's int pattern but not its constructor.
    error = refusal("a: 0x_\n")
    assert (error.message, error.hint) == (
        "'0x_' is not a valid int",
        "quote it to keep it as text (unquoted, YAML reads it as an int)",
    )


def test_a_plain_integer_too_long_for_python_is_told_to_be_quoted_not_to_lose_a_tag() -> None:
    error = refusal("name: " + "9" * 5000 + "\n")
    assert (error.line, error.column) == (1, 7)
    assert (error.message, error.hint) == (
        f"'{'9' * 5000}' is not a valid int",
        "quote it to keep it as text (unquoted, YAML reads it as an int)",
    )


# Values JSON can hold, written out by PyYAML in every style (quoting, as `dump` does, what
# YAML 1.2 would read as another type, which `load` refuses), must load back as
# they were, with every value's and every key's position where libyaml's own
# composer puts it.
_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x85\u2028\u2029"),
    max_size=12,
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_TEXT.filter(lambda key: key != "<<"), children, max_size=4)
    ),
    max_leaves=25,
)


def _typed(value: Any) -> Any:
    """`value` with the type of every leaf, so that 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _node_positions(
    node: yaml.Node,
    path: JsonPath,
    values: dict[JsonPath, Position],
    keys: dict[JsonPath, Position],
) -> None:
    values[path] = Position(node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            keys[(*path, key_node.value)] = Position(
                key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
            _node_positions(value_node, (*path, key_node.value), values, keys)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_positions(item, (*path, index), values, keys)


@settings(max_examples=300, deadline=None)
@given(
    value=_JSON,
    flow=st.sampled_from([False, True, None]),
    allow_unicode=st.booleans(),
    width=st.sampled_from([20, 80]),
)
def test_what_our_dumper_writes_loads_back_with_libyamls_positions(
    value: Any, flow: bool | None, allow_unicode: bool, width: int
) -> None:
    assume(_depth(value) <= MAX_DEPTH)
    text = dump(value, default_flow_style=flow, allow_unicode=allow_unicode, width=width)
    document = load(text.encode("utf-8"), "f.yaml")
    assert _typed(document.data) == _typed(value)
    values: dict[JsonPath, Position] = {}
    keys: dict[JsonPath, Position] = {}
    root = yaml.compose(text, Loader=yaml.CSafeLoader)
    assert root is not None
    _node_positions(root, (), values, keys)
    assert {path: document.position(path) for path in values} == values
    assert {path: document.key_position(path) for path in keys} == keys
