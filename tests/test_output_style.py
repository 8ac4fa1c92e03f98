"""Styles reach a terminal and never a pipe: `plan`, `status` and `history` style only what
`click.echo` keeps (`output.output_style`), and leave the rest plain rather than styling it
for echo to strip again."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.output import terminal_columns
from tests.people import People, teams_with
from tests.repositories import SeedRepo
from tests.runner import shown_on
from tests.scenarios import DEV_PLAN, ECOMMERCE, dev_plan

ESCAPE = "\x1b["
SGR = re.compile(r"\x1b\[[0-9;]*m")  # the styles click writes


def on_a_terminal(repo: SeedRepo, *args: str) -> str:
    """What the command writes to its standard output when that is a terminal."""
    controller, terminal = pty.openpty()
    argv = [sys.executable, "-m", "reconciler", *args]
    argv += ["--repo", str(repo.path), "--state-dir", str(repo.state_dir)]
    process = subprocess.Popen(argv, stdout=terminal, stderr=subprocess.PIPE, cwd=repo.path)
    os.close(terminal)
    shown = shown_on(controller)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 0, errors
    return shown.decode()


@pytest.fixture
def repo(tmp_path: Path, people: People) -> SeedRepo:
    """A plan, and a change of the teams by someone who may not make it (history marks it)."""
    seeded = SeedRepo.create(tmp_path, people)
    seeded.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    renamed = teams_with(people, lambda teams: teams["users"]["bob"].update(name="Robert"))
    seeded.commit(people.bob, {"teams.yaml": renamed})
    return seeded


@pytest.mark.parametrize("command", ["plan", "status", "history"])
def test_a_terminal_gets_the_styles(repo: SeedRepo, command: str) -> None:
    assert ESCAPE in on_a_terminal(repo, command)


@pytest.mark.parametrize("command", ["plan", "status", "history"])
def test_a_pipe_gets_the_same_lines_without_a_style(repo: SeedRepo, command: str) -> None:
    shown = on_a_terminal(repo, command)
    piped = repo.reconciler(command, process=True)
    assert piped.exit_code == 0, piped.stderr
    assert ESCAPE not in piped.stdout
    assert piped.stdout == SGR.sub("", shown.replace("\r\n", "\n"))


def test_the_mark_of_a_change_that_does_not_count_is_styled_on_a_terminal(repo: SeedRepo) -> None:
    marked = [
        line for line in on_a_terminal(repo, "history").splitlines() if "does not count" in line
    ]
    assert marked
    assert all(ESCAPE in line for line in marked)


@pytest.mark.parametrize("columns", [None, "100", "0", "-5", "wide", " 90 "])
def test_the_terminal_width_is_the_one_shutil_tells(
    monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size((80, 24)).columns
