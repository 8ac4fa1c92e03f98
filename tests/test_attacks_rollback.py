"""Attacks on rollback plans: a `rollback: true` that covers an application whose editors
never set it.

The `rollback` field changes what every entry of the plan means (no promotion order,
the target's rollback approvals, none by default, and where the environment says so no
windows), so setting it needs plan.edit for every application in the plan. A merge
judges a plan field by field, and a value a parent vouches for is vouched: one branch
that turns the plan into a rollback and another that adds a team's entry to it, each
authorised alone, merge into a rollback of that team's application nobody with
plan.edit on it asked for. Real repositories, signed commits, true merges.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.core.loader import dump
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import ECOMMERCE, plan

PLAN = "plans/qa-fixes.yaml"
PORTAL_0_5 = {"name": "customer-portal", "version": "0.5"}


def qa_plan_of(*applications: dict[str, str]) -> str:
    return plan("qa-fixes", "quality-assurance", list(applications), source="development")


def qa_rollback_of(*applications: dict[str, str]) -> str:
    return plan("qa-fixes", "quality-assurance", list(applications)).replace(
        "target: quality-assurance\n", "target: quality-assurance\nrollback: true\n"
    )


def test_a_merge_cannot_make_another_teams_entry_part_of_a_rollback(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    # QA ran ecommerce 1.4.0 and customer-portal 0.5, then newer; development runs newer
    # still, so neither old version may be promoted into QA again.
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0", "customer-portal": "0.5"})
    repo.deployed("quality-assurance", {"ecommerce": "1.5.0", "customer-portal": "0.6"})
    repo.deployed("development", {"ecommerce": "1.6.0", "customer-portal": "0.7"})
    repo.commit(people.alice, {PLAN: qa_plan_of(ECOMMERCE)})
    # alice (ecommerce's tech lead) turns the plan, ecommerce's alone, into a rollback.
    with repo.branch("ecommerce-rollback"):
        repo.commit(people.alice, {PLAN: qa_rollback_of(ECOMMERCE)})
    # diana (customer-portal's tech lead) adds her application to the plan as she saw it:
    # a promotion from development, with its approvals.
    with repo.branch("portal"):
        added = repo.commit(people.diana, {PLAN: qa_plan_of(ECOMMERCE, PORTAL_0_5)})
    repo.merge(people.olga, "ecommerce-rollback")
    merge = repo.merge(people.olga, "portal", resolve={PLAN: qa_rollback_of(ECOMMERCE, PORTAL_0_5)})
    # diana's entry was made in a plan that was no rollback: bringing it into the rollback
    # is the merger's edit of it, and olga (operations) may not edit customer-portal's.
    [refusal] = [item for verdict in repo.verify().judged for item in verdict.refusals]
    assert (refusal.commit, refusal.actor, refusal.field) == (
        added,
        "olga",
        "app:customer-portal",
    )
    assert f"counts as an edit by whoever landed it ({merge[:12]})" in " ".join(refusal.reasons)
    decision = repo.decide()[PLAN]
    # Without approvals (QA names no rollback approvals) and skipping the promotion order,
    # customer-portal 0.5 would go back into QA: nobody who may edit its entry made it a
    # rollback.
    assert decision.status != "executable", decision.reasons
    assert decision.status == "refused", decision.reasons


def test_a_branch_that_makes_the_plan_a_rollback_cannot_cover_an_entry_added_since(
    tmp_path: Path, people: People
) -> None:
    """The other way round: customer-portal's entry lands first, alice's branch made
    before it turns the plan into a rollback; her signature covers ecommerce only."""
    repo = SeedRepo.create(tmp_path, people)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0", "customer-portal": "0.5"})
    repo.deployed("quality-assurance", {"ecommerce": "1.5.0", "customer-portal": "0.6"})
    repo.deployed("development", {"ecommerce": "1.6.0", "customer-portal": "0.7"})
    repo.commit(people.alice, {PLAN: qa_plan_of(ECOMMERCE)})
    with repo.branch("ecommerce-rollback"):
        repo.commit(people.alice, {PLAN: qa_rollback_of(ECOMMERCE)})
    repo.commit(people.diana, {PLAN: qa_plan_of(ECOMMERCE, PORTAL_0_5)})
    repo.merge(
        people.olga, "ecommerce-rollback", resolve={PLAN: qa_rollback_of(ECOMMERCE, PORTAL_0_5)}
    )
    decision = repo.decide()[PLAN]
    assert decision.status == "refused", decision.reasons


def test_records_of_a_reconciler_following_another_branch_do_not_make_a_version_ran_on_main(
    tmp_path: Path, people: People
) -> None:
    """A second reconciler, with a service key teams.yaml lists, follows branch staging
    (`--branch staging`), where environments of the same names deploy to a sandbox. Its
    records, merged into main by operations, count there: ecommerce 6.6.6 "ran" in QA."""
    repo = SeedRepo.create(tmp_path, people)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    with repo.branch("staging"):
        run, environment = "staging-try.1", "quality-assurance"
        ran = {"version": "6.6.6", "plan": "staging-try", "run": run, "deployed_at": "2026-11-01"}
        content = dump({"environment": environment, "applications": {"ecommerce": ran}})
        trailers = {"Plan": f"plans/staging-try.yaml@{'f' * 40}", "Environment": environment}
        repo.record({**trailers, "Result": "started", "Run": run, "Reconciler": "staging"})
        repo.record(
            {**trailers, "Result": "succeeded", "Run": run},
            {"deployments/quality-assurance.yaml": content},
        )
    repo.merge(people.olga, "staging")
    back = {"name": "ecommerce", "version": "6.6.6"}
    repo.commit(people.alice, {PLAN: qa_rollback_of(back)})
    repo.trigger(people.olga, PLAN)
    decision = repo.decide()[PLAN]
    assert [reason.code for reason in decision.why] == ["rollback.never-ran"], decision.reasons


def test_a_merge_cannot_send_another_teams_entry_to_the_environment_the_plan_moved_to(
    tmp_path: Path, people: People
) -> None:
    """The same with `target`: diana added customer-portal to a plan into QA; merged after
    alice moved the plan to production, the entry would go to production."""
    repo = SeedRepo.create(tmp_path, people)
    path = "plans/november.yaml"

    def into(target: str, source: str, *applications: dict[str, str]) -> str:
        return plan("november", target, list(applications), source=source)

    repo.commit(people.alice, {path: into("quality-assurance", "development", ECOMMERCE)})
    with repo.branch("portal"):
        added = repo.commit(
            people.diana,
            {path: into("quality-assurance", "development", ECOMMERCE, PORTAL_0_5)},
        )
    repo.commit(people.alice, {path: into("production", "quality-assurance", ECOMMERCE)})
    repo.merge(
        people.olga,
        "portal",
        resolve={path: into("production", "quality-assurance", ECOMMERCE, PORTAL_0_5)},
    )
    [refusal] = [item for verdict in repo.verify().judged for item in verdict.refusals]
    assert (refusal.commit, refusal.actor, refusal.field) == (added, "olga", "app:customer-portal")
    assert repo.decide()[path].status == "refused"
