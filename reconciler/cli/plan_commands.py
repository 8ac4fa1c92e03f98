"""CLI: `reconciler plan`, what `apply` would do now, and why."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
from pathlib import Path

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
from reconciler.cli.output import FORMATS
from reconciler.cli.reporter import reporter_for


@command_with_examples(
    ("What apply would do now with main's plans, and what each waits for", "reconciler plan"),
    ("Your branch's plans, as if the branch were main", "reconciler plan --branch my-plan"),
    name="plan",
    reports="plan",
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
) -> Outcome:
    """What `apply` would do now: every plan on the branch and its state.

    executable (and the order runs will take), waiting (for approvals by
    which role, a trigger by whom, a deploy window, a promotion), refused
    (why), done (which run), cancelled; and drift, where a driver reports
    another version than deployments/ records (a note names the environment
    file of a driver that cannot be asked). Exit 0.
    """
    from reconciler.app import api
    from reconciler.app.api import Source

    reporter = reporter_for(output_format)
    view = api.plan(Source(repo, branch, state_dir, remote), driver_root, note=reporter.note)
    reporter.plan(view)
    return Outcome.OK
