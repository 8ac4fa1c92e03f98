"""Helpers that make configuration trees and run the CLI, one line each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.core.resources import example_dir, schemas_dir


def copy_example(destination: Path) -> Path:
    """The example teams.yaml, environments/, plans/ and schemas/ in `destination`."""
    source = example_dir()
    destination.mkdir(parents=True)
    shutil.copy(source / "teams.yaml", destination / "teams.yaml")
    shutil.copytree(source / "environments", destination / "environments")
    shutil.copytree(source / "plans", destination / "plans")
    shutil.copytree(schemas_dir(), destination / "schemas")
    return destination


def write(root: Path, path: str, content: str | bytes) -> Path:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        target.write_text(content, encoding="utf-8")
    else:
        target.write_bytes(content)
    return target


def replace(root: Path, path: str, old: str, new: str) -> None:
    """Edit one file by exact replacement; fails loudly when `old` is absent."""
    target = root / path
    text = target.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    target.write_text(text.replace(old, new, 1), encoding="utf-8")


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def reconciler(
    *args: str | Path,
    cwd: Path | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    """Run the `reconciler` command as its console script does (`cli.main`), in this
    process: its exit code, its stdout and its stderr, as a subprocess would give them,
    with the traceback of a crash in stderr where Python would print it. Starting an
    interpreter for each of the suite's 1,100 or so commands was a fifth of its CPU.

    `env` is the whole environment, as for a subprocess (TMPDIR included: `tempfile`
    reads it again). A `timeout`, and `watch` and `serve`, which run until stopped and
    keep their signal handlers, get a process of their own (`reconciler_process`), as
    does a test about the process itself (its start-up, its imports, a signal or a kill)."""
    if timeout is not None or (args and str(args[0]) in _RUN_UNTIL_STOPPED):
        return reconciler_process(*args, cwd=cwd, timeout=timeout or 120, env=env)
    overrides: dict[str, str | None] | None = None
    if env is not None:
        overrides = {name: None for name in os.environ if name not in env}
        overrides.update(env)
    before, temporary = Path.cwd(), tempfile.tempdir
    if cwd is not None:
        os.chdir(cwd)
    tempfile.tempdir = None  # found again from TMPDIR, as a new process would
    try:
        outcome = CliRunner().invoke(
            main, [str(arg) for arg in args], env=overrides, prog_name="reconciler"
        )
    finally:
        os.chdir(before)
        tempfile.tempdir = temporary
    stderr = outcome.stderr
    crash = outcome.exception
    if crash is not None and not isinstance(crash, SystemExit):
        stderr += "".join(traceback.format_exception(crash))
    return Result(outcome.exit_code, outcome.stdout, stderr)


_RUN_UNTIL_STOPPED = frozenset({"watch", "serve"})


def reconciler_process(
    *args: str | Path,
    cwd: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> Result:
    """Run the real `reconciler` command in a subprocess."""
    completed = subprocess.run(
        [sys.executable, "-m", "reconciler", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=400)


def example_file(path: str) -> str:
    return (example_dir() / path).read_text()
