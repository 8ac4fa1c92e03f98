"""The process helper: a driver's children and a worker never outlive what started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.adapters import process

# A child that starts the pool, gives its worker a long task, says the worker's
# pid, and waits to be killed.
CHILD = """
import os, sys, time
from reconciler.adapters.process import worker_pool

if __name__ == "__main__":
    pool = worker_pool()
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 60)
    time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not status.exists() or status.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_worker_leaves_when_the_walk_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        worker = int(child.stdout.readline())
        assert alive(worker)
        child.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_a_child_left_holding_the_output_dies_when_the_command_exits(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    argv = ["/bin/sh", "-c", f"sleep 40 & echo $! > {marker}; echo started; exit 0"]
    began = time.monotonic()
    try:
        completed = process.run(argv, timeout=30)
        took = time.monotonic() - began
    finally:
        grandchild = int(marker.read_text())
        if alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)
    assert took < 5, took
    assert completed.exit_code == 0
    assert completed.output == ("started",)
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_a_child_that_left_the_process_group_does_not_keep_the_reading_going(
    tmp_path: Path,
) -> None:
    # setsid: the child leaves the process group, so no kill reaches it; the reading stops anyway.
    marker = tmp_path / "escaped.pid"
    escapee = tmp_path / "escapee.py"
    escapee.write_text(
        f"import os, time\nmarker = {str(marker)!r}\n"
        "open(marker, 'w').write(str(os.getpid()))\ntime.sleep(40)\n"
    )
    argv = ["/bin/sh", "-c", f"setsid {sys.executable} {escapee} & sleep 0.5; echo done"]
    began = time.monotonic()
    try:
        completed = process.run(argv, timeout=3)
        took = time.monotonic() - began
    finally:
        wait = time.monotonic() + 5
        while not marker.exists() and time.monotonic() < wait:
            time.sleep(0.05)
        if marker.exists() and marker.read_text().strip():
            os.kill(int(marker.read_text()), signal.SIGKILL)
    assert took < 5, took
    assert completed.output == ("done",)
    assert completed.exit_code == 0


def leader_states(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The state (`Z`: a zombie, not yet reaped) of each group leader at the moment its
    group is killed; None when the number no longer names that leader."""
    states: list[str | None] = []
    real = os.killpg

    def observed(group: int, sent: int) -> None:
        stat = Path(f"/proc/{group}/stat")
        states.append(stat.read_text().rsplit(")", 1)[1].split()[0] if stat.exists() else None)
        real(group, sent)

    monkeypatch.setattr(os, "killpg", observed)
    return states


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_finished_drivers_group_is_killed_before_its_number_is_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Killed after the reaping, the number may already be another process group's: the
    # system gives numbers out again, in seconds where pid_max is 32768.
    states = leader_states(monkeypatch)
    completed = process.run(["/bin/sh", "-c", "echo done"], timeout=30)
    assert completed.output == ("done",)
    assert states == ["Z"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_timed_out_drivers_group_is_killed_before_its_number_is_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    states = leader_states(monkeypatch)
    completed = process.run(["sleep", "30"], timeout=0.5)
    assert completed.timed_out
    assert states[0] not in (None, "Z")  # asked to stop while it runs
    assert states[-1] == "Z"
    assert None not in states


def test_the_output_that_arrives_before_the_end_is_kept_whole(tmp_path: Path) -> None:
    # 300 kB at once, more than a pipe holds, in lines under the length that is cut.
    argv = [
        sys.executable,
        "-c",
        "import sys; sys.stdout.write(('y' * 999 + '\\n') * 300 + 'last')",
    ]
    completed = process.run(argv, timeout=30)
    assert completed.output == ("y" * 999,) * 300 + ("last",)


def test_a_long_line_that_arrives_whole_in_one_read_is_cut_too() -> None:
    # 20 kB and its line break in one write: one read of the pipe holds the whole
    # line, which was kept whole (up to 64 kB a line) while only lines longer
    # than what one read brings were cut.
    argv = [sys.executable, "-c", "import sys; sys.stdout.write('z' * 20000 + '\\nafter\\n')"]
    completed = process.run(argv, timeout=30)
    assert completed.output == ("z" * process.MAX_LINE_BYTES + " [line cut]", "after")


def test_a_long_lived_readers_errors_are_its_last_words_not_all_it_wrote() -> None:
    noisy = "import sys\nsys.stderr.write('warning: noise\\n' * 100_000)\n"
    noisy += "sys.stderr.write('fatal: the end')"
    reader = process.Reader([sys.executable, "-c", noisy], answers=False)
    returncode, errors = reader.finish()
    assert returncode == 0
    assert errors.endswith("warning: noise\nfatal: the end")
    assert len(errors.encode()) == process.ERRORS_KEPT


def test_a_long_lived_readers_short_errors_are_kept_whole() -> None:
    reader = process.Reader(
        [sys.executable, "-c", "import sys; sys.stderr.write('fatal: x')"], answers=False
    )
    assert reader.finish() == (0, "fatal: x")
