"""Helpers that make configuration trees and run the CLI, one line each."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
