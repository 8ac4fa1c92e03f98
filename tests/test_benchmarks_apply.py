"""The apply benchmark's repository: every plan is executable and runs exactly once.

Tiny sizes (3 plans x 2 applications), so it runs in seconds; the benchmark
itself (`python -m benchmarks.apply`) uses the same code at 200 x 5.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.apply import (
    ApplySettings,
    build_fixture,
    check_pass,
    check_reference,
    fresh_workspace,
    main,
    new_commits,
    plan_files,
    profile_apply,
    reference_records,
    run_apply,
)

TINY = ApplySettings(plans=3, apps=2, seed=7)


def test_every_plan_runs_exactly_once_with_one_start_and_one_finish_record(
    tmp_path: Path,
) -> None:
    fixture = build_fixture(TINY, tmp_path / "fixture")
    workspace = fresh_workspace(fixture, tmp_path / "run")
    _, report = run_apply(fixture, workspace)
    check = check_pass(fixture, workspace, report)
    assert check.problems == []
    assert sorted(run["plan"] for run in report["runs"]) == sorted(plan_files(TINY))
    assert {run["result"] for run in report["runs"]} == {"succeeded"}
    assert (check.start_records, check.finish_records, check.other_commits) == (3, 3, 0)
    records = new_commits(workspace.remote, fixture.tip, fixture.allowed_signers)
    assert [trailers["Result"] for _, _, _, trailers in records] == ["started", "succeeded"] * 3
    _, again = run_apply(fixture, workspace)
    assert again["runs"] == []  # a plan version runs at most once
    assert new_commits(workspace.remote, fixture.tip, fixture.allowed_signers) == records


def test_plans_over_a_promotion_chain_all_run_in_one_pass_each_after_its_source(
    tmp_path: Path,
) -> None:
    # Issue 22: "2,000 executable plans across 5 environments in one pass". The plans take
    # the chain's environments in turn, each promoting the versions of the plan before it.
    chained = ApplySettings(plans=7, apps=2, seed=7, environments=3)
    fixture = build_fixture(chained, tmp_path / "fixture")
    workspace = fresh_workspace(fixture, tmp_path / "run")
    _, report = run_apply(fixture, workspace)
    assert check_pass(fixture, workspace, report).problems == []
    targets = [chained.target(index)[0] for index in range(1, 8)]
    ran = {run["plan"]: run["environment"] for run in report["runs"]}
    assert ran == {f"plans/bench-{index:04d}.yaml": targets[index - 1] for index in range(1, 8)}
    assert sorted(set(targets)) == ["development", "qa", "staging"]
    order = [run["plan"] for run in report["runs"]]
    for index in range(2, 8):  # a promotion runs after the run whose versions it promotes
        if chained.target(index)[1] is not None:
            before = f"plans/bench-{index - 1:04d}.yaml"
            assert order.index(before) < order.index(f"plans/bench-{index:04d}.yaml")


def test_the_repository_is_deterministic_in_the_seed(tmp_path: Path) -> None:
    first = build_fixture(TINY, tmp_path / "first")
    second = build_fixture(TINY, tmp_path / "second")
    assert first.tip == second.tip
    assert build_fixture(ApplySettings(3, 2, seed=8), tmp_path / "third").tip != first.tip


def test_the_reference_makes_two_signed_commits_per_run(tmp_path: Path) -> None:
    fixture = build_fixture(TINY, tmp_path / "fixture")
    workspace = fresh_workspace(fixture, tmp_path / "reference")
    reference_records(fixture, workspace, 3)
    assert check_reference(fixture, workspace, 3) == []
    commits = new_commits(workspace.remote, fixture.tip, fixture.allowed_signers)
    assert len(commits) == 6
    assert {validity for _, _, validity, _ in commits} == {"G"}


def test_the_command_reports_both_and_the_goal_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--plans", "3", "--apps", "2", "--dir", str(tmp_path / "bench"), "--format", "json"]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert set(report["measurements"]) == {"a", "b", "a_idle"}
    assert report["measurements"]["a"]["runs_per_measurement"] == 3
    assert report["checks"][0]["passed"] is True
    [goal] = report["goals"]
    assert goal["status"] in {"PASS", "MISS"}
    assert goal["bound"] == 1.5


def test_the_profile_times_every_phase_of_a_real_pass_and_puts_everything_back(
    tmp_path: Path,
) -> None:
    import reconciler.app.pipeline  # noqa: PLC0415 - checked to be untouched afterwards
    import reconciler.app.reconcile  # noqa: PLC0415

    names = vars(reconciler.app.reconcile)
    gather = vars(reconciler.app.pipeline)["gather"]
    before = (names["Reconciler"].pass_once, gather, names["ThreadPoolExecutor"])
    fixture = build_fixture(TINY, tmp_path / "fixture")
    profile = profile_apply(fixture, tmp_path, top=0)
    assert profile.runs == 3
    by_label = {phase.label: phase for phase in profile.phases}
    # One push per run (its start, with the previous run's finish: no other reconciler has
    # run in the environment), and one for the last finish.
    assert by_label["git push + update-ref"].calls == 3 + 1
    # A deploy per application of each run, and no `current`: before the first run nothing is
    # recorded to compare, and before each other the pass knows what its own runs deployed.
    assert by_label["driver processes (process.run)"].calls == 3 * 2
    assert sum(phase.self_time for phase in profile.phases) == pytest.approx(
        profile.seconds, rel=0.05
    )
    after = vars(reconciler.app.pipeline)["gather"]
    assert (names["Reconciler"].pass_once, after, names["ThreadPoolExecutor"]) == before
