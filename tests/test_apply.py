"""`reconciler apply`: verified, approved, triggered plans run through drivers and are recorded."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from ruamel.yaml import YAML

from reconciler.adapters.statestore import StateStore
from reconciler.app import reconcile
from reconciler.app.authorise import Authoriser
from reconciler.app.finishing import FinishRecords
from reconciler.app.passes import Options, PassReport, StartedRun
from reconciler.app.reconcile import Reconciler
from reconciler.core.errors import ConfigError, HistoryRewrittenError
from reconciler.core.loader import load
from tests.clock import SUITE_NOW
from tests.configrepo import Result, example_file, reconciler, reconciler_process
from tests.people import People, grant_bob_deployment, teams_with
from tests.repositories import SeedRepo, run_git, trailers
from tests.runner import (
    shown_on,
    sigterm_during_the_first_of_two_steps,
    wait_for,
    with_command_driver,
)
from tests.scenarios import (
    DEV_PLAN,
    ECOMMERCE,
    PORTAL,
    PORTAL_DEV,
    QA_PLAN,
    dev_plan,
    frozen_until_the_end_of_time,
    plan,
    qa_plan,
)


def test_the_seed_story_end_to_end(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    # Development: the leads build their release candidates; a tech lead may deploy there.
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(
        people.diana,
        {DEV_PLAN: dev_plan(ECOMMERCE, {"name": "customer-portal", "version": "0.6-dev.41"})},
    )
    first = repo.apply()
    assert first.exit_code == 0, first.stderr
    assert "succeeded 2026-11-dev-build.1" in first.stdout
    # Quality Assurance: saved by one lead, completed by another on a branch, approved there.
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    with repo.branch("qa-release"):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="Invoices page")})
        repo.approve(people.ravi, QA_PLAN)
    # A developer pushing straight to main does not deploy.
    repo.trigger(people.bob, QA_PLAN, signed=False)
    assert "2026-11-qa-release" not in repo.apply().stdout
    # Ops merge: the trigger.
    merge = repo.merge(people.olga, "qa-release")
    second = repo.apply("--format", "json")
    assert second.exit_code == 0, second.stderr
    [run] = second.json()["runs"]
    assert (run["run"], run["environment"], run["result"]) == (
        "2026-11-qa-release.1",
        "quality-assurance",
        "succeeded",
    )
    finish, start = repo.git("rev-list", "-2", "main").split()
    assert repo.git("rev-parse", f"{start}^") == merge
    assert trailers(repo, start)["Result"] == "started"
    assert trailers(repo, finish) == {
        "Plan": f"{QA_PLAN}@{repo.blob(QA_PLAN)}",
        "Environment": "quality-assurance",
        "Triggered-By": "olga",
        "Approved-By": "ravi",
        "Result": "succeeded",
        "Run": "2026-11-qa-release.1",
    }
    deployed = yaml.safe_load((repo.path / "deployments/quality-assurance.yaml").read_text())
    assert {app: entry["version"] for app, entry in deployed["applications"].items()} == {
        "ecommerce": "1.4.0",
        "customer-portal": "0.6",
    }
    log = (
        repo.path / "logs/quality-assurance/2026-11-qa-release/2026-11-qa-release.1.log"
    ).read_text()
    assert "[2/2 customer-portal 0.6] ok" in log
    current = repo.driver_root / "quality-assurance" / "customer-portal" / "current"
    assert current.resolve().name == "0.6"
    assert (current / "VERSION").read_text() == "customer-portal 0.6\n"
    verify = repo.reconciler("verify")
    assert verify.exit_code == 0, verify.stdout
    assert repo.apply().stdout.strip().endswith("nothing to run")


def test_the_deployments_file_names_its_schema_and_reads_alike_in_yaml_1_1_and_1_2(
    tmp_path: Path, people: People
) -> None:
    # Version 1e3 is text to YAML 1.1 and a number to YAML 1.2 (the editor): the file the
    # reconciler commits quotes it, so the loader takes it back, and names its schema.
    repo = SeedRepo.create(tmp_path, people)
    written = dev_plan({"name": "ecommerce", "version": "1e3"})
    assert "version: 1e3\n" in written
    repo.commit(people.alice, {DEV_PLAN: written.replace("version: 1e3", "version: '1e3'")})
    result = repo.apply()
    assert result.exit_code == 0, result.stderr
    text = (repo.path / "deployments/development.yaml").read_text()
    assert text.splitlines()[:2] == [
        "# yaml-language-server: $schema=../schemas/deployment.schema.json",
        "# Written by the reconciler; do not edit. What runs in this environment now.",
    ]
    assert "  ecommerce:\n    version: '1e3'\n" in text
    assert YAML(typ="safe", pure=True).load(text) == load(text.encode(), "f.yaml").data
    validated = reconciler("validate", "--repo", repo.path)
    assert validated.exit_code == 0, validated.stdout


def test_a_failing_second_application_stops_the_run_and_the_record_names_the_step(
    tmp_path: Path, people: People
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    out.with_name("driver.out.fail").write_text("customer-portal")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    result = repo.apply()
    assert result.exit_code == 1
    assert "failed 2026-11-dev-build.1" in result.stdout
    assert trailers(repo, "main")["Result"] == "failed"
    assert trailers(repo, "main")["Failed-Step"] == "2 customer-portal 0.6-dev.41"
    deployed = yaml.safe_load((repo.path / "deployments/development.yaml").read_text())
    assert list(deployed["applications"]) == ["ecommerce"]
    log = (repo.path / "logs/development/2026-11-dev-build/2026-11-dev-build.1.log").read_text()
    assert "[2/2 customer-portal 0.6-dev.41] boom" in log
    assert "run stopped at step 2: customer-portal 0.6-dev.41 failed" in log
    assert repo.apply().exit_code == 0  # a plan version runs at most once, even a failed one
    assert len(out.read_text().splitlines()) == 2


def command_driver_repo(tmp_path: Path, people: People, program: Path) -> SeedRepo:
    """The seed story with development deploying through `program` alone."""
    development = example_file("environments/development.yaml").replace(
        "driver: {type: local}", f"driver: {{type: command, argv: [{program}], timeout: 5}}"
    )
    return SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": development})


def test_a_driver_that_does_not_exist_ends_the_run_failed_naming_its_environment_file(
    tmp_path: Path, people: People
) -> None:
    missing = tmp_path / "missing-driver"
    repo = command_driver_repo(tmp_path, people, missing)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.apply()
    assert (result.exit_code, result.stderr) == (1, "")
    assert "failed 2026-11-dev-build.1" in result.stdout
    assert trailers(repo, "main")["Result"] == "failed"
    why = (
        f"cannot start {missing}: No such file or directory "
        "(check driver.argv in environments/development.yaml)"
    )
    assert f"  {why}" in result.stdout.splitlines()
    assert f"1. ecommerce 1.4.0: FAILED ({why})" in repo.git("log", "-1", "--format=%B", "main")
    log = (repo.path / "logs/development/2026-11-dev-build/2026-11-dev-build.1.log").read_text()
    assert f"[1/1 ecommerce 1.4.0] FAILED: {why}" in log


def test_a_driver_that_is_not_executable_ends_the_run_failed(
    tmp_path: Path, people: People
) -> None:
    program = tmp_path / "driver.sh"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o644)
    repo = command_driver_repo(tmp_path, people, program)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.apply()
    assert (result.exit_code, result.stderr) == (1, "")
    assert trailers(repo, "main")["Result"] == "failed"
    assert f"cannot start {program}: Permission denied" in repo.git(
        "log", "-1", "--format=%B", "main"
    )


def test_an_error_raised_while_a_run_executes_is_recorded_as_its_failure(
    tmp_path: Path, people: People
) -> None:
    site = tmp_path / "site"
    (site / "raising_driver-1.0.dist-info").mkdir(parents=True)
    (site / "raising_driver-1.0.dist-info" / "METADATA").write_text(
        "Name: raising-driver\nVersion: 1.0\n"
    )
    (site / "raising_driver-1.0.dist-info" / "entry_points.txt").write_text(
        "[reconciler.drivers]\nraising = raising_driver:make\n"
    )
    (site / "raising_driver.py").write_text(
        "from reconciler.core.errors import ReconcilerError\n"
        "class Raising:\n"
        "    def deploy(self, step, on_line):\n"
        "        raise ReconcilerError('the cluster said no', hint='ask the cluster')\n"
        "    def current(self, application, environment): return None\n"
        "def make(spec, root): return Raising()\n"
    )
    development = example_file("environments/development.yaml").replace(
        "driver: {type: local}", "driver: {type: raising}"
    )
    repo = SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": development})
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    # The plug-in is found on the process's own path.
    result = reconciler_process(*repo.apply_command()[3:], env={**os.environ, "PYTHONPATH": path})
    assert (result.exit_code, result.stderr) == (1, "")
    assert trailers(repo, "main")["Result"] == "failed"
    assert "the cluster said no (ask the cluster)" in repo.git("log", "-1", "--format=%B", "main")
    log = (repo.path / "logs/development/2026-11-dev-build/2026-11-dev-build.1.log").read_text()
    assert "run failed: the cluster said no (ask the cluster)" in log


def uninstalled_driver_repo(
    tmp_path: Path, people: People, driver: str = "{type: no-such-driver}"
) -> tuple[SeedRepo, int]:
    """The seed story with development's driver not installed; the line naming it."""
    development = example_file("environments/development.yaml").replace(
        "driver: {type: local}", f"driver: {driver}"
    )
    line = development.splitlines().index(f"driver: {driver}") + 1
    repo = SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": development})
    return repo, line


def test_a_plan_whose_driver_is_not_installed_never_starts_and_apply_says_why(
    tmp_path: Path, people: People
) -> None:
    repo, line = uninstalled_driver_repo(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    before = repo.git("rev-parse", "main")
    result = repo.apply()
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == [
        f"held development: environments/development.yaml:{line}: "
        "driver 'no-such-driver' is not installed",
        "  hint: install the package that registers it in the 'reconciler.drivers' group",
        "nothing to run",
    ]
    assert repo.git("rev-parse", "main") == before  # no start record, no refusal


def test_a_plan_whose_command_is_a_relative_path_waits_and_the_policy_stands(
    tmp_path: Path, people: People
) -> None:
    # The command would run in an empty folder, where `scripts/deploy.sh` names nothing.
    repo, line = uninstalled_driver_repo(
        tmp_path, people, "{type: command, argv: [scripts/deploy.sh]}"
    )
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    before = repo.git("rev-parse", "main")
    result = repo.apply()
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:3] == [
        f"held development: environments/development.yaml:{line}: 'scripts/deploy.sh' is a "
        "relative path, and the command runs in an empty folder of its own",
        "  hint: give a command on PATH (e.g. 'deploy.sh') or an absolute path (e.g. "
        "'/opt/deploy/deploy.sh'); a script in this repository would run whatever was pushed, "
        "authorised or not",
    ]
    assert repo.git("rev-parse", "main") == before  # no start record, no refusal
    assert repo.verify().authorised  # the environment is a policy like any other


def test_plan_shows_a_plan_waiting_for_a_driver_that_is_not_installed(
    tmp_path: Path, people: People
) -> None:
    repo, line = uninstalled_driver_repo(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.reconciler("plan", "--format", "json")
    [decision] = [item for item in result.json()["plans"] if item["plan"] == DEV_PLAN]
    assert (decision["status"], decision["waits"]) == (
        "waiting",
        [
            {
                "what": "driver",
                "text": f"its environment's driver cannot be loaded: environments/development.yaml:"
                f"{line}: driver 'no-such-driver' is not installed (install the package that "
                "registers it in the 'reconciler.drivers' group)",
                "until": None,
            }
        ],
    )


def test_arguments_that_would_be_dangerous_in_a_shell_reach_the_driver_literally(
    tmp_path: Path, people: People
) -> None:
    dangerous = ["$(touch pwned1)", "; touch pwned2", "`touch pwned3`", "a b|c>d"]
    repo, out = with_command_driver(tmp_path, people, *dangerous)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    assert repo.apply().exit_code == 0
    assert out.read_text() == f"2026-11-dev-build ecommerce 1.4.0 {dangerous!r}\n"
    assert not list(tmp_path.rglob("pwned*"))
    assert not (repo.path / "d").exists()


def test_a_version_with_shell_metacharacters_is_refused_before_any_driver(
    tmp_path: Path, people: People
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    hostile = dev_plan({"name": "ecommerce", "version": "1.0;touch${IFS}pwned"})
    repo.commit(people.alice, {DEV_PLAN: hostile})
    result = repo.apply("--format", "json")
    assert result.exit_code == 1
    assert result.json()["refused"] == [f"{DEV_PLAN}@{repo.blob(DEV_PLAN)}"]
    assert not out.exists()
    assert trailers(repo, "main")["Result"] == "refused"
    assert repo.apply().exit_code == 0  # refused once per plan version, not every pass


def refs_and_files(repo: SeedRepo) -> tuple[str, list[str]]:
    refs = repo.git("for-each-ref", "--format=%(refname) %(objectname)")
    files = sorted(str(path.relative_to(repo.driver_root)) for path in repo.driver_root.rglob("*"))
    return refs, files


def test_a_dry_run_changes_nothing(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.driver_root.mkdir(exist_ok=True)  # it holds the builds already
    before = refs_and_files(repo)
    result = repo.apply("--dry-run", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [item["plan"] for item in result.json()["would_run"]] == [DEV_PLAN]
    assert refs_and_files(repo) == before
    assert repo.apply().exit_code == 0
    assert refs_and_files(repo) != before


def test_an_instance_name_that_would_break_the_start_records_trailers_is_refused(
    tmp_path: Path, people: People
) -> None:
    # A blank line in the name would end the start record's trailer block there:
    # the record, which is the run's lock, would lose its plan and run, and
    # every later round would start the run again.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    head = repo.head()
    name = "box\n\nLease-Until: 2999-01-01T00:00:00+00:00"
    result = repo.apply("--instance", name)
    assert result.exit_code == 2
    assert f"--instance {name!r} is not a reconciler name" in result.stderr
    assert "hint: use at most 100 letters, digits and . _ : @ / -" in result.stderr
    assert repo.head() == head
    assert not (repo.driver_root / "development").exists()


def test_a_dry_run_during_a_freeze_until_the_end_of_time_would_run_nothing(
    tmp_path: Path, people: People
) -> None:
    repo = frozen_until_the_end_of_time(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.apply("--dry-run", "--format", "json")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.json()["would_run"] == []


def test_the_reconciler_refuses_to_start_with_a_key_that_is_not_the_service_accounts(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    head = repo.head()
    result = repo.apply(key=people.mallory.key)
    assert result.exit_code == 1
    assert "is not a service account's key in teams.yaml; the reconciler refuses to start" in (
        result.stderr
    )
    assert repo.head() == head


def test_the_reconciler_refuses_to_sign_records_with_its_own_revoked_key(
    tmp_path: Path, people: People
) -> None:
    # Records by a revoked key count for nothing: a run it started would never be seen
    # started, and would start again at every pass.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    head = repo.head()
    repo.revoke(people.reconciler.public_key + "\n")
    result = repo.apply()
    assert result.exit_code == 1
    assert "error: the reconciler's own key SHA256:" in result.stderr
    assert "is revoked (gpg.ssh.revocationFile);" in result.stderr
    assert "hint: rotate it" in result.stderr
    assert repo.head() == head


@pytest.mark.slow
def test_kill_9_mid_driver_call_then_the_run_is_interrupted_and_retry_completes_it(
    tmp_path: Path, people: People
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    hold = out.with_name("driver.out.hold")
    hold.write_text("")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    reconciler = subprocess.Popen(
        repo.apply_command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(out.with_name("driver.out.started"))
    os.kill(reconciler.pid, signal.SIGKILL)
    reconciler.wait()
    hold.unlink()  # the orphaned driver finishes on its own; nobody records it
    after_kill = repo.apply("--format", "json")
    assert after_kill.exit_code == 0, after_kill.stderr
    assert after_kill.json()["interrupted"] == ["2026-11-dev-build.1"]
    assert after_kill.json()["runs"] == []
    assert repo.apply("--format", "json").json()["runs"] == []  # not repeated on its own
    repo.act_as(people.olga)
    retry = repo.reconciler("deploy", DEV_PLAN, "--retry", "2026-11-dev-build.1")
    assert retry.exit_code == 0, retry.stderr
    finished = repo.apply("--format", "json").json()["runs"]
    assert [(run["run"], run["retry_of"], run["result"]) for run in finished] == [
        ("2026-11-dev-build.2", "2026-11-dev-build.1", "succeeded")
    ]
    assert len(out.read_text().splitlines()) == 2  # the interrupted attempt and the retry
    assert repo.apply("--format", "json").json()["runs"] == []


@pytest.mark.slow
def test_three_reconcilers_on_one_remote_run_each_of_30_plans_exactly_once(
    tmp_path: Path, people: People
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    for index in range(30):
        name = f"batch-{index:02d}"
        repo.commit(
            people.alice,
            {
                f"plans/{name}.yaml": plan(
                    name, "development", [{"name": "ecommerce", "version": f"1.0.{index}"}]
                )
            },
        )
    remote = repo.publish_to_bare_remote()
    clones = [repo.clone(remote, f"reconciler-{number}") for number in range(3)]
    running = [
        subprocess.Popen(
            clone.apply_command("--remote", "origin", instance=f"reconciler-{number}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number, clone in enumerate(clones)
    ]
    for process in running:
        _, errors = process.communicate(timeout=600)
        assert process.returncode == 0, errors
    settle = clones[0].reconciler(
        "apply",
        "--remote",
        "origin",
        "--key",
        str(people.reconciler.key),
        "--driver-root",
        str(clones[0].driver_root),
        "--format",
        "json",
    )
    assert settle.exit_code == 0, settle.stderr
    lines = sorted(line.split()[0] for line in out.read_text().splitlines())
    assert lines == [f"batch-{index:02d}" for index in range(30)]
    finishes = run_git(remote, "log", "--format=%s", "main").splitlines()
    assert len([subject for subject in finishes if subject.startswith("Deploy batch-")]) == 30


def test_a_human_push_racing_a_finish_record_both_survive(tmp_path: Path, people: People) -> None:
    repo, out = with_command_driver(tmp_path, people)
    hold = out.with_name("driver.out.hold")
    hold.write_text("")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    remote = repo.publish_to_bare_remote()
    service = repo.clone(remote, "service")
    reconciler = subprocess.Popen(
        service.apply_command("--remote", "origin"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(out.with_name("driver.out.started"))
    repo.git("pull", "-q", "--ff-only", "origin", "main")
    human = repo.commit(
        people.diana,
        {"plans/portal-next.yaml": plan("portal-next", "development", [PORTAL_DEV], state="draft")},
    )
    repo.git("push", "-q", "origin", "main")
    hold.unlink()
    _, errors = reconciler.communicate(timeout=120)
    assert reconciler.returncode == 0, errors
    history = run_git(remote, "log", "--format=%H %P %s", "main").splitlines()
    _, finish_parent, *subject = history[0].split()
    assert " ".join(subject) == "Deploy 2026-11-dev-build to development: succeeded"
    assert finish_parent == human
    assert any(line.startswith(human) for line in history)


def test_a_run_shows_its_progress_on_a_terminal_and_nothing_on_a_pipe(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        repo.apply_command(), stdout=subprocess.PIPE, stderr=terminal, text=True
    )
    os.close(terminal)
    shown = shown_on(controller)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    assert "2026-11-dev-build.1 [##] 2/2 customer-portal 0.6-dev.41" in shown.decode()
    piped = repo.apply("--dry-run")
    assert piped.stderr == ""
    assert "succeeded 2026-11-dev-build.1" in stdout


NO_COMMITS_YET = (
    "  hint: commit the configuration first "
    "(`reconciler init DIR` makes a repository with its first commit)\n"
)


def test_plan_in_a_repository_without_commits_says_so(tmp_path: Path) -> None:
    run_git(tmp_path, "init", "-q", "-b", "main")
    result = reconciler("plan", "--repo", tmp_path)
    assert result.exit_code == 1, result.stdout
    assert result.stderr == f"error: {tmp_path} has no commits yet\n" + NO_COMMITS_YET


def test_a_dry_run_in_a_repository_without_commits_says_so(tmp_path: Path) -> None:
    run_git(tmp_path, "init", "-q", "-b", "main")
    result = reconciler("apply", "--dry-run", "--repo", tmp_path)
    assert result.exit_code == 1, result.stdout
    assert result.stderr == f"error: {tmp_path} has no commits yet\n" + NO_COMMITS_YET


def test_sigterm_stops_apply_after_the_step_in_progress_and_records_the_run_interrupted(
    tmp_path: Path, people: People
) -> None:
    # Killed outright, apply left a started run with no finish record while the
    # driver, in a session of its own, went on deploying.
    repo, out, exit_code, errors = sigterm_during_the_first_of_two_steps(tmp_path, people)
    assert exit_code == 130, errors
    assert "Traceback" not in errors
    assert trailers(repo, "main")["Result"] == "interrupted"
    assert out.read_text().splitlines()[0].startswith("2026-11-dev-build ecommerce 1.4.0")
    assert len(out.read_text().splitlines()) == 1  # the second application never started


def test_a_second_reconciler_on_a_state_directory_in_use_is_refused_before_any_pass(
    tmp_path: Path, people: People
) -> None:
    # Two on one state share an instance name: each took the other's live run
    # for its own dead one and recorded it interrupted.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    head = repo.head()
    options = Options(state_dir=repo.state_dir, key=people.reconciler.key, instance="first")
    with Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep):
        result = repo.apply()
    assert result.exit_code == 1
    database = repo.state_dir / "main.sqlite3"
    assert f"another reconciler (pid {os.getpid()}) is using the state database {database}" in (
        result.stderr
    )
    assert repo.head() == head
    assert repo.apply().exit_code == 0  # the lock went with the first reconciler


def test_a_driver_root_that_cannot_be_created_is_refused_before_a_run_starts(
    tmp_path: Path, people: People
) -> None:
    # Found at the first step, it failed the run, and a failed run is never retried.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    head = repo.head()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = repo.apply(driver_root=a_file / "releases")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: cannot use the driver root {a_file / 'releases'}: Not a directory"
    )
    assert repo.head() == head


@contextmanager
def a_run_the_watcher_started(
    tmp_path: Path, people: People
) -> Iterator[tuple[SeedRepo, Reconciler, str, StartedRun]]:
    """A watcher in this process whose first pass published the development plan's start
    record: the repository, the watcher, the record's parent, and the run, not yet run."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    options = Options(
        state_dir=repo.state_dir,
        key=people.reconciler.key,
        instance="watcher",
        driver_root=tmp_path / "releases",
    )
    with Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep) as service:
        parent = repo.head()
        _, [started] = service.watch_pass()
        assert repo.head() != parent  # the start record
        yield repo, service, parent, started


def test_a_finish_record_is_published_when_a_verify_beside_the_service_moved_past_its_tip(
    tmp_path: Path, people: People
) -> None:
    # The verify moved the state's position past the tip the finish record was
    # first built on; that tip is stale, not rewritten, and the record goes out.
    with a_run_the_watcher_started(tmp_path, people) as (repo, service, _, started):
        repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
        repo.verify()
        service.run_started(started, publish=True)
    assert trailers(repo, "main")["Result"] == "succeeded"
    assert repo.reconciler("verify").exit_code == 0


def before_the_walk_from(
    parent: str, beside: Callable[[], Result], monkeypatch: pytest.MonkeyPatch
) -> list[Result]:
    """Run `beside` (another process's walk, a push) once, just before the service's first
    walk from `parent`: after it read the state's position, before it took the walk's lock.
    What `beside` returned, once it ran."""
    real = Authoriser.run
    ran: list[Result] = []

    def walk(walker: Authoriser, tip: str, **options: Any) -> Any:
        if tip == parent and not ran:
            ran.append(beside())
        return real(walker, tip, **options)

    monkeypatch.setattr(Authoriser, "run", walk)
    return ran


def test_a_finish_record_is_published_when_a_walk_beside_the_service_reached_its_start_record(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service holds the state at its start record's parent (the record changes no
    # file). Between reading that position and walking from it, a page or a verify
    # beside the service walks the state on to the start record: the parent is behind
    # the state now, not rewritten, and the finish record still goes out.
    with a_run_the_watcher_started(tmp_path, people) as (repo, service, parent, started):
        beside = before_the_walk_from(parent, lambda: repo.reconciler("verify"), monkeypatch)
        service.run_started(started, publish=True)
    assert [result.exit_code for result in beside] == [0]
    assert trailers(repo, "main")["Result"] == "succeeded"


def test_a_finish_record_is_not_published_on_a_rewrite_to_another_child_of_its_start_record(
    tmp_path: Path, people: People
) -> None:
    # A verify walked the state past the start record; then the branch was forced to
    # another child of it, dropping what the verify judged. The branch left the tip, but
    # for a history without the state's position: a rewrite, not a stale tip.
    with a_run_the_watcher_started(tmp_path, people) as (repo, service, _, started):
        start = repo.head()
        repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
        assert repo.reconciler("verify").exit_code == 0
        repo.git("reset", "-q", "--hard", start)  # the verified commit is dropped
        draft = plan("portal-next", "development", [PORTAL_DEV], state="draft")
        repo.commit(people.diana, {"plans/portal-next.yaml": draft})
        forced = repo.head()
        with pytest.raises(HistoryRewrittenError):
            service.run_started(started, publish=True)
    assert repo.head() == forced


def test_a_finish_record_is_not_published_on_a_rewrite_back_to_its_start_record_mid_walk(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the service held the state at its start record's parent, a verify walked it
    # past the start record and the branch was forced back to the start record.
    with a_run_the_watcher_started(tmp_path, people) as (repo, service, parent, started):
        start = repo.head()

        def rewritten_beside() -> Result:
            repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
            verified = repo.reconciler("verify")
            repo.git("reset", "-q", "--hard", start)  # the verified commit is dropped
            return verified

        beside = before_the_walk_from(parent, rewritten_beside, monkeypatch)
        with pytest.raises(HistoryRewrittenError):
            service.run_started(started, publish=True)
    assert [result.exit_code for result in beside] == [0]
    assert repo.head() == start


def test_a_key_revoked_while_the_service_runs_proves_nothing_from_its_next_pass(
    tmp_path: Path, people: People
) -> None:
    # No restart in an incident: the revocation file is read again at every pass.
    repo = SeedRepo.create(tmp_path, people)
    options = Options(state_dir=repo.state_dir, key=people.reconciler.key, instance="watcher")
    with Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep) as service:
        service.watch_pass()
        repo.revoke(people.root.public_key + "\n")

        repo.commit(
            people.root, {"teams.yaml": teams_with(people, grant_bob_deployment)}, "Bob joins ops"
        )
        report, _ = service.watch_pass()
    [landing] = report.landings
    assert not landing.authorised
    assert "is revoked (gpg.ssh.revocationFile" in landing.refusals[0].reasons[0]


def raise_once(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    when: Callable[[Any], bool],
    owner: type[Any] = Reconciler,
) -> None:
    """Make `<owner>.<method>` raise 'an error mid-round' the first time `when` (given the
    instance) holds."""
    real = getattr(owner, method)
    raised: list[bool] = []

    def failing(service: Any, *args: Any, **kwargs: Any) -> Any:
        if not raised and when(service):
            raised.append(True)
            raise RuntimeError("an error mid-round")
        return real(service, *args, **kwargs)

    monkeypatch.setattr(owner, method, failing)


def service_options(repo: SeedRepo, people: People, tmp_path: Path) -> Options:
    return Options(
        state_dir=repo.state_dir, key=people.reconciler.key, driver_root=tmp_path / "releases"
    )


def test_an_error_in_a_round_carrying_finish_records_leaves_the_state_free_for_the_next_pass(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The round walks its unpublished finish records in a transaction that only
    # their publish settles; an error before it held the state store until exit.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    raise_once(monkeypatch, "_bookkeeping", lambda service: bool(service.store.outbox()))
    options = service_options(repo, people, tmp_path)
    with Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep) as service:
        with pytest.raises(RuntimeError, match="an error mid-round"):
            service.pass_once()
        assert trailers(repo, "main")["Result"] == "started"
        assert repo.reconciler("verify").exit_code == 0  # another process may use the state
        service.pass_once()
    assert trailers(repo, "main")["Result"] == "succeeded"


def test_an_error_while_the_watcher_flushes_its_outbox_leaves_the_state_free_for_the_next_pass(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    raise_once(monkeypatch, "_finish_files", lambda _: True, FinishRecords)
    options = service_options(repo, people, tmp_path)
    with Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep) as service:
        _, [started] = service.watch_pass()
        service.run_started(started, publish=False)  # as a worker's failed publish leaves it
        with pytest.raises(RuntimeError, match="an error mid-round"):
            service.watch_pass()
        assert repo.reconciler("verify").exit_code == 0  # another process may use the state
        service.watch_pass()
    assert trailers(repo, "main")["Result"] == "succeeded"


def test_a_reconciler_that_fails_to_construct_lets_go_of_the_state_directory(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    options = service_options(repo, people, tmp_path)

    def failing(*_: object, **__: object) -> Authoriser:
        raise RuntimeError("an error after the service lock was taken")

    with monkeypatch.context() as patch:
        patch.setattr(reconcile, "Authoriser", failing)
        with pytest.raises(RuntimeError) as failure:  # its traceback holds the reconciler
            Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep)
    result = repo.apply()
    assert result.exit_code == 0, result.stderr
    assert failure.value.args == ("an error after the service lock was taken",)


def verified_beside_a_running_apply(
    tmp_path: Path, people: People
) -> tuple[SeedRepo, str, Callable[[], tuple[int, str]]]:
    """An apply whose run holds while a person pushes and a verify on its state walks past
    the start record; the repository, the start record, and how to let the run end."""
    repo, out = with_command_driver(tmp_path, people)
    hold = out.with_name("driver.out.hold")
    hold.write_text("")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    service = subprocess.Popen(
        repo.apply_command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(out.with_name("driver.out.started"))
    start = repo.head()
    repo.commit(
        people.diana,
        {"plans/portal-next.yaml": plan("portal-next", "development", [PORTAL_DEV], state="draft")},
    )
    assert repo.reconciler("verify").exit_code == 0

    def finish() -> tuple[int, str]:
        hold.unlink()
        _, errors = service.communicate(timeout=120)
        return service.returncode, errors

    return repo, start, finish


def test_an_apply_whose_run_a_verify_beside_it_went_past_publishes_its_finish_record(
    tmp_path: Path, people: People
) -> None:
    # While the run's finish record waited in the outbox, the start record apply
    # meant to build it on was left behind by a push: stale, not rewritten.
    repo, _, finish = verified_beside_a_running_apply(tmp_path, people)
    human = repo.head()
    assert finish() == (0, "")
    assert trailers(repo, "main")["Result"] == "succeeded"
    assert repo.git("rev-parse", "main^") == human


def test_an_apply_whose_branch_went_back_behind_what_a_verify_beside_it_saw_stops_it(
    tmp_path: Path, people: People
) -> None:
    repo, start, finish = verified_beside_a_running_apply(tmp_path, people)
    repo.git("reset", "-q", "--hard", start)  # the verified push is dropped: a rewrite
    code, errors = finish()
    assert code == 1
    assert "history was rewritten" in errors.splitlines()[0]


def test_a_finish_record_is_not_published_on_a_branch_moved_back_behind_what_a_verify_saw(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    options = service_options(repo, people, tmp_path)
    with Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep) as service:
        _, [started] = service.watch_pass()
        start = repo.head()
        repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
        repo.verify()
        repo.git("reset", "-q", "--hard", start)  # the verified push is dropped: a rewrite
        with pytest.raises(HistoryRewrittenError):
            service.run_started(started, publish=True)
    assert repo.head() == start


# Run as `python -c`: `reconciler` itself, killed by SIGKILL where it calls the named method.
KILLED_AT = """\
import os, signal, sys
from reconciler.{module} import {owner}
setattr({owner}, "{method}", lambda *_, **__: os.kill(os.getpid(), signal.SIGKILL))
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import main
main(prog_name="reconciler")
"""


def finish_records(git_dir: Path, run: str) -> list[str]:
    """The commits on main whose trailers record `run` as ended, newest first."""
    log = run_git(git_dir, "log", "--format=%H%n%(trailers:only,unfold)%x00", "main")
    found = []
    for entry in filter(None, (text.strip() for text in log.split("\0"))):
        commit, *lines = entry.splitlines()
        fields = dict(line.split(": ", 1) for line in lines)
        if fields.get("Run") == run and fields.get("Result") != "started":
            found.append(commit)
    return found


@pytest.mark.parametrize(
    ("module", "owner", "method"),
    [
        ("app.reconcile", "Reconciler", "_published"),  # before the walk of it is kept
        ("adapters.statestore", "StateStore", "clear_outbox"),  # before the outbox lets go of it
    ],
)
def test_an_apply_killed_right_after_publishing_a_finish_record_leaves_the_run_ended_once(
    tmp_path: Path, people: People, module: str, owner: str, method: str
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    remote = repo.publish_to_bare_remote()
    service = repo.clone(remote, "service")
    script = KILLED_AT.format(module=module, owner=owner, method=method)
    argv = service.apply_command("--remote", "origin")[3:]  # after `python -m reconciler`
    killed = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, check=False)
    assert killed.returncode == -signal.SIGKILL
    [published] = finish_records(remote, "2026-11-dev-build.1")
    again = service.apply("--remote", "origin", "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["runs"] == []
    assert finish_records(remote, "2026-11-dev-build.1") == [published]
    store = StateStore(service.state_dir, "origin/main")
    try:
        assert store.outbox() == {}
    finally:
        store.close()
    service.git("pull", "-q", "--ff-only", "origin", "main")
    history = service.reconciler("history", "--format", "json").json()["entries"]
    assert [entry["action"] for entry in history if entry["actor"] == "reconciler"] == [
        "run started",
        "run succeeded",
    ]


def test_a_round_does_not_publish_again_a_finish_record_the_branch_already_holds(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watcher's rounds build the outbox's records themselves, after its own flush.
    repo = published_by_a_service_that_died(tmp_path, people, monkeypatch)
    [published] = finish_records(repo.path, "2026-11-dev-build.1")
    with service_on(repo, people, tmp_path) as service:
        assert service.plan_pass(PassReport()) == []
        assert service.store.outbox() == {}
    assert finish_records(repo.path, "2026-11-dev-build.1") == [published]
    assert repo.head() == published


def test_a_flush_counts_only_the_finish_records_it_published(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the watcher logs as "published N finish record(s)" on its way out.
    repo = published_by_a_service_that_died(tmp_path, people, monkeypatch)
    with service_on(repo, people, tmp_path) as service:
        assert len(service.store.outbox()) == 1
        assert service.flush_outbox() == 0
        assert service.store.outbox() == {}


def service_on(repo: SeedRepo, people: People, tmp_path: Path) -> Reconciler:
    """The service, in this process, on `repo` at the fixed time (to use in a `with`)."""
    options = service_options(repo, people, tmp_path)
    return Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep)


def published_by_a_service_that_died(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> SeedRepo:
    """A run whose finish record the service published, and died before it cleared its outbox."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    with monkeypatch.context() as patch:
        patch.setattr(Reconciler, "_published", failing_keep)
        dying = service_on(repo, people, tmp_path)
        with dying, pytest.raises(RuntimeError, match="the process dies here"):
            dying.pass_once()
    return repo


def failing_keep(*_: object) -> None:
    raise RuntimeError("the process dies here")


def test_a_run_left_open_is_recorded_interrupted_though_its_plan_was_deleted_since(
    tmp_path: Path, people: People
) -> None:
    # A pass reads the runs of the plans on main and the runs still open, whatever their plan.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    with service_on(repo, people, tmp_path) as service:
        _, [started] = service.watch_pass()  # and the service stops before the run ends
    repo.commit(people.alice, {DEV_PLAN: None})
    with service_on(repo, people, tmp_path) as restarted:
        restarted.pass_once()
    assert finish_records(repo.path, started.run_id) == [repo.head()]
    assert trailers(repo, "main")["Result"] == "interrupted"


def test_a_finish_record_is_published_when_another_reconciler_marked_its_run_interrupted(
    tmp_path: Path, people: People
) -> None:
    # Its lease passed while the driver ran: the run ended interrupted, and its own
    # record comes late, with its log and what it deployed after all.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    with service_on(repo, people, tmp_path) as service:
        _, [started] = service.watch_pass()
        marked = repo.record(
            {
                "Plan": f"{DEV_PLAN}@{repo.blob(DEV_PLAN)}",
                "Environment": "development",
                "Result": "interrupted",
                "Run": started.run_id,
                "Reconciler": "another-reconciler",
            }
        )
        service.run_started(started, publish=True)
    assert finish_records(repo.path, started.run_id) == [repo.head(), marked]
    assert trailers(repo, "main")["Result"] == "late"
    assert repo.git("log", "-1", "--format=%s", "main") == (
        "Deploy 2026-11-dev-build to development: finished after its lease (succeeded)"
    )
    assert repo.git("ls-tree", "-r", "--name-only", "main", "logs", "deployments").split() == [
        "deployments/development.yaml",
        f"logs/development/2026-11-dev-build/{started.run_id}.log",
    ]
    running = yaml.safe_load(repo.git("show", "main:deployments/development.yaml"))
    assert running["applications"]["ecommerce"]["run"] == started.run_id
    assert repo.verify().authorised
    assert [wait.what for wait in repo.decide()[DEV_PLAN].waits] == ["retry"]


def test_the_refusals_of_a_pass_are_one_record_and_a_version_is_never_refused_twice(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    hostile = {"name": "ecommerce", "version": "1.0;touch${IFS}pwned"}
    first = plan("first", "development", [hostile])
    second = plan("second", "quality-assurance", [ECOMMERCE])  # QA promotes from development
    repo.commit(people.alice, {"plans/first.yaml": first})
    repo.commit(people.alice, {"plans/second.yaml": second})
    refs = [f"{path}@{repo.blob(path)}" for path in ("plans/first.yaml", "plans/second.yaml")]
    shown = repo.reconciler("plan", "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    [reason] = [
        item["reasons"] for item in shown.json()["plans"] if item["plan"] == "plans/second.yaml"
    ]
    assert reason == ["quality-assurance promotes from development, not nothing"]
    before = repo.head()
    result = repo.apply("--format", "json")
    assert result.exit_code == 1, result.stderr
    assert sorted(result.json()["refused"]) == refs
    [record] = repo.git("rev-list", f"{before}..main").split()
    assert repo.git("log", "-1", "--format=%(trailers:key=Refused-Plan,valueonly)", record) == (
        "\n".join(refs)
    )
    body = repo.git("log", "-1", "--format=%B", record)
    assert f"{refs[1]}: quality-assurance promotes from development, not nothing" in body
    # The same versions, brought back by an edit and its revert: recorded once, not again.
    repo.commit(people.alice, {"plans/first.yaml": plan("first", "development", [ECOMMERCE])})
    repo.git("revert", "--no-edit", "HEAD", env={"GIT_COMMITTER_EMAIL": "alice@example.com"})
    again = repo.apply("--format", "json")
    assert (again.exit_code, again.json()["refused"]) == (0, [])
    assert repo.git("log", "--format=%H", "--grep=^Result: refused", "main").split() == [record]


@pytest.mark.parametrize("timeout", [60, 7200])
def test_the_start_record_names_the_instance_and_a_lease_that_covers_the_driver_timeouts(
    tmp_path: Path, people: People, timeout: int
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    text = (repo.path / "environments/development.yaml").read_text()
    slower = text.replace("timeout: 60", f"timeout: {timeout}")
    repo.commit(people.root, {"environments/development.yaml": slower}, "Slower deploys")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    assert repo.apply().exit_code == 0
    finish, start = repo.git("rev-list", "-2", "main").split()
    found = trailers(repo, start)
    assert (found["Result"], found["Reconciler"], found["Run"]) == (
        "started",
        "test-reconciler",
        "2026-11-dev-build.1",
    )
    started_at = int(repo.git("log", "-1", "--format=%ct", start))
    lease = datetime.fromisoformat(found["Lease-Until"]).timestamp() - started_at
    # The first step's: a heartbeat extends it before a later step it would not cover.
    assert timeout < lease < timeout + 3600
    assert trailers(repo, finish)["Result"] == "succeeded"
    assert len(out.read_text().splitlines()) == 2


@pytest.mark.parametrize("command", ["apply", "watch"])
def test_the_reconciler_refuses_to_start_without_the_service_accounts_key(
    tmp_path: Path, people: People, command: str
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    head = repo.head()
    result = repo.reconciler(command, "--driver-root", str(repo.driver_root))
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "the reconciler needs its service account's private key to sign records" in (
        result.stderr
    )
    assert "hint: pass --key FILE (or set RECONCILER_KEY)" in result.stderr
    assert "Traceback" not in result.stderr
    assert repo.head() == head
    assert not out.exists()


def test_verify_plan_and_apply_read_the_committed_tree_never_the_working_tree(
    tmp_path: Path, people: People
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    # Uncommitted: another version in the plan, a new plan, and a grant in teams.yaml.
    (repo.path / DEV_PLAN).write_text(dev_plan({"name": "ecommerce", "version": "6.6.6"}))
    (repo.path / "plans/uncommitted.yaml").write_text(
        plan("uncommitted", "development", [{"name": "ecommerce", "version": "7.7.7"}])
    )
    (repo.path / "teams.yaml").write_text("users: {}\n")
    verify = repo.reconciler("verify")
    assert verify.exit_code == 0, verify.stdout + verify.stderr
    shown = repo.reconciler("plan", "--format", "json")
    assert [item["plan"] for item in shown.json()["plans"]] == [DEV_PLAN]
    assert repo.apply().exit_code == 0
    assert out.read_text() == "2026-11-dev-build ecommerce 1.4.0 []\n"
    # and the person's uncommitted edits are still there
    assert "6.6.6" in (repo.path / DEV_PLAN).read_text()
    assert (repo.path / "teams.yaml").read_text() == "users: {}\n"
    assert (repo.path / "deployments/development.yaml").exists()


def test_apply_says_why_it_refused_each_plan_version(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    unsourced = plan("unsourced-qa", "quality-assurance", [ECOMMERCE])
    repo.commit(people.alice, {"plans/unsourced-qa.yaml": unsourced})
    result = repo.apply()
    assert result.exit_code == 1
    ref = f"plans/unsourced-qa.yaml@{repo.blob('plans/unsourced-qa.yaml')}"
    assert f"refused {ref}: quality-assurance promotes from development, not nothing\n" in (
        result.stdout
    )


def test_apply_json_gives_the_reasons_of_each_refusal(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    unsourced = plan("unsourced-qa", "quality-assurance", [ECOMMERCE])
    repo.commit(people.alice, {"plans/unsourced-qa.yaml": unsourced})
    result = repo.apply("--format", "json")
    assert result.exit_code == 1
    ref = f"plans/unsourced-qa.yaml@{repo.blob('plans/unsourced-qa.yaml')}"
    report = json.loads(result.stdout)
    assert report["refused"] == [ref]
    assert report["refusals"] == [
        {"plan": ref, "reasons": ["quality-assurance promotes from development, not nothing"]}
    ]


def test_a_service_whose_key_was_revoked_since_its_last_pass_publishes_no_finish_record(
    tmp_path: Path, people: People
) -> None:
    # A pass begins by publishing the finish records its outbox holds, before it walks:
    # the revocation file read at the last pass is stale by then, and today's says no.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    with service_on(repo, people, tmp_path) as service:
        _, [started] = service.watch_pass()
        service.run_started(started, publish=False)
        assert len(service.store.outbox()) == 1
        repo.revoke(people.reconciler.public_key + "\n")
        head = repo.head()
        with pytest.raises(ConfigError, match="refuses to sign records with it"):
            service.watch_pass()
        assert repo.head() == head
        assert len(service.store.outbox()) == 1
