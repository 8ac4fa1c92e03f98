"""Automatic rollback: with `on_failure: rollback`, a failed run redeploys, last step first,
the versions it replaced, checking each; without it, the record says what is left
half-deployed. Real repositories, the real local and command drivers."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from reconciler.adapters.drivers import LocalDriver, Step
from reconciler.app.execute import execute
from reconciler.core.model import Verify
from reconciler.core.runs import STEP, may_step
from tests.configrepo import example_file
from tests.people import People
from tests.repositories import SeedRepo, build, trailers
from tests.scenarios import DEV_PLAN, dev_plan

OLD = {"name": "ecommerce", "version": "1.4.0"}
NEW = {"name": "ecommerce", "version": "1.5.0"}
PORTAL_OLD = {"name": "customer-portal", "version": "0.6-dev.41"}
PORTAL_NEW = {"name": "customer-portal", "version": "0.6-dev.42"}

# A check that passes for every version but those named in `sys.argv[1:]`.
CHECK = """\
import os, sys
version = os.environ["RECONCILER_VERSION"]
print(f"probe {os.environ['RECONCILER_APP']} {version}")
sys.exit(1 if version in sys.argv[1:] else 0)
"""

# A command driver keeping what runs in `sys.argv[1]` (a JSON file) and every call in
# `sys.argv[2]`; a deploy of a version in BAD_DEPLOY fails, a check of one in BAD_CHECK
# fails, one of SLOW_CHECK hangs.
COMMAND = """\
import json, os, pathlib, sys, time
state, calls = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
bad_deploy, bad_check, slow_check = sys.argv[3].split(","), sys.argv[4].split(","), sys.argv[5]
operation = os.environ["RECONCILER_OPERATION"]
running = json.loads(state.read_text()) if state.exists() else {}
app = os.environ["RECONCILER_APP"]
if operation == "current":
    print(running.get(app, ""))
    sys.exit(0)
version = os.environ["RECONCILER_VERSION"]
with calls.open("a") as handle:
    handle.write(f"{operation} {os.environ['RECONCILER_ACTION']} {app} {version}\\n")
if operation == "deploy":
    if version in bad_deploy:
        print("deploy broke")
        sys.exit(1)
    running[app] = version
    state.write_text(json.dumps(running))
elif version == slow_check:
    time.sleep(30)
elif running.get(app) != version or version in bad_check:
    print("unhealthy")
    sys.exit(1)
"""


def development(driver: str, *, rollback: bool = True) -> str:
    text = example_file("environments/development.yaml")
    text = text.replace("driver: {type: local}", f"driver: {driver}")
    text += "verify: {timeout: 2s, interval: 1s}\n"
    return text + ("on_failure: rollback\n" if rollback else "")


def argv(*parts: str | Path) -> str:
    return "[" + ", ".join(json.dumps(str(part)) for part in (sys.executable, *parts)) + "]"


def local_repo(tmp_path: Path, people: People, *failing: str, rollback: bool = True) -> SeedRepo:
    """Development with the local driver, checked by CHECK (failing for `failing`)."""
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    driver = f"{{type: local, check: {argv(script, *failing)}}}"
    extra = {"environments/development.yaml": development(driver, rollback=rollback)}
    return SeedRepo.create(tmp_path, people, extra=extra)


def command_repo(
    tmp_path: Path, people: People, *, bad_deploy: str = "-", bad_check: str = "-", slow: str = "-"
) -> tuple[SeedRepo, Path, Path]:
    program = tmp_path / "driver.py"
    program.write_text(COMMAND)
    state, calls = tmp_path / "running.json", tmp_path / "calls.txt"
    driver = (
        f"{{type: command, argv: {argv(program, state, calls, bad_deploy, bad_check, slow)}, "
        "timeout: 60}"
    )
    extra = {"environments/development.yaml": development(driver)}
    return SeedRepo.create(tmp_path, people, extra=extra), state, calls


def deployed(repo: SeedRepo) -> dict[str, dict[str, str]]:
    text = (repo.path / "deployments/development.yaml").read_text()
    applications: dict[str, dict[str, str]] = yaml.safe_load(text)["applications"]
    return applications


def current(repo: SeedRepo, application: str) -> str:
    link = repo.driver_root / "development" / application / "current"
    return Path(os.readlink(link)).name


def body(repo: SeedRepo) -> str:
    return repo.git("log", "-1", "--format=%B", "main")


def all_trailers(repo: SeedRepo, key: str) -> list[str]:
    text = repo.git("log", "-1", "--format=%(trailers:only,unfold)", "main")
    return [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith(f"{key}: ")]


def plan_both(
    repo: SeedRepo, people: People, ecommerce: dict[str, str], portal: dict[str, str]
) -> None:
    """The development plan with both applications, each entry by its own team's lead."""
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ecommerce)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ecommerce, portal)})


def first_run(repo: SeedRepo, people: People, *applications: dict[str, str]) -> None:
    if len(applications) == 2:
        plan_both(repo, people, *applications)
    else:
        repo.commit(people.alice, {DEV_PLAN: dev_plan(*applications)})
    result = repo.apply()
    assert result.exit_code == 0, result.stdout + result.stderr


# -- end to end ----------------------------------------------------------------------------------


def test_a_check_that_fails_rolls_back_to_the_previous_version_and_the_record_says_so(
    tmp_path: Path, people: People
) -> None:
    repo = local_repo(tmp_path, people, "1.5.0")
    first_run(repo, people, OLD)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(NEW)})
    result = repo.apply()
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "failed 2026-11-dev-build.2" in result.stdout
    record = trailers(repo, "main")
    assert (record["Result"], record["Failed-Verification"]) == ("failed", "1 ecommerce 1.5.0")
    assert record["Rolled-Back"] == "ecommerce 1.4.0 (verified)"
    assert "Left-Deployed" not in record
    assert "Rollback-Failed" not in record
    text = body(repo)
    assert "Rolled back (on_failure: rollback), last step first:\n" in text
    assert (
        "- ecommerce 1.5.0 back to 1.4.0: ok (ecommerce 1.4.0 is current again); verified" in text
    )
    assert "Left half-deployed" not in text
    # The previous version runs again, and deployments/ says so, put there by this run.
    assert current(repo, "ecommerce") == "1.4.0"
    entry = deployed(repo)["ecommerce"]
    assert (entry["version"], entry["run"]) == ("1.4.0", "2026-11-dev-build.2")
    log = (repo.path / "logs/development/2026-11-dev-build/2026-11-dev-build.2.log").read_text()
    assert "[rollback 1/1 ecommerce 1.4.0] rolling back ecommerce 1.5.0 to 1.4.0" in log
    assert "[rollback 1/1 ecommerce 1.4.0] probe ecommerce 1.4.0" in log
    assert repo.reconciler("verify").exit_code == 0  # the record counts


def test_a_rollback_undoes_the_steps_last_first_and_leaves_what_ran_nowhere_before(
    tmp_path: Path, people: People
) -> None:
    repo = local_repo(tmp_path, people, "0.6-dev.42")
    first_run(repo, people, OLD)
    plan_both(repo, people, NEW, PORTAL_NEW)
    result = repo.apply()
    assert result.exit_code == 1, result.stdout + result.stderr
    assert all_trailers(repo, "Rolled-Back") == ["ecommerce 1.4.0 (verified)"]
    # customer-portal ran nowhere before: nothing to go back to, so it is left, and said.
    assert all_trailers(repo, "Left-Deployed") == []
    text = body(repo)
    undone = text[text.index("Rolled back") :]
    assert undone.index("- customer-portal 0.6-dev.42: not rolled back") < undone.index(
        "- ecommerce 1.5.0 back to 1.4.0: ok"
    )
    assert "nothing ran in development before this run" in undone
    assert "- customer-portal 0.6-dev.42 runs: it failed verification" in text
    assert current(repo, "ecommerce") == "1.4.0"
    assert deployed(repo)["ecommerce"]["version"] == "1.4.0"
    assert "customer-portal" not in deployed(repo)


def test_without_rollback_a_failed_run_says_what_it_leaves_half_deployed(
    tmp_path: Path, people: People
) -> None:
    repo = local_repo(tmp_path, people, "0.6-dev.42", rollback=False)
    first_run(repo, people, OLD)
    plan_both(repo, people, NEW, PORTAL_NEW)
    result = repo.apply()
    assert result.exit_code == 1, result.stdout + result.stderr
    record = trailers(repo, "main")
    assert record["Left-Deployed"] == "ecommerce 1.5.0"
    assert "Rolled-Back" not in record
    text = body(repo)
    assert (
        "Left half-deployed:\n"
        "- ecommerce 1.5.0 runs: this run deployed it\n"
        "- customer-portal 0.6-dev.42 runs: it failed verification\n\n"
    ) in text
    assert current(repo, "ecommerce") == "1.5.0"
    assert deployed(repo)["ecommerce"]["version"] == "1.5.0"


def test_without_rollback_the_record_names_the_steps_never_started(
    tmp_path: Path, people: People
) -> None:
    repo = local_repo(tmp_path, people, "1.5.0", rollback=False)
    plan_both(repo, people, NEW, PORTAL_NEW)
    result = repo.apply()
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "Left-Deployed" not in trailers(repo, "main")
    assert (
        "Left half-deployed:\n"
        "- ecommerce 1.5.0 runs: it failed verification\n"
        "- customer-portal 0.6-dev.42 not started\n\n"
    ) in body(repo)


def test_a_step_whose_deploy_fails_is_rolled_back_with_the_command_driver(
    tmp_path: Path, people: People
) -> None:
    repo, state, calls = command_repo(tmp_path, people, bad_deploy="0.6-dev.42")
    first_run(repo, people, OLD, PORTAL_OLD)
    calls.unlink()
    repo.commit(people.alice, {DEV_PLAN: dev_plan(NEW, PORTAL_OLD)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(NEW, PORTAL_NEW)})
    result = repo.apply()
    assert result.exit_code == 1, result.stdout + result.stderr
    assert calls.read_text().splitlines() == [
        "deploy deploy ecommerce 1.5.0",
        "check deploy ecommerce 1.5.0",
        "deploy deploy customer-portal 0.6-dev.42",
        # last step first: the failed one, then the one before it
        "deploy rollback customer-portal 0.6-dev.41",
        "check rollback customer-portal 0.6-dev.41",
        "deploy rollback ecommerce 1.4.0",
        "check rollback ecommerce 1.4.0",
    ]
    assert json.loads(state.read_text()) == {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"}
    record = trailers(repo, "main")
    assert record["Failed-Step"] == "2 customer-portal 0.6-dev.42"
    assert all_trailers(repo, "Rolled-Back") == [
        "customer-portal 0.6-dev.41 (verified)",
        "ecommerce 1.4.0 (verified)",
    ]
    versions = {app: entry["version"] for app, entry in deployed(repo).items()}
    assert versions == {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"}


@pytest.mark.slow
def test_a_check_that_times_out_is_rolled_back(tmp_path: Path, people: People) -> None:
    repo, state, _ = command_repo(tmp_path, people, slow="1.5.0")
    first_run(repo, people, OLD)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(NEW)})
    started = time.monotonic()
    result = repo.apply()
    assert time.monotonic() - started < 25  # the hanging check is stopped at the timeout
    assert result.exit_code == 1, result.stdout + result.stderr
    text = body(repo)
    assert "1. ecommerce 1.5.0: FAILED (failed verification: no check passed in 2 s" in text
    assert "timed out after" in text
    assert trailers(repo, "main")["Rolled-Back"] == "ecommerce 1.4.0 (verified)"
    assert json.loads(state.read_text()) == {"ecommerce": "1.4.0"}
    assert deployed(repo)["ecommerce"]["version"] == "1.4.0"


def test_a_rollback_whose_redeploy_fails_says_what_it_leaves(
    tmp_path: Path, people: People
) -> None:
    repo = local_repo(tmp_path, people, "1.5.0")
    first_run(repo, people, OLD)
    # The release to go back to was changed on the host since it was made.
    release = repo.driver_root / "development" / "ecommerce" / "releases" / "1.4.0"
    (release / "app.bin").write_text("tampered")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(NEW)})
    result = repo.apply()
    assert result.exit_code == 1, result.stdout + result.stderr
    record = trailers(repo, "main")
    assert record["Rollback-Failed"] == "ecommerce 1.4.0"
    assert "Rolled-Back" not in record
    text = body(repo)
    assert "- ecommerce 1.5.0 back to 1.4.0: FAILED (cannot roll back: release ecommerce " in text
    assert "changed after it was made" in text
    assert "it runs whatever the failed redeploy left" in text
    assert "Left half-deployed:\n- ecommerce 1.5.0 runs: it failed verification" in text
    # The version that failed verification still runs; deployments/ never records one that
    # failed verification, so it keeps what the last good run put there.
    assert current(repo, "ecommerce") == "1.5.0"
    assert deployed(repo)["ecommerce"]["run"] == "2026-11-dev-build.1"


# -- fencing ---------------------------------------------------------------------------------


def test_a_rollback_step_never_starts_after_the_lease_deadline(tmp_path: Path) -> None:
    """The rollback's redeploys ask the run's fence (`runs.may_step`) like its steps: once
    the lease has passed, none starts, and the record says why each was left."""
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    root = tmp_path / "releases"
    driver = LocalDriver(root, (sys.executable, str(script), "1.5.0"))
    for version in ("1.4.0", "1.5.0"):
        build(root, "ecommerce", version)
    verify = Verify(timedelta(seconds=2), timedelta(seconds=1))
    moment = datetime(2026, 11, 22, 12, tzinfo=UTC)
    lease = moment + timedelta(minutes=5)

    def step(version: str, run: str) -> Step:
        return Step("ecommerce", version, "development", "p", run, "deploy", None, None)

    first = execute(
        (step("1.4.0", "p.1"),), driver, retries=0, clock=lambda: moment, sleep=time.sleep
    )
    assert first.result == "succeeded"
    asked: list[Step] = []

    def fence(planned: Step) -> Step | str:
        # The lease passes while the failing step is checked: the rollback comes after it.
        asked.append(planned)
        now = moment if len(asked) == 1 else lease
        why = may_step(lease, now, timedelta(seconds=10))
        return planned if why.code == STEP else f"may not take another step: {why}"

    execution = execute(
        (step("1.5.0", "p.2"),),
        driver,
        retries=0,
        clock=lambda: moment,
        sleep=time.sleep,
        verify=verify,
        fence=fence,
        on_failure="rollback",
        previous={"ecommerce": "1.4.0"},
    )
    assert execution.result == "failed"
    assert [(item.action, item.version) for item in asked] == [
        ("deploy", "1.5.0"),
        ("rollback", "1.4.0"),
    ]
    [undo] = execution.rollback
    assert undo.redeploy is None
    assert undo.why is not None
    assert "lease passed" in undo.why
    assert driver.current("ecommerce", "development") == "1.5.0"  # never switched back
    assert execution.half_deployed == ("ecommerce 1.5.0 runs: it failed verification",)
