"""CLI: `reconciler serve`, the pipeline pages in a browser, read-only."""

from __future__ import annotations

import contextlib

# The application layer, Starlette and uvicorn are imported in the command's body, so
# `--help` loads click and the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
from pathlib import Path

import click

from reconciler.cli.collector import collect_as_a_service
from reconciler.cli.errors import Outcome
from reconciler.cli.options import (
    Seconds,
    branch_option,
    command_with_examples,
    driver_root_option,
    format_option,
    repo_option,
    state_dir_option,
)
from reconciler.cli.output import FORMATS
from reconciler.cli.reporter import reporter_for
from reconciler.cli.watch_commands import parse_listen


@command_with_examples(
    ("The pages of the repository around here, on http://127.0.0.1:8080/", "reconciler serve"),
    (
        "The service's clone, on another port",
        "reconciler serve --repo /srv/reconciler/config --listen 127.0.0.1:8181",
    ),
    reports="log_event",
)
@repo_option
@branch_option
@state_dir_option
@driver_root_option
@click.option(
    "--listen",
    metavar="HOST:PORT",
    default="127.0.0.1:8080",
    show_default=True,
    help="Where to serve the pages (port 0: one the system chooses). Put any other "
    "address than loopback behind an authenticating proxy.",
)
@click.option(
    "--interval",
    type=Seconds(0.1, 3600),
    default=1.0,
    show_default=True,
    metavar="S",
    help="Seconds between looks at the branch: after a pass moved it, the pages update.",
)
@format_option(*FORMATS)
def serve(
    repo: Path | None,
    branch: str | None,
    state_dir: Path | None,
    driver_root: Path | None,
    listen: str,
    interval: float,
    output_format: str,
) -> Outcome:
    """Serve the pipeline pages: what runs where, each plan, each environment, the audit
    trail and access, updated live after each pass.

    Read-only: it changes nothing in the repository. Drift is found as `plan`
    finds it, by asking each environment's driver what runs. Every page works without
    JavaScript; with it, a page updates itself after each pass (Server-Sent
    Events). Bound to loopback by default.
    """
    from reconciler.adapters.clock import utc_now
    from reconciler.app.api import Source
    from reconciler.app.watch_values import LogEvent
    from reconciler.web.server import serve as run

    collect_as_a_service()
    reporter = reporter_for(output_format)

    def listening(address: str) -> None:
        reporter.log_event(
            LogEvent(
                utc_now(),
                "info",
                "serving",
                f"serving the pipeline pages on {address} (read-only; Ctrl-C stops)",
                {"address": address},
            )
        )

    def problem(text: str | None) -> None:
        reporter.log_event(
            LogEvent(
                utc_now(),
                "warning" if text else "info",
                "read_failed" if text else "read_recovered",
                f"reading the branch failed; the pages show the last good read: {text}"
                if text
                else "reading the branch works again",
            )
        )

    with contextlib.suppress(KeyboardInterrupt):
        run(
            Source(repo, branch, state_dir),
            parse_listen(listen),
            driver_root=driver_root,
            interval=interval,
            on_listening=listening,
            on_problem=problem,
        )
    return Outcome.OK
