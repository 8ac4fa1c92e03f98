"""`reconciler verify-mergeable`: the pull-request check judges only the pull request.

Real repositories, real people with real keys, signed commits made by git, the
real command in a subprocess; the test merge CI checks out is made the way
GitHub makes refs/pull/N/merge (git's merge of the base and the head, two
parents, committed by the host).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.configrepo import Result, dump
from tests.configrepo import reconciler as run_cli
from tests.people import (
    HOST_EMAIL,
    People,
    Person,
    make_mallory_the_settings_user,
    seed_teams,
    teams_with,
)
from tests.repositories import ConfigRepo, SeedRepo
from tests.runner import ROOT_ADMIN, init_repository
from tests.scenarios import (
    DEV_PLAN,
    ECOMMERCE,
    PORTAL,
    PROD_PLAN,
    QA_PLAN,
    dev_plan,
    prod_plan,
    proposed_qa_release,
    qa_plan,
)
from tests.test_attacks import raw_commit, stored_copy, with_an_extra_signature_header

QA_PLAN_TEXT_ENTRY = "name: ecommerce"


def mergeable(repo: SeedRepo, *args: str) -> Result:
    """The check, for HEAD into main, with the repository's own state directory."""
    return repo.reconciler("verify-mergeable", "--base", "main", *args)


def old_ci_check(repo: SeedRepo, state: Path) -> Result:
    """What `init`'s workflow ran before: every landing from the trust anchor to HEAD."""
    return run_cli(
        "verify", "--repo", repo.path, "--state-dir", state, "--branch", "main", "--to", "HEAD"
    )


def as_json(result: Result) -> dict[str, Any]:
    data = result.json()
    assert isinstance(data, dict)
    return data


def the_refused_check(repo: SeedRepo) -> dict[str, Any]:
    """The check in JSON, which must be red."""
    result = mergeable(repo, "--format", "json")
    assert result.exit_code == 1, result.stdout + result.stderr
    return as_json(result)


def main_landing_of_a_merge(
    repo: SeedRepo, merger: Person, branch: str
) -> tuple[str, dict[str, Any]]:
    """`merger`'s signed true merge of `branch` into main, and main's walk's landing of it."""
    repo.git("checkout", "-q", "main")
    merge = repo.merge(merger, branch)
    landing: dict[str, Any] = repo.reconciler("verify", "--format", "json").json()["landings"][-1]
    return merge, landing


def where(text: str, needle: str) -> tuple[int, int]:
    """The 1-based line and column where `needle` first stands in `text`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in the file")


def github_test_merge(repo: SeedRepo, branch: str) -> str:
    """refs/pull/7/merge as GitHub makes it for a pull request of `branch` into main: git's
    merge of main's tip and the branch, committed (unsigned) by the host; checked out
    detached, as actions/checkout does on a pull_request event."""
    tree = repo.git("merge-tree", "--write-tree", "main", branch).split()[0]
    env = {
        "GIT_AUTHOR_NAME": "GitHub",
        "GIT_AUTHOR_EMAIL": HOST_EMAIL,
        "GIT_COMMITTER_NAME": "GitHub",
        "GIT_COMMITTER_EMAIL": HOST_EMAIL,
    }
    message = f"Merge {repo.head(branch)} into {repo.head('main')}"
    parents = ("-p", repo.head("main"), "-p", repo.head(branch))
    merge = repo.git("commit-tree", tree, *parents, "-m", message, env=env)
    repo.git("update-ref", "refs/pull/7/merge", merge)
    repo.git("checkout", "-q", "--detach", merge)
    return merge


def erik_edits_the_ecommerce_entry(repo: SeedRepo) -> str:
    """On branch `erik`: erik (customer-portal's developer) changes ecommerce's version in
    the QA plan, an application that is not his team's. His commit."""
    with repo.branch("erik"):
        bad = qa_plan({**ECOMMERCE, "version": "9.9.9"}, PORTAL, notes="November release")
        return repo.commit(repo.people.erik, {QA_PLAN: bad}, signed=False)


# -- only the pull request's landing counts -------------------------------------------------------


def test_an_innocent_pull_request_is_green_on_a_main_that_holds_old_refusals(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    # Old refusals on main: in the plan the pull request edits, and in teams.yaml.
    notes = repo.commit(
        people.mallory, {QA_PLAN: qa_plan(ECOMMERCE, notes="mallory was here")}, signed=False
    )
    teams = teams_with(people, lambda data: data["infrastructure"]["settings"].append("bob"))
    repo.commit(people.mallory, {"teams.yaml": teams}, signed=False)
    with repo.branch("portal"):
        diana = repo.commit(
            people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="mallory was here")}
        )
    repo.git("checkout", "-q", "portal")
    # The check init's workflow ran before judged every landing since the trust anchor.
    assert old_ci_check(repo, tmp_path / "old-ci").exit_code == 1

    result = mergeable(repo, "--format", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    data = as_json(result)
    assert data["authorised"] is True
    assert data["landed"] == [diana]
    assert data["head"] == data["tested"] == diana
    assert data["base_tip"] == repo.head("main")
    assert data["refusals"] == []
    # main's refused notes are in the file it edits: told apart, never the pull request's.
    assert [(item["commit"], item["field"]) for item in data["inherited"]] == [(notes, "notes")]
    assert data["changes"] == [{"path": QA_PLAN, "kind": "plan", "change": "modified"}]
    github = mergeable(repo, "--format", "github")
    assert github.exit_code == 0
    assert [line.split(" ", 1)[0] for line in github.stdout.splitlines()] == ["::notice"]
    text = mergeable(repo)
    assert text.exit_code == 0
    assert f"merging {diana[:12]} into main ({repo.head('main')[:12]}): authorised" in text.stdout
    assert "already refused on main (not this pull request's):" in text.stdout
    # The state stays main's: the pull request's landing was judged and forgotten.
    verify = repo.reconciler("verify", "--format", "json").json()
    assert verify["tip"] == repo.head("main")
    assert diana not in [commit for landing in verify["landings"] for commit in landing["landed"]]


def workflow_checks(target: Path, state: Path) -> list[tuple[int, str]]:
    """Run the `verify-mergeable` steps of the workflow `init` wrote, as GitHub Actions
    runs them (bash, its variables, every step after a failure only `if: always()`), for
    a pull request into main checked out in `target`: each step's exit code and output."""
    workflow = yaml.safe_load((target / ".github/workflows/reconciler.yml").read_text())
    summary = state.parent / "step-summary.md"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_BASE_REF": "main",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    ran: list[tuple[int, str]] = []
    for step in workflow["jobs"]["check"]["steps"]:
        if "reconciler verify-mergeable" not in step.get("run", ""):
            continue
        if any(code for code, _ in ran) and step.get("if") != "always()":
            continue
        step_env = {
            key: value.replace("${{ runner.temp }}", str(state.parent))
            for key, value in step.get("env", {}).items()
        }
        done = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=target,
            env={**env, **step_env},
            capture_output=True,
            text=True,
            check=False,
        )
        ran.append((done.returncode, done.stdout + done.stderr))
    ran.append((0, summary.read_text() if summary.exists() else ""))
    return ran


def test_inits_workflow_is_green_for_an_innocent_pull_request_after_refusals_on_main(
    tmp_path: Path, people: People
) -> None:
    target = tmp_path / "config"
    made = init_repository(people, target, *ROOT_ADMIN)
    assert made.exit_code == 0, made.stderr
    repo = ConfigRepo(target, people, tmp_path / "unused-state")
    # A refused landing on main: before, the workflow's check was red for every pull
    # request after it.
    repo.commit(people.mallory, {DEV_PLAN: dev_plan(ECOMMERCE)}, signed=False)
    with repo.branch("tidy"):
        text = (target / "environments/development.yaml").read_text()
        repo.commit(people.root, {"environments/development.yaml": "# tidy\n" + text})
    repo.git("checkout", "-q", "tidy")
    [(annotations, output), (comment, _), (_, summary)] = workflow_checks(
        target, tmp_path / "ci" / "reconciler-state"
    )
    assert (annotations, comment) == (0, 0), output
    assert summary.startswith("### reconciler: merging into `main` is **authorised**")
    assert "- modified `environments/development.yaml` (environment)" in summary

    with repo.branch("evil"):
        repo.commit(people.mallory, {"environments/development.yaml": "# mine\n" + text})
    repo.git("checkout", "-q", "evil")
    [(annotations, output), (comment, _), (_, summary)] = workflow_checks(
        target, tmp_path / "ci-2" / "reconciler-state"
    )
    assert (annotations, comment) == (1, 1)
    assert output.startswith("::error file=environments/development.yaml,line=1,col=1,")
    assert "#### Refused" in summary


def test_a_refused_entry_is_annotated_at_its_line_with_the_fix_and_who_may_make_it(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    erik = erik_edits_the_ecommerce_entry(repo)
    repo.git("checkout", "-q", "erik")
    line, column = where((repo.path / QA_PLAN).read_text(), QA_PLAN_TEXT_ENTRY)

    result = mergeable(repo, "--format", "github")
    assert result.exit_code == 1, result.stdout + result.stderr
    [annotation] = result.stdout.splitlines()
    assert annotation.startswith(
        f"::error file={QA_PLAN},line={line},col={column},"
        "title=plans/2026-11-qa-release.yaml (the ecommerce entry) needs plan.edit on "
        "quality-assurance for ecommerce::"
    ), annotation
    message = annotation.split("::", 2)[2]
    assert message == (
        f"plans/2026-11-qa-release.yaml (the ecommerce entry): changed by erik in {erik[:12]}, "
        "which needs plan.edit on quality-assurance for ecommerce: ecommerce belongs to team "
        "ecommerce, and erik is not a member of it; erik holds developer in customer-portal"
        "%0Afix: only alice, bob may make this change: have one of them commit it, or take it "
        "out of the pull request"
    )
    [refusal] = the_refused_check(repo)["refusals"]
    assert (refusal["line"], refusal["column"], refusal["may"]) == (line, column, ["alice", "bob"])
    assert (refusal["commit"], refusal["merger"]) == (erik, False)


def carol_made_tech_lead_puts_ecommerce_in_production(
    repo: SeedRepo, granter: Person, message: str
) -> tuple[str, str]:
    """Branch `promote`, checked out: `granter` makes carol (ecommerce's tester) its tech
    lead in teams.yaml, then carol adds ecommerce to a production plan. The two commits."""
    with repo.branch("promote"):
        teams = teams_with(
            repo.people,
            lambda data: data["teams"]["ecommerce"]["members"].update(carol="tech-lead"),
        )
        grant = repo.commit(granter, {"teams.yaml": teams}, message)
        edit = repo.commit(repo.people.carol, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.git("checkout", "-q", "promote")
    return grant, edit


def test_a_grant_in_the_pull_request_authorises_nothing_it_lands(
    tmp_path: Path, people: People
) -> None:
    # carol, ecommerce's tester, wants to put ecommerce into production; production's
    # plan.edit is for tech leads. Her pull request makes her one, then edits the plan.
    repo = SeedRepo.create(tmp_path, people)
    granted, edit = carol_made_tech_lead_puts_ecommerce_in_production(
        repo, people.root, "carol leads ecommerce"
    )
    # Before: each commit of a linear branch was a landing of its own, so carol's edit was
    # judged by the policy root's grant had just made, and the check passed.
    assert old_ci_check(repo, tmp_path / "old-ci").exit_code == 0

    data = the_refused_check(repo)
    assert data["landed"] == [granted, edit]
    # root's grant is authorised, and authorises nothing landed with it: carol's new plan
    # is refused field by field.
    assert {(item["commit"], item["path"]) for item in data["refusals"]} == {(edit, PROD_PLAN)}
    [refusal] = [item for item in data["refusals"] if item["field"] == "app:ecommerce"]
    assert refusal["reasons"] == [
        "carol is tester in ecommerce, which owns ecommerce",
        "production grants plan.edit to tech-lead",
    ]
    assert refusal["may"] == ["alice"]  # under main's policy, not the pull request's


def test_a_pull_request_that_grants_itself_a_role_is_red_for_the_grant_and_the_edit(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    grant, edit = carol_made_tech_lead_puts_ecommerce_in_production(
        repo, people.carol, "I lead ecommerce now"
    )
    refused = {(item["commit"], item["path"]) for item in the_refused_check(repo)["refusals"]}
    assert (grant, "teams.yaml") in refused
    assert (edit, PROD_PLAN) in refused


@pytest.mark.parametrize("shape", ["orphan", "rewritten root"])
def test_a_pull_request_that_does_not_descend_from_the_trust_anchor_is_refused(
    tmp_path: Path, people: People, shape: str
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    anchor = repo.head()
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    # mallory's history, where she is the settings user: an orphan branch, or main's own
    # history rewritten from its root (the seed commit again, with her in it, and main's
    # later commits replayed on top).
    teams = seed_teams(people)
    make_mallory_the_settings_user(teams, people)
    repo.git("checkout", "-q", "--orphan", "evil")
    if shape == "orphan":
        repo.git("rm", "-q", "-r", "--cached", ".")
        repo.commit(people.mallory, {"teams.yaml": dump(teams)}, "root")
    else:
        repo.git("read-tree", "--reset", "-u", anchor)
        root = repo.commit(people.mallory, {"teams.yaml": dump(teams)}, "Seed configuration")
        repo.git("cherry-pick", "--allow-empty", f"{anchor}..main")
        assert repo.git("rev-list", "--max-parents=0", "HEAD") == root
    production = (repo.path / "environments/production.yaml").read_text()
    anyone = production.replace("plan.deploy: [deployment]", "plan.deploy: [developer]")
    evil = repo.commit(people.mallory, {"environments/production.yaml": anyone})

    # CI's fresh state takes main's one root as its anchor, and looks no further for the
    # roots of a pull request that brings none of its own: hers is one.
    fresh = ("--repo", repo.path, "--state-dir", tmp_path / "fresh")
    for output in ("text", "json", "github", "markdown"):
        for result in (
            mergeable(repo, "--format", output),
            run_cli("verify-mergeable", "--base", "main", *fresh, "--format", output),
        ):
            assert result.exit_code == 1, result.stdout
            assert result.stderr.splitlines()[0] == (
                f"error: HEAD ({evil[:12]}) does not descend from the trust anchor "
                f"{anchor[:12]} of main: its history is not the branch's, and is not "
                "verified against it"
            )


def test_a_pull_request_already_in_its_base_is_green_with_nothing_to_merge(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.mallory, {DEV_PLAN: dev_plan(ECOMMERCE)}, signed=False)  # refused
    result = mergeable(repo)
    assert result.exit_code == 0, result.stderr
    assert f"nothing to merge: {repo.head()[:12]} is already in main" in result.stdout
    data = as_json(mergeable(repo, "--format", "json"))
    assert (data["merge"], data["authorised"], data["refusals"]) == (None, True, [])


def test_a_pull_request_that_does_not_merge_cleanly_is_refused_naming_the_conflict(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    with repo.branch("other"):
        repo.commit(people.alice, {DEV_PLAN: dev_plan({**ECOMMERCE, "version": "1.5.0"})})
    repo.commit(people.alice, {DEV_PLAN: dev_plan({**ECOMMERCE, "version": "1.6.0"})})
    repo.git("checkout", "-q", "other")
    result = mergeable(repo)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: HEAD ({repo.head()[:12]}) does not merge cleanly into main: {DEV_PLAN} conflict"
    )
    assert "hint: merge main into the pull request" in result.stderr


# -- the shapes CI checks out ---------------------------------------------------------------------


def test_the_test_merge_ci_checks_out_is_judged_by_its_second_parent_on_the_base_as_it_is_now(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    with repo.branch("portal"):
        diana = repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    test_merge = github_test_merge(repo, "portal")
    # main moves on after GitHub made the test merge: the check merges again onto its tip.
    repo.git("checkout", "-q", "main")
    moved = repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.git("checkout", "-q", "--detach", test_merge)

    data = as_json(mergeable(repo, "--format", "json"))
    assert data["authorised"] is True, data
    assert (data["tested"], data["head"], data["base_tip"]) == (test_merge, diana, moved)
    assert data["landed"] == [diana]  # not the host's merge: it holds nothing of its own
    assert data["merge"] not in (test_merge, None)


def test_a_refused_pull_request_in_the_test_merge_is_annotated_at_the_heads_line(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    erik = erik_edits_the_ecommerce_entry(repo)
    line, column = where(repo.git("show", f"{erik}:{QA_PLAN}"), QA_PLAN_TEXT_ENTRY)
    github_test_merge(repo, "erik")
    result = mergeable(repo, "--format", "github")
    assert result.exit_code == 1, result.stderr
    [annotation] = result.stdout.splitlines()
    assert annotation.startswith(f"::error file={QA_PLAN},line={line},col={column},")
    assert f"changed by erik in {erik[:12]}" in annotation


def test_a_head_merge_that_holds_edits_of_its_own_is_judged_whole(
    tmp_path: Path, people: People
) -> None:
    # mallory's pull request is a merge onto main's tip, like a host's test merge, but its
    # conflict-free "resolution" changes ecommerce's entry: it is her head, judged whole.
    repo = proposed_qa_release(tmp_path, people)
    with repo.branch("harmless"):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="Release")})
    with repo.branch("evil"):
        evil = repo.merge(
            people.mallory,
            "harmless",
            resolve={QA_PLAN: qa_plan({**ECOMMERCE, "version": "6.6.6"}, PORTAL, notes="Release")},
            signed=False,
        )
    assert repo.git("rev-parse", f"{evil}^1") == repo.head("main")
    repo.git("checkout", "-q", "evil")
    data = the_refused_check(repo)
    assert data["head"] == evil
    assert [(item["commit"], item["field"]) for item in data["refusals"]] == [
        (evil, "app:ecommerce")
    ]


# -- what only a merger could do ------------------------------------------------------------------


def test_a_change_only_a_merger_could_make_names_who_may_merge_it(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    with repo.branch("fiona"):  # pm, who holds projects, makes fiona a developer
        repo.commit(
            people.pm,
            {
                "teams.yaml": teams_with(
                    people,
                    lambda data: data["teams"]["customer-portal"]["members"].update(
                        fiona="developer"
                    ),
                )
            },
        )
    # Meanwhile root onboards someone on main, further down teams.yaml: both sides changed
    # the file, so the merged text is the merge's own, and only its author may write it.
    teams = seed_teams(people)
    teams["teams"]["operations"]["members"]["ravi"] = "deployment"
    repo.commit(people.root, {"teams.yaml": dump(teams)})
    repo.git("checkout", "-q", "fiona")

    [refusal] = the_refused_check(repo)["refusals"]
    assert (refusal["path"], refusal["field"], refusal["merger"], refusal["may"]) == (
        "teams.yaml",
        "text",
        True,
        ["pm", "root"],
    )
    assert refusal["message"] == (
        "teams.yaml (its comments and layout): the merge itself makes this change (both sides "
        "changed it), which needs teams.edit"
    )
    assert refusal["fix"] == (
        "only a merge by pm, root could land it (their signed true merge makes it theirs); or "
        "rebase the pull request on main, its commits signed again by their authors"
    )
    # As it says: pm's signed true merge lands it.
    merge, landing = main_landing_of_a_merge(repo, people.pm, "fiona")
    assert (landing["commit"], landing["authorised"]) == (merge, True)


def test_a_change_made_on_a_refused_value_names_who_may_merge_it(
    tmp_path: Path, people: People
) -> None:
    # main holds mallory's refused version of ecommerce; alice's pull request sets the one
    # she wants, but on top of mallory's: merged, that change is whoever merges' own.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.mallory, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "6.6.6"})}, signed=False)
    with repo.branch("fix"):
        fixed = repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.5.0"})})
    repo.git("checkout", "-q", "fix")

    [refusal] = the_refused_check(repo)["refusals"]
    assert (refusal["commit"], refusal["field"], refusal["merger"], refusal["may"]) == (
        fixed,
        "app:ecommerce",
        True,
        ["alice", "bob"],
    )
    assert refusal["message"] == (
        f"{QA_PLAN} (the ecommerce entry): changed in {fixed[:12]} from a value that is not "
        "main's effective one (superseded since, or never authorised), so once merged it is "
        "the change of whoever merges, which needs plan.edit on quality-assurance for ecommerce"
    )
    assert refusal["fix"] == (
        "only a merge by alice, bob could land it (their signed true merge makes it theirs)"
    )
    # As it says: alice's merge lands it.
    merge, landing = main_landing_of_a_merge(repo, people.alice, "fix")
    assert (landing["commit"], landing["authorised"]) == (merge, True)


# -- the comment ----------------------------------------------------------------------------------


def test_the_markdown_comment_says_what_the_merge_changes_and_what_each_plan_would_wait_for(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    repo.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    with repo.branch("release"):
        repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
        repo.approve(people.ravi, QA_PLAN)  # on the pull request's branch: it lands with it
    repo.git("checkout", "-q", "release")

    result = mergeable(repo, "--format", "markdown")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "### reconciler: merging into `main` is **authorised**"
    assert "#### Refused" not in lines
    changes = lines.index("#### What the merge changes")
    assert lines[changes + 2] == f"- added `{QA_PLAN}` (plan)"
    once = lines.index("#### Once merged")
    assert lines[once + 2] == (
        f"- `{QA_PLAN}` into `quality-assurance` (added): would wait for: a trigger by a "
        "plan.deploy holder on quality-assurance (olga): \\`reconciler deploy "
        "2026-11-qa-release\\`, or their true merge"
    )

    erik_edits = {**ECOMMERCE, "version": "9.9.9"}
    repo.commit(people.erik, {QA_PLAN: qa_plan(erik_edits)}, signed=False)
    refused = mergeable(repo, "--format", "markdown")
    assert refused.exit_code == 1
    lines = refused.stdout.splitlines()
    assert lines[0] == "### reconciler: merging into `main` is **refused**"
    section = lines.index("#### Refused")
    line, _ = where((repo.path / QA_PLAN).read_text(), QA_PLAN_TEXT_ENTRY)
    assert lines[section + 2].startswith(
        f"- `{QA_PLAN}:{line}`: {QA_PLAN} (the ecommerce entry): changed by erik in "
    )
    assert lines[section + 3] == (
        "  - fix: only alice, bob may make this change: have one of them commit it, or take it "
        "out of the pull request"
    )
    assert f"- `{QA_PLAN}` (added): would be refused: main's content is not authorised" in (
        refused.stdout
    )


def test_a_file_name_cannot_forge_markup_in_the_markdown_comment(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    with repo.branch("docs"):
        name = "docs/`x` **authorised** <img src=x onerror=alert(1)>.md"
        repo.commit(people.mallory, {name: "x\n"}, signed=False)
    repo.git("checkout", "-q", "docs")
    result = mergeable(repo, "--format", "markdown")
    assert result.exit_code == 1
    [line] = [line for line in result.stdout.splitlines() if line.startswith("- `")]
    # One code span (its fence longer than any backtick run in the name) holds it whole.
    assert line.startswith(f"- ``{name}:1``: ")
    rest = line[len(f"- ``{name}:1``: ") :]
    # and what follows names it with every character that could start markup escaped.
    assert re.search(r"(?<!\\)[<>*`]", rest) is None, rest
    assert "\\<img src=x onerror=alert(1)\\>" in rest


def test_the_check_of_a_pull_request_is_the_same_json_whatever_state_it_starts_from(
    tmp_path: Path, people: People
) -> None:
    # CI starts from a fresh state; a person's clone from the one their commands keep.
    repo = proposed_qa_release(tmp_path, people)
    erik_edits_the_ecommerce_entry(repo)
    repo.git("checkout", "-q", "erik")
    kept = as_json(mergeable(repo, "--format", "json"))
    fresh = run_cli(
        "verify-mergeable",
        "--base",
        "main",
        "--repo",
        repo.path,
        "--state-dir",
        tmp_path / "fresh",
        "--format",
        "json",
    )
    assert fresh.exit_code == 1
    fresh_data = as_json(fresh)
    assert {key: value for key, value in fresh_data.items() if key != "merge"} == {
        key: value for key, value in kept.items() if key != "merge"
    }
    assert json.dumps(fresh_data["refusals"]) == json.dumps(kept["refusals"])


# -- what an attacker's pull request cannot do ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "count"), [("entries of one file", 1500), ("files", 10000)])
def test_thousands_of_refusals_cost_the_check_about_what_they_cost_verify(
    tmp_path: Path, people: People, shape: str, count: int
) -> None:
    # mallory's pull request adds 1,500 users to teams.yaml, or 10,000 files to a folder:
    # that many refused changes. For each, the check loaded the whole file again (to say
    # where it stands), had git look the path up again (git reads the whole folder to
    # find it) and compared it with every other refusal, so it took minutes where verify
    # takes seconds, and every pull request's check waited.
    repo = SeedRepo.create(tmp_path, people)
    # Made on the branch checked out for the check, never left: switching away from
    # 10,000 files and back cost git about as much as the check itself.
    repo.git("checkout", "-q", "-b", "flood")
    if shape == "files":
        (repo.path / "docs").mkdir()
        for number in range(count):
            (repo.path / "docs" / f"{number}.txt").write_text(f"{number}\n")
        repo.git("add", "docs")
        repo.commit(people.mallory, signed=False)
    else:
        teams = seed_teams(people)
        for number in range(count):
            teams["users"][f"user{number}"] = {
                "name": f"User {number}",
                "emails": [f"user{number}@example.com"],
            }
        repo.commit(people.mallory, {"teams.yaml": dump(teams)}, signed=False)

    began = time.monotonic()
    verified = run_cli(
        "verify", "--repo", repo.path, "--state-dir", tmp_path / "verify", "--to", "flood"
    )
    verifying = time.monotonic() - began
    began = time.monotonic()
    checked = run_cli(
        "verify-mergeable",
        *("--base", "main", "--repo", repo.path, "--state-dir", tmp_path / "check"),
        *("--format", "json"),
        timeout=900,
    )
    checking = time.monotonic() - began
    assert (verified.exit_code, checked.exit_code) == (1, 1), checked.stderr
    assert len(as_json(checked)["refusals"]) == count
    assert checking < 6 * verifying, (checking, verifying)


def test_a_head_merge_whose_signature_holds_no_identity_is_judged_whole(
    tmp_path: Path, people: People
) -> None:
    # mallory's branch ends in a merge onto main's tip shaped like a host's test merge
    # (git's merge of its parents, nothing of its own), but with two signature headers.
    # Taken for its second parent, it was never judged; merged, main's walk finds that it
    # holds no identity, and the landing the check called authorised is not.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    with repo.branch("portal"):
        diana = repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL)})
    tree = repo.git("merge-tree", "--write-tree", "main", "portal").split()[0]
    config, env = repo.identity(people.mallory)
    parents = ("-p", repo.head("main"), "-p", diana)
    merge = repo.git(*config, "commit-tree", "-S", tree, *parents, "-m", "Merge", env=env)
    head = stored_copy(repo, with_an_extra_signature_header(raw_commit(repo, merge)))
    repo.git("update-ref", "refs/heads/portal", head)
    repo.git("checkout", "-q", "portal")

    data = the_refused_check(repo)
    assert (data["head"], data["landed"]) == (head, [diana, head])
    assert [item["commit"] for item in data["unattributed"]] == [head]
    # As main's walk says once it is merged.
    _, landing = main_landing_of_a_merge(repo, people.olga, "portal")
    assert landing["authorised"] is False
    assert [item["commit"] for item in landing["unattributed"]] == [head]


@pytest.mark.parametrize("shape", ["the head", "below the head"])
def test_a_pull_request_that_brings_a_root_commit_of_its_own_is_refused(
    tmp_path: Path, people: People, shape: str
) -> None:
    # mallory's pull request merges an empty commit of hers that has no parent: it changes
    # no file, so every landing of it is authorised. Merged, main has two roots, and no
    # fresh state can tell which to trust: every later check from a fresh state (CI's)
    # stops until someone pins --trust-anchor.
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    tip = repo.head("main")
    config, env = repo.identity(people.mallory, signed=False)
    empty = repo.git("hash-object", "-t", "tree", "-w", os.devnull)
    root = repo.git(*config, "commit-tree", empty, "-m", "Nothing", env=env)
    head = repo.git(
        *config, "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-p", root, "-m", "Merge", env=env
    )
    if shape == "below the head":
        head = repo.git(
            *config, "commit-tree", f"{tip}^{{tree}}", "-p", head, "-m", "Tidy", env=env
        )
    repo.git("branch", "rooted", head)
    repo.git("checkout", "-q", "rooted")

    for output in ("text", "json", "github", "markdown"):
        result = mergeable(repo, "--format", output)
        assert result.exit_code == 1, result.stdout
        assert result.stderr.splitlines()[0] == (
            f"error: HEAD ({head[:12]}) brings a root commit of its own ({root[:12]}): merged, "
            "main would have 2, and a fresh state could not tell which to trust"
        )
    # As it says: merged, a fresh state stops.
    repo.git("checkout", "-q", "main")
    repo.merge(people.olga, "rooted")
    fresh = run_cli("verify", "--repo", repo.path, "--state-dir", tmp_path / "fresh")
    assert fresh.exit_code == 1
    assert "has 2 root commits" in fresh.stderr


def outside_code_spans(line: str) -> str:
    return re.sub(r"(`+).*?\1", "", line)


def test_names_in_a_pull_request_cannot_mention_reference_or_link_in_the_markdown_comment(
    tmp_path: Path, people: People
) -> None:
    # Posted as a comment, "@org/team" notifies a whole team, "#1" writes a reference
    # into issue 1, and "www.host" or "https://host" is a link in the bot's own words.
    repo = SeedRepo.create(tmp_path, people)
    name = "docs/@example-org/admins see #1 at www.example.net.md"
    email = "https://www.example.net/login#1@example-org"
    with repo.branch("evil"):
        repo.commit(people.mallory, {name: "x\n", QA_PLAN: qa_plan(ECOMMERCE)}, signed=False)
        repo.commit(people.mallory, {QA_PLAN: qa_plan(PORTAL)}, signed=False, email=email)
    repo.git("checkout", "-q", "evil")

    result = mergeable(repo, "--format", "markdown")
    assert result.exit_code == 1
    assert email in result.stdout.replace("&#8203;", "").replace("\\", "")
    prose = "\n".join(outside_code_spans(line) for line in result.stdout.splitlines())
    assert "@&#8203;example-org/admins" in prose
    # What a reader sees: the entity is a zero-width space.
    shown = prose.replace("&#8203;", "\u200b")
    assert re.search(r"@\w|#\d|www\.|://", shown, re.IGNORECASE) is None, prose


def state_rows(repo: SeedRepo) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the state, but the signature cache (what a commit's signature proves,
    whatever the policy: the check may add to it)."""
    with sqlite3.connect(repo.state_dir / "main.sqlite3") as database:
        listed = database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = [name for (name,) in listed if name != "signatures"]
        return {
            table: sorted(database.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in tables
        }


@pytest.mark.slow
def test_the_check_leaves_the_state_it_shares_with_apply_as_it_found_it(
    tmp_path: Path, people: People
) -> None:
    # A person's clone keeps one state for every command: the pull request's approval,
    # trigger and edit, judged and forgotten, must leave nothing a later apply would count
    # (a landing, a plan version, an editor, when a commit was first seen).
    repo = proposed_qa_release(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    before = state_rows(repo)
    with repo.branch("release"):
        repo.approve(people.ravi, QA_PLAN)
        repo.trigger(people.olga, QA_PLAN)
        repo.commit(people.mallory, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="L")}, signed=False)
    repo.git("checkout", "-q", "release")
    for output in ("text", "json", "github", "markdown"):
        assert mergeable(repo, "--format", output).exit_code == 1
    assert state_rows(repo) == before
