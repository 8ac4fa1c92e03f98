"""A field's text (`fields.canonical`): the same bytes whichever encoder writes it, since
the state keeps the texts and compares them with new ones, across versions of the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.fields import _ENCODER, canonical, plan_fields, teams_fields

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"

# What a schema-valid plan or teams.yaml holds: texts (any, but lone surrogates, which a
# UTF-8 file cannot hold), booleans, null, lists and maps of them; and whole numbers, which
# the two encoders write alike too.
leaves = st.one_of(st.text(), st.booleans(), st.none(), st.integers())
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500)
@given(values)
def test_msgspec_writes_the_bytes_json_writes(value: Any) -> None:
    assert canonical(value) == _ENCODER.encode(value)


def test_keys_sort_by_code_point_across_planes() -> None:
    value = {"\uffff": 1, "\U0001f600": 2, "Z": 3, "a": 4, "\u00e9": 5, "": 6}
    assert canonical(value) == _ENCODER.encode(value)


def test_a_text_utf8_cannot_hold_is_written_as_json_writes_it() -> None:
    # A lone surrogate (a file name that is not UTF-8, decoded with surrogateescape).
    assert canonical(["caf\udce9"]) == _ENCODER.encode(["caf\udce9"]) == '["caf\udce9"]'


def test_the_schemas_of_the_files_split_into_fields_allow_no_number() -> None:
    # The one place the encoders differ is a float ('1e+16' and '1e16'), and NaN: a plan
    # or teams.yaml with a number in it must stay invalid, or canonical must change.
    for name in ("plan.schema.json", "teams.schema.json"):
        text = (SCHEMAS / name).read_text()
        assert '"number"' not in text, name
        assert '"integer"' not in text, name


def test_a_plan_and_a_teams_file_split_into_the_texts_json_would_write() -> None:
    plan = {
        "name": "2026-12-portal",
        "target": "quality-assurance",
        "state": "ready",
        "rollback": False,
        "notes": "Release é, 🚀\nline two",
        "applications": [{"name": "portal", "version": "0.7", "action": "deploy"}],
    }
    for key, text in plan_fields(plan).items():
        assert text == _ENCODER.encode(json.loads(text)), key
    teams = {"users": {"ravi": {"name": "Ravi", "emails": ["r@example.com"], "keys": []}}}
    for key, text in teams_fields(teams, "b" * 40).items():
        assert text == _ENCODER.encode(json.loads(text)), key
