"""Approvals, triggers and executability: what may run now, and why the rest may not.

Where Git adds nothing to a decision rule, its specification is told as values
(`tests.builders.Story`) and runs in milliseconds; the stories where Git matters (what
landed, trailers, merges, reverts, revocation, the CLI) run against real repositories.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from msgspec.structs import replace

from reconciler.app.session import open_session
from reconciler.core.approvals import (
    EDITOR,
    REPEATED,
    approval_refusal,
    match_approvers,
    most_approvals,
)
from reconciler.core.decide import Decision, decide
from reconciler.core.decide_values import History, Landed, OnMain, Run, RunResult
from reconciler.core.errors import ConfigError
from reconciler.core.events import PlanRef, Signoff
from reconciler.core.identity import CommitFacts
from reconciler.core.journal import IgnoredTrailer
from reconciler.core.model import (
    DEFAULT_PERMISSIONS,
    DriverSpec,
    Environment,
    Gates,
    Identity,
    Policy,
    Team,
)
from reconciler.core.resources import schemas_dir
from reconciler.core.runs import (
    LEASE_MARGIN,
    RunDecisions,
    RunFacts,
    decide_runs,
    lease_for,
    next_run_id,
)
from reconciler.core.signoffs import retry_refusal
from reconciler.core.sshkeys import parse_public_key
from tests import builders
from tests.builders import Story
from tests.clock import SUITE_NOW, window_only_tomorrow
from tests.configrepo import dump, example_file
from tests.people import People, grant_bob_deployment, seed_teams, teams_with
from tests.repositories import SeedRepo
from tests.scenarios import (
    DEV_PLAN,
    ECOMMERCE,
    PORTAL,
    PROD_PLAN,
    QA_PLAN,
    dev_plan,
    ended,
    frozen_until_the_end_of_time,
    interrupted_qa_release,
    plan,
    prod_plan,
    production_with_windows,
    proposed_qa_release,
    qa_plan,
    ran,
)


def waits(decision: Decision) -> list[str]:
    return [wait.text for wait in decision.waits]


def landed_wait(
    environment: str, who: str, landing: str, by: str, name: str = "2026-11-qa-release"
) -> str:
    """The wait for a trigger of a plan version landed by `by`'s single-parent commit."""
    return (
        f"a trigger by a plan.deploy holder on {environment} ({who}): `reconciler deploy "
        f"{name}`; it landed by fast-forward, rebase or a direct commit ({landing[:12]} by "
        f"{by}): no merge by a plan.deploy holder to trigger it"
    )


def test_an_approved_and_triggered_plan_is_executable() -> None:
    story = builders.proposed_qa_release()
    story.approve("ravi", QA_PLAN)
    story.trigger("olga", QA_PLAN)
    decision = story.decide()[QA_PLAN]
    assert decision.status == "executable"
    assert decision.approvers == ("ravi",)
    assert decision.triggered_by == "olga"


def test_a_draft_waits_for_state_ready() -> None:
    story = Story()
    story.land("alice", QA_PLAN, qa_plan(ECOMMERCE, state="draft"))
    decision = story.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert waits(decision) == ["saved as a draft: set state: ready to propose it"]


def test_an_approval_followed_by_a_plan_edit_no_longer_counts() -> None:
    story = builders.proposed_qa_release()
    story.approve("ravi", QA_PLAN)
    story.land("alice", QA_PLAN, qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL))
    story.trigger("olga", QA_PLAN)
    decision = story.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert "1 more approval by tech-lead (may approve: ravi)" in waits(decision)


def test_a_plan_editor_approving_their_own_plan_does_not_count() -> None:
    story = builders.proposed_qa_release()
    approval = story.approve("alice", QA_PLAN)
    story.trigger("olga", QA_PLAN)
    decision = story.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert decision.approvers == ()
    assert (
        f"approval in {approval[:12]} by alice does not count: alice edited the plan, and "
        "editors do not approve their own plans"
    ) in decision.notes


def test_the_same_person_approving_twice_with_two_keys_counts_once() -> None:
    teams = builders.seed_teams()
    teams["users"]["ravi"]["keys"].append(builders.public_key("ravi", "laptop"))
    teams["teams"]["customer-portal"]["members"]["fiona"] = "tester"
    production = example_file("environments/production.yaml").replace(
        "- {role: tech-lead, count: 1}\n    - {role: tester, count: 1}",
        "- {role: tech-lead, count: 2}",
    )
    story = Story(builders.policy(teams, {"production": production}))
    story.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    story.land("alice", PROD_PLAN, prod_plan(ECOMMERCE))
    story.approve("ravi", PROD_PLAN)
    story.approve("ravi", PROD_PLAN, key="laptop")
    decision = story.decide()[PROD_PLAN]
    assert decision.approvers == ("ravi",)
    assert "1 more approval by tech-lead (may approve: diana)" in waits(decision)


def test_two_approvals_required_one_given_waits_naming_the_role() -> None:
    story = Story()
    story.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    story.land("alice", PROD_PLAN, prod_plan(ECOMMERCE))
    story.approve("fiona", PROD_PLAN)
    story.trigger("olga", PROD_PLAN)
    decision = story.decide()[PROD_PLAN]
    assert decision.status == "waiting"
    assert decision.approvers == ("fiona",)
    assert waits(decision) == ["1 more approval by tech-lead (may approve: diana, ravi)"]


def test_an_approval_on_a_branch_that_never_landed_does_not_count(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    with repo.branch("side"):
        repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    decision = repo.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert decision.approvers == ()


def test_an_approval_older_than_the_ttl_does_not_count() -> None:
    story = builders.proposed_qa_release()
    approval = story.approve("ravi", QA_PLAN)
    story.trigger("olga", QA_PLAN)
    story.decide()  # the reconciler sees both now
    later = story.decide(now=SUITE_NOW + timedelta(hours=9))[QA_PLAN]
    assert later.status == "waiting"
    assert f"approval in {approval[:12]} by ravi does not count: older than approval_ttl (8h)" in (
        later.notes
    )


def test_an_approval_dated_in_the_future_ages_from_when_it_was_first_seen() -> None:
    story = builders.proposed_qa_release()
    approval = story.approve("ravi", QA_PLAN, date=SUITE_NOW + timedelta(days=30))
    story.trigger("olga", QA_PLAN)
    assert story.decide()[QA_PLAN].status == "executable"
    later = story.decide(now=SUITE_NOW + timedelta(hours=9))[QA_PLAN]
    assert f"approval in {approval[:12]} by ravi does not count: older than approval_ttl (8h)" in (
        later.notes
    )


def test_a_trigger_by_someone_without_plan_deploy_waits_naming_who_may() -> None:
    story = builders.proposed_qa_release()
    landing = story.head
    story.approve("ravi", QA_PLAN)
    attempt = story.trigger("alice", QA_PLAN)
    decision = story.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert waits(decision) == [landed_wait("quality-assurance", "olga", landing, "diana")]
    assert (
        f"trigger in {attempt[:12]} by alice does not count: alice holds tech-lead in ecommerce; "
        "quality-assurance grants plan.deploy to deployment (held by olga)"
    ) in decision.notes


def test_a_refused_self_grant_followed_by_a_trigger_from_the_same_person_is_refused(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    teams = seed_teams(people)
    teams["teams"]["operations"]["members"]["bob"] = "deployment"
    repo.commit(people.bob, {"teams.yaml": dump(teams)}, signed=False)
    attempt = repo.trigger(people.bob, QA_PLAN, signed=False)
    decision = repo.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert (
        f"trigger in {attempt[:12]} by bob does not count: bob holds developer in ecommerce; "
        "quality-assurance grants plan.deploy to deployment (held by olga)"
    ) in decision.notes


def test_deploy_plan_pasted_into_a_merge_commits_message_is_ignored(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    blob = repo.blob(QA_PLAN)
    with repo.branch("notes"):
        repo.commit(people.diana, {"plans/other.yaml": plan("other", "development", [])})
    repo.merge(people.alice, "notes", f"Merge notes\n\nDeploy-Plan: {QA_PLAN}@{blob}")
    decisions = repo.decide()
    assert decisions[QA_PLAN].triggered_by is None
    assert decisions[QA_PLAN].status == "waiting"


def test_a_trailer_with_a_short_blob_id_is_ignored(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.signoff(people.olga, "Deploy-Plan", f"{QA_PLAN}@{repo.blob(QA_PLAN)[:12]}")
    decision = repo.decide()[QA_PLAN]
    assert decision.triggered_by is None
    ignored = repo.store().events(IgnoredTrailer)
    assert ignored[-1].reason.startswith("Deploy-Plan: 'plans/2026-11-qa-release.yaml@")
    assert ignored[-1].reason.endswith("is not plans/<file>.yaml@<full blob id>")


def test_a_trigger_whose_key_is_spelt_in_other_cases_does_not_count_and_says_why(
    tmp_path: Path, people: People
) -> None:
    # git matches trailer keys in any case; we count only the exact key, as when the
    # history landed, but the hand-typed `deploy-plan:` is shown ignored, never dropped.
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.signoff(people.olga, "deploy-plan", f"{QA_PLAN}@{repo.blob(QA_PLAN)}")
    decision = repo.decide()[QA_PLAN]
    assert decision.triggered_by is None
    assert repo.store().events(IgnoredTrailer)[-1].reason == (
        "'deploy-plan' is not a key the reconciler reads: trailer keys are exact, "
        "write 'Deploy-Plan'"
    )
    history = json.loads(repo.reconciler("history", QA_PLAN, "--format", "json").stdout)
    assert history["entries"][-1]["action"] == "ignored"
    assert history["entries"][-1]["detail"].startswith("'deploy-plan' is not a key")


def test_a_trailer_in_a_commit_that_also_changes_files_is_ignored(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    blob = repo.blob(QA_PLAN)
    repo.commit(
        people.ravi,
        {"plans/other.yaml": plan("other", "development", [])},
        f"Approve and sneak a file in\n\nApprove-Plan: {QA_PLAN}@{blob}",
    )
    repo.trigger(people.olga, QA_PLAN)
    assert repo.decide()[QA_PLAN].approvers == ()
    assert repo.store().events(IgnoredTrailer)[-1].reason == (
        "the commit also changes files; approvals and triggers are empty commits"
    )


def test_record_trailers_without_the_service_accounts_signature_are_ignored(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    blob = repo.blob(QA_PLAN)
    repo.commit(
        people.olga,
        message=(
            "Deploy 2026-11-qa-release to quality-assurance: succeeded\n\n"
            f"Plan: {QA_PLAN}@{blob}\nEnvironment: quality-assurance\nResult: succeeded\n"
            "Run: 2026-11-qa-release.1"
        ),
    )
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    assert repo.decide()[QA_PLAN].status == "executable"
    reason = repo.store().events(IgnoredTrailer)[-1].reason
    assert reason.startswith("a record counts only when signed by the reconciler service account")


def test_a_plan_version_that_already_ran_does_not_run_again_even_after_a_revert(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, "2026-11-qa-release.1")
    original = repo.head()
    repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL)})
    repo.git("revert", "--no-edit", "HEAD", env={"GIT_COMMITTER_EMAIL": "alice@example.com"})
    repo.trigger(people.olga, QA_PLAN)
    assert repo.blob(QA_PLAN, original) == repo.blob(QA_PLAN)
    decision = repo.decide()[QA_PLAN]
    assert decision.status == "done"
    assert decision.reasons == ("run 2026-11-qa-release.1 succeeded",)


def test_a_second_finish_record_of_a_run_does_not_change_how_it_ended(
    tmp_path: Path, people: People
) -> None:
    # Two finish records of one run: as an older reconciler, killed between its
    # publish and clearing its outbox, could leave.
    repo, _ = interrupted_qa_release(tmp_path, people)
    interrupted = repo.head()
    ended(repo, QA_PLAN, "2026-11-qa-release.1", "succeeded")
    decision = repo.decide()[QA_PLAN]
    assert (decision.status, decision.waits[0].what) == ("waiting", "retry")
    assert decision.run is not None
    assert (decision.run.result, decision.run.finished) == ("interrupted", interrupted)


def test_a_version_not_yet_in_the_promotion_source_waits() -> None:
    story = builders.proposed_qa_release()
    story.deployed("development", {"ecommerce": "1.3.9", "customer-portal": "0.6-dev.41"})
    story.approve("ravi", QA_PLAN)
    story.trigger("olga", QA_PLAN)
    decision = story.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert waits(decision) == ["ecommerce 1.4.0 must run in development first (it runs 1.3.9)"]


def test_a_plan_outside_its_deploy_window_waits_and_says_until_when() -> None:
    window, opens = window_only_tomorrow(SUITE_NOW)
    story = Story(builders.policy(environments={"production": production_with_windows(window)}))
    story.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    story.land("alice", PROD_PLAN, prod_plan(ECOMMERCE))
    story.approve("ravi", PROD_PLAN)
    story.approve("carol", PROD_PLAN)
    story.trigger("olga", PROD_PLAN)
    decision = story.decide()[PROD_PLAN]
    assert decision.status == "waiting"
    assert waits(decision) == [f"a deploy window: deploys may start at {opens.isoformat()}"]
    assert decision.waits[0].until == opens


def test_a_freeze_until_the_end_of_time_keeps_a_plan_waiting_with_no_opening(
    tmp_path: Path, people: People
) -> None:
    # With a window, the next opening after 9999-12-31T23:59 is past the last
    # date a datetime holds; `plan` used to crash with an OverflowError.
    repo = frozen_until_the_end_of_time(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.reconciler("plan", "--format", "json")
    assert (result.exit_code, result.stderr) == (0, "")
    [decision] = [item for item in result.json()["plans"] if item["plan"] == DEV_PLAN]
    assert decision["status"] == "waiting"
    assert decision["waits"] == [
        {
            "what": "window",
            "text": "the forever freeze: no deploy window opens before the year 9999 ends",
            "until": None,
        }
    ]


def test_a_freeze_whose_name_ends_in_freeze_is_named_once() -> None:
    # production's freeze is named "year-end freeze": plans waited for "the year-end freeze
    # freeze".
    during = datetime(2026, 12, 22, 12, 0, tzinfo=UTC)  # a Tuesday, in the window's hours
    story = Story(clock=during - timedelta(hours=1))  # approvals fresh at `during`
    story.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    story.land("alice", PROD_PLAN, prod_plan(ECOMMERCE))
    story.approve("ravi", PROD_PLAN)
    story.approve("carol", PROD_PLAN)
    story.trigger("olga", PROD_PLAN)
    decision = story.decide(now=during)[PROD_PLAN]
    assert waits(decision) == [
        "the year-end freeze: deploys may start at 2027-01-04T09:00:00+00:00"
    ]


def test_who_may_approve_or_trigger_where_signatures_count_leaves_out_who_cannot_sign(
    tmp_path: Path, people: People
) -> None:
    # Ravi's and olga's keys are revoked: `plan` still offered them as the ones to ask,
    # in production, where nothing they do without a key counts.
    repo = proposed_qa_release(tmp_path, people)
    qa_landing = repo.head()
    repo.commit(people.root, {"teams.yaml": teams_with(people, grant_bob_deployment)})
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    prod_landing = repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    before = decided_as_the_service_would(repo)
    # bob has no key: he deploys to quality-assurance by email, never to production.
    assert waits(before[PROD_PLAN]) == [
        landed_wait("production", "olga", prod_landing, "alice", "2026-11-prod-release"),
        "1 more approval by tech-lead (may approve: diana, ravi)",
        "1 more approval by tester (may approve: carol, fiona)",
    ]
    repo.revoke(f"{people.olga.public_key}\n{people.ravi.public_key}\n")
    after = decided_as_the_service_would(repo)
    assert waits(after[PROD_PLAN]) == [
        landed_wait("production", "nobody", prod_landing, "alice", "2026-11-prod-release"),
        "1 more approval by tech-lead (may approve: diana)",
        "1 more approval by tester (may approve: carol, fiona)",
    ]
    # Where signatures are not required, their emails still make their sign-offs count.
    assert waits(after[QA_PLAN]) == [
        landed_wait("quality-assurance", "bob, olga", qa_landing, "diana"),
        "1 more approval by tech-lead (may approve: ravi)",
    ]


def test_a_proposal_landed_by_one_who_may_not_deploy_is_no_trigger_that_failed(
    tmp_path: Path, people: People
) -> None:
    # A tech lead's merge (or commit) of a plan into quality-assurance was reported as
    # "trigger in ... by alice does not count": it is her proposal, not a trigger.
    repo = SeedRepo.create(tmp_path, people)
    repo.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    with repo.branch("proposal"):
        repo.commit(people.bob, {QA_PLAN: qa_plan(ECOMMERCE)}, signed=False)
    merge = repo.merge(people.alice, "proposal")
    merged = repo.decide()[QA_PLAN]
    commit = repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    committed = repo.decide()[QA_PLAN]
    for decision in (merged, committed):
        assert decision.status == "waiting"
        assert decision.notes == ()
    assert waits(merged)[0] == (
        "a trigger by a plan.deploy holder on quality-assurance (olga): `reconciler deploy "
        f"2026-11-qa-release`; it landed by alice's merge ({merge[:12]}), and alice does not "
        "hold plan.deploy there"
    )
    assert waits(committed)[0] == landed_wait("quality-assurance", "olga", commit, "diana")
    shown = repo.reconciler("plan")
    assert (shown.exit_code, shown.stderr) == (0, "")
    assert "trigger in" not in shown.stdout
    # A landing whose actor is unknown may have been meant as a trigger: it says why it
    # was none.
    with repo.branch("more"):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="more")})
    merge = repo.merge(people.mallory, "more", signed=False)
    [note] = repo.decide()[QA_PLAN].notes
    assert note.startswith(f"trigger in {merge[:12]} by an unknown actor does not count: ")


def test_an_approver_removed_from_the_team_before_execution_no_longer_counts() -> None:
    story = builders.proposed_qa_release()
    approval = story.approve("ravi", QA_PLAN)
    story.trigger("olga", QA_PLAN)
    teams = builders.seed_teams()
    del teams["teams"]["architecture"]
    story.policy = builders.policy(teams)  # root's teams.yaml lands: ravi moves on
    decision = story.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert (
        f"approval in {approval[:12]} by ravi does not count: ravi no longer holds plan.approve: "
        "ravi holds no role; quality-assurance grants plan.approve to tech-lead "
        "(held by alice, diana)"
    ) in decision.notes


def test_a_retry_of_a_run_that_is_not_interrupted_is_refused() -> None:
    story = builders.proposed_qa_release()
    story.approve("ravi", QA_PLAN)
    story.trigger("olga", QA_PLAN)
    story.ran(QA_PLAN, "2026-11-qa-release.1", result="failed")
    retry = story.retry("olga", "2026-11-qa-release.1")
    decision = story.decide()[QA_PLAN]
    assert decision.status == "done"
    assert decision.notes == (
        f"retry of 2026-11-qa-release.1 in {retry[:12]} does not count: only interrupted runs are "
        "retried, and 2026-11-qa-release.1 failed",
    )


def test_a_retry_of_an_interrupted_run_by_a_deploy_holder_makes_it_executable() -> None:
    story = builders.interrupted_qa_release()
    assert story.decide()[QA_PLAN].waits[0].what == "retry"
    story.retry("olga", "2026-11-qa-release.1")
    decision = story.decide()[QA_PLAN]
    assert decision.status == "executable"
    assert decision.retry_of == "2026-11-qa-release.1"


def test_an_interrupted_run_whose_approval_lapsed_waits_for_a_retry_and_an_approval() -> None:
    story = builders.interrupted_qa_release()
    decision = story.decide(now=SUITE_NOW + timedelta(hours=9))[QA_PLAN]
    assert decision.status == "waiting"
    assert decision.reasons == (
        "run 2026-11-qa-release.1 was interrupted; a plan.deploy holder (olga) may retry it with "
        "`reconciler deploy 2026-11-qa-release --retry 2026-11-qa-release.1`",
        "1 more approval by tech-lead (may approve: ravi)",
    )
    assert decision.run is not None
    assert decision.run.id == "2026-11-qa-release.1"
    assert decision.retry_of is None


def test_a_cancelled_plan_is_cancelled() -> None:
    story = builders.proposed_qa_release()
    story.land(
        "olga", QA_PLAN, qa_plan(ECOMMERCE, PORTAL, notes="November release", state="cancelled")
    )
    assert story.decide()[QA_PLAN].status == "cancelled"


def test_a_plan_with_unauthorised_content_is_refused(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.commit(
        people.bob, {QA_PLAN: qa_plan(ECOMMERCE, {**PORTAL, "version": "0.9"})}, signed=False
    )
    decision = repo.decide()[QA_PLAN]
    assert decision.status == "refused"
    assert decision.reasons[0].startswith(
        "main's content is not authorised: the customer-portal entry: changed by bob in "
    )


def test_an_approval_and_a_trigger_by_committer_email_count_only_where_signatures_are_not_required() -> (  # noqa: E501
    None
):
    story = builders.proposed_qa_release()
    story.approve("ravi", QA_PLAN, signed=False)
    story.trigger("olga", QA_PLAN, signed=False)
    decision = story.decide()[QA_PLAN]
    assert decision.status == "executable"
    assert (decision.approvers, decision.triggered_by) == (("ravi",), "olga")
    story.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    story.land("alice", PROD_PLAN, prod_plan(ECOMMERCE))
    story.approve("ravi", PROD_PLAN, signed=False)
    story.approve("carol", PROD_PLAN, signed=False)
    story.trigger("olga", PROD_PLAN, signed=False)
    production = story.decide()[PROD_PLAN]
    assert production.status == "waiting"
    assert production.approvers == ()
    assert production.triggered_by is None


def test_trailers_in_merges_by_holders_of_the_permission_neither_trigger_nor_approve(
    tmp_path: Path, people: People
) -> None:
    # olga may deploy to QA and ravi may approve there: were a merge's message read, their
    # merges of unrelated branches would trigger and approve with text a host pasted in.
    repo = proposed_qa_release(tmp_path, people)
    ref = f"{QA_PLAN}@{repo.blob(QA_PLAN)}"
    with repo.branch("other"):
        repo.commit(people.diana, {"plans/other.yaml": plan("other", "development", [])})
    repo.merge(people.olga, "other", f"Merge other\n\nDeploy-Plan: {ref}")
    with repo.branch("another"):
        repo.commit(people.diana, {"plans/another.yaml": plan("another", "development", [])})
    repo.merge(people.ravi, "another", f"Merge another\n\nApprove-Plan: {ref}")
    decision = repo.decide()[QA_PLAN]
    assert (decision.status, decision.triggered_by, decision.approvers) == ("waiting", None, ())
    reasons = [event.reason for event in repo.store().events(IgnoredTrailer)]
    assert (
        reasons[-2:]
        == ["a merge commit's message never counts (hosts copy pull-request text there)"] * 2
    )


def test_a_trigger_from_a_history_unrelated_to_the_trust_anchor_does_not_count(
    tmp_path: Path, people: People
) -> None:
    # olga's signed trigger of this very blob, made in another history (a fork, a scratch
    # repository) and merged in without changing a file: it never descended from the anchor.
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.verify()  # anchored on our root: with two roots, a fresh state would name none
    tree = repo.git("rev-parse", "main^{tree}")
    config, env = repo.identity(people.olga, signed=True)
    root = repo.git(*config, "commit-tree", "-S", tree, "-m", "elsewhere", env=env)
    message = f"Deploy by olga\n\nDeploy-Plan: {QA_PLAN}@{repo.blob(QA_PLAN)}"
    config, env = repo.identity(people.olga, signed=True)
    foreign = repo.git(*config, "commit-tree", "-S", tree, "-p", root, "-m", message, env=env)
    repo.land_commit_tree(people.alice, tree, repo.head(), foreign, message="Merge", signed=True)
    decision = repo.decide()[QA_PLAN]
    assert decision.triggered_by is None
    assert [event.reason for event in repo.store().events(IgnoredTrailer)] == [
        "the commit does not descend from the trust anchor"
    ]


def test_an_approval_made_before_the_content_existed_does_not_count_once_it_lands(
    tmp_path: Path, people: People
) -> None:
    # A blob id is a hash of the content: ravi can name tomorrow's version today. Made on a
    # branch whose tree holds the old version and merged after the new one landed, the
    # approval lands after it; it still approves content its commit never held.
    repo = proposed_qa_release(tmp_path, people)
    tomorrow = qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL, notes="November release")
    (tmp_path / "tomorrow.yaml").write_text(tomorrow)
    blob = repo.git("hash-object", str(tmp_path / "tomorrow.yaml"))
    with repo.branch("ahead"):
        early = repo.signoff(people.ravi, "Approve-Plan", f"{QA_PLAN}@{blob}")
    repo.commit(people.alice, {QA_PLAN: tomorrow})
    assert repo.blob(QA_PLAN) == blob
    repo.merge(people.olga, "ahead")
    repo.trigger(people.olga, QA_PLAN)
    decision = repo.decide()[QA_PLAN]
    assert (decision.status, decision.approvers) == ("waiting", ())
    [ignored] = repo.store().events(IgnoredTrailer)
    assert (ignored.commit, ignored.reason) == (
        early,
        f"Approve-Plan: the commit's tree does not hold {QA_PLAN} at {blob[:12]}",
    )


def test_a_triggerer_who_lost_plan_deploy_before_execution_no_longer_triggers() -> None:
    story = builders.proposed_qa_release()
    story.approve("ravi", QA_PLAN)
    trigger = story.trigger("olga", QA_PLAN)
    teams = builders.seed_teams()
    del teams["teams"]["operations"]
    teams["teams"]["architecture"]["members"]["olga"] = "tech-lead"
    story.policy = builders.policy(teams)  # root's teams.yaml lands: olga moves to architecture
    decision = story.decide()[QA_PLAN]
    assert decision.triggered_by is None
    assert [wait.what for wait in decision.waits] == ["trigger"]
    assert (
        f"trigger in {trigger[:12]} by olga does not count: olga no longer holds plan.deploy: "
        "olga holds tech-lead in architecture; quality-assurance grants plan.deploy to "
        "deployment (held by nobody)"
    ) in decision.notes


def test_a_trigger_older_than_the_ttl_does_not_count() -> None:
    story = builders.proposed_qa_release()
    trigger = story.trigger("olga", QA_PLAN)
    story.decide()  # the reconciler sees the trigger now
    story.approve("ravi", QA_PLAN, date=SUITE_NOW + timedelta(hours=9))
    later = story.decide(now=SUITE_NOW + timedelta(hours=9, minutes=5))[QA_PLAN]
    assert (later.status, later.triggered_by, later.approvers) == ("waiting", None, ("ravi",))
    assert [wait.what for wait in later.waits] == ["trigger"]
    assert f"trigger in {trigger[:12]} by olga does not count: older than approval_ttl (8h)" in (
        later.notes
    )


def test_an_approval_dated_in_the_past_ages_from_its_date_not_from_when_it_was_first_seen() -> None:
    # The earlier of the two: an approval made yesterday and pushed today is a day old.
    story = builders.proposed_qa_release()
    approval = story.approve("ravi", QA_PLAN, date=SUITE_NOW - timedelta(hours=9))
    story.trigger("olga", QA_PLAN)
    decision = story.decide()[QA_PLAN]  # first seen now
    assert (decision.status, decision.approvers) == ("waiting", ())
    assert f"approval in {approval[:12]} by ravi does not count: older than approval_ttl (8h)" in (
        decision.notes
    )


def test_an_unsigned_approval_under_an_approvers_email_does_not_count_where_signatures_are_required() -> (  # noqa: E501
    None
):
    story = Story()
    story.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    story.land("alice", PROD_PLAN, prod_plan(ECOMMERCE))
    story.approve("ravi", PROD_PLAN)
    story.approve("carol", PROD_PLAN, signed=False)
    story.trigger("olga", PROD_PLAN)
    decision = story.decide()[PROD_PLAN]
    assert decision.approvers == ("ravi",)
    assert waits(decision) == ["1 more approval by tester (may approve: carol, fiona)"]


def test_tag_and_deploy_waits_for_its_from_version_even_when_the_tag_already_runs_there() -> None:
    # The approval covers tagging 0.6-dev.41: that 0.6 runs in development says nothing of it.
    story = builders.proposed_qa_release()
    story.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6"})
    story.approve("ravi", QA_PLAN)
    story.trigger("olga", QA_PLAN)
    decision = story.decide()[QA_PLAN]
    assert decision.status == "waiting"
    assert waits(decision) == [
        "customer-portal 0.6-dev.41 must run in development first (it runs 0.6)"
    ]


def test_a_plan_whose_source_is_not_its_targets_promotion_source_is_refused() -> None:
    story = Story()
    story.deployed("development", {"ecommerce": "1.4.0"})
    skipping = plan("skip-qa", "production", [ECOMMERCE], source="development")
    sourced = plan("sourced-dev", "development", [ECOMMERCE], source="quality-assurance")
    unsourced = plan("unsourced-qa", "quality-assurance", [ECOMMERCE])
    story.land("alice", "plans/skip-qa.yaml", skipping)
    story.land("alice", "plans/sourced-dev.yaml", sourced)
    story.land("alice", "plans/unsourced-qa.yaml", unsourced)
    decisions = story.decide()
    assert {path: (item.status, item.reasons) for path, item in decisions.items()} == {
        "plans/skip-qa.yaml": (
            "refused",
            ("production promotes from quality-assurance, not development",),
        ),
        "plans/sourced-dev.yaml": (
            "refused",
            ("development promotes from nothing, not quality-assurance",),
        ),
        "plans/unsourced-qa.yaml": (
            "refused",
            ("quality-assurance promotes from development, not nothing",),
        ),
    }


def test_a_retry_by_someone_without_plan_deploy_does_not_re_run_the_interrupted_run() -> None:
    story = builders.interrupted_qa_release()
    retry = story.retry("alice", "2026-11-qa-release.1")
    decision = story.decide()[QA_PLAN]
    assert (decision.status, decision.retry_of) == ("waiting", None)
    assert [wait.what for wait in decision.waits] == ["retry"]
    assert (
        f"retry in {retry[:12]} by alice does not count: alice holds tech-lead in ecommerce; "
        "quality-assurance grants plan.deploy to deployment (held by olga)"
    ) in decision.notes


def test_approvals_and_triggers_of_a_version_do_not_carry_over_when_a_revert_brings_it_back(
    tmp_path: Path, people: People
) -> None:
    # Approved and triggered, edited before it ran, then reverted by its editor: the version
    # is back, and it needs a new approval and a new trigger, as after any other landing.
    repo = proposed_qa_release(tmp_path, people)
    approval = repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    original = repo.blob(QA_PLAN)
    repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"}, PORTAL)})
    repo.git("revert", "--no-edit", "HEAD", env={"GIT_COMMITTER_EMAIL": "alice@example.com"})
    assert repo.blob(QA_PLAN) == original
    revert = repo.head()
    decision = repo.decide()[QA_PLAN]
    assert (decision.status, decision.triggered_by, decision.approvers) == ("waiting", None, ())
    assert (
        f"approval in {approval[:12]} by ravi does not count: "
        f"it predates this version's return to main in {revert[:12]}"
    ) in decision.notes
    assert [wait.what for wait in decision.waits] == ["trigger", "approval"]


def test_an_editor_whose_commit_landed_in_someone_elses_merge_does_not_approve(
    tmp_path: Path, people: People
) -> None:
    # diana's only edit is on a branch that alice merged: the merge is alice's, the entry is
    # still diana's, and so is the plan she would approve.
    repo = SeedRepo.create(tmp_path, people)
    repo.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    with repo.branch("portal"):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    repo.merge(people.alice, "portal")
    approval = repo.approve(people.diana, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    decision = repo.decide()[QA_PLAN]
    assert (decision.status, decision.approvers) == ("waiting", ())
    assert (
        f"approval in {approval[:12]} by diana does not count: diana edited the plan, and "
        "editors do not approve their own plans"
    ) in decision.notes


def test_a_plan_only_the_repositorys_loosened_schema_accepts_is_refused(
    tmp_path: Path, people: People
) -> None:
    # root may change schemas/, but they are for editors: the reconciler uses its own.
    shipped = (schemas_dir() / "plan.schema.json").read_text()
    loosened = shipped.replace('"additionalProperties": false', '"x": 1', 1)
    repo = SeedRepo.create(tmp_path, people, extra={"schemas/plan.schema.json": loosened})
    text = dev_plan(ECOMMERCE) + "priority: skip-the-gates\n"
    repo.commit(people.alice, {DEV_PLAN: text})
    decision = repo.decide()[DEV_PLAN]
    assert decision.status == "refused"
    assert decision.reasons[0].endswith(f"{DEV_PLAN}:7:1: unknown key 'priority'")


def test_a_trigger_made_with_a_key_revoked_since_no_longer_counts(
    tmp_path: Path, people: People
) -> None:
    # A thief triggered production with olga's stolen key; ops revoke it before the pass.
    repo = proposed_qa_release(tmp_path, people)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.approve(people.ravi, PROD_PLAN)
    repo.approve(people.carol, PROD_PLAN)
    trigger = repo.trigger(people.olga, PROD_PLAN)
    assert decided_as_the_service_would(repo)[PROD_PLAN].triggered_by == "olga"
    repo.revoke(people.olga.public_key + "\n")
    decision = decided_as_the_service_would(repo)[PROD_PLAN]
    assert decision.triggered_by is None
    fingerprint = parse_public_key(people.olga.public_key).fingerprint
    assert (
        f"trigger in {trigger[:12]} by olga does not count: olga's identity no longer "
        f"verifies: signature not accepted (key {fingerprint} is revoked "
        f"(gpg.ssh.revocationFile)), and this change needs a verified signature"
    ) in decision.notes


def decided_as_the_service_would(repo: SeedRepo) -> dict[str, Decision]:
    """Every plan decided through a session, which reads git's configuration, at SUITE_NOW."""
    with open_session(repo.path, branch=None, state_dir=repo.state_dir, now=SUITE_NOW) as session:
        return {decision.path: decision for decision in session.decisions()}


# -- run decisions, as values: no Git, no clock but the `now` given -------------------------

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # any instant: these environments have no gates
QA = "quality-assurance"
ONE_STEP_LEASE = timedelta(seconds=60) + LEASE_MARGIN  # one step, a 60 s timeout, no retries


def _environment(name: str = QA, **gates: Any) -> Environment:
    return Environment(
        name=name,
        order=1,
        promotes_from=None,
        permissions=dict(DEFAULT_PERMISSIONS),
        gates=Gates(**gates),
        driver=DriverSpec("local", timeout=60),
    )


def _policy(*environments: Environment) -> Policy:
    people = {"olga": "deployment", "ravi": "tech-lead", "alice": "developer"}
    users = {user: Identity(user, user.title(), (), (f"SHA256:{user}",)) for user in people}
    team = Team("shop", ("ecommerce",), people)
    return Policy(
        users=users,
        service_accounts={},
        hosts={},
        settings=frozenset(),
        projects=frozenset(),
        teams={"shop": team},
        environments={environment.name: environment for environment in environments},
        application_owner={"ecommerce": "shop"},
        key_owner={f"SHA256:{user}": user for user in people},
        email_owner={},
        role_holders={role: frozenset({user}) for user, role in people.items()},
        signers=frozenset(people),
    )


def _signed_by(commit: str, user: str) -> CommitFacts:
    return CommitFacts(commit, "good", f"SHA256:{user}", "", f"{user}@example.com", "", 1)


def _on_main(name: str, target: str = QA, blob: str = "b" * 40) -> OnMain:
    data = {
        "name": name,
        "target": target,
        "applications": [{"name": "ecommerce", "version": "1.4.0"}],
        "state": "ready",
    }
    return OnMain(f"plans/{name}.yaml", blob, data, ())


def _run(on_main: OnMain, number: int, result: RunResult, **more: Any) -> Run:
    name = Path(on_main.path).stem
    values: dict[str, Any] = {
        "id": f"{name}.{number}",
        "plan": PlanRef(on_main.path, on_main.blob),
        "environment": QA,
        "result": result,
        "instance": "elsewhere",
        "lease_until": T0 + timedelta(minutes=5),
        "started": "5" * 40,
        "finished": None if result == "started" else "6" * 40,
        "triggered_by": "olga",
        "approved_by": (),
        "retry_of": None,
        "started_at": T0 - timedelta(minutes=1),
        "started_seq": 2,
        "finished_seq": 0 if result == "started" else 3,
    }
    return Run(**{**values, **more})


def _history(
    *plans: OnMain, runs: tuple[Run, ...] = (), environment: Environment | None = None
) -> History:
    """Each plan landed by olga's true merge (a trigger), seq 1."""
    landings = {
        PlanRef(item.path, item.blob): Landed(1, f"{index}" * 40, "olga", "signed", True, ())
        for index, item in enumerate(plans, start=1)
    }
    return History(
        policy=_policy(environment or _environment()),
        plans=plans,
        landings=landings,
        signoffs=(),
        runs=runs,
        editors={},
        first_seen={},
        commit_times={landed.commit: T0 - timedelta(hours=1) for landed in landings.values()},
        facts={landed.commit: _signed_by(landed.commit, "olga") for landed in landings.values()},
        deployed={},
    )


def _runs(history: History, facts: RunFacts | None = None) -> RunDecisions:
    return decide_runs(history, decide(history, T0), T0, facts or RunFacts("here"))


def test_an_executable_plan_starts_as_its_plans_next_run_with_a_lease() -> None:
    plan_on_main = _on_main("2026-11-qa-release")
    earlier = _run(plan_on_main, 1, "interrupted", plan=PlanRef(plan_on_main.path, "a" * 40))
    decided = _runs(_history(plan_on_main, runs=(earlier,)))
    [start] = decided.starts
    assert (start.run_id, start.environment, start.decision.triggered_by) == (
        "2026-11-qa-release.2",
        QA,
        "olga",
    )
    assert start.lease_until == T0 + ONE_STEP_LEASE
    assert (decided.interrupted, decided.refused, dict(decided.held)) == ((), (), {})


def test_a_lease_covers_every_attempt_of_every_step_and_the_backoffs() -> None:
    environment = replace(_environment(), driver=DriverSpec("local", timeout=100, retries=2))
    # 3 steps, each 3 attempts of 100 s and backoffs of 1 s and 2 s between them.
    assert lease_for(environment, 3) == timedelta(seconds=3 * (300 + 3)) + LEASE_MARGIN


def test_an_environment_with_a_run_in_progress_starts_nothing() -> None:
    running, waiting = _on_main("2026-11-hotfix", blob="c" * 40), _on_main("2026-11-qa-release")
    started = _run(running, 1, "started")
    decided = _runs(_history(running, waiting, runs=(started,)))
    assert [item.status for item in decided.decisions] == ["executable", "done"]
    assert (decided.starts, decided.interrupted) == ((), ())


def test_a_run_whose_lease_passed_is_marked_interrupted_and_nothing_starts() -> None:
    plan_on_main = _on_main("2026-11-hotfix")
    lapsed = _run(plan_on_main, 1, "started", lease_until=T0 - timedelta(seconds=1))
    other = _on_main("2026-11-qa-release", blob="c" * 40)
    decided = _runs(_history(plan_on_main, other, runs=(lapsed,)))
    [interrupted] = decided.interrupted
    assert interrupted.run == lapsed
    assert interrupted.reason.code == "run.lease-passed"
    assert interrupted.reason.facts["lease_until"] == lapsed.lease_until
    assert interrupted.reason.text == (
        f"run 2026-11-hotfix.1 was started by elsewhere, whose lease passed at "
        f"{lapsed.lease_until.isoformat()} without a finish record"
    )
    assert decided.bookkeeping
    assert decided.starts == ()  # the record first; the next round decides on it


def test_a_run_within_its_lease_is_left_to_its_reconciler() -> None:
    plan_on_main = _on_main("2026-11-hotfix")
    decided = _runs(_history(plan_on_main, runs=(_run(plan_on_main, 1, "started"),)))
    assert decided.interrupted == ()


def test_a_run_this_reconciler_started_and_no_longer_runs_is_interrupted_at_once() -> None:
    plan_on_main = _on_main("2026-11-hotfix")
    own = _run(plan_on_main, 1, "started", instance="here")
    history = _history(plan_on_main, runs=(own,))
    [interrupted] = _runs(history).interrupted
    assert interrupted.reason.code == "run.abandoned"
    # Running it still, or its finish record waiting in the outbox: not interrupted.
    assert _runs(history, RunFacts("here", in_flight=frozenset({own.id}))).interrupted == ()
    assert _runs(history, RunFacts("here", unpublished=frozenset({own.id}))).interrupted == ()


def test_a_plan_that_can_never_run_is_refused_once() -> None:
    stray = _on_main("2026-11-stray", target="nowhere")
    history = _history(stray)
    decided = _runs(history)
    [refused] = decided.refused
    assert [(item.code, item.text) for item in refused.why] == [
        ("plan.unknown-target", "target 'nowhere' is not an environment")
    ]
    assert decided.starts == ()
    recorded = RunFacts("here", recorded=frozenset({refused.ref}))
    assert _runs(history, recorded).refused == ()
    assert _runs(replace(history, refused=frozenset({refused.ref}))).refused == ()


def test_a_plan_whose_driver_cannot_load_is_held_not_started() -> None:
    problem = ConfigError("driver 'helm' is not installed here")
    decided = _runs(
        _history(_on_main("2026-11-qa-release")), RunFacts("here", drivers={QA: problem})
    )
    [held] = decided.decisions
    assert (held.status, [wait.reason.code for wait in held.waits]) == (
        "waiting",
        ["driver.unavailable"],
    )
    assert dict(decided.held) == {QA: problem}
    assert decided.starts == ()


def test_a_driver_problem_of_an_environment_with_nothing_to_run_holds_nothing() -> None:
    problem = ConfigError("driver 'helm' is not installed here")
    facts = RunFacts("here", drivers={"production": problem})
    decided = _runs(_history(_on_main("2026-11-qa-release")), facts)
    assert dict(decided.held) == {}
    assert len(decided.starts) == 1


def test_a_reconciler_asked_to_stop_starts_nothing() -> None:
    decided = _runs(_history(_on_main("2026-11-qa-release")), RunFacts("here", stopping=True))
    assert decided.starts == ()


def test_run_ids_count_per_plan_and_skip_what_is_taken() -> None:
    taken = ["2026-11-qa.1", "2026-11-qa.3", "2026-11-qa-release.7", "2026-11-qa.x"]
    assert next_run_id("2026-11-qa", taken) == "2026-11-qa.4"
    assert next_run_id("2026-11-new", taken) == "2026-11-new.1"


def test_a_retry_of_a_run_that_led_to_a_successful_retry_is_no_note_of_the_done_version() -> None:
    # It read "retry of X.1 ... does not count: only interrupted runs are retried, and X.1
    # succeeded": the outcome of X.2, the retry that this very Retry-Run started.
    plan_on_main = _on_main("2026-11-qa-release")
    first = _run(plan_on_main, 1, "interrupted")
    retried = _run(plan_on_main, 2, "succeeded", retry_of=first.id, started_seq=5, finished_seq=6)
    retry = Signoff("retry", "7" * 40, 4, None, first.id, "olga", "signed", True, True, (), T0)
    late = replace(retry, commit="8" * 40, seq=7)
    history = replace(_history(plan_on_main, runs=(first, retried)), signoffs=(retry, late))
    [decision] = decide(history, T0)
    assert decision.status == "done"
    assert decision.notes == (
        f"retry of {first.id} in {late.commit[:12]} does not count: "
        f"{first.id} was already retried as run {retried.id}",
    )


def test_the_retry_rule_is_one_rule() -> None:
    plan_on_main = _on_main("2026-11-qa-release")
    interrupted = _run(plan_on_main, 1, "interrupted", finished_seq=3)
    codes = {
        "early": retry_refusal(interrupted, None, 2),
        "in time": retry_refusal(interrupted, None, 3),
        "again": retry_refusal(interrupted, "2026-11-qa-release.2", 9),
        "succeeded": retry_refusal(replace(interrupted, result="succeeded"), None, 9),
        "unknown run": retry_refusal(None, None, 9),
    }
    assert {key: item.code if item else None for key, item in codes.items()} == {
        "early": "retry.early",
        "in time": None,
        "again": "retry.repeated",
        "succeeded": "retry.not-interrupted",
        "unknown run": None,
    }


def test_approvals_fill_rules_as_a_maximum_matching() -> None:
    # ravi holds both roles: taken in turn he would fill the first rule and leave the second
    # waiting, although alice could take the first.
    roles = [frozenset({"ravi", "alice"}), frozenset({"ravi"})]
    assert match_approvers(["ravi", "alice"], [1, 1], roles) == [["alice"], ["ravi"]]
    assert most_approvals({"lead": 1, "qa": 1}, {"lead": {"ravi", "alice"}, "qa": {"ravi"}}) == 2
    assert most_approvals({"lead": 1, "qa": 1}, {"lead": {"ravi"}, "qa": {"ravi"}}) == 1


def test_an_approval_refusal_names_its_rule_by_code() -> None:
    editor = approval_refusal("alice", {"alice"}, set())
    again = approval_refusal("ravi", set(), {"ravi"})
    assert (editor and editor.code, again and again.code) == (EDITOR, REPEATED)
    assert approval_refusal("ravi", {"alice"}, {"olga"}) is None
