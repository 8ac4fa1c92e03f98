"""CLI: reporters, each command's result, shown the way `--format` chose.

check-jsonschema's reporters are the model: a `Reporter` per format, chosen by
name (`REPORTER_BY_NAME`), with one method per kind of result. A command parses
its options, makes one call to the application layer (`reconciler.app.api`), and
hands the result to `reporter_for(output_format)`; the exit code is its
`Outcome` (`errors`). A format leaves out the results it does not show: the
commands that give them do not offer it (`options.WithExamples.reports` names
each command's method, and a test holds every format a command offers to it).

The formatting itself lives beside each command family (`output`,
`verify_output`, `plan_output`, ...), imported when a method is first called:
`reconciler validate` never loads Git or the history modules.
"""

from __future__ import annotations

# The formatting modules are imported in the methods: a command loads only its own.
# ruff: noqa: PLC0415
from typing import TYPE_CHECKING, ClassVar

import click

if TYPE_CHECKING:
    from reconciler.app.api import Acted, Founded, LockActed, PlanView, Verification
    from reconciler.app.demo import Story
    from reconciler.app.mergeable import MergeCheck
    from reconciler.app.passes import PassReport
    from reconciler.app.trail import Entry
    from reconciler.app.validating import Validation
    from reconciler.app.watch_values import LogEvent
    from reconciler.core.access import AccessReport
    from reconciler.core.status import Pipeline


class Reporter:
    """Shows each command's result in one format; a method not overridden is a result
    this format does not show."""

    name: ClassVar[str]

    def _missing(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"--format {self.name} does not show {what}")

    def validation(self, result: Validation) -> None:
        raise self._missing("a validation")

    def verification(self, result: Verification, *, list_all: bool = False) -> None:
        raise self._missing("a verification")

    def access(self, report: AccessReport) -> None:
        raise self._missing("access")

    def plan(self, view: PlanView) -> None:
        raise self._missing("plans")

    def status(self, view: Pipeline) -> None:
        raise self._missing("the pipeline")

    def history(self, entries: tuple[Entry, ...]) -> None:
        raise self._missing("the audit trail")

    def merge_check(self, check: MergeCheck) -> None:
        raise self._missing("a merge check")

    def acted(self, acted: Acted) -> None:
        raise self._missing("an action")

    def locked(self, acted: LockActed) -> None:
        raise self._missing("a lock")

    def apply_pass(self, report: PassReport) -> None:
        raise self._missing("a pass")

    def founded(self, founded: Founded) -> None:
        raise self._missing("a new repository")

    def log_event(self, event: LogEvent) -> None:
        raise self._missing("log events")

    def story(self, story: Story) -> None:
        raise self._missing("the story")

    # What every format says alike, on stderr: notes for people, never in the way of a parser.

    def note(self, text: str) -> None:
        click.echo(text, err=True)

    def _skipped(self, result: Validation) -> None:
        from reconciler.cli.output import skipped_note

        if result.skipped:
            self.note(skipped_note(result.skipped))

    def _stand_ins(self, founded: Founded) -> None:
        from reconciler.cli.output import stand_in_warning

        if founded.stand_ins:
            self.note(stand_in_warning(founded.stand_ins, founded.made.admin))


class TextReporter(Reporter):
    name = "text"

    def validation(self, result: Validation) -> None:
        from reconciler.cli.output import validation_text

        validation_text(result.report)
        self._skipped(result)

    def verification(self, result: Verification, *, list_all: bool = False) -> None:
        from reconciler.cli.verify_output import verification_text

        verification_text(
            result.result,
            result.shown,
            list_all=list_all,
            total=len(result.landings),
            ignored=result.ignored,
        )

    def access(self, report: AccessReport) -> None:
        from reconciler.cli.verify_output import access_text

        access_text(report)

    def plan(self, view: PlanView) -> None:
        from reconciler.cli.plan_output import plan_text

        plan_text(view.decisions, view.drift, view.branch)

    def status(self, view: Pipeline) -> None:
        from reconciler.cli.output import output_style, terminal_columns
        from reconciler.cli.people_output import render_pipeline

        width = min(terminal_columns(), 120)
        lines = render_pipeline(view, width, output_style())
        if lines:  # one write, as `history`'s
            click.echo("\n".join(lines))

    def history(self, entries: tuple[Entry, ...]) -> None:
        from reconciler.cli.output import output_style
        from reconciler.cli.people_output import render_entry

        style = output_style()
        # One write: thousands of entries, each echoed alone, cost more than rendering them.
        text = "\n".join(render_entry(entry, style) for entry in entries)
        click.echo(text or "nothing recorded")

    def merge_check(self, check: MergeCheck) -> None:
        from reconciler.cli.mergeable_output import text

        text(check)

    def acted(self, acted: Acted) -> None:
        from reconciler.cli.output import made_text

        made_text(acted.made, acted.still_to_do)

    def locked(self, acted: LockActed) -> None:
        from reconciler.cli.output import locked_text

        locked_text(acted.locked, acted.still_to_do)

    def apply_pass(self, report: PassReport) -> None:
        from reconciler.cli.apply_output import pass_text

        pass_text(report)

    def founded(self, founded: Founded) -> None:
        from reconciler.cli.output import founded_text

        founded_text(founded.made)
        self._stand_ins(founded)

    def log_event(self, event: LogEvent) -> None:
        from reconciler.cli.output import log_text

        click.echo(log_text(event), err=True)

    def story(self, story: Story) -> None:
        from reconciler.cli.demo_output import story_text

        story_text(story)


class JsonReporter(Reporter):
    """The documented JSON (docs/output-formats.md): keys are only ever added."""

    name = "json"

    def validation(self, result: Validation) -> None:
        from reconciler.cli.output import validation_json

        validation_json(result.report)
        self._skipped(result)

    def verification(self, result: Verification, *, list_all: bool = False) -> None:
        from reconciler.cli.verify_output import emit_verification_json

        emit_verification_json(result.result, result.landings, result.refused, result.ignored)

    def access(self, report: AccessReport) -> None:
        from reconciler.cli.output import emit_json
        from reconciler.cli.verify_output import access_json

        emit_json(access_json(report))

    def plan(self, view: PlanView) -> None:
        from reconciler.cli.output import emit_json
        from reconciler.cli.plan_output import plan_json

        emit_json(plan_json(view.decisions, view.drift))

    def status(self, view: Pipeline) -> None:
        from reconciler.cli.output import emit_json
        from reconciler.cli.people_output import pipeline_json

        emit_json(pipeline_json(view))

    def history(self, entries: tuple[Entry, ...]) -> None:
        from reconciler.cli.output import emit_json

        emit_json({"entries": [entry.as_json() for entry in entries]})

    def merge_check(self, check: MergeCheck) -> None:
        from reconciler.cli.mergeable_output import check_json
        from reconciler.cli.output import emit_json

        emit_json(check_json(check))

    def acted(self, acted: Acted) -> None:
        from reconciler.cli.output import made_json

        made_json(acted.made)

    def locked(self, acted: LockActed) -> None:
        from reconciler.cli.output import locked_json

        locked_json(acted.locked)

    def apply_pass(self, report: PassReport) -> None:
        from reconciler.cli.apply_output import pass_json
        from reconciler.cli.output import emit_json

        emit_json(pass_json(report))

    def founded(self, founded: Founded) -> None:
        from reconciler.cli.output import founded_json

        founded_json(founded.made)
        self._stand_ins(founded)

    def log_event(self, event: LogEvent) -> None:
        from reconciler.cli.output import log_json

        click.echo(log_json(event), err=True)

    def story(self, story: Story) -> None:
        from reconciler.cli.demo_output import story_json

        story_json(story)


class GithubReporter(Reporter):
    """GitHub workflow commands: annotations at the files and lines concerned."""

    name = "github"

    def validation(self, result: Validation) -> None:
        from reconciler.cli.output import validation_github

        validation_github(result.report)
        self._skipped(result)

    def verification(self, result: Verification, *, list_all: bool = False) -> None:
        from reconciler.cli.verify_output import verification_github

        verification_github(result.result, result.refused, result.ignored)

    def merge_check(self, check: MergeCheck) -> None:
        from reconciler.cli.mergeable_output import github

        github(check)


class MarkdownReporter(Reporter):
    """A comment for a pull request."""

    name = "markdown"

    def merge_check(self, check: MergeCheck) -> None:
        from reconciler.cli.mergeable_output import markdown

        click.echo(markdown(check), color=True)


class HtmlReporter(Reporter):
    """One self-contained page (inline stylesheet, no script, no other request): the
    pipeline to attach to a change record or keep as a CI artifact."""

    name = "html"

    def status(self, view: Pipeline) -> None:
        from reconciler.web.render import pipeline_page

        click.echo(pipeline_page(view, export=True), nl=False)


REPORTER_BY_NAME: dict[str, type[Reporter]] = {
    reporter.name: reporter
    for reporter in (TextReporter, JsonReporter, GithubReporter, MarkdownReporter, HtmlReporter)
}


def reporter_for(output_format: str) -> Reporter:
    return REPORTER_BY_NAME[output_format]()
