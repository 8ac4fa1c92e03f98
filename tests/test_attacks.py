"""Attacks on the authorisation rules, written as the attacker would try them.

From an adversarial review: each test is one attempt to get a change, an
approval or a trigger accepted that docs/design.md says must be refused, and
asserts the refusal. The first versions of four of them got through: a
walker that kept the policy of a discarded walk, main moved back behind the
last verified commit, a plan listing an application twice, and an unsigned
change to teams.yaml's comments.
"""

from __future__ import annotations

import base64
import os
import shlex
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.statestore import StateStore
from reconciler.app.authorise import Authoriser
from reconciler.app.effective_policy import policy_from
from reconciler.app.passes import Options
from reconciler.app.pipeline import gather
from reconciler.app.reconcile import Reconciler
from reconciler.core.errors import HistoryRewrittenError, TemporaryError
from reconciler.core.events import NUL_MESSAGE, Signoff
from reconciler.core.journal import IgnoredTrailer
from reconciler.core.trailer_rules import OFF_THE_LINE
from tests.clock import SUITE_NOW
from tests.configrepo import dump
from tests.configrepo import reconciler as run_cli
from tests.people import (
    HOST_EMAIL,
    People,
    Person,
    grant_bob_deployment,
    make_mallory_the_settings_user,
    seed_teams,
    teams_with,
    teams_with_host,
)
from tests.repositories import ConfigRepo, SeedRepo, only_refusal, run_git, trailers
from tests.runner import DRIVER, command_environment, with_command_driver
from tests.scenarios import (
    DEV_PLAN,
    ECOMMERCE,
    PORTAL,
    PROD_PLAN,
    QA_PLAN,
    dev_plan,
    interrupted_qa_release,
    plan,
    prod_plan,
    proposed_qa_release,
    qa_plan,
)

PORTAL_BAD = {**PORTAL, "version": "9.9", "from": "9.9-dev.1"}
QA_RUN = "2026-11-qa-release.1"


# -- 1. effective-state caching: a walk that is thrown away leaves its policy behind --------


def test_a_discarded_walk_does_not_leave_its_policy_to_judge_the_next_walk(
    tmp_path: Path, people: People
) -> None:
    """reconcile._observe runs `run(tip)` in a transaction it keeps open (pending finish
    records, or --dry-run), calls gather() (which computes authoriser.policy()), and
    discards the transaction when the push loses a race. The next run() on the same long-lived
    walker must judge every landing by the policy *before* it again."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    assert repo.verify().authorised  # the service has verified up to here
    # bob (ecommerce developer) changes customer-portal: refused, he is not in that team
    bobs = repo.commit(people.bob, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL_BAD)}, signed=False)
    # later root adds bob to customer-portal (this never authorises bob's earlier commit)
    grant = teams_with(
        people, lambda d: d["teams"]["customer-portal"]["members"].__setitem__("bob", "developer")
    )
    repo.commit(people.root, {"teams.yaml": grant}, "bob joins customer-portal")
    with GitRepo(repo.path) as git:
        store = StateStore(repo.state_dir, "main")
        try:
            walker = Authoriser(git, store, now=SUITE_NOW)
            tip = git.resolve("main")
            with store.transaction() as walk:
                walker.run(tip)
                gather(walker, tip)  # as reconcile._observe does before publishing
                walk.discard()  # the push lost the race (or a dry run)
            result = walker.run(tip)  # the next round, same walker
        finally:
            store.close()
    bob_landing = next(v for v in result.judged if v.commit == bobs)
    assert not bob_landing.authorised, "bob's edit was judged by the policy granted after it"
    assert QA_PLAN in result.differs


# -- 2. merges with crafted parents ---------------------------------------------------------


def test_merging_an_old_commit_does_not_bring_back_a_superseded_value(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    old = repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    newer = {**PORTAL, "version": "0.7", "from": "0.7-dev.1"}
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, newer)})
    # bob merges the old commit back and resolves to its (superseded) content
    repo.git("checkout", "-q", old, "--", QA_PLAN)
    tree = repo.git("write-tree")
    repo.land_commit_tree(people.bob, tree, repo.head(), old, message="Merge old")
    result = repo.verify()
    assert not result.judged[-1].authorised
    assert QA_PLAN in result.differs


def test_an_octopus_merge_cannot_smuggle_a_refused_branch(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    with repo.branch("alice-bump"):
        repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL)})
    with repo.branch("bob-portal"):
        repo.commit(people.bob, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL_BAD)}, signed=False)
    with repo.branch("notes"):
        repo.commit(people.alice, {"README.md": "x"}, signed=True)
    config, env = repo.identity(people.olga, signed=True)
    final = qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL_BAD)
    repo.git(
        *config, "merge", "-q", "--no-commit", "-s", "ours", "alice-bump", "bob-portal", env=env
    )
    repo.write({QA_PLAN: final})
    repo.git(*config, "commit", "-q", "-S", "-m", "octopus", env=env)
    assert len(repo.git("log", "-1", "--format=%P").split()) == 3
    result = repo.verify()
    assert not result.judged[-1].authorised
    assert QA_PLAN in result.differs


def test_a_merge_whose_first_parent_is_a_side_branch_is_still_judged(
    tmp_path: Path, people: People
) -> None:
    """main moves to a merge whose FIRST parent is bob's branch and second the old main."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    repo.verify()
    base = repo.head()
    with repo.branch("bob"):
        repo.commit(people.bob, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL_BAD)}, signed=False)
        bob_tip = repo.head()
    tree = repo.git("rev-parse", f"{bob_tip}^{{tree}}")
    repo.land_commit_tree(people.olga, tree, bob_tip, base, message="Merge main")
    result = repo.verify()
    assert not result.authorised
    assert QA_PLAN in result.differs


def test_a_merge_of_an_orphan_root_commit_cannot_replace_the_policy(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.verify()
    evil = seed_teams(people)
    evil["infrastructure"]["settings"].append("olga")
    (repo.path / "evil.yaml").write_text(dump(evil))
    teams_blob = repo.git("hash-object", "-w", "evil.yaml")
    (repo.path / "evil.yaml").unlink()
    index_env = {"GIT_INDEX_FILE": str(tmp_path / "orphan.index")}
    repo.git(
        "update-index", "--add", "--cacheinfo", f"100644,{teams_blob},teams.yaml", env=index_env
    )
    orphan_tree = repo.git("write-tree", env=index_env)
    config, env = repo.identity(people.olga, signed=False, date="100000000 +0000")
    orphan = repo.git(*config, "commit-tree", orphan_tree, "-m", "root", env=env)
    config, env = repo.identity(people.olga, signed=True)
    repo.git(
        *config,
        "merge",
        "-q",
        "--allow-unrelated-histories",
        "-X",
        "theirs",
        "--no-commit",
        orphan,
        env=env,
    )
    repo.write({"teams.yaml": dump(evil)})
    repo.git(*config, "commit", "-q", "-S", "-m", "merge orphan", env=env)
    result = repo.verify()
    assert not result.judged[-1].authorised
    assert "olga" not in repo.effective_policy().settings


# -- 3. refuse, revert, re-apply ------------------------------------------------------------


def test_a_refused_change_reverted_and_reapplied_is_still_refused(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    good = repo.git("show", f"HEAD:{QA_PLAN}")
    repo.commit(
        people.bob,
        {QA_PLAN: qa_plan(ECOMMERCE, PORTAL_BAD, notes="November release")},
        signed=False,
    )
    repo.commit(people.bob, {QA_PLAN: good + "\n"}, signed=False)
    repo.commit(
        people.bob,
        {QA_PLAN: qa_plan(ECOMMERCE, PORTAL_BAD, notes="November release")},
        signed=False,
    )
    result = repo.verify()
    assert not result.judged[-1].authorised
    assert QA_PLAN in result.differs


def test_a_revert_of_a_revoking_commit_by_a_nobody_does_not_restore_a_grant(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    without_bob = teams_with(people, lambda d: d["teams"]["ecommerce"]["members"].pop("bob"))
    revoke = repo.commit(people.root, {"teams.yaml": without_bob}, "Bob leaves")
    config, env = repo.identity(people.bob, signed=False)
    repo.git(*config, "revert", "--no-edit", revoke, env=env)
    result = repo.verify()
    assert not result.judged[-1].authorised
    assert "bob" not in repo.effective_policy().teams["ecommerce"].members


# -- 4. history rewrites ------------------------------------------------------------------


def test_main_force_pushed_back_to_an_older_commit_stops_the_reconciler(
    tmp_path: Path, people: People
) -> None:
    """DESIGN: 'History that is rewritten (main no longer descends from the last
    verified commit) stops the reconciler with a clear error'. Main reset to an
    ancestor no longer descends from the last verified commit."""
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    approved_blob = repo.blob(QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    rewind_to = repo.head()
    # alice then changes the plan; nobody approves the new content
    bumped = {**ECOMMERCE, "version": "1.4.1"}
    repo.commit(people.alice, {QA_PLAN: qa_plan(bumped, PORTAL, notes="November release")})
    repo.deployed("development", {"ecommerce": "1.4.1", "customer-portal": "0.6-dev.41"})
    repo.verify()  # the reconciler has verified main up to here
    # mallory force-pushes main back to the approved-and-triggered commit
    repo.git("reset", "-q", "--hard", rewind_to)
    assert repo.blob(QA_PLAN) == approved_blob
    try:
        decisions = repo.decide()
    except HistoryRewrittenError:
        return  # what docs/design.md, "Trust anchor" requires
    decision = decisions[QA_PLAN]
    ran_content = decision.plan.applications if decision.plan else ()
    raise AssertionError(
        f"no error; decision for the approved blob is {decision.status} "
        f"(approvers {decision.approvers}, triggered by {decision.triggered_by}) "
        f"and would deploy {[(a.name, a.version) for a in ran_content]}"
    )


# -- 5. plan content tricks --------------------------------------------------------------


def test_a_duplicate_entry_for_another_teams_application_is_not_accepted(
    tmp_path: Path, people: People
) -> None:
    """bob (ecommerce developer) inserts a second customer-portal entry with his own
    version ahead of diana's. Only one value per application is judged."""
    repo = proposed_qa_release(tmp_path, people)
    text = (
        "name: 2026-11-qa-release\nsource: development\ntarget: quality-assurance\n"
        "applications:\n"
        "- {name: ecommerce, version: 1.4.0}\n"
        "- {name: customer-portal, version: '9.9', action: tag-and-deploy, from: 9.9-dev.1}\n"
        "- {name: customer-portal, version: '0.6', action: tag-and-deploy, from: 0.6-dev.41}\n"
        "notes: November release\nstate: ready\n"
    )
    repo.commit(people.bob, {QA_PLAN: text}, signed=False)
    result = repo.verify()
    verdict = result.judged[-1]
    assert not verdict.authorised
    refusal = next(refusal for refusal in verdict.refusals if refusal.field == "invalid")
    assert refusal.reasons == (f"{QA_PLAN}:7:10: application 'customer-portal' is listed twice",)
    assert QA_PLAN in result.differs


def test_yaml_duplicate_keys_cannot_hide_a_value(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    text = (
        "name: 2026-11-qa-release\nsource: development\ntarget: quality-assurance\n"
        "applications:\n"
        "- {name: ecommerce, version: 1.4.0}\n"
        "- {name: customer-portal, version: '0.6', version: '9.9', action: tag-and-deploy,"
        " from: 0.6-dev.41}\n"
        "notes: November release\nstate: ready\n"
    )
    repo.commit(people.bob, {QA_PLAN: text}, signed=False)
    result = repo.verify()
    assert not result.judged[-1].authorised


def test_an_unquoted_float_version_is_not_the_same_value_as_the_string(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan({"name": "ecommerce", "version": "1.10"})})
    repo.commit(people.diana, {QA_PLAN: qa_plan({"name": "ecommerce", "version": "1.10"}, PORTAL)})
    text = repo.git("show", f"HEAD:{QA_PLAN}").replace("'1.10'", "1.10")
    assert "version: 1.10\n" in text
    repo.commit(people.erik, {QA_PLAN: text}, signed=False)
    result = repo.verify()
    assert not result.judged[-1].authorised  # erik may not touch ecommerce; 1.10 is 1.1


# -- 6. teams.yaml ---------------------------------------------------------------------------


def test_a_projects_user_editing_identities_along_with_members_gets_only_the_members(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)

    def change(data: dict[str, Any]) -> None:
        data["teams"]["ecommerce"]["members"]["erik"] = "developer"  # allowed for projects
        data["users"]["pm"]["keys"].append(people.mallory.public_key)  # not allowed
        data["users"]["bob"]["keys"] = [people.mallory.public_key]  # not allowed

    repo.commit(people.pm, {"teams.yaml": teams_with(people, change)})
    result = repo.verify()
    assert not result.judged[-1].authorised
    policy = repo.effective_policy()
    assert policy.teams["ecommerce"].members.get("erik") == "developer"
    assert not policy.users["bob"].keys
    assert people.mallory.public_key not in policy.users["pm"].keys


def test_a_projects_user_may_not_move_the_deployment_role_by_renaming_a_team(
    tmp_path: Path, people: People
) -> None:
    """pm deletes team operations (olga: deployment) and recreates it as ops2 with bob."""
    repo = SeedRepo.create(tmp_path, people)

    def change(data: dict[str, Any]) -> None:
        data["teams"].pop("operations")
        data["teams"]["ops2"] = {"members": {"bob": "deployment"}}

    repo.commit(people.pm, {"teams.yaml": teams_with(people, change)})
    repo.verify()
    policy = repo.effective_policy()
    assert "ops2" not in policy.teams or "bob" not in policy.teams["ops2"].members
    assert policy.teams["operations"].members.get("olga") == "deployment"


def test_a_projects_user_may_not_route_productions_notifications_elsewhere(
    tmp_path: Path, people: People
) -> None:
    """pm, who may edit teams' members in teams.yaml, points production's notifications at
    a target of their own choosing, along with a change projects may make."""
    routed = seed_teams(people)
    routed["notifications"] = [{"target": "prod-audit", "environments": ["production"]}]
    repo = SeedRepo.create(tmp_path, people, teams=routed)

    def change(data: dict[str, Any]) -> None:
        data["notifications"] = [{"target": "pm-hook"}]
        data["teams"]["ecommerce"]["members"]["erik"] = "developer"  # allowed for projects

    repo.commit(people.pm, {"teams.yaml": teams_with(people, change)})
    result = repo.verify()
    refusal = only_refusal(result.judged[-1])
    assert refusal.needed == "teams.edit"
    policy = repo.effective_policy()
    assert [route.target for route in policy.notifications] == ["prod-audit"]
    assert policy.teams["ecommerce"].members.get("erik") == "developer"

    # The settings user may.
    def settings_change(data: dict[str, Any]) -> None:
        change(data)
        data["notifications"] = [{"target": "ops-chat", "events": ["run.failed"]}]

    repo.commit(people.root, {"teams.yaml": teams_with(people, settings_change)})
    assert repo.verify().judged[-1].authorised
    assert [route.target for route in repo.effective_policy().notifications] == ["ops-chat"]


def test_a_lost_publish_race_does_not_leave_the_service_judging_with_an_old_policy(
    tmp_path: Path, people: People
) -> None:
    """End to end through the long-lived Reconciler (as `watch` keeps it): root revokes
    bob while a finish record is being published (the push loses the race, so the
    outbox is flushed by a fresh walker); on the next pass bob edits ecommerce."""
    repo, _ = with_command_driver(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})  # triggered: alice deploys dev
    revoked = seed_teams(people)
    revoked["teams"]["ecommerce"]["members"].pop("bob")
    service = Reconciler(
        repo.path,
        Options(
            state_dir=repo.state_dir,
            key=people.reconciler.key,
            driver_root=repo.driver_root,
            instance="t",
        ),
        clock=lambda: SUITE_NOW,
        sleep=time.sleep,
    )
    real_publish = service.publisher.publish
    calls: list[str] = []

    def racing(commit: str, expected: str) -> bool:
        calls.append(commit)
        if len(calls) == 2:  # the finish record's publish: root pushed first
            repo.commit(people.root, {"teams.yaml": dump(revoked)}, "bob leaves ecommerce")
        return real_publish(commit, expected)

    service.publisher.publish = racing  # type: ignore[method-assign]
    with service:
        service.pass_once()
        bobs = repo.commit(
            people.bob, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "6.6.6"})}, signed=False
        )
        report = service.pass_once()
    verdict = next(item for item in report.landings if item.commit == bobs)
    fresh = repo.verify(state_dir=tmp_path / "fresh-state")
    assert not next(item for item in fresh.judged if item.commit == bobs).authorised
    assert not verdict.authorised, "the service accepted bob's edit after his revocation"
    assert repo.verify().differs == {QA_PLAN: ("the ecommerce entry",)}


def test_main_force_pushed_back_does_not_deploy_unapproved_content(
    tmp_path: Path, people: People
) -> None:
    """End to end: `reconciler apply` after main is reset to the approved commit."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "driver.out"
    qa_env = command_environment("quality-assurance", script, out)
    repo = SeedRepo.create(tmp_path, people, extra={"environments/quality-assurance.yaml": qa_env})
    repo.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="November release")})
    repo.approve(people.ravi, QA_PLAN)  # ravi approves ecommerce 1.4.0
    repo.trigger(people.olga, QA_PLAN)
    rewind_to = repo.head()
    bumped = {**ECOMMERCE, "version": "1.4.1"}  # nobody approves this
    repo.commit(people.alice, {QA_PLAN: qa_plan(bumped, PORTAL, notes="November release")})
    repo.deployed("development", {"ecommerce": "1.4.1", "customer-portal": "0.6-dev.41"})
    assert repo.reconciler("verify").exit_code == 0
    repo.git("reset", "-q", "--hard", rewind_to)  # mallory force-pushes main back
    repo.apply()
    deployed = out.read_text() if out.exists() else ""
    assert "ecommerce 1.4.1" not in deployed, f"deployed without approval:\n{deployed}"


def test_a_plan_listing_an_application_twice_never_becomes_executable(
    tmp_path: Path, people: People
) -> None:
    """`reconciler validate` refuses it ('a plan deploys each application once');
    DESIGN 'From plan to deployment' 1: executable only when ... valid."""
    repo = proposed_qa_release(tmp_path, people)
    text = (
        "name: 2026-11-qa-release\nsource: development\ntarget: quality-assurance\n"
        "applications:\n"
        "- {name: ecommerce, version: 1.4.0}\n"
        "- {name: customer-portal, version: '9.9', action: tag-and-deploy, from: 9.9-dev.1}\n"
        "- {name: customer-portal, version: '0.6', action: tag-and-deploy, from: 0.6-dev.41}\n"
        "notes: November release\nstate: ready\n"
    )
    repo.commit(people.bob, {QA_PLAN: text}, signed=False)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    assert "listed twice" in run_cli("validate", cwd=repo.path).stdout
    decision = repo.decide()[QA_PLAN]
    steps = [(a.name, a.version) for a in decision.plan.applications] if decision.plan else []
    assert decision.status != "executable", f"executable, would deploy {steps}"


# -- 7. changes that alter no parsed value --------------------------------------------------


def test_an_unsigned_comment_only_change_to_teams_yaml_is_refused(
    tmp_path: Path, people: People
) -> None:
    """DESIGN: 'teams.yaml ... changes to them always need a verified signature'."""
    repo = SeedRepo.create(tmp_path, people)
    text = repo.git("show", "HEAD:teams.yaml")
    forged = "# bob is a tech-lead in ecommerce as of today (approved by root)\n" + text
    repo.commit(people.mallory, {"teams.yaml": forged}, signed=False)
    result = repo.verify()
    refusal = only_refusal(result.judged[-1])
    assert (refusal.path, refusal.field) == ("teams.yaml", "text")
    assert refusal.reasons == ("unsigned commit, and this change needs a verified signature",)
    assert result.differs == {"teams.yaml": ("its comments and layout",)}


def test_a_signed_comment_only_change_to_teams_yaml_by_a_projects_user_is_authorised(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    text = repo.git("show", "HEAD:teams.yaml")
    repo.commit(people.pm, {"teams.yaml": "# reviewed every quarter\n" + text})
    result = repo.verify()
    assert result.authorised
    assert result.differs == {}


def test_an_unauthorised_grant_with_a_comment_is_refused_once(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    grant = teams_with(
        people, lambda d: d["teams"]["operations"]["members"].__setitem__("bob", "deployment")
    )
    repo.commit(people.bob, {"teams.yaml": "# bob helps out\n" + grant})
    result = repo.verify()
    refusal = only_refusal(result.judged[-1])
    assert refusal.field == "teams/operations/members/bob"
    assert result.differs == {
        "teams.yaml": ("teams.operations.members.bob", "its comments and layout")
    }


def test_an_unsigned_reformat_of_a_production_plan_is_not_a_landed_version(
    tmp_path: Path, people: People
) -> None:
    """Production requires signatures; mallory (nobody) rewrites the file's bytes."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    text = repo.git("show", f"HEAD:{PROD_PLAN}")
    repo.commit(people.mallory, {PROD_PLAN: text + "# reviewed\n"}, signed=False)
    result = repo.verify()
    landed = {item.blob for item in repo.plan_versions(PROD_PLAN)}
    assert not result.judged[-1].authorised or repo.blob(PROD_PLAN) not in landed


# -- 8. approvals and triggers ----------------------------------------------------------------


def test_a_trigger_signed_with_an_unlisted_key_under_olgas_email_does_not_count_in_production(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.approve(people.ravi, PROD_PLAN)
    repo.signoff(
        people.olga, "Deploy-Plan", f"{PROD_PLAN}@{repo.blob(PROD_PLAN)}", key=people.mallory.key
    )
    decision = repo.decide()[PROD_PLAN]
    assert decision.status != "executable"
    assert decision.triggered_by is None


def test_the_service_account_cannot_approve_or_trigger(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    ref = f"{QA_PLAN}@{repo.blob(QA_PLAN)}"
    repo.commit(
        people.reconciler,
        message=f"sign-off\n\nApprove-Plan: {ref}\nDeploy-Plan: {ref}",
    )
    decision = repo.decide()[QA_PLAN]
    assert decision.approvers == ()
    assert decision.triggered_by is None


def test_a_trigger_of_main_content_that_is_not_effective_does_not_run(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.commit(
        people.bob,
        {QA_PLAN: qa_plan(ECOMMERCE, PORTAL_BAD, notes="November release")},
        signed=False,
    )
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    assert repo.decide()[QA_PLAN].status == "refused"


def test_an_approval_in_a_commit_that_also_touches_an_unrelated_file_does_not_count(
    tmp_path: Path, people: People
) -> None:
    teams = seed_teams(people)
    teams["other_paths"] = ["README.md"]
    repo = proposed_qa_release(tmp_path, people, teams=teams)
    ref = f"{QA_PLAN}@{repo.blob(QA_PLAN)}"
    repo.commit(people.ravi, {"README.md": "hi"}, f"docs\n\nApprove-Plan: {ref}")
    repo.trigger(people.olga, QA_PLAN)
    assert repo.decide()[QA_PLAN].approvers == ()


def test_a_policy_giving_a_user_the_service_accounts_id_never_becomes_effective(
    tmp_path: Path, people: People
) -> None:
    # identity.resolve looks users up first: were it effective, the service
    # account's key would sign as the user 'reconciler', and its records as a person.
    repo = SeedRepo.create(tmp_path, people)
    clash = teams_with(
        people,
        lambda data: data["users"].__setitem__(
            "reconciler",
            {
                "name": "Reconciler Bot",
                "emails": ["bot@example.com"],
                "keys": [people.reconciler.public_key],
            },
        ),
    )
    repo.commit(people.root, {"teams.yaml": clash})
    result = repo.verify()
    refusal = only_refusal(result.judged[-1])
    assert refusal.needed == "a valid policy"
    assert "'reconciler' is in both users and service_accounts" in refusal.reasons[0]
    assert "reconciler" not in repo.effective_policy().users


# -- records: deployments/ and logs/ are the reconciler's alone ------------------------------


def qa_with_a_command_driver(tmp_path: Path, people: People) -> tuple[SeedRepo, Path]:
    """The seed story with a command driver in quality-assurance; what it ran, and where."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "driver.out"
    qa = command_environment("quality-assurance", script, out)
    repo = SeedRepo.create(tmp_path, people, extra={"environments/quality-assurance.yaml": qa})
    repo.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    return repo, out


def runs_in_qa(repo: SeedRepo) -> dict[str, Any]:
    data = yaml.safe_load(repo.git("show", "main:deployments/quality-assurance.yaml"))
    return {app: entry["version"] for app, entry in data["applications"].items()}


def test_a_forged_deployments_entry_is_not_laundered_by_the_next_finish_record(
    tmp_path: Path, people: People
) -> None:
    # bob claims ecommerce 6.6.6 runs in QA (refused); the next QA run's record,
    # which the service signs, must not carry his line on to production's promotion gate.
    repo, _ = qa_with_a_command_driver(tmp_path, people)
    forged = {
        "environment": "quality-assurance",
        "applications": {
            "ecommerce": {
                "version": "6.6.6",
                "plan": "forged",
                "run": "forged.1",
                "deployed_at": "2026-11-01T00:00:00Z",
            }
        },
    }
    repo.commit(people.bob, {"deployments/quality-assurance.yaml": dump(forged)}, signed=False)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    applied = repo.apply("--format", "json")
    assert [run["result"] for run in applied.json()["runs"]] == ["succeeded"]
    assert runs_in_qa(repo) == {"customer-portal": "0.6"}
    repo.commit(people.alice, {PROD_PLAN: prod_plan({"name": "ecommerce", "version": "6.6.6"})})
    decision = repo.decide()[PROD_PLAN]
    assert "promotion" in [wait.what for wait in decision.waits]


def test_an_unreadable_deployments_file_does_not_erase_what_runs_there(
    tmp_path: Path, people: People
) -> None:
    repo, _ = qa_with_a_command_driver(tmp_path, people)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.bob, {"deployments/quality-assurance.yaml": "{{{ nope"}, signed=False)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    applied = repo.apply("--format", "json")
    assert [run["result"] for run in applied.json()["runs"]] == ["succeeded"]
    assert runs_in_qa(repo) == {"customer-portal": "0.6", "ecommerce": "1.4.0"}


def test_a_refused_file_where_the_logs_folder_goes_does_not_stop_runs_being_recorded(
    tmp_path: Path, people: People
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    repo.commit(people.bob, {"logs": "not a directory\n"}, signed=False)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    applied = repo.apply("--format", "json")
    assert applied.exit_code == 0, applied.stderr
    assert "ecommerce 1.4.0" in out.read_text()
    assert repo.git("log", "-1", "--format=%s", "main") == (
        "Deploy 2026-11-dev-build to development: succeeded"
    )
    assert repo.git("cat-file", "-t", "main:logs") == "tree"
    # The record restored what was effective there: verify has no complaint left.
    assert repo.verify().differs == {}


def test_a_plan_file_named_as_no_plan_can_be_is_not_a_plan_and_records_nothing(
    tmp_path: Path, people: People
) -> None:
    # 'plans/a b.yaml' could never be valid (a plan's name is its file's name), and
    # its path would not read back from a Refused-Plan trailer: each round recorded
    # its refusal again, 1,000 records in one apply, and nothing deployed.
    repo, out = with_command_driver(tmp_path, people)
    repo.commit(people.bob, {"plans/a b.yaml": "name: a\n"}, signed=False)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    before = int(repo.git("rev-list", "--count", "main"))
    applied = repo.apply("--format", "json")
    assert applied.exit_code == 0, applied.stderr
    assert [run["result"] for run in applied.json()["runs"]] == ["succeeded"]
    assert "ecommerce 1.4.0" in out.read_text()
    assert int(repo.git("rev-list", "--count", "main")) - before == 2  # start and finish
    fresh = repo.verify(state_dir=tmp_path / "fresh-state")
    refusal = next(refusal for verdict in fresh.judged for refusal in verdict.refusals)
    assert refusal.path == "plans/a b.yaml"
    assert refusal.needed == "a listing in teams.yaml other_paths"


# -- 9. retries of interrupted runs ----------------------------------------------------------


def test_a_retry_does_not_revive_an_approval_whose_approver_lost_plan_approve(
    tmp_path: Path, people: People
) -> None:
    # A retry is an execution too: its approvers must still hold plan.approve now.
    repo, approval = interrupted_qa_release(tmp_path, people)
    teams = seed_teams(people)
    del teams["teams"]["architecture"]  # ravi, the only approver, loses tech-lead
    repo.commit(people.root, {"teams.yaml": dump(teams)}, "Ravi moves on")
    repo.signoff(people.olga, "Retry-Run", QA_RUN)
    decision = repo.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert decision.reasons == (
        "1 more approval by tech-lead (may approve: nobody who did not edit the plan)",
    )
    assert [wait.what for wait in decision.waits] == ["approval"]
    assert decision.approvers == ()
    assert decision.notes == (
        f"approval in {approval[:12]} by ravi does not count: ravi no longer holds plan.approve: "
        "ravi holds no role; quality-assurance grants plan.approve to tech-lead "
        "(held by alice, diana)",
    )


def test_a_retry_does_not_revive_approvals_older_than_approval_ttl(
    tmp_path: Path, people: People
) -> None:
    # The fresh Retry-Run stands in for the trigger, never for the 12h-old approval (8h ttl).
    repo, approval = interrupted_qa_release(tmp_path, people)
    later = SUITE_NOW + timedelta(hours=12)
    retried_at = int((later - timedelta(minutes=10)).timestamp())
    repo.signoff(people.olga, "Retry-Run", QA_RUN, date=f"{retried_at} +0000")
    decision = repo.decide(now=later)[QA_PLAN]
    assert decision.status == "waiting"
    assert decision.reasons == ("1 more approval by tech-lead (may approve: ravi)",)
    assert [wait.what for wait in decision.waits] == ["approval"]
    assert decision.approvers == ()
    assert decision.notes == (
        f"approval in {approval[:12]} by ravi does not count: older than approval_ttl (8h)",
    )


def test_a_retry_with_a_current_approval_runs_with_todays_approvers(
    tmp_path: Path, people: People
) -> None:
    repo, _ = interrupted_qa_release(tmp_path, people)
    repo.signoff(people.olga, "Retry-Run", QA_RUN)
    decision = repo.decide()[QA_PLAN]
    assert decision.status == "executable"
    assert decision.reasons == (
        f"retry of interrupted run {QA_RUN}, requested by olga, approved by ravi",
    )
    assert (decision.approvers, decision.triggered_by, decision.retry_of) == (
        ("ravi",),
        "olga",
        QA_RUN,
    )


def test_a_retry_that_landed_before_the_versions_latest_landing_does_not_count(
    tmp_path: Path, people: People
) -> None:
    # olga's retry and alice's edit land together; alice (no plan.deploy) later brings the
    # interrupted version back and ravi approves it again: the old retry must not re-run it.
    repo, approval = interrupted_qa_release(tmp_path, people)
    original = repo.head()
    with repo.branch("race"):
        retry = repo.signoff(people.olga, "Retry-Run", QA_RUN)
        repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL)})
    repo.git("merge", "-q", "--ff-only", "race")
    repo.git("checkout", "-q", original, "--", QA_PLAN)
    back = repo.commit(people.alice, message="bring back the interrupted version")
    repo.approve(people.ravi, QA_PLAN)
    decision = repo.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert decision.reasons == (
        f"run {QA_RUN} was interrupted; a plan.deploy holder (olga) may retry it with "
        f"`reconciler deploy 2026-11-qa-release --retry {QA_RUN}`",
    )
    assert decision.retry_of is None
    assert decision.notes == (
        f"retry in {retry[:12]} by olga does not count: "
        f"it predates this version's return to main in {back[:12]}",
        f"approval in {approval[:12]} by ravi does not count: "
        f"it predates this version's return to main in {back[:12]}",
    )


# -- the state directory: the reconciler's own, one per branch, one pass at a time -----------


def mallory_rewrites_main(repo: SeedRepo, people: People) -> str:
    """A force-push: main becomes a new history whose root makes mallory a settings user."""
    repo.git("checkout", "-q", "--orphan", "evil")
    environments = {
        path: (repo.path / path).read_text()
        for path in repo.git("ls-files", "environments").splitlines()
    }
    evil = repo.commit(
        people.mallory,
        {
            "teams.yaml": teams_with(
                people, lambda data: make_mallory_the_settings_user(data, people)
            ),
            **environments,
        },
        "evil root",
    )
    repo.git("branch", "-f", "main", evil)
    repo.git("checkout", "-q", "main")
    repo.git("branch", "-D", "evil")
    return evil


def assert_the_rewrite_still_stops_verify(repo: SeedRepo) -> None:
    """The old state stands: main's rewrite is still refused, not trusted from its root."""
    after = repo.reconciler("verify")
    assert after.exit_code == 1
    assert "history was rewritten" in after.stderr


def test_a_re_anchor_on_a_commit_that_is_not_on_main_is_refused_and_the_state_kept(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    old_by_root = repo.commit(people.root, message="root's last commit")
    repo.verify()
    mallory_rewrites_main(repo, people)
    attempt = repo.reconciler("verify", "--re-anchor", old_by_root)
    assert attempt.exit_code == 2
    assert f"cannot re-anchor on {old_by_root[:12]}: it is not on main" in attempt.stderr
    assert_the_rewrite_still_stops_verify(repo)


def test_a_re_anchor_that_fails_while_anchoring_leaves_the_old_state_standing(
    tmp_path: Path, people: People
) -> None:
    # Root (settings in the trusted policy) signs a commit on the rewritten main
    # whose configuration is invalid: re-anchoring on it fails inside the walk.
    # Before, the state was wiped first, and the next verify trusted mallory's root.
    repo = SeedRepo.create(tmp_path, people)
    repo.verify()
    mallory_rewrites_main(repo, people)
    broken = repo.commit(people.root, {"teams.yaml": "users: [\n"}, "broken")
    attempt = repo.reconciler("verify", "--re-anchor", broken)
    assert attempt.exit_code == 1
    assert f"the trust anchor {broken[:12]}'s configuration is invalid" in attempt.stderr
    assert_the_rewrite_still_stops_verify(repo)


def test_a_state_directory_inside_the_working_tree_is_refused(
    tmp_path: Path, people: People
) -> None:
    # A pushed commit could put a database there, anchored wherever its author liked.
    repo = SeedRepo.create(tmp_path, people)
    inside = repo.path / ".reconciler"
    result = run_cli("verify", "--repo", repo.path, "--state-dir", inside, cwd=repo.path)
    assert result.exit_code == 2
    assert "is inside the repository's working tree" in result.stderr
    assert not (repo.path / ".reconciler").exists()


def test_a_second_walk_on_one_state_waits_and_starts_where_the_first_left_off(
    tmp_path: Path, people: People
) -> None:
    # The second walker read the position before waiting for the first one's
    # transaction, then judged the same landings again (a UNIQUE constraint, exit 3).
    repo = SeedRepo.create(tmp_path, people)
    repo.verify()
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    with GitRepo(repo.path) as git:
        first_store = StateStore(repo.state_dir, "main")
        second_store = StateStore(repo.state_dir, "main")
        tip = git.resolve("main")
        waiting_begin = second_store._begin

        def first_walks_while_the_second_waits() -> None:
            Authoriser(git, first_store, now=SUITE_NOW).run(tip)
            waiting_begin()

        second_store._begin = first_walks_while_the_second_waits  # type: ignore[method-assign]
        try:
            second = Authoriser(git, second_store, now=SUITE_NOW).run(tip)
        finally:
            first_store.close()
            second_store.close()
    assert second.judged == ()
    store = repo.store()
    try:
        assert len(store.landings()) == 2
    finally:
        store.close()


def test_a_state_database_busy_past_the_timeout_is_a_temporary_error(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.verify()
    holder = sqlite3.connect(repo.state_dir / "main.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    store = StateStore(repo.state_dir, "main", busy_timeout=0.2)
    try:
        with (
            pytest.raises(TemporaryError, match="is in use by another reconciler process"),
            store.transaction(),
        ):
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


def test_a_state_database_of_another_program_is_an_error_naming_it(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.state_dir.mkdir(parents=True)
    foreign = sqlite3.connect(repo.state_dir / "main.sqlite3")
    foreign.execute("CREATE TABLE meta (k TEXT, v TEXT)")
    foreign.commit()
    foreign.close()
    result = repo.reconciler("verify")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith(
        f"error: the state database {repo.state_dir / 'main.sqlite3'} cannot be used:"
    )
    assert "internal error" not in result.stderr


def test_branches_whose_names_once_mapped_to_one_file_keep_separate_states(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    seed = repo.head()
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.git("branch", "release/x", "main")
    repo.git("branch", "release--x", seed)
    assert repo.reconciler("verify", "--branch", "release/x").exit_code == 0
    assert repo.reconciler("verify", "--branch", "release--x").exit_code == 0
    assert sorted(path.name for path in repo.state_dir.glob("*.sqlite3")) == [
        "release%2Fx.sqlite3",
        "release--x.sqlite3",
    ]


def test_a_state_database_that_follows_another_branch_is_refused(
    tmp_path: Path, people: People
) -> None:
    # An old state file for 'release/x' was named 'release--x': still used for
    # release/x (a new one would trust its history from scratch), never for another.
    repo = SeedRepo.create(tmp_path, people)
    repo.git("branch", "release--x", "main")
    repo.git("branch", "release/x", "main")
    assert repo.reconciler("verify", "--branch", "release--x").exit_code == 0
    result = repo.reconciler("verify", "--branch", "release/x")
    assert result.exit_code == 1
    assert "follows branch 'release--x', not 'release/x'" in result.stderr
    assert "hint: give each followed branch its own --state-dir" in result.stderr


@pytest.mark.parametrize(
    ("committer", "counts"),
    [
        ("{bob.name} <{bob.email}>", True),  # the control: Bob's own, unsigned, counts
        ("{mallory.name} <{mallory.email}> <{bob.email}>", False),
    ],
)
def test_a_committer_line_naming_bobs_email_after_mallorys_is_mallorys_as_git_reads_it(
    tmp_path: Path, people: People, committer: str, counts: bool
) -> None:
    # Unsigned, a commit is its committer email's where the environment needs no
    # signature. Git reads the email between the first `<` and the first `>`: `git log`
    # shows this line as Mallory's, and a reading that took the last `<...>` made it Bob's.
    repo = _qa_plan_staged(tmp_path, people)
    ident = committer.format(bob=people.bob, mallory=people.mallory) + " 1700000000 +0000"
    headers = f"author {ident}\ncommitter {ident}".encode()
    shown = _push_raw_commit(repo, tmp_path / "commit", headers)
    assert shown == (people.bob.email if counts else people.mallory.email)
    assert repo.verify().judged[-1].authorised is counts


def _qa_plan_staged(tmp_path: Path, people: People) -> SeedRepo:
    """The seed repository with an edit of the QA plan staged, for a commit made by hand."""
    repo = SeedRepo.create(tmp_path, people)
    repo.write({QA_PLAN: qa_plan(ECOMMERCE)})
    repo.git("add", "-A")
    return repo


def _push_raw_commit(repo: SeedRepo, raw: Path, headers: bytes) -> str:
    """Land the staged tree in a commit whose author and committer headers are `headers`,
    bytes a pusher writes with `git hash-object --literally`; git log's %ce for it."""
    tree, parent = repo.git("write-tree"), repo.head()
    raw.write_bytes(f"tree {tree}\nparent {parent}\n".encode() + headers + b"\n\nThe QA plan\n")
    commit = repo.git("hash-object", "--literally", "-t", "commit", "-w", str(raw))
    repo.git("update-ref", "refs/heads/main", commit)
    repo.git("reset", "-q", "--hard", "main")
    return repo.git("log", "-1", "--format=%ce")


def test_a_committer_line_git_log_reencodes_from_utf7_as_mallorys_is_nobodys(
    tmp_path: Path, people: People
) -> None:
    # `encoding UTF-7` makes git log convert the whole header before it splits the
    # committer line: '+ADw-' is '<' and '+AD4-' is '>' there, so git shows Mallory's
    # email where the bytes hold Bob's. `git fsck --strict` finds nothing wrong with it
    # (a '-0000' zone keeps UTF-7 from failing on '+0000').
    repo = _qa_plan_staged(tmp_path, people)
    bob, mallory = people.bob, people.mallory
    ident = f"{bob.name} <{bob.email}> 1700000000 -0000"
    forged = f"{mallory.name} +ADw-{mallory.email}+AD4- <{bob.email}> 1700000000 -0000"
    shown = _push_raw_commit(
        repo,
        tmp_path / "commit",
        f"author {ident}\ncommitter {forged}\nencoding UTF-7".encode(),
    )
    assert shown == mallory.email
    run_git(repo.path, "fsck", "--strict")  # fails on any error it finds
    assert repo.verify().judged[-1].authorised is False


def test_a_committer_line_git_log_reads_after_a_nul_byte_is_nobodys(
    tmp_path: Path, people: People
) -> None:
    # git log reads a header line as ending at a NUL byte and the next line as starting
    # after it: a second committer line hidden behind one is the one `%ce` shows,
    # where a reading by line breaks finds Bob's alone. (`git fsck` refuses a NUL in a
    # header; a host that does not run it takes the push.)
    repo = _qa_plan_staged(tmp_path, people)
    bob, mallory = people.bob, people.mallory
    ident = f"{bob.name} <{bob.email}> 1700000000 +0000"
    hidden = f"x\0committer {mallory.name} <{mallory.email}> 1700000000 +0000"
    shown = _push_raw_commit(
        repo,
        tmp_path / "commit",
        f"author {ident}\ncommitter {ident}\n{hidden}".encode(),
    )
    assert shown == mallory.email
    assert repo.verify().judged[-1].authorised is False


def test_a_host_without_emails_is_refused_it_could_vouch_for_any_committer(
    tmp_path: Path, people: People
) -> None:
    host = people.second_key(people.mallory, "host").public_key
    teams = seed_teams(people)
    teams["hosts"] = {"github": {"identity": "author", "keys": [host]}}
    result = run_cli("validate", cwd=SeedRepo.create(tmp_path, people, teams=teams).path)
    assert result.exit_code == 1
    assert "error: hosts.github: missing required key 'emails'" in result.stdout


def test_an_approver_holding_two_roles_fills_the_rule_no_one_else_can(
    tmp_path: Path, people: People
) -> None:
    # fiona is a tester (customer-portal) and a tech lead (architecture); ravi is a
    # tech lead. Taken in turn, fiona filled the tech-lead rule and the plan waited
    # for a tester, although ravi for tech-lead and fiona for tester meet both.
    teams = seed_teams(people)
    teams["teams"]["architecture"]["members"]["fiona"] = "tech-lead"
    repo = SeedRepo.create(tmp_path, people, teams=teams)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.approve(people.fiona, PROD_PLAN)
    repo.approve(people.ravi, PROD_PLAN)
    decision = repo.decide()[PROD_PLAN]
    assert decision.approvers == ("fiona", "ravi")
    assert "approval" not in [wait.what for wait in decision.waits]


def test_one_approver_holding_two_roles_never_counts_for_both(
    tmp_path: Path, people: People
) -> None:
    teams = seed_teams(people)
    teams["teams"]["architecture"]["members"]["fiona"] = "tech-lead"
    repo = SeedRepo.create(tmp_path, people, teams=teams)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.approve(people.fiona, PROD_PLAN)
    decision = repo.decide()[PROD_PLAN]
    assert decision.approvers == ("fiona",)
    assert [wait.what for wait in decision.waits].count("approval") == 1


def test_access_says_a_user_without_a_key_cannot_approve_where_signatures_are_required(
    tmp_path: Path, people: People
) -> None:
    # verify refuses erik's unsigned approval in production; access said he may.
    teams = seed_teams(people)
    teams["teams"]["architecture"]["members"]["erik"] = "tech-lead"  # erik has no key
    repo = SeedRepo.create(tmp_path, people, teams=teams)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.approve(people.erik, PROD_PLAN, signed=False)
    assert "erik" not in repo.decide()[PROD_PLAN].approvers
    result = repo.reconciler("access", "erik", "--format", "json")
    entitlements = {
        (item["permission"], item["environment"]): item
        for item in result.json()["entitlements"]
        if item["application"] is None
    }
    production = entitlements[("plan.approve", "production")]
    assert production["allowed"] is False
    assert production["reasons"][0] == (
        "erik has no SSH key in teams.yaml, and an approval of a plan into production "
        "needs a verified signature"
    )
    assert entitlements[("plan.approve", "quality-assurance")]["allowed"] is True


# -- 10. records from another history -------------------------------------------------------


def test_records_from_a_history_unrelated_to_the_trust_anchor_do_not_end_a_run_here(
    tmp_path: Path, people: People
) -> None:
    # One service key signs the records of two configuration repositories. In the other one,
    # mallory ran a plan with the same bytes as ours; its history, merged here without
    # changing a file, must not make our plan version one that already ran.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.verify()  # anchored on our root: with two roots, a fresh state would name none
    tree = repo.git("rev-parse", "main^{tree}")
    config, env = repo.identity(people.mallory, signed=False)
    elsewhere = repo.git(*config, "commit-tree", tree, "-m", "another repository", env=env)
    run = {
        "Plan": f"{DEV_PLAN}@{repo.blob(DEV_PLAN)}",
        "Environment": "development",
        "Run": "2026-11-dev-build.1",
    }
    for result in ("started", "succeeded"):
        trailers = {**run, "Result": result, "Reconciler": "elsewhere"}
        body = "\n".join(f"{key}: {value}" for key, value in trailers.items())
        config, env = repo.identity(people.reconciler, signed=True)
        elsewhere = repo.git(
            *config, "commit-tree", "-S", tree, "-p", elsewhere, "-m", f"Record\n\n{body}", env=env
        )
    repo.land_commit_tree(people.alice, tree, repo.head(), elsewhere, message="Merge", signed=True)
    decision = repo.decide()[DEV_PLAN]
    assert (decision.status, decision.run) == ("executable", None)
    reasons = [event.reason for event in repo.store().events(IgnoredTrailer)]
    assert reasons == ["the commit does not descend from the trust anchor"] * 2


# -- 11. records copied back into the history: a record counts once ----------------------------

DEV_RUN = "2026-11-dev-build.1"


def copied(repo: SeedRepo, commit: str) -> str:
    """`commit` under a new id, its signed payload unchanged (a second signature header,
    which the payload leaves out), as anyone who can push can make it."""
    raw = subprocess.run(
        ["git", "cat-file", "commit", commit], cwd=repo.path, capture_output=True, check=True
    ).stdout
    headers, _, message = raw.partition(b"\n\n")
    return stored_copy(repo, headers + b"\ngpgsig-sha256 bogus\n\n" + message)


def tree_with(repo: SeedRepo, rev: str, blobs: dict[str, str]) -> str:
    """The tree of `rev` with `blobs` (path -> blob id) put in."""
    index = {"GIT_INDEX_FILE": str(repo.path.parent / "attack.index")}
    repo.git("read-tree", rev, env=index)
    for path, blob in blobs.items():
        repo.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index)
    return repo.git("write-tree", env=index)


def runs_of(applied: Any) -> list[tuple[str, str]]:
    return [(run["run"], run["result"]) for run in applied.json()["runs"]]


def test_a_start_record_copied_back_does_not_reopen_a_run_that_succeeded(
    tmp_path: Path, people: People
) -> None:
    # Before, the service marked the run interrupted itself, `plan` offered a retry,
    # and the retry deployed the version a second time.
    repo, out = with_command_driver(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})  # alice deploys development
    assert runs_of(repo.apply("--format", "json")) == [(DEV_RUN, "succeeded")]
    start, finish = repo.head("main~1"), repo.head()
    copy = copied(repo, start)
    repo.land_commit_tree(people.mallory, repo.head("main^{tree}"), finish, copy, message="Merge")
    applied = repo.apply("--format", "json")
    assert applied.json()["interrupted"] == []
    shown = repo.reconciler("plan", "--format", "json").json()["plans"]
    assert [(item["status"], item["reasons"]) for item in shown] == [
        ("done", [f"run {DEV_RUN} succeeded"])
    ]
    repo.signoff(people.olga, "Retry-Run", DEV_RUN)
    assert runs_of(repo.apply("--format", "json")) == []
    assert out.read_text().splitlines() == ["2026-11-dev-build ecommerce 1.4.0 []"]
    # The copy is listed, and counts for nothing: whether as a payload signed once already
    # (item 12) or as a second start of a run that ended (this rule, which
    # test_a_second_finish_record_of_a_run_signed_by_the_service_never_moves_deployments
    # holds on its own with records the service key really signed).
    entries = repo.reconciler("history", "--format", "json").json()["entries"]
    assert [entry["counted"] for entry in entries if entry["commit"] == copy] == [False]


def test_a_finish_record_copied_back_does_not_roll_back_what_runs_in_an_environment(
    tmp_path: Path, people: People
) -> None:
    # Before, deployments/development.yaml went back to 1.4.0 in the effective state:
    # `status` said so, and promotion to quality-assurance took 1.4.0, not 1.4.1.
    repo, _ = with_command_driver(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.apply()
    first = repo.head()
    newer = {**ECOMMERCE, "version": "1.4.1"}
    repo.commit(people.alice, {DEV_PLAN: dev_plan(newer)})
    assert runs_of(repo.apply("--format", "json")) == [("2026-11-dev-build.2", "succeeded")]
    path = "deployments/development.yaml"
    tree = tree_with(repo, "main", {path: repo.blob(path, first)})
    repo.land_commit_tree(people.mallory, tree, repo.head(), copied(repo, first), message="Merge")
    verified = repo.reconciler("verify")
    assert verified.exit_code == 1
    assert f"{path}: changed by " in verified.stdout
    assert repo.head("main^2")[:12] in verified.stdout
    status = repo.reconciler("status", "--format", "json").json()
    assert status["applications"]["ecommerce"] == {"development": "1.4.1"}
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    waits = [(wait.what, wait.text) for wait in repo.decide()[QA_PLAN].waits]
    assert ("promotion", "ecommerce 1.4.0 must run in development first (it runs 1.4.1)") in waits
    repo.commit(people.alice, {QA_PLAN: qa_plan(newer)})
    assert "promotion" not in [wait.what for wait in repo.decide()[QA_PLAN].waits]


def run_trailers(repo: SeedRepo, run: str, environment: str = "development") -> dict[str, str]:
    return {"Plan": f"{DEV_PLAN}@{repo.blob(DEV_PLAN)}", "Environment": environment, "Run": run}


def deployments(version: str, run: str) -> dict[str, str]:
    entry = {"version": version, "plan": "2026-11-dev-build", "run": run, "deployed_at": "x"}
    content = dump({"environment": "development", "applications": {"ecommerce": entry}})
    return {"deployments/development.yaml": content}


def void_records(repo: SeedRepo) -> list[tuple[str, str]]:
    """The records the walk kept as not counting: (commit, why)."""
    store = repo.store()
    try:
        return [
            (event.commit, event.reason)
            for event in store.events(IgnoredTrailer)
            if event.record is not None
        ]
    finally:
        store.close()


def test_a_second_finish_record_of_a_run_signed_by_the_service_never_moves_deployments(
    tmp_path: Path, people: People
) -> None:
    # However a record comes back (a copy, or the same service key on another branch).
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.record({**run_trailers(repo, DEV_RUN), "Result": "started", "Reconciler": "t"})
    ended = repo.record(
        {**run_trailers(repo, DEV_RUN), "Result": "failed"}, deployments("1.4.0", DEV_RUN)
    )
    again = repo.record(
        {**run_trailers(repo, DEV_RUN), "Result": "succeeded"}, deployments("9.9.9", DEV_RUN)
    )
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.path) == (again, "deployments/development.yaml")
    assert refusal.reasons == (f"its record does not count: the run already ended in {ended[:12]}",)
    assert repo.decide()[DEV_PLAN].reasons == (f"run {DEV_RUN} failed",)
    assert void_records(repo) == [(again, f"the run already ended in {ended[:12]}")]


def test_a_finish_record_counts_only_on_top_of_its_runs_start_with_its_plan_and_environment(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    before = repo.head()
    repo.record({**run_trailers(repo, DEV_RUN), "Result": "started", "Reconciler": "t"})
    # Signed for the same run id on another branch: neither built on its start nor on
    # main's first-parent line.
    with repo.branch("elsewhere", before):
        aside = repo.record({**run_trailers(repo, DEV_RUN), "Result": "succeeded"})
    repo.merge(people.alice, "elsewhere")
    other = repo.record({**run_trailers(repo, DEV_RUN, "production"), "Result": "succeeded"})
    qa_run = {"Plan": f"plans/other.yaml@{'a' * 40}", "Environment": "quality-assurance"}
    written = repo.record({**qa_run, "Run": "other.1", "Result": "started"})
    wrong = repo.record(
        {**qa_run, "Run": "other.1", "Result": "succeeded"}, deployments("1.4.0", "other.1")
    )
    nothing = repo.commit(people.reconciler, deployments("1.4.0", "none"))
    result = repo.verify()
    plan = f"{DEV_PLAN}@{repo.blob(DEV_PLAN)}"
    assert void_records(repo) == [
        (aside, OFF_THE_LINE),
        (
            other,
            f"the run started for {plan} in development, not {plan} in production",
        ),
    ]
    assert written not in [commit for commit, _ in void_records(repo)]
    refusals = {verdict.commit: only_refusal(verdict).reasons for verdict in result.judged[-2:]}
    assert refusals == {
        wrong: ("its record ends run other.1 in quality-assurance, not development",),
        nothing: ("the commit is not the finish record of a run",),
    }
    assert repo.decide()[DEV_PLAN].reasons == (f"run {DEV_RUN} is running",)


def committed(repo: SeedRepo, commit: str) -> datetime:
    return datetime.fromtimestamp(int(repo.git("log", "-1", "--format=%ct", commit)), UTC)


def test_a_heartbeat_signed_by_the_service_revives_no_run_whose_lease_passed_or_that_ended(
    tmp_path: Path, people: People
) -> None:
    # The service's key signs them all: a reconciler that resumed after its lease, or a
    # heartbeat pushed again later, must not keep a dead run's environment locked.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    run = {**run_trailers(repo, DEV_RUN), "Reconciler": "paused"}
    # Commits are a minute apart: the start's lease is 3 minutes, a heartbeat made a minute
    # later extends it by 4 from then; one made after that has passed revives nothing.
    begun = committed(repo, "HEAD") + timedelta(minutes=1)
    start = repo.record(
        {**run, "Result": "started", "Lease-Until": _iso(begun + timedelta(minutes=3))}
    )
    assert committed(repo, start) == begun
    extended = begun + timedelta(minutes=5)
    kept = repo.record({**run, "Result": "heartbeat", "Lease-Until": _iso(extended)})
    # Only the service's signed commits are records: a person's heartbeat is words.
    forever = _iso(SUITE_NOW + timedelta(days=365))
    body = "\n".join(f"{key}: {value}" for key, value in run.items())
    repo.commit(
        people.alice, message=f"Extend\n\n{body}\nResult: heartbeat\nLease-Until: {forever}"
    )
    for number in range(4):
        repo.commit(people.alice, message=f"note {number}")
    revived = repo.record({**run, "Result": "heartbeat", "Lease-Until": forever})
    other = repo.record(
        {**run, "Reconciler": "elsewhere", "Result": "heartbeat", "Lease-Until": forever}
    )
    assert repo.verify().authorised
    assert void_records(repo) == [
        (
            revived,
            f"it was made at {_iso(committed(repo, revived))}, after the run's lease passed "
            f"at {_iso(extended)}",
        ),
        (other, "the run is paused's, not elsewhere's: only it extends the lease"),
    ]
    assert kept not in [commit for commit, _ in void_records(repo)]
    # The service marks the run interrupted: its lease passed when the one heartbeat
    # that counted said, whatever the later ones say.
    assert repo.apply().exit_code == 0
    marked = repo.head()
    assert trailers(repo, marked)["Result"] == "interrupted"
    assert f"whose lease passed at {_iso(extended)}" in repo.git("log", "-1", "--format=%b", marked)
    # And a heartbeat of the run that ended reopens nothing.
    again = repo.record({**run, "Result": "heartbeat", "Lease-Until": forever})
    assert repo.verify().authorised
    assert (again, f"the run already ended in {marked[:12]}") in void_records(repo)
    assert [wait.what for wait in repo.decide()[DEV_PLAN].waits] == ["retry"]


def test_a_late_record_of_a_run_not_recorded_interrupted_moves_no_deployments(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.record({**run_trailers(repo, DEV_RUN), "Result": "started", "Reconciler": "t"})
    late = repo.record(
        {**run_trailers(repo, DEV_RUN), "Result": "late"}, deployments("9.9.9", DEV_RUN)
    )
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.path) == (late, "deployments/development.yaml")
    why = "a late record follows only a run recorded interrupted"
    assert refusal.reasons == (f"its record does not count: {why}",)
    assert void_records(repo) == [(late, why)]
    assert repo.decide()[DEV_PLAN].reasons == (f"run {DEV_RUN} is running",)


def _iso(when: datetime) -> str:
    return when.isoformat()


# -- 12. the trust anchor of a pull request's check -------------------------------------------


def ci_verify_command(workflow: Path, base: str) -> list[str]:
    """The `reconciler verify` step of the generated CI workflow, for a pull request into
    `base`, without the leading `reconciler`."""
    lines = workflow.read_text().splitlines()
    [line] = [line for line in lines if line.strip().startswith("- run: reconciler verify")]
    command = line.split("run:", 1)[1].replace("$GITHUB_BASE_REF", base)
    return shlex.split(command)[1:]


def test_a_pull_request_from_an_orphan_branch_cannot_choose_its_trust_anchor_in_ci(
    tmp_path: Path, people: People
) -> None:
    # Before, a fresh state anchored on the root of HEAD's first-parent chain: mallory's
    # own root, making her a settings user, and the check passed.
    target = tmp_path / "config"
    made = run_cli("init", target, "--key", people.root.key.with_suffix(".pub"))
    assert made.exit_code == 0, made.stderr
    repo = ConfigRepo(target, people, tmp_path / "unused-state")
    anchor = repo.head()
    command = ci_verify_command(target / ".github/workflows/reconciler.yml", "main")

    def fresh(name: str) -> dict[str, str]:
        return {**os.environ, "RECONCILER_STATE_DIR": str(tmp_path / name)}

    with repo.branch("tidy"):  # an honest pull request passes
        text = (target / "environments/development.yaml").read_text()
        repo.commit(people.root, {"environments/development.yaml": "# tidy\n" + text})
        assert run_cli(*command, cwd=target, env=fresh("tidy-state")).exit_code == 0
    teams = yaml.safe_load((target / "teams.yaml").read_text())
    make_mallory_the_settings_user(teams, people)
    repo.git("checkout", "-q", "--orphan", "evil")
    repo.commit(people.mallory, {"teams.yaml": dump(teams)}, "root")
    production = (target / "environments/production.yaml").read_text()
    anyone = production.replace("plan.deploy: [deployment]", "plan.deploy: [developer]")
    evil = repo.commit(people.mallory, {"environments/production.yaml": anyone})
    result = run_cli(*command, cwd=target, env=fresh("evil-state"))
    assert result.exit_code == 1, result.stdout
    assert result.stderr.splitlines()[0] == (
        f"error: HEAD ({evil[:12]}) does not descend from the trust anchor {anchor[:12]} of "
        "main: its history is not the branch's, and is not verified against it"
    )
    assert "hint: base the commit on main" in result.stderr


# -- what git log does not show -----------------------------------------------------------------


def land_raw_commit(repo: SeedRepo, by: Person, message: bytes, *, more: bytes = b"") -> str:
    """An empty commit on main with exactly `message`'s bytes (and the header lines `more`
    after its committer), signed with `by`'s key by ssh-keygen as git signs (`git commit`
    refuses a NUL byte in a message; the object store and a push take it)."""
    parent = repo.head()
    tree = repo.git("rev-parse", "main^{tree}")
    repo.clock += 60
    when = f"{repo.clock} +0000"
    person = f"{by.name} <{by.email}> {when}"
    headers = f"tree {tree}\nparent {parent}\nauthor {person}\ncommitter {person}\n".encode()
    headers += more
    payload = headers + b"\n" + message
    signature = subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", str(by.key)],
        input=payload,
        capture_output=True,
        check=True,
    ).stdout
    block = b"gpgsig " + signature.rstrip(b"\n").replace(b"\n", b"\n ") + b"\n"
    raw = headers + block + b"\n" + message
    commit = stored_copy(repo, raw)
    repo.git("update-ref", "refs/heads/main", commit, parent)
    return commit


def test_a_trigger_in_a_commit_with_two_committer_lines_does_not_deploy(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    ref = f"{QA_PLAN}@{repo.blob(QA_PLAN)}"
    # git log shows the second line, git's own date ordering reads the first: which person
    # and time the commit has depends on who reads it, so it holds no identity at all.
    second = f"committer Ravi <{people.ravi.email}> 1 +0000\n".encode()
    twice = land_raw_commit(
        repo, people.olga, f"Deploy\n\nDeploy-Plan: {ref}\n".encode(), more=second
    )
    assert repo.git("log", "-1", "--format=%cn %ct", twice) == "Ravi 1"

    applied = repo.apply("--format", "json")

    assert applied.exit_code == 0, applied.stderr
    assert applied.json()["runs"] == []
    assert not (repo.path / "deployments/quality-assurance.yaml").exists()
    verify = repo.reconciler("verify")
    assert "it carries 2 committer lines, where git writes one" in verify.stdout, verify.stdout


def test_a_trigger_after_a_nul_byte_that_git_log_never_shows_does_not_deploy(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    ref = f"{QA_PLAN}@{repo.blob(QA_PLAN)}"
    # olga's own key signs it: what an auditor reads in git log is a note, not a trigger.
    hidden = land_raw_commit(
        repo, people.olga, f"Release notes\n\nAll green.\0\n\nDeploy-Plan: {ref}\n".encode()
    )
    remote = repo.publish_to_bare_remote()
    assert run_git(remote, "rev-parse", "main") == hidden  # a push carries it
    shown = repo.git("log", "-1", "--format=%B%n%(trailers)", hidden)
    assert "Deploy-Plan" not in shown
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"{people.olga.email} {people.olga.public_key}\n")
    allowed = f"gpg.ssh.allowedSignersFile={signers}"
    assert repo.git("-c", allowed, "log", "-1", "--format=%G? %GS", hidden) == (
        f"G {people.olga.email}"
    )

    applied = repo.apply("--format", "json")
    assert applied.exit_code == 0, applied.stderr
    assert applied.json()["runs"] == []
    assert not (repo.path / "deployments/quality-assurance.yaml").exists()
    verify = repo.reconciler("verify")
    assert f"{hidden[:12]} by olga: {NUL_MESSAGE}" in verify.stdout
    [entry] = [
        entry
        for entry in repo.reconciler("history", "--format", "json").json()["entries"]
        if entry["commit"] == hidden
    ]
    assert (entry["action"], entry["counted"], entry["detail"]) == ("ignored", False, NUL_MESSAGE)
    assert entry["plan"] == QA_PLAN  # what it hid, for the auditor

    repo.trigger(people.olga, QA_PLAN)  # the same trigger where git log shows it starts a run
    runs = repo.apply("--format", "json").json()["runs"]
    assert [run["run"] for run in runs] == ["2026-11-qa-release.1"]


# -- what a host's signature vouches for ----------------------------------------------------------


def test_a_rebase_merge_of_commits_authored_as_olga_does_not_act_as_olga(
    tmp_path: Path, people: People
) -> None:
    host = people.second_key(people.mallory, "github-host").key
    repo = proposed_qa_release(tmp_path, people, teams=teams_with_host(people, host))
    ref = f"{QA_PLAN}@{repo.blob(QA_PLAN)}"
    # bob, a developer, writes ravi's approval and olga's trigger under their names (no
    # signature: he has no key of theirs), then presses "Rebase and merge": the host
    # commits and signs them, keeping those authors.
    with repo.branch("release"):
        for who, key in ((people.ravi, "Approve-Plan"), (people.olga, "Deploy-Plan")):
            repo.commit(who, message=f"{key}\n\n{key}: {ref}", signed=False)
    repo.host_rebase_merge(host, "release")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"{HOST_EMAIL} {host.with_suffix('.pub').read_text()}")
    shown = repo.git(
        *("-c", f"gpg.ssh.allowedSignersFile={signers}", "log", "-2", "main"),
        "--format=%P|%an <%ae>|%cn <%ce>|%G?",
    )
    assert [line.split("|", 1)[1] for line in shown.splitlines()] == [
        f"{who.name} <{who.email}>|GitHub <{HOST_EMAIL}>|G" for who in (people.olga, people.ravi)
    ]
    assert all(" " not in line.split("|")[0] for line in shown.splitlines())  # one parent

    applied = repo.apply("--format", "json")
    assert applied.exit_code == 0, applied.stderr
    assert applied.json()["runs"] == []
    [state] = repo.reconciler("plan", "--format", "json").json()["plans"]
    assert (state["approvers"], state["triggered_by"]) == ([], None)

    # The same host's true merge, made when olga presses the button, still triggers.
    with repo.branch("portal-0.7"):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="0.7 next")})
        repo.approve(people.ravi, QA_PLAN)
    repo.host_merge(host, people.olga, "portal-0.7")
    [state] = repo.reconciler("plan", "--format", "json").json()["plans"]
    assert (state["approvers"], state["triggered_by"]) == (["ravi"], "olga")
    runs = repo.apply("--format", "json").json()["runs"]
    assert [run["run"] for run in runs] == ["2026-11-qa-release.1"]


# -- 12. copies of old signed commits: the policy rolled back ----------------------------------
#
# git verify-commit checks the signed payload (the commit without its signature headers) and
# skips what it does not need: a second signature header, the armor's wrapping, the header's
# place, even a second valid ECDSA signature made from the first. Each is a new commit id
# over an old signature, which would count as a new landing of the signer's old change.

PRODUCTION_ONLY = """\
name: production
order: 1
permissions:
  plan.edit: [tech-lead, developer]
  plan.approve: [tech-lead]
  plan.deploy: [deployment]
gates: {signed_commits: true}
driver: {type: local}
"""
HOTFIX = "plans/2026-12-prod-hotfix.yaml"
# The order of the NIST P-256 group: (r, n - s) is a second valid signature for (r, s).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def raw_commit(repo: ConfigRepo, commit: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "commit", commit], cwd=repo.path, capture_output=True, check=True
    ).stdout


def stored_copy(repo: ConfigRepo, raw: bytes) -> str:
    """The attacker's object, stored by git with git's own checks (no --literally)."""
    written = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
        cwd=repo.path,
        input=raw,
        capture_output=True,
        check=True,
    )
    return written.stdout.decode().strip()


def signature_block(raw: bytes) -> tuple[int, int]:
    """Where the `gpgsig` header and its continuation lines are in a raw commit."""
    start = raw.index(b"\ngpgsig ") + 1
    end = start
    while True:
        end = raw.index(b"\n", end) + 1
        if raw[end : end + 1] != b" ":
            return start, end


def armor_of(raw: bytes) -> bytes:
    start, end = signature_block(raw)
    lines = raw[start:end].split(b"\n")[:-1]
    return base64.b64decode(b"".join(line.strip() for line in lines[1:-1]))


def with_armor(raw: bytes, blob: bytes, width: int = 70) -> bytes:
    start, end = signature_block(raw)
    encoded = base64.b64encode(blob)
    lines = [encoded[i : i + width] for i in range(0, len(encoded), width)]
    block = b"\n ".join(
        [b"gpgsig -----BEGIN SSH SIGNATURE-----", *lines, b"-----END SSH SIGNATURE-----"]
    )
    return raw[:start] + block + b"\n" + raw[end:]


def with_an_extra_signature_header(raw: bytes) -> bytes:
    end = raw.index(b"\n\n") + 1
    return raw[:end] + b"gpgsig-sha256 x\n" + raw[end:]


def with_the_armor_rewrapped(raw: bytes) -> bytes:
    return with_armor(raw, armor_of(raw), width=64)


def with_the_signature_header_moved(raw: bytes) -> bytes:
    start, end = signature_block(raw)
    committer = raw.index(b"\ncommitter ") + 1
    return raw[:committer] + raw[start:end] + raw[committer:start] + raw[end:]


def ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def read_ssh_strings(data: bytes, offset: int = 0) -> list[bytes]:
    strings = []
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        strings.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return strings


def with_the_ecdsa_signature_negated(raw: bytes) -> bytes:
    """A second valid signature over the same payload, made without the key: ECDSA's s
    replaced by n - s, armored exactly as ssh-keygen armors it."""
    blob = armor_of(raw)
    head, fields = blob[:10], read_ssh_strings(blob, 10)  # "SSHSIG", version; five strings
    kind, inner = read_ssh_strings(fields[-1])
    r, s = read_ssh_strings(inner)
    negated = (P256_ORDER - int.from_bytes(s, "big")).to_bytes(33, "big").lstrip(b"\0")
    negated = b"\0" + negated if negated[0] & 0x80 else negated
    fields[-1] = ssh_string(kind) + ssh_string(ssh_string(r) + ssh_string(negated))
    return with_armor(raw, head + b"".join(map(ssh_string, fields)))


def assert_git_calls_it_good(repo: ConfigRepo, commit: str, signer: Person) -> None:
    signers = repo.path.parent / "allowed_signers"
    signers.write_text(f"{signer.email} {signer.public_key}\n")
    repo.git("-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", commit)


def a_stolen_key_removed(tmp_path: Path, people: People) -> tuple[ConfigRepo, Person, str]:
    """Production alone; bob deploys there but has no key. root gives him one, then removes
    it: stolen. The repository, the thief as bob, and root's commit that added the key."""
    repo = ConfigRepo.init(tmp_path, people)
    teams = seed_teams(people)
    grant_bob_deployment(teams)
    files = {"teams.yaml": dump(teams), "environments/production.yaml": PRODUCTION_ONLY}
    repo.commit(people.root, files, "Seed configuration")
    stolen = people.second_key(people.bob, "stolen")
    teams["users"]["bob"]["keys"] = [stolen.public_key]
    added = repo.commit(people.root, {"teams.yaml": dump(teams)}, "bob's key")
    del teams["users"]["bob"]["keys"]
    repo.commit(people.root, {"teams.yaml": dump(teams)}, "bob's key was stolen")
    return repo, stolen, added


@pytest.mark.parametrize(
    "copy",
    [with_an_extra_signature_header, with_the_armor_rewrapped, with_the_signature_header_moved],
)
def test_a_copy_of_an_old_signed_commit_does_not_bring_back_a_stolen_key(
    tmp_path: Path, people: People, copy: Callable[[bytes], bytes]
) -> None:
    repo, stolen, added = a_stolen_key_removed(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    forged = stored_copy(repo, copy(raw_commit(repo, added)))
    assert forged != added
    assert_git_calls_it_good(repo, forged, people.root)
    config, env = repo.identity(people.mallory, signed=False)
    repo.git(*config, "merge", "-q", "--no-ff", "-m", "Merge", forged, env=env)
    assert stolen.public_key in repo.git("show", "main:teams.yaml")  # git merged it back
    repo.commit(stolen, {HOTFIX: plan("2026-12-prod-hotfix", "production", [ECOMMERCE])})

    assert repo.reconciler("access", "bob", "--format", "json").json()["has_key"] is False
    verified = repo.reconciler("verify", "--format", "json")
    assert verified.exit_code == 1
    merge, hotfix = verified.json()["landings"][-2:]
    assert [item["commit"] for item in merge["unattributed"]] == [forged]
    assert [refusal["commit"] for refusal in merge["refusals"]] == [forged]
    assert not hotfix["authorised"]
    assert f"{forged[:12]} holds no identity: " in repo.reconciler("verify").stdout
    github = repo.reconciler("verify", "--format", "github").stdout
    assert f"::error title=commit {forged[:12]} holds no identity::" in github
    applied = repo.apply("--format", "json")
    assert applied.json()["runs"] == []
    assert not (repo.driver_root / "production").exists()


def test_a_second_ecdsa_signature_made_from_the_first_counts_once_in_every_walk(
    tmp_path: Path, people: People
) -> None:
    """The copy's one signature header is valid and armored as ssh-keygen armors it (and the
    object passes git fsck): only its signed payload, carried before, tells it apart."""
    repo, stolen, _ = a_stolen_key_removed(tmp_path, people)
    ecdsa = tmp_path / "root-ecdsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", ecdsa], check=True)
    root = Person("root", people.root.name, people.root.email, ecdsa)
    teams = seed_teams(people)
    grant_bob_deployment(teams)
    teams["users"]["root"]["keys"] = [root.public_key]
    repo.commit(people.root, {"teams.yaml": dump(teams)}, "root's new key")
    teams["users"]["bob"]["keys"] = [stolen.public_key]
    added = repo.commit(root, {"teams.yaml": dump(teams)}, "bob's key, again")
    del teams["users"]["bob"]["keys"]
    repo.commit(root, {"teams.yaml": dump(teams)}, "stolen again")
    assert repo.verify().authorised  # the service has walked the original
    forged = stored_copy(repo, with_the_ecdsa_signature_negated(raw_commit(repo, added)))
    assert forged != added
    assert_git_calls_it_good(repo, forged, root)
    repo.git("fsck", "--strict")
    repo.land_commit_tree(
        people.mallory,
        repo.git("rev-parse", f"{forged}^{{tree}}"),
        repo.head(),
        forged,
        message="Merge",
    )
    incremental = repo.verify().judged[-1]
    assert "bob" not in set(repo.effective_policy().key_owner.values())
    fresh = repo.verify(state_dir=tmp_path / "fresh-state").judged[-1]
    for verdict in (incremental, fresh):
        assert verdict.unattributed == (
            (forged, f"a copy of {added[:12]}'s signed payload (a signed payload counts once)"),
        )
        refusal = only_refusal(verdict)
        assert (refusal.commit, refusal.field) == (forged, "users/bob")


def test_a_long_lived_branch_cannot_re_apply_a_removed_key(tmp_path: Path, people: People) -> None:
    """No copy: root's own commit on a branch made while the key was still listed, merged
    after root removed it. Root's signature vouches for a change from a value that is no
    longer the effective one; the change is the merger's, and olga may not make it."""
    repo, stolen, _ = a_stolen_key_removed(tmp_path, people)
    repo.git("checkout", "-q", "-b", "rotation", "main~1")  # bob's key still listed
    teams = seed_teams(people)
    grant_bob_deployment(teams)
    teams["users"]["bob"]["keys"] = [stolen.public_key, people.bob.public_key]
    rotation = repo.commit(people.root, {"teams.yaml": dump(teams)}, "bob's second key")
    repo.git("checkout", "-q", "main")
    assert repo.verify().authorised
    repo.merge(people.olga, "rotation", resolve={"teams.yaml": dump(teams)})
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.field, refusal.actor) == (rotation, "users/bob", "olga")
    assert refusal.reasons[0] == (
        f"{rotation[:12]} changed a value that is no longer the effective one, so the change "
        f"counts as an edit by whoever landed it ({repo.head()[:12]})"
    )
    assert "bob" not in set(repo.effective_policy().key_owner.values())


def test_a_replayed_approval_does_not_count_a_second_time(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    approval = repo.approve(people.ravi, QA_PLAN)
    repo.commit(people.alice, {"README.md": "notes\n"}, "notes")
    forged = stored_copy(repo, with_the_signature_header_moved(raw_commit(repo, approval)))
    tree = repo.git("rev-parse", "main^{tree}")
    repo.land_commit_tree(people.mallory, tree, repo.head(), forged, message="Merge")
    repo.trigger(people.olga, QA_PLAN)
    decision = repo.decide()[QA_PLAN]
    assert decision.approvers == ("ravi",)
    approvals = {
        event.commit: event for event in repo.store().events(Signoff) if event.kind == "approve"
    }
    assert (approvals[approval].actor, approvals[approval].held) == ("ravi", True)
    assert (approvals[forged].actor, approvals[forged].held) == (None, False)
    refused = [verdict for verdict in repo.verify().judged if not verdict.authorised]
    assert refused == []  # already judged: the verdict is kept
    store = repo.store()
    try:
        landings = {row.verdict.commit: row.verdict for row in store.landings()}
    finally:
        store.close()
    merge = landings[repo.head("main~1")]
    assert [commit for commit, _ in merge.unattributed] == [forged]
    assert not merge.authorised


def test_a_state_kept_before_payloads_were_counted_counts_them_before_its_next_walk(
    tmp_path: Path, people: People
) -> None:
    repo, _, added = a_stolen_key_removed(tmp_path, people)
    assert repo.verify().authorised
    with sqlite3.connect(repo.state_dir / "main.sqlite3") as older:  # as a service had it
        older.execute("DELETE FROM payloads")
        older.execute("DELETE FROM meta WHERE key = 'payloads'")
    forged = stored_copy(repo, with_the_signature_header_moved(raw_commit(repo, added)))
    tree = repo.git("rev-parse", f"{forged}^{{tree}}")
    repo.land_commit_tree(people.mallory, tree, repo.head(), forged, message="Merge")
    verdict = repo.verify().judged[-1]
    assert "bob" not in set(repo.effective_policy().key_owner.values())
    assert [commit for commit, _ in verdict.unattributed] == [forged]


# -- 13. adversarial review of the payload rule: where the first carrier is not the signer's ---


def a_copy_of_an_old_grant_merged(repo: ConfigRepo, people: People, added: str) -> str:
    """Mallory merges a copy of root's old commit `added` (its signature header moved)."""
    forged = stored_copy(repo, with_the_signature_header_moved(raw_commit(repo, added)))
    assert forged != added
    tree = repo.git("rev-parse", f"{forged}^{{tree}}")
    repo.land_commit_tree(people.mallory, tree, repo.head(), forged, message="Merge")
    return forged


def test_a_copy_of_a_commit_signed_before_a_re_anchor_does_not_bring_back_a_stolen_key(
    tmp_path: Path, people: People
) -> None:
    repo, stolen, added = a_stolen_key_removed(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    # A legitimate re-anchor, on main's tip, signed by root (a settings user).
    assert repo.reconciler("verify", "--re-anchor", repo.head()).exit_code == 0
    forged = a_copy_of_an_old_grant_merged(repo, people, added)
    assert stolen.public_key in repo.git("show", "main:teams.yaml")  # git merged it back
    verified = repo.reconciler("verify", "--format", "json")
    assert "bob" not in set(repo.effective_policy().key_owner.values())
    assert verified.exit_code == 1
    assert [item["commit"] for item in verified.json()["landings"][-1]["unattributed"]] == [forged]


def test_a_copy_of_a_commit_signed_before_the_trust_anchor_does_not_count_in_a_fresh_state(
    tmp_path: Path, people: People
) -> None:
    repo, _, added = a_stolen_key_removed(tmp_path, people)
    anchor = repo.head()  # root's commit that removed the stolen key
    forged = a_copy_of_an_old_grant_merged(repo, people, added)
    verdict = repo.verify(state_dir=tmp_path / "ci-state", trust_anchor=anchor).judged[-1]
    assert [commit for commit, _ in verdict.unattributed] == [forged]
    assert not verdict.authorised


def without_the_signature(raw: bytes, people: People) -> bytes:
    """The commit as it was before it was signed: exactly its signed payload."""
    start, end = signature_block(raw)
    return raw[:start] + raw[end:]


def signed_again_by_mallory(raw: bytes, people: People) -> bytes:
    """The same payload under Mallory's own valid signature, armored as git writes it."""
    payload = without_the_signature(raw, people)
    signed = subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", people.mallory.key],
        input=payload,
        capture_output=True,
        check=True,
    ).stdout
    header = b"gpgsig " + signed.rstrip(b"\n").replace(b"\n", b"\n ") + b"\n"
    end = payload.index(b"\n\n") + 1
    return payload[:end] + header + payload[end:]


@pytest.mark.parametrize("copy", [without_the_signature, signed_again_by_mallory])
def test_a_copy_landed_first_does_not_void_the_signed_commit_it_was_made_from(
    tmp_path: Path, people: People, copy: Callable[[bytes, People], bytes]
) -> None:
    repo = ConfigRepo.init(tmp_path, people)
    files = {
        "teams.yaml": dump(seed_teams(people)),
        "environments/production.yaml": PRODUCTION_ONLY,
    }
    repo.commit(people.root, files, "Seed configuration")
    with repo.branch("bob-deploys"):  # root's pull request, open for review
        grant = repo.commit(
            people.root, {"teams.yaml": teams_with(people, grant_bob_deployment)}, "bob deploys"
        )
    assert repo.verify().authorised
    # Mallory strips root's signature (or signs the payload herself): fsck-clean.
    copied = stored_copy(repo, copy(raw_commit(repo, grant), people))
    repo.git("fsck", "--strict")
    if copy is signed_again_by_mallory:
        assert_git_calls_it_good(repo, copied, people.mallory)
    tree = repo.git("rev-parse", f"{copied}^{{tree}}")
    repo.land_commit_tree(people.mallory, tree, repo.head(), copied, message="Merge")
    assert not repo.verify().judged[-1].authorised  # her unsigned change is refused
    repo.merge(people.root, "bob-deploys")  # root merges his own pull request, signed
    verdict = repo.verify().judged[-1]
    assert verdict.unattributed == ()
    assert verdict.authorised
    assert repo.effective_policy().teams["operations"].members.get("bob") == "deployment"


def test_a_merge_whose_first_parent_is_an_orphan_root_is_not_a_fresh_states_trust_anchor(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    evil = seed_teams(people)
    evil["infrastructure"]["settings"].append("mallory")
    evil["users"]["mallory"] = {
        "name": people.mallory.name,
        "emails": [people.mallory.email],
        "keys": [people.mallory.public_key],
    }
    repo.git("checkout", "-q", "--orphan", "takeover")
    repo.commit(people.mallory, {"teams.yaml": dump(evil)}, "root", signed=False)
    orphan = repo.head()
    repo.git("checkout", "-q", "-f", "main")
    tree = repo.git("rev-parse", f"{orphan}^{{tree}}")
    old_main = repo.head()
    repo.land_commit_tree(people.mallory, tree, orphan, old_main, message="Merge main")
    assert repo.git("rev-list", "--first-parent", "--max-parents=0", "main") == orphan
    # The service, with its state, refuses the push.
    assert repo.reconciler("verify").exit_code == 1
    # A fresh state (CI on the push, a new machine) must not trust Mallory's root.
    fresh = run_cli("verify", "--repo", repo.path, "--state-dir", tmp_path / "ci", cwd=repo.path)
    assert fresh.exit_code != 0
    assert "2 root commits" in fresh.stderr
    assert "--trust-anchor" in fresh.stderr
    store = StateStore(tmp_path / "ci", "main")
    try:
        with GitRepo(repo.path) as git:
            trusted = policy_from(store.effective(), git) if store.position() else None
    finally:
        store.close()
    assert trusted is None or "mallory" not in trusted.settings
