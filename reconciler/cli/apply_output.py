"""CLI: reporters for `reconciler apply`, one pass, as text and JSON."""

from __future__ import annotations

from typing import Any

import click

from reconciler.app.passes import PassReport, RunReport
from reconciler.cli.plan_output import decision_json
from reconciler.core.errors import ConfigError
from reconciler.core.printable import printable


def pass_json(report: PassReport) -> dict[str, Any]:
    return {
        "tip": report.tip,
        "dry_run": report.dry_run,
        "shard": None if report.shard is None else list(report.shard),
        "failed": report.failed,
        "landings_verified": len(report.landings),
        "unauthorised_landings": [v.commit for v in report.landings if not v.authorised],
        "runs": [
            {
                "run": run.run,
                "plan": run.plan.path,
                "blob": run.plan.blob,
                "environment": run.environment,
                "result": run.result,
                "failed_step": run.failed_step,
                "retry_of": run.retry_of,
                "reason": run.reason,
            }
            for run in report.runs
        ],
        "held": [
            {
                "environment": environment,
                "file": problem.file,
                "line": problem.line,
                "message": problem.message,
                "hint": problem.hint,
            }
            for environment, problem in sorted(report.held.items())
        ],
        "refused": [str(ref) for ref in report.refused],
        "refusals": [
            {"plan": str(ref), "reasons": list(report.why_refused.get(ref, ()))}
            for ref in report.refused
        ],
        "interrupted": report.interrupted,
        "would_run": [decision_json(decision, 1) for decision in report.would_run],
    }


def pass_text(report: PassReport) -> None:
    refused = [verdict for verdict in report.landings if not verdict.authorised]
    click.echo(
        f"verified {len(report.landings)} new landing(s) up to {report.tip[:12]}"
        + (f", {len(refused)} unauthorised (see `reconciler verify`)" if refused else "")
    )
    _bookkeeping_text(report)
    for run in report.runs:
        _run_text(run)
    for environment, problem in sorted(report.held.items()):
        _held_text(environment, problem)
    if report.dry_run:
        _would_run_text(report)
    elif not report.runs:
        click.echo("nothing to run")


def _bookkeeping_text(report: PassReport) -> None:
    """The runs the pass marked interrupted and the refusals it recorded."""
    for run_id in report.interrupted:
        click.echo(click.style(f"marked {run_id} interrupted", fg="yellow"))
    for ref in report.refused:
        why = "; ".join(report.why_refused.get(ref, ()))
        click.echo(click.style(printable(f"refused {ref}" + (f": {why}" if why else "")), fg="red"))


def _would_run_text(report: PassReport) -> None:
    for decision in report.would_run:
        where = f"{decision.path}@{decision.blob[:12]} -> {decision.environment}"
        click.echo(f"would run {printable(where)}")
    if not report.would_run:
        click.echo("would run nothing")


def _run_text(run: RunReport) -> None:
    colour = "green" if run.result == "succeeded" else "red"
    failed = f" at step {run.failed_step}" if run.failed_step else ""
    click.echo(
        f"{click.style(run.result, fg=colour)} "
        + printable(f"{run.run}: {run.plan.path} -> {run.environment}{failed}")
    )
    if run.result == "failed" and run.reason:
        click.echo(f"  {printable(run.reason)}")


def _held_text(environment: str, problem: ConfigError) -> None:
    """An environment whose driver cannot load here, and why (its plans wait for it)."""
    where = f"{problem.file}:{problem.line}: " if problem.file else ""
    click.echo(
        click.style(f"held {environment}: ", fg="yellow")
        + printable(f"{where}{problem.message}")
        + (f"\n  hint: {printable(problem.hint)}" if problem.hint else "")
    )
