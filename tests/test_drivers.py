"""Drivers and step execution: local releases, commands without a shell, retries, plug-ins."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from reconciler.adapters.drivers import (
    PROVENANCE,
    CommandDriver,
    LocalDriver,
    Step,
    load_driver,
    unavailable,
)
from reconciler.app.execute import execute
from reconciler.core.config import build_environment
from reconciler.core.errors import ConfigError
from reconciler.core.model import DriverSpec
from reconciler.core.printable import printable
from tests.configrepo import example_file
from tests.configrepo import reconciler as run_cli
from tests.people import People
from tests.repositories import SeedRepo, build
from tests.scenarios import DEV_PLAN, ECOMMERCE, dev_plan


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


def test_the_local_driver_makes_a_release_of_the_build_in_the_first_environment_and_switches(
    tmp_path: Path,
) -> None:
    build(tmp_path, "ecommerce", "1.4.0")
    driver = LocalDriver(tmp_path)
    outcome = driver.deploy(step(), lines().append)
    assert outcome.ok
    assert driver.current("ecommerce", "development") == "1.4.0"
    release = tmp_path / "development/ecommerce/releases/1.4.0"
    assert (release / "VERSION").read_text() == "ecommerce 1.4.0\n"
    assert (release / "app.bin").read_text() == "built 1.4.0"
    assert os.readlink(tmp_path / "development/ecommerce/current") == "releases/1.4.0"
    provenance = json.loads((release / PROVENANCE).read_text())
    assert re.fullmatch("sha256:[0-9a-f]{64}", provenance["build"])
    assert (provenance["action"], provenance["source"]) == ("deploy", None)


def test_the_local_driver_deploys_no_version_it_has_no_build_of(tmp_path: Path) -> None:
    # A typo (1.4.O for 1.4.0) "succeeded" when the driver made a release of any name.
    build(tmp_path, "ecommerce", "1.4.0")
    outcome = LocalDriver(tmp_path).deploy(step(version="1.4.O"), lines().append)
    builds = tmp_path / "artifacts/ecommerce"
    assert (outcome.ok, outcome.transient) == (False, False)
    assert outcome.summary == (
        f"local driver: no build of ecommerce 1.4.O in {builds} (builds there: 1.4.0); "
        f"put the build in {builds / '1.4.O'}/, or fix the version in the plan"
    )
    assert not (tmp_path / "development").exists()


def test_a_typo_in_a_version_fails_the_run_and_deploys_nothing(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    assert repo.apply().exit_code == 0
    repo.commit(people.alice, {DEV_PLAN: dev_plan({**ECOMMERCE, "version": "1.4.O"})})
    shutil.rmtree(repo.driver_root / "artifacts/ecommerce/1.4.O")  # the CI built 1.4.0 alone
    result = repo.apply("--format", "json")
    assert result.exit_code == 1
    [run] = result.json()["runs"]
    assert (run["result"], run["failed_step"]) == ("failed", "1 ecommerce 1.4.O")
    assert run["reason"].startswith("local driver: no build of ecommerce 1.4.O in ")
    assert LocalDriver(repo.driver_root).current("ecommerce", "development") == "1.4.0"
    deployed = yaml.safe_load((repo.path / "deployments/development.yaml").read_text())
    assert deployed["applications"]["ecommerce"]["version"] == "1.4.0"


def test_the_driver_root_from_the_environment_holds_the_builds_the_local_driver_ships(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    root = tmp_path / "elsewhere"
    build(root, "ecommerce", "1.4.0")
    environment = {**os.environ, "RECONCILER_DRIVER_ROOT": str(root)}
    result = run_cli(
        "apply",
        "--repo",
        repo.path,
        "--state-dir",
        repo.state_dir,
        "--key",
        people.reconciler.key,
        env=environment,
    )
    assert result.exit_code == 0, result.stderr
    assert LocalDriver(root).current("ecommerce", "development") == "1.4.0"
    assert not (repo.state_dir / "releases").exists()


def test_an_environment_named_artifacts_cannot_keep_local_releases_beside_the_builds(
    tmp_path: Path,
) -> None:
    build(tmp_path, "ecommerce", "1.4.0")
    outcome = LocalDriver(tmp_path).deploy(step(environment="artifacts"), lines().append)
    assert (outcome.ok, outcome.transient) == (False, False)
    assert "an environment named artifacts cannot keep its releases" in outcome.summary
    assert sorted(path.name for path in (tmp_path / "artifacts/ecommerce").iterdir()) == ["1.4.0"]


def test_a_build_changed_since_its_release_was_made_is_another_build(tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path)
    first = build(tmp_path, "ecommerce", "1.4.0")
    assert driver.deploy(step(), lines().append).ok
    (first / "app.bin").write_text("rebuilt")
    outcome = driver.deploy(step(run="p.2"), lines().append)
    assert (outcome.ok, outcome.transient) == (False, False)
    assert outcome.summary.startswith(
        "release ecommerce 1.4.0 in development exists as a copy of the build "
    )
    assert "(made by run p.1); this step wants a copy of the build " in outcome.summary


def test_a_link_in_a_build_ships_as_the_link_never_as_the_file_it_points_at(
    tmp_path: Path,
) -> None:
    # A build is whatever the code's CI left; a link in it to a file of the driver's host
    # (its key, say) must not put that file's bytes into a release, unlike the build's
    # digest (which reads the link, not its target) would suggest.
    secret = tmp_path / "host-secret"
    secret.write_text("the host's private key")
    built = build(tmp_path / "root", "ecommerce", "1.4.0")
    (built / "config").symlink_to(secret)
    assert LocalDriver(tmp_path / "root").deploy(step(), lines().append).ok
    release = tmp_path / "root/development/ecommerce/releases/1.4.0"
    assert os.readlink(release / "config") == str(secret)
    files = [path for path in release.rglob("*") if path.is_file() and not path.is_symlink()]
    assert not [path for path in files if b"private key" in path.read_bytes()]


def test_a_build_swapped_between_its_check_and_its_copy_is_not_shipped(tmp_path: Path) -> None:
    # The CI rewrites the build while the driver copies it: the release would record the
    # digest of the build it checked and hold another.
    built = build(tmp_path, "ecommerce", "1.4.0")

    class Racing(LocalDriver):
        def _create(
            self, release: Path, origin: Path, asked: Mapping[str, object], run: str
        ) -> None:
            (built / "app.bin").write_text("swapped")
            super()._create(release, origin, asked, run)

    outcome = Racing(tmp_path).deploy(step(), lines().append)
    assert (outcome.ok, outcome.transient) == (False, True)
    assert not (tmp_path / "development/ecommerce/releases/1.4.0").exists()


def test_the_local_driver_keeps_old_releases_and_switches_atomically(tmp_path: Path) -> None:
    build(tmp_path, "ecommerce", "1.0")
    build(tmp_path, "ecommerce", "2.0")
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
    build(tmp_path, "customer-portal", "0.6-dev.41")
    assert driver.deploy(step("customer-portal", "0.6-dev.41"), lines().append).ok
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
    assert (release / "app.bin").read_text() == "built 0.6-dev.41"
    assert (release / "VERSION").read_text() == "customer-portal 0.6\n"


def test_promoting_a_release_the_source_does_not_have_fails(tmp_path: Path) -> None:
    outcome = LocalDriver(tmp_path).deploy(
        step(environment="quality-assurance", source="development"), lines().append
    )
    assert not outcome.ok
    assert not outcome.transient
    assert outcome.summary == "release ecommerce 1.4.0 not found in development"


def tag(from_version: str, version: str = "0.6") -> Step:
    """customer-portal `version` into quality-assurance, tagged from development's build."""
    return step(
        "customer-portal",
        version,
        environment="quality-assurance",
        action="tag-and-deploy",
        from_version=from_version,
        source="development",
    )


def built(driver: LocalDriver, *versions: str) -> None:
    """customer-portal builds deployed in development, each with its own app.bin."""
    for version in versions:
        build(driver.root, "customer-portal", version)
        assert driver.deploy(step("customer-portal", version), lines().append).ok


QA_PORTAL = "quality-assurance/customer-portal"


def test_a_release_records_how_it_was_made_and_a_digest_of_its_content(tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path)
    built(driver, "0.6-dev.41")
    assert driver.deploy(tag("0.6-dev.41"), lines().append).ok
    release = tmp_path / QA_PORTAL / "releases/0.6"
    provenance = json.loads((release / PROVENANCE).read_text())
    assert {key: value for key, value in provenance.items() if key != "digest"} == {
        "application": "customer-portal",
        "version": "0.6",
        "environment": "quality-assurance",
        "action": "tag-and-deploy",
        "source": "development",
        "from": "0.6-dev.41",
        "run": "p.1",
    }
    assert re.fullmatch("sha256:[0-9a-f]{64}", provenance["digest"])
    # Made from a release that has a provenance of its own: that one is not copied along.
    origin = tmp_path / "development/customer-portal/releases/0.6-dev.41"
    assert json.loads((origin / PROVENANCE).read_text())["action"] == "deploy"
    assert sorted(path.name for path in release.iterdir()) == [PROVENANCE, "VERSION", "app.bin"]


def test_a_tag_from_another_build_than_the_release_was_made_from_fails_and_current_stays(
    tmp_path: Path,
) -> None:
    driver = LocalDriver(tmp_path)
    built(driver, "0.5-dev.3", "0.6-dev.41", "0.6-dev.42")
    assert driver.deploy(tag("0.6-dev.41"), lines().append).ok
    assert driver.deploy(tag("0.5-dev.3", "0.5"), lines().append).ok  # rolled back since

    said: list[str] = []
    outcome = driver.deploy(tag("0.6-dev.42"), said.append)

    release = tmp_path / QA_PORTAL / "releases/0.6"
    assert (outcome.ok, outcome.transient) == (False, False)
    assert outcome.summary == (
        "release customer-portal 0.6 in quality-assurance exists as a tag of development's "
        "0.6-dev.41 (made by run p.1); this step wants a tag of development's 0.6-dev.42, "
        f"another build: remove {release} to have it made again as a tag of development's "
        "0.6-dev.42, or deploy another version"
    )
    assert said == []
    assert driver.current("customer-portal", "quality-assurance") == "0.5"
    assert (release / "app.bin").read_text() == "built 0.6-dev.41"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda release: (release / "app.bin").write_text("patched"),
        lambda release: (release / "extra.so").write_text("injected"),
        lambda release: (release / "app.bin").chmod(0o777),
        lambda release: (release / "app.bin").unlink(),
    ],
    ids=["content", "added-file", "mode", "removed-file"],
)
def test_a_release_changed_after_it_was_made_is_not_deployed_again(
    tmp_path: Path, tamper: Callable[[Path], object]
) -> None:
    driver = LocalDriver(tmp_path)
    built(driver, "0.5-dev.3", "0.6-dev.41", "0.6-dev.42")
    assert driver.deploy(tag("0.6-dev.41"), lines().append).ok
    assert driver.deploy(tag("0.5-dev.3", "0.5"), lines().append).ok
    release = tmp_path / QA_PORTAL / "releases/0.6"
    tamper(release)

    outcome = driver.deploy(tag("0.6-dev.41"), lines().append)

    assert (outcome.ok, outcome.transient) == (False, False)
    assert outcome.summary.startswith(
        "release customer-portal 0.6 in quality-assurance changed after it was made"
    )
    assert outcome.summary.endswith(
        f"remove {release} to have it made again as a tag of development's 0.6-dev.41"
    )
    assert driver.current("customer-portal", "quality-assurance") == "0.5"


def test_the_same_ask_again_switches_to_the_release_without_copying_it_again(
    tmp_path: Path,
) -> None:
    driver = LocalDriver(tmp_path)
    built(driver, "0.5-dev.3", "0.6-dev.41")
    assert driver.deploy(tag("0.6-dev.41"), lines().append).ok
    assert driver.deploy(tag("0.5-dev.3", "0.5"), lines().append).ok
    release = tmp_path / QA_PORTAL / "releases/0.6"
    made = {path.name: path.stat().st_ino for path in release.iterdir()}

    said: list[str] = []
    outcome = driver.deploy(tag("0.6-dev.41"), said.append)

    assert outcome.ok, outcome.summary
    assert said == [
        f"release {release} exists as a tag of development's 0.6-dev.41: not copied again",
        "current -> releases/0.6",
    ]
    assert {path.name: path.stat().st_ino for path in release.iterdir()} == made
    assert driver.current("customer-portal", "quality-assurance") == "0.6"


def test_a_release_made_by_a_plain_deploy_is_not_taken_for_a_tag_of_a_build(
    tmp_path: Path,
) -> None:
    driver = LocalDriver(tmp_path)
    built(driver, "0.6", "0.6-dev.42")
    promoted = step("customer-portal", "0.6", environment="quality-assurance", source="development")
    assert driver.deploy(promoted, lines().append).ok
    release = tmp_path / QA_PORTAL / "releases/0.6"
    recorded = json.loads((release / PROVENANCE).read_text())
    assert (recorded["action"], recorded["source"], recorded["from"]) == (
        "deploy",
        "development",
        "0.6",
    )

    outcome = driver.deploy(tag("0.6-dev.42"), lines().append)

    assert not outcome.ok
    assert outcome.summary.startswith(
        "release customer-portal 0.6 in quality-assurance exists as a copy of development's 0.6 "
        "(made by run p.1); this step wants a tag of development's 0.6-dev.42, another build"
    )
    assert driver.deploy(promoted, lines().append).ok  # the same plain deploy still may


def test_a_release_without_provenance_is_never_switched_to(tmp_path: Path) -> None:
    # A release nobody can say the making of (made by hand, or before releases recorded
    # it) may not be the build the step ships, in the first environment (builds go to
    # artifacts/) as in the ones it promotes to.
    driver = LocalDriver(tmp_path)
    build(tmp_path, "customer-portal", "0.6-dev.41")
    by_hand_first = tmp_path / "development/customer-portal/releases/0.6-dev.41"
    by_hand_first.mkdir(parents=True)
    refused = driver.deploy(step("customer-portal", "0.6-dev.41"), lines().append)
    assert not refused.ok
    assert refused.summary.startswith(
        "release customer-portal 0.6-dev.41 in development exists but records no provenance"
    )
    by_hand_first.rmdir()
    assert driver.deploy(step("customer-portal", "0.6-dev.41"), lines().append).ok
    by_hand = tmp_path / QA_PORTAL / "releases/0.6"
    by_hand.mkdir(parents=True)

    outcome = driver.deploy(tag("0.6-dev.41"), lines().append)

    assert not outcome.ok
    assert outcome.summary == (
        "release customer-portal 0.6 in quality-assurance exists but records no provenance, "
        "so it may be another build than the one wanted (a tag of development's 0.6-dev.41): "
        f"remove {by_hand} to have it made again as a tag of development's 0.6-dev.41"
    )
    assert driver.current("customer-portal", "quality-assurance") is None


@pytest.mark.parametrize(
    "changes",
    [
        {"version": "9.9\n"},
        {"version": "../../../x"},
        {"version": ".."},
        {"version": "a/b"},
        {"version": ""},
        {"version": ".hidden"},
        {"application": "eco\x1bmmerce"},
        {"environment": "dev\u202e"},
        {"from_version": "0.6\x00", "action": "tag-and-deploy", "source": "development"},
    ],
    ids=repr,
)
def test_the_local_driver_makes_no_directory_of_a_name_that_cannot_be_one(
    tmp_path: Path, changes: dict[str, str]
) -> None:
    # The schemas refuse these names; the driver is the defence behind them.
    outcome = LocalDriver(tmp_path / "releases").deploy(step(**changes), lines().append)
    assert (outcome.ok, outcome.transient) == (False, False)
    assert outcome.summary.startswith("local driver: the ")
    assert "cannot name a release directory" in outcome.summary
    assert printable(outcome.summary) == outcome.summary  # shown as escapes, never acted on
    assert not (tmp_path / "releases").exists()


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
        "RECONCILER_FROM_VERSION= RECONCILER_LEASE_UNTIL= RECONCILER_OPERATION=deploy "
        "RECONCILER_PLAN=p RECONCILER_RUN=p.1 "
        "RECONCILER_SOURCE_ENVIRONMENT= RECONCILER_VERSION=1.4.0",
        "SECRET=<unset>",
    )


CURRENT = """\
import os, sys
print("checking", *sorted(k for k in os.environ if k.startswith("RECONCILER_")), flush=True)
print("1.3.9", file=sys.stderr if sys.argv[1] == "stderr" else sys.stdout)
sys.exit(0 if sys.argv[1] != "fail" else 1)
"""


@pytest.mark.parametrize(
    ("mode", "answer"), [("stdout", "1.3.9"), ("stderr", "1.3.9"), ("fail", None)]
)
def test_the_command_drivers_current_is_the_last_line_it_prints_and_exits_0_with(
    tmp_path: Path, mode: str, answer: str | None
) -> None:
    # The contract docs/how-it-works.md documents: the version is the last line of stdout and
    # stderr read as one stream, and counts only with exit 0.
    script = tmp_path / "current.py"
    script.write_text(CURRENT)
    driver = CommandDriver((sys.executable, str(script), mode), timeout=30)
    assert driver.current("ecommerce", "development") == answer


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
    build(repo.driver_root, "ecommerce", "1.3.9")
    assert driver.deploy(step(version="1.3.9"), lines().append).ok  # switched by hand
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
