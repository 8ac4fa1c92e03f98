"""CLI: `reconciler apply`, one reconcile pass."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from reconciler.cli import output
from reconciler.cli.errors import Outcome
from reconciler.cli.options import (
    command_with_examples,
    format_option,
    service_options,
)
from reconciler.cli.output import FORMATS
from reconciler.cli.reporter import reporter_for
from reconciler.cli.verify_commands import progress_bar

if TYPE_CHECKING:
    from reconciler.adapters.drivers import Step


def step_progress() -> Callable[[int, int, Step], None] | None:
    """On a terminal, a line per application deployed (runs can be long); on a pipe, nothing."""
    if not output.on_a_terminal(sys.stderr):
        return None

    def show(position: int, total: int, step: Step) -> None:
        bar = "#" * position + "." * (total - position)
        click.echo(
            f"  {step.run} [{bar[:40]}] {position}/{total} {step.application} {step.version}",
            err=True,
        )

    return show


@command_with_examples(
    ("What one pass would run now, changing nothing", "reconciler apply --dry-run"),
    (
        "One pass as the service: fetch, verify, run, record, push",
        "reconciler apply --remote origin --key /etc/reconciler/key",
    ),
    reports="apply_pass",
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
    environments: frozenset[str] | None,
    checkpoint_keys: tuple[Path, ...],
    dry_run: bool,
    output_format: str,
) -> Outcome:
    """One reconcile pass: fetch, verify, run what is executable, record, push.

    Per environment one run at a time, applications in plan order, stop at
    the first failure; a plan version runs at most once. Exit 0, or 1 when a
    run failed or a plan version was refused. On SIGTERM or Ctrl-C the step
    in progress finishes, the run is recorded as interrupted (retry it with
    `reconciler deploy --retry`), and apply exits 130; a second signal stops
    at once.
    """
    from reconciler.app import api
    from reconciler.app.passes import Options

    options = Options(
        branch=branch,
        remote=remote,
        state_dir=state_dir,
        key=key,
        instance=instance,
        driver_root=driver_root,
        environments=environments,
        checkpoint_keys=checkpoint_keys,
        dry_run=dry_run,
    )
    with stop_on_signals() as stopping, progress_bar("verifying history") as progress:
        report = api.apply(
            repo, options, stop_requested=stopping, progress=progress, on_step=step_progress()
        )
        reporter_for(output_format).apply_pass(report)
    if stopping():
        return Outcome.INTERRUPTED
    return Outcome.FAILED if report.failed else Outcome.OK


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
