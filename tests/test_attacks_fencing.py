"""Attacks on fencing (issue 21): a run that acts on a lease main does not grant it.

Real processes, a real bare remote and real hooks, as in tests/test_crash_races.py
("fencing"), whose helpers these use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from benchmarks.storm import start_storm, stop_storm
from reconciler.app.reconcile import REDECIDE_AFTER
from tests import test_watch
from tests.configrepo import dump
from tests.people import People, seed_teams
from tests.repositories import ConfigRepo, run_git
from tests.runner import wait_for, wait_for_text
from tests.test_crash_races import (
    RUN_1,
    background_apply,
    check_records,
    deployed_on,
    driven,
    holding_driver_repo,
    later_reconciler,
    lease_of,
    runs,
    short_lease_apply,
    verified,
)
from tests.test_push_storm import RATE, pushed_by_the_storm, storming_clone
from tests.test_watch import (
    Watcher,
    push,
    start_watch,
    wait_until,
    watch_argv,
)

watchers = test_watch.watchers  # the fixture: the watch processes a test started, killed after

# Hold the first push of a heartbeat while {stall} exists (saying so in {held}), then refuse
# it: the branch moved meanwhile, so the reconciler takes it for a lost race and rebuilds.
# A slow link or a partition does the same to a push; every other push is accepted.
STALL_FIRST_HEARTBEAT = """\
#!/bin/sh
while read old new ref; do
    if git log -1 --format=%s "$new" | grep -q "^Extend the lease" && [ ! -e "{held}" ]; then
        touch "{held}"
        while [ -e "{stall}" ]; do sleep 0.05; done
        echo "try again" >&2
        exit 1
    fi
done
"""


@pytest.mark.alone
@pytest.mark.slow
def test_a_heartbeat_made_after_the_lease_passed_lets_no_further_step_start(
    tmp_path: Path, people: People
) -> None:
    # Two steps of 2.5 s, a lease of one step (3 s) and a 4 s margin: step 2 asks for a
    # heartbeat. Its first push hangs past the lease, and is lost to a person's push; the
    # rebuilt heartbeat is made after the lease passed, so main does not count it.
    # Alone: beside the suite's heaviest tests under libfaketime, the first step's start
    # once took the slack the heartbeat needed, and the run was interrupted before it.
    repo, folder, remote = holding_driver_repo(tmp_path, people, portal=True, timeout=3)
    (folder / "pause").write_text("2.5")
    stall, held = tmp_path / "stall", tmp_path / "held"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(STALL_FIRST_HEARTBEAT.format(stall=stall, held=held))
    hook.chmod(0o755)
    stall.write_text("")
    hold, started = folder / f"hold-{RUN_1}", folder / f"started-{RUN_1}"
    running = short_lease_apply(repo.clone(remote, "running"), margin=4)
    interrupted: list[str] = []
    try:
        wait_until(lambda: held.exists() or running.poll() is not None, 30, "a heartbeat")
        assert held.exists(), running.communicate()
        hold.write_text("")  # a step 2 that starts waits here
        push(repo, partial(repo.commit, people.diana, None, "moved on"))  # a race, no change
        lease = lease_of(remote, RUN_1)
        time.sleep(max((lease - datetime.now(UTC)).total_seconds(), 0) + 1.5)
        stall.unlink()
        wait_until(lambda: started.exists() or running.poll() is not None, 30, "step 2 or end")
        if started.exists():
            # Step 2 runs; main's lease passed (the heartbeat did not count): another
            # reconciler takes the environment from under it.
            with later_reconciler(repo.clone(remote, "later"), people, timedelta(0)) as later:
                interrupted = later.pass_once().interrupted
        hold.unlink()
        _, errors = running.communicate(timeout=60)
    finally:
        stall.unlink(missing_ok=True)
        hold.unlink(missing_ok=True)
        if running.poll() is None:
            running.kill()
            running.wait()
    assert running.returncode == 0, errors
    heartbeats = runs(remote)[RUN_1]["heartbeats"]
    history = run_git(remote, "log", "--format=%H %ct", "main")
    made_at = dict(line.split(" ") for line in history.splitlines())
    for heartbeat in heartbeats:  # made after the lease passed: it extends nothing
        assert datetime.fromtimestamp(int(made_at[heartbeat["commit"]]), UTC) > lease
    assert interrupted == [], "another reconciler interrupted a run that was taking a step"
    made, _ = driven(folder)
    assert made == [f"{RUN_1} ecommerce 1.4.0"]
    found = check_records(remote)
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["interrupted"]
    verified(remote, tmp_path, people)


@pytest.mark.alone
@pytest.mark.slow
def test_a_person_pushing_twenty_times_a_second_does_not_interrupt_a_run_that_needs_a_heartbeat(
    tmp_path: Path, people: People
) -> None:
    # Steps of at most 15 s, an 8 s margin: step 1 holds until 14 s are left of the lease
    # (inside its 15 s), so step 2 needs a heartbeat, and cannot start without one; it must
    # land through the storm as a finish record does (tests/test_push_storm.py). The whole
    # machine waits meanwhile (`alone`): the lease is as short as leaves the heartbeat
    # seconds to land.
    repo, folder, remote = holding_driver_repo(tmp_path, people, portal=True, timeout=15)
    stop, pushed = tmp_path / "stop", tmp_path / "pushed"
    hold = folder / f"hold-{RUN_1}"
    hold.write_text("")
    running = short_lease_apply(repo.clone(remote, "running"), margin=8)
    storm = None
    try:
        started = folder / f"started-{RUN_1}"
        wait_until(lambda: started.exists() or running.poll() is not None, 30, "step 1")
        assert started.exists(), running.communicate()
        storm = start_storm(
            storming_clone(tmp_path, remote, people.alice), RATE, stop, pushed, os.environ
        )
        wait_until(lambda: len(pushed_by_the_storm(pushed)) >= 10, 30, "the storm")
        lease = lease_of(remote, RUN_1)
        time.sleep(max((lease - datetime.now(UTC)).total_seconds() - 14, 0))
        hold.unlink()
        output, errors = running.communicate(timeout=120)
    finally:
        hold.unlink(missing_ok=True)
        if running.poll() is None:
            running.kill()
            running.communicate()
        stormed = stop_storm(storm, stop) if storm is not None else ""
    assert stormed == ""
    assert running.returncode == 0, output + errors
    found = check_records(remote)
    log = run_git(remote, "show", f"main:logs/development/2026-11-dev-build/{RUN_1}.log")
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["succeeded"], log
    made, current = driven(folder)
    assert made == [f"{RUN_1} ecommerce 1.4.0", f"{RUN_1} customer-portal 0.6-dev.41"]
    assert deployed_on(remote, "development") == current
    verified(remote, tmp_path, people)


def test_a_key_rotation_during_a_watched_run_does_not_lose_its_finish_record(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    # While the run's step holds, a settings user rotates the service account's key (the
    # commit does not mention a result). A finish record the old key signs after that
    # counts for nothing: kept, it would be signed with the new key once the reconciler
    # restarts with it; published and dropped from the outbox, the run's deploy is lost.
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    service = repo.clone(remote, "service")
    rotated = people.second_key(people.reconciler)
    hold = folder / f"hold-{RUN_1}"
    hold.write_text("")
    try:
        watcher = start_watch(
            watchers, service, people, service.path, "--remote", "origin", "--interval", "1"
        )
        wait_for(folder / f"started-{RUN_1}", 30)
        teams = seed_teams(people)
        teams["service_accounts"]["reconciler"]["keys"] = [rotated.public_key]
        message = "Rotate the reconciler's key"
        push(repo, partial(repo.commit, people.root, {"teams.yaml": dump(teams)}, message))
        hold.unlink()
        # Published, or kept in the outbox: either is a few seconds.
        deadline = time.monotonic() + 20
        while not runs(remote)[RUN_1]["finishes"] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        hold.unlink(missing_ok=True)
    watcher.kill()
    # Restarted with its new key and its state (the outbox it kept, if it kept it).
    argv = watch_argv(service, people, service.path, "--remote", "origin", "--interval", "1")
    argv[argv.index("--key") + 1] = str(rotated.key)
    restarted = Watcher(argv)
    watchers.append(restarted)
    restarted.wait_for_event("pass", result="ok")
    restarted.kill()
    auditor = ConfigRepo(tmp_path / "auditor", people, tmp_path / "auditor-state")
    run_git(tmp_path, "clone", "-q", str(remote), str(auditor.path))
    audit = auditor.reconciler("verify")
    assert [finish["Result"] for finish in runs(remote)[RUN_1]["finishes"]][-1] == "succeeded"
    assert "unauthorised" not in audit.stdout, audit.stdout


def test_a_key_rotation_during_a_run_does_not_lose_its_finish_record(
    tmp_path: Path, people: People
) -> None:
    # `apply`: the finish record waits in the outbox for the next round, which walks the
    # rotation and refuses to sign with the old key; the outbox keeps it, and the
    # reconciler restarted with the new key publishes it (held; the watcher's is not).
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    service = repo.clone(remote, "service")
    rotated = people.second_key(people.reconciler)
    hold = folder / f"hold-{RUN_1}"
    hold.write_text("")
    running = background_apply(service, "test-reconciler")
    try:
        wait_for(folder / f"started-{RUN_1}", 30)
        teams = seed_teams(people)
        teams["service_accounts"]["reconciler"]["keys"] = [rotated.public_key]
        message = "Rotate the reconciler's key"
        push(repo, partial(repo.commit, people.root, {"teams.yaml": dump(teams)}, message))
        hold.unlink()
        _, errors = running.communicate(timeout=60)
    finally:
        hold.unlink(missing_ok=True)
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert running.returncode == 1
    assert "is not a service account's key in teams.yaml" in errors
    restarted = service.apply("--remote", "origin", key=rotated.key)
    assert restarted.exit_code == 0, restarted.stdout + restarted.stderr
    finishes = [finish["Result"] for finish in runs(remote)[RUN_1]["finishes"]]
    assert finishes == ["succeeded"]
    made, _ = driven(folder)
    assert made == [f"{RUN_1} ecommerce 1.4.0"]
    verified(remote, tmp_path, people)


# Hold the first push of a start record while {stall} exists (saying so in {held}), then
# refuse it: a person pushed meanwhile, so the reconciler takes it for a lost race and
# rebuilds its start records on the new tip. Every other push is accepted.
STALL_FIRST_START = """\
#!/bin/sh
while read old new ref; do
    if git log -1 --format=%s "$new" | grep -q "^Start " && [ ! -e "{held}" ]; then
        touch "{held}"
        while [ -e "{stall}" ]; do sleep 0.05; done
        echo "try again" >&2
        exit 1
    fi
done
"""


def test_a_stop_asked_for_while_a_busy_branch_holds_off_a_start_record_starts_no_run(
    tmp_path: Path, people: People
) -> None:
    # A service asked to stop (a redeploy of it, say) starts nothing more. Its start record
    # loses its race to a person's empty commit, which changes nothing a decision reads,
    # and the stop comes meanwhile: rebuilt on the new tip regardless, the record would
    # start a run that stops before its first step, recorded interrupted, and the plan
    # version, which runs at most once, would wait for someone to retry it.
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    service = repo.clone(remote, "service")
    stall, held = tmp_path / "stall", tmp_path / "held"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(STALL_FIRST_START.format(stall=stall, held=held))
    hook.chmod(0o755)
    stall.write_text("")
    running = subprocess.Popen(
        service.apply_command("--remote", "origin", instance="service"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(held, 30)  # the start record is decided and on its way
        push(repo, partial(repo.commit, people.alice, message="Tidy up"))
        running.send_signal(signal.SIGTERM)
        wait_for_text(running, "stopping after the step in progress")
        stall.unlink()
        _, errors = running.communicate(timeout=60)
    finally:
        stall.unlink(missing_ok=True)
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert running.returncode == 130, errors
    assert RUN_1 not in runs(remote), "a run started after the stop was asked for"
    assert driven(folder)[0] == []
    again = service.apply("--remote", "origin")
    assert again.exit_code == 0, again.stdout + again.stderr
    found = check_records(remote)
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["succeeded"]
    made, current = driven(folder)
    assert made == [f"{RUN_1} ecommerce 1.4.0"]
    assert deployed_on(remote, "development") == current
    verified(remote, tmp_path, people)


# The service's end of a slow link, its git's `remote.origin.receivepack` and `uploadpack`:
# the first push waits while {stall} exists (saying so in {held}), before the remote says
# where its branch is; a fetch waits while {slow} exists (saying so in {fetching}).
SLOW_PUSH = """\
#!/bin/sh
if [ -e "{stall}" ] && [ ! -e "{held}" ]; then
    touch "{held}"
    while [ -e "{stall}" ]; do sleep 0.05; done
fi
exec git receive-pack "$@"
"""
SLOW_FETCH = """\
#!/bin/sh
if [ -e "{slow}" ]; then
    touch "{fetching}"
    while [ -e "{slow}" ]; do sleep 0.05; done
fi
exec git upload-pack "$@"
"""


@pytest.mark.parametrize("slow_on", ["push", "fetch"])
def test_a_start_record_is_not_carried_past_a_slow_link_onto_a_decision_that_lapsed(
    tmp_path: Path, people: People, slow_on: str
) -> None:
    # The start record loses its race to a person's empty commit, which changes nothing a
    # decision reads; the lost push, or the fetch of that commit (a large file in it), takes
    # long. Meanwhile the triggerer's key is revoked. Rebuilt on the new tip after that,
    # the record would start a run on a trigger that no longer counts: a decision is rebuilt
    # for `REDECIDE_AFTER` seconds from its first try, never past them on a slow link.
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    development = "environments/development.yaml"
    text = (repo.path / development).read_text()
    signed = text.replace("signed_commits: false", "signed_commits: true")
    repo.commit(people.root, {development: signed}, "Require signed commits in development")
    repo.git("push", "-q", "origin", "main")
    service = repo.clone(remote, "service")
    revoked = service.revoke("")
    stall, held = tmp_path / "stall", tmp_path / "held"
    slow, fetching = tmp_path / "slow", tmp_path / "fetching"
    for name, text in {
        "receivepack": SLOW_PUSH.format(stall=stall, held=held),
        "uploadpack": SLOW_FETCH.format(slow=slow, fetching=fetching),
    }.items():
        script = tmp_path / f"slow-{name}"
        script.write_text(text)
        script.chmod(0o755)
        service.git("config", f"remote.origin.{name}", str(script))
    stall.write_text("")
    running = background_apply(service, "service")
    try:
        wait_for(held, 30)  # the start record is decided and on its way
        push(repo, partial(repo.commit, people.bob, message="Tidy up"))
        if slow_on == "fetch":
            slow.write_text("")
            stall.unlink()  # the push finds the branch moved: a lost race
            wait_for(fetching, 30)
        revoked.write_text(people.alice.public_key + "\n")
        time.sleep(REDECIDE_AFTER + 0.5)
        stall.unlink(missing_ok=True)
        slow.unlink(missing_ok=True)
        output, errors = running.communicate(timeout=60)
    finally:
        stall.unlink(missing_ok=True)
        slow.unlink(missing_ok=True)
        if running.poll() is None:
            running.kill()
            running.communicate()
    assert running.returncode == 0, output + errors
    log = run_git(remote, "log", "--format=%h %s (%an)")
    assert RUN_1 not in runs(remote), f"a run started on a revoked key's trigger:\n{log}"
    assert driven(folder)[0] == []


def test_a_start_record_is_not_rebuilt_on_a_history_that_only_names_the_decided_tip(
    tmp_path: Path, people: People
) -> None:
    # main is not protected from force-pushes. While the start record is on its way,
    # mallory force-pushes a commit of the same tree whose `parent` line comes after the
    # committer: to the reconciler's commit parser its parent is the decided tip, to git
    # it is a root, a history of its own, on which the plan is decided otherwise. The
    # record must not be rebuilt on it as on a commit that changes nothing.
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    service = repo.clone(remote, "service")
    stall, held = tmp_path / "stall", tmp_path / "held"
    script = tmp_path / "slow-receivepack"
    script.write_text(SLOW_PUSH.format(stall=stall, held=held))
    script.chmod(0o755)
    service.git("config", "remote.origin.receivepack", str(script))
    stall.write_text("")
    running = background_apply(service, "service")
    try:
        wait_for(held, 30)  # the start record is decided and on its way
        decided_on = run_git(remote, "rev-parse", "main")
        tree = run_git(remote, "rev-parse", "main^{tree}")
        who = f"Mallory <{people.mallory.email}> {repo.clock} +0000"
        raw = f"tree {tree}\nauthor {who}\ncommitter {who}\nparent {decided_on}\n\nTidy up\n"
        (tmp_path / "raw").write_text(raw)
        orphan = repo.git("hash-object", "--literally", "-t", "commit", "-w", str(tmp_path / "raw"))
        repo.git("push", "-q", "--force", "origin", f"{orphan}:refs/heads/main")
        stall.unlink()  # the push finds the branch moved: a lost race
        output, errors = running.communicate(timeout=60)
    finally:
        stall.unlink(missing_ok=True)
        if running.poll() is None:
            running.kill()
            running.communicate()
    log = run_git(remote, "log", "--format=%h %s (%an)")
    assert RUN_1 not in runs(remote), f"a run started on another history:\n{log}{output}{errors}"
    assert driven(folder)[0] == []
