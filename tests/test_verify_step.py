"""Verification after each step: with `verify`, a run checks each application it deployed
until a check passes or the timeout passes; the finish record says which were verified."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from reconciler.adapters.drivers import CommandDriver, LocalDriver, Step, load_driver
from reconciler.app.execute import Execution, execute
from reconciler.core.model import DriverSpec, Verify
from reconciler.core.runs import LEASE_MARGIN, lease_for, step_budget
from tests import builders
from tests.configrepo import example_file, reconciler, replace
from tests.people import People
from tests.repositories import SeedRepo, run_git, trailers
from tests.scenarios import DEV_PLAN, ECOMMERCE, PORTAL_DEV, dev_plan

LOG = "logs/development/2026-11-dev-build/2026-11-dev-build.1.log"

# A check that fails until it has been asked `sys.argv[2]` times; each call appends the
# variables it got to `sys.argv[1]`, one JSON object a line.
CHECK = """\
import json, os, pathlib, sys
calls = pathlib.Path(sys.argv[1])
seen = {k: v for k, v in os.environ.items() if k.startswith("RECONCILER_")}
release = os.environ.get("RECONCILER_RELEASE")
if release:
    seen["VERSION_FILE"] = pathlib.Path(release, "VERSION").read_text()
with calls.open("a") as handle:
    handle.write(json.dumps(seen) + "\\n")
count = len(calls.read_text().splitlines())
print(f"health check {count}")
sys.exit(0 if count >= int(sys.argv[2]) else 1)
"""

# A command driver: deploys by appending to `sys.argv[1]`; its check fails, always.
FAILING_CHECK_DRIVER = """\
import os, pathlib, sys
out = pathlib.Path(sys.argv[1])
operation = os.environ["RECONCILER_OPERATION"]
if operation == "current":
    sys.exit(1)
app, version = os.environ["RECONCILER_APP"], os.environ["RECONCILER_VERSION"]
with out.open("a") as handle:
    handle.write(f"{operation} {app} {version}\\n")
if operation == "check":
    print("not healthy")
    sys.exit(1)
"""


def environment_file(driver: str, verify: str | None) -> str:
    text = example_file("environments/development.yaml")
    text = text.replace("driver: {type: local}", f"driver: {driver}")
    return text + (f"verify: {verify}\n" if verify is not None else "")


def argv(*parts: str | Path) -> str:
    return "[" + ", ".join(json.dumps(str(part)) for part in (sys.executable, *parts)) + "]"


def local_repo_with_check(
    tmp_path: Path, people: People, verify: str | None, passes_at: int
) -> tuple[SeedRepo, Path]:
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    calls = tmp_path / "checks.jsonl"
    driver = f"{{type: local, check: {argv(script, calls, str(passes_at))}}}"
    environment = environment_file(driver, verify)
    repo = SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": environment})
    return repo, calls


def body(repo: SeedRepo) -> str:
    return repo.git("log", "-1", "--format=%B", "main")


# -- end to end --------------------------------------------------------------------------------


def test_a_check_that_passes_at_its_second_try_verifies_the_step_and_the_run_succeeds(
    tmp_path: Path, people: People
) -> None:
    repo, calls = local_repo_with_check(tmp_path, people, "{timeout: 30s, interval: 1s}", 2)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "succeeded 2026-11-dev-build.1" in result.stdout
    assert trailers(repo, "main")["Verified"] == "1 ecommerce 1.4.0"
    assert "Failed-Verification" not in trailers(repo, "main")
    assert "1. ecommerce 1.4.0: ok (ecommerce 1.4.0 is current); verified\n" in body(repo)
    _, second = (json.loads(line) for line in calls.read_text().splitlines())
    release = repo.driver_root / "development" / "ecommerce" / "releases" / "1.4.0"
    assert second["RECONCILER_OPERATION"] == "check"
    assert (second["RECONCILER_APP"], second["RECONCILER_VERSION"]) == ("ecommerce", "1.4.0")
    assert second["RECONCILER_ENVIRONMENT"] == "development"
    assert second["RECONCILER_RELEASE"] == str(release)
    assert second["VERSION_FILE"] == "ecommerce 1.4.0\n"
    log = (repo.path / LOG).read_text()
    assert "[1/1 ecommerce 1.4.0] check failed: check " in log
    assert "[1/1 ecommerce 1.4.0] health check 2" in log
    assert "[1/1 ecommerce 1.4.0] check passed: check " in log
    deployed = yaml.safe_load((repo.path / "deployments/development.yaml").read_text())
    assert deployed["applications"]["ecommerce"]["version"] == "1.4.0"
    assert repo.reconciler("verify").exit_code == 0  # the record counts as one


def test_a_check_that_never_passes_fails_the_run_at_that_step_and_runs_no_later_one(
    tmp_path: Path, people: People
) -> None:
    program = tmp_path / "driver.py"
    program.write_text(FAILING_CHECK_DRIVER)
    out = tmp_path / "driver.out"
    driver = f"{{type: command, argv: {argv(program, out)}, timeout: 30}}"
    environment = environment_file(driver, "{timeout: 2s, interval: 1s}")
    repo = SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": environment})
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    started = time.monotonic()
    result = repo.apply()
    assert time.monotonic() - started < 60
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "failed 2026-11-dev-build.1" in result.stdout
    record = trailers(repo, "main")
    assert (record["Result"], record["Failed-Step"]) == ("failed", "1 ecommerce 1.4.0")
    assert record["Failed-Verification"] == "1 ecommerce 1.4.0"
    assert "Verified" not in record
    text = body(repo)
    assert "1. ecommerce 1.4.0: FAILED (failed verification: no check passed in 2 s (" in text
    assert "the last: check " in text
    assert text.split("\n\n")[1].endswith("; failed verification")
    assert "customer-portal 0.6-dev.41:" not in text  # no step line: never deployed
    assert "- customer-portal 0.6-dev.41 not started\n" in text
    # The program was asked to check (with RECONCILER_OPERATION=check) until the timeout,
    # and never to deploy the second application.
    operations = out.read_text().splitlines()
    assert operations[0] == "deploy ecommerce 1.4.0"
    assert set(operations[1:]) == {"check ecommerce 1.4.0"}
    assert 2 <= len(operations[1:]) <= 3
    # A version that failed verification is not recorded as running there.
    deployed = yaml.safe_load((repo.path / "deployments/development.yaml").read_text())
    assert not deployed["applications"]
    assert "not healthy" in (repo.path / LOG).read_text()


def test_without_verify_nothing_is_checked_and_the_record_says_so(
    tmp_path: Path, people: People
) -> None:
    repo, calls = local_repo_with_check(tmp_path, people, None, 1)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "1. ecommerce 1.4.0: ok (ecommerce 1.4.0 is current); not checked\n" in body(repo)
    assert not {"Verified", "Failed-Verification"} & set(trailers(repo, "main"))
    assert not calls.exists()  # the check command runs only with `verify`


# -- the drivers' checks -----------------------------------------------------------------------


def step(application: str = "ecommerce", version: str = "1.4.0") -> Step:
    return Step(application, version, "development", "p", "p.1", "deploy", None, None)


def ignore(_: str) -> None:
    pass


def fixed_clock() -> datetime:
    return datetime(2026, 11, 22, 12, tzinfo=UTC)


def test_the_local_check_fails_while_the_release_is_not_current(tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path)
    outcome = driver.check(step(), ignore, 5)
    assert not outcome.ok
    assert outcome.summary == "ecommerce 1.4.0 is not current in development (nothing is current)"
    application = tmp_path / "development" / "ecommerce"
    (application / "releases" / "1.3.9").mkdir(parents=True)
    (application / "current").symlink_to(Path("releases") / "1.3.9")
    assert driver.check(step(), ignore, 5).summary.endswith("(current is 1.3.9)")
    assert driver.check(step(version="1.3.9"), ignore, 5).ok


SLOW_CHECK = """\
import os, sys, time
if os.environ.get("RECONCILER_OPERATION") == "check":
    time.sleep(30)
"""


def test_a_check_that_hangs_is_stopped_at_the_verify_timeout(tmp_path: Path) -> None:
    program = tmp_path / "slow.py"
    program.write_text(SLOW_CHECK)
    slept: list[float] = []
    started = time.monotonic()
    execution = execute(
        (step(), step("customer-portal")),
        CommandDriver((sys.executable, str(program)), timeout=60),
        retries=0,
        clock=fixed_clock,
        sleep=slept.append,
        verify=Verify(timeout=timedelta(seconds=1), interval=timedelta(seconds=1)),
    )
    assert time.monotonic() - started < 15
    assert execution.result == "failed"
    [failed] = execution.steps
    assert (failed.verification, failed.checks) == ("failed verification", 1)
    assert failed.outcome.summary.startswith("failed verification: no check passed in 1 s (1 check")
    assert "timed out after" in failed.outcome.summary
    assert slept == []


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Path]:
    """Two third-party drivers: `checking`, whose check passes at its third try (and counts
    them), and `plain`, which has no check."""
    site = tmp_path / "site"
    info = site / "check_plugins-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Name: check-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[reconciler.drivers]\nchecking = check_plugins:checking\nplain = check_plugins:plain\n"
    )
    (site / "check_plugins.py").write_text(
        "from reconciler.adapters.drivers import Outcome\n"
        "class Plain:\n"
        "    def __init__(self, spec, root): self.checks = 0\n"
        "    def deploy(self, step, on_line): return Outcome.success('deployed')\n"
        "    def current(self, application, environment): return None\n"
        "class Checking(Plain):\n"
        "    def check(self, step, on_line, timeout):\n"
        "        self.checks += 1\n"
        "        on_line(f'check {self.checks} with {timeout:.0f} s left')\n"
        "        return Outcome(self.checks >= 3, False, (), f'check {self.checks}')\n"
        "def checking(spec, root): return Checking(spec, root)\n"
        "def plain(spec, root): return Plain(spec, root)\n"
    )
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("check_plugins", None)


def run_plugin(name: str, root: Path, **options: Any) -> Execution:
    return execute(
        (step(),),
        load_driver(DriverSpec(name), root),
        retries=0,
        clock=fixed_clock,
        sleep=time.sleep,
        verify=Verify(timeout=timedelta(seconds=20), interval=timedelta(milliseconds=50)),
        **options,
    )


def test_an_entry_point_driver_with_a_check_is_checked_until_it_passes(plugins: Path) -> None:
    execution = run_plugin("checking", plugins)
    assert execution.result == "succeeded"
    [verified] = execution.steps
    assert (verified.verification, verified.checks) == ("verified", 3)
    assert verified.outcome.summary == "deployed"
    assert any(line.endswith("check 1 with 20 s left") for line in execution.log)


def test_an_entry_point_driver_without_a_check_leaves_the_step_not_checked(
    plugins: Path,
) -> None:
    execution = run_plugin("plain", plugins)
    assert execution.result == "succeeded"
    assert execution.steps[0].verification == "not checked"
    assert execution.log[-2].endswith("not checked: the driver has no check")


def test_a_stop_asked_for_while_checking_interrupts_the_run_and_leaves_the_step_unfinished(
    plugins: Path,
) -> None:
    asked: list[bool] = []

    def stop_requested() -> bool:
        asked.append(True)
        return len(asked) > 1  # not before the step: while it is checked

    execution = run_plugin("checking", plugins, stop_requested=stop_requested)
    assert execution.result == "interrupted"
    assert execution.steps == ()  # not deployed as far as deployments/ goes: a retry redoes it
    assert execution.reason is not None
    assert "shutting down" in execution.reason


# -- the lease ---------------------------------------------------------------------------------


def test_the_step_budget_and_so_the_lease_include_the_verify_timeout() -> None:
    environment = msgspec.structs.replace(
        builders.environment("development"), driver=DriverSpec("local", timeout=100, retries=2)
    )
    assert step_budget(environment) == timedelta(seconds=100 * 3 + 1 + 2)
    verified = msgspec.structs.replace(
        environment, verify=Verify(timedelta(minutes=5), timedelta(seconds=10))
    )
    assert step_budget(verified) == timedelta(seconds=303 + 300)
    assert lease_for(verified, 2) == 2 * timedelta(seconds=603) + LEASE_MARGIN


# -- validate ----------------------------------------------------------------------------------


DEVELOPMENT = "environments/development.yaml"


@pytest.mark.parametrize(
    ("verify", "message"),
    [
        ("{timeout: 0s}", "a verify timeout of 0 leaves no time for any check"),
        ("{timeout: 2d}", "a verify timeout longer than 1d"),
        ("{timeout: 5m, interval: 0s}", "a verify interval of 0 checks without pause"),
        ("{timeout: 5m, interval: 10m}", "the verify interval is longer than the timeout"),
        ("{timeout: 5s}", "the verify interval (the default interval) is longer than the timeout"),
        ("{timeout: 5 minutes}", "'5 minutes'"),
        ("{interval: 10s}", "'timeout'"),
    ],
)
def test_validate_refuses_a_verify_block_it_cannot_run_naming_its_file_and_line(
    example_copy: Path, verify: str, message: str
) -> None:
    run_git(example_copy, "init", "-q")
    (example_copy / DEVELOPMENT).write_text(environment_file("{type: local}", verify))
    result = reconciler("validate", "--repo", example_copy, "--format", "json")
    assert result.exit_code == 1, result.stdout
    [finding] = result.json()["findings"]
    assert (finding["file"], finding["line"], finding["severity"]) == (DEVELOPMENT, 12, "error")
    assert message in finding["message"]
    assert finding["hint"]


def test_validate_takes_a_sound_verify_block_and_a_local_check(example_copy: Path) -> None:
    run_git(example_copy, "init", "-q")
    driver = "{type: local, check: [/usr/bin/true]}"
    (example_copy / DEVELOPMENT).write_text(environment_file(driver, "{timeout: 5m}"))
    result = reconciler("validate", "--repo", example_copy)
    assert result.exit_code == 0, result.stdout


def test_validate_refuses_a_check_on_a_driver_other_than_local(example_copy: Path) -> None:
    run_git(example_copy, "init", "-q")
    replace(
        example_copy,
        DEVELOPMENT,
        "driver: {type: local}",
        "driver: {type: command, argv: [deploy.sh], check: [probe.sh]}",
    )
    result = reconciler("validate", "--repo", example_copy, "--format", "json")
    assert result.exit_code == 1, result.stdout
    [finding] = result.json()["findings"]
    assert (finding["file"], finding["line"]) == (DEVELOPMENT, 11)
    assert "'check' is the local driver's" in finding["message"]
