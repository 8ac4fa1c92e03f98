"""What the commands that report (`plan`, `status`, `history`, `verify`, `access`) read:
which branch, and which of its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.people import People
from tests.repositories import ConfigRepo, SeedRepo
from tests.scenarios import DEV_PLAN, ECOMMERCE, dev_plan


def service_clone_after_a_run(tmp_path: Path, people: People) -> ConfigRepo:
    """A service's clone whose `apply --remote origin` ran a plan pushed after the clone was
    made: its local main never saw the plan, origin/main holds it and its records."""
    repo = SeedRepo.create(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    service = repo.clone(remote, "service")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.git("push", "-q", "origin", "main")
    applied = service.apply("--remote", "origin")
    assert applied.exit_code == 0, applied.stderr
    assert "succeeded 2026-11-dev-build.1" in applied.stdout
    return service


@pytest.mark.slow
def test_read_commands_on_the_services_clone_read_what_it_follows_with_remote_or_branch(
    tmp_path: Path, people: People
) -> None:
    service = service_clone_after_a_run(tmp_path, people)
    for how in (("--remote", "origin"), ("--branch", "origin/main")):
        decided = service.reconciler("plan", *how, "--format", "json")
        assert decided.exit_code == 0, decided.stderr
        assert decided.stderr == ""
        [dev] = decided.json()["plans"]
        assert (dev["plan"], dev["status"], dev["run"]["result"]) == (
            DEV_PLAN,
            "done",
            "succeeded",
        )
        shown = service.reconciler("status", *how, "--format", "json")
        assert shown.json()["applications"]["ecommerce"] == {"development": "1.4.0"}
        trail = service.reconciler("history", *how, "--format", "json").json()["entries"]
        assert ("run succeeded", "reconciler") in {
            (entry["action"], entry["actor"]) for entry in trail
        }
        assert service.reconciler("verify", *how).exit_code == 0


def test_a_read_command_on_the_services_clone_says_it_reads_a_branch_the_service_does_not(
    tmp_path: Path, people: People
) -> None:
    service = service_clone_after_a_run(tmp_path, people)
    local = service.reconciler("plan", "--format", "json")
    assert local.exit_code == 0, local.stderr
    assert local.json()["plans"] == []  # local main, as the clone was made
    assert (
        f"note: this reads main ({service.head('main')[:12]}); the reconciler service with "
        "this state directory follows origin/main: pass --branch origin/main to read what "
        "it does"
    ) in local.stderr
    assert "follows origin/main" in service.reconciler("status").stderr


def test_a_remote_branch_that_was_never_fetched_is_a_usage_error(
    tmp_path: Path, people: People
) -> None:
    service = service_clone_after_a_run(tmp_path, people)
    for how in (("--remote", "upstream"), ("--branch", "upstream/main")):
        refused = service.reconciler("plan", *how)
        assert refused.exit_code == 2
        if how[0] == "--remote":
            assert "upstream/main has not been fetched into" in refused.stderr
        else:
            assert "branch 'upstream/main' does not exist" in refused.stderr


def test_plan_names_the_plan_files_it_does_not_see_because_they_are_not_committed(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    with repo.branch("my-plan"):
        (repo.path / "plans").mkdir()
        (repo.path / DEV_PLAN).write_text(dev_plan(ECOMMERCE))
        (repo.path / "plans" / ".gitkeep").write_text("")  # not a plan: not named
        nothing = repo.reconciler("plan", "--branch", "my-plan")
        assert nothing.exit_code == 0, nothing.stderr
        assert nothing.stdout == "no plans on my-plan\n"
        assert nothing.stderr == (
            "note: plan reads what is committed on my-plan, and this plan file is not "
            f"committed: {DEV_PLAN} (untracked)\n"
        )
        repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
        (repo.path / DEV_PLAN).write_text(dev_plan({**ECOMMERCE, "version": "1.5.0"}))
        (repo.path / "plans/other.yaml").write_text(dev_plan(ECOMMERCE))
        repo.git("add", "plans/other.yaml")
        edited = repo.reconciler("plan", "--branch", "my-plan", "--format", "json")
        assert [item["plan"] for item in edited.json()["plans"]] == [DEV_PLAN]
        assert edited.stderr == (
            "note: plan reads what is committed on my-plan, and these plan files are not "
            f"committed: {DEV_PLAN} (modified), plans/other.yaml (added)\n"
        )
        (repo.path / DEV_PLAN).unlink()
        (repo.path / "plans/other.yaml").unlink()
        repo.git("rm", "-q", "--cached", "plans/other.yaml")
        assert f"{DEV_PLAN} (deleted)" in repo.reconciler("plan").stderr
        repo.git("checkout", "-q", "--", DEV_PLAN)
        assert repo.reconciler("plan", "--branch", "my-plan").stderr == ""
