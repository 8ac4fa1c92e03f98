"""App: drift, where a driver says something else runs than `deployments/<env>.yaml` records.

Called by `reconciler plan` and `status`, by `watch` at every poll, and by a
run before its first step. It asks each environment's driver what is
`current` for every application the effective deployments file lists. A
driver that cannot tell (returns None) reports no drift; one that cannot be
asked at all gets a note naming its environment file. A run that finds drift
in an application it deploys stops there (`stops_run`), unless its plan says
`override_drift: true`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from msgspec import Struct

from reconciler.adapters.drivers import Driver
from reconciler.core.errors import ReconcilerError
from reconciler.core.layout import environment_path
from reconciler.core.model import Environment, Plan, Policy
from reconciler.core.status import Drift

__all__ = ["Drift", "DriftReport", "drift_in", "find_drift", "stops_run"]


class DriftReport(Struct, frozen=True):
    drift: tuple[Drift, ...]
    # One per environment whose driver could not be asked, naming its file and why.
    notes: tuple[str, ...]


def find_drift(
    policy: Policy,
    deployed: Mapping[str, Mapping[str, str]],
    driver_for: Callable[[Environment], Driver],
) -> DriftReport:
    found: list[Drift] = []
    notes: list[str] = []
    for environment in policy.environments_in_order():
        recorded = deployed.get(environment.name, {})
        if not recorded:
            continue
        report = drift_in(environment, recorded, functools.partial(driver_for, environment))
        found.extend(report.drift)
        notes.extend(report.notes)
    return DriftReport(tuple(found), tuple(notes))


def drift_in(
    environment: Environment, recorded: Mapping[str, str], driver: Callable[[], Driver]
) -> DriftReport:
    """Drift in one environment, for the applications `recorded` (application -> version)."""
    found: list[Drift] = []
    # A driver that cannot be asked (not installed here, a program that does not
    # start) leaves this environment's drift unknown; it must not keep `plan` from
    # reporting every other plan and environment.
    try:
        asked = driver()
        for application, version in sorted(recorded.items()):
            current = asked.current(application, environment.name)
            if current is not None and current != version:
                found.append(Drift(environment.name, application, version, current))
    except (ReconcilerError, OSError) as error:
        reason = error.message if isinstance(error, ReconcilerError) else str(error)
        note = (
            f"{environment_path(environment.name)}: its driver could not be asked what "
            f"runs, so drift there is unknown: {reason}"
        )
        return DriftReport(tuple(found), (note,))
    return DriftReport(tuple(found), ())


def stops_run(plan: Plan, report: DriftReport) -> str | None:
    """Why a run of `plan` stops before its first step, or None: drift in an application
    it deploys (`report`, for those applications), unless the plan says `override_drift:
    true`. Where the driver already runs the version the plan deploys (a run that died
    before recording its step), deploying it overwrites nothing: no stop."""
    if plan.override_drift:
        return None
    targets = {entry.name: entry.version for entry in plan.applications}
    found = [item for item in report.drift if item.current != targets.get(item.application)]
    if not found:
        return None
    return (
        f"drift: {'; '.join(item.text() for item in found)}; the run stops before deploying "
        "over it (find out who changed it; to deploy over it, a plan.deploy holder sets "
        "override_drift: true in a new version of the plan)"
    )
