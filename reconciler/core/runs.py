"""Stage 4, decide: what a reconciler does now with `decide`'s decisions.

`decide_runs` turns the decisions into the runs a reconciler starts (run id,
lease), marks interrupted and records refused, and the plans it holds for a
driver that cannot load; `reconcile` only carries that out. Every reason is a
`Reason` value (code, text, facts).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Final

from msgspec import Struct, field
from msgspec.structs import replace

from reconciler.core.decide import Decision, next_up, ordered, promoted
from reconciler.core.decide_values import History, Run, Wait
from reconciler.core.errors import ConfigError
from reconciler.core.events import PlanRef, Record
from reconciler.core.model import Environment, Policy
from reconciler.core.reasons import Reason, reason

# The margin a run's lease adds to what its next driver step may take at most: time to
# record the finish after the last step, or to extend the lease before the next one.
LEASE_MARGIN: Final = timedelta(minutes=2)
# How recent another reconciler's run in an environment shows that it takes work there.
SHARED_WITHIN: Final = timedelta(days=1)
# How many of main's last records show it (`contested`): a day of them where work is shared.
RECENT_RECORDS: Final = 1000
# What `may_step` answers: the step may start; the lease is to be extended first.
STEP: Final = "lease.held"
EXTEND: Final = "lease.expiring"


class RunFacts(Struct, frozen=True):
    """What the reconciler deciding knows beyond the history, as values."""

    instance: str  # its name, as its start records carry it
    in_flight: frozenset[str] = frozenset()  # runs it is running now
    unpublished: frozenset[str] = frozenset()  # runs whose finish record waits in its outbox
    recorded: frozenset[PlanRef] = frozenset()  # versions it recorded refused already
    drivers: Mapping[str, ConfigError] = field(default_factory=dict)  # cannot load, by env
    stopping: bool = False  # asked to stop: it starts nothing more
    shard: frozenset[str] | None = None  # the environments it may start runs in; None: any


class Start(Struct, frozen=True):
    """A run to start: its start record is the lock on its environment."""

    decision: Decision
    run_id: str
    environment: str
    lease_until: datetime  # past it, any reconciler may mark the run interrupted (`may_step`)


class Interruption(Struct, frozen=True):
    """A run started and never finished, to be recorded interrupted, and why."""

    run: Run
    reason: Reason


class RunDecisions(Struct, frozen=True):
    """Everything a reconcile round does, decided: the reconciler only executes it."""

    decisions: tuple[Decision, ...]  # every plan, those held for their driver waiting
    starts: tuple[Start, ...]
    interrupted: tuple[Interruption, ...]
    refused: tuple[Decision, ...]  # refusals no record names yet
    held: Mapping[str, ConfigError]  # environments whose driver cannot load here, and why

    @property
    def bookkeeping(self) -> bool:
        """Records to publish before anything starts."""
        return bool(self.interrupted or self.refused)


def decide_runs(
    history: History, decisions: tuple[Decision, ...], now: datetime, facts: RunFacts
) -> RunDecisions:
    """What a reconciler does with `decisions` (`decide(history, ...)`) at `now`.

    Bookkeeping comes first: runs never finished are marked interrupted and new
    refusals recorded, and nothing starts in that round; the next round decides
    again on the history those records make. Otherwise, per environment without a
    run in progress, the first executable plan starts, with the next run id of its
    plan and a lease long enough for its steps.
    """
    decisions, held = hold(decisions, facts.drivers)
    interrupted = _interrupted(history, now, facts)
    refused = tuple(
        decision
        for decision in decisions
        if decision.status == "refused"
        and decision.ref not in history.refused
        and decision.ref not in facts.recorded
    )
    starts: tuple[Start, ...] = ()
    if not (interrupted or refused or facts.stopping):
        starts = _starts(history, decisions, now, facts.shard)
    return RunDecisions(decisions, starts, interrupted, refused, held)


def _interrupted(history: History, now: datetime, facts: RunFacts) -> tuple[Interruption, ...]:
    """The started runs this reconciler is not running, nor finished, that are to be marked
    interrupted (`interruption`)."""
    return tuple(
        Interruption(run, why)
        for run in history.runs
        if run.result == "started"
        and run.id not in facts.in_flight
        and run.id not in facts.unpublished
        and (why := interruption(run, facts.instance, now)) is not None
    )


def interruption(run: Run, instance: str, now: datetime) -> Reason | None:
    """Why a started run is to be recorded interrupted by the reconciler `instance` (which
    is not running it) at `now`, or None: it started it, or the run's lease passed."""
    if run.instance == instance:
        return reason(
            "run.abandoned",
            f"run {run.id} was started by this reconciler ({instance}), which is not "
            "running it any more (it stopped or restarted before recording the end)",
            run=run.id,
            instance=instance,
        )
    if run.lease_until is not None and now > run.lease_until:
        return reason(
            "run.lease-passed",
            f"run {run.id} was started by {run.instance}, whose lease passed at "
            f"{run.lease_until.isoformat()} without a finish record",
            run=run.id,
            instance=run.instance,
            lease_until=run.lease_until,
        )
    return None


def _starts(
    history: History, decisions: tuple[Decision, ...], now: datetime, shard: frozenset[str] | None
) -> tuple[Start, ...]:
    """The first executable plan of each environment of the shard that no run holds, with its
    run id and lease (for its first step: a heartbeat extends it before a later one,
    `may_step`)."""
    busy = {run.environment for run in history.runs if run.result == "started"}
    taken = [run.id for run in history.runs]
    starts = []
    for name, decision in next_up(decisions).items():
        if name in busy or not in_shard(name, shard):
            continue
        assert decision.plan is not None
        run_id = next_run_id(decision.plan.name, taken)
        taken.append(run_id)
        environment = history.policy.environments[name]
        lease = now + lease_for(environment, 1)
        starts.append(Start(decision, run_id, name, lease))
    return tuple(starts)


def in_shard(environment: str | None, shard: frozenset[str] | None) -> bool:
    """Whether a reconciler sharded to `shard` (`--environments`; None: not sharded) may
    start runs in `environment`.

    Only starting is sharded: every reconciler verifies all of main, records
    refusals, and marks interrupted any run whose lease passed (`interruption`),
    whatever its environment. Those records say what already happened, need no
    driver, and keep `status` true while the shard that owns the environment is
    down; fencing keeps a run whose lease passed from taking another step.
    """
    return shard is None or environment in shard


def unknown_environments(shard: Collection[str], known: Collection[str]) -> list[str]:
    """The names of a shard that no environment file defines, sorted."""
    return sorted(set(shard) - set(known))


def may_ride(starting: Collection[str], freed: Collection[str], contested: Collection[str]) -> bool:
    """Whether start records in the environments `starting` may go out in one push with
    finish records that free the environments `freed`: unless one starts in such an
    environment that other reconcilers take work in (`contested`).

    In one push, the reconciler that finished a run takes its environment's next
    run before any other could see the environment free, and would start every
    run there (a 10/0/0 split). Alone, the finish record shows the environment
    free, and whoever publishes a start record first starts it; but that costs a
    push a run, which a reconciler alone in an environment need not pay.
    """
    return not any(name in freed and name in contested for name in starting)


def contested(records: Iterable[Record], instance: str, now: datetime) -> frozenset[str]:
    """The environments where a reconciler other than `instance` started a run in the last
    `SHARED_WITHIN`, as its start records on main say (`records`: recent ones, of any
    plan, on main or removed since): others take work there (`may_ride`). A start record
    that names no reconciler counts as another's."""
    return frozenset(
        record.environment
        for record in records
        if record.result == "started"
        and record.environment is not None
        and record.instance != instance
        and now - record.committed_at < SHARED_WITHIN
    )


def next_run_id(plan: str, taken: Collection[str]) -> str:
    """The plan's next run id: one more than the highest `<plan>.<n>` taken."""
    numbers = [
        int(run.rsplit(".", 1)[1])
        for run in taken
        if run.rsplit(".", 1)[0] == plan and run.rsplit(".", 1)[1].isdigit()
    ]
    return f"{plan}.{max(numbers, default=0) + 1}"


def lease_for(environment: Environment, steps: int) -> timedelta:
    """How long `steps` of a run may take at most, and the margin to record its end."""
    return steps * step_budget(environment) + LEASE_MARGIN


def step_budget(environment: Environment) -> timedelta:
    """How long one driver step may take at most: every attempt timing out, the backoffs
    between attempts, and with `verify` the checks after it (which stop at its timeout)."""
    driver = environment.driver
    attempts = driver.retries + 1
    backoff = sum(min(2**attempt, 60) for attempt in range(driver.retries))
    checks = environment.verify.timeout if environment.verify is not None else timedelta()
    return timedelta(seconds=driver.timeout * attempts + backoff) + checks


def may_step(
    lease_until: datetime,
    now: datetime,
    budget: timedelta,
    *,
    ended: str | None = None,
    extended: bool = False,
) -> Reason:
    """Whether a run holding its lease until `lease_until` may start a driver step that may
    take `budget` (`step_budget`) at `now`: `STEP`, `EXTEND` (a heartbeat first), or why
    it stops.

    A step starts only when it can end inside the lease, and never once main records
    the run ended (`ended`: that record); past its lease any reconciler may mark the run
    interrupted and start the next one there. Less than half the margin left after the
    step asks for a heartbeat first (`extended`: it was asked for, and this is the lease
    it left), so a long run keeps its lease and a paused one loses it.
    """
    facts = {"lease_until": lease_until, "now": now}
    if ended is not None:
        return reason("lease.lost", f"main records the run ended ({ended})", **facts)
    if now >= lease_until:
        return reason(
            "lease.passed",
            f"its lease passed at {lease_until.isoformat()} (it is {now.isoformat()})",
            **facts,
        )
    if now + budget > lease_until and extended:
        return reason(
            "lease.short",
            f"its lease ends at {lease_until.isoformat()}, before the step could end "
            f"(it may take {budget.total_seconds():g} s), and could not be extended",
            **facts,
        )
    if now + budget + LEASE_MARGIN / 2 > lease_until and not extended:
        return reason(
            EXTEND, f"its lease ends at {lease_until.isoformat()}: extend it first", **facts
        )
    return reason(STEP, f"it holds its lease until {lease_until.isoformat()}", **facts)


def late_steps(
    deployed: Iterable[tuple[str, str]],
    deployed_by: Mapping[str, str],
    ended_seq: int,
    started_seq: Mapping[str, int],
) -> tuple[tuple[str, str], ...]:
    """What a run that finished after main recorded it ended (at landing `ended_seq`) writes
    into deployments/: the steps it deployed, but for an application a run started after
    that end deployed since (`deployed_by`: the run deployments/ names for each application;
    `started_seq`: the landing of each run's start record). That run started after the
    step, so runs later.
    """
    return tuple(
        (application, version)
        for application, version in deployed
        if started_seq.get(deployed_by.get(application, ""), 0) <= ended_seq
    )


class Dependents(Struct, frozen=True):
    """Which plan versions a run's records can change the decision of, looked up by where
    it deployed what (`dependents`, built once for many rounds: a plan version's content
    never changes)."""

    # environment -> its rollback plans (what ran there is what they may go back to)
    rollbacks: Mapping[str, tuple[PlanRef, ...]]
    # (environment, application, version) -> the plans into it whose promotion needs that
    # version running in its source (`decide.promoted`)
    needing: Mapping[tuple[str, str, str], tuple[PlanRef, ...]]


def dependents(decisions: Iterable[Decision]) -> Dependents:
    """The plans of `decisions` that records of runs elsewhere can change (`touched_by`)."""
    rollbacks: dict[str, list[PlanRef]] = {}
    needing: dict[tuple[str, str, str], list[PlanRef]] = {}
    for decision in decisions:
        plan = decision.plan
        if plan is None:
            continue
        if plan.rollback:
            rollbacks.setdefault(plan.target, []).append(decision.ref)
        for entry in plan.applications:
            version = promoted(entry)
            if version is not None:
                needing.setdefault((plan.target, entry.name, version), []).append(decision.ref)
    return Dependents(
        {name: tuple(refs) for name, refs in rollbacks.items()},
        {key: tuple(refs) for key, refs in needing.items()},
    )


def touched_by(
    policy: Policy,
    plans: Dependents,
    ran: Collection[PlanRef],
    deployed: Mapping[str, Mapping[str, str]],
    before: Mapping[str, Mapping[str, str]],
) -> frozenset[PlanRef]:
    """The plan versions whose decision a reconciler's own start and finish records can
    change: those of the plans whose runs they record (`ran`); and, where the runs
    deployed (`deployed`: environment -> application -> version; `before`: what ran
    there until then), its rollback plans, and the plans of the environment promoting
    from it that need a version deployed there, or one that ran there until then (their
    promotion and soak).

    Nothing else a decision reads is in those records: the plans, sign-offs, locks
    and the policy change only by people's commits, after which everything is decided
    again; the clock is the caller's to watch (docs/design.md, "Records and runs").
    """
    touched = set(ran)
    for name in deployed:
        touched.update(plans.rollbacks.get(name, ()))
    for name, environment in policy.environments.items():
        source = environment.promotes_from
        if source is None or source not in deployed:
            continue
        for application, version in deployed[source].items():
            for needed in (version, before.get(source, {}).get(application)):
                if needed is not None:
                    touched.update(plans.needing.get((name, application, needed), ()))
    return frozenset(touched)


def driver_targets(decisions: Iterable[Decision]) -> list[str]:
    """The environments whose driver must load for the executable plans to run."""
    return sorted(
        {
            decision.environment
            for decision in decisions
            if decision.status == "executable" and decision.environment is not None
        }
    )


def hold(
    decisions: tuple[Decision, ...], problems: Mapping[str, ConfigError]
) -> tuple[tuple[Decision, ...], dict[str, ConfigError]]:
    """Executable plans into an environment whose driver cannot load here (`problems`, by
    environment) wait for it; and why, per environment with such a plan.

    They wait rather than being refused, as Argo CD and Flux users expect of an
    operator's setup problem (an application whose tooling is missing stays out
    of sync with its error shown and is tried again): the plan is not at fault,
    and installing the driver lets the same plan version run, with no new one.
    """
    if not problems:
        return decisions, {}  # `decide`'s order, kept
    targets = set(driver_targets(decisions))
    held = []
    for decision in decisions:
        problem = problems.get(decision.environment or "")
        if decision.status == "executable" and problem is not None:
            wait = Wait(
                "driver",
                reason(
                    "driver.unavailable",
                    f"its environment's driver cannot be loaded: {problem}",
                    environment=decision.environment,
                ),
            )
            held.append(replace(decision, status="waiting", why=(wait.reason,), waits=(wait,)))
        else:
            held.append(decision)
    why = {name: problem for name, problem in problems.items() if name in targets}
    return ordered(held), why
