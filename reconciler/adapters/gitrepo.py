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

import contextlib
import hashlib
import os
import threading
import zlib
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Final

from reconciler.adapters.gitlog import RECORD_SEPARATOR, decoded, parse_log
from reconciler.adapters.gitobjects import CommitInfo, HistoryEntry, Someone, parse_commit
from reconciler.adapters.gitprocess import CatFile, MakeTree, ReadAhead, git_argv, git_environment
from reconciler.adapters.gittrees import tree_entries
from reconciler.adapters.process import Reader, capture
from reconciler.adapters.treechecks import TreeChecks
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
        self._objects_batch = CatFile(path, "--batch")
        self._names_batch = CatFile(path, "--batch-check=%(objectname) %(objecttype)")
        self._sizes_batch = CatFile(path, "--batch-check")
        self._make_tree = MakeTree(path)
        self._tree_checks = TreeChecks(self)

    @classmethod
    def init(cls, path: Path, branch: str) -> GitRepo:
        """A new, empty repository at `path` whose first branch is `branch`."""
        path.mkdir(parents=True, exist_ok=True)
        result = capture(git_argv("init", "-q", "-b", branch, str(path)), env=git_environment())
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
            f"--format={RECORD_SEPARATOR}%H %P",
            tip,
        ]
        if exclude is not None:
            args.append(f"^{exclude}")
        log = Reader(git_argv("log", *args), cwd=self.path, env=git_environment(), answers=False)
        blocks = ReadAhead(log.stdout)
        try:
            yield from parse_log(decoded(blocks))
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


def user_config(key: str) -> str | None:
    """A value of the user's git configuration outside any repository (e.g. user.email)."""
    result = capture(git_argv("config", "--get", key), env=git_environment())
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", "replace").strip() or None
