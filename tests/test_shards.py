"""Several reconcilers share the work: `--environments` shards, with real processes and remotes.

Each reconciler is a real `reconciler apply` (or `watch`) process on a clone of
one bare remote. A shard starts runs only in its environments, and still
verifies all of main; a finish record goes out on its own before the next start
record in its environment, so that environment is free for others to take.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from benchmarks.storm import git_contains, start_storm, stop_storm
from reconciler.app.passes import Options
from reconciler.app.reconcile import Reconciler
from tests.configrepo import dump
from tests.people import People
from tests.repositories import SeedRepo, run_git
from tests.runner import DRIVER, command_environment
from tests.scenarios import plan
from tests.test_crash_races import (
    RUN_1,
    apply_held_by,
    check_records,
    holding_driver_repo,
    records,
    verified,
)
from tests.test_push_storm import pushed_by_the_storm, storming_clone
from tests.test_watch import watch_argv

SHARDS = ("development", "quality-assurance", "production")
PORTAL = {"name": "customer-portal", "version": "0.6"}


def open_environment(name: str, script: Path, out: Path) -> str:
    """The example's environment file, its driver the command driver running `script`, with
    no gate but the promotion chain (the plans there need no approval nor window)."""
    text = command_environment(name, script, out)
    data = yaml.safe_load(text)
    data["permissions"]["plan.deploy"] = ["deployment", "tech-lead"]
    data["gates"] = {"approvals": [], "signed_commits": False}
    return dump(data)


def sharded_repo(
    tmp_path: Path, people: People, plans_each: int, *, unloadable: str | None = None
) -> tuple[SeedRepo, Path]:
    """The seed's three environments with no gates, run by the command driver, and
    `plans_each` ready plans into each; the repository and the driver's output (a line
    per step: plan, application, version, arguments).

    The environments form one promotion chain, so the plans into QA and production
    deploy the customer portal version that runs before them in the chain (put there by
    two setup runs), and development's plans each a new ecommerce version: any of them
    may run in any order.
    """
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "driver.out"
    extra = {f"environments/{name}.yaml": open_environment(name, script, out) for name in SHARDS}
    if unloadable is not None:  # its driver a plug-in this machine does not have
        data = yaml.safe_load(extra[f"environments/{unloadable}.yaml"])
        data["driver"] = {"type": "not-installed-here"}
        extra[f"environments/{unloadable}.yaml"] = dump(data)
    repo = SeedRepo.create(tmp_path, people, extra=extra)
    repo.commit(
        people.diana,
        {
            "plans/setup-development.yaml": plan("setup-development", "development", [PORTAL]),
            "plans/setup-quality-assurance.yaml": plan(
                "setup-quality-assurance", "quality-assurance", [PORTAL], source="development"
            ),
        },
    )
    setup = repo.apply()
    assert setup.exit_code == 0, setup.stderr
    out.unlink()
    sources = {later: earlier for earlier, later in pairwise(SHARDS)}
    repo.commit(
        people.diana,
        {
            f"plans/{name}-{index}.yaml": plan(
                f"{name}-{index}", name, [PORTAL], source=sources[name]
            )
            for name in SHARDS[1:]
            for index in range(plans_each)
        },
    )
    repo.commit(
        people.alice,
        {
            f"plans/development-{index}.yaml": plan(
                f"development-{index}",
                "development",
                [{"name": "ecommerce", "version": f"1.0.{index}"}],
            )
            for index in range(plans_each)
        },
    )
    return repo, out


def steps_run(out: Path) -> list[str]:
    """The plans the driver deployed, a line per step, as it ran them."""
    return [line.split()[0] for line in out.read_text().splitlines()] if out.exists() else []


@pytest.mark.slow
def test_three_sharded_reconcilers_run_each_plan_of_their_shard_once_while_a_person_pushes(
    tmp_path: Path, people: People
) -> None:
    plans_each = 3
    repo, out = sharded_repo(tmp_path, people, plans_each)
    remote = repo.publish_to_bare_remote()
    clones = {name: repo.clone(remote, f"reconciler-{name}") for name in SHARDS}
    stop, pushed = tmp_path / "stop", tmp_path / "pushed"
    storm = start_storm(
        storming_clone(tmp_path, remote, people.alice), 3.0, stop, pushed, os.environ
    )
    try:
        running = {
            name: subprocess.Popen(
                clone.apply_command(
                    "--remote", "origin", "--environments", name, instance=f"for-{name}"
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, clone in clones.items()
        }
        for process in running.values():
            _, errors = process.communicate(timeout=300)
            assert process.returncode == 0, errors
    finally:
        stormed = stop_storm(storm, stop)
    assert stormed == ""
    found = check_records(remote)  # one start and one finish record per run, no re-run
    found = {run_id: run for run_id, run in found.items() if not run_id.startswith("setup-")}
    assert len(found) == len(SHARDS) * plans_each
    for run_id, run in found.items():
        start = run["starts"][0]
        assert start["Reconciler"] == f"for-{start['Environment']}", run_id  # its shard's
        assert [finish["Result"] for finish in run["finishes"]] == ["succeeded"], run_id
    expected = sorted(f"{name}-{index}" for name in SHARDS for index in range(plans_each))
    assert sorted(steps_run(out)) == expected  # no version ran twice
    commits = pushed_by_the_storm(pushed)
    assert commits, "the person pushed nothing meanwhile"
    assert [commit for commit in commits if not git_contains(remote, commit)] == []
    verified(remote, tmp_path, people)


def test_a_shard_starts_runs_only_in_its_environments_and_verifies_all_of_main(
    tmp_path: Path, people: People
) -> None:
    repo, out = sharded_repo(tmp_path, people, 1)
    remote = repo.publish_to_bare_remote()
    service = repo.clone(remote, "service")
    dry = service.apply(
        "--remote", "origin", "--environments", "quality-assurance", "--dry-run", "--format", "json"
    )
    assert dry.exit_code == 0, dry.stderr
    assert [item["plan"] for item in dry.json()["would_run"]] == ["plans/quality-assurance-0.yaml"]
    result = service.apply(
        "--remote", "origin", "--environments", "development,production", "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["shard"] == ["development", "production"]
    assert sorted(run["environment"] for run in report["runs"]) == ["development", "production"]
    assert report["landings_verified"] > 0  # all of main, not only its shard's plans
    started = {
        record["Environment"]
        for record in records(remote)
        if record["Result"] == "started" and not record["Plan"].startswith("plans/setup-")
    }
    assert started == {"development", "production"}
    assert sorted(steps_run(out)) == ["development-0", "production-0"]
    # Unsharded, the next reconciler takes what is left.
    rest = service.apply("--remote", "origin", "--format", "json")
    assert rest.exit_code == 0, rest.stderr
    assert rest.json()["shard"] is None
    assert [run["environment"] for run in rest.json()["runs"]] == ["quality-assurance"]
    check_records(remote)


def test_a_finish_record_is_pushed_alone_before_the_next_start_where_others_take_work(
    tmp_path: Path, people: People
) -> None:
    # The setup's runs in development were started by `test-reconciler`, today.
    repo, _ = sharded_repo(tmp_path, people, 3)
    remote = repo.publish_to_bare_remote()
    run_git(remote, "config", "core.logAllRefUpdates", "always")  # a reflog entry per push
    since = run_git(remote, "rev-parse", "main")
    service = repo.clone(remote, "service")
    result = service.apply(
        "--remote", "origin", "--environments", "development", "--instance", "dev-shard"
    )
    assert result.exit_code == 0, result.stderr
    pushed = records_by_push(remote, since)
    for results in pushed:
        # Another reconciler could take the environment between the two pushes.
        assert not ("started" in results and "succeeded" in results), results
    assert len(pushed) >= 6  # three start records, three finish records
    succeeded = [r for r in records(remote) if r["Result"] == "succeeded"]
    assert len(succeeded) == 2 + 3  # the setup's runs, and this pass's
    check_records(remote)


def test_a_reconciler_alone_in_an_environment_sends_a_finish_record_with_the_next_start(
    tmp_path: Path, people: People
) -> None:
    # Nobody but `test-reconciler` ever ran in development: holding its next start back
    # would cost a push a run and free the environment for nobody.
    repo, _ = sharded_repo(tmp_path, people, 3)
    remote = repo.publish_to_bare_remote()
    run_git(remote, "config", "core.logAllRefUpdates", "always")
    since = run_git(remote, "rev-parse", "main")
    service = repo.clone(remote, "service")
    result = service.apply("--remote", "origin", "--environments", "development")
    assert result.exit_code == 0, result.stderr
    pushed = records_by_push(remote, since)
    assert sum("started" in results and "succeeded" in results for results in pushed) == 2
    succeeded = [r for r in records(remote) if r["Result"] == "succeeded"]
    assert len(succeeded) == 2 + 3
    check_records(remote)


@pytest.mark.slow
def test_another_reconcilers_run_of_a_plan_removed_since_still_makes_its_environment_shared(
    tmp_path: Path, people: People
) -> None:
    # `test-reconciler` ran setup-development today; its plan file is removed after (a
    # tidy-up), which must not hide that another reconciler takes work in development.
    repo, _ = sharded_repo(tmp_path, people, 3)
    repo.commit(people.diana, {"plans/setup-development.yaml": None})
    remote = repo.publish_to_bare_remote()
    run_git(remote, "config", "core.logAllRefUpdates", "always")
    since = run_git(remote, "rev-parse", "main")
    service = repo.clone(remote, "service")
    result = service.apply(
        "--remote", "origin", "--environments", "development", "--instance", "dev-shard"
    )
    assert result.exit_code == 0, result.stderr
    for results in records_by_push(remote, since):
        assert not ("started" in results and "succeeded" in results), results
    assert len([r for r in records(remote) if r["Result"] == "succeeded"]) == 2 + 3
    check_records(remote)


def records_by_push(remote: Path, since: str) -> list[list[str]]:
    """The records' results each push to the remote's main brought since it was at `since`,
    from its reflog."""
    pushes = [*run_git(remote, "reflog", "--format=%H", "main").split(), since]
    kinds = {record["commit"]: record for record in records(remote)}
    found = []
    for after, before in pairwise(pushes):
        landed = run_git(remote, "rev-list", f"{before}..{after}").split()
        found.append([kinds[commit]["Result"] for commit in landed if commit in kinds])
    return found


def test_environments_naming_an_environment_main_does_not_define_is_a_usage_error(
    tmp_path: Path, people: People
) -> None:
    repo, out = sharded_repo(tmp_path, people, 1)
    head = run_git(repo.path, "rev-parse", "main")
    result = repo.apply("--environments", "development,staging")
    assert result.exit_code == 2, result.stderr
    assert "staging" in result.stderr
    assert all(name in result.stderr for name in SHARDS)  # the known ones
    assert not out.exists()  # nothing ran, not even in development
    assert run_git(repo.path, "rev-parse", "main") == head  # no record either
    empty = repo.apply("--environments", " , ")
    assert empty.exit_code == 2
    watched = subprocess.run(
        [*watch_argv(repo, people, repo.path), "--environments", "staging"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert watched.returncode == 2, watched.stderr
    assert "staging" in watched.stderr
    assert "quality-assurance" in watched.stderr
    assert not out.exists()


def test_a_shard_marks_a_run_outside_it_interrupted_once_its_lease_passed_and_starts_nothing(
    tmp_path: Path, people: People
) -> None:
    repo, folder, remote = holding_driver_repo(tmp_path, people)
    slow = repo.clone(remote, "slow")
    other = repo.clone(remote, "other")
    options = Options(
        remote="origin",
        state_dir=other.state_dir,
        key=people.reconciler.key,
        instance="qa-only",
        driver_root=other.driver_root,
        environments=frozenset({"quality-assurance"}),
    )
    an_hour_on = lambda: datetime.now(UTC) + timedelta(hours=1)  # noqa: E731 - a clock
    with (
        apply_held_by(slow, folder / f"hold-{RUN_1}", folder / f"started-{RUN_1}"),
        Reconciler(other.path, options, clock=an_hour_on, sleep=time.sleep) as qa_only,
    ):
        report = qa_only.pass_once()
        assert report.interrupted == [RUN_1]  # bookkeeping, outside its shard too
        assert report.runs == []
        assert qa_only.pass_once().runs == []  # development's next run is not its to start
    found = check_records(remote)
    assert [finish["Result"] for finish in found[RUN_1]["finishes"]] == ["interrupted", "late"]
    assert set(found) == {RUN_1}
    verified(remote, tmp_path, people)


def test_a_shard_needs_only_its_own_environments_drivers(tmp_path: Path, people: People) -> None:
    repo, _ = sharded_repo(tmp_path, people, 1, unloadable="production")
    mine = repo.apply("--environments", "development,quality-assurance", "--format", "json")
    assert mine.exit_code == 0, mine.stderr
    assert mine.json()["held"] == []
    assert sorted(run["environment"] for run in mine.json()["runs"]) == [
        "development",
        "quality-assurance",
    ]
    everything = repo.apply("--format", "json")
    assert everything.exit_code == 1  # production's plan waits for its driver here
    assert [item["environment"] for item in everything.json()["held"]] == ["production"]
