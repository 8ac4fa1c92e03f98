"""App: drift, where a driver says something else runs than `deployments/<env>.yaml` records.

Called by `reconciler plan`. It asks each environment's driver what is
`current` for every application the effective deployments file lists. A
driver that cannot tell (returns None) reports no drift; one that cannot be
asked at all gets a note naming its environment file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.adapters.drivers import Driver
from reconciler.core.errors import ReconcilerError
from reconciler.core.layout import environment_path
from reconciler.core.model import Environment, Policy


@dataclass(frozen=True, slots=True)
class Drift:
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


@dataclass(frozen=True, slots=True)
class DriftReport:
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
        # A driver that cannot be asked (not installed here, a program that
        # does not start) leaves this environment's drift unknown; it must not
        # keep `plan` from reporting every other plan and environment.
        try:
            driver = driver_for(environment)
            for application, version in sorted(recorded.items()):
                current = driver.current(application, environment.name)
                if current is not None and current != version:
                    found.append(Drift(environment.name, application, version, current))
        except (ReconcilerError, OSError) as error:
            reason = error.message if isinstance(error, ReconcilerError) else str(error)
            notes.append(
                f"{environment_path(environment.name)}: its driver could not be asked what "
                f"runs, so drift there is unknown: {reason}"
            )
    return DriftReport(tuple(found), tuple(notes))
