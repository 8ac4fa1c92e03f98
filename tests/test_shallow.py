"""A shallow clone (`git clone --depth`) holds its oldest commits without their parents,
and git reads each as a root. A walk that reached one would trust its content whole,
refused changes included: it is refused instead, unless the state already holds it.

CI checkouts are shallow by default (actions/checkout fetches one commit).
"""

from __future__ import annotations

from pathlib import Path

from tests.configrepo import reconciler
from tests.people import People
from tests.repositories import SeedRepo, run_git
from tests.scenarios import DEV_PLAN, ECOMMERCE, dev_plan


def shallow_clone(repo: SeedRepo, depth: int, name: str = "shallow") -> Path:
    """A clone of `repo`'s main holding its last `depth` commits, as CI checks out."""
    path = repo.path.parent / name
    url = f"file://{repo.path}"  # --depth is ignored for a plain local path
    run_git(repo.path.parent, "clone", "-q", f"--depth={depth}", "-b", "main", url, str(path))
    assert run_git(path, "rev-parse", "--is-shallow-repository").strip() == "true"
    return path


def test_a_shallow_clone_cannot_make_a_refused_teams_yaml_effective(
    tmp_path: Path, people: People
) -> None:
    # mallory's unsigned teams.yaml edit is refused on main; a later commit's tree still
    # holds it. A fresh state in a clone cut at that later commit took the cut for the
    # root and trusted its teams.yaml: "authorised", with nothing refused.
    repo = SeedRepo.create(tmp_path, people)
    forged = "# bob is a tech-lead now\n" + repo.git("show", "HEAD:teams.yaml")
    repo.commit(people.mallory, {"teams.yaml": forged}, signed=False)
    later = repo.commit(people.alice, {"README.md": "notes\n"})
    assert reconciler("verify", "--repo", repo.path).exit_code == 1  # refused, whole
    clone = shallow_clone(repo, 1)
    result = reconciler("verify", "--repo", clone, "--state-dir", tmp_path / "ci-state")
    assert result.exit_code == 1, result.stdout
    assert "this clone is shallow" in result.stderr
    assert later[:12] in result.stderr
    assert "fetch-depth: 0" in result.stderr


def test_a_pull_request_check_in_a_shallow_clone_is_refused_not_judged_from_the_cut(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {"README.md": "notes\n"})
    clone = shallow_clone(repo, 1)
    run_git(clone, "checkout", "-q", "-b", "feature")
    run_git(
        clone,
        "-c",
        "user.name=Bob",
        "-c",
        "user.email=bob@example.com",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "a pull request",
    )
    result = reconciler(
        "verify-mergeable",
        "--repo",
        clone,
        "--base",
        "main",
        "--head",
        "feature",
        "--state-dir",
        tmp_path / "ci-state",
    )
    assert result.exit_code == 1, result.stdout
    assert "this clone is shallow" in result.stderr


def test_a_shallow_clone_walks_on_from_a_state_that_holds_its_cut(
    tmp_path: Path, people: People
) -> None:
    # What the cut leaves out, the state judged already (a cached state directory).
    repo = SeedRepo.create(tmp_path, people)
    state = tmp_path / "kept-state"
    assert reconciler("verify", "--repo", repo.path, "--state-dir", state).exit_code == 0
    tip = repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    clone = shallow_clone(repo, 2)
    result = reconciler("verify", "--repo", clone, "--state-dir", state, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["tip"] == tip
