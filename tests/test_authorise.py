"""Authorisation from Git history: every landed change judged by the policy before it.

Each test plays one attack (or one legitimate workflow) with real people,
real keys and real commits, and asserts the exact reason the reconciler gives.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters import process
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.statestore import StateStore
from reconciler.app.authorise import Authoriser
from reconciler.app.session import Session
from reconciler.core.errors import ConfigError, HistoryRewrittenError, ReconcilerError
from reconciler.core.sshkeys import parse_public_key
from tests.clock import SUITE_NOW
from tests.configrepo import example_file, reconciler
from tests.people import (
    People,
    Person,
    grant_bob_deployment,
    make_mallory_the_settings_user,
    seed_teams,
    teams_with,
    teams_with_host,
)
from tests.repositories import SeedRepo, only_refusal
from tests.scenarios import ECOMMERCE, PORTAL, PROD_PLAN, QA_PLAN, plan, prod_plan, qa_plan

# -- plans: per entry and per field ---------------------------------------------------


def test_two_team_leads_each_add_their_own_application_to_one_plan(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    result = repo.verify()
    assert [verdict.authorised for verdict in result.judged] == [True, True]
    assert result.differs == {}


def test_a_developer_editing_another_teams_entry_is_refused(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    changed = {**PORTAL, "version": "0.7", "from": "0.7-dev.1"}
    bad = repo.commit(people.bob, {QA_PLAN: qa_plan(changed)}, signed=False)
    result = repo.verify()
    refusal = only_refusal(result.judged[-1])
    assert (refusal.commit, refusal.path, refusal.field, refusal.actor) == (
        bad,
        QA_PLAN,
        "app:customer-portal",
        "bob",
    )
    assert refusal.needed == "plan.edit on quality-assurance for customer-portal"
    assert refusal.reasons == (
        "customer-portal belongs to team customer-portal, and bob is not a member of it",
        "bob holds developer in ecommerce",
    )
    assert result.differs == {QA_PLAN: ("the customer-portal entry",)}


def test_a_refused_entry_is_not_laundered_by_another_users_notes_edit(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    intruder = {"name": "customer-portal", "version": "9.9"}
    bobs = repo.commit(people.bob, {QA_PLAN: qa_plan(ECOMMERCE, intruder)}, signed=False)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE, intruder, notes="Looks good")})
    result = repo.verify()
    bob_landing, alice_landing = result.judged[-2:]
    assert only_refusal(bob_landing).commit == bobs
    refusal = only_refusal(alice_landing)
    assert (refusal.commit, refusal.actor, refusal.field) == (bobs, "bob", "app:customer-portal")
    assert result.differs == {QA_PLAN: ("the customer-portal entry",)}


def test_an_owner_clears_a_refused_value_they_want_by_committing_another_value_first(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    wanted = {**PORTAL, "version": "0.7", "from": "0.7-dev.1"}
    repo.commit(people.bob, {QA_PLAN: qa_plan(wanted)}, signed=False)
    assert repo.verify().differs == {QA_PLAN: ("the customer-portal entry",)}
    repo.commit(people.diana, {QA_PLAN: qa_plan({**wanted, "version": "0.7.0"})})
    repo.commit(people.diana, {QA_PLAN: qa_plan(wanted)})
    result = repo.verify()
    assert [verdict.authorised for verdict in result.judged] == [True, True]
    assert result.differs == {}


def test_retargeting_another_teams_plan_to_production_is_refused(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    retargeted = plan("2026-11-qa-release", "production", [PORTAL], source="quality-assurance")
    repo.commit(people.alice, {QA_PLAN: retargeted})
    verdict = repo.verify().judged[-1]
    assert not verdict.authorised
    fields = {refusal.field for refusal in verdict.refusals}
    assert fields == {"source", "target"}
    refusal = next(item for item in verdict.refusals if item.field == "target")
    assert refusal.needed == (
        "plan.edit on quality-assurance and production for every application in the plan"
    )
    assert refusal.reasons == (
        "customer-portal belongs to team customer-portal, and alice is not a member of it",
        "alice holds tech-lead in ecommerce",
    )


def merge_resolved_by_changing_portal(repo: SeedRepo, people: People) -> str:
    """Alice and Diana edit their entries on two branches; Olga's merge changes Diana's."""
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    with repo.branch("ecommerce-1.4.1"):
        repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, {**PORTAL, "version": "0.6.1"})})
    resolution = qa_plan({**ECOMMERCE, "version": "1.4.1"}, {**PORTAL, "version": "0.7"})
    return repo.merge(people.olga, "ecommerce-1.4.1", resolve={QA_PLAN: resolution})


def test_a_merge_whose_conflict_resolution_changes_another_teams_entry_is_blamed_on_the_merger(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    merge = merge_resolved_by_changing_portal(repo, people)
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.actor, refusal.field) == (merge, "olga", "app:customer-portal")
    assert refusal.reasons == (
        "customer-portal belongs to team customer-portal, and olga is not a member of it",
        "olga holds deployment in operations",
    )


def test_two_leads_pull_requests_appending_to_one_plan_merge_cleanly_when_both_are_kept(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(notes="November release")})
    with repo.branch("ecommerce"):
        repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE, notes="November release")})
    with repo.branch("portal"):
        repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL, notes="November release")})
    repo.merge(people.olga, "ecommerce")
    both = qa_plan(ECOMMERCE, PORTAL, notes="November release")
    repo.merge(people.olga, "portal", resolve={QA_PLAN: both})
    result = repo.verify()
    assert [verdict.authorised for verdict in result.judged] == [True, True, True]
    assert result.differs == {}


def test_a_branch_made_before_its_author_left_the_team_is_refused_when_merged_after(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    with repo.branch("bob-bump"):
        bobs = repo.commit(
            people.bob, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.2"})}, signed=False
        )
    without_bob = teams_with(people, lambda data: data["teams"]["ecommerce"]["members"].pop("bob"))
    repo.commit(people.root, {"teams.yaml": without_bob}, "Bob leaves eCommerce")
    repo.merge(people.olga, "bob-bump")
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.actor) == (bobs, "bob")
    assert refusal.reasons == (
        "ecommerce belongs to team ecommerce, and bob is not a member of it",
        "bob holds no role",
    )


def test_a_pull_request_on_an_older_main_keeps_its_authors_edits_where_main_changed_others(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    with repo.branch("bump"):
        bump = qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL)
        repo.commit(people.alice, {QA_PLAN: bump})
    newer_portal = {**PORTAL, "version": "0.7", "from": "0.7-dev.1"}
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, newer_portal)})
    repo.commit(people.root, {"teams.yaml": teams_with(people, grant_bob_deployment)})
    both = qa_plan({**ECOMMERCE, "version": "1.4.1"}, newer_portal)
    repo.merge(people.olga, "bump", resolve={QA_PLAN: both})
    result = repo.verify()
    assert all(verdict.authorised for verdict in result.judged)
    assert result.differs == {}
    assert repo.editors(QA_PLAN) == {"alice", "diana"}  # the merge changed nothing itself


@pytest.mark.parametrize(("merger", "authorised"), [("olga", False), ("alice", True)])
def test_an_edit_of_a_value_main_changed_since_is_the_edit_of_whoever_merges_it(
    tmp_path: Path, people: People, merger: str, authorised: bool
) -> None:
    """alice's branch bumps ecommerce from 1.4.0; main moved it to 1.4.2 meanwhile. Merged
    as it is, the branch would undo 1.4.2 with alice's signature on a change from 1.4.0."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    with repo.branch("old"):
        old = repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"})})
    repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.2"})})
    merge = repo.merge(
        people.by_id[merger],
        "old",
        resolve={QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"})},
    )
    verdict = repo.verify().judged[-1]
    assert verdict.authorised is authorised
    if authorised:
        assert repo.editors(QA_PLAN) == {"alice"}
    else:
        refusal = only_refusal(verdict)
        assert (refusal.commit, refusal.actor, refusal.field) == (old, "olga", "app:ecommerce")
        assert refusal.reasons[0] == (
            f"{old[:12]} changed a value that is no longer the effective one, so the change "
            f"counts as an edit by whoever landed it ({merge[:12]})"
        )


# -- teams.yaml and the policy -----------------------------------------------------------


def test_a_self_grant_and_a_trigger_in_one_commit_are_both_refused(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    grant = teams_with(people, grant_bob_deployment)
    commit = repo.commit(
        people.bob,
        {"teams.yaml": grant, QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"})},
        signed=False,
    )
    verdict = repo.verify().judged[-1]
    refusal = only_refusal(verdict)
    assert (refusal.path, refusal.field, refusal.commit) == (
        "teams.yaml",
        "teams/operations/members/bob",
        commit,
    )
    assert refusal.reasons == ("unsigned commit, and this change needs a verified signature",)
    [version] = [v for v in repo.plan_versions(QA_PLAN) if v.landing == commit]
    assert version.triggered is False
    assert version.reasons == (
        "bob holds developer in ecommerce",
        "quality-assurance grants plan.deploy to deployment (held by olga)",
    )
    assert "bob" not in repo.effective_policy().teams["operations"].members


def test_a_self_grant_and_a_trigger_in_one_pull_request_are_both_refused(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    bobs_key = people.second_key(people.bob, "pr")
    with repo.branch("bob-ops"):

        def grant(data: dict[str, Any]) -> None:
            grant_bob_deployment(data)
            data["users"]["bob"]["keys"] = [bobs_key.public_key]

        repo.commit(bobs_key, {"teams.yaml": teams_with(people, grant)})
        repo.commit(bobs_key, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"})})
    merge = repo.merge(bobs_key, "bob-ops")
    verdict = repo.verify().judged[-1]
    assert {(refusal.path, refusal.field) for refusal in verdict.refusals} == {
        ("teams.yaml", "teams/operations/members/bob"),
        ("teams.yaml", "users/bob"),
    }
    for refusal in verdict.refusals:
        assert refusal.reasons[0].startswith("signed with key SHA256:")
        assert refusal.reasons[0].endswith(
            "which teams.yaml does not list, and this change needs a verified signature"
        )
    [version] = [v for v in repo.plan_versions(QA_PLAN) if v.landing == merge]
    assert version.triggered is False
    assert version.actor == "bob"


def test_a_projects_user_may_add_a_member(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    add_bob = teams_with(
        people, lambda data: data["teams"]["customer-portal"]["members"].update(bob="developer")
    )
    repo.commit(people.pm, {"teams.yaml": add_bob}, "Bob helps the portal team")
    result = repo.verify()
    assert result.judged[-1].authorised
    assert repo.effective_policy().teams["customer-portal"].members["bob"] == "developer"


def test_a_projects_user_may_not_change_an_environment(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    looser = example_file("environments/production.yaml").replace(
        "signed_commits: true", "signed_commits: false"
    )
    repo.commit(people.pm, {"environments/production.yaml": looser})
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.path, refusal.actor, refusal.needed) == (
        "environments/production.yaml",
        "pm",
        "environments.edit",
    )
    assert refusal.reasons == (
        "pm holds infrastructure projects",
        "environments.edit is held by infrastructure settings (root)",
    )


def test_a_projects_user_may_not_grant_the_deployment_role(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.pm, {"teams.yaml": teams_with(people, grant_bob_deployment)})
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.field == "teams/operations/members/bob"
    assert refusal.reasons == (
        "pm holds infrastructure projects, which may grant only tech-lead, developer, tester, "
        "not deployment",
    )


def test_a_projects_user_may_not_grant_itself_a_role(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    self_grant = teams_with(
        people, lambda data: data["teams"]["ecommerce"]["members"].update(pm="tech-lead")
    )
    repo.commit(people.pm, {"teams.yaml": self_grant})
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.reasons == (
        "pm holds infrastructure projects, which never changes its own roles",
    )


def test_a_projects_user_may_not_give_its_own_team_another_teams_application(
    tmp_path: Path, people: People
) -> None:
    """pm, made a tech lead of architecture by root, moves ecommerce into architecture:
    that would grant pm plan.edit on ecommerce, a grant to itself."""
    teams = seed_teams(people)
    teams["teams"]["architecture"]["members"]["pm"] = "tech-lead"
    repo = SeedRepo.create(tmp_path, people, teams=teams)

    def move(data: dict[str, Any]) -> None:
        data["teams"]["architecture"]["members"]["pm"] = "tech-lead"
        data["teams"]["ecommerce"]["applications"] = []
        data["teams"]["architecture"]["applications"] = ["ecommerce"]

    taken = repo.commit(people.pm, {"teams.yaml": teams_with(people, move)})
    verdict = repo.verify().judged[-1]
    assert {(refusal.commit, refusal.field) for refusal in verdict.refusals} == {
        (taken, "teams/architecture/applications")
    }
    assert verdict.refusals[0].reasons == (
        "pm holds infrastructure projects, which never changes the applications of its own "
        "team architecture",
    )
    policy = repo.effective_policy()
    assert policy.application_owner.get("ecommerce") != "architecture"
    repo.commit(people.pm, {PROD_PLAN: prod_plan(ECOMMERCE)})
    assert not repo.verify().judged[-1].authorised


def test_an_unsigned_commit_under_the_admins_email_may_not_edit_teams_yaml(
    tmp_path: Path, people: People
) -> None:
    unsigned_everywhere = example_file("environments/production.yaml").replace(
        "signed_commits: true", "signed_commits: false"
    )
    repo = SeedRepo.create(
        tmp_path, people, extra={"environments/production.yaml": unsigned_everywhere}
    )
    repo.commit(
        people.mallory,
        {"teams.yaml": teams_with(people, grant_bob_deployment)},
        signed=False,
        email="root@example.com",
    )
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.actor == "an unknown actor"
    assert refusal.reasons == ("unsigned commit, and this change needs a verified signature",)


def test_a_grant_never_authorises_the_commit_that_makes_it(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    root_lead = teams_with(
        people, lambda data: data["teams"]["customer-portal"]["members"].update(root="tech-lead")
    )
    repo.commit(
        people.root,
        {"teams.yaml": root_lead, PROD_PLAN: prod_plan(PORTAL)},
        "Root makes itself a lead and proposes production in one go",
    )
    verdict = repo.verify().judged[-1]
    assert {refusal.path for refusal in verdict.refusals} == {PROD_PLAN}
    entry = next(refusal for refusal in verdict.refusals if refusal.field == "app:customer-portal")
    assert entry.reasons == (
        "customer-portal belongs to team customer-portal, and root is not a member of it",
        "root holds infrastructure settings",
    )
    assert repo.effective_policy().teams["customer-portal"].members["root"] == "tech-lead"


# -- identity -------------------------------------------------------------------------


def test_a_spoofed_committer_email_is_refused_where_signatures_are_required(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(
        people.mallory, {PROD_PLAN: prod_plan(ECOMMERCE)}, signed=False, email="alice@example.com"
    )
    verdict = repo.verify().judged[-1]
    assert not verdict.authorised
    assert {refusal.reasons for refusal in verdict.refusals} == {
        ("unsigned commit, and this change needs a verified signature",)
    }


def test_a_valid_signature_by_a_key_not_in_teams_yaml_is_refused(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(
        people.mallory,
        {"teams.yaml": teams_with(people, grant_bob_deployment)},
        email="root@example.com",
    )
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.reasons[0].startswith("signed with key SHA256:")
    assert "which teams.yaml does not list" in refusal.reasons[0]


def test_a_commit_signed_with_alices_key_but_bobs_email_counts_as_alices(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)}, email="bob@example.com")
    result = repo.verify()
    assert result.judged[-1].authorised
    assert result.judged[-1].actor == "alice"
    assert repo.editors(PROD_PLAN) == {"alice"}


def test_a_key_removed_from_teams_yaml_no_longer_verifies_even_backdated_commits(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    revoked = teams_with(people, lambda data: data["users"]["alice"].pop("keys"))
    repo.commit(people.root, {"teams.yaml": revoked}, "Alice's laptop was stolen")
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)}, date="1700000000 +0000")
    verdict = repo.verify().judged[-1]
    assert not verdict.authorised
    assert all("which teams.yaml does not list" in r.reasons[0] for r in verdict.refusals)


def git_succeeds(path: Path, *args: str) -> bool:
    return (
        subprocess.run(["git", *args], cwd=path, capture_output=True, check=False).returncode == 0
    )


def test_a_key_in_gits_revocation_file_proves_nothing_even_on_a_backdated_commit(
    tmp_path: Path, people: People
) -> None:
    # root's key was stolen: ops revoke it on the reconciler's machine at once, before a
    # commit retiring it from teams.yaml can land. The thief's backdated grant proves
    # nothing, as `git verify-commit` with the same file says.
    repo = SeedRepo.create(tmp_path, people)
    repo.revoke(f"# stolen on 22 November\n{people.root.public_key}\n")

    grant = teams_with(people, grant_bob_deployment)
    theft = repo.commit(
        people.root, {"teams.yaml": grant}, "Bob joins ops", date="1700000000 +0000"
    )

    result = repo.reconciler("verify", "--format", "json")
    assert result.exit_code == 1
    [landing] = [item for item in result.json()["landings"] if item["commit"] == theft]
    fingerprint = parse_public_key(people.root.public_key).fingerprint
    assert landing["refusals"][0]["reasons"][0] == (
        f"signature not accepted (key {fingerprint} is revoked "
        f"(gpg.ssh.revocationFile)), and this change needs a verified signature"
    )
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'root@example.com namespaces="git" {people.root.public_key}\n')
    signers = f"gpg.ssh.allowedSignersFile={allowed}"
    assert not git_succeeds(repo.path, "-c", signers, "verify-commit", theft)
    unrevoked = ["-c", signers, "-c", "gpg.ssh.revocationFile=/dev/null"]
    assert git_succeeds(repo.path, *unrevoked, "verify-commit", theft)


def test_access_says_a_user_whose_keys_are_revoked_can_sign_nothing(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.revoke(people.root.public_key + "\n")
    answer = repo.reconciler("access", "root", "--format", "json").json()
    assert (answer["has_key"], answer["keys_revoked"]) == (True, True)
    [teams_edit] = [item for item in answer["entitlements"] if item["permission"] == "teams.edit"]
    assert not teams_edit["allowed"]
    assert teams_edit["reasons"][0] == (
        "root's SSH keys are revoked (gpg.ssh.revocationFile), "
        "and a change to teams.yaml needs a verified signature"
    )
    text = repo.reconciler("access", "root").stdout.splitlines()[0]
    assert text.endswith("; has an SSH key, revoked on this machine")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"SSHKRL\n\x00\x00", "{file}: error: an OpenSSH KRL, which the reconciler does not read"),
        (b"# ok\nssh-ed25519 not-base64!\n", "{file}:2: error: not a public key: "),
        (None, "{file}: error: cannot read the revocation file: No such file or directory"),
    ],
    ids=["krl", "not-a-key", "missing"],
)
def test_a_revocation_file_the_reconciler_cannot_read_stops_it_naming_the_file(
    tmp_path: Path, people: People, content: bytes | None, expected: str
) -> None:
    # Failing open (trusting every key) is what a stolen key's thief would want.
    repo = SeedRepo.create(tmp_path, people)
    revoked = repo.revoke(content or b"")
    if content is None:
        revoked.unlink()
    result = repo.reconciler("verify")
    assert result.exit_code == 1
    assert result.stderr.startswith(expected.format(file=revoked)), result.stderr
    assert "hint: " in result.stderr
    assert "Traceback" not in result.stderr


def test_a_verify_with_nothing_new_stops_on_a_revocation_file_it_cannot_read(
    tmp_path: Path, people: People
) -> None:
    """It answers from the state without walking (`Session.verify`): not without the file."""
    repo = SeedRepo.create(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0  # the state holds the tip now
    revoked = repo.revoke(b"")
    revoked.unlink()
    result = repo.reconciler("verify")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{revoked}: error: cannot read the revocation file")
    assert "0 landing(s)" not in result.stdout


def test_a_verify_with_nothing_new_reports_what_the_walk_before_it_reported(
    tmp_path: Path, people: People
) -> None:
    """Read from the state, not walked: the refusals and where main differs, all the same."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(
        people.alice, {"deployments/production.yaml": "environment: production\napplications: {}\n"}
    )
    walked = repo.reconciler("verify", "--format", "json")
    again = repo.reconciler("verify", "--format", "json")
    assert (walked.exit_code, again.exit_code) == (1, 1)
    first, second = walked.json(), again.json()
    assert (first.pop("judged"), second.pop("judged")) == (1, 0)  # landings this run judged
    assert second == first
    assert "deployments/production.yaml" in again.stdout
    assert repo.reconciler("verify", "--all").stdout == repo.reconciler("verify", "--all").stdout


def test_a_human_commit_writing_deployments_is_refused(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(
        people.alice, {"deployments/production.yaml": "environment: production\napplications: {}\n"}
    )
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.needed == "the reconciler service account's signature"
    assert refusal.reasons[1] == "deployments/ and logs/ are written only by the reconciler"


def test_a_human_commit_writing_logs_is_refused(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.root, {"logs/production/x/x.1.log": "all good\n"})
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.reasons[0].startswith("root is not the reconciler service account")


def test_the_service_account_may_write_deployments(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.reconciler, {"logs/development/p/p.1.log": "ok\n"})
    assert repo.verify().judged[-1].authorised


def test_the_service_account_editing_a_plan_is_refused(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.reconciler, {QA_PLAN: qa_plan(ECOMMERCE)})
    verdict = repo.verify().judged[-1]
    assert not verdict.authorised
    assert {refusal.reasons for refusal in verdict.refusals} == {
        (
            "reconciler is the reconciler service account, "
            "which may only write deployments/ and logs/",
        )
    }


# -- layout ------------------------------------------------------------------------


def test_unknown_paths_are_refused_by_default(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.root, {"README.md": "hello\n"})
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.reasons == (
        "README.md is not part of the configuration layout and teams.yaml other_paths does not "
        "list it",
    )


def test_paths_listed_in_other_paths_may_be_changed_by_a_signed_user(
    tmp_path: Path, people: People
) -> None:
    teams = seed_teams(people)
    teams["other_paths"] = ["README.md", "docs/*"]
    repo = SeedRepo.create(tmp_path, people, teams=teams)
    repo.commit(people.bob, {"README.md": "hello\n"}, signed=False)
    repo.commit(people.alice, {"docs/howto.md": "steps\n"})
    verdicts = repo.verify().judged
    assert not verdicts[0].authorised
    assert verdicts[1].authorised


def test_a_symlink_in_the_configuration_is_refused(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    (repo.path / "plans").mkdir()
    (repo.path / "plans" / "evil.yaml").symlink_to("/etc/passwd")
    repo.git("add", "plans/evil.yaml")
    repo.commit(people.alice)
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.reasons == ("symlinks and submodules are refused in the configuration",)


def test_a_submodule_in_the_configuration_is_refused(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    elsewhere = repo.head()  # any commit will do: a gitlink names a commit of another repository
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{elsewhere},plans/vendor.yaml")
    repo.commit(people.alice)
    assert repo.git("ls-tree", "HEAD", "plans/vendor.yaml").startswith("160000 commit ")
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.reasons == ("symlinks and submodules are refused in the configuration",)
    shown = repo.reconciler("plan", "--format", "json")
    assert (shown.exit_code, shown.stderr) == (0, "")
    [decision] = shown.json()["plans"]
    assert (decision["plan"], decision["status"]) == ("plans/vendor.yaml", "refused")


# -- history ----------------------------------------------------------------------


def test_verification_is_incremental_and_judges_each_landing_once(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    first = repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    assert [verdict.commit for verdict in repo.verify().judged] == [first]
    second = repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    assert [verdict.commit for verdict in repo.verify().judged] == [second]
    assert repo.verify().judged == ()


def six_landings_three_refused(tmp_path: Path, people: People) -> SeedRepo:
    """A history with a merge, unsigned and refused commits: walks of it in batches."""
    repo = SeedRepo.create(tmp_path, people)
    merge_resolved_by_changing_portal(repo, people)
    repo.commit(people.bob, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "9"})}, signed=False)
    repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.5.0"}, PORTAL)})
    return repo


def test_a_walk_in_many_batches_judges_exactly_as_a_walk_in_one(
    tmp_path: Path, people: People
) -> None:
    # Batches of two commits: signatures are checked and plans parsed by no
    # worker (one core), one or two worker processes, batches read ahead.
    repo = six_landings_three_refused(tmp_path, people)

    in_one = repo.verify(state_dir=tmp_path / "one")
    assert len(in_one.judged) == 6
    assert sum(not verdict.authorised for verdict in in_one.judged) == 3
    for workers in (0, 1, 2):
        in_batches = repo.verify(batch=2, workers=workers, state_dir=tmp_path / f"w{workers}")
        assert [verdict.as_json() for verdict in in_batches.judged] == [
            verdict.as_json() for verdict in in_one.judged
        ]
        assert in_batches.differs == in_one.differs


def test_a_walk_whose_worker_dies_judges_its_batches_itself(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    merge_resolved_by_changing_portal(repo, people)
    repo.commit(people.bob, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "9"})}, signed=False)

    def dying_pool(workers: int) -> ProcessPoolExecutor:
        # Real worker processes that exit as they start: every batch sent to them fails.
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(workers, mp_context=context, initializer=os._exit, initargs=(3,))

    in_one = repo.verify(state_dir=tmp_path / "one")
    monkeypatch.setattr(process, "worker_pool", dying_pool)
    in_batches = repo.verify(batch=2, workers=1, state_dir=tmp_path / "batches")

    assert sum(not verdict.authorised for verdict in in_one.judged) == 2
    assert [verdict.as_json() for verdict in in_batches.judged] == [
        verdict.as_json() for verdict in in_one.judged
    ]


def test_a_walk_reads_a_batch_itself_rather_than_wait_for_a_busy_worker(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = six_landings_three_refused(tmp_path, people)
    sent: list[Future[object]] = []

    class SlowPool(ProcessPoolExecutor):
        """A real worker that takes a second to start: batches queue up behind it."""

        def submit(self, *args: Any, **kwargs: Any) -> Future[Any]:
            future = super().submit(*args, **kwargs)
            sent.append(future)
            return future

    def slow_pool(workers: int) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return SlowPool(workers, mp_context=context, initializer=time.sleep, initargs=(1.0,))

    in_one = repo.verify(state_dir=tmp_path / "one")
    monkeypatch.setattr(process, "worker_pool", slow_pool)
    in_batches = repo.verify(batch=1, workers=1, state_dir=tmp_path / "batches")

    assert any(future.cancelled() for future in sent)  # taken back from the worker
    assert [verdict.as_json() for verdict in in_batches.judged] == [
        verdict.as_json() for verdict in in_one.judged
    ]


def test_a_walk_whose_state_cannot_be_written_keeps_none_of_it_and_walks_again(
    tmp_path: Path, people: People
) -> None:
    repo = six_landings_three_refused(tmp_path, people)
    expected = repo.verify(state_dir=tmp_path / "expected")
    first = repo.git("rev-list", "--reverse", "main").split()[1]
    store = StateStore(tmp_path / "state", "main")
    with GitRepo(repo.path) as git:
        authoriser = Authoriser(git, store, now=SUITE_NOW)
        before = authoriser.run(first).judged
        # SQLite's own "database or disk is full", for real: no page may be added.
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(ReconcilerError, match="full"):
            authoriser.run(git.resolve("main"))
        assert not store._db.in_transaction
        store._db.execute("PRAGMA max_page_count = 1073741823")
        after = authoriser.run(git.resolve("main")).judged
    store.close()
    assert [verdict.as_json() for verdict in (*before, *after)] == [
        verdict.as_json() for verdict in expected.judged
    ]


def test_a_rewritten_history_stops_verification_naming_both_commits(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    verified = repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.verify()
    repo.git("reset", "-q", "--hard", "HEAD~1")
    rewritten = repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "2.0"})})
    with pytest.raises(HistoryRewrittenError) as caught:
        repo.verify()
    assert verified[:12] in caught.value.message
    assert rewritten[:12] in caught.value.message


def test_re_anchoring_after_a_rewrite_needs_a_commit_signed_by_a_settings_user(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.verify()
    repo.git("reset", "-q", "--hard", "HEAD~1")
    by_alice = repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "2.0"})})
    with GitRepo(repo.path) as git_repo:
        store = StateStore(repo.state_dir, "main")
        session = Session(git_repo, store, "main", SUITE_NOW)
        with pytest.raises(ReconcilerError) as caught:
            session.re_anchor(by_alice)
        assert "alice holds tech-lead in ecommerce" in caught.value.message
        by_root = repo.commit(people.root, message="Re-anchor after the rewrite")
        result, _ = session.re_anchor(by_root)
        store.close()
    assert result.anchor == by_root


def test_a_pull_merge_that_moves_the_last_verified_commit_off_the_chain_is_one_landing(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    base = repo.head()
    verified = repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.verify()
    with repo.branch("local", start=base):
        repo.commit(people.diana, {PROD_PLAN: prod_plan(PORTAL)})
        merge = repo.merge(people.diana, "main")
    repo.git("checkout", "-q", "main")
    repo.git("reset", "-q", "--hard", merge)
    verdict = repo.verify().judged[-1]
    assert verdict.commit == merge
    assert verdict.first_parent == verified
    assert len(verdict.landed) == 2


def test_a_landing_over_the_cap_is_refused(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    with repo.branch("big"):
        for index in range(3):
            repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": f"1.4.{index}"})})
    merge = repo.merge(people.olga, "big")
    with GitRepo(repo.path) as git_repo:
        store = StateStore(repo.state_dir, "main")
        result = Authoriser(git_repo, store, now=SUITE_NOW, cap=2).run(merge)
        store.close()
    refusal = only_refusal(result.judged[-1])
    assert refusal.needed == "a landing of at most 2 commits"
    assert refusal.reasons == ("this landing holds 4 commits",)


def test_the_trust_anchor_must_hold_a_valid_configuration(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people, teams={"users": {}})
    with pytest.raises(ConfigError) as caught:
        repo.verify()
    assert "configuration is invalid" in caught.value.message


# -- hosts that commit merges themselves -----------------------------------------

ALICE = "alice@example.com"
MALLORY = "mallory@example.com"


def host_branch(repo: SeedRepo, by: Person, files: dict[str, str], **commit: Any) -> str:
    """A pull-request branch on main's tip: one commit of `files` by `by`."""
    with repo.branch("pr"):
        repo.commit(by, files, "pull request", **commit)
    return "pr"


def test_a_hosts_single_parent_commit_counts_as_nobodys_whatever_author_it_keeps(
    tmp_path: Path, people: People
) -> None:
    host = people.second_key(people.mallory, "github-host").key
    repo = SeedRepo.create(tmp_path, people, teams=teams_with_host(people, host))
    # A rebase merge keeps the author the pusher wrote: here mallory's commit says alice.
    branch = host_branch(
        repo, people.mallory, {PROD_PLAN: prod_plan(ECOMMERCE)}, signed=False, email=ALICE
    )
    repo.host_rebase_merge(host, branch)
    refusals = repo.verify().judged[-1].refusals
    why = (
        "committed and signed by host github as a single-parent commit (a squash or rebase "
        f"merge, a web or API edit) whose author {ALICE} it vouches for only with "
        "vouches_for_squash_author"
    )
    assert {(refusal.actor, refusal.reasons) for refusal in refusals} == {
        ("an unknown actor", (why,))
    }


def test_a_squash_counts_as_its_author_only_where_teams_yaml_says_the_host_vouches_for_it(
    tmp_path: Path, people: People
) -> None:
    host = people.second_key(people.mallory, "github-host").key
    for vouched in (False, True):
        teams = teams_with_host(people, host, vouches_for_squash_author=vouched)
        repo = SeedRepo.create(tmp_path / str(vouched), people, teams=teams)
        branch = host_branch(repo, people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
        repo.host_squash(host, people.alice, branch)
        verdict = repo.verify().judged[-1]
        assert verdict.authorised is vouched
        assert repo.editors(PROD_PLAN) == ({"alice"} if vouched else set())


def test_the_hosts_key_does_not_vouch_for_a_commit_it_did_not_commit(
    tmp_path: Path, people: People
) -> None:
    host = people.second_key(people.mallory, "github-host").key
    repo = SeedRepo.create(tmp_path, people, teams=teams_with_host(people, host))
    branch = host_branch(repo, people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    # Signed with the host's key (mallory has it), but not committed as the host.
    commit = repo.git(
        *("-c", "gpg.format=ssh", "-c", f"user.signingkey={host}"),
        *("commit-tree", "-S", f"{branch}^{{tree}}", "-p", repo.head("main")),
        *("-m", "Squashed pr (#7)"),
        env={"GIT_AUTHOR_EMAIL": ALICE, "GIT_COMMITTER_EMAIL": MALLORY},
    )
    repo.git("update-ref", "refs/heads/main", commit)
    verdict = repo.verify().judged[-1]
    assert not verdict.authorised
    assert verdict.refusals[0].reasons == (
        f"signed with host github's key but committed as {MALLORY}",
    )


# -- verify and access speak with one voice ----------------------------------------


def test_access_gives_the_same_reasons_verify_gives(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    repo.commit(
        people.bob, {QA_PLAN: qa_plan({**PORTAL, "version": "0.7", "from": "x"})}, signed=False
    )
    refusal = only_refusal(repo.verify().judged[-1])
    access = repo.reconciler(
        "access", "bob", "--env", "quality-assurance", "--format", "json"
    ).json()
    [entry] = [
        item
        for item in access["entitlements"]
        if item["permission"] == "plan.edit" and item["application"] == "customer-portal"
    ]
    assert entry["allowed"] is False
    assert tuple(entry["reasons"]) == refusal.reasons


def test_verify_exits_1_and_prints_the_refusal_in_every_format(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    assert repo.reconciler("verify").exit_code == 0
    bad = repo.commit(
        people.bob, {QA_PLAN: qa_plan({**PORTAL, "version": "0.7", "from": "x"})}, signed=False
    )
    text = repo.reconciler("verify")
    assert text.exit_code == 1
    assert f"REFUSED {bad[:12]} by bob (1 commit landed)" in text.stdout
    assert "main differs from the effective state" in text.stdout
    github = repo.reconciler("verify", "--format", "github")
    assert github.exit_code == 1
    assert github.stdout.splitlines()[0].startswith(
        f"::error file={QA_PLAN},title=unauthorised change in {bad[:12]}::"
    )
    data = repo.reconciler("verify", "--format", "json").json()
    assert data["authorised"] is False
    assert data["differs"] == {QA_PLAN: ["the customer-portal entry"]}
    after_first = repo.reconciler("verify", "--from", bad, "--format", "json").json()
    assert after_first["landings"] == []


def test_verifying_up_to_an_older_commit_reports_the_landings_until_then(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    first = repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    assert repo.reconciler("verify").exit_code == 0
    older = repo.reconciler("verify", "--to", first, "--format", "json")
    assert older.exit_code == 0, older.stderr
    assert [landing["commit"] for landing in older.json()["landings"]] == [first]


def test_verify_refuses_a_branch_that_does_not_exist(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.git("branch", "release")
    result = repo.reconciler("verify", "--branch", "releases")
    assert result.exit_code == 2
    assert "branch 'releases' does not exist" in result.stderr
    assert "hint: pass --branch with one of its branches: " in result.stderr
    assert set(result.stderr.split("branches: ")[1].strip().split(", ")) == {"main", "release"}
    assert "Traceback" not in result.stderr


def test_without_main_verify_follows_the_branch_head_points_at(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.git("branch", "-m", "main", "trunk")
    bad = repo.commit(people.bob, {QA_PLAN: qa_plan(PORTAL)}, signed=False)
    data = repo.reconciler("verify", "--format", "json").json()
    assert data["tip"] == bad
    assert data["authorised"] is False


@pytest.mark.parametrize("option", ["--from", "--to", "--trust-anchor", "--re-anchor"])
def test_verify_refuses_an_unknown_revision_as_a_usage_error(
    tmp_path: Path, people: People, option: str
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    result = repo.reconciler("verify", option, "no-such-rev")
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: unknown revision 'no-such-rev' given to {option}\n"
        "  hint: name a commit, branch or tag of this repository (`git log --oneline` lists them)\n"
    )


def test_verify_refuses_a_commit_id_that_is_not_in_the_repository(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    result = repo.reconciler("verify", "--trust-anchor", "0" * 40)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"error: unknown revision '{'0' * 40}' given to --trust-anchor"
    )


def test_verify_refuses_another_trust_anchor_once_anchored(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    anchor = repo.head()
    assert repo.reconciler("verify").exit_code == 0
    later = repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    result = repo.reconciler("verify", "--trust-anchor", later)
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: already anchored at {anchor[:12]}\n"
        "  hint: use --re-anchor REV to trust another commit, or --state-dir for a fresh state\n"
    )


def test_verify_accepts_the_trust_anchor_it_is_anchored_at(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    anchor = repo.head()
    assert repo.reconciler("verify").exit_code == 0
    result = repo.reconciler("verify", "--trust-anchor", "main", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["anchor"] == anchor


# -- the contract, statement by statement (audit) ------------------------------------


def test_cancelling_and_uncancelling_a_plan_by_commit_needs_plan_deploy_not_plan_edit(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    by_alice = repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE, state="cancelled")})
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.field) == (by_alice, "state")
    assert refusal.needed == "plan.deploy on quality-assurance"
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})  # back to the effective value
    repo.commit(people.olga, {QA_PLAN: qa_plan(ECOMMERCE, state="cancelled")})
    assert repo.verify().judged[-1].authorised
    uncancel = repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.field, refusal.actor) == (uncancel, "state", "alice")
    repo.commit(people.olga, {QA_PLAN: qa_plan(ECOMMERCE, state="cancelled")})
    repo.commit(people.olga, {QA_PLAN: qa_plan(ECOMMERCE, state="draft")})
    assert repo.verify().judged[-1].authorised


def test_moving_a_plan_between_draft_and_ready_needs_plan_edit_not_plan_deploy(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE, state="draft")})
    by_olga = repo.commit(people.olga, {QA_PLAN: qa_plan(ECOMMERCE)})
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.field, refusal.actor) == (by_olga, "state", "olga")
    assert refusal.needed == "plan.edit on quality-assurance for some application in the plan"
    repo.commit(people.olga, {QA_PLAN: qa_plan(ECOMMERCE, state="draft")})
    repo.commit(people.bob, {QA_PLAN: qa_plan(ECOMMERCE)}, signed=False)
    assert repo.verify().judged[-1].authorised
    assert repo.editors(QA_PLAN) >= {"alice", "bob"}


def test_changing_only_a_plans_source_needs_plan_edit_for_every_application_in_it(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    sourceless = plan("2026-11-qa-release", "quality-assurance", [ECOMMERCE, PORTAL])
    by_alice = repo.commit(people.alice, {QA_PLAN: sourceless})
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.field) == (by_alice, "source")
    assert refusal.needed == "plan.edit on quality-assurance for every application in the plan"
    assert refusal.reasons[0] == (
        "customer-portal belongs to team customer-portal, and alice is not a member of it"
    )


def test_a_grant_authorised_in_a_pull_request_does_not_authorise_what_lands_with_it(
    tmp_path: Path, people: People
) -> None:
    """root grants bob a role in customer-portal, and bob uses it, on one branch: one
    landing, judged by the policy before it, so bob's edit is refused; the grant stands."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    with repo.branch("bob-joins-portal"):
        bob_in_portal = teams_with(
            people, lambda data: data["teams"]["customer-portal"]["members"].update(bob="developer")
        )
        repo.commit(people.root, {"teams.yaml": bob_in_portal}, "Bob joins the portal team")
        bobs = repo.commit(
            people.bob,
            {QA_PLAN: qa_plan({**PORTAL, "version": "0.7", "from": "0.7-dev.1"})},
            signed=False,
        )
    repo.merge(people.root, "bob-joins-portal")
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.commit, refusal.field, refusal.actor) == (bobs, "app:customer-portal", "bob")
    assert refusal.reasons[0] == (
        "customer-portal belongs to team customer-portal, and bob is not a member of it"
    )
    assert repo.effective_policy().teams["customer-portal"].members["bob"] == "developer"


@pytest.mark.parametrize(
    "path",
    ["environments/development.yaml", "schemas/plan.schema.json"],
)
def test_environments_and_schemas_need_a_settings_users_verified_signature(
    tmp_path: Path, people: People, path: str
) -> None:
    repo = SeedRepo.create(tmp_path, people, extra={"schemas/plan.schema.json": "{}\n"})
    original = (repo.path / path).read_text()
    repo.commit(people.mallory, {path: original + "\n"}, signed=False, email="root@example.com")
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.path, refusal.actor, refusal.needed) == (
        path,
        "an unknown actor",
        "environments.edit",
    )
    assert refusal.reasons == ("unsigned commit, and this change needs a verified signature",)
    repo.commit(people.alice, {path: original + "\n\n"})
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.path, refusal.actor) == (path, "alice")
    assert refusal.reasons == (
        "alice holds tech-lead in ecommerce",
        "environments.edit is held by infrastructure settings (root)",
    )
    repo.commit(people.root, {path: original + "\n\n\n"})
    assert repo.verify().judged[-1].authorised


def test_an_unsigned_commit_under_the_reconcilers_email_may_not_write_deployments(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    forged = "environment: production\napplications: {}\n"
    repo.commit(
        people.mallory,
        {"deployments/production.yaml": forged},
        signed=False,
        email="reconciler@example.com",
    )
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.needed == "the reconciler service account's signature"
    assert refusal.reasons[0].startswith("an unknown actor is not the reconciler service account")


def test_the_service_account_may_not_change_the_policy(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.reconciler, {"teams.yaml": teams_with(people, grant_bob_deployment)})
    refusal = only_refusal(repo.verify().judged[-1])
    assert refusal.reasons == (
        "reconciler is the reconciler service account, which may only write deployments/ and logs/",
    )
    assert "bob" not in repo.effective_policy().teams["operations"].members


def test_a_landing_of_exactly_the_cap_is_judged_and_the_default_cap_is_1000(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    with repo.branch("big"):
        for index in range(3):
            repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": f"1.4.{index}"})})
    merge = repo.merge(people.olga, "big")
    with GitRepo(repo.path) as git_repo:
        store = StateStore(repo.state_dir, "main")
        try:
            assert Authoriser(git_repo, store, now=SUITE_NOW).cap == 1000
            result = Authoriser(git_repo, store, now=SUITE_NOW, cap=4).run(merge)
        finally:
            store.close()
    assert result.judged[-1].authorised
    assert len(result.judged[-1].landed) == 4


def test_re_anchoring_on_a_commit_whose_own_teams_yaml_makes_its_signer_settings_is_refused(
    tmp_path: Path, people: People
) -> None:
    """The settings user is one of the last trusted policy, not of the commit's own tree."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.verify()
    repo.git("reset", "-q", "--hard", "HEAD~1")
    mallory_rules = teams_with(people, lambda data: make_mallory_the_settings_user(data, people))
    takeover = repo.commit(people.mallory, {"teams.yaml": mallory_rules})
    with GitRepo(repo.path) as git_repo:
        store = StateStore(repo.state_dir, "main")
        try:
            session = Session(git_repo, store, "main", SUITE_NOW)
            with pytest.raises(ReconcilerError) as caught:
                session.re_anchor(takeover)
        finally:
            store.close()
    assert caught.value.message.startswith(f"cannot re-anchor on {takeover[:12]}: signed with key")
    with pytest.raises(HistoryRewrittenError):
        repo.verify()


def test_a_true_merge_the_host_committed_counts_as_the_mergers_and_its_own_edits_are_theirs(
    tmp_path: Path, people: People
) -> None:
    """A web merge: the host commits and signs it, its author is whoever merged. The merged
    commits keep their own actors; what the merge itself changed is the merger's."""
    host = people.second_key(people.mallory, "github-host").key
    repo = SeedRepo.create(tmp_path, people, teams=teams_with_host(people, host))
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    with repo.branch("ecommerce-1.4.1"):
        repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL)})
    sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={host}"]
    as_host = {
        "GIT_AUTHOR_NAME": "Alice Tech",
        "GIT_AUTHOR_EMAIL": "alice@example.com",
        "GIT_COMMITTER_NAME": "GitHub",
        "GIT_COMMITTER_EMAIL": "noreply@github.com",
    }
    repo.git(*sign, "merge", "-q", "--no-ff", "--no-commit", "ecommerce-1.4.1", env=as_host)
    repo.write({QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"}, {**PORTAL, "version": "0.7"})})
    repo.git(*sign, "commit", "-q", "-S", "-m", "Merge pull request #8", env=as_host)
    merge = repo.head()
    verdict = repo.verify().judged[-1]
    assert (verdict.commit, verdict.actor) == (merge, "alice")
    refusal = only_refusal(verdict)
    assert (refusal.commit, refusal.actor, refusal.field) == (merge, "alice", "app:customer-portal")
    assert refusal.reasons[0] == (
        "customer-portal belongs to team customer-portal, and alice is not a member of it"
    )


def test_a_gate_only_editors_could_meet_does_not_wedge_a_repository_made_before_that_check(
    tmp_path: Path, people: People
) -> None:
    """A small team as yesterday's `reconciler init` left it: alice is the only tech lead
    and edits every plan, QA and production each want a tech lead's approval. Yesterday
    that policy was valid; an upgrade must not refuse the anchor (CI's fresh verify), nor
    every later policy change, nor a fix made one file at a time."""

    def small_team(data: dict[str, Any]) -> None:
        del data["teams"]["customer-portal"], data["teams"]["architecture"]
        del data["teams"]["ecommerce"]["members"]["bob"]

    teams = seed_teams(people)
    small_team(teams)
    repo = SeedRepo.create(tmp_path, people, teams=teams)
    repo.verify()  # the state a reconciler already keeps
    production = example_file("environments/production.yaml").replace(
        "    - {role: tech-lead, count: 1}\n", ""
    )
    repo.commit(people.root, {"environments/production.yaml": production}, "Tester sign-off only")
    # `validate` still refuses the gate QA keeps, so the team hears of it in CI.
    validated = reconciler("validate", "--repo", repo.path)
    assert validated.exit_code == 1
    assert "environments/quality-assurance.yaml" in validated.stdout
    assert "whose approval of it does not count" in validated.stdout

    def with_erik(data: dict[str, Any]) -> None:
        small_team(data)
        data["teams"]["ecommerce"]["members"]["erik"] = "developer"

    repo.commit(people.root, {"teams.yaml": teams_with(people, with_erik)}, "Erik joins")
    assert [verdict.refusals for verdict in repo.verify().judged] == [(), ()]
    fresh = repo.verify(state_dir=tmp_path / "ci-state")  # CI: a fresh state, from the anchor
    assert [verdict.refusals for verdict in fresh.judged] == [(), ()]


def test_a_revocation_file_setting_git_cannot_expand_stops_the_reconciler(
    tmp_path: Path, people: People
) -> None:
    # `~nosuchuser/...`, or `~/...` for a service run without HOME: git itself dies on it
    # (`git verify-commit` exits 128). With nothing new to walk no `git log` runs to die
    # too, and the keys the file lists must not count again meanwhile.
    repo = SeedRepo.create(tmp_path, people)
    theft = repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    assert repo.reconciler("verify").exit_code == 0
    repo.git("config", "gpg.ssh.revocationFile", "~nosuchuser/revoked-keys")
    assert not git_succeeds(repo.path, "verify-commit", theft)
    result = repo.reconciler("access", "root")
    assert result.exit_code == 1, result.stdout
    assert result.stderr.startswith(
        "error: git cannot read gpg.ssh.revocationFile: "
        "fatal: failed to expand user dir in: '~nosuchuser/revoked-keys'"
    ), result.stderr
    assert "hint: " in result.stderr
    assert "Traceback" not in result.stderr


def test_a_certificate_in_the_revocation_file_revokes_the_key_it_certifies(
    tmp_path: Path, people: People
) -> None:
    # Ops paste the stolen key's certificate (id_ed25519-cert.pub, what is at hand) into
    # the file: `git verify-commit` compares keys ignoring certificate data (ssh-keygen's
    # sshkey_in_file, not strict), so it refuses the key's signatures, and so must we.
    repo = SeedRepo.create(tmp_path, people)
    certified = tmp_path / "root.pub"
    certified.write_text(people.root.public_key + "\n")
    authority = tmp_path / "ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", authority], check=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-s", authority, "-I", "root", "-n", "root", certified], check=True
    )
    certificate = (tmp_path / "root-cert.pub").read_text()
    assert certificate.startswith("ssh-ed25519-cert-v01@openssh.com ")
    repo.revoke(certificate)

    theft = repo.commit(people.root, {"teams.yaml": teams_with(people, grant_bob_deployment)})
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'root@example.com namespaces="git" {people.root.public_key}\n')
    signers = f"gpg.ssh.allowedSignersFile={allowed}"
    assert not git_succeeds(repo.path, "-c", signers, "verify-commit", theft)
    unrevoked = ["-c", signers, "-c", "gpg.ssh.revocationFile=/dev/null"]
    assert git_succeeds(repo.path, *unrevoked, "verify-commit", theft)

    result = repo.reconciler("verify", "--format", "json")
    assert result.exit_code == 1, result.stdout
    [landing] = [item for item in result.json()["landings"] if item["commit"] == theft]
    fingerprint = parse_public_key(people.root.public_key).fingerprint
    assert landing["refusals"][0]["reasons"][0] == (
        f"signature not accepted (key {fingerprint} is revoked "
        f"(gpg.ssh.revocationFile)), and this change needs a verified signature"
    )


def test_a_revocation_file_too_large_to_be_a_list_of_keys_stops_the_reconciler(
    tmp_path: Path, people: People
) -> None:
    # Read whole, a file of gigabytes (or /dev/zero, which never ends) took all memory
    # and ended in an internal error; no more than what a list of keys can need is read.
    repo = SeedRepo.create(tmp_path, people)
    revoked = repo.revoke(b"")
    with revoked.open("r+b") as file:
        file.truncate(64 * 1024**2)  # sparse: no disk, but 64 MiB to read
    result = repo.reconciler("verify")
    assert result.exit_code == 1, result.stdout
    assert result.stderr.startswith(
        f"{revoked}: error: the revocation file is larger than 16,777,216 bytes"
    ), result.stderr
    assert "hint: " in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "options", ["restrict", "cert-authority", 'from="10.0.0.0/8",command="echo hi"']
)
def test_a_revocation_line_with_authorized_keys_options_is_refused_saying_so(
    tmp_path: Path, people: People, options: str
) -> None:
    # Pasted from authorized_keys: ssh-keygen (so git) cannot read the line either and
    # refuses every signature; the reconciler stops, and says what is wrong with it.
    repo = SeedRepo.create(tmp_path, people)
    revoked = repo.revoke(f"# stolen\r\n{options} {people.root.public_key}\r\n")
    result = repo.reconciler("verify")
    assert result.exit_code == 1, result.stdout
    assert result.stderr.splitlines()[0] == (
        f"{revoked}:2: error: options before the key, as in authorized_keys, are not read "
        f"('{options}')"
    )
    assert result.stderr.splitlines()[1] == (
        "  hint: list the key alone: ssh-ed25519 AAAA... (git verify-commit refuses the line too)"
    )
