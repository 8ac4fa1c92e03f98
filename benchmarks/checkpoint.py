"""The checkpoint benchmark: a pull-request check from the service's checkpoint, against `git log`.

Run by people and CI as `python -m benchmarks.checkpoint [--dir DIR] [--commits N]
[--pull-request 10] [--agree] [--format json]`. It generates (with
`benchmarks.history`), or reuses with `--dir`, a history whose main holds
`--commits` commits, then:

1. puts a branch `checkpoint-base` `--pull-request` landings behind main, and
   verifies it in full into a state directory, as the service would have;
2. publishes that state as the service does, a checkpoint signed with the
   generated service account's key (`checkpoints.publish`);
3. times, each from a fresh state directory and interleaved, (a) the
   pull-request check `reconciler verify-mergeable --base checkpoint-base
   --head main`, which goes on from the checkpoint, and (b) the reference
   `git log --first-parent -m --raw --no-renames checkpoint-base..main`, and
   prints their ratio; the goal is (a) under 1 s wall.

Every check's JSON must name the checkpoint it went on from and judge the
pull request's merge, or no number counts. With `--agree` it also compares,
verdict by verdict, a fresh `verify` of main that goes on from a checkpoint
(`--agree-back` landings behind main) with `verify --full`, which ignores it,
and the two states' journals row by row (exit 1 when they differ).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks.common import BenchmarkError
from benchmarks.generate import SERVICE_ACCOUNT, identity_private_key, openssh_public_key
from benchmarks.history import HistoryError, HistoryManifest, HistorySettings
from benchmarks.verify import benchmark_repository, reconciler_launcher
from reconciler.adapters.clock import utc_now
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.signing import SigningKey
from reconciler.adapters.statestore import StateStore
from reconciler.app import checkpoints
from reconciler.core.checkpoint import Header, digest, encode
from reconciler.core.sshkeys import parse_public_key

BASE: Final = "checkpoint-base"
GOAL_SECONDS: Final = 1.0  # the pull-request check from a checkpoint, wall, below


def _git(root: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise BenchmarkError(f"git {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout.strip()


def service_key(seed: int) -> SigningKey:
    """The generated history's service account key, as `apply --key` would load it."""
    private: Ed25519PrivateKey = identity_private_key(seed, SERVICE_ACCOUNT)
    return SigningKey(private, parse_public_key(openssh_public_key(private, "reconciler")))


def reconciler(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*reconciler_launcher(), *map(str, args)], capture_output=True, text=True, check=False
    )


def publish_at(root: Path, manifest: HistoryManifest, back: int, state: Path, branch: str) -> str:
    """A checkpoint of `branch` at the first-parent commit `back` landings behind main, as
    the service publishes it after verifying up to there (`BASE`: a branch put there;
    main: main verified `--to` there); the checkpoint commit."""
    base = _git(root, "rev-list", "--first-parent", "-n", "1", f"--skip={back}", "main")
    if branch == "main":
        where = ["--to", base]
    else:
        _git(root, "update-ref", f"refs/heads/{branch}", base)
        where = ["--branch", branch]
    _git(root, "update-ref", "-d", checkpoints.ref_of(branch))
    verified = reconciler("verify", "--repo", root, *where, "--state-dir", state, "--full")
    if verified.returncode not in (0, 1):
        raise BenchmarkError(f"verify up to {base} failed: {verified.stderr.strip()}")
    with GitRepo(root) as repo:
        store = StateStore(state, branch)
        try:
            made = checkpoints.publish(
                repo, store, service_key(manifest.settings.seed), branch, None, utc_now()
            )
        finally:
            store.close()
    if made is None:
        raise BenchmarkError("no checkpoint was published")
    return made


def state_digest(state: Path, branch: str) -> str:
    """The digest of what a checkpoint of the state in `state` would hold: two states that
    would publish the same bytes hold the same journal."""
    store = StateStore(state, branch)
    try:
        position = store.position()
        if position is None:
            raise BenchmarkError(f"no state in {state}")
        header = Header(position.anchor, branch, position.last_verified, store.version)
        return digest(encode(header, store.journal_rows()))
    finally:
        store.close()


def timed(argv: Sequence[str | Path]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    completed = subprocess.run(list(map(str, argv)), capture_output=True, text=True, check=False)
    return time.perf_counter() - started, completed


def pull_request_check(
    root: Path, scratch: Path, checkpoint: str, repeat: int, key_file: Path
) -> tuple[list[float], list[float], list[float]]:
    """Wall seconds, `repeat` runs each, interleaved: the check trusting the anchor's service
    keys, the check with the service key pinned (`--checkpoint-key`), and git log."""
    anchored: list[float] = []
    pinned: list[float] = []
    reference: list[float] = []
    log: list[str | Path] = [
        "git",
        "-C",
        root,
        "log",
        "--first-parent",
        "-m",
        "--raw",
        "--no-renames",
    ]
    reports: list[Any] = []
    for run in range(repeat):
        for pin, times in (((), anchored), (("--checkpoint-key", key_file), pinned)):
            state = scratch / f"pull-request-{run}-{len(pin)}"
            seconds, completed = timed(
                [
                    *reconciler_launcher(),
                    "verify-mergeable",
                    "--repo",
                    root,
                    "--state-dir",
                    state,
                    "--base",
                    BASE,
                    "--head",
                    "main",
                    "--format",
                    "json",
                    *pin,
                ]
            )
            if completed.returncode not in (0, 1):
                raise BenchmarkError(f"verify-mergeable failed: {completed.stderr.strip()}")
            report = json.loads(completed.stdout)
            if (report.get("checkpoint") or {}).get("checkpoint") != checkpoint:
                said = completed.stderr
                raise BenchmarkError(f"the check did not go on from {checkpoint}: {said}")
            if report["merge"] is None:
                raise BenchmarkError("the check judged no merge")
            # The merge is made anew by each check, at its own second, and the plans'
            # outlook tells times from now: the verdicts are what must agree.
            reports.append({key: report[key] for key in report if key not in ("merge", "plans")})
            times.append(seconds)
        seconds, completed = timed([*log, f"{BASE}..main"])
        if completed.returncode != 0:
            raise BenchmarkError(f"git log failed: {completed.stderr.strip()}")
        reference.append(seconds)
    if any(report != reports[0] for report in reports):
        raise BenchmarkError("the checks did not all say the same")
    return anchored, pinned, reference


def agreement(root: Path, manifest: HistoryManifest, scratch: Path, back: int) -> dict[str, Any]:
    """A fresh verify of main from a checkpoint `back` landings behind it against `verify
    --full`, verdict by verdict."""
    checkpoint = publish_at(root, manifest, back, scratch / "agree-service", "main")
    continued = reconciler(
        "verify", "--repo", root, "--state-dir", scratch / "agree-continued", "--format", "json"
    )
    full = reconciler(
        "verify",
        "--repo",
        root,
        "--state-dir",
        scratch / "agree-full",
        "--format",
        "json",
        "--full",
    )
    for result in (continued, full):
        if result.returncode not in (0, 1):
            raise BenchmarkError(f"verify failed: {result.stderr.strip()}")
    ours, theirs = json.loads(continued.stdout), json.loads(full.stdout)
    if (ours.get("checkpoint") or {}).get("checkpoint") != checkpoint:
        raise BenchmarkError(f"verify did not go on from {checkpoint}: {continued.stderr}")
    differing = [
        mine["commit"]
        for mine, other in zip(ours["landings"], theirs["landings"], strict=False)
        if mine != other
    ]
    same_state = state_digest(scratch / "agree-continued", "main") == state_digest(
        scratch / "agree-full", "main"
    )
    same = (
        same_state
        and not differing
        and len(ours["landings"]) == len(theirs["landings"])
        and ours["differs"] == theirs["differs"]
        and ours["authorised"] == theirs["authorised"]
        and continued.returncode == full.returncode
    )
    return {
        "landings": len(theirs["landings"]),
        "judged_from_checkpoint": ours["judged"],
        "differing": differing,
        "same_state": same_state,
        "agree": same,
    }


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = HistorySettings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.checkpoint",
        description="Time a pull-request check from a checkpoint against git log.",
    )
    parser.add_argument("--dir", type=Path, default=None, help="reuse or generate the history here")
    parser.add_argument("--commits", type=int, default=defaults.commits)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--plans", type=int, default=defaults.plans)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--pull-request", type=int, default=10, help="landings on top of the checkpoint"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--agree",
        action="store_true",
        help="also compare verify from the checkpoint with verify --full, verdict by verdict",
    )
    parser.add_argument(
        "--agree-back",
        type=int,
        default=None,
        help="landings behind main of --agree's checkpoint (default: half of them)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    arguments = parser.parse_args(argv)
    if arguments.repeat < 1 or arguments.pull_request < 1:
        parser.error("--repeat and --pull-request must be at least 1")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = HistorySettings(
        commits=arguments.commits,
        users=arguments.users,
        plans=arguments.plans,
        seed=arguments.seed,
    )
    try:
        with (
            benchmark_repository(settings, arguments.dir) as (root, manifest, origin),
            tempfile.TemporaryDirectory(prefix="reconciler-bench-checkpoint-") as scratch,
        ):
            work = Path(scratch)
            checkpoint = publish_at(root, manifest, arguments.pull_request, work / "service", BASE)
            size = int(_git(root, "cat-file", "-s", f"{checkpoint}:checkpoint.jsonl"))
            key_file = work / "service.pub"
            public = service_key(manifest.settings.seed).public
            key_file.write_text(f"{public.type} {base64.b64encode(public.blob).decode()}\n")
            ours, pinned, reference = pull_request_check(
                root, work, checkpoint, arguments.repeat, key_file
            )
            back = arguments.agree_back or manifest.landings // 2
            agreed = agreement(root, manifest, work, back) if arguments.agree else None
    except (BenchmarkError, HistoryError, ValueError, FileExistsError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    results: dict[str, Any] = {
        "repository": {"path": str(root), "origin": origin, "commits": manifest.commits},
        "checkpoint_bytes": size,
        "pull_request_landings": arguments.pull_request,
        "check_seconds": ours,
        "git_log_seconds": reference,
        "pinned_check_seconds": pinned,
        "check_median": statistics.median(ours),
        "pinned_check_median": statistics.median(pinned),
        "git_log_median": statistics.median(reference),
        "ratio": statistics.median(ours) / statistics.median(reference),
        "pinned_ratio": statistics.median(pinned) / statistics.median(reference),
        "goal_seconds": GOAL_SECONDS,
        "goal_met": statistics.median(ours) < GOAL_SECONDS,
        "pinned_goal_met": statistics.median(pinned) < GOAL_SECONDS,
        "agreement": agreed,
    }
    if arguments.format == "json":
        print(json.dumps(results, indent=2))
    else:
        print(
            f"{manifest.commits} commits, checkpoint {size / 1e6:.1f} MB at {BASE} "
            f"({arguments.pull_request} landings behind main)\n"
            f"(a) verify-mergeable from the checkpoint, trusting the anchor's service keys: "
            f"median {results['check_median']:.3f} s"
            f" (goal < {GOAL_SECONDS} s: {'met' if results['goal_met'] else 'missed'})\n"
            f"(a') the same with the service key pinned (--checkpoint-key): median "
            f"{results['pinned_check_median']:.3f} s"
            f" (goal < {GOAL_SECONDS} s: {'met' if results['pinned_goal_met'] else 'missed'})\n"
            f"(b) git log --first-parent -m --raw --no-renames {BASE}..main: median "
            f"{results['git_log_median']:.3f} s\n"
            f"ratio (a)/(b): {results['ratio']:.1f}x, (a')/(b): {results['pinned_ratio']:.1f}x"
        )
        if agreed is not None:
            print(
                f"agreement: verify from the checkpoint and verify --full "
                f"{'agree' if agreed['agree'] else 'DIFFER'} on {agreed['landings']} landings "
                f"(judged from the checkpoint: {agreed['judged_from_checkpoint']})"
            )
    return 0 if agreed is None or agreed["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
