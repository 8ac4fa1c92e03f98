"""Lines sorted on disk and files written with their digests (`adapters.spool`), and blobs
stored from a file (`GitRepo.write_blob_file`): how a checkpoint of a long history is
written without holding it."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.spool import MAX_RUNS, SortedSpool, write_lines
from tests.repositories import run_git

# Lines as the checkpoint writes them have no line break; anything else may be in one.
LINES = st.lists(st.text(st.characters(exclude_characters="\n", exclude_categories=["Cs"])))


@settings(max_examples=200, deadline=None)
@given(lines=LINES, held=st.integers(min_value=1, max_value=40))
def test_a_spool_gives_back_what_sorted_gives_however_small_what_it_holds(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], held: int
) -> None:
    folder = tmp_path_factory.mktemp("spool")
    spool = SortedSpool(folder, held)
    for line in lines:
        spool.add(line)
    assert list(spool.sorted()) == sorted(lines)


def test_a_spool_holds_at_most_its_limit_and_writes_the_rest_to_sorted_runs(
    tmp_path: Path,
) -> None:
    spool = SortedSpool(tmp_path, 100)
    for number in reversed(range(600)):
        spool.add(f"line {number:04}")
    runs = sorted(tmp_path.iterdir())
    assert len(runs) == 600 // 12  # 9 characters a line: a run of 12 reaches 100
    for run in runs:
        written = run.read_text().splitlines()
        assert written == sorted(written)
    assert list(spool.sorted()) == [f"line {number:04}" for number in range(600)]


def test_a_spool_merges_its_runs_into_one_before_it_holds_too_many_open(tmp_path: Path) -> None:
    chosen = random.Random(7)
    # A tab and a NUL sort before the line break the runs end their lines with.
    lines = ["".join(chosen.choices("ab\t\x00z", k=chosen.randint(0, 6))) for _ in range(5000)]
    spool = SortedSpool(tmp_path, 10)
    for line in lines:
        spool.add(line)
        assert len(list(tmp_path.iterdir())) <= MAX_RUNS
    assert list(spool.sorted()) == sorted(lines)


def test_written_lines_come_with_the_digests_of_their_bytes(tmp_path: Path) -> None:
    lines = [f"row {number}" for number in range(10_000)]
    written = write_lines(tmp_path / "rows", iter(lines))
    data = (tmp_path / "rows").read_bytes()
    assert data == "".join(f"{line}\n" for line in lines).encode("ascii")
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    assert written.sha512 == hashlib.sha512(data).digest()


def test_a_blob_stored_from_a_file_is_the_object_git_makes_of_it(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    run_git(tmp_path, "init", "-q", str(repository))
    content = b"".join(b"line %d\n" % number for number in range(300_000))  # past one chunk
    source = tmp_path / "content"
    source.write_bytes(content)
    with GitRepo(repository) as repo:
        stored = repo.write_blob_file(source)
        assert stored == repo.write_object("blob", content)  # already there: kept as it is
    assert stored == run_git(repository, "hash-object", str(source))
    assert run_git(repository, "cat-file", "-s", stored) == str(len(content))
    assert run_git(repository, "fsck", "--strict", "--no-dangling") == ""
    assert not list((repository / ".git" / "objects").glob("tmp_obj_*"))


def test_a_scratch_folder_is_inside_the_repository_and_gone_afterwards(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    run_git(tmp_path, "init", "-q", str(repository))
    with GitRepo(repository) as repo, repo.scratch() as folder:
        (folder / "run-0").write_text("x\n")
        assert folder.parent == repository / ".git"
    assert not folder.exists()
    assert run_git(repository, "status", "--porcelain") == ""


def test_an_object_is_never_written_through_a_link_planted_where_it_is_made(
    tmp_path: Path,
) -> None:
    """Whoever else writes to the repository's objects (another process, a process of the
    same number in another container) may have put anything at a name this process would
    choose: it makes a file of its own, and what a link there points at is left alone."""
    repository = tmp_path / "repository"
    run_git(tmp_path, "init", "-q", str(repository))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"not the repository's\n")
    elsewhere.chmod(0o644)
    objects = repository / ".git" / "objects"
    # The names the writer used to pick: this process's number and thread's.
    (objects / f"tmp_obj_{os.getpid()}_{threading.get_ident()}").symlink_to(elsewhere)
    source = tmp_path / "content"
    source.write_bytes(b"stored from a file\n")
    with GitRepo(repository) as repo:
        written = repo.write_object("blob", b"stored whole\n")
        streamed = repo.write_blob_file(source)
    assert elsewhere.read_bytes() == b"not the repository's\n"
    assert elsewhere.stat().st_mode & 0o777 == 0o644
    for stored in (written, streamed):
        assert not (objects / stored[:2] / stored[2:]).is_symlink()
    assert run_git(repository, "cat-file", "blob", written) == "stored whole"
    assert run_git(repository, "cat-file", "blob", streamed) == "stored from a file"


# A process that holds a scratch folder of the repository (argv[1]) with a file in it, says
# where, and then dies as told (argv[2]): killed, or once its input ends.
HOLDER: Final = """
import os, signal, sys
from pathlib import Path
from reconciler.adapters.gitrepo import GitRepo

with GitRepo(Path(sys.argv[1])) as repo, repo.scratch() as folder:
    (folder / "run-0").write_text("x\\n")
    print(folder, flush=True)
    if sys.argv[2] == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()
"""


def scratch_folders(repository: Path) -> list[str]:
    return sorted(
        entry.name for entry in (repository / ".git").iterdir() if "reconciler" in entry.name
    )


def test_a_scratch_folder_a_killed_writer_left_is_removed_by_the_next_one_made(
    tmp_path: Path,
) -> None:
    repository = tmp_path / "repository"
    run_git(tmp_path, "init", "-q", str(repository))
    killed = subprocess.run(
        [sys.executable, "-c", HOLDER, str(repository), "killed"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = Path(killed.stdout.strip())
    assert (left / "run-0").exists()
    with GitRepo(repository) as repo, repo.scratch() as folder:
        assert scratch_folders(repository) == [folder.name]
    assert scratch_folders(repository) == []


def test_a_scratch_folder_another_process_holds_is_left_to_it(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    run_git(tmp_path, "init", "-q", str(repository))
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(repository), "waiting"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        held = Path(holder.stdout.readline().strip())
        with GitRepo(repository) as repo, repo.scratch() as folder:
            assert scratch_folders(repository) == sorted([held.name, folder.name])
        assert (held / "run-0").read_text() == "x\n"
        holder.stdin.close()
        assert holder.wait() == 0
    assert scratch_folders(repository) == []


def test_a_link_named_as_a_scratch_folder_is_not_followed_when_left_ones_are_removed(
    tmp_path: Path,
) -> None:
    repository = tmp_path / "repository"
    run_git(tmp_path, "init", "-q", str(repository))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept").write_text("not the repository's\n")
    (repository / ".git" / "reconciler-planted").symlink_to(elsewhere)
    with GitRepo(repository) as repo, repo.scratch():
        pass
    assert (elsewhere / "kept").read_text() == "not the repository's\n"
