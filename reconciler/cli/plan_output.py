"""CLI: reporters for `reconciler plan`, every plan's state, as text and JSON."""

from __future__ import annotations

from typing import Any

import click

from reconciler.app.drift import DriftReport
from reconciler.cli.output import Style, output_style
from reconciler.core.decide import Decision, executable
from reconciler.core.printable import printable

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
        "rollback": bool(decision.plan and decision.plan.rollback),
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


def plan_text(
    decisions: tuple[Decision, ...], drift: DriftReport, branch: str = "the branch"
) -> None:
    # One write: a thousand plans are five thousand lines, each echoed alone cost more
    # than deciding them did from the state.
    click.echo("\n".join(_plan_lines(decisions, drift, branch, output_style())))


def _plan_lines(
    decisions: tuple[Decision, ...], drift: DriftReport, branch: str, style: Style
) -> list[str]:
    positions = _queue_positions(decisions)
    lines = [] if decisions else [f"no plans on {printable(branch)}"]
    # Styled once per status, not once per plan: click.style is most of a line's cost.
    styled = {
        status: style(f"{status:<10}", fg=colour) for status, colour in STATUS_COLOURS.items()
    }
    for decision in decisions:
        status = styled[decision.status]
        rollback = "rollback " if decision.plan and decision.plan.rollback else ""
        where = f" -> {rollback}{decision.environment}" if decision.environment else ""
        order = (
            f" (#{positions[decision.path]} to run{where})" if decision.path in positions else where
        )
        lines.append(f"{status} {printable(decision.path)}@{decision.blob[:12]}{order}")
        lines.extend(f"             {printable(reason)}" for reason in decision.reasons)
        lines.extend(
            style(f"             note: {printable(note)}", dim=True) for note in decision.notes
        )
    lines.extend(
        style(f"drift      {printable(item.text())}", fg="magenta") for item in drift.drift
    )
    lines.extend(style(f"drift      note: {printable(note)}", dim=True) for note in drift.notes)
    return lines
