"""CLI: `reconciler approve`, `deploy`, `cancel`, `rollback`, `lock` and `unlock`, the commits
people make, checked up front."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
from pathlib import Path

import click

from reconciler.cli.errors import Outcome
from reconciler.cli.options import (
    branch_option,
    command_with_examples,
    format_option,
    repo_option,
    state_dir_option,
)
from reconciler.cli.output import FORMATS
from reconciler.cli.reporter import reporter_for


@command_with_examples(
    ("Approve the QA release as it is at HEAD", "reconciler approve 2026-11-qa-release"),
    reports="acted",
)
@click.argument("plan")
@repo_option
@branch_option
@state_dir_option
@format_option(*FORMATS)
def approve(
    plan: str, repo: Path | None, branch: str | None, state_dir: Path | None, output_format: str
) -> Outcome:
    """Approve PLAN as it is at HEAD: an empty commit bound to its exact content.

    Refused up front (exit 1) when the approval could not count: you do not
    hold plan.approve on the plan's target, edited the plan yourself (on main
    or on HEAD's branch), already approved this version, or it already ran.
    """
    from reconciler.app import api
    from reconciler.app.api import Action, Source

    acted = api.act(Source(repo, branch, state_dir), Action("approve", plan))
    reporter_for(output_format).acted(acted)
    return Outcome.OK


@command_with_examples(
    ("Trigger the QA release, on main", "reconciler deploy 2026-11-qa-release"),
    (
        "Retry its first run, recorded interrupted",
        "reconciler deploy 2026-11-qa-release --retry 2026-11-qa-release.1",
    ),
    reports="acted",
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
) -> Outcome:
    """Trigger PLAN as it is at HEAD (or retry an interrupted run).

    Makes an empty `Deploy-Plan:` (or `Retry-Run:`) commit on the followed
    branch (main), which HEAD must be. Refused up front (exit 1) when you do
    not hold plan.deploy on the plan's target, the version already ran (an
    interrupted run is retried with --retry), or the run to retry was not
    interrupted.
    """
    from reconciler.app import api
    from reconciler.app.api import Action, Source

    acted = api.act(Source(repo, branch, state_dir), Action("deploy", plan, retry=retry_run))
    reporter_for(output_format).acted(acted)
    return Outcome.OK


@command_with_examples(
    ("Cancel the QA release", "reconciler cancel 2026-11-qa-release"),
    ("Make it ready again", "reconciler cancel 2026-11-qa-release --undo"),
    reports="acted",
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
) -> Outcome:
    """Cancel PLAN (state: cancelled), or un-cancel it with --undo.

    A run in progress is not interrupted; the next pass skips the plan.
    Refused up front (exit 1) without plan.deploy on the plan's target. The
    commit changes the state of the plan as committed at HEAD, nothing else;
    it is refused (exit 2) while the plan's file has uncommitted changes.
    """
    from reconciler.app import api
    from reconciler.app.api import Action, Source

    acted = api.act(Source(repo, branch, state_dir), Action("cancel", plan, undo=undo))
    reporter_for(output_format).acted(acted)
    return Outcome.OK


@command_with_examples(
    ("Roll QA back to what ran before", "reconciler rollback quality-assurance"),
    (
        "Roll one application back to a named version",
        "reconciler rollback production ecommerce --to 1.4.0",
    ),
    reports="acted",
)
@click.argument("environment")
@click.argument("applications", nargs=-1)
@click.option(
    "--to", "to", metavar="VERSION", help="The version to go back to (one application only)."
)
@repo_option
@branch_option
@state_dir_option
@format_option(*FORMATS)
def rollback(
    environment: str,
    applications: tuple[str, ...],
    to: str | None,
    repo: Path | None,
    branch: str | None,
    state_dir: Path | None,
    output_format: str,
) -> Outcome:
    """Write and commit a rollback plan into ENVIRONMENT.

    The plan redeploys, for each APPLICATION (default: every one running
    there), the version that ran before the running one, or --to VERSION, as
    the finish records show they ran there. A version that never ran there is
    refused. It skips the promotion order, needs the environment's
    gates.rollback_approvals (none unless listed), and windows and freezes
    hold it unless gates.rollback_ignores_windows is true. It is a plan like
    any other: push it, then a plan.deploy holder triggers it. Refused up
    front (exit 1) without plan.edit on ENVIRONMENT for those applications.
    """
    from reconciler.app import api
    from reconciler.app.api import Action, Source

    action = Action("rollback", environment, applications=applications, to=to)
    acted = api.act(Source(repo, branch, state_dir), action)
    reporter_for(output_format).acted(acted)
    return Outcome.OK


@command_with_examples(
    (
        "Stop the line in production",
        "reconciler lock production -m 'checkout errors since 14:02, investigating'",
    ),
    ("Only one application", "reconciler lock production --app ecommerce -m 'bad migration'"),
    reports="locked",
)
@click.argument("environment")
@click.option("--app", "application", metavar="APP", help="Lock only APP in ENVIRONMENT.")
@click.option("-m", "--message", "why", required=True, help="Why: plan, status and history say it.")
@repo_option
@branch_option
@state_dir_option
@format_option(*FORMATS)
def lock(
    environment: str,
    application: str | None,
    why: str,
    repo: Path | None,
    branch: str | None,
    state_dir: Path | None,
    output_format: str,
) -> Outcome:
    """Lock ENVIRONMENT (or one application in it): nothing starts there until unlocked.

    Makes an empty signed `Lock:` commit. It counts when signed by a
    plan.deploy holder on ENVIRONMENT or a settings user; refused up front
    (exit 1) otherwise, or when git would not sign it, or it is locked
    already. A run in progress finishes; plans wait, saying who locked it,
    when and why.
    """
    from reconciler.app import api
    from reconciler.app.api import Source

    acted = api.lock(Source(repo, branch, state_dir), environment, application, why, unlock=False)
    reporter_for(output_format).locked(acted)
    return Outcome.OK


@command_with_examples(
    ("Lift the production lock", "reconciler unlock production -m 'fixed in 1.4.1'"),
    reports="locked",
)
@click.argument("environment")
@click.option("--app", "application", metavar="APP", help="Unlock APP in ENVIRONMENT.")
@click.option("-m", "--message", "why", default="", help="Why (optional).")
@repo_option
@branch_option
@state_dir_option
@format_option(*FORMATS)
def unlock(
    environment: str,
    application: str | None,
    why: str,
    repo: Path | None,
    branch: str | None,
    state_dir: Path | None,
    output_format: str,
) -> Outcome:
    """Lift the lock on ENVIRONMENT (or on one application in it).

    Makes an empty signed `Unlock:` commit, which counts on the same terms
    as a lock (a plan.deploy holder on ENVIRONMENT or a settings user);
    refused up front (exit 1) when it would not count or nothing is locked.
    """
    from reconciler.app import api
    from reconciler.app.api import Source

    acted = api.lock(Source(repo, branch, state_dir), environment, application, why, unlock=True)
    reporter_for(output_format).locked(acted)
    return Outcome.OK
