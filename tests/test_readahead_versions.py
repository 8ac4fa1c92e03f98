"""What the walk's read-ahead remembers of a plan version: its fields per file and blob.

A plan's fields depend on more than its bytes: the schema of its kind, and the
name its file gives it (a plan named for another file is invalid). So the memo
of parsed versions (`readahead.ParsedVersions`) is keyed by kind, name and blob,
which for a file the layout reads is its path and blob, never by the blob
alone. A version that failed to parse is remembered as invalid like any other,
so no later batch reads it again.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.readahead import ParsedVersions, ReadAhead
from reconciler.adapters.statestore import StateStore
from reconciler.core.fields import INVALID, value
from tests.repositories import run_git

PLAN = b"""name: web
target: development
applications:
  - {name: ecommerce, version: "1.4.0"}
state: ready
"""


def _history_adding(root: Path, files: dict[str, bytes]) -> tuple[str, str]:
    """A repository whose second commit adds `files`; its first and second commits."""
    root.mkdir()
    run_git(root, "init", "-q", "-b", "main")
    person = ["-c", "user.name=Ann", "-c", "user.email=ann@example.com"]
    (root / "README.md").write_text("configuration\n")
    run_git(root, "add", ".")
    run_git(root, *person, "commit", "-q", "-m", "start")
    base = run_git(root, "rev-parse", "HEAD")
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    run_git(root, "add", ".")
    run_git(root, *person, "commit", "-q", "-m", "plans")
    return base, run_git(root, "rev-parse", "HEAD")


def _read_ahead(root: Path, state: Path, base: str, tip: str) -> ParsedVersions:
    """The versions a walk from `base` to `tip` parsed, read ahead in this process."""
    versions = ParsedVersions()
    store = StateStore(state, "main")
    try:
        with GitRepo(root) as repo:
            reader = ReadAhead(repo, store, versions, workers=0)
            for _ in reader.batches(repo.history(tip, base)):
                pass
    finally:
        store.close()
    return versions


def test_the_same_blob_under_two_plan_files_is_parsed_for_each(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    base, tip = _history_adding(root, {"plans/web.yaml": PLAN, "plans/api.yaml": PLAN})
    blob = run_git(root, "rev-parse", f"{tip}:plans/web.yaml")
    assert run_git(root, "rev-parse", f"{tip}:plans/api.yaml") == blob
    versions = _read_ahead(root, tmp_path / "state", base, tip)
    web = versions.get(("plan", "web", blob))
    api = versions.get(("plan", "api", blob))
    assert web is not None
    assert INVALID not in web
    assert value(web, "target") == "development"
    assert api is not None
    assert "does not match the file name" in str(value(api, INVALID))


def test_a_version_that_failed_to_parse_is_remembered_as_invalid(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    broken = b"name: web\ntarget: [development\n"
    base, tip = _history_adding(root, {"plans/web.yaml": broken})
    blob = run_git(root, "rev-parse", f"{tip}:plans/web.yaml")
    versions = _read_ahead(root, tmp_path / "state", base, tip)
    fields = versions.get(("plan", "web", blob))
    assert fields is not None
    assert list(fields) == [INVALID]
