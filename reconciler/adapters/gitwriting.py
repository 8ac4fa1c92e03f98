"""Adapter, git: the writing half of `GitRepo`: commits made by git, objects and trees
written directly, references moved and pushed.

Called by `record`, `init` and `demo` through `GitRepo`, which inherits it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from msgspec import Struct

from reconciler.adapters.gitobjects import Someone
from reconciler.adapters.gitrun import NETWORK_TIMEOUT, GitRunner, _Failed
from reconciler.core.errors import GitError

_CHUNK: Final = 1 << 16  # bytes read at a time into a blob
_SCRATCH: Final = "reconciler-"  # how a scratch folder's name starts (`GitWriting.scratch`)


class PushRejected(Struct, frozen=True):
    """Why a remote did not take a push: `status`, git's own summary of the branch's update
    (its porcelain line, "[rejected] (fetch first)"); `said`, all that git and the remote
    said. A remote's hooks write into `said` ("remote: ..."), never into `status`."""

    status: str
    said: str


class GitWriting(GitRunner):
    """What `GitRepo` writes: commits, objects, trees, references, pushes."""

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

    def write_object(self, kind: str, data: bytes) -> str:
        """Store an object as a loose object, as git does (about 0.1 ms, not a process)."""
        if self._object_format != "sha1":
            return (
                self._run("hash-object", "-w", "-t", kind, "--stdin", stdin=data).decode().strip()
            )
        body = f"{kind} {len(data)}".encode() + b"\0" + data
        oid = hashlib.sha1(body, usedforsecurity=False).hexdigest()
        if not os.path.exists(self._loose(oid)):
            made, temporary = self._temporary()
            with os.fdopen(made, "wb") as written:
                written.write(zlib.compress(body, 1))
            self._place(temporary, oid)
        return oid

    def write_blob_file(self, source: Path) -> str:
        """Store the file `source` as a blob, read and compressed a chunk at a time: a
        checkpoint's rows are hundreds of megabytes. The same object `write_object` makes."""
        if self._object_format != "sha1":
            asked = ("hash-object", "-w", "-t", "blob", "--no-filters", "--", str(source))
            return self._run(*asked).decode().strip()
        header = f"blob {source.stat().st_size}".encode() + b"\0"
        named = hashlib.sha1(header, usedforsecurity=False)
        squeeze = zlib.compressobj(1)
        made, temporary = self._temporary()
        with source.open("rb") as read, os.fdopen(made, "wb") as written:
            written.write(squeeze.compress(header))
            for chunk in iter(lambda: read.read(_CHUNK), b""):
                named.update(chunk)
                written.write(squeeze.compress(chunk))
            written.write(squeeze.flush())
        oid = named.hexdigest()
        self._place(temporary, oid)
        return oid

    # Object paths are strings, not `Path`s: pathlib interns every part of a path it
    # parses, and a service writes thousands of objects a day, each named once.
    def _loose(self, oid: str) -> str:
        return os.path.join(self._objects, oid[:2], oid[2:])

    def _temporary(self) -> tuple[int, str]:
        """A new file for an object on its way in, open for writing, and its path: made here,
        never opened if something is there already. Other processes write to the same
        objects (one of the same number, in another container), and a link put there would
        have the object written into what it points at. Named as git names its own, so
        `git prune` removes one a killed writer left."""
        while True:
            temporary = os.path.join(self._objects, f"tmp_obj_{os.urandom(6).hex()}")
            try:
                return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), temporary
            except FileExistsError:
                continue

    def _place(self, temporary: str, oid: str) -> None:
        """Make the compressed object at `temporary` git's object `oid` (kept as it is if
        git has it already)."""
        target = self._loose(oid)
        if os.path.exists(target):
            os.unlink(temporary)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.chmod(temporary, 0o444)
        os.replace(temporary, target)  # readers see the whole object or none

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A folder of this repository's own for files on their way to becoming objects
        (on the same disk as the objects; git leaves unknown folders of its own alone),
        removed with what it holds when the block ends; and the ones killed processes left
        (SIGKILL, the OOM killer: a checkpoint's files, hundreds of megabytes) removed.

        The process using a folder locks it for as long as it does (`flock`, let go by the
        kernel when the process dies), and names it `reconciler-...` only once it holds
        it: a folder of that name whose lock can be taken is one nobody will come back to."""
        # Imported here: the service's checkpoints only.
        import fcntl  # noqa: PLC0415
        import shutil  # noqa: PLC0415
        import tempfile  # noqa: PLC0415

        made = tempfile.mkdtemp(prefix=f".{_SCRATCH}", dir=self._common_dir)
        held = os.open(made, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(held, fcntl.LOCK_EX)
            folder = os.path.join(self._common_dir, os.path.basename(made)[1:])
            os.rename(made, folder)
        except BaseException:
            shutil.rmtree(made, ignore_errors=True)
            os.close(held)
            raise
        try:
            for name in os.listdir(self._common_dir):
                if name.startswith(_SCRATCH) and name != os.path.basename(folder):
                    _remove_if_left(os.path.join(self._common_dir, name))
            yield Path(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            os.close(held)

    def tree_with(self, base_tree: str, files: Mapping[str, bytes]) -> str:
        """`base_tree` with `files` written (path -> content), as a new tree id."""
        written = {path: self.write_object("blob", content) for path, content in files.items()}
        return self.tree_with_blobs(base_tree, written)

    def tree_with_blobs(
        self, base_tree: str, blobs: Mapping[str, str], *, remember: bool = True
    ) -> str:
        """`base_tree` with `blobs` at their paths (path -> blob id), as a new tree id;
        `remember`: as `MakeTree.make`'s, for it and every folder it makes.

        Git makes each tree (`git mktree`); the folders it rewrites are read with
        `tree_entries`, so a malformed one (in a refused landing) is written back
        well-formed, the way the walk reads it, never copied.
        """
        grouped: dict[str, dict[str, str]] = {}
        here: dict[str, str] = {}
        for path, blob in blobs.items():
            head, _, rest = path.partition("/")
            if rest:
                grouped.setdefault(head, {})[rest] = blob
            else:
                here[head] = blob
        made = self._make_tree.made(base_tree)  # well-formed: it made them so
        entries = made if made is not None else self._tree_entries(base_tree)
        for name, blob in here.items():
            entries[name] = ("100644", blob)
        for name, nested in grouped.items():
            mode, oid = entries.get(name, ("40000", ""))
            # A file (or link) where a folder must be is replaced: records write
            # under deployments/ and logs/, which only the reconciler may change,
            # so what stands in the way is a refused change, never effective.
            base = oid if mode == "40000" else ""
            entries[name] = ("40000", self.tree_with_blobs(base, nested, remember=remember))
        return self._make_tree.make(entries, remember=remember)

    def update_ref(self, branch: str, new: str, expected: str) -> bool:
        """Move refs/heads/<branch> from `expected` to `new`, atomically; False if it moved."""
        try:
            self._run("update-ref", f"refs/heads/{branch}", new, expected)
        except GitError:
            return False
        return True

    def push(self, remote: str, commit: str, branch: str) -> PushRejected | None:
        """Fast-forward the remote's branch to `commit`; None when done, else why the remote
        rejected it (someone pushed first, or a hook or branch protection refused it)."""
        pushed = f"{commit}:refs/heads/{branch}"
        try:
            self._run("push", "--porcelain", "--quiet", remote, pushed, timeout=NETWORK_TIMEOUT)
        except _Failed as error:
            output = error.stdout.decode("utf-8", "replace")
            text = f"{output} {error.stderr}"
            if "rejected" in text or "non-fast-forward" in text or "fetch first" in text:
                # The porcelain line: "<flag> TAB <from>:<to> TAB <summary>".
                status = next(
                    (
                        line.split("\t")[2]
                        for line in output.splitlines()
                        if line.count("\t") == 2 and line.split("\t")[1] == pushed
                    ),
                    "",
                )
                return PushRejected(status, " ".join(text.split()))
            raise GitError(f"git push to {remote} failed: {error.stderr.strip()}") from None
        return None  # git moved refs/remotes/<remote>/<branch> along with the push

    def ref_value(self, ref: str) -> str | None:
        """The object `ref` points at, whatever its kind (None: no such ref)."""
        try:
            return self._text("rev-parse", "--verify", "-q", "--end-of-options", ref) or None
        except GitError:
            return None

    def move_ref(self, ref: str, new: str, expected: str | None) -> bool:
        """Move `ref` from `expected` (None: it must not exist) to `new`, atomically; False
        if it moved first."""
        try:
            self._run("update-ref", ref, new, expected or "0" * len(new))
        except _Failed:
            return False
        return True

    def push_ref(self, remote: str, ref: str, replacing: str | None = None) -> bool:
        """Push `ref` to the same name on `remote` as a fast-forward, or in place of what it
        holds there when that is `replacing` (compare-and-swap); False when the remote did
        not take it (someone moved it first, a hook refused it)."""
        lease = [f"--force-with-lease={ref}:{replacing}"] if replacing is not None else []
        try:
            self._run(
                "push",
                "--porcelain",
                "--quiet",
                *lease,
                remote,
                f"{ref}:{ref}",
                timeout=NETWORK_TIMEOUT,
            )
        except _Failed:
            return False
        return True

    def fetch_ref(self, remote: str, ref: str) -> bool:
        """Take `remote`'s `ref` as it is into the same name here; False when it has none."""
        try:
            self._run(
                "fetch", "--quiet", "--no-tags", remote, f"+{ref}:{ref}", timeout=NETWORK_TIMEOUT
            )
        except _Failed:
            return False
        return True

    def follow_worktree(self, branch: str, old: str, new: str) -> None:
        """After moving a checked-out branch's ref, bring the index and files along.

        Best effort: a working tree with conflicting local edits is left alone
        (the commits are safe in the ref; `git status` will show the difference).
        """
        if self.bare or self.head_branch() != branch:
            return
        with contextlib.suppress(GitError):
            self._run("read-tree", "-m", "-u", old, new)


def _remove_if_left(folder: str) -> None:
    """Remove the scratch folder `folder` if no live process holds it (`GitWriting.scratch`);
    a link of that name is left alone, never followed."""
    import fcntl  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    try:
        lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return  # gone already, or not a folder
    try:
        with contextlib.suppress(BlockingIOError):  # else a live process holds it
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(lock)
