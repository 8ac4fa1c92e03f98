"""Adapter, http: notifications, delivered off the run's path, logged, resent after a restart.

Called by the service (`app/notices.py`). The targets (`--notify FILE`, TOML)
live on the service's machine, never in Git: their URLs and secrets are
the machine's; which events reach which target is policy (teams.yaml
`notifications:`, `core/notices.py`).

A run hands a notice and a target to `Courier.send`, which only puts it on a
bounded queue (microseconds): a slow or dead target never slows or fails a
run. When the queue is full the *newest* notice is dropped, logged
(`notify-dropped`) and counted. One worker thread takes the queue, writes
each delivery to its log (`<branch>.notifications.sqlite` beside the state
store, a file of its own: the store is not this adapter's) and delivers it:

- a `webhook` target gets a CloudEvent (structured JSON, through the
  `cloudevents` SDK; CDEvents types where one fits) signed like GitHub's
  webhooks, `X-Reconciler-Signature-256: sha256=<hex HMAC-SHA256 of the body>`;
- an `apprise` target gets the notice's one line through `apprise` (chat,
  email: whatever its URLs name).

A failed attempt is retried with exponential backoff, up to `attempts`; then
it is marked failed and logged. A notice id reaches a target once: the log's
key is (id, target), so a restart that derives the same notice again sends
nothing, and deliveries still pending at a stop (or a crash) are resent when
the service starts again. `cloudevents` and `apprise` are imported by the
worker, on its first delivery: no command but `watch` loads them.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import os
import queue
import sqlite3
import threading
import time
import tomllib
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from msgspec import Struct

from reconciler.core.errors import UsageError
from reconciler.core.notices import RUN_ROLLED_BACK, RUN_SUCCEEDED, TARGET_NAME, Notice

LOG_SUFFIX: Final = ".notifications.sqlite"
SIGNATURE_HEADER: Final = "X-Reconciler-Signature-256"
STOP_CHECK: Final = 0.2  # seconds: how soon the worker notices a stop
FINAL_FLUSH: Final = 5.0  # seconds a stop gives due deliveries, one attempt each
# How long the log keeps a delivery that is settled (delivered or given up): a notice
# derived again within it (a plan still waiting after a restart) is not told again.
KEEP_SETTLED: Final = 30 * 86400.0
# CDEvents (cdevents.dev, spec 0.4) where one fits the event; the reconciler's own otherwise.
CDEVENTS_TYPES: Final = {
    RUN_SUCCEEDED: "dev.cdevents.service.deployed.0.2.0",
    RUN_ROLLED_BACK: "dev.cdevents.service.rolledback.0.2.0",
}

TargetKind = Literal["webhook", "apprise"]
Log = Callable[[Literal["info", "warning", "error"], str, str, Mapping[str, Any]], None]


class Target(Struct, frozen=True):
    name: str
    kind: TargetKind
    urls: tuple[str, ...]  # a webhook's one URL; apprise's URLs
    secret: bytes | None = None  # a webhook's HMAC key: never in the repr
    timeout: float = 10.0

    def __rich_repr__(self) -> list[tuple[str, Any]]:  # msgspec's own names every field
        return [
            ("name", self.name),
            ("kind", self.kind),
            ("urls", self.urls),
            ("timeout", self.timeout),
        ]

    def __repr__(self) -> str:
        return f"Target({', '.join(f'{name}={value!r}' for name, value in self.__rich_repr__())})"


class Delivery(Struct, frozen=True):
    """How the worker delivers: the queue's size and the retries' schedule."""

    queue: int = 1000
    retry_first: float = 1.0
    retry_max: float = 300.0
    attempts: int = 12


class NotifyConfig(Struct, frozen=True):
    targets: Mapping[str, Target]
    delivery: Delivery = Delivery()


# -- the targets file ---------------------------------------------------------------------

_DELIVERY_LIMITS: Final = {
    "queue": (int, 1, 1_000_000),
    "retry_first": (float, 0.01, 3600.0),
    "retry_max": (float, 0.01, 86400.0),
    "attempts": (int, 1, 1000),
}
_TARGET_KEYS: Final = frozenset(
    {"type", "url", "url_env", "urls", "secret_file", "secret_env", "timeout"}
)


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> NotifyConfig:
    """`--notify FILE`: the targets and how they are delivered to, refused with file, line
    and fix when it is not what docs/running.md, "Notifications", describes."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) else "it is not UTF-8"
        raise UsageError(
            f"cannot read the notification targets {path}: {why}",
            hint="pass --notify with a readable TOML file",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(
            f"the notification targets are not TOML: {error}",
            file=str(path),
            hint="see docs/running.md, Notifications, for the file's shape",
        ) from None
    where = _Where(path, text)
    unknown = sorted(set(data) - {"targets", "delivery"})
    if unknown:
        raise where.error(
            unknown[0], f"unknown section '{unknown[0]}'", "use [targets.NAME] or [delivery]"
        )
    delivery = _delivery(data.get("delivery", {}), where)
    raw_targets = data.get("targets", {})
    if not isinstance(raw_targets, dict) or not raw_targets:
        raise where.error("targets", "no targets", "add a [targets.NAME] table per target")
    targets = {name: _target(name, entry, where, environ) for name, entry in raw_targets.items()}
    return NotifyConfig(targets, delivery)


class _Where:
    """The file, and the line of a table or key in it, for the errors."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line(self, name: str, table: str | None = None) -> int | None:
        """The line of table `name` (or a top-level key), or of key `name` in `table` (the
        table's own line when the key is not written)."""
        header = None
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if stripped.startswith("["):
                title = stripped.strip("[]").strip()
                if header is not None:
                    break  # the table ended without the key
                if table is None and (title == name or title.startswith(f"{name}.")):
                    return number
                if table is not None and title == table:
                    header = number
            elif stripped.split("=")[0].strip() == name and (header is not None or table is None):
                return number
        return header

    def error(self, name: str, message: str, hint: str, table: str | None = None) -> UsageError:
        return UsageError(message, file=str(self.path), line=self.line(name, table), hint=hint)


def _delivery(raw: Any, where: _Where) -> Delivery:
    if not isinstance(raw, dict):
        raise where.error("delivery", "[delivery] is not a table", "write it as [delivery]")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _DELIVERY_LIMITS:
            raise where.error(
                key,
                f"unknown [delivery] key '{key}'",
                f"use {', '.join(_DELIVERY_LIMITS)}",
                "delivery",
            )
        kind, low, high = _DELIVERY_LIMITS[key]
        number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (
            not number_ok
            or (kind is int and not isinstance(value, int))
            or not low <= value <= high
        ):
            raise where.error(
                key,
                f"[delivery] {key} = {value!r} is not a{'n integer' if kind is int else ' number'} "
                f"from {low:g} to {high:g}",
                f"set {key} from {low:g} to {high:g}",
                "delivery",
            )
        values[key] = kind(value)
    return Delivery(**values)


def _target(name: str, raw: Any, where: _Where, environ: Mapping[str, str]) -> Target:
    table = f"targets.{name}"
    if not isinstance(raw, dict):
        raise where.error(table, f"[{table}] is not a table", f"write it as [{table}]")
    if not TARGET_NAME.fullmatch(name):
        raise where.error(
            table,
            f"target name '{name}' is not lowercase letters and digits joined by '.', '_' or '-'",
            "rename it (teams.yaml notifications: name it the same)",
        )
    unknown = sorted(set(raw) - _TARGET_KEYS)
    if unknown:
        raise where.error(
            unknown[0],
            f"[{table}] has an unknown key '{unknown[0]}'",
            f"use {', '.join(sorted(_TARGET_KEYS))}",
            table,
        )
    kind = raw.get("type")
    if kind not in ("webhook", "apprise"):
        raise where.error(
            table,
            f"[{table}] type = {kind!r} is not 'webhook' or 'apprise'",
            'set type = "webhook" (CloudEvents JSON) or "apprise" (chat, email)',
        )
    timeout = raw.get("timeout", 10.0)
    if (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or not 0.1 <= timeout <= 120
    ):
        raise where.error(
            "timeout",
            f"[{table}] timeout = {timeout!r} is not 0.1 to 120 seconds",
            "set timeout = 10",
            table,
        )
    urls = _urls(table, kind, raw, where, environ)
    secret = _secret(table, raw, where, environ)
    if kind == "apprise" and secret is not None:
        raise where.error(
            table,
            f"[{table}] an apprise target takes no secret",
            "remove secret_file/secret_env; apprise URLs carry their own credentials",
        )
    return Target(name, kind, urls, secret, float(timeout))


def _urls(
    table: str, kind: str, raw: Mapping[str, Any], where: _Where, environ: Mapping[str, str]
) -> tuple[str, ...]:
    given = [key for key in ("url", "url_env", "urls") if key in raw]
    if len(given) != 1:
        raise where.error(
            table,
            f"[{table}] needs exactly one of url, url_env and urls",
            'url = "https://..." (or url_env = "VARIABLE" to keep it out of the file)',
        )
    key = given[0]
    value = raw[key]
    if key == "url_env":
        if not isinstance(value, str) or not environ.get(value):
            raise where.error(
                key,
                f"[{table}] url_env = {value!r} names no set environment variable",
                "set it in the service's environment",
                table,
            )
        urls = tuple(environ[value].split())
    elif key == "urls":
        if (
            kind != "apprise"
            or not isinstance(value, list)
            or not value
            or not all(isinstance(item, str) and item for item in value)
        ):
            raise where.error(
                key,
                f"[{table}] urls must be a list of apprise URLs",
                'use url = "..." for a webhook',
                table,
            )
        urls = tuple(value)
    else:
        if not isinstance(value, str) or not value:
            raise where.error(key, f"[{table}] url must be a string", 'url = "https://..."', table)
        urls = (value,)
    if kind == "webhook" and (len(urls) != 1 or not urls[0].startswith(("https://", "http://"))):
        raise where.error(
            key,
            f"[{table}] a webhook needs one http(s) URL",
            'url = "https://hooks.example.com/reconciler"',
            table,
        )
    return urls


def _secret(
    table: str, raw: Mapping[str, Any], where: _Where, environ: Mapping[str, str]
) -> bytes | None:
    if "secret_file" in raw and "secret_env" in raw:
        raise where.error(table, f"[{table}] has both secret_file and secret_env", "keep one")
    if "secret_env" in raw:
        name = raw["secret_env"]
        if not isinstance(name, str) or not environ.get(name):
            raise where.error(
                "secret_env",
                f"[{table}] secret_env = {name!r} names no set environment variable",
                "set it in the service's environment",
                table,
            )
        return environ[name].strip().encode()
    if "secret_file" in raw:
        file = raw["secret_file"]
        try:
            secret = Path(str(file)).read_bytes().strip()
        except OSError as error:
            raise where.error(
                "secret_file",
                f"[{table}] cannot read secret_file {file}: {error.strerror}",
                "name a readable file",
                table,
            ) from None
        if not secret:
            raise where.error(
                "secret_file",
                f"[{table}] secret_file {file} is empty",
                "put a long random secret in it, e.g. `openssl rand -hex 32 > FILE`",
                table,
            )
        return secret
    return None


# -- delivering -----------------------------------------------------------------------------


def log_path(store: Path) -> Path:
    """The delivery log beside the state store `store` (`main.sqlite3`: `main.notifications
    .sqlite`): one per followed branch, as the store, so that two services sharing a state
    directory never resend each other's notices."""
    return store.with_name(store.name.removesuffix(".sqlite3") + LOG_SUFFIX)


def signature(secret: bytes, body: bytes) -> str:
    """The value of `X-Reconciler-Signature-256`, as GitHub signs its webhooks."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def cloud_event_type(kind: str) -> str:
    return CDEVENTS_TYPES.get(kind, f"dev.reconciler.{kind}.v1")


def notice_json(notice: Notice) -> str:
    return json.dumps(
        {
            "id": notice.id,
            "kind": notice.kind,
            "at": notice.at.isoformat(),
            "summary": notice.summary,
            "environment": notice.environment,
            "data": dict(notice.data),
        },
        sort_keys=True,
    )


def notice_from_json(text: str) -> Notice:
    raw = json.loads(text)
    return Notice(
        id=raw["id"],
        kind=raw["kind"],
        at=datetime.fromisoformat(raw["at"]),
        summary=raw["summary"],
        environment=raw["environment"],
        data=raw["data"],
    )


class Courier:
    """The bounded queue, its worker thread and the delivery log."""

    def __init__(
        self,
        path: Path,
        config: NotifyConfig,
        *,
        source: str,
        log: Log,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.path = path  # the delivery log (`log_path`)
        self.config = config
        self.source = source  # the CloudEvents `source`: which reconciler says it
        self._log = log
        self._now = now
        self._queue: queue.Queue[tuple[Notice, str]] = queue.Queue(config.delivery.queue)
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.delivered = 0
        self._idle = threading.Condition()
        self._busy = 0  # queued or due deliveries: 0 when everything is delivered or given up

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._thread.start()
        self._loaded.wait(10.0)  # what the last stop left undelivered is counted in `_busy`

    def send(self, notice: Notice, target: str) -> bool:
        """Queue `notice` for `target` (the run's path: never blocks); False when dropped."""
        with self._idle:
            self._busy += 1
        try:
            self._queue.put_nowait((notice, target))
        except queue.Full:
            with self._idle:
                self._busy -= 1
                self.dropped += 1  # runs' threads and the pass's send at once
            self._log(
                "warning",
                "notify-dropped",
                f"notification {notice.id} to {target} dropped: the queue holds "
                f"{self.config.delivery.queue} already (the newest is dropped)",
                {
                    "notice": notice.id,
                    "kind": notice.kind,
                    "target": target,
                    "dropped": self.dropped,
                },
            )
            return False
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Until every queued delivery is delivered or given up (tests, the benchmark)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = FINAL_FLUSH + 15.0) -> None:
        """Stop the worker: what is queued goes to the log, what is due gets one more attempt
        for `FINAL_FLUSH` seconds; the rest stays pending for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- the worker -----------------------------------------------------------------------

    def _work(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries ("
                " id TEXT NOT NULL, target TEXT NOT NULL, kind TEXT NOT NULL,"
                " notice TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,"
                " next_at REAL NOT NULL, last_error TEXT, queued_at REAL NOT NULL,"
                " delivered_at REAL, PRIMARY KEY (id, target))"
            )
            db.execute(
                "DELETE FROM deliveries WHERE status != 'pending' AND queued_at < ?",
                (self._now() - KEEP_SETTLED,),
            )
            # Resent at once: whatever kept them from their target may be over by now.
            start = self._now()
            due: list[tuple[float, str, str]] = [
                (start, notice_id, target)
                for notice_id, target in db.execute(
                    "SELECT id, target FROM deliveries WHERE status = 'pending'"
                )
            ]
            heapq.heapify(due)
            with self._idle:
                self._busy += len(due)
            self._loaded.set()
            if due:
                self._log(
                    "info",
                    "notify-resend",
                    f"{len(due)} notification(s) not yet delivered before the last stop: resending",
                    {"pending": len(due)},
                )
            while not self._stop.is_set():
                wait = STOP_CHECK if not due else min(max(due[0][0] - self._now(), 0.0), STOP_CHECK)
                try:
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    item = None
                while item is not None:
                    self._record(db, due, *item)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = None
                while due and due[0][0] <= self._now() and not self._stop.is_set():
                    _, notice_id, target = heapq.heappop(due)
                    self._attempt(db, due, notice_id, target)
            self._final(db, due)
        except Exception as error:  # the service lives on without notifications
            self._loaded.set()
            self._log(
                "error", "notify-failed", f"notifications stopped: {error}", {"error": str(error)}
            )
        finally:
            db.close()

    def _final(self, db: sqlite3.Connection, due: list[tuple[float, str, str]]) -> None:
        """At a stop: log what is queued, give what is due one attempt while time allows."""
        while True:
            try:
                self._record(db, due, *self._queue.get_nowait())
            except queue.Empty:
                break
        deadline = time.monotonic() + FINAL_FLUSH
        while due and due[0][0] <= self._now() and time.monotonic() < deadline:
            _, notice_id, target = heapq.heappop(due)
            self._attempt(db, due, notice_id, target)

    def _record(
        self, db: sqlite3.Connection, due: list[tuple[float, str, str]], notice: Notice, target: str
    ) -> None:
        now = self._now()
        added = db.execute(
            "INSERT OR IGNORE INTO deliveries (id, target, kind, notice, status, attempts,"
            " next_at, queued_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
            (notice.id, target, notice.kind, notice_json(notice), now, now),
        ).rowcount
        if added:
            heapq.heappush(due, (now, notice.id, target))
        else:  # told before, this run of the service or an earlier one
            self._settled()

    def _attempt(
        self,
        db: sqlite3.Connection,
        due: list[tuple[float, str, str]],
        notice_id: str,
        target_name: str,
    ) -> None:
        row = db.execute(
            "SELECT notice, attempts FROM deliveries"
            " WHERE id = ? AND target = ? AND status = 'pending'",
            (notice_id, target_name),
        ).fetchone()
        if row is None:
            self._settled()
            return
        notice, attempts = notice_from_json(row[0]), row[1] + 1
        fields = {"notice": notice_id, "kind": notice.kind, "target": target_name}
        what = f"notification {notice_id} to {target_name}"
        try:
            target = self.config.targets.get(target_name)
            if target is None:
                raise _Permanent(f"no target '{target_name}' in the --notify file")
            self._deliver(notice, target)
        except Exception as error:
            retry = self.config.delivery
            give_up = isinstance(error, _Permanent) or attempts >= retry.attempts
            delay = min(retry.retry_first * 2 ** (attempts - 1), retry.retry_max)
            self._update(
                db,
                notice_id,
                target_name,
                "failed" if give_up else "pending",
                attempts,
                next_at=self._now() + delay,
                error=str(error),
            )
            fields.update(attempts=attempts, error=str(error))
            if give_up:
                self._log(
                    "error",
                    "notify-gave-up",
                    f"{what} not delivered after {attempts} attempt(s): {error}",
                    fields,
                )
                self._settled()
            else:
                heapq.heappush(due, (self._now() + delay, notice_id, target_name))
                self._log(
                    "warning",
                    "notify-retry",
                    f"{what} failed (attempt {attempts}), retrying in {delay:g} s: {error}",
                    {**fields, "retry_in": delay},
                )
            return
        self._update(db, notice_id, target_name, "delivered", attempts, delivered_at=self._now())
        self.delivered += 1
        self._log("info", "notify-delivered", f"{what} delivered", {**fields, "attempts": attempts})
        self._settled()

    @staticmethod
    def _update(
        db: sqlite3.Connection,
        notice_id: str,
        target: str,
        status: str,
        attempts: int,
        *,
        next_at: float | None = None,
        error: str | None = None,
        delivered_at: float | None = None,
    ) -> None:
        db.execute(
            "UPDATE deliveries SET status = ?, attempts = ?, next_at = COALESCE(?, next_at),"
            " last_error = ?, delivered_at = ? WHERE id = ? AND target = ?",
            (status, attempts, next_at, error, delivered_at, notice_id, target),
        )

    def _settled(self) -> None:
        with self._idle:
            self._busy -= 1
            if not self._busy:
                self._idle.notify_all()

    def _deliver(self, notice: Notice, target: Target) -> None:
        if target.kind == "webhook":
            self._post(notice, target)
        else:
            _apprise(notice, target)

    def _post(self, notice: Notice, target: Target) -> None:
        body, headers = cloud_event(notice, self.source)
        if target.secret is not None:
            headers[SIGNATURE_HEADER] = signature(target.secret, body)
        # An http(s) URL only (`load_config`), the operator's own.
        request = urllib.request.Request(  # noqa: S310
            target.urls[0], data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=target.timeout) as response:  # noqa: S310
                response.read(65536)
        except urllib.error.HTTPError as error:
            raise OSError(f"HTTP {error.code}") from None
        except urllib.error.URLError as error:
            raise OSError(str(error.reason)) from None


class _Permanent(Exception):
    """A delivery that no retry can make."""


def cloud_event(notice: Notice, source: str) -> tuple[bytes, dict[str, str]]:
    """The notice as a structured-mode CloudEvent: its body and headers."""
    from cloudevents.core.bindings.http import to_structured_event  # noqa: PLC0415 - `watch` only
    from cloudevents.core.v1.event import CloudEvent  # noqa: PLC0415

    attributes: dict[str, Any] = {
        "id": notice.id,
        "source": source,
        "type": cloud_event_type(notice.kind),
        "time": notice.at,
        "datacontenttype": "application/json",
    }
    if notice.environment is not None:
        attributes["subject"] = notice.environment
    data = {
        "kind": notice.kind,
        "summary": notice.summary,
        "environment": notice.environment,
        **notice.data,
    }
    message = to_structured_event(CloudEvent(attributes, data))
    return message.body, dict(message.headers)


def _apprise(notice: Notice, target: Target) -> None:
    with warnings.catch_warnings():
        # apprise 2.3 loads its plugins on first use, and one imports `imghdr`, deprecated
        # since Python 3.11: no reason to fail a delivery.
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise  # noqa: PLC0415 - heavy (requests, markdown): an apprise target only

        sender = apprise.Apprise()
        for url in target.urls:
            if not sender.add(url):
                raise _Permanent(f"apprise does not understand the URL of target '{target.name}'")
        if not sender.notify(title=f"reconciler: {notice.kind}", body=notice.summary):
            raise OSError("apprise could not deliver it")
