"""A watch service's memory stays flat in the history's length: what it keeps has a cap.

The service makes a pass per commit for months, so nothing it keeps between
passes may grow with each commit. These tests drive the service's passes in
this process over real repositories (the watch benchmark's: a bare
repository, a clone that pushes signed commits) and look at the structures
that grew before: SQLite's prepared statements and page cache, the path
cache. They assert on the structures, never on RSS (`python -m
benchmarks.watch` measures).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.watch import Fixture, Settings, add_plan_file, build_fixture, git, sync
from reconciler.adapters.statestore import PAGE_CACHE_KIB, StateStore
from reconciler.app.passes import Options
from reconciler.app.reconcile import Reconciler
from reconciler.core.layout import Placement, _place, place

_LITERAL = re.compile(r"'(?:[^']|'')*'|\b\d+\b")


def _shape(sql: str) -> str:
    """A statement as SQLite prepares it: the values SQLite's trace writes in, as `?`."""
    return _LITERAL.sub("?", sql)


def _service(fixture: Fixture) -> Reconciler:
    options = Options(
        state_dir=fixture.state_dir,
        key=fixture.keys["reconciler"],
        driver_root=fixture.driver_root,
        instance="memory-test",
    )
    return Reconciler(fixture.bare, options, clock=lambda: datetime.now(UTC), sleep=time.sleep)


def _add_plan(fixture: Fixture, number: int) -> None:
    """A signed commit by the tech lead adding one plan, pushed to the watched repository."""
    name = f"plan-{number:03d}"
    add_plan_file(fixture, name, f"1.0.{number}")
    git(fixture.work, "add", "plans")
    fixture.lead.git(fixture.work, "commit", "-q", "-S", "-m", f"Add {name}")
    git(fixture.work, "push", "-q", "origin", "main")


def test_a_pass_prepares_the_same_statements_however_many_plans_and_runs_there_are(
    tmp_path: Path,
) -> None:
    # Each commit adds a plan that then runs, so every pass looks up more commits
    # (the plans' landings) than the last: a statement whose text followed the
    # number of values was a new prepared statement in every pass.
    fixture = build_fixture(Settings(), tmp_path)
    shapes: list[set[str]] = []
    with _service(fixture) as service:
        service.store._db.set_trace_callback(lambda sql: shapes[-1].add(_shape(sql)))
        for number in range(1, 17):
            shapes.append(set())
            _add_plan(fixture, number)
            _, started = service.watch_pass()
            assert [run.run_id for run in started] == [f"plan-{number:03d}.1"]
            for run in started:
                assert service.run_started(run).result == "succeeded"
            sync(fixture.work)
    warmed = set().union(*shapes[:8])
    assert set().union(*shapes[8:]) - warmed == set()


def test_the_state_stores_page_cache_is_capped_below_sqlites_default(tmp_path: Path) -> None:
    # SQLite's 2 MiB filled as the store grew with the history; a service's passes touch
    # every table, so whatever the cap, the cache holds that much.
    fixture = build_fixture(Settings(), tmp_path)
    with _service(fixture) as service:
        service.watch_pass()
        (cache_size,) = service.store._db.execute("PRAGMA cache_size").fetchone()
    assert cache_size == -PAGE_CACHE_KIB
    assert PAGE_CACHE_KIB < 2000


def test_lookups_of_any_number_of_commits_find_them_all(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", "main")
    commits = [f"{number:040x}" for number in range(1, 1202)]  # three batches of 500 and more
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.mark_seen(commits[::2], when)
    check = ("good", "SHA256:key", "", "0" * 64)
    store.remember_signatures(dict.fromkeys(commits[1::2], check))
    try:
        assert store.first_seen(commits) == dict.fromkeys(commits[::2], when)
        assert store.signatures(commits) == dict.fromkeys(commits[1::2], check)
        assert store.first_seen([]) == {}
        assert store.signatures(["'); DROP TABLE seen; --"]) == {}
        assert store.first_seen(commits[:1]) == {commits[0]: when}
    finally:
        store.close()


def test_run_logs_never_fill_the_path_cache() -> None:
    # Every run adds a log file, which a walk places once: cached, a long-running
    # service's cache filled with them up to its cap.
    before = _place.cache_info().currsize
    for number in range(20_000):
        path = f"logs/development/plan-{number}/plan-{number}.1.log"
        assert place(path) == Placement("log", path.removeprefix("logs/"))
    assert _place.cache_info().currsize == before
    assert place("logs") == Placement(None)
    assert place("logs/") == Placement(None)
    assert place("plans/web.yaml") == Placement("plan", "web")
