"""The thin CLI: every command's result has a reporter in each format it offers, and every
exit code comes from the one mapping (`reconciler.cli.errors.EXIT_CODES`)."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

import reconciler
from reconciler.app.watch_values import LogEvent
from reconciler.cli import main
from reconciler.cli.errors import EXIT_CODES, Outcome
from reconciler.cli.options import WithExamples
from reconciler.cli.reporter import REPORTER_BY_NAME, Reporter, reporter_for
from tests.people import People
from tests.scenarios import QA_PLAN, proposed_qa_release

PACKAGE = Path(reconciler.__file__).parent
THE_ONE_PLACE = PACKAGE / "cli" / "errors.py"


def commands() -> dict[str, click.Command]:
    context = click.Context(main, info_name="reconciler")
    found = {name: main.get_command(context, name) for name in main.list_commands(context)}
    assert len(found) >= 14  # validate ... init: a lost command would pass the rest vacuously
    return {name: command for name, command in found.items() if command is not None}


def format_choices(command: click.Command) -> tuple[str, ...]:
    [option] = [param for param in command.params if param.name == "output_format"]
    assert isinstance(option.type, click.Choice)
    return tuple(str(choice) for choice in option.type.choices)


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_format_a_command_offers_has_a_reporter_for_its_result(name: str) -> None:
    command = commands()[name]
    assert isinstance(command, WithExamples), name
    shown = getattr(Reporter, command.reports)  # a method every reporter answers to
    for output_format in format_choices(command):
        reporter = REPORTER_BY_NAME[output_format]
        assert getattr(reporter, command.reports) is not shown, (name, output_format)


def test_a_format_a_command_does_not_offer_has_no_reporter_for_its_result() -> None:
    offered = {
        (command.reports, output_format)
        for command in commands().values()
        if isinstance(command, WithExamples)
        for output_format in format_choices(command)
    }
    for output_format, reporter in REPORTER_BY_NAME.items():
        for method in vars(Reporter):
            if method.startswith("_") or method in ("note", "name"):
                continue
            if (method, output_format) not in offered:
                assert getattr(reporter, method) is getattr(Reporter, method), (
                    method,
                    output_format,
                )
                with pytest.raises(NotImplementedError, match=f"--format {output_format}"):
                    getattr(reporter(), method)(None)


def _exits(tree: ast.AST) -> list[int]:
    """Lines that end the process other than by returning: SystemExit, sys.exit, a click
    context's exit or abort, os._exit (an asyncio transport's abort drops a connection)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Name) and node.id == "SystemExit")
        or (
            isinstance(node, ast.Attribute)
            and node.attr in ("exit", "_exit", "abort")
            and not (_named(node.value) == "transport" and node.attr == "abort")
        )
    ]


def _named(node: ast.expr) -> str | None:
    """The name an expression ends in (`self.transport` -> transport)."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def test_every_command_exits_through_the_one_mapping() -> None:
    # The commands: each returns an Outcome, which their class maps (`WithExamples.invoke`).
    for name, command in commands().items():
        assert isinstance(command, WithExamples), name
        assert command.callback is not None
        assert command.callback.__annotations__["return"] == "Outcome", name
    # Nothing else in the CLI, nor anything it calls, ends the process on its own.
    elsewhere = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != THE_ONE_PLACE and (lines := _exits(ast.parse(path.read_text())))
    }
    # A worker process whose parent died: no command's exit, it has no one to report to.
    # The process's entry passes on the code a command ended with (`errors.leave`).
    allowed = ("adapters/process.py", "__main__.py")
    assert elsewhere == {path: elsewhere.get(path, []) for path in allowed if path in elsewhere}
    assert all(len(elsewhere.get(path, [])) <= 1 for path in allowed)
    # The mapping: every outcome once, and the usage errors click finds itself agree.
    assert set(EXIT_CODES) == set(Outcome)
    assert len(set(EXIT_CODES.values())) == len(Outcome)
    assert EXIT_CODES[Outcome.USAGE] == click.UsageError.exit_code
    assert (EXIT_CODES[Outcome.OK], EXIT_CODES[Outcome.FAILED]) == (0, 1)


def test_the_json_reporter_gives_a_watch_log_event_as_one_object_per_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = LogEvent(
        datetime(2026, 12, 1, 9, 30, 5, 123456, tzinfo=UTC),
        "warning",
        "pass-failed",
        "the pass\nfailed",
        {"commit": "abc", "seconds": 1.5},
    )
    reporter_for("json").log_event(event)
    reporter_for("text").log_event(event)
    out, err = capsys.readouterr()
    assert out == ""  # log lines go to stderr: stdout stays the command's own
    as_json, as_text = err.splitlines()
    assert json.loads(as_json) == {
        "time": "2026-12-01T09:30:05.123Z",
        "level": "warning",
        "event": "pass-failed",
        "message": "the pass\nfailed",
        "commit": "abc",
        "seconds": 1.5,
    }
    assert as_text.startswith("2026-12-01T09:30:05.123Z warning ")


def test_deploy_and_cancel_answer_in_json_as_approve_does(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    blob = repo.blob(QA_PLAN)
    repo.act_as(people.olga)
    cancelled = repo.reconciler("cancel", QA_PLAN, "--format", "json")
    assert cancelled.exit_code == 0, cancelled.stderr
    made = cancelled.json()
    assert set(made) == {"kind", "commit", "plan", "blob", "environment", "actor"}
    assert (made["kind"], made["actor"], made["plan"]) == ("cancel", "olga", QA_PLAN)
    assert made["commit"] == repo.head()
    assert made["blob"] == repo.blob(QA_PLAN) != blob  # the cancelled version
    assert made["environment"] == "quality-assurance"
    undone = repo.reconciler("cancel", QA_PLAN, "--undo", "--format", "json").json()
    assert (undone["kind"], undone["blob"]) == ("uncancel", blob)
    triggered = repo.reconciler("deploy", "2026-11-qa-release", "--format", "json")
    assert triggered.exit_code == 0, triggered.stderr
    assert triggered.json() == {
        "kind": "deploy",
        "commit": repo.head(),
        "plan": QA_PLAN,
        "blob": blob,
        "environment": "quality-assurance",
        "actor": "olga",
    }
