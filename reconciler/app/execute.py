"""Stage 5, execute: one plan version's applications through the environment's driver.

Called by `reconcile` once the run's start record is published (the lock).
Applications run in plan order and the run stops at the first failure.
Transient failures are retried with backoff as many times as the
environment's driver allows. A retry of an interrupted run resumes at the
first step the runs of its plan version did not finish (`resumes_at`).
Before each step the run's fence (`Reconciler._fence`, `runs.may_step`) says
whether it still holds its lease: a run that lost it stops, `interrupted`.
With the environment's `verify`, each application deployed is checked
(`Checker.check`) every `interval` until a check passes, for at most `timeout`
(measured on `monotonic`, like every timeout); none passing fails the step,
and the run stops there. A driver without a `check` leaves it not checked.
Every driver line lands in the run's log with a timestamp; the clock and the
sleep are passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from reconciler.adapters.drivers import Checker, Driver, Outcome, Step
from reconciler.core.model import Environment, Plan, Verify

Clock = Callable[[], datetime]
# What a finish record says of each step it ran: whether its check passed.
Verification = Literal["verified", "failed verification", "not checked"]


@dataclass(frozen=True, slots=True)
class StepResult:
    position: int  # 1-based, in plan order
    step: Step
    outcome: Outcome
    attempts: int
    skipped: bool = False  # finished by the run a retry resumes: the driver was not asked
    verification: Verification = "not checked"
    checks: int = 0  # how many times it was checked


@dataclass(frozen=True, slots=True)
class Execution:
    result: Literal["succeeded", "failed", "interrupted"]
    steps: tuple[StepResult, ...]
    log: tuple[str, ...]
    # Why it failed when no step says so (it ended before a driver could run a step).
    reason: str | None = None

    @property
    def failed_step(self) -> StepResult | None:
        return next((result for result in self.steps if not result.outcome.ok), None)

    @property
    def why_failed(self) -> str | None:
        failed = self.failed_step
        return failed.outcome.summary if failed is not None else self.reason

    @property
    def deployed(self) -> tuple[Step, ...]:
        return tuple(
            result.step for result in self.steps if result.outcome.ok and not result.skipped
        )

    @property
    def resumed_at(self) -> StepResult | None:
        """The first step a retry ran, when it skipped the ones before it."""
        if not self.steps or not self.steps[0].skipped:
            return None
        return next((result for result in self.steps if not result.skipped), None)


def steps_for(plan: Plan, environment: Environment, run: str) -> tuple[Step, ...]:
    return tuple(
        Step(
            application=entry.name,
            version=entry.version,
            environment=environment.name,
            plan=plan.name,
            run=run,
            action=entry.action,
            from_version=entry.from_version,
            source=environment.promotes_from,
        )
        for entry in plan.applications
    )


def finished_steps(
    steps: tuple[Step, ...], running: Mapping[str, Any], runs: Collection[str]
) -> tuple[str, ...]:
    """What a retry of an interrupted run skips: the steps up to the first one that `runs`
    (the runs of the same plan version) did not finish; for each, the run that did.

    A step is finished when `running` (deployments/<env>.yaml's applications, which only
    the finish records that count write) has its application at its version from one of
    `runs`. Drivers are idempotent per version, so a step that a run finished without
    recording it (the run died) is simply run again.
    """
    finished: list[str] = []
    for step in steps:
        entry = running.get(step.application)
        if not isinstance(entry, Mapping) or entry.get("version") != step.version:
            break
        if entry.get("run") not in runs:
            break
        finished.append(str(entry["run"]))
    return tuple(finished)


def execute(
    steps: tuple[Step, ...],
    driver: Driver,
    *,
    retries: int,
    clock: Clock,
    sleep: Callable[[float], None],
    stop_requested: Callable[[], bool] = lambda: False,
    on_step: Callable[[int, int, Step], None] | None = None,
    finished: tuple[str, ...] = (),
    fence: Callable[[Step], Step | str] | None = None,
    timed: Callable[[float], None] | None = None,
    verify: Verify | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Execution:
    """Run `steps` in order; the first ones, which the runs `finished` names deployed (a
    retry resuming), are listed as skipped. `fence`: asked before each step, the step
    as the driver gets it (its lease), or why the run may not take it. `timed`: told how
    long each attempt of the driver took (seconds). `verify`: how each step deployed is
    checked (`check`)."""
    log: list[str] = []

    def note(line: str) -> None:
        log.append(f"{clock().strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z {line}")

    results: list[StepResult] = []
    for position, (step, run) in enumerate(zip(steps, finished, strict=False), start=1):
        done = f"deployed by run {run}"
        note(f"[{position}/{len(steps)} {step.application} {step.version}] skipped: {done}")
        results.append(StepResult(position, step, Outcome.success(done), 0, skipped=True))
    for position, planned in enumerate(steps[len(finished) :], start=len(finished) + 1):
        what = f"step {position} ({planned.application} {planned.version})"
        if stop_requested():
            note(f"stopped before {what}: shutting down")
            return Execution("interrupted", tuple(results), tuple(log))
        label = f"[{position}/{len(steps)} {planned.application} {planned.version}]"
        taken = planned if fence is None else fence(planned)
        if isinstance(taken, str):
            note(f"stopped before {what}: {taken}")
            return Execution("interrupted", tuple(results), tuple(log), reason=taken)
        step = taken
        if on_step is not None:
            on_step(position, len(steps), step)

        def driver_line(line: str, label: str = label) -> None:
            note(f"{label} {line}")

        attempt = 0
        while True:
            attempt += 1
            note(f"{label} deploying to {step.environment} (attempt {attempt})")
            began = monotonic()
            outcome = driver.deploy(step, driver_line)
            if timed is not None:
                timed(monotonic() - began)
            note(f"{label} {'ok' if outcome.ok else 'FAILED'}: {outcome.summary}")
            if outcome.ok or not outcome.transient or attempt > retries or stop_requested():
                break
            delay = min(2 ** (attempt - 1), 60)
            note(f"{label} transient failure; retrying in {delay} s")
            sleep(delay)
        result = StepResult(position, step, outcome, attempt)
        if outcome.ok and verify is not None:
            checked = check(
                step, outcome, driver, verify, label, note, sleep, monotonic, stop_requested
            )
            if checked is None:
                why = "the reconciler is shutting down; a retry deploys and checks it again"
                note(f"stopped while checking {what}: {why}")
                return Execution("interrupted", tuple(results), tuple(log), reason=why)
            result = replace(result, outcome=checked[0], verification=checked[1], checks=checked[2])
            outcome = result.outcome
        results.append(result)
        if not outcome.ok:
            note(f"run stopped at step {position}: {step.application} {step.version} failed")
            return Execution("failed", tuple(results), tuple(log))
    note("run succeeded")
    return Execution("succeeded", tuple(results), tuple(log))


def check(
    step: Step,
    deployed: Outcome,
    driver: Driver,
    verify: Verify,
    label: str,
    note: Callable[[str], None],
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
    stop_requested: Callable[[], bool],
) -> tuple[Outcome, Verification, int] | None:
    """Check a `step` the driver `deployed` until a check passes or `verify.timeout` passes, a
    check every `verify.interval`: the step's outcome, what the record says of it and how
    many checks it took; None when the reconciler is asked to stop meanwhile.

    Every failed check is tried again: an application that is starting fails its
    first checks. No check runs past the timeout (each gets what is left of it), so
    the run's lease, which counts the timeout in each step (`runs.step_budget`), holds.
    """
    if not isinstance(driver, Checker):
        note(f"{label} not checked: the driver has no check")
        return deployed, "not checked", 0
    deadline = monotonic() + verify.timeout.total_seconds()
    interval = verify.interval.total_seconds()
    checks = 0

    def driver_line(line: str) -> None:
        note(f"{label} {line}")

    while True:
        checks += 1
        started = monotonic()
        note(f"{label} checking (check {checks})")
        outcome = driver.check(step, driver_line, max(deadline - started, 0.0))
        note(f"{label} check {'passed' if outcome.ok else 'failed'}: {outcome.summary}")
        if outcome.ok:
            return deployed, "verified", checks
        if max(started + interval, monotonic()) >= deadline:
            break  # no time left for another check
        sleep(max(started + interval - monotonic(), 0.0))
        if stop_requested():
            return None
    seconds = verify.timeout.total_seconds()
    why = (
        f"failed verification: no check passed in {seconds:g} s ({checks} "
        f"{'check' if checks == 1 else 'checks'}; the last: {outcome.summary})"
    )
    return Outcome.failure(why, outcome.lines), "failed verification", checks
