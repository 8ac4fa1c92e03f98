"""The working tree as the reconciler reads it (an edge: file-system access).

Called by `validate` for `reconciler validate`, which checks what a person is
about to commit. `verify` and `apply` never read the working tree: they read
committed trees through the git adapter.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from reconciler.errors import UsageError
from reconciler.layout import READ_DIRS, TEAMS_FILE, place
from reconciler.loader import MAX_FILE_BYTES
from reconciler.model import Finding, Snapshot


def read_worktree(root: Path) -> Snapshot:
    """Every configuration file under `root`, refusing symlinks and submodules."""
    files: dict[str, bytes] = {}
    refused: list[Finding] = []

    def refuse(path: str, message: str, hint: str) -> None:
        refused.append(Finding(path, 1, 1, message, hint))

    def read(path: str) -> None:
        full = root / path
        try:
            info = full.lstat()
        except FileNotFoundError:
            return
        except OSError as exc:
            refuse(path, f"cannot read: {exc.strerror}", "check the file's permissions")
            return
        if stat.S_ISLNK(info.st_mode):
            refuse(
                path, "symlinks are refused in the configuration", "replace it with the file itself"
            )
            return
        if stat.S_ISDIR(info.st_mode):
            if path == TEAMS_FILE:
                refuse(path, "teams.yaml is a directory, not a file", "replace it with the file")
                return
            if (full / ".git").exists():
                refuse(
                    path, "submodules are refused in the configuration", "vendor the files instead"
                )
                return
            for entry in sorted(os.listdir(full)):
                read(f"{path}/{entry}")
            return
        if not stat.S_ISREG(info.st_mode):
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
            with full.open("rb") as handle:
                # One byte over the limit is enough for the loader to refuse it.
                files[path] = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            refuse(path, f"cannot read: {exc.strerror}", "check the file's permissions")

    if (root / ".gitmodules").exists():
        refuse(
            ".gitmodules", "submodules are refused in the configuration", "vendor the files instead"
        )
    read(TEAMS_FILE)
    for directory in READ_DIRS:
        read(directory)
    return Snapshot(files=files, refused=tuple(refused))


def find_root(start: Path) -> Path:
    """The repository containing `start` (the nearest folder with `.git`), else `start` itself."""
    start = start.resolve()
    if not start.is_dir():
        raise UsageError(f"{start} is not a directory")
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start
