"""Attacks on the surfaces around the rules: the terminal, logs, the webhook service, drivers.

From an adversarial review that followed the ones in test_attacks.py. Each
test is one attempt, written as the attacker would try it: a file name, a
committer email or a driver's output that rewrites what an operator reads or
forges a line of a log or of a CI annotation; a webhook client that holds
the service's connections or floods it; a driver that writes without end.
Attacks the code already withstood are kept as tests that pin the defence.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from reconciler.printable import printable
from tests.gitfixtures import (
    DEV_PLAN,
    ECOMMERCE,
    People,
    SeedRepo,
    dev_plan,
    example_file,
    run_git,
)

# What a terminal acts on: C0 controls (but the line feed and the tab), DEL, C1, bidi.
_ACTED_ON = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def acted_on(text: str) -> list[str]:
    """The characters in `text` a terminal would act on instead of showing."""
    return _ACTED_ON.findall(text)


def commit_path(repo: SeedRepo, raw: bytes, content: str, by_email: str | None = None) -> str:
    """Commit a file whose name is the bytes `raw` (relative), unsigned, as bob."""
    target = os.fsencode(repo.path) + b"/" + raw
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as handle:
        handle.write(content)
    repo.git("add", "-A")
    return repo.commit(repo.people.bob, None, "a file", signed=False, email=by_email)


# -- B. the terminal, logs and CI annotations -----------------------------------------------

# A title change (OSC), then: move up a line, erase it, and write a fake verdict over it.
FORGED = "\x1b]0;all good\x07\x1b[1A\x1b[2K\r     ok 0123456789ab by root\u202e"


def test_a_file_name_or_committer_email_cannot_rewrite_what_verify_plan_history_show(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    commit_path(repo, f"docs/x{FORGED}.md".encode(), "hello\n")
    # development takes emails: the committer's email reaches the reasons shown.
    repo.commit(
        people.bob, {DEV_PLAN: dev_plan(ECOMMERCE)}, signed=False, email=f"b{FORGED}@evil.example"
    )
    outputs = {
        command: repo.reconciler(*command.split())
        for command in ("verify", "verify --all", "plan", "history", "status", "apply --dry-run")
    }
    for command, result in outputs.items():
        assert "Traceback" not in result.stderr, command
        assert acted_on(result.stdout + result.stderr) == [], (command, result.stdout)
    verify = outputs["verify"].stdout
    assert outputs["verify"].exit_code == 1
    assert "REFUSED" in verify
    # Shown, escaped the way Python's repr does, on the line it belongs to.
    assert f"docs/x{printable(FORGED)}.md: changed by an unknown actor" in verify
    assert f"committer email b{printable(FORGED)}@evil.example is no user's" in verify
    assert "\\x1b[2K\\r     ok 0123456789ab by root\\u202e" in outputs["history"].stdout
    # JSON keeps the real values: its escapes are JSON's own.
    data = repo.reconciler("verify", "--format", "json").json()
    paths = [r["path"] for landing in data["landings"] for r in landing["refusals"]]
    assert f"docs/x{FORGED}.md" in paths


def test_a_file_name_cannot_forge_a_workflow_command_in_verify_format_github(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    # A line break in a file name used to end the `file=` property's line: the rest was a
    # workflow command of its own (stop-commands hides every annotation after it).
    commit_path(repo, b"docs/a,title=x::y\n::stop-commands::pwned\n::notice::all good.md", "x\n")
    result = repo.reconciler("verify", "--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines  # one refusal, one path that differs
    for line in lines:
        match = re.fullmatch(r"::(\w+) ([^:]*)::(.*)", line)
        assert match is not None, line
        command, properties, _ = match.groups()
        assert command in ("error", "warning")
        # Exactly file= and title=: no comma or colon of the name ends the property early.
        assert [part.split("=", 1)[0] for part in properties.split(",")] == ["file", "title"]
        assert "::" not in properties
    file_property = lines[0].split(" ", 1)[1].split(",", 1)[0]
    assert file_property == (
        "file=docs/a%2Ctitle=x%3A%3Ay\\n%3A%3Astop-commands%3A%3Apwned"
        "\\n%3A%3Anotice%3A%3Aall good.md"
    )


def test_a_file_name_that_is_not_utf8_does_not_break_any_command_or_the_service(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    # Any pusher's commit: the state database used to refuse the name (UnicodeEncodeError),
    # every command ended in an internal error, and no pass could get past the commit.
    commit_path(repo, b"docs/caf\xe9-\xff.md", "x\n")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    verify = repo.reconciler("verify")
    assert verify.exit_code == 1, verify.stderr
    assert "docs/caf\\xe9-\\xff.md: changed by an unknown actor" in verify.stdout
    for command in ("plan", "history", "status"):
        result = repo.reconciler(command)
        assert (result.exit_code, result.stderr) == (0, ""), command
    data = repo.reconciler("verify", "--format", "json").json()
    assert "docs/caf\udce9-\udcff.md" in data["differs"]
    applied = repo.apply()
    assert "Traceback" not in applied.stderr
    assert "succeeded 2026-11-dev-build.1" in applied.stdout, applied.stdout + applied.stderr
    # And again: the stored name reads back as the same file (nothing new is refused).
    again = repo.reconciler("verify", "--from", "main~1")
    assert again.exit_code == 0, again.stdout
    assert "docs/caf\\xe9-\\xff.md: its content" in again.stdout


HOSTILE_DRIVER = """\
import os, sys
if os.environ.get("RECONCILER_OPERATION") == "current":
    sys.exit(1)
sys.stdout.write("fetching\\r2026-11-22T12:00:00.000Z run succeeded\\x1b[2K\\n")
sys.stdout.write("\\x1b]8;;https://evil.example\\x07click\\x1b]8;;\\x07 \\u202eok\\n")
sys.stdout.flush()
"""


def command_driver_repo(tmp_path: Path, people: People, script_text: str) -> SeedRepo:
    """The seed story with development deploying through `script_text` (a Python driver)."""
    script = tmp_path / "driver.py"
    script.write_text(script_text)
    environment = example_file("environments/development.yaml").replace(
        "driver: {type: local}",
        f"driver: {{type: command, argv: [{json.dumps(sys.executable)}, "
        f"{json.dumps(str(script))}], timeout: 30}}",
    )
    return SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": environment})


def test_driver_output_cannot_forge_or_hide_lines_in_the_run_log_committed_to_git(
    tmp_path: Path, people: People
) -> None:
    repo = command_driver_repo(tmp_path, people, HOSTILE_DRIVER)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    log = run_git(
        repo.path, "show", "main:logs/development/2026-11-dev-build/2026-11-dev-build.1.log"
    )
    assert acted_on(log) == []
    assert "[1/1 ecommerce 1.4.0] fetching\\r2026-11-22T12:00:00.000Z run succeeded\\x1b[2K" in log
    assert "\\x1b]8;;https://evil.example\\x07click\\x1b]8;;\\x07 \\u202eok" in log
    assert acted_on(run_git(repo.path, "log", "-1", "--format=%B", "main")) == []
