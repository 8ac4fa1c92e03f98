"""`reconciler watch --config FILE`: the service's options from a TOML file, flags over it.

The service runs for real (a subprocess, JSON log lines on stderr, real pushes
and HTTP requests) from a file alone, and with a flag that overrides the file;
a bad file is refused with its name, the line and the fix, exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.configrepo import reconciler
from tests.people import People
from tests.repositories import SeedRepo, run_git
from tests.test_watch import SECRET, Watcher, push_plan, request, subjects, watch_argv


@pytest.fixture
def running() -> Iterator[list[Watcher]]:
    """Watchers started by a test; any still running at its end are killed."""
    started: list[Watcher] = []
    yield started
    for watcher in started:
        watcher.kill()


def config_file(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / "watch.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_watch_runs_from_a_config_file_alone(
    tmp_path: Path, people: People, running: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    service = tmp_path / "service"
    service.mkdir()
    # Relative paths are found where the file is, wherever the service starts.
    (service / "webhook-secret").write_text(SECRET)
    config = config_file(
        service,
        f"""# /etc/reconciler/watch.toml
repo = "{remote}"
state-dir = "state"
key = "{people.reconciler.key}"
driver-root = "{repo.driver_root}"
instance = "from-the-file"
interval = 3600
listen = "127.0.0.1:0"
webhook-secret-file = "webhook-secret"
environments = ["development", "quality-assurance"]
format = "json"
""",
    )
    watcher = Watcher([sys.executable, "-m", "reconciler", "watch", "--config", str(config)])
    running.append(watcher)
    watcher.wait_for_event("pass", result="ok")
    port = watcher.wait_for_event("listening")["port"]
    status, health = request(port, "GET", "/healthz")
    assert (status, health["last_pass"]["commit"]) == (200, run_git(remote, "rev-parse", "main"))
    assert (service / "state").is_dir()

    push_plan(repo, people.alice, "configured", "1.0.0")
    watcher.wait_for_event("run-finished", 60, run="configured.1", result="succeeded")
    assert subjects(remote)[:2] == [
        "Deploy configured to development: succeeded",
        "Start configured in development: run configured.1",
    ]
    start = run_git(remote, "log", "-1", "--format=%B", "main~1")
    assert "from-the-file" in start
    assert watcher.stop() == 0


def test_a_flag_overrides_the_config_file(
    tmp_path: Path, people: People, running: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    config = config_file(
        tmp_path,
        f'repo = "{remote}"\nstate-dir = "file-state"\ninstance = "from-the-file"\n'
        'format = "text"\n',
    )
    # watch_argv passes --state-dir, --instance and --format json as flags.
    watcher = Watcher(watch_argv(repo, people, remote, "--config", str(config)))
    running.append(watcher)
    watcher.wait_for_event("pass", result="ok")  # JSON: --format json won over the file
    push_plan(repo, people.alice, "flagged", "1.0.0")
    watcher.wait_for_event("run-finished", 60, run="flagged.1", result="succeeded")
    assert (repo.path.parent / "watch-state").is_dir()
    assert not (tmp_path / "file-state").exists()
    start = run_git(remote, "log", "-1", "--format=%B", "main~1")
    assert "test-watch" in start
    assert "from-the-file" not in start
    assert watcher.stop() == 0


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("interval = 30\nintervall = 3\n", 2, "did you mean 'interval'?"),
        ("# the service\n\ninterval = true\n", 3, "write interval = 30 or 0.5"),
        ("interval = 0.01\n", 1, "pass --interval instead"),
        ('environments = ["development", 3]\n', 1, 'write environments = ["development"'),
        ('instance = "a"\n\n[targets]\nops = "https://chat.example/hook"\n', 3, "reads no tables"),
        ('state-dir = "/var/lib/reconciler"\nkey = \n', 2, "one setting a line"),
    ],
)
def test_a_bad_config_file_is_refused_naming_its_line_and_the_fix(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    config = config_file(tmp_path, text)
    result = reconciler("watch", "--config", config, timeout=30)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"{config}:{line}:"), result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_file_others_may_write_is_refused_and_one_all_may_read_is_warned_of(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    # Whoever can write the file picks the key that signs and the repository trusted.
    writable = config_file(tmp_path, f'repo = "{repo.path}"\n', mode=0o620)
    result = reconciler("watch", "--config", writable, timeout=30)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"{writable}: error: "), result.stderr
    assert f"chmod go-w {writable}" in result.stderr
    assert not (repo.path / ".git" / "reconciler").exists()

    readable = config_file(tmp_path, "interval = 0\n", mode=0o644)
    result = reconciler("watch", "--config", readable, timeout=30)
    assert result.exit_code == 2
    assert f"{readable}: warning: " in result.stderr
    assert f"chmod o-r {readable}" in result.stderr
    os.chmod(readable, 0o600)
    assert "warning" not in reconciler("watch", "--config", readable, timeout=30).stderr


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root"
)
def test_a_config_file_another_user_owns_is_refused(tmp_path: Path, people: People) -> None:
    # Its owner may chmod it back to writable, or simply write it: a file that nobody but
    # the owner may write is still the owner's to rewrite, and the owner is not the service.
    repo = SeedRepo.create(tmp_path, people)
    theirs = config_file(tmp_path, f'repo = "{repo.path}"\ninterval = 0\n', mode=0o600)
    os.chown(theirs, 65534, 65534)
    result = reconciler("watch", "--config", theirs, timeout=30)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"{theirs}: error: "), result.stderr
    assert "owned by" in result.stderr
    assert not (repo.path / ".git" / "reconciler").exists()
