"""The environment and deployment files' parsed YAML, kept by blob in the state
(`kept.parsed_documents`): what is kept reads back as the loader made it, or is not
kept; another code's or a garbled text is parsed again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.adapters.statestore import StateStore
from reconciler.app import kept
from reconciler.app.kept import identical, keep_parsed, parsed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore(tmp_path / "state", "main")
    yield opened
    opened.close()


def test_what_is_kept_reads_back_by_blob(store: StateStore) -> None:
    data = {"name": "qa", "order": 2, "gates": {"approvals": [{"role": "lead", "count": 1}]}}
    keep_parsed(store, "environments", {"b1": data})
    assert parsed(store, "environments", ["b1", "b2"]) == {"b1": data}
    assert parsed(store, "deployments", ["b1"]) == {}


def test_a_value_json_would_change_is_not_kept(store: StateStore) -> None:
    keep_parsed(
        store,
        "environments",
        {"numbered": {1: "a"}, "nan": {"x": float("nan")}, "plain": {"ok": 1.5}},
    )
    assert parsed(store, "environments", ["numbered", "nan", "plain"]) == {"plain": {"ok": 1.5}}


def test_another_codes_parse_or_a_garbled_one_is_not_read(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep_parsed(store, "environments", {"b1": {"name": "qa"}})
    monkeypatch.setattr(kept, "rules_digest", lambda: "another version")
    assert parsed(store, "environments", ["b1"]) == {}
    monkeypatch.undo()
    store.keep_answer("parsed environments", '{"key": 1}')
    assert parsed(store, "environments", ["b1"]) == {}


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [
        ({"a": [1, "x", None]}, {"a": [1, "x", None]}, True),
        ({"a": 1}, {"a": 1.0}, False),
        ({"a": 1}, {"a": True}, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, False),  # key order is the file's
        ([1, 2], [1, 2, 3], False),
        ({"1": "a"}, {1: "a"}, False),
    ],
)
def test_identical_means_equal_and_of_the_same_types(
    left: object, right: object, same: bool
) -> None:
    assert identical(left, right) is same
