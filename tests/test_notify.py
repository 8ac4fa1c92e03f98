"""Notifications: real local HTTP receivers, the courier's queue, log and retries, routing,
the --notify file, and `reconciler watch` telling a receiver about a real pass and run.

Receivers are threaded `http.server`s on 127.0.0.1 that check the
`X-Reconciler-Signature-256` HMAC themselves and parse the body with the
CloudEvents SDK, as a consumer would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from reconciler.adapters.notify import (
    Courier,
    Delivery,
    NotifyConfig,
    Target,
    load_config,
    notice_json,
)
from reconciler.core.errors import UsageError
from reconciler.core.model import Route
from reconciler.core.notices import (
    EVENTS,
    PLAN_WAITING,
    RUN_FAILED,
    RUN_SUCCEEDED,
    SERVICE_UNHEALTHY,
    Notice,
    targets_for,
)
from reconciler.core.resources import schemas_dir
from tests.clock import SUITE_NOW
from tests.configrepo import reconciler as run_cli
from tests.people import People, seed_teams
from tests.repositories import SeedRepo

SECRET = b"notify-secret-for-tests"


class Receiver:
    """A webhook receiver: answers `fail_first` requests with 503, then 200; a request whose
    signature does not verify with `secret` gets 401. Every request is kept."""

    def __init__(self, secret: bytes | None = SECRET, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {key.lower(): value for key, value in self.headers.items()}
                status = receiver._answer(self.path, headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        verified = None
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            given = headers.get("x-reconciler-signature-256", "")
            verified = hmac.compare_digest(expected, given)
        with self._lock:
            failing = len(self.requests) < self.fail_first
            self.requests.append(
                {"path": path, "headers": headers, "body": body, "verified": verified}
            )
            self._lock.notify_all()
        if verified is False:
            return 401
        return 503 if failing else 200

    def ok(self) -> list[dict[str, Any]]:
        """The requests answered 200."""
        with self._lock:
            return [
                request
                for index, request in enumerate(self.requests)
                if index >= self.fail_first and request["verified"] is not False
            ]

    def events(self) -> list[Any]:
        """The CloudEvents it accepted, as the SDK reads them."""
        return [
            from_http_event(HTTPMessage(headers=request["headers"], body=request["body"]))
            for request in self.ok()
        ]

    def wait(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{count} request(s) never came: {len(self.requests)}"
                self._lock.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def receiver(receivers: list[Receiver], **options: Any) -> Receiver:
    made = Receiver(**options)
    receivers.append(made)
    return made


LogLine = tuple[str, str, str, dict[str, Any]]


class Log:
    def __init__(self) -> None:
        self.lines: list[LogLine] = []

    def __call__(
        self,
        level: Literal["info", "warning", "error"],
        event: str,
        message: str,
        fields: Any,
    ) -> None:
        self.lines.append((level, event, message, dict(fields)))

    def named(self, event: str) -> list[LogLine]:
        return [line for line in self.lines if line[1] == event]


def notice(kind: str = RUN_SUCCEEDED, run: str = "2026-11-dev-build.1") -> Notice:
    return Notice(
        f"{kind}/{run}",
        kind,
        SUITE_NOW,
        f"run {run} -> development: {kind}",
        "development",
        {"run": run, "applications": [{"name": "ecommerce", "version": "1.4.0"}]},
    )


def courier(
    state: Path,
    log: Log,
    *targets: Target,
    queue: int = 100,
    retry_first: float = 0.05,
    attempts: int = 12,
) -> Courier:
    config = NotifyConfig(
        {target.name: target for target in targets},
        Delivery(queue=queue, retry_first=retry_first, retry_max=1.0, attempts=attempts),
    )
    return Courier(state / "main.notifications.sqlite", config, source="/reconciler/test", log=log)


def webhook(url: str, secret: bytes | None = SECRET, name: str = "audit") -> Target:
    return Target(name, "webhook", (url,), secret, timeout=5.0)


def rows(state: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(state / "main.notifications.sqlite") as db:
        return list(
            db.execute("SELECT id, target, status, attempts FROM deliveries ORDER BY queued_at")
        )


# -- delivering ----------------------------------------------------------------------------


def test_a_webhook_gets_a_cloudevent_whose_hmac_the_receiver_verifies(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    log = Log()
    sender = courier(tmp_path, log, webhook(hook.url))
    sender.start()
    assert sender.send(notice(), "audit")
    assert sender.send(notice(RUN_FAILED, "next.1"), "audit")
    assert sender.wait_idle(30)
    sender.close()
    assert [request["verified"] for request in hook.requests] == [True, True]
    deployed, failed = hook.events()
    # A CDEvents type where one fits, the reconciler's own otherwise.
    assert deployed.get_type() == "dev.cdevents.service.deployed.0.2.0"
    assert failed.get_type() == "dev.reconciler.run.failed.v1"
    assert deployed.get_id() == "run.succeeded/2026-11-dev-build.1"
    assert deployed.get_subject() == "development"
    assert deployed.get_source() == "/reconciler/test"
    data = deployed.get_data()
    assert isinstance(data, dict)
    assert data["run"] == "2026-11-dev-build.1"
    assert data["applications"] == [{"name": "ecommerce", "version": "1.4.0"}]
    assert hook.requests[0]["headers"]["content-type"].startswith("application/cloudevents+json")
    assert rows(tmp_path) == [
        ("run.succeeded/2026-11-dev-build.1", "audit", "delivered", 1),
        ("run.failed/next.1", "audit", "delivered", 1),
    ]


def test_a_target_that_fails_and_then_recovers_gets_the_notice_after_retries(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers, fail_first=2)
    log = Log()
    sender = courier(tmp_path, log, webhook(hook.url))
    sender.start()
    sender.send(notice(), "audit")
    assert sender.wait_idle(30)
    sender.close()
    assert len(hook.requests) == 3
    assert len(hook.ok()) == 1
    # The same event each time: one id, the receiver may deduplicate by it.
    assert len({request["body"] for request in hook.requests}) == 1
    retries = log.named("notify-retry")
    assert [line[3]["attempts"] for line in retries] == [1, 2]
    assert "HTTP 503" in retries[0][3]["error"]
    assert [line[3]["attempts"] for line in log.named("notify-delivered")] == [3]
    assert rows(tmp_path) == [("run.succeeded/2026-11-dev-build.1", "audit", "delivered", 3)]


def test_a_receiver_with_another_secret_refuses_it_and_the_courier_gives_up_after_its_attempts(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    log = Log()
    sender = courier(tmp_path, log, webhook(hook.url, b"not-the-receivers"), attempts=2)
    sender.start()
    sender.send(notice(), "audit")
    assert sender.wait_idle(30)
    sender.close()
    assert [request["verified"] for request in hook.requests] == [False, False]
    [gave_up] = log.named("notify-gave-up")
    assert gave_up[0] == "error"
    assert "HTTP 401" in gave_up[2]
    assert rows(tmp_path) == [("run.succeeded/2026-11-dev-build.1", "audit", "failed", 2)]


def test_a_restart_resends_what_was_not_delivered_and_never_a_notice_twice(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers, fail_first=1)
    first_log = Log()
    # The first attempt fails, and the next is an hour away: the service stops meanwhile.
    first = courier(tmp_path, first_log, webhook(hook.url), retry_first=3600)
    first.start()
    first.send(notice(), "audit")
    hook.wait(1)
    assert not first.wait_idle(0.5)
    first.close()
    assert rows(tmp_path) == [("run.succeeded/2026-11-dev-build.1", "audit", "pending", 1)]
    log = Log()
    second = courier(tmp_path, log, webhook(hook.url))
    second.start()
    assert second.wait_idle(30)
    [resend] = log.named("notify-resend")
    assert resend[3]["pending"] == 1
    assert len(hook.ok()) == 1
    # Derived again after the restart (a pass finds the same refusal, the same waiting plan):
    # the log knows it was told, and it is not told again.
    second.send(notice(), "audit")
    assert second.wait_idle(30)
    second.close()
    assert len(hook.requests) == 2
    assert rows(tmp_path) == [("run.succeeded/2026-11-dev-build.1", "audit", "delivered", 2)]


def test_a_full_queue_drops_the_newest_notice_and_logs_it(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    log = Log()
    sender = courier(tmp_path, log, webhook(hook.url), queue=2)
    # Not started yet: nothing takes the queue, as when the worker is stuck on a slow target.
    assert sender.send(notice(run="a.1"), "audit")
    assert sender.send(notice(run="b.1"), "audit")
    assert not sender.send(notice(run="c.1"), "audit")
    assert sender.dropped == 1
    [dropped] = log.named("notify-dropped")
    assert dropped[0] == "warning"
    assert dropped[3]["notice"] == "run.succeeded/c.1"
    assert dropped[3]["target"] == "audit"
    sender.start()
    assert sender.wait_idle(30)
    sender.close()
    assert [event.get_id() for event in hook.events()] == [
        "run.succeeded/a.1",
        "run.succeeded/b.1",
    ]


def test_a_dead_target_costs_the_sender_nothing(tmp_path: Path) -> None:
    """Nothing listens at the target (connection refused, retried): `send` only queues."""
    log = Log()
    sender = courier(tmp_path, log, webhook("http://127.0.0.1:9/hook"), retry_first=0.01)
    sender.start()
    for index in range(50):
        assert sender.send(notice(run=f"r{index}.1"), "audit")
    sender.close()
    assert log.named("notify-retry")
    assert log.named("notify-delivered") == []
    assert {row[2] for row in rows(tmp_path)} <= {"pending", "failed"}


def test_an_apprise_target_gets_the_notices_line(tmp_path: Path, receivers: list[Receiver]) -> None:
    """apprise's `json://` posts {title, message}: a real chat service's shape, locally."""
    hook = receiver(receivers, secret=None)
    port = hook.server.server_address[1]
    log = Log()
    target = Target("chat", "apprise", (f"json://127.0.0.1:{port}/chat",))
    sender = courier(tmp_path, log, target)
    sender.start()
    sender.send(notice(RUN_FAILED, "2026-11-dev-build.1"), "chat")
    assert sender.wait_idle(60)
    sender.close()
    assert log.named("notify-retry") == []
    [request] = hook.requests
    assert request["path"] == "/chat"
    body = json.loads(request["body"])
    assert body["title"] == "reconciler: run.failed"
    assert body["message"] == "run 2026-11-dev-build.1 -> development: run.failed"


# -- routing ----------------------------------------------------------------------------------


def test_routes_send_only_their_events_of_their_environments_each_target_once() -> None:
    routes = (
        Route("ops-chat", frozenset({RUN_FAILED, SERVICE_UNHEALTHY})),
        Route("prod-audit", None, frozenset({"production"})),
        Route("ops-chat", frozenset({PLAN_WAITING}), frozenset({"production"})),
    )

    def at(kind: str, environment: str | None) -> tuple[str, ...]:
        found = Notice("id", kind, SUITE_NOW, "", environment)
        return targets_for(found, routes)

    assert at(RUN_FAILED, "development") == ("ops-chat",)
    assert at(RUN_SUCCEEDED, "development") == ()
    assert at(RUN_SUCCEEDED, "production") == ("prod-audit",)
    assert at(RUN_FAILED, "production") == ("ops-chat", "prod-audit")
    assert at(PLAN_WAITING, "production") == ("prod-audit", "ops-chat")
    # The service's own notice: routes naming environments do not hear it.
    assert at(SERVICE_UNHEALTHY, None) == ("ops-chat",)
    assert targets_for(Notice("id", RUN_FAILED, SUITE_NOW, "", "development"), ()) == ()


def test_the_schema_lists_every_event_a_notice_can_be() -> None:
    schema = json.loads((schemas_dir() / "teams.schema.json").read_text())
    route = schema["$defs"]["notification_route"]
    assert tuple(route["properties"]["events"]["items"]["enum"]) == EVENTS


# -- the targets file ---------------------------------------------------------------------------


def test_the_notify_file_names_targets_whose_secrets_may_come_from_the_environment(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    path = tmp_path / "notify.toml"
    path.write_text(
        "[delivery]\nqueue = 50\nretry_first = 0.5\n\n"
        '[targets.audit]\ntype = "webhook"\nurl = "https://hooks.example.com/r"\n'
        f'secret_file = "{secret}"\n\n'
        '[targets.ops]\ntype = "webhook"\nurl_env = "OPS_URL"\nsecret_env = "OPS_SECRET"\n\n'
        '[targets.chat]\ntype = "apprise"\nurls = ["slack://a/b/c", "mailto://u:p@example.com"]\n'
    )
    config = load_config(path, {"OPS_URL": "http://127.0.0.1:1/x", "OPS_SECRET": "env-secret"})
    assert config.delivery == Delivery(queue=50, retry_first=0.5)
    assert config.targets["audit"].secret == b"from-a-file"
    assert config.targets["ops"].urls == ("http://127.0.0.1:1/x",)
    assert config.targets["ops"].secret == b"env-secret"
    assert config.targets["chat"].urls == ("slack://a/b/c", "mailto://u:p@example.com")
    assert "from-a-file" not in repr(config)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[targets.audit]\ntype = "webhook"\nurl = ', None, "not TOML"),
        ('[targets.audit]\ntype = "pager"\nurl = "https://x"\n', 1, "is not 'webhook'"),
        ('[targets.audit]\ntype = "webhook"\nurl = "ftp://x"\n', 3, "one http(s) URL"),
        ('[targets.audit]\ntype = "webhook"\nurl = "https://x"\nsecret_env = "NOPE"\n', 4, "NOPE"),
        ('[targets.Audit]\ntype = "webhook"\nurl = "https://x"\n', 1, "target name 'Audit'"),
        ('[delivery]\nqueue = 0\n[targets.a]\ntype = "webhook"\nurl = "https://x"\n', 2, "queue"),
        ("[delivery]\nqueue = 10\n", None, "no targets"),
    ],
)
def test_a_bad_notify_file_is_refused_naming_its_line_and_the_fix(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    path = tmp_path / "notify.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as raised:
        load_config(path, {})
    error = raised.value
    assert message in error.message
    assert error.file == str(path)
    assert error.hint
    if line is not None:
        assert error.line == line


def test_a_bad_notify_file_stops_watch_before_it_starts_naming_file_and_line(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    path = tmp_path / "notify.toml"
    path.write_text('[targets.audit]\ntype = "webhook"\nurl = "https://x"\nsecret_env = "NOPE"\n')
    result = run_cli(
        "watch",
        "--repo",
        repo.path,
        "--key",
        people.reconciler.key,
        "--notify",
        path,
        env={key: value for key, value in os.environ.items() if key != "NOPE"},
    )
    assert result.exit_code == 2, result.stderr
    assert f"{path}:4" in result.stderr
    assert "secret_env = 'NOPE' names no set environment variable" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_names_a_routes_unknown_environment_with_the_likely_one(
    tmp_path: Path, people: People
) -> None:
    teams = seed_teams(people)
    teams["notifications"] = [{"target": "audit", "environments": ["development", "prodution"]}]
    repo = SeedRepo.create(tmp_path, people, teams=teams)
    result = run_cli("validate", "--repo", repo.path)
    assert result.exit_code == 1
    assert "teams.yaml:" in result.stdout
    assert "unknown environment 'prodution'" in result.stdout
    assert "did you mean 'production'?" in result.stdout


def test_the_log_forgets_settled_deliveries_after_30_days_and_keeps_pending_ones(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    config = NotifyConfig({"audit": webhook(hook.url)}, Delivery(retry_first=0.05))
    path = tmp_path / "main.notifications.sqlite"
    clock = [1_000_000.0]
    sender = Courier(path, config, source="/t", log=Log(), now=lambda: clock[0])
    sender.start()
    sender.send(notice(run="old.1"), "audit")
    assert sender.wait_idle(30)
    sender.close()
    with sqlite3.connect(path) as db:  # as a delivery left pending by a crash would be
        db.execute(
            "INSERT INTO deliveries VALUES ('run.failed/crashed.1', 'audit', 'run.failed', ?,"
            " 'pending', 0, 0, NULL, 0, NULL)",
            (notice_json(notice(RUN_FAILED, "crashed.1")),),
        )
    clock[0] += 31 * 86400
    later = Courier(path, config, source="/t", log=Log(), now=lambda: clock[0])
    later.start()
    later.send(notice(run="old.1"), "audit")  # forgotten: told again
    assert later.wait_idle(30)
    later.close()
    assert [event.get_id() for event in hook.events()] == [
        "run.succeeded/old.1",
        "run.failed/crashed.1",
        "run.succeeded/old.1",
    ]


def test_a_webhook_target_s_secret_never_shows_in_its_repr() -> None:
    # A target is logged and reported in tracebacks by its repr: the HMAC key stays out.
    target = Target("audit", "webhook", ("https://hooks.example/audit",), b"s3cret-key")
    assert "s3cret" not in repr(target)
    assert "s3cret" not in str(list(target.__rich_repr__()))
    assert "https://hooks.example/audit" in repr(target)
