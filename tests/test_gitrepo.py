"""The Git adapter's batched reads: many objects through long-lived cat-file processes,
the history read ahead of its reader. Real repositories, real `git`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reconciler.adapters import gitrepo
from reconciler.adapters.gitrepo import GitRepo
from reconciler.core.errors import GitError
from tests.people import People
from tests.repositories import ConfigRepo

MISSING = "0123456789abcdef0123456789abcdef01234567"


def repo_with_plans(tmp_path: Path, people: People, versions: int) -> ConfigRepo:
    repo = ConfigRepo.init(tmp_path, people)
    for version in range(versions):
        repo.commit(people.alice, {"plans/p.yaml": f"version: {version}\n"}, signed=False)
    return repo


def blob_ids(repo: ConfigRepo) -> list[str]:
    log = repo.git("log", "--format=", "--raw", "--no-abbrev", "main")
    return [line.split()[3] for line in log.splitlines() if line.startswith(":")]


def test_many_objects_are_answered_in_order_with_the_missing_ones_left_out(
    tmp_path: Path, people: People
) -> None:
    repo = repo_with_plans(tmp_path, people, 3)
    blobs = blob_ids(repo)
    # Far more requests than fit in one slice of the pipe, a missing one in the middle.
    requests = blobs * 400 + [MISSING] + blobs * 400
    with GitRepo(repo.path) as git_repo:
        contents, sizes = git_repo.blobs(requests, limit=1 << 20)
        commits = repo.git("rev-list", "main").split()
        infos = git_repo.commits(commits * 400 + [MISSING] + commits * 400)
    assert contents == {blob: repo.git("cat-file", "blob", blob).encode() + b"\n" for blob in blobs}
    assert sizes == {blob: len(contents[blob]) for blob in blobs}
    assert sorted(infos) == sorted(commits)
    assert all(
        infos[commit].parents == tuple(repo.git("rev-parse", f"{commit}^@").split())
        for commit in commits
    )


def test_blobs_larger_than_the_limit_are_sized_but_never_read(
    tmp_path: Path, people: People
) -> None:
    repo = ConfigRepo.init(tmp_path, people)
    repo.commit(people.alice, {"plans/big.yaml": "x" * 5000 + "\n"}, signed=False)
    [big] = blob_ids(repo)
    with GitRepo(repo.path) as git_repo:
        contents, sizes = git_repo.blobs([big] * 30, limit=4096)
    assert (contents, sizes) == ({}, {big: 5001})


def test_asking_for_nothing_starts_no_git(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = repo_with_plans(tmp_path, people, 1)
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    with GitRepo(repo.path) as opened:
        trace.unlink()  # what opening it ran
        assert opened.blobs([], 1_000) == ({}, {})
        assert opened.commits([]) == {}
        assert opened.blobs_at([]) == {}
    assert not trace.exists()


def test_paths_are_looked_up_in_many_commits_at_once(tmp_path: Path, people: People) -> None:
    repo = repo_with_plans(tmp_path, people, 30)
    commits = repo.git("rev-list", "--reverse", "main").split()
    places = [(commit, "plans/p.yaml") for commit in commits]
    places += [(commits[0], "plans/absent.yaml"), (commits[0], "plans"), (commits[0], "a\nb")]
    with GitRepo(repo.path) as git_repo:
        found = git_repo.blobs_at(places)
    for commit in commits:
        assert found[(commit, "plans/p.yaml")] == repo.git("rev-parse", f"{commit}:plans/p.yaml")
    assert found[(commits[0], "plans/absent.yaml")] is None
    assert found[(commits[0], "plans")] is None  # a tree, not a blob
    assert found[(commits[0], "a\nb")] is None


def test_history_stopped_early_stops_git_and_leaves_the_repository_usable(
    tmp_path: Path, people: People
) -> None:
    repo = repo_with_plans(tmp_path, people, 40)
    tip = repo.head()
    with GitRepo(repo.path) as git_repo:
        history = git_repo.history(tip, None)
        first = next(history)
        history.close()
        assert first.changes[0].path == "plans/p.yaml"
        assert len(list(git_repo.history(tip, None))) == 40


def test_history_of_paths_with_non_ascii_characters_is_read_whole(
    tmp_path: Path, people: People
) -> None:
    repo = ConfigRepo.init(tmp_path, people)
    # About 500 KiB of log: some 'é' straddles the read-ahead's 64 KiB blocks.
    names = [f"docs/{index:04}-{'é' * 100}.md" for index in range(1500)]
    (repo.path / "docs").mkdir()
    for name in names:
        (repo.path / name).write_text("x\n")
    repo.git("add", "docs")
    repo.commit(people.alice, None, signed=False)
    with GitRepo(repo.path) as git_repo:
        [entry] = list(git_repo.history(repo.head(), None))
    assert sorted(change.path for change in entry.changes) == names


def processes() -> list[tuple[int, int, list[bytes]]]:
    """(pid, parent pid, argv) of every process, from /proc (skipping ones that just ended)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
            found.append((int(stat.parent.name), parent, argv))
    return found


def processes_mentioning(text: str) -> list[int]:
    return [pid for pid, _, argv in processes() if any(text.encode() in arg for arg in argv)]


def our_cat_files() -> list[int]:
    """This process's `git cat-file --batch` children."""
    return [
        pid
        for pid, parent, argv in processes()
        if parent == os.getpid() and argv[0] == b"git" and argv[-3:-1] == [b"cat-file", b"--batch"]
    ]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_cat_file_process_that_died_is_started_again(tmp_path: Path, people: People) -> None:
    repo = repo_with_plans(tmp_path, people, 30)
    blobs = blob_ids(repo)
    with GitRepo(repo.path) as git_repo:
        git_repo.blobs(blobs, limit=1 << 20)
        [process] = our_cat_files()
        os.kill(process, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process, 0)
        contents, _ = git_repo.blobs(blobs, limit=1 << 20)
        assert our_cat_files() not in ([], [process])
    assert set(contents) == set(blob_ids(repo))


def test_a_repository_is_opened_only_at_its_own_path(tmp_path: Path, people: People) -> None:
    repo = repo_with_plans(tmp_path, people, 1)
    for elsewhere in (repo.path / "plans", repo.path / ".git", tmp_path / "absent"):
        with pytest.raises(GitError, match="is not a Git repository"):
            GitRepo(elsewhere)
    with GitRepo(repo.path) as git_repo:
        assert git_repo.work_tree() == repo.path.resolve()
        assert not git_repo.bare


def test_a_bare_repository_opens_and_has_no_work_tree(tmp_path: Path, people: People) -> None:
    repo = repo_with_plans(tmp_path, people, 2)
    bare = tmp_path / "bare.git"
    repo.git("clone", "-q", "--bare", str(repo.path), str(bare))
    with GitRepo(bare) as git_repo:
        assert git_repo.bare
        assert git_repo.resolve("main") == repo.head()
        with pytest.raises(GitError, match="bare repository"):
            git_repo.work_tree()


def test_a_remote_that_stops_answering_is_given_up_on(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = repo_with_plans(tmp_path, people, 1)
    remote = tmp_path / "remote.git"
    repo.git("init", "-q", "--bare", str(remote))
    repo.git("remote", "add", "origin", str(remote))
    # The remote side of the fetch never answers (git appends the path as $1).
    repo.git("config", "remote.origin.uploadpack", "sh -c 'sleep 30' upload-pack")
    monkeypatch.setattr(gitrepo, "NETWORK_TIMEOUT", 1.0)
    started = time.monotonic()
    with GitRepo(repo.path) as git_repo, pytest.raises(GitError, match="did not finish within 1 s"):
        git_repo.fetch("origin", "main")
    assert time.monotonic() - started < 10
    # Nothing the fetch started is left behind: the whole process group was killed.
    assert processes_mentioning(str(remote)) == []


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="making a repository another user owns needs root (chown)",
)
def test_a_repository_owned_by_another_user_is_named_as_such_not_as_no_repository(
    tmp_path: Path,
) -> None:
    theirs = tmp_path / "theirs"
    subprocess.run(["git", "init", "-q", str(theirs)], check=True)
    for folder, _, files in os.walk(theirs):
        for name in [folder, *(os.path.join(folder, file) for file in files)]:
            os.chown(name, 65534, 65534)
    with pytest.raises(GitError) as raised:
        GitRepo(theirs)
    assert raised.value.message == f"git refuses to read {theirs}: it is owned by another user"
    assert (
        raised.value.hint == f"if you trust it: git config --global --add safe.directory {theirs}"
    )


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
def test_a_ref_moved_after_the_long_lived_reader_started_is_read_where_it_is_now(
    tmp_path: Path, people: People, packed: bool
) -> None:
    repo = repo_with_plans(tmp_path, people, 2)
    first, second = repo.git("rev-list", "--reverse", "main").split()
    repo.git("update-ref", "refs/remotes/origin/main", first)
    with GitRepo(repo.path) as git_repo:
        assert git_repo.ref_commit("refs/remotes/origin/main") == first
        if packed:
            repo.git("pack-refs", "--all")
        repo.git("update-ref", "refs/remotes/origin/main", second)
        assert git_repo.ref_commit("refs/remotes/origin/main") == second
        assert git_repo.ref_commit("refs/remotes/origin/main") == git_repo.resolve(
            "refs/remotes/origin/main"
        )


def test_a_ref_that_names_no_commit_is_an_unknown_revision(tmp_path: Path, people: People) -> None:
    repo = repo_with_plans(tmp_path, people, 1)
    with GitRepo(repo.path) as git_repo:
        with pytest.raises(GitError, match="unknown revision"):
            git_repo.ref_commit("refs/remotes/origin/nothing")
        tree = repo.git("rev-parse", "main^{tree}")
        repo.git("update-ref", "refs/tags/a-tree", tree)
        with pytest.raises(GitError, match="unknown revision"):
            git_repo.ref_commit("refs/tags/a-tree")
