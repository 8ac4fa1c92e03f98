"""Stage 4, decide: which plan versions may run now, and why the others may not.

`gather` reads what authorisation left in the state store and what main's tip
holds (an edge); `decide` is pure: given that `History` and the clock, every
plan on main is exactly one of

- executable: it may run now (and in which order per environment);
- waiting: for a state, approvals (how many, by which role), a trigger (by
  whom), a deploy window (until when), a promotion, a retry;
- refused: it can never run as it is (invalid, unauthorised content,
  inconsistent with the environments);
- done: it ran (which run, with what result);
- cancelled.

It is the single source of truth for `plan`, `apply` and `deploy`'s up-front
checks (docs/design.md, "From plan to deployment", points 1 to 5);
`runs.decide_runs` turns the decisions into what a reconciler does now. Every
reason is a `Reason` value (code, text, facts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from msgspec import Struct
from msgspec.structs import replace

from reconciler.core import approvals, gates, signoffs
from reconciler.core.config import build_plan
from reconciler.core.decide_values import (
    OUTCOMES,
    History,
    Landed,
    OnMain,
    Run,
    SignoffVerdict,
    Wait,
)
from reconciler.core.events import PlanRef, Record, Signoff
from reconciler.core.fields import INVALID, describe_field, plan_data
from reconciler.core.gates import Horizon
from reconciler.core.layout import place
from reconciler.core.model import Environment, Plan, PlanEntry, Policy
from reconciler.core.permissions import PLAN_DEPLOY, holders
from reconciler.core.reasons import Reason, reason
from reconciler.core.rules import not_a_trigger
from reconciler.core.verdicts import Refusal, group_refusals

Status = Literal["executable", "waiting", "refused", "done", "cancelled"]


# Refusals not worth a note: a second approval by someone whose first one counts.
_UNSAID: Final = frozenset({approvals.REPEATED})


class Decision(Struct, frozen=True):
    path: str
    blob: str
    plan: Plan | None
    status: Status
    why: tuple[Reason, ...]
    waits: tuple[Wait, ...] = ()
    approvers: tuple[str, ...] = ()
    triggered_by: str | None = None
    trigger_seq: int = 0
    run: Run | None = None
    retry_of: str | None = None
    verdicts: tuple[SignoffVerdict, ...] = ()

    @property
    def ref(self) -> PlanRef:
        return PlanRef(self.path, self.blob)

    @property
    def environment(self) -> str | None:
        return self.plan.target if self.plan else None

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it has its status, as people read it."""
        return tuple(item.text for item in self.why)

    @property
    def notes(self) -> tuple[str, ...]:
        """The sign-offs that do not count, and why."""
        return tuple(
            verdict.note
            for verdict in self.verdicts
            if verdict.refused is not None and verdict.refused.code not in _UNSAID
        )


def decide(history: History, now: datetime, horizon: Horizon | None = None) -> tuple[Decision, ...]:
    """Every plan on main, decided; executable ones first, in the order they will run.

    `horizon` (of `now`) learns from each rule that reads the clock until when these
    decisions hold with time alone (the policy's own moment included: a key's expiry)."""
    if horizon is not None:
        horizon.at(history.policy.keys_change)
    runs: dict[PlanRef, list[Run]] = {}
    for run in history.runs:
        runs.setdefault(run.plan, []).append(run)
    signoffs: dict[PlanRef | str, list[Signoff]] = {}
    for signoff in history.signoffs:
        key: PlanRef | str | None = signoff.plan if signoff.plan is not None else signoff.run
        if key is not None:
            signoffs.setdefault(key, []).append(signoff)
    decisions = []
    for on_main in history.plans:
        ref = PlanRef(on_main.path, on_main.blob)
        own_runs = runs.get(ref, [])
        relevant = [
            *signoffs.get(ref, ()),
            *(signoff for run in own_runs for signoff in signoffs.get(run.id, ())),
        ]
        # Each plan is decided on its own runs and sign-offs: linear in history, not quadratic.
        narrowed = replace(history, runs=tuple(own_runs), signoffs=tuple(relevant))
        decisions.append(_decide_one(narrowed, on_main, now, horizon))
    return ordered(decisions)


def ordered(decisions: Iterable[Decision]) -> tuple[Decision, ...]:
    """Decisions in the order `decide` returns them: executable first, in running order."""
    order = {"executable": 0, "waiting": 1, "refused": 2, "done": 3, "cancelled": 4}
    return tuple(
        sorted(decisions, key=lambda item: (order[item.status], item.trigger_seq, item.path))
    )


def executable(decisions: Iterable[Decision]) -> dict[str, list[Decision]]:
    """Executable decisions by target environment, in the order they will run."""
    queues: dict[str, list[Decision]] = {}
    for decision in decisions:
        if decision.status == "executable" and decision.plan is not None:
            queues.setdefault(decision.plan.target, []).append(decision)
    for queue in queues.values():
        queue.sort(key=_running_order)
    return queues


def next_up(decisions: Iterable[Decision]) -> dict[str, Decision]:
    """The first of each environment's `executable` queue, without sorting the queues: what
    starts next there (a service asks it every round, of every plan)."""
    first: dict[str, Decision] = {}
    for decision in decisions:
        if decision.status == "executable" and decision.plan is not None:
            head = first.get(decision.plan.target)
            if head is None or _running_order(decision) < _running_order(head):
                first[decision.plan.target] = decision
    return first


def _running_order(decision: Decision) -> tuple[int, str]:
    """Where an executable decision runs in its environment's queue."""
    return (decision.trigger_seq, decision.path)


# -- one plan version ---------------------------------------------------------------


def _decide_one(
    history: History, on_main: OnMain, now: datetime, horizon: Horizon | None = None
) -> Decision:
    path, blob = on_main.path, on_main.blob
    if on_main.data is None or on_main.problems:
        problems = on_main.problems or ("invalid plan",)
        why = tuple(reason("plan.not-effective", text) for text in problems)
        return Decision(path, blob, None, "refused", why)
    plan = build_plan(on_main.data)
    ref = PlanRef(path, blob)
    runs = [run for run in history.runs if run.plan == ref]
    settled = _settled(history, ref, plan, runs)
    if settled is not None:
        return settled
    return _in_play(history, ref, plan, runs[-1] if runs else None, now, horizon)


def _settled(history: History, ref: PlanRef, plan: Plan, runs: Sequence[Run]) -> Decision | None:
    """The decision on a version that cannot, need not or may not yet be run; None when it is
    in play (it landed, is ready and has no run but an interrupted one)."""
    path, blob = ref.path, ref.blob
    refused = _consistency(history.policy, plan)
    if refused:
        return Decision(path, blob, plan, "refused", refused)
    if plan.state == "cancelled":
        cancelled = reason("plan.cancelled", "cancelled by a plan.deploy holder")
        return Decision(path, blob, plan, "cancelled", (cancelled,))
    latest = runs[-1] if runs else None
    if latest is not None and latest.result != "interrupted":
        return Decision(
            path,
            blob,
            plan,
            "done",
            (reason("run.outcome", run_outcome(latest), run=latest.id, result=latest.result),),
            run=latest,
            verdicts=signoffs.ignored_retries(history, runs),
        )
    # Once it ran, a rollback is judged by its run: what ran there since changes nothing.
    never_ran = _never_ran(history, plan)
    if never_ran:
        return Decision(path, blob, plan, "refused", never_ran)
    if plan.state == "draft":
        draft = reason("plan.draft", "saved as a draft: set state: ready to propose it")
        wait = Wait("state", draft)
        return Decision(path, blob, plan, "waiting", (wait.reason,), (wait,))
    if ref not in history.landings:
        never = reason("plan.never-landed", "this version never landed on main")
        return Decision(path, blob, plan, "refused", (never,))
    return None


def _in_play(
    history: History,
    ref: PlanRef,
    plan: Plan,
    latest: Run | None,
    now: datetime,
    horizon: Horizon | None = None,
) -> Decision:
    """A landed, ready version with no run but an interrupted one (`latest`): executable,
    or what it waits for."""
    environment = history.policy.environments[plan.target]
    landed = history.landings[ref]
    verdicts: list[SignoffVerdict] = []
    trigger, trigger_seq, unasked = _asked(
        history, ref, plan, landed, latest, now, verdicts, horizon
    )
    waits = [unasked] if unasked is not None else []
    rules = gates.approval_rules(environment.gates, plan)
    approvers, missing = signoffs.approvers(
        history, ref, environment, rules, now, verdicts, horizon
    )
    waits.extend(missing)
    if not plan.rollback:  # a rollback's versions ran here already (`_never_ran`)
        waits.extend(_promotion(history, plan, environment, now, horizon))
    waits.extend(_locked(history, plan))
    if not waits and gates.time_gated(environment.gates, plan):
        waits.extend(_time_gate(environment, now, horizon))
    status: Status = "waiting" if waits else "executable"
    asked = (
        f"triggered by {trigger}"
        if latest is None
        else f"retry of interrupted run {latest.id}, requested by {trigger}"
    )
    gated = gates.time_gated(environment.gates, plan)
    lapsing = (
        _lapse(history, environment, verdicts, approvers, waits, now, horizon) if gated else ()
    )
    why = tuple(wait.reason for wait in waits) + lapsing or (
        reason(
            "plan.executable",
            f"{asked}, approved by {', '.join(approvers) or 'nobody (no approvals needed)'}",
            triggered_by=trigger,
            approvers=approvers,
        ),
    )
    return Decision(
        ref.path,
        ref.blob,
        plan,
        status,
        why,
        tuple(waits),
        approvers=approvers,
        triggered_by=trigger,
        trigger_seq=trigger_seq,
        run=latest,
        retry_of=latest.id if latest is not None and trigger is not None else None,
        verdicts=tuple(verdicts),
    )


def _asked(
    history: History,
    ref: PlanRef,
    plan: Plan,
    landed: Landed,
    latest: Run | None,
    now: datetime,
    verdicts: list[SignoffVerdict],
    horizon: Horizon | None = None,
) -> tuple[str | None, int, Wait | None]:
    """Who asked for this execution, and when; or the wait for someone to ask.

    A retry is an execution like any other: the Retry-Run takes the trigger's place,
    and the approval, promotion and time gates are judged again, now.
    """
    environment = history.policy.environments[plan.target]
    if latest is None:
        trigger, seq = signoffs.trigger(history, ref, landed, environment, now, verdicts, horizon)
    else:
        trigger, seq = signoffs.retry(history, landed, environment, latest, now, verdicts, horizon)
    if trigger is not None:
        return trigger, seq, None
    who = ", ".join(holders(history.policy, PLAN_DEPLOY, environment.name, history.revoked))
    who = who or "nobody"
    if latest is None:
        return None, 0, _trigger_wait(landed, environment, plan, who)
    wait = Wait(
        "retry",
        reason(
            "retry.missing",
            f"run {latest.id} was interrupted; a plan.deploy holder ({who}) may retry "
            f"it with `reconciler deploy {plan.name} --retry {latest.id}`",
            run=latest.id,
        ),
    )
    return None, 0, wait


def _trigger_wait(landed: Landed, environment: Environment, plan: Plan, who: str) -> Wait:
    """The wait for a trigger: who may give it and the command; and, where the landing
    itself was no trigger, why, naming how it landed (a trigger that lapsed says why in
    a note)."""
    wait = (
        f"a trigger by a plan.deploy holder on {environment.name} ({who}): "
        f"`reconciler deploy {plan.name}`"
    )
    why = (
        None
        if landed.triggered
        else not_a_trigger(landed.style, landed.commit, landed.actor, landed.squashed_by)
    )
    text = wait if why is None else f"{wait}; {why}"
    return Wait("trigger", reason("trigger.missing", text, environment=environment.name))


def run_outcome(run: Run) -> str:
    """What became of a plan version's run, as `plan` says it: 'run X.1 succeeded'."""
    return f"run {run.id} {OUTCOMES[run.result]}"


def _time_gate(
    environment: Environment, now: datetime, horizon: Horizon | None = None
) -> tuple[Wait, ...]:
    """The wait for a freeze or a deploy window, if deploys may not start now."""
    closed = gates.closed(environment.gates, now, horizon)
    if closed is None:
        return ()
    code = "gate.freeze" if closed.freeze else "gate.window"
    what = _freeze_named(closed.freeze) if closed.freeze else "a deploy window"
    if closed.opens is None:
        text = f"{what}: no deploy window opens before the year 9999 ends"
        return (Wait("window", reason(code, text)),)
    text = f"{what}: deploys may start at {closed.opens.isoformat()}"
    return (Wait("window", reason(code, text, opens=closed.opens), closed.opens),)


def _lapse(
    history: History,
    environment: Environment,
    verdicts: Sequence[SignoffVerdict],
    approvers: Sequence[str],
    waits: Sequence[Wait],
    now: datetime,
    horizon: Horizon | None = None,
) -> tuple[Reason, ...]:
    """Say now when the sign-offs that count, or any given now, will be older than
    approval_ttl when deploys may next start (`gates.lapse`): the plan would wait for
    the window, then for sign-offs all over again."""
    times = {item.commit: item.committed_at for item in history.signoffs}
    counted = [
        verdict
        for verdict in verdicts
        if verdict.refused is None and (verdict.kind != "approve" or verdict.actor in approvers)
    ]
    if horizon is not None and any(
        item.commit not in times and item.commit not in history.commit_times for item in counted
    ):
        horizon.unbounded()  # a sign-off of unknown time ages from now, whenever now is
    given = [
        (
            f"the {_SIGNOFF_NAMES[verdict.kind]} by {verdict.actor}",
            gates.aged_from(
                times.get(verdict.commit) or history.commit_times.get(verdict.commit, now),
                history.first_seen.get(verdict.commit),
            ),
        )
        for verdict in counted
    ]
    asked = any(wait.what in ("approval", "trigger", "retry") for wait in waits)
    found = gates.lapse(environment.gates, now, given, asked=asked, horizon=horizon)
    if found is None:
        return ()
    lapsing = [f"{what} expires at {_at(found, when)}" for what, when in found.expiring]
    if found.now_lapses:
        lapsing.append("one given now would expire before then too")
    text = (
        f"approval_ttl ({signoffs.duration(found.ttl)}) runs out before deploys may start "
        f"at {found.opens.isoformat()}: {', and '.join(lapsing)}; approvals and triggers "
        f"given from {_at(found, found.fresh_from)} on still count then"
    )
    facts = {
        "opens": found.opens,
        "expires": tuple(when for _, when in found.expiring),
        "now_lapses": found.now_lapses,
        "fresh_from": found.fresh_from,
    }
    return (reason("gate.ttl-before-window", text, **facts),)


_SIGNOFF_NAMES: Final = {"approve": "approval", "deploy": "trigger", "retry": "retry"}


def _at(found: gates.Lapse, moment: datetime) -> str:
    """`moment` in the zone the window's opening is given in, so the times compare at a
    glance."""
    return moment.astimezone(found.opens.tzinfo).isoformat(timespec="seconds")


def _freeze_named(name: str) -> str:
    """'the forever freeze'; and 'the year-end freeze' for a freeze named so, not
    'the year-end freeze freeze'."""
    if re.search(r"\bfreeze$", name, re.IGNORECASE):
        return f"the {name}"
    return f"the {name} freeze"


def _consistency(policy: Policy, plan: Plan) -> tuple[Reason, ...]:
    environment = policy.environments.get(plan.target)
    if environment is None:
        text = f"target '{plan.target}' is not an environment"
        return (reason("plan.unknown-target", text, target=plan.target),)
    problems = []
    if not environment.takes_source(plan.source, rollback=plan.rollback):
        expected = environment.promotes_from or "nothing"
        text = f"{plan.target} promotes from {expected}, not {plan.source or 'nothing'}"
        problems.append(reason("plan.wrong-source", text, source=plan.source))
    for entry in plan.applications:
        if entry.name not in policy.application_owner:
            text = f"no team owns application '{entry.name}'"
            problems.append(reason("plan.unowned-application", text, application=entry.name))
    return tuple(problems)


def _never_ran(history: History, plan: Plan) -> tuple[Reason, ...]:
    """Why a rollback plan can never run as it is: a version it names never ran in its
    target, as the records show (what it skips the promotion order on)."""
    if not plan.rollback:
        return ()
    ran = history.ran.get(plan.target, {})
    problems = []
    for entry in plan.applications:
        if entry.action == "tag-and-deploy" or entry.version not in ran.get(entry.name, ()):
            text = (
                f"{entry.name} {entry.version} never ran in {plan.target}: a rollback plan "
                "redeploys only versions its records show ran there; promote anything else "
                "with a plan from its source"
            )
            facts = {"application": entry.name, "version": entry.version}
            problems.append(reason("rollback.never-ran", text, **facts))
    return tuple(problems)


def _promotion(
    history: History,
    plan: Plan,
    environment: Environment,
    now: datetime,
    horizon: Horizon | None = None,
) -> list[Wait]:
    source = environment.promotes_from
    if source is None:
        return []
    running = history.deployed.get(source, {})
    waits = []
    for entry in plan.applications:
        needed = promoted(entry)
        current = running.get(entry.name)
        facts = {"application": entry.name, "version": needed, "environment": source}
        if current != needed:
            now_runs = f"it runs {current}" if current else "it does not run there"
            text = f"{entry.name} {needed} must run in {source} first ({now_runs})"
            waits.append(Wait("promotion", reason("promotion.missing", text, **facts)))
        elif environment.gates.soak and current is not None:
            soak = environment.gates.soak
            waits.extend(_soak(history, soak, source, entry.name, current, now, horizon))
    return waits


def promoted(entry: PlanEntry) -> str | None:
    """The version of `entry`'s application that must run in the source environment before
    a plan promotes it: the one a tag-and-deploy tags, else the one deployed."""
    return entry.from_version if entry.action == "tag-and-deploy" else entry.version


def _locked(history: History, plan: Plan) -> tuple[Wait, ...]:
    """The waits for the stop-the-line locks on the plan's environment or its applications
    (Kuberpult's environment and application locks): nothing starts there while one holds."""
    scopes = [plan.target, *(f"{plan.target}/{entry.name}" for entry in plan.applications)]
    waits = []
    for scope in scopes:
        lock = history.locks.get(scope)
        if lock is None:
            continue
        why = f": {lock.why}" if lock.why else ""
        text = (
            f"{scope} is locked by {lock.actor} since {lock.committed_at.isoformat()}{why} "
            f"(`reconciler unlock {scope.replace('/', ' --app ')}`)"
        )
        facts = {"scope": scope, "by": lock.actor, "since": lock.committed_at, "why": lock.why}
        waits.append(Wait("lock", reason("lock.held", text, **facts)))
    return tuple(waits)


def _soak(
    history: History,
    soak: timedelta,
    source: str,
    application: str,
    version: str,
    now: datetime,
    horizon: Horizon | None = None,
) -> tuple[Wait, ...]:
    """The wait for `version`, which runs in `source`, to have run verified there for `soak`
    (Kargo's requiredSoakTime), counted from the record that verified it (`verified_since`)."""
    facts = {"application": application, "version": version, "environment": source}
    since = history.verified_since.get(source, {}).get(application)
    if since is None:
        text = (
            f"{application} {version} must run verified in {source} first, then soak "
            f"{_duration(soak)}: the record of the run that deployed it there does not say "
            "it passed its checks (not checked, or failed verification)"
        )
        return (Wait("soak", reason("promotion.unverified", text, **facts)),)
    until = since + soak
    if now >= until:
        return ()
    if horizon is not None:
        horizon.at(until)
    text = (
        f"{application} {version} waits for soak until {until.isoformat()} "
        f"({_duration(soak)} verified in {source}, from {since.isoformat()})"
    )
    return (Wait("soak", reason("promotion.soak", text, until=until, **facts), until),)


def _duration(length: timedelta) -> str:
    """'30m', '1h30m', '2s': a duration as environment files write it."""
    seconds = int(length.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def effective_plan(fields: Mapping[str, str]) -> dict[str, Any] | None:
    if not fields or INVALID in fields:
        return None
    return plan_data(fields)


def deployed_runs(documents: Mapping[str, Any]) -> dict[str, dict[str, tuple[str, str]]]:
    """What runs where and which run put it there, per the effective deployments/<env>.yaml
    (`documents`: each one's data, by path): environment -> application -> (version, run)."""
    return {
        place(path).name: {
            app: (entry["version"], entry.get("run", ""))
            for app, entry in (data.get("applications") or {}).items()
        }
        for path, data in documents.items()
    }


def soak_sources(policy: Policy) -> frozenset[str]:
    """The environments a soak gate counts in: the sources of the environments that have one."""
    return frozenset(
        environment.promotes_from
        for environment in policy.environments.values()
        if environment.gates.soak and environment.promotes_from
    )


def verified_since(
    running: Mapping[str, Mapping[str, tuple[str, str]]], records: Iterable[Record]
) -> dict[str, dict[str, datetime]]:
    """When each application's running version was verified where it runs (environment ->
    application -> time): the commit time of the counted record, of the run that
    deployments/ says put it there, that says it passed its checks there.

    The record's commit time is the service's own: the record counts only signed by the
    service account and built on its run's start record (`events.record_refusal`), so
    no one else can date it, as no one else can write deployments/. A version whose
    record says `not checked` or `failed verification`, or no record, has no time."""
    verified = {
        (record.environment, record.run, step): record.committed_at
        for record in records
        for step in record.verified
    }
    since: dict[str, dict[str, datetime]] = {}
    for environment, applications in running.items():
        for application, (version, run) in applications.items():
            when = verified.get((environment, run, f"{application} {version}"))
            if when is not None:
                since.setdefault(environment, {})[application] = when
    return since


def not_authorised(blame: Mapping[str, Refusal | None]) -> tuple[str, ...]:
    """Why main's content of a plan is not its effective content: a line per refused
    change (`authorise.group_refusals`), and the fields no landed commit authorised."""
    lines = [
        group.text(path=False)
        if group.invalid
        else f"main's content is not authorised: {group.text(path=False)}"
        for group in group_refusals(refusal for refusal in blame.values() if refusal)
    ]
    unexplained = ", ".join(
        describe_field(key) for key, refusal in blame.items() if refusal is None
    )
    if unexplained:
        lines.append(f"main's content is not authorised: {unexplained}: never authorised")
    return tuple(lines)
