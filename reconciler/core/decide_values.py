"""Stage 4, decide: the values `decide` reads and returns besides its decisions.

`History` is everything `decide` needs, read once from the state store and main's
tip (`pipeline.gather`); `runs_from` folds start and finish records into `Run`s.
A `Wait` is what a plan version waits for; a `SignoffVerdict`, what `decide` made
of one of its sign-offs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal

from msgspec import Struct, field
from msgspec.structs import replace

from reconciler.core.events import FINISHED, HEARTBEAT, Lock, PlanRef, Record, Signoff
from reconciler.core.identity import CommitFacts
from reconciler.core.model import Policy
from reconciler.core.reasons import Reason

RunResult = Literal["started", "succeeded", "failed", "interrupted"]


class Run(Struct, frozen=True):
    """One execution of a plan version, as the reconciler's records tell it."""

    id: str
    plan: PlanRef
    environment: str
    result: RunResult
    instance: str | None
    lease_until: datetime | None
    started: str  # commit of the start record
    finished: str | None
    triggered_by: str | None
    approved_by: tuple[str, ...]
    retry_of: str | None
    started_at: datetime
    started_seq: int
    finished_seq: int = 0


class Landed(Struct, frozen=True):
    """The landing that made a plan version current on main, and what its actor held."""

    seq: int
    commit: str
    actor: str | None
    how: str
    triggered: bool  # its actor held plan.deploy under the policy that judged it
    reasons: tuple[str, ...]
    style: str = ""  # how it landed (`rules.landing_style`); "" when stored before styles
    squashed_by: str | None = None  # the host whose squash landed it


class OnMain(Struct, frozen=True):
    """A plan file on main's tip."""

    path: str
    blob: str
    data: Mapping[str, Any] | None  # None when the content is invalid
    problems: tuple[str, ...]  # why it is invalid or not effective, a line each


class History(Struct, frozen=True):
    """Everything `decide` needs, read once from the store and the repository."""

    policy: Policy
    plans: tuple[OnMain, ...]
    landings: Mapping[PlanRef, Landed]  # the latest landing of each version
    signoffs: tuple[Signoff, ...]
    runs: tuple[Run, ...]
    editors: Mapping[str, frozenset[str]]
    first_seen: Mapping[str, datetime]
    commit_times: Mapping[str, datetime]
    facts: Mapping[str, CommitFacts]
    deployed: Mapping[str, Mapping[str, str]]  # environment -> application -> version
    refused: frozenset[PlanRef] = frozenset()  # versions a refusal record already names
    revoked: frozenset[str] = frozenset()  # fingerprints of keys that sign nothing here
    uncancelled: frozenset[PlanRef] = frozenset()  # versions whose landing un-cancelled them
    # What the records show ran in the environments rollback plans go to: environment ->
    # application -> versions (`pipeline.versions_ran`); only those, as only they are asked.
    ran: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    # Where a soak gate counts: environment -> application -> when its running version's
    # record verified it (`decide.verified_since`).
    verified_since: Mapping[str, Mapping[str, datetime]] = field(default_factory=dict)
    # The stop-the-line locks that hold, by scope ('production', 'production/ecommerce').
    locks: Mapping[str, Lock] = field(default_factory=dict)


class Wait(Struct, frozen=True):
    what: Literal[
        "state", "approval", "trigger", "window", "promotion", "soak", "lock", "retry", "driver"
    ]
    reason: Reason
    until: datetime | None = None

    @property
    def text(self) -> str:
        return self.reason.text


class SignoffVerdict(Struct, frozen=True):
    """What `decide` made of one sign-off of a plan version (or of its triggering landing)."""

    kind: Literal["approve", "deploy", "retry"]
    commit: str
    actor: str | None
    label: str  # "approval in 0123456789ab by ravi"
    refused: Reason | None = None  # None: it counts

    @property
    def note(self) -> str:
        return f"{self.label} does not count: {self.refused}"


# What became of a run, as people say it.
OUTCOMES: Final = {
    "started": "is running",
    "succeeded": "succeeded",
    "failed": "failed",
    "interrupted": "was interrupted",
}


def runs_from(records: Iterable[Record]) -> tuple[Run, ...]:
    """Fold start and finish records into runs, in the order they started.

    `records`: those that counted. `events.record_refusal` lets one start and one
    finish per run through, the finish after its start, so the fold needs no rule of
    its own about second starts or finishes. A heartbeat that counted extends the lease."""
    runs: dict[str, Run] = {}
    for record in records:
        if record.run is None or record.plan is None:
            continue
        if record.result == "started":
            runs[record.run] = Run(
                id=record.run,
                plan=record.plan,
                environment=record.environment or "",
                result="started",
                instance=record.instance,
                lease_until=record.lease_until,
                started=record.commit,
                finished=None,
                triggered_by=record.triggered_by,
                approved_by=record.approved_by,
                retry_of=record.retry_of,
                started_at=record.committed_at,
                started_seq=record.seq,
            )
        elif record.run in runs and record.result == HEARTBEAT:
            runs[record.run] = replace(runs[record.run], lease_until=record.lease_until)
        elif record.run in runs and record.result in FINISHED:
            runs[record.run] = replace(
                runs[record.run],
                result=record.result,
                finished=record.commit,
                finished_seq=record.seq,
            )
    return tuple(runs.values())


def locks_from(events: Iterable[Lock]) -> dict[str, Lock]:
    """The locks that hold, by scope, from the locks and unlocks in landing order: one that
    counts (`held`) locks or unlocks its scope; one that does not counts for nothing."""
    holding: dict[str, Lock] = {}
    for event in events:
        if not event.held:
            continue
        if event.kind == "lock":
            holding[event.scope] = event
        else:
            holding.pop(event.scope, None)
    return holding
