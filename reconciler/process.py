"""The one place that starts subprocesses (an edge): drivers, ssh-keygen, a worker.

Called by the drivers (`execute`), by `actions` (reading a signing key) and
by `authorise` (a worker process for the CPU-bound half of a long walk).
Arguments are always an argv list, never a shell string; the environment is
given explicitly; output is captured line by line with timestamps; a
timeout kills the whole process group, so a driver's children die with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import ReconcilerError

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor


@dataclass(frozen=True, slots=True)
class Completed:
    argv: tuple[str, ...]
    exit_code: int | None  # None when it was killed for taking too long
    output: tuple[str, ...]
    seconds: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Completed:
    """Run `argv` without a shell; stdout and stderr merged, one line at a time."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills its children too
        )
    except OSError as error:
        raise ReconcilerError(
            f"cannot start {argv[0]}: {error.strerror}",
            hint="check the driver's argv in the environment file",
        ) from None
    lines: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if on_line is not None:
                on_line(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process)
        process.wait()
    reader.join(timeout=5)
    if process.stdout is not None:
        process.stdout.close()
    return Completed(
        argv=tuple(argv),
        exit_code=None if timed_out else process.returncode,
        output=tuple(lines),
        seconds=time.monotonic() - started,
        timed_out=timed_out,
    )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def output_of(argv: Sequence[str], *, timeout: float = 30) -> str:
    """A short command's output, or ReconcilerError when it fails."""
    completed = run(argv, timeout=timeout)
    if not completed.ok:
        raise ReconcilerError(
            f"{' '.join(argv)} failed: {' '.join(completed.output)[:300]}",
        )
    return "\n".join(completed.output)


def worker_pool() -> ProcessPoolExecutor:
    """One worker process: a fresh interpreter ("spawn"), so no lock or thread of
    this process is copied into it, whatever the platform's default."""
    # Imported here: multiprocessing costs every command's start-up a few milliseconds.
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
