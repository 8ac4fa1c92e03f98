"""Adapter, process: the one place that starts subprocesses (drivers, git, ssh-keygen, workers).

Called by `drivers` (for `execute`), by the git adapter (`gitrepo`: plumbing
commands and long-lived readers), by `actions` (reading a signing key) and by
`readahead` (worker processes for the CPU-bound half of `authorise`'s long walks).
Arguments are always an argv list, never a shell string; the environment is
given explicitly; output is captured line by line with timestamps; a
timeout kills the whole process group, and so does the driver's exit (after a
moment for its output), so a driver's children die with it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from msgspec import Struct

from reconciler.core.errors import CannotStart, ReconcilerError, TimedOut

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

# How long a driver's output may keep arriving after it exits (its timeout permitting).
_OUTPUT_GRACE: Final = 1.0
_POLL: Final = 0.1
_CHUNK: Final = 65536
# After the stop: at most this many more chunks (a full pipe holds one to sixteen).
_DRAIN_CHUNKS: Final = 64
# What is kept of a command's output (it goes into run logs committed to Git): lines cut
# at this many bytes, and the first and the last this many lines, the count of the rest.
MAX_LINE_BYTES: Final = 4096
KEPT_LINES: Final = 500


class Completed(Struct, frozen=True):
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
    """Run `argv` without a shell; stdout and stderr merged, one line at a time.

    A command that writes without end costs neither memory nor a huge log:
    `on_line` sees the first `KEPT_LINES` lines as they come; of the rest, the
    last `KEPT_LINES` when the command is done, after a line that counts
    those left out.
    """
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
        raise CannotStart(
            f"cannot start {argv[0]}: {error.strerror}",
            hint="check the driver's argv in the environment file",
        ) from None
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=KEPT_LINES)
    seen = 0

    def keep(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    def emit(raw: bytes | bytearray) -> None:
        nonlocal seen
        seen += 1
        line = raw.decode("utf-8", "replace")
        if seen <= KEPT_LINES:
            keep(line)
        else:
            tail.append(line)

    assert process.stdout is not None
    stop = threading.Event()
    reader = threading.Thread(target=_pump, args=(process.stdout.fileno(), stop, emit), daemon=True)
    reader.start()
    deadline = None if timeout is None else started + timeout
    timed_out = not _exited(process, timeout)
    if timed_out:
        _kill_group(process)
    # A child it left behind (`server &`) may hold the pipe open for ever: what the
    # driver wrote has a moment to arrive, then the rest of its group dies and the
    # reading stops, so neither outlives the driver nor its timeout. The driver is
    # reaped only after that kill: until then it holds its number, so the group
    # killed is its own and never a stranger's that was given the number again.
    grace = _OUTPUT_GRACE if deadline is None else min(_OUTPUT_GRACE, deadline - time.monotonic())
    reader.join(timeout=max(grace, 0))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    stop.set()
    reader.join()
    process.stdout.close()
    if seen > len(lines) + len(tail):
        keep(f"[{seen - len(lines) - len(tail)} lines of output left out]")
    for line in tail:
        keep(line)
    return Completed(
        argv=tuple(argv),
        exit_code=None if timed_out else process.returncode,
        output=tuple(lines),
        seconds=time.monotonic() - started,
        timed_out=timed_out,
    )


def _pump(fd: int, stop: threading.Event, emit: Callable[[bytes | bytearray], None]) -> None:
    """Split what arrives on `fd` into lines until its end or until `stop` is set.

    Reads the descriptor itself (not a buffered file) so that a stop is seen
    while nothing arrives; what is already in the pipe is still read then,
    up to a bound, since a writer that escaped the kill may never stop.
    """
    pending = bytearray()
    cut = False  # the line in `pending` was too long: the rest of it is dropped
    after_stop = 0
    while after_stop < _DRAIN_CHUNKS:
        if stop.is_set():
            after_stop += 1
        ready, _, _ = select.select([fd], [], [], 0 if stop.is_set() else _POLL)
        if not ready:
            if stop.is_set():
                break
            continue
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            break
        search = len(pending)
        pending += chunk
        begin = 0
        while (end := pending.find(b"\n", search)) >= 0:
            if not cut:
                emit(_cut(pending[begin:end]))
            cut = False
            begin = search = end + 1
        del pending[:begin]
        if len(pending) > MAX_LINE_BYTES:
            if not cut:
                emit(_cut(pending))
            cut = True
            del pending[:]
    if pending and not cut:
        emit(pending)


def _cut(line: bytearray) -> bytes | bytearray:
    """`line`, or its first `MAX_LINE_BYTES` and a mark when it is longer (however it
    arrived: in one read or in many)."""
    return line if len(line) <= MAX_LINE_BYTES else line[:MAX_LINE_BYTES] + b" [line cut]"


def _exited(process: subprocess.Popen[bytes], timeout: float | None) -> bool:
    """Whether `process` ends within `timeout` seconds (None: wait for it), leaving it
    unreaped: a zombie keeps its number, and with it the number of its process group,
    which a reaped one would free for the next process the system starts (pid_max is
    often 32768, and a busy machine goes round in seconds)."""
    try:
        handle = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux 5.3 or later: ask every 10 ms
        deadline = None if timeout is None else time.monotonic() + timeout
        flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
        while os.waitid(os.P_PID, process.pid, flags) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True
    try:
        ready, _, _ = select.select([handle], [], [], timeout)
        return bool(ready)
    finally:
        os.close(handle)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group, SIGKILL after 5 s; `process` is left for the caller to reap,
    so the group's number stays its own until then."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
        if not _exited(process, 5):
            os.killpg(process.pid, signal.SIGKILL)
            _exited(process, None)


def output_of(argv: Sequence[str], *, timeout: float = 30) -> str:
    """A short command's output, or ReconcilerError when it fails."""
    completed = run(argv, timeout=timeout)
    if not completed.ok:
        raise ReconcilerError(
            f"{' '.join(argv)} failed: {' '.join(completed.output)[:300]}",
        )
    return "\n".join(completed.output)


class Captured(Struct, frozen=True):
    """A finished command's exit status and its output, whole."""

    returncode: int
    stdout: bytes
    stderr: str


def capture(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float | None = None,
) -> Captured:
    """Run a short command (git plumbing) to completion, `stdin` as its whole input.

    With a `timeout`, it runs in its own process group, which is killed (the
    command and whatever it started: ssh, a remote helper) after that many
    seconds, raising `TimedOut`.
    """
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=timeout is not None,
        )
    except OSError as error:
        raise _cannot_start(argv, error) from None
    try:
        stdout, stderr = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        raise TimedOut(f"{' '.join(argv[:2])} did not finish within {timeout:g} s") from None
    except BaseException:
        if timeout is not None:
            _kill_group(process)
        else:
            process.kill()
        process.wait()
        raise
    return Captured(process.returncode, stdout, stderr.decode("utf-8", "replace"))


def _cannot_start(argv: Sequence[str], error: OSError) -> CannotStart:
    return CannotStart(f"cannot start {argv[0]}: {error.strerror}", hint=f"install {argv[0]}")


ERRORS_KEPT: Final = 64 * 1024  # of a long-lived reader's stderr, the end (`Reader.finish`)


def _unnamed_file() -> IO[bytes]:
    """A file without a name, closed by its owner: in memory where Linux offers one, else
    a temporary file. Importing `tempfile` (and `shutil`, `random` with it) cost every
    command that reads Git about 3 ms of its start."""
    if hasattr(os, "memfd_create"):
        return open(os.memfd_create("reconciler-errors", os.MFD_CLOEXEC), "w+b")
    import tempfile  # noqa: PLC0415

    return tempfile.TemporaryFile()


class Reader:
    """A long-lived command that writes to a pipe (git log) or answers on one (cat-file).

    Its errors go to a temporary file, so a chatty stderr never blocks it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        answers: bool,
    ) -> None:
        self._errors = _unnamed_file()
        try:
            self._process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.PIPE if answers else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._errors,
            )
        except OSError as error:
            self._errors.close()
            raise _cannot_start(argv, error) from None
        assert self._process.stdout is not None
        self.stdout: IO[bytes] = self._process.stdout
        self.stdin: IO[bytes] | None = self._process.stdin

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def finish(self) -> tuple[int, str]:
        """Wait for the end; its exit status and what it wrote to stderr."""
        returncode = self._process.wait()
        # Its last words only: the reason it failed is at the end, and a command that wrote
        # without end (a hostile repository's warnings) is not read into memory whole.
        size = self._errors.seek(0, os.SEEK_END)
        self._errors.seek(max(size - ERRORS_KEPT, 0))
        errors = self._errors.read().decode("utf-8", "replace")
        self._close()
        return returncode, errors

    def stop(self) -> None:
        """Kill it (the caller is done with its output) and wait."""
        self._process.kill()
        self._process.wait()
        self._close()

    def _close(self) -> None:
        for stream in (self._process.stdin, self._process.stdout, self._errors):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def worker_pool(workers: int = 1) -> ProcessPoolExecutor:
    """Worker processes, each a fresh interpreter ("spawn"), so no lock or thread of
    this process is copied into them, whatever the platform's default. They leave
    when this process is gone, even killed with SIGKILL."""
    # Imported here: multiprocessing costs every command's start-up a few milliseconds.
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_leave_with,
        initargs=(os.getpid(),),
    )


def _leave_with(parent: int) -> None:
    """In a worker: exit as soon as `parent` is no longer its parent (it died)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="leave-with-parent", daemon=True).start()
