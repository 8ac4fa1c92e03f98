"""CLI: reporters for `verify` and `access`, text for people, JSON and annotations for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import click

from reconciler.cli.output import escape_data, escape_property
from reconciler.core.printable import printable
from reconciler.core.verdicts import group_refusals

if TYPE_CHECKING:
    from reconciler.app.verified import VerifyResult
    from reconciler.core.access import AccessReport
    from reconciler.core.journal import IgnoredTrailer
    from reconciler.core.verdicts import LandingVerdict

_SLICE: Final = 256  # verdicts written at a time


def emit_verification_json(
    result: VerifyResult,
    landings: Sequence[str],
    refused: Sequence[LandingVerdict],
    ignored: Sequence[IgnoredTrailer] = (),
) -> None:
    """The documented JSON, with every landing's stored verdict passed through as it is."""
    head = {
        "anchor": result.anchor,
        "tip": result.tip,
        "authorised": not refused,
        "checkpoint": result.continued.as_json() if result.continued else None,
        "judged": result.count,
    }
    differs = {path: list(fields) for path, fields in result.differs.items()}
    # Written a slice of verdicts at a time: megabytes of them joined into one string,
    # and that encoded, were the peak of a long verify's memory. With color=True: JSON
    # escapes control characters, nothing to strip.
    click.echo(json.dumps(head)[:-1] + ', "landings": [', nl=False, color=True)
    for start in range(0, len(landings), _SLICE):
        joined = ", ".join(landings[start : start + _SLICE])
        click.echo(joined if start == 0 else ", " + joined, nl=False, color=True)
    click.echo('], "differs": ', nl=False, color=True)
    tail = {"ignored": [event.as_json() for event in ignored]}
    click.echo(json.dumps(differs) + ", " + json.dumps(tail)[1:], color=True)


def verification_github(
    result: VerifyResult,
    refused: Sequence[LandingVerdict],
    ignored: Sequence[IgnoredTrailer] = (),
) -> None:
    for verdict in refused:
        for commit, reason in verdict.unattributed:
            click.echo(
                f"::error title={escape_property(f'commit {commit[:12]} holds no identity')}"
                f"::{escape_data(printable(reason))}"
            )
        for group in group_refusals(verdict.refusals):
            title = (
                f"invalid content in {group.commit[:12]}"
                if group.invalid
                else f"unauthorised change in {group.commit[:12]}"
            )
            click.echo(
                f"::error file={escape_property(printable(group.path))},"
                f"title={escape_property(title)}::{escape_data(printable(group.text()))}"
            )
    for path, fields in result.differs.items():
        what = "main differs from the last authorised content: " + ", ".join(fields)
        click.echo(
            f"::warning file={escape_property(printable(path))},"
            f"title=not in the effective state::{escape_data(printable(what))}"
        )
    for event in ignored:
        title = f"trailers that count for nothing in {event.commit[:12]}"
        click.echo(
            f"::warning title={escape_property(title)}::{escape_data(printable(event.reason))}"
        )


def verification_text(
    result: VerifyResult,
    verdicts: Sequence[LandingVerdict],
    *,
    list_all: bool = False,
    total: int | None = None,
    ignored: Sequence[IgnoredTrailer] = (),
) -> None:
    refused = [verdict for verdict in verdicts if not verdict.authorised]
    click.echo(f"trust anchor {result.anchor[:12]}, verified up to {result.tip[:12]}")
    if result.continued is not None:
        continued = result.continued
        click.echo(
            f"continued from checkpoint {continued.checkpoint[:12]} of {continued.commit[:12]} "
            f"(signed by {continued.signer}): {result.count} landing(s) judged after it"
        )
    for verdict in verdicts:
        if verdict.authorised and not list_all:
            continue
        _verdict_text(verdict)
    if ignored:
        _ignored_text(ignored)
    if result.differs:
        _differs_text(result)
    summary = f"{len(verdicts) if total is None else total} landing(s), {len(refused)} refused"
    click.echo(click.style(summary, fg="red" if refused else "green"))


def _ignored_text(ignored: Sequence[IgnoredTrailer]) -> None:
    click.echo("trailers that count for nothing:")
    for event in ignored:
        who = event.actor or "an unknown actor"
        click.echo(printable(f"  {event.commit[:12]} by {who}: {event.reason}"))


def _differs_text(result: VerifyResult) -> None:
    click.echo("main differs from the effective state (the last authorised content):")
    for path, fields in sorted(result.differs.items()):
        click.echo(printable(f"  {path}: {', '.join(fields)}"))


def _verdict_text(verdict: LandingVerdict) -> None:
    """A landing: its verdict, and why each refused change was refused."""
    mark = click.style("ok", fg="green") if verdict.authorised else click.style("REFUSED", fg="red")
    count = len(verdict.landed)
    click.echo(
        f"{mark:>7} {verdict.commit[:12]} by {printable(verdict.actor)}"
        f" ({count} commit{'s' * (count != 1)} landed)"
    )
    for commit, reason in verdict.unattributed:
        click.echo(printable(f"          {commit[:12]} holds no identity: {reason}"))
    told: set[tuple[str, str]] = set()  # how an actor is known, said once a landing
    for group in group_refusals(verdict.refusals):
        click.echo(f"          {printable(group.text())}")
        if group.how and (group.actor, group.how) not in told:
            told.add((group.actor, group.how))
            click.echo(f"          actor: {printable(group.how)}")


def access_json(report: AccessReport) -> dict[str, Any]:
    return {
        "user": report.user,
        "name": report.name,
        "roles": report.roles,
        "has_key": report.has_key,
        "keys_revoked": report.keys_revoked,
        "entitlements": [
            {
                "permission": item.permission,
                "environment": item.environment,
                "application": item.application,
                "allowed": item.verdict.allowed,
                "reasons": list(item.verdict.reasons),
            }
            for item in report.entitlements
        ],
    }


def access_text(report: AccessReport) -> None:
    if report.keys_revoked:
        key = "has an SSH key, revoked on this machine" + (
            " (a host signs the merges it commits for them)" if report.host_signs else ""
        )
    elif report.has_key:
        key = "has a key"
    elif report.host_signs:
        key = "has no SSH key (a host signs the merges it commits for them)"
    else:
        key = "has no SSH key (cannot sign)"
    click.echo(printable(f"{report.user} ({report.name}): {report.roles}; {key}"))
    environment: str | None = "-"
    for item in report.entitlements:
        if item.environment != environment:
            environment = item.environment
            click.echo(click.style(environment or "organisation", bold=True))
        subject = printable(item.permission + (f" {item.application}" if item.application else ""))
        answer = (
            click.style("yes", fg="green") if item.verdict.allowed else click.style("no", fg="red")
        )
        click.echo(f"  {subject}: {answer}: {printable(item.verdict.text())}")
