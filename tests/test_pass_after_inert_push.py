"""A watcher's pass after a push that changes no decision starts from the last pass's
decisions instead of deciding every plan on main again; a push that may change one is
decided in full.

An empty commit, or one that edits only what the reconciler never reads (a README), with
no trailer that may count, is `inert`; the pass then decides again only the next plan of
each environment, as it does after its own records. Real repositories, real signed
commits, the service in this process (its report counts the plans it decided).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.app.passes import Options, PassReport
from reconciler.app.reconcile import Reconciler
from tests.clock import SUITE_NOW
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import (
    ECOMMERCE,
    PORTAL,
    PROD_PLAN,
    QA_PLAN,
    production_triggered_before_its_window,
    proposed_qa_release,
    qa_plan,
)


@contextmanager
def watched_after_one_pass(
    tmp_path: Path, people: People
) -> Iterator[tuple[SeedRepo, Reconciler, PassReport]]:
    """The QA release proposed and nothing executable; a watcher in this process that
    made its first pass, and that pass's report."""
    repo = proposed_qa_release(tmp_path, people)
    options = Options(state_dir=repo.state_dir, key=people.reconciler.key, instance="watcher")
    with Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep) as service:
        first, started = service.watch_pass()
        assert started == []
        yield repo, service, first


def statuses(report: PassReport) -> list[tuple[str, str]]:
    return [(decision.path, decision.status) for decision in report.decisions]


def test_a_pass_after_an_empty_commit_decides_no_plan_again(tmp_path: Path, people: People) -> None:
    with watched_after_one_pass(tmp_path, people) as (repo, service, first):
        repo.commit(people.bob, None, "An empty commit")
        report, _ = service.watch_pass()
    assert first.decided == len(first.decisions) >= 1
    assert report.decided == 0  # nothing is executable: no environment's next plan either
    assert statuses(report) == statuses(first)
    assert report.tip == repo.head()


def test_a_pass_after_a_readme_edit_decides_no_plan_again(tmp_path: Path, people: People) -> None:
    with watched_after_one_pass(tmp_path, people) as (repo, service, first):
        repo.commit(people.mallory, {"README.md": "# our deployments\n"}, signed=False)
        report, _ = service.watch_pass()
    assert report.decided == 0
    assert statuses(report) == statuses(first)


def test_an_approval_in_an_empty_commit_is_decided_at_the_next_pass(
    tmp_path: Path, people: People
) -> None:
    with watched_after_one_pass(tmp_path, people) as (repo, service, first):
        repo.approve(people.ravi, QA_PLAN)
        report, _ = service.watch_pass()
    assert report.decided == first.decided  # every plan again
    approved = {decision.path: decision for decision in report.decisions}[QA_PLAN]
    assert approved.approvers == ("ravi",)


def test_an_edit_of_a_plan_is_decided_at_the_next_pass(tmp_path: Path, people: People) -> None:
    with watched_after_one_pass(tmp_path, people) as (repo, service, first):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="December")})
        report, _ = service.watch_pass()
    assert report.decided == first.decided
    edited = {decision.path: decision for decision in report.decisions}[QA_PLAN]
    assert edited.blob == repo.blob(QA_PLAN) != first_blob(first)


def first_blob(report: PassReport) -> str:
    return {decision.path: decision.blob for decision in report.decisions}[QA_PLAN]


def test_a_plan_whose_window_opens_is_decided_at_the_next_pass_after_an_empty_commit(
    tmp_path: Path, people: People
) -> None:
    # The last pass's decisions hold until the clock may change one (their horizon): the
    # production plan waits for tomorrow's window, and the pass after it opens starts it.
    repo, opens = production_triggered_before_its_window(tmp_path, people)
    now = [SUITE_NOW]
    options = Options(
        state_dir=repo.state_dir,
        key=people.reconciler.key,
        instance="watcher",
        driver_root=tmp_path / "releases",
    )
    with Reconciler(repo.path, options, clock=lambda: now[0], sleep=time.sleep) as service:
        first, before = service.watch_pass()
        repo.commit(people.bob, None, "An empty commit")
        now[0] = opens
        report, started = service.watch_pass()
    assert before == []
    assert {item.path: item.status for item in first.decisions}[PROD_PLAN] == "waiting"
    assert [run.plan.path for run in started] == [PROD_PLAN]
    assert report.decided == first.decided


def test_a_root_folder_listing_plans_twice_is_decided_as_a_full_pass_decides_it(
    tmp_path: Path, people: People
) -> None:
    # The second `plans` entry holds Mallory's edit of the QA plan. The first is the
    # parent's, which is what `inert` compares (the first entry of a name counts): a
    # pass that starts from the last one's decisions must decide as a pass that decides
    # every plan does, which refuses the landing (git fsck would) and keeps the plan.
    with watched_after_one_pass(tmp_path, people) as (repo, service, _first):
        parents = repo.git("ls-tree", "HEAD").splitlines()
        repo.write({QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="Mallory's")})
        repo.git("add", "-A")
        [edited] = [
            line
            for line in repo.git("ls-tree", repo.git("write-tree")).splitlines()
            if line.endswith("\tplans")
        ]
        repo.git("reset", "-q", "--hard")
        listing: list[str] = []
        for line in parents:
            listing += [line, edited] if line.endswith("\tplans") else [line]
        tree = (
            subprocess.run(
                ["git", "hash-object", "--literally", "-t", "tree", "-w", "--stdin"],
                cwd=repo.path,
                input=b"".join(_tree_entry(line) for line in listing),
                capture_output=True,
                check=True,
            )
            .stdout.decode()
            .strip()
        )
        repo.land_commit_tree(people.mallory, tree, repo.head(), message="Plans")
        narrowed, _ = service.watch_pass()
    options = Options(state_dir=repo.state_dir, key=people.reconciler.key, instance="watcher")
    with Reconciler(repo.path, options, clock=lambda: SUITE_NOW, sleep=time.sleep) as fresh:
        full, _ = fresh.watch_pass()
    assert narrowed.decided < full.decided  # the first started from the last decisions
    assert [refusal.path for refusal in narrowed.landings[-1].refusals] == ["the root folder"]
    assert decided_as(narrowed) == decided_as(full)


def _tree_entry(line: str) -> bytes:
    """An `ls-tree` line as a tree object's entry (a folder's mode as trees write it)."""
    meta, _, name = line.partition("\t")
    mode, _kind, oid = meta.split(" ")
    return f"{mode.lstrip('0')} {name}".encode() + b"\0" + bytes.fromhex(oid)


def decided_as(report: PassReport) -> list[tuple[str, str, tuple[str, ...], str]]:
    return [(item.path, item.status, item.approvers, item.blob) for item in report.decisions]
