"""CLI: `reconciler status` and `history`, what runs where, and who did what."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import click

from reconciler.cli.errors import Outcome
from reconciler.cli.options import (
    branch_option,
    command_with_examples,
    driver_root_option,
    format_option,
    read_remote_option,
    repo_option,
    state_dir_option,
)
from reconciler.cli.output import FORMATS, FORMATS_WITH_HTML
from reconciler.cli.reporter import reporter_for
from reconciler.core.errors import UsageError


@command_with_examples(
    ("What runs where, and what is on its way", "reconciler status"),
    ("Also the plans deployed and cancelled", "reconciler status --all"),
    (
        "One self-contained page, for a change record",
        "reconciler status --format html > status.html",
    ),
    reports="status",
)
@repo_option
@branch_option
@read_remote_option
@state_dir_option
@driver_root_option
@click.option("--all", "show_all", is_flag=True, help="Also list deployed and cancelled plans.")
@format_option(*FORMATS_WITH_HTML)
def status(
    repo: Path | None,
    branch: str | None,
    remote: str | None,
    state_dir: Path | None,
    driver_root: Path | None,
    show_all: bool,
    output_format: str,
) -> Outcome:
    """Environments x applications: what runs where, and what is on its way.

    Columns are environments in promotion order, rows applications, cells the
    version that runs there (from deployments/); below, per pair of
    environments, the plans moving between them and their state; last, drift,
    where a driver reports another version than deployments/ records.
    """
    from reconciler.app import api
    from reconciler.app.api import Source

    reporter = reporter_for(output_format)
    view = api.status(
        Source(repo, branch, state_dir, remote),
        include_deployed=show_all,
        driver_root=driver_root,
        note=reporter.note,
    )
    reporter.status(view)
    return Outcome.OK


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since '{text}' is not a date", hint="use YYYY-MM-DD") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@command_with_examples(
    ("Everything, in date order", "reconciler history"),
    ("One plan", "reconciler history 2026-11-qa-release"),
    (
        "What olga did in production since December",
        "reconciler history --user olga --env production --since 2026-12-01",
    ),
    ("Each plan's entries together", "reconciler history --by plan"),
    reports="history",
)
@click.argument("plan", required=False)
@repo_option
@branch_option
@read_remote_option
@state_dir_option
@click.option("--env", "environment", metavar="ENV", help="Only plans into ENV.")
@click.option("--user", metavar="USER", help="Only what USER did.")
@click.option("--since", metavar="DATE", help="Only since DATE (YYYY-MM-DD or ISO 8601).")
@click.option(
    "--by",
    type=click.Choice(["time", "plan"]),
    default="time",
    show_default=True,
    help="Entries in date order (a landing's own in the order they were made), or each "
    "plan's together.",
)
@format_option(*FORMATS)
def history(
    plan: str | None,
    repo: Path | None,
    branch: str | None,
    remote: str | None,
    state_dir: Path | None,
    environment: str | None,
    user: str | None,
    since: str | None,
    by: Literal["time", "plan"],
    output_format: str,
) -> Outcome:
    """The audit trail from Git: who created, edited, approved, triggered, cancelled and ran.

    Every entry names its commit (check it with `git show`); entries that do
    not count (an unauthorised edit, an approval by someone without the
    permission, an ignored trailer) say why.
    """
    from reconciler.app import api
    from reconciler.app.api import HistoryQuery, Source

    reporter = reporter_for(output_format)
    query = HistoryQuery(plan, environment, user, _since(since), by)
    entries = api.history(Source(repo, branch, state_dir, remote), query, note=reporter.note)
    reporter.history(entries)
    return Outcome.OK
