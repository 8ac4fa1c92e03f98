"""CLI: `reconciler plan`, what `apply` would do now, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from reconciler.cli.errors import EXIT_OK, reported
from reconciler.cli.options import (
    branch_option,
    command_with_examples,
    driver_root_option,
    format_option,
    read_remote_option,
    repo_option,
    state_dir_option,
)
from reconciler.cli.output import FORMATS, emit_json
from reconciler.cli.shared import reading_session
from reconciler.decide import Decision, deployed_versions, executable
from reconciler.drift import DriftReport, find_drift
from reconciler.drivers import load_driver
from reconciler.layout import place
from reconciler.printable import printable
from reconciler.session import Session

STATUS_COLOURS = {
    "executable": "green",
    "waiting": "yellow",
    "refused": "red",
    "done": "blue",
    "cancelled": "white",
}


def decision_json(decision: Decision, position: int | None) -> dict[str, Any]:
    return {
        "plan": decision.path,
        "name": decision.plan.name if decision.plan else None,
        "blob": decision.blob,
        "environment": decision.environment,
        "status": decision.status,
        "position": position,
        "reasons": list(decision.reasons),
        "waits": [
            {
                "what": wait.what,
                "text": wait.text,
                "until": wait.until.isoformat() if wait.until else None,
            }
            for wait in decision.waits
        ],
        "approvers": list(decision.approvers),
        "triggered_by": decision.triggered_by,
        "run": (
            {
                "id": decision.run.id,
                "result": decision.run.result,
                "environment": decision.run.environment,
            }
            if decision.run
            else None
        ),
        "retry_of": decision.retry_of,
        "notes": list(decision.notes),
    }


def _queue_positions(decisions: tuple[Decision, ...]) -> dict[str, int]:
    """Each executable plan's place in its environment's queue (1 runs next)."""
    return {
        decision.path: index
        for queue in executable(decisions).values()
        for index, decision in enumerate(queue, start=1)
    }


def plan_json(decisions: tuple[Decision, ...], drift: DriftReport) -> dict[str, Any]:
    positions = _queue_positions(decisions)
    return {
        "plans": [decision_json(d, positions.get(d.path)) for d in decisions],
        "drift": [
            {
                "environment": item.environment,
                "application": item.application,
                "recorded": item.recorded,
                "current": item.current,
            }
            for item in drift.drift
        ],
        "drift_notes": list(drift.notes),
    }


def emit_plan(
    decisions: tuple[Decision, ...],
    drift: DriftReport,
    output_format: str,
    branch: str = "the branch",
) -> None:
    if output_format == "json":
        emit_json(plan_json(decisions, drift))
        return
    positions = _queue_positions(decisions)
    if not decisions:
        click.echo(f"no plans on {printable(branch)}")
    for decision in decisions:
        status = click.style(f"{decision.status:<10}", fg=STATUS_COLOURS[decision.status])
        where = f" -> {decision.environment}" if decision.environment else ""
        order = (
            f" (#{positions[decision.path]} to run{where})" if decision.path in positions else where
        )
        click.echo(f"{status} {printable(decision.path)}@{decision.blob[:12]}{order}")
        for reason in decision.reasons:
            click.echo(f"             {printable(reason)}")
        for note in decision.notes:
            click.echo(click.style(f"             note: {printable(note)}", dim=True))
    for item in drift.drift:
        click.echo(click.style(f"drift      {printable(item.text())}", fg="magenta"))
    for note in drift.notes:
        click.echo(click.style(f"drift      note: {printable(note)}", dim=True))


def uncommitted_note(session: Session) -> str | None:
    """`plan` reads the branch's commits: which plan files the working tree holds that it
    does not see, if any (a plan written and not committed is no plan yet)."""
    pending = [
        f"{printable(path)} ({how})"
        for path, how in session.repo.uncommitted("plans")
        if place(path).kind == "plan"
    ]
    if not pending:
        return None
    these = "this plan file is" if len(pending) == 1 else "these plan files are"
    return (
        f"note: plan reads what is committed on {printable(session.branch)}, and {these} "
        f"not committed: {', '.join(pending)}"
    )


@command_with_examples(
    ("What apply would do now with main's plans, and what each waits for", "reconciler plan"),
    ("Your branch's plans, as if the branch were main", "reconciler plan --branch my-plan"),
    name="plan",
)
@repo_option
@branch_option
@read_remote_option
@state_dir_option
@driver_root_option
@format_option(*FORMATS)
def plan_command(
    repo: Path | None,
    branch: str | None,
    remote: str | None,
    state_dir: Path | None,
    driver_root: Path | None,
    output_format: str,
) -> None:
    """What `apply` would do now: every plan on the branch and its state.

    executable (and the order runs will take), waiting (for approvals by
    which role, a trigger by whom, a deploy window, a promotion), refused
    (why), done (which run), cancelled; and drift, where a driver reports
    another version than deployments/ records (a note names the environment
    file of a driver that cannot be asked). Exit 0.
    """
    with reported(), reading_session(repo, branch, remote, state_dir) as session:
        note = uncommitted_note(session)
        if note is not None:
            click.echo(note, err=True)
        decisions = session.decisions()
        assert session.walked is not None
        root = driver_root or session.store.directory / "releases"
        drift = find_drift(
            session.walked.policy(),
            deployed_versions(session.walked.effective, session.repo.read_blob),
            lambda environment: load_driver(environment.driver, root),
        )
        emit_plan(decisions, drift, output_format, session.branch)
    raise SystemExit(EXIT_OK)
