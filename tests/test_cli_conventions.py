"""The CLI's conventions: errors under `--format json`, a bare `reconciler`, `-V`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.configrepo import Result, reconciler
from tests.gitfixtures import People, SeedRepo, proposed_qa_release


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
        ("approve", "plans/no-such-plan.yaml"),
        ("apply", "--dry-run", "--instance", "two words"),
    ],
    ids=["verify-unknown-revision", "approve-unknown-plan", "apply-bad-instance"],
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
