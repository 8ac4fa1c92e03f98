"""The everyday-commands benchmark runs each command it names, answering, and rates it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.everyday import GOAL, REFERENCE, main


def test_every_everyday_command_answers_and_is_rated_against_git_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A small history with nothing unauthorised: every command's answer is exit 0.
    small = ["--commits", "40", "--users", "12", "--plans", "10", "--unauthorised", "0"]
    at = ["--dir", str(tmp_path / "history"), "--state-dir", str(tmp_path / "state")]
    assert main([*small, *at, "--rounds", "1", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["goal_ratio"] == GOAL
    assert report["repository"].startswith("40 commits, ")
    labels = [command["label"] for command in report["commands"]]
    assert labels == [
        REFERENCE,
        "reconciler plan",
        "reconciler status",
        "reconciler history",
        "reconciler access USER",
        "reconciler verify (nothing new)",
    ]
    for command in report["commands"]:
        assert command["exit_codes"] == [0], command["label"]
        assert len(command["cpu_seconds"]) == 1
        assert command["ratio"] > 0
        # Ours are held to the goal, the reference is not.
        assert (command["status"] is None) == (command["label"] == REFERENCE)
    assert (tmp_path / "state").is_dir()  # the first round walked the history into it


def test_a_command_that_fails_voids_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state that is no database stops `plan` with an error, which is no answer."""
    small = ["--commits", "20", "--users", "12", "--plans", "5", "--unauthorised", "0"]
    state = tmp_path / "state"
    state.mkdir()
    (state / "main.sqlite3").write_bytes(b"not a database, " * 1024)
    at = ["--dir", str(tmp_path / "history"), "--state-dir", str(state)]
    assert main([*small, *at, "--rounds", "1"]) == 1
    assert "benchmark failed: reconciler plan exited" in capsys.readouterr().err


def test_the_code_before_runs_beside_each_command_in_the_same_rounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # This checkout stands for the code before: each command runs twice a round, answering.
    checkout = Path(__file__).resolve().parent.parent
    small = ["--commits", "20", "--users", "12", "--plans", "5", "--unauthorised", "0"]
    at = ["--dir", str(tmp_path / "history"), "--state-dir", str(tmp_path / "state")]
    assert main([*small, *at, "--rounds", "1", "--before", str(checkout), "--format", "json"]) == 0
    commands = json.loads(capsys.readouterr().out)["commands"]
    labels = [command["label"] for command in commands]
    assert labels[:3] == [REFERENCE, "reconciler plan (before)", "reconciler plan"]
    assert len(labels) == 11
    assert all(command["exit_codes"] == [0] for command in commands)


def test_a_before_that_is_no_checkout_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--before", str(tmp_path)])
    assert stopped.value.code == 2
    assert "is no checkout of the reconciler" in capsys.readouterr().err
