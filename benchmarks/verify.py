"""The history-authorisation benchmark: `reconciler verify` against `git log`, full and incremental.

Run by people and CI as `python -m benchmarks.verify [--dir DIR] [--commits N] [--format json]`.
It generates (with `benchmarks.history`), or reuses with `--dir`, a configuration
repository whose main holds 10,000 commits by 200 users over 1,000 plans, with
merges, signed and unsigned commits and 1% deliberately unauthorised ones, and
measures:

(a) a full `reconciler verify --repo DIR --state-dir <fresh> --format json`, the
    real CLI in a subprocess, from the trust anchor to the tip; its note gives the
    CPU of the walk's own process (which judges every landing in order, so bounds
    the wall time on any number of cores) and each run against (b) just before it;
(b) the reference `git log --first-parent -m --raw --no-renames <anchor>..main`
    over the same range, output to /dev/null (several runs, the median), each run
    just before one of (a), so the two see the same load on a shared machine;
(c) an incremental verify after one new signed commit, with (a)'s state
    directory (several runs, each after one more commit; main is put back
    afterwards). Where that time goes: (c') the same with `--from` the
    previous tip, so only the new landing is reported, and (c'') the
    command's start-up alone: the interpreter and the modules `verify`
    imports before it works (`STARTUP_IMPORTS`; `verify --help` no longer
    loads them), with its ratio to (c''') `python -c pass` in the same runs;
(d) the peak RSS of the reconciler's own process in a full verify with a fresh
    state, at four history lengths: a quarter, half, once and twice `--commits`
    (2,500 to 20,000 by default; the others generated in a temporary directory,
    or kept in `--memory-dir`), each against the shortest. The verify runs in
    a child interpreter that reports `getrusage(RUSAGE_SELF).ru_maxrss` as it
    exits: Git's processes and the walk's workers are not counted (`peak MiB`
    of (a) and (c) is that figure too).

A benchmark that verifies nothing proves nothing, so every verify run's JSON is
checked against the generator's manifest: the number of landings, the refused
landings (exactly those holding a deliberately unauthorised commit), the
commits the refusals blame, and the paths where main differs from the
effective state. Then the goals: full verify <= 4x git log, incremental
< 0.3 s, the reconciler's peak memory flat in history length (longest / shortest
<= 1.25). The exit
status is 1 when a check fails (a goal missed is reported, not an error).
`--profile` instead prints a cProfile of the full verify, in-process and in
one batch (no worker process), so it shows all the work. `--floor` instead
times the work no Python code of ours can avoid, each part alone: the walk's
`git log` and `cat-file` (CPU), the signature checks and libyaml's events
for every plan version, and the interpreter's start-up; what that costs on
the machine's cores, as a ratio to the reference `git log`'s CPU time (its wall
time, which load inflates, beside it). Then the floor of the code as it is: the
whole walk in one process with no worker, its CPU split into the read-ahead's
(which workers share) and the rest, judged and recorded in order, with git's
processes beside them; the wall time that needs at best is the larger of the
total over the cores and the part in order.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from benchmarks.common import BenchmarkError, Measurement, run_timed
from benchmarks.history import (
    HistoryError,
    HistoryManifest,
    HistorySettings,
    append_signed_commit,
    describe,
    generate_history,
    load_manifest,
)
from reconciler.adapters.clock import utc_now
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.statestore import StateStore
from reconciler.app.authorise import Authoriser

FULL_RATIO_GOAL: Final = 4.0  # full verify / git log, at most (issue 22, item 4)
INCREMENTAL_GOAL: Final = 0.3  # seconds, below
MEMORY_GOAL: Final = 1.25  # the reconciler's peak RSS, longest history / shortest, at most
MEMORY_LENGTHS: Final = (0.25, 0.5, 1.0, 2.0)  # the histories of (d), as shares of --commits
# What `reconciler verify` imports before it does any work: the CLI, the command, the
# application layer it calls (the command imports it in its body).
STARTUP_IMPORTS: Final = "import reconciler.cli.verify_commands, reconciler.app.api"
MEASUREMENT_NAMES: Final = {
    "a": "(a)",
    "b": "(b)",
    "c": "(c)",
    "c_new": "(c')",
    "c_startup": "(c'')",
    "c_python": "(c''')",
}

# Runs `argv` (JSON in argv[1]) with stdout to the file argv[2], from a fresh
# interpreter, so RUSAGE_CHILDREN holds that one command (and what it waited
# for) and nothing this benchmark ran before.
_MEASURING_CHILD: Final = """
import json, resource, subprocess, sys, time
argv = json.loads(sys.argv[1])
with open(sys.argv[2], "wb") as out:
    started = time.perf_counter()
    completed = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "seconds": seconds,
    "cpu": usage.ru_utime + usage.ru_stime,
    "maxrss": usage.ru_maxrss,
    "returncode": completed.returncode,
    "stderr": completed.stderr.decode("utf-8", "replace")[-4000:],
}))
"""

# `reconciler` run in this interpreter, which writes at exit (after click's exit) the peak
# RSS and the CPU time of its own process: RUSAGE_CHILDREN, or the script's process tree,
# would report the largest of its git processes and workers instead, and add their CPU.
# The walk's own process judges every landing in order, so its CPU bounds the wall time
# however many cores read ahead. `-c`, so the walk's workers (spawned, fresh interpreters)
# do not run it again.
_OWN_PEAK_PREFIX: Final = "reconciler own peak KiB: "
_RECONCILER_OWN_PEAK: Final = f"""
import atexit, resource, sys
sys.argv[0] = "reconciler"
def _own():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print("{_OWN_PEAK_PREFIX}%d %.3f" % (usage.ru_maxrss, usage.ru_utime + usage.ru_stime),
          file=sys.stderr)
atexit.register(_own)
from reconciler.cli import main
main()
"""


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    value: float | None
    bound: float
    direction: Literal["at most", "below"]
    unit: str  # "x" or "s"

    @property
    def status(self) -> str:
        if self.value is None:
            return "n/a"
        met = self.value <= self.bound if self.direction == "at most" else self.value < self.bound
        return "PASS" if met else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status}


@dataclass(slots=True)
class Check:
    """What one verify run reported against what the generator put in the history."""

    what: str
    landings: int
    expected_landings: int
    refused: int
    expected_refused: int
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


# -- the repositories -------------------------------------------------------------------------


@contextlib.contextmanager
def benchmark_repository(
    settings: HistorySettings, directory: Path | None
) -> Iterator[tuple[Path, HistoryManifest, str]]:
    """The repository to time, its manifest, and how it was obtained."""
    if directory is not None:
        manifest = load_manifest(directory)
        if manifest is not None:
            print(
                f"reusing {directory} as it is ({manifest.commits} commits, not --commits)",
                file=sys.stderr,
            )
            _put_main_back(directory, manifest)
            yield directory, manifest, "reused"
            return
        yield directory, _generate(settings, directory), "generated"
        return
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-history-") as scratch:
        root = Path(scratch) / "config"
        yield root, _generate(settings, root), "generated, temporary"


def _generate(
    settings: HistorySettings, directory: Path, *, replace: bool = False
) -> HistoryManifest:
    print(f"generating {settings.commits} commits in {directory} ...", file=sys.stderr)
    manifest = generate_history(settings, directory, replace=replace)
    print(describe(manifest, directory), file=sys.stderr)
    return manifest


def _put_main_back(directory: Path, manifest: HistoryManifest) -> None:
    """main at the generated tip again (an interrupted incremental run may have moved it)."""
    _git(directory, "update-ref", "refs/heads/main", manifest.tip)


def _git(directory: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", *args], cwd=directory, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise BenchmarkError(f"git {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout


# -- what is timed ----------------------------------------------------------------------------


def reconciler_launcher() -> list[str]:
    """The installed `reconciler` script next to this Python, else `python -m reconciler`."""
    script = Path(sys.executable).parent / "reconciler"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "reconciler"]


def verify_argv(root: Path, state_dir: Path) -> list[str]:
    """A full or incremental verify, reporting its own peak RSS (`_RECONCILER_OWN_PEAK`)."""
    return [
        sys.executable,
        "-c",
        _RECONCILER_OWN_PEAK,
        "verify",
        "--repo",
        str(root),
        "--state-dir",
        str(state_dir),
        "--format",
        "json",
    ]


def git_log_argv(root: Path, anchor: str) -> list[str]:
    return [
        "git",
        "-C",
        str(root),
        "log",
        "--first-parent",
        "-m",
        "--raw",
        "--no-renames",
        f"{anchor}..main",
    ]


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    cpu_seconds: float  # user + system, the command and every process it waited for
    peak_mib: float  # the command's own process where it says (verify), else its largest
    returncode: int
    stdout: bytes
    stderr: str
    own_cpu_seconds: float | None = None  # the command's own process, where it says (verify)


def run_measured(argv: Sequence[str]) -> Run:
    """Wall time, CPU time and peak RSS of `argv`, measured by a fresh child interpreter:
    the peak the command reports of its own process (`verify_argv`), else the largest
    process of its tree."""
    with tempfile.NamedTemporaryFile(prefix="reconciler-bench-out-") as out:
        completed = subprocess.run(
            [sys.executable, "-c", _MEASURING_CHILD, json.dumps(list(argv)), out.name],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise BenchmarkError(f"the measuring child failed: {completed.stderr.strip()}")
        report = json.loads(completed.stdout)
        stdout = Path(out.name).read_bytes()
    # ru_maxrss is KiB on Linux, bytes on macOS.
    divisor = 1024 * 1024 if sys.platform == "darwin" else 1024
    stderr, own, own_cpu = _own_peak(report["stderr"])
    return Run(
        report["seconds"],
        report["cpu"],
        (report["maxrss"] if own is None else own) / divisor,
        report["returncode"],
        stdout,
        stderr,
        own_cpu,
    )


def _own_peak(stderr: str) -> tuple[str, int | None, float | None]:
    """`stderr` without the line `_RECONCILER_OWN_PEAK` writes, and that line's figures:
    the peak RSS in KiB and the CPU seconds of the command's own process."""
    lines = stderr.splitlines(keepends=True)
    if lines and lines[-1].startswith(_OWN_PEAK_PREFIX):
        peak, cpu = lines[-1].removeprefix(_OWN_PEAK_PREFIX).split()
        return "".join(lines[:-1]), int(peak), float(cpu)
    return stderr, None, None


def verify_report(run: Run, what: str) -> dict[str, Any]:
    """The JSON a verify run printed; exit 0 (all authorised) and 1 (refusals) are answers."""
    if run.returncode not in (0, 1):
        raise BenchmarkError(f"{what} exited {run.returncode}: {run.stderr.strip()}")
    try:
        report: dict[str, Any] = json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(f"{what} printed no JSON ({exc}): {run.stderr.strip()}") from None
    return report


def check_report(
    report: dict[str, Any],
    manifest: HistoryManifest,
    what: str,
    *,
    appended: Sequence[str] = (),
    returncode: int | None = None,
) -> Check:
    """Compare a verify report with the manifest (plus `appended` authorised landings)."""
    landings = report["landings"]
    refused = {landing["commit"] for landing in landings if not landing["authorised"]}
    blamed = {
        (refusal["commit"], refusal["path"], refusal["field"])
        for landing in landings
        for refusal in landing["refusals"]
    }
    expected_blame = {(item.commit, item.path, item.field) for item in manifest.unauthorised}
    check = Check(
        what,
        len(landings),
        manifest.landings + len(appended),
        len(refused),
        len(manifest.refused_landings),
    )
    if check.landings != check.expected_landings:
        check.problems.append(
            f"{check.landings} landings reported, {check.expected_landings} expected"
        )
    if refused != manifest.refused_landings:
        missing = len(manifest.refused_landings - refused)
        extra = len(refused - manifest.refused_landings)
        check.problems.append(
            f"refused landings differ: {missing} unauthorised ones not refused, "
            f"{extra} authorised ones refused"
        )
    if blamed != expected_blame:
        check.problems.append(
            f"refusals blame {len(blamed)} (commit, path, field), "
            f"{len(expected_blame)} deliberately unauthorised edits expected, "
            f"{len(blamed & expected_blame)} in common"
        )
    if sorted(report["differs"]) != sorted(manifest.tainted_at_tip):
        check.problems.append(
            f"main differs from the effective state in {len(report['differs'])} paths, "
            f"{len(manifest.tainted_at_tip)} expected"
        )
    if appended:
        tail = [landing["commit"] for landing in landings[-len(appended) :]]
        if tail != list(appended):
            check.problems.append("the appended commits are not the last landings reported")
    if report["tip"] != (appended[-1] if appended else manifest.tip):
        check.problems.append(f"verified up to {report['tip'][:12]}, not main's tip")
    if returncode is not None and returncode != (1 if manifest.unauthorised else 0):
        check.problems.append(f"exit status {returncode}")
    return check


# -- the measurements -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryPoint:
    """(d): the reconciler's own peak in a full verify of one history length."""

    commits: int
    peak_mib: float
    seconds: float


@dataclass(slots=True)
class Results:
    facts: dict[str, Any]
    measurements: dict[str, Measurement]
    checks: list[Check]
    memory: list[MemoryPoint]  # (d), shortest history first

    def goals(self) -> list[Goal]:
        full = self.measurements.get("a")
        log = self.measurements.get("b")
        incremental = self.measurements.get("c")
        shortest, longest = (self.memory[0], self.memory[-1]) if self.memory else (None, None)
        return [
            Goal(
                "full verify / git log",
                full.median / log.median if full and log else None,
                FULL_RATIO_GOAL,
                "at most",
                "x",
            ),
            Goal(
                "incremental verify (1 new signed commit)",
                incremental.median if incremental else None,
                INCREMENTAL_GOAL,
                "below",
                "s",
            ),
            Goal(
                f"own peak RSS, {longest.commits if longest else '-'} / "
                f"{shortest.commits if shortest else '-'} commits",
                longest.peak_mib / shortest.peak_mib if longest and shortest else None,
                MEMORY_GOAL,
                "at most",
                "x",
            ),
        ]


def measure(
    root: Path,
    manifest: HistoryManifest,
    *,
    repeat_full: int,
    repeat_log: int,
    repeat_incremental: int,
    lengths: Sequence[tuple[Path, HistoryManifest] | None],
    scratch: Path,
) -> tuple[dict[str, Measurement], list[Check], list[MemoryPoint]]:
    """(a) to (c) on `root`; (d) on each of `lengths` (None: `root` itself, (a)'s first run)."""
    results = {
        "a": Measurement("a", "reconciler verify, full, anchor..tip (subprocess)"),
        "b": Measurement("b", "git log --first-parent -m --raw --no-renames"),
        "c": Measurement("c", "reconciler verify, incremental: 1 new signed commit"),
        "c_new": Measurement("c_new", "same, --from the previous tip: new landing only"),
        "c_startup": Measurement("c_startup", "start-up: interpreter and verify's imports"),
        "c_python": Measurement("c_python", "python -c pass, the reference of (c'')"),
    }
    checks: list[Check] = []
    log_argv = git_log_argv(root, manifest.anchor)
    run_timed(log_argv, "git log")  # warm the page cache for everyone
    kept_state: Path | None = None
    own_cpu: list[float] = []
    against_log: list[float] = []
    # Interleaved, a git log before each full verify: on a shared machine the load drifts,
    # and two series timed one after the other would compare two different machines.
    for attempt in range(max(repeat_log, repeat_full)):
        if attempt < repeat_log:
            run = run_measured(log_argv)
            if run.returncode != 0:
                raise BenchmarkError(f"git log exited {run.returncode}: {run.stderr.strip()}")
            results["b"].seconds.append(run.seconds)
            results["b"].cpu_seconds.append(run.cpu_seconds)
        if attempt >= repeat_full:
            continue
        state = scratch / f"state-full-{attempt}"
        run = run_measured(verify_argv(root, state))
        report = verify_report(run, "the full verify")
        results["a"].seconds.append(run.seconds)
        results["a"].cpu_seconds.append(run.cpu_seconds)
        results["a"].peak_mib.append(run.peak_mib)
        if run.own_cpu_seconds is not None:
            own_cpu.append(run.own_cpu_seconds)
        if attempt < repeat_log:
            against_log.append(run.seconds / results["b"].seconds[-1])
        if attempt == 0:
            checks.append(check_report(report, manifest, "full verify", returncode=run.returncode))
            kept_state = state
        else:
            shutil.rmtree(state)
    assert kept_state is not None
    results["a"].note = _full_note(own_cpu, against_log)

    appended: list[str] = []
    try:
        for attempt in range(1, repeat_incremental + 1):
            appended.append(append_signed_commit(root, manifest))
            run = run_measured(verify_argv(root, kept_state))
            report = verify_report(run, "the incremental verify")
            results["c"].seconds.append(run.seconds)
            results["c"].peak_mib.append(run.peak_mib)
            checks.append(
                check_report(
                    report,
                    manifest,
                    f"incremental verify #{attempt}",
                    appended=appended,
                    returncode=run.returncode,
                )
            )
            # Where the time goes: the same with a report of the new landing only,
            # and the command's start-up alone.
            previous = appended[-1]
            appended.append(append_signed_commit(root, manifest))
            run = run_measured([*verify_argv(root, kept_state), "--from", previous])
            report = verify_report(run, "the incremental verify --from")
            results["c_new"].seconds.append(run.seconds)
            new_landings = [landing["commit"] for landing in report["landings"]]
            if new_landings != appended[-1:] or not report["landings"][0]["authorised"]:
                raise BenchmarkError(
                    f"verify --from {previous[:12]} reported {len(new_landings)} landings, "
                    "not the one authorised new landing"
                )
            startup = [sys.executable, "-c", STARTUP_IMPORTS]
            results["c_startup"].seconds.append(run_timed(startup, "verify's imports"))
            python = [sys.executable, "-c", "pass"]
            results["c_python"].seconds.append(run_timed(python, "python -c pass"))
    finally:
        _put_main_back(root, manifest)
    if appended:
        results[
            "c"
        ].note = f"each run after one more commit; the last reported {checks[-1].landings} landings"
        ratios = zip(results["c_startup"].seconds, results["c_python"].seconds, strict=True)
        median_ratio = statistics.median(ours / alone for ours, alone in ratios)
        results["c_startup"].note = f"{median_ratio:.1f}x python -c pass, run by run"

    memory: list[MemoryPoint] = []
    for length in lengths:
        if length is None:
            full = results["a"]
            memory.append(MemoryPoint(manifest.commits, full.peak_mib[0], full.seconds[0]))
            continue
        other_root, other = length
        run = run_measured(verify_argv(other_root, scratch / f"state-{other.commits}"))
        report = verify_report(run, f"the full verify of {other.commits} commits")
        checks.append(
            check_report(
                report, other, f"full verify, {other.commits} commits", returncode=run.returncode
            )
        )
        memory.append(MemoryPoint(other.commits, run.peak_mib, run.seconds))
    return results, checks, memory


def _full_note(own_cpu: list[float], ratios: list[float]) -> str:
    """(a)'s note: the CPU of the walk's own process (what bounds the wall time on any
    number of cores), and each run against the git log just before it."""
    parts = []
    if own_cpu:
        parts.append(f"the walk's own process {statistics.median(own_cpu):.2f} s CPU")
    if ratios:
        parts.append(f"{statistics.median(ratios):.2f}x the git log run just before, run by run")
    return "; ".join(parts) + " (medians)" if parts else ""


def memory_histories(
    manifest: HistoryManifest, directory: Path
) -> list[tuple[Path, HistoryManifest] | None]:
    """The histories of (d), shortest first, generated in `directory` (or reused from
    it); None stands for the timed history itself."""
    histories: list[tuple[Path, HistoryManifest] | None] = []
    for share in MEMORY_LENGTHS:
        commits = max(2, round(manifest.commits * share))
        if commits == manifest.commits:
            histories.append(None)
            continue
        root = directory / str(commits)
        settings = dataclasses.replace(manifest.settings, commits=commits)
        kept = load_manifest(root)
        if kept is None or kept.settings != settings:
            kept = _generate(settings, root, replace=kept is not None)
        _put_main_back(root, kept)
        histories.append((root, kept))
    return histories


# -- reporting --------------------------------------------------------------------------------


def render_text(results: Results) -> str:
    facts = results.facts
    lines = [
        f"repository: {facts['path']} ({facts['origin']}): {facts['commits']} commits, "
        f"{facts['landings']} landings after the anchor ({facts['merges']} merges), "
        f"{facts['signed']} signed / {facts['unsigned']} unsigned, {facts['users']} users, "
        f"{facts['plans']} plans, {facts['policy_changes']} policy changes; "
        f"{facts['unauthorised']} deliberately unauthorised commits",
        "",
        "checks (verify's JSON against the generator's manifest):",
    ]
    for check in results.checks:
        lines.append(
            f"  {check.what:<34} landings {check.landings}/{check.expected_landings}, "
            f"refused {check.refused}/{check.expected_refused} deliberately unauthorised: "
            f"{'PASS' if check.passed else 'FAIL'}"
        )
        lines += [f"      {problem}" for problem in check.problems]
    lines += [
        "",
        f"{'measurement':<58} {'median s':>9} {'min s':>8} {'runs':>5} {'peak MiB':>9} "
        f"{'cpu s':>6}",
    ]
    for key, name in MEASUREMENT_NAMES.items():
        measurement = results.measurements.get(key)
        if measurement is None:
            continue
        peak = f"{max(measurement.peak_mib):>9.1f}" if measurement.peak_mib else f"{'':>9}"
        cpu = measurement.cpu_seconds
        used = f" {statistics.median(cpu):>6.2f}" if cpu else ""
        lines.append(
            f"{name + ' ' + measurement.label:<58} {measurement.median:>9.3f} "
            f"{measurement.minimum:>8.3f} {len(measurement.seconds):>5} {peak}{used}".rstrip()
        )
        if measurement.note:
            lines.append(f"      {measurement.note}")
    if results.memory:
        lines.append("(d) the reconciler's own peak RSS, full verify, fresh state:")
        shortest = results.memory[0]
        lines += [
            f"      {point.commits:>7,} commits {point.peak_mib:>7.1f} MiB "
            f"{point.peak_mib / shortest.peak_mib:>6.2f}x  ({point.seconds:.1f} s)"
            for point in results.memory
        ]
    lines += ["", f"{'goal':<46} {'value':>8}  {'target':<9} result"]
    for goal in results.goals():
        if goal.value is None:
            shown = "n/a"
        elif goal.unit == "s":
            shown = f"{goal.value:.3f} s"
        else:
            shown = f"{goal.value:.2f}x"
        bound = f"{'<=' if goal.direction == 'at most' else '<'} {goal.bound:g}{goal.unit}"
        lines.append(f"{goal.name:<46} {shown:>8}  {bound:<9} {goal.status}")
    return "\n".join(lines)


def render_json(results: Results) -> str:
    return json.dumps(
        {
            "repository": results.facts,
            "checks": [check.as_json() for check in results.checks],
            "measurements": {key: value.as_json() for key, value in results.measurements.items()},
            "memory": [dataclasses.asdict(point) for point in results.memory],
            "goals": [goal.as_json() for goal in results.goals()],
            "platform": {
                "python": sys.version.split()[0],
                "implementation": platform.python_implementation(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "git": _git(Path.cwd(), "--version").strip(),
            },
        },
        indent=2,
    )


def repository_facts(root: Path, manifest: HistoryManifest, origin: str) -> dict[str, Any]:
    return {
        "path": str(root),
        "origin": origin,
        "commits": manifest.commits,
        "landings": manifest.landings,
        "merges": manifest.merges,
        "signed": manifest.signed,
        "openpgp_signed": manifest.openpgp_signed,
        "unsigned": manifest.unsigned,
        "users": manifest.settings.users,
        "plans": manifest.settings.plans,
        "environments": manifest.settings.environments,
        "policy_changes": manifest.policy_changes,
        "unauthorised": len(manifest.unauthorised),
        "refused_landings": len(manifest.refused_landings),
        "seed": manifest.settings.seed,
        "anchor": manifest.anchor,
        "tip": manifest.tip,
        "generation_seconds": manifest.seconds,
    }


def profile_verify(root: Path, manifest: HistoryManifest, top: int) -> str:
    """cProfile of one full verify in-process (a fresh state directory), top functions both ways.

    In one batch, so no worker process is started: the profile shows all the
    work, which the real command shares between itself and its worker.
    """
    with (
        tempfile.TemporaryDirectory(prefix="reconciler-bench-state-") as state,
        GitRepo(root) as repo,
    ):
        store = StateStore(Path(state), "main")
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        authoriser = Authoriser(repo, store, now=utc_now(), batch=manifest.commits + 1)
        result = authoriser.run(repo.resolve("main"))
        profiler.disable()
        elapsed = time.perf_counter() - started
        store.close()
    out = io.StringIO()
    out.write(f"full verify in-process: {len(result.judged)} landings in {elapsed:.2f} s\n")
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def library_floor(root: Path, manifest: HistoryManifest) -> str:
    """The CPU of the work any verify in this design does, each part alone, and the wall
    time it needs at best on this machine's cores against the reference `git log`."""
    import yaml  # noqa: PLC0415
    from yaml._yaml import CParser  # noqa: PLC0415 - the C parser the loader uses

    from reconciler.adapters.gitobjects import NULL_OID  # noqa: PLC0415
    from reconciler.adapters.readahead import STRUCTURED  # noqa: PLC0415
    from reconciler.core.layout import place  # noqa: PLC0415
    from reconciler.core.openpgp import Keyring  # noqa: PLC0415
    from reconciler.core.signatures import check_commit_signature  # noqa: PLC0415

    with GitRepo(root) as repo:
        tip = repo.resolve("main")
        entries = list(repo.history(tip, manifest.anchor))
        commits = [entry.id for entry in entries]
        versions = sorted(
            {
                blob
                for entry in entries
                for change in entry.changes
                if place(change.path).kind in STRUCTURED
                for blob in (change.old_blob, change.new_blob)
                if blob != NULL_OID
            }
        )
        infos = repo.commits(commits)
        contents, _ = repo.blobs(versions, 1 << 20)
        # The OpenPGP certificates main's teams.yaml lists (--openpgp): what the walk checks with.
        teams = yaml.load(repo.read_blob(repo.blob_at(tip, "teams.yaml") or ""), yaml.CSafeLoader)
    keyring = Keyring()
    keyring.add(key for user in teams["users"].values() for key in user.get("keys", ()))
    parts: list[tuple[str, float]] = []
    log_args = ["--topo-order", "--reverse", "-r", "--raw", "-z", "--no-renames", "--no-abbrev"]
    log_args += ["--diff-merges=first-parent", "--format=%x1e%H %P", tip, f"^{manifest.anchor}"]
    parts.append(
        (
            "git log of every commit, --raw -z",
            _child_cpu(["git", "-C", str(root), "log", *log_args]),
        )
    )
    objects = "".join(f"{name}\n" for name in [*commits, *versions]).encode()
    parts.append(
        (
            f"git cat-file of {len(commits):,} commits and {len(versions):,} versions",
            _child_cpu(["git", "-C", str(root), "cat-file", "--batch"], objects),
        )
    )
    started = time.process_time()
    for info in infos.values():
        check_commit_signature(info.raw, keyring=keyring)
    parts.append((f"signature checks of {len(infos):,} commits", time.process_time() - started))
    started = time.process_time()
    for raw in contents.values():
        parser = CParser(raw)
        while parser.get_event() is not None:
            pass
        parser.dispose()
    parts.append((f"libyaml events of {len(contents):,} versions", time.process_time() - started))
    parts.append(("interpreter and imports", _child_cpu([sys.executable, "-c", STARTUP_IMPORTS])))
    # The reference in CPU seconds as well as wall: the parts above are CPU, which a loaded
    # machine barely moves, while the reference's wall time grows with the load and would
    # make the floor look lower than it is. git log is one busy process: on a quiet
    # machine its wall and CPU times agree.
    log_argv = git_log_argv(root, manifest.anchor)
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(5):
        walls.append(run_timed(log_argv, "git log"))
        cpus.append(_child_cpu(log_argv))
    reference, reference_cpu = statistics.median(walls), statistics.median(cpus)
    cores = _usable_cores()
    total = sum(seconds for _, seconds in parts)
    lines = [f"{'work no verify avoids (CPU, each alone)':<58}{'cpu s':>8}"]
    lines += [f"{what:<58}{seconds:>8.3f}" for what, seconds in parts]
    lines += [
        f"{'total':<58}{total:>8.3f}",
        "",
        f"reference git log, median of 5: {reference:.3f} s wall, {reference_cpu:.3f} s CPU",
        f"at best on {cores} core(s): {total / cores:.3f} s = {total / cores / reference_cpu:.2f}x "
        "the reference's CPU time, before any judging",
        f"  ({total / cores / reference:.2f}x its wall time, which the machine's load inflates)",
    ]
    return "\n".join(lines)


def design_floor(root: Path, manifest: HistoryManifest) -> str:
    """The CPU of the whole walk as it is written, in one process with no worker, split into
    what the read-ahead does (which workers share) and what the walk does in order; and the
    wall time that work needs at best on this machine's cores against the reference.

    The library floor above leaves out our own Python; this one counts it, so it says what
    sharing the same work better could reach, and what only doing less work could.
    """
    from reconciler.adapters.readahead import ParsedVersions, ReadAhead  # noqa: PLC0415

    def walked(work: Callable[[GitRepo, StateStore], object]) -> tuple[float, float]:
        """`work`'s CPU in this process and in the git processes it started (all exited)."""
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with (
            tempfile.TemporaryDirectory(prefix="reconciler-bench-state-") as state,
            GitRepo(root) as repo,
        ):
            store = StateStore(Path(state), "main")
            started = time.process_time()
            work(repo, store)
            own = time.process_time() - started
            store.close()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        git = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
        return own, git

    def read_ahead(repo: GitRepo, store: StateStore) -> None:
        reader = ReadAhead(repo, store, ParsedVersions(), workers=0)
        for _ in reader.batches(repo.history(repo.resolve("main"), manifest.anchor)):
            pass

    def walk(repo: GitRepo, store: StateStore) -> None:
        Authoriser(repo, store, now=utc_now(), workers=0).run(repo.resolve("main"))

    reading, _ = walked(read_ahead)
    whole, git = walked(walk)
    in_order = max(whole - reading, 0.0)
    log_argv = git_log_argv(root, manifest.anchor)
    reference_cpu = statistics.median(_child_cpu(log_argv) for _ in range(5))
    cores = _usable_cores()
    total = whole + git
    best = max(total / cores, in_order)
    return "\n".join(
        [
            f"{'the walk in one process, no worker (CPU)':<58}{'cpu s':>8}",
            f"{'read ahead: log, commits, signatures, trees, versions':<58}{reading:>8.3f}",
            f"{'judged and recorded in order (the rest)':<58}{in_order:>8.3f}",
            f"{'git processes':<58}{git:>8.3f}",
            f"{'total':<58}{total:>8.3f}",
            "",
            f"reference git log's CPU, median of 5: {reference_cpu:.3f} s",
            f"at best on {cores} core(s), max(total / cores, in order): {best:.3f} s = "
            f"{best / reference_cpu:.2f}x the reference's CPU time, this code shared perfectly",
        ]
    )


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _child_cpu(argv: Sequence[str], stdin: bytes | None = None) -> float:
    """User plus system seconds of `argv`, output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(argv, input=stdin, stdout=subprocess.DEVNULL, check=False)
    if completed.returncode != 0:
        raise BenchmarkError(f"{argv[0]} exited {completed.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# -- command line -----------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = HistorySettings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.verify",
        description="Time reconciler verify over a generated history against git log.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="repository to time: reused if it holds a generated history, else generated "
        "there (default: a temporary directory)",
    )
    parser.add_argument("--commits", type=int, default=defaults.commits)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--plans", type=int, default=defaults.plans)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--openpgp",
        type=float,
        default=defaults.openpgp,
        metavar="SHARE",
        help="share of the users with a key who sign with OpenPGP instead of SSH "
        "(0.13: about 10%% of the commits)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of the full verify (a)")
    parser.add_argument("--repeat-log", type=int, default=5, help="runs of git log (b)")
    parser.add_argument(
        "--repeat-incremental", type=int, default=7, help="runs of the incremental verify (c)"
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the other histories of the memory check (d)"
    )
    parser.add_argument(
        "--memory-dir",
        type=Path,
        default=None,
        help="keep the other histories of (d) in DIR/<commits>, reused when there "
        "(default: a temporary directory)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=30,
        default=None,
        metavar="TOP",
        help="print a cProfile of the full verify (TOP functions) instead of timing",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="time only the work no verify avoids (git, signatures, libyaml, start-up)",
    )
    arguments = parser.parse_args(argv)
    if min(arguments.repeat, arguments.repeat_log, arguments.repeat_incremental) < 1:
        parser.error("repetitions must be at least 1")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = HistorySettings(
        commits=arguments.commits,
        users=arguments.users,
        plans=arguments.plans,
        seed=arguments.seed,
        openpgp=arguments.openpgp,
    )
    try:
        with (
            benchmark_repository(settings, arguments.dir) as (root, manifest, origin),
            tempfile.TemporaryDirectory(prefix="reconciler-bench-verify-") as scratch,
        ):
            if arguments.profile is not None:
                print(profile_verify(root, manifest, arguments.profile))
                return 0
            if arguments.floor:
                print(library_floor(root, manifest))
                print()
                print(design_floor(root, manifest))
                return 0
            lengths = (
                []
                if arguments.no_memory
                else memory_histories(manifest, arguments.memory_dir or Path(scratch))
            )
            measurements, checks, memory = measure(
                root,
                manifest,
                repeat_full=arguments.repeat,
                repeat_log=arguments.repeat_log,
                repeat_incremental=arguments.repeat_incremental,
                lengths=lengths,
                scratch=Path(scratch),
            )
            results = Results(
                repository_facts(root, manifest, origin), measurements, checks, memory
            )
    except (BenchmarkError, HistoryError, ValueError, FileExistsError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(render_json(results) if arguments.format == "json" else render_text(results))
    return 0 if all(check.passed for check in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
