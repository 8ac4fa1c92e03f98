"""CLI: `reconciler verify` and `reconciler access`, authorisation explained."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.cli import output
from reconciler.cli.errors import Outcome
from reconciler.cli.options import (
    branch_option,
    checkpoint_key_option,
    command_with_examples,
    format_option,
    read_remote_option,
    repo_option,
    state_dir_option,
)
from reconciler.cli.reporter import reporter_for

if TYPE_CHECKING:
    from reconciler.app.authorise import Progress


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """A progress bar on a terminal, nothing on a pipe."""
    if not output.on_a_terminal(sys.stderr):
        yield lambda done, total: None
        return
    bar: list[object] = []

    def update(done: int, total: int) -> None:
        if not bar and total >= 50:
            bar.append(click.progressbar(length=total, label=label, file=sys.stderr))
            bar[0].__enter__()  # type: ignore[attr-defined]
        if bar:
            bar[0].update(1)  # type: ignore[attr-defined]

    try:
        yield update
    finally:
        if bar:
            bar[0].__exit__(None, None, None)  # type: ignore[attr-defined]


@command_with_examples(
    (
        "Every landing on main since the trust anchor; exit 1 if one is refused",
        "reconciler verify",
    ),
    ("Every landing, authorised or not, as JSON", "reconciler verify --all --format json"),
    (
        "After a history rewrite: trust REV, a commit signed by a settings user",
        "reconciler verify --re-anchor REV",
    ),
    reports="verification",
)
@repo_option
@branch_option
@read_remote_option
@state_dir_option
@click.option(
    "--from",
    "from_rev",
    metavar="REV",
    help="Report landings after REV (default: the trust anchor).",
)
@click.option("--to", "to_rev", metavar="REV", help="Verify up to REV (default: the branch tip).")
@click.option(
    "--trust-anchor",
    metavar="REV",
    help="On the first run, trust REV's tree (default: the branch's root commit).",
)
@click.option(
    "--re-anchor",
    metavar="REV",
    help="After a history rewrite, trust REV anew; it must be signed by a settings user.",
)
@click.option(
    "--all", "list_all", is_flag=True, help="List every landing, not only the refused ones (text)."
)
@click.option(
    "--full",
    is_flag=True,
    help="With a fresh state, walk from the trust anchor: ignore the service's checkpoints.",
)
@checkpoint_key_option
@format_option(*output.FORMATS_WITH_GITHUB)
def verify(
    repo: Path | None,
    branch: str | None,
    remote: str | None,
    state_dir: Path | None,
    from_rev: str | None,
    to_rev: str | None,
    trust_anchor: str | None,
    re_anchor: str | None,
    list_all: bool,
    full: bool,
    checkpoint_keys: tuple[Path, ...],
    output_format: str,
) -> Outcome:
    """Prove from Git history that every landed change was authorised.

    Walks the branch's first-parent chain; each first-parent commit and the
    commits it brought in are judged by the effective policy before them.
    Reports the landings after --from (default: the trust anchor): each refusal
    with the file, the entry, the actor, the permission needed and who holds
    it (--all lists the authorised landings too; JSON always lists every
    one), and where main differs from the effective state. Exit 0 when all
    are authorised, 1 otherwise.
    """
    from reconciler.app import api
    from reconciler.app.api import Source, VerifyRequest

    reporter = reporter_for(output_format)
    request = VerifyRequest(
        from_rev=from_rev,
        to_rev=to_rev,
        trust_anchor=trust_anchor,
        re_anchor=re_anchor,
        # JSON passes every landing's stored verdict through as it is: none is decoded.
        every_verdict=list_all and output_format != "json",
        full=full,
        checkpoint_keys=checkpoint_keys,
    )
    with progress_bar("verifying history") as progress:
        verification = api.verify(
            Source(repo, branch, state_dir, remote), request, progress=progress, note=reporter.note
        )
    reporter.verification(verification, list_all=list_all)
    return Outcome.OK if verification.authorised else Outcome.FAILED


@command_with_examples(
    ("What bob may do where, and why", "reconciler access bob"),
    ("Only in production", "reconciler access bob --env production"),
    name="access",
    reports="access",
)
@click.argument("user")
@repo_option
@branch_option
@read_remote_option
@state_dir_option
@click.option("--env", "environment", metavar="ENV", help="Only this environment.")
@format_option(*output.FORMATS)
def access_command(
    user: str,
    repo: Path | None,
    branch: str | None,
    remote: str | None,
    state_dir: Path | None,
    environment: str | None,
    output_format: str,
) -> Outcome:
    """What USER may do on every environment and application, and why.

    Answers from the effective policy (the last authorised teams.yaml and
    environments/), with the same reasons `verify` and `plan` give.
    """
    from reconciler.app import api
    from reconciler.app.api import Source

    reporter = reporter_for(output_format)
    answer = api.access(
        Source(repo, branch, state_dir, remote), user, environment, note=reporter.note
    )
    reporter.access(answer)
    return Outcome.OK
