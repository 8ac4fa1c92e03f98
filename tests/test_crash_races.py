"""Crashes and races against real processes: a real remote, real `apply` and `watch`, SIGKILL.

Whatever kills or races a reconciler, nothing committed or deployed is lost:
every run that started ends recorded exactly once (succeeded, failed, or
interrupted and retryable), no plan version runs twice without a recorded
retry, and two reconcilers on one remote never corrupt each other's records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import yaml

from reconciler.adapters.statestore import StateStore
from reconciler.app.passes import Options
from reconciler.app.reconcile import Reconciler
from tests import test_watch
from tests.people import People
from tests.repositories import ConfigRepo, SeedRepo, run_git
from tests.runner import command_environment, wait_for
from tests.scenarios import DEV_PLAN, ECOMMERCE, PORTAL_DEV, dev_plan, plan
from tests.test_watch import Watcher, push, push_plan, start_watch, wait_until, watch_argv

RUN_1 = "2026-11-dev-build.1"
RUN_2 = "2026-11-dev-build.2"

# `reconciler apply`, with one method of the reconciler wrapped: every call of the local
# driver's `deploy` is counted in $DEPLOYS, and the process SIGKILLs itself just before or
# just after the method's nth call ($KILL_AT: "module:Class.method:before|after:n"), or
# there makes the files $FREEZE lists immutable ($FREEZE_AT, the same way).
KILLABLE = """\
import importlib, os, signal, subprocess, sys
from pathlib import Path

def wrap(owner, name, before, after):
    original = getattr(owner, name)
    def wrapped(*args, **kwargs):
        before()
        result = original(*args, **kwargs)
        after()
        return result
    setattr(owner, name, wrapped)

from reconciler.adapters.drivers import LocalDriver
deploys = Path(os.environ["DEPLOYS"])
wrap(LocalDriver, "deploy", lambda: None, lambda: deploys.open("a").write("deploy\\n"))
def at(where, act):
    target, when, nth = where.split(":")
    module, dotted = target.rsplit(".", 2)[0], target.rsplit(".", 2)[1:]
    owner = getattr(importlib.import_module(module), dotted[0])
    calls = []
    def maybe(moment):
        def check():
            if moment == "before":
                calls.append(1)
            if moment == when and len(calls) == int(nth):
                act()
        return check
    wrap(owner, dotted[1], maybe("before"), maybe("after"))

if os.environ.get("KILL_AT"):
    at(os.environ["KILL_AT"], lambda: os.kill(os.getpid(), signal.SIGKILL))
if os.environ.get("FREEZE_AT"):
    freeze = ["chattr", "+i", *os.environ["FREEZE"].split(os.pathsep)]
    at(os.environ["FREEZE_AT"], lambda: subprocess.run(freeze, check=True))
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import main
main(prog_name="reconciler")
"""


def records(git_dir: Path, rev: str = "main") -> list[dict[str, str]]:
    """Every commit with a `Run:` trailer, oldest first: its trailers, its id and subject."""
    log = run_git(git_dir, "log", "--reverse", "--format=%H %s%n%(trailers:only,unfold)%x00", rev)
    found = []
    for entry in filter(None, (text.strip() for text in log.split("\0"))):
        head, *lines = entry.splitlines()
        fields = dict(line.split(": ", 1) for line in lines if ": " in line)
        if "Run" in fields:
            commit, subject = head.split(" ", 1)
            found.append({**fields, "commit": commit, "subject": subject})
    return found


def runs(git_dir: Path) -> dict[str, dict[str, Any]]:
    """Each run: its start records, its heartbeats and its finish records (in order)."""
    found: dict[str, dict[str, Any]] = {}
    for record in records(git_dir):
        run = found.setdefault(
            record["Run"], {"starts": [], "heartbeats": [], "finishes": [], "plan": None}
        )
        if record["Result"] == "started":
            run["starts"].append(record)
            run["plan"] = record["Plan"]
        elif record["Result"] == "heartbeat":
            run["heartbeats"].append(record)
        else:
            run["finishes"].append(record)
    return found


def check_records(git_dir: Path, *, unfinished: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """The invariants of the records on `git_dir`'s main; the runs, by id.

    Every run has one start record, and one finish record that counts (and after it a
    late record, when another reconciler marked it interrupted first), never the same
    finish twice; a plan version has a second run only as a recorded retry of an
    interrupted one.
    """
    found = runs(git_dir)
    for run_id, run in found.items():
        assert len(run["starts"]) == 1, f"{run_id} started {len(run['starts'])} times"
        results = [finish["Result"] for finish in run["finishes"]]
        messages = Counter(finish["subject"] + finish["commit"] for finish in run["finishes"])
        assert all(count == 1 for count in messages.values())
        if run_id in unfinished:
            continue
        assert results, f"{run_id} started and never ended"
        assert len(results) == 1 or results == ["interrupted", "late"], f"{run_id} ended {results}"
    by_plan: dict[str, list[str]] = {}
    for run_id, run in found.items():
        by_plan.setdefault(run["plan"], []).append(run_id)
    for ids in by_plan.values():
        for earlier, later in pairwise(ids):
            assert found[later]["starts"][0].get("Retry-Of") == earlier, (
                f"{later} re-ran {earlier} without a recorded retry"
            )
            assert found[earlier]["finishes"][0]["Result"] == "interrupted"
    return found


def verified(remote: Path, root: Path, people: People) -> None:
    """`reconciler verify` of the remote's history, in a fresh clone with a fresh state."""
    name = f"auditor-{time.monotonic_ns()}"
    auditor = ConfigRepo(root / name, people, root / f"{name}-state")
    run_git(root, "clone", "-q", str(remote), str(auditor.path))
    result = auditor.reconciler("verify")
    assert result.exit_code == 0, result.stdout + result.stderr


def deployed_on(remote: Path, environment: str) -> dict[str, str]:
    """What deployments/<env>.yaml on the remote's main says runs there."""
    try:
        text = run_git(remote, "show", f"main:deployments/{environment}.yaml")
    except AssertionError:
        return {}
    data = yaml.safe_load(text)
    return {app: entry["version"] for app, entry in (data.get("applications") or {}).items()}


def current_in(driver_root: Path, environment: str) -> dict[str, str]:
    """What the local driver's `current` links say runs there."""
    found = {}
    folder = driver_root / environment
    for app in sorted(folder.iterdir()) if folder.is_dir() else []:
        link = app / "current"
        if link.is_symlink():
            found[app.name] = Path(os.readlink(link)).name
    return found


def outbox(service: ConfigRepo) -> dict[str, Any]:
    store = StateStore(service.state_dir, "origin/main")
    try:
        return store.outbox()
    finally:
        store.close()


def frozen_state(state_dir: Path) -> list[Path]:
    """What `chattr +i` makes immutable for a state to take no more writes: the directory, the
    database and its write-ahead log (not its shared memory, which SQLite maps: immutable,
    it would kill the process with SIGBUS, as no file system does)."""
    database = state_dir / "origin%2Fmain.sqlite3"
    return [state_dir, database, database.with_name(database.name + "-wal")]


def deploys(service: ConfigRepo) -> int:
    counted = service.state_dir.parent / "deploys"
    return len(counted.read_text().splitlines()) if counted.exists() else 0


def killable_apply(
    service: ConfigRepo,
    *args: str,
    kill_at: str | None = None,
    instance: str = "service",
    freeze_at: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`apply --remote origin` on `service`, every local deploy counted, killed at `kill_at`,
    its state made immutable at `freeze_at` (`frozen_state`)."""
    argv = service.apply_command("--remote", "origin", *args, instance=instance)[3:]
    env = {**os.environ, "DEPLOYS": str(service.state_dir.parent / "deploys")}
    if kill_at:
        env["KILL_AT"] = kill_at
    if freeze_at:
        env["FREEZE_AT"] = freeze_at
        env["FREEZE"] = os.pathsep.join(map(str, frozen_state(service.state_dir)))
    return subprocess.run(
        [sys.executable, "-c", KILLABLE, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def background_apply(service: ConfigRepo, instance: str) -> subprocess.Popen[str]:
    """`apply --remote origin` on `service`, running on its own."""
    return subprocess.Popen(
        service.apply_command("--remote", "origin", instance=instance),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def two_app_dev_plan(tmp_path: Path, people: People) -> tuple[SeedRepo, Path, ConfigRepo]:
    """The seed story with a development plan of two applications (local driver), pushed to a
    bare remote; the person's repository, the remote and the service's clone."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    remote = repo.publish_to_bare_remote()
    return repo, remote, repo.clone(remote, "service")


def retry(repo: ConfigRepo, people: People, run: str) -> None:
    """olga asks for a retry of `run`, in her clone, pushed."""
    repo.git("pull", "-q", "--ff-only", "origin", "main")
    repo.signoff(people.olga, "Retry-Run", run)
    repo.git("push", "-q", "origin", "main")


# -- 1. the kill sweep ---------------------------------------------------------------------

KILL_POINTS = [
    # (where, whether run 1's start record is out by then, whether both steps ran)
    ("reconciler.adapters.gitrepo.GitRepo.fetch:before:1", False, False),
    ("reconciler.app.record.Publisher.publish:before:1", False, False),
    ("reconciler.app.record.Publisher.publish:after:1", True, False),
    ("reconciler.adapters.drivers.LocalDriver.deploy:after:1", True, False),
    ("reconciler.adapters.drivers.LocalDriver.deploy:after:2", True, True),
    ("reconciler.adapters.statestore.StateStore.put_outbox:after:1", True, True),
    ("reconciler.adapters.gitrepo.GitRepo.push:before:2", True, True),
    ("reconciler.adapters.gitrepo.GitRepo.push:after:2", True, True),
    ("reconciler.adapters.statestore.StateStore.clear_outbox:before:1", True, True),
]


@pytest.mark.parametrize(("kill_at", "started", "ran"), KILL_POINTS)
def test_an_apply_killed_anywhere_loses_nothing_and_ends_every_run_once(
    tmp_path: Path, people: People, kill_at: str, started: bool, ran: bool
) -> None:
    repo, remote, service = two_app_dev_plan(tmp_path, people)
    killed = killable_apply(service, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (RUN_1 in runs(remote)) == started
    # Another reconciler (its own state and instance) beside the dead one: it neither runs
    # the plan again nor takes the run over before its lease has passed.
    other = repo.clone(remote, "other")
    beside = killable_apply(other, "--format", "json", instance="other")
    assert beside.returncode == 0, beside.stderr
    assert json.loads(beside.stdout)["runs"] == ([] if started else [ANY])
    check_records(remote, unfinished={RUN_1})
    # The service comes back on its own state.
    again = killable_apply(service, "--format", "json")
    assert again.returncode == 0, again.stderr
    found = check_records(remote)
    assert outbox(service) == {}
    if not started:  # nothing had happened: the plan simply runs now
        assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["succeeded"]
        assert deploys(service) == 2
    elif found[RUN_1]["finishes"][0]["Result"] == "interrupted":
        assert not ran or kill_at.endswith("deploy:after:2")  # its deploys were not recorded
        retry(repo, people, RUN_1)
        retried = killable_apply(service, "--format", "json")
        assert retried.returncode == 0, retried.stderr
        found = check_records(remote)
        assert [finish["Result"] for finish in found[RUN_2]["finishes"]] == ["succeeded"]
    else:  # the driver had finished: its finish record was kept, and published once
        assert ran
        assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["succeeded"]
        assert deploys(service) == 2
        assert RUN_2 not in found
    assert deployed_on(remote, "development") == current_in(service.driver_root, "development")
    assert deployed_on(remote, "development") == {
        "ecommerce": "1.4.0",
        "customer-portal": "0.6-dev.41",
    }
    # Nothing is left to do, and nobody does anything twice.
    for reconciler, instance in ((service, "service"), (other, "other")):
        last = killable_apply(reconciler, "--format", "json", instance=instance)
        assert last.returncode == 0, last.stderr
    assert check_records(remote) == found
    verified(remote, tmp_path, people)


# -- 2. races --------------------------------------------------------------------------------

REJECT_ONCE = """\
#!/bin/sh
# Refuse the push to a branch numbered in REJECT (counted in COUNT), once; accept every
# other, and every push of no branch (the service's checkpoint ref) uncounted.
grep -q " refs/heads/" || exit 0
count=$(($(cat "{count}" 2>/dev/null || echo 0) + 1))
echo "$count" > "{count}"
if [ "$count" = "$(cat "{reject}" 2>/dev/null)" ]; then
    echo "policy check unavailable, try again" >&2
    exit 1
fi
"""


def reject_push(remote: Path, number: int) -> Path:
    """A pre-receive hook on `remote` that refuses its `number`th push to a branch from now,
    once."""
    count, reject = remote / "pushes", remote / "reject"
    count.write_text("0")
    reject.write_text(str(number))
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(REJECT_ONCE.format(count=count, reject=reject))
    hook.chmod(0o755)
    return count


@pytest.mark.parametrize("refused", [1, 2], ids=["start-record", "finish-record"])
def test_a_push_the_remote_refuses_once_fails_the_pass_and_the_next_pass_loses_nothing(
    tmp_path: Path, people: People, refused: int
) -> None:
    _, remote, service = two_app_dev_plan(tmp_path, people)
    reject_push(remote, refused)
    first = killable_apply(service, "--format", "json")
    assert first.returncode == 1, first.stderr
    assert "policy check unavailable" in first.stderr
    assert "Traceback" not in first.stderr
    check_records(remote, unfinished={RUN_1})
    assert deploys(service) == (0 if refused == 1 else 2)
    again = killable_apply(service, "--format", "json")
    assert again.returncode == 0, again.stderr
    found = check_records(remote)
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["succeeded"]
    assert deploys(service) == 2
    assert outbox(service) == {}
    assert deployed_on(remote, "development") == current_in(service.driver_root, "development")
    verified(remote, tmp_path, people)


watchers = test_watch.watchers  # the fixture: the watch processes a test started, killed after


def watch_outbox(service: ConfigRepo) -> dict[str, Any]:
    store = StateStore(service.path.parent / "watch-state", "origin/main")
    try:
        return store.outbox()
    finally:
        store.close()


def polling_watcher(watchers: list[Watcher], service: ConfigRepo, people: People) -> Watcher:
    """A watcher of `service`'s remote, polling it five times a second."""
    return start_watch(
        watchers, service, people, service.path, "--remote", "origin", "--interval", "0.2"
    )


def finished_once_as_it_ran(
    remote: Path, service: ConfigRepo, tmp_path: Path, people: People
) -> None:
    """RUN_1 ended once on the remote, succeeded, with nothing left in the watcher's outbox,
    main saying what runs, and the history verified."""
    found = check_records(remote)
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["succeeded"]
    assert watch_outbox(service) == {}
    assert deployed_on(remote, "development") == current_in(service.driver_root, "development")
    verified(remote, tmp_path, people)


def test_a_watcher_whose_finish_record_the_remote_refuses_once_publishes_it_on_the_next_pass(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    _, remote, service = two_app_dev_plan(tmp_path, people)
    reject_push(remote, 2)  # its start record goes out; its finish record is refused
    watcher = polling_watcher(watchers, service, people)
    watcher.wait_for_event("run-failed", 30, run=RUN_1)
    wait_until(lambda: bool(runs(remote)[RUN_1]["finishes"]), 30, "the finish record")
    assert watcher.stop() == 0
    finished_once_as_it_ran(remote, service, tmp_path, people)


# Refuses every push to a branch after the first while `{closed}` exists: the start record
# goes out, and every finish record, the watcher's stop flush included, is refused.
REFUSE_AFTER_THE_FIRST = """#!/bin/sh
grep -q " refs/heads/" || exit 0
count=$(($(cat "{count}" 2>/dev/null || echo 0) + 1))
echo "$count" > "{count}"
if [ "$count" -gt 1 ] && [ -e "{closed}" ]; then
    echo "the host is read-only for now" >&2
    exit 1
fi
"""


def test_a_watcher_stopped_while_its_finish_record_is_refused_keeps_it_for_the_next_start(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    _, remote, service = two_app_dev_plan(tmp_path, people)
    closed = tmp_path / "closed"
    closed.write_text("")
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(REFUSE_AFTER_THE_FIRST.format(count=tmp_path / "pushes", closed=closed))
    hook.chmod(0o755)
    watcher = polling_watcher(watchers, service, people)
    watcher.wait_for_event("run-failed", 30, run=RUN_1)
    assert watcher.stop() == 0
    # The stop's flush was refused too: said, and the record kept, never dropped.
    [failed] = watcher.named("flush-failed")
    assert "the host is read-only for now" in failed["message"]
    assert list(watch_outbox(service)) == [RUN_1]
    check_records(remote, unfinished={RUN_1})
    closed.unlink()
    watcher = polling_watcher(watchers, service, people)
    wait_until(lambda: bool(runs(remote)[RUN_1]["finishes"]), 30, "the finish record")
    assert watcher.stop() == 0
    finished_once_as_it_ran(remote, service, tmp_path, people)


@pytest.mark.slow
def test_an_apply_beside_a_watch_on_one_remote_never_runs_a_plan_twice(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    service = repo.clone(remote, "service")
    other = repo.clone(remote, "other")
    watcher = start_watch(
        watchers, service, people, service.path, "--remote", "origin", "--interval", "0.1"
    )
    names = [f"beside-{index}" for index in range(4)]
    running: subprocess.Popen[str] | None = None
    for index, name in enumerate(names):
        push_plan(repo, people.alice, name, f"1.0.{index}")
        if running is not None:  # one apply per state directory at a time
            _, errors = running.communicate(timeout=60)
            assert running.returncode == 0, errors
        running = background_apply(other, "other")
    assert running is not None
    _, errors = running.communicate(timeout=60)
    assert running.returncode == 0, errors
    # Whatever the apply left to the watcher (a run it saw started), the watcher finishes.
    wait_until(
        lambda: all(
            f"{name}.1" in runs(remote) and runs(remote)[f"{name}.1"]["finishes"] for name in names
        ),
        30,
        "every plan run",
    )
    assert watcher.stop() == 0
    found = check_records(remote)
    assert sorted(found) == [f"{name}.1" for name in names]
    assert all(run["finishes"][0]["Result"] == "succeeded" for run in found.values())
    assert {(run["starts"][0]["Reconciler"]) for run in found.values()} <= {"other", "test-watch"}
    assert deployed_on(remote, "development") == current_in(repo.driver_root, "development")
    assert deployed_on(remote, "development") == {"ecommerce": "1.0.3"}
    assert watch_outbox(service) == {}
    assert outbox(other) == {}
    verified(remote, tmp_path, people)


@pytest.mark.slow
def test_two_applies_on_one_remote_started_together_again_and_again_run_each_plan_once(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    services = [repo.clone(remote, f"service-{number}") for number in range(2)]
    for round_ in range(4):
        for environment in ("development", "quality-assurance"):
            name = f"{environment[:3]}-{round_}"
            content = plan(name, environment, [{"name": "ecommerce", "version": f"1.{round_}"}])
            if environment == "development":
                push(repo, partial(repo.commit, people.alice, {f"plans/{name}.yaml": content}))
            else:  # QA: from development, approved by ravi, triggered by olga
                push(repo, partial(qa_edit, repo, people, name, round_))
        racing = [
            background_apply(service, f"racer-{number}") for number, service in enumerate(services)
        ]
        for process in racing:
            _, errors = process.communicate(timeout=60)
            assert process.returncode == 0, errors
        found = check_records(remote)
        assert {run_id for run_id in found if run_id.endswith(f"-{round_}.1")} == {
            f"dev-{round_}.1",
            f"qua-{round_}.1",
        }
    for environment in ("development", "quality-assurance"):
        assert deployed_on(remote, environment) == current_in(repo.driver_root, environment)
        assert deployed_on(remote, environment) == {"ecommerce": "1.3"}
    for service in services:
        assert outbox(service) == {}
    verified(remote, tmp_path, people)


def qa_edit(repo: ConfigRepo, people: People, name: str, round_: int) -> str:
    """A QA plan deploying development's ecommerce 1.<round_>: proposed, approved, triggered."""
    path = f"plans/{name}.yaml"
    content = plan(
        name,
        "quality-assurance",
        [{"name": "ecommerce", "version": f"1.{round_}"}],
        source="development",
    )
    repo.commit(people.alice, {path: content})
    repo.approve(people.ravi, path)
    return repo.trigger(people.olga, path)


# -- 3. leases -------------------------------------------------------------------------------

# A command driver that records each deploy and the lease it was given, keeps what is
# current in files, holds a run's steps while a file named after the run exists (saying
# so in another file), and takes as many seconds as the file `pause` says.
HOLDING_DRIVER = """\
import os, sys, time, pathlib
folder = pathlib.Path(sys.argv[1])
run, app, version = (os.environ[name] for name in ("RECONCILER_RUN", "RECONCILER_APP",
                                                     "RECONCILER_VERSION"))
if os.environ.get("RECONCILER_OPERATION") == "current":
    sys.exit(1)
with (folder / "leases").open("a") as handle:
    handle.write(f"{run} {app} {os.environ.get('RECONCILER_LEASE_UNTIL')}\\n")
hold = folder / f"hold-{run}"
if hold.exists():
    (folder / f"started-{run}").write_text("yes")
    while hold.exists():
        time.sleep(0.05)
pause = folder / "pause"
if pause.exists():
    time.sleep(float(pause.read_text()))
with (folder / "deploys").open("a") as handle:
    handle.write(f"{run} {app} {version}\\n")
(folder / f"current-{app}").write_text(version)
print(f"deployed {app} {version}")
"""


def holding_driver_repo(
    tmp_path: Path, people: People, *, portal: bool = False, timeout: int = 60
) -> tuple[SeedRepo, Path, Path]:
    """The seed story with development deploying through HOLDING_DRIVER (no retries with a
    `timeout` other than 60) and alice's development plan (with `portal`, diana adds
    customer-portal to it), pushed to a bare remote; the person's repository, the driver's
    folder and the remote."""
    script = tmp_path / "holding.py"
    script.write_text(HOLDING_DRIVER)
    folder = tmp_path / "driven"
    folder.mkdir()
    development = command_environment("development", script, folder)
    if timeout != 60:
        development = development.replace("timeout: 60", f"timeout: {timeout}, retries: 0")
    repo = SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": development})
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    if portal:
        repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    return repo, folder, repo.publish_to_bare_remote()


def driven(folder: Path) -> tuple[list[str], dict[str, str]]:
    """The deploys the holding driver made (run app version), and what is current."""
    made = (folder / "deploys").read_text().splitlines() if (folder / "deploys").exists() else []
    current = {
        path.name.removeprefix("current-"): path.read_text() for path in folder.glob("current-*")
    }
    return made, current


def later_reconciler(service: ConfigRepo, people: People, ahead: timedelta) -> Reconciler:
    """Another reconciler on `service`'s remote, in this process, its clock `ahead`."""
    options = Options(
        remote="origin",
        state_dir=service.state_dir,
        key=people.reconciler.key,
        instance="later",
        driver_root=service.driver_root,
    )
    return Reconciler(
        service.path, options, clock=lambda: datetime.now(UTC) + ahead, sleep=time.sleep
    )


@contextmanager
def apply_held_by(service: ConfigRepo, gate: Path, waits_for: Path) -> Iterator[None]:
    """`apply` on `service`, held while `gate` exists: the body runs once `waits_for`
    appears; then the gate goes, and the apply must end well."""
    gate.write_text("")
    running = background_apply(service, "held")
    try:
        wait_for(waits_for, 30)
        yield
        gate.unlink()
        _, errors = running.communicate(timeout=60)
    finally:
        gate.unlink(missing_ok=True)
        if running.poll() is None:
            running.kill()
            running.wait()
    assert running.returncode == 0, errors


def test_a_run_that_outlives_its_lease_is_retried_only_on_request_and_both_runs_are_recorded(
    tmp_path: Path, people: People
) -> None:
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    slow = repo.clone(remote, "slow")
    with (
        apply_held_by(slow, folder / f"hold-{RUN_1}", folder / f"started-{RUN_1}"),
        later_reconciler(repo.clone(remote, "later"), people, timedelta(hours=1)) as later,
    ):
        taken_over = later.pass_once()
        assert taken_over.interrupted == [RUN_1]
        assert taken_over.runs == []  # not repeated on its own
        assert later.pass_once().runs == []
        retry(repo, people, RUN_1)
        [retried] = later.pass_once().runs
        assert (retried.run, retried.retry_of, retried.result) == (RUN_2, RUN_1, "succeeded")
    found = check_records(remote)
    # The slow run's own finish record came last, late: what it deployed is on record too.
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["interrupted", "late"]
    assert [finish["Result"] for finish in found[RUN_2]["finishes"]] == ["succeeded"]
    made, current = driven(folder)
    assert sorted(made) == [f"{RUN_1} ecommerce 1.4.0", f"{RUN_2} ecommerce 1.4.0"]
    assert deployed_on(remote, "development") == current == {"ecommerce": "1.4.0"}
    verified(remote, tmp_path, people)


STALL_FINISH = """\
#!/bin/sh
# Hold a push of {subject!r} while {stall} exists; accept every push.
while read old new ref; do
    if git log -1 --format=%s "$new" | grep -q "^{subject}"; then
        touch "{stalled}"
        while [ -e "{stall}" ]; do sleep 0.05; done
    fi
done
"""


def test_a_finish_record_published_after_its_lease_does_not_overwrite_a_later_deploy(
    tmp_path: Path, people: People
) -> None:
    # The slow reconciler's driver finished before its lease passed, its push did not: the
    # environment went on to a later plan meanwhile, which is what runs there now.
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    stall, stalled = tmp_path / "stall", tmp_path / "stalled"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(
        STALL_FINISH.format(subject="Deploy 2026-11-dev-build", stall=stall, stalled=stalled)
    )
    hook.chmod(0o755)
    next_plan = plan("next", "development", [{"name": "ecommerce", "version": "2.0"}])
    with (
        apply_held_by(repo.clone(remote, "slow"), stall, stalled),
        later_reconciler(repo.clone(remote, "later"), people, timedelta(hours=1)) as later,
    ):
        assert later.pass_once().interrupted == [RUN_1]
        push(repo, partial(repo.commit, people.alice, {"plans/next.yaml": next_plan}))
        [next_run] = later.pass_once().runs
        assert (next_run.run, next_run.result) == ("next.1", "succeeded")
    found = check_records(remote)
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["interrupted", "late"]
    made, current = driven(folder)
    assert made == [f"{RUN_1} ecommerce 1.4.0", "next.1 ecommerce 2.0"]
    assert current == {"ecommerce": "2.0"}
    assert deployed_on(remote, "development") == current
    verified(remote, tmp_path, people)


def test_a_plan_edit_pushed_while_its_run_is_in_flight_is_a_new_version_run_after_it(
    tmp_path: Path, people: People
) -> None:
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    service = repo.clone(remote, "service")
    with apply_held_by(service, folder / f"hold-{RUN_1}", folder / f"started-{RUN_1}"):
        edit = push(
            repo, partial(repo.commit, people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
        )
    found = check_records(remote)
    assert list(found) == [RUN_1, RUN_2]
    assert found[RUN_1]["finishes"][0]["Result"] == "succeeded"
    assert found[RUN_2]["finishes"][0]["Result"] == "succeeded"
    assert "Retry-Of" not in found[RUN_2]["starts"][0]
    assert found[RUN_2]["plan"].endswith(run_git(remote, "rev-parse", f"{edit}:{DEV_PLAN}"))
    assert edit in run_git(remote, "rev-list", "main").split()
    made, current = driven(folder)
    assert made == [
        f"{RUN_1} ecommerce 1.4.0",
        f"{RUN_2} ecommerce 1.4.0",
        f"{RUN_2} customer-portal 0.6-dev.41",
    ]
    assert deployed_on(remote, "development") == current
    verified(remote, tmp_path, people)


def test_a_watch_killed_mid_run_marks_it_interrupted_on_restart_and_runs_only_the_retry(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    service = repo.clone(remote, "service")
    hold = folder / f"hold-{RUN_1}"
    hold.write_text("")
    args = ("--remote", "origin", "--interval", "0.2")
    try:
        killed = Watcher(watch_argv(service, people, service.path, *args))
        watchers.append(killed)
        wait_for(folder / f"started-{RUN_1}", 30)
        killed.kill()
    finally:
        hold.unlink(missing_ok=True)  # the orphaned driver ends; nobody records it
    watcher = start_watch(watchers, service, people, service.path, *args)
    wait_until(lambda: bool(runs(remote)[RUN_1]["finishes"]), 30, "the interrupted record")
    retry(repo, people, RUN_1)
    watcher.wait_for_event("run-finished", 30, run=RUN_2, result="succeeded")
    assert watcher.stop() == 0
    found = check_records(remote)
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["interrupted"]
    assert watch_outbox(service) == {}
    made, current = driven(folder)
    assert sorted(made) == [f"{RUN_1} ecommerce 1.4.0", f"{RUN_2} ecommerce 1.4.0"]
    assert deployed_on(remote, "development") == current
    verified(remote, tmp_path, people)


# -- 4. fencing: a run takes a step only while it holds its lease -----------------------------

# `reconciler apply` with LEASE_MARGIN seconds of lease margin, not minutes: a lease a test
# can see pass, and extended by heartbeats, in seconds.
SHORT_LEASES = """\
import os, sys
from datetime import timedelta
from reconciler.core import runs
runs.LEASE_MARGIN = timedelta(seconds=float(os.environ["LEASE_MARGIN"]))
sys.argv = ["reconciler", *sys.argv[1:]]
from reconciler.cli import main
main(prog_name="reconciler")
"""


def short_lease_apply(service: ConfigRepo, margin: float) -> subprocess.Popen[str]:
    """`apply --remote origin` on `service` in its own process, leases `margin` s long
    beyond the driver's timeout."""
    argv = service.apply_command("--remote", "origin", instance="short")[3:]
    return subprocess.Popen(
        [sys.executable, "-c", SHORT_LEASES, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LEASE_MARGIN": str(margin)},
    )


def leases(folder: Path) -> list[tuple[str, str, datetime]]:
    """The lease each deploy the holding driver made was given: (run, app, lease)."""
    found = (folder / "leases").read_text().splitlines() if (folder / "leases").exists() else []
    return [
        (run, app, datetime.fromisoformat(lease))
        for run, app, lease in (line.split(" ") for line in found)
    ]


def lease_of(remote: Path, run: str) -> datetime:
    """The lease `run` holds on the remote's main: as its start record, or its last
    heartbeat, set it."""
    found = runs(remote)[run]
    [start] = found["starts"]
    return datetime.fromisoformat([start, *found["heartbeats"]][-1]["Lease-Until"])


def test_a_reconciler_paused_past_its_lease_takes_no_further_step_and_its_record_comes_late(
    tmp_path: Path, people: People
) -> None:
    # m1 deploys ecommerce, then customer-portal; while its reconciler is frozen, its lease
    # passes, and another marks m1.1 interrupted and deploys customer-portal 2.0 (m2).
    repo, folder, remote = holding_driver_repo(tmp_path, people, portal=True, timeout=2)
    hold = folder / f"hold-{RUN_1}"
    hold.write_text("")
    paused = short_lease_apply(repo.clone(remote, "paused"), margin=2)
    try:
        started = folder / f"started-{RUN_1}"
        wait_until(lambda: started.exists() or paused.poll() is not None, 30, "step 1")
        assert started.exists(), paused.communicate()
        paused.send_signal(signal.SIGSTOP)
        hold.unlink()  # step 1 ends inside the lease, while its reconciler is frozen
        wait_until(lambda: len(driven(folder)[0]) == 1, 10, "the first step")
        lease = lease_of(remote, RUN_1)
        time.sleep(max((lease - datetime.now(UTC)).total_seconds(), 0) + 0.3)
        next_plan = plan("next", "development", [{"name": "customer-portal", "version": "2.0"}])
        person = push(repo, partial(repo.commit, people.diana, {"plans/next.yaml": next_plan}))
        with later_reconciler(repo.clone(remote, "later"), people, timedelta(0)) as later:
            report = later.pass_once()
        assert report.interrupted == [RUN_1]
        assert [(run.run, run.result) for run in report.runs] == [("next.1", "succeeded")]
        paused.send_signal(signal.SIGCONT)
        _, errors = paused.communicate(timeout=60)
    finally:
        hold.unlink(missing_ok=True)
        if paused.poll() is None:
            paused.send_signal(signal.SIGCONT)
            paused.kill()
            paused.wait()
    assert paused.returncode == 0, errors
    found = check_records(remote)
    assert list(found) == [RUN_1, "next.1"]
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["interrupted", "late"]
    assert [finish["Result"] for finish in found["next.1"]["finishes"]] == ["succeeded"]
    late = found[RUN_1]["finishes"][1]["subject"]
    assert late == "Deploy 2026-11-dev-build to development: finished after its lease (interrupted)"
    log = run_git(remote, "show", f"main:logs/development/2026-11-dev-build/{RUN_1}.log")
    assert "stopped before step 2 (customer-portal 0.6-dev.41)" in log
    assert "lease passed" in log
    # Step 2 never started; what m1.1 did deploy is on record, beside what m2 deployed.
    made, current = driven(folder)
    assert made == [f"{RUN_1} ecommerce 1.4.0", "next.1 customer-portal 2.0"]
    assert current == {"ecommerce": "1.4.0", "customer-portal": "2.0"}
    assert deployed_on(remote, "development") == current
    assert [lease for run, _, lease in leases(folder) if run == RUN_1] == [lease]
    assert person in run_git(remote, "rev-list", "main").split()
    verified(remote, tmp_path, people)


def test_heartbeats_keep_a_run_that_outlasts_its_first_lease_while_another_reconciler_watches(
    tmp_path: Path, people: People
) -> None:
    # Two steps of 4 s each; a lease covers one step (5 s) and a 2 s margin.
    repo, folder, remote = holding_driver_repo(tmp_path, people, portal=True, timeout=5)
    (folder / "pause").write_text("4")
    watching = repo.clone(remote, "watching")
    running = short_lease_apply(repo.clone(remote, "running"), margin=2)
    passes: list[tuple[datetime, list[str]]] = []
    try:
        # It watches once the run started: it must not be the one to start it.
        wait_until(lambda: RUN_1 in runs(remote) or running.poll() is not None, 30, "the run")
        with later_reconciler(watching, people, timedelta(0)) as later:
            while running.poll() is None:
                when = datetime.now(UTC)
                passes.append((when, later.pass_once().interrupted))
                time.sleep(0.2)
        _, errors = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    assert running.returncode == 0, errors
    found = check_records(remote)
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["succeeded"]
    assert all(interrupted == [] for _, interrupted in passes)
    heartbeats = found[RUN_1]["heartbeats"]
    assert heartbeats
    first = datetime.fromisoformat(found[RUN_1]["starts"][0]["Lease-Until"])
    # A commit's time is whole seconds: the finish record was made before the next second
    # began, and the window between the first lease's end and it can be a tenth of a
    # second long if read as the second it began in (a pass starts every 0.2 s or so).
    finished = datetime.fromtimestamp(
        int(run_git(remote, "log", "-1", "--format=%ct", found[RUN_1]["finishes"][0]["commit"])),
        UTC,
    ) + timedelta(seconds=1)
    # The other reconciler looked after the first lease had passed, and the run went on.
    assert any(first < when < finished for when, _ in passes)
    # Step 2 ran under a lease a heartbeat extended (step 1 too, on a machine slow enough).
    given = [lease for run, _, lease in leases(folder) if run == RUN_1]
    assert first <= given[0] < given[1] == datetime.fromisoformat(heartbeats[-1]["Lease-Until"])
    made, current = driven(folder)
    assert made == [f"{RUN_1} ecommerce 1.4.0", f"{RUN_1} customer-portal 0.6-dev.41"]
    assert deployed_on(remote, "development") == current
    verified(remote, tmp_path, people)


REFUSE_HEARTBEATS = """\
#!/bin/sh
# Refuse every push of a heartbeat record.
while read old new ref; do
    if git log -1 --format=%s "$new" | grep -q "^Extend the lease"; then
        echo "heartbeats are not welcome here" >&2
        exit 1
    fi
done
"""


def test_a_run_whose_heartbeat_the_remote_refuses_stops_before_a_step_its_lease_does_not_cover(
    tmp_path: Path, people: People
) -> None:
    repo, folder, remote = holding_driver_repo(tmp_path, people, portal=True, timeout=5)
    (folder / "pause").write_text("4")
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(REFUSE_HEARTBEATS)
    hook.chmod(0o755)
    running = short_lease_apply(repo.clone(remote, "running"), margin=2)
    _, errors = running.communicate(timeout=60)
    assert running.returncode == 0, errors
    found = check_records(remote)
    assert found[RUN_1]["heartbeats"] == []
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["interrupted"]
    log = run_git(remote, "show", f"main:logs/development/2026-11-dev-build/{RUN_1}.log")
    assert "stopped before step 2 (customer-portal 0.6-dev.41)" in log
    assert "could not be extended" in log
    made, current = driven(folder)
    assert made == [f"{RUN_1} ecommerce 1.4.0"]
    assert deployed_on(remote, "development") == current == {"ecommerce": "1.4.0"}
    verified(remote, tmp_path, people)
