"""The `reconciler` process exits without freeing its objects only when nothing is left to
finish (`cli.errors.leave`): what it wrote arrives whole, its exit code is kept, and an exit
hook or a thread still running takes the usual way out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import DEV_PLAN, ECOMMERCE, dev_plan


def leaving(program: str) -> subprocess.CompletedProcess[str]:
    """`program` run in a Python process of its own, which then calls `leave`."""
    source = f"from reconciler.cli.errors import leave\n{program}"
    buffered = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=buffered,
    )


def test_what_was_written_and_not_flushed_arrives_whole_with_the_exit_code() -> None:
    program = "import sys\nfor _ in range(10_000):\n    sys.stdout.write('x' * 99)\n"
    ran = leaving(program + "sys.stderr.write('e')\nleave(5)")
    assert ran.returncode == 5
    assert ran.stdout == "x" * 990_000
    assert ran.stderr == "e"


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (3, 3), (True, 1)])
def test_the_exit_code_is_the_one_sys_exit_gives(code: object, status: int) -> None:
    assert leaving(f"leave({code!r})").returncode == status


def test_an_exit_message_is_printed_as_python_prints_it() -> None:
    ran = leaving("leave('stopped: no state')")
    assert (ran.returncode, ran.stderr) == (1, "stopped: no state\n")


def test_an_exit_hook_still_runs() -> None:
    ran = leaving("import atexit\natexit.register(print, 'hook ran')\nleave(2)")
    assert (ran.returncode, ran.stdout) == (2, "hook ran\n")


def test_a_thread_still_running_is_waited_for() -> None:
    program = (
        "import threading, time\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    print('thread done', flush=True)\n"
        "threading.Thread(target=late).start()\n"
        "leave(0)"
    )
    assert leaving(program).stdout == "thread done\n"


def test_an_executors_exit_hook_still_runs() -> None:
    program = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "import time\n"
        "pool = ThreadPoolExecutor(1)\n"
        "pool.submit(lambda: (time.sleep(0.3), print('task done', flush=True)))\n"
        "leave(0)"
    )
    assert leaving(program).stdout == "task done\n"


def test_plan_in_a_process_of_its_own_writes_every_line_and_exits_with_its_code(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    in_process = repo.reconciler("plan")
    alone = repo.reconciler("plan", process=True)
    assert (alone.exit_code, alone.stdout) == (in_process.exit_code, in_process.stdout)
    assert DEV_PLAN in alone.stdout


def with_closed(repo: SeedRepo, descriptor: int, *args: str) -> subprocess.CompletedProcess[str]:
    """`reconciler ARGS` in a process of its own started with `descriptor` (1 or 2) closed,
    so that Python gives it no stream there (None)."""
    argv = [sys.executable, "-m", "reconciler", *args]
    argv += ["--repo", str(repo.path), "--state-dir", str(repo.state_dir)]
    return subprocess.run(
        argv,
        stdout=None if descriptor == 1 else subprocess.PIPE,
        stderr=None if descriptor == 2 else subprocess.PIPE,
        preexec_fn=lambda: os.close(descriptor),
        cwd=repo.path,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def verified(tmp_path: Path, people: People) -> SeedRepo:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    assert repo.reconciler("verify").exit_code == 0
    return repo


@pytest.mark.parametrize(
    "args", [("plan",), ("status",), ("history",), ("verify",), ("plan", "--format", "json")]
)
def test_a_command_started_without_stdout_ends_as_it_would_with_one(
    verified: SeedRepo, args: tuple[str, ...]
) -> None:
    ran = with_closed(verified, 1, *args)
    assert (ran.returncode, ran.stderr) == (0, "")


@pytest.mark.parametrize("command", ["plan", "status", "verify", "apply"])
def test_a_command_started_without_stderr_ends_as_it_would_with_one(
    verified: SeedRepo, command: str
) -> None:
    args = ("--dry-run",) if command == "apply" else ()
    assert with_closed(verified, 2, command, *args).returncode == 0
