"""Running the reconciler and its drivers as processes: `reconciler init`, `apply`
under a command driver that can be held, failed and signalled, and waiting for what
they write; and the documented shape of their output."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.configrepo import Result, example_file, reconciler
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import DEV_PLAN, ECOMMERCE, PORTAL_DEV, dev_plan

DOCS = Path(__file__).resolve().parent.parent / "docs"


DRIVER = """\
import os, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
if os.environ.get("RECONCILER_OPERATION") == "current":
    sys.exit(1)
app, version = os.environ["RECONCILER_APP"], os.environ["RECONCILER_VERSION"]
with out.open("a") as handle:
    handle.write(f"{os.environ['RECONCILER_PLAN']} {app} {version} {sys.argv[2:]!r}\\n")
print(f"deploying {app} {version}")
hold = pathlib.Path(sys.argv[1] + ".hold")
if hold.exists():
    pathlib.Path(sys.argv[1] + ".started").write_text("yes")
    while hold.exists():
        time.sleep(0.05)
fail = pathlib.Path(sys.argv[1] + ".fail")
if fail.exists() and app in fail.read_text().split():
    print("boom", file=sys.stderr)
    sys.exit(3)
"""


def command_environment(name: str, script: Path, out: Path, *extra_argv: str) -> str:
    """An environment file from the example, with the command driver running `script`."""
    text = example_file(f"environments/{name}.yaml")
    argv = ", ".join(
        json.dumps(part) for part in (sys.executable, str(script), str(out), *extra_argv)
    )
    return text.replace(
        "driver: {type: local}", f"driver: {{type: command, argv: [{argv}], timeout: 60}}"
    )


def with_command_driver(tmp_path: Path, people: People, *extra_argv: str) -> tuple[SeedRepo, Path]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "driver.out"
    repo = SeedRepo.create(
        tmp_path,
        people,
        extra={
            "environments/development.yaml": command_environment(
                "development", script, out, *extra_argv
            )
        },
    )
    return repo, out


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def sigterm_during_the_first_of_two_steps(
    tmp_path: Path, people: People
) -> tuple[SeedRepo, Path, int, str]:
    """A development plan of two applications (alice's ecommerce 1.4.0, then diana's
    customer-portal) applied by the command driver, SIGTERM sent while the first step runs,
    which finishes once apply says it stops after it. The repository, the driver's output
    file, and apply's exit code and stderr."""
    repo, out = with_command_driver(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    hold = out.with_name(out.name + ".hold")
    hold.write_text("")
    process = subprocess.Popen(
        repo.apply_command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(out.with_name(out.name + ".started"), 30)
        process.send_signal(signal.SIGTERM)
        wait_for_text(process, "stopping after the step in progress")
        hold.unlink()
        _, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return repo, out, process.returncode, errors


def shown_on(controller: int) -> bytes:
    """All a pseudo-terminal (`pty.openpty`'s controller end) shows until its other end
    closes, which it does when the command writing there is done."""
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return shown


def wait_for_text(process: subprocess.Popen[str], text: str, timeout: float = 30) -> None:
    """Read `process`'s stderr until a line holds `text`."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if text in line:
            return
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"{text!r} never appeared on stderr")


def documented_row(command: str) -> str:
    """The row of docs/output-formats.md's table that documents `command`'s JSON."""
    for line in (DOCS / "output-formats.md").read_text().splitlines():
        if line.startswith(f"| `{command}`"):
            return line
    raise AssertionError(f"no row for {command} in docs/output-formats.md")


ROOT_ADMIN = ("--name", "Root Admin", "--email", "root@example.com")


def init_repository(
    people: People, target: Path | str, *options: str, cwd: Path | None = None
) -> Result:
    """`reconciler init TARGET` with root's public key and `options` (ROOT_ADMIN: root's
    name and email, where git's identity should not be asked)."""
    key = people.root.key.with_suffix(".pub")
    return reconciler("init", target, *options, "--key", key, cwd=cwd)


@contextmanager
def serve_process(path: Path, *options: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`reconciler serve` on `path` (a subprocess, on a port the system chose, looking
    every 0.2 s): the process and the address it serves, once it says so. Stopped
    (SIGTERM, then SIGKILL) at the end."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))
    }
    command = [sys.executable, "-m", "reconciler", "serve", "--repo", str(path), *options]
    command += ["--listen", "127.0.0.1:0", "--interval", "0.2"]
    server = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True
    )
    assert server.stderr is not None
    try:
        with selectors.DefaultSelector() as waiting:
            waiting.register(server.stderr, selectors.EVENT_READ)
            deadline, said = time.monotonic() + 60, ""
            while "serving" not in said and time.monotonic() < deadline:
                if waiting.select(deadline - time.monotonic()):
                    line = server.stderr.readline()
                    assert line, f"serve ended: {said}"
                    said += line
        found = re.search(r"http://127\.0\.0\.1:\d+/", said)
        assert found, said
        yield server, found.group(0)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stderr.close()
