"""App: what the watcher's listener answers (`Endpoints`): webhook deliveries, which
may ask for a pass, and refusals, each counted and logged; `/healthz` and `/readyz`,
from the passes so far.

Called on the listener's threads while the pass loop runs: the passes' summary is
written by the loop (`pass_ended`) and read here under one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from reconciler.adapters.metrics import Metrics
from reconciler.adapters.webhook import Delivery
from reconciler.app.reconcile import Reconciler
from reconciler.app.watch_values import Log, PassSummary, Trigger, refusal_result
from reconciler.app.workers import Workers


class Endpoints:
    """The webhook's handlers, `/healthz` and `/readyz`, for one watcher."""

    def __init__(
        self,
        reconciler: Reconciler,
        trigger: Trigger,
        metrics: Metrics,
        workers: Workers,
        *,
        remote: str | None,
        started_at: datetime,
        stopping: Callable[[], bool],
        log: Log,
    ) -> None:
        self.reconciler = reconciler
        self.branch = reconciler.branch
        self.remote = remote
        self.trigger = trigger
        self.metrics = metrics
        self.workers = workers
        self._started_at = started_at
        self.stopping = stopping
        self._log = log
        self._passes = 0
        self._last: PassSummary | None = None
        self._verified = False  # a pass has verified the branch: ready (`/readyz`)
        self._health_lock = threading.Lock()

    @property
    def passes(self) -> int:
        """The passes so far; read without the lock by the loop, their only writer."""
        return self._passes

    def pass_ended(self, summary: PassSummary) -> None:
        """The loop's pass ended: the last one `/healthz` shows; a pass that worked
        verified the branch, and `/readyz` says ready from then on."""
        with self._health_lock:
            self._passes = summary.number
            self._last = summary
            if summary.result == "ok":
                self._verified = True

    def delivered(self, delivery: Delivery) -> str:
        wanted = f"refs/heads/{self.branch}"
        fields = {
            "provider": delivery.provider,
            "webhook_event": delivery.event,
            "ref": delivery.ref,
            "after": delivery.after,
            "delivery": delivery.delivery_id,
            "client": delivery.client,
        }
        if delivery.replayed:
            action, result = "ignored: the same delivery was received before", "replayed"
        elif delivery.event != "push":
            action, result = f"ignored: a {delivery.event} event, not a push", "ignored"
        elif delivery.ref is not None and delivery.ref != wanted:
            action, result = f"ignored: a push to {delivery.ref}, not {wanted}", "ignored"
        else:
            action, result = "pass triggered", "triggered"
            self.trigger.request(f"webhook-{delivery.provider}", force=True)
        self.metrics.webhook_delivery(result)
        self._log("info", "webhook", f"{delivery.provider} {delivery.event}: {action}", **fields)
        return action

    def refused(self, client: str, status: int, reason: str) -> None:
        self.metrics.webhook_delivery(refusal_result(status))
        self._log(
            "warning",
            "webhook-refused",
            f"webhook from {client} refused with {status}: {reason}",
            client=client,
            status=status,
            reason=reason,
        )

    def health(self) -> tuple[int, dict[str, Any]]:
        with self._health_lock:
            last = self._last
            passes = self._passes
        status = "starting" if last is None else "ok" if last.result == "ok" else "error"
        payload = {
            "status": status,
            "branch": self.branch,
            "remote": self.remote,
            "instance": self.reconciler.instance,
            "since": self._started_at.isoformat(),
            "passes": passes,
            "last_pass": last.as_json() if last else None,
            "running": [
                {"run": busy.run, "environment": busy.environment, "plan": busy.plan}
                for busy in self.workers.busy()
            ],
            "stopping": self.stopping(),
        }
        return (503 if status == "error" else 200), payload

    def ready(self) -> tuple[int, dict[str, Any]]:
        """Ready once a pass has verified the branch; a later failed pass is `/healthz`'s."""
        with self._health_lock:
            ready = self._verified
            passes = self._passes
        payload = {
            "status": "ready" if ready else "starting",
            "branch": self.branch,
            "instance": self.reconciler.instance,
            "passes": passes,
        }
        return (200 if ready else 503), payload
