"""The real `pre-commit` on a repository `reconciler init` made.

`init` writes a `repo: local` hook that runs the reconciler on PATH; this
project publishes the same hook in `.pre-commit-hooks.yaml` for pre-commit to
install. Either validates the whole repository on every commit, so a commit
that breaks a file it never touched (a plan naming an application teams.yaml
no longer has, a plan targeting an environment just deleted) is stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.configrepo import reconciler, replace, write
from tests.people import People
from tests.repositories import run_git
from tests.runner import ROOT_ADMIN, init_repository

PROJECT = Path(__file__).resolve().parents[1]
# The reconciler the `repo: local` hook finds on PATH: the one installed with the suite.
INSTALLED = Path(sys.executable).parent


@pytest.fixture
def made(tmp_path: Path, people: People) -> Path:
    """A repository `reconciler init` made, nothing else in it."""
    target = tmp_path / "config"
    result = init_repository(people, target, *ROOT_ADMIN, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    return target


@pytest.fixture
def hook_env(tmp_path: Path) -> dict[str, str]:
    """pre-commit's own cache in the test's folder; the installed `reconciler` on PATH."""
    assert (INSTALLED / "reconciler").is_file(), "the suite needs `pip install -e .`"
    return {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "PATH": f"{INSTALLED}{os.pathsep}{os.environ['PATH']}",
    }


def run(
    argv: list[str], repo: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def pre_commit(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # `-m pre_commit`: `pre-commit install` writes this interpreter into the git hook.
    return run([sys.executable, "-m", "pre_commit", *args], repo, env, timeout=300)


def plan(repo: Path, name: str, target: str, source: str | None = None) -> None:
    """A draft plan of example-app, the application `init`'s teams.yaml gives its first team."""
    write(
        repo,
        f"plans/{name}.yaml",
        f"name: {name}\ntarget: {target}\n"
        + (f"source: {source}\n" if source else "")
        + "applications: [{name: example-app, version: '1.0'}]\nstate: draft\n",
    )


def test_pre_commit_passes_on_every_file_of_a_repository_init_made(
    made: Path, hook_env: dict[str, str]
) -> None:
    result = pre_commit(made, hook_env, "run", "--all-files")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reconciler validate" in result.stdout
    assert "Passed" in result.stdout


def hooked_with_a_plan(
    made: Path, hook_env: dict[str, str], name: str, target: str, source: str | None = None
) -> str:
    """The hook installed, then a plan committed through it (it passes): the commit id."""
    assert pre_commit(made, hook_env, "install").returncode == 0
    plan(made, name, target, source=source)
    run_git(made, "add", f"plans/{name}.yaml")
    proposed = run(["git", "commit", "-q", "-m", f"Plan {name}"], made, hook_env)
    assert proposed.returncode == 0, proposed.stdout + proposed.stderr
    return run_git(made, "rev-parse", "HEAD")


def test_the_hook_stops_a_commit_that_drops_an_application_a_plan_still_names(
    made: Path, hook_env: dict[str, str]
) -> None:
    before = hooked_with_a_plan(made, hook_env, "first-build", "development")
    # The commit touches teams.yaml only; the plan it breaks is not part of it.
    replace(made, "teams.yaml", "applications: [example-app]", "applications: [other-app]")
    dropped = run(["git", "commit", "-q", "-am", "Rename the application"], made, hook_env)
    assert dropped.returncode != 0
    said = dropped.stdout + dropped.stderr  # git gives the hook's output to stderr
    assert "plans/first-build.yaml:3:" in said
    assert "unknown application 'example-app'" in said
    assert run_git(made, "rev-parse", "HEAD") == before


def test_the_hook_stops_a_commit_that_only_deletes_an_environment_a_plan_targets(
    made: Path, hook_env: dict[str, str]
) -> None:
    # pre-commit names no deleted file: a hook that waited for a matching file would skip.
    before = hooked_with_a_plan(
        made, hook_env, "first-release", "production", source="quality-assurance"
    )
    run_git(made, "rm", "-q", "environments/production.yaml")
    deleted = run(["git", "commit", "-q", "-m", "No production yet"], made, hook_env)
    assert deleted.returncode != 0
    said = deleted.stdout + deleted.stderr
    assert "plans/first-release.yaml:2:" in said
    assert "unknown environment 'production'" in said
    assert run_git(made, "rev-parse", "HEAD") == before


def test_the_hook_validates_with_the_repositorys_gitkeep_and_readme_in_place(
    made: Path, hook_env: dict[str, str]
) -> None:
    # Every file of the repository at once, as `--all-files` or a script passing names would.
    named = run_git(made, "ls-files").splitlines()
    assert "plans/.gitkeep" in named
    result = reconciler("validate", *named, cwd=made)
    assert result.exit_code == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.needs_index
@pytest.mark.skipif(not (PROJECT / ".git").exists(), reason="try-repo clones this Git checkout")
def test_the_published_hook_passes_try_repo_on_a_repository_init_made(
    made: Path, hook_env: dict[str, str]
) -> None:
    # pre-commit installs this checkout into a virtual environment of its own: no
    # `reconciler` from PATH, and the hook as `.pre-commit-hooks.yaml` publishes it.
    env = {**hook_env, "PATH": os.environ["PATH"]}
    tried = pre_commit(made, env, "try-repo", str(PROJECT), "reconciler-validate", "--all-files")
    assert tried.returncode == 0, tried.stdout + tried.stderr
    assert "Passed" in tried.stdout
    plan(made, "first-release", "production", source="quality-assurance")
    run_git(made, "add", "plans/first-release.yaml")
    run_git(made, "commit", "-q", "-m", "Plan the first release")
    run_git(made, "rm", "-q", "environments/production.yaml")
    staged = pre_commit(made, env, "try-repo", str(PROJECT), "reconciler-validate")
    assert staged.returncode == 1, staged.stdout + staged.stderr
    assert "unknown environment 'production'" in staged.stdout
