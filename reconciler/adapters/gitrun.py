"""Adapter, git: one repository's git, run: the processes a `GitRepo` keeps and how it
runs git's commands in it.

The base of `gitrepo.GitRepo` (reading) and `gitwriting.GitWriting` (writing):
where the repository is, the long-lived `cat-file` and `mktree` processes, one
command run to its output or a `_Failed`, and the object reads both halves share.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from reconciler.adapters.gitprocess import CatFile, MakeTree, git_argv, git_environment
from reconciler.adapters.gittrees import tree_entries
from reconciler.adapters.process import capture
from reconciler.core.errors import GitError, NotARepositoryError, TimedOut

# Fetch, push and ls-remote talk to another machine: a remote that stops
# answering must not hold a reconciler forever (it retries on its next pass).
NETWORK_TIMEOUT: Final = 300.0


class _Failed(GitError):
    """A git command exited non-zero: its status and output, for the caller to explain."""

    def __init__(self, command: str, status: int, stdout: bytes, stderr: str) -> None:
        super().__init__(f"git {command} failed: {stderr.strip()}")
        self.status = status
        self.stdout = stdout
        self.stderr = stderr


class GitRunner:
    """A repository's location and long-lived git processes, and git run in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        where = _locate(path)
        if where is None:
            raise NotARepositoryError(
                f"{path} is not a Git repository",
                hint="pass --repo with the configuration repository's path",
            )
        self._object_format, self.git_dir, self._common_dir, self._work_tree = where
        self.bare = self._work_tree is None
        self._objects = self._common_dir / "objects"
        self._objects_batch = CatFile(path, "--batch")
        self._names_batch = CatFile(path, "--batch-check=%(objectname) %(objecttype)")
        self._sizes_batch = CatFile(path, "--batch-check")
        self._make_tree = MakeTree(path)

    def close(self) -> None:
        """Stop the long-lived cat-file processes (long-running watchers call this)."""
        for batch in (self._objects_batch, self._names_batch, self._sizes_batch):
            batch.close()
        self._make_tree.close()

    def _run(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """`git <args>` in this repository: its output, or `_Failed`."""
        try:
            result = capture(
                git_argv(*args),
                cwd=self.path,
                env=git_environment(env),
                stdin=stdin,
                timeout=timeout,
            )
        except TimedOut as error:
            raise GitError(
                error.message, hint="check the remote's URL, the network and your credentials"
            ) from None
        if result.returncode != 0:
            raise _Failed(args[0], result.returncode, result.stdout, result.stderr)
        return result.stdout

    def _text(self, *args: str) -> str:
        """`git <args>`'s output as text, without its final newline."""
        return self._run(*args).decode("utf-8", "surrogateescape").removesuffix("\n")

    def resolve(self, rev: str) -> str:
        """The full commit id `rev` names; GitError when it names none."""
        try:
            return self._text("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
        except GitError:
            raise unknown_revision(rev) from None

    def head_branch(self) -> str | None:
        """The branch HEAD points at (also in a bare repository), or None when detached."""
        try:
            return self._text("symbolic-ref", "-q", "--short", "HEAD") or None
        except GitError:
            return None

    def _batch(self, oids: list[str]) -> Iterator[tuple[str, bytes, bytes]]:
        """(oid, type, content) of each object, through the long-lived `cat-file --batch`."""
        for oid, (header, content) in zip(oids, self._objects_batch.ask(oids), strict=True):
            if len(header) == 3:  # else "<oid> missing"
                yield oid, header[1], content

    def _object(self, oid: str) -> tuple[bytes, bytes]:
        """(type, content) through the long-lived `cat-file --batch` process."""
        [(header, content)] = self._objects_batch.ask([oid])
        if len(header) != 3:
            raise GitError(f"object {oid} is missing from the repository")
        return header[1], content

    def tree_data(self, oid: str) -> bytes | None:
        """A tree object's content; None when `oid` names no tree."""
        for _, kind, data in self._batch([oid]):
            return data if kind == b"tree" else None
        return None

    def _tree_entries(self, tree: str) -> dict[str, tuple[str, str]]:
        if not tree:
            return {}
        data = self.tree_data(tree)
        if data is None:
            raise GitError(f"{tree} is not a tree")
        return tree_entries(data)

    @property
    def object_format(self) -> str:
        return self._object_format

    @property
    def common_dir(self) -> Path:
        """Where the refs live (the git dir, or the main one of a linked worktree)."""
        return self._common_dir


def _locate(path: Path) -> tuple[str, Path, Path, Path | None] | None:
    """The object format, git dir, common dir and work tree (None when bare) of the
    repository at `path` itself (never one found in a folder above it); one process."""
    if not path.is_dir():
        return None
    argv = git_argv("rev-parse", "--show-object-format", "--path-format=absolute")
    argv += ["--git-dir", "--git-common-dir", "--is-bare-repository"]
    argv += ["--show-toplevel"]  # fails, after printing the rest, in a bare repository
    # Untranslated, so the ownership refusal below is recognised in every locale.
    result = capture(argv, cwd=path, env=git_environment({"LC_ALL": "C"}))
    found = result.stdout.decode("utf-8", "surrogateescape").splitlines()
    if len(found) < 4:
        if "dubious ownership" in result.stderr:
            # A repository owned by someone else: git reads nothing of it, and saying
            # "not a Git repository" would send the user looking in the wrong place.
            raise GitError(
                f"git refuses to read {path}: it is owned by another user",
                hint=f"if you trust it: git config --global --add safe.directory {path}",
            )
        return None
    object_format, git_dir, common_dir, bare, *top = found
    root = git_dir if bare == "true" else (top or [""])[0]
    if os.path.realpath(root) != os.path.realpath(path):
        return None
    work_tree = None if bare == "true" else Path(root)
    return object_format, Path(git_dir), Path(common_dir), work_tree


def unknown_revision(rev: str) -> GitError:
    """The error for a name that names no commit, however it was looked up."""
    return GitError(f"unknown revision '{rev}'", hint="name a commit, branch or tag")
