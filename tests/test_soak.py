"""Soak: with `soak` in its gates, an environment takes a version only after it has run
verified in `promotes_from` that long, counted from the record that verified it there."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.configrepo import dump, example_file, reconciler
from tests.people import People
from tests.repositories import SeedRepo, run_git
from tests.scenarios import DEV_PLAN, ECOMMERCE, QA_PLAN, dev_plan, qa_plan

QA = "environments/quality-assurance.yaml"


def quality_assurance(soak: str) -> str:
    text = example_file(QA)
    return text.replace("  windows: []", f"  windows: []\n  soak: {soak}")


def development_checked(tmp_path: Path) -> str:
    """Development with the local driver checked by a probe that passes."""
    text = example_file("environments/development.yaml")
    check = json.dumps([sys.executable, "-c", "pass"])
    text = text.replace("driver: {type: local}", f"driver: {{type: local, check: {check}}}")
    return text + "verify: {timeout: 10s, interval: 1s}\n"


def committed_at(repo: SeedRepo, commit: str) -> datetime:
    return datetime.fromisoformat(repo.git("log", "-1", "--format=%cI", commit))


def ran_in_development(repo: SeedRepo, run: str, **finish: str) -> str:
    """A run of an earlier plan, recorded by the reconciler's key, that deployed ecommerce
    1.4.0 into development with `finish`'s trailers (its verification) in its finish
    record; that record's commit."""
    content = dump(
        {
            "environment": "development",
            "applications": {
                "ecommerce": {
                    "version": "1.4.0",
                    "plan": "earlier",
                    "run": run,
                    "deployed_at": "2026-11-01T00:00:00Z",
                }
            },
        }
    )
    trailers = {"Plan": f"plans/earlier.yaml@{'e' * 40}", "Environment": "development"}
    repo.record({**trailers, "Result": "started", "Run": run, "Reconciler": "earlier"})
    return repo.record(
        {**trailers, "Result": "succeeded", "Run": run, **finish},
        {"deployments/development.yaml": content},
    )


def soaking_qa(tmp_path: Path, people: People, soak: str = "30m") -> SeedRepo:
    """The seed story with QA soaking versions `soak` (its plan comes later)."""
    return SeedRepo.create(tmp_path, people, extra={QA: quality_assurance(soak)})


def approve_and_trigger(repo: SeedRepo, people: People) -> None:
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)


def waits(repo: SeedRepo, now: datetime) -> list[tuple[str, str, datetime | None]]:
    decision = repo.decide(now=now)[QA_PLAN]
    return [(wait.what, wait.reason.code, wait.until) for wait in decision.waits]


# -- decided on a history built with dated records -------------------------------------


def test_a_promotion_waits_for_soak_counted_from_the_verified_record_then_may_run(
    tmp_path: Path, people: People
) -> None:
    repo = soaking_qa(tmp_path, people)
    record = ran_in_development(repo, "earlier.1", Verified="1 ecommerce 1.4.0")
    approve_and_trigger(repo, people)
    verified = committed_at(repo, record)
    until = verified + timedelta(minutes=30)
    assert waits(repo, until - timedelta(seconds=1)) == [("soak", "promotion.soak", until)]
    decision = repo.decide(now=verified + timedelta(minutes=5))[QA_PLAN]
    assert decision.status == "waiting"
    assert decision.reasons == (
        f"ecommerce 1.4.0 waits for soak until {until.isoformat()} "
        f"(30m verified in development, from {verified.isoformat()})",
    )
    assert repo.decide(now=until)[QA_PLAN].status == "executable"


def test_a_version_rolled_back_to_and_verified_soaks_from_the_rollback_record(
    tmp_path: Path, people: People
) -> None:
    repo = soaking_qa(tmp_path, people)
    record = ran_in_development(repo, "earlier.1", **{"Rolled-Back": "ecommerce 1.4.0 (verified)"})
    approve_and_trigger(repo, people)
    until = committed_at(repo, record) + timedelta(minutes=30)
    assert waits(repo, until - timedelta(minutes=1)) == [("soak", "promotion.soak", until)]
    assert repo.decide(now=until)[QA_PLAN].status == "executable"


# -- attacks -----------------------------------------------------------------------------------


def test_a_version_whose_record_says_not_checked_never_starts_the_soak_clock(
    tmp_path: Path, people: People
) -> None:
    repo = soaking_qa(tmp_path, people)
    record = ran_in_development(repo, "earlier.1")  # no Verified: not checked
    approve_and_trigger(repo, people)
    # Long after any soak, and while the approval and the trigger (8h) still count.
    much_later = committed_at(repo, record) + timedelta(hours=7)
    assert waits(repo, much_later) == [("soak", "promotion.unverified", None)]
    [reason] = repo.decide(now=much_later)[QA_PLAN].reasons
    assert reason.startswith("ecommerce 1.4.0 must run verified in development first")


def test_a_record_that_failed_verification_or_rolled_back_unverified_starts_no_soak(
    tmp_path: Path, people: People
) -> None:
    repo = soaking_qa(tmp_path, people)
    record = ran_in_development(
        repo,
        "earlier.1",
        **{
            "Failed-Verification": "1 ecommerce 1.4.0",
            "Rolled-Back": "ecommerce 1.4.0 (not checked)",
        },
    )
    approve_and_trigger(repo, people)
    # Long after any soak, and while the approval and the trigger (8h) still count.
    much_later = committed_at(repo, record) + timedelta(hours=7)
    assert waits(repo, much_later) == [("soak", "promotion.unverified", None)]


def test_a_verification_of_another_run_does_not_start_the_soak_of_the_running_one(
    tmp_path: Path, people: People
) -> None:
    # 1.4.0 was verified by run earlier.1, then deployed again, unchecked, by earlier.2:
    # what runs now is earlier.2's, which no check passed.
    repo = soaking_qa(tmp_path, people)
    ran_in_development(repo, "earlier.1", Verified="1 ecommerce 1.4.0")
    record = ran_in_development(repo, "earlier.2")
    approve_and_trigger(repo, people)
    # Long after any soak, and while the approval and the trigger (8h) still count.
    much_later = committed_at(repo, record) + timedelta(hours=7)
    assert waits(repo, much_later) == [("soak", "promotion.unverified", None)]


def test_a_human_commit_forging_a_verified_finish_record_does_not_start_the_soak_clock(
    tmp_path: Path, people: People
) -> None:
    """alice, a tech lead in a hurry, copies the reconciler's finish record of the run that
    deployed 1.4.0 into development, adds `Verified:` and pushes it (with the service
    account's name and email): the walk judges it, and a record counts only signed by the
    service account's key, so the clock never starts."""
    repo = soaking_qa(tmp_path, people)
    record = ran_in_development(repo, "earlier.1")
    approve_and_trigger(repo, people)
    message = repo.git("log", "-1", "--format=%B", record).rstrip("\n")
    env = {
        "GIT_AUTHOR_NAME": people.reconciler.name,
        "GIT_AUTHOR_EMAIL": people.reconciler.email,
        "GIT_COMMITTER_NAME": people.reconciler.name,
        "GIT_COMMITTER_EMAIL": people.reconciler.email,
    }
    repo.act_as(people.alice)
    run_git(
        repo.path,
        "commit",
        "-q",
        "--allow-empty",
        "-S",
        "-m",
        f"{message}\nVerified: 1 ecommerce 1.4.0",
        env=env,
    )
    assert repo.git("log", "-1", "--format=%(trailers:key=Verified,valueonly)", "main").strip()
    # Long after any soak, and while the approval and the trigger (8h) still count.
    much_later = committed_at(repo, record) + timedelta(hours=7)
    assert waits(repo, much_later) == [("soak", "promotion.unverified", None)]
    history = repo.reconciler("history", "--format", "json")
    assert history.exit_code == 0, history.stderr
    assert "a record counts only when signed by the reconciler service account" in history.stdout


# -- end to end ----------------------------------------------------------------------------


@pytest.mark.slow
def soaking_story(tmp_path: Path, people: People, soak: str) -> SeedRepo:
    """A development build that runs verified, and its promotion to QA approved and
    triggered, with `soak` in QA's gates."""
    extra = {
        QA: quality_assurance(soak),
        "environments/development.yaml": development_checked(tmp_path),
    }
    repo = SeedRepo.create(tmp_path, people, extra=extra)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    approve_and_trigger(repo, people)
    return repo


def test_a_promotion_waits_for_its_soak_and_every_command_says_until_when(
    tmp_path: Path, people: People
) -> None:
    # An hour's soak: on a machine however loaded, the commands below run inside it
    # (a 10-second one ended before `status` ran under CI's load).
    repo = soaking_story(tmp_path, people, "1h")
    first = repo.apply()
    assert first.exit_code == 0, first.stdout + first.stderr
    assert "succeeded 2026-11-dev-build.1" in first.stdout
    assert "2026-11-qa-release.1" not in first.stdout
    status = repo.reconciler("status").stdout
    assert "ecommerce 1.4.0 waits for soak until" in status
    plan = repo.reconciler("plan", "--format", "json")
    [qa] = [item for item in plan.json()["plans"] if item["plan"] == QA_PLAN]
    [wait] = qa["waits"]
    assert wait["what"] == "soak"
    assert wait["text"].startswith("ecommerce 1.4.0 waits for soak until ")
    until = datetime.fromisoformat(wait["until"])
    finished = committed_at(repo, repo.git("rev-parse", "main").strip())
    assert until == finished + timedelta(hours=1)  # from the record that verified it
    text = repo.reconciler("plan").stdout
    assert f"ecommerce 1.4.0 waits for soak until {until.isoformat()}" in text
    assert "2026-11-qa-release.1" not in repo.apply().stdout


def test_a_promotion_runs_once_its_soak_has_passed(tmp_path: Path, people: People) -> None:
    repo = soaking_story(tmp_path, people, "2s")
    first = repo.apply()
    assert first.exit_code == 0, first.stdout + first.stderr
    assert "succeeded 2026-11-dev-build.1" in first.stdout
    time.sleep(3)  # past the soak, whenever the first pass's records landed
    second = repo.apply()
    assert second.exit_code == 0, second.stdout + second.stderr
    ran = [out.count("succeeded 2026-11-qa-release.1") for out in (first.stdout, second.stdout)]
    assert sum(ran) == 1, first.stdout + second.stdout


# -- validate --------------------------------------------------------------------------------


def test_validate_refuses_a_soak_on_an_environment_that_promotes_from_none(
    example_copy: Path,
) -> None:
    run_git(example_copy, "init", "-q")
    development = example_copy / "environments/development.yaml"
    development.write_text(
        development.read_text().replace(
            "  signed_commits: false", "  signed_commits: false\n  soak: 30m"
        )
    )
    result = reconciler("validate", "--repo", example_copy, "--format", "json")
    assert result.exit_code == 1, result.stdout
    [finding] = result.json()["findings"]
    assert (finding["file"], finding["line"]) == ("environments/development.yaml", 11)
    assert "promotes from none" in finding["message"]
