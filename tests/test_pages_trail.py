"""The audit trail on the pages, a page at a time: which entries each page holds (values,
no Git), and that reading the pages' snapshot neither makes nor holds the trail (a real
repository), so that a service serving pages keeps what is on main, not its history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from reconciler.adapters.statestore import StateStore
from reconciler.app import pages
from reconciler.app.api import HistoryQuery, Source
from reconciler.app.history import select
from reconciler.app.kept import TRAIL
from reconciler.app.pages import PAGE, RUNS_SHOWN, page_number, page_of
from reconciler.app.trail import Entry
from reconciler.core.errors import UsageError
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import one_plan_landed, plan

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def trail(count: int) -> tuple[Entry, ...]:
    """`count` entries in date order, as `history` gives them, each its own landing."""
    return tuple(
        Entry(
            seq,
            START + timedelta(minutes=seq),
            f"{seq:040x}",
            None,
            None,
            "edited",
            "alice",
            True,
            f"entry {seq}",
        )
        for seq in range(1, count + 1)
    )


def source_of(repo: SeedRepo) -> Source:
    """Where the pages read `repo`: its main and its state."""
    return Source(repo=repo.path, branch="main", state_dir=repo.state_dir)


def values_in(value: object) -> Iterator[object]:
    """`value` and every value it holds, all the way down."""
    yield value
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from values_in(getattr(value, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from values_in(key)
            yield from values_in(item)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for item in value:
            yield from values_in(item)


def seqs(entries: tuple[Entry, ...]) -> list[int]:
    return [entry.seq for entry in entries]


def test_the_first_page_is_the_newest_entries_newest_first() -> None:
    shown = page_of(trail(PAGE + 30), 1)
    assert seqs(shown.entries) == list(range(PAGE + 30, 30, -1))
    assert (shown.page, shown.pages, shown.total, shown.first) == (1, 2, PAGE + 30, 1)


def test_the_last_page_holds_the_oldest_entries_and_may_be_short() -> None:
    shown = page_of(trail(PAGE + 30), 2)
    assert seqs(shown.entries) == list(range(30, 0, -1))
    assert shown.first == PAGE + 1


def test_a_page_past_the_last_is_the_last() -> None:
    assert page_of(trail(PAGE + 30), 7) == page_of(trail(PAGE + 30), 2)


def test_a_trail_of_exactly_one_page_has_one_page() -> None:
    shown = page_of(trail(PAGE), 1)
    assert (len(shown.entries), shown.pages) == (PAGE, 1)


def test_an_empty_trail_is_one_empty_page() -> None:
    shown = page_of((), 3)
    assert (shown.entries, shown.page, shown.pages, shown.total) == ((), 1, 1, 0)


def test_no_page_given_is_the_first() -> None:
    assert page_number("") == 1
    assert page_number("12") == 12


def test_a_page_number_too_long_for_python_to_read_is_the_last_page() -> None:
    # int() reads no number of more than 4,300 digits (a ValueError): `/history?page=`
    # with 5,000 ones fits in a request's head and answered 500, a traceback on stderr.
    assert page_of(trail(PAGE + 30), page_number("1" * 5000)) == page_of(trail(PAGE + 30), 2)


def test_a_page_number_with_leading_zeros_is_that_page() -> None:
    assert page_number("0" * 5000 + "2") == 2


@pytest.mark.parametrize("text", ["0", "00", "-1", "x", "1.5", "\uff12", "\u0662", " 2"])
def test_a_page_that_is_no_positive_whole_number_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="is not a page number"):
        page_number(text)


# -- a real repository ----------------------------------------------------------------


def test_reading_the_pages_makes_no_audit_trail_and_holds_none(
    tmp_path: Path, people: People
) -> None:
    repo = one_plan_landed(tmp_path, people)
    source = source_of(repo)
    snapshot = pages.snapshot(source)
    assert "plans/one.yaml" in {decision.path for decision in snapshot.decisions}
    store = StateStore(repo.state_dir, "main")
    try:
        assert store.kept_answer(TRAIL) is None  # the poller's read made no trail
    finally:
        store.close()
    assert not any(isinstance(value, Entry) for value in values_in(snapshot))
    # The pages that show entries read them when asked, newest first.
    shown = pages.trail(source, HistoryQuery(plan="plans/one.yaml"))
    actions = [(entry.action, entry.actor) for entry in shown.entries]
    assert actions == [("triggered", "alice"), ("created", "alice")]


# -- the runs' logs ---------------------------------------------------------------------


def plan_run(repo: SeedRepo, people: People, run: int) -> None:
    """Version `run` of plans/dev.yaml landed and run, its log committed with its finish."""
    app = [{"name": "ecommerce", "version": f"1.0.{run}"}]
    repo.commit(people.alice, {"plans/dev.yaml": plan("dev", "development", app)}, f"v{run}")
    blob = repo.blob("plans/dev.yaml")
    said = {"Plan": f"plans/dev.yaml@{blob}", "Environment": "development", "Run": f"dev.{run}"}
    repo.record({**said, "Result": "started", "Reconciler": "test-instance"})
    log = {f"logs/development/dev/dev.{run}.log": f"the log of run {run}\n"}
    repo.record({**said, "Result": "succeeded"}, log)


def test_reading_the_pages_holds_no_log_of_a_run(tmp_path: Path, people: People) -> None:
    # Every run of every plan on main, each with its whole log, read from Git after each
    # pass and held: 150 runs of one plan with 26 KB logs held 3.9 MB, and its page
    # showed every log.
    repo = SeedRepo.create(tmp_path, people)
    plan_run(repo, people, 1)
    snapshot = pages.snapshot(source_of(repo))
    assert [run.id for run in snapshot.runs["plans/dev.yaml"]] == ["dev.1"]
    texts = [value for value in values_in(snapshot) if isinstance(value, str)]
    assert not any("the log of run" in text for text in texts)


def test_a_plan_page_shows_its_newest_runs_with_their_logs(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    for run in range(1, RUNS_SHOWN + 3):
        plan_run(repo, people, run)
    source = source_of(repo)
    page = pages.plan_page(source, pages.snapshot(source), "dev")
    assert page is not None
    assert page.run_count == RUNS_SHOWN + 2
    newest = range(3, RUNS_SHOWN + 3)
    assert [item.run.id for item in page.runs] == [f"dev.{run}" for run in newest]
    assert [item.log for item in page.runs] == [f"the log of run {run}\n" for run in newest]


# -- the filters' names -----------------------------------------------------------------


def never_asked() -> Any:
    raise AssertionError("the policy was read for a name the trail holds")


def test_a_plan_the_trail_holds_is_known_without_reading_the_policy() -> None:
    # Each plan page filters by its plan, and reading the policy at the tip was a third
    # of its time (34 ms of 78 at 10,000 commits) for a plan its own entries name.
    entries = trail(3)
    named = tuple(msgspec.structs.replace(entry, plan="plans/one.yaml") for entry in entries)
    assert select(named, never_asked, never_asked, plan="plans/one.yaml") == named


def test_an_environment_the_trail_holds_is_known_without_reading_the_policy() -> None:
    entries = tuple(msgspec.structs.replace(entry, environment="development") for entry in trail(3))
    assert select(entries, never_asked, never_asked, environment="development") == entries
