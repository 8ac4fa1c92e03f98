"""Our schema verdict against check-jsonschema's, file by file.

`validate` judges each file with jsonschema-rs and explains a refusal with
python-jsonschema; check-jsonschema (python-jsonschema with ECMA-262 regular
expressions, through `regress`) is what a user would run on its own. On the
broken-input corpus of `test_validate_corpus.py`, and on every example file
with one string ending in a newline, both must accept and refuse the same
files. check-jsonschema is given each document as our loader read it (as
JSON), so the verdicts compare two readings of the schemas, not two YAML
parsers (ours reads YAML 1.1 and refuses what YAML 1.2, check-jsonschema's,
reads otherwise, such as `to: 16:00`: tests/test_loader_yaml_versions.py).
One check-jsonschema process per schema checks all files of its kind.

Allowed differences, each with its reason:
- a file our loader refuses is left out: the YAML rules (duplicate keys,
  tabs, aliases, size) are ours and come before any schema;
- a plan that lists an application twice is refused by us alone: the schema's
  `uniqueItems` compares whole entries, the name alone is our rule
  (`schema._beyond_schema`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.core import loader, schema
from reconciler.core.errors import ConfigError
from reconciler.core.layout import place
from reconciler.core.resources import SCHEMA_FILES, example_dir, schemas_dir
from tests.configrepo import copy_example
from tests.test_schemas import DEPLOYMENT, EXAMPLES, with_a_final_newline
from tests.test_validate_corpus import CASES

KINDS = ("teams", "environment", "plan", "deployment")
# Our findings that no schema states, so check-jsonschema cannot share them.
BEYOND_SCHEMA = ("is listed twice",)


def _configuration_files(root: Path) -> dict[str, bytes]:
    files = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and place(relative).kind in KINDS:
            files[relative] = path.read_bytes()
    return files


def _corpus(scratch: Path) -> dict[str, tuple[str, bytes]]:
    """Distinct files by content digest: (kind, bytes); the example's files, each corpus
    case's files, and each example file with one string ending in a newline."""
    found: dict[str, tuple[str, bytes]] = {}

    def add(path: str, raw: bytes) -> None:
        kind = place(path).kind
        assert kind is not None
        found.setdefault(hashlib.sha256(f"{kind}\0".encode() + raw).hexdigest(), (kind, raw))

    for case in CASES:
        root = copy_example(scratch / case.id)
        case.apply(root)
        for path, raw in _configuration_files(root).items():
            add(path, raw)
    documents = [
        (path, loader.load((example_dir() / path).read_bytes(), path).data) for path in EXAMPLES
    ]
    documents.append(("deployments/development.yaml", DEPLOYMENT))
    for path, data in documents:
        add(path, json.dumps(data).encode())
        for _, changed in with_a_final_newline(data):
            add(path, json.dumps(changed).encode())  # JSON is YAML; "\n" stays an escape
    return found


def _ours(kind: str, raw: bytes) -> tuple[bool, bool, str] | None:
    """(accepted, refused only for a rule beyond the schema, the document as JSON), or
    None: not loaded."""
    try:
        document = loader.load(raw, f"corpus.{kind}")
    except ConfigError:
        return None
    findings = schema.check(document, kind)
    beyond = bool(findings) and all(
        any(text in finding.message for text in BEYOND_SCHEMA) for finding in findings
    )
    return not findings, beyond, json.dumps(document.data)


def _check_jsonschema(kind: str, files: list[Path], cwd: Path) -> set[str]:
    """The files check-jsonschema refuses (schema errors or files it cannot parse)."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--schemafile",
            str(schemas_dir() / SCHEMA_FILES[kind]),
            "--output-format",
            "json",
            *(str(path.relative_to(cwd)) for path in files),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode in (0, 1), completed.stderr
    report = json.loads(completed.stdout)
    return {error["filename"] for error in report["errors"] + report["parse_errors"]}


@pytest.mark.slow
def test_our_schema_verdict_agrees_with_check_jsonschema_file_by_file(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "cases")
    folder = tmp_path / "corpus"
    ours: dict[str, tuple[bool, bool]] = {}
    files: dict[str, list[Path]] = {kind: [] for kind in KINDS}
    for digest, (kind, raw) in sorted(corpus.items()):
        verdict = _ours(kind, raw)
        if verdict is None:
            continue
        accepted, beyond, loaded = verdict
        path = folder / kind / f"{digest[:16]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(loaded)
        ours[path.relative_to(folder).as_posix()] = (accepted, beyond)
        files[kind].append(path)
    theirs = {name for kind in KINDS for name in _check_jsonschema(kind, files[kind], folder)}

    differences = [
        f"{name}: ours {'accepts' if accepted else 'refuses'}, check-jsonschema "
        f"{'refuses' if name in theirs else 'accepts'}\n{(folder / name).read_text()}"
        for name, (accepted, beyond) in sorted(ours.items())
        if accepted == (name in theirs) and not (beyond and name not in theirs)
    ]
    assert differences == []
    valid = sum(accepted for accepted, _ in ours.values())
    assert valid >= 10
    assert len(ours) - valid >= 100  # most of the corpus is refused, by both
    assert all(files.values())
