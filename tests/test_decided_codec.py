"""Specification: the kept decisions' codec (`core.decided`) reads back exactly what it
wrote, facts included, and refuses any other text with `ValueError`, never a half-read
value: a state edited by hand is then decided afresh."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from reconciler.core import decided, journal
from reconciler.core.decide import Decision
from reconciler.core.decide_values import Run, SignoffVerdict, Wait
from reconciler.core.events import PlanRef
from reconciler.core.model import Plan, PlanEntry
from reconciler.core.reasons import reason

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))


def waiting() -> Decision:
    late = reason(
        "window.closed",
        "the deploy window opens at 18:00",
        opens=NOW.astimezone(TOKYO),
        span=timedelta(hours=6, microseconds=5),
        roles=("ops", "leads"),
        count=2,
        ratio=0.5,
        quiet=None,
        known=True,
    )
    refused = reason("approval.editor", "ravi edited this version", actor="ravi")
    return Decision(
        "plans/release.yaml",
        "b" * 40,
        Plan(
            "release",
            "development",
            "production",
            (
                PlanEntry("shop", "1.2.0", "deploy", None),
                PlanEntry("portal", "2.0", "deploy", "1.9"),
            ),
            "notes",
            "ready",
            rollback=True,
        ),
        "waiting",
        (late,),
        (Wait("window", late, NOW + timedelta(hours=6)), Wait("approval", refused)),
        approvers=("mia",),
        triggered_by="omar",
        trigger_seq=7,
        run=Run(
            id="production.3",
            plan=PlanRef("plans/release.yaml", "a" * 40),
            environment="production",
            result="interrupted",
            instance="host-1",
            lease_until=NOW,
            started="c" * 40,
            finished=None,
            triggered_by="omar",
            approved_by=("mia", "ravi"),
            retry_of="production.2",
            started_at=NOW - timedelta(minutes=5),
            started_seq=3,
            finished_seq=0,
        ),
        retry_of="production.3",
        verdicts=(
            SignoffVerdict("approve", "d" * 40, "mia", "approval in dddddddddddd by mia"),
            SignoffVerdict("approve", "e" * 40, "ravi", "approval by ravi", refused),
        ),
    )


def kept_text(*decisions: Decision, until: datetime | None = None) -> str:
    return decided.encode(decided.Decided("key", NOW, until, decisions))


def edited(change: Any) -> str:
    """The kept text of `waiting()` after `change` edits its JSON in place."""
    data = json.loads(kept_text(waiting()))
    change(data)
    return json.dumps(data)


def test_decisions_read_back_equal_with_every_kind_of_fact() -> None:
    original = waiting()
    back = decided.decode(kept_text(original, until=NOW + timedelta(hours=1)))
    assert back == decided.Decided("key", NOW, NOW + timedelta(hours=1), (original,))
    # Reasons compare by code and text: their facts are checked on their own.
    assert [dict(why.facts) for why in back.decisions[0].why] == [
        dict(why.facts) for why in original.why
    ]
    assert back.decisions[0].why[0].facts["opens"].utcoffset() == timedelta(hours=9)
    assert back.decisions[0].waits[1].reason.facts == {"actor": "ravi"}


def test_the_facts_read_back_are_read_only() -> None:
    back = decided.decode(kept_text(waiting()))
    for why in back.decisions[0].why:
        with pytest.raises(TypeError):
            why.facts["actor"] = "mallory"  # type: ignore[index]


def test_a_decision_with_no_plan_and_no_run_reads_back_equal() -> None:
    bare = Decision("plans/broken.yaml", "f" * 40, None, "refused", (reason("plan.invalid", "x"),))
    assert decided.decode(kept_text(bare)).decisions == (bare,)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda data: data.update(now="2026-03-04T12:00:00"), id="moment-without-zone"),
        pytest.param(lambda data: data.update(format=journal.VERSION + 1), id="another-format"),
        pytest.param(lambda data: data["decisions"][0].__setitem__(3, "go"), id="unknown-status"),
        pytest.param(lambda data: data["decisions"][0].__setitem__(8, True), id="bool-as-number"),
        pytest.param(lambda data: data["decisions"][0].__setitem__(4, [99]), id="unknown-reason"),
        pytest.param(lambda data: data["decisions"][0].pop(), id="short-decision"),
        pytest.param(lambda data: data["decisions"][0].append(None), id="long-decision"),
        pytest.param(lambda data: data["decisions"][0][2].pop("state"), id="plan-without-state"),
        pytest.param(
            lambda data: data["decisions"][0][2].update(extra=1), id="plan-with-unknown-field"
        ),
        pytest.param(
            lambda data: data["reasons"][0][2].update(opens={"when": "now"}), id="unknown-fact"
        ),
        pytest.param(
            lambda data: data["reasons"][0][2].update(opens=["a", "list"]), id="list-as-fact"
        ),
        pytest.param(
            lambda data: data["decisions"][0][9].update(result="paused"), id="unknown-run-result"
        ),
        pytest.param(lambda data: data["decisions"][0][5][0].__setitem__(0, "x"), id="wait-kind"),
    ],
)
def test_a_kept_text_edited_by_hand_is_refused_not_half_read(change: Any) -> None:
    with pytest.raises(ValueError):
        decided.decode(edited(change))


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '{"format": 1}'])
def test_a_text_that_is_no_kept_decisions_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decided.decode(text)


NESTED_PAST_ANY_DECODER = '{"tuple": ' * 5_000 + "[]" + "}" * 5_000


@pytest.mark.parametrize(
    "fact",
    [
        pytest.param('{"span": [10000000000, 0, 0]}', id="span-past-timedelta"),
        pytest.param('{"moment": "9999-12-31T23:59:59+00:00x"}', id="moment-not-iso"),
        pytest.param(NESTED_PAST_ANY_DECODER, id="nested-deep"),
    ],
)
def test_a_fact_no_value_can_hold_is_refused_as_malformed(fact: str) -> None:
    # Written as text: a fact nested this deep is past what json itself would write.
    text = edited(lambda data: data["reasons"][0][2].update(opens="FACT"))
    with pytest.raises(ValueError):
        decided.decode(text.replace('"FACT"', fact))
