"""A retry of an interrupted run resumes at the first step the runs of its plan version did
not finish, and its finish record says it was a retry and where it resumed."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.people import People
from tests.repositories import SeedRepo, trailers
from tests.runner import sigterm_during_the_first_of_two_steps, with_command_driver
from tests.scenarios import DEV_PLAN, ECOMMERCE, PORTAL_DEV, dev_plan

RUN_1 = "2026-11-dev-build.1"
RUN_2 = "2026-11-dev-build.2"


def stopped_after_the_first_step(tmp_path: Path, people: People) -> tuple[SeedRepo, Path]:
    """A development plan of two applications whose run SIGTERM stopped after the first:
    recorded interrupted, ecommerce 1.4.0 deployed by it."""
    repo, out, exit_code, errors = sigterm_during_the_first_of_two_steps(tmp_path, people)
    assert exit_code == 130, errors
    assert trailers(repo, "main")["Result"] == "interrupted"
    assert deployed(repo) == {"ecommerce": ("1.4.0", RUN_1)}
    return repo, out


def deployed(repo: SeedRepo) -> dict[str, tuple[str, str]]:
    """deployments/development.yaml on main: application -> (version, run)."""
    data = yaml.safe_load(repo.git("show", "main:deployments/development.yaml"))
    return {app: (entry["version"], entry["run"]) for app, entry in data["applications"].items()}


def test_a_retry_resumes_at_the_first_unfinished_step_and_its_finish_record_says_so(
    tmp_path: Path, people: People
) -> None:
    repo, out = stopped_after_the_first_step(tmp_path, people)
    repo.signoff(people.alice, "Retry-Run", RUN_1)
    applied = repo.apply("--format", "json")
    assert applied.exit_code == 0, applied.stderr
    assert [(run["run"], run["retry_of"], run["result"]) for run in applied.json()["runs"]] == [
        (RUN_2, RUN_1, "succeeded")
    ]
    # The driver was asked for the second application only.
    assert [line.split()[1] for line in out.read_text().splitlines()] == [
        "ecommerce",
        "customer-portal",
    ]
    finish = trailers(repo, "main")
    assert (finish["Run"], finish["Result"]) == (RUN_2, "succeeded")
    assert finish["Retry-Of"] == RUN_1
    assert finish["Resumed-At"] == "2 customer-portal 0.6-dev.41"
    body = repo.git("log", "-1", "--format=%b", "main")
    assert f"1. ecommerce 1.4.0: skipped (deployed by run {RUN_1})" in body
    assert "2. customer-portal 0.6-dev.41: ok (" in body
    assert deployed(repo) == {
        "ecommerce": ("1.4.0", RUN_1),
        "customer-portal": ("0.6-dev.41", RUN_2),
    }
    log = (repo.path / f"logs/development/2026-11-dev-build/{RUN_2}.log").read_text()
    assert f"[1/2 ecommerce 1.4.0] skipped: deployed by run {RUN_1}" in log
    history = repo.reconciler("history", "--format", "json").json()["entries"]
    assert ("run succeeded", f"{RUN_2} (retry of {RUN_1})") in {
        (entry["action"], entry["detail"]) for entry in history
    }


def test_a_retry_of_a_run_that_recorded_no_step_runs_every_step_and_says_it_is_a_retry(
    tmp_path: Path, people: People
) -> None:
    # The run died before its finish record: another reconciler recorded it interrupted,
    # and deployments/ holds none of its steps. Drivers are idempotent: all run again.
    repo, out = with_command_driver(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    run = {"Plan": f"{DEV_PLAN}@{repo.blob(DEV_PLAN)}", "Environment": "development", "Run": RUN_1}
    repo.record({**run, "Result": "started", "Reconciler": "gone", "Triggered-By": "alice"})
    repo.record({**run, "Result": "interrupted"})
    repo.signoff(people.alice, "Retry-Run", RUN_1)
    applied = repo.apply()
    assert applied.exit_code == 0, applied.stderr
    assert len(out.read_text().splitlines()) == 2
    finish = trailers(repo, "main")
    assert (finish["Run"], finish["Retry-Of"], finish["Result"]) == (RUN_2, RUN_1, "succeeded")
    assert "Resumed-At" not in finish
    assert "1. ecommerce 1.4.0: ok (" in repo.git("log", "-1", "--format=%b", "main")
