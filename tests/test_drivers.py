"""Drivers and step execution: local releases, commands without a shell, retries, plug-ins."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from reconciler.config import build_environment
from reconciler.drivers import CommandDriver, LocalDriver, Step, load_driver, unavailable
from reconciler.errors import ConfigError
from reconciler.execute import execute
from reconciler.model import DriverSpec
from tests.gitfixtures import DEV_PLAN, ECOMMERCE, People, SeedRepo, dev_plan, example_file


def step(application: str = "ecommerce", version: str = "1.4.0", **changes: object) -> Step:
    values: dict[str, object] = {
        "application": application,
        "version": version,
        "environment": "development",
        "plan": "p",
        "run": "p.1",
        "action": "deploy",
        "from_version": None,
        "source": None,
    }
    values.update(changes)
    return Step(**values)  # type: ignore[arg-type]


def lines() -> list[str]:
    return []


def fixed_clock() -> datetime:
    return datetime(2026, 11, 22, 12, tzinfo=UTC)


# -- local --------------------------------------------------------------------------


def test_the_local_driver_creates_a_release_in_the_first_environment_and_switches_current(
    tmp_path: Path,
) -> None:
    driver = LocalDriver(tmp_path)
    outcome = driver.deploy(step(), lines().append)
    assert outcome.ok
    assert driver.current("ecommerce", "development") == "1.4.0"
    release = tmp_path / "development/ecommerce/releases/1.4.0"
    assert (release / "VERSION").read_text() == "ecommerce 1.4.0\n"
    assert os.readlink(tmp_path / "development/ecommerce/current") == "releases/1.4.0"


def test_the_local_driver_keeps_old_releases_and_switches_atomically(tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path)
    driver.deploy(step(version="1.0"), lines().append)
    driver.deploy(step(version="2.0"), lines().append)
    assert driver.current("ecommerce", "development") == "2.0"
    assert sorted(p.name for p in (tmp_path / "development/ecommerce/releases").iterdir()) == [
        "1.0",
        "2.0",
    ]
    assert not list((tmp_path / "development/ecommerce").glob(".current-*"))


def test_tag_and_deploy_creates_the_release_from_the_source_environments(tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path)
    driver.deploy(step("customer-portal", "0.6-dev.41"), lines().append)
    (tmp_path / "development/customer-portal/releases/0.6-dev.41/app.bin").write_text("built")
    tagged = step(
        "customer-portal",
        "0.6",
        environment="quality-assurance",
        action="tag-and-deploy",
        from_version="0.6-dev.41",
        source="development",
    )
    assert driver.deploy(tagged, lines().append).ok
    release = tmp_path / "quality-assurance/customer-portal/releases/0.6"
    assert (release / "app.bin").read_text() == "built"
    assert (release / "VERSION").read_text() == "customer-portal 0.6\n"


def test_promoting_a_release_the_source_does_not_have_fails(tmp_path: Path) -> None:
    outcome = LocalDriver(tmp_path).deploy(
        step(environment="quality-assurance", source="development"), lines().append
    )
    assert not outcome.ok
    assert not outcome.transient
    assert outcome.summary == "release ecommerce 1.4.0 not found in development"


# -- command ------------------------------------------------------------------------

SCRIPT = """\
import os, sys, time
print(" ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("RECONCILER_")))
print("SECRET=" + os.environ.get("SECRET", "<unset>"))
mode = sys.argv[1]
if mode == "sleep":
    time.sleep(30)
sys.exit(int(mode))
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "driver.py"
    path.write_text(SCRIPT)
    return path


def test_the_command_driver_passes_the_step_as_variables_and_nothing_else(
    script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET", "hunter2")
    outcome = CommandDriver((sys.executable, str(script), "0"), timeout=30).deploy(
        step(), lines().append
    )
    assert outcome.ok
    assert outcome.lines == (
        "RECONCILER_ACTION=deploy RECONCILER_APP=ecommerce RECONCILER_ENVIRONMENT=development "
        "RECONCILER_FROM_VERSION= RECONCILER_OPERATION=deploy RECONCILER_PLAN=p RECONCILER_RUN=p.1 "
        "RECONCILER_SOURCE_ENVIRONMENT= RECONCILER_VERSION=1.4.0",
        "SECRET=<unset>",
    )


def test_exit_75_is_a_transient_failure_and_other_codes_are_permanent(script: Path) -> None:
    transient = CommandDriver((sys.executable, str(script), "75"), timeout=30).deploy(
        step(), lines().append
    )
    permanent = CommandDriver((sys.executable, str(script), "3"), timeout=30).deploy(
        step(), lines().append
    )
    assert (transient.ok, transient.transient, transient.summary.endswith("exited 75")) == (
        False,
        True,
        True,
    )
    assert (permanent.ok, permanent.transient, permanent.summary.endswith("exited 3")) == (
        False,
        False,
        True,
    )


def test_a_command_that_outlives_its_timeout_is_killed_and_is_transient(script: Path) -> None:
    outcome = CommandDriver((sys.executable, str(script), "sleep"), timeout=1).deploy(
        step(), lines().append
    )
    assert not outcome.ok
    assert outcome.transient
    assert outcome.summary.endswith("timed out after 1 s")


def test_a_command_that_cannot_start_is_a_permanent_failure_naming_its_environment_file(
    tmp_path: Path,
) -> None:
    outcome = CommandDriver((str(tmp_path / "missing"),), timeout=30).deploy(step(), lines().append)
    assert (outcome.ok, outcome.transient) == (False, False)
    assert outcome.summary == (
        f"cannot start {tmp_path / 'missing'}: No such file or directory "
        "(check driver.argv in environments/development.yaml)"
    )


def test_transient_failures_are_retried_with_backoff_up_to_the_configured_count(
    tmp_path: Path,
) -> None:
    counter = tmp_path / "attempts"
    flaky = tmp_path / "flaky.py"
    flaky.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "sys.exit(75 if n < 3 else 0)\n"
    )
    slept: list[float] = []
    execution = execute(
        (step(),),
        CommandDriver((sys.executable, str(flaky)), timeout=30),
        retries=3,
        clock=fixed_clock,
        sleep=slept.append,
    )
    assert execution.result == "succeeded"
    assert execution.steps[0].attempts == 3
    assert slept == [1, 2]


def test_permanent_failures_are_not_retried_and_stop_the_run(script: Path) -> None:
    slept: list[float] = []
    failing = CommandDriver((sys.executable, str(script), "3"), timeout=30)
    execution = execute(
        (step(), step("customer-portal")), failing, retries=5, clock=fixed_clock, sleep=slept.append
    )
    assert execution.result == "failed"
    assert [result.attempts for result in execution.steps] == [1]
    assert slept == []
    assert execution.log[-1].endswith("run stopped at step 1: ecommerce 1.4.0 failed")


# -- third-party drivers -----------------------------------------------------------


@pytest.fixture
def plugin_on_path(tmp_path: Path) -> Iterator[Path]:
    site = tmp_path / "site"
    (site / "fake_driver-1.0.dist-info").mkdir(parents=True)
    (site / "fake_driver-1.0.dist-info" / "METADATA").write_text(
        "Name: fake-driver\nVersion: 1.0\n"
    )
    (site / "fake_driver-1.0.dist-info" / "entry_points.txt").write_text(
        "[reconciler.drivers]\nfake = fake_driver:make\n"
    )
    (site / "fake_driver.py").write_text(
        "class Fake:\n"
        "    def __init__(self, spec, root): self.options = dict(spec.options)\n"
        "    def deploy(self, step, on_line): on_line('fake'); return None\n"
        "    def current(self, application, environment): return self.options.get(application)\n"
        "def make(spec, root): return Fake(spec, root)\n"
    )
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("fake_driver", None)


def test_third_party_drivers_load_from_the_entry_point_group(plugin_on_path: Path) -> None:
    driver = load_driver(DriverSpec("fake", options={"ecommerce": "9.9"}), plugin_on_path)
    assert driver.current("ecommerce", "development") == "9.9"


def test_an_unknown_driver_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_driver(DriverSpec("nonexistent"), tmp_path)
    assert caught.value.message == "driver 'nonexistent' is not installed"


def test_an_environment_whose_driver_is_not_installed_is_named_at_its_line(
    tmp_path: Path,
) -> None:
    text = example_file("environments/development.yaml").replace(
        "driver: {type: local}", "driver: {type: nonexistent}"
    )
    line = text.splitlines().index("driver: {type: nonexistent}") + 1
    environment = build_environment(yaml.safe_load(text))
    files = {"environments/development.yaml": text.encode()}
    [(name, problem)] = unavailable([environment], files.get).items()
    assert (name, str(problem)) == (
        "development",
        f"environments/development.yaml:{line}: driver 'nonexistent' is not installed "
        "(install the package that registers it in the 'reconciler.drivers' group)",
    )


# -- drift --------------------------------------------------------------------------


def test_plan_reports_drift_between_the_driver_and_deployments(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    assert repo.apply().exit_code == 0
    driver = LocalDriver(repo.driver_root)
    driver.deploy(step(version="1.3.9"), lines().append)  # someone switched it by hand
    result = repo.reconciler("plan", "--driver-root", str(repo.driver_root), "--format", "json")
    assert result.json()["drift"] == [
        {
            "environment": "development",
            "application": "ecommerce",
            "recorded": "1.4.0",
            "current": "1.3.9",
        }
    ]


def test_plan_notes_a_driver_that_cannot_be_asked_naming_its_environment_file(
    tmp_path: Path, people: People
) -> None:
    development = example_file("environments/development.yaml").replace(
        "driver: {type: local}",
        "driver: {type: command, argv: [/nonexistent/deploy-driver], timeout: 5}",
    )
    repo = SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": development})
    repo.deployed("development", {"ecommerce": "1.4.0"})
    result = repo.reconciler("plan", "--format", "json")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.json()["drift"] == []
    assert result.json()["drift_notes"] == [
        "environments/development.yaml: its driver could not be asked what runs, so drift "
        "there is unknown: cannot start /nonexistent/deploy-driver: No such file or directory"
    ]
