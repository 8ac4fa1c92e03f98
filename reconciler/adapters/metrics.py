"""Adapter, http: the service's Prometheus metrics, in a registry of their own.

Called by `watch`, which tells it what happened (a pass, a run, a delivery); the
listener only serves `exposition()` on `GET /metrics`. A private
`CollectorRegistry`, not the client's global one: two watchers in one process
(the tests) never share counts, and nothing another library registers leaks out.

Every label's values are bounded: environments come from the policy, results
and reasons are small fixed sets of codes, drivers are the driver types.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Passes take milliseconds when nothing changed and seconds on a long history.
_PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Driver steps: a local copy takes milliseconds, a command minutes (the default timeout is 600 s).
_STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    """The service's metrics; each method is what the watcher calls when it happens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._pass_duration = Histogram(
            "reconciler_pass_duration_seconds",
            "How long a pass took, failed ones too.",
            buckets=_PASS_BUCKETS,
            registry=registry,
        )
        self._passes = Counter(
            "reconciler_passes",
            "Passes, by result (ok, error).",
            ["result"],
            registry=registry,
        )
        self._last_ok = Gauge(
            "reconciler_last_successful_pass_timestamp_seconds",
            "When the last pass that verified the branch began (Unix time).",
            registry=registry,
        )
        self._runs = Counter(
            "reconciler_runs",
            "Runs finished, by environment and result (succeeded, failed, interrupted, error).",
            ["environment", "result"],
            registry=registry,
        )
        self._refusals = Counter(
            "reconciler_refusals",
            "Plan versions refused (each recorded once).",
            registry=registry,
        )
        self._waiting = Gauge(
            "reconciler_plans_waiting",
            "Plan versions waiting after the last pass, by what they wait for.",
            ["reason"],
            registry=registry,
        )
        self._behind = Gauge(
            "reconciler_commits_behind",
            "First-parent commits on the branch tip that no pass has reconciled yet.",
            registry=registry,
        )
        self._deliveries = Counter(
            "reconciler_webhook_deliveries",
            "Requests to the webhook listener, by result "
            "(triggered, ignored, replayed, unauthorised, invalid, busy, error).",
            ["result"],
            registry=registry,
        )
        self._step_duration = Histogram(
            "reconciler_driver_step_duration_seconds",
            "How long a driver took to deploy one step (one attempt), by driver type.",
            ["driver"],
            buckets=_STEP_BUCKETS,
            registry=registry,
        )
        self._cache_hits = Counter(
            "reconciler_signature_cache_hits",
            "Commit signatures found checked in the state store's cache.",
            registry=registry,
        )
        self._cache_misses = Counter(
            "reconciler_signature_cache_misses",
            "Commit signatures looked up and not in the cache (so checked).",
            registry=registry,
        )
        self._lock = threading.Lock()  # the bookkeeping below, not the metrics (thread-safe)
        self._waiting_reasons: set[str] = set()
        self._cache_seen = (0, 0)

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def pass_done(self, duration: float, *, ok: bool, began_at: float | None = None) -> None:
        """A pass ended; `began_at` (Unix time) when it verified the branch."""
        self._pass_duration.observe(duration)
        self._passes.labels("ok" if ok else "error").inc()
        if ok and began_at is not None:
            self._last_ok.set(began_at)

    def run_finished(self, environment: str, result: str) -> None:
        self._runs.labels(environment, result).inc()

    def refused(self, count: int) -> None:
        if count:
            self._refusals.inc(count)

    def plans_waiting(self, by_reason: Mapping[str, int]) -> None:
        """How many plan versions wait, by reason; a reason no plan waits for any more reads 0."""
        with self._lock:
            self._waiting_reasons |= by_reason.keys()
            for reason in self._waiting_reasons:
                self._waiting.labels(reason).set(by_reason.get(reason, 0))

    def commits_behind(self, count: int) -> None:
        self._behind.set(count)

    def webhook_delivery(self, result: str) -> None:
        self._deliveries.labels(result).inc()

    def driver_step(self, driver: str, duration: float) -> None:
        self._step_duration.labels(driver).observe(duration)

    def signature_cache(self, hits: int, misses: int) -> None:
        """The cache's running totals (since the store opened): counted from the last ones."""
        with self._lock:
            seen_hits, seen_misses = self._cache_seen
            self._cache_seen = (max(hits, seen_hits), max(misses, seen_misses))
        if hits > seen_hits:
            self._cache_hits.inc(hits - seen_hits)
        if misses > seen_misses:
            self._cache_misses.inc(misses - seen_misses)
