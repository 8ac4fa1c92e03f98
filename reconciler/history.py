"""App: the audit trail, who created, edited, approved, triggered, cancelled and ran what.

Called by `reconciler history` (and the demo). Everything comes from what the
authorisation walk read out of Git (edits and their actors, landings,
trailers, the reconciler's records), so the trail agrees with `git log` and
its trailers; each entry names its commit so anyone can check it there.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from reconciler.decide_values import runs_from
from reconciler.errors import unknown_name
from reconciler.events import PlanRef, Record, Signoff, parse_plan_ref
from reconciler.fields import INVALID, describe_field
from reconciler.identity import UNKNOWN_ACTOR
from reconciler.journal import IgnoredTrailer, Landing, PlanEdit, VersionLanded
from reconciler.layout import place
from reconciler.model import Policy
from reconciler.rules import UNTRIGGERING_STYLES, not_a_trigger
from reconciler.signoffs import retry_refusal, signoff_refusal
from reconciler.statestore import StateStore
from reconciler.verdicts import Refusal, RefusalGroup, group_refusals


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    when: datetime
    commit: str
    plan: str | None  # the plan's path
    environment: str | None
    action: str
    actor: str | None
    counted: bool  # authorised, a sign-off that counted when it landed, or a run's first end
    detail: str
    rank: int = 0  # within a landing: edits and sign-offs, then the landing's trigger, then runs
    why_not: str | None = None  # why a sign-off, trigger or record does not count

    @property
    def text(self) -> str:
        """The detail, and why the entry does not count when there is a reason to give."""
        return self.detail + (f"; does not count: {self.why_not}" if self.why_not else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "when": self.when.isoformat(),
            "commit": self.commit,
            "plan": self.plan,
            "environment": self.environment,
            "action": self.action,
            "actor": self.actor,
            "counted": self.counted,
            "detail": self.text,
        }


def audit_trail(store: StateStore) -> tuple[Entry, ...]:
    environments = _Targets()
    edited: dict[str, list[tuple[int, str]]] = {}  # a plan's editors: (landing seq, actor)
    landings = store.landings()
    entries = _edits(store.events(PlanEdit), _refusal_reasons(landings), environments, edited)
    records = store.events(Record)
    runs = _index_runs(records)
    versions, unready, landed = _versions(store.plan_versions(), environments, runs)
    entries.extend(versions)
    entries.extend(_signoffs(store.events(Signoff), environments, edited, unready, runs))
    for record in records:
        entries.extend(_record_entries(record, environments, landed))
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


@dataclass(frozen=True, slots=True)
class _Runs:
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
    environments: _Targets,
    edited: dict[str, list[tuple[int, str]]],
) -> list[Entry]:
    """The plan edits' entries; noting each plan's editors and targets as they landed."""
    entries: list[Entry] = []
    for edit in edits:
        if edit.actor:
            edited.setdefault(edit.path, []).append((edit.seq, edit.actor))
        if edit.environment:
            environments.add(edit.path, edit.seq, edit.environment)
        entries.extend(_edit_entries(edit, why_refused))
    return entries


def _versions(
    versions: Iterable[VersionLanded], environments: _Targets, runs: _Runs
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
        never = _never_runs(version)
        if never is not None:
            unready[ref] = never
        if version.committed_at is None:  # a row kept before landings' times were: no entry
            continue
        if version.triggered:
            entries.append(
                _landing_entry(version, version.committed_at, environments, never, runs.started)
            )
        elif version.style in UNTRIGGERING_STYLES and never is None:
            entries.append(_untriggered_entry(version, version.committed_at, environments))
    return entries, unready, landed


def _signoffs(
    signoffs: Iterable[Signoff],
    environments: _Targets,
    edited: Mapping[str, list[tuple[int, str]]],
    unready: Mapping[PlanRef, str],
    runs: _Runs,
) -> list[Entry]:
    entries: list[Entry] = []
    for signoff in signoffs:
        ran = (
            unready.get(signoff.plan) or _ran_before(runs.started, signoff.plan, signoff.seq)
            if signoff.kind == "deploy" and signoff.plan is not None
            else None
        )
        run = runs.starts.get(signoff.run) if signoff.run is not None else None
        if signoff.run is not None:
            ran = _retry_refusal(signoff.run, runs.of_run.get(signoff.run, []), signoff.seq)
        # Editors as of the approval's landing: one who edits the plan only later does not
        # undo an approval that counted (and may have let a run start).
        path = signoff.plan.path if signoff.plan is not None else ""
        editors = frozenset(actor for seq, actor in edited.get(path, ()) if seq <= signoff.seq)
        entries.append(_signoff_entry(signoff, environments, editors, ran, run))
    return entries


def _ignored(
    ignored: Iterable[IgnoredTrailer], environments: _Targets, landed: Mapping[PlanRef, int]
) -> list[Entry]:
    entries: list[Entry] = []
    for trailer in ignored:
        if trailer.record is not None:  # a record that does not count (`events.record_refusal`)
            entries.extend(_record_entries(trailer.record, environments, landed, trailer.reason))
        else:
            entries.append(_ignored_entry(trailer, environments))
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


class _Targets:
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


def select(
    entries: Sequence[Entry],
    policy: Policy,
    effective: Iterable[str],
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
    deleted plan keeps its history.
    """
    if plan is not None:
        _known_plan(plan, entries, effective)
    if environment is not None:
        _known_environment(environment, entries, policy)
    if user is not None:
        _known_user(user, entries, policy)
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


def _refusal_reasons(landings: Iterable[Landing]) -> dict[tuple[str, str], list[Refusal]]:
    """The refused changes to plans, by the commit and the plan that made them (also those
    later commits undid: the edit was refused all the same)."""
    refused: dict[tuple[str, str], list[Refusal]] = {}
    for landing in landings:
        for refusal in (*landing.verdict.refusals, *landing.verdict.superseded):
            if place(refusal.path).kind == "plan":
                refused.setdefault((refusal.commit, refusal.path), []).append(refusal)
    return refused


def _edit_entries(
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


def _never_runs(version: VersionLanded) -> str | None:
    """Why a landed plan version can never run (a draft, cancelled, invalid), or None."""
    if version.state == "ready":
        return None
    if version.state is None:
        return "the version is invalid, and an invalid plan never runs"
    return f"the version is {version.state}, and a {version.state} plan never runs"


def _landing_entry(
    version: VersionLanded,
    when: datetime,
    environments: _Targets,
    never: str | None,
    started: Mapping[PlanRef, list[tuple[int, str]]],
) -> Entry:
    """A landing on main: the trigger of a ready version, else (`never` says why it is not a
    trigger) just landed."""
    ref, seq = version.ref, version.seq
    ran = _ran_before(started, ref, seq) if never is None else None
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


def _untriggered_entry(version: VersionLanded, when: datetime, environments: _Targets) -> Entry:
    """A ready version landed in a way that is never a trigger, whoever pressed the button
    (a host's squash, a branch that merged main in): said where a trigger would stand."""
    why = not_a_trigger(version.style, version.landing, version.actor, version.squashed_by)
    return _landing_entry(version, when, environments, why, {})


def _ran_before(
    started: Mapping[PlanRef, list[tuple[int, str]]], ref: PlanRef, seq: int
) -> str | None:
    """Why a trigger landing at `seq` does not count because its version already ran, or None.

    A plan version runs at most once (`decide`: a version with a run is done, and only a
    Retry-Run re-runs an interrupted one).
    """
    runs = [run for started_seq, run in started.get(ref, ()) if started_seq < seq]
    return f"the version already ran: run {runs[-1]}" if runs else None


def _retry_refusal(run: str, records: Sequence[Record], seq: int) -> str | None:
    """Why a `Retry-Run: run` landed at `seq` does not count, or None: `decide`'s rule
    (`retry_refusal`), on the run as its records tell it.

    `records`: the run's records and the start records of its retries, in landing order.
    """
    retries = [record.run for record in records if record.retry_of == run and record.seq < seq]
    final = next(iter(runs_from(r for r in records if r.run == run)), None)
    refused = retry_refusal(final, retries[0] if retries else None, seq)
    return refused.text if refused is not None else None


def _signoff_entry(
    signoff: Signoff,
    environments: _Targets,
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


def _signed_for(signoff: Signoff, run: Record | None) -> tuple[str | None, str | None]:
    """The plan (its path) and environment a sign-off is for, where it says.

    A retry names a run, not a plan: its plan and environment are the run's."""
    ref = signoff.plan
    path = ref.path if ref else run.plan.path if run is not None and run.plan else None
    environment = run.environment if run is not None and run.environment else None
    return path, environment


def _record_entries(
    record: Record,
    environments: _Targets,
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
    action = "run started" if record.result == "started" else f"run {record.result}"
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


def _ignored_entry(event: IgnoredTrailer, environments: _Targets) -> Entry:
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
