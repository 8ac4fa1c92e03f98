"""Stories the suite tells once per worker and copies (tests/repositories.py,
tests/scenarios.py): a copy must be the repository git makes when the story is told
again, and go on exactly as it would, or the tests that start from it would judge
another history than their own."""

from __future__ import annotations

from pathlib import Path

from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import QA_PLAN, _proposed_qa_release, proposed_qa_release, qa_plan


def commits_and_builds(repo: SeedRepo) -> tuple[str, list[str]]:
    """Every commit of main, with its tree and signature, and the builds under the driver
    root, by path."""
    log = repo.git("log", "--format=%H %T %G? %ct%n%B", "main")
    builds = sorted(str(path.relative_to(repo.driver_root)) for path in repo.driver_root.rglob("*"))
    return log, builds


def test_a_copied_proposed_qa_release_has_the_commits_and_builds_git_makes(
    tmp_path: Path, people: People
) -> None:
    copy = proposed_qa_release(tmp_path / "copy", people)
    told = _proposed_qa_release(tmp_path / "told", people)
    assert commits_and_builds(copy) == commits_and_builds(told)
    assert copy.git("status", "--porcelain") == ""


def test_a_copied_proposed_qa_release_goes_on_with_the_commits_git_makes_after_it(
    tmp_path: Path, people: People
) -> None:
    # The clock of its commits and the count of its records go on where the story's stand.
    heads = []
    for repo in (
        proposed_qa_release(tmp_path / "copy", people),
        _proposed_qa_release(tmp_path / "told", people),
    ):
        repo.approve(people.ravi, QA_PLAN)
        repo.commit(people.alice, {QA_PLAN: qa_plan()})
        heads.append(repo.deployed("quality-assurance", {"ecommerce": "1.4.0"}))
    copy, told = heads
    assert copy == told
