"""A state directory that stops taking writes in the middle of a pass, with real processes.

The pass stops with a message naming the state database and how to go on
without losing its outbox; no finished run is lost with it: a finish record
the outbox could not take is published directly, and one the outbox holds is
published by the first pass on the state copied where the message says.

The state is made immutable with `chattr +i` (the directory, its database and
write-ahead log): an open SQLite connection's writes then fail as on a file
system remounted read-only. `chmod` would not do: permissions are checked
when a file is opened, and the reconciler holds its database open all pass.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.people import People
from tests.repositories import ConfigRepo
from tests.test_crash_races import (
    RUN_1,
    RUN_2,
    check_records,
    current_in,
    deployed_on,
    deploys,
    frozen_state,
    killable_apply,
    outbox,
    runs,
    two_app_dev_plan,
    verified,
)


def _can_make_immutable(folder: Path) -> bool:
    probe = folder / "immutable-probe"
    probe.write_text("")
    made = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False)
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True, check=False)
    probe.unlink()
    return made.returncode == 0


@pytest.fixture
def thawed(tmp_path: Path) -> Iterator[list[Path]]:
    """Folders whose state a test makes immutable: made mutable again at its end."""
    try:
        found = _can_make_immutable(tmp_path)
    except FileNotFoundError:
        found = False
    if not found:
        pytest.skip("chattr +i is not available here (it needs root and ext2/3/4, XFS or btrfs)")
    folders: list[Path] = []
    yield folders
    for folder in folders:
        thaw(folder)


def thaw(state_dir: Path) -> None:
    subprocess.run(["chattr", "-i", *map(str, frozen_state(state_dir))], check=True)


def moved_as_told(service: ConfigRepo, people: People, stderr: str) -> ConfigRepo:
    """The service with its state copied as the message says, given `--state-dir NEW`."""
    assert f"cp -a {service.state_dir} NEW" in stderr
    new = service.state_dir.with_name(f"{service.state_dir.name}-moved")
    subprocess.run(["cp", "-a", str(service.state_dir), str(new)], check=True)
    thaw(new)  # cp -a copies the immutable flag only as root, and not always then
    return ConfigRepo(service.path, people, new)


def _stopped_with_the_message(
    result: subprocess.CompletedProcess[str], service: ConfigRepo
) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    assert f"{service.state_dir / 'origin%2Fmain.sqlite3'}: error: " in result.stderr
    assert "outbox" in result.stderr
    assert "new directory" not in result.stderr.replace("new, empty directory would", "")


def _everything_once(remote: Path, service: ConfigRepo, tmp_path: Path, people: People) -> None:
    found = check_records(remote)
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["succeeded"]
    assert RUN_2 not in found
    assert deploys(service) == 2  # each application deployed once: no version ran twice
    assert outbox(service) == {}
    assert deployed_on(remote, "development") == current_in(service.driver_root, "development")
    assert deployed_on(remote, "development") == {
        "ecommerce": "1.4.0",
        "customer-portal": "0.6-dev.41",
    }
    verified(remote, tmp_path, people)


def test_a_run_whose_state_stops_taking_writes_after_its_steps_is_published_not_lost(
    tmp_path: Path, people: People, thawed: list[Path]
) -> None:
    _, remote, service = two_app_dev_plan(tmp_path, people)
    thawed.append(service.state_dir)
    # The state goes read-only the moment the run's last step has deployed.
    first = killable_apply(
        service, freeze_at="reconciler.adapters.drivers.LocalDriver.deploy:after:2"
    )
    # On main at once, not left behind with the state.
    assert [finish["Result"] for finish in runs(remote)[RUN_1]["finishes"]] == ["succeeded"]
    _stopped_with_the_message(first, service)
    assert f"the finish record of {RUN_1} was published directly" in first.stderr
    moved = moved_as_told(service, people, first.stderr)
    thaw(service.state_dir)
    again = killable_apply(moved, "--format", "json")
    assert again.returncode == 0, again.stderr
    _everything_once(remote, moved, tmp_path, people)


def test_the_outbox_of_a_state_that_stops_taking_writes_is_kept_for_the_next_pass(
    tmp_path: Path, people: People, thawed: list[Path]
) -> None:
    _, remote, service = two_app_dev_plan(tmp_path, people)
    thawed.append(service.state_dir)
    # The state goes read-only the moment the run's finish record is in the outbox.
    first = killable_apply(
        service, freeze_at="reconciler.adapters.statestore.StateStore.put_outbox:after:1"
    )
    _stopped_with_the_message(first, service)
    check_records(remote, unfinished={RUN_1})
    assert list(outbox(service)) == [RUN_1]
    # Still read-only: the next pass stops the same way, and keeps the outbox too.
    stuck = killable_apply(service)
    _stopped_with_the_message(stuck, service)
    assert list(outbox(service)) == [RUN_1]
    moved = moved_as_told(service, people, stuck.stderr)
    thaw(service.state_dir)
    again = killable_apply(moved, "--format", "json")
    assert again.returncode == 0, again.stderr
    _everything_once(remote, moved, tmp_path, people)
