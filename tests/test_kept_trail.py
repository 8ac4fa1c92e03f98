"""`history` answers from the audit trail the state keeps, entry for entry what the rows say,
and only while the state and the code that made it are as they were.

Real repositories and states, the real CLI. The kept trail is a shortcut (`app.kept`):
whatever stands in the state under the trail's name, the rows are what the answer must
agree with.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.statestore import StateStore
from reconciler.app import api, history_entries, kept
from reconciler.app.api import HistoryQuery, Source
from reconciler.app.history_entries import trail_of
from reconciler.app.trail import Entry, decode_trail, encode_trail
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import (
    DEV_PLAN,
    ECOMMERCE,
    PORTAL,
    QA_PLAN,
    dev_plan,
    proposed_qa_release,
    qa_plan,
)

STATE_FILE = "state.sqlite3"


def history(repo: SeedRepo, *, process: bool = False) -> list[dict[str, Any]]:
    result = repo.reconciler("history", "--format", "json", process=process)
    assert result.exit_code == 0, result.stderr
    entries = json.loads(result.stdout)["entries"]
    assert isinstance(entries, list)
    return entries


def from_the_rows(repo: SeedRepo) -> list[dict[str, Any]]:
    """The trail as the state's rows tell it, in the order `history` shows by default."""
    store = StateStore(repo.state_dir, "main")
    try:
        entries = trail_of(store)
    finally:
        store.close()
    return [entry.as_json() for entry in sorted(entries, key=lambda entry: entry.when)]


def kept_text(repo: SeedRepo) -> str | None:
    with sqlite3.connect(state_database(repo)) as db:
        row = db.execute("SELECT detail FROM decided WHERE key = ?", (kept.TRAIL,)).fetchone()
    return None if row is None else str(row[0])


def state_database(repo: SeedRepo) -> Path:
    [database] = repo.state_dir.rglob("*.sqlite3")
    return database


def put_kept_text(repo: SeedRepo, text: str) -> None:
    with sqlite3.connect(state_database(repo)) as db:
        db.execute("UPDATE decided SET detail = ? WHERE key = ?", (text, kept.TRAIL))


def test_history_answered_from_the_kept_trail_is_what_the_rows_say(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    made = history(repo)
    assert kept_text(repo) is not None  # made once, and kept
    again = history(repo)
    assert again == made
    assert sorted(map(json.dumps, again)) == sorted(map(json.dumps, from_the_rows(repo)))


def test_a_landing_after_the_trail_was_kept_is_in_the_next_history(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    before = history(repo)
    approval = repo.approve(people.carol, QA_PLAN)
    after = history(repo)
    assert [entry for entry in after if entry["commit"] == approval]
    assert not [entry for entry in before if entry["commit"] == approval]
    assert sorted(map(json.dumps, after)) == sorted(map(json.dumps, from_the_rows(repo)))


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: {**data, "entries": [[*row[:5], 5, *row[6:]] for row in data["entries"]]},
        lambda data: {**data, "entries": [row[:-1] for row in data["entries"]]},
        lambda data: {
            **data,
            "entries": [[*row[:1], "yesterday", *row[2:]] for row in data["entries"]],
        },
        lambda data: data["entries"],
    ],
    ids=["a-number-for-a-text", "a-field-short", "no-date", "not-an-object"],
)
def test_a_kept_trail_edited_by_hand_is_made_again_from_the_rows(
    tmp_path: Path, people: People, damage: Any
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    made = history(repo)
    text = kept_text(repo)
    assert text is not None
    put_kept_text(repo, json.dumps(damage(json.loads(text))))
    assert history(repo) == made


def test_a_trail_kept_by_other_code_does_not_answer_for_this_code(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The version number stays while the code changes: a trail another build kept from the
    # same state must not be shown. Here the other build's trail lacks an entry.
    repo = proposed_qa_release(tmp_path, people)
    made = history(repo)
    text = kept_text(repo)
    assert text is not None
    monkeypatch.setattr(kept, "rules_digest", lambda: "other code")
    store = StateStore(repo.state_dir, "main")
    try:
        theirs = kept.state_key(store)
    finally:
        store.close()
    entries = json.loads(text)["entries"][1:]
    put_kept_text(repo, json.dumps({"key": theirs, "entries": entries}))
    assert history(repo, process=True) == made  # the CLI in a process of its own


def test_a_re_anchor_on_the_anchor_and_tip_the_trail_was_kept_at_shows_the_runs_it_kept(
    tmp_path: Path, people: People
) -> None:
    # The run's records are dropped by a force-push back to the tip the trail was kept at,
    # then the state is re-anchored on its own root: position as it was, rows not (the
    # re-anchor keeps the runs the service ran).
    repo = SeedRepo.create(tmp_path, people)
    root = repo.head()
    landed = repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    before = history(repo)
    ran = repo.apply()
    assert "succeeded 2026-11-dev-build.1" in ran.stdout, ran.stdout + ran.stderr
    repo.git("reset", "-q", "--hard", landed)
    assert repo.reconciler("verify", "--re-anchor", root).exit_code == 0
    after = history(repo)
    assert len(after) == len(before) + 2  # the run started and succeeded
    assert sorted(map(json.dumps, after)) == sorted(map(json.dumps, from_the_rows(repo)))


# -- the codec, without Git ------------------------------------------------------------------

TRAIL = (
    Entry(
        1,
        datetime(2026, 3, 4, 12, tzinfo=UTC),
        "a" * 40,
        "plans/x.yaml",
        "qa",
        "edit",
        "ravi",
        True,
        "notes",
        0,
        None,
    ),
    Entry(
        2,
        datetime(2026, 3, 4, 21, tzinfo=timezone(timedelta(hours=9))),
        "b" * 40,
        None,
        None,
        "trigger",
        None,
        False,
        "merged",
        1,
        "olga holds no plan.deploy",
    ),
)


def test_a_kept_trail_reads_back_equal() -> None:
    assert decode_trail(encode_trail("k", TRAIL), "k") == TRAIL


def test_a_trail_kept_under_another_key_is_none() -> None:
    assert decode_trail(encode_trail("k", TRAIL), "other") is None


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda rows: rows[0].__setitem__(0, True), id="true-as-seq"),
        pytest.param(lambda rows: rows[0].__setitem__(7, 1), id="one-as-counted"),
        pytest.param(lambda rows: rows[0].__setitem__(1, "yesterday"), id="no-moment"),
        pytest.param(lambda rows: rows[1].pop(), id="short-row"),
        pytest.param(lambda rows: rows[1].__setitem__(2, None), id="no-commit"),
    ],
)
def test_a_kept_row_of_other_types_makes_the_trail_again(change: Any) -> None:
    data = json.loads(encode_trail("k", TRAIL))
    change(data["entries"])
    assert decode_trail(json.dumps(data), "k") is None


@pytest.mark.parametrize("text", ["", "{", "[]", '{"key": "k"}'])
def test_a_text_that_is_no_kept_trail_is_none(text: str) -> None:
    assert decode_trail(text, "k") is None


def test_readers_asking_at_once_make_the_trail_once_and_read_what_the_first_kept(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After each pass every open page of `serve` asks for its entries at once (live.js),
    # each in a thread of its own: each made the trail again from the rows (0.23 s at
    # 10,000 commits, one at a time under the GIL), where one made it and kept it for the
    # others to read (0.017 s). The build is slowed so that all of them ask before it ends.
    repo = proposed_qa_release(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    made: list[int] = []

    def slow_trail_of(store: StateStore) -> tuple[Entry, ...]:
        made.append(1)
        time.sleep(0.5)
        return trail_of(store)

    monkeypatch.setattr(history_entries, "trail_of", slow_trail_of)
    source = Source(repo=repo.path, branch="main", state_dir=repo.state_dir)
    readers = 6
    at_once = threading.Barrier(readers)
    answers: list[tuple[Entry, ...]] = []

    def read() -> None:
        at_once.wait()
        answers.append(api.history(source, HistoryQuery()))

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == readers
    assert len(set(answers)) == 1
    assert made == [1]


def test_a_merges_entries_come_in_the_order_git_made_its_commits_refused_ones_too(
    tmp_path: Path, people: People
) -> None:
    # The order within a landing is read only for landings whose entries name several
    # commits, and the refusals only from landings that refused something: alice's clock
    # runs two hours fast, bob's unsigned edit of the portal is refused, and diana puts it
    # back (bob's refusal superseded, the merge authorised). As git made them: alice's,
    # bob's, diana's.
    repo = proposed_qa_release(tmp_path, people)
    base = repo.head()
    with repo.branch("side"):
        ahead = f"{repo.clock + 7200} +0000"
        notes = qa_plan(ECOMMERCE, PORTAL, notes="A")
        alices = repo.commit(people.alice, {QA_PLAN: notes}, date=ahead)
        bad = {**PORTAL, "version": "9.9", "from": "9.9-dev.1"}
        bobs = repo.commit(people.bob, {QA_PLAN: qa_plan(ECOMMERCE, bad, notes="A")}, signed=False)
        dianas = repo.commit(people.diana, {QA_PLAN: notes})
    merge = repo.merge(people.olga, "side")
    assert repo.reconciler("verify").exit_code == 0
    made = repo.git("rev-list", "--topo-order", "--reverse", f"{base}..{merge}").split()
    assert made[:3] == [alices, bobs, dianas]
    store = StateStore(repo.state_dir, "main")
    try:
        entries = trail_of(store)
        [landing] = [landing for landing in store.landings() if landing.verdict.commit == merge]
    finally:
        store.close()
    assert landing.verdict.authorised
    assert [refusal.commit for refusal in landing.verdict.superseded] == [bobs]
    seq = landing.seq
    edits = [entry for entry in entries if entry.seq == seq and entry.action == "edited"]
    assert [entry.commit for entry in edits] == [alices, bobs, dianas]
    assert [entry.counted for entry in edits] == [True, False, True]
    # Why, from the superseded refusal: the landing refused nothing that stands.
    assert "bob is not a member of it" in edits[1].detail
