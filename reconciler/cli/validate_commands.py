"""CLI: `reconciler validate`, schemas and cross-file rules of the working tree."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
from pathlib import Path

import click

from reconciler.cli import output
from reconciler.cli.errors import Outcome
from reconciler.cli.options import command_with_examples, format_option, repo_option
from reconciler.cli.reporter import reporter_for


@command_with_examples(
    ("The whole working tree, as the pre-commit hook runs it", "reconciler validate"),
    (
        "One plan; the rest of the repository is its context",
        "reconciler validate plans/2026-11-qa-release.yaml",
    ),
    ("In a GitHub workflow: annotations on the files", "reconciler validate --format github"),
    reports="validation",
)
@repo_option
@format_option(*output.FORMATS_WITH_GITHUB)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate(repo: Path | None, output_format: str, paths: tuple[Path, ...]) -> Outcome:
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
    from reconciler.app.validating import validate_paths

    result = validate_paths(repo, paths)
    reporter_for(output_format).validation(result)
    return Outcome.OK if result.valid else Outcome.FAILED
