"""The push-storm benchmark: how long a finish record takes to land while a person pushes fast.

Run by people as `python -m benchmarks.storm [--runs 10] [--rate 20] [--format json]`.
It builds the configuration repository of `benchmarks.watch` (a bare
repository, the source of truth) with `--runs` ready plans into one
environment, each one application version (the embedded `local` driver). A
person (the tech lead) then pushes signed commits to the bare repository at
`--rate` a second from a process of their own (`push_storm`, one `git
commit-tree -S` and one `git push` each, parented anew on a lost race), and
`reconciler apply --remote origin` runs every plan from a clone meanwhile.

A thread polls the bare repository's ref every millisecond. A run's latency
is from its start record's first sight on main to its finish record's: the
driver's step (a copy of a few bytes) and the publishing of the finish
record, which loses races with the person's pushes and is rebuilt on the new
tip each time. Goal: every run's under 5 s; the median and maximum are printed
with the person's achieved rate and the checks that nothing was lost (each
pushed commit is on main, each run has one start and one finish record).

The reference, in the same storm once `apply` is done: plain git publishing
`--runs` signed commits from a clone of its own (`land_by_git`, a process of
its own): fetch, `git commit-tree -S` on the fetched tip, push, again until it
lands, each timed from its first fetch to its landing. Both lose races to the
same person; the ratios of the medians and maxima say how much of the latency
is ours and how much the branch's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchmarks.common import BenchmarkError
from benchmarks.generate import DEFAULT_SEED
from benchmarks.watch import (
    RefPoller,
    Settings,
    add_plan_file,
    build_fixture,
    git,
    git_environment,
)

LATENCY_GOAL: Final = 5.0  # seconds from a run's start record to its finish record
APPLY_TIMEOUT: Final = 600.0


# -- the person's storm (a process of its own; the suite runs it too) ---------------------------


def push_storm(
    clone: Path, rate: float, stop: Path, pushed: Path, env: Mapping[str, str] | None = None
) -> None:
    """Push an empty signed commit onto origin's main `rate` times a second, until `stop`
    exists; each pushed commit's id is appended to `pushed`, one a line.

    The clone's git configuration signs (`commit.gpgsign`, the person's key); a
    push that loses a race fetches and parents the next commit on the new tip.
    """
    environment = dict(env if env is not None else os.environ)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=clone, env=environment, capture_output=True, text=True, check=False
        )

    def fetched() -> tuple[str, str]:
        run("fetch", "-q", "origin", "main")
        tip = run("rev-parse", "FETCH_HEAD").stdout.strip()
        return tip, run("rev-parse", f"{tip}^{{tree}}").stdout.strip()

    parent, tree = fetched()
    began = time.monotonic()
    count = 0
    with pushed.open("a", encoding="utf-8") as out:
        while not stop.exists():
            made = run("commit-tree", "-S", "-p", parent, "-m", f"Storm {count}", tree)
            commit = made.stdout.strip()
            if made.returncode != 0 or not commit:
                raise SystemExit(f"commit-tree failed: {made.stderr}")
            if run("push", "-q", "origin", f"{commit}:refs/heads/main").returncode == 0:
                out.write(commit + "\n")
                out.flush()
                parent = commit
                count += 1
                pause = began + count / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            else:
                parent, tree = fetched()


def start_storm(
    clone: Path, rate: float, stop: Path, pushed: Path, env: Mapping[str, str]
) -> subprocess.Popen[str]:
    """`push_storm` in a process of its own (Python, importing this module)."""
    return _in_a_process(
        "push_storm(Path(a[0]), float(a[1]), Path(a[2]), Path(a[3]))",
        [str(clone), str(rate), str(stop), str(pushed)],
        env,
    )


def land_by_git(clone: Path, count: int, out: Path) -> None:
    """Publish `count` empty signed commits onto origin's main as plain git would: fetch,
    commit on the fetched tip, push, until it lands. Each one's seconds from its first
    fetch to its landing, and its tries, are appended to `out` as a JSON line."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=clone, capture_output=True, text=True, check=False
        )

    with out.open("a", encoding="utf-8") as written:
        for index in range(count):
            began, tries = time.monotonic(), 0
            while True:
                tries += 1
                run("fetch", "-q", "origin", "main")
                tip = run("rev-parse", "FETCH_HEAD").stdout.strip()
                made = run(
                    "commit-tree", "-S", "-p", tip, "-m", f"Reference {index}", tip + "^{tree}"
                )
                if made.returncode != 0 or not made.stdout.strip():
                    raise SystemExit(f"commit-tree failed: {made.stderr}")
                landed = run("push", "-q", "origin", f"{made.stdout.strip()}:refs/heads/main")
                if landed.returncode == 0:
                    break
            written.write(json.dumps([time.monotonic() - began, tries]) + "\n")
            written.flush()
            time.sleep(0.2)  # `apply`'s records too come a driver step apart


def _in_a_process(call: str, arguments: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """`call`, a call of this module's with its command-line arguments as `a`, in a Python
    process of its own, so that it shares no interpreter with the measuring thread."""
    code = (
        "import sys; from pathlib import Path; from benchmarks.storm import *; "
        f"a = sys.argv[1:]; {call}"
    )
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", code, *arguments],
        env={**env, "PYTHONPATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_storm(storm: subprocess.Popen[str], stop: Path) -> str:
    """End the storm; what it said on stderr (empty when all went well)."""
    stop.write_text("")
    try:
        _, errors = storm.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        storm.kill()
        _, errors = storm.communicate()
    return errors if storm.returncode else ""


# -- the benchmark -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    latencies: list[float]
    pushed: int
    storm_seconds: float
    apply_seconds: float
    apply_exit: int
    by_git: list[float]  # the reference's latencies, in the same storm
    by_git_tries: list[int]

    @property
    def rate(self) -> float:
        return self.pushed / self.storm_seconds if self.storm_seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": len(self.latencies),
            "latency_median_s": round(statistics.median(self.latencies), 3),
            "latency_max_s": round(max(self.latencies), 3),
            "latencies_s": [round(value, 3) for value in self.latencies],
            "person_pushes": self.pushed,
            "person_rate_per_s": round(self.rate, 1),
            "apply_s": round(self.apply_seconds, 3),
            "apply_exit": self.apply_exit,
            "plain_git_latency_median_s": round(statistics.median(self.by_git), 3),
            "plain_git_latency_max_s": round(max(self.by_git), 3),
            "plain_git_latencies_s": [round(value, 3) for value in self.by_git],
            "plain_git_tries": self.by_git_tries,
            "median_ratio": round(
                statistics.median(self.latencies) / statistics.median(self.by_git), 2
            ),
            "max_ratio": round(max(self.latencies) / max(self.by_git), 2),
            "goal_s": LATENCY_GOAL,
            "passed": max(self.latencies) < LATENCY_GOAL and self.apply_exit == 0,
        }


def records_on(bare: Path) -> dict[str, tuple[str, str]]:
    """Each record on main: its commit, (run, result)."""
    log = git(bare, "log", "--format=%H%n%(trailers:only,unfold)%x00", "main")
    found = {}
    for entry in filter(None, (text.strip() for text in log.split("\0"))):
        commit, *lines = entry.splitlines()
        fields = dict(line.split(": ", 1) for line in lines if ": " in line)
        if "Run" in fields:
            found[commit] = (fields["Run"], fields["Result"])
    return found


def measure(runs: int, rate: float, seed: int, directory: Path) -> Result:
    fixture = build_fixture(Settings(seed=seed), directory)
    lead = fixture.lead
    for index in range(runs):
        add_plan_file(fixture, f"storm-{index:02d}", f"1.0.{index}")
    git(fixture.work, "add", "-A")
    lead.git(fixture.work, "commit", "-q", "-S", "-m", f"Add {runs} plans")
    git(fixture.work, "push", "-q", "origin", "main")
    service = directory / "service"
    git(directory, "clone", "-q", str(fixture.bare), str(service))
    person = directory / "person"
    git(directory, "clone", "-q", str(fixture.bare), str(person))
    reference = directory / "reference"
    git(directory, "clone", "-q", str(fixture.bare), str(reference))
    for clone in (person, reference):
        for key, value in {
            "gpg.format": "ssh",
            "user.signingkey": str(lead.key),
            "commit.gpgsign": "true",
        }.items():
            git(clone, "config", key, value)
    stop, pushed, landed = directory / "stop", directory / "pushed", directory / "landed"
    apply = [
        sys.executable,
        "-m",
        "reconciler",
        "apply",
        "--repo",
        str(service),
        "--remote",
        "origin",
        "--state-dir",
        str(fixture.state_dir),
        "--key",
        str(fixture.keys["reconciler"]),
        "--driver-root",
        str(fixture.driver_root),
        "--instance",
        "storm",
    ]
    with RefPoller(fixture.bare) as poller:
        storm = start_storm(person, rate, stop, pushed, lead.env())
        began = time.monotonic()
        time.sleep(1.0)  # the storm at full rate before the first run
        completed = subprocess.run(
            apply,
            capture_output=True,
            text=True,
            env=git_environment(),
            timeout=APPLY_TIMEOUT,
            check=False,
        )
        applied = time.monotonic() - began - 1.0
        by_git = _in_a_process(
            "land_by_git(Path(a[0]), int(a[1]), Path(a[2]))",
            [str(reference), str(runs), str(landed)],
            lead.env(),
        )
        _, reference_errors = by_git.communicate(timeout=APPLY_TIMEOUT)
        errors = stop_storm(storm, stop)
        storm_seconds = time.monotonic() - began
    if errors:
        raise BenchmarkError(f"the person's storm failed: {errors[-2000:]}")
    if by_git.returncode:
        raise BenchmarkError(f"plain git's records failed: {reference_errors[-2000:]}")
    reference_landed = [json.loads(line) for line in landed.read_text().splitlines()]
    records = records_on(fixture.bare)
    seen: dict[tuple[str, str], float] = {}
    for when, commit in poller.seen:
        for found in _records_reached(fixture.bare, commit, records):
            seen.setdefault(found, when)
    latencies = []
    starts = [run for run, result in records.values() if result == "started"]
    for run in sorted(set(starts)):
        finishes = [r for r, result in records.values() if r == run and result != "started"]
        if starts.count(run) != 1 or len(finishes) != 1:
            raise BenchmarkError(
                f"{run}: {starts.count(run)} start, {len(finishes)} finish records"
            )
        finished = next(key for key in seen if key[0] == run and key[1] != "started")
        latencies.append(seen[finished] - seen[(run, "started")])
    commits = pushed.read_text().split()
    lost = [commit for commit in commits if not git_contains(fixture.bare, commit)]
    if lost:
        raise BenchmarkError(f"{len(lost)} of the person's commits are not on main")
    if len(latencies) != runs:
        raise BenchmarkError(
            f"{len(latencies)} of {runs} runs recorded; apply exited {completed.returncode}: "
            f"{completed.stderr[-2000:]}"
        )
    return Result(
        latencies,
        len(commits),
        storm_seconds,
        applied,
        completed.returncode,
        [seconds for seconds, _ in reference_landed],
        [tries for _, tries in reference_landed],
    )


def _records_reached(
    bare: Path, commit: str, records: Mapping[str, tuple[str, str]]
) -> list[tuple[str, str]]:
    """The records among the last commits of `commit`'s history (the poller may skip some)."""
    recent = git(bare, "rev-list", "-40", commit).split()
    return [records[oid] for oid in recent if oid in records]


def git_contains(bare: Path, commit: str) -> bool:
    completed = subprocess.run(
        ["git", "merge-base", "--is-ancestor", commit, "main"],
        cwd=bare,
        env=git_environment(),
        capture_output=True,
        check=False,
    )
    return completed.returncode == 0


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storm", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="the person's pushes a second")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    with tempfile.TemporaryDirectory(prefix="storm-") as folder:
        try:
            result = measure(arguments.runs, arguments.rate, arguments.seed, Path(folder))
        except BenchmarkError as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
    summary = result.as_json()
    if arguments.format == "json":
        print(json.dumps(summary))
    else:
        print(
            f"{summary['runs']} runs while a person pushed {summary['person_pushes']} commits "
            f"({summary['person_rate_per_s']}/s); apply took {summary['apply_s']} s, "
            f"exit {summary['apply_exit']}\n"
            f"start to finish record on main: median {summary['latency_median_s']} s, "
            f"max {summary['latency_max_s']} s (goal < {LATENCY_GOAL} s): "
            f"{'PASS' if summary['passed'] else 'FAIL'}\n"
            f"plain git, fetch + signed commit + push until it lands, in the same storm: "
            f"median {summary['plain_git_latency_median_s']} s, "
            f"max {summary['plain_git_latency_max_s']} s "
            f"(tries: max {max(summary['plain_git_tries'])})\n"
            f"ours / plain git: median {summary['median_ratio']}x, max {summary['max_ratio']}x"
        )
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
