"""The `reconciler` command: a thin shell over the core.

Each command parses its options, calls one core function, and hands the
result to a reporter in `output`. Errors are turned into messages and exit
codes by `errors.reported`, nowhere else.
"""

from __future__ import annotations

import gc
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import click

from reconciler import __version__
from reconciler.cli import output
from reconciler.cli.errors import EXIT_FAILED, EXIT_OK, reported
from reconciler.cli.options import format_option, repo_option
from reconciler.errors import UsageError
from reconciler.layout import place
from reconciler.validate import validate_snapshot
from reconciler.worktree import find_root, read_worktree

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs.

    `reconciler validate` then never loads Git, SQLite or the history modules,
    which keeps a pre-commit hook's start-up short.
    """

    LAZY: ClassVar[dict[str, str]] = {
        "verify": "reconciler.cli.verify_commands:verify",
        "access": "reconciler.cli.verify_commands:access_command",
        "plan": "reconciler.cli.plan_commands:plan_command",
        "approve": "reconciler.cli.action_commands:approve",
        "deploy": "reconciler.cli.action_commands:deploy",
        "cancel": "reconciler.cli.action_commands:cancel",
        "apply": "reconciler.cli.apply_commands:apply",
        "status": "reconciler.cli.people_commands:status",
        "history": "reconciler.cli.people_commands:history",
        "demo": "reconciler.cli.demo_commands:demo",
        "init": "reconciler.cli.init_commands:init",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.LAZY.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="reconciler")
def main() -> None:
    """GitOps reconciler for deployment plans.

    Plans, environments and role grants are YAML in a Git repository; the
    reconciler proves from Git history who changed, approved and triggered
    each plan, runs what the right people approved, and records every run
    back into the repository as commits.
    """


@main.command()
@repo_option
@format_option(*output.FORMATS_WITH_GITHUB)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate(repo: Path | None, output_format: str, paths: tuple[Path, ...]) -> None:
    """Check the working tree: schemas and cross-file rules.

    Prints `file:line:col: message` for every finding, with a hint on how to
    fix it. With PATHS (files or folders), reports only on those; the rest
    still serve as context. A relative PATH is taken from the current
    directory when that is inside the repository, else from the repository's
    root (so `--repo DIR plans/x.yaml` works from anywhere); a PATH outside
    the repository is a usage error. Exit 0 when valid, 1 with findings, 2 on
    usage errors.
    """
    with reported(), _without_cycle_collection():
        root = find_root(repo or Path.cwd())
        # Relative PATHs start in the current directory when it is inside the
        # repository (as git's do), else at the repository's root.
        here = Path.cwd().resolve()
        base = here if here.is_relative_to(root.resolve()) else None
        only = [_repo_relative(root, path, base) for path in paths] if paths else None
        if only is not None and "" in only:
            only = None
        report = validate_snapshot(read_worktree(root), only)
        output.emit_report(report, output_format)
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
            else None,
        )
    try:
        relative = located.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{path} is outside the repository {root}") from None
    if relative == ".":
        return ""
    placement = place(relative)
    if placement.kind is None and placement.misplaced is None and not (root / relative).is_dir():
        raise UsageError(
            f"{relative} is not a configuration file",
            hint="validate teams.yaml, environments/*.yaml, plans/*.yaml or deployments/*.yaml",
        )
    return relative
