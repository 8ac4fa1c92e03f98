"""Start-up: asking the CLI for help loads click and the command definitions, nothing heavier.

The suite starts `reconciler` as a subprocess hundreds of times, and people type
`reconciler --help`; a module-level import of the application layer in one command
module made every start-up pay for Git, SQLite, YAML, the schema validator and both
signature libraries (docs/performance.md, "Start-up"). These tests hold the names of
the modules loaded, never a time: a time depends on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click

from reconciler.cli import main
from tests.people import People
from tests.repositories import SeedRepo
from tests.runner import ROOT_ADMIN, init_repository
from tests.scenarios import ECOMMERCE, QA_PLAN, qa_plan

# What a command loads when it runs, and `--help` must not: the application layer and
# the adapters (Git, the state store, drivers), and the libraries under them.
HEAVY: Final = (
    "reconciler.app",
    "reconciler.adapters",
    "reconciler.core.loader",
    "reconciler.core.schema",
    "reconciler.core.signatures",
    "reconciler.core.openpgp",
    "yaml",
    "jsonschema",
    "jsonschema_rs",
    "pysequoia",
    "nacl",
    "cryptography",
    "sqlite3",
    "watchdog",
    "prometheus_client",
    "cloudevents",
    "apprise",
    "subprocess",
)

# Runs each command line in argv[1] (JSON) in turn in one fresh interpreter, as the
# `reconciler` script would, and prints, after each, the modules loaded so far.
_CHILD: Final = """
import contextlib, io, json, sys
from reconciler.cli import main
runs = []
for argv in json.loads(sys.argv[1]):
    code = 0
    with contextlib.redirect_stdout(io.StringIO()) as shown:
        try:
            main(argv, prog_name="reconciler")
        except SystemExit as stop:
            code = stop.code
    runs.append({"code": code, "shown": shown.getvalue(), "modules": sorted(sys.modules)})
print(json.dumps(runs))
"""


def heavy(modules: list[str]) -> list[str]:
    return [
        name
        for name in modules
        if any(name == prefix or name.startswith(prefix + ".") for prefix in HEAVY)
    ]


@dataclass(frozen=True)
class Run:
    code: int
    shown: str
    modules: list[str]


def run_in_one_process(command_lines: list[list[str]]) -> list[Run]:
    """Each command line's exit code, what it printed, and the modules loaded after it."""
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(command_lines)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return [Run(**run) for run in json.loads(completed.stdout)]


def every_command() -> list[str]:
    with click.Context(main, info_name="reconciler") as context:
        return main.list_commands(context)


def test_the_help_of_every_command_loads_no_application_layer() -> None:
    commands = every_command()
    assert "verify" in commands
    assert "apply" in commands
    # `reconciler --help` imports every command's module (each one's first sentence),
    # then each command's own --help in the same process: the first that loads a heavy
    # module is named.
    lines = [["--help"], ["-V"], *([name, "--help"] for name in commands)]
    for argv, run in zip(lines, run_in_one_process(lines), strict=True):
        assert run.code == 0, argv
        assert run.shown.startswith(("Usage: reconciler", "reconciler, version")), argv
        assert heavy(run.modules) == [], f"`reconciler {' '.join(argv)}` loaded them"


def test_the_help_loads_every_command_definition() -> None:
    """The test above proves something: the command modules were imported, only light."""
    (run,) = run_in_one_process([["--help"]])
    assert "click" in run.modules
    for name in ("verify_commands", "apply_commands", "watch_commands", "people_commands"):
        assert f"reconciler.cli.{name}" in run.modules


def test_a_command_that_runs_loads_the_application_layer(people: People, tmp_path: Path) -> None:
    """The heavy list names what a command really loads, so its absence above means something."""
    repo = tmp_path / "config"
    assert init_repository(people, repo, *ROOT_ADMIN).exit_code == 0
    (run,) = run_in_one_process([["verify", "--repo", str(repo)]])
    assert run.code == 0  # the first run: it anchors, and walks
    for name in ("reconciler.app.api", "reconciler.adapters.statestore", "sqlite3", "yaml"):
        assert name in run.modules


# What a walk loads, and a command with nothing to walk does not (docs/performance.md,
# "Everyday commands"): the walker, the checkpoints' checks, YAML, the model, the schema
# validator and the signature libraries.
WALK: Final = (
    "reconciler.app.authorise",
    "reconciler.app.checkpoints",
    "reconciler.adapters.readahead",
    "reconciler.core.loader",
    "reconciler.core.model",
    "reconciler.core.judge",
    "reconciler.core.signatures",
    "yaml",
    "jsonschema_rs",
    "cryptography",
    "nacl",
    "pysequoia",
)


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [
        name
        for name in modules
        if any(name == prefix or name.startswith(prefix + ".") for prefix in names)
    ]


def test_the_application_entry_loads_what_a_command_needs_only_when_it_runs() -> None:
    """`reconciler.app.api` is every command's one entry: importing it opens nothing."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; import reconciler.app.api; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    modules = json.loads(completed.stdout)
    assert "reconciler.app.api" in modules
    opened = ("reconciler.app.session", "reconciler.adapters.statestore")
    assert loaded(modules, (*WALK, *opened)) == []


def test_a_verify_with_nothing_new_loads_neither_the_walker_nor_yaml_nor_a_signature_library(
    people: People, tmp_path: Path
) -> None:
    """It answers from the state, which holds the branch's tip already."""
    repo = tmp_path / "config"
    assert init_repository(people, repo, *ROOT_ADMIN).exit_code == 0
    at = ["--repo", str(repo)]
    (first,) = run_in_one_process([["verify", *at]])  # anchors: the walk loads them
    assert first.code == 0
    assert loaded(first.modules, WALK) != []
    (again,) = run_in_one_process([["verify", *at]])
    assert again.code == 0
    assert "0 landing(s), 0 refused" in again.shown
    assert "reconciler.adapters.statestore" in again.modules  # it read the state
    assert loaded(again.modules, WALK) == []


def test_a_verify_with_nothing_new_loads_neither_libsodium_nor_the_schema_validator(
    people: People, tmp_path: Path
) -> None:
    """Both load at their first use: a signature to check, a document to validate."""
    repo = tmp_path / "config"
    assert init_repository(people, repo, *ROOT_ADMIN).exit_code == 0
    at = ["--repo", str(repo)]
    (first,) = run_in_one_process([["verify", *at]])  # anchors: validates the anchor's tree
    assert first.code == 0
    assert "jsonschema_rs" in first.modules
    again, plan = run_in_one_process([["verify", *at], ["plan", *at]])
    assert (again.code, plan.code) == (0, 0)
    assert "0 landing(s), 0 refused" in again.shown
    for name in ("nacl", "jsonschema_rs"):
        assert name not in plan.modules  # nor, so, after the verify before it
    assert "reconciler.core.schema" in plan.modules  # imported, but built no validator
    # Notifications are the service's, and its deliveries': no other command loads them.
    assert not any(
        name.split(".")[0] in ("cloudevents", "apprise") for name in plan.modules + again.modules
    )
    assert "reconciler.adapters.notify" not in plan.modules


# What a walk with landings to judge, or one that goes on from a checkpoint, loads, and
# `plan`, `status` and `access` with nothing new do not: the judge, the checkpoints'
# checks and their signature library, and the installed packages' metadata (a driver
# plug-in's look-up). `access` needs the policy alone: not even the walker.
JUDGING: Final = (
    "reconciler.core.judge",
    "reconciler.app.checkpoints",
    "reconciler.adapters.signing",
    "cryptography",
    "nacl",
    "jsonschema_rs",
    "importlib.metadata",
)
WALKER: Final = (
    "reconciler.app.authorise",
    "reconciler.app.anchoring",
    "reconciler.app.commit_cache",
    "reconciler.adapters.readahead",
    "reconciler.core.signatures",
    "reconciler.core.schema",
)


def test_plan_status_and_access_with_nothing_new_load_neither_the_judge_nor_checkpoints(
    people: People, tmp_path: Path
) -> None:
    """They answer from the state, which holds the branch's tip already: `plan` and
    `status` from the decisions it keeps, `access` from its effective policy."""
    repo = tmp_path / "config"
    assert init_repository(people, repo, *ROOT_ADMIN).exit_code == 0
    at = ["--repo", str(repo)]
    (first,) = run_in_one_process([["verify", *at]])  # anchors: the walk judges
    assert first.code == 0
    assert loaded(first.modules, JUDGING) != []
    for command in (["plan", *at], ["status", *at]):
        (run,) = run_in_one_process([command])
        assert run.code == 0, command
        assert "reconciler.app.pipeline" in run.modules, command  # it decided
        assert "reconciler.adapters.drivers" in run.modules, command  # and asked for drift
        assert loaded(run.modules, JUDGING) == [], command
    (access,) = run_in_one_process([["access", "root", *at]])
    assert access.code == 0
    assert "root" in access.shown
    assert "reconciler.core.access" in access.modules
    assert loaded(access.modules, (*JUDGING, *WALKER)) == []


def test_a_verify_that_walks_loads_no_signing_library(people: People, tmp_path: Path) -> None:
    """Only a command that publishes signs (a record, a checkpoint): a walk that reads
    checkpoints and Ed25519 signatures loads neither the signing adapter nor OpenSSL's."""
    repo = tmp_path / "config"
    assert init_repository(people, repo, *ROOT_ADMIN).exit_code == 0
    (run,) = run_in_one_process([["verify", "--repo", str(repo)]])  # anchors, and walks
    assert run.code == 0
    assert "reconciler.app.checkpoints" in run.modules  # it looked for a checkpoint
    assert loaded(run.modules, ("reconciler.adapters.signing", "cryptography")) == []


def test_history_with_nothing_new_loads_neither_yaml_nor_the_rules_that_decide(
    people: People, tmp_path: Path
) -> None:
    """It renders the trail the state keeps: no plan is decided, no file parsed."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    at = ["--repo", str(repo.path), "--state-dir", str(repo.state_dir)]
    (first,) = run_in_one_process([["history", *at]])  # walks, and keeps the trail
    assert first.code == 0
    (history,) = run_in_one_process([["history", *at]])
    assert history.code == 0
    assert history.shown == first.shown
    assert "alice" in history.shown
    assert "reconciler.app.history" in history.modules
    rules = ("yaml", "reconciler.core.loader", "reconciler.core.decide", "pysequoia")
    builders = ("reconciler.app.history_entries", "reconciler.core.signoffs")
    assert loaded(history.modules, (*rules, *builders, *JUDGING, *WALKER)) == []


def test_plan_status_and_access_read_the_kept_parse_of_environments_and_load_no_yaml(
    people: People, tmp_path: Path
) -> None:
    """A command that reads with nothing new parses environments/ and deployments/ and
    keeps them by blob; the next ones read them back (`kept.parsed_documents`). A walk
    keeps nothing beside its rows: the command after it parses."""
    repo = SeedRepo.create(tmp_path, people)
    repo.deployed("development", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    at = ["--repo", str(repo.path), "--state-dir", str(repo.state_dir)]
    (walked,) = run_in_one_process([["plan", *at]])
    (first,) = run_in_one_process([["plan", *at]])
    assert (walked.code, first.code) == (0, 0)
    assert "yaml" in first.modules  # it parsed, and kept
    for command in (["plan", *at], ["status", *at], ["access", "alice", *at]):
        (run,) = run_in_one_process([command])
        assert run.code == 0, command
        assert loaded(run.modules, ("yaml", "reconciler.core.loader")) == [], command
    (again,) = run_in_one_process([["plan", *at]])
    assert again.shown == first.shown
