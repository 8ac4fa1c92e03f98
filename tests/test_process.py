"""The process helper's worker pool: a worker never outlives the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A child that starts the pool, gives its worker a long task, says the worker's
# pid, and waits to be killed.
CHILD = """
import os, sys, time
from reconciler.process import worker_pool

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
