"""Adapter, git: how every git process starts, and the long-lived ones the reading keeps.

Each runs with the pinned environment and settings below; `gitrepo.GitRepo` is the
one user.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Final

from reconciler.adapters.gitobjects import GITLINK_MODE, is_full_oid
from reconciler.adapters.process import Reader
from reconciler.core.errors import GitError

# Every git process runs with these, so that nothing a pusher can add, nor a setting of
# the repository or the user, changes what an object id reads as or what the output
# parsed here holds. Replacement refs (refs/replace/, which anyone who may push can
# create) would give an id other content, and grafts (info/grafts) other parents; the
# environment variable turns off replacements whatever GIT_REPLACE_REF_BASE says.
_PINNED_ENVIRONMENT: Final = {"GIT_NO_REPLACE_OBJECTS": "1", "GIT_GRAFT_FILE": os.devnull}
# log.showSignature would write signature checks into the log stream parsed here,
# log.showRoot=false would hide a root commit's files, and diff.orderFile would reorder
# a commit's changes. (Submodule `ignore` settings, which .gitmodules may hold, only a
# command-line option overrides: see `GitRepo.history`.) Other settings (mailmap, quotePath,
# renames, prefixes, colours, encodings) change nothing the adapter reads: it asks for
# -z, full ids and raw objects, never names (tests/test_git_reading.py sets each).
_PINNED_CONFIG: Final = (
    "-c",
    "log.showSignature=false",
    "-c",
    "log.showRoot=true",
    "-c",
    f"diff.orderFile={os.devnull}",
    # GIT_GRAFT_FILE=/dev/null turns grafts off; without this, git's stderr (which an
    # error may show) carries a hint that grafts are deprecated.
    "-c",
    "advice.graftFileDeprecated=false",
)


def git_argv(*args: str) -> list[str]:
    """The argv of `git <args>` as every git process of the reconciler runs."""
    return ["git", *_PINNED_CONFIG, *args]


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every git process: the caller's, `extra`, and the pinned part."""
    return {**os.environ, **(extra or {}), **_PINNED_ENVIRONMENT}


class ReadAhead:
    """The blocks of a process's output, read by a thread as fast as the process writes.

    With a plain pipe, `git log` stops whenever 64 KiB wait unread, so it would
    idle while the walk judges; read ahead, it runs on the other core. The
    queue's bound keeps memory flat: 1 MiB, about 2,800 commits of a log, five
    batches of the walk ahead (git writes a log ten times as fast as the walk
    judges it, so a larger bound only held more of the history in memory).
    """

    BLOCK: Final = 1 << 16
    BLOCKS: Final = 16

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._blocks: queue.Queue[bytes] = queue.Queue(maxsize=self.BLOCKS)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="git-read-ahead", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while not self._stopped.is_set():
                block = self._stream.read(self.BLOCK)
                self._put(block)
                if not block:
                    return
        except (OSError, ValueError):
            self._put(b"")  # the stream was closed under us: end the reading side too

    def _put(self, block: bytes) -> None:
        while not self._stopped.is_set():
            with contextlib.suppress(queue.Full):
                self._blocks.put(block, timeout=0.05)
                return

    def __iter__(self) -> Iterator[bytes]:
        while block := self._blocks.get():
            yield block

    def stop(self) -> None:
        """Let the thread go (after the process ended or was killed) and wait for it."""
        self._stopped.set()
        self._thread.join()


class CatFile:
    """One long-lived `git cat-file --batch...` process, asked many objects at a time.

    It lives as long as the repository object, so its delta-base cache stays
    warm from one batch of a walk to the next (a new process per batch spent
    most of its time rebuilding deltas). Requests go out in slices small
    enough to sit in the pipe, and every answer of a slice is read before the
    next is written, so neither side can block the other.
    """

    SLICE_BYTES: Final = 16 * 1024

    def __init__(self, path: Path, option: str) -> None:
        self._path = path
        self._option = option
        self._reader: Reader | None = None
        self._lock = threading.Lock()

    def ask(self, requests: list[str]) -> list[tuple[list[bytes], bytes]]:
        """Each request's header fields and (for `--batch`) content, in order."""
        answers: list[tuple[list[bytes], bytes]] = []
        if not requests:  # no process started to be asked nothing (`plan` reads no blob)
            return answers
        with self._lock:
            stdin, stdout = self._started()
            start = 0
            while start < len(requests):
                end, size = start, 0
                while end < len(requests) and (end == start or size < self.SLICE_BYTES):
                    size += len(requests[end]) + 1
                    end += 1
                try:
                    stdin.write("".join(f"{request}\n" for request in requests[start:end]).encode())
                    stdin.flush()
                    for _ in range(start, end):
                        answers.append(self._answer(stdout))
                except (OSError, ValueError):
                    self.close()
                    raise GitError(f"git cat-file {self._option} stopped answering") from None
                start = end
        return answers

    def _answer(self, stdout: IO[bytes]) -> tuple[list[bytes], bytes]:
        line = stdout.readline()
        if not line:
            raise OSError("end of output")
        header = line.split()
        if self._option != "--batch" or len(header) != 3:
            return header, b""  # sizes and names, or "<name> missing"
        size = int(header[2])
        content = stdout.read(size + 1)[:size]  # each object ends with a newline
        return header, content

    def _started(self) -> tuple[IO[bytes], IO[bytes]]:
        if self._reader is not None and not self._reader.running:
            self.close()  # it died (killed, out of memory): start another
        if self._reader is None:
            self._reader = Reader(
                git_argv("cat-file", self._option),
                cwd=self._path,
                env=git_environment(),
                answers=True,
            )
        assert self._reader.stdin is not None
        return self._reader.stdin, self._reader.stdout

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None


class MakeTree:
    """One long-lived `git mktree -z --batch`: git sorts, writes and names each tree
    (checking that every entry's object exists and is of the kind its mode says)."""

    KINDS: Final = {"40000": "tree", GITLINK_MODE: "commit"}

    # How many trees it made it remembers the entries of (`made`): a record's root, logs/
    # and logs/<env>/, a few records back.
    REMEMBERED: Final = 8

    def __init__(self, path: Path) -> None:
        self._path = path
        self._reader: Reader | None = None
        self._lock = threading.Lock()
        self._made: dict[str, dict[str, tuple[str, str]]] = {}

    def made(self, oid: str) -> dict[str, tuple[str, str]] | None:
        """A copy of the entries of a tree it made lately, or None.

        The next record is built on the last one's trees: read back, logs/<env>/
        would be parsed and checked entry by entry, a run of every plan there.
        """
        with self._lock:
            entries = self._made.get(oid)
            return None if entries is None else dict(entries)

    def make(self, entries: Mapping[str, tuple[str, str]], *, remember: bool = True) -> str:
        """The id of the tree of `entries` (name -> (mode, id)), written to the repository;
        remembered for `made` unless no record will be built on it (a checkpoint's, whose
        sections follow the plans on main: eight of them were a service's to keep)."""
        listing = b"".join(
            f"{mode} {self.KINDS.get(mode, 'blob')} {oid}\t".encode()
            + name.encode("utf-8", "surrogateescape")
            + b"\0"
            for name, (mode, oid) in entries.items()
        )
        with self._lock:
            if self._reader is not None and not self._reader.running:
                self.close()
            if self._reader is None:
                self._reader = Reader(
                    git_argv("mktree", "-z", "--batch"),
                    cwd=self._path,
                    env=git_environment(),
                    answers=True,
                )
            assert self._reader.stdin is not None
            try:
                self._reader.stdin.write(listing + b"\0")  # an empty entry ends the tree
                self._reader.stdin.flush()
                answer = self._reader.stdout.readline().decode().strip()
            except (OSError, ValueError):
                answer = ""
            if not is_full_oid(answer) and len(answer) != 64:
                _, errors = self._reader.finish()
                self._reader = None
                raise GitError(f"git mktree failed: {errors.strip()}")
            if not remember:
                return answer
            self._made.pop(answer, None)
            self._made[answer] = dict(entries)
            while len(self._made) > self.REMEMBERED:
                del self._made[next(iter(self._made))]  # the oldest
            return answer

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
