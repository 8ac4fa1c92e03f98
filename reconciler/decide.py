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
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from reconciler import approvals, gates
from reconciler.config import build_plan
from reconciler.events import FINISHED, PlanRef, Record, Signoff
from reconciler.fields import CONTENT, INVALID, describe_field, plan_data, value
from reconciler.identity import CommitFacts, resolve
from reconciler.layout import place
from reconciler.loader import load
from reconciler.model import Environment, Plan, Policy
from reconciler.permissions import PLAN_APPROVE, PLAN_DEPLOY, holders, may_on_environment
from reconciler.reasons import Reason, reason
from reconciler.rules import not_a_trigger
from reconciler.verdicts import Refusal, group_refusals

Status = Literal["executable", "waiting", "refused", "done", "cancelled"]
RunResult = Literal["started", "succeeded", "failed", "interrupted"]


@dataclass(frozen=True, slots=True)
class Run:
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


@dataclass(frozen=True, slots=True)
class Landed:
    """The landing that made a plan version current on main, and what its actor held."""

    seq: int
    commit: str
    actor: str | None
    how: str
    triggered: bool  # its actor held plan.deploy under the policy that judged it
    reasons: tuple[str, ...]
    style: str = ""  # how it landed (`rules.landing_style`); "" when stored before styles
    squashed_by: str | None = None  # the host whose squash landed it


@dataclass(frozen=True, slots=True)
class OnMain:
    """A plan file on main's tip."""

    path: str
    blob: str
    data: Mapping[str, Any] | None  # None when the content is invalid
    problems: tuple[str, ...]  # why it is invalid or not effective, a line each


@dataclass(frozen=True, slots=True)
class History:
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


@dataclass(frozen=True, slots=True)
class Wait:
    what: Literal["state", "approval", "trigger", "window", "promotion", "retry", "driver"]
    reason: Reason
    until: datetime | None = None

    @property
    def text(self) -> str:
        return self.reason.text


@dataclass(frozen=True, slots=True)
class SignoffVerdict:
    """What `decide` made of one sign-off of a plan version (or of its triggering landing)."""

    kind: Literal["approve", "deploy", "retry"]
    commit: str
    actor: str | None
    label: str  # "approval in 0123456789ab by ravi"
    refused: Reason | None = None  # None: it counts

    @property
    def note(self) -> str:
        return f"{self.label} does not count: {self.refused}"


# Refusals not worth a note: a second approval by someone whose first one counts.
_UNSAID: Final = frozenset({approvals.REPEATED})


@dataclass(frozen=True, slots=True)
class Decision:
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
    verdicts: tuple[SignoffVerdict, ...] = field(default=())

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


def decide(history: History, now: datetime) -> tuple[Decision, ...]:
    """Every plan on main, decided; executable ones first, in the order they will run."""
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
        decisions.append(_decide_one(narrowed, on_main, now))
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
        queue.sort(key=lambda item: (item.trigger_seq, item.path))
    return queues


# -- one plan version ---------------------------------------------------------------


def _decide_one(history: History, on_main: OnMain, now: datetime) -> Decision:
    path, blob = on_main.path, on_main.blob
    if on_main.data is None or on_main.problems:
        problems = on_main.problems or ("invalid plan",)
        why = tuple(reason("plan.not-effective", text) for text in problems)
        return Decision(path, blob, None, "refused", why)
    plan = build_plan(on_main.data)
    policy = history.policy
    refused = _consistency(policy, plan)
    if refused:
        return Decision(path, blob, plan, "refused", refused)
    if plan.state == "cancelled":
        cancelled = reason("plan.cancelled", "cancelled by a plan.deploy holder")
        return Decision(path, blob, plan, "cancelled", (cancelled,))
    ref = PlanRef(path, blob)
    runs = [run for run in history.runs if run.plan == ref]
    latest = runs[-1] if runs else None
    if latest is not None and latest.result != "interrupted":
        return Decision(
            path,
            blob,
            plan,
            "done",
            (reason("run.outcome", run_outcome(latest), run=latest.id, result=latest.result),),
            run=latest,
            verdicts=_ignored_retries(history, runs),
        )
    if plan.state == "draft":
        draft = reason("plan.draft", "saved as a draft: set state: ready to propose it")
        wait = Wait("state", draft)
        return Decision(path, blob, plan, "waiting", (wait.reason,), (wait,))
    environment = policy.environments[plan.target]
    landed = history.landings.get(ref)
    if landed is None:
        never = reason("plan.never-landed", "this version never landed on main")
        return Decision(path, blob, plan, "refused", (never,))
    verdicts: list[SignoffVerdict] = []
    waits: list[Wait] = []
    # A retry is an execution like any other: the Retry-Run takes the trigger's place,
    # and the approval, promotion and time gates are judged again, now.
    if latest is None:
        trigger, trigger_seq = _trigger(history, ref, landed, environment, now, verdicts)
    else:
        trigger, trigger_seq = _retry(history, landed, environment, latest, now, verdicts)
    if trigger is None:
        who = ", ".join(holders(policy, PLAN_DEPLOY, environment.name, history.revoked))
        who = who or "nobody"
        waits.append(
            _trigger_wait(landed, environment, plan, who)
            if latest is None
            else Wait(
                "retry",
                reason(
                    "retry.missing",
                    f"run {latest.id} was interrupted; a plan.deploy holder ({who}) may retry "
                    f"it with `reconciler deploy {plan.name} --retry {latest.id}`",
                    run=latest.id,
                ),
            )
        )
    approvers, missing = _approvals(history, ref, environment, now, verdicts)
    waits.extend(missing)
    waits.extend(_promotion(history, plan, environment))
    if not waits:
        waits.extend(_time_gate(environment, now))
    status: Status = "waiting" if waits else "executable"
    asked = (
        f"triggered by {trigger}"
        if latest is None
        else f"retry of interrupted run {latest.id}, requested by {trigger}"
    )
    why = tuple(wait.reason for wait in waits) or (
        reason(
            "plan.executable",
            f"{asked}, approved by {', '.join(approvers) or 'nobody (no approvals needed)'}",
            triggered_by=trigger,
            approvers=approvers,
        ),
    )
    return Decision(
        path,
        blob,
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


def _ignored_retries(history: History, runs: Sequence[Run]) -> tuple[SignoffVerdict, ...]:
    """The retries of a done version's runs that do not count (`retry_refusal`)."""
    by_id = {run.id: run for run in runs}
    verdicts = []
    for item in history.signoffs:
        run = by_id.get(item.run or "")
        if item.kind != "retry" or run is None:
            continue
        refused = retry_refusal(run, _retried_as(runs, run.id, item.seq), item.seq)
        if refused is not None:
            label = f"retry of {run.id} in {item.commit[:12]}"
            verdicts.append(SignoffVerdict("retry", item.commit, item.actor, label, refused))
    return tuple(verdicts)


def _retried_as(runs: Iterable[Run], run: str, seq: int) -> str | None:
    """The run that retried `run` and started before `seq`, if any."""
    return next((item.id for item in runs if item.retry_of == run and item.started_seq < seq), None)


def retry_refusal(run: Run | None, retried_as: str | None, seq: int) -> Reason | None:
    """Why a `Retry-Run` of `run` landed at `seq` does not count, or None: only a run
    recorded interrupted before the retry landed, and not retried since (`retried_as`, the
    run that retried it before `seq`), is run again.

    `run`: the run as the records tell it now; None for a run never recorded, whose retry
    is ignored, not judged. `decide` and `history` both judge retries by this rule.
    """
    if run is None:
        return None
    if retried_as is not None:
        return reason(
            "retry.repeated",
            f"{run.id} was already retried as run {retried_as}",
            run=run.id,
            retried_as=retried_as,
        )
    if run.result != "interrupted":
        return reason(
            "retry.not-interrupted",
            f"only interrupted runs are retried, and {run.id} {_OUTCOMES[run.result]}",
            run=run.id,
            result=run.result,
        )
    if seq < run.finished_seq:
        return reason(
            "retry.early",
            "it landed before the run was recorded interrupted",
            run=run.id,
        )
    return None


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


_OUTCOMES: Final = {
    "started": "is running",
    "succeeded": "succeeded",
    "failed": "failed",
    "interrupted": "was interrupted",
}


def run_outcome(run: Run) -> str:
    """What became of a plan version's run, as `plan` says it: 'run X.1 succeeded'."""
    return f"run {run.id} {_OUTCOMES[run.result]}"


def _time_gate(environment: Environment, now: datetime) -> tuple[Wait, ...]:
    """The wait for a freeze or a deploy window, if deploys may not start now."""
    closed = gates.closed(environment.gates, now)
    if closed is None:
        return ()
    code = "gate.freeze" if closed.freeze else "gate.window"
    what = _freeze_named(closed.freeze) if closed.freeze else "a deploy window"
    if closed.opens is None:
        text = f"{what}: no deploy window opens before the year 9999 ends"
        return (Wait("window", reason(code, text)),)
    text = f"{what}: deploys may start at {closed.opens.isoformat()}"
    return (Wait("window", reason(code, text, opens=closed.opens), closed.opens),)


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
    if plan.source != environment.promotes_from:
        expected = environment.promotes_from or "nothing"
        text = f"{plan.target} promotes from {expected}, not {plan.source or 'nothing'}"
        problems.append(reason("plan.wrong-source", text, source=plan.source))
    for entry in plan.applications:
        if entry.name not in policy.application_owner:
            text = f"no team owns application '{entry.name}'"
            problems.append(reason("plan.unowned-application", text, application=entry.name))
    return tuple(problems)


def _fresh(
    history: History,
    signoff_commit: str,
    committed_at: datetime,
    environment: Environment,
    now: datetime,
) -> Reason | None:
    """Why a signoff is too old, or None."""
    ttl = environment.gates.approval_ttl
    if ttl is None:
        return None
    age = gates.age(committed_at, history.first_seen.get(signoff_commit), now)
    if age > ttl:
        return reason("signoff.expired", f"older than approval_ttl ({_duration(ttl)})", age=age)
    return None


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def _signoff_problem(
    history: History,
    signoff: Signoff,
    permission: str,
    environment: Environment,
    now: datetime,
    editors: frozenset[str] = frozenset(),
) -> Reason | None:
    """Why an approval or a retry does not count, or None (editors never approve)."""
    return signoff_refusal(signoff, editors) or _lapsed(
        history,
        signoff.commit,
        signoff.actor,
        signoff.how,
        signoff.committed_at,
        permission,
        environment,
        now,
    )


def signoff_refusal(signoff: Signoff, editors: frozenset[str] = frozenset()) -> Reason | None:
    """Why a sign-off did not count when it landed, or None: its actor was unknown or did not
    hold the permission then, or, for an approval, edited the plan (`editors`: the plan's).

    `history` shows the same verdict; `_lapsed` adds what today's policy and the clock say.
    """
    problem = _not_held(signoff.actor, signoff.held, signoff.reasons, signoff.how)
    if problem is None and signoff.actor is not None and signoff.kind == "approve":
        problem = approvals.editor_refusal(signoff.actor, editors)
    return problem


def _not_held(actor: str | None, held: bool, reasons: tuple[str, ...], how: str) -> Reason | None:
    """Why a sign-off (or a triggering landing) did not hold its permission when it landed."""
    if actor is None or not held:
        return reason("signoff.not-held", "; ".join(reasons) or how, actor=actor)
    return None


def _lapsed(
    history: History,
    commit: str,
    actor: str | None,
    how: str,
    committed_at: datetime,
    permission: str,
    environment: Environment,
    now: datetime,
) -> Reason | None:
    """Why a sign-off that held its permission when it landed does not count now: its
    actor no longer verifies or holds it under today's policy, or it is too old."""
    return _still_holds(history, commit, actor, how, permission, environment) or _fresh(
        history, commit, committed_at, environment, now
    )


def _still_holds(
    history: History,
    commit: str,
    who: str | None,
    how: str,
    permission: str,
    environment: Environment,
) -> Reason | None:
    """Why the actor of `commit` (`who`, as its landing judged) no longer counts today, or None."""
    facts = history.facts.get(commit)
    if facts is None or who is None:
        return reason("signoff.unverified", how, actor=who)
    actor = resolve(facts, history.policy, signature_required=environment.gates.signed_commits)
    if actor.id != who:
        text = f"{who}'s identity no longer verifies: {actor.how}"
        return reason("signoff.unverified", text, actor=who)
    verdict = may_on_environment(
        history.policy, actor.name, permission, environment.name, history.revoked
    )
    if not verdict:
        text = f"{actor.name} no longer holds {permission}: {verdict.text()}"
        return reason("signoff.permission-lapsed", text, actor=actor.name, permission=permission)
    return None


def _trigger(
    history: History,
    ref: PlanRef,
    landed: Landed,
    environment: Environment,
    now: datetime,
    verdicts: list[SignoffVerdict],
) -> tuple[str | None, int]:
    """Who triggered this version (a landing by a plan.deploy holder, or a Deploy-Plan).

    A landing by a user who did not hold plan.deploy is their proposal, not a trigger
    that failed: it is no candidate (one whose actor is unknown may have been meant as
    a trigger, and is told why it was none).
    """
    candidates: list[tuple[int, str, str | None, str, bool, tuple[str, ...]]] = []
    if landed.triggered or landed.actor is None:
        candidates.append(
            (landed.seq, landed.commit, landed.actor, landed.how, landed.triggered, landed.reasons)
        )
    candidates += [
        (item.seq, item.commit, item.actor, item.how, item.held, item.reasons)
        for item in history.signoffs
        if item.kind == "deploy" and item.plan == ref and item.seq >= landed.seq
    ]
    for seq, commit, actor, how, held, reasons in candidates:
        label = f"trigger in {commit[:12]} by {actor or 'an unknown actor'}"
        committed_at = history.commit_times.get(commit, now)
        problem = _not_held(actor, held, reasons, how) or _lapsed(
            history, commit, actor, how, committed_at, PLAN_DEPLOY, environment, now
        )
        verdicts.append(SignoffVerdict("deploy", commit, actor, label, problem))
        if problem is None:
            return actor, seq
    return None, 0


def _approvals(
    history: History,
    ref: PlanRef,
    environment: Environment,
    now: datetime,
    verdicts: list[SignoffVerdict],
) -> tuple[tuple[str, ...], list[Wait]]:
    """Approvers that count, and what the approval rules still wait for."""
    policy = history.policy
    editors = history.editors.get(ref.path, frozenset())
    landed = history.landings[ref]
    valid: list[str] = []
    for signoff in history.signoffs:
        if signoff.kind != "approve" or signoff.plan != ref:
            continue
        label = f"approval in {signoff.commit[:12]} by {signoff.actor or 'an unknown actor'}"
        if signoff.seq < landed.seq:
            problem: Reason | None = _before(history, ref, landed)
        else:
            problem = _signoff_problem(history, signoff, PLAN_APPROVE, environment, now, editors)
        if problem is None and signoff.actor is not None:
            problem = approvals.repeated_approval(signoff.actor, valid)
            if problem is None:
                valid.append(signoff.actor)
        verdicts.append(SignoffVerdict("approve", signoff.commit, signoff.actor, label, problem))
    rules = environment.gates.approvals
    # Approvers and eligible users are users, so role_holders says what roles_of would.
    roles = [policy.role_holders.get(rule.role, frozenset()) for rule in rules]
    assigned = approvals.match_approvers(valid, [rule.count for rule in rules], roles)
    matched = {user for users in assigned for user in users}
    counted = [user for user in valid if user in matched]
    waits: list[Wait] = []
    for rule, with_role, taken in zip(rules, roles, assigned, strict=True):
        if len(taken) < rule.count:
            missing = rule.count - len(taken)
            eligible = [
                user
                for user in holders(policy, PLAN_APPROVE, environment.name, history.revoked)
                if user in with_role and user not in editors and user not in counted
            ]
            who = ", ".join(eligible) or "nobody who did not edit the plan"
            text = (
                f"{missing} more approval{'s' * (missing != 1)} by {rule.role} (may approve: {who})"
            )
            waits.append(
                Wait(
                    "approval",
                    reason(
                        "approval.missing",
                        text,
                        role=rule.role,
                        missing=missing,
                        eligible=tuple(eligible),
                    ),
                )
            )
    return tuple(counted), waits


def _before(history: History, ref: PlanRef, landed: Landed) -> Reason:
    """Why a sign-off that landed before the version's latest landing does not count: it
    was for the version's earlier time on main (before a cancel, or a revert), and a
    trailer counts only for the landing it followed."""
    if ref in history.uncancelled:
        text = f"it predates the un-cancel in {landed.commit[:12]}"
    else:
        text = f"it predates this version's return to main in {landed.commit[:12]}"
    return reason("signoff.before-landing", text, landing=landed.commit)


def _promotion(history: History, plan: Plan, environment: Environment) -> list[Wait]:
    source = environment.promotes_from
    if source is None:
        return []
    running = history.deployed.get(source, {})
    waits = []
    for entry in plan.applications:
        needed = entry.from_version if entry.action == "tag-and-deploy" else entry.version
        current = running.get(entry.name)
        if current != needed:
            now_runs = f"it runs {current}" if current else "it does not run there"
            text = f"{entry.name} {needed} must run in {source} first ({now_runs})"
            facts = {"application": entry.name, "version": needed, "environment": source}
            waits.append(Wait("promotion", reason("promotion.missing", text, **facts)))
    return waits


def _retry(
    history: History,
    landed: Landed,
    environment: Environment,
    interrupted: Run,
    now: datetime,
    verdicts: list[SignoffVerdict],
) -> tuple[str | None, int]:
    """Who asked to re-run the interrupted run (a `Retry-Run` by a plan.deploy holder)."""
    for signoff in history.signoffs:
        if signoff.kind != "retry" or signoff.run != interrupted.id:
            continue
        label = f"retry in {signoff.commit[:12]} by {signoff.actor or 'an unknown actor'}"
        # Like any trailer, a retry counts only for the landing it followed: asked for before
        # the version left main, it must not re-run the version when someone brings it back.
        # The latest run was retried by no run (that one would be the latest).
        problem = (
            _before(history, interrupted.plan, landed)
            if signoff.seq < landed.seq
            else retry_refusal(interrupted, None, signoff.seq)
            or _signoff_problem(history, signoff, PLAN_DEPLOY, environment, now)
        )
        verdicts.append(SignoffVerdict("retry", signoff.commit, signoff.actor, label, problem))
        if problem is None:
            return signoff.actor, signoff.seq
    return None, 0


def runs_from(records: Iterable[Record]) -> tuple[Run, ...]:
    """Fold start and finish records into runs, in the order they started.

    `records`: those that counted. `events.record_refusal` lets one start and one
    finish per run through, the finish after its start, so the fold needs no rule of
    its own about second starts or finishes."""
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
        elif record.run in runs and record.result in FINISHED:
            runs[record.run] = replace(
                runs[record.run],
                result=record.result,  # type: ignore[arg-type]
                finished=record.commit,
                finished_seq=record.seq,
            )
    return tuple(runs.values())


def effective_plan(fields: Mapping[str, str]) -> dict[str, Any] | None:
    if not fields or INVALID in fields:
        return None
    return plan_data(fields)


def deployed_versions(
    effective: Mapping[str, Mapping[str, str]], read_blob: Any
) -> dict[str, dict[str, str]]:
    """What runs where, per the effective deployments/<env>.yaml."""
    deployed: dict[str, dict[str, str]] = {}
    for path, fields in effective.items():
        placement = place(path)
        if placement.kind != "deployment" or CONTENT not in fields:
            continue
        data = load(read_blob(value(fields, CONTENT)), path).data
        deployed[placement.name] = {
            app: entry["version"] for app, entry in (data.get("applications") or {}).items()
        }
    return deployed


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
