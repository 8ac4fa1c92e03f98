"""How the pipeline pages keep up with the branch: the poller's reads, with real commits.

The server's HTTP side is tested through real sockets (test_watch.py, test_attacks_pages.py);
here the reader itself (`web.server.Live`), where a race decides what a page shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.app.api import Source
from reconciler.app.pages import Snapshot
from reconciler.app.session import Session
from reconciler.web.server import REFRESH, Live
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import ECOMMERCE, plan


def test_a_commit_landing_while_the_pages_read_is_read_at_the_next_look(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The snapshot took the branch's tip after its walk: a run's finish record pushed
    # meanwhile was taken for read, every later look found the tip unchanged, and the
    # page said "started" until the minute's refresh (test_watch's flaky page test).
    repo = SeedRepo.create(tmp_path, people)
    walked = repo.git("rev-parse", "main").strip()
    observe = Session.observe
    landed: list[str] = []

    def observe_then_a_push_lands(session: Session, **options: Any) -> Any:
        seen = observe(session, **options)
        if not landed:
            content = plan("late", "development", [{"name": "ecommerce", "version": "1.0.0"}])
            landed.append(repo.commit(people.alice, {"plans/late.yaml": content}, "Add late"))
        return seen

    monkeypatch.setattr(Session, "observe", observe_then_a_push_lands)
    live = Live(Source(repo=repo.path, branch="main"), interval=3600)
    live.refresh()
    assert live.snapshot is not None
    assert (live.snapshot.tip, live.tip) == (walked, walked)
    live.refresh()
    assert (live.snapshot.tip, live.version) == (landed[0], 2)
    assert "plans/late.yaml" in {decision.path for decision in live.snapshot.decisions}


def one_plan_read(tmp_path: Path, people: People) -> tuple[SeedRepo, Live, Snapshot]:
    """The seed repository with one plan, and pages that have read it once."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {"plans/one.yaml": plan("one", "development", [ECOMMERCE])})
    live = Live(Source(repo=repo.path, branch="main"), interval=3600)
    live.refresh()
    assert live.snapshot is not None
    return repo, live, live.snapshot


def test_a_push_that_changes_no_decision_moves_the_pages_tip_without_reading_again(
    tmp_path: Path, people: People
) -> None:
    # An empty commit (or a README) changes no decision: the pages name the new tip and
    # keep what they read, rather than decide every plan on main again after each.
    repo, live, first = one_plan_read(tmp_path, people)
    empty = repo.commit(people.bob, None, "An empty commit")
    live.refresh()
    assert live.snapshot is not None
    assert (live.snapshot.tip, live.tip, live.version) == (empty, empty, 2)
    assert live.snapshot.decisions is first.decisions  # kept, not decided again
    assert live.snapshot.now == first.now


def test_a_push_that_may_change_a_decision_is_read_again(tmp_path: Path, people: People) -> None:
    repo, live, _ = one_plan_read(tmp_path, people)
    two = plan("two", "development", [ECOMMERCE])
    added = repo.commit(people.alice, {"plans/two.yaml": two}, "Add two")
    live.refresh()
    assert live.snapshot is not None
    assert live.snapshot.tip == added
    assert "plans/two.yaml" in {decision.path for decision in live.snapshot.decisions}


def test_pushes_that_change_no_decision_keep_no_snapshot_past_the_refresh(
    tmp_path: Path, people: People
) -> None:
    # A page's "now" (windows, expiries) is never older than `REFRESH`, however many
    # empty commits land: a kept snapshot does not count as a read.
    repo, live, first = one_plan_read(tmp_path, people)
    live.read_at -= REFRESH + 1
    repo.commit(people.bob, None, "An empty commit")
    live.refresh()
    assert live.snapshot is not None
    assert live.snapshot.decisions is not first.decisions
    assert live.snapshot.now >= first.now
