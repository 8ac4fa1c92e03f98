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
from datetime import datetime
from typing import Any, Literal

from msgspec import Struct
from msgspec.structs import replace

from reconciler.adapters.drivers import Checker, Driver, Outcome, Step
from reconciler.core.model import Environment, Plan, Verify

Clock = Callable[[], datetime]
# What a finish record says of each step it ran: whether its check passed.
Verification = Literal["verified", "failed verification", "not checked"]


class StepResult(Struct, frozen=True):
    position: int  # 1-based, in plan order
    step: Step
    outcome: Outcome
    attempts: int
    skipped: bool = False  # finished by the run a retry resumes: the driver was not asked
    verification: Verification = "not checked"
    checks: int = 0  # how many times it was checked


class Undo(Struct, frozen=True):
    """What a rollback did of one step the failed run took (`rollback`)."""

    step: StepResult  # the step taken, whose version is undone
    to: str | None  # the version that ran there before the run; None: none did
    redeploy: StepResult | None = None  # the redeploy of `to`, checked; None: not tried
    why: str | None = None  # why it was not tried

    @property
    def switched(self) -> bool:
        """The driver put `to` back (its check may have failed since)."""
        redeploy = self.redeploy
        return redeploy is not None and (
            redeploy.outcome.ok or redeploy.verification == "failed verification"
        )


class Execution(Struct, frozen=True):
    result: Literal["succeeded", "failed", "interrupted"]
    steps: tuple[StepResult, ...]
    log: tuple[str, ...]
    # Why it failed when no step says so (it ended before a driver could run a step).
    reason: str | None = None
    # With `on_failure: rollback`, a failed run's steps undone, in the order undone.
    rollback: tuple[Undo, ...] = ()
    planned: tuple[Step, ...] = ()  # every step of the plan, taken or not

    @property
    def failed_step(self) -> StepResult | None:
        return next((result for result in self.steps if not result.outcome.ok), None)

    @property
    def why_failed(self) -> str | None:
        failed = self.failed_step
        return failed.outcome.summary if failed is not None else self.reason

    @property
    def deployed(self) -> tuple[Step, ...]:
        """What the run leaves running, in the order deployments/ takes it: the steps it
        deployed, then what a rollback put back over them."""
        forward = tuple(
            result.step for result in self.steps if result.outcome.ok and not result.skipped
        )
        return forward + tuple(
            undo.redeploy.step for undo in self.rollback if undo.redeploy and undo.switched
        )

    @property
    def half_deployed(self) -> tuple[str, ...]:
        """What a failed run leaves of its plan, a line per application no rollback put back:
        the versions it deployed, the step that failed, the steps it never started."""
        if self.result != "failed" or not self.steps:
            return ()
        undone = {undo.step.step.application for undo in self.rollback if undo.switched}
        lines: list[str] = []
        for result in self.steps:
            name = f"{result.step.application} {result.step.version}"
            if result.skipped or result.step.application in undone:
                continue
            if result.outcome.ok:
                lines.append(f"{name} runs: this run deployed it")
            elif result.verification == "failed verification":
                lines.append(f"{name} runs: it failed verification")
            else:
                lines.append(f"{name} failed: it runs whatever the failed step left")
        taken = len(self.steps)
        lines.extend(
            f"{step.application} {step.version} not started" for step in self.planned[taken:]
        )
        return tuple(lines)

    @property
    def resumed_at(self) -> StepResult | None:
        """The first step a retry ran, when it skipped the ones before it."""
        if not self.steps or not self.steps[0].skipped:
            return None
        return next((result for result in self.steps if not result.skipped), None)


def steps_for(
    plan: Plan, environment: Environment, run: str, running: Mapping[str, str] | None = None
) -> tuple[Step, ...]:
    """The steps of `plan`'s run. A rollback plan's go back to a release that ran here
    (`rollback`, from what runs now, `running`), as `on_failure: rollback` does: the
    driver switches back to it and never makes it anew from the source environment."""
    return tuple(
        Step(
            application=entry.name,
            version=entry.version,
            environment=environment.name,
            plan=plan.name,
            run=run,
            action="rollback" if plan.rollback else entry.action,
            from_version=(running or {}).get(entry.name) if plan.rollback else entry.from_version,
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
    on_failure: Literal["stop", "rollback"] = "stop",
    previous: Mapping[str, str] | None = None,
) -> Execution:
    """Run `steps` in order; the first ones, which the runs `finished` names deployed (a
    retry resuming), are listed as skipped. `fence`: asked before each step, the step
    as the driver gets it (its lease), or why the run may not take it. `timed`: told how
    long each attempt of the driver took (seconds). `verify`: how each step deployed is
    checked (`check`). `on_failure`: "rollback" undoes a failed run's steps (`rollback`),
    back to the versions `previous` names (application -> what ran before the run)."""
    log: list[str] = []

    def note(line: str) -> None:
        log.append(f"{clock().strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z {line}")

    def take(position: int, step: Step, label: str) -> StepResult | None:
        """Deploy `step` (retrying transient failures) and check it; None when the reconciler
        is asked to stop while checking it."""

        def driver_line(line: str) -> None:
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
                return None
            result = replace(result, outcome=checked[0], verification=checked[1], checks=checked[2])
        return result

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
        result = take(position, step, label)
        if result is None:
            why = "the reconciler is shutting down; a retry deploys and checks it again"
            note(f"stopped while checking {what}: {why}")
            return Execution("interrupted", tuple(results), tuple(log), reason=why)
        results.append(result)
        if not result.outcome.ok:
            note(f"run stopped at step {position}: {step.application} {step.version} failed")
            undone: tuple[Undo, ...] = ()
            if on_failure == "rollback":
                undone = rollback(tuple(results), previous or {}, take, note, fence, stop_requested)
            return Execution("failed", tuple(results), tuple(log), rollback=undone, planned=steps)
    note("run succeeded")
    return Execution("succeeded", tuple(results), tuple(log))


def rollback(
    results: tuple[StepResult, ...],
    previous: Mapping[str, str],
    take: Callable[[int, Step, str], StepResult | None],
    note: Callable[[str], None],
    fence: Callable[[Step], Step | str] | None,
    stop_requested: Callable[[], bool],
) -> tuple[Undo, ...]:
    """Undo the steps a failed run took (`results`, the failed one last), in reverse order:
    each application back to the version that ran there before the run (`previous`, from
    deployments/<env>.yaml as the run found it), deployed (`take`) and checked like a
    step, each redeploy only under the run's lease (`fence`).

    A step whose application ran nowhere before, or ran that very version, has nothing to
    undo; a step a retry skipped was taken by an earlier run, and is left. A rollback that
    must stop (its lease, a shutdown) says, for each step left, why it was not undone.
    """
    taken = [result for result in results if not result.skipped]
    undone: list[Undo] = []
    stopped: str | None = None
    for count, result in enumerate(reversed(taken), start=1):
        step = result.step
        to = previous.get(step.application)
        if stopped is not None:
            undone.append(Undo(result, to, why=stopped))
            continue
        if to is None or to == step.version:
            why = (
                f"nothing ran in {step.environment} before this run"
                if to is None
                else f"{to} ran there before this run too"
            )
            note(f"[rollback {step.application}] nothing to roll back: {why}")
            undone.append(Undo(result, to, why=why))
            continue
        label = f"[rollback {count}/{len(taken)} {step.application} {to}]"
        planned = replace(step, version=to, action="rollback", from_version=step.version)
        if stop_requested():
            stopped = "the reconciler is shutting down"
        else:
            fenced = planned if fence is None else fence(planned)
            stopped = fenced if isinstance(fenced, str) else None
        if stopped is not None:
            note(f"rollback stopped before {step.application} {to}: {stopped}")
            undone.append(Undo(result, to, why=stopped))
            continue
        assert not isinstance(fenced, str)
        note(f"{label} rolling back {step.application} {step.version} to {to}")
        redeploy = take(result.position, fenced, label)
        if redeploy is None:
            stopped = "the reconciler is shutting down"
            note(f"rollback stopped while checking {step.application} {to}: {stopped}")
            undone.append(Undo(result, to, why=stopped))
            continue
        undone.append(Undo(result, to, redeploy))
    return tuple(undone)


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
