"""The continuous-reconciliation benchmark: merge-to-deploy latency and a watcher's footprint.

Run by people and CI as `python -m benchmarks.watch [--merges 50] [--passes 1000] [--format json]`.
It builds a configuration repository (deterministic keys from `--seed`): a
settings admin, a tech lead whose team owns one application and who may deploy
to `development` (no approvals, the embedded `local` driver), and the service
account. It lives in a bare repository, the source of truth, watched by the
real `reconciler watch` in a subprocess (file events; `--format json` log
lines are read from its stderr). A thread polls the bare repository's ref
every millisecond and notes when each commit first appears.

(a) latency: `--merges` times, a feature branch with one new plan is merged
    (`git merge --no-ff -S`, the tech lead) and pushed; the time from `git push`
    returning to the run's start record existing on the branch. Each merge
    waits for the run's finish record before the next. Goal: p50 < 0.25 s,
    p95 < 0.5 s.
(b) footprint: signed commits are pushed one at a time (every 25th adds a
    plan, so runs and their records happen too; `--plan-every N` every Nth,
    0 never, so that main stays as it is and only the history grows), each
    awaited until the
    watcher's pass for it is logged, until the watcher has made `--passes`
    passes. Every 10% of the way its resident memory (VmRSS, and the peak,
    VmHWM), open file descriptors (/proc/<pid>/fd), threads and child
    processes are read, with the number of commits on main then (the
    history's length). Goal: flat, measured from the 20% mark (after warm-up)
    to the end: RSS grows by at most 10%, and by at most 1 KiB per commit the
    history grew (a service runs for months on hundreds of thousands of
    commits; what still grows here follows the plans on main and their runs,
    one each per 25 commits), descriptors, threads and children not at all.
    The growth per pass is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from reconciler.adapters.drivers import ARTIFACTS

LATENCY_P50_GOAL: Final = 0.25
LATENCY_P95_GOAL: Final = 0.5
RSS_GROWTH_GOAL: Final = 0.10
RSS_PER_COMMIT_GOAL: Final = 1.0  # KiB of resident memory per commit the history grows by
PLAN_EVERY: Final = 25  # in (b), by default every 25th commit adds a plan
WAIT: Final = 60.0  # seconds any one step may take before the benchmark gives up
ENVIRONMENT: Final = "development"
APPLICATION: Final = "shop"
PEOPLE: Final = {"root": "Root Admin", "lead": "Lee Lead", "reconciler": "Reconciler"}
GIT_ISOLATION: Final = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


@dataclass(frozen=True, slots=True)
class Settings:
    merges: int = 50
    passes: int = 1000
    seed: int = DEFAULT_SEED
    plan_every: int = PLAN_EVERY  # in (b), every Nth commit adds a plan; 0: none does

    def check(self) -> None:
        if self.merges < 2:
            raise ValueError("--merges must be at least 2")
        if self.passes < 10:
            raise ValueError("--passes must be at least 10")
        if self.plan_every < 0:
            raise ValueError("--plan-every must be 0 (never) or more")


# -- Git ------------------------------------------------------------------------------------


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    scrubbed = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")
    base = {key: value for key, value in os.environ.items() if key not in scrubbed}
    return {**base, **GIT_ISOLATION, **(extra or {})}


def _git(
    cwd: Path, args: Sequence[str], env: Mapping[str, str] | None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else git_environment(),
        check=False,
    )


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """git's stdout, stripped; BenchmarkError unless it exits 0."""
    completed = _git(cwd, args, env)
    if completed.returncode != 0:
        raise BenchmarkError(f"git {' '.join(args)} failed in {cwd}: {completed.stderr.strip()}")
    return completed.stdout.strip()


def git_succeeds(cwd: Path, *args: str) -> bool:
    return _git(cwd, args, None).returncode == 0


@dataclass(frozen=True, slots=True)
class Author:
    """Someone who commits, signed with their SSH key."""

    identity: str
    key: Path

    @property
    def email(self) -> str:
        return f"{self.identity}@example.com"

    def env(self) -> dict[str, str]:
        name = PEOPLE[self.identity]
        return git_environment(
            {
                "GIT_AUTHOR_NAME": name,
                "GIT_AUTHOR_EMAIL": self.email,
                "GIT_COMMITTER_NAME": name,
                "GIT_COMMITTER_EMAIL": self.email,
            }
        )

    def git(self, cwd: Path, *args: str) -> str:
        signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.key}"]
        return git(cwd, *signing, *args, env=self.env())


# -- the repository -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fixture:
    bare: Path  # the source of truth, watched
    work: Path  # the tech lead's clone
    state_dir: Path
    driver_root: Path
    keys: Mapping[str, Path]
    secret: Path

    @property
    def lead(self) -> Author:
        return Author("lead", self.keys["lead"])


def write_key(key: Ed25519PrivateKey, path: Path, comment: str) -> Path:
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    path.chmod(0o600)
    path.with_name(path.name + ".pub").write_text(openssh_public_key(key, comment) + "\n")
    return path


def teams_yaml(keys: Mapping[str, Ed25519PrivateKey]) -> str:
    def key_of(identity: str) -> str:
        return json.dumps(openssh_public_key(keys[identity], identity))

    return (
        "users:\n"
        f"  root: {{name: Root Admin, emails: [root@example.com], keys: [{key_of('root')}]}}\n"
        f"  lead: {{name: Lee Lead, emails: [lead@example.com], keys: [{key_of('lead')}]}}\n"
        "service_accounts:\n"
        "  reconciler: {emails: [reconciler@example.com], "
        f"keys: [{key_of('reconciler')}]}}\n"
        "infrastructure:\n"
        "  settings: [root]\n"
        "teams:\n"
        "  shop:\n"
        f"    applications: [{APPLICATION}]\n"
        "    members: {lead: tech-lead}\n"
    )


def environment_yaml() -> str:
    return (
        f"name: {ENVIRONMENT}\n"
        "order: 1\n"
        "permissions:\n"
        "  plan.edit: [tech-lead, developer]\n"
        "  plan.approve: [tech-lead]\n"
        "  plan.deploy: [deployment, tech-lead]\n"
        "gates:\n"
        "  approvals: []\n"
        "  signed_commits: true\n"
        "driver: {type: local}\n"
    )


def plan_yaml(name: str, version: str) -> str:
    return (
        f"name: {name}\n"
        f"target: {ENVIRONMENT}\n"
        "applications:\n"
        f'  - {{name: {APPLICATION}, version: "{version}"}}\n'
        "state: ready\n"
    )


def add_plan_file(fixture: Fixture, name: str, version: str) -> None:
    """plans/<name>.yaml in the lead's clone (not committed), and the build of its version
    where the local driver ships it from, as a CI would have left it."""
    (fixture.work / "plans").mkdir(exist_ok=True)
    (fixture.work / "plans" / f"{name}.yaml").write_text(plan_yaml(name, version))
    build = fixture.driver_root / ARTIFACTS / APPLICATION / version
    build.mkdir(parents=True, exist_ok=True)
    (build / "app.bin").write_text(f"{APPLICATION} {version}\n")


def build_fixture(settings: Settings, directory: Path) -> Fixture:
    keys_dir = directory / "keys"
    keys_dir.mkdir(parents=True)
    private = {name: identity_private_key(settings.seed, f"watch:{name}") for name in PEOPLE}
    keys = {name: write_key(key, keys_dir / name, name) for name, key in private.items()}
    bare = directory / "config.git"
    git(directory, "init", "-q", "--bare", "-b", "main", str(bare))
    work = directory / "work"
    git(directory, "init", "-q", "-b", "main", str(work))
    (work / "environments").mkdir()
    (work / "teams.yaml").write_text(teams_yaml(private))
    (work / "environments" / f"{ENVIRONMENT}.yaml").write_text(environment_yaml())
    git(work, "add", "-A")
    Author("root", keys["root"]).git(work, "commit", "-q", "-S", "-m", "Seed configuration")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "main")
    git(work, "branch", "-q", "--set-upstream-to=origin/main", "main")
    secret = directory / "webhook-secret"
    secret.write_text("benchmark-secret\n")
    return Fixture(bare, work, directory / "state", directory / "releases", keys, secret)


# -- watching the watcher --------------------------------------------------------------------------


def read_ref(bare: Path) -> str | None:
    """refs/heads/main, loose or packed (a `git gc` on push may pack it)."""
    try:
        return (bare / "refs" / "heads" / "main").read_text().strip() or None
    except FileNotFoundError:
        pass
    try:
        for line in (bare / "packed-refs").read_text().splitlines():
            if line.endswith(" refs/heads/main"):
                return line.split()[0]
    except FileNotFoundError:
        return None
    return None


class RefPoller:
    """Notes the monotonic time each value of the branch is first seen, every millisecond."""

    def __init__(self, bare: Path) -> None:
        self.bare = bare
        self.seen: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        last = None
        while not self._stop.is_set():
            oid = read_ref(self.bare)
            if oid is not None and oid != last:
                self.seen.append((time.monotonic(), oid))
                last = oid
            time.sleep(0.001)

    def first_seen(self, commits: set[str], after: float) -> float | None:
        return next((t for t, oid in list(self.seen) if t >= after and oid in commits), None)

    def __enter__(self) -> RefPoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class WatchProcess:
    """`reconciler watch` on the bare repository; its JSON log events as they come."""

    def __init__(self, fixture: Fixture) -> None:
        argv = [
            sys.executable,
            "-m",
            "reconciler",
            "watch",
            "--repo",
            str(fixture.bare),
            "--state-dir",
            str(fixture.state_dir),
            "--key",
            str(fixture.keys["reconciler"]),
            "--driver-root",
            str(fixture.driver_root),
            "--instance",
            "benchmark",
            "--interval",
            "60",
            "--listen",
            "127.0.0.1:0",
            "--webhook-secret-file",
            str(fixture.secret),
            "--format",
            "json",
        ]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=git_environment(),
        )
        self.events: list[dict[str, Any]] = []
        self.passes: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                event = {"event": "raw", "message": raw.decode("utf-8", "replace")}
            with self._changed:
                self.events.append(event)
                if event.get("event") == "pass":
                    self.passes.append(event)
                self._changed.notify_all()

    def wait_for_pass(self, commit: str | None = None, count: int | None = None) -> None:
        """Until a pass of `commit` is logged, or `count` passes have been."""
        deadline = time.monotonic() + WAIT
        with self._changed:
            while True:
                if count is not None and len(self.passes) >= count:
                    return
                if commit is not None and any(e.get("commit") == commit for e in self.passes):
                    return
                failed = [e for e in self.events if e.get("event") == "pass-failed"]
                if failed:
                    raise BenchmarkError(f"a pass failed: {failed[-1].get('message')}")
                if self.process.poll() is not None:
                    raise BenchmarkError("the watcher exited")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchmarkError(f"no pass for {commit or count} within {WAIT:.0f} s")
                self._changed.wait(min(left, 0.1))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(timeout=WAIT)
        self._reader.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


@dataclass(frozen=True, slots=True)
class Footprint:
    passes: int
    commits: int  # on main: the history's length
    rss_kib: int
    peak_kib: int
    fds: int
    threads: int
    children: int  # processes it started that still run (Git's persistent helpers)

    def as_json(self) -> dict[str, int]:
        return {
            "passes": self.passes,
            "commits": self.commits,
            "rss_kib": self.rss_kib,
            "peak_rss_kib": self.peak_kib,
            "fds": self.fds,
            "threads": self.threads,
            "children": self.children,
        }


def _status(pid: int) -> dict[str, str]:
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    return status


def _children(pid: int) -> int:
    return sum(
        len((task / "children").read_text().split()) for task in Path(f"/proc/{pid}/task").iterdir()
    )


def footprint(pid: int, passes: int, commits: int) -> Footprint:
    """The watcher's memory now; descriptors, threads and children at rest.

    A Git command or a driver in flight holds a pipe or two for a few
    milliseconds: of five readings 5 ms apart, the smallest counts.
    """
    readings = []
    for _ in range(5):
        readings.append(
            (len(os.listdir(f"/proc/{pid}/fd")), int(_status(pid)["Threads"]), _children(pid))
        )
        time.sleep(0.005)
    status = _status(pid)
    return Footprint(
        passes,
        commits,
        int(status["VmRSS"].split()[0]),
        int(status["VmHWM"].split()[0]),
        min(fds for fds, _, _ in readings),
        min(threads for _, threads, _ in readings),
        min(children for _, _, children in readings),
    )


# -- the measurements -----------------------------------------------------------------------------


def history_length(bare: Path) -> int:
    return int(git(bare, "rev-list", "--count", "main"))


def sync(work: Path) -> None:
    git(work, "fetch", "-q", "origin")
    git(work, "reset", "-q", "--hard", "origin/main")


def wait_for_subject(bare: Path, subject: str) -> str:
    """The commit on main (among the last few) whose subject starts with `subject`."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for line in git(bare, "log", "-8", "--format=%H %s", "main").splitlines():
            oid, _, text = line.partition(" ")
            if text.startswith(subject):
                return oid
        time.sleep(0.005)
    raise BenchmarkError(f"no commit '{subject}...' on main within {WAIT:.0f} s")


def merge_one(fixture: Fixture, poller: RefPoller, index: int) -> float:
    """Merge a branch adding one plan, push; seconds from the push's return to the start record."""
    work, lead = fixture.work, fixture.lead
    name = f"merge-{index:03d}"
    sync(work)
    git(work, "checkout", "-q", "-B", name)
    add_plan_file(fixture, name, f"1.0.{index}")
    git(work, "add", "plans")
    lead.git(work, "commit", "-q", "-S", "-m", f"Add {name}")
    git(work, "checkout", "-q", "main")
    lead.git(work, "merge", "-q", "--no-ff", "-S", "-m", f"Merge {name}", name)
    git(work, "push", "-q", "origin", "main")
    returned = time.monotonic()
    start = wait_for_subject(fixture.bare, f"Start {name} ")
    wait_for_subject(fixture.bare, f"Deploy {name} ")
    later = set(git(fixture.bare, "rev-list", "--ancestry-path", f"{start}..main").split())
    seen = poller.first_seen({start, *later}, returned - 1.0)
    if seen is None:
        raise BenchmarkError(f"the poller never saw the start record of {name}")
    git(work, "branch", "-q", "-D", name)
    return seen - returned


def push_commit(fixture: Fixture, number: int, plan_every: int = PLAN_EVERY) -> str:
    """One signed commit by the tech lead on main, pushed (rebuilt on the new tip if it
    races); every `plan_every`th adds a plan (0: none does)."""
    work, lead = fixture.work, fixture.lead
    while True:
        if plan_every and number % plan_every == 0:
            name = f"load-{number:05d}"
            add_plan_file(fixture, name, f"2.0.{number}")
            git(work, "add", "plans")
            lead.git(work, "commit", "-q", "-S", "-m", f"Add {name}")
        else:
            lead.git(work, "commit", "-q", "-S", "--allow-empty", "-m", f"Commit {number}")
        if git_succeeds(work, "push", "-q", "origin", "main"):
            return git(work, "rev-parse", "HEAD")
        sync(work)  # the reconciler recorded a run meanwhile: commit again on its records


@dataclass(slots=True)
class Results:
    settings: Settings
    latencies: list[float] = field(default_factory=list)
    samples: list[Footprint] = field(default_factory=list)
    pass_seconds: list[float] = field(default_factory=list)  # every pass, as the watcher logged it
    facts: dict[str, str] = field(default_factory=dict)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def reference(self) -> Footprint:
        """The sample at the 20% mark: after warm-up."""
        target = self.settings.passes * 0.2
        return min(self.samples, key=lambda sample: abs(sample.passes - target))

    def growth_per(self) -> tuple[float, float]:
        """KiB of RSS gained per commit on main and per pass, from the 20% mark to the end."""
        first, last = self.reference(), self.samples[-1]
        gained = last.rss_kib - first.rss_kib
        return gained / max(1, last.commits - first.commits), gained / max(
            1, last.passes - first.passes
        )

    def checks(self) -> list[dict[str, Any]]:
        first, last = self.reference(), self.samples[-1]
        growth = (last.rss_kib - first.rss_kib) / first.rss_kib
        per_commit, per_pass = self.growth_per()
        return [
            {
                "name": "push -> start record, p50",
                "value": self.quantile(0.5),
                "text": f"{self.quantile(0.5):.3f} s",
                "goal": f"< {LATENCY_P50_GOAL} s",
                "met": self.quantile(0.5) < LATENCY_P50_GOAL,
            },
            {
                "name": "push -> start record, p95",
                "value": self.quantile(0.95),
                "text": f"{self.quantile(0.95):.3f} s",
                "goal": f"< {LATENCY_P95_GOAL} s",
                "met": self.quantile(0.95) < LATENCY_P95_GOAL,
            },
            {
                "name": f"RSS, pass {first.passes} -> {last.passes}",
                "value": growth,
                "text": f"{first.rss_kib / 1024:.1f} -> {last.rss_kib / 1024:.1f} MiB "
                f"({growth:+.1%})",
                "goal": f"<= +{RSS_GROWTH_GOAL:.0%}",
                "met": growth <= RSS_GROWTH_GOAL,
            },
            {
                "name": f"RSS per commit, {first.commits} -> {last.commits} commits",
                "value": per_commit,
                "text": f"{per_commit:+.2f} KiB ({per_pass:+.2f} KiB per pass)",
                "goal": f"<= {RSS_PER_COMMIT_GOAL} KiB",
                "met": per_commit <= RSS_PER_COMMIT_GOAL,
            },
            {
                "name": f"open fds, pass {first.passes} -> {last.passes}",
                "value": last.fds - first.fds,
                "text": f"{first.fds} -> {last.fds}",
                "goal": "no growth",
                "met": last.fds <= first.fds,
            },
            {
                "name": f"threads, pass {first.passes} -> {last.passes}",
                "value": last.threads - first.threads,
                "text": f"{first.threads} -> {last.threads}",
                "goal": "no growth",
                "met": last.threads <= first.threads,
            },
            {
                "name": f"child processes, pass {first.passes} -> {last.passes}",
                "value": last.children - first.children,
                "text": f"{first.children} -> {last.children}",
                "goal": "no growth",
                "met": last.children <= first.children,
            },
        ]


def measure(settings: Settings, directory: Path) -> Results:
    fixture = build_fixture(settings, directory)
    results = Results(settings)
    watcher = WatchProcess(fixture)
    try:
        watcher.wait_for_pass(count=1)
        with RefPoller(fixture.bare) as poller:
            for index in range(1, settings.merges + 1):
                results.latencies.append(merge_one(fixture, poller, index))
        sync(fixture.work)
        length = history_length(fixture.bare)
        results.samples.append(footprint(watcher.pid, len(watcher.passes), length))
        checkpoints = [
            mark
            for mark in (settings.passes * tenth // 10 for tenth in range(1, 11))
            if mark > len(watcher.passes)
        ]
        number = 0
        while len(watcher.passes) < settings.passes:
            number += 1
            watcher.wait_for_pass(commit=push_commit(fixture, number, settings.plan_every))
            while checkpoints and len(watcher.passes) >= checkpoints[0]:
                length = history_length(fixture.bare)
                results.samples.append(footprint(watcher.pid, len(watcher.passes), length))
                checkpoints.pop(0)
        results.pass_seconds = [float(event["duration"]) for event in watcher.passes]
    finally:
        code = watcher.stop()
    if code != 0:
        raise BenchmarkError(f"the watcher exited with {code} on SIGTERM")
    results.facts = {
        "git": git(directory, "--version"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commits pushed in (b)": str(number),
    }
    return results


# -- reporting ------------------------------------------------------------------------------------


def render_text(results: Results) -> str:
    settings = results.settings
    passes = results.pass_seconds
    window = max(1, min(100, len(passes) // 10))
    lines = [
        f"reconciler watch: {settings.merges} merges into a watched bare repository, then "
        f"{settings.passes} passes"
        + (
            f", a plan added every {settings.plan_every} commits"
            if settings.plan_every
            else ", no plan added (main stays as it is)"
        ),
        f"({results.facts['git']}, Python {results.facts['python']}, {results.facts['platform']})",
        "",
        f"{'metric':<40} {'measured':<30} {'goal':<12} result",
    ]
    for check in results.checks():
        verdict = "PASS" if check["met"] else "MISS"
        lines.append(f"{check['name']:<40} {check['text']:<30} {check['goal']:<12} {verdict}")
    latencies = results.latencies
    lines += [
        "",
        f"latency over {len(latencies)} merges: min {min(latencies):.3f} s, "
        f"mean {statistics.mean(latencies):.3f} s, max {max(latencies):.3f} s",
        f"pass duration (watcher's log): first {window} passes median "
        f"{statistics.median(passes[:window]):.3f} s, last {window} median "
        f"{statistics.median(passes[-window:]):.3f} s",
        f"peak RSS (VmHWM) after {results.samples[-1].passes} passes: "
        f"{results.samples[-1].peak_kib / 1024:.1f} MiB",
        "",
        f"{'passes':>7} {'commits':>7} {'RSS MiB':>8} {'peak MiB':>9} {'fds':>4} {'threads':>7} "
        f"{'children':>8}",
    ]
    lines += [
        f"{s.passes:>7} {s.commits:>7} {s.rss_kib / 1024:>8.1f} {s.peak_kib / 1024:>9.1f} "
        f"{s.fds:>4} {s.threads:>7} {s.children:>8}"
        for s in results.samples
    ]
    return "\n".join(lines)


def render_json(results: Results) -> str:
    return json.dumps(
        {
            "settings": {
                "merges": results.settings.merges,
                "passes": results.settings.passes,
                "seed": results.settings.seed,
                "plan_every": results.settings.plan_every,
            },
            "facts": results.facts,
            "latency_seconds": {
                "p50": results.quantile(0.5),
                "p95": results.quantile(0.95),
                "samples": [round(value, 4) for value in results.latencies],
            },
            "footprint": [sample.as_json() for sample in results.samples],
            "pass_seconds_median": statistics.median(results.pass_seconds),
            "checks": [
                {key: check[key] for key in ("name", "value", "goal", "met")}
                for check in results.checks()
            ],
        },
        indent=2,
    )


@contextmanager
def scratch(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        if keep.exists():
            raise FileExistsError(f"{keep} exists; --keep needs a new directory")
        keep.mkdir(parents=True)
        yield keep
        return
    directory = Path(tempfile.mkdtemp(prefix="reconciler-watch-bench-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.watch", description=__doc__)
    parser.add_argument("--merges", type=int, default=50)
    parser.add_argument("--passes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--plan-every", type=int, default=PLAN_EVERY, help="in (b), every Nth commit adds a plan"
    )
    parser.add_argument("--keep", type=Path, help="build in this new directory and keep it")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = Settings(
        merges=arguments.merges,
        passes=arguments.passes,
        seed=arguments.seed,
        plan_every=arguments.plan_every,
    )
    try:
        settings.check()
        with scratch(arguments.keep) as directory:
            results = measure(settings, directory)
    except (BenchmarkError, ValueError, FileExistsError) as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    print(render_json(results) if arguments.format == "json" else render_text(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
