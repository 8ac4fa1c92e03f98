"""Stage 4, decide: what the service tells people, and which named target hears it.

Called by the service (`app/notices.py`), which derives notices from a pass's
and a run's results, and routes each through `targets_for` with the policy in
force: teams.yaml's `notifications:` routes (docs/design.md, "Notifications").
The targets' addresses and secrets are not policy: they live on the service's
machine (`adapters/notify.py`). Pure values and one rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from msgspec import Struct, field

from reconciler.core.model import Route

# A target's name, in teams.yaml and the --notify file alike: the schemas' `identifier`.
TARGET_NAME: Final = re.compile(r"(?=.{1,63}\Z)[a-z0-9]+([._-][a-z0-9]+)*")
# Every event a route may name, as teams.schema.json lists them (a test holds the two alike).
RUN_STARTED: Final = "run.started"
RUN_SUCCEEDED: Final = "run.succeeded"
RUN_FAILED: Final = "run.failed"
RUN_INTERRUPTED: Final = "run.interrupted"
RUN_ROLLED_BACK: Final = "run.rolled-back"
PLAN_REFUSED: Final = "plan.refused"
PLAN_WAITING: Final = "plan.waiting"
DRIFT_FOUND: Final = "drift.found"
SERVICE_UNHEALTHY: Final = "service.unhealthy"
EVENTS: Final = (
    RUN_STARTED,
    RUN_SUCCEEDED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_ROLLED_BACK,
    PLAN_REFUSED,
    PLAN_WAITING,
    DRIFT_FOUND,
    SERVICE_UNHEALTHY,
)


class Notice(Struct, frozen=True):
    """One thing to tell: `id` names it for good (a target hears each id once, even across
    restarts), `summary` is its one line for people, `data` its facts for machines."""

    id: str
    kind: str
    at: datetime
    summary: str
    environment: str | None = None  # None: the service's own (`service.unhealthy`)
    data: Mapping[str, Any] = field(default_factory=dict)


def targets_for(notice: Notice, routes: tuple[Route, ...]) -> tuple[str, ...]:
    """The targets that hear `notice`, each once, in the routes' order.

    A route naming environments hears only notices of those environments; the
    service's own notices (no environment) go only to routes naming none.
    """
    chosen: dict[str, None] = {}
    for route in routes:
        if route.events is not None and notice.kind not in route.events:
            continue
        if route.environments is not None and notice.environment not in route.environments:
            continue
        chosen[route.target] = None
    return tuple(chosen)
