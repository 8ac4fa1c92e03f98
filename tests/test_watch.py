"""`reconciler watch`: events, polls and webhooks trigger passes; workers run; SIGTERM is clean.

Every test runs the real command in a subprocess (JSON log lines on stderr),
pushes real signed commits, sends real HTTP requests, and stops the watcher
with SIGTERM at the end.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters.webhook import Delivery, Receiver, WebhookServer
from tests.configrepo import reconciler
from tests.people import People, Person
from tests.repositories import ConfigRepo, SeedRepo, run_git, trailers
from tests.runner import documented_row, wait_for, with_command_driver
from tests.scenarios import DEV_PLAN, ECOMMERCE, PORTAL_DEV, QA_PLAN, dev_plan, plan, qa_plan

Event = dict[str, Any]
SECRET = "s3cret-for-tests"


class Watcher:
    """A running `reconciler watch`, its log events as they arrive."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, as under a terminal or systemd
        )
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "raw", "message": line}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()

    def named(self, name: str) -> list[Event]:
        with self._changed:
            return [event for event in self.events if event.get("event") == name]

    def wait_for(self, test: Callable[[Event], bool], timeout: float = 60) -> Event:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if test(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        "the awaited log event never came; the log:\n"
                        + "\n".join(json.dumps(event) for event in self.events)
                    )
                self._changed.wait(min(left, 0.1))

    def wait_for_event(self, name: str, timeout: float = 60, **fields: Any) -> Event:
        return self.wait_for(
            lambda event: (
                event.get("event") == name
                and all(event.get(key) == value for key, value in fields.items())
            ),
            timeout,
        )

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    """Watchers started by a test; any still running at its end are killed."""
    started: list[Watcher] = []
    yield started
    for watcher in started:
        watcher.kill()


def start_watch(
    watchers: list[Watcher], repo: ConfigRepo, people: People, source: Path, *args: str
) -> Watcher:
    watcher = Watcher(watch_argv(repo, people, source, *args))
    watchers.append(watcher)
    watcher.wait_for_event("pass", result="ok")  # the first pass, at start
    return watcher


def watch_argv(repo: ConfigRepo, people: People, source: Path, *args: str) -> list[str]:
    """The argv of `reconciler watch` on `source`, with its own state and instance name."""
    return [
        sys.executable,
        "-m",
        "reconciler",
        "watch",
        "--repo",
        str(source),
        "--state-dir",
        str(repo.path.parent / "watch-state"),
        "--key",
        str(people.reconciler.key),
        "--driver-root",
        str(repo.driver_root),
        "--instance",
        "test-watch",
        "--format",
        "json",
        *args,
    ]


def push(repo: ConfigRepo, change: Callable[[], str]) -> str:
    """Make a commit with `change` on origin's main and push it; made again when it races."""
    while True:
        repo.git("fetch", "-q", "origin")
        repo.git("reset", "-q", "--hard", "origin/main")
        commit = change()
        pushed = subprocess.run(
            ["git", "push", "-q", "origin", "main"],
            cwd=repo.path,
            capture_output=True,
            check=False,
        )
        if pushed.returncode == 0:
            return commit


def push_plan(repo: ConfigRepo, by: Person, name: str, version: str) -> str:
    """Commit plans/<name>.yaml (one ecommerce version into development) as `by`, pushed."""
    content = plan(name, "development", [{"name": "ecommerce", "version": version}])
    return push(repo, lambda: repo.commit(by, {f"plans/{name}.yaml": content}, f"Add {name}"))


def subjects(git_dir: Path) -> list[str]:
    return run_git(git_dir, "log", "--format=%s", "main").splitlines()


def wait_until(test: Callable[[], bool], timeout: float = 60, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s"
        time.sleep(0.05)


# -- a local (bare) repository, watched through file events ---------------------------


@pytest.mark.slow
def test_20_commits_pushed_in_quick_succession_each_run_once_and_the_last_is_reconciled(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    bare = repo.publish_to_bare_remote()
    watcher = start_watch(watchers, repo, people, bare)
    names = [f"batch-{index:02d}" for index in range(20)]
    pushed = [push_plan(repo, people.alice, name, f"1.0.{n}") for n, name in enumerate(names)]

    def all_finished() -> bool:
        return sum(s.startswith("Deploy batch-") for s in subjects(bare)) == len(names)

    wait_until(all_finished, 180, "20 finish records")
    tip = run_git(bare, "rev-parse", "main")
    watcher.wait_for_event("pass", commit=tip)  # the last change is reconciled
    # Every plan version ran exactly once: one driver call, one start and one finish record.
    ran = [line.split()[0] for line in out.read_text().splitlines()]
    assert sorted(ran) == names
    log = subjects(bare)
    assert Counter(s.split()[1] for s in log if s.startswith("Start ")) == Counter(names)
    assert sorted(s for s in log if s.startswith("Deploy ")) == [
        f"Deploy {name} to development: succeeded" for name in names
    ]
    finished = watcher.named("run-finished")
    assert sorted(event["run"] for event in finished) == [f"{name}.1" for name in names]
    run_git(bare, "merge-base", "--is-ancestor", pushed[-1], "main")
    assert watcher.named("pass-failed") == []
    # `git pack-refs` deletes the loose ref: an event, but the branch did not move: no pass.
    passes = len(watcher.named("pass"))
    run_git(bare, "pack-refs", "--all", "--prune")
    assert not (bare / "refs/heads/main").exists()
    time.sleep(1.0)
    assert len(watcher.named("pass")) == passes
    # A push after packing is still seen.
    push_plan(repo, people.alice, "after-pack", "2.0.0")
    watcher.wait_for_event("run-finished", run="after-pack.1", result="succeeded")
    assert watcher.stop() == 0
    assert watcher.named("stopped")[-1]["passes"] == len(watcher.named("pass"))


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_sigterm_during_a_long_driver_step_finishes_the_step_records_the_run_and_exits_0(
    tmp_path: Path, people: People, watchers: list[Watcher], how: str
) -> None:
    """SIGTERM to the watcher (systemd, KillMode=mixed), or SIGINT to its whole process group
    (Ctrl-C in a terminal, which also reaches Git's helper processes)."""
    repo, out = with_command_driver(tmp_path, people)
    hold = out.with_name("driver.out.hold")
    hold.write_text("")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.commit(people.diana, {DEV_PLAN: dev_plan(ECOMMERCE, PORTAL_DEV)})
    watcher = start_watch(watchers, repo, people, repo.path)  # the working repository itself
    wait_for(out.with_name("driver.out.started"))
    if how == "sigterm":
        watcher.process.send_signal(signal.SIGTERM)
    else:
        os.killpg(watcher.process.pid, signal.SIGINT)
    stopping = watcher.wait_for_event("stopping")
    assert stopping["running"] == ["2026-11-dev-build.1"]
    time.sleep(0.5)
    assert watcher.process.poll() is None  # the step in progress is not cut short
    hold.unlink()
    assert watcher.stop() == 0
    finish = trailers(repo, "main")
    assert (finish["Run"], finish["Result"]) == ("2026-11-dev-build.1", "interrupted")
    assert repo.git("log", "-1", "--format=%s", "main") == (
        "Deploy 2026-11-dev-build to development: interrupted"
    )
    run_log = (repo.path / "logs/development/2026-11-dev-build/2026-11-dev-build.1.log").read_text()
    assert "stopped before step 2 (customer-portal 0.6-dev.41): shutting down" in run_log
    deployed = yaml.safe_load((repo.path / "deployments/development.yaml").read_text())
    assert {app: entry["version"] for app, entry in deployed["applications"].items()} == {
        "ecommerce": "1.4.0"
    }
    assert out.read_text().splitlines() == ["2026-11-dev-build ecommerce 1.4.0 []"]
    [finished] = watcher.named("run-finished")
    assert finished["result"] == "interrupted"
    assert watcher.named("stopped")


def test_a_long_run_never_delays_another_environment_and_a_busy_one_waits_its_turn(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo, out = with_command_driver(tmp_path, people)  # development: the command driver
    hold = out.with_name("driver.out.hold")
    hold.write_text("")
    repo.deployed("development", {"ecommerce": "1.4.0"})  # what Quality Assurance promotes
    (repo.driver_root / "development/ecommerce/releases/1.4.0").mkdir(parents=True)
    bare = repo.publish_to_bare_remote()
    watcher = start_watch(watchers, repo, people, bare)
    push_plan(repo, people.alice, "long-build", "1.5.0")
    wait_for(out.with_name("driver.out.started"))  # development is busy while we hold it
    push_plan(repo, people.alice, "next-build", "1.6.0")  # waits for development
    push(repo, lambda: repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)}))
    push(repo, lambda: repo.approve(people.ravi, QA_PLAN))
    push(repo, lambda: repo.trigger(people.olga, QA_PLAN))
    watcher.wait_for_event("run-finished", run="2026-11-qa-release.1", result="succeeded")
    assert not any("next-build.1" in event["started"] for event in watcher.named("pass"))
    assert [line.split()[:3] for line in out.read_text().splitlines()] == [
        ["long-build", "ecommerce", "1.5.0"]
    ]
    hold.unlink()
    watcher.wait_for_event("run-finished", run="next-build.1", result="succeeded")
    log = subjects(bare)[::-1]  # oldest first
    assert log.index("Deploy 2026-11-qa-release to quality-assurance: succeeded") < log.index(
        "Deploy long-build to development: succeeded"
    )
    assert log.index("Deploy long-build to development: succeeded") < log.index(
        "Start next-build in development: run next-build.1"
    )
    assert watcher.stop() == 0


def test_a_pass_that_raises_is_logged_and_retried_and_the_watcher_lives_on(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    seed = repo.head()
    bare = repo.publish_to_bare_remote()
    watcher = start_watch(watchers, repo, people, bare)
    # A force-push that rewrites history: every pass fails until it is undone.
    repo.git("commit", "-q", "--amend", "--no-edit", "-m", "Rewritten seed")
    repo.git("push", "-q", "--force", "origin", "main")
    failed = watcher.wait_for_event("pass-failed")
    assert "history was rewritten" in failed["error"]
    watcher.wait_for(
        lambda event: event.get("event") == "pass-failed" and "retry" in event["trigger"]
    )
    assert watcher.process.poll() is None
    repo.git("reset", "-q", "--hard", seed)
    repo.git("push", "-q", "--force", "origin", "main")
    push_plan(repo, people.alice, "after-repair", "1.0.0")
    watcher.wait_for_event("run-finished", run="after-repair.1", result="succeeded")
    assert watcher.stop() == 0


# -- a remote, polled ---------------------------------------------------------------------


def test_a_remote_polled_every_second_picks_up_a_push(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    service = repo.clone(remote, "service")
    watcher = start_watch(
        watchers, service, people, service.path, "--remote", "origin", "--interval", "1"
    )
    push_plan(repo, people.alice, "polled", "1.0.0")
    pushed = time.monotonic()
    watcher.wait_for_event("run-finished", 30, run="polled.1", result="succeeded")
    assert time.monotonic() - pushed < 10
    [started] = [event for event in watcher.named("pass") if event["started"] == ["polled.1"]]
    assert started["trigger"] == ["poll"]
    log = subjects(remote)
    assert log[:2] == [
        "Deploy polled to development: succeeded",
        "Start polled in development: run polled.1",
    ]
    # Polls of an unchanged remote make no passes.
    watcher.wait_for_event("pass", commit=run_git(remote, "rev-parse", "main"))
    passes = len(watcher.named("pass"))
    time.sleep(2.5)
    assert len(watcher.named("pass")) == passes
    assert watcher.stop() == 0


def test_a_remote_that_cannot_be_read_is_logged_once_per_outage_and_its_end_once(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    service = repo.clone(remote, "service")
    watcher = start_watch(
        watchers, service, people, service.path, "--remote", "origin", "--interval", "0.2"
    )
    away = remote.with_name(remote.name + "-away")
    remote.rename(away)
    watcher.wait_for_event("poll-failed", 30)
    time.sleep(1.5)  # several polls more, each failing the same way
    assert len(watcher.named("poll-failed")) == 1
    away.rename(remote)
    watcher.wait_for_event("poll-recovered", 30)
    time.sleep(1.5)
    assert len(watcher.named("poll-recovered")) == 1
    assert len(watcher.named("poll-failed")) == 1
    assert watcher.stop() == 0


# -- webhooks -------------------------------------------------------------------------------


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        connection.close()


def github_push(ref: str, after: str, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": ref, "after": after, "repository": {"name": "config"}}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": signature,
    }


def gitlab_push(ref: str, after: str, token: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"object_kind": "push", "ref": ref, "after": after}).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Token": token,
    }


def watch_with_webhooks(
    repo: SeedRepo, people: People, watchers: list[Watcher], secret: str
) -> tuple[Path, Watcher, int]:
    """`repo` on a bare remote, watched from a clone that only webhooks trigger (the
    interval is an hour); the remote, the watcher and the port it listens on."""
    remote = repo.publish_to_bare_remote()
    service = repo.clone(remote, "service")
    secret_file = repo.path.parent / "webhook-secret"
    secret_file.write_text(secret)
    watcher = start_watch(
        watchers,
        service,
        people,
        service.path,
        "--remote",
        "origin",
        "--interval",
        "3600",
        "--listen",
        "127.0.0.1:0",
        "--webhook-secret-file",
        str(secret_file),
    )
    return remote, watcher, watcher.wait_for_event("listening")["port"]


def test_webhooks_trigger_passes_only_with_a_good_signature_and_healthz_reports(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    remote, watcher, port = watch_with_webhooks(repo, people, watchers, SECRET + "\n")
    status, health = request(port, "GET", "/healthz")
    assert status == 200
    assert (health["status"], health["passes"], health["branch"]) == ("ok", 1, "main")
    assert health["last_pass"]["commit"] == run_git(remote, "rev-parse", "main")
    assert health["last_pass"]["result"] == "ok"
    assert isinstance(health["last_pass"]["duration"], float)
    assert health["last_pass"]["at"].startswith("20")

    # GitHub: a bad signature is refused and triggers nothing.
    first = push_plan(repo, people.alice, "hooked", "1.0.0")
    body, headers = github_push("refs/heads/main", first, secret="wrong")
    status, answer = request(port, "POST", "/webhook", body, headers)
    assert status == 401
    assert answer == {"error": "bad or missing X-Hub-Signature-256"}
    unsigned = {key: value for key, value in headers.items() if key != "X-Hub-Signature-256"}
    assert request(port, "POST", "/webhook", body, unsigned)[0] == 401
    refused = watcher.wait_for_event("webhook-refused", status=401)
    assert refused["client"] == "127.0.0.1"
    time.sleep(1.0)
    assert request(port, "GET", "/healthz")[1]["passes"] == 1
    assert not any(s.startswith("Start hooked") for s in subjects(remote))
    # A good one: 202 at once, and the pass runs the plan.
    body, headers = github_push("refs/heads/main", first)
    status, answer = request(port, "POST", "/webhook", body, headers)
    assert (status, answer["action"]) == (202, "pass triggered")
    watcher.wait_for_event("run-finished", 30, run="hooked.1", result="succeeded")
    started = [event for event in watcher.named("pass") if event["started"] == ["hooked.1"]]
    assert started[0]["trigger"] == ["webhook-github"]
    # A push to another branch is accepted and ignored.
    watcher.wait_for_event("pass", commit=run_git(remote, "rev-parse", "main"))
    passes = len(watcher.named("pass"))
    body, headers = github_push("refs/heads/feature", first)
    status, answer = request(port, "POST", "/webhook", body, headers)
    assert (status, answer["action"]) == (
        202,
        "ignored: a push to refs/heads/feature, not refs/heads/main",
    )

    # GitLab: the token is the secret.
    second = push_plan(repo, people.alice, "gitlabbed", "1.0.0")
    body, headers = gitlab_push("refs/heads/main", second, "wrong")
    assert request(port, "POST", "/webhook", body, headers) == (
        401,
        {"error": "bad or missing X-Gitlab-Token"},
    )
    time.sleep(1.0)
    assert len(watcher.named("pass")) == passes
    body, headers = gitlab_push("refs/heads/main", second, SECRET)
    status, answer = request(port, "POST", "/webhook", body, headers)
    assert (status, answer["action"]) == (202, "pass triggered")
    watcher.wait_for_event("run-finished", 30, run="gitlabbed.1", result="succeeded")

    # Oversized: 413 from the Content-Length alone, without the body ever being sent.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.putrequest("POST", "/webhook")
    connection.putheader("Content-Length", str(2 * 1024 * 1024))
    connection.putheader("X-GitHub-Event", "push")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == (
        "a body of 2097152 bytes is over the 1048576 byte limit"
    )
    connection.close()
    # Elsewhere: 404 (`/` is the pipeline page: test_watch_listen_serves_the_pipeline_...).
    assert request(port, "POST", "/hooks", b"{}")[0] == 404
    assert request(port, "GET", "/hooks")[0] == 404
    tip = run_git(remote, "rev-parse", "main")
    watcher.wait_for_event("pass", commit=tip)
    status, health = request(port, "GET", "/healthz")
    assert (status, health["last_pass"]["commit"]) == (200, tip)
    assert health["passes"] == len(watcher.named("pass"))
    # The JSON docs/output-formats.md documents.
    row = documented_row("watch")
    for key in [*health, *health["last_pass"], *watcher.named("pass")[-1]]:
        assert f"{key}" in row, f"watch: '{key}' is not in docs/output-formats.md"
    assert watcher.stop() == 0


def page(port: int, path: str) -> tuple[int, str, http.client.HTTPMessage]:
    """GET `path` as a browser would: status, HTML, headers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Accept": "text/html"})
        response = connection.getresponse()
        return response.status, response.read().decode(), response.headers
    finally:
        connection.close()


def shown_version(html: str) -> int:
    found = re.search(r'<body data-version="(\d+)">', html)
    assert found, html[:400]
    return int(found.group(1))


def test_watch_listen_serves_the_pipeline_pages_and_a_pass_updates_them(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    _remote, watcher, port = watch_with_webhooks(repo, people, watchers, SECRET)
    wait_until(lambda: page(port, "/")[0] == 200, 30, "the pages' first read")
    _status, html, headers = page(port, "/")
    assert "ecommerce" in html
    assert "development" in html
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Server"] == "gitops-reconciler"
    before = shown_version(html)
    assert page(port, "/plans/hooked")[0] == 404  # not pushed yet
    # Read-only: the pages take GET alone; the webhook stays where it was.
    assert request(port, "POST", "/", b"{}")[0] == 404
    # A push, its webhook, the pass that runs it: the pages read the branch after it.
    pushed = push_plan(repo, people.alice, "hooked", "1.0.0")
    body, hook = github_push("refs/heads/main", pushed)
    assert request(port, "POST", "/webhook", body, hook)[0] == 202
    watcher.wait_for_event("run-finished", 30, run="hooked.1", result="succeeded")

    def shows_the_run() -> bool:
        status, html, _headers = page(port, "/plans/hooked")
        return status == 200 and 'run hooked.1: <span class="badge">succeeded</span>' in html

    wait_until(shows_the_run, 30, "the plan page to show the finished run")
    _status, html, _headers = page(port, "/plans/hooked")
    assert '<span class="badge">done</span>' in html
    assert shown_version(page(port, "/")[1]) > before
    # A page open meanwhile learns of it from the event stream (what static/live.js reads).
    with socket.create_connection(("127.0.0.1", port), timeout=10) as stream:
        stream.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = b""
        while b"event: pass" not in head:
            chunk = stream.recv(4096)
            assert chunk, head
            head += chunk
    assert b"text/event-stream" in head
    # Bound to loopback: another name in Host is refused (DNS rebinding), the webhook not.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/", headers={"Host": "attacker.example"})
    assert connection.getresponse().status == 400
    connection.close()
    assert watcher.stop() == 0


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` as is on a fresh connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(
    "length",
    [b"\xb2", b"9" * 5000, b"12345678901", b"-1", b"0x10", b""],
    ids=["superscript-two", "5000-digits", "11-digits", "negative", "hex", "empty"],
)
def test_a_webhook_whose_content_length_is_not_1_to_10_ascii_digits_gets_400(
    length: bytes,
) -> None:
    # '\u00b2' passes str.isdigit() and 5000 digits pass it too; int() refuses both, and the
    # client used to get no answer at all. The body is never read: there is none to read.
    refused: list[tuple[str, int, str]] = []
    delivered: list[Delivery] = []

    def deliver(delivery: Delivery) -> str:
        delivered.append(delivery)
        return "pass triggered"

    def refuse(client: str, status: int, reason: str) -> None:
        refused.append((client, status, reason))

    server = WebhookServer(
        "127.0.0.1",
        0,
        SECRET.encode(),
        Receiver(delivered=deliver, refused=refuse, health=lambda: (200, {"status": "ok"})),
    )
    server.start()
    try:
        answer = raw_exchange(
            server.address[1],
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            b"Content-Length: " + length + b"\r\n\r\n",
        )
    finally:
        server.stop()
    reason = "the Content-Length is not a number of bytes (1 to 10 digits)"
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert answer.endswith(json.dumps({"error": reason}).encode() + b"\n")
    assert refused == [("127.0.0.1", 400, reason)]
    assert delivered == []


def test_the_webhook_server_names_itself_without_pythons_version() -> None:
    server = WebhookServer(
        "127.0.0.1",
        0,
        SECRET.encode(),
        Receiver(
            delivered=lambda delivery: "pass triggered",
            refused=lambda client, status, reason: None,
            health=lambda: (200, {"status": "ok"}),
        ),
    )
    server.start()
    try:
        answer = raw_exchange(
            server.address[1], b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nServer: gitops-reconciler\r\n" in answer


def test_listening_without_a_webhook_secret_is_refused(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    result = repo.reconciler(
        "watch", "--key", str(people.reconciler.key), "--listen", "127.0.0.1:0"
    )
    assert result.exit_code == 2
    assert "error: refusing to listen for webhooks without a secret" in result.stderr
    assert "--webhook-secret-file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("interval", ["nan", "inf", "-inf", "86401", "0.05"])
def test_an_interval_that_is_not_0_1_to_86400_seconds_is_refused(
    tmp_path: Path, people: People, interval: str
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    # An interval that got through would watch (and, as NaN, spin) until the timeout.
    result = reconciler(
        "watch",
        "--repo",
        repo.path,
        "--key",
        people.reconciler.key,
        "--interval",
        interval,
        timeout=30,
    )
    assert result.exit_code == 2, result.stderr
    assert result.stderr.endswith(
        f"Error: Invalid value for '--interval': '{interval}' is not a number of seconds "
        "from 0.1 to 86400.\n"
    ), result.stderr


def test_the_watch_log_says_why_a_plan_version_was_refused(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    unsourced = plan("unsourced-qa", "quality-assurance", [{"name": "ecommerce", "version": "1"}])
    repo.commit(people.alice, {"plans/unsourced-qa.yaml": unsourced})
    ref = f"plans/unsourced-qa.yaml@{repo.blob('plans/unsourced-qa.yaml')}"
    watcher = start_watch(watchers, repo, people, repo.path)
    [event] = [event for event in watcher.named("pass") if event["refused"]]
    assert event["refused"] == [ref]
    assert (
        f"refused {ref} (quality-assurance promotes from development, not nothing)"
        in (event["message"])
    )
    assert watcher.stop() == 0
