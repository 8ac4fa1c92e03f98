"""The execution benchmark: `reconciler apply` against its records made by plain Git, per run.

Run by people and CI as `python -m benchmarks.apply [--plans 200] [--apps 5]
[--environments 1] [--format json]`.
It builds a configuration repository (deterministic in `--seed`; two signed
commits, a few hundred milliseconds): a teams.yaml whose one application team
owns `--apps` applications and whose tech lead holds `plan.deploy` on every
environment, a service account with its key, and `development` (order 1: no
approvals, no promotion) driven by the command driver `["true"]`; with
`--environments N`, the first N of development, qa, staging, preproduction and
production, each promoting from the one before. The tech lead lands `--plans`
plan files of `--apps` applications each in one signed commit: that landing is
every plan's trigger. The plans take the environments in turn, each promoting
the versions of the plan before it, so all of them run in one pass: the first
environment's at once, the next one's as the versions they promote have run.
The repository is pushed to a local bare remote, and every measurement works
on fresh copies of that remote.

(a) `reconciler apply --remote origin --key KEY --format json`, the real CLI in a
    subprocess, in a fresh clone: one pass that runs every plan (the time for
    the whole pass, divided by the runs). Its JSON must name `--plans` runs,
    all succeeded, each plan once; the remote must have gained exactly one
    start and one finish record per run (no per-step commits), every record
    signed by the service account's key (checked by git against an allowed
    signers file), and the sampled run logs must show `--apps` steps ok.
(b) the reference, in another fresh clone: per run, what its records cost when
    made by plain Git: `git commit -S --allow-empty` (the start), the run's
    log written and `git add`ed and `git commit -S` (the finish), and one
    `git push` to the bare remote, gpg.format=ssh with the same key.
(a') the same `reconciler apply` again with nothing left to run: the fixed cost
    of a pass (interpreter start, fetch, verify, decide), for the record.

Goal: (a) per run <= 1.5x (b) per run. (a) and (b) alternate, `--repeat`
times, and the medians count: on a busy machine the ratio moves by a few
tenths between rounds. `--profile` instead runs one pass
in-process (on a fresh clone) with timers around its phases (fetch, verify
walk, gather, decide, record building and signing, push, driver...) and
prints where each run's time goes, self time per phase, plus a cProfile of
the busiest functions (`--profile-top`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import dataclasses
import functools
import hashlib
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from benchmarks.common import BenchmarkError
from benchmarks.generate import DEFAULT_SEED, identity_private_key, openssh_public_key

RATIO_GOAL: Final = 1.5  # reconciler per run / plain-git records per run, at most
ENVIRONMENT: Final = "development"
# With `--environments N`, the first N of this chain: each promotes from the one before.
CHAIN: Final = (ENVIRONMENT, "qa", "staging", "preproduction", "production")
TEAM: Final = "platform"
SETTINGS_ADMIN: Final = "root"
TECH_LEAD: Final = "lead"
SERVICE_ACCOUNT: Final = "reconciler"
INSTANCE: Final = "bench-reconciler"
DRIVER_ARGV: Final = ("true",)
# The anchor and the plans' landing; fixed, so commit ids depend on the seed only.
ANCHOR_DATE: Final = "1767225600 +0000"  # 2026-01-01T00:00:00Z
LANDING_DATE: Final = "1767229200 +0000"  # an hour later
# Git as the benchmark runs it: never the user's or the system's configuration.
GIT_ISOLATION: Final = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
}
_GIT_SCRUBBED: Final = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


@dataclass(frozen=True, slots=True)
class ApplySettings:
    """How many plans of how many applications, and the seed of every key."""

    plans: int = 200
    apps: int = 5
    seed: int = DEFAULT_SEED
    environments: int = 1

    def check(self) -> None:
        """Raise `ValueError` for sizes that make no benchmark."""
        if self.plans < 1:
            raise ValueError("--plans must be at least 1")
        if not 1 <= self.apps <= 99:
            raise ValueError("--apps must be between 1 and 99")
        if not 1 <= self.environments <= len(CHAIN):
            raise ValueError(f"--environments must be between 1 and {len(CHAIN)}")

    @property
    def chain(self) -> tuple[str, ...]:
        return CHAIN[: self.environments]

    def target(self, index: int) -> tuple[str, str | None]:
        """Plan number `index`'s (1-based) environment and the one it promotes from: plans
        take the chain's environments in turn, so plan n+1 promotes plan n's versions."""
        position = (index - 1) % self.environments
        return self.chain[position], self.chain[position - 1] if position else None

    def versions_of(self, index: int) -> int:
        """The release plan number `index` deploys: the same along one turn of the chain."""
        return (index - 1) // self.environments + 1

    @property
    def applications(self) -> tuple[str, ...]:
        return tuple(f"app-{number:02d}" for number in range(1, self.apps + 1))

    @property
    def plan_names(self) -> tuple[str, ...]:
        return tuple(f"bench-{number:04d}" for number in range(1, self.plans + 1))


# -- Git, isolated ----------------------------------------------------------------------------


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for Git: isolated from any configuration, `extra` on top."""
    base = {key: value for key, value in os.environ.items() if key not in _GIT_SCRUBBED}
    return {**base, **GIT_ISOLATION, **(extra or {})}


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run git in `cwd`; its stdout, stripped; `BenchmarkError` unless it exits 0."""
    completed = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else git_environment(),
        check=False,
    )
    if completed.returncode != 0:
        raise BenchmarkError(f"git {' '.join(args)} failed in {cwd}: {completed.stderr.strip()}")
    return completed.stdout.strip()


def identity_environment(name: str, email: str, date: str | None) -> dict[str, str]:
    """GIT_AUTHOR_*/GIT_COMMITTER_* for one person, at `date` ("<seconds> +0000") if given."""
    variables = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    if date is not None:
        variables |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    return git_environment(variables)


def signing_config(key: Path) -> list[str]:
    """`git -c ...` arguments that make `commit -S` sign with the SSH key `key`."""
    return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"]


# -- the configuration repository -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fixture:
    """The pristine repository: a bare remote holding main, and the keys that signed it."""

    settings: ApplySettings
    remote: Path  # bare; copied for every measurement, never changed
    keys: Mapping[str, Path]  # identity -> OpenSSH private key file (public key beside it)
    allowed_signers: Path  # for `git log %G?`: every identity's email and public key
    tip: str

    @property
    def service_key(self) -> Path:
        return self.keys[SERVICE_ACCOUNT]


def write_private_key(key: Ed25519PrivateKey, path: Path, comment: str) -> Path:
    """`key` as an unencrypted OpenSSH private key file (mode 600) and its `.pub` beside it."""
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    path.chmod(0o600)
    path.with_name(path.name + ".pub").write_text(openssh_public_key(key, comment) + "\n")
    return path


def email_of(identity: str) -> str:
    return f"{identity}@example.com"


def teams_yaml(settings: ApplySettings, keys: Mapping[str, Ed25519PrivateKey]) -> str:
    """One application team owning every application, its tech lead, an admin and the account."""

    def key_of(identity: str) -> str:
        return json.dumps(openssh_public_key(keys[identity], email_of(identity)))

    applications = ", ".join(settings.applications)
    return (
        "# yaml-language-server: $schema=schemas/teams.schema.json\n"
        "# Generated by benchmarks/apply.py.\n"
        "users:\n"
        f"  {SETTINGS_ADMIN}: {{name: Root Admin, emails: [{email_of(SETTINGS_ADMIN)}], "
        f"keys: [{key_of(SETTINGS_ADMIN)}]}}\n"
        f"  {TECH_LEAD}: {{name: Lee Lead, emails: [{email_of(TECH_LEAD)}], "
        f"keys: [{key_of(TECH_LEAD)}]}}\n"
        "service_accounts:\n"
        f"  {SERVICE_ACCOUNT}: {{emails: [{email_of(SERVICE_ACCOUNT)}], "
        f"keys: [{key_of(SERVICE_ACCOUNT)}]}}\n"
        "infrastructure:\n"
        f"  settings: [{SETTINGS_ADMIN}]\n"
        "teams:\n"
        f"  {TEAM}:\n"
        f"    applications: [{applications}]\n"
        f"    members: {{{TECH_LEAD}: tech-lead}}\n"
    )


def environment_yaml(order: int = 1) -> str:
    """Environment number `order` of the chain, promoting from the one before: tech leads
    deploy their own builds without approvals; the driver does nothing."""
    argv = ", ".join(json.dumps(part) for part in DRIVER_ARGV)
    promotes = f"promotes_from: {CHAIN[order - 2]}\n" if order > 1 else ""
    return (
        "# yaml-language-server: $schema=../schemas/environment.schema.json\n"
        f"name: {CHAIN[order - 1]}\n"
        f"order: {order}\n"
        f"{promotes}"
        "permissions:\n"
        "  plan.edit: [tech-lead, developer]\n"
        "  plan.approve: [tech-lead]\n"
        "  plan.deploy: [deployment, tech-lead]\n"
        "gates:\n"
        "  approvals: []\n"
        "  signed_commits: false\n"
        f"driver: {{type: command, argv: [{argv}], timeout: 60}}\n"
    )


def plan_yaml(settings: ApplySettings, index: int) -> str:
    """Plan number `index` (1-based): every application, each at its own version; past the
    first environment, the versions the plan before it deployed, promoted from there."""
    release = settings.versions_of(index)
    target, source = settings.target(index)
    entries = "".join(
        f'  - {{name: {application}, version: "1.{release}.{number}"}}\n'
        for number, application in enumerate(settings.applications, start=1)
    )
    return (
        "# yaml-language-server: $schema=../schemas/plan.schema.json\n"
        f"name: {settings.plan_names[index - 1]}\n"
        f"target: {target}\n" + (f"source: {source}\n" if source else "") + "applications:\n"
        f"{entries}"
        "state: ready\n"
    )


def plan_files(settings: ApplySettings) -> dict[str, str]:
    return {
        f"plans/{name}.yaml": plan_yaml(settings, index)
        for index, name in enumerate(settings.plan_names, start=1)
    }


def _commit_files(
    work: Path,
    files: Mapping[str, str],
    by: tuple[str, str],  # identity, name
    key: Path,
    date: str,
    message: str,
) -> None:
    """Write `files` and commit them, signed with `key`, as `by` at `date`."""
    for relative, text in files.items():
        target = work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git(work, "add", "-A")
    identity, name = by
    environment = identity_environment(name, email_of(identity), date)
    git(work, *signing_config(key), "commit", "-q", "-S", "-m", message, env=environment)


def build_fixture(settings: ApplySettings, directory: Path) -> Fixture:
    """The pristine repository in `directory` (which must not exist yet)."""
    settings.check()
    directory.mkdir(parents=True)
    keys_dir = directory / "keys"
    keys_dir.mkdir()
    private = {
        identity: identity_private_key(settings.seed, f"apply:{identity}")
        for identity in (SETTINGS_ADMIN, TECH_LEAD, SERVICE_ACCOUNT)
    }
    keys = {
        identity: write_private_key(key, keys_dir / identity, email_of(identity))
        for identity, key in private.items()
    }
    work = directory / "author"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    _commit_files(
        work,
        {
            "teams.yaml": teams_yaml(settings, private),
            **{
                f"environments/{name}.yaml": environment_yaml(order)
                for order, name in enumerate(settings.chain, start=1)
            },
        },
        (SETTINGS_ADMIN, "Root Admin"),
        keys[SETTINGS_ADMIN],
        ANCHOR_DATE,
        "Seed configuration",
    )
    # The tech lead's landing is every plan's trigger (plan.deploy everywhere).
    _commit_files(
        work,
        plan_files(settings),
        (TECH_LEAD, "Lee Lead"),
        keys[TECH_LEAD],
        LANDING_DATE,
        f"Add {settings.plans} plans of {settings.apps} applications",
    )
    remote = directory / "pristine.git"
    git(directory, "init", "-q", "--bare", "-b", "main", str(remote))
    git(work, "push", "-q", str(remote), "main")
    shutil.rmtree(work)
    allowed = keys_dir / "allowed_signers"
    allowed.write_text(
        "".join(
            f'{email_of(identity)} namespaces="git" {openssh_public_key(key, identity)}\n'
            for identity, key in private.items()
        )
    )
    return Fixture(settings, remote, keys, allowed, git(remote, "rev-parse", "main"))


@dataclass(frozen=True, slots=True)
class Workspace:
    """A fresh copy of the remote and a clone of it, with a state directory and a driver root."""

    remote: Path
    clone: Path
    state_dir: Path
    driver_root: Path


def fresh_workspace(fixture: Fixture, directory: Path) -> Workspace:
    """A new bare copy of the pristine remote under `directory`, cloned; nothing else shared."""
    directory.mkdir(parents=True)
    remote = directory / "remote.git"
    git(directory, "clone", "-q", "--bare", "--no-local", str(fixture.remote), str(remote))
    clone = directory / "clone"
    git(directory, "clone", "-q", str(remote), str(clone))
    return Workspace(remote, clone, directory / "state", directory / "releases")


# -- (a) the reconciler -----------------------------------------------------------------------


def reconciler_launcher() -> list[str]:
    """The installed `reconciler` script next to this Python, else `python -m reconciler`."""
    script = Path(sys.executable).parent / "reconciler"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "reconciler"]


def apply_argv(fixture: Fixture, workspace: Workspace) -> list[str]:
    return [
        *reconciler_launcher(),
        "apply",
        "--repo",
        str(workspace.clone),
        "--remote",
        "origin",
        "--key",
        str(fixture.service_key),
        "--state-dir",
        str(workspace.state_dir),
        "--driver-root",
        str(workspace.driver_root),
        "--instance",
        INSTANCE,
        "--format",
        "json",
    ]


def run_apply(fixture: Fixture, workspace: Workspace) -> tuple[float, dict[str, Any]]:
    """Seconds one `reconciler apply` took, and its JSON report; it must exit 0."""
    argv = apply_argv(fixture, workspace)
    started = time.perf_counter()
    completed = subprocess.run(
        argv, capture_output=True, text=True, env=git_environment(), check=False
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        lines = (completed.stdout + completed.stderr).strip().splitlines()
        raise BenchmarkError(
            f"reconciler apply exited {completed.returncode}:\n" + "\n".join(lines[-20:])
        )
    try:
        report: dict[str, Any] = json.loads(completed.stdout)
    except json.JSONDecodeError as error:
        raise BenchmarkError(f"reconciler apply printed no JSON report: {error}") from None
    return elapsed, report


@dataclass(slots=True)
class PassCheck:
    """What one timed pass did, against what it had to do."""

    runs: int = 0
    succeeded: int = 0
    start_records: int = 0
    finish_records: int = 0
    bookkeeping_records: int = 0
    other_commits: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


# One record per NUL-terminated entry: id, signer key, trailers.
_RECORD_FORMAT: Final = "%H%x1f%GK%x1f%G?%x1f%(trailers:only,unfold)%x00"


def new_commits(
    remote: Path, base: str, allowed_signers: Path
) -> list[tuple[str, str, str, dict[str, str]]]:
    """Commits on the remote's main after `base`: (id, signing key, %G?, trailers), oldest first.

    Signatures are checked by git itself (ssh-keygen against `allowed_signers`).
    """
    output = git(
        remote,
        "-c",
        f"gpg.ssh.allowedSignersFile={allowed_signers}",
        "log",
        "--reverse",
        f"--format={_RECORD_FORMAT}",
        f"{base}..main",
    )
    commits = []
    for raw in output.split("\0"):
        entry = raw.strip("\n")
        if not entry:
            continue
        commit, key, validity, trailer_text = entry.split("\x1f")
        trailers = dict(line.split(": ", 1) for line in trailer_text.splitlines() if ": " in line)
        commits.append((commit, key, validity, trailers))
    return commits


def check_pass(fixture: Fixture, workspace: Workspace, report: Mapping[str, Any]) -> PassCheck:
    """Every plan ran once and succeeded; the remote holds one start and one finish per run."""
    settings = fixture.settings
    check = PassCheck()
    runs = report.get("runs", [])
    check.runs = len(runs)
    check.succeeded = sum(run.get("result") == "succeeded" for run in runs)
    expected_plans = sorted(f"plans/{name}.yaml" for name in settings.plan_names)
    ran = sorted(run.get("plan") for run in runs)
    if ran != expected_plans:
        missing = sorted(set(expected_plans) - set(ran))
        repeated = sorted({plan for plan in ran if ran.count(plan) > 1})
        check.problems.append(
            f"runs do not cover every plan exactly once: {len(ran)} runs, "
            f"missing {missing[:5]}, repeated {repeated[:5]}"
        )
    if check.succeeded != settings.plans:
        check.problems.append(f"{check.succeeded} of {settings.plans} runs succeeded")
    if report.get("refused") or report.get("interrupted") or report.get("failed"):
        check.problems.append(
            f"the pass refused {report.get('refused')} / interrupted {report.get('interrupted')}"
        )
    service_fingerprint = _fingerprint(fixture.service_key)
    finished_runs: set[str] = set()
    for commit, key, validity, trailers in new_commits(
        workspace.remote, fixture.tip, fixture.allowed_signers
    ):
        result = trailers.get("Result")
        if result == "started":
            check.start_records += 1
        elif result == "succeeded":
            check.finish_records += 1
            finished_runs.add(trailers.get("Run", ""))
        elif result in {"refused", "interrupted"}:
            check.bookkeeping_records += 1
        else:
            check.other_commits += 1
            check.problems.append(f"{commit[:12]} is no start, finish or bookkeeping record")
        if key != service_fingerprint or validity != "G":
            check.problems.append(f"{commit[:12]} is not signed by the service account's key")
    if check.start_records != settings.plans or check.finish_records != settings.plans:
        check.problems.append(
            f"the remote gained {check.start_records} start and {check.finish_records} finish "
            f"records for {settings.plans} runs (want exactly one of each per run)"
        )
    for run in runs:
        if run.get("run") not in finished_runs:
            check.problems.append(f"run {run.get('run')} has no finish record on the remote")
            break
    check.problems.extend(_check_logs(workspace, settings, runs))
    return check


def _check_logs(
    workspace: Workspace, settings: ApplySettings, runs: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Every run's log on the remote says each application deployed once, in plan order."""
    listed = git(workspace.remote, "ls-tree", "-r", "--name-only", "main", "--", "logs").split()
    if len(listed) != len(runs):
        return [f"{len(listed)} run logs on the remote for {len(runs)} runs"]
    sample = listed[:: max(1, len(listed) // 5)]  # a few logs are enough to show the steps ran
    problems = []
    for path in sample:
        text = git(workspace.remote, "show", f"main:{path}")
        oks = [line for line in text.splitlines() if "] ok: " in line]
        if len(oks) != settings.apps or not text.rstrip().endswith("result succeeded"):
            problems.append(f"{path}: {len(oks)} steps ok of {settings.apps}")
    return problems


def _fingerprint(private_key: Path) -> str:
    """The SHA256 fingerprint git prints for %GK, of the public key beside `private_key`."""
    line = private_key.with_name(private_key.name + ".pub").read_text().split()
    digest = hashlib.sha256(base64.b64decode(line[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# -- (b) the reference: the same records by plain git ------------------------------------------


REFERENCE_PARTS: Final = (
    "signed commit (start)",
    "git add (log)",
    "signed commit (finish)",
    "push",
)


def reference_records(fixture: Fixture, workspace: Workspace, runs: int) -> dict[str, float]:
    """Seconds for `runs` x (signed start commit, log file + signed finish commit, push).

    By part (`REFERENCE_PARTS`); their sum is the reference.
    """
    clone = workspace.clone
    environment = identity_environment(SERVICE_ACCOUNT, email_of(SERVICE_ACCOUNT), date=None)
    sign = signing_config(fixture.service_key)
    settings = fixture.settings
    names = settings.plan_names
    parts = dict.fromkeys(REFERENCE_PARTS, 0.0)
    for number in range(runs):
        plan = names[number % len(names)]
        run = f"{plan}.{number // len(names) + 1}"
        start = ["commit", "-q", "-S", "--allow-empty", "-m", f"Start {plan}\n\nRun: {run}"]
        parts["signed commit (start)"] += _git_timed(clone, [*sign, *start], environment)
        log = clone / "logs" / settings.target(number % len(names) + 1)[0] / plan / f"{run}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"run {run}\nresult succeeded\n", encoding="utf-8")
        add = ["add", "--", str(log.relative_to(clone))]
        parts["git add (log)"] += _git_timed(clone, add, environment)
        finish = ["commit", "-q", "-S", "-m", f"Deploy {plan}: succeeded\n\nRun: {run}"]
        parts["signed commit (finish)"] += _git_timed(clone, [*sign, *finish], environment)
        parts["push"] += _git_timed(clone, ["push", "-q", "origin", "main"], environment)
    return parts


def _git_timed(cwd: Path, args: list[str], environment: Mapping[str, str]) -> float:
    """Seconds one git command took, wall clock, as a caller in Python sees it."""
    started = time.perf_counter()
    completed = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, env=environment, check=False
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise BenchmarkError(
            f"reference: git {' '.join(args)} failed: {completed.stderr.decode().strip()}"
        )
    return elapsed


def check_reference(fixture: Fixture, workspace: Workspace, runs: int) -> list[str]:
    count = int(git(workspace.remote, "rev-list", "--count", f"{fixture.tip}..main"))
    return [] if count == 2 * runs else [f"the reference pushed {count} commits for {runs} runs"]


# -- measuring ------------------------------------------------------------------------------


@dataclass(slots=True)
class Measurement:
    """Repeated timings of one thing, each over `runs` runs, in seconds."""

    key: str
    label: str
    runs: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def per_run(self) -> float:
        return self.median / self.runs

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "runs_per_measurement": self.runs,
            "median_seconds": self.median,
            "min_seconds": min(self.seconds),
            "seconds_per_run": self.per_run,
            "seconds": self.seconds,
        }


@dataclass(slots=True)
class Results:
    settings: ApplySettings
    reconciler: Measurement
    reference: Measurement
    idle: Measurement
    checks: list[PassCheck] = field(default_factory=list)
    reference_parts: list[dict[str, float]] = field(default_factory=list)
    build_seconds: float = 0.0

    def reference_part_per_run(self, part: str) -> float:
        """The median over measurements of one part of the reference, per run, in seconds."""
        return statistics.median(parts[part] for parts in self.reference_parts) / (
            self.settings.plans
        )

    @property
    def ratio(self) -> float:
        return self.reconciler.per_run / self.reference.per_run

    @property
    def status(self) -> str:
        return "PASS" if self.ratio <= RATIO_GOAL else "MISS"

    @property
    def round_ratios(self) -> list[float]:
        """(a) / (b) of each round: how much the ratio moves with the machine's load."""
        return [
            ours / theirs
            for ours, theirs in zip(self.reconciler.seconds, self.reference.seconds, strict=True)
        ]


def measure(fixture: Fixture, scratch: Path, *, repeat: int) -> Results:
    """(a), (b) and (a') `repeat` times each, alternating, each on fresh copies of the remote."""
    plans = fixture.settings.plans
    results = Results(
        fixture.settings,
        reconciler=Measurement("a", "reconciler apply, every plan (subprocess)", plans),
        reference=Measurement("b", "plain git: 2 signed commits + push per run", plans),
        idle=Measurement("a_idle", "reconciler apply, nothing left to run", 1),
    )
    for round_index in range(repeat):
        workspace = fresh_workspace(fixture, scratch / f"reconciler-{round_index}")
        seconds, report = run_apply(fixture, workspace)
        check = check_pass(fixture, workspace, report)
        results.checks.append(check)
        if not check.passed:
            raise BenchmarkError(
                "reconciler apply did not run every plan exactly once:\n  "
                + "\n  ".join(check.problems[:10])
            )
        results.reconciler.seconds.append(seconds)
        idle_seconds, idle_report = run_apply(fixture, workspace)
        if idle_report.get("runs"):
            raise BenchmarkError(f"a second pass ran {len(idle_report['runs'])} runs again")
        results.idle.seconds.append(idle_seconds)

        reference = fresh_workspace(fixture, scratch / f"reference-{round_index}")
        parts = reference_records(fixture, reference, plans)
        results.reference_parts.append(parts)
        results.reference.seconds.append(sum(parts.values()))
        problems = check_reference(fixture, reference, plans)
        if problems:
            raise BenchmarkError("; ".join(problems))
        shutil.rmtree(workspace.remote.parent)
        shutil.rmtree(reference.remote.parent)
    return results


# -- where the time goes: the pass in-process, with timers around its phases -------------------


@dataclass(slots=True)
class Phase:
    label: str
    calls: int = 0
    inclusive: float = 0.0
    self_time: float = 0.0


class PhaseTimer:
    """Wraps functions in place with timers; self time is inclusive time minus timed callees."""

    def __init__(self) -> None:
        self.phases: dict[str, Phase] = {}
        self._stack = threading.local()
        self._restore: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)
        phase = self.phases.setdefault(label, Phase(label))
        stack = self._stack

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            frames: list[float] = stack.__dict__.setdefault("frames", [])
            frames.append(0.0)  # time spent in timed callees
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                children = frames.pop()
                phase.calls += 1
                phase.inclusive += elapsed
                phase.self_time += elapsed - children
                if frames:
                    frames[-1] += elapsed

        self.replace(owner, attribute, timed)

    def replace(self, owner: object, attribute: str, value: object) -> None:
        """Set `owner.attribute` to `value` until `restore()`."""
        self._restore.append((owner, attribute, getattr(owner, attribute)))
        setattr(owner, attribute, value)

    def restore(self) -> None:
        for owner, attribute, original in reversed(self._restore):
            setattr(owner, attribute, original)
        self._restore.clear()


class _InlineExecutor:
    """What `reconcile` uses of ThreadPoolExecutor (`with`, `map`), on the calling thread."""

    def __init__(self, max_workers: int | None = None) -> None:
        del max_workers

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def map(self, function: Callable[..., Any], *iterables: Any) -> Iterator[Any]:
        return iter([function(*arguments) for arguments in zip(*iterables, strict=True)])


# (module, attribute path, label): self times add up to the pass. Methods that
# start a git process are timed on their own, so the phase that calls them
# keeps only its Python time.
PHASES: Final = (
    ("reconciler.app.reconcile", "Reconciler.pass_once", "pass loop (rest)"),
    ("reconciler.app.finishing", "FinishRecords.flush_outbox", "flush outbox"),
    ("reconciler.app.reconcile", "Reconciler.plan_pass", "plan pass loop (rest)"),
    ("reconciler.app.reconcile", "Reconciler._observe", "observe (rest)"),
    ("reconciler.app.record", "Publisher.tip", "fetch (rest)"),
    ("reconciler.adapters.gitrepo", "GitRepo.fetch", "git fetch"),
    ("reconciler.adapters.gitrun", "GitRunner.resolve", "git rev-parse (resolve)"),
    ("reconciler.app.authorise", "Authoriser.__init__", "verify: Authoriser() construction"),
    ("reconciler.app.authorise", "Authoriser.run", "verify: walk and judge (Python, sqlite)"),
    ("reconciler.adapters.statestore", "StateStore.effective", "verify: load effective state"),
    ("reconciler.adapters.statestore", "StateStore._commit", "verify: state store commit"),
    ("reconciler.adapters.gitrepo", "GitRepo.is_ancestor", "verify: git merge-base --is-ancestor"),
    ("reconciler.adapters.gitrepo", "GitRepo.first_parent_chain", "verify: git rev-list"),
    ("reconciler.app.commit_cache", "check_commit_signature", "verify: record signature checks"),
    ("reconciler.app.pipeline", "gather", "gather (Python, sqlite)"),
    ("reconciler.adapters.gitrepo", "GitRepo.tree_files", "gather: git ls-tree plans/"),
    (
        "reconciler.adapters.statestore",
        "StateStore.events",
        "state store: events (records, signoffs)",
    ),
    ("reconciler.adapters.statestore", "StateStore.editors", "gather: editors per plan"),
    ("reconciler.app.pipeline", "decide", "decide"),
    ("reconciler.app.reconcile", "Reconciler._writer", "record writer for the policy"),
    ("reconciler.app.reconcile", "Reconciler._bookkeeping", "bookkeeping check (refusals, leases)"),
    ("reconciler.app.reconcile", "decide_runs", "decide runs (starts, leases, interruptions)"),
    ("reconciler.app.reconcile", "Reconciler._starts", "start (rest)"),
    ("reconciler.app.reconcile", "Reconciler._run_all", "run all (rest)"),
    ("reconciler.app.reconcile", "Reconciler.run_started", "run one (rest)"),
    ("reconciler.app.reconcile", "Reconciler._execute", "execute (rest)"),
    ("reconciler.adapters.process", "run", "driver processes (process.run)"),
    ("reconciler.app.finishing", "FinishRecords.finish", "finish (rest)"),
    ("reconciler.app.finishing", "FinishRecords._publish_finish", "publish finish (rest)"),
    # Imported by name into the pass too: timed where each module calls it.
    ("reconciler.app.finishing", "deployments_in", "read deployments/<env>.yaml"),
    ("reconciler.app.reconcile", "deployments_in", "read deployments/<env>.yaml"),
    ("reconciler.adapters.statestore", "StateStore.put_outbox", "state store: outbox"),
    ("reconciler.adapters.statestore", "StateStore.clear_outbox", "state store: outbox"),
    ("reconciler.app.record", "RecordWriter.commit", "record commit (rest)"),
    ("reconciler.adapters.gitrepo", "GitRepo.commit", "read commit objects (cat-file)"),
    ("reconciler.adapters.gitwriting", "GitWriting.tree_with", "tree building (rest)"),
    (
        "reconciler.adapters.gitwriting",
        "GitWriting.write_object",
        "write objects (git hash-object -w)",
    ),
    ("reconciler.app.record", "signed_commit", "sign (in-process SSHSIG)"),
    ("reconciler.app.record", "Publisher.publish", "push (rest)"),
    ("reconciler.adapters.gitwriting", "GitWriting.push", "git push + update-ref"),
)


@dataclass(slots=True)
class Profile:
    settings: ApplySettings
    runs: int
    seconds: float
    phases: list[Phase]
    cprofile: str
    missing: tuple[str, ...] = ()  # phases not timed: the reconciler no longer has them

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "seconds": self.seconds,
            "seconds_per_run": self.seconds / max(1, self.runs),
            "phases": [
                {
                    "label": phase.label,
                    "calls": phase.calls,
                    "inclusive_seconds": phase.inclusive,
                    "self_seconds": phase.self_time,
                    "self_ms_per_run": 1000 * phase.self_time / max(1, self.runs),
                }
                for phase in self.phases
            ],
            "not_timed": list(self.missing),
            "cprofile": self.cprofile,
        }


@contextlib.contextmanager
def _isolated_git_environment() -> Iterator[None]:
    saved = dict(os.environ)
    for name in _GIT_SCRUBBED:
        os.environ.pop(name, None)
    os.environ.update(GIT_ISOLATION)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _resolve(module_name: str, dotted: str) -> tuple[object, str] | None:
    """The object holding `dotted` in `module_name` and the attribute; None when it is gone."""
    owner: object = sys.modules[module_name]
    *path, attribute = dotted.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    return (owner, attribute) if callable(getattr(owner, attribute, None)) else None


def profile_apply(fixture: Fixture, scratch: Path, *, top: int) -> Profile:
    """One pass in-process on a fresh clone, drivers inline, phases timed, cProfile around it."""
    import reconciler.adapters.gitrepo  # noqa: PLC0415
    import reconciler.adapters.process  # noqa: PLC0415
    import reconciler.adapters.statestore  # noqa: PLC0415
    import reconciler.app.authorise  # noqa: PLC0415 - the modules whose functions are wrapped
    import reconciler.app.finishing  # noqa: PLC0415
    import reconciler.app.passes  # noqa: PLC0415
    import reconciler.app.reconcile  # noqa: PLC0415
    import reconciler.app.record  # noqa: PLC0415

    workspace = fresh_workspace(fixture, scratch / "profile")
    timer = PhaseTimer()
    missing = []
    for module_name, dotted, label in PHASES:
        found = _resolve(module_name, dotted)
        if found is None:
            missing.append(f"{module_name}.{dotted}")  # renamed since: its time goes to callers
        else:
            timer.wrap(*found, label)
    options = reconciler.app.passes.Options(
        remote="origin",
        state_dir=workspace.state_dir,
        key=fixture.service_key,
        instance=INSTANCE,
        driver_root=workspace.driver_root,
    )
    # One environment, so one run per round: running it on this thread changes nothing
    # but lets cProfile (which sees one thread) and the timers' stack see it.
    timer.replace(reconciler.app.reconcile, "ThreadPoolExecutor", _InlineExecutor)
    profiler = cProfile.Profile()
    try:
        with (
            _isolated_git_environment(),
            reconciler.app.reconcile.Reconciler(
                workspace.clone,
                options,
                clock=lambda: datetime.now(UTC),
                sleep=time.sleep,
            ) as instance,
        ):
            started = time.perf_counter()
            if top > 0:
                profiler.enable()
            report = instance.pass_once()
            profiler.disable()
            seconds = time.perf_counter() - started
    finally:
        timer.restore()
    succeeded = sum(run.result == "succeeded" for run in report.runs)
    if succeeded != fixture.settings.plans:
        raise BenchmarkError(f"the profiled pass ran {succeeded} of {fixture.settings.plans}")
    out = io.StringIO()
    if top > 0:
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    phases = sorted(timer.phases.values(), key=lambda phase: phase.self_time, reverse=True)
    return Profile(
        fixture.settings, len(report.runs), seconds, phases, out.getvalue(), tuple(missing)
    )


def render_profile(profile: Profile) -> str:
    runs = max(1, profile.runs)
    lines = [
        f"in-process pass: {profile.runs} runs of {profile.settings.apps} applications in "
        f"{profile.seconds:.2f} s = {1000 * profile.seconds / runs:.1f} ms per run (runs on "
        f"this thread{'; cProfile on, so slower than the CLI' if profile.cprofile else ''})",
        "",
        f"{'phase (self time: timed callees excluded)':<44} {'calls':>7} {'ms/run':>8} "
        f"{'share':>6}",
    ]
    for phase in profile.phases:
        if not phase.calls:
            continue
        lines.append(
            f"{phase.label:<44} {phase.calls:>7} {1000 * phase.self_time / runs:>8.2f} "
            f"{100 * phase.self_time / profile.seconds:>5.1f}%"
        )
    accounted = sum(phase.self_time for phase in profile.phases)
    lines.append(
        f"{'(outside every timed phase)':<44} {'':>7} "
        f"{1000 * (profile.seconds - accounted) / runs:>8.2f}"
    )
    if profile.missing:
        lines.append("not timed (no longer in the reconciler): " + ", ".join(profile.missing))
    return "\n".join([*lines, "", profile.cprofile])


# -- reporting ------------------------------------------------------------------------------


def render_text(results: Results) -> str:
    settings = results.settings

    def row(key: str, measurement: Measurement) -> str:
        return (
            f"{key + ' ' + measurement.label:<48} {measurement.median:>9.3f} "
            f"{1000 * measurement.per_run:>8.2f} {len(measurement.seconds):>5}"
        )

    check = results.checks[-1]
    marginal = (results.reconciler.median - results.idle.median) / settings.plans
    lines = [
        f"repository: {settings.plans} executable plans x {settings.apps} applications "
        f"over {', '.join(settings.chain)}, command driver {list(DRIVER_ARGV)}, "
        f"local bare remote (built in {results.build_seconds:.2f} s)",
        "",
        f"{'measurement':<48} {'median s':>9} {'ms/run':>8} {'runs':>5}",
        row("(a)", results.reconciler),
        f"     checked: {check.succeeded}/{check.runs} runs succeeded, {check.start_records} start "
        f"+ {check.finish_records} finish records, {check.bookkeeping_records} bookkeeping, "
        f"{check.other_commits} other commits",
        f"     without the fixed cost of a pass, (a - a') / runs: {1000 * marginal:.2f} ms/run",
        row("(b)", results.reference),
        "     "
        + ", ".join(
            f"{part} {1000 * results.reference_part_per_run(part):.1f}" for part in REFERENCE_PARTS
        )
        + " ms/run",
        row("(a')", results.idle),
        "",
        f"{'goal':<44} {'ratio':>8}  {'target':<10} result",
        f"{'reconciler / plain git records, per run':<44} {results.ratio:>7.2f}x  "
        f"{'<= ' + format(RATIO_GOAL, 'g') + 'x':<10} {results.status}",
        "     ratio of each round: " + ", ".join(f"{ratio:.2f}x" for ratio in results.round_ratios),
    ]
    return "\n".join(lines)


def render_json(results: Results) -> str:
    return json.dumps(
        {
            "repository": {
                "plans": results.settings.plans,
                "apps": results.settings.apps,
                "environments": list(results.settings.chain),
                "seed": results.settings.seed,
                "driver": list(DRIVER_ARGV),
                "build_seconds": results.build_seconds,
            },
            "measurements": {
                measurement.key: measurement.as_json()
                for measurement in (results.reconciler, results.reference, results.idle)
            },
            "reference_ms_per_run": {
                part: 1000 * results.reference_part_per_run(part) for part in REFERENCE_PARTS
            },
            "checks": [check.as_json() for check in results.checks],
            "goals": [
                {
                    "name": "reconciler / plain git records, per run",
                    "ratio": results.ratio,
                    "bound": RATIO_GOAL,
                    "direction": "at most",
                    "status": results.status,
                    "ratio_per_round": results.round_ratios,
                }
            ],
            "platform": {
                "python": sys.version.split()[0],
                "implementation": platform.python_implementation(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "git": git(Path.cwd(), "--version"),
            },
        },
        indent=2,
    )


# -- command line -----------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = ApplySettings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.apply",
        description="Time reconciler apply per run against its records made by plain git.",
    )
    parser.add_argument("--plans", type=int, default=defaults.plans, help="executable plans")
    parser.add_argument("--apps", type=int, default=defaults.apps, help="applications per plan")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--environments",
        type=int,
        default=defaults.environments,
        help=f"environments in a promotion chain (1-{len(CHAIN)}), the plans spread over them",
    )
    parser.add_argument("--repeat", type=int, default=1, help="measurements of (a), (b), (a')")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="work here (must not exist; kept afterwards) instead of a temporary directory",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing, run one pass in-process and print where each run's time goes",
    )
    parser.add_argument(
        "--profile-top",
        type=int,
        default=25,
        metavar="N",
        help="cProfile rows with --profile (0: no cProfile, only the phase timers)",
    )
    arguments = parser.parse_args(argv)
    if arguments.repeat < 1:
        parser.error("--repeat must be at least 1")
    return arguments


@contextlib.contextmanager
def scratch_directory(directory: Path | None) -> Iterator[Path]:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=False)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-apply-") as scratch:
        yield Path(scratch)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = ApplySettings(
        plans=arguments.plans,
        apps=arguments.apps,
        seed=arguments.seed,
        environments=arguments.environments,
    )
    try:
        settings.check()
        with scratch_directory(arguments.dir) as scratch:
            started = time.perf_counter()
            fixture = build_fixture(settings, scratch / "fixture")
            build_seconds = time.perf_counter() - started
            if arguments.profile:
                profile = profile_apply(fixture, scratch, top=arguments.profile_top)
                print(
                    json.dumps(profile.as_json(), indent=2)
                    if arguments.format == "json"
                    else render_profile(profile)
                )
                return 0
            results = measure(fixture, scratch, repeat=arguments.repeat)
            results.build_seconds = build_seconds
    except (BenchmarkError, ValueError, FileExistsError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(render_json(results) if arguments.format == "json" else render_text(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
