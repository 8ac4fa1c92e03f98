"""The gitops driver benchmark: a step through the driver against a bare `git commit` +
`git push` of the same change, in the same run.

Run as `python -m benchmarks.gitops [--environments N] [--applications M] [--full]
[--format json]`. It makes one GitOps repository (a bare remote) holding a
kustomization per application and environment, and a copy of it, then promotes
every application into every environment twice over (version 2.0.0, then 2.0.1):

(a) through the `gitops` driver (`GitOpsDriver.deploy`): one driver per
    environment, as a run has, each step a commit signed in-process by a service
    key and pushed with compare-and-swap;
(b) by hand in a clone of the copy with a work tree: the same edit written to
    the file, `git commit -q -a` (unsigned, no hooks) and `git push -q`.

The two alternate step by step, so both see the same machine. Each step's time
is measured; the report gives the medians and their ratio (goal: at most 2x).
A benchmark that changes nothing proves nothing: both remotes must end with the
same tree (the driver wrote exactly what the hand-made change wrote), and each
with one commit per step; the exit status is 1 when they do not.

The default is 10 environments x 10 applications; `--full` is the issue's
10 x 100 (1,000 files in the repository, 2,000 steps each way).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from reconciler.adapters.drivers import Step
from reconciler.adapters.gitops import Committer, GitOpsDriver
from reconciler.adapters.signing import SigningKey, new_key_pair, signed_commit
from reconciler.core.model import GitOpsTarget

RATIO_GOAL: Final = 2.0  # driver step / bare commit + push, at most
PATH: Final = "apps/{app}/overlays/{environment}/kustomization.yaml"
VERSIONS: Final = ("2.0.0", "2.0.1")
_ENVIRONMENT = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=_ENVIRONMENT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed in {cwd}: {done.stderr}")
    return done.stdout.strip()


def kustomization(application: str, tag: str) -> str:
    return (
        "# Kept by the platform team; the reconciler sets newTag.\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "resources:\n"
        "  - ../../base  # shared\n"
        "images:\n"
        f"  - name: registry.example/{application}\n"
        f"    newTag: {tag}  # the deployed version\n"
    )


@dataclass(frozen=True)
class Setup:
    driven: Path  # the remote the driver pushes to
    by_hand: Path  # the remote the bare commands push to
    work: Path  # a clone of `by_hand` with a work tree
    applications: tuple[str, ...]
    environments: tuple[str, ...]


def make(folder: Path, environments: int, applications: int) -> Setup:
    apps = tuple(f"app-{index:03d}" for index in range(applications))
    envs = tuple(f"env-{index:02d}" for index in range(environments))
    seed = folder / "seed"
    git(folder, "init", "-q", "-b", "main", str(seed))
    for environment in envs:
        for application in apps:
            file = seed / PATH.format(app=application, environment=environment)
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(kustomization(application, "1.0.0"))
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "overlays")
    driven, by_hand, work = folder / "driven.git", folder / "by-hand.git", folder / "work"
    git(folder, "clone", "-q", "--bare", str(seed), str(driven))
    git(folder, "clone", "-q", "--bare", str(seed), str(by_hand))
    git(folder, "clone", "-q", str(by_hand), str(work))
    return Setup(driven, by_hand, work, apps, envs)


def by_hand(setup: Setup, application: str, environment: str, version: str) -> float:
    """One step the bare way: the edit, `git commit -a`, `git push`; its seconds."""
    file = setup.work / PATH.format(app=application, environment=environment)
    started = time.perf_counter()
    text = file.read_text()
    file.write_text(text.replace(text.split("newTag: ")[1].split(" ")[0], version, 1))
    git(setup.work, "commit", "-q", "-a", "--no-verify", "-m", f"{application} {version}")
    git(setup.work, "push", "-q", "origin", "HEAD:main")
    return time.perf_counter() - started


def measure(environments: int, applications: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-gitops-") as scratch:
        folder = Path(scratch)
        setup = make(folder, environments, applications)
        new_key_pair(folder / "service", "reconciler@example.org")
        key = SigningKey.load(folder / "service")
        now = datetime.now(UTC)
        committer = Committer(
            "reconciler",
            "reconciler@example.org",
            lambda payload: signed_commit(payload, key),
            lambda: datetime.now(UTC),
        )
        target = GitOpsTarget(
            repository=str(setup.driven), path=PATH, image="registry.example/{app}"
        )
        driver_times: list[float] = []
        hand_times: list[float] = []
        for version in VERSIONS:
            for environment in setup.environments:
                # One driver per environment's run, as the reconciler makes it.
                driver = GitOpsDriver(target, folder / "state", committer)
                for application in setup.applications:
                    step = Step(
                        application, version, environment, "bench", f"bench.{version}",
                        "deploy", None, None, now + timedelta(hours=1),
                    )  # fmt: skip
                    started = time.perf_counter()
                    outcome = driver.deploy(step, lambda line: None)
                    driver_times.append(time.perf_counter() - started)
                    if not outcome.ok:
                        raise SystemExit(f"the driver failed: {outcome.summary}")
                    hand_times.append(by_hand(setup, application, environment, version))
        steps = len(VERSIONS) * environments * applications
        trees = [
            git(remote, "rev-parse", "main^{tree}") for remote in (setup.driven, setup.by_hand)
        ]
        counts = [
            int(git(r, "rev-list", "--count", "main")) - 1 for r in (setup.driven, setup.by_hand)
        ]
        driver_median = statistics.median(driver_times)
        hand_median = statistics.median(hand_times)
        ratio = driver_median / hand_median
        checks = {
            "same_tree": trees[0] == trees[1],
            "one_commit_per_step": counts == [steps, steps],
        }
        shutil.rmtree(folder / "state", ignore_errors=True)
    return {
        "environments": environments,
        "applications": applications,
        "steps": steps,
        "driver_step_median_seconds": round(driver_median, 5),
        "driver_step_p90_seconds": round(statistics.quantiles(driver_times, n=10)[-1], 5),
        "bare_commit_push_median_seconds": round(hand_median, 5),
        "bare_commit_push_p90_seconds": round(statistics.quantiles(hand_times, n=10)[-1], 5),
        "ratio": round(ratio, 2),
        "goal": RATIO_GOAL,
        "goal_met": ratio <= RATIO_GOAL,
        "checks": checks,
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gitops", description=__doc__)
    parser.add_argument("--environments", type=int, default=10)
    parser.add_argument("--applications", type=int, default=10)
    parser.add_argument("--full", action="store_true", help="10 environments x 100 applications")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    environments, applications = (10, 100) if args.full else (args.environments, args.applications)
    report = measure(environments, applications)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(
            f"gitops driver: {report['environments']} environments x {report['applications']} "
            f"applications, {report['steps']} steps each way\n"
            f"  driver step (signed, compare-and-swap push): median "
            f"{report['driver_step_median_seconds'] * 1000:.1f} ms, p90 "
            f"{report['driver_step_p90_seconds'] * 1000:.1f} ms\n"
            f"  git commit -a + git push:                    median "
            f"{report['bare_commit_push_median_seconds'] * 1000:.1f} ms, p90 "
            f"{report['bare_commit_push_p90_seconds'] * 1000:.1f} ms\n"
            f"  ratio {report['ratio']:.2f} (goal <= {RATIO_GOAL:g}): "
            f"{'met' if report['goal_met'] else 'missed'}\n"
            f"  checks: {', '.join(f'{k} {v}' for k, v in report['checks'].items())}"
        )
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
