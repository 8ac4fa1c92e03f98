"""App: the audit trail's entries, one builder per kind (plan edit, landing, sign-off,
run record, ignored trailer), and where each plan pointed over the history.

`history.audit_trail` collects what the walk kept and builds the trail with these.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
from msgspec import Struct

from reconciler.core.decide_values import runs_from
from reconciler.core.events import Lock, PlanRef, Record, Signoff, parse_plan_ref
from reconciler.core.fields import INVALID, describe_field
from reconciler.core.journal import IgnoredTrailer, PlanEdit, VersionLanded
from reconciler.core.rules import not_a_trigger
from reconciler.core.signoffs import retry_refusal, signoff_refusal
from reconciler.core.verdicts import Refusal, RefusalGroup, group_refusals


class Entry(Struct, frozen=True):
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


def encode_trail(key: str, entries: Sequence[Entry]) -> str:
    """The trail as the state keeps it (`app.kept`), under the key of what it was made from."""
    rows = [
        [
            entry.seq,
            entry.when.isoformat(),
            entry.commit,
            entry.plan,
            entry.environment,
            entry.action,
            entry.actor,
            entry.counted,
            entry.detail,
            entry.rank,
            entry.why_not,
        ]
        for entry in entries
    ]
    return json.dumps({"key": key, "entries": rows})


def decode_trail(text: str, key: str) -> tuple[Entry, ...] | None:
    """The trail `encode_trail` kept under `key`; None for another key, or for a text this
    code did not write (a state edited by hand): it is made again. The key names this
    code (`kept.rules_digest`), so another version's trail is another key's."""
    try:
        kept = _TRAIL.decode(text)
    except msgspec.DecodeError:  # not JSON, or a row of other types (JSON's true is no seq)
        return None
    if kept.key != key:
        return None
    return tuple(Entry(*row) for row in kept.entries)


class _KeptTrail(Struct, frozen=True):
    """`encode_trail`'s text as msgspec reads it: typed in C, a row as Entry's fields."""

    key: str
    entries: tuple[
        tuple[
            int, datetime, str, str | None, str | None, str, str | None, bool, str, int, str | None
        ],
        ...,
    ]


_TRAIL: Final = msgspec.json.Decoder(_KeptTrail)


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
