"""App: the watcher's drift checks, asked of the drivers on a thread of their own
(`DriftChecks`), so a `current` that hangs until its timeout never holds up a pass.

`Watch` holds one: it asks for a check at its first pass and at every poll
(`want`), tells it what each pass read and the runs it started (`passed`), and
each run that ended (`run_ended`). Drift is logged once per change, never
committed; an environment with a run in progress, or one ended since the last
pass began, keeps what was found there before.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable

from reconciler.app.drift import Drift, DriftReport
from reconciler.app.notices import Notifications, drift_notices
from reconciler.app.passes import Clock, StartedRun
from reconciler.app.reconcile import Reconciler
from reconciler.app.watch_values import STOP_CHECK, Log
from reconciler.core.decide_values import History

# What a check found: the drift (kept where a run left it stale), and the notes.
Found = tuple[frozenset[Drift], frozenset[str]]


class DriftChecks:
    """Drift checks off the pass loop: one at a time, on the thread `start` starts."""

    def __init__(
        self,
        reconciler: Reconciler,
        notices: Notifications | None,
        clock: Clock,
        log: Log,
        stopping: Callable[[], bool],
    ) -> None:
        self.reconciler = reconciler
        self.notices = notices
        self.clock = clock
        self._log = log
        self.stopping = stopping
        # Drift (`_check_drift`): what was last logged, and the environments whose
        # deployments/ the last pass may not have seen yet (a run there, or one ended since).
        self._drift: Found | None = None
        self._runs_lock = threading.Lock()
        self._running: Counter[str] = Counter()
        self._ended_at: dict[str, float] = {}
        self._observed: tuple[History | None, float] = (None, -math.inf)
        self._drift_wanted = threading.Event()
        self._drift_thread: threading.Thread | None = None

    def start(self) -> None:
        # Drivers are asked off the loop: a `current` that hangs until its timeout
        # must not hold up the next pass.
        self._drift_thread = threading.Thread(target=self._drift_checks, name="drift", daemon=True)
        self._drift_thread.start()

    def want(self) -> None:
        """Check at the next chance (the drift thread's next wake-up)."""
        self._drift_wanted.set()

    def passed(self, began: float, started: list[StartedRun]) -> None:
        """A pass that began at `began` (monotonic) worked and started `started`."""
        with self._runs_lock:
            # One value, read whole by the drift thread: what this pass read, and when
            # it began (runs ended before then are in it).
            self._observed = (self.reconciler.observed, began)
            self._running.update(run.environment.name for run in started)

    def run_ended(self, environment: str) -> None:
        with self._runs_lock:
            self._running[environment] -= 1
            self._ended_at[environment] = time.monotonic()

    def join(self) -> None:
        if self._drift_thread is not None:
            self._drift_thread.join(timeout=1.0)  # a driver asked meanwhile is not waited for

    def _drift_checks(self) -> None:
        while not self.stopping():
            if self._drift_wanted.wait(STOP_CHECK):
                self._drift_wanted.clear()
                self._check_drift()

    def _check_drift(self) -> None:
        """Ask the drivers what runs (`Reconciler.drift`); log the drift when it changed.

        Never a commit: drift is logged once per change, and `status` shows it. An
        environment with a run in progress, or one ended since the last pass began,
        keeps what was found there before: its deployments/ as last read is stale.
        """
        settled = self._last_read()
        if settled is None:
            return
        history, unsettled = settled
        try:
            report = self.reconciler.drift(history, self._asked(history, unsettled))
        except Exception as error:  # a driver's bug must not stop the watcher
            self._log("error", "drift-failed", f"drift could not be checked: {error}")
            return
        if self.notices is not None:  # each once per version found (the notice's id)
            for notice in drift_notices(report, self.clock()):
                self.notices.tell(notice)
        before = self._drift
        found = self._found(report, before, unsettled)
        self._drift = found
        if _worth_a_line(before, found):
            self._log_drift(found)

    def _last_read(self) -> tuple[History, set[str]] | None:
        """What the last pass read, and the environments whose deployments/ it may not have
        seen yet (a run there in progress, or one ended since it began); None before a pass
        has worked."""
        with self._runs_lock:
            history, observed_at = self._observed
            if history is None:
                return None
            unsettled = {
                name
                for name in history.policy.environments
                if self._running[name] > 0 or self._ended_at.get(name, -math.inf) >= observed_at
            }
        return history, unsettled

    def _asked(self, history: History, unsettled: set[str]) -> set[str]:
        """The environments whose drivers are asked: this instance's, settled."""
        shard = self.reconciler.shard
        return {
            name
            for name in history.policy.environments
            if name not in unsettled and (shard is None or name in shard)
        }

    @staticmethod
    def _found(report: DriftReport, before: Found | None, unsettled: set[str]) -> Found:
        """What the drivers report, with what was found before where a run left it stale."""
        kept = {item for item in (before[0] if before else ()) if item.environment in unsettled}
        return (frozenset({*report.drift, *kept}), frozenset(report.notes))

    def _log_drift(self, found: Found) -> None:
        drift = sorted(found[0], key=lambda item: (item.environment, item.application))
        message = (
            "drift: " + "; ".join(item.text() for item in drift)
            if drift
            else "no drift: every driver asked reports what deployments/ records"
        )
        self._log(
            "warning" if drift else "info",
            "drift",
            message + "".join(f"; note: {note}" for note in sorted(found[1])),
            drift=[
                {
                    "environment": item.environment,
                    "application": item.application,
                    "recorded": item.recorded,
                    "current": item.current,
                }
                for item in drift
            ],
            notes=sorted(found[1]),
        )


def _worth_a_line(before: Found | None, found: Found) -> bool:
    """Drift is logged when it changed; the first check, only when it found some (or a note)."""
    return not (found == before or (before is None and not found[0] and not found[1]))
