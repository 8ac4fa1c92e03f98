"""App: continuous reconciliation (`reconciler watch`), a pass on every change of the branch.

Called by `reconciler watch`. One thread (the caller's) runs the passes, so
there are never two at once; everything else only *asks* for a pass through
the `Trigger`, which coalesces: requests that arrive during a pass make
exactly one more pass, so no change is ever missed.

What asks:

- local repository (the repository is the source of truth): file events on
  the branch's ref (`watcher`), debounced; a slow safety poll for lost events;
- remote: `git ls-remote` of the branch every `interval` seconds;
- the webhook (`webhook`), when listening: GitHub and GitLab push events
  (the same listener serves the pipeline pages, read again after each pass);
- a worker that finished a run (its environment is free for the next one);
- the clock: a retry after a failed pass (with backoff), the opening of a
  deploy window a plan waits for, and a full resync every few minutes (for
  leases that pass and anything else that changes with time alone).

Events and polls are hints: the branch is re-read and a pass runs only when
its commit differs from the one the last pass left it at. Webhooks, workers
and the clock force a pass. A pass decides and publishes start records
(`Reconciler.watch_pass`); the runs go to one worker per environment
(`workers`). One `Reconciler` (one open repository, one state store) serves
every pass, so a pass costs only what changed.

Stopping (`stop`, signal-safe): no new pass starts; every worker finishes
its driver step in progress and records the run (`interrupted` when steps
remain); then `run` returns. A pass that raises is logged and retried with
backoff; the watcher never dies of one bad commit. Everything it has to say
goes to the `log` callback as `LogEvent`s; it never prints.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from reconciler.adapters.metrics import Metrics
from reconciler.adapters.notify import Courier, log_path
from reconciler.adapters.watcher import RefWatcher
from reconciler.adapters.webhook import Receiver, WebhookServer
from reconciler.app.notices import Notifications
from reconciler.app.passes import Clock, Options, PassReport, RunReport, StartedRun
from reconciler.app.reconcile import Reconciler
from reconciler.app.watch_drift import DriftChecks
from reconciler.app.watch_endpoints import Endpoints
from reconciler.app.watch_values import (
    STOP_CHECK,
    Level,
    LogEvent,
    PassSummary,
    Request,
    Trigger,
    WatchSettings,
    host_text,
)
from reconciler.app.workers import Workers
from reconciler.core.errors import ReconcilerError, UsageError

LOCK_WAIT: Final = 1.0  # seconds to follow a ref whose lock file is held
LOCK_POLL: Final = 0.005


class Watch:
    """The watcher: sources of triggers, the pass loop, the workers."""

    def __init__(
        self,
        repo_dir: Path,
        options: Options,
        settings: WatchSettings,
        *,
        clock: Clock,
        log: Callable[[LogEvent], None],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._emit = log
        self._log_lock = threading.Lock()
        self._stop = False
        self.metrics = Metrics()
        self.reconciler = Reconciler(
            repo_dir,
            options,
            clock=clock,
            sleep=time.sleep,
            stop_requested=self.stopping,
            on_driver_step=self.metrics.driver_step,
        )
        self.remote = options.remote
        self.branch = self.reconciler.branch
        self.trigger = Trigger()
        self.workers = Workers(self.reconciler.run_started, self._run_done)
        self._ref_watcher: RefWatcher | None = None
        self._webhook: WebhookServer | None = None
        self._known: str | None = None  # the commit the last pass left the branch at
        self._reconciled: str | None = None  # ... the last pass that did not fail
        self._poll_error: str | None = None
        self._worked = False  # a pass has succeeded
        self.endpoints = Endpoints(
            self.reconciler,
            self.trigger,
            self.metrics,
            self.workers,
            remote=self.remote,
            started_at=clock(),
            stopping=self.stopping,
            log=self._log,
        )
        self.notices: Notifications | None = None
        if settings.notify is not None:
            instance = self.reconciler.instance
            courier = Courier(
                log_path(self.reconciler.store.path),
                settings.notify,
                source=f"/reconciler/{instance}",
                log=self._notify_log,
            )
            self.notices = Notifications(courier, instance, self._notify_log)
        self.drift = DriftChecks(self.reconciler, self.notices, clock, self._log, self.stopping)

    # -- control ------------------------------------------------------------------

    def stopping(self) -> bool:
        return self._stop

    def stop(self) -> None:
        """Ask the watcher to stop. Safe in a signal handler: one assignment, no lock."""
        self._stop = True

    @property
    def webhook_address(self) -> tuple[str, int] | None:
        return self._webhook.address if self._webhook else None

    def run(self) -> None:
        """Watch until `stop()`; then let the workers record their runs, and close."""
        try:
            self._open_sources()
            self.drift.start()
            self.trigger.request("start", force=True)
            self._loop()
        finally:
            self._close()

    # -- sources ------------------------------------------------------------------

    def _open_sources(self) -> None:
        settings = self.settings
        if self.notices is not None:
            self.notices.start()
        shard = self.reconciler.shard
        if self.remote is None:
            repo = self.reconciler.repo
            self._ref_watcher = RefWatcher(repo.common_dir, self.branch, self._file_event)
            self._ref_watcher.start()
            how = f"file events on {repo.common_dir}, safety poll every {settings.interval:g} s"
        else:
            how = f"git ls-remote {self.remote} every {settings.interval:g} s"
        self._log(
            "info",
            "watching",
            f"watching {self.branch} ({how}) as {self.reconciler.instance}"
            + (f", starting runs only in {', '.join(shard)}" if shard is not None else ""),
            branch=self.branch,
            remote=self.remote,
            repository=str(self.reconciler.repo.path),
            instance=self.reconciler.instance,
            interval=settings.interval,
            environments=None if shard is None else list(shard),
        )
        if settings.listen is not None:
            host, port = settings.listen
            self._webhook = WebhookServer(
                host,
                port,
                settings.webhook_secret or b"",
                Receiver(
                    self.endpoints.delivered,
                    self.endpoints.refused,
                    self.endpoints.health,
                    self.endpoints.ready,
                    self.metrics.exposition,
                ),
                pages=settings.pages,
            )
            if settings.pages is not None:
                settings.pages.start(self._pages_problem)
            self._webhook.start()
            bound_host, bound_port = self._webhook.address
            address = f"http://{host_text(bound_host)}:{bound_port}"
            self._log(
                "info",
                "listening",
                f"listening for webhooks on {address}/webhook "
                f"(health: /healthz, readiness: /readyz, metrics: /metrics"
                + (f", pipeline pages: {address}/)" if settings.pages is not None else ")"),
                host=bound_host,
                port=bound_port,
            )

    def _pages_passed(self) -> None:
        if self.settings.pages is not None:
            self.settings.pages.passed()

    def _pages_problem(self, problem: str | None) -> None:
        if problem is None:
            self._log("info", "pages-read-recovered", "the pipeline pages read the branch again")
        else:
            self._log(
                "warning",
                "pages-read-failed",
                f"the pipeline pages could not read the branch; they show the last good "
                f"read: {problem}",
            )

    def _file_event(self, what: str) -> None:
        self.trigger.request("event")

    # -- the loop -------------------------------------------------------------------

    def _loop(self) -> None:
        schedule = _Schedule.starting(self.settings, time.monotonic())
        while not self.stopping():
            request = self.trigger.take(schedule.wait())
            if self.stopping():  # asked by a signal handler, meanwhile
                break
            now = time.monotonic()
            request = request | schedule.clocked(now)
            if schedule.poll_due(now):
                request = request | Request(frozenset({"poll"}), False)
                self.drift.want()
            if not request.reasons:
                continue
            if "event" in request.reasons:
                request = self._debounce(request)
            if not request.force and not self._branch_moved():
                continue
            if request.force:
                schedule.forced()
            report = self._pass(request)
            if report is None:
                schedule.failed()
                self._known = self._tip_or_none()
                continue
            schedule.succeeded(self._next_window(report))

    def _debounce(self, request: Request) -> Request:
        """Gather a burst of events: until `debounce` passes quietly, at most `debounce_max`."""
        settings = self.settings
        end = time.monotonic() + settings.debounce_max
        while (remaining := min(settings.debounce, end - time.monotonic())) > 0:
            more = self.trigger.take(remaining)
            if not more.reasons:
                break
            request = request | more
        return request

    def _tip(self) -> str | None:
        repo = self.reconciler.repo
        if self.remote is not None:
            return repo.ls_remote(self.remote, self.branch)
        return repo.try_resolve(f"refs/heads/{self.branch}")

    def _tip_or_none(self) -> str | None:
        try:
            return self._tip()
        except ReconcilerError:
            return None

    def _branch_moved(self) -> bool:
        """Whether the branch is not where the last pass left it (the cheap check)."""
        try:
            tip = self._tip()
        except ReconcilerError as error:
            self._poll_outage(error)
            return False
        self._poll_outage(None)
        tip = self._follow_lock(tip)
        if tip is not None:
            self._count_behind(tip)
        return tip is not None and tip != self._known

    def _poll_outage(self, error: ReconcilerError | None) -> None:
        """Log a failed read of the branch once per outage, not once per poll, and its end
        (`error` None: the branch was read)."""
        if error is not None:
            if str(error) != self._poll_error:
                self._poll_error = str(error)
                self._log("warning", "poll-failed", f"cannot read {self.branch}: {error}")
        elif self._poll_error is not None:
            self._poll_error = None
            self._log("info", "poll-recovered", f"{self.branch} can be read again")

    def _follow_lock(self, tip: str | None) -> str | None:
        """The tip once the ref's lock is released, when it has not moved yet."""
        watcher = self._ref_watcher
        if tip == self._known and watcher is not None:
            # An event can come a moment before Git's rename (the lock's creation or write):
            # follow the ref while its lock is held.
            deadline = time.monotonic() + LOCK_WAIT
            while tip == self._known and watcher.lock_held() and time.monotonic() < deadline:
                time.sleep(LOCK_POLL)
                tip = self._tip_or_none()
        return tip

    def _count_behind(self, tip: str) -> None:
        """The first-parent commits from where the last good pass left the branch to `tip`;
        not counted while they are not here (a remote's, until a pass fetches them)."""
        known = self._reconciled
        if known == tip or known is None:
            behind = 0 if known == tip else None
        else:
            try:
                behind = len(self.reconciler.repo.first_parent_chain(tip, known))
            except ReconcilerError:
                behind = None
        if behind is not None:
            self.metrics.commits_behind(behind)

    def _pass(self, request: Request) -> PassReport | None:
        number = self.endpoints.passes + 1
        at = self.clock()
        began = time.monotonic()
        trigger = tuple(sorted(request.reasons))
        try:
            report, started = self.reconciler.watch_pass()
        except Exception as error:  # logged and retried: never die of one bad commit
            if isinstance(error, UsageError) and not self._worked:
                # The command line asks what main cannot give (`--environments` naming an
                # environment no file defines): it stops, as `apply` does. Once a pass has
                # worked, a commit brought it about, and it is logged and retried.
                raise
            duration = time.monotonic() - began
            self._count_pass(duration, None)
            self._failed_pass(number, at, duration, trigger, error)
            self._pages_passed()
            if self.notices is not None:
                self.notices.after_failed_pass(str(error), at)
            return None
        duration = time.monotonic() - began
        self._worked = True
        self.drift.passed(began, started)
        for run in started:
            self.workers.submit(run)
        self._known = self._reconciled = report.settled or report.tip
        self._count_pass(duration, report, at)
        summary = PassSummary(
            number,
            at,
            report.tip,
            "ok",
            duration,
            trigger,
            tuple(run.run_id for run in started),
        )
        self.endpoints.pass_ended(summary)
        self._log_pass(summary, report, started)
        self._pages_passed()
        if number == 1:
            self.drift.want()  # at start, then at every poll
        if self.notices is not None:
            self.notices.after_pass(report, started, at)
        return report

    def _count_pass(
        self, duration: float, report: PassReport | None, at: datetime | None = None
    ) -> None:
        """The metrics of a pass: `report` None when it failed."""
        metrics = self.metrics
        store = self.reconciler.store
        metrics.signature_cache(store.signature_hits, store.signature_misses)
        metrics.pass_done(
            duration, ok=report is not None, began_at=at.timestamp() if at is not None else None
        )
        if report is None:
            return
        metrics.refused(len(report.refused))
        waiting: dict[str, int] = {}
        for decision in report.decisions:
            if decision.status == "waiting":
                for what in {wait.what for wait in decision.waits}:
                    waiting[what] = waiting.get(what, 0) + 1
        metrics.plans_waiting(waiting)
        metrics.commits_behind(0)  # the branch as this pass read it is reconciled

    def _failed_pass(
        self,
        number: int,
        at: datetime,
        duration: float,
        trigger: tuple[str, ...],
        error: Exception,
    ) -> None:
        if isinstance(error, ReconcilerError):
            text = str(error)
            extra: dict[str, Any] = {}
        else:
            text = f"internal error: {type(error).__name__}: {error}"
            extra = {"traceback": traceback.format_exc()}
        summary = PassSummary(number, at, self._known or "", "error", duration, trigger, (), text)
        self.endpoints.pass_ended(summary)
        self._log(
            "error",
            "pass-failed",
            f"pass {number} failed after {duration:.3f} s (retrying with backoff): {text}",
            **summary.as_json(),
            **extra,
        )

    def _log_pass(
        self, summary: PassSummary, report: PassReport, started: list[StartedRun]
    ) -> None:
        unauthorised = [verdict.commit for verdict in report.landings if not verdict.authorised]
        outcome = _outcome(report, started, unauthorised)
        self._log(
            "warning" if unauthorised or report.refused else "info",
            "pass",
            f"pass {summary.number}: {summary.commit[:12]} in {summary.duration:.3f} s "
            f"({', '.join(summary.trigger)})" + (f": {'; '.join(outcome)}" if outcome else ""),
            **summary.as_json(),
            landings=len(report.landings),
            unauthorised=unauthorised,
            refused=[str(ref) for ref in report.refused],
            interrupted=list(report.interrupted),
        )

    def _next_window(self, report: PassReport) -> float | None:
        """When the earliest deploy window a plan waits for opens, or its soak ends
        (monotonic), if any."""
        openings = [
            wait.until
            for decision in report.decisions
            for wait in decision.waits
            if wait.what in ("window", "soak") and wait.until is not None
        ]
        if not openings:
            return None
        seconds = (min(openings) - self.clock()).total_seconds()
        return time.monotonic() + min(max(seconds, 1.0), self.settings.resync)

    # -- workers ----------------------------------------------------------------------

    def _run_done(
        self, started: StartedRun, report: RunReport | None, error: BaseException | None
    ) -> None:
        fields = {
            "run": started.run_id,
            "plan": str(started.plan),
            "environment": started.environment.name,
        }
        self.metrics.run_finished(
            started.environment.name, "error" if report is None else report.result
        )
        self.drift.run_ended(started.environment.name)
        if report is None:
            self._log(
                "error",
                "run-failed",
                f"run {started.run_id} could not be completed: {error}",
                **fields,
                error=str(error),
            )
        else:
            failed = f" at step {report.failed_step}" if report.failed_step else ""
            self._log(
                "info" if report.result == "succeeded" else "warning",
                "run-finished",
                f"run {started.run_id} -> {started.environment.name}: {report.result}{failed}",
                **fields,
                result=report.result,
                failed_step=report.failed_step,
            )
        if self.notices is not None:
            self.notices.after_run(started, report, error, self.clock())
        self.trigger.request("run-finished", force=True)

    # -- shutting down ----------------------------------------------------------------

    def _close(self) -> None:
        busy = self.workers.busy()
        self._log(
            "info",
            "stopping",
            "stopping"
            + (
                ": finishing the driver step in progress of " + ", ".join(item.run for item in busy)
                if busy
                else ""
            ),
            running=[item.run for item in busy],
        )
        self._stop = True
        if self._ref_watcher is not None:
            self._ref_watcher.stop()
        self.drift.join()
        self.reconciler.recycle()  # a Ctrl-C may have killed Git's helpers with the group
        self.workers.close()
        self._flush_outbox()
        if self.notices is not None:  # after the workers: their runs' notices are queued
            self.notices.close()
        if self._webhook is not None:
            self._webhook.stop()
        if self.settings.pages is not None:
            self.settings.pages.close()
        self.reconciler.close()
        passes = self.endpoints.passes
        self._log("info", "stopped", f"stopped after {passes} pass(es)", passes=passes)

    def _flush_outbox(self) -> None:
        """Publish the finish records left in the outbox, once the workers are done."""
        try:
            flushed = self.reconciler.flush_outbox()
        except Exception as error:  # the records stay in the outbox for the next start
            self._log("error", "flush-failed", f"finish records stay in the outbox: {error}")
        else:
            if flushed:
                self._log(
                    "info", "flushed", f"published {flushed} finish record(s) from the outbox"
                )

    def _notify_log(
        self, level: Level, event: str, message: str, fields: Mapping[str, Any]
    ) -> None:
        self._log(level, event, message, **fields)

    def _log(self, level: Level, event: str, message: str, **fields: Any) -> None:
        with self._log_lock:
            self._emit(LogEvent(self.clock(), level, event, message, fields))


def _outcome(report: PassReport, started: list[StartedRun], unauthorised: list[str]) -> list[str]:
    """What a pass did, in the words of its log line: each part only when it happened."""
    outcome = []
    if report.landings:
        outcome.append(f"{len(report.landings)} landing(s) verified")
    if unauthorised:
        outcome.append(f"{len(unauthorised)} unauthorised")
    if report.interrupted:
        outcome.append(f"marked {', '.join(report.interrupted)} interrupted")
    if report.refused:
        outcome.append("refused " + _refused_text(report))
    if started:
        outcome.append(
            "started " + ", ".join(f"{run.run_id} -> {run.environment.name}" for run in started)
        )
    return outcome


def _refused_text(report: PassReport) -> str:
    """The plans a pass refused, each with why when the pass said."""
    return ", ".join(
        f"{ref} ({'; '.join(why)})" if (why := report.why_refused.get(ref)) else str(ref)
        for ref in report.refused
    )


@dataclass(slots=True)
class _Schedule:
    """When the clock asks the loop for a pass (monotonic seconds): the poll, the full
    resync, the retry after a failed pass (with its backoff), a deploy window's opening."""

    settings: WatchSettings
    next_poll: float
    next_resync: float
    backoff: float
    retry_at: float | None = None
    wake_at: float | None = None

    @classmethod
    def starting(cls, settings: WatchSettings, now: float) -> _Schedule:
        return cls(settings, now + settings.interval, now + settings.resync, settings.backoff_first)

    def wait(self) -> float:
        """How long the loop may wait for a request: until the clock's next, and briefly,
        so a stop asked by a signal is noticed."""
        due = (self.next_poll, self.next_resync, self.retry_at, self.wake_at)
        deadline = min(t for t in due if t is not None)
        return min(max(deadline - time.monotonic(), 0.0), STOP_CHECK)

    def clocked(self, now: float) -> Request:
        """The forced pass the clock asks for at `now`: a retry, a window, a resync."""
        clocked: set[str] = set()
        if self.retry_at is not None and now >= self.retry_at:
            clocked.add("retry")
            self.retry_at = None
        if self.wake_at is not None and now >= self.wake_at:
            clocked.add("window")
            self.wake_at = None
        if now >= self.next_resync:
            clocked.add("resync")
        return Request(frozenset(clocked), bool(clocked))

    def poll_due(self, now: float) -> bool:
        """Whether a poll is due at `now` (the next one is then `interval` later)."""
        if now < self.next_poll:
            return False
        self.next_poll = now + self.settings.interval
        return True

    def forced(self) -> None:
        """A forced pass is about to run: it counts as the resync."""
        self.next_resync = time.monotonic() + self.settings.resync

    def failed(self) -> None:
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, self.settings.backoff_max)

    def succeeded(self, wake_at: float | None) -> None:
        """A pass worked: no retry, the backoff anew, and a wake-up for the window it waits for."""
        self.backoff = self.settings.backoff_first
        self.retry_at = None
        self.wake_at = wake_at
