"""Property tests: no input makes `validate` crash, and the two schema validators never disagree.

(a) YAML-ish text, built from YAML's own tokens, odd characters and real
    fragments of the example's files, is written over `plans/x.yaml` and
    `teams.yaml` of a scratch configuration: `reconciler validate` exits 0 or
    1 with findings, never a traceback or an internal error.
(b) Structured documents, each a valid example with random wrong types,
    extra keys and missing keys, are judged alike by jsonschema-rs (the fast
    path) and python-jsonschema (which explains), and `schema.check` reports
    findings exactly when a document is invalid.
(c) The same documents, written over any file of the example, never make
    the cross-file checks raise (they trust only what passed the schema).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.core import resources, schema
from reconciler.core.documents import Document
from reconciler.core.model import Snapshot
from reconciler.core.validate import validate_snapshot
from tests.configrepo import copy_example

EXAMPLE = resources.example_dir()
TEAMS_TEXT = (EXAMPLE / "teams.yaml").read_text(encoding="utf-8")
ENVIRONMENT_FILES = sorted((EXAMPLE / "environments").glob("*.yaml"))
PLAN_FILES = sorted((EXAMPLE / "plans").glob("*.yaml"))
# The example plans renamed to fit plans/x.yaml, so that a lucky example is valid.
PLAN_TEXTS = [
    re.sub(r"^name: .*$", "name: x", path.read_text(encoding="utf-8"), count=1, flags=re.M)
    for path in PLAN_FILES
]
EXAMPLE_TEXTS = [TEAMS_TEXT, *(path.read_text(encoding="utf-8") for path in ENVIRONMENT_FILES)]
EXAMPLE_LINES = sorted(
    {line + "\n" for text in [*EXAMPLE_TEXTS, *PLAN_TEXTS] for line in text.splitlines()}
)

YAML_TOKENS = [
    "name", "target", "applications", "state", "users", "teams", "members", "keys",
    ":", ": ", "-", "- ", "? ", ",", "[", "]", "{", "}", "'", '"', "|", ">", "|-", ">+",
    "&a ", "*a", "&b [*b]", "!!str ", "!!int ", "!!python/object:os.system ", "!x ", "!<tag:x> ",
    "<<: ", "---\n", "...\n", "%YAML 1.1\n", "#", " # comment", "\n", "\n  ", "\n    ", "  ",
    "\t", "\r\n", "~", "null", "true", "on", "yes", "no", "0", "010", "0x1F", "1.10", "1e3",
    ".inf", ".nan", "12:30", "2026-11-22", "-1", "9" * 30, "\\", "%", "@", "`",
    "é", "∑", "😀", "\u200b", "\u202e", "\ufeff", "\x85", "\u2028", "\x00", "\x07", "\x1b",
    "ecommerce", "development", "quality-assurance", "tag-and-deploy", "../x", "$(x)",
]  # fmt: skip

PIECE = st.one_of(
    st.sampled_from(YAML_TOKENS),
    st.sampled_from(EXAMPLE_LINES),
    st.text(max_size=4),
)
YAMLISH = st.lists(PIECE, max_size=40).map("".join)


@st.composite
def spliced(draw: st.DrawFn, texts: list[str]) -> str:
    """A real example file with a few pieces inserted at random places: almost valid."""
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(PIECE) + text[at:]
    return text


def documents(own: list[str]) -> st.SearchStrategy[bytes]:
    """Bytes for one file: token soup, an example spliced, an example as it is, or raw bytes."""
    texts = st.one_of(
        YAMLISH,
        spliced(own),
        spliced([*own, *EXAMPLE_TEXTS, *PLAN_TEXTS]),
        st.sampled_from(own),
    )
    return st.one_of(texts.map(lambda text: text.encode("utf-8")), st.binary(max_size=64))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """One scratch configuration for every example; each example rewrites the same two files."""
    folder = Path(tempfile.mkdtemp(prefix="reconciler-fuzz-"))
    try:
        root = copy_example(folder / "config")
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        yield root
    finally:
        shutil.rmtree(folder)


@pytest.mark.slow
@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=documents(PLAN_TEXTS), teams=documents([TEAMS_TEXT]))
def test_validate_never_crashes_on_yaml_ish_input(scratch: Path, plan: bytes, teams: bytes) -> None:
    (scratch / "plans/x.yaml").write_bytes(plan)
    (scratch / "teams.yaml").write_bytes(teams)

    result = CliRunner().invoke(main, ["validate", "--repo", str(scratch)])

    # CliRunner swallows an escaping exception (exit code 1): only SystemExit is clean.
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    assert "internal error" not in result.output
    assert result.output.rstrip("\n").split("\n")[-1].startswith(("valid: ", "invalid: "))


# --- (b) the two validators and `schema.check` -----------------------------------------------

DEPLOYMENT = {
    "environment": "development",
    "applications": {
        "ecommerce": {
            "version": "1.4.0",
            "plan": "2026-11-dev-build",
            "run": "2026-11-dev-build.1",
            "deployed_at": "2026-11-02T10:00:00Z",
        }
    },
}
BASES: list[tuple[str, Any]] = [
    ("teams", yaml.safe_load(TEAMS_TEXT)),
    *(("environment", yaml.safe_load(path.read_text())) for path in ENVIRONMENT_FILES),
    *(("plan", yaml.safe_load(path.read_text())) for path in PLAN_FILES),
    ("deployment", DEPLOYMENT),
]
INTERESTING_STRINGS = [
    "", "x", "ecommerce", "../x", "A|b", "a b", "1.10", "tag-and-deploy", "deploy", "ready",
    "on", "tech-lead", "deployment", "09:00", "24:00", "8h", "2026-12-21T00:00:00Z",
    "2027-02-30T00:00:00Z", "Europe/Lisbon", "x" * 70, "command", "local",
]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from(INTERESTING_STRINGS)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(INTERESTING_STRINGS) | st.text(max_size=6), children, max_size=3
        )
    ),
    max_leaves=6,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


@st.composite
def mutated_document(draw: st.DrawFn) -> tuple[str, Any]:
    """A valid example document with one to three random edits: replace, delete or add a key."""
    kind, base = draw(st.sampled_from(BASES))
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(paths(document))))
        if not path:
            document = draw(JSON_VALUES) if draw(st.integers(0, 9)) == 0 else document
            continue
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        operation = draw(st.sampled_from(["replace", "delete", "add"]))
        if operation == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif operation == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.sampled_from(INTERESTING_STRINGS))] = draw(JSON_VALUES)
    return kind, document


def _rust_is_valid(kind: str, data: Any) -> bool:
    valid: bool = jsonschema_rs.validator_for(resources.schema(kind)).is_valid(data)
    return valid


@settings(max_examples=500, deadline=None)
@given(mutated_document())
def test_both_validators_agree_and_check_finds_exactly_the_invalid(case: tuple[str, Any]) -> None:
    kind, data = case
    python_valid = jsonschema.Draft202012Validator(resources.schema(kind)).is_valid(data)

    assert _rust_is_valid(kind, data) == python_valid
    findings = schema.check(Document(f"{kind}.yaml", data, {}, {}, {}), kind)
    assert bool(findings) == (not python_valid)


def test_every_example_document_is_valid_for_both_validators() -> None:
    for kind, data in BASES:
        assert jsonschema.Draft202012Validator(resources.schema(kind)).is_valid(data)
        assert _rust_is_valid(kind, data)


# --- (c) cross-file checks on schema-level mutations of every kind of file ------------------

EXAMPLE_SNAPSHOT = {
    path.relative_to(EXAMPLE).as_posix(): path.read_bytes()
    for path in [EXAMPLE / "teams.yaml", *ENVIRONMENT_FILES, *PLAN_FILES]
}
PATHS_OF_KIND = {
    "teams": ["teams.yaml"],
    "environment": [path.relative_to(EXAMPLE).as_posix() for path in ENVIRONMENT_FILES],
    "plan": [path.relative_to(EXAMPLE).as_posix() for path in PLAN_FILES],
    "deployment": ["deployments/development.yaml"],
}


@settings(max_examples=300, deadline=None)
@given(case=mutated_document(), data=st.data())
def test_cross_file_checks_never_raise_on_any_mutated_file(
    case: tuple[str, Any], data: st.DataObject
) -> None:
    kind, document = case
    path = data.draw(st.sampled_from(PATHS_OF_KIND[kind]))
    # JSON is YAML; NaN and infinities come back as strings, which is as broken as they are.
    files = {**EXAMPLE_SNAPSHOT, path: json.dumps(document).encode()}

    report = validate_snapshot(Snapshot(files))

    assert report.valid == (report.errors == 0)
    assert all(finding.line >= 1 and finding.column >= 1 for finding in report.findings)
