"""The value builders hold what authorisation stores: a story told as values and the same
story committed to Git give `decide` the same inputs, so the value specifications in
tests/test_decide.py decide what the reconciler would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.statestore import StateStore
from reconciler.app.authorise import Authoriser
from reconciler.app.pipeline import gather
from reconciler.core.config import build_plan
from reconciler.core.decide_values import History
from reconciler.core.sshkeys import parse_public_key
from tests import builders
from tests.clock import SUITE_NOW
from tests.people import People
from tests.repositories import ConfigRepo
from tests.scenarios import QA_PLAN, proposed_qa_release, ran


def gathered(repo: ConfigRepo) -> History:
    """decide's inputs as a reconciler pass reads them from `repo`, at SUITE_NOW."""
    with GitRepo(repo.path) as git:
        store = StateStore(repo.state_dir, "main")
        try:
            authoriser = Authoriser(git, store, now=SUITE_NOW)
            tip = git.resolve("main")
            authoriser.run(tip)
            return gather(authoriser, tip)
        finally:
            store.close()


def comparable(history: History, fingerprints: dict[str, str]) -> dict[str, Any]:
    """What `history` says, without what differs by construction: commit ids, sequence
    numbers, times, and keys (each fingerprint named by its owner)."""

    def named(text: str) -> str:
        for fingerprint, owner in fingerprints.items():
            text = text.replace(fingerprint, f"<{owner}'s key>")
        return text

    return {
        "plans": [
            (item.path, item.blob, build_plan(item.data or {}), item.problems)
            for item in history.plans
        ],
        "landings": {
            ref: (
                landed.actor,
                named(landed.how),
                landed.triggered,
                tuple(map(named, landed.reasons)),
                landed.style,
                landed.squashed_by,
            )
            for ref, landed in history.landings.items()
        },
        "signoffs": [
            (
                item.kind,
                item.plan,
                item.run,
                item.actor,
                named(item.how),
                item.verified,
                item.held,
                tuple(map(named, item.reasons)),
            )
            for item in history.signoffs
        ],
        "runs": [
            (run.id, run.plan, run.environment, run.result, run.instance, run.lease_until)
            for run in history.runs
        ],
        "editors": dict(history.editors),
        "deployed": history.deployed,
    }


def test_a_story_told_as_values_gives_decide_what_the_same_story_in_git_gives_it(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.approve(people.alice, QA_PLAN)  # an editor's
    repo.trigger(people.alice, QA_PLAN)  # by one who may not deploy
    repo.trigger(people.olga, QA_PLAN, signed=False)  # by committer email
    ran(repo, QA_PLAN, "2026-11-qa-release.1", result="interrupted")
    repo.signoff(people.olga, "Retry-Run", "2026-11-qa-release.1")
    story = builders.proposed_qa_release()
    story.approve("ravi", QA_PLAN)
    story.approve("alice", QA_PLAN)
    story.trigger("alice", QA_PLAN)
    story.trigger("olga", QA_PLAN, signed=False)
    story.ran(QA_PLAN, "2026-11-qa-release.1", result="interrupted")
    story.retry("olga", "2026-11-qa-release.1")

    in_git = comparable(
        gathered(repo),
        {parse_public_key(p.public_key).fingerprint: p.id for p in people.by_id.values()},
    )
    as_values = comparable(story.history(), {builders.fingerprint(p): p for p in people.by_id})

    assert as_values == in_git
    assert (len(in_git["signoffs"]), len(in_git["runs"])) == (5, 1)
