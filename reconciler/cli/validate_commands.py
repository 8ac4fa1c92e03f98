"""CLI: `reconciler validate`, schemas and cross-file rules of the working tree."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from reconciler.cli import output
from reconciler.cli.errors import EXIT_FAILED, EXIT_OK, reported
from reconciler.cli.options import command_with_examples, format_option, repo_option
from reconciler.errors import UsageError
from reconciler.layout import meant_path, place
from reconciler.printable import printable
from reconciler.validate import validate_snapshot
from reconciler.worktree import find_root, read_worktree, require_worktree


@command_with_examples(
    ("The whole working tree, as the pre-commit hook runs it", "reconciler validate"),
    (
        "One plan; the rest of the repository is its context",
        "reconciler validate plans/2026-11-qa-release.yaml",
    ),
    ("In a GitHub workflow: annotations on the files", "reconciler validate --format github"),
)
@repo_option
@format_option(*output.FORMATS_WITH_GITHUB)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate(repo: Path | None, output_format: str, paths: tuple[Path, ...]) -> None:
    """Check the working tree: schemas and cross-file rules.

    Prints `file:line:col: message` for every finding, with a hint on how to
    fix it. With PATHS (files or folders), reports only on those; the rest
    still serve as context, and a file that is not configuration (README.md,
    plans/.gitkeep) is skipped with a note. A relative PATH is taken from the
    current directory when that is inside the repository, else from the
    repository's root (so `--repo DIR plans/x.yaml` works from anywhere); a
    PATH outside the repository is a usage error, as is a folder outside any
    Git repository that holds no configuration. Exit 0 when valid, 1 with
    findings, 2 on usage errors.
    """
    with reported(), _without_cycle_collection():
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
        report = validate_snapshot(read_worktree(root), only)
        output.emit_report(report, output_format)
        if skipped:
            click.echo(_skipped_note(skipped), err=True)
    raise SystemExit(EXIT_OK if report.valid else EXIT_FAILED)


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


_NAMED_SKIPPED = 5


def _skipped_note(skipped: list[str]) -> str:
    shown = ", ".join(printable(relative) for relative in skipped[:_NAMED_SKIPPED])
    if len(skipped) > _NAMED_SKIPPED:
        shown += f" and {len(skipped) - _NAMED_SKIPPED} more"
    return f"note: not configuration, so not validated: {shown}"
