"""The commands as a stable interface: `--repo`, `--format`, and usage errors.

The table in docs/design.md, "Commands"; exit codes as docs/design.md, "Exit codes" has them.

Every command takes `--repo DIR` and `--format text|json` (and `github` for
validate and verify); usage errors exit 2, and never with a traceback.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from tests.configrepo import reconciler
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import DEV_PLAN, ECOMMERCE, dev_plan

# Each command with the arguments it needs; `init` and `demo` make their own repositories.
COMMANDS = {
    "validate": [],
    "verify": [],
    "plan": [],
    "apply": ["--dry-run"],
    "watch": [],
    "approve": ["2026-11-dev-build"],
    "deploy": ["2026-11-dev-build"],
    "cancel": ["2026-11-dev-build"],
    "status": [],
    "history": [],
    "access": ["alice"],
}
READ_ONLY = ["validate", "verify", "plan", "apply", "status", "history", "access"]


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(main, list(args))
    unexpected = None if isinstance(result.exception, SystemExit) else result.exception
    return result.exit_code, result.output, unexpected


@pytest.mark.parametrize("command", [*COMMANDS, "init", "demo"])
def test_an_unknown_option_or_format_is_a_usage_error_exiting_2(
    tmp_path: Path, command: str
) -> None:
    args = {**COMMANDS, "init": [str(tmp_path / "new")], "demo": []}[command]
    for wrong in (["--no-such-option"], ["--format", "yaml"]):
        exit_code, output, unexpected = invoke(command, *args, *wrong)
        assert (exit_code, unexpected) == (2, None), output
        assert "Traceback" not in output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_github_format_is_for_validate_and_verify_only(tmp_path: Path, command: str) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # past the usage checks
    exit_code, output, unexpected = invoke(
        command, *COMMANDS[command], "--repo", str(tmp_path), "--format", "github"
    )
    assert unexpected is None
    if command == "validate":  # an empty repository: the finding, as an annotation
        assert exit_code == 1, output
        assert output.startswith("::error file=teams.yaml,line=1,col=1,"), output
    elif command == "verify":  # past the options, to the repository's own problem
        assert exit_code == 1, output
        assert "has no commits yet" in output
    else:
        assert exit_code == 2, output
        assert "'github' is not one of 'text', 'json'" in output


# A --repo that does not exist: tests/test_people.py checks every command's exact message.


def test_every_read_only_command_answers_in_json_for_the_repository_given_with_repo(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = ["--state-dir", str(repo.state_dir)]
    for command in READ_ONLY:
        extra = [] if command == "validate" else state
        result = reconciler(
            command,
            *COMMANDS[command],
            "--repo",
            repo.path,
            "--format",
            "json",
            *extra,
            cwd=elsewhere,
        )
        assert (result.exit_code, result.stderr) == (0, ""), (command, result.stdout)
        assert isinstance(json.loads(result.stdout), dict), command
