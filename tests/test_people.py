"""What people see: the demo, status, history, init, and the command reference (docs/)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import reconciler as reconciler_package
from reconciler.adapters.statestore import StateStore
from reconciler.app import init as init_module
from reconciler.app.history import audit_trail
from reconciler.cli.reference import render, section
from reconciler.core.errors import UsageError
from tests.configrepo import Result, dump, reconciler, reconciler_process
from tests.people import People, teams_with
from tests.repositories import SeedRepo, run_git, trailers
from tests.runner import DOCS, ROOT_ADMIN, documented_row, init_repository, with_command_driver
from tests.scenarios import (
    DEV_PLAN,
    ECOMMERCE,
    PORTAL,
    PORTAL_DEV,
    QA_PLAN,
    dev_plan,
    ended,
    interrupted_qa_release,
    plan,
    proposed_qa_release,
    qa_plan,
    ran,
)


def test_the_demo_plays_the_seed_story_and_leaves_its_commits_and_deployments(
    tmp_path: Path,
) -> None:
    result = reconciler("demo", "--keep", tmp_path / "demo", timeout=300)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    repo = tmp_path / "demo" / "config"
    subjects = run_git(repo, "log", "--first-parent", "--format=%an|%s", "main").splitlines()
    assert subjects == [
        "reconciler|Deploy 2026-12-portal to quality-assurance: succeeded",
        "reconciler|Start 2026-12-portal in quality-assurance: run 2026-12-portal.2",
        "Olga Ops|Deploy 2026-12-portal for quality-assurance",
        "Ravi Review|Approve 2026-12-portal for quality-assurance",
        "Diana Lead|QA: Customer Portal 0.7.1",
        "reconciler|Deploy 2026-11-dev-build to development: succeeded",
        "reconciler|Start 2026-11-dev-build in development: run 2026-11-dev-build.3",
        "Diana Lead|Development build: Customer Portal 0.7-dev.2",
        "reconciler|Deploy 2026-12-portal to quality-assurance: failed",
        "reconciler|Start 2026-12-portal in quality-assurance: run 2026-12-portal.1",
        "Olga Ops|Deploy 2026-12-portal for quality-assurance",
        "Ravi Review|Approve 2026-12-portal for quality-assurance",
        "Diana Lead|QA: Customer Portal 0.7",
        "reconciler|Deploy 2026-11-dev-build to development: succeeded",
        "reconciler|Start 2026-11-dev-build in development: run 2026-11-dev-build.2",
        "Diana Lead|Development build: Customer Portal 0.7-dev.1",
        "reconciler|Deploy 2026-11-qa-release to quality-assurance: succeeded",
        "reconciler|Start 2026-11-qa-release in quality-assurance: run 2026-11-qa-release.1",
        "Olga Ops|Merge release/2026-11-qa",
        "Bob Dev|Ship it now",
        "reconciler|Deploy 2026-11-dev-build to development: succeeded",
        "reconciler|Start 2026-11-dev-build in development: run 2026-11-dev-build.1",
        "Diana Lead|Development build: Customer Portal 0.6-dev.41",
        "Alice Tech|Development build: eCommerce 1.4.0",
        "Root Admin|Seed configuration: teams, roles and three environments",
    ]
    release = run_git(repo, "log", "-1", "--format=%(trailers:only,unfold)", "main~16")
    assert (
        "Triggered-By: olga\nApproved-By: ravi\nResult: succeeded\nRun: 2026-11-qa-release.1"
        in release
    )
    # Customer Portal 0.7 failed QA's smoke test and was rolled back to 0.6, checked.
    rolled_back = run_git(repo, "log", "-1", "--format=%(trailers:only,unfold)", "main~8")
    assert "Failed-Verification: 1 customer-portal 0.7\n" in rolled_back
    assert rolled_back.endswith("Rolled-Back: customer-portal 0.6 (verified)")
    fixed = run_git(repo, "log", "-1", "--format=%(trailers:only,unfold)", "main")
    assert "Result: succeeded\nRun: 2026-12-portal.2\nVerified: 1 customer-portal 0.7.1" in fixed
    qa = yaml.safe_load((repo / "deployments/quality-assurance.yaml").read_text())
    assert {app: item["version"] for app, item in qa["applications"].items()} == {
        "customer-portal": "0.7.1",
        "ecommerce": "1.4.0",
    }
    assert "waiting    plans/2026-11-qa-hotfix.yaml" in result.stdout
    # Bob's push is his proposal: the plan waits for a trigger, and the push is no failed one.
    assert (
        "a trigger by a plan.deploy holder on quality-assurance (olga): `reconciler deploy "
        "2026-11-qa-hotfix`; it landed by fast-forward, rebase or a direct commit"
    ) in result.stdout
    assert "by bob does not count" not in result.stdout
    verify = reconciler("verify", "--repo", repo)
    assert verify.exit_code == 0, verify.stdout
    # Carry the story on as "Look around" says, line by line, with no identity but the one
    # it sets (it set only the signing key, and git committed under the machine's name):
    # Bob's hotfix, approved by Ravi and triggered by Olga, deploys from the story's releases.
    look_around = result.stdout.split("Look around:\n")[1].split("\n\n")[0].splitlines()
    carry_on = look_around[[line.strip()[:1] for line in look_around].index("#") + 1 :]
    bare = {key: value for key, value in os.environ.items() if not key.startswith("GIT_AUTHOR")}
    bare = {key: value for key, value in bare.items() if not key.startswith("GIT_COMMITTER")}
    outputs = []
    for line in carry_on:
        program, *args = shlex.split(line)
        if program == "git":
            ran = subprocess.run(
                ["git", *args], env=bare, capture_output=True, text=True, check=False
            )
            assert ran.returncode == 0, ran.stderr
            continue
        assert program == "reconciler"
        acted = reconciler(*args, env=bare)
        assert acted.exit_code == 0, acted.stdout + acted.stderr
        outputs.append(acted.stdout)
    assert "succeeded 2026-11-qa-hotfix.1" in outputs[-1]
    made = run_git(repo, "log", "--format=%an <%ae>|%s", "main").splitlines()
    assert "Olga Ops <olga@example.com>|Deploy 2026-11-qa-hotfix to quality-assurance" in made
    assert "Ravi Review <ravi@example.com>|Approve 2026-11-qa-hotfix for quality-assurance" in made


def test_the_demo_without_keep_leaves_nothing_behind(tmp_path: Path) -> None:
    result = reconciler(
        "demo",
        timeout=300,
        env={
            "TMPDIR": str(tmp_path),
            "PATH": __import__("os").environ["PATH"],
            "HOME": str(tmp_path),
        },
    )
    assert result.exit_code == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_demo_in_json_gives_each_scene_with_the_json_of_the_command_it_shows(
    tmp_path: Path,
) -> None:
    # A relative folder too: git reads the story's keys from inside its repositories.
    result = reconciler("demo", "--format", "json", "--keep", "demo", cwd=tmp_path, timeout=300)
    assert (result.exit_code, result.stderr) == (0, "")
    story = json.loads(result.stdout)
    assert story["repository"] == str(tmp_path / "demo" / "config")
    assert any("reconciler apply" in command for command in story["look_around"])
    shown = [
        key
        for scene in story["scenes"]
        for key in ("apply", "plan", "status", "history")
        if key in scene
    ]
    assert shown == ["apply", "plan", "apply", "apply", "apply", "status", "history"]
    qa_release, broken, fixed = (story["scenes"][index]["apply"]["runs"] for index in (-5, -4, -3))
    assert [(run["run"], run["result"]) for run in qa_release] == [
        ("2026-11-qa-release.1", "succeeded")
    ]
    assert [(run["run"], run["result"]) for run in broken] == [("2026-12-portal.1", "failed")]
    assert any(line.startswith("Rolled-Back: ") for line in story["scenes"][-4]["lines"])
    assert [(run["run"], run["result"]) for run in fixed] == [("2026-12-portal.2", "succeeded")]
    [hotfix] = story["scenes"][-6]["plan"]["plans"]
    assert (hotfix["plan"], hotfix["status"]) == ("plans/2026-11-qa-hotfix.yaml", "waiting")


def test_demo_keep_under_a_file_is_a_usage_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = reconciler("demo", "--keep", afile / "sub")
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: cannot create {afile / 'sub'}: Not a directory\n"
        "  hint: give --keep a new or empty folder you can write to\n"
    )


def known_history(tmp_path: Path, people: People) -> SeedRepo:
    """Development succeeded once, failed once; a hostile plan refused; QA waiting."""
    repo, out = with_command_driver(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    assert repo.apply().exit_code == 0
    out.with_name("driver.out.fail").write_text("customer-portal")
    repo.commit(
        people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, {**PORTAL_DEV, "version": "0.6-dev.42"})}
    )
    assert repo.apply().exit_code == 1
    repo.commit(
        people.bob,
        {
            "plans/hostile.yaml": dev_plan({"name": "ecommerce", "version": "1;x"}).replace(
                "2026-11-dev-build", "hostile"
            )
        },
        signed=False,
    )
    assert repo.apply().exit_code == 1
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.approve(people.ravi, QA_PLAN)
    return repo


def test_status_shows_what_runs_where_and_what_is_moving(tmp_path: Path, people: People) -> None:
    repo = known_history(tmp_path, people)
    status = repo.reconciler("status", "--format", "json").json()
    assert status["environments"] == ["development", "quality-assurance", "production"]
    assert status["applications"] == {
        "customer-portal": {"development": "0.6-dev.41"},
        "ecommerce": {"development": "1.4.0"},
    }
    moves = [(move["to"], move["plan"], move["label"]) for move in status["moves"]]
    assert moves == [
        ("development", "2026-11-dev-build", "failed"),
        ("quality-assurance", "2026-11-qa-release", "approved"),
        ("", "hostile", "refused"),
    ]
    text = repo.reconciler("status").stdout
    assert "ecommerce        1.4.0" in text
    assert max(len(line) for line in text.splitlines()) <= 80 + 20  # colour codes aside
    assert [line for line in text.splitlines() if line != line.rstrip()] == []


def test_status_labels_a_plan_nobody_needed_to_approve_ready_not_approved(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    dev = dump(
        {
            "name": "dev",
            "target": "development",
            "applications": [{"name": "ecommerce", "version": "1.4.0"}],
            "state": "ready",
        }
    )
    repo.commit(people.bob, {"plans/dev.yaml": dev}, signed=False)  # bob may not deploy
    decision = repo.decide()["plans/dev.yaml"]
    assert (decision.status, decision.approvers) == ("waiting", ())
    assert [wait.what for wait in decision.waits] == ["trigger"]
    moves = repo.reconciler("status", "--format", "json").json()["moves"]
    assert [(move["path"], move["label"]) for move in moves] == [("plans/dev.yaml", "ready")]


def test_history_tells_who_did_what_and_agrees_with_git_log(tmp_path: Path, people: People) -> None:
    repo = known_history(tmp_path, people)
    # By plan: the fixture dates its commits from two hours ago, the reconciler its records
    # now, so by time every record would come last.
    entries = repo.reconciler("history", "--by", "plan", "--format", "json").json()["entries"]
    summary = [
        (entry["action"], entry["actor"], entry["plan"], entry["counted"]) for entry in entries
    ]
    assert summary == [
        ("created", "alice", DEV_PLAN, True),
        ("triggered", "alice", DEV_PLAN, True),
        ("edited", "diana", DEV_PLAN, True),
        ("triggered", "diana", DEV_PLAN, True),
        ("run started", "reconciler", DEV_PLAN, True),
        ("run succeeded", "reconciler", DEV_PLAN, True),
        ("edited", "diana", DEV_PLAN, True),
        ("triggered", "diana", DEV_PLAN, True),
        ("run started", "reconciler", DEV_PLAN, True),
        ("run failed", "reconciler", DEV_PLAN, True),
        ("created", "bob", "plans/hostile.yaml", False),
        ("refused", "reconciler", "plans/hostile.yaml", True),
        ("created", "alice", QA_PLAN, True),
        ("approved", "ravi", QA_PLAN, True),
    ]
    for entry in entries:
        author = run_git(repo.path, "show", "-s", "--format=%ae", entry["commit"])
        assert author == f"{entry['actor']}@example.com"
        if entry["action"] in ("created", "edited"):
            changed = run_git(repo.path, "show", "--format=", "--name-only", entry["commit"])
            assert entry["plan"] in changed.splitlines()
        if entry["action"].startswith("run "):
            assert trailers(repo, entry["commit"])["Result"] == entry["action"].removeprefix("run ")
        if entry["action"] == "approved":
            assert trailers(repo, entry["commit"])["Approve-Plan"].startswith(QA_PLAN + "@")
    only_bob = repo.reconciler("history", "--user", "bob", "--format", "json").json()["entries"]
    assert [entry["commit"] for entry in only_bob] == [entries[10]["commit"]]
    only_qa = repo.reconciler("history", "2026-11-qa-release").stdout.splitlines()
    assert len(only_qa) == 2


def _history(repo: SeedRepo) -> list[dict[str, Any]]:
    result = repo.reconciler("history", "--format", "json")
    assert result.exit_code == 0, result.stderr
    entries: list[dict[str, Any]] = result.json()["entries"]
    return entries


def test_history_shows_an_editors_approval_as_not_counting_as_decide_does(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    approval = repo.approve(people.alice, QA_PLAN)  # alice created the plan
    assert repo.decide()[QA_PLAN].approvers == ()
    entries = [entry for entry in _history(repo) if entry["commit"] == approval]
    assert [(e["action"], e["actor"], e["counted"]) for e in entries] == [
        ("approved", "alice", False)
    ]
    assert entries[0]["detail"] == (
        f"version {repo.blob(QA_PLAN)[:12]}; does not count: "
        "alice edited the plan, and editors do not approve their own plans"
    )


def test_history_shows_a_second_trigger_of_a_version_that_ran_as_not_counting(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    first = repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, "2026-11-qa-release.1")
    again = repo.trigger(people.olga, QA_PLAN)
    assert repo.decide()[QA_PLAN].status == "done"
    triggers = [
        (entry["commit"], entry["counted"], entry["detail"])
        for entry in _history(repo)
        if entry["action"] == "triggered" and entry["plan"] == QA_PLAN
    ]
    version = f"version {repo.blob(QA_PLAN)[:12]}"
    assert triggers == [
        (first, True, version),
        (
            again,
            False,
            f"{version}; does not count: the version already ran: run 2026-11-qa-release.1",
        ),
    ]


def test_history_shows_a_second_finish_record_of_a_run_as_not_counting_as_decide_does(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    ran(repo, DEV_PLAN, "2026-11-dev-build.1", result="failed")
    first = repo.head()
    second = ended(repo, DEV_PLAN, "2026-11-dev-build.1", "succeeded")
    assert repo.decide()[DEV_PLAN].reasons == ("run 2026-11-dev-build.1 failed",)
    ends = [
        (entry["commit"], entry["action"], entry["counted"], entry["detail"])
        for entry in _history(repo)
        if entry["action"] in ("run failed", "run succeeded")
    ]
    assert ends == [
        (first, "run failed", True, "2026-11-dev-build.1"),
        (
            second,
            "run succeeded",
            False,
            f"2026-11-dev-build.1; does not count: the run already ended in {first[:12]}",
        ),
    ]


def test_history_shows_a_relanding_of_a_version_that_ran_as_not_a_trigger_that_counts(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})  # alice holds plan.deploy
    ran_blob = repo.blob(DEV_PLAN)
    ran(repo, DEV_PLAN, "2026-11-dev-build.1")
    repo.commit(people.alice, {DEV_PLAN: dev_plan({**ECOMMERCE, "version": "1.4.1"})})
    back = repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    assert repo.blob(DEV_PLAN) == ran_blob
    assert repo.decide()[DEV_PLAN].status == "done"
    triggers = [
        (entry["commit"], entry["counted"], entry["detail"])
        for entry in _history(repo)
        if entry["action"] == "triggered" and entry["plan"] == DEV_PLAN
    ]
    assert len(triggers) == 3
    assert [counted for _, counted, _ in triggers] == [True, True, False]
    assert triggers[2] == (
        back,
        False,
        "by landing it on main; does not count: the version already ran: run 2026-11-dev-build.1",
    )


def test_history_shows_a_draft_landed_by_a_deployer_as_landed_not_triggered(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    with repo.branch("draft"):
        repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE, state="draft")})
    merge = repo.merge(people.olga, "draft")  # olga holds plan.deploy on quality-assurance
    deploy = repo.trigger(people.olga, QA_PLAN)
    assert repo.decide()[QA_PLAN].status == "waiting"
    entries = {
        entry["commit"]: (entry["action"], entry["actor"], entry["counted"], entry["detail"])
        for entry in _history(repo)
        if entry["commit"] in (merge, deploy)
    }
    assert entries == {
        merge: (
            "landed",
            "olga",
            False,
            "by landing it on main; not a trigger: the version is draft, and a draft plan "
            "never runs",
        ),
        deploy: (
            "triggered",
            "olga",
            False,
            f"version {repo.blob(QA_PLAN)[:12]}; does not count: the version is draft, "
            "and a draft plan never runs",
        ),
    }


def test_history_reads_a_plan_version_stored_without_its_state_as_before(
    tmp_path: Path, people: People
) -> None:
    """Rows stored before versions kept their state: a landing by a deployer is a trigger."""
    store = StateStore(tmp_path / "state", "main")
    detail = {"seq": 3, "committed_at": "2026-11-02T10:00:00+00:00", "actor": "olga"}
    detail |= {"how": "signed", "verified": True, "triggered": True, "reasons": []}
    with sqlite3.connect(store.path) as older:  # as a reconciler of that time wrote it
        older.execute(
            "INSERT INTO plan_versions (path, blob, landing, detail) VALUES (?, ?, ?, ?)",
            (QA_PLAN, "a" * 40, "b" * 40, json.dumps(detail)),
        )
    older.close()
    [entry] = audit_trail(store)
    assert (entry.action, entry.actor, entry.counted, entry.detail) == (
        "triggered",
        "olga",
        True,
        "by landing it on main",
    )
    store.close()


def test_init_makes_a_repository_that_validates_and_verifies(
    tmp_path: Path, people: People
) -> None:
    target = tmp_path / "config"
    made = reconciler(
        "init",
        target,
        "--name",
        "Root Admin",
        "--email",
        "root@example.com",
        "--key",
        people.root.key.with_suffix(".pub"),
        "--format",
        "json",
    )
    assert made.exit_code == 0, made.stderr
    assert made.json()["admin"] == "root"
    assert reconciler("validate", "--repo", target).exit_code == 0
    verify = reconciler("verify", "--repo", target, "--format", "json")
    assert verify.exit_code == 0, verify.stdout
    assert verify.json()["anchor"] == run_git(target, "rev-parse", "HEAD")
    assert run_git(target, "status", "--porcelain") == ""
    assert (target / ".github/workflows/reconciler.yml").is_file()
    assert (
        "apply"
        not in (target / ".github/workflows/reconciler.yml")
        .read_text()
        .split("Never run")[1]
        .split("\n", 3)[-1]
    )
    assert (target / ".git/reconciler/service-key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("command", ["apply", "watch"])
def test_running_the_service_without_its_key_is_a_usage_error_naming_inits_key(
    tmp_path: Path, people: People, command: str
) -> None:
    target = tmp_path / "config"
    made = reconciler("init", target, "--key", people.root.key.with_suffix(".pub"))
    assert made.exit_code == 0, made.stderr
    env = {key: value for key, value in os.environ.items() if key != "RECONCILER_KEY"}
    result = reconciler(command, "--repo", target, env=env, timeout=60)
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        "error: the reconciler needs its service account's private key to sign records\n"
        f"  hint: pass --key FILE (or set RECONCILER_KEY): `reconciler init` left it in "
        f"{target / '.git/reconciler/service-key'}; `apply --dry-run` needs none\n"
    )


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path, people: People) -> None:
    (tmp_path / "something").write_text("x")
    result = reconciler("init", tmp_path, "--key", people.root.key.with_suffix(".pub"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path} is not empty")


def test_init_fits_a_fresh_clone_of_an_empty_repository_then_main_pushes(
    tmp_path: Path, people: People
) -> None:
    # A bare remote whose HEAD names another branch (git's default without a config).
    run_git(tmp_path, "init", "-q", "--bare", "remote.git")
    run_git(tmp_path, "clone", "-q", "remote.git", "clone")
    clone = tmp_path / "clone"
    made = init_repository(people, ".", *ROOT_ADMIN, "--format", "json", cwd=clone)
    assert (made.exit_code, made.stderr) == (0, ""), made.stderr
    anchor = made.json()["commit"]
    assert run_git(clone, "symbolic-ref", "--short", "HEAD") == "main"
    assert run_git(clone, "status", "--porcelain") == ""
    assert (clone / ".git/reconciler/service-key").is_file()
    run_git(clone, "push", "-q", "-u", "origin", "main")
    assert run_git(tmp_path / "remote.git", "rev-parse", "main") == anchor
    assert run_git(clone, "rev-parse", "--abbrev-ref", "main@{upstream}") == "origin/main"
    verify = reconciler("verify", "--repo", clone, "--format", "json")
    assert verify.exit_code == 0, verify.stdout
    assert verify.json()["anchor"] == anchor


def test_init_fits_a_folder_git_init_made(tmp_path: Path, people: People) -> None:
    run_git(tmp_path, "init", "-q", "config")
    made = init_as(tmp_path, people, "--name", "Root Admin", "--email", "root@example.com")
    assert made.exit_code == 0, made.stderr
    assert run_git(tmp_path / "config", "rev-list", "--all") == run_git(
        tmp_path / "config", "rev-parse", "main"
    )


def test_init_refuses_a_clone_that_already_has_history(tmp_path: Path, people: People) -> None:
    # The working tree is empty, but the history is not: init's commit would not be the root.
    run_git(tmp_path, "init", "-q", "-b", "main", "remote")
    run_git(tmp_path / "remote", "commit", "-q", "--allow-empty", "-m", "Someone else's start")
    run_git(tmp_path, "clone", "-q", "--no-checkout", "remote", "config")
    result = init_as(tmp_path, people)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: {tmp_path / 'config'} already has history: init makes a repository's first "
        "commit\n"
        "  hint: give init a new or empty folder, or a fresh clone of an empty repository\n"
    )
    assert list((tmp_path / "config").iterdir()) == [tmp_path / "config/.git"]


def test_init_refuses_a_dot_git_that_is_not_a_repository(tmp_path: Path, people: People) -> None:
    (tmp_path / "config/.git").mkdir(parents=True)
    result = init_as(tmp_path, people)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(f"error: {tmp_path / 'config/.git'} is not a Git repository\n")


def init_with_git_config(tmp_path: Path, people: People, *options: str, **config: str) -> Result:
    """`init` from outside any repository, git's global configuration holding `config`."""
    settings = tmp_path / "gitconfig"
    settings.write_text("".join(f"[user]\n\t{key} = {value}\n" for key, value in config.items()))
    return reconciler(
        "init",
        tmp_path / "config",
        *options,
        "--key",
        people.root.key.with_suffix(".pub"),
        cwd=tmp_path,
        env={**os.environ, "GIT_CONFIG_GLOBAL": str(settings)},
    )


def test_init_without_a_git_identity_warns_what_it_made_up(tmp_path: Path, people: People) -> None:
    made = init_with_git_config(tmp_path, people)
    assert made.exit_code == 0, made.stderr
    assert made.stderr == (
        "warning: git has no user.name or user.email, so the first admin's name and email in "
        "teams.yaml are made up: Admin, admin@example.com (user id admin)\n"
        "  hint: set yours (git config --global user.name and user.email, or pass --name and "
        "--email) and run init again in a new folder before you push; once pushed, correct "
        "users.admin in teams.yaml in a signed commit\n"
    )
    teams = yaml.safe_load((tmp_path / "config/teams.yaml").read_text())
    assert teams["users"]["admin"]["name"] == "Admin"
    assert teams["users"]["admin"]["emails"] == ["admin@example.com"]


def test_init_without_a_git_name_warns_of_the_name_alone(tmp_path: Path, people: People) -> None:
    made = init_with_git_config(tmp_path, people, email="ann@example.com")
    assert made.exit_code == 0, made.stderr
    assert made.stderr.startswith(
        "warning: git has no user.name, so the first admin's name in teams.yaml is made up: "
        "Admin (user id ann)\n"
    )


@pytest.mark.parametrize(
    ("options", "config"),
    [
        ((), {"name": "Ann Admin", "email": "ann@example.com"}),
        (("--name", "Ann Admin", "--email", "ann@example.com"), {}),
        (("--name", "Ann Admin"), {"email": "ann@example.com"}),
    ],
)
def test_init_with_a_name_and_email_from_git_or_options_does_not_warn(
    tmp_path: Path, people: People, options: tuple[str, ...], config: dict[str, str]
) -> None:
    made = init_with_git_config(tmp_path, people, *options, **config)
    assert (made.exit_code, made.stderr) == (0, "")
    teams = yaml.safe_load((tmp_path / "config/teams.yaml").read_text())
    assert teams["users"]["ann"] == {
        "name": "Ann Admin",
        "emails": ["ann@example.com"],
        "keys": [teams["users"]["ann"]["keys"][0]],
    }


def init_as(tmp_path: Path, people: People, *options: str) -> Result:
    """`reconciler init` into tmp_path/config with root's public key and `options`."""
    return init_repository(people, tmp_path / "config", *options)


def valid_teams_made_by_init(tmp_path: Path, people: People, *options: str) -> dict[str, Any]:
    """`init` with `options` succeeds, its repository validates: the teams.yaml it wrote."""
    made = init_as(tmp_path, people, *options)
    assert made.exit_code == 0, made.stderr
    target = tmp_path / "config"
    assert reconciler("validate", "--repo", target).exit_code == 0
    teams: dict[str, Any] = yaml.safe_load((target / "teams.yaml").read_text())
    return teams


@pytest.mark.parametrize("name", ["Ann #1 Admin", "Ann: Admin", "[Ann]", 'Ann, "the" {Admin}'])
def test_init_writes_a_name_that_yaml_would_misread_exactly_as_given(
    tmp_path: Path, people: People, name: str
) -> None:
    teams = valid_teams_made_by_init(tmp_path, people, "--name", name, "--email", "ann@example.com")
    assert teams["users"]["ann"]["name"] == name
    assert run_git(tmp_path / "config", "log", "-1", "--format=%an", "main") == name


@pytest.mark.parametrize("email", ["ann@example.com]", "ann,1@example.com"])
def test_init_writes_an_email_that_yaml_would_misread_exactly_as_given(
    tmp_path: Path, people: People, email: str
) -> None:
    teams = valid_teams_made_by_init(tmp_path, people, "--email", email, "--admin", "ann")
    assert teams["users"]["ann"]["emails"] == [email]


@pytest.mark.parametrize("email", ["not-an-email", "ann@example.com] # x"])
def test_init_refuses_an_email_that_is_not_an_address(
    tmp_path: Path, people: People, email: str
) -> None:
    result = init_as(tmp_path, people, "--email", email)
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: --email {email!r} is not an email address\n"
        "  hint: pass the address you commit with: no spaces or < >, one @, "
        "e.g. --email ann@example.com\n"
    )
    assert not (tmp_path / "config").exists()


@pytest.mark.parametrize(("admin", "suggested"), [("Ann Admin", "ann-admin"), ("x: y", "x-y")])
def test_init_refuses_an_admin_that_is_not_a_user_id(
    tmp_path: Path, people: People, admin: str, suggested: str
) -> None:
    result = init_as(tmp_path, people, "--admin", admin)
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: --admin {admin!r} is not a user id\n"
        "  hint: use lowercase letters and digits, words joined by single '.', '_' or '-', "
        f"at most 63 characters, e.g. --admin {suggested}\n"
    )
    assert not (tmp_path / "config").exists()


@pytest.mark.parametrize("name", ["", "   ", "Ann\nAdmin", "A" * 201])
def test_init_refuses_a_name_that_is_not_a_display_name(
    tmp_path: Path, people: People, name: str
) -> None:
    result = init_as(tmp_path, people, "--name", name)
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: --name {name!r} is not a display name\n"
        "  hint: give 1 to 200 characters, no control characters, e.g. --name 'Ann Admin'\n"
    )
    assert not (tmp_path / "config").exists()


def test_init_derives_a_user_id_from_a_long_email_that_fits_the_schema(
    tmp_path: Path, people: People
) -> None:
    made = init_as(tmp_path, people, "--email", "a." * 40 + "b@example.com", "--format", "json")
    assert made.exit_code == 0, made.stderr
    assert made.json()["admin"] == "a-" * 31 + "a"
    assert reconciler("validate", "--repo", tmp_path / "config").exit_code == 0


def test_init_makes_nothing_when_its_templates_would_not_validate(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(init_module.TEMPLATES, templates)
    production = templates / "production.yaml"
    production.write_text(production.read_text() + "surprise: 1\n")
    monkeypatch.setattr(init_module, "TEMPLATES", templates)
    with pytest.raises(UsageError) as raised:
        init_module.initialise(
            tmp_path / "config",
            name="Root Admin",
            email="root@example.com",
            public_key=people.root.public_key,
        )
    assert str(raised.value) == (
        "the new configuration would not be valid: environments/production.yaml:15:1: "
        "unknown key 'surprise' (allowed keys: driver, gates, name, on_failure, order, "
        "permissions, promotes_from, verify)"
    )
    assert not (tmp_path / "config").exists()


def test_init_under_a_file_is_a_usage_error(tmp_path: Path, people: People) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = reconciler("init", afile / "config", "--key", people.root.key.with_suffix(".pub"))
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: cannot create {afile / 'config'}: Not a directory\n"
        "  hint: give init a new or empty folder you can write to\n"
    )


def test_init_where_no_folder_can_be_made_is_a_usage_error(people: People) -> None:
    result = reconciler("init", "/proc/1/config", "--key", people.root.key.with_suffix(".pub"))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: cannot create /proc/1/config: "), result.stderr
    assert result.stderr.endswith("\n  hint: give init a new or empty folder you can write to\n")


def test_init_with_a_binary_key_file_says_it_is_not_a_public_key(tmp_path: Path) -> None:
    key = tmp_path / "key.pub"
    key.write_bytes(b"\xff\xfe\x00garbage\x80" * 20)
    result = reconciler("init", tmp_path / "config", "--key", key)
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: {key} is not an SSH public key\n  hint: pass --key ~/.ssh/id_ed25519.pub\n"
    )
    assert not (tmp_path / "config").exists()


def test_the_command_reference_matches_the_cli_help() -> None:
    assert section((DOCS / "commands.md").read_text()) == render().strip("\n"), (
        "regenerate it: python -m reconciler.cli.reference docs/commands.md"
    )


def test_the_command_reference_is_what_each_commands_help_prints() -> None:
    # What a user types, on a terminal 90 columns wide (click keeps 2 of them free).
    reference = section((DOCS / "commands.md").read_text())
    env = {**os.environ, "COLUMNS": "90"}
    names = re.findall(r"^## `reconciler (\S+)`$", reference, flags=re.MULTILINE)
    assert len(names) == 18
    for name in names:
        result = reconciler_process(name, "--help", env=env)
        assert result.exit_code == 0, result.stderr
        assert f"## `reconciler {name}`\n\n```\n{result.stdout}```" in reference, name


def test_the_module_map_names_every_module_of_the_package() -> None:
    # The map in docs/developing.md is how a newcomer finds their way: it may not fall behind.
    text = (DOCS / "developing.md").read_text()
    package = Path(reconciler_package.__file__).parent
    modules = sorted(
        path.relative_to(package).as_posix()
        for path in package.glob("*/*.py")
        if not path.name.startswith("_") and path.parent.name != "cli"
    )
    assert len(modules) > 40, modules
    assert [name for name in modules if f"`{name}`" not in text] == []


@pytest.mark.slow
def test_every_commands_json_has_the_keys_the_docs_document(tmp_path: Path, people: People) -> None:
    repo = known_history(tmp_path, people)
    outputs = {
        "validate": reconciler("validate", "--repo", repo.path, "--format", "json").json(),
        "verify": repo.reconciler("verify", "--format", "json").json(),
        "verify-mergeable": repo.reconciler(
            "verify-mergeable", "--base", "main", "--format", "json"
        ).json(),
        "access": repo.reconciler("access", "bob", "--format", "json").json(),
        "plan": repo.reconciler("plan", "--format", "json").json(),
        "apply": repo.apply("--dry-run", "--format", "json").json(),
        "status": repo.reconciler("status", "--format", "json").json(),
        "history": repo.reconciler("history", "--format", "json").json(),
    }
    for command, data in outputs.items():
        row = documented_row(command)
        for key in data:
            assert f"{key}" in row, f"{command}: '{key}' is not in docs/output-formats.md"
    assert set(outputs["plan"]["plans"][0]) == {
        "plan",
        "name",
        "blob",
        "environment",
        "rollback",
        "status",
        "position",
        "reasons",
        "waits",
        "approvers",
        "triggered_by",
        "run",
        "retry_of",
        "notes",
    }
    assert set(outputs["history"]["entries"][0]) == {
        "when",
        "commit",
        "plan",
        "environment",
        "action",
        "actor",
        "counted",
        "detail",
    }


def test_history_refuses_an_unknown_plan(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)  # development's versions: a run of 'earlier'
    result = repo.reconciler("history", "2026-11-qa-relase")
    assert result.exit_code == 2, result.stdout
    assert result.stderr == (
        "error: unknown plan 'plans/2026-11-qa-relase.yaml'\n"
        "  hint: did you mean 'plans/2026-11-qa-release.yaml'? (plans on the branch or in "
        "the trail: plans/2026-11-qa-release.yaml, plans/earlier.yaml)\n"
    )


def test_history_refuses_an_unknown_environment(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    result = repo.reconciler("history", "--env", "qa")
    assert result.exit_code == 2, result.stdout
    assert result.stderr == (
        "error: unknown environment 'qa'\n"
        "  hint: environments in environments/ or the trail: "
        "development, quality-assurance, production\n"
    )


def test_history_refuses_an_unknown_user(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    result = repo.reconciler("history", "--user", "olgaa")
    assert result.exit_code == 2, result.stdout
    assert result.stderr.splitlines() == [
        "error: unknown user 'olgaa'",
        "  hint: did you mean 'olga'? (users in teams.yaml or the trail: alice, bob, carol, "
        "diana, erik, fiona, olga, pm, ravi, reconciler, ... (11 in all))",
    ]


def test_history_of_a_user_removed_from_teams_yaml_still_shows_their_entries(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)

    def remove_diana(data: dict[str, Any]) -> None:
        del data["users"]["diana"]
        for team in data["teams"].values():
            team["members"].pop("diana", None)

    repo.commit(people.root, {"teams.yaml": teams_with(people, remove_diana)})
    result = repo.reconciler("history", "--user", "diana", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [(entry["action"], entry["plan"]) for entry in result.json()["entries"]] == [
        ("edited", QA_PLAN)
    ]


def test_history_of_a_deleted_plan_still_shows_its_entries(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.commit(people.diana, {QA_PLAN: None})
    result = repo.reconciler("history", "2026-11-qa-release", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [(entry["action"], entry["actor"]) for entry in result.json()["entries"]] == [
        ("created", "alice"),
        ("edited", "diana"),
        ("deleted", "diana"),
    ]


# Every command that reads history from the repository --repo names (validate reads
# the working tree alone, and needs no Git).
HISTORY_COMMANDS = [
    "verify",
    "plan",
    "apply --dry-run",
    "watch",
    "status",
    "history",
    "access bob",
    "approve x",
    "deploy x",
    "cancel x",
]


@pytest.mark.parametrize("command", ["validate", *HISTORY_COMMANDS])
def test_a_repo_that_does_not_exist_is_a_usage_error_with_a_hint(
    tmp_path: Path, command: str
) -> None:
    result = reconciler(*command.split(), "--repo", tmp_path / "nowhere")
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: {tmp_path / 'nowhere'} does not exist\n"
        "  hint: pass --repo with the configuration repository's path\n"
    )


@pytest.mark.parametrize("command", HISTORY_COMMANDS)
def test_a_repo_that_is_not_a_git_repository_is_a_usage_error_with_a_hint(
    tmp_path: Path, command: str
) -> None:
    # As for a --repo that does not exist: the command line names the wrong folder.
    result = reconciler(*command.split(), "--repo", tmp_path)
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (
        f"error: {tmp_path} is not a Git repository\n"
        "  hint: pass --repo with the configuration repository's path\n"
    )


@pytest.mark.parametrize("command", ["validate", "verify --all", "plan", "status", "history"])
def test_output_into_a_closed_pipe_ends_quietly_not_as_a_bug(
    tmp_path: Path, people: People, command: str
) -> None:
    # `reconciler plan | head -1`: the reader goes away before the output ends.
    repo = proposed_qa_release(tmp_path, people)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "reconciler", *command.split(), "--repo", str(repo.path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert completed.stderr == ""
    assert completed.returncode == 0  # `set -o pipefail; reconciler history | head` succeeds


def test_output_into_a_socket_whose_reader_has_gone_ends_quietly_not_as_a_bug(
    tmp_path: Path, people: People
) -> None:
    # A service manager's or a remote runner's stdout is a socket, not a pipe: once its
    # reader has gone, writing fails as into a pipe without a reader, and it polls as a
    # hang-up, not as an error.
    repo = proposed_qa_release(tmp_path, people)
    ours, theirs = socket.socketpair()
    theirs.close()
    with ours:
        completed = subprocess.run(
            [sys.executable, "-m", "reconciler", "history", "--repo", str(repo.path)],
            stdout=ours.fileno(),
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert completed.stderr == ""
    assert completed.returncode == 0  # as into a pipe whose reader has gone


def test_plan_on_a_feature_branch_names_the_branch_it_read_and_shows_yours_with_branch(
    tmp_path: Path, people: People
) -> None:
    # The developer's walkthrough: branch, add a plan, run `reconciler plan` before the PR.
    repo = SeedRepo.create(tmp_path, people)
    repo.git("checkout", "-q", "-b", "my-plan")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)}, "eCommerce 1.4.0 into development")
    on_main = repo.reconciler("plan")
    assert on_main.exit_code == 0, on_main.stderr
    assert on_main.stdout == "no plans on main\n"
    on_branch = repo.reconciler("plan", "--branch", "my-plan")
    assert on_branch.exit_code == 0, on_branch.stderr
    assert on_branch.stdout.startswith(f"executable {DEV_PLAN}@")


def test_history_names_the_environment_a_plan_targeted_when_it_was_approved(
    tmp_path: Path, people: People
) -> None:
    # The plan is approved into QA, deleted, and re-created into development: the approval
    # was one into QA, and `history --env quality-assurance` must still show it.
    repo = proposed_qa_release(tmp_path, people)
    approval = repo.approve(people.ravi, QA_PLAN)
    repo.commit(people.alice, {QA_PLAN: None})
    repo.commit(people.alice, {QA_PLAN: dev_plan(ECOMMERCE).replace("dev-build", "qa-release")})
    [entry] = [entry for entry in _history(repo) if entry["commit"] == approval]
    assert entry["environment"] == "quality-assurance"
    result = repo.reconciler("history", "--env", "quality-assurance", "--format", "json")
    assert approval in [entry["commit"] for entry in result.json()["entries"]]


def test_history_names_the_plan_and_environment_of_a_retry(tmp_path: Path, people: People) -> None:
    repo, _ = interrupted_qa_release(tmp_path, people)
    retry = repo.signoff(people.olga, "Retry-Run", "2026-11-qa-release.1")
    [entry] = [entry for entry in _history(repo) if entry["commit"] == retry]
    assert (entry["action"], entry["plan"], entry["environment"]) == (
        "asked to retry",
        QA_PLAN,
        "quality-assurance",
    )
    result = repo.reconciler("history", "2026-11-qa-release", "--format", "json")
    assert retry in [entry["commit"] for entry in result.json()["entries"]]


def test_history_shows_a_retry_of_a_run_that_succeeded_as_not_counting_as_decide_does(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, "2026-11-qa-release.1")
    retry = repo.signoff(people.olga, "Retry-Run", "2026-11-qa-release.1")
    assert repo.decide()[QA_PLAN].notes == (
        f"retry of 2026-11-qa-release.1 in {retry[:12]} does not count: only interrupted runs "
        "are retried, and 2026-11-qa-release.1 succeeded",
    )
    [entry] = [entry for entry in _history(repo) if entry["commit"] == retry]
    assert (entry["counted"], entry["detail"]) == (
        False,
        "run 2026-11-qa-release.1; does not count: only interrupted runs are retried, "
        "and 2026-11-qa-release.1 succeeded",
    )


def test_history_says_once_why_an_entry_does_not_count(tmp_path: Path, people: People) -> None:
    # A retry of a run that succeeded read "...; does not count: only interrupted runs are
    # retried, ... (does not count)".
    repo = proposed_qa_release(tmp_path, people)
    own = repo.approve(people.alice, QA_PLAN)  # alice edited the plan
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, "2026-11-qa-release.1")
    retry = repo.signoff(people.olga, "Retry-Run", "2026-11-qa-release.1")
    result = repo.reconciler("history")
    assert (result.exit_code, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    counts = [line.count("does not count") for line in lines]
    assert (max(counts), counts.count(1)) == (1, 2)  # alice's approval and the retry, once each
    [retried] = [line for line in lines if retry[:10] in line]
    assert retried.endswith(
        "2026-11-qa-release: run 2026-11-qa-release.1 (does not count: only interrupted runs "
        "are retried, and 2026-11-qa-release.1 succeeded)"
    )
    [approved] = [line for line in lines if own[:10] in line]
    assert approved.endswith(
        "(does not count: alice edited the plan, and editors do not approve their own plans)"
    )


def test_history_names_what_makes_an_invalid_plan_invalid(tmp_path: Path, people: People) -> None:
    # It said "refused: its content", and nothing of the rule the plan breaks; then
    # "refused: its content (needs a valid plan: ...)", as if a permission could fix it.
    repo = SeedRepo.create(tmp_path, people)
    invalid = repo.commit(people.alice, {DEV_PLAN: dev_plan({"name": "ecommerce"})})
    problem = f"{DEV_PLAN}:4:3: applications.0: missing required key 'version'"
    [entry] = [entry for entry in _history(repo) if entry["commit"] == invalid]
    assert (entry["action"], entry["actor"], entry["counted"]) == ("created", "alice", False)
    assert entry["detail"].endswith(f"; invalid: {problem}")
    assert "refused" not in entry["detail"]
    text = repo.reconciler("history").stdout
    assert f"; invalid: {problem} (does not count)" in text


def test_history_shows_a_retry_landed_before_the_run_was_recorded_interrupted_as_not_counting(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    run = "2026-11-qa-release.1"
    started = {"Plan": f"{QA_PLAN}@{repo.blob(QA_PLAN)}", "Environment": "quality-assurance"}
    repo.record({**started, "Run": run, "Result": "started", "Reconciler": "test-instance"})
    retry = repo.signoff(people.olga, "Retry-Run", run)  # while it runs
    ended(repo, QA_PLAN, run, "interrupted")
    assert repo.decide()[QA_PLAN].notes == (
        f"retry in {retry[:12]} by olga does not count: "
        "it landed before the run was recorded interrupted",
    )
    [entry] = [entry for entry in _history(repo) if entry["commit"] == retry]
    assert (entry["counted"], entry["detail"]) == (
        False,
        f"run {run}; does not count: it landed before the run was recorded interrupted",
    )


def test_history_names_the_environment_of_a_refused_plan_version(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    wrong = plan("2026-11-dev-build", "development", [ECOMMERCE], source="production")
    repo.commit(people.alice, {DEV_PLAN: wrong})
    assert repo.decide()[DEV_PLAN].status == "refused"
    assert repo.apply().exit_code == 1
    refusal = repo.head()
    [entry] = [entry for entry in _history(repo) if entry["commit"] == refusal]
    assert (entry["action"], entry["plan"], entry["environment"]) == (
        "refused",
        DEV_PLAN,
        "development",
    )


def test_history_keeps_an_approval_counted_when_its_approver_edits_the_plan_later(
    tmp_path: Path, people: People
) -> None:
    # Alice approves Diana's plan, which runs; only then does Alice add her application.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    approval = repo.approve(people.alice, QA_PLAN)
    assert repo.decide()[QA_PLAN].approvers == ("alice",)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, "2026-11-qa-release.1")
    repo.commit(people.alice, {QA_PLAN: qa_plan(PORTAL, ECOMMERCE)})
    [entry] = [entry for entry in _history(repo) if entry["commit"] == approval]
    assert (entry["actor"], entry["counted"], entry["detail"]) == (
        "alice",
        True,
        f"version {repo.blob(QA_PLAN, approval)[:12]}",
    )


def test_status_shows_a_run_of_a_version_no_longer_on_main_as_running(
    tmp_path: Path, people: People
) -> None:
    # QA's run of the approved version is under way when Diana edits the plan again.
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    running = f"{QA_PLAN}@{repo.blob(QA_PLAN)}"
    lease = "2026-11-22T13:00:00+00:00"
    repo.record(
        {"Plan": running, "Environment": "quality-assurance", "Run": "2026-11-qa-release.1"}
        | {"Result": "started", "Reconciler": "test-instance", "Lease-Until": lease}
    )
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="later")})
    moves = repo.reconciler("status", "--format", "json").json()["moves"]
    assert [(move["to"], move["plan"], move["label"], move["blob"]) for move in moves] == [
        ("quality-assurance", "2026-11-qa-release", "running", running.split("@")[1]),
        ("quality-assurance", "2026-11-qa-release", "saved", repo.blob(QA_PLAN)),
    ]


def test_history_lists_a_pull_requests_commits_in_the_order_they_were_made_whatever_the_clocks(
    tmp_path: Path, people: People
) -> None:
    # Alice's laptop clock runs an hour fast: Diana's edit on top of Alice's commit carries
    # an earlier date. git log --topo-order shows Alice's commit first, and so must history.
    repo = proposed_qa_release(tmp_path, people)
    with repo.branch("november"):
        first = repo.commit(
            people.alice,
            {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="A")},
            date=f"{repo.clock + 3600} +0000",
        )
        second = repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="B")})
    repo.merge(people.olga, "november")
    topo = repo.git("log", "--topo-order", "--reverse", "--format=%H", "main").split()
    assert topo.index(first) < topo.index(second)
    commits = [entry["commit"] for entry in _history(repo) if entry["action"] == "edited"]
    assert commits[-2:] == [first, second]


def test_history_names_who_wrote_a_trailer_that_was_ignored(tmp_path: Path, people: People) -> None:
    # Olga pastes an approval into her merge's message: it never counts, but it is hers.
    repo = proposed_qa_release(tmp_path, people)
    with repo.branch("readme"):
        repo.commit(people.root, {"README.md": "notes\n"})
    text = f"Merge readme\n\nApprove-Plan: {QA_PLAN}@{repo.blob(QA_PLAN)}"
    merge = repo.merge(people.olga, "readme", message=text)
    [entry] = [entry for entry in _history(repo) if entry["commit"] == merge]
    assert (entry["action"], entry["actor"], entry["counted"]) == ("ignored", "olga", False)
    result = repo.reconciler("history", "--user", "olga", "--format", "json")
    assert merge in [entry["commit"] for entry in result.json()["entries"]]


def test_a_merge_entry_names_only_the_mergers_own_edits_not_the_branchs(
    tmp_path: Path, people: People
) -> None:
    # erik's branch changes the notes; diana's merge also changes the ecommerce entry.
    # git log --cc shows her resolution as that entry alone: the notes are erik's.
    repo = proposed_qa_release(tmp_path, people)
    with repo.branch("notes"):
        repo.commit(people.erik, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="Portal invoices")})
    ecommerce_next = {**ECOMMERCE, "version": "1.4.1"}
    resolved = qa_plan(ecommerce_next, PORTAL, notes="Portal invoices")
    merge = repo.merge(people.diana, "notes", resolve={QA_PLAN: resolved})
    [entry] = [entry for entry in _history(repo) if entry["commit"] == merge]
    assert (entry["actor"], entry["counted"]) == ("diana", False)
    assert entry["detail"].startswith("merge resolution: the ecommerce entry")
    assert "notes" not in entry["detail"]


def test_status_shows_a_running_version_still_on_main_once_and_not_as_gone_from_main(
    tmp_path: Path, people: People
) -> None:
    # QA's run is under way when root drops the portal's team: the version on main is
    # refused from now on, but it is the running one, and it never left main.
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    blob = repo.blob(QA_PLAN)
    lease = "2026-11-22T13:00:00+00:00"
    repo.record(
        {"Plan": f"{QA_PLAN}@{blob}", "Environment": "quality-assurance"}
        | {"Run": "2026-11-qa-release.1", "Result": "started"}
        | {"Reconciler": "test-instance", "Lease-Until": lease}
    )

    def no_portal_team(data: dict[str, Any]) -> None:
        del data["teams"]["customer-portal"]

    repo.commit(people.root, {"teams.yaml": teams_with(people, no_portal_team)}, "Drop portal")
    moves = repo.reconciler("status", "--format", "json").json()["moves"]
    running = [move for move in moves if move["label"] == "running"]
    assert [move["blob"] for move in running] == [blob]
    assert not any("no longer on main" in reason for reason in running[0]["reasons"])


def test_history_names_the_environment_of_the_refused_version_not_of_a_later_edit(
    tmp_path: Path, people: People
) -> None:
    # The service refuses the development version; before its record lands, alice moves
    # the plan to QA. The record refuses the development version, as its trailer says.
    repo = SeedRepo.create(tmp_path, people)
    wrong = plan("2026-11-dev-build", "development", [ECOMMERCE], source="production")
    repo.commit(people.alice, {DEV_PLAN: wrong})
    refused = f"{DEV_PLAN}@{repo.blob(DEV_PLAN)}"
    repo.commit(people.alice, {DEV_PLAN: qa_plan(ECOMMERCE).replace("qa-release", "dev-build")})
    refusal = repo.record({"Result": "refused", "Refused-Plan": refused, "Reconciler": "test"})
    [entry] = [entry for entry in _history(repo) if entry["commit"] == refusal]
    assert (entry["action"], entry["environment"]) == ("refused", "development")
