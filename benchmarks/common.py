"""What the benchmark scripts share: the error that voids a run, timing a command, a measurement.

Used by `benchmarks.validate`, `verify`, `apply`, `watch`, `startup` and `everyday`.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

C = TypeVar("C")


class BenchmarkError(Exception):
    """A step of a benchmark failed, or did not do what it must, so no number counts."""


def run_timed(argv: Sequence[str], what: str) -> float:
    """Seconds `argv` took, wall clock, output discarded; raise unless it exits 0."""
    started = time.perf_counter()
    completed = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise BenchmarkError(f"{what} exited {completed.returncode}: {completed.stderr[-2000:]}")
    return elapsed


def run_counted(
    argv: Sequence[str],
    what: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    answers: Sequence[int] = (0,),
) -> tuple[float, float, int]:
    """Wall and CPU seconds of one run of `argv` and its exit code; raise unless the code
    is one of `answers`. CPU is user plus system of it and every process it waited for
    (RUSAGE_CHILDREN counts the children reaped so far). Output goes to /dev/null, as a
    terminal would only add its own time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(
        argv,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode not in answers:
        raise BenchmarkError(f"{what} exited {completed.returncode}: {completed.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, completed.returncode


@dataclass(slots=True)
class Timings(Generic[C]):
    """One command's counted rounds: wall and CPU seconds (`run_counted`), exit codes."""

    command: C
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def add(self, seconds: float, cpu: float, code: int) -> None:
        self.seconds.append(seconds)
        self.cpu_seconds.append(cpu)
        self.exit_codes.append(code)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)


@dataclass(slots=True)
class Measurement:
    """Repeated timings of one thing, in seconds, and peak memory where measured."""

    key: str
    label: str
    seconds: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # user + system, where measured
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def minimum(self) -> float:
        return min(self.seconds)

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "median_seconds": self.median,
            "min_seconds": self.minimum,
            "runs": len(self.seconds),
            "seconds": self.seconds,
            "peak_rss_mib": self.peak_mib,
            "cpu_seconds": self.cpu_seconds,
            "note": self.note,
        }
