"""What people read: refusals said once and whole, and the hints that go with a command.

Each test runs the real CLI on a real repository and reads what a person would.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.configrepo import reconciler
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import ECOMMERCE, PORTAL, QA_PLAN, plan, proposed_qa_release, qa_plan

ALIENS = "plans/x.yaml"
# What alice lacks for the Customer Portal's entry, and so for the plan's source and target.
NOT_HERS = "customer-portal belongs to team customer-portal, and alice is not a member of it"


def alice_adds_the_portal_she_does_not_own(tmp_path: Path, people: People) -> tuple[SeedRepo, str]:
    """Alice (eCommerce lead) saves a QA plan with her entry and the Customer Portal's: the
    portal's entry, and the plan's source and target, are refused for one reason."""
    repo = SeedRepo.create(tmp_path, people)
    text = plan("x", "quality-assurance", [ECOMMERCE, PORTAL], source="development")
    return repo, repo.commit(people.alice, {ALIENS: text})


def test_verify_says_a_refused_plan_edit_in_one_line_with_each_reason_once(
    tmp_path: Path, people: People
) -> None:
    # It printed a line per field (entry, source, target), each with the same explanation.
    repo, commit = alice_adds_the_portal_she_does_not_own(tmp_path, people)
    result = repo.reconciler("verify")
    assert result.exit_code == 1, result.stderr
    [line] = [line.strip() for line in result.stdout.splitlines() if ALIENS + " (" in line]
    assert line.startswith(
        f"{ALIENS} (the customer-portal entry, source, target): changed by alice in "
        f"{commit[:12]}, which needs plan.edit on quality-assurance for customer-portal and "
        "every application in the plan: "
    )
    assert result.stdout.count(NOT_HERS) == 1
    assert result.stdout.count("actor: signed with alice's key") == 1


def test_plan_and_history_say_a_refused_plan_edit_once_without_a_doubled_prefix(
    tmp_path: Path, people: People
) -> None:
    # plan said "the customer-portal entry: plans/x.yaml (the customer-portal entry): changed
    # by ...", then the same for source and target, 1,500 characters on one line.
    repo, commit = alice_adds_the_portal_she_does_not_own(tmp_path, people)
    [decision] = [
        item
        for item in repo.reconciler("plan", "--format", "json").json()["plans"]
        if item["plan"] == ALIENS
    ]
    assert decision["status"] == "refused"
    [reason] = decision["reasons"]
    assert reason.startswith(
        "main's content is not authorised: the customer-portal entry, source, target: "
        f"changed by alice in {commit[:12]}, which needs "
    )
    assert reason.count(NOT_HERS) == 1
    assert ALIENS not in reason  # the plan is named once, by the line it belongs to
    history = repo.reconciler("history").stdout
    [entry] = [line for line in history.splitlines() if commit[:10] in line]
    assert "; refused: the customer-portal entry, source, target: needs plan.edit" in entry
    assert entry.count(NOT_HERS) == 1


def test_a_plan_with_a_yaml_syntax_error_is_said_to_be_invalid_not_unauthorised(
    tmp_path: Path, people: People
) -> None:
    # It said "changed by alice ..., which needs a valid plan: the new content is refused",
    # as if someone else could have made the change.
    repo = SeedRepo.create(tmp_path, people)
    broken = "name: y\ntarget: development\napplications: [\n  - {name: ecommerce}\nstate: ready\n"
    commit = repo.commit(people.alice, {"plans/y.yaml": broken})
    verified = repo.reconciler("verify")
    assert verified.exit_code == 1, verified.stderr
    [said] = [line.strip() for line in verified.stdout.splitlines() if "plans/y.yaml is" in line]
    assert said.startswith(f"plans/y.yaml is invalid (committed by alice in {commit[:12]}): ")
    [decision] = repo.reconciler("plan", "--format", "json").json()["plans"]
    [reason] = decision["reasons"]
    assert reason.startswith(f"invalid (committed by alice in {commit[:12]}): plans/y.yaml:")
    [entry] = [line for line in repo.reconciler("history").stdout.splitlines() if "y:" in line]
    assert "; invalid: plans/y.yaml:" in entry
    for text in (said, reason, entry):
        assert "authorised" not in text
        assert "needs a valid plan" not in text


def test_status_cuts_a_long_reason_after_a_whole_word(tmp_path: Path, people: People) -> None:
    # "main's content is not authorised: the customer-portal entry: pla…"
    repo, _ = alice_adds_the_portal_she_does_not_own(tmp_path, people)
    [reason] = [
        item["reasons"][0]
        for item in repo.reconciler("plan", "--format", "json").json()["plans"]
        if item["plan"] == ALIENS
    ]
    env = {**os.environ, "COLUMNS": "80"}
    status = reconciler("status", "--repo", repo.path, "--state-dir", repo.state_dir, env=env)
    assert status.exit_code == 0, status.stderr
    [shown] = [line.strip() for line in status.stdout.splitlines() if line.strip().endswith("…")]
    kept = shown.removesuffix("…")
    assert reason.startswith(kept)
    assert reason[len(kept)] in " ,;:", f"cut inside a word: {shown!r}"


def test_an_approval_on_main_with_no_remote_asks_for_no_push(
    tmp_path: Path, people: People
) -> None:
    # "push it to the followed branch (or merge it) for it to count" was printed here,
    # where the commit already counts.
    repo = proposed_qa_release(tmp_path, people)
    repo.act_as(people.ravi)
    result = repo.reconciler("approve", QA_PLAN)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ravi approved {QA_PLAN}@{repo.blob(QA_PLAN)[:12]} for quality-assurance "
        f"in commit {repo.head()[:12]}"
    ]


def test_an_approval_on_a_branch_asks_for_a_merge_and_one_on_a_tracking_main_for_a_push(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.act_as(people.ravi)
    with repo.branch("review"):
        on_branch = repo.reconciler("approve", QA_PLAN)
    assert on_branch.exit_code == 0, on_branch.stderr
    assert on_branch.stdout.splitlines()[-1] == (
        "merge it into main for it to count (push review and merge the pull request)"
    )
    remote = repo.publish_to_bare_remote()
    clone = repo.clone(remote, "ravi")
    clone.act_as(people.ravi)
    tracking = clone.reconciler("approve", QA_PLAN)
    assert tracking.exit_code == 0, tracking.stderr
    assert tracking.stdout.splitlines()[-1] == (
        "push it (`git push origin main`) for a reconciler following origin"
    )


def test_an_approval_from_before_a_cancel_names_the_uncancel_it_predates(
    tmp_path: Path, people: People
) -> None:
    # It said "it landed before this version", although this very version was approved.
    repo = proposed_qa_release(tmp_path, people)
    approval = repo.approve(people.ravi, QA_PLAN)
    repo.act_as(people.olga)
    assert repo.reconciler("cancel", QA_PLAN).exit_code == 0
    undone = repo.reconciler("cancel", QA_PLAN, "--undo")
    assert undone.exit_code == 0, undone.stderr
    uncancel = repo.head()
    [decision] = repo.reconciler("plan", "--format", "json").json()["plans"]
    assert decision["blob"] == repo.blob(QA_PLAN, f"{approval}")  # the very version approved
    assert (
        f"approval in {approval[:12]} by ravi does not count: "
        f"it predates the un-cancel in {uncancel[:12]}"
    ) in decision["notes"]


def _commits_in_history(repo: SeedRepo, *args: str) -> list[str]:
    result = repo.reconciler("history", "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return [entry["commit"] for entry in result.json()["entries"]]


def test_history_lists_entries_by_time_and_each_plans_together_with_by_plan(
    tmp_path: Path, people: People
) -> None:
    # Alice starts the QA release on a branch; Bob's hotfix lands on main before her branch
    # is merged. By landing, her older edit came after Bob's: the trail read plan by plan.
    repo = SeedRepo.create(tmp_path, people)
    release = qa_plan(ECOMMERCE)
    hotfix = "plans/2026-11-qa-hotfix.yaml"
    with repo.branch("november"):
        alices = repo.commit(people.alice, {QA_PLAN: release})
    bobs = repo.commit(people.bob, {hotfix: release.replace("qa-release", "qa-hotfix")})
    merge = repo.merge(people.olga, "november")
    by_time = _commits_in_history(repo)
    assert by_time.index(alices) < by_time.index(bobs) < by_time.index(merge)
    by_plan = _commits_in_history(repo, "--by", "plan")
    assert by_plan.index(bobs) < by_plan.index(alices) < by_plan.index(merge)
    assert sorted(by_plan) == sorted(by_time)


def test_the_user_hint_of_history_lists_users_not_an_unknown_actor(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.commit(people.mallory, {"docs/notes.md": "hello\n"})  # Mallory is nobody here
    assert "an unknown actor" in repo.reconciler("history").stdout
    result = repo.reconciler("history", "--user", "olgaa")
    assert result.exit_code == 2, result.stdout
    assert "did you mean 'olga'?" in result.stderr
    assert "unknown actor" not in result.stderr
