"""CLI: reporters, one result as text for people, JSON for machines, or GitHub annotations.

Chosen by name with `--format`. JSON output is a stable interface (see
docs/output-formats.md): keys are only ever added, never renamed.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from reconciler.validate import Report

from reconciler.model import Finding
from reconciler.printable import printable

FORMATS_WITH_GITHUB = ("text", "json", "github")
FORMATS_WITH_MARKDOWN = ("text", "json", "github", "markdown")
FORMATS = ("text", "json")


def emit_json(payload: Any) -> None:
    """Indented on a terminal, compact on a pipe (the same JSON either way)."""
    indent = 2 if sys.stdout.isatty() else None
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


def emit_report(report: Report, output_format: str) -> None:
    if output_format == "json":
        emit_json(
            {
                "valid": report.valid,
                "files_checked": report.files_checked,
                "errors": report.errors,
                "warnings": report.warnings,
                "findings": [finding_json(finding) for finding in report.findings],
            }
        )
        return
    if output_format == "github":
        for finding in report.findings:
            click.echo(github_annotation(finding, "reconciler validate"))
        return
    for finding in report.findings:
        click.echo(finding_text(finding))
    summary = click.style("valid", fg="green") if report.valid else click.style("invalid", fg="red")
    click.echo(
        f"{summary}: {report.files_checked} file(s) checked, "
        f"{report.errors} error(s), {report.warnings} warning(s)"
    )
