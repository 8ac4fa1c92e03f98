"""Stop-the-line locks: `reconciler lock ENV [--app APP] -m why` and `unlock`, signed trailer
commits (`Lock:`, `Unlock:`, `Lock-Reason:`) judged like approvals and triggers: they count
when signed by a plan.deploy holder on ENV or a settings user. While a lock holds, nothing
starts there."""

from __future__ import annotations

from pathlib import Path

from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import DEV_PLAN, ECOMMERCE, PORTAL_DEV, dev_plan

WHY = "checkout errors since 14:02, investigating"


def dev_waits(repo: SeedRepo) -> list[tuple[str, str]]:
    decision = repo.decide()[DEV_PLAN]
    return [(wait.what, wait.text) for wait in decision.waits]


def test_a_lock_holds_a_triggered_plan_until_it_is_unlocked(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.act_as(people.alice)  # a tech lead: plan.deploy in development
    locked = repo.reconciler("lock", "development", "-m", WHY, "--format", "json")
    assert locked.exit_code == 0, locked.stdout + locked.stderr
    assert locked.json() == {
        "kind": "lock",
        "commit": repo.head(),
        "environment": "development",
        "application": None,
        "why": WHY,
        "actor": "alice",
    }
    assert repo.git("log", "-1", "--format=%B") == (
        f"Lock development: {WHY}\n\nLock: development\nLock-Reason: {WHY}"
    )
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    held = repo.apply()
    assert held.exit_code == 0, held.stdout + held.stderr
    assert "2026-11-dev-build.1" not in held.stdout
    [(what, text)] = dev_waits(repo)
    assert what == "lock"
    assert text.startswith("development is locked by alice since 20")
    assert f": {WHY} (`reconciler unlock development`)" in text
    plan = repo.reconciler("plan", "--format", "json").json()
    [dev] = [item for item in plan["plans"] if item["plan"] == DEV_PLAN]
    assert dev["waits"][0]["what"] == "lock"
    status = repo.reconciler("status")
    assert "locked development by alice since " in status.stdout
    assert WHY in status.stdout
    [held_lock] = repo.reconciler("status", "--format", "json").json()["locks"]
    assert (held_lock["scope"], held_lock["by"], held_lock["why"]) == ("development", "alice", WHY)
    history = repo.reconciler("history").stdout
    assert "locked" in history
    assert WHY in history

    unlocked = repo.reconciler("unlock", "development", "-m", "fixed")
    assert unlocked.exit_code == 0, unlocked.stdout + unlocked.stderr
    assert unlocked.stdout.startswith("alice unlocked development in commit ")
    ran = repo.apply()
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert "succeeded 2026-11-dev-build.1" in ran.stdout
    assert "unlocked" in repo.reconciler("history").stdout


def test_an_application_lock_holds_only_plans_that_deploy_it(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.act_as(people.diana)
    result = repo.reconciler("lock", "development", "--app", "customer-portal", "-m", WHY)
    assert result.exit_code == 0, result.stdout + result.stderr
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    assert repo.decide()[DEV_PLAN].status == "executable"
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    [(what, text)] = dev_waits(repo)
    assert (what, text.split(" since ")[0]) == (
        "lock",
        "development/customer-portal is locked by diana",
    )
    assert "`reconciler unlock development --app customer-portal`" in text


def test_a_lock_by_someone_without_the_right_is_refused_up_front(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    head = repo.head()
    repo.act_as(people.carol)  # a tester: no plan.deploy in development, no settings
    result = repo.reconciler("lock", "development", "-m", WHY)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: carol may not lock development: ")
    assert repo.head() == head
    repo.act_as(people.alice, signed=False)
    unsigned = repo.reconciler("lock", "development", "-m", WHY)
    assert unsigned.exit_code == 1
    assert "counts only in a signed commit" in unsigned.stderr
    assert repo.head() == head


def test_a_settings_user_may_lock_any_environment(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.act_as(people.root)
    result = repo.reconciler("lock", "production", "-m", WHY)
    assert result.exit_code == 0, result.stdout + result.stderr
    [held] = repo.reconciler("status", "--format", "json").json()["locks"]
    assert (held["scope"], held["by"]) == ("production", "root")


# -- attacks -----------------------------------------------------------------------------------


def test_a_forged_lock_by_someone_without_the_right_does_not_count(
    tmp_path: Path, people: People
) -> None:
    """carol, a tester, writes the lock commit by hand (signed with her own key, or
    unsigned in alice's name): neither stops the line."""
    repo = SeedRepo.create(tmp_path, people)
    repo.signoff(people.carol, "Lock", "development")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.signoff(people.alice, "Lock", "development", signed=False)
    assert repo.decide()[DEV_PLAN].status == "executable"
    history = repo.reconciler("history").stdout.splitlines()
    [by_carol] = [line for line in history if " carol " in line]
    assert "locked" in by_carol
    assert (
        "does not count: carol holds tester in ecommerce; development grants plan.deploy"
        in by_carol
    )
    [unsigned] = [line for line in history if " ? " in line and "locked" in line]
    assert "does not count: unsigned commit, and this change needs a verified signature" in (
        unsigned
    )
    ran = repo.apply()
    assert "succeeded 2026-11-dev-build.1" in ran.stdout


def test_a_forged_unlock_by_someone_without_the_right_does_not_lift_a_lock(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.act_as(people.alice)
    assert repo.reconciler("lock", "development", "-m", WHY).exit_code == 0
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.signoff(people.carol, "Unlock", "development")  # a tester
    repo.signoff(people.alice, "Unlock", "development", signed=False)  # alice's name, unsigned
    [(what, _)] = dev_waits(repo)
    assert what == "lock"
    ran = repo.apply()
    assert "2026-11-dev-build.1" not in ran.stdout
