"""Drift: where a driver says something else runs than `deployments/<env>.yaml` records.

Called by `reconciler plan`. It asks each environment's driver what is
`current` for every application the effective deployments file lists. A
driver that cannot tell (returns None) reports no drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.drivers import Driver
from reconciler.errors import ReconcilerError
from reconciler.model import Environment, Policy


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


def find_drift(
    policy: Policy,
    deployed: Mapping[str, Mapping[str, str]],
    driver_for: Callable[[Environment], Driver],
) -> tuple[Drift, ...]:
    found: list[Drift] = []
    for environment in policy.environments_in_order():
        recorded = deployed.get(environment.name, {})
        if not recorded:
            continue
        try:
            driver = driver_for(environment)
        except ReconcilerError:
            continue  # a driver not installed here cannot be asked
        for application, version in sorted(recorded.items()):
            current = driver.current(application, environment.name)
            if current is not None and current != version:
                found.append(Drift(environment.name, application, version, current))
    return tuple(found)
