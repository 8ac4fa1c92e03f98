"""CLI: `reconciler approve`, `deploy` and `cancel`, the commits people make, checked up front."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler import actions
from reconciler.actions import Made
from reconciler.cli.errors import EXIT_OK, reported
from reconciler.cli.options import (
    branch_option,
    command_with_examples,
    format_option,
    repo_option,
    state_dir_option,
)
from reconciler.cli.output import FORMATS, emit_json
from reconciler.cli.shared import session_for
from reconciler.session import Session


def _needs_work_tree(session: Session) -> None:
    """Refuse a bare repository before the history walk, not when `git commit` fails after it.

    Each action ends in `git commit`, which needs a working tree; its own
    failure would be blamed on the git identity and signing setup.
    """
    session.repo.work_tree()


def _emit(made: Made, session: Session, output_format: str) -> None:
    if output_format == "json":
        emit_json(
            {
                "kind": made.kind,
                "commit": made.commit,
                "plan": made.plan.path,
                "blob": made.plan.blob,
                "environment": made.environment,
                "actor": made.actor,
            }
        )
        return
    verbs = {
        "approve": "approved",
        "deploy": "triggered",
        "retry": "asked to retry",
        "cancel": "cancelled",
        "uncancel": "un-cancelled",
    }
    click.echo(
        f"{made.actor} {verbs[made.kind]} {made.plan.path}@{made.plan.blob[:12]} "
        f"for {made.environment} in commit {made.commit[:12]}"
    )
    next_step = actions.still_to_do(session)
    if next_step is not None:
        click.echo(next_step)


@command_with_examples(
    ("Approve the QA release as it is at HEAD", "reconciler approve 2026-11-qa-release"),
)
@click.argument("plan")
@repo_option
@branch_option
@state_dir_option
@format_option(*FORMATS)
def approve(
    plan: str, repo: Path | None, branch: str | None, state_dir: Path | None, output_format: str
) -> None:
    """Approve PLAN as it is at HEAD: an empty commit bound to its exact content.

    Refused up front (exit 1) when the approval could not count: you do not
    hold plan.approve on the plan's target, edited the plan yourself (on main
    or on HEAD's branch), already approved this version, or it already ran.
    """
    with reported(), session_for(repo, branch, state_dir) as session:
        _needs_work_tree(session)
        _emit(actions.approve(session, plan), session, output_format)
    raise SystemExit(EXIT_OK)


@command_with_examples(
    ("Trigger the QA release, on main", "reconciler deploy 2026-11-qa-release"),
    (
        "Retry its first run, recorded interrupted",
        "reconciler deploy 2026-11-qa-release --retry 2026-11-qa-release.1",
    ),
)
@click.argument("plan")
@click.option("--retry", "retry_run", metavar="RUN", help="Retry RUN, a run recorded interrupted.")
@repo_option
@branch_option
@state_dir_option
@format_option(*FORMATS)
def deploy(
    plan: str,
    retry_run: str | None,
    repo: Path | None,
    branch: str | None,
    state_dir: Path | None,
    output_format: str,
) -> None:
    """Trigger PLAN as it is at HEAD (or retry an interrupted run).

    Makes an empty `Deploy-Plan:` (or `Retry-Run:`) commit on the followed
    branch (main), which HEAD must be. Refused up front (exit 1) when you do
    not hold plan.deploy on the plan's target, the version already ran (an
    interrupted run is retried with --retry), or the run to retry was not
    interrupted.
    """
    with reported(), session_for(repo, branch, state_dir) as session:
        _needs_work_tree(session)
        _emit(actions.deploy(session, plan, retry_run), session, output_format)
    raise SystemExit(EXIT_OK)


@command_with_examples(
    ("Cancel the QA release", "reconciler cancel 2026-11-qa-release"),
    ("Make it ready again", "reconciler cancel 2026-11-qa-release --undo"),
)
@click.argument("plan")
@click.option("--undo", is_flag=True, help="Un-cancel: set the state back to ready.")
@repo_option
@branch_option
@state_dir_option
@format_option(*FORMATS)
def cancel(
    plan: str,
    undo: bool,
    repo: Path | None,
    branch: str | None,
    state_dir: Path | None,
    output_format: str,
) -> None:
    """Cancel PLAN (state: cancelled), or un-cancel it with --undo.

    A run in progress is not interrupted; the next pass skips the plan.
    Refused up front (exit 1) without plan.deploy on the plan's target. The
    commit changes the state of the plan as committed at HEAD, nothing else;
    it is refused (exit 2) while the plan's file has uncommitted changes.
    """
    with reported(), session_for(repo, branch, state_dir) as session:
        _needs_work_tree(session)
        _emit(actions.cancel(session, plan, undo=undo), session, output_format)
    raise SystemExit(EXIT_OK)
