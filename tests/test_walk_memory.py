"""A long walk's memory follows what is on main, not the history: what it keeps has a cap.

A full verify of 20,000 commits holds about what one of 2,500 holds (issue 22:
`python -m benchmarks.verify` measures the process's own peak). These tests
walk a generated history in small batches and count what the walker still
holds at the end: entries, never bytes, so they are hermetic and fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.history import HistorySettings, generate_history
from reconciler.adapters.gitobjects import NULL_OID
from reconciler.adapters.gitprocess import ReadAhead
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.readahead import FIELDS_MEMO, STRUCTURED, ParsedVersions
from reconciler.adapters.statestore import StateStore
from reconciler.adapters.treechecks import TreeChecks
from reconciler.app.authorise import Authoriser
from reconciler.core.fields import FieldMap
from reconciler.core.layout import place
from tests.clock import SUITE_NOW

BATCH = 16  # commits per batch of the walk
LIMIT = 12  # parsed versions per generation


def test_a_walk_keeps_one_batch_of_commits_the_newest_version_of_each_file_and_no_verdicts(
    tmp_path: Path,
) -> None:
    settings = HistorySettings(commits=300, users=12, plans=6, merges=0.2, seed=3)
    manifest = generate_history(settings, tmp_path / "history")
    with GitRepo(tmp_path / "history") as repo:
        tip = repo.resolve("main")
        versions: set[tuple[str, str, str]] = set()
        for entry in repo.history(tip, manifest.anchor):
            for change in entry.changes:
                placement = place(change.path)
                if placement.kind in STRUCTURED:
                    versions |= {
                        (placement.kind, placement.name or "", blob)
                        for blob in (change.old_blob, change.new_blob)
                        if blob != NULL_OID
                    }
        files = {(kind, name) for kind, name, _ in versions}
        store = StateStore(tmp_path / "state", "main")
        try:
            walker = Authoriser(repo, store, now=SUITE_NOW, batch=BATCH, workers=0)
            walker._versions._limit = LIMIT
            walker.keep_verdicts = False  # as a full `verify` walks: the store has them
            result = walker.run(tip)
            stored = store.landing_details(store.anchor_seq())
        finally:
            store.close()
    assert result.judged == ()
    assert len(stored) == manifest.landings
    # Far more versions than the walker may keep, so the bounds below mean something.
    bound = 2 * max(LIMIT, 2 * BATCH) + len(files)
    assert len(versions) > 3 * bound
    assert len(walker._versions) <= bound
    cache = walker.commits
    for held in (cache._infos, cache._checks, cache._carriers):
        assert len(held) <= BATCH
    # The facts of the batch, and of the commits an earlier batch brought that a merge landed.
    assert len(cache._facts) <= 2 * BATCH
    assert cache._unverified == {}  # no OpenPGP signature waits for a certificate


def test_the_newest_version_of_each_file_outlives_the_generations() -> None:
    parsed = ParsedVersions(limit=4)
    first: FieldMap = {"version": "1"}
    parsed.add({("plan", "web", "a" * 40): first})
    for number in range(100):
        parsed.add({("plan", f"other-{number}", f"{number:040x}"): {"version": str(number)}})
    assert parsed.get(("plan", "web", "a" * 40)) is first
    assert len(parsed) <= 2 * 4 + 101
    newer: FieldMap = {"version": "2"}
    parsed.add({("plan", "web", "b" * 40): newer})
    assert parsed.get(("plan", "web", "b" * 40)) is newer
    # Only the newest of a file outlives the generations: its next change starts from it.
    for number in range(10):
        parsed.add({("plan", f"more-{number}", f"{number:039x}f"): {}})
    assert parsed.get(("plan", "web", "a" * 40)) is None


def test_what_the_walk_holds_between_batches_is_capped_below_a_long_history() -> None:
    # Two generations of parsed versions: about 1.5 KiB each, so 6 MiB at most; the log
    # read ahead of the walk: 1 MiB, where a 20,000-commit log is 7 MiB.
    assert 2 * FIELDS_MEMO <= 4096
    assert ReadAhead.BLOCK * ReadAhead.BLOCKS <= 1 << 20


def whole_tree_reads(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many trees a full walk of the history at `path` reads whole (not as the edit
    of a tree it remembers)."""
    reads: list[str] = []
    read = GitRepo.tree_data

    def counted(repo: GitRepo, oid: str) -> bytes | None:
        reads.append(oid)
        return read(repo, oid)

    with monkeypatch.context() as patched, GitRepo(path) as repo:
        patched.setattr(GitRepo, "tree_data", counted)
        store = StateStore(tmp_path, "main")
        try:
            Authoriser(repo, store, now=SUITE_NOW, batch=BATCH, workers=0).run(repo.resolve("main"))
        finally:
            store.close()
    return len(reads)


def test_the_trees_a_walk_remembers_follow_main_and_cost_merges_no_whole_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each remembered tree is one of main's folders (plans/ as it grows): at most KEPT of
    # them, however long the history. Fewer, a merge's first parent's trees could be gone
    # by the time the merge is checked, and read whole again.
    settings = HistorySettings(commits=800, users=12, plans=40, merges=0.3, seed=5)
    generate_history(settings, tmp_path / "history")
    cap = TreeChecks.KEPT
    assert cap * 10 <= settings.commits  # far fewer than the history brings
    kept = whole_tree_reads(tmp_path / "history", tmp_path / "kept", monkeypatch)
    monkeypatch.setattr(TreeChecks, "KEPT", 100_000)  # every tree the history has
    assert whole_tree_reads(tmp_path / "history", tmp_path / "all", monkeypatch) == kept
