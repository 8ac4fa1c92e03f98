"""App: the audit trail, who created, edited, approved, triggered, cancelled and ran what.

Called by `reconciler history` (and the demo). Everything comes from what the
authorisation walk read out of Git (edits and their actors, landings,
trailers, the reconciler's records), so the trail agrees with `git log` and
its trailers; each entry names its commit so anyone can check it there.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Literal

from msgspec import Struct

from reconciler.adapters.statestore import StateStore
from reconciler.app.history_entries import (
    Entry,
    Targets,
    decode_trail,
    edit_entries,
    encode_trail,
    ignored_entry,
    landing_entry,
    lock_entry,
    never_runs,
    ran_before,
    record_entries,
    retry_refusal_note,
    signoff_entry,
    untriggered_entry,
)
from reconciler.app.kept import TRAIL, state_key
from reconciler.core.errors import unknown_name
from reconciler.core.events import Lock, PlanRef, Record, Signoff
from reconciler.core.identity import UNKNOWN_ACTOR
from reconciler.core.journal import IgnoredTrailer, Landing, PlanEdit, VersionLanded
from reconciler.core.layout import place
from reconciler.core.model import Policy
from reconciler.core.rules import UNTRIGGERING_STYLES
from reconciler.core.verdicts import Refusal, group_refusals


def audit_trail(store: StateStore) -> tuple[Entry, ...]:
    """Every entry of the trail, in order: the one the state keeps when it was made from the
    state as it is by this code (`app.kept`), else made from the rows (`trail_of`) and
    kept. The rows are a history's worth (28,850 at 10,000 commits); the kept trail is one
    text."""
    key = state_key(store)
    text = store.kept_answer(TRAIL)
    kept = decode_trail(text, key) if text is not None else None
    if kept is not None:
        return kept
    entries = trail_of(store)
    store.keep_answer(TRAIL, encode_trail(key, entries))
    return entries


def trail_of(store: StateStore) -> tuple[Entry, ...]:
    """The trail as the state's rows tell it."""
    environments = Targets()
    edited: dict[str, list[tuple[int, str]]] = {}  # a plan's editors: (landing seq, actor)
    landings = store.landings()
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
    # Within a landing, commits in the order they were made (the walk's topological order,
    # as `git log --topo-order`): committer dates come from the committers' clocks.
    made = {
        commit: index for landing in landings for index, commit in enumerate(landing.verdict.landed)
    }
    return tuple(
        sorted(
            entries,
            key=lambda entry: (entry.seq, entry.rank, made.get(entry.commit, -1), entry.when),
        )
    )


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


def select(
    entries: Sequence[Entry],
    policy: Callable[[], Policy],
    effective: Callable[[], Iterable[str]],
    *,
    plan: str | None = None,
    environment: str | None = None,
    user: str | None = None,
    since: datetime | None = None,
) -> tuple[Entry, ...]:
    """The entries that pass every filter given.

    A plan, environment or user that neither the effective policy and state
    (`effective`: its paths) nor the trail knows is a typo, refused rather than
    answered with an empty trail. The trail counts: a removed user or a
    deleted plan keeps its history. Both are asked for only when a name is given: without
    one, `history` needs no policy, nor the walker that builds it.
    """
    if plan is not None:
        _known_plan(plan, entries, effective())
    if environment is not None:
        _known_environment(environment, entries, policy())
    if user is not None:
        _known_user(user, entries, policy())
    return tuple(entry for entry in entries if _passes(entry, plan, environment, user, since))


def _passes(
    entry: Entry,
    plan: str | None,
    environment: str | None,
    user: str | None,
    since: datetime | None,
) -> bool:
    """Whether `entry` passes every filter given (None: no filter)."""
    return (
        (plan is None or entry.plan == plan)
        and (environment is None or entry.environment == environment)
        and (user is None or entry.actor == user)
        and (since is None or entry.when >= since)
    )


def _known_plan(plan: str, entries: Sequence[Entry], effective: Iterable[str]) -> None:
    plans = sorted(path for path in effective if place(path).kind == "plan")
    plans += sorted({entry.plan for entry in entries if entry.plan})
    if plan not in plans:
        raise unknown_name("plan", plan, plans, "plans on the branch or in the trail")


def _known_environment(environment: str, entries: Sequence[Entry], policy: Policy) -> None:
    environments = [env.name for env in policy.environments_in_order()]
    environments += sorted({entry.environment for entry in entries if entry.environment})
    if environment not in environments:
        raise unknown_name(
            "environment",
            environment,
            environments,
            "environments in environments/ or the trail",
        )


def _known_user(user: str, entries: Sequence[Entry], policy: Policy) -> None:
    actors = {entry.actor for entry in entries if entry.actor and entry.actor != UNKNOWN_ACTOR}
    users = sorted({*policy.users, *policy.service_accounts, *policy.hosts, *actors})
    if user not in users:
        raise unknown_name("user", user, users, "users in teams.yaml or the trail")


def ordered(entries: Sequence[Entry], by: Literal["time", "plan"]) -> tuple[Entry, ...]:
    """The trail (`entries`, in landing order) by time or by plan.

    By time: by date, as `git log --date-order` shows commits, so a landing's own
    entries keep the order they were made in whatever the committers' clocks said
    (a pull request's commits, then its merge, then its runs). By plan: each plan's
    entries together in landing order, the plans in the order they first appear.
    """
    if by == "plan":
        first: dict[str | None, int] = {}
        for index, entry in enumerate(entries):
            first.setdefault(entry.plan, index)
        return tuple(sorted(entries, key=lambda entry: first[entry.plan]))
    landings = [list(group) for _, group in itertools.groupby(entries, lambda entry: entry.seq)]
    if all(map(_in_time_order, landings)):
        # Merging runs that are each in order, ties to the earlier run, is a stable sort:
        # Timsort's, in C, over a trail nearly in order already (a tenth of the merge's cost).
        return tuple(sorted(entries, key=_when))
    heads = [(landing[0].when, index, 0) for index, landing in enumerate(landings)]
    heapq.heapify(heads)
    merged: list[Entry] = []
    while heads:
        _, index, position = heapq.heappop(heads)
        merged.append(landings[index][position])
        if position + 1 < len(landings[index]):
            following = landings[index][position + 1]
            heapq.heappush(heads, (following.when, index, position + 1))
    return tuple(merged)


def _in_time_order(landing: Sequence[Entry]) -> bool:
    return all(earlier.when <= later.when for earlier, later in itertools.pairwise(landing))


def _when(entry: Entry) -> datetime:
    return entry.when


def _refusal_reasons(landings: Iterable[Landing]) -> dict[tuple[str, str], list[Refusal]]:
    """The refused changes to plans, by the commit and the plan that made them (also those
    later commits undid: the edit was refused all the same)."""
    refused: dict[tuple[str, str], list[Refusal]] = {}
    for landing in landings:
        for refusal in (*landing.verdict.refusals, *landing.verdict.superseded):
            if place(refusal.path).kind == "plan":
                refused.setdefault((refusal.commit, refusal.path), []).append(refusal)
    return refused
