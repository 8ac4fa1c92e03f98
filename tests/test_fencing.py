"""Fencing as values: whether a run may take its next step, and which of its records count.

No Git and no clock but the `now` given: `runs.may_step` (before every driver
step), `events.record_refusal` for heartbeats and late records, `runs_from`
folding heartbeats into a run's lease, `runs.late_steps`, and how a late record
reads (`record.late_message`). The same rules
against real processes, real remotes and SIGSTOP are in tests/test_crash_races.py
("fencing"); a service-signed heartbeat that tries to revive a run is in
tests/test_attacks.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from msgspec.structs import replace

from reconciler.app.record import late_message
from reconciler.core.decide_values import runs_from
from reconciler.core.events import PlanRef, Record, read_trailers, record_refusal
from reconciler.core.model import DriverSpec
from reconciler.core.runs import (
    EXTEND,
    LEASE_MARGIN,
    STEP,
    contested,
    late_steps,
    lease_for,
    may_ride,
    may_step,
    step_budget,
)
from tests import builders

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # any instant
STEP_TAKES = timedelta(seconds=60)
PLAN = PlanRef("plans/2026-11-dev-build.yaml", "b" * 40)
RUN = "2026-11-dev-build.1"


# -- may_step: the one rule a run asks before every driver step ------------------------------


def test_a_step_starts_when_the_lease_covers_it_and_half_the_margin() -> None:
    lease = T0 + STEP_TAKES + LEASE_MARGIN  # as a start record takes it
    decided = may_step(lease, T0, STEP_TAKES)
    assert decided.code == STEP
    assert decided.facts == {"lease_until": lease, "now": T0}
    assert may_step(lease, lease - STEP_TAKES - LEASE_MARGIN / 2, STEP_TAKES).code == STEP


def test_a_lease_that_would_not_keep_its_margin_past_the_step_is_extended_first() -> None:
    lease = T0 + STEP_TAKES + LEASE_MARGIN
    later = lease - STEP_TAKES - LEASE_MARGIN / 2 + timedelta(seconds=1)
    decided = may_step(lease, later, STEP_TAKES)
    assert decided.code == EXTEND
    assert decided.text == f"its lease ends at {lease.isoformat()}: extend it first"


def test_a_lease_not_extended_still_lets_a_step_start_that_ends_inside_it() -> None:
    # The heartbeat lost its races: the lease it has decides.
    lease = T0 + STEP_TAKES + timedelta(seconds=10)
    assert may_step(lease, T0, STEP_TAKES, extended=True).code == STEP
    short = may_step(lease, T0 + timedelta(seconds=11), STEP_TAKES, extended=True)
    assert short.code == "lease.short"
    assert "before the step could end (it may take 60 s), and could not be extended" in short.text


@pytest.mark.parametrize("extended", [False, True])
def test_a_step_never_starts_at_or_after_the_leases_deadline(extended: bool) -> None:
    lease = T0
    for now in (T0, T0 + timedelta(microseconds=1), T0 + timedelta(hours=1)):
        decided = may_step(lease, now, STEP_TAKES, extended=extended)
        assert decided.code == "lease.passed"
        assert decided.text == f"its lease passed at {lease.isoformat()} (it is {now.isoformat()})"


def test_a_run_main_records_ended_takes_no_step_however_long_its_lease() -> None:
    decided = may_step(T0 + timedelta(days=1), T0, STEP_TAKES, ended="interrupted in 0123456789ab")
    assert decided.code == "lease.lost"
    assert decided.text == "main records the run ended (interrupted in 0123456789ab)"


def test_a_lease_covers_one_step_every_attempt_and_backoff_and_the_margin() -> None:
    environment = replace(
        builders.environment("development"), driver=DriverSpec("local", timeout=100, retries=2)
    )
    assert step_budget(environment) == timedelta(seconds=300 + 1 + 2)
    assert lease_for(environment, 1) == step_budget(environment) + LEASE_MARGIN


# -- heartbeats and late records, as the judge counts them -----------------------------------


def record(result: str, commit: str, at: datetime, **more: object) -> Record:
    values: dict[str, object] = {
        "commit": commit * 40,
        "seq": 1,
        "result": result,
        "run": RUN,
        "plan": PLAN,
        "environment": "development",
        "instance": "service",
        "lease_until": None,
        "triggered_by": None,
        "approved_by": (),
        "refused": (),
        "committed_at": at,
    }
    return Record(**{**values, **more})  # type: ignore[arg-type]


START = record("started", "1", T0, lease_until=T0 + timedelta(minutes=3))


def built_on_anything(_: str) -> bool:
    return True


def test_a_heartbeat_before_the_lease_passed_extends_it_and_the_run_keeps_running() -> None:
    beat = record(
        "heartbeat", "2", T0 + timedelta(minutes=2), lease_until=T0 + timedelta(minutes=6)
    )
    assert record_refusal(beat, [START], built_on_anything) is None
    [run] = runs_from([START, beat])
    assert (run.result, run.lease_until, run.finished) == ("started", beat.lease_until, None)


def test_a_heartbeat_counts_only_before_the_lease_it_extends_passed() -> None:
    beat = record(
        "heartbeat", "2", T0 + timedelta(minutes=2), lease_until=T0 + timedelta(minutes=6)
    )
    late = record("heartbeat", "3", T0 + timedelta(minutes=7), lease_until=T0 + timedelta(hours=9))
    assert record_refusal(late, [START, beat], built_on_anything) == (
        f"it was made at {late.committed_at.isoformat()}, after the run's lease passed at "
        f"{beat.lease_until.isoformat() if beat.lease_until else ''}"
    )


def test_a_heartbeat_of_an_ended_or_unstarted_run_or_anothers_run_does_not_count() -> None:
    beat = record("heartbeat", "3", T0 + timedelta(minutes=1), lease_until=T0 + timedelta(hours=1))
    ended = record("interrupted", "2", T0 + timedelta(minutes=1))
    assert record_refusal(beat, [START, ended], built_on_anything) == (
        f"the run already ended in {ended.commit[:12]}"
    )
    assert record_refusal(beat, [], built_on_anything) == "no start record of the run counted"
    other = replace(beat, instance="elsewhere")
    assert record_refusal(other, [START], built_on_anything) == (
        "the run is service's, not elsewhere's: only it extends the lease"
    )
    assert record_refusal(beat, [START], lambda _: False) == (
        f"it is not built on the run's start record {START.commit[:12]}"
    )
    assert record_refusal(replace(beat, lease_until=None), [START], built_on_anything) == (
        "a heartbeat needs Lease-Until"
    )


def test_a_late_record_counts_once_and_only_after_its_run_was_recorded_interrupted() -> None:
    late = record("late", "4", T0 + timedelta(minutes=9))
    interrupted = record("interrupted", "2", T0 + timedelta(minutes=4))
    assert record_refusal(late, [START, interrupted], built_on_anything) is None
    [run] = runs_from([START, interrupted, late])
    assert (run.result, run.finished) == ("interrupted", interrupted.commit)
    succeeded = replace(interrupted, result="succeeded")
    assert record_refusal(late, [START, succeeded], built_on_anything) == (
        "a late record follows only a run recorded interrupted"
    )
    assert record_refusal(late, [START], built_on_anything) == (
        "a late record follows only a run recorded interrupted"
    )
    again = record("late", "5", T0 + timedelta(minutes=10))
    assert record_refusal(again, [START, interrupted, late], built_on_anything) == (
        f"the run's late record is {late.commit[:12]}"
    )
    # A finish record after the late one still does not count: the run ended.
    finish = record("succeeded", "6", T0 + timedelta(minutes=11))
    assert record_refusal(finish, [START, interrupted, late], built_on_anything) == (
        f"the run already ended in {interrupted.commit[:12]}"
    )


# -- late_steps: what a late record writes into deployments/ ---------------------------------


def test_a_late_record_writes_its_steps_but_not_over_a_run_started_after_its_end() -> None:
    deployed_by = {"ecommerce": "earlier.1", "customer-portal": "next.1"}
    deployed = [("ecommerce", "1.4.0"), ("customer-portal", "0.6"), ("search", "3.0")]
    started = {"earlier.1": 3, "next.1": 8}
    late = late_steps(deployed, deployed_by, 5, started)
    assert late == (("ecommerce", "1.4.0"), ("search", "3.0"))
    assert late_steps(deployed, deployed_by, 9, started) == tuple(deployed)


# -- late_message: how a late record reads -----------------------------------------------------


def test_a_late_records_message_says_it_finished_after_its_lease_and_keeps_what_it_did() -> None:
    finish = (
        "Deploy 2026-11-dev-build to development: interrupted\n\n"
        "1. ecommerce 1.4.0: ok (deployed)\n\n"
        "Result: a line of the body, not the trailer\n\n"
        f"Plan: {PLAN}\nEnvironment: development\nResult: interrupted\nRun: {RUN}\n"
    )
    assert late_message(finish) == (
        "Deploy 2026-11-dev-build to development: finished after its lease (interrupted)\n\n"
        "Its lease passed and main records the run interrupted: this record does not end it, "
        "and says what it did.\n\n"
        "1. ecommerce 1.4.0: ok (deployed)\n\n"
        "Result: a line of the body, not the trailer\n\n"
        f"Plan: {PLAN}\nEnvironment: development\nResult: late\nRun: {RUN}\n"
    )
    assert read_trailers(late_message(finish)).counted()["Result"] == ("late",)


# -- may_ride: a finish record and the next start record in one push ---------------------------

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)  # any moment: the rules take the clock as a value


def start_by(
    instance: str | None, environment: str, at: datetime, result: str = "started"
) -> Record:
    return Record(
        commit="1" * 40,
        seq=1,
        result=result,
        run=f"p-{instance}.1",
        plan=PlanRef("plans/p.yaml", "0" * 40),
        environment=environment,
        instance=instance,
        lease_until=None,
        triggered_by="olga",
        approved_by=(),
        refused=(),
        committed_at=at,
    )


def test_an_environment_another_reconciler_started_a_run_in_today_is_contested() -> None:
    records = [
        start_by("other", "development", NOW - timedelta(hours=23)),
        start_by("us", "quality-assurance", NOW - timedelta(minutes=1)),
        start_by("other", "production", NOW - timedelta(days=1, minutes=1)),
        start_by("other", "staging", NOW, result="succeeded"),  # its start shows it, if recent
        start_by(None, "demo", NOW),  # a start record that names no reconciler: another's
    ]
    assert contested(records, "us", NOW) == {"development", "demo"}


def test_a_start_rides_with_a_finish_record_unless_others_take_work_where_it_frees() -> None:
    assert may_ride({"development"}, {"development"}, contested=set())
    assert may_ride({"development"}, {"production"}, contested={"production"})
    assert not may_ride({"development"}, {"development"}, contested={"development"})
    assert not may_ride({"qa", "development"}, {"development"}, contested={"development"})
