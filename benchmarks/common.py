"""What the benchmark scripts share: the error that voids a run, timing a command, a measurement.

Used by `benchmarks.validate`, `verify`, `apply` and `watch`.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


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
