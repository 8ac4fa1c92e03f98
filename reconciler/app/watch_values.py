"""App: the watcher's values: its settings, its log lines, its pass requests and their
coalescing (`Trigger`), and each pass's summary (`/healthz`'s `last_pass`).

Apart from the loop (`watch.py`), so the reporters that print a `LogEvent` and the
command that builds `WatchSettings` need not load it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from msgspec import Struct, field

from reconciler.adapters.notify import NotifyConfig
from reconciler.adapters.webhook import Pages

STOP_CHECK: Final = 0.2  # seconds: how soon a stop requested by a signal is noticed

Level = Literal["info", "warning", "error"]


class WatchSettings(Struct, frozen=True):
    interval: float = 15.0  # remote: ls-remote period; local: safety poll period
    listen: tuple[str, int] | None = None
    webhook_secret: bytes | None = None
    debounce: float = 0.01  # quiet time that ends a burst of file events
    debounce_max: float = 0.05  # longest a burst may delay the pass
    resync: float = 300.0  # a full pass at least this often
    backoff_first: float = 1.0
    backoff_max: float = 60.0
    notify: NotifyConfig | None = None  # `--notify FILE`: the targets notices may go to
    pages: WatchedPages | None = None  # served beside the webhook, when listening


class WatchedPages(Pages, Protocol):
    """The pipeline pages on the listener (`reconciler.web.server.WatchPages`)."""

    def start(self, on_problem: Callable[[str | None], None]) -> None:
        """Read the branch after each pass from now on (off the caller's thread); a failed
        read, or None on recovery, goes to `on_problem`."""

    def passed(self) -> None:
        """A pass ended: read the branch again (off the caller's thread)."""

    def close(self) -> None: ...


class LogEvent(Struct, frozen=True):
    """One structured log line: what happened, and its fields (pass, commit, duration...)."""

    at: datetime
    level: Level
    event: str
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)


class Log(Protocol):
    """Where the watcher and its collaborators say what happened (`Watch._log`)."""

    def __call__(self, level: Level, event: str, message: str, **fields: Any) -> None: ...


class Request(Struct, frozen=True):
    reasons: frozenset[str]
    force: bool

    def __or__(self, other: Request) -> Request:
        return Request(self.reasons | other.reasons, self.force or other.force)


class Trigger:
    """Pending pass requests, coalesced; `take` waits for some and empties them."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._reasons: set[str] = set()
        self._force = False

    def request(self, reason: str, *, force: bool = False) -> None:
        with self._condition:
            self._reasons.add(reason)
            self._force = self._force or force
            self._condition.notify()

    def take(self, timeout: float) -> Request:
        with self._condition:
            if not self._reasons and timeout > 0:
                self._condition.wait(timeout)
            taken = Request(frozenset(self._reasons), self._force)
            self._reasons.clear()
            self._force = False
            return taken


class PassSummary(Struct, frozen=True):
    number: int
    at: datetime
    commit: str
    result: Literal["ok", "error"]
    duration: float
    trigger: tuple[str, ...]
    started: tuple[str, ...] = ()
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "pass": self.number,
            "at": self.at.isoformat(),
            "commit": self.commit,
            "result": self.result,
            "duration": round(self.duration, 4),
            "trigger": list(self.trigger),
            "started": list(self.started),
            "error": self.error,
        }


def refusal_result(status: int) -> str:
    """A refused request's result, as the metrics count it: a handful of values."""
    if status == 401:
        return "unauthorised"
    if status == 503:
        return "busy"
    if status >= 500:
        return "error"
    return "invalid"


def host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host
