"""App: `reconciler validate`'s call, the files a user named, validated in their repository.

The rest of the application layer is `app`; this one never loads Git or the history
modules, which keeps a pre-commit hook's start-up short.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from msgspec import Struct

from reconciler.adapters.worktree import find_root, read_worktree, require_worktree
from reconciler.core.errors import UsageError
from reconciler.core.layout import meant_path, place
from reconciler.core.validate import Report, validate_snapshot


class Validation(Struct, frozen=True):
    """The report on the files named (all, when none), and those that are not configuration."""

    report: Report
    skipped: tuple[str, ...]  # repository-relative paths, not validated

    @property
    def valid(self) -> bool:
        return self.report.valid


def validate_paths(repo: Path | None, paths: tuple[Path, ...]) -> Validation:
    """Validate the working tree of `repo` (default: around the current directory),
    reporting only on `paths` when some are named; the rest still serve as context."""
    with _without_cycle_collection():
        root = find_root(repo or Path.cwd())
        require_worktree(root)
        # Relative PATHs start in the current directory when it is inside the
        # repository (as git's do), else at the repository's root.
        here = Path.cwd().resolve()
        base = here if here.is_relative_to(root.resolve()) else None
        named = [_repo_relative(root, path, base) for path in paths]
        skipped = [relative for relative in named if not _is_configuration(root, relative)]
        ignored = set(skipped)
        only = [relative for relative in named if relative not in ignored] if paths else None
        if only is not None and "" in only:
            only = None
        return Validation(validate_snapshot(read_worktree(root), only), tuple(skipped))


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Pause Python's cyclic garbage collector, then restore it as it was.

    Validating allocates a few hundred thousand objects (values, paths,
    positions), none of them in a reference cycle and all alive until the
    report: the collector would walk them again and again and free nothing,
    about a tenth of `reconciler validate`'s time.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _repo_relative(root: Path, path: Path, base: Path | None) -> str:
    """`path` as a POSIX path relative to `root`; a relative one starts at `base`, else `root`.

    The folders leading to it are resolved, the path itself is not: a symlink
    named on the command line is reported as the symlink it is (the
    configuration refuses them), not validated as the file it points to.
    """
    full = (base or root) / path
    # '.', '/' and 'plans/..' have no name of their own to keep: resolve them whole.
    located = full.resolve() if full.name in ("", "..") else full.parent.resolve() / full.name
    if not os.path.lexists(located):
        from_root = base is None and not path.is_absolute()
        raise UsageError(
            f"{path} does not exist",
            hint=f"run from outside the repository, a relative PATH starts at its root, {root}"
            if from_root
            else f"a relative PATH starts at the current directory, {base}"
            if base is not None and not path.is_absolute()
            else "check the path",
        )
    try:
        relative = located.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(
            f"{path} is outside the repository {root}",
            hint="name a file or folder inside it, or pass --repo with the repository that "
            "holds it",
        ) from None
    return "" if relative == "." else relative


def _is_configuration(root: Path, relative: str) -> bool:
    """Whether validate has anything to say about `relative`: the repository or a folder
    in it, a file the reconciler reads, one it refuses (plans/x.yml, a nested plan), or one
    it warns of (plan/x.yaml, `layout.meant_path`).

    Anything else (README.md, .github/workflows/*.yml, plans/.gitkeep and other dotfiles
    in the configuration's folders) is not: a script that names every changed file must
    not fail on them.
    """
    if relative == "":
        return True
    placement = place(relative)
    return (
        placement.kind is not None
        or placement.misplaced is not None
        or meant_path(relative) is not None
        or (root / relative).is_dir()
    )
