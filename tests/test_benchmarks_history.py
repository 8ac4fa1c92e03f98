"""The history generator: git accepts its signatures, verify refuses exactly what it planted.

Small sizes (60 commits, 12 users, 20 plans, 10% unauthorised), so each
history is written in well under a second; the benchmark
(`python -m benchmarks.verify`) uses the same code at 10,000 commits.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.generate import main as generate_main
from benchmarks.history import (
    UNAUTHORISED_KINDS,
    HistoryManifest,
    HistorySettings,
    allowed_signers,
    append_signed_commit,
    generate_history,
    load_manifest,
)
from benchmarks.verify import check_report
from benchmarks.verify import main as verify_main
from reconciler.adapters.gitrepo import GitRepo
from reconciler.core.signatures import check_commit_signature
from tests.configrepo import reconciler
from tests.repositories import run_git

# Seed 2 plants all three kinds of unauthorised commit, some on side branches.
SMALL = HistorySettings(
    commits=60, users=12, plans=20, unauthorised=0.1, merges=0.25, policy_changes=1, seed=2
)


def generated(directory: Path, settings: HistorySettings = SMALL) -> HistoryManifest:
    return generate_history(settings, directory)


def statuses(root: Path, signers: Path) -> dict[str, str]:
    """git's own verdict (%G?) on every commit of main, with an allowed-signers file."""
    output = run_git(
        root, "-c", f"gpg.ssh.allowedSignersFile={signers}", "log", "--format=%H %G?", "main"
    )
    return dict(line.split() for line in output.splitlines())


def test_the_history_has_what_the_benchmark_needs(tmp_path: Path) -> None:
    root = tmp_path / "history"
    manifest = generated(root)
    assert int(run_git(root, "rev-list", "--count", "main")) == SMALL.commits == manifest.commits
    chain = run_git(root, "rev-list", "--first-parent", "main").split()
    assert len(chain) == manifest.landings + 1
    assert chain[-1] == manifest.anchor
    assert chain[0] == manifest.tip
    merges = run_git(root, "rev-list", "--merges", "main").split()
    assert len(merges) == manifest.merges > 0
    on_main = set(chain)
    for merge in merges:
        first, second = run_git(root, "rev-parse", f"{merge}^1", f"{merge}^2").split()
        assert merge in on_main  # merges land on main, never on side branches
        assert first in on_main
        side = run_git(root, "rev-list", "--count", f"{merge}^2", f"^{merge}^1")
        assert 1 <= int(side) <= 5
        assert second not in on_main
    assert manifest.signed > 0
    assert manifest.unsigned > 0
    assert manifest.policy_changes == 1
    assert {item.kind for item in manifest.unauthorised} == set(UNAUTHORISED_KINDS)
    assert any(item.commit != item.landing for item in manifest.unauthorised)  # via a merge
    assert load_manifest(root) == manifest
    assert run_git(root, "status", "--porcelain") == ""  # main is checked out


def test_signed_commits_verify_with_git_and_in_process(tmp_path: Path) -> None:
    root = tmp_path / "history"
    manifest = generated(root)
    signers = tmp_path / "allowed_signers"
    signers.write_text(allowed_signers(root))
    verdicts = statuses(root, signers)
    assert len(verdicts) == manifest.commits
    assert Counter(verdicts.values()) == {"G": manifest.signed, "N": manifest.unsigned}
    assert verdicts[manifest.anchor] == "G"
    run_git(root, "-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", manifest.anchor)
    with GitRepo(root) as repo:
        checks = {oid: check_commit_signature(repo.commit(oid).raw) for oid in verdicts}
    assert {oid for oid, check in checks.items() if check.good} == {
        oid for oid, verdict in verdicts.items() if verdict == "G"
    }
    assert {check.status for check in checks.values()} == {"good", "unsigned"}


def test_verify_refuses_exactly_the_deliberately_unauthorised_landings(tmp_path: Path) -> None:
    root = tmp_path / "history"
    manifest = generated(root)
    result = reconciler(
        "verify", "--repo", root, "--state-dir", tmp_path / "state", "--format", "json"
    )
    assert result.exit_code == 1, result.stderr
    report = result.json()
    landings = report["landings"]
    assert len(landings) == manifest.landings
    refused = {landing["commit"] for landing in landings if not landing["authorised"]}
    assert refused == manifest.refused_landings
    assert 0 < len(refused) < len(landings)
    blamed = {
        (refusal["commit"], refusal["path"], refusal["field"], refusal["actor"])
        for landing in landings
        for refusal in landing["refusals"]
    }
    assert blamed == {
        (item.commit, item.path, item.field, item.actor or "an unknown actor")
        for item in manifest.unauthorised
    }
    assert sorted(report["differs"]) == sorted(manifest.tainted_at_tip)
    assert check_report(report, manifest, "full", returncode=result.exit_code).passed

    # One more signed commit, judged incrementally from the kept state.
    signers = tmp_path / "allowed_signers"
    signers.write_text(allowed_signers(root))
    added = append_signed_commit(root, manifest)
    assert statuses(root, signers)[added] == "G"
    again = reconciler(
        "verify", "--repo", root, "--state-dir", tmp_path / "state", "--format", "json"
    )
    report = again.json()
    assert report["landings"][-1]["commit"] == added
    assert report["landings"][-1]["authorised"]
    assert check_report(report, manifest, "incremental", appended=[added]).passed


def test_an_openpgp_share_signs_with_sequoia_made_keys_that_verify_judges(
    tmp_path: Path,
) -> None:
    """--openpgp: a share of the users with a key list an OpenPGP certificate instead and
    sign with it; verify still refuses exactly what was planted, in full and after one
    more commit."""
    root = tmp_path / "history"
    manifest = generated(root, dataclasses.replace(SMALL, openpgp=0.5))
    assert 0 < manifest.openpgp_signed < manifest.signed
    with GitRepo(root) as repo:
        raws = [repo.commit(oid).raw for oid in run_git(root, "rev-list", "main").split()]
    assert sum(b"-----BEGIN PGP SIGNATURE-----" in raw for raw in raws) == manifest.openpgp_signed
    result = reconciler(
        "verify", "--repo", root, "--state-dir", tmp_path / "state", "--format", "json"
    )
    assert check_report(result.json(), manifest, "full", returncode=result.exit_code).passed
    added = append_signed_commit(root, manifest)
    again = reconciler(
        "verify", "--repo", root, "--state-dir", tmp_path / "state", "--format", "json"
    )
    assert check_report(again.json(), manifest, "incremental", appended=[added]).passed


def test_generation_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = generated(tmp_path / "first")
    second = generated(tmp_path / "second")
    assert dataclasses.replace(first, seconds=0) == dataclasses.replace(second, seconds=0)
    assert run_git(tmp_path / "first", "rev-parse", "main^{tree}") == run_git(
        tmp_path / "second", "rev-parse", "main^{tree}"
    )
    other = generated(tmp_path / "other", dataclasses.replace(SMALL, seed=3))
    assert other.tip != first.tip


def test_command_line_writes_once_and_replaces_only_a_generated_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "history"
    arguments = ["history", str(target), "--commits", "30", "--users", "12", "--plans", "10"]
    assert generate_main(arguments) == 0
    manifest = load_manifest(target)
    assert manifest is not None
    assert manifest.commits == 30
    assert generate_main(arguments) == 2
    assert "--replace" in capsys.readouterr().err
    assert generate_main([*arguments, "--replace", "--seed", "9"]) == 0
    replaced = load_manifest(target)
    assert replaced is not None
    assert replaced.tip != manifest.tip
    elsewhere = tmp_path / "not-a-history"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    assert generate_main(["history", str(elsewhere), "--commits", "5", "--replace"]) == 2
    assert (elsewhere / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "bench"
    arguments = ["--dir", str(directory), "--commits", "40", "--users", "12", "--plans", "20"]
    arguments += ["--repeat-log", "1", "--repeat-incremental", "1", "--format", "json"]
    assert verify_main(arguments) == 0
    output = json.loads(capsys.readouterr().out)
    assert [check["passed"] for check in output["checks"]] == [True] * 5
    assert {goal["status"] for goal in output["goals"]} <= {"PASS", "MISS"}
    # The reconciler's own peak at a quarter, half, once and twice the history.
    assert [point["commits"] for point in output["memory"]] == [10, 20, 40, 80]
    assert all(point["peak_mib"] > 0 for point in output["memory"])
    manifest = load_manifest(directory)
    assert manifest is not None
    assert run_git(directory, "rev-parse", "main") == manifest.tip  # main is put back


def test_the_floor_times_each_part_of_the_work_no_verify_avoids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["--dir", str(tmp_path / "bench"), "--commits", "40", "--users", "12"]
    assert verify_main([*arguments, "--plans", "20", "--floor"]) == 0
    output = capsys.readouterr().out
    lines = output.split("the walk in one process")[0].splitlines()
    parts = [line for line in lines if line.startswith(("git ", "signature", "libyaml", "interp"))]
    assert len(parts) == 5
    assert sum(float(line.split()[-1]) for line in parts) > 0
    assert any(
        line.startswith("at best on ") and line.endswith("before any judging") for line in lines
    )


def test_the_floor_of_the_code_as_it_is_counts_the_whole_walk_in_one_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["--dir", str(tmp_path / "bench"), "--commits", "40", "--users", "12"]
    assert verify_main([*arguments, "--plans", "20", "--floor"]) == 0
    lines = capsys.readouterr().out.split("the walk in one process")[1].splitlines()
    seconds = {
        line[:58].strip(): float(line[58:])
        for line in lines[1:]
        if line[:1].isalpha() and not line.startswith(("reference", "at best"))
    }
    assert set(seconds) == {
        "read ahead: log, commits, signatures, trees, versions",
        "judged and recorded in order (the rest)",
        "git processes",
        "total",
    }
    assert seconds["read ahead: log, commits, signatures, trees, versions"] > 0
    assert seconds["git processes"] > 0
    parts = sum(value for name, value in seconds.items() if name != "total")
    assert abs(seconds["total"] - parts) < 0.002  # three figures rounded to a millisecond
    best = next(line for line in lines if "max(total / cores, in order)" in line)
    at_best = float(best.split(": ")[1].split(" s")[0])
    assert at_best >= seconds["judged and recorded in order (the rest)"] - 0.001
