"""Stage 4, decide: which sign-offs of a plan version count now, and why the others do not.

A plan version's trigger (its landing or a `Deploy-Plan`), its retries
(`Retry-Run`) and its approvals (`Approve-Plan`) are judged here, each to a
`SignoffVerdict`: as it landed (`signoff_refusal`, which `history` shows too),
then under today's policy and the clock. `decide` turns what counts into its
decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

from reconciler.core import approvals, gates
from reconciler.core.decide_values import (
    OUTCOMES,
    History,
    Landed,
    Run,
    SignoffVerdict,
    Wait,
)
from reconciler.core.events import PlanRef, Signoff
from reconciler.core.gates import Horizon
from reconciler.core.identity import resolve
from reconciler.core.model import ApprovalRule, Environment
from reconciler.core.permissions import PLAN_APPROVE, PLAN_DEPLOY, holders, may_on_environment
from reconciler.core.reasons import Reason, reason

# The smallest step of a datetime: the first moment after one.
_INSTANT: Final = timedelta(microseconds=1)


def ignored_retries(history: History, runs: Sequence[Run]) -> tuple[SignoffVerdict, ...]:
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
            f"only interrupted runs are retried, and {run.id} {OUTCOMES[run.result]}",
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


def _fresh(
    history: History,
    signoff_commit: str,
    committed_at: datetime,
    environment: Environment,
    now: datetime,
    horizon: Horizon | None = None,
) -> Reason | None:
    """Why a signoff is too old, or None; `horizon` learns when one that counts expires."""
    ttl = environment.gates.approval_ttl
    if ttl is None:
        return None
    first_seen = history.first_seen.get(signoff_commit)
    age = gates.age(committed_at, first_seen, now)
    if age > ttl:
        return reason("signoff.expired", f"older than approval_ttl ({duration(ttl)})", age=age)
    if horizon is not None:  # its age is over the TTL from the instant after it equals it
        horizon.at(gates.shifted(gates.aged_from(committed_at, first_seen), ttl + _INSTANT))
    return None


def duration(delta: timedelta) -> str:
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
    horizon: Horizon | None = None,
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
        horizon,
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
    horizon: Horizon | None = None,
) -> Reason | None:
    """Why a sign-off that held its permission when it landed does not count now: its
    actor no longer verifies or holds it under today's policy, or it is too old."""
    return _still_holds(history, commit, actor, how, permission, environment) or _fresh(
        history, commit, committed_at, environment, now, horizon
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


def trigger(
    history: History,
    ref: PlanRef,
    landed: Landed,
    environment: Environment,
    now: datetime,
    verdicts: list[SignoffVerdict],
    horizon: Horizon | None = None,
) -> tuple[str | None, int]:
    """Who triggered this version (a landing by a plan.deploy holder, or a Deploy-Plan).

    A landing by a user who did not hold plan.deploy is their proposal, not a trigger
    that failed: it is no candidate (one whose actor is unknown may have been meant as
    a trigger, and is told why it was none).
    """
    for seq, commit, actor, how, held, reasons in _trigger_candidates(history, ref, landed):
        label = f"trigger in {commit[:12]} by {actor or 'an unknown actor'}"
        committed_at = history.commit_times.get(commit, now)
        problem = _not_held(actor, held, reasons, how) or _lapsed(
            history, commit, actor, how, committed_at, PLAN_DEPLOY, environment, now, horizon
        )
        verdicts.append(SignoffVerdict("deploy", commit, actor, label, problem))
        if problem is None:
            return actor, seq
    return None, 0


_Candidate = tuple[int, str, str | None, str, bool, tuple[str, ...]]


def _trigger_candidates(history: History, ref: PlanRef, landed: Landed) -> list[_Candidate]:
    """The triggering landing (unless its actor is known not to hold plan.deploy), then each
    Deploy-Plan that followed it: (seq, commit, actor, how, held, reasons)."""
    candidates: list[_Candidate] = []
    if landed.triggered or landed.actor is None:
        candidates.append(
            (landed.seq, landed.commit, landed.actor, landed.how, landed.triggered, landed.reasons)
        )
    candidates += [
        (item.seq, item.commit, item.actor, item.how, item.held, item.reasons)
        for item in history.signoffs
        if item.kind == "deploy" and item.plan == ref and item.seq >= landed.seq
    ]
    return candidates


def approvers(
    history: History,
    ref: PlanRef,
    environment: Environment,
    rules: Sequence[ApprovalRule],
    now: datetime,
    verdicts: list[SignoffVerdict],
    horizon: Horizon | None = None,
) -> tuple[tuple[str, ...], list[Wait]]:
    """Approvers that count, and what the approval `rules` (`gates.approval_rules`) still
    wait for."""
    editors = history.editors.get(ref.path, frozenset())
    valid = _approved(history, ref, environment, now, verdicts, editors, horizon)
    # Approvers and eligible users are users, so role_holders says what roles_of would.
    roles = [history.policy.role_holders.get(rule.role, frozenset()) for rule in rules]
    assigned = approvals.match_approvers(valid, [rule.count for rule in rules], roles)
    matched = {user for users in assigned for user in users}
    counted = [user for user in valid if user in matched]
    excluded = editors | set(counted)  # editors never approve; the counted approved already
    waits = [
        _approval_wait(
            history, environment, rule.role, rule.count - len(taken), with_role, excluded
        )
        for rule, with_role, taken in zip(rules, roles, assigned, strict=True)
        if len(taken) < rule.count
    ]
    return tuple(counted), waits


def _approved(
    history: History,
    ref: PlanRef,
    environment: Environment,
    now: datetime,
    verdicts: list[SignoffVerdict],
    editors: frozenset[str],
    horizon: Horizon | None = None,
) -> list[str]:
    """The users whose approval of `ref` counts, once each; a verdict on every approval."""
    landed = history.landings[ref]
    valid: list[str] = []
    for signoff in history.signoffs:
        if signoff.kind != "approve" or signoff.plan != ref:
            continue
        label = f"approval in {signoff.commit[:12]} by {signoff.actor or 'an unknown actor'}"
        if signoff.seq < landed.seq:
            problem: Reason | None = _before(history, ref, landed)
        else:
            problem = _signoff_problem(
                history, signoff, PLAN_APPROVE, environment, now, editors, horizon
            )
        if problem is None and signoff.actor is not None:
            problem = approvals.repeated_approval(signoff.actor, valid)
            if problem is None:
                valid.append(signoff.actor)
        verdicts.append(SignoffVerdict("approve", signoff.commit, signoff.actor, label, problem))
    return valid


def _approval_wait(
    history: History,
    environment: Environment,
    role: str,
    missing: int,
    with_role: frozenset[str],
    excluded: frozenset[str],
) -> Wait:
    """The wait for `missing` more approvals by `role`, naming who may give them."""
    eligible = [
        user
        for user in holders(history.policy, PLAN_APPROVE, environment.name, history.revoked)
        if user in with_role and user not in excluded
    ]
    who = ", ".join(eligible) or "nobody who did not edit the plan"
    text = f"{missing} more approval{'s' * (missing != 1)} by {role} (may approve: {who})"
    return Wait(
        "approval",
        reason("approval.missing", text, role=role, missing=missing, eligible=tuple(eligible)),
    )


def _before(history: History, ref: PlanRef, landed: Landed) -> Reason:
    """Why a sign-off that landed before the version's latest landing does not count: it
    was for the version's earlier time on main (before a cancel, or a revert), and a
    trailer counts only for the landing it followed."""
    if ref in history.uncancelled:
        text = f"it predates the un-cancel in {landed.commit[:12]}"
    else:
        text = f"it predates this version's return to main in {landed.commit[:12]}"
    return reason("signoff.before-landing", text, landing=landed.commit)


def retry(
    history: History,
    landed: Landed,
    environment: Environment,
    interrupted: Run,
    now: datetime,
    verdicts: list[SignoffVerdict],
    horizon: Horizon | None = None,
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
            or _signoff_problem(history, signoff, PLAN_DEPLOY, environment, now, horizon=horizon)
        )
        verdicts.append(SignoffVerdict("retry", signoff.commit, signoff.actor, label, problem))
        if problem is None:
            return signoff.actor, signoff.seq
    return None, 0
