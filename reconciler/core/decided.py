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
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

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
        data = json.loads(text)
        if data["format"] != journal.VERSION:
            raise ValueError(f"decisions of format {data['format']!r}")
        reasons = [_reason(item) for item in data["reasons"]]
        return Decided(
            _text(data["key"]),
            _moment(data["now"]),
            _moment(data["until"]) if data["until"] is not None else None,
            tuple(_decision(item, reasons) for item in data["decisions"]),
        )
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"malformed decisions: {error!r}") from None


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


def _decision(data: list[Any], reasons: list[Reason]) -> Decision:
    path, blob, plan, status, why, waits, approvers, by, seq, run, retry_of, verdicts = data
    return Decision(
        _text(path),
        _text(blob),
        _plan(plan) if plan is not None else None,
        _one_of(status, ("executable", "waiting", "refused", "done", "cancelled")),
        tuple(reasons[_number(index)] for index in why),
        tuple(
            Wait(
                _one_of(what, _WAITS),
                reasons[_number(index)],
                _moment(until) if until is not None else None,
            )
            for what, index, until in waits
        ),
        approvers=tuple(_text(actor) for actor in approvers),
        triggered_by=_optional_text(by),
        trigger_seq=_number(seq),
        run=_run(run) if run is not None else None,
        retry_of=_optional_text(retry_of),
        verdicts=tuple(
            SignoffVerdict(
                _one_of(kind, ("approve", "deploy", "retry")),
                _text(commit),
                _optional_text(actor),
                _text(label),
                reasons[_number(refused)] if refused is not None else None,
            )
            for kind, commit, actor, label, refused in verdicts
        ),
    )


_WAITS = ("state", "approval", "trigger", "window", "promotion", "soak", "lock", "retry", "driver")


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


def _plan(data: Mapping[str, Any]) -> Plan:
    return Plan(
        _text(data["name"]),
        _optional_text(data["source"]),
        _text(data["target"]),
        tuple(
            PlanEntry(
                _text(name),
                _text(version),
                _one_of(action, ("deploy", "tag-and-deploy")),
                _optional_text(from_version),
            )
            for name, version, action, from_version in data["applications"]
        ),
        _text(data["notes"]),
        _one_of(data["state"], ("draft", "ready", "cancelled")),
        rollback=data["rollback"] is True,
        override_drift=data["override_drift"] is True,
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


def _run(data: Mapping[str, Any]) -> Run:
    path, blob = data["plan"]
    return Run(
        id=_text(data["id"]),
        plan=PlanRef(_text(path), _text(blob)),
        environment=_text(data["environment"]),
        result=_one_of(data["result"], ("started", "succeeded", "failed", "interrupted")),
        instance=_optional_text(data["instance"]),
        lease_until=_moment(data["lease_until"]) if data["lease_until"] is not None else None,
        started=_text(data["started"]),
        finished=_optional_text(data["finished"]),
        triggered_by=_optional_text(data["triggered_by"]),
        approved_by=tuple(_text(actor) for actor in data["approved_by"]),
        retry_of=_optional_text(data["retry_of"]),
        started_at=_moment(data["started_at"]),
        started_seq=_number(data["started_seq"]),
        finished_seq=_number(data["finished_seq"]),
    )


def _facts_json(item: Reason) -> dict[str, Any]:
    return {name: _fact_json(value) for name, value in item.facts.items()}


def _reason(data: list[Any]) -> Reason:
    code, text, facts = data
    return reason(
        _text(code), _text(text), **{_text(name): _fact(value) for name, value in facts.items()}
    )


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


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _number(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    return value


def _one_of(value: Any, allowed: tuple[str, ...]) -> Any:
    if value not in allowed:
        raise ValueError(f"{value!r} is none of {', '.join(allowed)}")
    return value
