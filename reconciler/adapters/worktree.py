"""Adapter, files: the working tree as the reconciler reads it.

Called by `validate` for `reconciler validate`, which checks what a person is
about to commit. `verify` and `apply` never read the working tree: they read
committed trees through the git adapter.

Paths are plain strings and directories are listed with `os.scandir`, whose
entries know their own type: a repository of 2,000 plans is read without a
`Path` object or an `lstat` call per file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.errors import UsageError
from reconciler.core.layout import READ_DIRS, TEAMS_FILE, meant_folder, meant_path, place

# Every command finds its repository here (`find_root`); only those that read the
# working tree load the loader and the model.
if TYPE_CHECKING:
    from reconciler.core.model import Finding, Snapshot


def read_worktree(root: Path) -> Snapshot:
    """Every configuration file under `root`, refusing symlinks and submodules."""
    from reconciler.core.model import Finding, Snapshot  # noqa: PLC0415

    files: dict[str, bytes] = {}
    refused: list[Finding] = []
    base = os.fspath(root)

    def refuse(path: str, message: str, hint: str) -> None:
        refused.append(Finding(path, 1, 1, message, hint))

    def read(path: str, entry: os.DirEntry[str] | None = None) -> None:
        """Read or refuse `path`; `entry` is its directory entry when a listing found it."""
        full = os.path.join(base, path)
        try:
            if entry is None:
                mode = os.lstat(full).st_mode
            elif entry.is_symlink():
                mode = stat.S_IFLNK
            elif entry.is_dir(follow_symlinks=False):
                mode = stat.S_IFDIR
            elif entry.is_file(follow_symlinks=False):
                mode = stat.S_IFREG
            else:
                mode = entry.stat(follow_symlinks=False).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            refuse(path, f"cannot read: {exc.strerror}", "check the file's permissions")
            return
        if stat.S_ISLNK(mode):
            refuse(
                path, "symlinks are refused in the configuration", "replace it with the file itself"
            )
            return
        if stat.S_ISDIR(mode):
            if path == TEAMS_FILE:
                refuse(path, "teams.yaml is a directory, not a file", "replace it with the file")
                return
            if os.path.exists(os.path.join(full, ".git")):
                refuse(
                    path, "submodules are refused in the configuration", "vendor the files instead"
                )
                return
            try:
                with os.scandir(full) as listing:
                    entries = sorted(listing, key=lambda child: child.name)
            except OSError as exc:
                refuse(path, f"cannot read: {exc.strerror}", "check the folder's permissions")
                return
            for child in entries:
                read(f"{path}/{child.name}", child)
            return
        if not stat.S_ISREG(mode):
            refuse(path, "not a regular file", "remove it")
            return
        if path in READ_DIRS:
            refuse(
                path,
                f"{path} is a file, so nothing in {path}/ is read",
                f"{path}/ is a directory of files; move this file into it",
            )
            return
        placement = place(path)
        if placement.misplaced:
            refuse(
                path,
                f"the reconciler never reads this file: {placement.misplaced}",
                "move or rename it",
            )
            return
        if placement.kind is None or placement.kind == "log":
            return
        try:
            files[path] = _read_head(full)
        except OSError as exc:
            refuse(path, f"cannot read: {exc.strerror}", "check the file's permissions")

    if os.path.exists(os.path.join(base, ".gitmodules")):
        refuse(
            ".gitmodules", "submodules are refused in the configuration", "vendor the files instead"
        )
    read(TEAMS_FILE)
    for directory in READ_DIRS:
        read(directory)
    refused.extend(_misplaced(base))
    return Snapshot(files=files, refused=tuple(refused))


def _misplaced(base: str) -> list[Finding]:
    """Warnings for YAML files the reconciler never reads although they look meant as
    configuration (`plan/x.yaml`, `teams.yml`): read nowhere, they would be ignored
    silently. Only the top level and the folders whose names are near misses are listed."""
    from reconciler.core.model import Finding  # noqa: PLC0415

    found: list[str] = []
    try:
        with os.scandir(base) as listing:
            top = sorted(listing, key=lambda entry: entry.name)
        for entry in top:
            if entry.is_file(follow_symlinks=False):
                found.append(entry.name)
            elif entry.is_dir(follow_symlinks=False) and meant_folder(entry.name):
                with os.scandir(entry.path) as children:
                    found += sorted(f"{entry.name}/{child.name}" for child in children)
    except OSError:
        return []  # what cannot be listed is not configuration either
    return [
        Finding(
            path,
            1,
            1,
            f"the reconciler never reads this file; is it meant as {target}?",
            f"move it to {target}, or out of the way",
            severity="warning",
        )
        for path in found
        if (target := meant_path(path)) is not None
    ]


def _read_head(full: str) -> bytes:
    """The file's bytes, at most one over `MAX_FILE_BYTES` (enough for the loader to refuse it)."""
    from reconciler.core.documents import MAX_FILE_BYTES  # noqa: PLC0415

    with open(full, "rb", buffering=0) as handle:
        # Ask for the size the file has: `read(MAX_FILE_BYTES + 1)` would
        # allocate 4 MiB for every small file, a third of the time of reading them.
        data = handle.read(min(os.fstat(handle.fileno()).st_size, MAX_FILE_BYTES) + 1)
        while len(data) <= MAX_FILE_BYTES:  # until the end, should the file have grown
            more = handle.read(MAX_FILE_BYTES + 1 - len(data))
            if not more:
                break
            data += more
    return data


def find_root(start: Path) -> Path:
    """The repository containing `start` (the nearest folder with `.git`), else `start` itself."""
    start = start.resolve()
    if not start.is_dir():
        what = "is not a directory" if start.exists() else "does not exist"
        raise UsageError(
            f"{start} {what}", hint="pass --repo with the configuration repository's path"
        )
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def require_worktree(root: Path) -> None:
    """Refuse a bare repository (it has history but no files to validate), and a
    folder outside any repository that holds no configuration.

    Without this, `find_root` takes the bare repository for a plain folder,
    nothing in it is a configuration file, and validate would report on an
    empty tree.
    """
    if (root / ".git").exists():
        return
    if (root / "HEAD").is_file() and (root / "objects").is_dir() and (root / "refs").is_dir():
        raise UsageError(
            f"{root} is a bare repository: validate checks a working tree",
            hint=f"validate a clone of it (git clone {root}), "
            f"or check its history with `reconciler verify --repo {root}`",
        )
    # A plain folder holding a configuration (an export, a checkout without .git) is
    # validated as it is; one holding none is the wrong folder, as for every other command.
    if not any(os.path.lexists(root / name) for name in (TEAMS_FILE, *READ_DIRS)):
        raise UsageError(
            f"{root} is not a Git repository",
            hint="pass --repo with the configuration repository's path",
        )
