"""The landing judge and the trailer rules as values: no Git, no store, milliseconds.

The policy is the example teams.yaml and environments/ of the repository; commits,
their facts, blobs and messages are written here as values (`Values` answers what
the judge asks, `judge.Content`). The Git-backed stories of the same rules are in
test_authorise.py, test_decide.py and the attack files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.config import build_environment, build_policy
from reconciler.core.events import Record, Signoff
from reconciler.core.fields import FieldMap, plan_fields
from reconciler.core.identity import CommitFacts
from reconciler.core.judge import LandingJudgement, judge_landing
from reconciler.core.landed import LandedCommit, Landing, State
from reconciler.core.model import Policy
from reconciler.core.trailer_rules import MERGE_MESSAGE, OFF_THE_LINE

ROOT = Path(__file__).resolve().parent.parent
PLAN = "plans/2026-11-qa-release.yaml"
WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
ANCHOR = "a" * 40
MAIN = "b" * 40  # main's tip before the landing, and its first parent
OLD, NEW = "1" * 40, "2" * 40  # two versions of the plan
ECOMMERCE_OLD = {"name": "ecommerce", "version": "1.4.0"}
ECOMMERCE_NEW = {"name": "ecommerce", "version": "1.5.0"}


def example_policy() -> Policy:
    teams = yaml.safe_load((ROOT / "teams.yaml").read_text())
    environments = [
        build_environment(yaml.safe_load(path.read_text()))
        for path in sorted((ROOT / "environments").glob("*.yaml"))
    ]
    return build_policy(teams, environments)


POLICY = example_policy()
FINGERPRINT = {owner: key for key, owner in POLICY.key_owner.items()}


def qa_plan(*applications: Mapping[str, str]) -> FieldMap:
    return plan_fields(
        {
            "name": "2026-11-qa-release",
            "source": "development",
            "target": "quality-assurance",
            "applications": list(applications),
            "state": "ready",
        }
    )


def signed_by(commit: str, who: str, parents: int = 1) -> CommitFacts:
    """A commit with a good signature by `who`'s key in the example teams.yaml."""
    return CommitFacts(
        commit=commit,
        signature_status="good",
        fingerprint=FINGERPRINT[who],
        signature_reason="",
        committer_email=f"{who}@example.com",
        author_email=f"{who}@example.com",
        parents=parents,
    )


def unsigned_by(commit: str, email: str, parents: int = 1) -> CommitFacts:
    return CommitFacts(
        commit=commit,
        signature_status="unsigned",
        fingerprint=None,
        signature_reason="the commit is not signed",
        committer_email=email,
        author_email=email,
        parents=parents,
    )


@dataclass
class Values:
    """What the judge asks, answered from values (`judge.Content`)."""

    facts_of: dict[str, CommitFacts] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    blobs: dict[tuple[str, str], str] = field(default_factory=dict)  # outside the landing
    versions: dict[str, FieldMap] = field(default_factory=dict)  # blob -> fields
    records: dict[str, list[Record]] = field(default_factory=dict)

    def facts(self, commit: str) -> CommitFacts:
        return self.facts_of[commit]

    def committed_at(self, commit: str) -> datetime:
        return WHEN

    def message(self, commit: str) -> tuple[str, str]:
        return self.messages.get(commit, "a change\n"), ""

    def blob_at(self, commit: str, path: str) -> str | None:
        return self.blobs.get((commit, path))

    def fields(self, path: str, blob: str | None, mode: str) -> FieldMap:
        return {} if blob is None else self.versions[blob]

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        return ancestor == ANCHOR

    def records_of(self, run: str) -> Sequence[Record]:
        return self.records.get(run, [])

    def policy_problem(
        self, effective: Mapping[str, FieldMap], teams_blob: str | None
    ) -> str | None:
        return None


def plan_state() -> State:
    """main holds the plan at OLD, and OLD is effective."""
    return State(effective={PLAN: qa_plan(ECOMMERCE_OLD)}, dirty={}, anchor=ANCHOR)


def content(**more: Any) -> Values:
    values = Values(**more)
    values.blobs[(MAIN, PLAN)] = OLD
    values.versions.update({OLD: qa_plan(ECOMMERCE_OLD), NEW: qa_plan(ECOMMERCE_NEW)})
    return values


def edit(commit: str) -> Landing:
    """A landing of one commit on main that changes the plan from OLD to NEW."""
    landed = LandedCommit(commit, (MAIN,), {PLAN: (NEW, "100644")})
    return Landing(seq=7, commit=commit, first_parent=MAIN, commits=(landed,))


def empty(commit: str, *parents: str) -> LandedCommit:
    return LandedCommit(commit, parents or (MAIN,), {})


def judged(landing: Landing, values: Values, state: State | None = None) -> LandingJudgement:
    return judge_landing(POLICY, state or plan_state(), landing, values, cap=1000)


# -- vouching --------------------------------------------------------------------------------


def test_an_edit_by_an_author_who_may_make_it_becomes_effective() -> None:
    commit = "c" * 40
    values = content(facts_of={commit: signed_by(commit, "alice")})  # ecommerce's tech lead
    judgement = judged(edit(commit), values)
    assert judgement.verdict.authorised
    assert judgement.verdict.actor == "alice"
    assert judgement.verdict.changed == (PLAN,)
    assert judgement.effective == ((PLAN, qa_plan(ECOMMERCE_NEW)),)
    assert judgement.dirty == ((PLAN, None),)
    (made,) = judgement.edits
    assert (made.actor, made.change, made.fields) == ("alice", "edited", ("the ecommerce entry",))
    (version,) = judgement.versions
    assert (version.path, version.blob, version.actor) == (PLAN, NEW, "alice")
    assert judgement.editors == {PLAN: frozenset({"alice"})}


def test_an_edit_by_an_author_who_may_not_make_it_is_refused_and_keeps_the_old_state() -> None:
    commit = "c" * 40
    # erik develops customer-portal, not ecommerce; QA takes actors from their email.
    values = content(facts_of={commit: unsigned_by(commit, "erik@example.com")})
    judgement = judged(edit(commit), values)
    assert not judgement.verdict.authorised
    (refusal,) = judgement.verdict.refusals
    assert (refusal.path, refusal.actor, refusal.commit) == (PLAN, "erik", commit)
    assert refusal.needed.startswith("plan.edit on quality-assurance")
    # The effective state is what it was; main's content parts from it, erik to blame.
    assert judgement.effective == ()
    assert judgement.verdict.changed == ()
    (path, blame), *_ = judgement.dirty
    assert path == PLAN
    assert blame is not None
    assert set(blame.values()) == {refusal}
    assert judgement.versions == ()
    assert judgement.edits[0].refused == ("the ecommerce entry",)


def test_a_landed_commit_that_holds_no_identity_refuses_its_landing() -> None:
    commit = "c" * 40
    copy = CommitFacts(commit, "copied", None, "a copy of 0123's signed payload", "", "", 1)
    judgement = judged(edit(commit), content(facts_of={commit: copy}))
    assert not judgement.verdict.authorised
    assert judgement.verdict.unattributed == ((commit, "a copy of 0123's signed payload"),)


def test_a_landing_of_more_commits_than_the_cap_is_refused_whole() -> None:
    commit = "c" * 40
    values = content(facts_of={commit: signed_by(commit, "alice")})
    judgement = judge_landing(POLICY, plan_state(), edit(commit), values, cap=0)
    (refusal,) = judgement.verdict.refusals
    assert refusal.needed == "a landing of at most 0 commits"
    assert judgement.effective == ()


# -- trailer rules ---------------------------------------------------------------------------


def test_an_approval_in_an_empty_commit_on_main_counts() -> None:
    commit = "d" * 40
    values = content(
        facts_of={commit: signed_by(commit, "ravi")},
        messages={commit: f"approve\n\nApprove-Plan: {PLAN}@{OLD}\n"},
    )
    judgement = judged(Landing(8, commit, MAIN, (empty(commit),)), values)
    (signoff,) = judgement.signoffs
    assert isinstance(signoff, Signoff)
    assert (signoff.kind, signoff.actor, signoff.held) == ("approve", "ravi", True)
    assert judgement.ignored == ()


def test_an_approval_trailer_in_a_merge_commit_is_ignored_with_its_reason() -> None:
    side, merge = "e" * 40, "f" * 40
    values = content(
        facts_of={
            side: signed_by(side, "ravi"),
            merge: signed_by(merge, "ravi", parents=2),
        },
        # A host copies the pull request's text into the merge commit's message.
        messages={merge: f"Merge pull request #7\n\nApprove-Plan: {PLAN}@{OLD}\n"},
    )
    landing = Landing(8, merge, MAIN, (empty(side), empty(merge, MAIN, side)))
    judgement = judged(landing, values)
    assert judgement.signoffs == ()
    (ignored,) = judgement.ignored
    assert (ignored.commit, ignored.reason) == (merge, MERGE_MESSAGE)
    assert ignored.trailers == (("Approve-Plan", (f"{PLAN}@{OLD}",)),)
    assert ignored.actor == "ravi"
    assert judgement.verdict.authorised  # the landing itself changes nothing


RECORD = (
    "deploy 2026-11-qa-release\n\n"
    "Result: started\n"
    f"Plan: {PLAN}@{OLD}\n"
    "Run: 2026-11-qa-release.1\n"
    "Environment: quality-assurance\n"
)


def test_a_record_not_signed_by_the_service_is_ignored() -> None:
    commit = "9" * 40
    values = content(facts_of={commit: signed_by(commit, "alice")}, messages={commit: RECORD})
    judgement = judged(Landing(9, commit, MAIN, (empty(commit),)), values)
    assert judgement.records == ()
    (ignored,) = judgement.ignored
    assert ignored.reason.startswith(
        "a record counts only when signed by the reconciler service account (signed with "
        "alice's key"
    )


def test_a_record_signed_by_the_service_counts_once() -> None:
    first, again = "9" * 40, "8" * 40
    values = content(
        facts_of={first: signed_by(first, "reconciler"), again: signed_by(again, "reconciler")},
        messages={first: RECORD, again: RECORD},
    )
    (record,) = judged(Landing(9, first, MAIN, (empty(first),)), values).records
    assert (record.commit, record.run, record.result) == (first, "2026-11-qa-release.1", "started")
    values.records[record.run or ""] = [record]
    judgement = judged(Landing(10, again, first, (empty(again, first),)), values)
    assert judgement.records == ()
    (ignored,) = judgement.ignored
    assert ignored.commit == again
    assert ignored.reason == f"the run already started in {first[:12]}"
    assert ignored.record is not None
    assert ignored.record.commit == again


def test_a_service_record_that_comes_in_through_a_merge_is_ignored() -> None:
    """Another branch's reconciler made it; merged, it says nothing about this branch."""
    side, merge = "9" * 40, "f" * 40
    values = content(
        facts_of={side: signed_by(side, "reconciler"), merge: signed_by(merge, "ravi", 2)},
        messages={side: RECORD},
    )
    landing = Landing(9, merge, MAIN, (empty(side), empty(merge, MAIN, side)))
    judgement = judged(landing, values)
    assert judgement.records == ()
    (ignored,) = judgement.ignored
    assert (ignored.commit, ignored.reason) == (side, OFF_THE_LINE)


def test_a_miscased_trailer_key_is_ignored_naming_the_key_to_write() -> None:
    commit = "d" * 40
    values = content(
        facts_of={commit: signed_by(commit, "ravi")},
        messages={commit: f"approve\n\napprove-plan: {PLAN}@{OLD}\n"},
    )
    judgement = judged(Landing(8, commit, MAIN, (empty(commit),)), values)
    (ignored,) = judgement.ignored
    assert "write 'Approve-Plan'" in ignored.reason
    assert judgement.signoffs == ()
