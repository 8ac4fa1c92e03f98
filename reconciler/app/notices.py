"""App: what the service tells people, derived from each pass's and run's result.

Called by the watcher (`watch`) after every pass and every run, in the thread
that made the result: the notices are derived from those frozen values alone
(`pass_notices`, `run_notice`, `unhealthy_notice`), routed by the policy the
pass read (teams.yaml `notifications:`, `notices.targets_for`) and handed to
the courier's bounded queue (`adapters/notify.py`), which delivers them in a
thread of its own: the run's path pays for a few dictionaries and a queue put.
docs/design.md, "Notifications".

Each notice's id is for good (`run.failed/<run>`,
`plan.waiting/<plan>@<blob>`, ...): the courier's log tells a
target each id once, so a restart that derives the same notices again says
nothing twice. Drift is looked for by the watcher on its start and resync passes, when a
route sends it (`drift_notices`). A rollback plan's run that succeeded is told
as rolled back; a hook waits for runs that roll themselves back (`RESULT_KINDS`:
a run whose result is `rolled-back`, once a run can end so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal

from reconciler.adapters.notify import Courier
from reconciler.app.drift import DriftReport
from reconciler.app.passes import PassReport, RunReport, StartedRun
from reconciler.core.decide import Decision
from reconciler.core.model import Route
from reconciler.core.notices import (
    DRIFT_FOUND,
    PLAN_REFUSED,
    PLAN_WAITING,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_ROLLED_BACK,
    RUN_STARTED,
    RUN_SUCCEEDED,
    SERVICE_UNHEALTHY,
    Notice,
    targets_for,
)

# A run's result (its finish record's `Result:`) and the event it makes. A rollback plan's
# run that succeeded is `run.rolled-back` too (`run_notice`); the result `rolled-back` is the
# hook for a run that rolls itself back (`on_failure: rollback`, issue 18), once runs can.
RESULT_KINDS: Final = {
    "succeeded": RUN_SUCCEEDED,
    "failed": RUN_FAILED,
    "interrupted": RUN_INTERRUPTED,
    "rolled-back": RUN_ROLLED_BACK,
}
# What a plan may wait for that people must give: told once per version, when it first waits
# for any of them.
TOLD_WAITS: Final = ("approval", "trigger")
UNHEALTHY_AFTER: Final = 3  # failed passes in a row

Log = Callable[[Literal["info", "warning", "error"], str, str, Mapping[str, Any]], None]


def _plan_data(decision: Decision) -> dict[str, Any]:
    plan = decision.plan
    return {
        "plan": decision.path,
        "plan_version": str(decision.ref),
        "applications": (
            [{"name": entry.name, "version": entry.version} for entry in plan.applications]
            if plan is not None
            else []
        ),
    }


def pass_notices(report: PassReport, started: Sequence[StartedRun], at: datetime) -> list[Notice]:
    """What a pass that worked has to tell: the runs it started and marked interrupted, the
    plan versions it refused, and those waiting for an approval or a trigger."""
    notices: list[Notice] = []
    for run in started:
        notices.append(
            Notice(
                f"{RUN_STARTED}/{run.run_id}",
                RUN_STARTED,
                at,
                f"run {run.run_id} started: {run.decision.path} -> {run.environment.name}",
                run.environment.name,
                {"run": run.run_id, "retry_of": run.decision.retry_of, **_plan_data(run.decision)},
            )
        )
    for run_id in report.interrupted:
        environment = report.interrupted_in.get(run_id)
        notices.append(
            Notice(
                f"{RUN_INTERRUPTED}/{run_id}",
                RUN_INTERRUPTED,
                at,
                f"run {run_id} -> {environment}: interrupted (it never finished)",
                environment,
                {"run": run_id, "result": "interrupted"},
            )
        )
    by_ref = {decision.ref: decision for decision in report.decisions}
    for ref in report.refused:
        why = report.why_refused.get(ref, ())
        decision = by_ref.get(ref)
        notices.append(
            Notice(
                f"{PLAN_REFUSED}/{ref}",
                PLAN_REFUSED,
                at,
                f"{ref.path} refused" + (f": {'; '.join(why)}" if why else ""),
                decision.environment if decision is not None else None,
                {
                    "plan": ref.path,
                    "plan_version": str(ref),
                    "reasons": list(why),
                    **(_plan_data(decision) if decision is not None else {}),
                },
            )
        )
    for decision in report.decisions:
        waits = [wait for wait in decision.waits if wait.what in TOLD_WAITS]
        if decision.status != "waiting" or not waits:
            continue
        notices.append(
            Notice(
                f"{PLAN_WAITING}/{decision.ref}",
                PLAN_WAITING,
                at,
                f"{decision.path} -> {decision.environment} waits for "
                + "; ".join(wait.text for wait in waits),
                decision.environment,
                {
                    "waiting_for": sorted({wait.what for wait in waits}),
                    "reasons": [wait.text for wait in waits],
                    **_plan_data(decision),
                },
            )
        )
    return notices


def run_notice(
    started: StartedRun, report: RunReport | None, error: BaseException | None, at: datetime
) -> Notice:
    """How a run ended; `report` None when it could not be completed (`error`): failed.
    A rollback plan's run that succeeded is a rollback (`reconciler rollback ENV`), and so
    is a failed run that put back what it replaced (`on_failure: rollback`)."""
    result = "failed" if report is None else report.result
    kind = RESULT_KINDS.get(result, RUN_FAILED)
    plan = started.decision.plan
    rolled_back = () if report is None else report.rolled_back
    if (kind == RUN_SUCCEEDED and plan is not None and plan.rollback) or rolled_back:
        kind = RUN_ROLLED_BACK
    failed_step = None if report is None else report.failed_step
    reason = str(error) if report is None else report.reason
    return Notice(
        f"{kind}/{started.run_id}",
        kind,
        at,
        f"run {started.run_id} -> {started.environment.name}: {result}"
        + (f" at step {failed_step}" if failed_step else "")
        + (f" ({reason})" if reason and kind != RUN_SUCCEEDED else "")
        + (f"; rolled back to {', '.join(rolled_back)}" if rolled_back else ""),
        started.environment.name,
        {
            "run": started.run_id,
            "result": result,
            "failed_step": failed_step,
            "reason": reason,
            "retry_of": started.decision.retry_of,
            "rolled_back": list(rolled_back),
            **_plan_data(started.decision),
        },
    )


def unhealthy_notice(instance: str, failures: int, error: str, at: datetime) -> Notice:
    return Notice(
        f"{SERVICE_UNHEALTHY}/{instance}/{at.isoformat()}",
        SERVICE_UNHEALTHY,
        at,
        f"reconciler {instance}: {failures} passes failed in a row: {error}",
        None,
        {"instance": instance, "failed_passes": failures, "error": error},
    )


def drift_notices(drift: DriftReport, at: datetime) -> list[Notice]:
    """One notice per application adrift, once per recorded and found version."""
    return [
        Notice(
            f"{DRIFT_FOUND}/{item.environment}/{item.application}/{item.recorded}/{item.current}",
            DRIFT_FOUND,
            at,
            item.text(),
            item.environment,
            {"application": item.application, "recorded": item.recorded, "found": item.current},
        )
        for item in drift.drift
    ]


class Notifications:
    """The service's notices: routed by the last pass's policy, queued on the courier."""

    def __init__(self, courier: Courier, instance: str, log: Log) -> None:
        self.courier = courier
        self.instance = instance
        self._log = log
        self._routes: tuple[Route, ...] = ()
        # The waiting plans told, as the last pass found them: a plan waits pass after pass.
        self._waiting: frozenset[str] = frozenset()
        self._unknown: set[str] = set()  # targets routed to that the --notify file lacks
        self._failures = 0

    def start(self) -> None:
        self.courier.start()

    def close(self) -> None:
        self.courier.close()

    def after_pass(self, report: PassReport, started: Sequence[StartedRun], at: datetime) -> None:
        self._failures = 0
        if report.policy is not None:
            self._routes = report.policy.notifications
        notices = pass_notices(report, started, at)
        waiting = frozenset(notice.id for notice in notices if notice.kind == PLAN_WAITING)
        for notice in notices:
            if notice.id not in self._waiting:
                self.tell(notice)
        self._waiting = waiting

    def after_failed_pass(self, error: str, at: datetime) -> None:
        self._failures += 1
        if self._failures == UNHEALTHY_AFTER:  # once an outage, until a pass works again
            self.tell(unhealthy_notice(self.instance, self._failures, error, at))

    def after_run(
        self,
        started: StartedRun,
        report: RunReport | None,
        error: BaseException | None,
        at: datetime,
    ) -> None:
        self.tell(run_notice(started, report, error, at))

    def hears(self, kind: str) -> bool:
        """Whether some route sends `kind` (to spare looking for what nobody would hear)."""
        return any(route.events is None or kind in route.events for route in self._routes)

    def tell(self, notice: Notice) -> None:
        for target in targets_for(notice, self._routes):
            if target in self.courier.config.targets:
                self.courier.send(notice, target)
            elif target not in self._unknown:
                self._unknown.add(target)
                self._log(
                    "warning",
                    "notify-unknown-target",
                    f"teams.yaml routes notifications to '{target}', which the --notify file "
                    "does not define: they are not sent",
                    {"target": target},
                )
