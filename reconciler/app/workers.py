"""App: per-environment workers; passes decide, workers run.

Called by `watch`. Each target environment gets one long-lived thread with a
queue; a run whose start record a pass published is handed to its
environment's worker, which runs the drivers and publishes the finish record
(`Reconciler.run_started`). So a ten-minute production run never delays a
QA deploy, and the pass that decided it returns at once. The passes never
start a second run for an environment with one in progress, so a queue holds
at most the run being handed over; a new trigger for a busy environment
waits its turn (the finish triggers the next pass).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from msgspec import Struct

from reconciler.app.passes import RunReport, StartedRun

Run = Callable[[StartedRun], RunReport]
Done = Callable[[StartedRun, RunReport | None, BaseException | None], None]


class Busy(Struct, frozen=True):
    run: str
    environment: str
    plan: str


class Workers:
    """One thread per environment, created on its first run, kept until `close()`."""

    def __init__(self, run: Run, done: Done) -> None:
        self._run = run
        self._done = done
        self._queues: dict[str, queue.SimpleQueue[StartedRun | None]] = {}
        self._threads: list[threading.Thread] = []
        self._busy: dict[str, Busy] = {}
        self._lock = threading.Lock()

    def submit(self, started: StartedRun) -> None:
        environment = started.environment.name
        with self._lock:
            self._busy[started.run_id] = Busy(started.run_id, environment, str(started.plan))
            work = self._queues.get(environment)
            if work is None:
                work = queue.SimpleQueue()
                self._queues[environment] = work
                thread = threading.Thread(
                    target=self._serve, args=(work,), name=f"worker-{environment}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        work.put(started)

    def busy(self) -> list[Busy]:
        """The runs handed over and not finished yet."""
        with self._lock:
            return list(self._busy.values())

    def _serve(self, work: queue.SimpleQueue[StartedRun | None]) -> None:
        while True:
            started = work.get()
            if started is None:
                return
            report: RunReport | None = None
            failure: BaseException | None = None
            try:
                report = self._run(started)
            except Exception as error:  # a driver or a publish failed: reported; it lives on
                failure = error
            finally:
                with self._lock:
                    self._busy.pop(started.run_id, None)
            self._done(started, report, failure)

    def close(self) -> None:
        """Let every worker finish what it holds, then end it; returns when all have ended."""
        with self._lock:
            queues = list(self._queues.values())
            threads = list(self._threads)
        for work in queues:
            work.put(None)
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
