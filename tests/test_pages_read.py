"""How the pipeline pages keep up with the branch: the poller's reads, with real commits.

The server's HTTP side is tested through real sockets (test_watch.py, test_attacks_pages.py);
here the reader itself (`web.server.Live`), where a race decides what a page shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.app.api import Source
from reconciler.app.session import Session
from reconciler.web.server import Live
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import plan


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
