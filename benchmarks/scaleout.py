"""The scale-out benchmark: what several reconcilers add, and where the Git host stops them.

Run by people as `python -m benchmarks.scaleout [--plans 30] [--step 1.0] [--pushes 200]
[--format json]`.

(a) Sharing the work. A configuration repository (deterministic keys from
    `--seed`) in a bare repository, with three environments in one promotion
    chain (development, quality-assurance, production; no approvals), each run
    by the `command` driver, and `--plans` ready plans of one step each, spread
    evenly over the three (the plans into QA and production redeploy a version
    two setup runs left before them in the chain, so any of them may run in any
    order). Each reconciler is a clone of the bare repository with its own
    state directory, running `reconciler apply --remote origin` again and again
    (0.2 s apart) until every plan has a finish record on main. Timed from the
    first `apply` to the last finish record, for

    - 1 reconciler;
    - 3 reconcilers, each `--environments` one of the three (sharded);
    - 3 reconcilers without `--environments` (each takes whatever is free).

    Twice: with driver steps that *wait* `--step` seconds (a `sleep`: the
    machine is idle meanwhile), and with steps that keep their machine *busy*
    for `--step` seconds (a step holds a lock of its reconciler's machine, as a
    CPU-, disk- or bandwidth-bound deploy would: one step at a time per
    machine). Each reconciler is its own "machine" (its own TMPDIR, which the
    driver locks). The ratios against one reconciler are printed, with how many
    runs each reconciler started.

(b) The Git host's ref-update rate. `--pushes` commits (made beforehand,
    each on the previous one) pushed one `git push` at a time to a bare
    repository: by path (a local bare remote), over `git daemon` on loopback
    (git://), and over smart HTTP on loopback (`git http-backend` as a CGI
    behind a Python WSGI server in this process). A run costs one ref update
    where one reconciler works its environment (its finish record rides with
    the next start record) and two where several do (the finish record goes
    out alone); a heartbeat per lease extension adds one. So the push rate
    bounds the runs a second all reconcilers together can record, and half of
    it ("runs/s at most") where they share environments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, make_server

from benchmarks.common import BenchmarkError
from benchmarks.generate import DEFAULT_SEED, identity_private_key, openssh_public_key
from benchmarks.storm import records_on
from benchmarks.watch import git, git_environment, write_key

ENVIRONMENTS: Final = ("development", "quality-assurance", "production")
PEOPLE: Final = {"root": "Root Admin", "lead": "Lee Lead", "reconciler": "Reconciler"}
FINISHED: Final = frozenset({"succeeded", "failed", "interrupted", "late"})
TIMEOUT: Final = 600.0  # seconds a scenario may take before the benchmark gives up
PAUSE: Final = 0.2  # seconds between one reconciler's passes

# The command driver: `current` is unknown; a step waits, or holds its machine's lock.
DRIVER: Final = """\
import fcntl, os, sys, time
if os.environ.get("RECONCILER_OPERATION") == "current":
    sys.exit(1)
mode, seconds = sys.argv[1], float(sys.argv[2])
if mode == "busy":
    with open(os.path.join(os.environ["TMPDIR"], "machine.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        time.sleep(seconds)
else:
    time.sleep(seconds)
print(f"deployed {os.environ['RECONCILER_APP']} {os.environ['RECONCILER_VERSION']}")
"""


# -- the repository --------------------------------------------------------------------------------


def teams_yaml(public: Mapping[str, str]) -> str:
    return (
        "users:\n"
        f"  root: {{name: Root Admin, emails: [root@example.com], keys: [{public['root']}]}}\n"
        f"  lead: {{name: Lee Lead, emails: [lead@example.com], keys: [{public['lead']}]}}\n"
        "service_accounts:\n"
        f"  reconciler: {{emails: [reconciler@example.com], keys: [{public['reconciler']}]}}\n"
        "infrastructure:\n"
        "  settings: [root]\n"
        "teams:\n"
        "  shop:\n"
        "    applications: [shop, portal]\n"
        "    members: {lead: tech-lead}\n"
    )


def environment_yaml(order: int, driver: Path, mode: str, step: float) -> str:
    name = ENVIRONMENTS[order - 1]
    source = f"promotes_from: {ENVIRONMENTS[order - 2]}\n" if order > 1 else ""
    argv = ", ".join(json.dumps(part) for part in (sys.executable, str(driver), mode, str(step)))
    return (
        f"name: {name}\n"
        f"order: {order}\n"
        f"{source}"
        "permissions:\n"
        "  plan.edit: [tech-lead]\n"
        "  plan.approve: [tech-lead]\n"
        "  plan.deploy: [tech-lead]\n"
        "gates:\n"
        "  approvals: []\n"
        "  signed_commits: false\n"
        f"driver: {{type: command, argv: [{argv}], timeout: 600}}\n"
    )


def plan_yaml(name: str, environment: str, application: str, version: str) -> str:
    order = ENVIRONMENTS.index(environment)
    source = f"source: {ENVIRONMENTS[order - 1]}\n" if order else ""
    return (
        f"name: {name}\n"
        f"{source}"
        f"target: {environment}\n"
        "applications:\n"
        f'  - {{name: {application}, version: "{version}"}}\n'
        "state: ready\n"
    )


@dataclass(frozen=True, slots=True)
class Repository:
    bare: Path
    keys: Mapping[str, Path]


def commit_as(work: Path, key: Path, identity: str, message: str) -> None:
    name = PEOPLE[identity]
    env = git_environment(
        {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": f"{identity}@example.com",
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": f"{identity}@example.com",
        }
    )
    git(work, "add", "-A", env=env)
    signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"]
    git(work, *signing, "commit", "-q", "-S", "-m", message, env=env)
    git(work, "push", "-q", "origin", "main", env=env)


def build_repository(directory: Path, mode: str, step: float, plans: int, seed: int) -> Repository:
    """The bare repository with its setup runs done and `plans` plans ready, spread evenly
    over the three environments."""
    keys_dir = directory / "keys"
    keys_dir.mkdir(parents=True)
    private = {name: identity_private_key(seed, f"scaleout:{name}") for name in PEOPLE}
    keys = {name: write_key(key, keys_dir / name, name) for name, key in private.items()}
    public = {name: json.dumps(openssh_public_key(key, name)) for name, key in private.items()}
    driver = directory / "driver.py"
    driver.write_text(DRIVER)
    bare = directory / "config.git"
    git(directory, "init", "-q", "--bare", "-b", "main", str(bare))
    work = directory / "work"
    git(directory, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(bare))
    (work / "teams.yaml").write_text(teams_yaml(public))
    (work / "environments").mkdir()
    for order, name in enumerate(ENVIRONMENTS, start=1):
        (work / "environments" / f"{name}.yaml").write_text(
            environment_yaml(order, driver, mode, step)
        )
    commit_as(work, keys["root"], "root", "Seed configuration")
    (work / "plans").mkdir()
    for environment in ENVIRONMENTS[:2]:  # what QA and production promote
        (work / "plans" / f"setup-{environment}.yaml").write_text(
            plan_yaml(f"setup-{environment}", environment, "portal", "1.0")
        )
    commit_as(work, keys["lead"], "lead", "Put the portal where QA and production take it from")
    setup = directory / "setup"
    git(directory, "clone", "-q", str(bare), str(setup))
    finished = run_until_done(
        [Reconciler(setup, keys["reconciler"], directory / "setup-state", "setup", None)],
        bare,
        2,
        "setup-",
    )
    if finished is None:
        raise BenchmarkError("the setup runs did not finish")
    git(work, "pull", "-q", "--ff-only", "origin", "main")  # the setup's records
    for index in range(plans):
        environment = ENVIRONMENTS[index % len(ENVIRONMENTS)]
        name = f"p{index:03d}-{environment}"
        application, version = (
            ("shop", f"1.0.{index}") if environment == "development" else ("portal", "1.0")
        )
        (work / "plans" / f"{name}.yaml").write_text(
            plan_yaml(name, environment, application, version)
        )
    commit_as(work, keys["lead"], "lead", f"Add {plans} plans")
    return Repository(bare, keys)


# -- reconcilers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reconciler:
    clone: Path
    key: Path
    state_dir: Path
    instance: str
    environments: str | None  # its --environments, if sharded

    def argv(self) -> list[str]:
        shard = ["--environments", self.environments] if self.environments else []
        return [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            "--repo",
            str(self.clone),
            "--remote",
            "origin",
            "--state-dir",
            str(self.state_dir),
            "--key",
            str(self.key),
            "--instance",
            self.instance,
            "--driver-root",
            str(self.state_dir.parent / f"{self.instance}-releases"),
            *shard,
        ]

    def machine(self) -> Path:
        """Its own TMPDIR: the 'machine' a busy step holds."""
        folder = self.state_dir.parent / f"{self.instance}-machine"
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def finished_runs(bare: Path, prefix: str) -> set[str]:
    return {
        run
        for run, result in records_on(bare).values()
        if result in FINISHED and run.startswith(prefix)
    }


def run_until_done(
    reconcilers: Sequence[Reconciler], bare: Path, runs: int, prefix: str
) -> float | None:
    """Each reconciler's `apply`, again and again, until `runs` runs whose id starts with
    `prefix` have a finish record on main; the seconds that took (None: timed out)."""
    done = threading.Event()
    errors: list[str] = []

    def loop(reconciler: Reconciler) -> None:
        env = {**os.environ, "TMPDIR": str(reconciler.machine())}
        while not done.is_set():
            completed = subprocess.run(
                reconciler.argv(), capture_output=True, text=True, env=env, check=False
            )
            if completed.returncode != 0:
                errors.append(f"{reconciler.instance}: {completed.stderr[-2000:]}")
                done.set()
                return
            time.sleep(PAUSE)

    began = time.monotonic()
    threads = [threading.Thread(target=loop, args=(item,), daemon=True) for item in reconcilers]
    for thread in threads:
        thread.start()
    took: float | None = None
    while time.monotonic() - began < TIMEOUT and not errors:
        if len(finished_runs(bare, prefix)) >= runs:
            took = time.monotonic() - began
            break
        time.sleep(0.05)
    done.set()
    for thread in threads:
        thread.join(TIMEOUT)
    if errors:
        raise BenchmarkError(f"apply failed: {errors[0]}")
    return took


@dataclass(slots=True)
class Scenario:
    mode: str  # wait | busy
    name: str  # 1 | 3 sharded | 3 unsharded
    seconds: float
    started_by: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": self.mode,
            "reconcilers": self.name,
            "seconds": round(self.seconds, 2),
            "started_by": self.started_by,
        }


def scenario(repository: Repository, directory: Path, mode: str, name: str, plans: int) -> Scenario:
    bare = directory / "config.git"
    shutil.copytree(repository.bare, bare)
    count, sharded = (1, False) if name == "1" else (3, name == "3 sharded")
    reconcilers = []
    for number in range(count):
        clone = directory / f"clone-{number}"
        git(directory, "clone", "-q", str(bare), str(clone))
        reconcilers.append(
            Reconciler(
                clone,
                repository.keys["reconciler"],
                directory / f"state-{number}",
                f"r{number}",
                ENVIRONMENTS[number] if sharded else None,
            )
        )
    took = run_until_done(reconcilers, bare, plans, "p")
    if took is None:
        raise BenchmarkError(f"{mode} steps, {name}: not done in {TIMEOUT:.0f} s")
    check_once(bare, plans)
    started: dict[str, int] = {item.instance: 0 for item in reconcilers}
    for instance in starters(bare):
        if instance in started:
            started[instance] += 1
    return Scenario(mode, name, took, started)


def starters(bare: Path) -> Iterator[str]:
    """The instance named by each start record of the plans' runs on main."""
    log = git(bare, "log", "--format=%(trailers:key=Run,key=Result,key=Reconciler)%x00", "main")
    for entry in filter(None, (text.strip() for text in log.split("\0"))):
        fields = dict(line.split(": ", 1) for line in entry.splitlines() if ": " in line)
        if fields.get("Result") == "started" and fields.get("Run", "").startswith("p"):
            yield fields.get("Reconciler", "")


def check_once(bare: Path, plans: int) -> None:
    """Every plan ran once: one start and one finish record each."""
    seen: dict[tuple[str, str], int] = {}
    for run, result in records_on(bare).values():
        if run.startswith("p"):
            kind = "start" if result == "started" else "finish"
            seen[(run, kind)] = seen.get((run, kind), 0) + 1
    runs = {run for run, _ in seen}
    wrong = [key for key, count in seen.items() if count != 1]
    if len(runs) != plans or wrong:
        raise BenchmarkError(f"{len(runs)} runs for {plans} plans; recorded twice: {wrong}")


# -- push rates ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        env=git_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise BenchmarkError("git daemon did not start") from None
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/"
    finally:
        daemon.terminate()
        daemon.wait(10)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def http_backend(base: Path) -> Any:
    """A WSGI application serving `base`'s repositories through `git http-backend` (CGI)."""

    def application(environ: Mapping[str, Any], start_response: Any) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        cgi = {
            **git_environment(),
            "GIT_PROJECT_ROOT": str(base),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "benchmark",  # receive-pack is served to an authenticated user
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", "127.0.0.1"),
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        completed = subprocess.run(
            ["git", "http-backend"], input=body, env=cgi, capture_output=True, check=False
        )
        head, _, payload = completed.stdout.partition(b"\r\n\r\n")
        status, headers = "200 OK", []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]

    return application


@contextmanager
def smart_http(base: Path) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, http_backend(base), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True, slots=True)
class PushRate:
    transport: str
    pushes: int
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "pushes": self.pushes,
            "seconds": round(self.seconds, 3),
            "pushes_per_s": round(self.pushes / self.seconds, 1),
            "runs_per_s_at_most": round(self.pushes / self.seconds / 2, 1),
        }


def push_rate(directory: Path, transport: str, pushes: int) -> PushRate:
    """`pushes` fast-forward pushes, one at a time, of commits made beforehand."""
    directory.mkdir(parents=True)
    bare = directory / "host.git"
    git(directory, "init", "-q", "--bare", "-b", "main", str(bare))
    git(bare, "config", "http.receivepack", "true")
    client = directory / "client"
    git(directory, "init", "-q", "-b", "main", str(client))
    env = git_environment(
        {
            "GIT_AUTHOR_NAME": "Pusher",
            "GIT_AUTHOR_EMAIL": "pusher@example.com",
            "GIT_COMMITTER_NAME": "Pusher",
            "GIT_COMMITTER_EMAIL": "pusher@example.com",
        }
    )
    git(client, "commit", "-q", "--allow-empty", "-m", "first", env=env)
    tree = git(client, "rev-parse", "HEAD^{tree}")
    commits = [git(client, "rev-parse", "HEAD")]
    for number in range(pushes):
        commits.append(
            git(client, "commit-tree", "-p", commits[-1], "-m", f"{number}", tree, env=env)
        )
    with _served(transport, directory) as base_url:
        url = str(bare) if base_url is None else base_url + "host.git"
        git(client, "push", "-q", url, f"{commits[0]}:refs/heads/main", env=env)
        began = time.perf_counter()
        for commit in commits[1:]:
            git(client, "push", "-q", url, f"{commit}:refs/heads/main", env=env)
        seconds = time.perf_counter() - began
    if git(bare, "rev-parse", "main") != commits[-1]:
        raise BenchmarkError(f"{transport}: the last push did not land")
    return PushRate(transport, pushes, seconds)


@contextmanager
def _served(transport: str, base: Path) -> Iterator[str | None]:
    if transport == "local":
        yield None
    elif transport == "git daemon":
        with git_daemon(base) as url:
            yield url
    else:
        with smart_http(base) as url:
            yield url


# -- the benchmark ---------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__)
    parser.add_argument("--plans", type=int, default=30, help="plans, over three environments")
    parser.add_argument("--step", type=float, default=1.0, help="seconds a driver step takes")
    parser.add_argument("--pushes", type=int, default=200, help="pushes per transport (0: none)")
    parser.add_argument("--modes", default="wait,busy", help="which steps: wait, busy or both")
    parser.add_argument("--no-sharing", action="store_true", help="measure push rates only")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser.parse_args(argv)


def measure(arguments: argparse.Namespace, directory: Path) -> dict[str, Any]:
    scenarios: list[Scenario] = []
    if not arguments.no_sharing:
        for mode in arguments.modes.split(","):
            repository = build_repository(
                directory / mode, mode, arguments.step, arguments.plans, arguments.seed
            )
            for name in ("1", "3 sharded", "3 unsharded"):
                folder = directory / mode / name.replace(" ", "-")
                scenarios.append(scenario(repository, folder, mode, name, arguments.plans))
    rates = [
        push_rate(directory / "push" / transport.replace(" ", "-"), transport, arguments.pushes)
        for transport in ("local", "git daemon", "smart http")
        if arguments.pushes > 0
    ]
    ratios = {}
    for mode in {item.mode for item in scenarios}:
        one = next(item for item in scenarios if item.mode == mode and item.name == "1")
        ratios[mode] = {
            item.name: round(item.seconds / one.seconds, 2)
            for item in scenarios
            if item.mode == mode and item.name != "1"
        }
    return {
        "plans": arguments.plans,
        "step_s": arguments.step,
        "scenarios": [item.as_json() for item in scenarios],
        "ratio_to_one": ratios,
        "push_rates": [rate.as_json() for rate in rates],
    }


def text(summary: Mapping[str, Any]) -> str:
    lines = [
        f"{summary['plans']} plans on 3 environments, {summary['step_s']:g} s driver steps",
        f"{'steps':<6} {'reconcilers':<12} {'seconds':>8} {'x one':>6}  runs started by each",
    ]
    for item in summary["scenarios"]:
        ratio = summary["ratio_to_one"][item["steps"]].get(item["reconcilers"], 1.0)
        split = "/".join(str(count) for count in item["started_by"].values())
        lines.append(
            f"{item['steps']:<6} {item['reconcilers']:<12} {item['seconds']:>8.2f} "
            f"{ratio:>6.2f}  {split}"
        )
    lines.append(f"{'transport':<12} {'pushes/s':>9} {'runs/s at most':>15}")
    for rate in summary["push_rates"]:
        most = rate["runs_per_s_at_most"]
        lines.append(f"{rate['transport']:<12} {rate['pushes_per_s']:>9.1f} {most:>15.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    with tempfile.TemporaryDirectory(prefix="scaleout-") as folder:
        try:
            summary = measure(arguments, Path(folder))
        except BenchmarkError as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
    print(json.dumps(summary) if arguments.format == "json" else text(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
