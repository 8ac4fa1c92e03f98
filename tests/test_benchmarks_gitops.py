"""The gitops benchmark times both ways of making the same commits, and checks they made them."""

from __future__ import annotations

import json

import pytest

from benchmarks.gitops import main


def test_both_ways_make_the_same_tree_with_one_commit_per_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--environments", "2", "--applications", "2", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 8
    assert report["checks"] == {"same_tree": True, "one_commit_per_step": True}
    assert report["driver_step_median_seconds"] > 0
    assert report["bare_commit_push_median_seconds"] > 0
    assert report["ratio"] == pytest.approx(
        report["driver_step_median_seconds"] / report["bare_commit_push_median_seconds"],
        abs=0.02,
    )
