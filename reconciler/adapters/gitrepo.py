"""Adapter, git: the class that talks to Git (the `git` command), and its reading half.

Called by `authorise` (history, blobs, trees), `decide` and `record`. It reads
history in batches, never one subprocess per commit: one `git log --raw -z`
stream per pass for every commit and the paths it changed, and objects
through long-lived `cat-file --batch` processes. It runs git's plumbing
directly (through `process`), not through GitPython: importing GitPython
alone cost every command a tenth of a second, a third of the budget of an
incremental verify, for process handling this module does in a few lines.
Everything it returns is plain data (`CommitInfo`, `Change`). `GitRepo` writes
through `gitwriting.GitWriting` and runs git through `gitrun.GitRunner`, which it inherits.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Mapping
from pathlib import Path

from reconciler.adapters.gitlog import RECORD_SEPARATOR, decoded, parse_log
from reconciler.adapters.gitobjects import CommitInfo, HistoryEntry, parse_commit
from reconciler.adapters.gitprocess import ReadAhead, git_argv, git_environment
from reconciler.adapters.gitrun import NETWORK_TIMEOUT, _Failed, unknown_revision
from reconciler.adapters.gitwriting import GitWriting
from reconciler.adapters.process import Reader, capture
from reconciler.adapters.treechecks import TreeChecks
from reconciler.core.errors import GitError


class GitRepo(GitWriting):
    """A repository opened for reading (and, in `record`, for committing: `GitWriting`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._tree_checks = TreeChecks(self)
        self._shallow_file: Path | None = None  # where git keeps a shallow clone's cut

    @classmethod
    def init(cls, path: Path, branch: str) -> GitRepo:
        """A new, empty repository at `path` whose first branch is `branch`."""
        path.mkdir(parents=True, exist_ok=True)
        result = capture(git_argv("init", "-q", "-b", branch, str(path)), env=git_environment())
        if result.returncode != 0:
            raise GitError(f"git init {path} failed: {result.stderr.strip()}")
        return cls(path)

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- references -------------------------------------------------------

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

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            self._run("merge-base", "--is-ancestor", ancestor, descendant)
        except _Failed as error:
            if error.status == 1:
                return False
            raise GitError(f"git merge-base failed: {error.stderr.strip()}") from None
        return True

    def shallow_cut(self, tip: str, start: str | None) -> list[str]:
        """The commits reachable from `tip` (and not from `start`, if given) that this
        clone holds without their parents (`git clone --depth`): git reads each as a root
        and walks no further, so the history behind it is not here."""
        if self._shallow_file is None:
            named = Path(self._text("rev-parse", "--git-path", "shallow").strip())
            self._shallow_file = named if named.is_absolute() else self.path / named
        try:
            listed = self._shallow_file.read_text(encoding="ascii").split()
        except FileNotFoundError:
            return []  # a whole clone: the common case costs one file lookup
        return [
            commit
            for commit in listed
            if (commit == tip or self.is_ancestor(commit, tip))
            and not (start is not None and (commit == start or self.is_ancestor(commit, start)))
        ]

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

    def root_commits(self, tip: str, *, outside: str | None = None) -> list[str]:
        """Every commit reachable from `tip` that has no parent; with `outside`, only those
        `outside` does not reach (git walks the commits between the two, not the history)."""
        excluded = [f"^{outside}"] if outside is not None else []
        return self._text("rev-list", "--max-parents=0", tip, *excluded).split()

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

    # -- the working tree ---------------------------------------------------

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

    # -- trees read whole, and remotes ----------------------------------------

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

    def fetch(self, remote: str, branch: str, *, maintain: bool = True) -> str:
        """Fetch the remote's branch; its commit id.

        A record is built on what a fetch brings and pushed at once, and loses
        its race to any push in between: the fetch does no more than it must (no
        check of forced updates, which walks history; no FETCH_HEAD). Without
        `maintain`, git's housekeeping is left to `maintain()`: it is a process
        of its own after the fetch, a third of a fetch's time.
        """
        try:
            self._run(
                "-c",
                f"maintenance.auto={str(maintain).lower()}",
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-show-forced-updates",
                "--no-write-fetch-head",
                remote,
                f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}",
                timeout=NETWORK_TIMEOUT,
            )
        except _Failed as error:
            raise GitError(
                f"git fetch {remote} failed: {error.stderr.strip()}",
                hint="check the remote's URL and your credentials",
            ) from None
        return self.ref_commit(f"refs/remotes/{remote}/{branch}")

    def ref_commit(self, ref: str) -> str:
        """The commit a full ref name points at, read by the long-lived `cat-file` (git reads
        the ref afresh for each question); GitError when it names none.

        After a fetch, a record is built on this commit and pushed at once: a
        `rev-parse` here was a process inside the window another push can land in.
        """
        [(parts, _)] = self._names_batch.ask([f"{ref}^{{commit}}"])
        if len(parts) != 2 or parts[1] != b"commit":
            raise unknown_revision(ref)
        return parts[0].decode()

    def maintain(self) -> None:
        """Git's own housekeeping when it is due (`git maintenance run --auto`), as a fetch
        runs it: the only `gc` the reconciler's clone gets."""
        self._run("maintenance", "run", "--auto", "--quiet", timeout=NETWORK_TIMEOUT)

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

    def top_entries(self, commit: CommitInfo, names: Collection[str]) -> dict[str, tuple[str, str]]:
        """The entries `names` of `commit`'s root tree: name -> (mode, id), absent ones left out."""
        entries = self._tree_entries(commit.tree)
        return {name: entries[name] for name in names if name in entries}

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


def user_config(key: str) -> str | None:
    """A value of the user's git configuration outside any repository (e.g. user.email)."""
    result = capture(git_argv("config", "--get", key), env=git_environment())
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", "replace").strip() or None
