"""The validation benchmark: `reconciler validate` against check-jsonschema and a bare parse.

Run by people and CI as `python -m benchmarks.validate [--dir DIR] [--format json]`.
It generates (with `benchmarks.generate`), or reuses with `--dir`, a
configuration repository of 2,000 plans, 20 environments and 1,000 users, and
times, each several times, reporting the median:

(a)  `reconciler validate --repo DIR`, the real CLI in a subprocess;
(b)  check-jsonschema in subprocesses on the same files with the same schemas
     (schema only: one run per file kind);
(b') check-jsonschema's command called in-process, without interpreter startup;
(c)  a bare parse of the same YAML files with libyaml's C loader, in a subprocess
     of the same Python (`benchmarks.bare_parse`);
(c') that bare parse in-process;
(d)  `validate_snapshot(read_worktree(DIR))` in-process (caches warm).

Then it checks the two goals, for the subprocess and the in-process numbers:
check-jsonschema / reconciler >= 10x, and reconciler / bare C parse <= 2x.
`--profile` instead prints a cProfile of one warm `validate_snapshot` call.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import importlib
import io
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from benchmarks import bare_parse
from benchmarks.common import BenchmarkError, Measurement, run_timed
from benchmarks.generate import GeneratorSettings, generate_config, init_repository, write_config
from reconciler.adapters.worktree import read_worktree
from reconciler.core.resources import SCHEMA_FILES, schemas_dir
from reconciler.core.validate import validate_snapshot

SPEED_UP_GOAL: Final = 10.0  # check-jsonschema / reconciler, at least
OVERHEAD_GOAL: Final = 2.0  # reconciler / bare C parse, at most
BARE_PARSE_SCRIPT: Final = Path(bare_parse.__file__).resolve()
# The files check-jsonschema checks, per schema: (schema kind, files relative to the repository).
CHECK_JSONSCHEMA_RUNS: Final = (
    ("plan", "plans"),
    ("environment", "environments"),
    ("teams", "teams.yaml"),
)


@dataclass(frozen=True, slots=True)
class Goal:
    """A ratio of two measurements and the bound it should meet."""

    name: str
    numerator: str
    denominator: str
    bound: float
    direction: Literal["at least", "at most"]

    def ratio(self, results: dict[str, Measurement]) -> float | None:
        if self.numerator not in results or self.denominator not in results:
            return None
        return results[self.numerator].median / results[self.denominator].median

    def status(self, results: dict[str, Measurement]) -> str:
        ratio = self.ratio(results)
        if ratio is None:
            return "n/a"
        met = ratio >= self.bound if self.direction == "at least" else ratio <= self.bound
        return "PASS" if met else "MISS"


GOALS: Final = (
    Goal("check-jsonschema / reconciler (subprocess)", "b", "a", SPEED_UP_GOAL, "at least"),
    Goal("reconciler / bare C parse (subprocess)", "a", "c", OVERHEAD_GOAL, "at most"),
    Goal("check-jsonschema / reconciler (in-process)", "b_in", "d", SPEED_UP_GOAL, "at least"),
    Goal("reconciler / bare C parse (in-process)", "d", "c_in", OVERHEAD_GOAL, "at most"),
)


# -- the repository ---------------------------------------------------------------------------


@contextlib.contextmanager
def benchmark_repository(
    settings: GeneratorSettings, directory: Path | None
) -> Iterator[tuple[Path, str]]:
    """The repository to time and how it was obtained; a temporary one is removed afterwards."""
    if directory is not None:
        if (directory / "teams.yaml").is_file():
            print(
                f"reusing {directory} as it is (its sizes, not --plans/--environments/--users)",
                file=sys.stderr,
            )
            yield directory, "reused"
            return
        _generate(settings, directory)
        yield directory, "generated"
        return
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as scratch:
        root = Path(scratch) / "config"
        _generate(settings, root)
        yield root, "generated, temporary"


def _generate(settings: GeneratorSettings, directory: Path) -> None:
    write_config(generate_config(settings), directory)
    init_repository(directory)


def _repository_facts(root: Path) -> dict[str, Any]:
    files = bare_parse.configuration_yaml_files(root)
    return {
        "path": str(root),
        "yaml_files": len(files),
        "plans": sum(path.parent.name == "plans" for path in files),
        "environments": sum(path.parent.name == "environments" for path in files),
        "yaml_bytes": sum(path.stat().st_size for path in files),
    }


# -- what is timed ----------------------------------------------------------------------------


def reconciler_command(root: Path) -> list[str]:
    """The installed `reconciler` script next to this Python, else `python -m reconciler`."""
    script = Path(sys.executable).parent / "reconciler"
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "reconciler"]
    return [*launcher, "validate", "--repo", str(root)]


def find_check_jsonschema(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    beside = Path(sys.executable).parent / "check-jsonschema"
    if beside.is_file():
        return beside
    found = shutil.which("check-jsonschema")
    return Path(found) if found else None


def check_jsonschema_arguments(root: Path) -> list[list[str]]:
    """One argument list per schema: `--schemafile SCHEMA FILE...`."""
    runs = []
    for kind, relative in CHECK_JSONSCHEMA_RUNS:
        target = root / relative
        files = sorted(target.glob("*.yaml")) if target.is_dir() else [target]
        if files:
            schema_file = schemas_dir() / SCHEMA_FILES[kind]
            runs.append(["--schemafile", str(schema_file), *map(str, files)])
    return runs


def time_call(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def validate_in_process(root: Path) -> None:
    report = validate_snapshot(read_worktree(root))
    if not report.valid:
        first = report.findings[0]
        raise BenchmarkError(
            f"validate_snapshot found {report.errors} error(s), first: "
            f"{first.file}:{first.line}:{first.column}: {first.message}"
        )


def check_jsonschema_in_process() -> Callable[[list[str]], None] | None:
    """check-jsonschema's click command as a function of its arguments, if importable here.

    The function raises `BenchmarkError` unless the command exits 0.
    """
    try:
        command = importlib.import_module("check_jsonschema.cli.main_command").main
    except ImportError:
        return None

    def run(arguments: list[str]) -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = command.main(args=arguments, standalone_mode=False)
        if code != 0:
            raise BenchmarkError(f"check-jsonschema (in-process) returned {code}")

    return run


def measure(
    root: Path, *, repeat: int, repeat_check_jsonschema: int, check_jsonschema: Path | None
) -> dict[str, Measurement]:
    """Every measurement, in rounds, so drift in machine load spreads over all of them."""
    results = {
        "a": Measurement("a", "reconciler validate (subprocess)"),
        "c": Measurement("c", "bare CSafeLoader parse (subprocess)"),
        "b": Measurement("b", "check-jsonschema, 3 runs (subprocess)"),
        "d": Measurement("d", "validate_snapshot(read_worktree) (in-process)"),
        "c_in": Measurement("c_in", "bare CSafeLoader parse (in-process)"),
        "b_in": Measurement("b_in", "check-jsonschema main() (in-process)"),
    }
    reconciler_argv = reconciler_command(root)
    bare_argv = [sys.executable, str(BARE_PARSE_SCRIPT), str(root)]
    check_runs = check_jsonschema_arguments(root)
    check_in_process = check_jsonschema_in_process()

    # Warm-up: the page cache for every measurement, the schema caches for (d).
    cold = time_call(lambda: validate_in_process(root))
    results["d"].note = f"first call, cold caches: {cold:.3f} s"
    bare_parse.parse_configuration(root)

    for round_index in range(max(repeat, repeat_check_jsonschema)):
        if round_index < repeat:
            results["a"].seconds.append(run_timed(reconciler_argv, "reconciler validate"))
            results["c"].seconds.append(run_timed(bare_argv, "the bare parse"))
            results["d"].seconds.append(time_call(lambda: validate_in_process(root)))
            results["c_in"].seconds.append(time_call(lambda: bare_parse.parse_configuration(root)))
        if round_index < repeat_check_jsonschema and check_jsonschema is not None:
            results["b"].seconds.append(
                sum(
                    run_timed([str(check_jsonschema), *arguments], "check-jsonschema")
                    for arguments in check_runs
                )
            )
        if round_index < repeat_check_jsonschema and check_in_process is not None:
            results["b_in"].seconds.append(
                sum(
                    time_call(functools.partial(check_in_process, arguments))
                    for arguments in check_runs
                )
            )
    return {key: measurement for key, measurement in results.items() if measurement.seconds}


# -- reporting --------------------------------------------------------------------------------


def render_text(facts: dict[str, Any], results: dict[str, Measurement]) -> str:
    lines = [
        f"repository: {facts['path']} ({facts['origin']}): {facts['yaml_files']} YAML files "
        f"({facts['plans']} plans, {facts['environments']} environments, teams.yaml), "
        f"{facts['yaml_bytes'] / 1e6:.1f} MB",
        "",
        f"{'measurement':<52} {'median s':>9} {'min s':>8} {'runs':>5}",
    ]
    order = ("a", "b", "c", "d", "b_in", "c_in")
    names = {"a": "(a)", "b": "(b)", "c": "(c)", "d": "(d)", "b_in": "(b')", "c_in": "(c')"}
    for key in order:
        if key in results:
            measurement = results[key]
            lines.append(
                f"{names[key] + ' ' + measurement.label:<52} {measurement.median:>9.3f} "
                f"{measurement.minimum:>8.3f} {len(measurement.seconds):>5}"
            )
            if measurement.note:
                lines.append(f"      {measurement.note}")
        else:
            lines.append(f"{names[key]} (not measured: tool not available)")
    lines += ["", f"{'goal':<44} {'ratio':>8}  {'target':<10} result"]
    for goal in GOALS:
        ratio = goal.ratio(results)
        shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
        bound = f"{'>=' if goal.direction == 'at least' else '<='} {goal.bound:g}x"
        lines.append(f"{goal.name:<44} {shown:>8}  {bound:<10} {goal.status(results)}")
    return "\n".join(lines)


def render_json(facts: dict[str, Any], results: dict[str, Measurement]) -> str:
    return json.dumps(
        {
            "repository": facts,
            "measurements": {key: value.as_json() for key, value in results.items()},
            "goals": [
                {
                    "name": goal.name,
                    "ratio": goal.ratio(results),
                    "bound": goal.bound,
                    "direction": goal.direction,
                    "status": goal.status(results),
                }
                for goal in GOALS
            ],
            "platform": {
                "python": sys.version.split()[0],
                "implementation": platform.python_implementation(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "libyaml": yaml.__with_libyaml__,
            },
        },
        indent=2,
    )


def profile_validate(root: Path, top: int) -> str:
    """cProfile of one warm `validate_snapshot(read_worktree(root))`, top functions both ways."""
    validate_in_process(root)
    profiler = cProfile.Profile()
    profiler.enable()
    validate_in_process(root)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- command line -----------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = GeneratorSettings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.validate",
        description="Time reconciler validate against check-jsonschema and a bare YAML parse.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="repository to time: reused if it holds teams.yaml, else generated there "
        "(default: a temporary directory)",
    )
    parser.add_argument("--plans", type=int, default=defaults.plans)
    parser.add_argument("--environments", type=int, default=defaults.environments)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--repeat", type=int, default=5, help="runs of (a), (c), (c'), (d)")
    parser.add_argument(
        "--repeat-check-jsonschema", type=int, default=3, help="runs of (b) and (b'), the slow ones"
    )
    parser.add_argument(
        "--check-jsonschema",
        type=Path,
        default=None,
        help="the check-jsonschema executable (default: next to this Python, else on PATH)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=25,
        default=None,
        metavar="TOP",
        help="print a cProfile of validate_snapshot (TOP functions) instead of timing",
    )
    arguments = parser.parse_args(argv)
    if arguments.repeat < 1 or arguments.repeat_check_jsonschema < 1:
        parser.error("repetitions must be at least 1")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = GeneratorSettings(
        plans=arguments.plans,
        environments=arguments.environments,
        users=arguments.users,
        seed=arguments.seed,
    )
    try:
        with benchmark_repository(settings, arguments.dir) as (root, origin):
            if arguments.profile is not None:
                print(profile_validate(root, arguments.profile))
                return 0
            facts = {**_repository_facts(root), "origin": origin}
            results = measure(
                root,
                repeat=arguments.repeat,
                repeat_check_jsonschema=arguments.repeat_check_jsonschema,
                check_jsonschema=find_check_jsonschema(arguments.check_jsonschema),
            )
    except (BenchmarkError, ValueError, FileExistsError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(
        render_json(facts, results) if arguments.format == "json" else render_text(facts, results)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
