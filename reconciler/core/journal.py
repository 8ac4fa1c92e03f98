"""Core, shared: the journal, what the walk and the service keep in the state store, as values.

Written by `authorise` (what each landing brought: its verdict, plan edits, plan
versions, sign-offs, records and ignored trailers) and by `reconcile` (finish
records not yet published), through `statestore`; read back by `decide`,
`history`, `reconcile` and `session`. One frozen value per row kind, and one
codec (`encode`, `decode`) that writes and reads them as the JSON the store keeps.

The codec is versioned: `VERSION` is the format of every row, kept in the state
database (`statestore.SCHEMA_VERSION`). A database another format wrote is refused
with a hint, never half read: the state is rebuilt from Git history by a walk.

The JSON is the store's as well as the codec's: the store's queries look into it
(a record's `run`, `plan`, `refused`; a landing's `authorised`), and `verify
--format json` passes a landing's stored text through as it is, so a landing's
JSON is `LandingVerdict.as_json` with the commit's time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypeVar, cast

import msgspec
from msgspec import Struct

from reconciler.core.errors import ReconcilerError
from reconciler.core.events import Lock, PlanRef, Record, Signoff, parse_plan_ref
from reconciler.core.verdicts import LandingVerdict, Refusal

VERSION: Final = 1
# The formats this code reads: every one it ever wrote (there is one so far).
_READABLE: Final = frozenset({1})
_REBUILD: Final = (
    "pass --state-dir with a new directory (verify rebuilds the state from Git history), "
    "or run the reconciler version that wrote it"
)


class Landing(Struct, frozen=True):
    """A landing's verdict as the walk kept it: its place in landing order and when its
    first-parent commit was made."""

    seq: int
    verdict: LandingVerdict
    committed_at: datetime


class PlanEdit(Struct, frozen=True):
    """One commit's edit of a plan file: who made it, which fields, which were refused."""

    commit: str
    seq: int
    path: str
    change: Literal["created", "deleted", "edited"]
    fields: tuple[str, ...]  # as `fields.describe_field` words them
    state: tuple[Any, Any]  # the plan's state before and after (None: none)
    environment: str | None  # the plan's target after the edit (before, when deleted)
    actor: str | None  # by the signature the target environment requires; None: unknown
    claimed: str  # who the commit says made it, for display
    how: str
    refused: tuple[str, ...]  # the fields of the edit that were refused, worded as `fields`
    merge: bool  # a merge commit's own resolution
    committed_at: datetime


class VersionLanded(Struct, frozen=True):
    """A plan version a landing made effective, and what that landing's actor could do."""

    path: str
    blob: str
    landing: str  # the first-parent commit
    seq: int
    committed_at: datetime | None  # None in rows kept before it was
    actor: str | None
    how: str
    verified: bool
    triggered: bool  # its actor held plan.deploy under the policy that judged it
    reasons: tuple[str, ...]
    style: str = ""  # how it landed (`rules.landing_style`); "" in rows kept before styles
    squashed_by: str | None = None
    # Only a ready, valid version runs: None when invalid. Rows kept before the state
    # was read as "ready".
    state: Any = "ready"

    @property
    def ref(self) -> PlanRef:
        return PlanRef(self.path, self.blob)


class IgnoredTrailer(Struct, frozen=True):
    """A commit's trailers that count for nothing, and why; `record`: the record they make,
    when they make one that does not count (`events.record_refusal`)."""

    commit: str
    seq: int
    committed_at: datetime
    trailers: tuple[tuple[str, tuple[str, ...]], ...]  # each key's values, in message order
    reason: str
    actor: str | None  # who wrote them (by signature, else by email); None: unknown
    record: Record | None = None

    def as_json(self) -> dict[str, Any]:
        """As `verify` and `verify-mergeable` report it."""
        return {
            "commit": self.commit,
            "actor": self.actor,
            "trailers": {key: list(values) for key, values in self.trailers},
            "reason": self.reason,
        }


class OutboxEntry(Struct, frozen=True):
    """A finished run's record, kept until it is published: a crash or lost race loses none."""

    run: str
    message: str  # the record commit's message
    environment: str
    plan: str  # the plan's name
    log_path: str
    log: str
    deployed: tuple[tuple[str, str], ...]  # (application, version)
    when: datetime


Event = PlanEdit | Signoff | Record | Lock | IgnoredTrailer  # the rows of the events table
Row = Landing | VersionLanded | Event | OutboxEntry
Blame = Mapping[str, Refusal | None]  # a dirty path's fields: the refusal that left each
# A landing's verdict alone reads a landing's JSON, kept or as `verify` shows it.
R = TypeVar("R", bound=Row | LandingVerdict)
# The fields of a row the store keeps in columns of its own, not in its JSON.
COLUMNS: Final[Mapping[type[Any], tuple[str, ...]]] = {
    Landing: ("seq",),
    VersionLanded: ("path", "blob", "landing"),
    OutboxEntry: ("run",),
}


def event_kind(event: Event) -> str:
    """The events table's `kind` of a row."""
    if isinstance(event, Signoff):
        return event.kind
    if isinstance(event, Record):
        return "record"
    if isinstance(event, PlanEdit):
        return "edit"
    if isinstance(event, Lock):
        return "lock"
    return "ignored"


def readable(version: int) -> None:
    """Refuse a journal of a format this code does not read."""
    if version not in _READABLE:
        raise ReconcilerError(
            f"the state was written in journal format {version}; this reconciler reads "
            f"format {', '.join(map(str, sorted(_READABLE)))}",
            hint=_REBUILD,
        )


def encode(row: Row | Blame) -> str:
    """A row (or a dirty path's blame) as the JSON text the store keeps; without the
    fields the store keeps in columns of their own (`COLUMNS`)."""
    # The row's own type first: the walk encodes thousands of rows, few of them blame.
    encoder = _ENCODERS.get(type(row))
    data = _blame_json(cast(Blame, row)) if encoder is None else encoder(row)
    try:
        # In C, a tenth of json.dumps's time: a walk of 10,000 commits writes 80,000 rows.
        return _JSON.encode(data).decode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: a file name that is not UTF-8
        return json.dumps(data)


# Rows hold texts, whole numbers, booleans and lists and maps of them, never a float (which
# msgspec would write as null were it NaN): what json.loads reads back as json.dumps wrote.
_JSON: Final = msgspec.json.Encoder()


def decode(kind: type[R], text: str, version: int = VERSION, **columns: Any) -> R:
    """A row of `kind` from the JSON text the store kept in format `version`, and the
    fields it keeps in columns of their own (`COLUMNS`)."""
    readable(version)
    try:
        return cast(R, _DECODERS[kind]({**json.loads(text), **columns}))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ReconcilerError(
            f"a {kind.__name__} row of the state database cannot be read: {error!r}",
            hint=f"the state may be damaged; {_REBUILD}",
        ) from None


def decode_blame(text: str, version: int = VERSION) -> dict[str, Refusal | None]:
    """A dirty path's blame from the JSON text the store kept in format `version`."""
    readable(version)
    try:
        data = json.loads(text)
        return {key: _refusal(item) if item else None for key, item in data.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ReconcilerError(
            f"a dirty path's row of the state database cannot be read: {error!r}",
            hint=f"the state may be damaged; {_REBUILD}",
        ) from None


# -- the format, version 1 ------------------------------------------------------------


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _ref(text: str | None) -> PlanRef | None:
    return parse_plan_ref(text) if text else None


def _refusal(data: Mapping[str, Any]) -> Refusal:
    return Refusal(
        data["commit"],
        data["path"],
        data["field"],
        data["actor"],
        data["how"],
        data["needed"],
        tuple(data["reasons"]),
    )


def _blame_json(blame: Blame) -> dict[str, Any]:
    return {key: refusal.as_json() if refusal else None for key, refusal in blame.items()}


def _landing_json(row: Landing) -> dict[str, Any]:
    return {**row.verdict.as_json(), "committed_at": row.committed_at.isoformat()}


def _landing(data: Mapping[str, Any]) -> Landing:
    return Landing(data["seq"], _verdict(data), datetime.fromisoformat(data["committed_at"]))


def _verdict(data: Mapping[str, Any]) -> LandingVerdict:
    return LandingVerdict(
        data["commit"],
        data["first_parent"],
        tuple(data["landed"]),
        data["actor"],
        tuple(map(_refusal, data["refusals"])),
        tuple(data["changed"]),
        tuple(map(_refusal, data.get("superseded", ()))),
        tuple((item["commit"], item["reason"]) for item in data.get("unattributed", ())),
    )


def _edit_json(row: PlanEdit) -> dict[str, Any]:
    return {
        "kind": "edit",
        "commit": row.commit,
        "seq": row.seq,
        "path": row.path,
        "change": row.change,
        "fields": list(row.fields),
        "state": list(row.state),
        "environment": row.environment,
        "actor": row.actor,
        "claimed": row.claimed,
        "how": row.how,
        "refused": list(row.refused),
        "merge": row.merge,
        "committed_at": row.committed_at.isoformat(),
    }


def _edit(data: Mapping[str, Any]) -> PlanEdit:
    before, after = data["state"]
    return PlanEdit(
        commit=data["commit"],
        seq=data["seq"],
        path=data["path"],
        change=data["change"],
        fields=tuple(data["fields"]),
        state=(before, after),
        environment=data["environment"],
        actor=data["actor"],
        claimed=data["claimed"],
        how=data["how"],
        refused=tuple(data["refused"]),
        merge=data["merge"],
        committed_at=datetime.fromisoformat(data["committed_at"]),
    )


def _version_json(row: VersionLanded) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "committed_at": row.committed_at.isoformat() if row.committed_at else None,
        "actor": row.actor,
        "how": row.how,
        "verified": row.verified,
        "triggered": row.triggered,
        # How it landed: a squash or a branch that merged main in is no trigger.
        "style": row.style,
        "squashed_by": row.squashed_by,
        "state": row.state,
        "reasons": list(row.reasons),
    }


def _version(data: Mapping[str, Any]) -> VersionLanded:
    return VersionLanded(
        path=data["path"],
        blob=data["blob"],
        landing=data["landing"],
        seq=data["seq"],
        committed_at=_time(data.get("committed_at")),
        actor=data["actor"],
        how=data["how"],
        verified=data.get("verified", False),
        triggered=data["triggered"],
        reasons=tuple(data["reasons"]),
        style=data.get("style", ""),
        squashed_by=data.get("squashed_by"),
        state=data.get("state", "ready"),
    )


def _signoff_json(row: Signoff) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "commit": row.commit,
        "seq": row.seq,
        "plan": str(row.plan) if row.plan else None,
        "run": row.run,
        "actor": row.actor,
        "how": row.how,
        "verified": row.verified,
        "held": row.held,
        "reasons": list(row.reasons),
        "committed_at": row.committed_at.isoformat(),
    }


def _signoff(data: Mapping[str, Any]) -> Signoff:
    return Signoff(
        kind=data["kind"],
        commit=data["commit"],
        seq=data["seq"],
        plan=_ref(data["plan"]),
        run=data["run"],
        actor=data["actor"],
        how=data["how"],
        verified=data["verified"],
        held=data["held"],
        reasons=tuple(data["reasons"]),
        committed_at=datetime.fromisoformat(data["committed_at"]),
    )


def _lock_json(row: Lock) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "commit": row.commit,
        "seq": row.seq,
        "environment": row.environment,
        "application": row.application,
        "why": row.why,
        "actor": row.actor,
        "how": row.how,
        "held": row.held,
        "reasons": list(row.reasons),
        "committed_at": row.committed_at.isoformat(),
    }


def _lock(data: Mapping[str, Any]) -> Lock:
    return Lock(
        kind=data["kind"],
        commit=data["commit"],
        seq=data["seq"],
        environment=data["environment"],
        application=data["application"],
        why=data["why"],
        actor=data["actor"],
        how=data["how"],
        held=data["held"],
        reasons=tuple(data["reasons"]),
        committed_at=datetime.fromisoformat(data["committed_at"]),
    )


def _record_json(row: Record) -> dict[str, Any]:
    return {
        "kind": "record",
        "retry_of": row.retry_of,
        "verified": list(row.verified),
        "commit": row.commit,
        "seq": row.seq,
        "result": row.result,
        "run": row.run,
        "plan": str(row.plan) if row.plan else None,
        "environment": row.environment,
        "instance": row.instance,
        "lease_until": row.lease_until.isoformat() if row.lease_until else None,
        "triggered_by": row.triggered_by,
        "approved_by": list(row.approved_by),
        "refused": [str(ref) for ref in row.refused],
        "committed_at": row.committed_at.isoformat(),
    }


def _record(data: Mapping[str, Any]) -> Record:
    return Record(
        commit=data["commit"],
        seq=data["seq"],
        result=data["result"],
        run=data["run"],
        plan=_ref(data["plan"]),
        environment=data["environment"],
        instance=data["instance"],
        lease_until=_time(data["lease_until"]),
        triggered_by=data["triggered_by"],
        approved_by=tuple(data["approved_by"]),
        refused=tuple(ref for ref in map(_ref, data["refused"]) if ref),
        committed_at=datetime.fromisoformat(data["committed_at"]),
        retry_of=data.get("retry_of"),
        # Rows kept before checks: nothing verified, so no soak counts from them.
        verified=tuple(data.get("verified") or ()),
    )


def _ignored_json(row: IgnoredTrailer) -> dict[str, Any]:
    found = {
        "kind": "ignored",
        "commit": row.commit,
        "seq": row.seq,
        "committed_at": row.committed_at.isoformat(),
        "trailers": {key: list(values) for key, values in row.trailers},
        "reason": row.reason,
        "actor": row.actor,
    }
    if row.record is not None:  # a record that does not count: `history` shows it as one
        found["record"] = _record_json(row.record)
    return found


def _ignored(data: Mapping[str, Any]) -> IgnoredTrailer:
    record = data.get("record")
    return IgnoredTrailer(
        commit=data["commit"],
        seq=data["seq"],
        committed_at=datetime.fromisoformat(data["committed_at"]),
        trailers=tuple((key, tuple(values)) for key, values in data["trailers"].items()),
        reason=data["reason"],
        actor=data.get("actor"),  # rows kept before it was have none
        record=_record(record) if record is not None else None,
    )


def _outbox_json(row: OutboxEntry) -> dict[str, Any]:
    return {
        "message": row.message,
        "environment": row.environment,
        "plan": row.plan,
        "log_path": row.log_path,
        "log": row.log,
        "deployed": [list(pair) for pair in row.deployed],
        "when": row.when.isoformat(),
    }


def _outbox(data: Mapping[str, Any]) -> OutboxEntry:
    return OutboxEntry(
        run=data["run"],
        message=data["message"],
        environment=data["environment"],
        plan=data["plan"],
        log_path=data["log_path"],
        log=data["log"],
        deployed=tuple((app, version) for app, version in data["deployed"]),
        when=datetime.fromisoformat(data["when"]),
    )


_ENCODERS: Final[Mapping[type[Any], Callable[[Any], dict[str, Any]]]] = {
    Landing: _landing_json,
    PlanEdit: _edit_json,
    VersionLanded: _version_json,
    Signoff: _signoff_json,
    Record: _record_json,
    Lock: _lock_json,
    IgnoredTrailer: _ignored_json,
    OutboxEntry: _outbox_json,
}
_DECODERS: Final[Mapping[type[Any], Callable[[Mapping[str, Any]], Row | LandingVerdict]]] = {
    Landing: _landing,
    LandingVerdict: _verdict,
    PlanEdit: _edit,
    VersionLanded: _version,
    Signoff: _signoff,
    Record: _record,
    Lock: _lock,
    IgnoredTrailer: _ignored,
    OutboxEntry: _outbox,
}
