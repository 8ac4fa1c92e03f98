"""Stage 4, decide: the last observation's decisions, kept in the state with what they were
decided from, so `plan` and `status` answer from the state while nothing that decides changed.

`Decided` is `decide`'s answer (before the drivers are asked) with its `key` (a digest of
the inputs that are no clock: the tip, the state, the revocations, the reconciler's
version, as `pipeline.decided_key` makes it) and the moment until which it holds with the
clock alone (`Horizon`, which each rule that reads the clock told). One codec writes and
reads it, as the journal's does its rows (`journal`): JSON, versioned with the journal's
format; a text this code cannot read raises `ValueError`, and is then simply not used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Struct

from reconciler.core import journal
from reconciler.core.decide import Decision
from reconciler.core.decide_values import Run, SignoffVerdict, Wait
from reconciler.core.events import PlanRef
from reconciler.core.gates import Horizon
from reconciler.core.model import Plan, PlanEntry
from reconciler.core.reasons import Reason, reason


class Decided(Struct, frozen=True):
    """Decisions made at `now` from the inputs `key` names, holding until `until` (None:
    until an input changes)."""

    key: str
    now: datetime
    until: datetime | None
    decisions: tuple[Decision, ...]

    def holds(self, key: str, now: datetime) -> bool:
        """Whether these are the decisions of the inputs `key` names at `now`."""
        return key == self.key and Horizon(self.now, self.until).holds_at(now)


def encode(decided: Decided) -> str:
    """`decided` as the state keeps it; `ValueError` for a fact this format cannot hold.

    Each distinct reason is written once and named by its place (a thousand plans repeat
    a few thousand reasons: why they wait is why their waits are)."""
    reasons: dict[Reason, int] = {}
    texts: list[Any] = []

    def named(item: Reason) -> int:
        facts = _facts_json(item)
        key = reasons.get(item)
        if key is None or texts[key][2] != facts:  # equal reasons may differ in facts
            key = reasons[item] = len(texts)
            texts.append([item.code, item.text, facts])
        return key

    decisions = [_decision_json(item, named) for item in decided.decisions]
    return json.dumps(
        {
            "format": journal.VERSION,
            "key": decided.key,
            "now": decided.now.isoformat(),
            "until": decided.until.isoformat() if decided.until else None,
            "reasons": texts,
            "decisions": decisions,
        }
    )


def decode(text: str) -> Decided:
    """What `encode` wrote; `ValueError` for anything else (a state edited by hand, another
    version's format), never a half-read value."""
    try:
        data = _DECODER.decode(text)
        if data.format != journal.VERSION:
            raise ValueError(f"decisions of format {data.format!r}")
        reasons = [_reason(code, text, facts) for code, text, facts in data.reasons]
        return Decided(
            data.key,
            data.now,
            data.until,
            tuple(_decision(item, reasons) for item in data.decisions),
        )
    except msgspec.ValidationError as error:
        raise ValueError(f"malformed decisions: {error}") from None
    except msgspec.DecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    except _MALFORMED as error:
        raise ValueError(f"malformed decisions: {error!r}") from None


# What a text edited by hand raises as it is read, besides msgspec's errors: overflow, a
# span or moment no datetime holds; recursion, a fact nested past what the decoder or
# `_fact` follows.
_MALFORMED = (KeyError, TypeError, AttributeError, IndexError, OverflowError, RecursionError)


# -- the format -------------------------------------------------------------------------


def _decision_json(item: Decision, named: Callable[[Reason], int]) -> list[Any]:
    return [
        item.path,
        item.blob,
        _plan_json(item.plan) if item.plan is not None else None,
        item.status,
        [named(why) for why in item.why],
        [
            [wait.what, named(wait.reason), wait.until.isoformat() if wait.until else None]
            for wait in item.waits
        ],
        list(item.approvers),
        item.triggered_by,
        item.trigger_seq,
        _run_json(item.run) if item.run is not None else None,
        item.retry_of,
        [
            [
                verdict.kind,
                verdict.commit,
                verdict.actor,
                verdict.label,
                named(verdict.refused) if verdict.refused else None,
            ]
            for verdict in item.verdicts
        ],
    ]


def _decision(data: _DecisionWire, reasons: list[Reason]) -> Decision:
    # Positional, and lists made into tuples: a thousand decisions are read on every `plan`.
    return Decision(
        data.path,
        data.blob,
        _plan(data.plan) if data.plan is not None else None,
        data.status,
        tuple([reasons[index] for index in data.why]),
        tuple([Wait(what, reasons[index], until) for what, index, until in data.waits]),
        data.approvers,
        data.triggered_by,
        data.trigger_seq,
        _run(data.run) if data.run is not None else None,
        data.retry_of,
        tuple(
            [
                SignoffVerdict(
                    kind, commit, actor, label, reasons[refused] if refused is not None else None
                )
                for kind, commit, actor, label, refused in data.verdicts
            ]
        ),
    )


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "source": plan.source,
        "target": plan.target,
        "applications": [
            [entry.name, entry.version, entry.action, entry.from_version]
            for entry in plan.applications
        ],
        "notes": plan.notes,
        "state": plan.state,
        "rollback": plan.rollback,
        "override_drift": plan.override_drift,
    }


def _plan(data: _PlanWire) -> Plan:
    return Plan(
        data.name,
        data.source,
        data.target,
        tuple([PlanEntry(*entry) for entry in data.applications]),
        data.notes,
        data.state,
        rollback=data.rollback,
        override_drift=data.override_drift,
    )


def _run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "plan": [run.plan.path, run.plan.blob],
        "environment": run.environment,
        "result": run.result,
        "instance": run.instance,
        "lease_until": run.lease_until.isoformat() if run.lease_until else None,
        "started": run.started,
        "finished": run.finished,
        "triggered_by": run.triggered_by,
        "approved_by": list(run.approved_by),
        "retry_of": run.retry_of,
        "started_at": run.started_at.isoformat(),
        "started_seq": run.started_seq,
        "finished_seq": run.finished_seq,
    }


def _run(data: _RunWire) -> Run:
    return Run(
        id=data.id,
        plan=PlanRef(*data.plan),
        environment=data.environment,
        result=data.result,
        instance=data.instance,
        lease_until=data.lease_until,
        started=data.started,
        finished=data.finished,
        triggered_by=data.triggered_by,
        approved_by=data.approved_by,
        retry_of=data.retry_of,
        started_at=data.started_at,
        started_seq=data.started_seq,
        finished_seq=data.finished_seq,
    )


def _facts_json(item: Reason) -> dict[str, Any]:
    return {name: _fact_json(value) for name, value in item.facts.items()}


def _reason(code: str, text: str, facts: dict[str, Any]) -> Reason:
    """A reason as `reasons.reason` makes it, from its facts as written: the decoder's
    dict is this reason's alone, so it is made read-only as it is, unless a fact in it
    is tagged (`_fact`)."""
    if not facts:
        return reason(code, text)
    for value in facts.values():
        if type(value) not in _PLAIN:
            facts = {name: _fact(value) for name, value in facts.items()}
            break
    return Reason(code, text, MappingProxyType(facts))


# A fact is a plain JSON value, or one of these tagged as a one-key object; any other kind
# is refused when written (the decisions are then not kept), never written as a guess.
def _fact_json(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime):
        return {"moment": value.isoformat()}
    if isinstance(value, timedelta):
        return {"span": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, tuple):
        return {"tuple": [_fact_json(item) for item in value]}
    raise ValueError(f"a fact of type {type(value).__name__} is not kept")


def _fact(data: Any) -> Any:
    if type(data) in _PLAIN:  # most facts: names, counts
        return data
    ((tag, value),) = data.items()
    if tag == "tuple":
        return tuple(item if type(item) in _PLAIN else _fact(item) for item in value)
    if tag == "moment":
        return _moment(value)
    if tag == "span":
        days, seconds, microseconds = value
        return timedelta(days=days, seconds=seconds, microseconds=microseconds)
    raise ValueError(f"unknown fact {tag!r}")


_PLAIN = frozenset({type(None), str, bool, int, float})


def _moment(text: Any) -> datetime:
    moment = datetime.fromisoformat(_text(text))
    if moment.tzinfo is None:
        raise ValueError(f"a moment without its zone: {text!r}")
    return moment


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a text: {value!r}")
    return value


# -- the format as msgspec reads it ---------------------------------------------------------
# Read in C, typed: a text, a number, one of the allowed words and a moment with its zone
# are checked as the JSON is parsed, and a decision is built from checked parts. The same
# layout `encode` writes (lists by position, the plan and the run as objects).

_Moment = Annotated[datetime, msgspec.Meta(tz=True)]


class _PlanWire(Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    source: str | None
    target: str
    applications: tuple[tuple[str, str, Literal["deploy", "tag-and-deploy"], str | None], ...]
    notes: str
    state: Literal["draft", "ready", "cancelled"]
    rollback: bool
    override_drift: bool


class _RunWire(Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    plan: tuple[str, str]
    environment: str
    result: Literal["started", "succeeded", "failed", "interrupted"]
    instance: str | None
    lease_until: _Moment | None
    started: str
    finished: str | None
    triggered_by: str | None
    approved_by: tuple[str, ...]
    retry_of: str | None
    started_at: _Moment
    started_seq: int
    finished_seq: int


class _DecisionWire(Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    path: str
    blob: str
    plan: _PlanWire | None
    status: Literal["executable", "waiting", "refused", "done", "cancelled"]
    why: tuple[int, ...]
    waits: tuple[
        tuple[
            Literal[
                "state",
                "approval",
                "trigger",
                "window",
                "promotion",
                "soak",
                "lock",
                "retry",
                "driver",
            ],
            int,
            _Moment | None,
        ],
        ...,
    ]
    approvers: tuple[str, ...]
    triggered_by: str | None
    trigger_seq: int
    run: _RunWire | None
    retry_of: str | None
    verdicts: tuple[
        tuple[Literal["approve", "deploy", "retry"], str, str | None, str, int | None], ...
    ]


class _DecidedWire(Struct, frozen=True):
    format: int
    key: str
    now: _Moment
    until: _Moment | None
    reasons: tuple[tuple[str, str, dict[str, Any]], ...]
    decisions: tuple[_DecisionWire, ...]


_DECODER = msgspec.json.Decoder(_DecidedWire)
