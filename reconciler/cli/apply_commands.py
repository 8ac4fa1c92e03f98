"""CLI: `reconciler apply`, one reconcile pass."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from reconciler.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, reported
from reconciler.cli.options import (
    command_with_examples,
    format_option,
    service_options,
)
from reconciler.cli.output import FORMATS, emit_json
from reconciler.cli.plan_commands import decision_json
from reconciler.cli.verify_commands import progress_bar
from reconciler.clock import utc_now
from reconciler.drivers import Step
from reconciler.printable import printable
from reconciler.reconcile import Options, PassReport, Reconciler
from reconciler.worktree import find_root


def step_progress() -> Callable[[int, int, Step], None] | None:
    """On a terminal, a line per application deployed (runs can be long); on a pipe, nothing."""
    if not sys.stderr.isatty():
        return None

    def show(position: int, total: int, step: Step) -> None:
        bar = "#" * position + "." * (total - position)
        click.echo(
            f"  {step.run} [{bar[:40]}] {position}/{total} {step.application} {step.version}",
            err=True,
        )

    return show


def pass_json(report: PassReport) -> dict[str, Any]:
    return {
        "tip": report.tip,
        "dry_run": report.dry_run,
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


def emit_pass(report: PassReport, output_format: str) -> None:
    if output_format == "json":
        emit_json(pass_json(report))
        return
    refused = [verdict for verdict in report.landings if not verdict.authorised]
    click.echo(
        f"verified {len(report.landings)} new landing(s) up to {report.tip[:12]}"
        + (f", {len(refused)} unauthorised (see `reconciler verify`)" if refused else "")
    )
    for run_id in report.interrupted:
        click.echo(click.style(f"marked {run_id} interrupted", fg="yellow"))
    for ref in report.refused:
        why = "; ".join(report.why_refused.get(ref, ()))
        click.echo(click.style(printable(f"refused {ref}" + (f": {why}" if why else "")), fg="red"))
    for run in report.runs:
        colour = "green" if run.result == "succeeded" else "red"
        failed = f" at step {run.failed_step}" if run.failed_step else ""
        click.echo(
            f"{click.style(run.result, fg=colour)} "
            + printable(f"{run.run}: {run.plan.path} -> {run.environment}{failed}")
        )
        if run.result == "failed" and run.reason:
            click.echo(f"  {printable(run.reason)}")
    for environment, problem in sorted(report.held.items()):
        where = f"{problem.file}:{problem.line}: " if problem.file else ""
        click.echo(
            click.style(f"held {environment}: ", fg="yellow")
            + printable(f"{where}{problem.message}")
            + (f"\n  hint: {printable(problem.hint)}" if problem.hint else "")
        )
    if report.dry_run:
        for decision in report.would_run:
            where = f"{decision.path}@{decision.blob[:12]} -> {decision.environment}"
            click.echo(f"would run {printable(where)}")
        if not report.would_run:
            click.echo("would run nothing")
    elif not report.runs:
        click.echo("nothing to run")


@command_with_examples(
    ("What one pass would run now, changing nothing", "reconciler apply --dry-run"),
    (
        "One pass as the service: fetch, verify, run, record, push",
        "reconciler apply --remote origin --key /etc/reconciler/key",
    ),
)
@service_options
@click.option("--dry-run", is_flag=True, help="Say what would run; change nothing.")
@format_option(*FORMATS)
def apply(
    repo: Path | None,
    remote: str | None,
    branch: str | None,
    state_dir: Path | None,
    key: Path | None,
    instance: str | None,
    driver_root: Path | None,
    dry_run: bool,
    output_format: str,
) -> None:
    """One reconcile pass: fetch, verify, run what is executable, record, push.

    Per environment one run at a time, applications in plan order, stop at
    the first failure; a plan version runs at most once. Exit 0, or 1 when a
    run failed or a plan version was refused. On SIGTERM or Ctrl-C the step
    in progress finishes, the run is recorded as interrupted (retry it with
    `reconciler deploy --retry`), and apply exits 130; a second signal stops
    at once.
    """
    options = Options(
        branch=branch,
        remote=remote,
        state_dir=state_dir,
        key=key,
        instance=instance,
        driver_root=driver_root,
        dry_run=dry_run,
    )
    with (
        reported(),
        stop_on_signals() as stopping,
        progress_bar("verifying history") as progress,
        Reconciler(
            find_root(repo or Path.cwd()),
            options,
            clock=utc_now,
            sleep=time.sleep,
            stop_requested=stopping,
            progress=progress,
            on_step=step_progress(),
        ) as reconciler,
    ):
        report = reconciler.pass_once()
        emit_pass(report, output_format)
    if stopping():
        raise SystemExit(EXIT_INTERRUPTED)
    raise SystemExit(EXIT_FAILED if report.failed else EXIT_OK)


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGTERM and SIGINT ask the pass to stop after the step in progress.

    Left to kill the process, they would leave a started run with no finish
    record, while its driver (in a session of its own) went on deploying.
    """
    asked: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        asked.append(signum)
        click.echo("stopping after the step in progress (again to stop at once)", err=True)
        # The next one acts as if nothing were installed.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        yield lambda: bool(asked)
    finally:
        for signum, handler in zip((signal.SIGTERM, signal.SIGINT), previous, strict=True):
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
