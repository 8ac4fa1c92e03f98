"""The start-up benchmark: how long `reconciler` takes to answer, against doing nothing.

Run by people and CI as `python -m benchmarks.startup [--rounds 9] [--format json]`.
It makes a small configuration repository with `reconciler init` (a key made
with ssh-keygen, one commit, nothing to run) in a temporary folder and times,
from that repository, each command as a whole process, wall clock and CPU (user
plus system, the command and every process it waited for):

- the references: `python -c pass`, the interpreter alone, and
  `check-jsonschema --version`, another click tool's smallest answer;
- the floor: a click command that does nothing, asked for its `--help`
  (`BARE_CLICK`), what any click command's help pays;
- `reconciler --help` (which reads every command's definition),
  `reconciler verify --help`, and the cheap real commands a person or a
  pre-commit hook types: `verify` with nothing new since the last run,
  `plan` with no plans, `validate` of the fresh repository.

Each round runs every command once, in turn, after one round that is not
counted (it also gives `verify` its state); medians of `--rounds`. A ratio is
the median over the rounds of the command's time over the reference's time
in the same round, so it holds when a shared machine's speed drifts. Python's
bytecode cache is left on (PYTHONDONTWRITEBYTECODE is dropped), as an
installed package has it. The goal: every command under 0.12 s, judged on
the median CPU time: on a shared machine the wall time adds the time spent
waiting for a core (the load average is printed), and on a quiet one the two
agree. A command that exits non-zero voids the run (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from benchmarks.common import BenchmarkError, Timings, run_counted
from benchmarks.verify import reconciler_launcher

GOAL: Final = 0.12  # seconds, CPU (user + system), median: below
REFERENCES: Final = ("python -c pass", "check-jsonschema --version")
# What any click command's --help costs: click, and what its help formatter imports.
BARE_CLICK: Final = "import click; click.command()(lambda: None)(['--help'])"


@dataclass(frozen=True, slots=True)
class Command:
    label: str
    argv: tuple[str, ...]
    goal: bool  # held to GOAL: ours, not a reference or the floor


def goal_status(timing: Timings[Command]) -> str:
    """PASS or MISS for a command held to `GOAL`; nothing for a reference or the floor."""
    if not timing.command.goal:
        return ""
    return "PASS" if timing.cpu_median < GOAL else "MISS"


def check_jsonschema() -> str | None:
    """check-jsonschema next to this Python (the test and bench extras install it), else on PATH."""
    beside = Path(sys.executable).parent / "check-jsonschema"
    return str(beside) if beside.is_file() else shutil.which("check-jsonschema")


def commands(repo: Path) -> list[Command]:
    reconciler = tuple(reconciler_launcher())
    python = sys.executable
    found = [Command("python -c pass", (python, "-c", "pass"), goal=False)]
    checker = check_jsonschema()
    if checker is not None:
        found.append(Command("check-jsonschema --version", (checker, "--version"), goal=False))
    return [
        *found,
        Command("a bare click command's --help (floor)", (python, "-c", BARE_CLICK), goal=False),
        Command("reconciler --help", (*reconciler, "--help"), goal=True),
        Command("reconciler verify --help", (*reconciler, "verify", "--help"), goal=True),
        Command(
            "reconciler verify (nothing new)", (*reconciler, "verify", "--repo", str(repo)), True
        ),
        Command("reconciler plan (no plans)", (*reconciler, "plan", "--repo", str(repo)), True),
        Command(
            "reconciler validate (8 files)", (*reconciler, "validate", "--repo", str(repo)), True
        ),
    ]


def environment() -> dict[str, str]:
    """This environment, with Python's bytecode cache on, as an installed package has it."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def make_repository(scratch: Path, env: dict[str, str]) -> Path:
    """A configuration repository as `reconciler init` leaves it: one commit, no plans."""
    key = scratch / "admin-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    repo = scratch / "config"
    init = [*reconciler_launcher(), "init", str(repo), "--name", "Ada Admin"]
    init += ["--email", "ada@example.com", "--key", f"{key}.pub"]
    completed = subprocess.run(init, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise BenchmarkError(f"reconciler init exited {completed.returncode}: {completed.stderr}")
    return repo


def measure(rounds: int, scratch: Path) -> list[Timings[Command]]:
    env = environment()
    repo = make_repository(scratch, env)
    timings = [Timings(command) for command in commands(repo)]
    for round_number in range(rounds + 1):
        for timing in timings:
            run = run_counted(timing.command.argv, timing.command.label, cwd=repo, env=env)
            if round_number > 0:  # the first round warms caches and gives verify its state
                timing.add(*run)
    return timings


def ratio(timing: Timings[Command], reference: Timings[Command]) -> float:
    """The median over the rounds of this command's time over the reference's, round by round."""
    return statistics.median(
        ours / theirs for ours, theirs in zip(timing.seconds, reference.seconds, strict=True)
    )


def references(timings: Sequence[Timings[Command]]) -> list[Timings[Command]]:
    return [timing for timing in timings if timing.command.label in REFERENCES]


def render_text(timings: Sequence[Timings[Command]]) -> str:
    against = references(timings)
    rounds = len(timings[0].seconds)
    load = ", ".join(f"{figure:.1f}" for figure in os.getloadavg())
    lines = [
        f"start-up: medians of {rounds} rounds, each running every command once in turn; "
        "ratios: median of the round-by-round ratios",
        f"{os.cpu_count()} cores, load average after the run (1, 5, 15 min) {load}",
        "",
        f"{'command':<36} {'median s':>9} {'min s':>7} {'cpu s':>6}"
        + "".join(f" {'/ ' + reference.command.label:>30}" for reference in against)
        + f"  {'cpu < ' + format(GOAL, 'g') + ' s'}",
    ]
    for timing in timings:
        lines.append(
            f"{timing.command.label:<36} {timing.median:>9.3f} {min(timing.seconds):>7.3f} "
            f"{timing.cpu_median:>6.3f}"
            + "".join(f" {ratio(timing, reference):>29.2f}x" for reference in against)
            + f"  {goal_status(timing)}".rstrip()
        )
    return "\n".join(lines)


def render_json(timings: Sequence[Timings[Command]]) -> str:
    against = references(timings)
    return json.dumps(
        {
            "goal_seconds": GOAL,
            "commands": [
                {
                    "label": timing.command.label,
                    "argv": list(timing.command.argv),
                    "median_seconds": timing.median,
                    "min_seconds": min(timing.seconds),
                    "seconds": timing.seconds,
                    "cpu_seconds": timing.cpu_seconds,
                    "ratios": {ref.command.label: ratio(timing, ref) for ref in against},
                    "status": goal_status(timing) or None,
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


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.startup",
        description="Time reconciler's start-up against python -c pass and check-jsonschema.",
    )
    parser.add_argument("--rounds", type=int, default=9, help="counted rounds (default 9)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    arguments = parser.parse_args(argv)
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="reconciler-bench-startup-") as scratch:
            timings = measure(arguments.rounds, Path(scratch))
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(render_json(timings) if arguments.format == "json" else render_text(timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
