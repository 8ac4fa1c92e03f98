"""The state store's reads for a pass: what a decision needs, found by index, not by history.

Real SQLite databases in temporary folders; records and sign-offs as the walk stores them.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from msgspec.structs import replace

from reconciler.adapters.statestore import StateStore
from reconciler.core.decide_values import runs_from
from reconciler.core.errors import ReconcilerError
from reconciler.core.events import PlanRef, Record, Signoff
from reconciler.core.journal import Landing, VersionLanded
from reconciler.core.verdicts import LandingVerdict

WHEN = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def ref(name: str, version: int) -> PlanRef:
    return PlanRef(f"plans/{name}.yaml", f"{version:040x}")


def record(
    seq: int, result: str, run: str | None, plan: PlanRef | None, *refused: PlanRef
) -> Record:
    return Record(
        commit=f"{seq:040x}",
        seq=seq,
        result=result,
        run=run,
        plan=plan,
        environment="development",
        instance="ci",
        lease_until=None,
        triggered_by="olga",
        approved_by=(),
        refused=refused,
        committed_at=WHEN,
    )


def signoff(seq: int, kind: str, plan: PlanRef | None, run: str | None = None) -> Signoff:
    return Signoff(
        kind=kind,  # type: ignore[arg-type]
        commit=f"{seq:040x}",
        seq=seq,
        plan=plan,
        run=run,
        actor="ravi",
        how="signed",
        verified=True,
        held=True,
        reasons=(),
        committed_at=WHEN,
    )


def landed(plan: PlanRef, landing: str, seq: int) -> VersionLanded:
    return VersionLanded(
        path=plan.path,
        blob=plan.blob,
        landing=landing,
        seq=seq,
        committed_at=WHEN,
        actor="olga",
        how="signed",
        verified=True,
        triggered=True,
        reasons=(),
    )


def stored(store: StateStore, *events: Record | Signoff) -> None:
    with store.transaction():
        for event in events:
            store.add_event(event)


def runs_read(store: StateStore, *current: PlanRef) -> dict[str, str]:
    records = store.run_records({item.path for item in current}, map(str, current))
    return {run.id: run.result for run in runs_from(records)}


HISTORY = (
    record(1, "started", "old.1", ref("old", 1)),
    record(2, "succeeded", "old.1", ref("old", 1)),  # a plan since deleted, its run ended
    record(3, "started", "gone.1", ref("gone", 1)),  # a plan since deleted, its run open
    record(4, "started", "qa.1", ref("qa", 1)),
    record(5, "failed", "qa.1", ref("qa", 1)),  # an older version of a plan on main
    record(6, "started", "qa.2", ref("qa", 2)),
    record(7, "refused", None, None, ref("qa", 2), ref("old", 1)),
    record(8, "refused", None, None, ref("old", 1)),
)


def test_a_pass_reads_the_runs_of_the_plans_on_main_and_every_run_still_open(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "main")
    stored(store, *HISTORY)
    # Every version of a plan on main (run ids are numbered per plan), and the open run of
    # a deleted plan (it holds its environment, and may need recording as interrupted).
    assert runs_read(store, ref("qa", 2)) == {
        "gone.1": "started",
        "qa.1": "failed",
        "qa.2": "started",
    }


def test_a_pass_reads_the_refusals_that_name_a_version_on_main_and_no_other(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "main")
    stored(store, *HISTORY)
    records = store.run_records({"plans/qa.yaml"}, [str(ref("qa", 2))])
    assert [item.commit for item in records if item.result == "refused"] == [f"{7:040x}"]


def test_a_run_started_again_after_it_ended_is_open_as_the_records_fold(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "main")
    stored(
        store,
        record(1, "started", "gone.1", ref("gone", 1)),
        record(2, "interrupted", "gone.1", ref("gone", 1)),
        record(3, "started", "gone.1", ref("gone", 1)),
        record(4, "started", "left.1", ref("left", 1)),
        record(5, "succeeded", "left.1", ref("left", 1)),
        record(6, "succeeded", "left.1", ref("left", 1)),  # a second finish changes nothing
    )
    assert runs_read(store, ref("qa", 1)) == {"gone.1": "started"}


def test_a_database_from_before_the_open_runs_finds_them_when_opened(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "main")
    stored(store, *HISTORY)
    store.close()
    with sqlite3.connect(tmp_path / "main.sqlite3") as older:
        older.execute("DROP TABLE open_runs")
    reopened = StateStore(tmp_path, "main")
    assert runs_read(reopened, ref("qa", 2)) == {
        "gone.1": "started",
        "qa.1": "failed",
        "qa.2": "started",
    }


def test_re_anchoring_keeps_the_runs_whatever_landings_the_rewrite_dropped(
    tmp_path: Path,
) -> None:
    # The service ran them whatever main holds now: a version that ran must not run again.
    store = StateStore(tmp_path, "main")
    stored(store, *HISTORY)
    with store.transaction():
        store.reset()
    assert runs_read(store, ref("qa", 2)) == {
        "gone.1": "started",
        "qa.1": "failed",
        "qa.2": "started",
    }
    # The refusals went with their landings; the runs' records come after the kept ones.
    assert {(item.seq, item.result) for item in store.events(Record)} == {
        (1, "started"),
        (1, "succeeded"),
        (1, "failed"),
    }


def test_re_anchoring_keeps_the_records_of_the_landings_the_new_history_holds(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "main")
    stored(store, *HISTORY)
    with store.transaction():
        for item in HISTORY:
            store.add_landing(
                Landing(item.seq, LandingVerdict(item.commit, None, (), "", (), ()), WHEN)
            )
    with store.transaction():
        store.reset([f"{seq:040x}" for seq in range(1, 5)])  # the rewrite dropped landings 5 to 8
    # qa.1's finish record outlives its landing: the service knows the run ended.
    assert runs_read(store, ref("qa", 2)) == {
        "gone.1": "started",
        "qa.1": "failed",
        "qa.2": "started",
    }
    assert [item.seq for item in store.events(Record)] == [1, 2, 3, 4, 5, 5]
    assert [item.seq for item in store.landings()] == [1, 2, 3, 4]
    assert store.next_seq() == 5


def test_a_pass_reads_the_sign_offs_of_the_versions_on_main_and_the_retries_of_their_runs(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "main")
    stored(
        store,
        signoff(1, "approve", ref("qa", 1)),
        signoff(2, "approve", ref("qa", 2)),
        signoff(3, "deploy", ref("qa", 2)),
        signoff(4, "retry", None, "qa.2"),
        signoff(5, "retry", None, "qa.1"),
        signoff(6, "deploy", ref("other", 1)),
    )
    found = store.signoff_events([str(ref("qa", 2))], ["qa.2"])
    assert [item.seq for item in found] == [2, 3, 4]


def test_a_pass_looks_up_the_landings_of_the_versions_on_main_in_landing_order(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "main")
    with store.transaction():
        for landing, (name, version) in enumerate([("qa", 1), ("qa", 2), ("old", 1), ("qa", 1)]):
            version_ref = ref(name, version)
            store.add_plan_version(landed(version_ref, f"{landing:040x}", landing))
    wanted = {(ref("qa", 1).path, ref("qa", 1).blob), (ref("gone", 1).path, ref("gone", 1).blob)}
    assert [item.seq for item in store.plan_versions(only=wanted)] == [0, 3]
    assert len(store.plan_versions()) == 4


def test_a_pass_reads_the_editors_of_the_plans_asked_for_whatever_their_names_bytes(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "main")
    odd = "plans/caf\udce9.yaml"  # a name that is not UTF-8, as Git hands it over
    with store.transaction():
        store.add_editors("plans/qa.yaml", ["alice", "diana"])
        store.add_editors("plans/old.yaml", ["bob"])
        store.add_editors(odd, ["carol"])
    assert store.editors_of(["plans/qa.yaml", odd, "plans/new.yaml"]) == {
        "plans/qa.yaml": frozenset({"alice", "diana"}),
        odd: frozenset({"carol"}),
        "plans/new.yaml": frozenset(),
    }


def test_the_records_of_runs_come_in_landing_order_once_each(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "main")
    stored(store, *HISTORY)
    found = store.records_of(["qa.1", "old.1", "qa.1"])
    assert [(item.run, item.result) for item in found] == [
        ("old.1", "started"),
        ("old.1", "succeeded"),
        ("qa.1", "started"),
        ("qa.1", "failed"),
    ]


def test_a_signature_cache_from_before_payload_digests_is_dropped_when_opened(
    tmp_path: Path,
) -> None:
    # Its verdicts were made before malformed signatures were told apart: a copy with
    # two signature headers is cached there as good.
    StateStore(tmp_path, "main").close()
    with sqlite3.connect(tmp_path / "main.sqlite3") as older:
        older.execute("DROP TABLE signatures")
        older.execute(
            "CREATE TABLE signatures (commit_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
            " fingerprint TEXT, reason TEXT NOT NULL)"
        )
        older.execute("INSERT INTO signatures VALUES ('c0ffee', 'good', 'SHA256:k', '')")
    reopened = StateStore(tmp_path, "main")
    assert reopened.signatures(["c0ffee"]) == {}
    reopened.remember_signatures({"c0ffee": ("malformed", None, "two headers", "ab" * 32)})
    assert reopened.signatures(["c0ffee"]) == {
        "c0ffee": ("malformed", None, "two headers", "ab" * 32)
    }


def test_a_payloads_first_carrier_stays_the_first_and_re_anchoring_forgets_them(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "main")
    store.add_carriers({"d1": "first"})
    store.add_carriers({"d1": "second", "d2": "other"})
    assert store.carriers(["d1", "d2", "d3"]) == {"d1": "first", "d2": "other", "d3": None}
    with store.transaction():
        store.reset()
    assert store.carriers(["d1"]) == {"d1": None}


def test_a_pass_reads_the_start_records_of_other_reconcilers_among_the_last_records_only(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "main")
    gone = ref("removed-since", 1)  # no plan on main: its runs are read all the same
    for seq, (instance, result) in enumerate(
        [("other", "started"), ("ci", "started"), ("other", "succeeded"), ("other", "started")]
        + [("ci", "started")] * 3,
        start=1,
    ):
        store.add_event(replace(record(seq, result, f"r.{seq}", gone), instance=instance))
    assert [found.seq for found in store.others_starts("ci", limit=7)] == [4, 1]
    assert [found.seq for found in store.others_starts("ci", limit=4)] == [4]  # the last four
    assert [found.seq for found in store.others_starts("other", limit=7)] == [7, 6, 5, 2]


def test_the_effective_rows_of_some_paths_are_those_the_whole_state_holds(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "state", "main")
    try:
        with store.transaction():
            for path in ("plans/a.yaml", "plans/b.yaml", "environments/qa.yaml"):
                store.replace_effective(path, {"content": f'"{path}"', "order": "[]"})
            store.replace_effective("plans/caf\udce9.yaml", {"content": '"x"'})
        whole = store.effective()
        wanted = ["plans/b.yaml", "environments/qa.yaml", "plans/missing.yaml"]
        assert store.effective_at(wanted) == {path: whole[path] for path in wanted[:2]}
        assert store.effective_at([]) == {}
        # A path that is not UTF-8 is kept as bytes, which a JSON list cannot name.
        assert store.effective_at(["plans/caf\udce9.yaml"]) is None
    finally:
        store.close()


def test_a_state_that_cannot_be_used_is_closed_again_and_leaves_no_wal(tmp_path: Path) -> None:
    StateStore(tmp_path, "main").close()
    with sqlite3.connect(tmp_path / "main.sqlite3") as db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', '999')")
    db.close()
    with pytest.raises(ReconcilerError, match="cannot be used"):
        StateStore(tmp_path, "main")
    assert sorted(path.name for path in tmp_path.iterdir() if "-wal" in path.name) == []
    assert sorted(path.name for path in tmp_path.iterdir() if "-shm" in path.name) == []
