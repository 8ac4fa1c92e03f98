"""The pull-request check decides only the plans the merge can reach (`judge.reached`), and
says exactly what it said when it decided every plan on both sides.

Each story is checked twice from a fresh state (CI's), in-process: as it runs, and with the
rule answering "every plan" (the check before it was narrowed). The two reports must be the
same, key by key, and the rule must have narrowed where it may.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from reconciler.app import mergeable
from reconciler.app.session import open_session
from reconciler.cli.mergeable_output import check_json
from reconciler.core import judge
from reconciler.core.judge import LandingJudgement
from tests.clock import SUITE_NOW
from tests.configrepo import example_file
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import DEV_PLAN, ECOMMERCE, PORTAL_DEV, QA_PLAN, dev_plan, qa_plan, ran

OTHER_DEV_PLAN = "plans/2026-11-dev-hotfix.yaml"
QA_RUN = f"{Path(QA_PLAN).stem}.1"

Reach = frozenset[str] | None


def judged(
    repo: SeedRepo, state: Path, monkeypatch: pytest.MonkeyPatch, *, everything: bool
) -> tuple[dict[str, Any], list[Reach]]:
    """The check of HEAD into main in JSON, from the fresh state `state`, and what the rule
    said the merge reaches; `everything`: with every plan decided, as before the rule."""
    said: list[Reach] = []
    rule = judge.reached

    def recorded(changed: Iterable[str], judgement: LandingJudgement) -> Reach:
        said.append(None if everything else rule(changed, judgement))
        return said[-1]

    with monkeypatch.context() as patch:
        patch.setattr(judge, "reached", recorded)
        with open_session(repo.path, branch="main", state_dir=state, now=SUITE_NOW) as session:
            tested = session.repo.resolve("HEAD")
            result = mergeable.check(session, tested, "HEAD")
    return check_json(result), said


def a_main_with_two_plans(tmp_path: Path, people: People) -> SeedRepo:
    """The seed story with a development plan and a QA plan on main, the QA plan's run
    interrupted."""
    repo = SeedRepo.create(tmp_path, people)
    repo.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.erik, {DEV_PLAN: dev_plan(PORTAL_DEV)})  # it waits for a trigger
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, QA_RUN, result="interrupted")
    return repo


def triggers_the_dev_plan(repo: SeedRepo, people: People) -> None:
    repo.trigger(people.diana, DEV_PLAN)


def adds_a_plan(repo: SeedRepo, people: People) -> None:
    repo.commit(people.diana, {OTHER_DEV_PLAN: dev_plan(PORTAL_DEV)})


def edits_a_plan_and_takes_it_back(repo: SeedRepo, people: People) -> None:
    before = (repo.path / QA_PLAN).read_text()
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE, notes="maybe")})
    repo.commit(people.alice, {QA_PLAN: before})


def deletes_a_plan(repo: SeedRepo, people: People) -> None:
    repo.commit(people.alice, {QA_PLAN: None})


def edits_an_environment(repo: SeedRepo, people: People) -> None:
    development = example_file("environments/development.yaml")
    repo.commit(people.alice, {"environments/development.yaml": development + "# noted\n"})


def locks_development(repo: SeedRepo, people: People) -> None:
    repo.signoff(people.alice, "Lock", "development")


def retries_an_interrupted_run(repo: SeedRepo, people: People) -> None:
    # A retry names a run, not a plan: the run was started on main, before the branch.
    repo.signoff(people.olga, "Retry-Run", QA_RUN)


def edits_a_readme(repo: SeedRepo, people: People) -> None:
    repo.commit(people.alice, {"README.md": "notes\n"})


def renames_a_plan(repo: SeedRepo, people: People) -> None:
    repo.git("mv", QA_PLAN, OTHER_DEV_PLAN)
    repo.commit(people.alice)


def deletes_a_plan_and_brings_it_back(repo: SeedRepo, people: People) -> None:
    # The tree ends as main's: only the landing's edits say the plan was touched.
    before = (repo.path / QA_PLAN).read_text()
    repo.commit(people.alice, {QA_PLAN: None})
    repo.commit(people.alice, {QA_PLAN: before})


def links_a_plan_to_another(repo: SeedRepo, people: People) -> None:
    (repo.path / OTHER_DEV_PLAN).symlink_to(Path(QA_PLAN).name)
    repo.git("add", OTHER_DEV_PLAN)
    repo.commit(people.alice)


def adds_a_folder_named_as_a_plan(repo: SeedRepo, people: People) -> None:
    # Misplaced (plans/ holds files directly): no plan, so no plan's decision.
    repo.commit(people.alice, {f"{OTHER_DEV_PLAN}/{Path(DEV_PLAN).name}": dev_plan(PORTAL_DEV)})


def triggers_in_its_own_merge_commit(repo: SeedRepo, people: People) -> None:
    # A merge commit's message never counts: the trigger reaches no plan.
    repo.git("checkout", "-q", "-b", "side")
    repo.commit(people.alice, {"README.md": "notes\n"})
    repo.git("checkout", "-q", "pull-request")
    repo.commit(people.alice, {"NOTES.md": "notes\n"})
    trailer = f"Deploy-Plan: {DEV_PLAN}@{repo.blob(DEV_PLAN)}"
    repo.merge(people.diana, "side", f"Merge side\n\n{trailer}")


@pytest.mark.parametrize(
    ("story", "reach", "listed"),
    [
        (triggers_the_dev_plan, frozenset({DEV_PLAN}), [DEV_PLAN]),
        (adds_a_plan, frozenset({OTHER_DEV_PLAN}), [OTHER_DEV_PLAN]),
        (edits_a_plan_and_takes_it_back, frozenset({QA_PLAN}), []),
        (deletes_a_plan, frozenset({QA_PLAN}), [QA_PLAN]),
        (edits_an_environment, None, None),
        (locks_development, None, [DEV_PLAN]),
        (retries_an_interrupted_run, None, [QA_PLAN]),
        (edits_a_readme, frozenset(), []),
        (renames_a_plan, frozenset({QA_PLAN, OTHER_DEV_PLAN}), [OTHER_DEV_PLAN, QA_PLAN]),
        (deletes_a_plan_and_brings_it_back, frozenset({QA_PLAN}), []),
        (links_a_plan_to_another, frozenset({OTHER_DEV_PLAN}), [OTHER_DEV_PLAN]),
        (adds_a_folder_named_as_a_plan, frozenset(), []),
        (triggers_in_its_own_merge_commit, frozenset(), []),
    ],
)
def test_the_check_says_what_deciding_every_plan_said(
    tmp_path: Path,
    people: People,
    monkeypatch: pytest.MonkeyPatch,
    story: Callable[[SeedRepo, People], None],
    reach: Reach,
    listed: list[str] | None,
) -> None:
    repo = a_main_with_two_plans(tmp_path, people)
    with repo.branch("pull-request"):
        story(repo, people)
    repo.git("checkout", "-q", "pull-request")

    narrowed, said = judged(repo, tmp_path / "narrowed", monkeypatch, everything=False)
    every, _ = judged(repo, tmp_path / "every", monkeypatch, everything=True)

    assert said == [reach]
    assert narrowed == every
    if listed is not None:  # the plans the merge changes, or whose decision it changes
        assert [item["plan"] for item in narrowed["plans"]] == listed
