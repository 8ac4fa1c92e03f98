"""App: the values of a reconcile pass: what it is told (`Options`), the runs it starts
(`StartedRun`) and reports (`RunReport`, `PassReport`), what one round leaves the next
(`RoundDecisions`), and the name a state directory gives its reconciler (`default_instance`).

Apart from the pass (`reconcile`) that makes them: the watcher, its workers,
the notices and the reporters read them without the pass's machinery.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from msgspec import Struct, field

from reconciler.app.record import RecordWriter
from reconciler.core.decide import Decision
from reconciler.core.decide_values import History
from reconciler.core.errors import ConfigError
from reconciler.core.events import PlanRef
from reconciler.core.gates import Horizon
from reconciler.core.model import Environment, Policy
from reconciler.core.runs import Dependents
from reconciler.core.verdicts import LandingVerdict

Clock = Callable[[], datetime]


class Options(Struct, frozen=True):
    branch: str | None = None
    remote: str | None = None
    state_dir: Path | None = None
    key: Path | None = None
    instance: str | None = None
    driver_root: Path | None = None
    dry_run: bool = False
    # How often one round may try again (lost races, bookkeeping) before it gives up: a
    # reconciler racing in a loop. A pass has as many rounds as its backlog needs.
    max_rounds: int = 1000
    # `--environments`: the only environments it starts runs in (`runs.in_shard`); None: any.
    environments: frozenset[str] | None = None
    # `--checkpoint-key`: the keys whose checkpoints a fresh state goes on from (none: the
    # trust anchor's service accounts').
    checkpoint_keys: tuple[Path, ...] = ()


class RunReport(Struct, frozen=True):
    run: str
    plan: PlanRef
    environment: str
    result: str
    failed_step: str | None
    retry_of: str | None
    reason: str | None = None  # why it failed: the failed step's summary, or the error
    # With `on_failure: rollback`: what a failed run put back, "<app> <version>" each.
    rolled_back: tuple[str, ...] = ()


class StartedRun(Struct, frozen=True):
    """A run whose start record is published: the lock is held, the drivers may go."""

    decision: Decision
    run_id: str
    environment: Environment
    writer: RecordWriter
    finished: tuple[str, ...] = ()  # a retry: the runs that deployed the steps it skips
    lease_until: datetime | None = None  # as its start record says

    @property
    def plan(self) -> PlanRef:
        return self.decision.ref


class PassReport(Struct):
    tip: str = ""
    settled: str = ""  # where this pass left the branch: its last publish, else the tip it read
    decisions: tuple[Decision, ...] = ()
    landings: list[LandingVerdict] = field(default_factory=list)
    runs: list[RunReport] = field(default_factory=list)
    refused: list[PlanRef] = field(default_factory=list)
    why_refused: dict[PlanRef, tuple[str, ...]] = field(default_factory=dict)  # by `refused`
    interrupted: list[str] = field(default_factory=list)
    # The environment each of `interrupted` ran in (the service's notices say where).
    interrupted_in: dict[str, str] = field(default_factory=dict)
    would_run: tuple[Decision, ...] = ()
    dry_run: bool = False
    shard: tuple[str, ...] | None = None  # `--environments`, sorted; None: not sharded
    # Environments whose next plan waits because their driver cannot load here, and why.
    held: dict[str, ConfigError] = field(default_factory=dict)
    policy: Policy | None = None  # the policy in force at `settled` (the notices' routes)
    # What deployments/ records there, by environment and application (the service's drift).
    deployed: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # How many plan versions the pass decided, a round's re-decisions counted each time:
    # about twice the plans a backlog runs, never rounds times plans (`RoundDecisions`).
    decided: int = 0
    checkpoint: str = ""  # the checkpoint this pass published, if it did

    @property
    def failed(self) -> bool:
        return (
            bool(self.refused)
            or bool(self.held)
            or any(run.result == "failed" for run in self.runs)
        )


class RoundDecisions(Struct, frozen=True):
    """A round's decisions, for the next round to start from (of the pass, or of the
    next pass when this one ends with them).

    The next round decides again only what this reconciler's own records since
    change (`runs.touched_by`) and the next plan of each environment, with the
    clock of its start; the rest holds as long as nobody else lands a commit that
    may change a decision (`inert`) and the clock changes none (`horizon`), for
    `DECIDE_ALL_AFTER` at most.
    """

    on: str  # the tip the round's start records left: the decisions hold there
    decisions: Mapping[str, Decision]  # every plan on main, by path, before `runs.hold`
    history: History
    since: float  # monotonic time every plan was last decided
    plans: Dependents  # `runs.dependents`, of that time
    horizon: Horizon  # until when the clock leaves every decision as it is
    started: Mapping[str, PlanRef] = field(default_factory=dict)  # run id -> its plan version


def default_instance(state_dir: Path) -> str:
    """Stable across restarts (so a restarted reconciler recognises its own runs)."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"
