"""Adapter, git: the only module that talks to Git (the `git` command).

Called by `authorise` (history, blobs, trees), `decide` and `record`. It reads
history in batches, never one subprocess per commit: one `git log --raw -z`
stream per pass for every commit and the paths it changed, and objects
through long-lived `cat-file --batch` processes. It runs git's plumbing
directly (through `process`), not through GitPython: importing GitPython
alone cost every command a tenth of a second, a third of the budget of an
incremental verify, for process handling this module does in a few lines.
Everything it returns is plain data (`CommitInfo`, `Change`).
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import hashlib
import itertools
import os
import queue
import re
import threading
import zlib
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, ClassVar, Final

from reconciler.errors import GitError, NotARepositoryError, TimedOut
from reconciler.printable import printable
from reconciler.process import Reader, capture

NULL_OID: Final = "0" * 40
FILE_MODES: Final = frozenset({"100644", "100755"})
SYMLINK_MODE: Final = "120000"
GITLINK_MODE: Final = "160000"
_TREE_MODE: Final = "040000"  # as `git log --raw` shows a folder (its trees say 40000)
_ABSENT_MODE: Final = "000000"
_FULL_OID = re.compile(r"[0-9a-f]{40}")
_RECORD_SEPARATOR: Final = "\x1e"
# Fetch, push and ls-remote talk to another machine: a remote that stops
# answering must not hold a reconciler forever (it retries on its next pass).
NETWORK_TIMEOUT: Final = 300.0
# Every git process runs with these, so that nothing a pusher can add, nor a setting of
# the repository or the user, changes what an object id reads as or what the output
# parsed here holds. Replacement refs (refs/replace/, which anyone who may push can
# create) would give an id other content, and grafts (info/grafts) other parents; the
# environment variable turns off replacements whatever GIT_REPLACE_REF_BASE says.
_PINNED_ENVIRONMENT: Final = {"GIT_NO_REPLACE_OBJECTS": "1", "GIT_GRAFT_FILE": os.devnull}
# log.showSignature would write signature checks into the log stream parsed here,
# log.showRoot=false would hide a root commit's files, and diff.orderFile would reorder
# a commit's changes. (Submodule `ignore` settings, which .gitmodules may hold, only a
# command-line option overrides: see `history`.) Other settings (mailmap, quotePath,
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


def _git(*args: str) -> list[str]:
    """The argv of `git <args>` as every git process of the reconciler runs."""
    return ["git", *_PINNED_CONFIG, *args]


def _git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every git process: the caller's, `extra`, and the pinned part."""
    return {**os.environ, **(extra or {}), **_PINNED_ENVIRONMENT}


class _Failed(GitError):
    """A git command exited non-zero: its status and output, for the caller to explain."""

    def __init__(self, command: str, status: int, stdout: bytes, stderr: str) -> None:
        super().__init__(f"git {command} failed: {stderr.strip()}")
        self.status = status
        self.stdout = stdout
        self.stderr = stderr


@dataclass(frozen=True, slots=True)
class Change:
    """One path a commit changed relative to its first parent (blob ids, modes)."""

    path: str
    old_mode: str
    new_mode: str
    old_blob: str  # NULL_OID when added
    new_blob: str  # NULL_OID when deleted


@dataclass(frozen=True, slots=True)
class Someone:
    """Who to commit as: a name, an email, and the SSH key to sign with (if any)."""

    name: str
    email: str
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str
    when: datetime


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """A commit as the reconciler needs it: who, when, what it says, and its raw bytes."""

    id: str
    parents: tuple[str, ...]
    tree: str
    author: Person
    committer: Person
    message: str
    encoding: str  # the `encoding` header ("" when absent: UTF-8), which git log converts from
    raw: bytes  # the whole commit object, for signature checks


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A commit in a history walk, with its changes against its first parent."""

    id: str
    parents: tuple[str, ...]
    changes: tuple[Change, ...]
    # The folders it changed (trees, `git log -t`), for `TreeChecks`; and, once they
    # are checked, a folder whose new tree is malformed and why (None: well-formed,
    # or unchecked).
    folders: tuple[Change, ...] = ()
    malformed: tuple[str, str] | None = None


class GitRepo:
    """A repository opened for reading (and, in `record`, for committing)."""

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
        self._objects_batch = _CatFile(path, "--batch")
        self._names_batch = _CatFile(path, "--batch-check=%(objectname) %(objecttype)")
        self._sizes_batch = _CatFile(path, "--batch-check")
        self._make_tree = _MakeTree(path)
        self._tree_checks = TreeChecks(self)

    @classmethod
    def init(cls, path: Path, branch: str) -> GitRepo:
        """A new, empty repository at `path` whose first branch is `branch`."""
        path.mkdir(parents=True, exist_ok=True)
        result = capture(_git("init", "-q", "-b", branch, str(path)), env=_git_environment())
        if result.returncode != 0:
            raise GitError(f"git init {path} failed: {result.stderr.strip()}")
        return cls(path)

    def close(self) -> None:
        """Stop the long-lived cat-file processes (long-running watchers call this)."""
        for batch in (self._objects_batch, self._names_batch, self._sizes_batch):
            batch.close()
        self._make_tree.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- running git ----------------------------------------------------------

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
                _git(*args),
                cwd=self.path,
                env=_git_environment(env),
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

    # -- references -------------------------------------------------------

    def resolve(self, rev: str) -> str:
        """The full commit id `rev` names; GitError when it names none."""
        try:
            return self._text("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
        except GitError:
            raise GitError(
                f"unknown revision '{rev}'", hint="name a commit, branch or tag"
            ) from None

    def try_resolve(self, rev: str) -> str | None:
        try:
            return self.resolve(rev)
        except GitError:
            return None

    def has_commits(self) -> bool:
        """Whether any branch exists: a fresh `git init` has none, HEAD names an unborn one."""
        return bool(self._text("for-each-ref", "--count=1", "--format=%(refname)", "refs/heads/"))

    def has_references(self) -> bool:
        """Whether any reference exists (a branch, a tag, a remote's branch): a fresh
        `git init`, or a clone of an empty repository, has none."""
        return bool(self._text("for-each-ref", "--count=1", "--format=%(refname)"))

    def start_on(self, branch: str) -> None:
        """Point HEAD at `branch` before it exists, so the first commit creates it."""
        self._run("symbolic-ref", "HEAD", f"refs/heads/{branch}")

    def branches(self, limit: int = 10) -> list[str]:
        """Up to `limit` local branch names, most recently committed first."""
        listed = self._text(
            "for-each-ref",
            f"--count={limit}",
            "--sort=-committerdate",
            "--format=%(refname:short)",
            "refs/heads/",
        )
        return listed.splitlines()

    def head_branch(self) -> str | None:
        """The branch HEAD points at (also in a bare repository), or None when detached."""
        try:
            return self._text("symbolic-ref", "-q", "--short", "HEAD") or None
        except GitError:
            return None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            self._run("merge-base", "--is-ancestor", ancestor, descendant)
        except _Failed as error:
            if error.status == 1:
                return False
            raise GitError(f"git merge-base failed: {error.stderr.strip()}") from None
        return True

    def first_parent_chain(self, tip: str, stop: str | None) -> list[str]:
        """First-parent commits from just after `stop` up to `tip`, oldest first."""
        args = ["--first-parent", "--reverse", tip]
        if stop is not None:
            args.append(f"^{stop}")
        return self._text("rev-list", *args).split()

    def merge_base(self, one: str, other: str) -> str | None:
        """The best common ancestor of two commits; None when their histories share none."""
        try:
            return self._text("merge-base", one, other) or None
        except _Failed as error:
            if error.status == 1:
                return None
            raise GitError(f"git merge-base failed: {error.stderr.strip()}") from None

    def merge_tree(self, ours: str, theirs: str) -> tuple[str | None, tuple[str, ...]]:
        """The tree a true merge of `theirs` into `ours` makes (git's own merge, written to
        the object store, no working tree touched); None and the conflicting paths when
        it conflicts."""
        try:
            output = self._run(
                "merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs
            )
        except _Failed as error:
            if error.status != 1:
                raise GitError(f"git merge-tree failed: {error.stderr.strip()}") from None
            # "<tree>\0<path>\0<path>\0...": the conflicting paths, one per conflict stage.
            paths = error.stdout.decode("utf-8", "surrogateescape").split("\0")[1:]
            return None, tuple(dict.fromkeys(path for path in paths if path))
        return output.decode().split("\0", 1)[0].strip(), ()

    def root_commits(self, tip: str) -> list[str]:
        """Every commit reachable from `tip` that has no parent."""
        return self._text("rev-list", "--max-parents=0", tip).split()

    def ancestors(self, commit: str) -> list[str]:
        """`commit` and every commit reachable from it."""
        return self._text("rev-list", commit).split()

    # -- the local user -----------------------------------------------------

    def committer_email(self) -> str:
        """The email `git commit` would use here (config and environment)."""
        try:
            ident = self._text("var", "GIT_COMMITTER_IDENT")
        except GitError:
            raise GitError(
                "git does not know who you are", hint="set user.name and user.email in git config"
            ) from None
        return ident.rsplit("<", 1)[-1].split(">", 1)[0]

    def config(self, key: str) -> str | None:
        try:
            return self._text("config", "--get", key) or None
        except GitError:
            return None

    def config_path(self, key: str) -> str | None:
        """A path setting as git reads it (`~/` expanded), from any level of configuration.

        None only when it is not set: a setting git cannot read (a `~user/` that
        does not expand, a `~/` without HOME) is an error, as it is to git itself,
        never taken for an unset one.
        """
        try:
            return self._text("config", "--type=path", "--get", key) or None
        except _Failed as error:
            if error.status == 1:
                return None
            raise GitError(
                f"git cannot read {key}: {error.stderr.strip()}",
                hint=f"give {key} an absolute path (git config --show-origin --get {key})",
            ) from None

    # -- writing ------------------------------------------------------------

    def commit_empty(self, message: str, *, sign: bool, who: Someone | None = None) -> str:
        """An empty, single-parent commit on HEAD (the user's identity, or `who`'s)."""
        self._git(who, "commit", "--allow-empty", "--no-verify", "-q", "-m", message, sign=sign)
        return self.resolve("HEAD")

    def commit_paths(
        self, paths: list[str], message: str, *, sign: bool, who: Someone | None = None
    ) -> str:
        """Commit exactly `paths` from the working tree on HEAD."""
        self._run("add", "--", *paths)
        self._git(who, "commit", "--no-verify", "-q", "-m", message, "--", *paths, sign=sign)
        return self.resolve("HEAD")

    def unstage(self, paths: list[str]) -> None:
        """Put `paths` back in the index as HEAD has them (the working tree is left alone)."""
        self._run("reset", "-q", "--", *paths)

    def uncommitted(self, folder: str) -> list[tuple[str, str]]:
        """The files in `folder` whose working tree or index differs from HEAD, as `git status`
        sees them (ignored files and submodules left out): (path, 'untracked' | 'added' |
        'deleted' | 'modified'). None in a bare repository."""
        if self.bare:
            return []
        listed = self._run(
            "status",
            "--porcelain=v2",
            "-z",
            "--untracked-files=all",
            "--no-renames",
            "--",
            f":(top,literal){folder}/",
            env={"GIT_OPTIONAL_LOCKS": "0"},  # a read: never take the index's lock
        ).decode("utf-8", "surrogateescape")
        found = []
        for entry in filter(None, listed.split("\0")):
            if entry.startswith("? "):
                found.append((entry[2:], "untracked"))
                continue
            # "1 XY sub mH mI mW hH hI path" ("u ...": unmerged, with more fields)
            fields = entry.split(" ", 10 if entry.startswith("u ") else 8)
            if fields[0] not in ("1", "u") or fields[2].startswith("S"):
                continue  # "! ...": ignored; a submodule is no file of the folder
            code = fields[1]
            how = "added" if "A" in code else "deleted" if "D" in code else "modified"
            found.append((fields[-1], how))
        return found

    def has_uncommitted_changes(self, path: str) -> bool:
        """Whether the working tree or the index holds changes to `path` (or deleted it)."""
        return bool(self._run("status", "--porcelain", "--", path).strip())

    def merge(self, branch: str, message: str, *, sign: bool, who: Someone | None = None) -> str:
        """A true merge (--no-ff) of `branch` into HEAD."""
        self._git(who, "merge", "--no-ff", "--no-edit", "-q", "-m", message, branch, sign=sign)
        return self.resolve("HEAD")

    def checkout(self, branch: str, *, start: str | None = None) -> None:
        """Switch to `branch`, creating it at `start` when given."""
        try:
            if start is None:
                self._run("checkout", "-q", branch)
            else:
                self._run("checkout", "-q", "-B", branch, start)
        except _Failed as error:
            raise GitError(f"git checkout {branch} failed: {error.stderr.strip()}") from None

    def _git(self, who: Someone | None, command: str, *args: str, sign: bool) -> None:
        """Run a committing command as the user, or as `who` (identity and signing key)."""
        config: list[str] = []
        env: dict[str, str] = {}
        if who is not None:
            config = ["-c", f"user.name={who.name}", "-c", f"user.email={who.email}"]
            env = {
                "GIT_AUTHOR_NAME": who.name,
                "GIT_AUTHOR_EMAIL": who.email,
                "GIT_COMMITTER_NAME": who.name,
                "GIT_COMMITTER_EMAIL": who.email,
            }
            if who.key is not None:
                config += ["-c", "gpg.format=ssh", "-c", f"user.signingkey={who.key}"]
            if not sign:
                config += ["-c", "commit.gpgsign=false"]
        signing = ["-S"] if sign else []
        try:
            self._run(*config, command, *signing, *args, env=env)
        except _Failed as error:
            raise GitError(
                f"git {command} failed: {error.stderr.strip()}",
                hint="check your git identity and signing setup (gpg.format, user.signingkey)",
            ) from None

    # -- objects and refs, written directly (records) ---------------------------

    def write_object(self, kind: str, data: bytes) -> str:
        """Store an object as a loose object, as git does (about 0.1 ms, not a process)."""
        if self._object_format != "sha1":
            return (
                self._run("hash-object", "-w", "-t", kind, "--stdin", stdin=data).decode().strip()
            )
        body = f"{kind} {len(data)}".encode() + b"\0" + data
        oid = hashlib.sha1(body, usedforsecurity=False).hexdigest()
        target = self._objects / oid[:2] / oid[2:]
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            temporary = target.parent / f"tmp_obj_{os.getpid()}_{threading.get_ident()}"
            temporary.write_bytes(zlib.compress(body, 1))
            temporary.chmod(0o444)
            os.replace(temporary, target)  # readers see the whole object or none
        return oid

    def tree_with(self, base_tree: str, files: Mapping[str, bytes]) -> str:
        """`base_tree` with `files` written (path -> content), as a new tree id.

        Git makes each tree (`git mktree`); the folders it rewrites are read with
        `tree_entries`, so a malformed one (in a refused landing) is written back
        well-formed, the way the walk reads it, never copied.
        """
        grouped: dict[str, dict[str, bytes]] = {}
        blobs: dict[str, str] = {}
        for path, content in files.items():
            head, _, rest = path.partition("/")
            if rest:
                grouped.setdefault(head, {})[rest] = content
            else:
                blobs[head] = self.write_object("blob", content)
        entries = self._tree_entries(base_tree)
        for name, blob in blobs.items():
            entries[name] = ("100644", blob)
        for name, nested in grouped.items():
            mode, oid = entries.get(name, ("40000", ""))
            # A file (or link) where a folder must be is replaced: records write
            # under deployments/ and logs/, which only the reconciler may change,
            # so what stands in the way is a refused change, never effective.
            base = oid if mode == "40000" else ""
            entries[name] = ("40000", self.tree_with(base, nested))
        return self._make_tree.make(entries)

    def _tree_entries(self, tree: str) -> dict[str, tuple[str, str]]:
        if not tree:
            return {}
        data = self.tree_data(tree)
        if data is None:
            raise GitError(f"{tree} is not a tree")
        return tree_entries(data)

    def tree_data(self, oid: str) -> bytes | None:
        """A tree object's content; None when `oid` names no tree."""
        for _, kind, data in self._batch([oid]):
            return data if kind == b"tree" else None
        return None

    @property
    def object_format(self) -> str:
        return self._object_format

    def check_trees(
        self, entries: list[HistoryEntry], roots: Mapping[str, str]
    ) -> dict[str, HistoryEntry]:
        """The history `entries` to take otherwise: see `TreeChecks.read`."""
        return self._tree_checks.read(entries, roots)

    def malformed_tree(self, commit: str) -> tuple[str, str] | None:
        """A folder of `commit` whose tree `tree_problem` refuses, and why; None when
        every tree of it is well-formed (each read whole: for a trust anchor)."""
        listed = self._run("ls-tree", "-r", "-t", "-z", "--full-tree", commit)
        folders = [("", self.commit(commit).tree)]
        for record in listed.decode("utf-8", "surrogateescape").split("\0"):
            meta, _, path = record.partition("\t")
            if meta.startswith("040000 tree "):
                folders.append((path, meta.rsplit(" ", 1)[1]))
        for path, tree in folders:
            problem = self._tree_checks.problem(tree)
            if problem is not None:
                return path, f"{problem} (tree {tree})"
        return None

    def update_ref(self, branch: str, new: str, expected: str) -> bool:
        """Move refs/heads/<branch> from `expected` to `new`, atomically; False if it moved."""
        try:
            self._run("update-ref", f"refs/heads/{branch}", new, expected)
        except GitError:
            return False
        return True

    def push(self, remote: str, commit: str, branch: str) -> str | None:
        """Fast-forward the remote's branch to `commit`; None when done, else why the remote
        rejected it (someone pushed first, or a hook or branch protection refused it)."""
        try:
            self._run(
                "push",
                "--porcelain",
                "--quiet",
                remote,
                f"{commit}:refs/heads/{branch}",
                timeout=NETWORK_TIMEOUT,
            )
        except _Failed as error:
            text = f"{error.stdout.decode('utf-8', 'replace')} {error.stderr}"
            if "rejected" in text or "non-fast-forward" in text or "fetch first" in text:
                return " ".join(text.split())
            raise GitError(f"git push to {remote} failed: {error.stderr.strip()}") from None
        return None  # git moved refs/remotes/<remote>/<branch> along with the push

    def fetch(self, remote: str, branch: str) -> str:
        """Fetch the remote's branch; its commit id."""
        try:
            self._run(
                "fetch",
                "--quiet",
                "--no-tags",
                remote,
                f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}",
                timeout=NETWORK_TIMEOUT,
            )
        except _Failed as error:
            raise GitError(
                f"git fetch {remote} failed: {error.stderr.strip()}",
                hint="check the remote's URL and your credentials",
            ) from None
        return self.resolve(f"refs/remotes/{remote}/{branch}")

    def ls_remote(self, remote: str, branch: str) -> str | None:
        """The commit the remote's branch points at, without fetching; None when it has none.

        One round trip and no objects: the watcher's cheap poll of a remote.
        """
        ref = f"refs/heads/{branch}"
        try:
            output = self._run(
                "ls-remote", "--exit-code", remote, ref, timeout=NETWORK_TIMEOUT
            ).decode("utf-8", "replace")
        except _Failed as error:
            if error.status == 2:  # --exit-code: no such ref
                return None
            raise GitError(
                f"git ls-remote {remote} failed: {error.stderr.strip()}",
                hint="check the remote's URL and your credentials",
            ) from None
        for line in output.splitlines():
            oid, _, name = line.partition("\t")
            if name == ref:
                return oid
        return None

    @property
    def common_dir(self) -> Path:
        """Where the refs live (the git dir, or the main one of a linked worktree)."""
        return self._common_dir

    def follow_worktree(self, branch: str, old: str, new: str) -> None:
        """After moving a checked-out branch's ref, bring the index and files along.

        Best effort: a working tree with conflicting local edits is left alone
        (the commits are safe in the ref; `git status` will show the difference).
        """
        if self.bare or self.head_branch() != branch:
            return
        with contextlib.suppress(GitError):
            self._run("read-tree", "-m", "-u", old, new)

    def work_tree(self) -> Path:
        if self._work_tree is None:
            raise GitError(f"{self.path} is a bare repository", hint="run this in a clone")
        return self._work_tree

    # -- history ----------------------------------------------------------

    def history(self, tip: str, exclude: str | None) -> Generator[HistoryEntry, None, None]:
        """Every commit reachable from `tip` and not from `exclude`, parents first.

        One `git log` process; merges carry their diff against the first parent.
        """
        args = [
            "--topo-order",
            "--reverse",
            "-r",
            "-t",  # the folders too, for the tree checks
            "--raw",
            "-z",
            "--no-renames",
            "--no-abbrev",
            # Else a .gitmodules in the history (`ignore = all`) hides submodules from the log.
            "--ignore-submodules=none",
            "--diff-merges=first-parent",
            f"--format={_RECORD_SEPARATOR}%H %P",
            tip,
        ]
        if exclude is not None:
            args.append(f"^{exclude}")
        log = Reader(_git("log", *args), cwd=self.path, env=_git_environment(), answers=False)
        blocks = _ReadAhead(log.stdout)
        try:
            yield from _parse_log(_decoded(blocks))
        except GeneratorExit:
            log.stop()  # the caller stopped early: git's exit status means nothing
            blocks.stop()
            raise
        blocks.stop()
        returncode, errors = log.finish()
        if returncode != 0:
            raise GitError(f"git log failed: {errors.strip()}")

    def commits(self, oids: list[str]) -> dict[str, CommitInfo]:
        """Many commits through one pipelined `cat-file --batch` (not one round trip each)."""
        return {
            oid: parse_commit(oid, raw) for oid, kind, raw in self._batch(oids) if kind == b"commit"
        }

    def blobs(self, oids: list[str], limit: int) -> tuple[dict[str, bytes], dict[str, int]]:
        """Contents of the blobs no larger than `limit`, and every blob's size, in two batches.

        Sizes come first, so a blob of any size pushed by anyone is never read whole.
        """
        sizes = self.blob_sizes(oids)
        small = [oid for oid in dict.fromkeys(oids) if sizes.get(oid, limit + 1) <= limit]
        contents = {oid: raw for oid, kind, raw in self._batch(small) if kind == b"blob"}
        return contents, sizes

    def _batch(self, oids: list[str]) -> Iterator[tuple[str, bytes, bytes]]:
        """(oid, type, content) of each object, through the long-lived `cat-file --batch`."""
        for oid, (header, content) in zip(oids, self._objects_batch.ask(oids), strict=True):
            if len(header) == 3:  # else "<oid> missing"
                yield oid, header[1], content

    def commit(self, oid: str) -> CommitInfo:
        kind, raw = self._object(oid)
        if kind != b"commit":
            raise GitError(f"{oid} is not a commit")
        return parse_commit(oid, raw)

    # -- objects ----------------------------------------------------------

    def blob_at(self, commit: str, path: str) -> str | None:
        """The blob id of `path` in `commit`'s tree, or None when absent."""
        return self.blobs_at([(commit, path)])[(commit, path)]

    def blobs_at(self, places: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """`blob_at` for many (commit, path) pairs through one `cat-file --batch-check`."""
        wanted = [(commit, path) for commit, path in dict.fromkeys(places) if "\n" not in path]
        found: dict[tuple[str, str], str | None] = dict.fromkeys(places)
        answers = self._names_batch.ask([f"{commit}:{path}" for commit, path in wanted])
        for pair, (parts, _) in zip(wanted, answers, strict=True):
            if len(parts) == 2 and parts[1] == b"blob":
                found[pair] = parts[0].decode()
        return found

    def blob_sizes(self, oids: list[str]) -> dict[str, int]:
        """Sizes of many objects through the long-lived `cat-file --batch-check`."""
        sizes: dict[str, int] = {}
        for parts, _ in self._sizes_batch.ask(oids):
            if len(parts) == 3:
                sizes[parts[0].decode()] = int(parts[2])
        return sizes

    def blob_size(self, oid: str) -> int:
        size = self.blob_sizes([oid]).get(oid)
        if size is None:
            raise GitError(f"object {oid} is missing from the repository")
        return size

    def read_blob(self, oid: str) -> bytes:
        kind, data = self._object(oid)
        if kind != b"blob":
            raise GitError(f"{oid} is not a blob")
        return data

    def _object(self, oid: str) -> tuple[bytes, bytes]:
        """(type, content) through the long-lived `cat-file --batch` process."""
        [(header, content)] = self._objects_batch.ask([oid])
        if len(header) != 3:
            raise GitError(f"object {oid} is missing from the repository")
        return header[1], content

    def folder(self, commit: str, name: str) -> dict[str, tuple[str, str]]:
        """The files directly in top-level folder `name` of `commit`: path -> (mode, id).

        Read in-process through the persistent cat-file (no `ls-tree` process).
        """
        kind, raw = self._object(commit)
        tree = parse_commit(commit, raw).tree if kind == b"commit" else ""
        mode, oid = self._tree_entries(tree).get(name, ("", ""))
        if mode != "40000":
            return {}
        return {f"{name}/{entry}": found for entry, found in self._tree_entries(oid).items()}

    def tree_files(self, commit: str, folder: str | None = None) -> dict[str, tuple[str, str]]:
        """Every path in `commit`'s tree (or under `folder`): path -> (mode, object id)."""
        args = ["-r", "-z", "--full-tree", commit]
        if folder is not None:
            args += ["--", folder]
        output = self._run("ls-tree", *args).decode("utf-8", "surrogateescape")
        files: dict[str, tuple[str, str]] = {}
        for record in output.split("\0"):
            if not record:
                continue
            meta, _, path = record.partition("\t")
            mode, _, oid = meta.split(" ")
            files[path] = (mode, oid)
        return files


# -- trees: the one rule for a well-formed tree, and the one way to read any tree --------

_MODES: Final = frozenset({b"100644", b"100755", b"120000", b"40000", b"160000"})
# git fsck lets this one pass unless --strict (older gits wrote it); git reads it as 100644.
_LENIENT_MODE: Final = b"100664"
_OCTAL: Final = re.compile(rb"[0-7]+")
_NULL_ID: Final = bytes(20)
# What HFS+ leaves out of a name, and what NTFS reads as .git (git's is_hfs_dotgit and
# is_ntfs_dotgit): a name git refuses on those file systems, so git fsck refuses it.
_HFS_IGNORED: Final = re.compile("[\\u200c-\\u200f\\u202a-\\u202e\\u206a-\\u206f\\ufeff]")
_NTFS_DOTGIT: Final = re.compile(rb"(?:\.git|git~1)[. ]*(?:[\\:].*)?", re.IGNORECASE | re.DOTALL)


def name_problem(name: bytes) -> str | None:
    """Why git fsck objects to `name` as the name of a tree's entry; None when it does not."""
    if not name:
        return "an entry has an empty name"
    if b"/" in name:
        why = "holds a '/'"
    elif name in (b".", b".."):
        why = "is no name"
    elif _dotgit(name):
        why = "is .git (to git, HFS+ or NTFS)"
    else:
        return None
    return f"the name '{printable(name.decode('utf-8', 'surrogateescape'))}' {why}"


def _dotgit(name: bytes) -> bool:
    if name.isascii() and b"git" not in name.lower():
        return False  # nearly every name: no HFS+ ignorable, no .git to spell
    return bool(_NTFS_DOTGIT.fullmatch(name)) or _hfs_name(name) == b".git"


def _hfs_name(name: bytes) -> bytes:
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return name
    return _HFS_IGNORED.sub("", text).encode().lower()


def tree_problem(data: bytes) -> str | None:
    """Why git fsck refuses this tree object (the content of one), or None: the one rule.

    Entries must be readable, sorted the way git sorts them (a folder as if its name
    ended in '/'), each name once (a file and a folder of one name count twice), with
    one of git's modes written git's way (never zero-padded) and a name `name_problem`
    accepts, and no all-zero object id.
    """
    previous: bytes | None = None
    names: set[bytes] = set()
    read = 0
    for mode, name, oid, end in _raw_entries(data):
        read = end
        shown = printable(name.decode("utf-8", "surrogateescape"))
        if mode.startswith(b"0"):
            return f"'{shown}' has a zero-padded mode ({mode.decode('ascii', 'replace')})"
        if mode not in _MODES and mode != _LENIENT_MODE:
            return f"'{shown}' has a bad mode ({printable(mode.decode('ascii', 'replace'))})"
        problem = name_problem(name)
        if problem is not None:
            return problem
        if oid == _NULL_ID:
            return f"'{shown}' names the all-zero object id"
        if name in names:
            return f"two entries are named '{shown}'"
        key = name + b"/" if mode == b"40000" else name
        if previous is not None and key < previous:
            return f"the entries are out of order ('{shown}' comes too late)"
        names.add(name)
        previous = key
    if read != len(data):
        return f"the entry at byte {read} is cut short"
    return None


def tree_entries(data: bytes) -> dict[str, tuple[str, str]]:
    """A tree's entries as the reconciler reads them: name -> (mode, object id).

    For a well-formed tree, what git reads. A malformed one (refused wherever it
    lands, see `tree_problem`) is read this one way, by the walk and by the records
    that rebuild a folder: an entry counts under its first name only, one whose name
    git fsck refuses is left out, and a mode is read as git reads it (canon_mode).
    """
    entries: dict[str, tuple[str, str]] = {}
    for mode, name, oid, _ in _raw_entries(data):
        canonical = _canonical_mode(mode)
        if canonical is None or name_problem(name) is not None:
            continue
        entries.setdefault(name.decode("utf-8", "surrogateescape"), (canonical, oid.hex()))
    return entries


def _raw_entries(data: bytes) -> Iterator[tuple[bytes, bytes, bytes, int]]:
    """(mode, name, object id, end) of each readable entry, in order, up to one that is not."""
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        nul = data.find(b"\0", space + 1) if space >= 0 else -1
        if nul < 0 or nul + 21 > len(data):
            return
        yield data[position:space], data[space + 1 : nul], data[nul + 1 : nul + 21], nul + 21
        position = nul + 21


def _canonical_mode(mode: bytes) -> str | None:
    """A mode as git reads it (canon_mode); None when it is no octal number."""
    if not _OCTAL.fullmatch(mode):
        return None
    value = int(mode, 8)
    kind = value & 0o170000
    if kind == 0o100000:
        return "100755" if value & 0o100 else "100644"
    if kind == 0o120000:
        return SYMLINK_MODE
    if kind == 0o040000:
        return "40000"
    return GITLINK_MODE


@dataclass(frozen=True, slots=True)
class _Sound:
    """A tree known to be well-formed: its bytes, and its entries' sort keys and offsets.

    The bytes are shared with the tree it was found from, but for the entries in
    `patched` (a copy of 56 KB per commit was most of what checking it cost).
    """

    data: bytes
    keys: list[bytes]
    starts: list[int]
    patched: Mapping[int, bytes] = field(default_factory=dict)  # entry index -> its bytes

    PATCHES: ClassVar[int] = 64  # at most, then the bytes are copied with them

    def entry(self, at: int) -> bytes:
        patch = self.patched.get(at)
        if patch is not None:
            return patch
        end = self.starts[at + 1] if at + 1 < len(self.starts) else len(self.data)
        return self.data[self.starts[at] : end]

    def entries(self) -> list[bytes]:
        return [self.entry(at) for at in range(len(self.starts))]

    def with_patches(self, patched: dict[int, bytes]) -> _Sound:
        if len(patched) <= self.PATCHES:
            return _Sound(self.data, self.keys, self.starts, patched)
        data = bytearray(self.data)
        for at, entry in patched.items():
            data[self.starts[at] : self.starts[at] + len(entry)] = entry
        return _Sound(bytes(data), self.keys, self.starts)


_EMPTY_TREE: Final = _Sound(b"", [], [])


@dataclass(frozen=True, slots=True)
class _Level:
    """A folder a commit changed (the root: ""), its trees before and after (None: absent),
    and the changes git's diff shows directly in it (None: unknown, the folder was shown
    more than once)."""

    path: str
    old: str | None
    new: str | None
    changes: list[Change] | None


class TreeChecks:
    """Which trees the commits of a walk bring are malformed, by `tree_problem`.

    Reading every new tree whole would cost more than the walk (a plans/ folder of
    a thousand files is a new 56 KB tree at nearly every commit). So a tree is read
    whole only when nothing else proves it well-formed. What does: its id was found
    well-formed before (remembered by id), or it is its first parent's well-formed
    tree with exactly the changes git's diff shows in that folder. Git's diff walks
    both trees' entries in order; when it shows no added entry, every entry of the
    new tree was paired, in order, with one of the old (sorted) tree, so the new
    tree is sorted, its names are the old ones, and its size, which git reports
    cheaply, tells that no mode is zero-padded (a file mode spelt otherwise with
    as many digits, such as 100600, which git reads as 100644 everywhere, is seen
    only where a tree is read whole). When the diff shows added entries, the tree
    the changes describe is rebuilt here and its id computed: the new tree is
    well-formed exactly when the ids are equal.

    Where a tree on either side is malformed, git's diff pairs entries at random:
    the commit's changes there are read again with `tree_entries`, so the walk
    takes them the way records rebuild such a folder.
    """

    KEPT: Final = 512  # well-formed trees remembered (and as many malformed ones)

    def __init__(self, repo: GitRepo) -> None:
        self._repo = repo
        self._sound: dict[str, _Sound] = {}
        self._bad: dict[str, str] = {}
        self._hash = hashlib.sha256 if repo.object_format == "sha256" else hashlib.sha1

    def read(
        self, entries: list[HistoryEntry], roots: Mapping[str, str]
    ) -> dict[str, HistoryEntry]:
        """The `entries` (parents first) the walk must take otherwise: those that bring a
        malformed tree (`malformed` says which and why) or whose changes were read again.

        `roots`: the root tree of every entry and of its first parent.
        """
        levels = [(entry, _levels_of(entry, roots)) for entry in entries]
        unknown = {
            level.new
            for _, found in levels
            for level in found or ()
            if level.new is not None and level.new not in self._sound
        }
        sizes = self._repo.blob_sizes(sorted(unknown))
        taken: dict[str, HistoryEntry] = {}
        for entry, found in levels:
            if found is None:  # a commit or first parent that could not be read
                continue
            problem: tuple[str, str] | None = None
            as_diffed = True
            for level in found:
                new_problem, reliable = self._check(level, sizes)
                if new_problem is not None and problem is None:
                    problem = (level.path, f"{new_problem} (tree {level.new})")
                as_diffed = as_diffed and reliable
            if problem is None and as_diffed:
                continue
            changes = entry.changes
            if not as_diffed:
                first = entry.parents[0] if entry.parents else None
                old = roots.get(first) if first is not None else None
                changes = tuple(self._compare(old, roots[entry.id], ""))
            taken[entry.id] = replace(entry, changes=changes, malformed=problem)
        return taken

    def _check(self, level: _Level, sizes: Mapping[str, int]) -> tuple[str | None, bool]:
        """Why the level's new tree is malformed (None: it is not), and whether git's diff
        of the level can be taken as it is (both trees well-formed)."""
        old_problem = None if level.old is None else self.problem(level.old)
        if level.new is None or level.new == level.old:
            return None, old_problem is None
        if level.new in self._sound:
            new_problem = None
        elif level.new in self._bad:
            new_problem = self._bad[level.new]
        elif old_problem is None and self._edited(level, sizes.get(level.new)):
            new_problem = None
        else:
            new_problem = self.problem(level.new)
        return new_problem, old_problem is None and new_problem is None

    def problem(self, tree: str) -> str | None:
        """`tree_problem` of a tree read whole (when not known already)."""
        if tree in self._sound:
            return None
        known = self._bad.get(tree)
        if known is not None:
            return known
        data = self._repo.tree_data(tree)
        if data is None:
            problem: str | None = "the object is missing or is no tree"
        else:
            problem = tree_problem(data)
            if problem is None:
                self._remember(tree, _sound(data))
                return None
        if len(self._bad) >= self.KEPT:
            del self._bad[next(iter(self._bad))]
        self._bad[tree] = problem or ""
        return problem

    def _edited(self, level: _Level, size: int | None) -> bool:
        """Whether the level's new tree is its old one (well-formed) with the diff's changes."""
        if level.changes is None or size is None or level.new is None:
            return False
        base = _EMPTY_TREE if level.old is None else self._sound.get(level.old)
        if base is None:
            return False
        cut = len(level.path) + 1 if level.path else 0
        edits = [
            (change, change.path[cut:].encode("utf-8", "surrogateescape"))
            for change in level.changes
        ]
        # Nearly every commit changes files in place: the entries keep their order and,
        # their modes as long as before, their places in the bytes.
        patched = dict(base.patched)
        keys, starts = base.keys, base.starts
        for change, name in edits:
            if _ABSENT_MODE in (change.old_mode, change.new_mode):
                sound = self._rebuilt(base, edits, level.new)
                break
            folder = change.new_mode == _TREE_MODE
            key = name + b"/" if folder else name
            at = bisect.bisect_left(keys, key)
            if at == len(keys) or keys[at] != key or (change.old_mode == _TREE_MODE) != folder:
                return False
            mode = b"40000" if folder else change.new_mode.encode()
            entry = mode + b" " + name + b"\0" + _raw_id(change.new_blob)
            end = starts[at + 1] if at + 1 < len(starts) else len(base.data)
            if len(entry) != end - starts[at]:
                return False  # no mode git writes changes length in place: read it whole
            patched[at] = entry
        else:
            sound = base.with_patches(patched)
        if sound is None or len(sound.data) != size:
            return False
        self._remember(level.new, sound)
        return True

    def _rebuilt(self, base: _Sound, edits: list[tuple[Change, bytes]], tree: str) -> _Sound | None:
        """`base` with the edits' old sides out and new sides in, when that is the tree
        named `tree`; None when it is not, or when an edit does not fit `base`."""
        keys, entries = list(base.keys), base.entries()
        added = False
        # Every old side out first, then every new side in (a file becoming a folder
        # of the same name is shown as the one's deletion and the other's addition).
        for change, name in edits:
            if change.old_mode == _ABSENT_MODE:
                added = True
                continue
            key = name + b"/" if change.old_mode == _TREE_MODE else name
            at = bisect.bisect_left(keys, key)
            if at == len(keys) or keys[at] != key or entries[at][-20:] != _raw_id(change.old_blob):
                return None
            del keys[at], entries[at]
        for change, name in edits:
            if change.new_mode == _ABSENT_MODE:
                continue
            folder = change.new_mode == _TREE_MODE
            key, other = (name + b"/", name) if folder else (name, name + b"/")
            at = bisect.bisect_left(keys, key)
            if (at < len(keys) and keys[at] == key) or _holds(keys, other) or name_problem(name):
                return None
            mode = b"40000" if folder else change.new_mode.encode()
            keys.insert(at, key)
            entries.insert(at, mode + b" " + name + b"\0" + _raw_id(change.new_blob))
        data = b"".join(entries)
        header = b"tree %d\0" % len(data)
        if added and self._hash(header + data, usedforsecurity=False).hexdigest() != tree:
            return None  # an added entry out of its place, or an entry git did not show
        starts = list(itertools.accumulate((len(entry) for entry in entries[:-1]), initial=0))
        return _Sound(data, keys, starts if entries else [])

    def _remember(self, tree: str, sound: _Sound) -> None:
        if len(self._sound) >= self.KEPT:
            del self._sound[next(iter(self._sound))]  # the oldest
        self._sound[tree] = sound

    def _compare(self, old: str | None, new: str | None, path: str) -> list[Change]:
        """The file changes from tree `old` to tree `new` (None: absent) under `path`,
        both read with `tree_entries`."""
        before = self._entries(old)
        after = self._entries(new)
        changes: list[Change] = []
        for name in sorted(before.keys() | after.keys()):
            here = f"{path}/{name}" if path else name
            old_mode, old_id = before.get(name, (_ABSENT_MODE, NULL_OID))
            new_mode, new_id = after.get(name, (_ABSENT_MODE, NULL_OID))
            if (old_mode, old_id) == (new_mode, new_id):
                continue
            old_folder, new_folder = old_mode == "40000", new_mode == "40000"
            if old_folder or new_folder:
                changes += self._compare(
                    old_id if old_folder else None, new_id if new_folder else None, here
                )
            if old_folder:
                old_mode, old_id = _ABSENT_MODE, NULL_OID
            if new_folder:
                new_mode, new_id = _ABSENT_MODE, NULL_OID
            if (old_mode, new_mode) != (_ABSENT_MODE, _ABSENT_MODE):
                changes.append(Change(here, old_mode, new_mode, old_id, new_id))
        return changes

    def _entries(self, tree: str | None) -> dict[str, tuple[str, str]]:
        if tree is None:
            return {}
        data = self._repo.tree_data(tree)
        return {} if data is None else tree_entries(data)


def _levels_of(entry: HistoryEntry, roots: Mapping[str, str]) -> list[_Level] | None:
    """The folders `entry` changed, each with the changes git's diff shows directly in it.

    A change goes to the closest folder above it that the diff shows as changed (a
    name holding '/' in a malformed tree looks like a path into a folder that is not).
    """
    root = roots.get(entry.id)
    first = entry.parents[0] if entry.parents else None
    old_root = roots.get(first) if first is not None else None
    if root is None or (first is not None and old_root is None):
        return None
    if root == old_root:
        return []  # an empty commit (an approval, a trigger, a start record)
    shown: dict[str, list[Change]] = {}
    for folder in entry.folders:
        shown.setdefault(folder.path, []).append(folder)
    direct: dict[str, list[Change]] = {}
    for change in (*entry.changes, *entry.folders):
        parent = change.path.rpartition("/")[0]
        while parent and parent not in shown:
            parent = parent.rpartition("/")[0]
        direct.setdefault(parent, []).append(change)
    levels = [_Level("", old_root, root, direct.get("", []))]
    for path, folders in shown.items():
        inside = direct.get(path, []) if len(folders) == 1 else None
        for folder in folders:
            old = _tree_side(folder.old_mode, folder.old_blob)
            levels.append(_Level(path, old, _tree_side(folder.new_mode, folder.new_blob), inside))
    return levels


def _tree_side(mode: str, oid: str) -> str | None:
    return oid if mode == _TREE_MODE else None


def _holds(keys: list[bytes], key: bytes) -> bool:
    at = bisect.bisect_left(keys, key)
    return at < len(keys) and keys[at] == key


def _raw_id(oid: str) -> bytes:
    return bytes.fromhex(oid)


def _sound(data: bytes) -> _Sound:
    """The parts of a tree `tree_problem` accepted."""
    keys: list[bytes] = []
    starts: list[int] = []
    start = 0
    for mode, name, _, end in _raw_entries(data):
        keys.append(name + b"/" if mode == b"40000" else name)
        starts.append(start)
        start = end
    return _Sound(data, keys, starts)


def _locate(path: Path) -> tuple[str, Path, Path, Path | None] | None:
    """The object format, git dir, common dir and work tree (None when bare) of the
    repository at `path` itself (never one found in a folder above it); one process."""
    if not path.is_dir():
        return None
    argv = _git("rev-parse", "--show-object-format", "--path-format=absolute")
    argv += ["--git-dir", "--git-common-dir", "--is-bare-repository"]
    argv += ["--show-toplevel"]  # fails, after printing the rest, in a bare repository
    # Untranslated, so the ownership refusal below is recognised in every locale.
    result = capture(argv, cwd=path, env=_git_environment({"LC_ALL": "C"}))
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


def user_config(key: str) -> str | None:
    """A value of the user's git configuration outside any repository (e.g. user.email)."""
    result = capture(_git("config", "--get", key), env=_git_environment())
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", "replace").strip() or None


def commit_bytes(
    tree: str, parents: tuple[str, ...], author: str, committer: str, message: str
) -> bytes:
    """A raw commit object; `author`/`committer` are 'Name <email> <seconds> <+hhmm>'."""
    lines = [f"tree {tree}", *(f"parent {parent}" for parent in parents)]
    lines += [f"author {author}", f"committer {committer}"]
    text = message if message.endswith("\n") else message + "\n"
    return ("\n".join(lines) + "\n\n" + text).encode("utf-8")


class _ReadAhead:
    """The blocks of a process's output, read by a thread as fast as the process writes.

    With a plain pipe, `git log` stops whenever 64 KiB wait unread, so it would
    idle while the walk judges; read ahead, it runs on the other core. The
    queue's bound keeps memory flat (16 MiB, about 60,000 commits of a log).
    """

    BLOCK: Final = 1 << 16
    BLOCKS: Final = 256

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


class _CatFile:
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
                _git("cat-file", self._option),
                cwd=self._path,
                env=_git_environment(),
                answers=True,
            )
        assert self._reader.stdin is not None
        return self._reader.stdin, self._reader.stdout

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None


class _MakeTree:
    """One long-lived `git mktree -z --batch`: git sorts, writes and names each tree
    (checking that every entry's object exists and is of the kind its mode says)."""

    KINDS: Final = {"40000": "tree", GITLINK_MODE: "commit"}

    def __init__(self, path: Path) -> None:
        self._path = path
        self._reader: Reader | None = None
        self._lock = threading.Lock()

    def make(self, entries: Mapping[str, tuple[str, str]]) -> str:
        """The id of the tree of `entries` (name -> (mode, id)), written to the repository."""
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
                    _git("mktree", "-z", "--batch"),
                    cwd=self._path,
                    env=_git_environment(),
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
            return answer

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None


def _decoded(blocks: Iterator[bytes] | _ReadAhead) -> Iterator[str]:
    # Incremental: a character split between two blocks is decoded whole.
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    for block in blocks:
        yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


def _parse_log(chunks: Iterator[str]) -> Iterator[HistoryEntry]:
    """Parse `git log --raw -t -z --format=<RS>%H %P` output, one commit at a time.

    Tokens are NUL-separated; a path always follows its `:meta` token, so a
    path containing any byte (even the record separator) is read as a path.
    """
    current: list[str] | None = None
    changes: list[Change] = []
    folders: list[Change] = []
    meta: str | None = None
    for token in _tokens(chunks):
        if meta is not None:
            old_mode, new_mode, old_blob, new_blob, _status = meta[1:].split(" ")
            change = Change(token, old_mode, new_mode, old_blob, new_blob)
            (folders if _TREE_MODE in (old_mode, new_mode) else changes).append(change)
            meta = None
            continue
        text = token.lstrip("\n")
        if text.startswith(_RECORD_SEPARATOR):
            if current is not None:
                yield HistoryEntry(current[0], tuple(current[1:]), tuple(changes), tuple(folders))
            current = text[1:].split()
            changes = []
            folders = []
        elif text.startswith(":"):
            meta = text
    if current is not None:
        yield HistoryEntry(current[0], tuple(current[1:]), tuple(changes), tuple(folders))


def _tokens(chunks: Iterator[str]) -> Iterator[str]:
    pending = ""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split("\0")
        yield from complete
    if pending:
        yield pending


def parse_commit(oid: str, raw: bytes) -> CommitInfo:
    """Parse a raw commit object (headers, blank line, message)."""
    head, _, body = raw.partition(b"\n\n")
    headers: dict[str, list[str]] = {}
    last: str | None = None
    for line in head.split(b"\n"):
        text = line.decode("utf-8", "replace")
        if text.startswith(" ") and last is not None:
            continue  # continuation of a multi-line header (gpgsig, mergetag)
        key, _, value = text.partition(" ")
        headers.setdefault(key, []).append(value)
        last = key
    return CommitInfo(
        id=oid,
        parents=tuple(headers.get("parent", ())),
        tree=headers.get("tree", [""])[0],
        author=_person(headers.get("author", [""])[0]),
        committer=_person(headers.get("committer", [""])[0]),
        message=body.decode("utf-8", "replace"),
        encoding=headers.get("encoding", [""])[0],
        raw=raw,
    )


_PERSON = re.compile(
    r"^(?P<name>.*?) ?<(?P<email>[^<>]*)> (?P<seconds>-?\d+) (?P<offset>[+-]\d{4})$"
)


def _person(text: str) -> Person:
    match = _PERSON.match(text)
    if match is None:
        return Person(text, "", datetime.fromtimestamp(0, UTC))
    offset = match["offset"]
    minutes = int(offset[1:3]) * 60 + int(offset[3:5])
    zone = timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))
    try:
        when = datetime.fromtimestamp(int(match["seconds"]), zone)
    except (OverflowError, OSError, ValueError):
        when = datetime.fromtimestamp(0, UTC)
    return Person(match["name"], match["email"], when)


def is_full_oid(text: str) -> bool:
    return bool(_FULL_OID.fullmatch(text))
