"""Drift, continuously: `watch` asks the drivers at every poll, `status` shows it, and a run
that finds drift before its first step stops unless its plan says `override_drift: true`.

Drift is made as a person would make it: the local driver's `current` link switched by
hand to another release, outside the reconciler. Real repositories, the real CLI and a
real `watch`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from reconciler.adapters.drivers import LocalDriver
from tests.people import People
from tests.repositories import SeedRepo, run_git
from tests.scenarios import DEV_PLAN, ECOMMERCE, dev_plan
from tests.test_watch import Watcher, push, subjects, watch_argv

HAND_MADE = "1.3.9-hotfix"


def switch_by_hand(root: Path, application: str, version: str) -> None:
    """What someone on the host does: another release made current, atomically."""
    app = root / "development" / application
    (app / "releases" / version).mkdir(parents=True, exist_ok=True)
    link = app / "current"
    target = Path(os.readlink(link)).parent / version
    os.symlink(target, app / "current.tmp")
    os.replace(app / "current.tmp", link)


def current(repo: SeedRepo, application: str = "ecommerce") -> str | None:
    return LocalDriver(repo.driver_root).current(application, "development")


def drifted_development(tmp_path: Path, people: People) -> SeedRepo:
    """ecommerce 1.4.0 deployed to development by the reconciler, then switched by hand."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    assert repo.apply().exit_code == 0
    assert current(repo) == "1.4.0"
    switch_by_hand(repo.driver_root, "ecommerce", HAND_MADE)
    return repo


def next_build(override: bool = False) -> str:
    text = dev_plan({**ECOMMERCE, "version": "1.4.1"})
    return text + ("override_drift: true\n" if override else "")


DRIFT = {
    "environment": "development",
    "application": "ecommerce",
    "recorded": "1.4.0",
    "current": HAND_MADE,
}


def test_a_run_that_finds_drift_before_its_first_step_stops_and_status_shows_it(
    tmp_path: Path, people: People
) -> None:
    repo = drifted_development(tmp_path, people)
    status = repo.reconciler("status", "--driver-root", str(repo.driver_root), "--format", "json")
    assert status.exit_code == 0, status.stderr
    assert (status.json()["drift"], status.json()["drift_notes"]) == ([DRIFT], [])
    text = repo.reconciler("status", "--driver-root", str(repo.driver_root)).stdout
    assert (
        f"drift  ecommerce in development: deployments/ records 1.4.0, the driver reports "
        f"{HAND_MADE}" in text
    )

    repo.commit(people.alice, {DEV_PLAN: next_build()})
    result = repo.apply("--format", "json")
    assert result.exit_code == 1, result.stderr
    [run] = result.json()["runs"]
    assert run["result"] == "failed"
    assert run["reason"].startswith(
        f"drift: ecommerce in development: deployments/ records 1.4.0, the driver reports "
        f"{HAND_MADE}; the run stops before deploying over it"
    )
    assert "override_drift: true" in run["reason"]
    assert current(repo) == HAND_MADE  # nothing was deployed over it
    finish = repo.git("log", "-1", "--format=%B", "main")
    assert "Result: failed" in finish
    assert "drift" in finish


def test_override_drift_lets_the_run_deploy_over_it(tmp_path: Path, people: People) -> None:
    repo = drifted_development(tmp_path, people)
    # alice is a tech lead, and tech leads hold plan.deploy in development.
    repo.commit(people.alice, {DEV_PLAN: next_build(override=True)})
    result = repo.apply("--format", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    [run] = result.json()["runs"]
    assert run["result"] == "succeeded"
    assert current(repo) == "1.4.1"
    status = repo.reconciler("status", "--driver-root", str(repo.driver_root), "--format", "json")
    assert status.json()["drift"] == []


def test_override_drift_set_by_someone_without_plan_deploy_does_not_count(
    tmp_path: Path, people: People
) -> None:
    # bob, a developer, may edit development's plans but not deploy there: deploying over
    # what someone changed by hand is the call of who may deploy, not of who may write plans.
    repo = drifted_development(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: next_build()})
    repo.commit(people.bob, {DEV_PLAN: next_build(override=True)}, signed=False)
    repo.trigger(people.alice, DEV_PLAN)
    result = repo.apply("--format", "json")
    assert current(repo) == HAND_MADE, result.stdout
    decision = repo.decide()[DEV_PLAN]
    assert decision.status != "executable"
    assert decision.plan is None or not decision.plan.override_drift
    assert any("plan.deploy on development" in reason for reason in decision.reasons), (
        decision.reasons
    )


def test_watch_logs_drift_once_per_change_and_commits_nothing_for_it(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    bare = repo.publish_to_bare_remote()
    watcher = Watcher(watch_argv(repo, people, bare, "--interval", "0.2"))
    try:
        watcher.wait_for_event("pass", result="ok")
        push(repo, lambda: repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)}))
        run = f"{Path(DEV_PLAN).stem}.1"
        watcher.wait_for_event("run-finished", 60, run=run, result="succeeded")
        tip = run_git(bare, "rev-parse", "main")
        watcher.wait_for_event("pass", commit=tip)
        time.sleep(1.0)  # five polls: a run the reconciler made is no drift
        assert watcher.named("drift") == []

        switch_by_hand(repo.driver_root, "ecommerce", HAND_MADE)
        found = watcher.wait_for_event("drift", 30)
        assert found["level"] == "warning"
        assert found["drift"] == [DRIFT]
        time.sleep(1.5)  # several more polls find the same drift, and say nothing
        assert len(watcher.named("drift")) == 1

        switch_by_hand(repo.driver_root, "ecommerce", "1.4.0")
        gone = watcher.wait_for(lambda event: event.get("event") == "drift" and not event["drift"])
        assert gone["level"] == "info"
        time.sleep(1.0)
        assert len(watcher.named("drift")) == 2
        assert run_git(bare, "rev-parse", "main") == tip  # never a commit for drift
        assert subjects(bare)[0] == f"Deploy {Path(DEV_PLAN).stem} to development: succeeded"
        assert watcher.stop() == 0
    finally:
        watcher.kill()
