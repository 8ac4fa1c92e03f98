"""CLI: `reconciler status` and `history`, what runs where, and who did what."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import click

from reconciler.cli.errors import EXIT_OK, reported
from reconciler.cli.options import (
    branch_option,
    command_with_examples,
    format_option,
    read_remote_option,
    repo_option,
    state_dir_option,
)
from reconciler.cli.output import FORMATS, emit_json
from reconciler.cli.shared import reading_session
from reconciler.errors import UsageError
from reconciler.history import Entry, audit_trail, ordered, select
from reconciler.printable import printable
from reconciler.status import Pipeline

LABEL_COLOURS = {
    "draft": "white",
    "saved": "yellow",
    "ready": "cyan",
    "approved": "cyan",
    "triggered": "cyan",
    "ready to run": "green",
    "running": "blue",
    "failed": "red",
    "refused": "red",
    "interrupted": "magenta",
    "deployed": "green",
    "cancelled": "white",
}


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def _fit_words(text: str, width: int) -> str:
    """`text` in `width` columns, cut after a whole word (`plan` gives the whole reason)."""
    if len(text) <= width:
        return text
    cut = text[: max(width - 1, 1) + 1]
    # Up to the last space in reach, unless that leaves less than half the line.
    end = cut.rfind(" ")
    kept = cut[:end] if end > width // 2 else cut[:-1]
    return kept.rstrip(" ,;:(") + "…"


def pipeline_json(view: Pipeline) -> dict[str, Any]:
    return {
        "environments": list(view.environments),
        "applications": {app: dict(view.versions[app]) for app in view.applications},
        "moves": [
            {
                "from": move.source,
                "to": move.target,
                "plan": move.plan,
                "path": move.path,
                "blob": move.blob,
                "label": move.label,
                "status": move.status,
                "reasons": list(move.reasons),
            }
            for move in view.moves
        ],
    }


def render_pipeline(view: Pipeline, width: int = 80) -> list[str]:
    """The table and the moves, in `width` columns (80 in a narrow terminal)."""
    lines: list[str] = []
    first = min(max((len(app) for app in view.applications), default=11) + 2, 22)
    columns = max(len(view.environments), 1)
    cell = (width - first) // columns
    if cell < 10:  # too many environments for a table: one line per environment
        for environment in view.environments:
            running = ", ".join(
                f"{app} {view.versions[app][environment]}"
                for app in view.applications
                if environment in view.versions[app]
            )
            lines.append(f"{environment}: {running or 'nothing deployed'}")
    else:
        # Padded before styling, so the padding of the last column (inside the style's
        # escape codes, where rstrip cannot see it) is never added.
        names = [_fit(env, cell - 1).ljust(cell) for env in view.environments]
        names[-1:] = [name.rstrip() for name in names[-1:]]
        header = "".join(click.style(name, bold=True) for name in names)
        lines.append("".ljust(first) + header if header else "")
        for app in view.applications:
            row = _fit(app, first - 1).ljust(first) + "".join(
                _fit(view.versions[app].get(env, "-"), cell - 1).ljust(cell)
                for env in view.environments
            )
            lines.append(row.rstrip())
    current: tuple[str | None, str] | None = None
    for move in view.moves:
        lane = (move.source, move.target)
        if lane != current:
            current = lane
            lines.append("")
            title = (
                f"{move.source or '(new)'} -> {move.target}"
                if move.target
                else "plans that cannot run as they are"
            )
            lines.append(click.style(title, bold=True))
        word = click.style(move.label.ljust(12), fg=LABEL_COLOURS.get(move.label, "white"))
        lines.append(f"  {word} {printable(move.plan)}")
        lines.extend(
            f"               {_fit_words(printable(reason), width - 15)}" for reason in move.reasons
        )
    if not view.moves:
        lines += ["", "no plans on their way"]
    return lines


@command_with_examples(
    ("What runs where, and what is on its way", "reconciler status"),
    ("Also the plans deployed and cancelled", "reconciler status --all"),
)
@repo_option
@branch_option
@read_remote_option
@state_dir_option
@click.option("--all", "show_all", is_flag=True, help="Also list deployed and cancelled plans.")
@format_option(*FORMATS)
def status(
    repo: Path | None,
    branch: str | None,
    remote: str | None,
    state_dir: Path | None,
    show_all: bool,
    output_format: str,
) -> None:
    """Environments x applications: what runs where, and what is on its way.

    Columns are environments in promotion order, rows applications, cells the
    version that runs there (from deployments/); below, per pair of
    environments, the plans moving between them and their state.
    """
    with reported(), reading_session(repo, branch, remote, state_dir) as session:
        view = session.pipeline(include_deployed=show_all)
        if output_format == "json":
            emit_json(pipeline_json(view))
        else:
            width = min(shutil.get_terminal_size((80, 24)).columns, 120)
            for line in render_pipeline(view, width):
                click.echo(line)
    raise SystemExit(EXIT_OK)


def render_entry(entry: Entry) -> str:
    when = entry.when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    actor = printable(entry.actor or "?").ljust(10)
    plan = entry.plan.removeprefix("plans/").removesuffix(".yaml") if entry.plan else "-"
    # Said once: with its reason when there is one (a detail never says it itself).
    why = f": {entry.why_not}" if entry.why_not else ""
    mark = "" if entry.counted else click.style(printable(f" (does not count{why})"), fg="red")
    return (
        f"{when} {entry.commit[:10]} {actor} {entry.action:<14} "
        f"{printable(f'{plan}: {entry.detail}')}{mark}"
    )


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
) -> None:
    """The audit trail from Git: who created, edited, approved, triggered, cancelled and ran.

    Every entry names its commit (check it with `git show`); entries that do
    not count (an unauthorised edit, an approval by someone without the
    permission, an ignored trailer) say why.
    """
    from reconciler.actions import plan_file  # noqa: PLC0415 - keeps `history -h` light

    with reported(), reading_session(repo, branch, remote, state_dir) as session:
        _, policy = session.authorise()
        assert session.walked is not None
        selected = select(
            audit_trail(session.store),
            policy,
            session.walked.effective,
            plan=plan_file(plan) if plan else None,
            environment=environment,
            user=user,
            since=_since(since),
        )
        entries = ordered(selected, by)
        if output_format == "json":
            emit_json({"entries": [entry.as_json() for entry in entries]})
        else:
            for entry in entries:
                click.echo(render_entry(entry))
            if not entries:
                click.echo("nothing recorded")
    raise SystemExit(EXIT_OK)
