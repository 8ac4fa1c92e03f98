"""The journal's rows and its one codec: every row kind reads back as it was written, by
the codec and through a real state database; a format this code does not read is refused
with a hint, never half read."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from reconciler.adapters.statestore import StateStore
from reconciler.core import journal
from reconciler.core.errors import ReconcilerError
from reconciler.core.events import Lock, PlanRef, Record, Signoff
from reconciler.core.journal import (
    IgnoredTrailer,
    Landing,
    OutboxEntry,
    PlanEdit,
    Row,
    VersionLanded,
)
from reconciler.core.verdicts import LandingVerdict, Refusal
from tests.people import People
from tests.repositories import SeedRepo

WHEN = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

texts = st.text(max_size=12)
names = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8})?", fullmatch=True)  # a plan's name
optional = st.none() | texts
commits = st.text("0123456789abcdef", min_size=40, max_size=40)
times = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
refs = st.builds(PlanRef, names.map(lambda name: f"plans/{name}.yaml"), commits)
strings = st.lists(texts, max_size=3).map(tuple)
refusals = st.builds(Refusal, commits, texts, texts, texts, texts, texts, strings)
verdicts = st.builds(
    LandingVerdict,
    commit=commits,
    first_parent=st.none() | commits,
    landed=st.lists(commits, max_size=3).map(tuple),
    actor=texts,
    refusals=st.lists(refusals, max_size=2).map(tuple),
    changed=strings,
    superseded=st.lists(refusals, max_size=2).map(tuple),
    unattributed=st.lists(st.tuples(commits, texts), max_size=2).map(tuple),
)
records = st.builds(
    Record,
    commit=commits,
    seq=st.integers(0, 10**6),
    result=st.sampled_from(["started", "succeeded", "failed", "interrupted", "refused"]),
    run=st.none() | names.map(lambda name: f"{name}.1"),
    plan=st.none() | refs,
    environment=optional,
    instance=optional,
    lease_until=st.none() | times,
    triggered_by=optional,
    approved_by=strings,
    refused=st.lists(refs, max_size=2).map(tuple),
    committed_at=times,
    retry_of=optional,
    verified=strings,
)
ROWS: dict[type[Any], st.SearchStrategy[Any]] = {
    Landing: st.builds(Landing, st.integers(0, 10**6), verdicts, times),
    PlanEdit: st.builds(
        PlanEdit,
        commit=commits,
        seq=st.integers(0, 10**6),
        path=texts,
        change=st.sampled_from(["created", "deleted", "edited"]),
        fields=strings,
        state=st.tuples(optional, optional),
        environment=optional,
        actor=optional,
        claimed=texts,
        how=texts,
        refused=strings,
        merge=st.booleans(),
        committed_at=times,
    ),
    VersionLanded: st.builds(
        VersionLanded,
        path=texts,
        blob=commits,
        landing=commits,
        seq=st.integers(0, 10**6),
        committed_at=st.none() | times,
        actor=optional,
        how=texts,
        verified=st.booleans(),
        triggered=st.booleans(),
        reasons=strings,
        style=texts,
        squashed_by=optional,
        state=optional,
    ),
    Signoff: st.builds(
        Signoff,
        kind=st.sampled_from(["approve", "deploy", "retry"]),
        commit=commits,
        seq=st.integers(0, 10**6),
        plan=st.none() | refs,
        run=optional,
        actor=optional,
        how=texts,
        verified=st.booleans(),
        held=st.booleans(),
        reasons=strings,
        committed_at=times,
    ),
    Record: records,
    Lock: st.builds(
        Lock,
        kind=st.sampled_from(["lock", "unlock"]),
        commit=commits,
        seq=st.integers(0, 10**6),
        environment=texts,
        application=optional,
        why=texts,
        actor=optional,
        how=texts,
        held=st.booleans(),
        reasons=strings,
        committed_at=times,
    ),
    IgnoredTrailer: st.builds(
        IgnoredTrailer,
        commit=commits,
        seq=st.integers(0, 10**6),
        committed_at=times,
        trailers=st.dictionaries(texts, strings, max_size=3).map(lambda found: (*found.items(),)),
        reason=texts,
        actor=optional,
        record=st.none() | records,
    ),
    OutboxEntry: st.builds(
        OutboxEntry,
        run=names.map(lambda name: f"{name}.1"),
        message=texts,
        environment=texts,
        plan=texts,
        log_path=texts,
        log=texts,
        deployed=st.lists(st.tuples(texts, texts), max_size=3).map(tuple),
        when=times,
    ),
}


def columns(row: Row) -> dict[str, Any]:
    """The fields the store keeps beside a row's JSON, as it hands them to `decode`."""
    return {name: getattr(row, name) for name in journal.COLUMNS.get(type(row), ())}


@settings(max_examples=200, deadline=None)
@given(st.one_of(*ROWS.values()))
def test_every_row_kind_reads_back_as_it_was_written(row: Row) -> None:
    text = journal.encode(row)
    assert journal.decode(type(row), text, **columns(row)) == row


def test_every_row_kind_has_a_strategy_here() -> None:
    # A row kind added to the journal without a round trip here would go untested.
    assert set(ROWS) == set(Row.__args__)


def test_a_format_this_code_does_not_read_is_refused_with_a_hint() -> None:
    text = journal.encode(_record("started", 1))
    with pytest.raises(ReconcilerError) as refused:
        journal.decode(Record, text, version=journal.VERSION + 1)
    assert f"format {journal.VERSION + 1}" in refused.value.message
    assert refused.value.hint is not None
    assert "--state-dir" in refused.value.hint


def test_a_row_that_is_not_the_format_it_claims_is_refused_with_a_hint() -> None:
    with pytest.raises(ReconcilerError) as refused:
        journal.decode(Record, '{"commit": "abc"}')
    assert "Record" in refused.value.message
    assert refused.value.hint is not None
    assert "--state-dir" in refused.value.hint


def _signoff() -> Signoff:
    return Signoff(
        kind="approve",
        commit="1" * 40,
        seq=1,
        plan=PlanRef("plans/qa.yaml", "a" * 40),
        run=None,
        actor="ravi",
        how="signed",
        verified=True,
        held=True,
        reasons=("ravi holds approver",),
        committed_at=WHEN,
    )


def _record(result: str, seq: int) -> Record:
    return Record(
        commit=f"{seq:040x}",
        seq=seq,
        result=result,
        run="qa.1",
        plan=PlanRef("plans/qa.yaml", "a" * 40),
        environment="quality-assurance",
        instance="ci",
        lease_until=WHEN + timedelta(minutes=5),
        triggered_by="olga",
        approved_by=("ravi",),
        refused=(),
        committed_at=WHEN,
    )


def test_every_row_kind_reads_back_from_a_real_state_database(tmp_path: Path) -> None:
    refusal = Refusal("2" * 40, "plans/qa.yaml", "notes", "bob", "signed", "plan.edit", ("no",))
    verdict = LandingVerdict("3" * 40, "4" * 40, ("2" * 40, "3" * 40), "bob", (refusal,), ())
    landing = Landing(1, verdict, WHEN)
    version = VersionLanded(
        path="plans/qa.yaml",
        blob="a" * 40,
        landing="3" * 40,
        seq=1,
        committed_at=WHEN,
        actor="olga",
        how="signed",
        verified=True,
        triggered=True,
        reasons=("olga holds deployer",),
        style="merge",
        state="ready",
    )
    edit = PlanEdit(
        commit="2" * 40,
        seq=1,
        path="plans/qa.yaml",
        change="edited",
        fields=("notes",),
        state=("ready", "ready"),
        environment="quality-assurance",
        actor="bob",
        claimed="bob",
        how="signed",
        refused=("notes",),
        merge=False,
        committed_at=WHEN,
    )
    started, void = _record("started", 1), _record("succeeded", 2)
    ignored = IgnoredTrailer(
        "5" * 40, 1, WHEN, (("Result", ("succeeded",)),), "not built on the start", "ci", void
    )
    entry = OutboxEntry(
        "qa.1", "Deploy", "qa", "qa-release", "logs/qa.1", "ok", (("a", "1"),), WHEN
    )
    store = StateStore(tmp_path, "main")
    with store.transaction():
        store.add_landing(landing)
        store.add_plan_version(version)
        for event in (edit, _signoff(), started, ignored):
            store.add_event(event)
        store.put_outbox(entry)
        store.set_dirty({"plans/qa.yaml": {"notes": refusal, "name": None}})
    store.close()
    reopened = StateStore(tmp_path, "main")
    assert reopened.landings() == [landing]
    assert reopened.plan_versions() == [version]
    assert reopened.events(PlanEdit) == [edit]
    assert reopened.events(Signoff) == [_signoff()]
    assert reopened.events(Record) == [started]
    assert reopened.events(IgnoredTrailer) == [ignored]
    assert reopened.records_of(["qa.1"], uncounted=True) == [started, void]
    assert reopened.outbox() == {"qa.1": entry}
    assert reopened.dirty() == {"plans/qa.yaml": {"notes": refusal, "name": None}}


def test_a_state_database_of_a_format_this_code_does_not_read_is_refused_on_opening(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "main")
    store.close()
    with sqlite3.connect(tmp_path / "main.sqlite3") as newer:
        newer.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (journal.VERSION + 1,))
    newer.close()
    with pytest.raises(ReconcilerError) as refused:
        StateStore(tmp_path, "main")
    assert f"format {journal.VERSION + 1}" in refused.value.message
    assert refused.value.hint is not None
    assert "--state-dir" in refused.value.hint


def test_verify_on_a_state_of_a_newer_format_says_so_and_how_to_rebuild_it(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    with sqlite3.connect(repo.state_dir / "main.sqlite3") as newer:
        newer.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (journal.VERSION + 1,))
    newer.close()
    result = repo.reconciler("verify")
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr
    assert f"journal format {journal.VERSION + 1}" in result.stderr
    assert "--state-dir" in result.stderr


@settings(max_examples=200, deadline=None)
@given(st.one_of(*ROWS.values()))
def test_every_row_is_written_as_json_dumps_reads_it(row: Row) -> None:
    # msgspec writes the rows (a tenth of json.dumps's time): what it writes must be the
    # JSON json.dumps would, read back, for states written by either.
    encoder = journal._ENCODERS[type(row)]
    assert json.loads(journal.encode(row)) == json.loads(json.dumps(encoder(row)))


def test_a_row_holding_bytes_that_are_not_utf8_is_written_and_read_back() -> None:
    # A name decoded with surrogateescape holds lone surrogates, which UTF-8 cannot hold:
    # that row is written by json.dumps, with escapes.
    odd = replace(_signoff(), actor="caf\udce9")
    text = journal.encode(odd)
    assert "\\udce9" in text
    assert journal.decode(Signoff, text, **columns(odd)) == odd
