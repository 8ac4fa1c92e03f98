"""CLI: reporters for `verify-mergeable` (text, JSON, GitHub annotations, a Markdown comment).

Everything a pull request brings (paths, messages, names) is made printable,
escaped for a workflow command's syntax, or shown as Markdown that cannot
forge markup of its own (code spans, escaped punctuation), nor mention,
reference or link (a zero-width space breaks each).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import click

from reconciler.app.mergeable import MergeCheck, PlanOutlook, fix, outlook
from reconciler.cli.output import escape_data, escape_property
from reconciler.cli.plan_output import STATUS_COLOURS, decision_json
from reconciler.core.printable import printable

# Lines of one kind a comment shows; GitHub refuses comments over 65,536 characters.
_SHOWN: Final = 50


def check_json(result: MergeCheck) -> dict[str, Any]:
    return {
        "base": result.base,
        "base_tip": result.base_tip,
        "tested": result.tested,
        "head": result.head,
        "merge_base": result.merge_base,
        "merge": result.merge,
        "anchor": result.anchor,
        "authorised": result.authorised,
        "checkpoint": result.continued.as_json() if result.continued else None,
        "landed": list(result.landed),
        "refusals": [
            {
                **item.refusal.as_json(),
                "message": item.message(result.base),
                "line": item.line,
                "column": item.column,
                "merger": item.merger,
                "may": list(item.may),
                "fix": fix(item, result.base),
            }
            for item in result.refused
        ],
        "unattributed": [
            {"commit": commit, "reason": reason} for commit, reason in result.unattributed
        ],
        "inherited": [refusal.as_json() for refusal in result.inherited],
        "changes": [
            {"path": item.path, "kind": item.kind, "change": item.change} for item in result.changes
        ],
        "plans": [
            {
                "plan": item.path,
                "change": item.change,
                "before": decision_json(item.before, None) if item.before else None,
                "after": decision_json(item.after, None) if item.after else None,
                "outlook": outlook(item),
            }
            for item in result.plans
        ],
        "ignored": [event.as_json() for event in result.ignored],
    }


def github(result: MergeCheck) -> None:
    for item in result.refused:
        refusal = item.refusal
        title = f"{refusal.what()} needs {refusal.needed}"
        text = f"{printable(item.message(result.base))}\nfix: {printable(fix(item, result.base))}"
        click.echo(
            f"::error file={escape_property(printable(refusal.path))},line={item.line},"
            f"col={item.column},title={escape_property(printable(title))}::{escape_data(text)}"
        )
    for commit, reason in result.unattributed:
        title = f"commit {commit[:12]} holds no identity"
        click.echo(f"::error title={escape_property(title)}::{escape_data(printable(reason))}")
    for refusal in result.inherited:
        title = f"already refused on {result.base}, not this pull request's"
        click.echo(
            f"::notice file={escape_property(printable(refusal.path))},"
            f"title={escape_property(printable(title))}::"
            f"{escape_data(printable(refusal.message()))}"
        )
    for event in result.ignored:
        title = f"trailers that count for nothing in {event.commit[:12]}"
        click.echo(
            f"::warning title={escape_property(title)}::{escape_data(printable(event.reason))}"
        )


def text(result: MergeCheck) -> None:
    verdict = (
        click.style("authorised", fg="green")
        if result.authorised
        else click.style("REFUSED", fg="red")
    )
    click.echo(
        f"merging {result.head[:12]} into {printable(result.base)} ({result.base_tip[:12]}): "
        f"{verdict}"
    )
    if result.merge is None:
        click.echo(f"  nothing to merge: {result.head[:12]} is already in {printable(result.base)}")
        return
    count = len(result.landed)
    click.echo(
        f"  {count} commit{'s' * (count != 1)} from the merge base "
        f"{(result.merge_base or '')[:12]}, trust anchor {result.anchor[:12]}"
    )
    _changes_text(result)
    _refused_text(result)
    if result.plans:
        click.echo("once merged:")
        for plan in result.plans:
            _plan_text(plan)
    if result.inherited:
        click.echo(f"already refused on {printable(result.base)} (not this pull request's):")
        for refusal in result.inherited:
            click.echo(printable(f"  {refusal.message()}"))
    if result.ignored:
        click.echo("trailers that count for nothing:")
        _ignored_text(result)


def _changes_text(result: MergeCheck) -> None:
    if result.changes:
        click.echo("the merge changes:")
        for change in result.changes:
            click.echo(printable(f"  {change.change:<8} {change.path} ({change.kind})"))


def _refused_text(result: MergeCheck) -> None:
    if result.refused:
        click.echo("refused:")
        for item in result.refused:
            where = printable(f"{item.refusal.path}:{item.line}:{item.column}")
            click.echo(f"  {click.style(where, bold=True)}: {printable(item.message(result.base))}")
            click.echo(f"    fix: {printable(fix(item, result.base))}")
    for commit, reason in result.unattributed:
        click.echo(printable(f"  {commit[:12]} holds no identity: {reason}"))


def _ignored_text(result: MergeCheck) -> None:
    for event in result.ignored:
        who = event.actor or "an unknown actor"
        click.echo(printable(f"  {event.commit[:12]} by {who}: {event.reason}"))


def _plan_text(plan: PlanOutlook) -> None:
    status = plan.after.status if plan.after else "removed"
    colour = STATUS_COLOURS.get(status, "white")
    environment = plan.after.environment if plan.after else None
    target = f" -> {environment}" if environment else ""
    click.echo(f"  {click.style(f'{status:<10}', fg=colour)} {printable(plan.path)}{target}")
    click.echo(f"             {printable(outlook(plan))}")
    for note in plan.after.notes if plan.after else ():
        click.echo(click.style(f"             note: {printable(note)}", dim=True))


# -- Markdown ---------------------------------------------------------------------------------

# What could start markup in running text (the rest only could at a line's start, where
# each line starts with the comment's own).
_PUNCTUATION: Final = re.compile(r"([\\`*_\[\]<>|~&])")


# What a host makes a mention (@user, @org/team: a notification), a reference (#12: a
# note in that issue) or a link (www.host, scheme://host, name@host) of in running text,
# escaped or not; a zero-width space after its first character keeps it plain text.
_ACTIVE: Final = re.compile(r"@|#|www\.|://", re.IGNORECASE)


def _md(text: str) -> str:
    """Text as Markdown that means only itself: printable, its markup escaped, and
    nothing in it that mentions, references or links."""
    escaped = _PUNCTUATION.sub(r"\\\1", printable(text))
    return _ACTIVE.sub(lambda found: f"{found[0][0]}&#8203;{found[0][1:]}", escaped)


def _code(text: str) -> str:
    """Text as one code span, whatever backticks it holds."""
    text = printable(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown(result: MergeCheck) -> str:
    """The check as a pull-request comment, like Atlantis's plan comment."""
    base = _code(result.base)
    lines = [
        f"### reconciler: merging into {base} is "
        + ("**authorised**" if result.authorised else "**refused**"),
        "",
    ]
    if result.merge is None:
        lines.append(f"Nothing to merge: {_code(result.head[:12])} is already in {base}.")
        return "\n".join(lines)
    lines += [_judged_md(result, base), ""]
    if result.refused or result.unattributed:
        lines += _refused_md(result)
    lines += ["#### What the merge changes", "", *_changes_md(result)]
    lines += ["", "#### Once merged", ""]
    lines += _capped((_plan_line(plan) for plan in result.plans), len(result.plans)) or [
        "- no plan changes what it would do"
    ]
    if result.inherited:
        lines += _inherited_md(result)
    if result.ignored:
        lines += ["", "#### Trailers that count for nothing", "", *_ignored_md(result)]
    return "\n".join(lines)


def _judged_md(result: MergeCheck, base: str) -> str:
    """What was judged: the commits, as one landing on `base` (as Markdown)."""
    count = len(result.landed)
    return (
        f"{count} commit{'s' * (count != 1)} from {_code((result.merge_base or '')[:12])} to "
        f"{_code(result.head[:12])}, judged as one landing on {base} at "
        f"{_code(result.base_tip[:12])} (trust anchor {_code(result.anchor[:12])})."
    )


def _changes_md(result: MergeCheck) -> list[str]:
    return _capped(
        (f"- {item.change} {_code(item.path)} ({_md(item.kind)})" for item in result.changes),
        len(result.changes),
    ) or ["- no file"]


def _ignored_md(result: MergeCheck) -> list[str]:
    return _capped(
        (f"- {_code(event.commit[:12])}: {_md(event.reason)}" for event in result.ignored),
        len(result.ignored),
    )


def _refused_md(result: MergeCheck) -> list[str]:
    lines = ["#### Refused", ""]
    lines += _capped(
        (
            f"- {_code(f'{item.refusal.path}:{item.line}')}: {_md(item.message(result.base))}"
            f"\n  - fix: {_md(fix(item, result.base))}"
            for item in result.refused
        ),
        len(result.refused),
    )
    lines += [
        f"- commit {_code(commit[:12])} holds no identity: {_md(reason)}"
        for commit, reason in result.unattributed
    ]
    lines.append("")
    return lines


def _inherited_md(result: MergeCheck) -> list[str]:
    """The refusals already on the base, folded away: not this pull request's to fix."""
    lines = [
        "",
        f"<details><summary>Already refused on {_md(result.base)}, not this pull "
        "request's</summary>",
        "",
    ]
    lines += _capped(
        (f"- {_md(refusal.message())}" for refusal in result.inherited),
        len(result.inherited),
    )
    return [*lines, "", "</details>"]


def _plan_line(plan: PlanOutlook) -> str:
    target = plan.after.environment if plan.after else None
    into = f" into {_code(target)}" if target else ""
    change = f" ({plan.change})" if plan.change else ""
    notes = "".join(f"\n  - note: {_md(note)}" for note in plan.after.notes) if plan.after else ""
    return f"- {_code(plan.path)}{into}{change}: {_md(outlook(plan))}{notes}"


def _capped(lines: Iterable[str], total: int) -> list[str]:
    shown: list[str] = []
    for line in lines:
        if len(shown) == _SHOWN:
            more = total - _SHOWN
            shown.append(f"- ... and {more} more (`reconciler verify-mergeable` lists them all)")
            break
        shown.append(line)
    return shown
