"""The start-up benchmark runs every command it names, and rates each against the references."""

from __future__ import annotations

import json

import pytest

from benchmarks.startup import main


def test_every_command_is_timed_and_rated_against_both_references(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--rounds", "1", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    labels = [command["label"] for command in report["commands"]]
    assert labels[:2] == ["python -c pass", "check-jsonschema --version"]
    assert "reconciler --help" in labels
    assert "reconciler verify --help" in labels
    assert "reconciler verify (nothing new)" in labels
    for command in report["commands"]:
        assert len(command["seconds"]) == 1
        assert set(command["ratios"]) == {"python -c pass", "check-jsonschema --version"}
        assert command["ratios"]["python -c pass"] > 0
        # Ours are held to the goal, the references and the floor are not.
        assert (command["status"] is None) == (not command["label"].startswith("reconciler"))
