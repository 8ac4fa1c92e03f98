"""CLI: `reconciler verify-mergeable`, the pull-request check, judging only the pull request."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
from pathlib import Path

import click

from reconciler.cli import output
from reconciler.cli.errors import Outcome
from reconciler.cli.options import (
    checkpoint_key_option,
    command_with_examples,
    format_option,
    repo_option,
    state_dir_option,
)
from reconciler.cli.reporter import reporter_for
from reconciler.cli.verify_commands import progress_bar


@command_with_examples(
    (
        "Your branch, as merging it into main would land it",
        "reconciler verify-mergeable --base main",
    ),
    (
        "In a GitHub workflow on the test merge: annotations at the refused lines",
        "reconciler verify-mergeable --base main --format github",
    ),
    (
        "A comment for the pull request",
        "reconciler verify-mergeable --base main --format markdown > comment.md",
    ),
    name="verify-mergeable",
    reports="merge_check",
)
@click.option(
    "--base",
    required=True,
    metavar="BRANCH",
    help="The branch the pull request merges into: a local branch (in CI, fetch it first: "
    "git fetch origin BRANCH:BRANCH).",
)
@click.option(
    "--head",
    "head",
    default="HEAD",
    metavar="REV",
    help="The pull request's head, or the test merge of it CI checks out (default: HEAD).",
)
@repo_option
@state_dir_option
@click.option(
    "--trust-anchor",
    metavar="REV",
    help="On the first run, trust REV's tree (default: BRANCH's root commit).",
)
@checkpoint_key_option
@format_option(*output.FORMATS_WITH_MARKDOWN)
def verify_mergeable(
    base: str,
    head: str,
    repo: Path | None,
    state_dir: Path | None,
    trust_anchor: str | None,
    checkpoint_keys: tuple[Path, ...],
    output_format: str,
) -> Outcome:
    """Judge what merging the pull request into BRANCH would land, and only that.

    The pull request's commits and their true merge are judged as one landing
    on BRANCH's effective state: its policy and trust anchor, never the pull
    request's, so a grant in it authorises nothing landed with it. A test merge
    that CI checks out (GitHub's refs/pull/N/merge) is taken for its second
    parent, merged again onto BRANCH's tip. Prints each refused change at its
    file and line with who could make it (github: annotations), what the merge
    changes and what each plan would wait for once merged (markdown: a comment
    for the pull request); refusals already on BRANCH are listed apart and do
    not count. Exit 0 when the merge would be authorised whoever merges, 1 when
    not, or when the head does not descend from the trust anchor, brings a root
    commit of its own, or does not merge cleanly.
    """
    from reconciler.app import api
    from reconciler.app.api import Source

    reporter = reporter_for(output_format)
    with progress_bar("verifying the base") as progress:
        check = api.verify_mergeable(
            Source(repo, base, state_dir),
            head,
            trust_anchor,
            progress=progress,
            checkpoint_keys=checkpoint_keys,
            note=reporter.note,
        )
    reporter.merge_check(check)
    return Outcome.OK if check.authorised else Outcome.FAILED
