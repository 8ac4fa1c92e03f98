"""Stage 4, decide: the pipeline as LifeTime shows it, what runs where and what is moving.

Called by `reconciler status` (and the demo). Environments are columns in
promotion order, applications rows, each cell the version that runs there per
the effective `deployments/`; between two columns, the plans on their way
with a short label a person scans for: draft, saved (waiting for approvals),
ready (waiting for its trigger, no approvals needed), approved (waiting for
its trigger), triggered, ready to run, running, failed, refused. A rollback
plan has a lane of its own into its environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from msgspec import Struct

from reconciler.core.decide import Decision
from reconciler.core.decide_values import Run
from reconciler.core.events import Lock
from reconciler.core.model import Policy


class Move(Struct, frozen=True):
    source: str | None
    target: str
    plan: str
    path: str
    blob: str
    label: str
    status: str
    reasons: tuple[str, ...]
    rollback: bool = False  # a rollback plan: it redeploys what ran in `target` before


class Drift(Struct, frozen=True):
    """A driver reporting another version than `deployments/<env>.yaml` records."""

    environment: str
    application: str
    recorded: str
    current: str | None

    def text(self) -> str:
        found = self.current or "nothing"
        return (
            f"{self.application} in {self.environment}: deployments/ records {self.recorded}, "
            f"the driver reports {found}"
        )


class Pipeline(Struct, frozen=True):
    environments: tuple[str, ...]
    applications: tuple[str, ...]
    versions: Mapping[str, Mapping[str, str]]  # application -> environment -> version
    moves: tuple[Move, ...]
    # The stop-the-line locks that hold: scope, who, since when, why.
    locks: tuple[Lock, ...] = ()
    drift: tuple[Drift, ...] = ()  # what the drivers report, where they were asked
    drift_notes: tuple[str, ...] = ()  # the environments whose driver could not be asked


def label(decision: Decision) -> str:
    """What a plan looks like from the pipeline: LifeTime's words."""
    if decision.status == "done" and decision.run is not None:
        return {"started": "running", "failed": "failed", "succeeded": "deployed"}.get(
            decision.run.result, decision.run.result
        )
    if decision.status in ("executable", "refused", "cancelled"):
        return {"executable": "ready to run"}.get(decision.status, decision.status)
    kinds = {wait.what for wait in decision.waits}
    if "state" in kinds:
        return "draft"
    if "retry" in kinds:
        return "interrupted"
    if "approval" in kinds:
        return "saved"
    if "trigger" in kinds:
        # Waiting for its trigger only: approved if someone approved it; an environment that
        # needs no approvals (development) has none, and the plan is merely ready.
        return "approved" if decision.approvers else "ready"
    return "triggered"


def pipeline(
    policy: Policy,
    deployed: Mapping[str, Mapping[str, str]],
    decisions: Iterable[Decision],
    *,
    include_deployed: bool = False,
    open_runs: Iterable[Run] = (),
    locks: Iterable[Lock] = (),
) -> Pipeline:
    """The pipeline; `open_runs`: the runs no finish record followed yet, so a run of a
    version that is no longer on main (edited or deleted since it started) is shown too."""
    decisions = tuple(decisions)
    environments = tuple(environment.name for environment in policy.environments_in_order())
    applications = tuple(
        sorted(set(policy.application_owner) | {app for apps in deployed.values() for app in apps})
    )
    versions = {
        application: {
            environment: deployed[environment][application]
            for environment in environments
            if application in deployed.get(environment, {})
        }
        for application in applications
    }
    moves = _running(policy, decisions, open_runs) + _planned(decisions, include_deployed)
    order = {name: index for index, name in enumerate(environments)}
    moves.sort(key=lambda move: (order.get(move.target, len(order)), move.plan))
    return Pipeline(environments, applications, versions, tuple(moves), tuple(locks))


def _running(
    policy: Policy, decisions: tuple[Decision, ...], open_runs: Iterable[Run]
) -> list[Move]:
    """The open runs no decision shows (their version left main, or was refused since)."""
    moves = []
    shown = {decision.run.id for decision in decisions if decision.run is not None}
    # A version on main whose decision names no run (refused since it started) is running
    # all the same, but it did not leave main.
    on_main = {(decision.path, decision.blob) for decision in decisions}
    for run in open_runs:
        if run.id in shown or run.finished is not None:
            continue
        target = policy.environments.get(run.environment)
        moves.append(
            Move(
                source=target.promotes_from if target else None,
                target=run.environment,
                plan=_stem(run.plan.path),
                path=run.plan.path,
                blob=run.plan.blob,
                label="running",
                status="done",
                reasons=(
                    f"run {run.id} is running"
                    if (run.plan.path, run.plan.blob) in on_main
                    else f"run {run.id} is running (a version no longer on main)",
                ),
            )
        )
    return moves


def _planned(decisions: tuple[Decision, ...], include_deployed: bool) -> list[Move]:
    """A move per plan on main; those deployed or cancelled only when asked for."""
    moves = []
    for decision in decisions:
        word = label(decision)
        if word in ("deployed", "cancelled") and not include_deployed:
            continue
        moves.append(
            Move(
                # A plan that cannot be read has no lane of its own: target "".
                source=decision.plan.source if decision.plan else None,
                target=decision.plan.target if decision.plan else "",
                plan=decision.plan.name if decision.plan else _stem(decision.path),
                path=decision.path,
                blob=decision.blob,
                label=word,
                status=decision.status,
                reasons=decision.reasons,
                rollback=bool(decision.plan and decision.plan.rollback),
            )
        )
    return moves


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".yaml")
