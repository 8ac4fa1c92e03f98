"""Apply at scale: one pass runs a backlog of any size, decides each plan a bounded number of
times rather than every plan once per run, and asks a driver what runs there once per
environment and pass rather than once per application and run.

On the apply benchmark's repository (`benchmarks.apply`, real signed commits, a bare
remote): every plan executable in one environment, so a pass needs a round per plan,
with the command driver. The service runs in-process where a test reads what the pass
did beyond its report (the decisions counted, `Options.max_rounds`).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

from benchmarks.apply import (
    ENVIRONMENT,
    INSTANCE,
    SETTINGS_ADMIN,
    TECH_LEAD,
    ApplySettings,
    Fixture,
    Workspace,
    build_fixture,
    check_pass,
    email_of,
    fresh_workspace,
    git,
    identity_environment,
    plan_yaml,
    run_apply,
    signing_config,
)
from reconciler.app.passes import Options, PassReport
from reconciler.app.reconcile import Reconciler
from reconciler.core import decide
from tests.clock import SUITE_NOW
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import DEV_PLAN, ECOMMERCE, QA_PLAN, dev_plan, qa_plan

BACKLOG = ApplySettings(plans=10, apps=2, seed=11)


def service_pass(fixture: Fixture, workspace: Workspace, max_rounds: int = 1000) -> PassReport:
    """One `apply` pass of the service, in-process, on the workspace's clone."""
    options = Options(
        remote="origin",
        state_dir=workspace.state_dir,
        key=fixture.service_key,
        instance=INSTANCE,
        driver_root=workspace.driver_root,
        max_rounds=max_rounds,
    )
    with Reconciler(workspace.clone, options, clock=lambda: SUITE_NOW, sleep=time.sleep) as it:
        return it.pass_once()


def test_a_backlog_of_more_rounds_than_the_round_limit_settles_in_one_pass(
    tmp_path: Path,
) -> None:
    # One environment takes one run at a time: ten plans need ten rounds, more than three.
    fixture = build_fixture(BACKLOG, tmp_path / "fixture")
    workspace = fresh_workspace(fixture, tmp_path / "run")
    report = service_pass(fixture, workspace, max_rounds=3)
    assert [run.result for run in report.runs] == ["succeeded"] * BACKLOG.plans
    assert len({run.plan.path for run in report.runs}) == BACKLOG.plans
    ran = {
        "runs": [
            {"run": run.run, "plan": run.plan.path, "result": run.result} for run in report.runs
        ]
    }
    assert check_pass(fixture, workspace, ran).problems == []


def test_a_pass_decides_each_plan_a_few_times_not_every_plan_once_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = build_fixture(BACKLOG, tmp_path / "fixture")
    workspace = fresh_workspace(fixture, tmp_path / "run")
    decided = 0
    decide_one = decide._decide_one

    def counted(*arguments: object) -> decide.Decision:
        nonlocal decided
        decided += 1
        return decide_one(*arguments)  # type: ignore[arg-type]

    monkeypatch.setattr(decide, "_decide_one", counted)
    report = service_pass(fixture, workspace)
    assert len(report.runs) == BACKLOG.plans
    # Every plan once, then per round the run it finished and the next plan to start:
    # linear. Deciding every plan every round is plans x rounds (110 here).
    assert decided <= 4 * BACKLOG.plans
    assert report.decided == decided  # the report's count is the real one


def counting_driver(tmp_path: Path) -> tuple[Path, Path]:
    """A command driver that keeps what it deployed and answers `current` from it, logging
    each `current` it is asked; the script, and that log."""
    state = tmp_path / "driver-state"
    state.mkdir()
    asked = tmp_path / "asked"
    script = tmp_path / "driver.sh"
    where = shlex.quote(str(state))
    script.write_text(
        'case "$RECONCILER_OPERATION" in\n'
        f'  deploy) echo "$RECONCILER_VERSION" > {where}/"$RECONCILER_APP" ;;\n'
        f'  current) echo "$RECONCILER_APP" >> {shlex.quote(str(asked))};'
        f' cat {where}/"$RECONCILER_APP" 2>/dev/null ;;\n'
        "esac\n"
    )
    return script, asked


def commit_as(fixture: Fixture, workspace: Workspace, identity: str, message: str) -> None:
    """Commit the clone's changes signed by `identity` (a key of the fixture) and push them."""
    git(workspace.clone, "add", "-A")
    who = identity_environment(identity, email_of(identity), None)
    sign = signing_config(fixture.keys[identity])
    git(workspace.clone, *sign, "commit", "-q", "-S", "-m", message, env=who)
    git(workspace.clone, "push", "-q", "origin", "main")


def test_a_pass_asks_a_driver_what_runs_once_per_application_not_once_per_run(
    tmp_path: Path,
) -> None:
    fixture = build_fixture(BACKLOG, tmp_path / "fixture")
    workspace = fresh_workspace(fixture, tmp_path / "run")
    script, asked = counting_driver(tmp_path)
    # The settings admin points development at the counting driver, in a signed commit.
    path = workspace.clone / "environments" / f"{ENVIRONMENT}.yaml"
    text = path.read_text().replace('argv: ["true"]', f'argv: ["/bin/sh", "{script}"]')
    assert str(script) in text
    path.write_text(text)
    commit_as(fixture, workspace, SETTINGS_ADMIN, "Count what the driver is asked")
    _, report = run_apply(fixture, workspace)
    assert [run["result"] for run in report["runs"]] == ["succeeded"] * BACKLOG.plans
    # Nothing was recorded before the pass, and after each run the pass knows what it
    # deployed: a run no longer asks about each of its applications (18 processes here).
    assert not asked.exists()
    # Three more plans: the next pass asks about what the last one recorded, once.
    more = ApplySettings(plans=BACKLOG.plans + 3, apps=BACKLOG.apps, seed=BACKLOG.seed)
    for index in range(BACKLOG.plans + 1, more.plans + 1):
        plan = workspace.clone / "plans" / f"{more.plan_names[index - 1]}.yaml"
        plan.write_text(plan_yaml(more, index))
    git(workspace.clone, "pull", "-q", "--rebase", "origin", "main")
    commit_as(fixture, workspace, TECH_LEAD, "Three more plans")
    _, report = run_apply(fixture, workspace)
    assert [run["result"] for run in report["runs"]] == ["succeeded"] * 3
    assert sorted(asked.read_text().split()) == sorted(BACKLOG.applications)


def test_a_promotion_a_run_makes_possible_starts_in_the_same_pass(
    tmp_path: Path, people: People
) -> None:
    # The QA release is approved and triggered, and waits for ecommerce 1.4.0 to run in
    # development, which the development build deploys: one pass runs both, the QA
    # release decided again once the build's finish record says what runs there.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    waiting = repo.reconciler("plan", "--format", "json").json()
    assert [item["status"] for item in waiting["plans"] if item["plan"] == QA_PLAN] == ["waiting"]
    result = repo.apply("--format", "json")
    assert result.exit_code == 0, result.stderr
    runs = {run["plan"]: run["result"] for run in result.json()["runs"]}
    assert runs == {DEV_PLAN: "succeeded", QA_PLAN: "succeeded"}
