"""Rollback as a plan (`reconciler rollback ENV [APP...] [--to VERSION]`): a plan file with
`rollback: true` that redeploys versions the records show ran in its target, skipping the
promotion order, with its own approvals (`gates.rollback_approvals`) and, where the
environment breaks the glass (`gates.rollback_ignores_windows`), no windows or freezes.

Real repositories, real signed commits by the seed story's people, the real CLI and the
real local driver; the attacks try to use a rollback plan to deploy what never ran."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import yaml

from tests.clock import SUITE_NOW
from tests.configrepo import example_file, reconciler
from tests.people import People
from tests.repositories import SeedRepo, build
from tests.scenarios import (
    DEV_PLAN,
    ECOMMERCE,
    QA_PLAN,
    dev_plan,
    plan,
    production_with_windows,
    qa_plan,
)
from tests.test_rollback import COMMAND, argv

ROLLBACK_QA = "plans/rollback-quality-assurance-1.yaml"


def rollback_plan(
    name: str, target: str, applications: list[dict[str, str]], *, source: str | None = None
) -> str:
    text = plan(name, target, applications, source=source)
    return text.replace(f"target: {target}\n", f"target: {target}\nrollback: true\n")


def qa_ran_1_4_then_1_5(tmp_path: Path, people: People, **seed: object) -> SeedRepo:
    """QA ran ecommerce 1.4.0, then 1.5.0 (the reconciler's signed records); development
    runs 1.6.0 now, so nothing older may be promoted into QA."""
    repo = SeedRepo.create(tmp_path, people, **seed)  # type: ignore[arg-type]
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.deployed("quality-assurance", {"ecommerce": "1.5.0"})
    repo.deployed("development", {"ecommerce": "1.6.0"})
    return repo


# -- decide ------------------------------------------------------------------------------


def test_a_promotion_of_an_older_version_waits_for_it_to_run_in_the_source_again(
    tmp_path: Path, people: People
) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    decision = repo.decide()[QA_PLAN]
    assert "promotion.missing" in {reason.code for reason in decision.why}


def test_a_rollback_plan_skips_the_promotion_order_to_a_version_that_ran_there(
    tmp_path: Path, people: People
) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    repo.commit(
        people.alice,
        {
            ROLLBACK_QA: rollback_plan(
                "rollback-quality-assurance-1", "quality-assurance", [ECOMMERCE]
            )
        },
    )
    repo.trigger(people.olga, ROLLBACK_QA)
    decision = repo.decide()[ROLLBACK_QA]
    assert decision.status == "executable", decision.reasons
    assert decision.approvers == ()  # quality-assurance names no rollback approvals


def test_a_rollback_plan_needs_the_rollback_approvals_the_environment_names(
    tmp_path: Path, people: People
) -> None:
    qa = example_file("environments/quality-assurance.yaml").replace(
        "  signed_commits: false",
        "  rollback_approvals: [{role: tech-lead, count: 1}]\n  signed_commits: false",
    )
    repo = qa_ran_1_4_then_1_5(tmp_path, people, extra={"environments/quality-assurance.yaml": qa})
    repo.commit(
        people.alice,
        {
            ROLLBACK_QA: rollback_plan(
                "rollback-quality-assurance-1", "quality-assurance", [ECOMMERCE]
            )
        },
    )
    repo.trigger(people.olga, ROLLBACK_QA)
    waiting = repo.decide()[ROLLBACK_QA]
    assert (waiting.status, [wait.what for wait in waiting.waits]) == ("waiting", ["approval"])
    repo.approve(people.ravi, ROLLBACK_QA)
    assert repo.decide()[ROLLBACK_QA].status == "executable"


def test_a_rollback_plan_waits_for_a_freeze_unless_the_environment_breaks_the_glass(
    tmp_path: Path, people: People
) -> None:
    start = (SUITE_NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (SUITE_NOW + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    freeze = f"[{{name: incident, from: '{start}', until: '{until}'}}]"
    production = production_with_windows("[]", freeze)
    path = "plans/rollback-production-1.yaml"
    for glass in (False, True):
        text = production.replace(
            "  signed_commits: true",
            f"  rollback_ignores_windows: {str(glass).lower()}\n  signed_commits: true",
        )
        repo = SeedRepo.create(
            tmp_path / str(glass), people, extra={"environments/production.yaml": text}
        )
        repo.deployed("production", {"ecommerce": "1.4.0"})
        repo.deployed("production", {"ecommerce": "1.5.0"})
        repo.commit(
            people.alice, {path: rollback_plan("rollback-production-1", "production", [ECOMMERCE])}
        )
        repo.trigger(people.olga, path)
        decision = repo.decide()[path]
        if glass:
            assert decision.status == "executable", decision.reasons
        else:
            assert [wait.what for wait in decision.waits] == ["window"], decision.reasons
            assert "the incident freeze" in decision.reasons[0]


def test_a_rollback_plan_that_names_a_source_is_invalid(tmp_path: Path, people: People) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    text = rollback_plan(
        "rollback-quality-assurance-1", "quality-assurance", [ECOMMERCE], source="development"
    )
    repo.commit(people.alice, {ROLLBACK_QA: text})
    decision = repo.decide()[ROLLBACK_QA]
    assert decision.status == "refused"
    result = reconciler("validate", cwd=repo.path)
    assert result.exit_code == 1
    assert f"{ROLLBACK_QA}:" in result.stdout + result.stderr


# -- attacks -------------------------------------------------------------------------------


def test_a_developers_rollback_plan_cannot_skip_promotion_into_qa(
    tmp_path: Path, people: People
) -> None:
    # bob may propose ecommerce into QA; 1.6.0 runs in development but never ran in QA.
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    newer = {"name": "ecommerce", "version": "1.6.0"}
    repo.commit(
        people.bob,
        {ROLLBACK_QA: rollback_plan("rollback-quality-assurance-1", "quality-assurance", [newer])},
    )
    repo.trigger(people.olga, ROLLBACK_QA)
    decision = repo.decide()[ROLLBACK_QA]
    assert decision.status == "refused"
    assert [reason.code for reason in decision.why] == ["rollback.never-ran"]
    assert decision.why[0].facts == {"application": "ecommerce", "version": "1.6.0"}
    build(repo.driver_root, "ecommerce", "1.6.0")
    result = repo.apply("--format", "json")
    assert result.exit_code == 1, result.stderr  # a plan refused
    assert result.json()["runs"] == []
    assert result.json()["refused"] == [f"{ROLLBACK_QA}@{repo.blob(ROLLBACK_QA)}"]
    deployments = (repo.path / "deployments/quality-assurance.yaml").read_text()
    assert "1.6.0" not in deployments


def test_a_record_forged_by_a_person_does_not_make_a_version_one_to_roll_back_to(
    tmp_path: Path, people: People
) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    forged = (
        "environment: quality-assurance\napplications:\n"
        "  ecommerce: {version: 1.3.0, plan: forged, run: forged.1, "
        "deployed_at: '2026-11-01T00:00:00Z'}\n"
    )
    trailers = "Plan: plans/forged.yaml@" + "f" * 40 + "\nEnvironment: quality-assurance"
    repo.commit(people.bob, message=f"Record\n\n{trailers}\nResult: started\nRun: forged.1")
    repo.commit(
        people.bob,
        {"deployments/quality-assurance.yaml": forged},
        message=f"Record\n\n{trailers}\nResult: succeeded\nRun: forged.1",
    )
    older = {"name": "ecommerce", "version": "1.3.0"}
    repo.commit(
        people.alice,
        {ROLLBACK_QA: rollback_plan("rollback-quality-assurance-1", "quality-assurance", [older])},
    )
    repo.trigger(people.olga, ROLLBACK_QA)
    decision = repo.decide()[ROLLBACK_QA]
    assert [reason.code for reason in decision.why] == ["rollback.never-ran"]


def test_turning_a_plan_into_a_rollback_needs_plan_edit_for_every_application_in_it(
    tmp_path: Path, people: People
) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    both = [ECOMMERCE, {"name": "customer-portal", "version": "0.5"}]
    name = "rollback-quality-assurance-1"
    repo.commit(people.diana, {ROLLBACK_QA: plan(name, "quality-assurance", both)})
    repo.commit(people.diana, {ROLLBACK_QA: plan(name, "quality-assurance", both)})
    # bob holds developer in ecommerce only: the flag changes the customer portal's entry too.
    repo.commit(people.bob, {ROLLBACK_QA: rollback_plan(name, "quality-assurance", both)})
    decision = repo.decide()[ROLLBACK_QA]
    assert decision.status == "refused"
    assert any("rollback" in text for text in decision.reasons), decision.reasons


# -- the command -------------------------------------------------------------------------


def test_rollback_writes_a_plan_of_the_previous_version_and_commits_it(
    tmp_path: Path, people: People
) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    repo.act_as(people.alice)
    result = repo.reconciler("rollback", "quality-assurance", "--format", "json")
    assert result.exit_code == 0, result.stderr
    made = result.json()
    assert (made["kind"], made["plan"], made["actor"]) == ("rollback", ROLLBACK_QA, "alice")
    assert made["applications"] == [{"name": "ecommerce", "running": "1.5.0", "version": "1.4.0"}]
    assert repo.git("log", "-1", "--format=%H") == made["commit"]
    assert repo.git("show", "--name-only", "--format=", "HEAD") == ROLLBACK_QA
    assert repo.decide()[ROLLBACK_QA].waits[0].what == "trigger"


def test_rollback_to_a_version_that_never_ran_there_is_refused_and_commits_nothing(
    tmp_path: Path, people: People
) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    head = repo.head()
    repo.act_as(people.alice)
    result = repo.reconciler("rollback", "quality-assurance", "ecommerce", "--to", "1.6.0")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: ecommerce 1.6.0 never ran in quality-assurance, as the records show"
    )
    assert repo.head() == head
    assert not (repo.path / ROLLBACK_QA).exists()


def test_rollback_without_plan_edit_is_refused_up_front(tmp_path: Path, people: People) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    head = repo.head()
    repo.act_as(people.olga)  # deployment: triggers plans, writes none
    result = repo.reconciler("rollback", "quality-assurance")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: olga may not write a plan into quality-assurance for ecommerce"
    )
    assert repo.head() == head


def test_rollback_to_a_version_needs_exactly_one_application(
    tmp_path: Path, people: People
) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    repo.act_as(people.alice)
    result = repo.reconciler("rollback", "quality-assurance", "--to", "1.4.0")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --to names one version")


def test_rollback_into_an_unknown_environment_names_the_known_ones(
    tmp_path: Path, people: People
) -> None:
    repo = qa_ran_1_4_then_1_5(tmp_path, people)
    repo.act_as(people.alice)
    result = repo.reconciler("rollback", "quality-assurence")
    assert result.exit_code == 2
    assert "quality-assurance" in result.stderr


def test_a_rollback_runs_end_to_end_and_each_rollback_is_a_new_plan(
    tmp_path: Path, people: People
) -> None:
    # Development ran ecommerce 1.4.0 and then 1.5.0, for real, through the local driver.
    repo = SeedRepo.create(tmp_path, people)
    for version in ("1.4.0", "1.5.0"):
        build(repo.driver_root, "ecommerce", version)
        repo.commit(people.alice, {DEV_PLAN: dev_plan({"name": "ecommerce", "version": version})})
        assert repo.apply().exit_code == 0
    repo.act_as(people.alice)  # a tech lead: plan.edit and plan.deploy in development
    made = repo.reconciler("rollback", "development", "--format", "json")
    assert made.exit_code == 0, made.stderr
    rollback = made.json()["plan"]
    assert rollback == "plans/rollback-development-1.yaml"
    applied = repo.apply("--format", "json")
    assert applied.exit_code == 0, applied.stderr
    [run] = applied.json()["runs"]
    assert (run["plan"], run["result"]) == (rollback, "succeeded")
    link = repo.driver_root / "development" / "ecommerce" / "current"
    assert os.readlink(link) == "releases/1.4.0"  # switched back to the release made before
    deployments = yaml.safe_load((repo.path / "deployments/development.yaml").read_text())
    assert deployments["applications"]["ecommerce"]["version"] == "1.4.0"
    assert repo.decide()[rollback].status == "done"
    # A plan version runs once: the next rollback, back to 1.5.0, is a plan of its own.
    again = repo.reconciler("rollback", "development", "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["plan"] == "plans/rollback-development-2.yaml"
    assert again.json()["applications"] == [
        {"name": "ecommerce", "running": "1.4.0", "version": "1.5.0"}
    ]


def test_a_rollback_into_production_runs_during_a_freeze_where_the_glass_is_broken(
    tmp_path: Path, people: People
) -> None:
    program, state, calls = tmp_path / "driver.py", tmp_path / "running.json", tmp_path / "calls"
    program.write_text(COMMAND)  # no bad deploy, check or slow check: "-" each
    state.write_text(json.dumps({"ecommerce": "1.5.0"}))
    driver = argv(program, state, calls, "-", "-", "-")
    start = (SUITE_NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (SUITE_NOW + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    production = (
        production_with_windows("[]", f"[{{name: incident, from: '{start}', until: '{until}'}}]")
        .replace(
            "  signed_commits: true", "  rollback_ignores_windows: true\n  signed_commits: true"
        )
        .replace("driver: {type: local}", f"driver: {{type: command, argv: {driver}}}")
    )
    repo = SeedRepo.create(tmp_path, people, extra={"environments/production.yaml": production})
    repo.deployed("production", {"ecommerce": "1.4.0"})
    repo.deployed("production", {"ecommerce": "1.5.0"})
    repo.act_as(people.alice)
    assert repo.reconciler("rollback", "production").exit_code == 0
    repo.act_as(people.olga)
    triggered = repo.reconciler("deploy", "rollback-production-1")
    assert triggered.exit_code == 0, triggered.stderr
    applied = repo.apply("--format", "json")
    assert applied.exit_code == 0, applied.stderr
    assert [run["result"] for run in applied.json()["runs"]] == ["succeeded"]
    assert calls.read_text() == "deploy rollback ecommerce 1.4.0\n"
    assert json.loads(state.read_text()) == {"ecommerce": "1.4.0"}
