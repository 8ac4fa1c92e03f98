"""`reconciler approve`, `deploy` and `cancel`: real commits, refused up front when not allowed."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.core.sshkeys import parse_public_key
from tests.configrepo import Result, reconciler
from tests.people import People, Person
from tests.repositories import SeedRepo, run_git
from tests.scenarios import (
    ECOMMERCE,
    PORTAL,
    PROD_PLAN,
    QA_PLAN,
    interrupted_qa_release,
    prod_plan,
    proposed_qa_release,
    qa_plan,
    ran,
)


def test_approve_makes_an_empty_commit_bound_to_the_plans_blob(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    blob = repo.blob(QA_PLAN)
    repo.act_as(people.ravi)
    result = repo.reconciler("approve", "2026-11-qa-release", "--format", "json")
    assert result.exit_code == 0, result.stderr
    made = result.json()
    assert (made["kind"], made["actor"], made["blob"]) == ("approve", "ravi", blob)
    assert repo.git("log", "-1", "--format=%B") == (
        f"Approve 2026-11-qa-release for quality-assurance\n\nApprove-Plan: {QA_PLAN}@{blob}"
    )
    assert repo.git("diff-tree", "--no-commit-id", "-r", "HEAD") == ""
    assert "-----BEGIN SSH SIGNATURE-----" in repo.git("cat-file", "commit", "HEAD")
    assert repo.decide()[QA_PLAN].approvers == ("ravi",)


def test_approve_is_refused_up_front_without_plan_approve(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    head = repo.head()
    repo.act_as(people.bob, signed=False)
    result = repo.reconciler("approve", QA_PLAN)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: bob may not approve into quality-assurance: bob holds developer in ecommerce; "
        "quality-assurance grants plan.approve to tech-lead (held by alice, diana, ravi)"
    )
    assert repo.head() == head


def test_approve_is_refused_up_front_for_an_editor_of_the_plan(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    head = repo.head()
    repo.act_as(people.alice)
    result = repo.reconciler("approve", QA_PLAN)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: an approval of {QA_PLAN} by alice would not count: "
        "alice edited the plan, and editors do not approve their own plans"
    )
    assert repo.head() == head


def test_deploy_is_refused_up_front_naming_who_holds_plan_deploy(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.act_as(people.alice)
    result = repo.reconciler("deploy", QA_PLAN)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: alice may not deploy into quality-assurance: alice holds tech-lead in ecommerce; "
        "quality-assurance grants plan.deploy to deployment (held by olga)"
    )


def test_a_misspelt_plan_is_a_usage_error_that_suggests_the_plan_at_head(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    head = repo.head()
    repo.act_as(people.ravi)
    result = repo.reconciler("approve", "2026-11-qa-relase")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: unknown plan 'plans/2026-11-qa-relase.yaml'\n"
        "  hint: did you mean 'plans/2026-11-qa-release.yaml'? "
        "(plans at HEAD: plans/2026-11-qa-release.yaml)\n"
    )
    assert repo.head() == head


def test_deploy_by_ops_triggers_the_plan(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.act_as(people.olga)
    assert repo.reconciler("deploy", QA_PLAN).exit_code == 0
    decision = repo.decide()[QA_PLAN]
    assert (decision.status, decision.triggered_by) == ("executable", "olga")


def test_an_unsigned_user_is_refused_where_signatures_are_required(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    prod = "plans/2026-11-prod-release.yaml"
    repo.commit(
        people.alice,
        {
            prod: qa_plan(ECOMMERCE)
            .replace("quality-assurance", "production")
            .replace("development", "quality-assurance")
            .replace("2026-11-qa-release", "2026-11-prod-release")
        },
    )
    repo.act_as(people.ravi, signed=False)
    result = repo.reconciler("approve", prod)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: this commit would not be attributed to any user: unsigned commit, and this change "
        "needs a verified signature"
    )


def test_retrying_a_run_that_was_not_interrupted_is_refused_up_front(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, "2026-11-qa-release.1", result="succeeded")
    repo.act_as(people.olga)
    result = repo.reconciler("deploy", QA_PLAN, "--retry", "2026-11-qa-release.1")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: run 2026-11-qa-release.1 succeeded; only interrupted runs are retried"
    )


def test_cancel_sets_the_state_keeping_the_rest_of_the_file(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    before = (repo.path / QA_PLAN).read_text()
    repo.act_as(people.olga)
    assert repo.reconciler("cancel", QA_PLAN).exit_code == 0
    after = (repo.path / QA_PLAN).read_text()
    assert after == before.replace("state: ready", "state: cancelled")
    assert repo.decide()[QA_PLAN].status == "cancelled"
    assert repo.reconciler("cancel", QA_PLAN, "--undo").exit_code == 0
    assert (repo.path / QA_PLAN).read_text() == before


def test_cancel_is_refused_up_front_without_plan_deploy(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.act_as(people.diana)
    result = repo.reconciler("cancel", QA_PLAN)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: diana may not deploy into quality-assurance")
    assert PORTAL["name"] in (repo.path / QA_PLAN).read_text()


def test_cancel_refuses_a_plan_with_uncommitted_changes_and_commits_nothing(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    head = repo.head()
    repo.act_as(people.olga)
    edited = (repo.path / QA_PLAN).read_text().replace("1.4.0", "9.9.9")
    (repo.path / QA_PLAN).write_text(edited)
    result = repo.reconciler("cancel", QA_PLAN)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {QA_PLAN} has uncommitted changes",
        "  hint: commit or stash them first; cancel changes only the committed plan's state",
    ]
    assert repo.head() == head
    assert (repo.path / QA_PLAN).read_text() == edited


def test_uncancel_never_commits_uncommitted_edits_that_a_trigger_would_then_run(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.act_as(people.olga)
    assert repo.reconciler("cancel", QA_PLAN).exit_code == 0
    head = repo.head()
    (repo.path / QA_PLAN).write_text((repo.path / QA_PLAN).read_text().replace("1.4.0", "6.6.6"))
    result = repo.reconciler("cancel", QA_PLAN, "--undo")
    assert result.exit_code == 2
    assert f"error: {QA_PLAN} has uncommitted changes" in result.stderr
    assert repo.head() == head
    assert "6.6.6" not in repo.git("show", f"HEAD:{QA_PLAN}")


def test_cancel_of_a_plan_deleted_in_the_working_tree_is_refused(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.act_as(people.olga)
    (repo.path / QA_PLAN).unlink()
    result = repo.reconciler("cancel", QA_PLAN)
    assert result.exit_code == 2
    assert f"error: {QA_PLAN} has uncommitted changes" in result.stderr


def test_cancel_refuses_a_state_not_written_as_one_word_and_commits_nothing(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    folded = qa_plan(ECOMMERCE, PORTAL).replace("state: ready\n", "state: >-\n  ready\n")
    repo.commit(people.alice, {QA_PLAN: folded})
    head = repo.head()
    repo.act_as(people.olga)
    result = repo.reconciler("cancel", QA_PLAN)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{QA_PLAN}:11:8: error: cannot change state: ready is not written as one word "
        "on the line of `state:`",
        "  hint: write it as `state: ready` on one line, commit, and cancel again",
    ]
    assert repo.head() == head


def test_uncancel_of_a_plan_that_is_not_cancelled_says_there_is_nothing_to_undo(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.act_as(people.olga)
    result = repo.reconciler("cancel", QA_PLAN, "--undo")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{QA_PLAN}:12:8: error: the plan is not cancelled (state: ready)",
        "  hint: nothing to undo; `reconciler cancel PLAN` cancels it",
    ]


def test_approving_a_plan_that_is_invalid_at_head_names_the_line_and_the_fix(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL) + "state: draft\n"})
    repo.act_as(people.ravi)
    result = repo.reconciler("approve", QA_PLAN)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{QA_PLAN}:12:1: error: the plan is invalid at HEAD: duplicate key 'state' "
        "(first defined at line 11)",
        "  hint: YAML keeps only the last one; remove or rename one of them",
    ]


def test_approving_a_plan_whose_target_is_no_environment_names_the_line_and_the_environments(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    staging = qa_plan(ECOMMERCE, PORTAL).replace("target: quality-assurance", "target: staging")
    repo.commit(people.alice, {QA_PLAN: staging})
    repo.act_as(people.ravi)
    result = repo.reconciler("approve", QA_PLAN)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{QA_PLAN}:3:9: error: the plan's target 'staging' is not an environment",
        "  hint: environments: development, production, quality-assurance",
    ]


def in_a_bare_clone(repo: SeedRepo, person: Person, *args: str) -> tuple[Path, Result]:
    """`reconciler *args` in a bare clone of `repo` set up as `person`'s, signing included."""
    bare = repo.path.parent / "bare.git"
    run_git(repo.path.parent, "clone", "-q", "--bare", str(repo.path), str(bare))
    for key, value in (
        ("user.name", person.name),
        ("user.email", person.email),
        ("gpg.format", "ssh"),
        ("user.signingkey", str(person.key)),
    ):
        run_git(bare, "config", key, value)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))
    }
    state = repo.path.parent / "bare-state"
    return bare, reconciler(*args, "--repo", bare, "--state-dir", state, env=env)


def test_approve_in_a_bare_repository_is_refused_up_front(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    bare, result = in_a_bare_clone(repo, people.ravi, "approve", QA_PLAN)
    assert result.exit_code == 1, result.stdout
    assert result.stderr == f"error: {bare} is a bare repository\n  hint: run this in a clone\n"


def test_deploy_in_a_bare_repository_is_refused_up_front(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    bare, result = in_a_bare_clone(repo, people.olga, "deploy", QA_PLAN)
    assert result.exit_code == 1, result.stdout
    assert result.stderr == f"error: {bare} is a bare repository\n  hint: run this in a clone\n"


def test_a_cancel_whose_commit_fails_leaves_the_plan_as_it_was_and_may_be_tried_again(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    head = repo.head()
    repo.act_as(people.olga)
    repo.git("config", "gpg.ssh.program", "false")  # signing fails: the commit cannot be made
    result = repo.reconciler("cancel", QA_PLAN)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: git commit failed:")
    assert "hint: check your git identity and signing setup" in result.stderr
    assert "Traceback" not in result.stderr
    assert repo.head() == head
    assert repo.git("status", "--porcelain") == ""
    repo.git("config", "--unset", "gpg.ssh.program")
    assert repo.reconciler("cancel", QA_PLAN).exit_code == 0
    assert repo.decide()[QA_PLAN].status == "cancelled"


def test_a_cancel_refused_by_a_locked_index_leaves_the_plan_as_it_was(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    before = (repo.path / QA_PLAN).read_bytes()
    repo.act_as(people.olga)
    lock = repo.path / ".git" / "index.lock"  # another git command at work, or one that died
    lock.write_text("")
    result = repo.reconciler("cancel", QA_PLAN)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: git add failed: fatal: Unable to create '{lock}'")
    assert (repo.path / QA_PLAN).read_bytes() == before
    lock.unlink()
    assert repo.git("status", "--porcelain") == ""
    assert repo.reconciler("cancel", QA_PLAN).exit_code == 0


def test_approve_with_a_revoked_key_is_refused_up_front(tmp_path: Path, people: People) -> None:
    # Production takes signatures only: an approval signed with a key in git's
    # revocation file would count for nothing, as `access` says; saying "approved" and
    # leaving the plan unapproved is what an operator in an incident must not be told.
    repo = proposed_qa_release(tmp_path, people)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.revoke(people.ravi.public_key + "\n")
    head = repo.head()
    repo.act_as(people.ravi)
    result = repo.reconciler("approve", PROD_PLAN)
    assert result.exit_code == 1, result.stdout
    fingerprint = parse_public_key(people.ravi.public_key).fingerprint
    assert result.stderr.splitlines()[0] == (
        "error: this commit would not be attributed to any user: signature not accepted "
        f"(key {fingerprint} is revoked (gpg.ssh.revocationFile)), "
        "and this change needs a verified signature"
    )
    assert repo.head() == head


# -- up front: commits that could never count are not made -----------------------------


def pull_request(repo: SeedRepo, people: People) -> None:
    """Alice's pull request on branch qa-release, checked out: the QA plan, her entry only."""
    repo.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    repo.git("checkout", "-q", "-b", "qa-release")
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})


def refused_up_front(repo: SeedRepo, *args: str) -> list[str]:
    """`reconciler ARGS`, which must refuse (exit 1) before making any commit: its stderr."""
    head = repo.head()
    result = repo.reconciler(*args)
    assert result.exit_code == 1, result.stdout
    assert repo.head() == head
    return result.stderr.splitlines()


def test_approving_your_own_plan_on_the_pull_request_branch_is_refused(
    tmp_path: Path, people: People
) -> None:
    # docs/walkthroughs.md's review flow: check out the pull request's branch, approve there.
    # Main's history does not know Alice edited the plan; the branch's does.
    repo = SeedRepo.create(tmp_path, people)
    pull_request(repo, people)
    repo.act_as(people.alice)
    assert refused_up_front(repo, "approve", QA_PLAN) == [
        f"error: an approval of {QA_PLAN} by alice would not count: "
        "alice edited the plan, and editors do not approve their own plans",
        "  hint: ask a reviewer who did not edit the plan",
    ]


def test_a_reviewers_approval_on_the_pull_request_branch_counts_once_merged(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    pull_request(repo, people)
    repo.act_as(people.ravi)
    assert repo.reconciler("approve", QA_PLAN).exit_code == 0
    repo.git("checkout", "-q", "main")
    repo.merge(people.olga, "qa-release")
    decision = repo.decide()[QA_PLAN]
    assert (decision.status, decision.approvers, decision.triggered_by) == (
        "executable",
        ("ravi",),
        "olga",
    )


def test_merging_main_into_the_pull_request_does_not_make_the_merger_an_editor(
    tmp_path: Path, people: People
) -> None:
    # Ravi brings main's edit of the plan into Alice's branch: every value of his merge is
    # one of its parents', so he edited nothing, as `verify` will judge the merge too.
    repo = proposed_qa_release(tmp_path, people)
    repo.git("checkout", "-q", "-b", "qa-release")
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="December release")})
    repo.git("checkout", "-q", "main")
    repo.commit(
        people.alice,
        {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL, notes="November release")},
    )
    repo.git("checkout", "-q", "qa-release")
    repo.merge(people.ravi, "main")
    assert "version: 1.4.1" in (repo.path / QA_PLAN).read_text()
    repo.act_as(people.ravi)
    result = repo.reconciler("approve", QA_PLAN)
    assert result.exit_code == 0, result.stderr


def test_a_merge_that_edits_the_plan_on_the_pull_request_branch_makes_the_merger_an_editor(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    pull_request(repo, people)
    repo.git("checkout", "-q", "main")
    repo.commit(people.root, {"README.md": "the configuration\n"})
    repo.git("checkout", "-q", "qa-release")
    edited = qa_plan(ECOMMERCE, notes="Ravi's words, in his merge")
    repo.merge(people.ravi, "main", resolve={QA_PLAN: edited})
    repo.act_as(people.ravi)
    assert refused_up_front(repo, "approve", QA_PLAN)[0] == (
        f"error: an approval of {QA_PLAN} by ravi would not count: "
        "ravi edited the plan, and editors do not approve their own plans"
    )


def test_approving_the_same_version_twice_is_refused(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.act_as(people.ravi)
    assert repo.reconciler("approve", QA_PLAN).exit_code == 0
    assert refused_up_front(repo, "approve", QA_PLAN) == [
        f"error: an approval of {QA_PLAN} by ravi would not count: "
        "ravi already approved this version, and each person counts once",
        "  hint: nothing to do; `reconciler plan` says what the plan still waits for",
    ]


def test_approving_the_same_version_twice_on_the_pull_request_branch_is_refused(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    pull_request(repo, people)
    repo.act_as(people.ravi)
    assert repo.reconciler("approve", QA_PLAN).exit_code == 0
    assert refused_up_front(repo, "approve", QA_PLAN)[0] == (
        f"error: an approval of {QA_PLAN} by ravi would not count: "
        "ravi already approved this version, and each person counts once"
    )


def test_approving_again_after_the_plan_changed_is_a_new_approval(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="Corrected notes")})
    repo.act_as(people.ravi)
    result = repo.reconciler("approve", QA_PLAN)
    assert result.exit_code == 0, result.stderr
    assert repo.decide()[QA_PLAN].approvers == ("ravi",)


def test_approving_a_version_that_already_ran_is_refused(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, "2026-11-qa-release.1", result="succeeded")
    repo.act_as(people.ravi)
    assert refused_up_front(repo, "approve", QA_PLAN) == [
        f"error: an approval of {QA_PLAN} by ravi would not count: "
        "run 2026-11-qa-release.1 succeeded",
        "  hint: a plan version runs once; a change of the plan is a new version to approve",
    ]


def test_deploying_a_version_that_already_ran_is_refused(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, "2026-11-qa-release.1", result="failed")
    repo.act_as(people.olga)
    assert refused_up_front(repo, "deploy", QA_PLAN) == [
        f"error: a trigger of {QA_PLAN} by olga would not count: run 2026-11-qa-release.1 failed",
        "  hint: a plan version runs once; change the plan (a new version) to deploy again",
    ]


def test_deploying_a_version_whose_run_was_interrupted_points_to_retry(
    tmp_path: Path, people: People
) -> None:
    repo, _ = interrupted_qa_release(tmp_path, people)
    repo.act_as(people.olga)
    assert refused_up_front(repo, "deploy", QA_PLAN) == [
        f"error: a trigger of {QA_PLAN} by olga would not count: "
        "run 2026-11-qa-release.1 was interrupted",
        "  hint: `reconciler deploy 2026-11-qa-release --retry 2026-11-qa-release.1` re-runs it",
    ]


def test_deploying_on_the_pull_request_branch_is_refused(tmp_path: Path, people: People) -> None:
    # A trigger on the branch waits for the merge, and a squash or rebase merge drops it:
    # ops merge the pull request (a true merge is the trigger) or deploy on main.
    repo = SeedRepo.create(tmp_path, people)
    pull_request(repo, people)
    blob = repo.blob(QA_PLAN)
    repo.act_as(people.olga)
    assert refused_up_front(repo, "deploy", QA_PLAN) == [
        f"error: deploy runs on main, where a trigger counts: {QA_PLAN}@{blob[:12]} is not "
        f"the version on main (main has no {QA_PLAN})",
        "  hint: merge the pull request first (a true merge by a plan.deploy holder is the "
        "trigger), or `git switch main` and run the deploy there",
    ]


def test_deploying_off_main_is_refused_even_where_the_plan_is_mains(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.git("checkout", "-q", "--detach")
    repo.act_as(people.olga)
    assert refused_up_front(repo, "deploy", QA_PLAN)[0] == (
        "error: deploy runs on main, where a trigger counts: HEAD is not main"
    )
