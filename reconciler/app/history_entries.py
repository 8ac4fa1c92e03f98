"""App: the audit trail made from the state's rows (`trail_of`): one builder per kind of
entry (plan edit, landing, sign-off, run record, ignored trailer), and where each plan
pointed over the history.

`history.audit_trail` has the trail made here when the state keeps none for the state as
it is (`app.trail`); answering from the kept one loads none of this.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final

from msgspec import Struct

from reconciler.adapters.statestore import StateStore
from reconciler.app.trail import Entry
from reconciler.core.decide_values import runs_from
from reconciler.core.events import Lock, PlanRef, Record, Signoff, parse_plan_ref
from reconciler.core.fields import INVALID, describe_field
from reconciler.core.journal import IgnoredTrailer, Landing, PlanEdit, VersionLanded
from reconciler.core.layout import place
from reconciler.core.rules import UNTRIGGERING_STYLES, not_a_trigger
from reconciler.core.signoffs import retry_refusal, signoff_refusal
from reconciler.core.verdicts import Refusal, RefusalGroup, group_refusals


class Targets:
    """Where each plan pointed over the history: a plan deleted and re-created, or moved to
    another target, keeps its earlier entries in the environment they were made for."""

    def __init__(self) -> None:
        self._seqs: dict[str, list[int]] = {}
        self._names: dict[str, list[str]] = {}

    def add(self, path: str, seq: int, environment: str) -> None:
        """The target of an edit landed at `seq` (added in landing order)."""
        self._seqs.setdefault(path, []).append(seq)
        self._names.setdefault(path, []).append(environment)

    def get(self, path: str, seq: int) -> str | None:
        """The plan's target as of the landing `seq`: its last edit's at or before it (its
        first edit's when none is, a plan older than the trail)."""
        names = self._names.get(path)
        if not names:
            return None
        index = bisect.bisect_right(self._seqs[path], seq) - 1
        return names[max(index, 0)]


def edit_entries(
    event: PlanEdit, why_refused: Mapping[tuple[str, str], list[Refusal]]
) -> list[Entry]:
    refused = event.refused
    if event.change == "created":
        detail = f"new plan into {event.environment or 'an unknown environment'}"
    else:
        detail = ", ".join(event.fields) or "no field changed"
    if event.merge:
        detail = f"merge resolution: {detail}"
    if refused:
        detail += "; " + "; ".join(_refused_lines(event, why_refused))
    if event.actor is None:
        detail += f" (actor not verified: {event.how})"
    return [
        Entry(
            event.seq,
            event.committed_at,
            event.commit,
            event.path,
            event.environment,
            _edit_action(event),
            event.actor or event.claimed,
            not refused,
            detail,
        )
    ]


def _edit_action(event: PlanEdit) -> str:
    """What an edit did: cancelled or un-cancelled the plan, or its change (created...)."""
    before, after = event.state
    if after == "cancelled" and before not in (None, "cancelled"):
        return "cancelled"
    if before == "cancelled" and after not in (None, "cancelled"):
        return "un-cancelled"
    return event.change


def _refused_lines(
    event: PlanEdit, why_refused: Mapping[tuple[str, str], list[Refusal]]
) -> list[str]:
    """Why an edit's refused fields were refused: each refusal says what and why (the entry
    names the actor and the commit)."""
    refused = event.refused
    groups = group_refusals(
        refusal
        for refusal in why_refused.get((event.commit, event.path), ())
        if describe_field(refusal.field) in refused
    )
    told = _told(groups)
    lines = [
        group.text(path=False, who=False)
        if group.invalid
        else f"refused: {group.text(path=False, who=False)}"
        for group in groups
    ]
    if untold := [what for what in refused if what not in told]:
        lines.append(f"refused: {', '.join(untold)}")
    return lines


def _told(groups: Iterable[RefusalGroup]) -> set[str]:
    """The fields (as people read them) the refusal groups name."""
    told = {field for group in groups for field in group.fields}
    told |= {describe_field(INVALID) for group in groups if group.invalid}
    return told


def never_runs(version: VersionLanded) -> str | None:
    """Why a landed plan version can never run (a draft, cancelled, invalid), or None."""
    if version.state == "ready":
        return None
    if version.state is None:
        return "the version is invalid, and an invalid plan never runs"
    return f"the version is {version.state}, and a {version.state} plan never runs"


def landing_entry(
    version: VersionLanded,
    when: datetime,
    environments: Targets,
    never: str | None,
    started: Mapping[PlanRef, list[tuple[int, str]]],
) -> Entry:
    """A landing on main: the trigger of a ready version, else (`never` says why it is not a
    trigger) just landed."""
    ref, seq = version.ref, version.seq
    ran = ran_before(started, ref, seq) if never is None else None
    if never is not None:
        action, text = "landed", f"by landing it on main; not a trigger: {never}"
    else:
        action, text = "triggered", "by landing it on main"
    return Entry(
        seq,
        when,
        version.landing,
        ref.path,
        environments.get(ref.path, seq),
        action,
        version.actor,
        never is None and ran is None,
        text,
        rank=1,
        why_not=ran,
    )


def untriggered_entry(version: VersionLanded, when: datetime, environments: Targets) -> Entry:
    """A ready version landed in a way that is never a trigger, whoever pressed the button
    (a host's squash, a branch that merged main in): said where a trigger would stand."""
    why = not_a_trigger(version.style, version.landing, version.actor, version.squashed_by)
    return landing_entry(version, when, environments, why, {})


def ran_before(
    started: Mapping[PlanRef, list[tuple[int, str]]], ref: PlanRef, seq: int
) -> str | None:
    """Why a trigger landing at `seq` does not count because its version already ran, or None.

    A plan version runs at most once (`decide`: a version with a run is done, and only a
    Retry-Run re-runs an interrupted one).
    """
    runs = [run for started_seq, run in started.get(ref, ()) if started_seq < seq]
    return f"the version already ran: run {runs[-1]}" if runs else None


def retry_refusal_note(run: str, records: Sequence[Record], seq: int) -> str | None:
    """Why a `Retry-Run: run` landed at `seq` does not count, or None: `decide`'s rule
    (`retry_refusal`), on the run as its records tell it.

    `records`: the run's records and the start records of its retries, in landing order.
    """
    retries = [record.run for record in records if record.retry_of == run and record.seq < seq]
    final = next(iter(runs_from(r for r in records if r.run == run)), None)
    refused = retry_refusal(final, retries[0] if retries else None, seq)
    return refused.text if refused is not None else None


def signoff_entry(
    signoff: Signoff,
    environments: Targets,
    editors: frozenset[str],
    ran: str | None = None,
    run: Record | None = None,
) -> Entry:
    """An approval, a trigger, or a retry (`run`: the start record of the run it names)."""
    actions = {"approve": "approved", "deploy": "triggered", "retry": "asked to retry"}
    ref = signoff.plan
    path, environment = _signed_for(signoff, run)
    detail = f"run {signoff.run}" if signoff.run else f"version {ref.blob[:12]}" if ref else ""
    # decide's verdict on the landing itself (editors never approve their own plan); whether
    # it still counts today (policy changes, approval_ttl) is `reconciler plan`'s to say.
    refused = signoff_refusal(signoff, editors)
    problem = refused.text if refused is not None else ran
    return Entry(
        signoff.seq,
        signoff.committed_at,
        signoff.commit,
        path,
        environment or environments.get(path or "", signoff.seq),
        actions[signoff.kind],
        signoff.actor,
        problem is None,
        detail,
        why_not=problem,
    )


def lock_entry(lock: Lock) -> Entry:
    """A lock or unlock: who, when and why; one that does not count says why not."""
    what = f"{lock.scope}" + (f": {lock.why}" if lock.why else "")
    refused = None if lock.held else "; ".join(lock.reasons) or "not a right to lock"
    return Entry(
        lock.seq,
        lock.committed_at,
        lock.commit,
        None,
        lock.environment,
        f"{lock.kind}ed",
        lock.actor,
        lock.held,
        what,
        why_not=refused,
    )


def _signed_for(signoff: Signoff, run: Record | None) -> tuple[str | None, str | None]:
    """The plan (its path) and environment a sign-off is for, where it says.

    A retry names a run, not a plan: its plan and environment are the run's."""
    ref = signoff.plan
    path = ref.path if ref else run.plan.path if run is not None and run.plan else None
    environment = run.environment if run is not None and run.environment else None
    return path, environment


# How `history` names a record of a run, where not "run <result>".
_ACTIONS: Final = {
    "started": "run started",
    "heartbeat": "run lease extended",
    "late": "run finished after its lease",
}


def record_entries(
    record: Record,
    environments: Targets,
    landed: Mapping[PlanRef, int],
    void: str | None = None,
) -> list[Entry]:
    """A record's entries; `void`: why it does not count (a run's second finish record)."""
    if record.result == "refused":
        # A refusal record names versions, not environments: each is in its plan's target.
        return [
            Entry(
                record.seq,
                record.committed_at,
                record.commit,
                ref.path,
                environments.get(ref.path, landed.get(ref, record.seq)),
                "refused",
                "reconciler",
                True,
                f"version {ref.blob[:12]} refused (reasons in the commit message)",
                rank=2,
            )
            for ref in record.refused
        ]
    action = _ACTIONS.get(record.result, f"run {record.result}")
    detail = f"{record.run} (retry of {record.retry_of})" if record.retry_of else f"{record.run}"
    return [
        Entry(
            record.seq,
            record.committed_at,
            record.commit,
            record.plan.path if record.plan else None,
            record.environment,
            action,
            "reconciler",
            void is None,
            detail,
            rank=2,
            why_not=void,
        )
    ]


def ignored_entry(event: IgnoredTrailer, environments: Targets) -> Entry:
    path = None
    for _, values in event.trailers:
        for text in values:
            ref = parse_plan_ref(text)
            if ref:
                path = ref.path
    return Entry(
        event.seq,
        event.committed_at,
        event.commit,
        path,
        environments.get(path or "", event.seq),
        "ignored",
        event.actor,  # events stored before it was kept have none
        False,
        event.reason,
    )


# -- the trail from the rows ------------------------------------------------------------


def trail_of(store: StateStore) -> tuple[Entry, ...]:
    """The trail as the state's rows tell it."""
    environments = Targets()
    edited: dict[str, list[tuple[int, str]]] = {}  # a plan's editors: (landing seq, actor)
    # Only the landings that refused something: the trail follows what happened to plans,
    # and every landing decoded would be a history's worth of memory on each read.
    landings = store.refusing_landings()
    entries = _edits(store.events(PlanEdit), _refusal_reasons(landings), environments, edited)
    records = store.events(Record)
    runs = _index_runs(records)
    versions, unready, landed = _versions(store.plan_versions(), environments, runs)
    entries.extend(versions)
    entries.extend(_signoffs(store.events(Signoff), environments, edited, unready, runs))
    entries.extend(map(lock_entry, store.events(Lock)))
    for record in records:
        entries.extend(record_entries(record, environments, landed))
    entries.extend(_ignored(store.events(IgnoredTrailer), environments, landed))
    entries.extend(_unauthorised(landings))
    made = _made(store, entries)
    return tuple(
        sorted(
            entries,
            key=lambda entry: (
                entry.seq,
                entry.rank,
                made.get((entry.seq, entry.commit), -1),
                entry.when,
            ),
        )
    )


def _made(store: StateStore, entries: Iterable[Entry]) -> dict[tuple[int, str], int]:
    """Within a landing, commits in the order they were made (the walk's topological order,
    as `git log --topo-order`): committer dates come from the committers' clocks. Asked
    only of the landings whose entries name more than one commit."""
    commits: dict[int, set[str]] = {}
    for entry in entries:
        commits.setdefault(entry.seq, set()).add(entry.commit)
    several = (seq for seq, named in commits.items() if len(named) > 1)
    return {
        (seq, commit): index
        for seq, landed in store.landed_in(several).items()
        for index, commit in enumerate(landed)
    }


class _Runs(Struct, frozen=True):
    """The runs the reconciler's records tell of, as the trail's entries look them up."""

    started: dict[PlanRef, list[tuple[int, str]]]  # a version's runs: (seq, run)
    starts: dict[str, Record]  # each run's first start record: its plan and environment
    of_run: dict[str, list[Record]]  # each run's records, and those of its retries


def _index_runs(records: Iterable[Record]) -> _Runs:
    runs = _Runs({}, {}, {})
    for record in records:
        if record.run is not None:
            runs.of_run.setdefault(record.run, []).append(record)
        if record.result == "started" and record.plan is not None and record.run is not None:
            runs.started.setdefault(record.plan, []).append((record.seq, record.run))
            runs.starts.setdefault(record.run, record)
            if record.retry_of:
                runs.of_run.setdefault(record.retry_of, []).append(record)
    return runs


def _edits(
    edits: Iterable[PlanEdit],
    why_refused: Mapping[tuple[str, str], list[Refusal]],
    environments: Targets,
    edited: dict[str, list[tuple[int, str]]],
) -> list[Entry]:
    """The plan edits' entries; noting each plan's editors and targets as they landed."""
    entries: list[Entry] = []
    for edit in edits:
        if edit.actor:
            edited.setdefault(edit.path, []).append((edit.seq, edit.actor))
        if edit.environment:
            environments.add(edit.path, edit.seq, edit.environment)
        entries.extend(edit_entries(edit, why_refused))
    return entries


def _versions(
    versions: Iterable[VersionLanded], environments: Targets, runs: _Runs
) -> tuple[list[Entry], dict[PlanRef, str], dict[PlanRef, int]]:
    """The landings' entries (a trigger, or a landing that was none); and the versions that
    never run, with why, and where each version first landed."""
    entries: list[Entry] = []
    unready: dict[PlanRef, str] = {}  # versions that never run: why
    # Where each version landed: its target is its own (a field of it), whatever the plan
    # targets by the time a refusal record naming it lands.
    landed: dict[PlanRef, int] = {}
    for version in versions:
        ref = version.ref
        landed.setdefault(ref, version.seq)
        never = never_runs(version)
        if never is not None:
            unready[ref] = never
        if version.committed_at is None:  # a row kept before landings' times were: no entry
            continue
        if version.triggered:
            entries.append(
                landing_entry(version, version.committed_at, environments, never, runs.started)
            )
        elif version.style in UNTRIGGERING_STYLES and never is None:
            entries.append(untriggered_entry(version, version.committed_at, environments))
    return entries, unready, landed


def _signoffs(
    signoffs: Iterable[Signoff],
    environments: Targets,
    edited: Mapping[str, list[tuple[int, str]]],
    unready: Mapping[PlanRef, str],
    runs: _Runs,
) -> list[Entry]:
    entries: list[Entry] = []
    for signoff in signoffs:
        ran = (
            unready.get(signoff.plan) or ran_before(runs.started, signoff.plan, signoff.seq)
            if signoff.kind == "deploy" and signoff.plan is not None
            else None
        )
        run = runs.starts.get(signoff.run) if signoff.run is not None else None
        if signoff.run is not None:
            ran = retry_refusal_note(signoff.run, runs.of_run.get(signoff.run, []), signoff.seq)
        # Editors as of the approval's landing: one who edits the plan only later does not
        # undo an approval that counted (and may have let a run start).
        path = signoff.plan.path if signoff.plan is not None else ""
        editors = frozenset(actor for seq, actor in edited.get(path, ()) if seq <= signoff.seq)
        entries.append(signoff_entry(signoff, environments, editors, ran, run))
    return entries


def _ignored(
    ignored: Iterable[IgnoredTrailer], environments: Targets, landed: Mapping[PlanRef, int]
) -> list[Entry]:
    entries: list[Entry] = []
    for trailer in ignored:
        if trailer.record is not None:  # a record that does not count (`events.record_refusal`)
            entries.extend(record_entries(trailer.record, environments, landed, trailer.reason))
        else:
            entries.append(ignored_entry(trailer, environments))
    return entries


def _unauthorised(landings: Iterable[Landing]) -> list[Entry]:
    """The refused changes to anything but plans (those are shown with their edit)."""
    entries: list[Entry] = []
    for landing in landings:
        others = (
            refusal
            for refusal in landing.verdict.refusals
            if place(refusal.path).kind != "plan"  # shown with the edit that made it
        )
        entries.extend(
            Entry(
                landing.seq,
                landing.committed_at,
                group.commit,
                None,
                None,
                "unauthorised",
                group.actor,
                False,
                group.text(who=False),
            )
            for group in group_refusals(others)
        )
    return entries


def _refusal_reasons(landings: Iterable[Landing]) -> dict[tuple[str, str], list[Refusal]]:
    """The refused changes to plans, by the commit and the plan that made them (also those
    later commits undid: the edit was refused all the same)."""
    refused: dict[tuple[str, str], list[Refusal]] = {}
    for landing in landings:
        for refusal in (*landing.verdict.refusals, *landing.verdict.superseded):
            if place(refusal.path).kind == "plan":
                refused.setdefault((refusal.commit, refusal.path), []).append(refusal)
    return refused
