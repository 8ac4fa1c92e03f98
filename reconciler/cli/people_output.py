"""CLI: reporters for `reconciler status` and `history`, the pipeline and the audit trail."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

import click

from reconciler.app.trail import Entry
from reconciler.cli.output import Style
from reconciler.core.printable import printable

if TYPE_CHECKING:  # `history` renders without the rules that decide (core.status imports them)
    from reconciler.core.status import Pipeline

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
                "rollback": move.rollback,
                "reasons": list(move.reasons),
            }
            for move in view.moves
        ],
        "locks": [
            {
                "scope": lock.scope,
                "by": lock.actor,
                "since": lock.committed_at.isoformat(),
                "why": lock.why,
                "commit": lock.commit,
            }
            for lock in view.locks
        ],
        "drift": [
            {
                "environment": item.environment,
                "application": item.application,
                "recorded": item.recorded,
                "current": item.current,
            }
            for item in view.drift
        ],
        "drift_notes": list(view.drift_notes),
    }


def render_pipeline(view: Pipeline, width: int = 80, style: Style = click.style) -> list[str]:
    """The table and the moves, in `width` columns (80 in a narrow terminal), styled by
    `style` (`output.output_style`)."""
    lines = _table(view, width, style)
    for lock in view.locks:
        why = f": {lock.why}" if lock.why else ""
        text = f"locked {lock.scope} by {lock.actor} since {lock.committed_at.isoformat()}{why}"
        lines.append(style(printable(text), fg="red"))
    current: tuple[str | None, str, bool] | None = None
    for move in view.moves:
        lane = (move.source, move.target, move.rollback)
        if lane != current:
            current = lane
            lines.append("")
            origin = "(rollback)" if move.rollback else move.source or "(new)"
            title = (
                f"{origin} -> {move.target}" if move.target else "plans that cannot run as they are"
            )
            lines.append(style(title, bold=True))
        word = style(move.label.ljust(12), fg=LABEL_COLOURS.get(move.label, "white"))
        lines.append(f"  {word} {printable(move.plan)}")
        lines.extend(
            f"               {_fit_words(printable(reason), width - 15)}" for reason in move.reasons
        )
    if not view.moves:
        lines += ["", "no plans on their way"]
    if view.drift or view.drift_notes:
        lines.append("")
    lines.extend(style(f"drift  {printable(item.text())}", fg="magenta") for item in view.drift)
    lines.extend(
        style(f"drift  note: {_fit_words(printable(note), width - 13)}", dim=True)
        for note in view.drift_notes
    )
    return lines


def _table(view: Pipeline, width: int, style: Style) -> list[str]:
    """What runs where: a table of applications by environment, or a line per environment
    when the table would not fit in `width` columns."""
    lines: list[str] = []
    first = min(max((len(app) for app in view.applications), default=11) + 2, 22)
    columns = max(len(view.environments), 1)
    cell = (width - first) // columns
    if cell < 10:  # too many environments for a table: one line per environment
        return _per_environment(view)
    # Padded before styling, so the padding of the last column (inside the style's
    # escape codes, where rstrip cannot see it) is never added.
    names = [_fit(env, cell - 1).ljust(cell) for env in view.environments]
    names[-1:] = [name.rstrip() for name in names[-1:]]
    header = "".join(style(name, bold=True) for name in names)
    lines.append("".ljust(first) + header if header else "")
    for app in view.applications:
        row = _fit(app, first - 1).ljust(first) + "".join(
            _fit(view.versions[app].get(env, "-"), cell - 1).ljust(cell)
            for env in view.environments
        )
        lines.append(row.rstrip())
    return lines


def _per_environment(view: Pipeline) -> list[str]:
    lines = []
    for environment in view.environments:
        running = ", ".join(
            f"{app} {view.versions[app][environment]}"
            for app in view.applications
            if environment in view.versions[app]
        )
        lines.append(f"{environment}: {running or 'nothing deployed'}")
    return lines


def render_entry(entry: Entry, style: Style = click.style) -> str:
    # isoformat, not strftime: the same text for the years a commit date holds, at a
    # fifth of the cost (`history` renders 11,000 entries).
    when = entry.when.astimezone(UTC).isoformat(" ", "minutes")[:16]
    actor = printable(entry.actor or "?").ljust(10)
    plan = entry.plan.removeprefix("plans/").removesuffix(".yaml") if entry.plan else "-"
    # Said once: with its reason when there is one (a detail never says it itself).
    why = f": {entry.why_not}" if entry.why_not else ""
    mark = "" if entry.counted else style(printable(f" (does not count{why})"), fg="red")
    return (
        f"{when} {entry.commit[:10]} {actor} {entry.action:<14} "
        f"{printable(f'{plan}: {entry.detail}')}{mark}"
    )
