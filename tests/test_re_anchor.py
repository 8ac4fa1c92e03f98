"""`verify --re-anchor REV`: what the state knew of the history the new anchor still holds
carries forward (plan versions' landings, approvals, triggers, runs), and a plan version
in the anchor's tree is never refused for "never landing on main"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.configrepo import example_file
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import DEV_PLAN, ECOMMERCE, QA_PLAN, dev_plan, qa_plan


def moves(repo: SeedRepo) -> dict[str, dict[str, Any]]:
    """`status --all`'s plans, by path."""
    shown = repo.reconciler("status", "--all", "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    return {move["path"]: move for move in shown.json()["moves"]}


def rewritten_and_re_anchored(tmp_path: Path, people: People) -> tuple[SeedRepo, str]:
    """A development plan that ran, a QA plan approved by ravi, a refused edit root undid;
    then a commit dropped from main by a force-push, and root's re-anchor on the new tip."""
    repo = SeedRepo.create(tmp_path, people)
    development = example_file("environments/development.yaml")
    repo.commit(people.mallory, {"environments/development.yaml": development + "# mine\n"})
    repo.commit(people.root, {"environments/development.yaml": development})
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    ran = repo.apply()
    assert ran.exit_code == 0, ran.stderr
    assert "succeeded 2026-11-dev-build.1" in ran.stdout
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.approve(people.ravi, QA_PLAN)
    repo.commit(people.mallory, message="pushed by mistake")
    assert repo.reconciler("verify").exit_code == 1  # mallory's empty commit holds no identity
    repo.git("reset", "-q", "--hard", "HEAD~1")
    anchor = repo.commit(people.root, message="Re-anchor after dropping a pushed commit")
    stopped = repo.reconciler("verify")
    assert "history was rewritten" in stopped.stderr
    return repo, anchor


def test_a_re_anchor_keeps_a_plan_that_ran_done_and_records_no_refusal(
    tmp_path: Path, people: People
) -> None:
    repo, anchor = rewritten_and_re_anchored(tmp_path, people)
    re_anchored = repo.reconciler("verify", "--re-anchor", anchor)
    assert re_anchored.exit_code == 0, re_anchored.stdout + re_anchored.stderr
    # Nothing before the new anchor is reported again, mallory's refused edit included.
    assert "0 landing(s), 0 refused" in re_anchored.stdout
    before = moves(repo)
    assert before[DEV_PLAN]["status"] == "done", before[DEV_PLAN]
    assert before[DEV_PLAN]["reasons"] == ["run 2026-11-dev-build.1 succeeded"]
    applied = repo.apply()
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert "refused" not in applied.stdout
    assert not [
        subject
        for subject in repo.git("log", "--format=%s", "main").splitlines()
        if subject.startswith("Refuse")
    ]
    assert moves(repo)[DEV_PLAN]["status"] == "done"


@pytest.mark.slow
def test_a_re_anchor_keeps_the_approvals_of_a_plan_that_landed_before_it(
    tmp_path: Path, people: People
) -> None:
    repo, anchor = rewritten_and_re_anchored(tmp_path, people)
    assert repo.reconciler("verify", "--re-anchor", anchor).exit_code == 0
    waiting = repo.reconciler("plan", "--format", "json").json()
    [qa] = [item for item in waiting["plans"] if item["plan"] == QA_PLAN]
    assert qa["status"] == "waiting"
    assert [wait["what"] for wait in qa["waits"]] == ["trigger"]  # ravi's approval counts
    repo.trigger(people.olga, QA_PLAN)
    applied = repo.apply("--format", "json")
    assert applied.exit_code == 0, applied.stderr
    assert [(run["run"], run["result"]) for run in applied.json()["runs"]] == [
        ("2026-11-qa-release.1", "succeeded")
    ]


def test_a_plan_in_the_trust_anchors_tree_waits_for_a_trigger_and_is_never_refused(
    tmp_path: Path, people: People
) -> None:
    # Plans the anchor's tree holds came with no landing the state saw: they landed with
    # the anchor (trusted whole), and a plan.deploy holder's `reconciler deploy` runs them.
    repo = SeedRepo.create(tmp_path, people, extra={DEV_PLAN: dev_plan(ECOMMERCE)})
    decided = moves(repo)[DEV_PLAN]
    assert (decided["status"], decided["label"]) == ("waiting", "ready"), decided
    assert any("a trigger by a plan.deploy holder" in reason for reason in decided["reasons"])
    applied = repo.apply()
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert repo.git("log", "-1", "--format=%s", "main") == "Seed configuration"
    repo.trigger(people.alice, DEV_PLAN)
    assert "succeeded 2026-11-dev-build.1" in repo.apply().stdout


def test_a_re_anchor_past_a_run_whose_records_the_rewrite_dropped_does_not_run_it_again(
    tmp_path: Path, people: People
) -> None:
    # The run's records are gone from main, its landing is not: the service ran it, so
    # running it again (alice's landing still triggers it) would deploy it twice.
    repo = SeedRepo.create(tmp_path, people)
    landed = repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    ran = repo.apply()
    assert "succeeded 2026-11-dev-build.1" in ran.stdout, ran.stdout + ran.stderr
    repo.git("reset", "-q", "--hard", landed)  # a force-push drops the run's records
    anchor = repo.commit(people.root, message="Re-anchor after a force-push")
    assert repo.reconciler("verify", "--re-anchor", anchor).exit_code == 0
    again = repo.apply("--format", "json")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert again.json()["runs"] == []
    assert moves(repo)[DEV_PLAN]["status"] == "done"
