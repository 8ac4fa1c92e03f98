"""App: verify, then decide, the one pipeline behind `plan`, `status`, `verify-mergeable` and the
service's passes (`apply`, `watch`).

A walk brings the effective state to a tip (`authorise`); `decide` reads its inputs from
that walk (`decide.gather`) and decides every plan on the tip; plans into an environment
whose driver cannot load here wait for it (`decide.hold`). The read-only
commands (`session.Session.observe`) and the service (`reconcile.Reconciler`) both call
`verify_then_decide` (or `observe`, after a walk of their own), and get the same frozen
value back, so the two can never decide differently on the same history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.decide import Decision, History, decide, driver_targets, gather, hold
from reconciler.drivers import unavailable

if TYPE_CHECKING:
    from reconciler.authorise import Authoriser, VerifyResult
    from reconciler.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DriverCheck:
    """Whether an executable plan waits for its environment's driver, and how that is asked.

    `root`: load each driver with it as the default root (the service, which is about
    to run them); None: only look each driver's type up (`plan` starts nothing).
    """

    root: Path | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """One pass of the pipeline: the walk's result, the decision's inputs, every plan decided."""

    verified: VerifyResult
    history: History
    decisions: tuple[Decision, ...]
    # Environments whose next plan waits because their driver cannot load here, and why.
    held: Mapping[str, ConfigError]


def observe(
    walker: Authoriser,
    verified: VerifyResult,
    now: datetime,
    *,
    drivers: DriverCheck | None,
) -> Observation:
    """Decide every plan on the tip `walker` has just walked to (`verified`), as of `now`.

    `drivers` None: the drivers are not asked (a merge judged before it lands, whose
    plans run on the service's machine, not this one).
    """
    history = gather(walker, verified.tip)
    decisions = decide(history, now)
    held: Mapping[str, ConfigError] = {}
    if drivers is not None:
        decisions, held = hold(decisions, driver_problems(walker, history, decisions, drivers))
    return Observation(verified, history, decisions, dict(held))


def driver_problems(
    walker: Authoriser, history: History, decisions: tuple[Decision, ...], check: DriverCheck
) -> Mapping[str, ConfigError]:
    """Why the drivers of the executable plans' environments cannot load here, if so,
    read from the walk's effective state (so before a dry run discards it)."""
    environments = [history.policy.environments[name] for name in driver_targets(decisions)]
    return unavailable(environments, walker.effective_file, check.root)


def verify_then_decide(
    walker: Authoriser,
    tip: str,
    now: datetime,
    *,
    drivers: DriverCheck | None,
) -> Observation:
    """Walk to `tip`, then decide (`observe`), in the store's open transaction, whose
    owner keeps or discards what the walk wrote (`Authoriser.run`)."""
    return observe(walker, walker.run(tip), now, drivers=drivers)
