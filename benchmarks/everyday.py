"""The everyday-commands benchmark: what people type every day, against `git log --oneline`.

Run by people and CI as
`python -m benchmarks.everyday [--dir DIR] [--state-dir DIR] [--rounds 7] [--before DIR]
[--format json]`.
It takes the history-authorisation benchmark's repository (`benchmarks.verify`:
10,000 commits by 200 users over 1,000 plans, generated, or reused with `--dir`)
with a state that holds its tip (`--state-dir`, else a fresh one that an
uncounted first `verify` walks the whole history into, a minute at 10,000
commits), and times, from the repository, each command as a whole process,
wall clock and CPU (user plus system, the command and every process it waited
for): `plan`, `status`, `history`, `access` (the first user teams.yaml lists)
and `verify` with nothing new since the last run, each answering from the
state, with the reference `git log --oneline` in the same rounds. With
`--before DIR` (another checkout of the reconciler, such as `git worktree add
DIR REV`), each of them also runs from that code in the same rounds, as
`python -m reconciler` with DIR first on `PYTHONPATH`, labelled "(before)":
a change's gain, measured side by side, each code on its own copy of the
state (the older code must read the same state format).

Each round runs every command once, in turn, after one round that is not
counted; medians of `--rounds`. A ratio is the median over the rounds of the
command's CPU time over the reference's in the same round, so it holds when a
shared machine's speed drifts. The goal (issue 22): every command at most 2x
`git log --oneline`. A command that exits other than its answer (0; `verify`
1 too, for the history's deliberately unauthorised landings) voids the run
(exit 1). Apart from `benchmarks.startup`, which times the same commands on a
repository of one commit: here the history is long and only the state's size
counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from benchmarks.common import BenchmarkError, Timings, run_counted
from benchmarks.history import HistoryError, HistorySettings
from benchmarks.startup import environment
from benchmarks.verify import benchmark_repository, reconciler_launcher

GOAL: Final = 2.0  # the command's CPU time over `git log --oneline`'s, median: at most
REFERENCE: Final = "git log --oneline"


@dataclass(frozen=True, slots=True)
class Command:
    label: str
    argv: tuple[str, ...]
    answers: tuple[int, ...] = (0,)  # the exit codes that are answers, not failures
    code: Path | None = None  # another checkout of the reconciler to run it from (`--before`)


def first_user(repo: Path) -> str:
    """The first user teams.yaml lists, for `access`."""
    teams = yaml.safe_load((repo / "teams.yaml").read_text(encoding="utf-8"))
    users = teams.get("users") if isinstance(teams, dict) else None
    if not isinstance(users, dict) or not users:
        raise BenchmarkError(f"{repo / 'teams.yaml'} lists no user")
    return str(next(iter(users)))


def commands(repo: Path, state_dir: Path, before: tuple[Path, Path] | None = None) -> list[Command]:
    """The reference and our commands; with `before` (a checkout and a state of its own),
    each of ours from that code too, just before it."""
    user = first_user(repo)
    # The generated history holds deliberately unauthorised landings: exit 1 is its answer.
    ours = [
        ("plan", ("plan",), (0,)),
        ("status", ("status",), (0,)),
        ("history", ("history",), (0,)),
        ("access USER", ("access", user), (0,)),
        ("verify (nothing new)", ("verify",), (0, 1)),
    ]
    listed = [Command(REFERENCE, ("git", "-C", str(repo), "log", "--oneline"))]
    for label, argv, answers in ours:
        if before is not None:
            code, state = before
            old = (sys.executable, "-m", "reconciler", *argv, *_at(repo, state))
            listed.append(Command(f"reconciler {label} (before)", old, answers, code))
        at = _at(repo, state_dir)
        listed.append(Command(f"reconciler {label}", (*reconciler_launcher(), *argv, *at), answers))
    return listed


def _at(repo: Path, state_dir: Path) -> tuple[str, ...]:
    return ("--repo", str(repo), "--state-dir", str(state_dir))


def measure(
    rounds: int, repo: Path, state_dir: Path, before: Path | None = None
) -> list[Timings[Command]]:
    env = environment()
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-everyday-before-") as scratch:
        # The code before gets a copy of the state: each code keeps answers in its state
        # (the last decisions), and two codes sharing one would make each other's anew.
        pair = None
        if before is not None:
            pair = (before, Path(scratch) / "state")
            if state_dir.exists():
                shutil.copytree(state_dir, pair[1])
        return _measure(rounds, repo, commands(repo, state_dir, pair), env)


def _measure(
    rounds: int, repo: Path, listed: list[Command], env: dict[str, str]
) -> list[Timings[Command]]:
    timings = [Timings(command) for command in listed]
    for round_number in range(rounds + 1):
        for timing in timings:
            command = timing.command
            run = run_counted(
                command.argv,
                command.label,
                cwd=repo,
                env=env if command.code is None else {**env, "PYTHONPATH": str(command.code)},
                answers=command.answers,
            )
            if round_number > 0:  # the first round warms caches, and gives a fresh state its walk
                timing.add(*run)
    return timings


def ratio(timing: Timings[Command], reference: Timings[Command]) -> float:
    """The median over the rounds of this command's CPU time over the reference's."""
    return statistics.median(
        ours / theirs
        for ours, theirs in zip(timing.cpu_seconds, reference.cpu_seconds, strict=True)
    )


def status(timing: Timings[Command], reference: Timings[Command]) -> str | None:
    if timing is reference:
        return None
    return "PASS" if ratio(timing, reference) <= GOAL else "MISS"


def render_text(timings: Sequence[Timings[Command]], facts: str) -> str:
    reference = timings[0]
    rounds = len(reference.seconds)
    load = ", ".join(f"{figure:.1f}" for figure in os.getloadavg())
    lines = [
        f"everyday commands on {facts}: medians of {rounds} rounds, each running every "
        "command once in turn; ratio: median of the round-by-round CPU ratios",
        f"{os.cpu_count()} cores, load average after the run (1, 5, 15 min) {load}",
        "",
        f"{'command':<41} {'median s':>9} {'min s':>7} {'cpu s':>6} "
        f"{'/ ' + REFERENCE:>20}  cpu <= {GOAL:g}x",
    ]
    for timing in timings:
        lines.append(
            f"{timing.command.label:<41} {timing.median:>9.3f} {min(timing.seconds):>7.3f} "
            f"{timing.cpu_median:>6.3f} {ratio(timing, reference):>19.2f}x"
            f"  {status(timing, reference) or ''}".rstrip()
        )
    return "\n".join(lines)


def render_json(timings: Sequence[Timings[Command]], facts: str) -> str:
    reference = timings[0]
    return json.dumps(
        {
            "repository": facts,
            "goal_ratio": GOAL,
            "reference": REFERENCE,
            "commands": [
                {
                    "label": timing.command.label,
                    "argv": list(timing.command.argv),
                    "median_seconds": timing.median,
                    "min_seconds": min(timing.seconds),
                    "cpu_median_seconds": timing.cpu_median,
                    "seconds": timing.seconds,
                    "cpu_seconds": timing.cpu_seconds,
                    "exit_codes": timing.exit_codes,
                    "ratio": ratio(timing, reference),
                    "status": status(timing, reference),
                }
                for timing in timings
            ],
            "platform": {
                "python": sys.version.split()[0],
                "implementation": platform.python_implementation(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
            },
        },
        indent=2,
    )


@contextmanager
def state_directory(given: Path | None) -> Iterator[Path]:
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-everyday-state-") as scratch:
        yield Path(scratch)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.everyday",
        description="Time plan, status, history, access and verify against git log --oneline.",
    )
    parser.add_argument(
        "--dir", type=Path, help="the repository: reused if it holds a generated history"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="the state to answer from (default: a fresh one, walked in the first round)",
    )
    parser.add_argument("--commits", type=int, default=10_000, help="when generating")
    parser.add_argument("--users", type=int, default=200, help="when generating")
    parser.add_argument("--plans", type=int, default=1_000, help="when generating")
    parser.add_argument(
        "--unauthorised", type=float, default=0.01, help="when generating (a share)"
    )
    parser.add_argument("--seed", type=int, default=HistorySettings().seed, help="when generating")
    parser.add_argument("--rounds", type=int, default=7, help="counted rounds (default 7)")
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout of the reconciler: its commands too, in the same rounds",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    arguments = parser.parse_args(argv)
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    if arguments.before is not None and not (arguments.before / "reconciler").is_dir():
        parser.error(f"--before {arguments.before} is no checkout of the reconciler")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = HistorySettings(
        commits=arguments.commits,
        users=arguments.users,
        plans=arguments.plans,
        unauthorised=arguments.unauthorised,
        seed=arguments.seed,
    )
    try:
        settings.check()
    except ValueError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    try:
        with (
            benchmark_repository(settings, arguments.dir) as (repo, manifest, origin),
            state_directory(arguments.state_dir) as state_dir,
        ):
            timings = measure(arguments.rounds, repo, state_dir, arguments.before)
            facts = f"{manifest.commits} commits, {manifest.landings} landings ({origin})"
    except (BenchmarkError, HistoryError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    render = render_json if arguments.format == "json" else render_text
    print(render(timings, facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
