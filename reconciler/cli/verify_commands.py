"""CLI: `reconciler verify` and `reconciler access`, authorisation explained."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from reconciler import access
from reconciler.authorise import Progress
from reconciler.cli import output, verify_output
from reconciler.cli.errors import EXIT_FAILED, EXIT_OK, reported
from reconciler.cli.options import (
    branch_option,
    command_with_examples,
    format_option,
    read_remote_option,
    repo_option,
    state_dir_option,
)
from reconciler.cli.shared import reading_session


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """A progress bar on a terminal, nothing on a pipe."""
    if not sys.stderr.isatty():
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
    output_format: str,
) -> None:
    """Prove from Git history that every landed change was authorised.

    Walks the branch's first-parent chain; each first-parent commit and the
    commits it brought in are judged by the effective policy before them.
    Reports the landings after --from (default: the trust anchor): each refusal
    with the file, the entry, the actor, the permission needed and who holds
    it (--all lists the authorised landings too; JSON always lists every
    one), and where main differs from the effective state. Exit 0 when all
    are authorised, 1 otherwise.
    """
    with (
        reported(),
        reading_session(repo, branch, remote, state_dir) as session,
        progress_bar("verifying history") as progress,
    ):
        # Every revision typed is resolved before the walk: a typo stops it before it starts.
        start = session.typed_revision("--from", from_rev) if from_rev else None
        to = session.typed_revision("--to", to_rev) if to_rev else None
        anchor = session.typed_revision("--trust-anchor", trust_anchor) if trust_anchor else None
        if re_anchor:
            trusted = session.typed_revision("--re-anchor", re_anchor)
            result, _ = session.re_anchor(trusted, progress)
        else:
            result, _ = session.authorise(
                to, trust_anchor=anchor, progress=progress, to_name=to_rev
            )
        refused = session.landings_between(start, result.tip, result.judged, refused_only=True)
        ignored = session.ignored_between(start, result.tip, result)
        if output_format == "json":
            verify_output.emit_verification_json(
                result, session.landing_texts(start, result.tip, result.judged), refused, ignored
            )
        else:
            every = session.landing_texts(start, result.tip, result.judged)
            shown = (
                session.landings_between(start, result.tip, result.judged) if list_all else refused
            )
            verify_output.emit_verification(
                result, shown, output_format, list_all=list_all, total=len(every), ignored=ignored
            )
        authorised = not refused
    raise SystemExit(EXIT_OK if authorised else EXIT_FAILED)


@command_with_examples(
    ("What bob may do where, and why", "reconciler access bob"),
    ("Only in production", "reconciler access bob --env production"),
    name="access",
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
) -> None:
    """What USER may do on every environment and application, and why.

    Answers from the effective policy (the last authorised teams.yaml and
    environments/), with the same reasons `verify` and `plan` give.
    """
    with reported(), reading_session(repo, branch, remote, state_dir) as session:
        _, policy = session.authorise()
        assert session.walked is not None
        revoked = session.walked.revoked  # as the walk read it: one read per command
        answer = access.report(
            policy, user, environment, revoked.fingerprints if revoked else frozenset()
        )
        verify_output.emit_access(answer, output_format)
    raise SystemExit(EXIT_OK)
