"""The CLI's conventions: errors under `--format json`, a bare `reconciler`, `-V`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.configrepo import Result, reconciler
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import proposed_qa_release


def error_object(result: Result) -> dict[str, object]:
    """The JSON error a failed `--format json` command printed as its last line of stdout."""
    last = result.stdout.strip().splitlines()[-1]
    parsed = json.loads(last)
    assert isinstance(parsed, dict)
    assert set(parsed) == {"error"}
    error = parsed["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "file", "line", "column", "hint", "exit_code"}
    assert error["exit_code"] == result.exit_code
    assert result.stderr.startswith("error: ") or ": error: " in result.stderr  # still for people
    return error


def test_a_json_error_outside_a_repository_is_json_on_stdout(tmp_path: Path) -> None:
    result = reconciler("plan", "--format", "json", cwd=tmp_path)
    assert result.exit_code == 2, result.stderr
    error = error_object(result)
    assert "not a Git repository" in str(error["message"])
    assert error["hint"]


@pytest.mark.parametrize(
    "args",
    [
        ("verify", "--to", "no-such-revision"),
        ("verify-mergeable", "--base", "main", "--head", "no-such-revision"),
        ("approve", "plans/no-such-plan.yaml"),
        ("apply", "--dry-run", "--instance", "two words"),
    ],
    ids=[
        "verify-unknown-revision",
        "verify-mergeable-unknown-head",
        "approve-unknown-plan",
        "apply-bad-instance",
    ],
)
def test_a_json_error_is_json_on_stdout_with_the_process_exit_code(
    tmp_path: Path, people: People, args: tuple[str, ...]
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    result = repo.reconciler(*args, "--format", "json")
    assert result.exit_code in (1, 2), result.stderr
    error = error_object(result)
    assert error["message"]


def test_a_text_error_leaves_stdout_empty(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    result = repo.reconciler("approve", "plans/no-such-plan.yaml")
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: unknown plan")


def test_a_bare_reconciler_prints_the_help_and_succeeds(tmp_path: Path) -> None:
    result = reconciler(cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == reconciler("--help", cwd=tmp_path).stdout
    assert "Commands:" in result.stdout


def test_dash_capital_v_prints_the_version_as_dash_dash_version_does(tmp_path: Path) -> None:
    short = reconciler("-V", cwd=tmp_path)
    assert short.exit_code == 0, short.stderr
    assert short.stdout.startswith("reconciler, version ")
    assert short.stdout == reconciler("--version", cwd=tmp_path).stdout


def test_the_top_level_help_cuts_no_command_description_short(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    result = reconciler("--help", cwd=tmp_path, env=env)
    assert result.exit_code == 0, result.stderr
    commands = result.stdout.split("Commands:\n", 1)[1]
    assert "..." not in commands
    assert "…" not in commands
    for name in ("apply", "approve", "history", "plan", "status"):
        assert f"  {name} " in commands
    # Each description is a whole sentence: the wrapped lines end in a full stop.
    assert all(line.rstrip().endswith(".") for line in re.split(r"\n  (?=\S)", commands) if line)


COMMANDS = (
    "access",
    "apply",
    "approve",
    "cancel",
    "demo",
    "deploy",
    "history",
    "init",
    "lock",
    "plan",
    "rollback",
    "serve",
    "status",
    "unlock",
    "validate",
    "verify",
    "verify-mergeable",
    "watch",
)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_commands_help_ends_with_examples_of_that_command(tmp_path: Path, name: str) -> None:
    # No command's help had an example.
    result = reconciler(name, "--help", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    examples = result.stdout.split("\nExamples:\n", 1)[1]
    blocks = [block.splitlines() for block in examples.strip("\n").split("\n\n")]
    assert blocks
    for what, line, *continued in blocks:
        assert what.startswith("  # ")
        assert line.startswith(f"  reconciler {name}")
        assert all(part.startswith("      ") for part in continued)


def test_the_command_list_is_every_command(tmp_path: Path) -> None:
    # So a new command gets its examples too.
    listed = reconciler("--help", cwd=tmp_path).stdout.split("Commands:\n", 1)[1]
    assert tuple(re.findall(r"^  (\S+)", listed, flags=re.MULTILINE)) == COMMANDS
