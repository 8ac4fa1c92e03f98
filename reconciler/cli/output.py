"""CLI: reporters, one result as text for people, JSON for machines, or GitHub annotations.

Chosen by name with `--format`. JSON output is a stable interface (see
docs/output-formats.md): keys are only ever added, never renamed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import click

if TYPE_CHECKING:
    from reconciler.app.actions import Locked, Made
    from reconciler.app.init import Initialised
    from reconciler.app.watch_values import LogEvent
    from reconciler.core.model import Finding
    from reconciler.core.validate import Report

from reconciler.core.printable import printable

FORMATS_WITH_GITHUB = ("text", "json", "github")
FORMATS_WITH_MARKDOWN = ("text", "json", "github", "markdown")
FORMATS = ("text", "json")
FORMATS_WITH_HTML = ("text", "json", "html")


Style = Callable[..., str]


def on_a_terminal(stream: IO[str] | None) -> bool:
    """Whether `stream` (`sys.stdout`, `sys.stderr`) shows on a terminal; None, as Python
    gives a stream whose descriptor was closed when it started, is no terminal."""
    return stream is not None and stream.isatty()


def _unstyled(text: str, **_style: object) -> str:
    return text


def output_style() -> Style:
    """`click.style` where `click.echo` keeps styles (a terminal, or colour forced), else
    the text as it is: on a pipe echo would strip them again, a pattern run over every
    line (`plan` writes five thousand)."""
    context = click.get_current_context(silent=True)
    forced = context.color if context is not None else None
    shown = on_a_terminal(sys.stdout) if forced is None else forced
    return click.style if shown else _unstyled


def terminal_columns(fallback: int = 80) -> int:
    """The columns of the terminal standard output shows in, as `shutil.get_terminal_size`
    tells them ($COLUMNS first), without importing shutil (and bz2 and lzma with it)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else fallback


def emit_json(payload: Any) -> None:
    """Indented on a terminal, compact on a pipe (the same JSON either way)."""
    indent = 2 if on_a_terminal(sys.stdout) else None
    click.echo(json.dumps(payload, indent=indent, sort_keys=False))


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "file": finding.file,
        "line": finding.line,
        "column": finding.column,
        "severity": finding.severity,
        "message": finding.message,
        "hint": finding.hint,
    }


def escape_data(text: str) -> str:
    """A workflow command's message: one line, whatever `text` holds."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property (file=, title=): no `,` or `::` can end it early."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(finding: Finding, title: str) -> str:
    message = printable(finding.message) + (f"\n{printable(finding.hint)}" if finding.hint else "")
    return (
        f"::{finding.severity} file={escape_property(printable(finding.file))},"
        f"line={finding.line},col={finding.column},title={escape_property(printable(title))}::"
        f"{escape_data(message)}"
    )


def finding_text(finding: Finding) -> str:
    colour = "red" if finding.severity == "error" else "yellow"
    where = printable(f"{finding.file}:{finding.line}:{finding.column}")
    head = (
        f"{click.style(where, bold=True)}: "
        f"{click.style(finding.severity, fg=colour)}: {printable(finding.message)}"
    )
    if finding.hint:
        head += f"\n  hint: {printable(finding.hint)}"
    return head


def validation_json(report: Report) -> None:
    emit_json(
        {
            "valid": report.valid,
            "files_checked": report.files_checked,
            "errors": report.errors,
            "warnings": report.warnings,
            "findings": [finding_json(finding) for finding in report.findings],
        }
    )


def validation_github(report: Report) -> None:
    for finding in report.findings:
        click.echo(github_annotation(finding, "reconciler validate"))


def validation_text(report: Report) -> None:
    for finding in report.findings:
        click.echo(finding_text(finding))
    summary = click.style("valid", fg="green") if report.valid else click.style("invalid", fg="red")
    click.echo(
        f"{summary}: {report.files_checked} file(s) checked, "
        f"{report.errors} error(s), {report.warnings} warning(s)"
    )


_NAMED_SKIPPED = 5


def skipped_note(skipped: Sequence[str]) -> str:
    shown = ", ".join(printable(relative) for relative in skipped[:_NAMED_SKIPPED])
    if len(skipped) > _NAMED_SKIPPED:
        shown += f" and {len(skipped) - _NAMED_SKIPPED} more"
    return f"note: not configuration, so not validated: {shown}"


def made_json(made: Made) -> None:
    emit_json(
        {
            "kind": made.kind,
            "commit": made.commit,
            "plan": made.plan.path,
            "blob": made.plan.blob,
            "environment": made.environment,
            "actor": made.actor,
            **(
                {
                    "applications": [
                        {"name": app, "running": now, "version": then}
                        for app, now, then in made.rolled_back
                    ]
                }
                if made.kind == "rollback"
                else {}
            ),
        }
    )


_VERBS: Final = {
    "approve": "approved",
    "deploy": "triggered",
    "retry": "asked to retry",
    "cancel": "cancelled",
    "uncancel": "un-cancelled",
    "rollback": "wrote the rollback plan",
}


def made_text(made: Made, still_to_do: str | None) -> None:
    click.echo(
        f"{made.actor} {_VERBS[made.kind]} {made.plan.path}@{made.plan.blob[:12]} "
        f"for {made.environment} in commit {made.commit[:12]}"
    )
    for application, running, version in made.rolled_back:
        click.echo(f"  {application}: {running or '(not running)'} -> {version}")
    if made.kind == "rollback":
        click.echo(
            f"It runs like any plan: approvals as gates.rollback_approvals asks, then a trigger "
            f"(`reconciler deploy {Path(made.plan.path).stem}`) by a plan.deploy holder."
        )
    if still_to_do is not None:
        click.echo(still_to_do)


def locked_json(locked: Locked) -> None:
    emit_json(
        {
            "kind": locked.kind,
            "commit": locked.commit,
            "environment": locked.environment,
            "application": locked.application,
            "why": locked.why,
            "actor": locked.actor,
        }
    )


def locked_text(locked: Locked, still_to_do: str | None) -> None:
    scope = locked.environment + (f"/{locked.application}" if locked.application else "")
    why = f": {printable(locked.why)}" if locked.why else ""
    click.echo(f"{locked.actor} {locked.kind}ed {scope} in commit {locked.commit[:12]}{why}")
    if still_to_do is not None:
        click.echo(still_to_do)


_COLOURS: Final = {"info": None, "warning": "yellow", "error": "red"}


def _stamp(event: LogEvent) -> str:
    return event.at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def log_json(event: LogEvent) -> str:
    return json.dumps(
        {
            "time": _stamp(event),
            "level": event.level,
            "event": event.event,
            "message": event.message,
            **event.fields,
        },
        default=str,
    )


def log_text(event: LogEvent) -> str:
    level = click.style(f"{event.level:<7}", fg=_COLOURS[event.level])
    text = f"{_stamp(event)} {level} {printable(event.message)}"
    trace = event.fields.get("traceback")
    if trace and os.environ.get("RECONCILER_DEBUG"):
        text += "\n" + str(trace).rstrip()
    return text


def founded_json(made: Initialised) -> None:
    emit_json(
        {
            "path": str(made.path),
            "commit": made.commit,
            "admin": made.admin,
            "service_key": str(made.service_key),
            "files": list(made.files),
        }
    )


def founded_text(made: Initialised) -> None:
    click.echo(f"created {made.path} with {len(made.files)} files; trust anchor {made.commit[:12]}")
    click.echo(f"first admin: {made.admin} (settings, tech-lead in platform, deployment)")
    click.echo(f"the reconciler's private key: {made.service_key}")
    click.echo("  move it to the machine that runs `reconciler watch`; it never goes in CI")
    click.echo(f"next: cd {made.path} && reconciler validate && reconciler plan")


def stand_in_warning(stand_ins: Sequence[str], admin: str) -> str:
    """Which of the first admin's values were made up, and how to make them theirs: git
    attributes an unsigned commit by its email, and a made-up one is nobody's."""
    from reconciler.app.api import STAND_INS  # noqa: PLC0415 - `validate` never loads Git

    values = {"user.name": "name", "user.email": "email"}
    made_up = " and ".join(values[key] for key in stand_ins)
    verb = "are" if len(stand_ins) > 1 else "is"
    return (
        f"warning: git has no {' or '.join(stand_ins)}, so the first admin's {made_up} in "
        f"teams.yaml {verb} made up: {', '.join(STAND_INS[key] for key in stand_ins)} "
        f"(user id {admin})\n"
        "  hint: set yours (git config --global user.name and user.email, or pass --name and "
        "--email) and run init again in a new folder before you push; once pushed, correct "
        f"users.{admin} in teams.yaml in a signed commit"
    )
