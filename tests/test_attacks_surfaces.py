"""Attacks on the surfaces around the rules: the terminal, logs, the webhook service, drivers.

From an adversarial review that followed the ones in test_attacks.py. Each
test is one attempt, written as the attacker would try it: a file name, a
committer email or a driver's output that rewrites what an operator reads or
forges a line of a log or of a CI annotation; a webhook client that holds
the service's connections or floods it; a driver that writes without end.
Attacks the code already withstood are kept as tests that pin the defence.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.adapters.webhook import Delivery, Receiver, WebhookServer
from reconciler.cli.watch_commands import parse_listen
from reconciler.core.printable import printable
from tests import test_watch
from tests.configrepo import Result, example_file, reconciler
from tests.people import People
from tests.repositories import SeedRepo, run_git, trailers
from tests.scenarios import DEV_PLAN, ECOMMERCE, PORTAL, QA_PLAN, dev_plan, qa_plan
from tests.test_watch import Watcher, push_plan, watch_with_webhooks

# What a terminal acts on: C0 controls (but the line feed and the tab), DEL, C1, bidi.
_ACTED_ON = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def acted_on(text: str) -> list[str]:
    """The characters in `text` a terminal would act on instead of showing."""
    return _ACTED_ON.findall(text)


def commit_path(repo: SeedRepo, raw: bytes, content: str, by_email: str | None = None) -> str:
    """Commit a file whose name is the bytes `raw` (relative), unsigned, as bob."""
    target = os.fsencode(repo.path) + b"/" + raw
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as handle:
        handle.write(content)
    repo.git("add", "-A")
    return repo.commit(repo.people.bob, None, "a file", signed=False, email=by_email)


# -- B. the terminal, logs and CI annotations -----------------------------------------------

# A title change (OSC), then: move up a line, erase it, and write a fake verdict over it.
FORGED = "\x1b]0;all good\x07\x1b[1A\x1b[2K\r     ok 0123456789ab by root\u202e"


def test_a_file_name_or_committer_email_cannot_rewrite_what_verify_plan_history_show(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    commit_path(repo, f"docs/x{FORGED}.md".encode(), "hello\n")
    # development takes emails: the committer's email reaches the reasons shown.
    repo.commit(
        people.bob, {DEV_PLAN: dev_plan(ECOMMERCE)}, signed=False, email=f"b{FORGED}@evil.example"
    )
    outputs = {
        command: repo.reconciler(*command.split())
        for command in ("verify", "verify --all", "plan", "history", "status", "apply --dry-run")
    }
    for command, result in outputs.items():
        assert "Traceback" not in result.stderr, command
        assert acted_on(result.stdout + result.stderr) == [], (command, result.stdout)
    verify = outputs["verify"].stdout
    assert outputs["verify"].exit_code == 1
    assert "REFUSED" in verify
    # Shown, escaped the way Python's repr does, on the line it belongs to.
    assert f"docs/x{printable(FORGED)}.md: changed by an unknown actor" in verify
    assert f"committer email b{printable(FORGED)}@evil.example is no user's" in verify
    assert "\\x1b[2K\\r     ok 0123456789ab by root\\u202e" in outputs["history"].stdout
    # JSON keeps the real values: its escapes are JSON's own.
    data = repo.reconciler("verify", "--format", "json").json()
    paths = [r["path"] for landing in data["landings"] for r in landing["refusals"]]
    assert f"docs/x{FORGED}.md" in paths


def test_a_file_name_cannot_forge_a_workflow_command_in_verify_format_github(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    # A line break in a file name used to end the `file=` property's line: the rest was a
    # workflow command of its own (stop-commands hides every annotation after it).
    commit_path(repo, b"docs/a,title=x::y\n::stop-commands::pwned\n::notice::all good.md", "x\n")
    result = repo.reconciler("verify", "--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines  # one refusal, one path that differs
    for line in lines:
        match = re.fullmatch(r"::(\w+) ([^:]*)::(.*)", line)
        assert match is not None, line
        command, properties, _ = match.groups()
        assert command in ("error", "warning")
        # Exactly file= and title=: no comma or colon of the name ends the property early.
        assert [part.split("=", 1)[0] for part in properties.split(",")] == ["file", "title"]
        assert "::" not in properties
    file_property = lines[0].split(" ", 1)[1].split(",", 1)[0]
    assert file_property == (
        "file=docs/a%2Ctitle=x%3A%3Ay\\n%3A%3Astop-commands%3A%3Apwned"
        "\\n%3A%3Anotice%3A%3Aall good.md"
    )


def test_a_file_name_that_is_not_utf8_does_not_break_any_command_or_the_service(
    tmp_path: Path, people: People
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    # Any pusher's commit: the state database used to refuse the name (UnicodeEncodeError),
    # every command ended in an internal error, and no pass could get past the commit.
    commit_path(repo, b"docs/caf\xe9-\xff.md", "x\n")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    verify = repo.reconciler("verify")
    assert verify.exit_code == 1, verify.stderr
    assert "docs/caf\\xe9-\\xff.md: changed by an unknown actor" in verify.stdout
    for command in ("plan", "history", "status"):
        result = repo.reconciler(command)
        assert (result.exit_code, result.stderr) == (0, ""), command
    data = repo.reconciler("verify", "--format", "json").json()
    assert "docs/caf\udce9-\udcff.md" in data["differs"]
    applied = repo.apply()
    assert "Traceback" not in applied.stderr
    assert "succeeded 2026-11-dev-build.1" in applied.stdout, applied.stdout + applied.stderr
    # And again: the stored name reads back as the same file (nothing new is refused).
    again = repo.reconciler("verify", "--from", "main~1")
    assert again.exit_code == 0, again.stdout
    assert "docs/caf\\xe9-\\xff.md: its content" in again.stdout


HOSTILE_DRIVER = """\
import os, sys
if os.environ.get("RECONCILER_OPERATION") == "current":
    sys.exit(1)
sys.stdout.write("fetching\\r2026-11-22T12:00:00.000Z run succeeded\\x1b[2K\\n")
sys.stdout.write("\\x1b]8;;https://evil.example\\x07click\\x1b]8;;\\x07 \\u202eok\\n")
sys.stdout.flush()
"""


def command_driver_repo(tmp_path: Path, people: People, script_text: str) -> SeedRepo:
    """The seed story with development deploying through `script_text` (a Python driver)."""
    script = tmp_path / "driver.py"
    script.write_text(script_text)
    environment = example_file("environments/development.yaml").replace(
        "driver: {type: local}",
        f"driver: {{type: command, argv: [{json.dumps(sys.executable)}, "
        f"{json.dumps(str(script))}], timeout: 30}}",
    )
    return SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": environment})


def deployed_with(tmp_path: Path, people: People, script_text: str) -> tuple[SeedRepo, str]:
    """The development build run by `apply` through the driver `script_text`; its run log,
    as committed on main."""
    repo = command_driver_repo(tmp_path, people, script_text)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    log = "main:logs/development/2026-11-dev-build/2026-11-dev-build.1.log"
    return repo, run_git(repo.path, "show", log)


def test_driver_output_cannot_forge_or_hide_lines_in_the_run_log_committed_to_git(
    tmp_path: Path, people: People
) -> None:
    repo, log = deployed_with(tmp_path, people, HOSTILE_DRIVER)
    assert acted_on(log) == []
    assert "[1/1 ecommerce 1.4.0] fetching\\r2026-11-22T12:00:00.000Z run succeeded\\x1b[2K" in log
    assert "\\x1b]8;;https://evil.example\\x07click\\x1b]8;;\\x07 \\u202eok" in log
    assert acted_on(run_git(repo.path, "log", "-1", "--format=%B", "main")) == []


# -- A. the service: a remote that refuses, the webhook receiver ---------------------------


def apply_against_a_refusing_hook(
    tmp_path: Path, people: People, hook_body: str
) -> tuple[Result, int]:
    """`apply` from a clone of a remote whose pre-receive hook runs `hook_body` and refuses
    every push; its result, and how many pushes the hook saw."""
    repo = SeedRepo.create(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.git("push", "-q", "origin", "main")
    service = repo.clone(remote, "service")
    attempts = tmp_path / "attempts"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\necho x >> {attempts}\n{hook_body}\nexit 1\n")
    hook.chmod(0o755)
    result = service.reconciler(
        "apply",
        "--remote",
        "origin",
        "--key",
        str(people.reconciler.key),
        "--driver-root",
        str(tmp_path / "releases"),
    )
    return result, len(attempts.read_text().splitlines())


def test_a_remote_that_refuses_every_push_stops_the_pass_at_once_naming_its_reason(
    tmp_path: Path, people: People
) -> None:
    # Branch protection, or a hook that wants pull requests: every push is refused.
    result, pushes = apply_against_a_refusing_hook(tmp_path, people, "echo 'main is protected' >&2")
    # It used to take the refusal for a lost race: fetch, re-verify and push again, 1,000
    # times in a row, then once more after every backoff of the watcher.
    assert pushes <= 2
    assert result.exit_code == 1, result.stderr
    assert "main is protected" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_remote_refusing_every_push_in_a_lost_races_words_stops_the_pass_at_once(
    tmp_path: Path, people: People
) -> None:
    # A hook's words reach git push's stderr as "remote: ...", where git's own words for a
    # race lost at the host's ref lock stand too: only git's status of the branch tells them.
    said = "error: cannot lock ref 'refs/heads/main': is at $new but expected $old"
    result, pushes = apply_against_a_refusing_hook(
        tmp_path, people, f'read old new ref\necho "{said}" >&2'
    )
    assert pushes <= 2
    assert result.exit_code == 1, result.stderr
    assert "refused the push to main" in result.stderr
    assert "Traceback" not in result.stderr


SECRET = b"surfaces-secret"
watchers = test_watch.watchers  # the fixture: the watch processes a test started, killed after


class Service:
    """A real webhook server on loopback, and what it reported."""

    def __init__(self, secret: bytes = SECRET, **limits: float) -> None:
        self.delivered: list[Delivery] = []
        self.refused: list[tuple[str, int, str]] = []

        def deliver(delivery: Delivery) -> str:
            self.delivered.append(delivery)
            return "ignored: replayed" if delivery.replayed else "pass triggered"

        self.server = WebhookServer(
            "127.0.0.1",
            0,
            secret,
            Receiver(
                delivered=deliver,
                refused=lambda *refusal: self.refused.append(refusal),
                health=lambda: (200, {"status": "ok"}),
            ),
            **limits,  # type: ignore[arg-type]
        )
        self.server.start()
        self.port = self.server.address[1]

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        """A connection from `source`: any 127.x.y.z address is this machine's too."""
        return socket.create_connection(
            ("127.0.0.1", self.port), timeout=10, source_address=(source, 0)
        )

    def exchange(self, data: bytes) -> bytes:
        """`data` on a fresh connection; all the server answers until it closes."""
        with self.connect() as sock:
            sock.sendall(data)
            return read_all(sock)

    def get(self, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


@pytest.fixture
def service() -> Iterator[Service]:
    running = Service(read_timeout=1.0, max_connections=4)
    yield running
    running.server.stop()


def signed(body: bytes) -> dict[str, str]:
    return {
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
    }


def test_a_client_that_sends_a_byte_now_and_then_is_cut_off_at_the_request_deadline(
    service: Service,
) -> None:
    # Slowloris: a socket timeout restarts at every byte, so a byte every 0.3 s held the
    # connection (and its thread) for ever. The whole request must come within the deadline.
    with service.connect() as sock:
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
        began = time.monotonic()
        closed = False
        while time.monotonic() - began < 6:
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            sock.settimeout(0.3)
            try:
                if sock.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed
        assert time.monotonic() - began < 3
    # A body that trickles in is cut off the same way, and nothing is delivered.
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    with service.connect() as sock:
        head = f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        sock.sendall(
            head.encode()
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in signed(body).items())
            + b"\r\n"
        )
        began = time.monotonic()
        for byte in body[:-1]:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        assert time.monotonic() - began < 3
    assert service.delivered == []


def test_requests_beyond_the_cap_are_answered_503_and_the_server_recovers(
    service: Service,
) -> None:
    # Requests that have begun (a request line) and never end their headers: every slot
    # taken. Silent connections take none (test_idle_connections_...).
    held = [service.connect() for _ in range(4)]
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.2)
        answer = service.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert answer.endswith(b'{"error": "too many connections"}\n')
        assert ("127.0.0.1", 503, "too many connections") in service.refused
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert service.get("GET", "/healthz")[0] == 200
    # And the held ones would have been dropped at the deadline anyway.
    with service.connect() as sock:
        time.sleep(1.5)
        assert read_all(sock) == b""


def deliver_in_time(service: Service, number: int) -> float:
    """A genuine signed push delivered now: asserts 202, and returns how long it took."""
    body = json.dumps({"ref": "refs/heads/main", "after": f"{number:040x}"}).encode()
    began = time.monotonic()
    status, answer = service.get("POST", "/webhook", body, **signed(body))
    assert status == 202, answer
    assert json.loads(answer)["action"] == "pass triggered"
    return time.monotonic() - began


class Hoarder(threading.Thread):
    """An attacker that keeps `per_address` silent connections open from each of
    `addresses`, opening another whenever the server closes one, until stopped."""

    def __init__(self, port: int, addresses: list[str], per_address: int) -> None:
        super().__init__(daemon=True)
        self.port, self.addresses, self.per_address = port, addresses, per_address
        self.opened = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        held: dict[socket.socket, str] = {}
        while not self.stopping.is_set():
            for address in self.addresses:
                while list(held.values()).count(address) < self.per_address:
                    try:
                        sock = socket.create_connection(
                            ("127.0.0.1", self.port), timeout=1, source_address=(address, 0)
                        )
                    except OSError:
                        break
                    held[sock] = address
                    self.opened += 1
            readable, _, _ = select.select(list(held), [], [], 0.05)
            for sock in readable:  # closed by the server: opened again on the next turn
                del held[sock]
                sock.close()
        for sock in held:
            sock.close()


def test_idle_connections_from_one_address_or_many_do_not_keep_out_a_signed_delivery() -> None:
    # 32 silent connections took every slot: genuine deliveries got 503 until the read
    # timeout (10 s) closed them, and the attacker opened 32 more.
    service = Service()  # the limits `watch --listen` has
    idle = [service.connect() for _ in range(40)]  # from the address the delivery comes from
    idle += [service.connect(f"127.0.0.{host}") for host in range(2, 6) for _ in range(10)]
    try:
        time.sleep(0.2)
        assert deliver_in_time(service, 1) < 1.5
        # The same attacker again and again, from several addresses: every connection the
        # server closes is opened anew at once.
        hoarder = Hoarder(service.port, [f"127.0.0.{host}" for host in range(6, 10)], 12)
        hoarder.start()
        try:
            began = time.monotonic()
            for number in range(2, 8):
                time.sleep(0.4)
                assert deliver_in_time(service, number) < 1.5
            assert time.monotonic() - began >= 2.4
            assert hoarder.opened > 48  # it did open again what the server closed
        finally:
            hoarder.stopping.set()
            hoarder.join(timeout=5)
        assert [delivery.replayed for delivery in service.delivered] == [False] * 7
    finally:
        for sock in idle:
            sock.close()
        service.server.stop()


def test_one_address_cannot_take_every_slot_with_requests_that_never_end() -> None:
    service = Service()
    began: list[socket.socket] = []
    try:
        for _ in range(40):
            began.append(service.connect("127.0.0.2"))
            began[-1].sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        time.sleep(0.3)
        assert deliver_in_time(service, 1) < 1.5
        turned_away = [refusal for refusal in service.refused if refusal[1] == 503]
        assert set(turned_away) == {("127.0.0.2", 503, "too many connections from one address")}
        assert len(turned_away) == 40 - 8
    finally:
        for sock in began:
            sock.close()
        service.server.stop()


def test_headers_sent_a_byte_a_second_are_cut_off_at_the_header_deadline() -> None:
    # Slowloris within the request deadline: the headers had the whole 10 s, so a client
    # held a thread (and a slot) 10 s for a few bytes.
    service = Service(read_timeout=10.0)
    try:
        with service.connect() as sock:
            began = time.monotonic()
            sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            closed_after = None
            while time.monotonic() - began < 6:
                sock.settimeout(1.0)
                try:
                    if sock.recv(65536) == b"":
                        closed_after = time.monotonic() - began
                        break
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed_after = time.monotonic() - began
                    break
                try:
                    sock.sendall(b"a")
                except OSError:
                    closed_after = time.monotonic() - began
                    break
            assert closed_after is not None
            assert 1.5 < closed_after < 3.5
        # The body still has the request's whole deadline: headers at once, body 2.5 s on.
        body = json.dumps({"ref": "refs/heads/main", "after": "b" * 40}).encode()
        with service.connect() as sock:
            head = f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            sock.sendall(
                head.encode()
                + b"".join(f"{k}: {v}\r\n".encode() for k, v in signed(body).items())
                + b"Connection: close\r\n\r\n"
            )
            time.sleep(2.5)
            sock.sendall(body)
            assert read_all(sock).startswith(b"HTTP/1.1 202 ")
        assert len(service.delivered) == 1
    finally:
        service.server.stop()


def served_connections(pid: int, port: int) -> int:
    """How many connections to `port` process `pid` holds open on its side (a descriptor
    each), from /proc: its socket descriptors whose local port is `port`, not listening."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    held = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            held += local_port == port and fields[3] != "0A" and fields[9] in inodes
    return held


def never_reading(service: Service, connections: int) -> list[socket.socket]:
    """Connections whose window is shut, each with pipelined requests whose answers (a 404
    echoes its path) are more than the kernel's buffers take; one after the other, so
    none is turned away as a request being read beside the others."""
    request = b"GET /" + b"a" * 60000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    opened = []
    for _ in range(connections):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", service.port))
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.send(request * 40)  # what the server takes of it, and never a read
        opened.append(sock)
        time.sleep(0.5)
    return opened


def test_a_client_that_never_reads_its_answers_cannot_hold_connections_past_the_deadline() -> None:
    # The next answer waited to be written for ever: the connection was held outside every
    # cap (its request was read) and past every deadline, a descriptor and its answers each.
    capped = Service(read_timeout=60.0, max_per_client=2)
    stalled = never_reading(capped, 5)
    try:
        test_watch.wait_until(
            lambda: served_connections(os.getpid(), capped.port) <= 2, 20, "all but 2 dropped"
        )
        assert deliver_in_time(capped, 1) < 1.5
    finally:
        for sock in stalled:
            sock.close()
        capped.server.stop()
    timed = Service(read_timeout=1.0)
    stalled = never_reading(timed, 2)
    try:
        test_watch.wait_until(
            lambda: served_connections(os.getpid(), timed.port) == 0, 10, "both dropped"
        )
    finally:
        for sock in stalled:
            sock.close()
        timed.server.stop()


def test_a_gitlab_token_that_is_not_ascii_is_accepted_when_right_and_refused_when_wrong() -> None:
    # Header values are read as Latin-1 and were compared as UTF-8: a non-ASCII token
    # never matched, however right.
    token = "jeton-d\u00e9ploiement-\u00df\u2603"
    service = Service(secret=token.encode())
    body = json.dumps({"object_kind": "push", "ref": "refs/heads/main", "after": "c" * 40})

    def send(raw_token: bytes) -> bytes:
        return service.exchange(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Gitlab-Event: Push Hook\r\n"
            b"X-Gitlab-Token: " + raw_token + b"\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body.encode()
        )

    try:
        assert send(token.encode()).startswith(b"HTTP/1.1 202 ")
        assert [delivery.provider for delivery in service.delivered] == ["gitlab"]
        wrong = [
            token.replace("\u2603", "\u2604").encode(),  # one character off
            token.encode("utf-8")[:-1],  # one byte short
            token.encode("latin-1", "replace"),  # the same text, another encoding
            b"jeton-d\xc3\xa9ploiement-",  # a prefix
        ]
        for raw in wrong:
            assert send(raw).startswith(b"HTTP/1.1 401 "), raw
        assert len(service.delivered) == 1
        assert [refusal[1:] for refusal in service.refused] == [
            (401, "bad or missing X-Gitlab-Token")
        ] * len(wrong)
    finally:
        service.server.stop()


def test_a_chunked_body_is_refused_even_beside_a_content_length(service: Service) -> None:
    # Two lengths that disagree: the rest of the chunked body would be read as the next
    # request on the connection.
    answer = service.exchange(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 411 "), answer
    assert b"Connection: close" in answer
    assert answer.count(b"HTTP/1.1") == 1


def test_methods_paths_and_headers_the_receiver_does_not_serve(service: Service) -> None:
    """Pinned: nothing but the three webhook paths and /healthz, compared as typed."""
    for method in ("HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"):
        assert service.get(method, "/webhook")[0] == 501, method
    for path in ("/webhook/../healthz", "/webhook/", "/WEBHOOK", "/webhook%2F", "/./webhook"):
        assert service.get("POST", path, b"{}", **signed(b"{}"))[0] == 404, path
    # The path is echoed in JSON only (escaped), and never logged.
    answer = service.exchange(b"GET /\x1b[2J/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404 ")
    assert answer.endswith(b'{"error": "no such path: /\\u001b[2J/../../etc/passwd"}\n')
    # A head over 64 KiB, or over 100 headers: refused before h11 reads it.
    long_header = b"X-A: " + b"a" * 70000 + b"\r\n"
    assert service.exchange(b"GET /healthz HTTP/1.1\r\n" + long_header + b"\r\n").startswith(
        b"HTTP/1.1 431 "
    )
    many = b"".join(b"X-%d: 1\r\n" % n for n in range(101))
    assert service.exchange(b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n").startswith(
        b"HTTP/1.1 431 "
    )
    # A TLS client hello on the plain port: 400, in the words http.server used.
    tls = service.exchange(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
    assert b"400 - Bad request syntax" in tls
    assert service.delivered == []


def test_a_replayed_delivery_is_acknowledged_and_ignored_whatever_its_delivery_id(
    service: Service,
) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
    first = service.get("POST", "/webhook", body, **signed(body), **{"X-GitHub-Delivery": "1"})
    assert first[0] == 202
    # GitHub signs the body alone: the same body under a new id is the same delivery.
    again = service.get("POST", "/webhook", body, **signed(body), **{"X-GitHub-Delivery": "2"})
    assert again[0] == 202
    assert json.loads(again[1])["action"] == "ignored: replayed"
    assert [delivery.replayed for delivery in service.delivered] == [False, True]


@pytest.mark.parametrize("port", ["\u00b2", "9" * 5000, "65536", "-1", ""])
def test_a_listen_port_that_is_not_0_to_65535_in_ascii_digits_is_a_usage_error(
    tmp_path: Path, port: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x" * 32)
    result = reconciler(
        "watch",
        "--repo",
        tmp_path,
        "--listen",
        f"127.0.0.1:{port}",
        "--webhook-secret-file",
        secret,
        timeout=30,
    )
    assert result.exit_code == 2, result.stderr
    assert "is not HOST:PORT" in result.stderr
    assert "internal error" not in result.stderr


def test_listen_binds_loopback_unless_a_host_is_named() -> None:
    assert parse_listen("8181") == ("127.0.0.1", 8181)
    assert parse_listen(":8181") == ("127.0.0.1", 8181)
    assert parse_listen("0.0.0.0:8181") == ("0.0.0.0", 8181)
    assert parse_listen("[::1]:8181") == ("::1", 8181)


def test_a_flood_of_bad_or_replayed_deliveries_makes_no_pass_and_healthz_tells_no_secret(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    repo = SeedRepo.create(tmp_path, people)
    remote, watcher, port = watch_with_webhooks(repo, people, watchers, SECRET.decode())
    secret_file = tmp_path / "webhook-secret"
    pushed = push_plan(repo, people.alice, "hooked", "1.0.0")
    body = json.dumps({"ref": "refs/heads/main", "after": pushed}).encode()
    first = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with contextlib.closing(first):
        first.request("POST", "/webhook", body, signed(body))
        response = first.getresponse()
        assert (response.status, json.loads(response.read())["action"]) == (202, "pass triggered")
    watcher.wait_for_event("run-finished", run="hooked.1", result="succeeded")
    watcher.wait_for_event("pass", commit=run_git(remote, "rev-parse", "main"))
    passes = len(watcher.named("pass"))
    # The same delivery again and again (a captured one), on one keep-alive connection,
    # then bad signatures: acknowledged or refused, and not one pass more. A fresh
    # connection: the server cuts one left idle past its header deadline, as it should.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with contextlib.closing(connection):
        for number in range(50):
            connection.request(
                "POST", "/webhook", body, {**signed(body), "X-GitHub-Delivery": str(number)}
            )
            response = connection.getresponse()
            assert json.loads(response.read())["action"] == (
                "ignored: the same delivery was received before"
            )
        for _ in range(50):
            headers = {**signed(b"other"), "X-GitHub-Event": "push"}
            connection.request("POST", "/webhook", body, headers)
            response = connection.getresponse()
            assert response.status == 401
            response.read()
    time.sleep(1.0)
    assert len(watcher.named("pass")) == passes
    assert len(watcher.named("webhook-refused")) == 50
    health = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    health.request("GET", "/healthz")
    answer = health.getresponse()
    text = answer.read().decode()
    health.close()
    assert answer.status == 200
    assert set(json.loads(text)) == {
        "status",
        "branch",
        "remote",
        "instance",
        "since",
        "passes",
        "last_pass",
        "running",
        "stopping",
    }
    for private in (SECRET.decode(), str(people.reconciler.key), str(secret_file), str(tmp_path)):
        assert private not in text
    assert watcher.stop() == 0


def open_event_stream(port: int) -> socket.socket:
    """A page's event stream (what static/live.js opens), read up to its first event."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    said = b""
    while b"\r\n\r\n" not in said or (said.startswith(b"HTTP/1.1 200") and b"event:" not in said):
        chunk = sock.recv(4096)
        assert chunk, said
        said += chunk
    sock.setblocking(False)
    if not said.startswith(b"HTTP/1.1 200 "):
        sock.close()
        raise ConnectionRefusedError(said.split(b"\r\n", 1)[0].decode())
    return sock


def test_open_pages_cannot_keep_out_a_webhook_delivery_or_take_every_descriptor(
    tmp_path: Path, people: People, watchers: list[Watcher]
) -> None:
    # An event stream lasts as long as its page is open. Held as a request being served,
    # 32 open pages (8 from one address) would have turned every delivery away with 503.
    repo = SeedRepo.create(tmp_path, people)
    _remote, watcher, port = watch_with_webhooks(repo, people, watchers, SECRET.decode())
    test_watch.wait_until(lambda: test_watch.page(port, "/")[0] == 200, 30, "the first read")
    streams = [open_event_stream(port) for _ in range(64)]
    try:
        # The pages cap them: one more is refused, the page itself still served.
        with pytest.raises(ConnectionRefusedError, match="503"):
            open_event_stream(port)
        assert test_watch.page(port, "/")[0] == 200
        pushed = push_plan(repo, people.alice, "hooked", "1.0.0")
        body = json.dumps({"ref": "refs/heads/main", "after": pushed}).encode()
        status, answer = test_watch.request(port, "POST", "/webhook", body, signed(body))
        assert (status, answer["action"]) == (202, "pass triggered")
        watcher.wait_for_event("run-finished", 30, run="hooked.1", result="succeeded")
    finally:
        for sock in streams:
            sock.close()

    def reopens() -> bool:
        try:
            open_event_stream(port).close()
        except ConnectionRefusedError:
            return False
        return True

    # A closed page gives its stream back.
    test_watch.wait_until(reopens, 10, "a stream once the pages were closed")
    assert watcher.stop() == 0


# -- C. drivers --------------------------------------------------------------------------------

NOSY_DRIVER = """\
import os, sys
if os.environ.get("RECONCILER_OPERATION") == "current":
    sys.exit(1)
print("variables " + " ".join(sorted(os.environ)))
print("folder " + os.getcwd() + " holds " + repr(os.listdir(".")))
"""


def test_a_driver_sees_no_secret_of_the_service_and_runs_outside_the_repository(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "RECONCILER_KEY": str(people.reconciler.key),
        "RECONCILER_STATE_DIR": str(tmp_path / "state"),
        "GITHUB_TOKEN": "ghp_secret",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
    }.items():
        monkeypatch.setenv(name, value)
    repo, log = deployed_with(tmp_path, people, NOSY_DRIVER)
    [variables] = [
        line.split(" variables ", 1)[1] for line in log.splitlines() if " variables " in line
    ]
    assert set(variables.split()) <= {
        "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "LC_CTYPE",  # LC_CTYPE: Python's own
        "RECONCILER_APP", "RECONCILER_VERSION", "RECONCILER_ENVIRONMENT", "RECONCILER_PLAN",
        "RECONCILER_RUN", "RECONCILER_ACTION", "RECONCILER_FROM_VERSION",
        "RECONCILER_SOURCE_ENVIRONMENT", "RECONCILER_OPERATION", "RECONCILER_LEASE_UNTIL",
    }  # fmt: skip
    # `reconciler apply` ran in the repository's work tree; the driver did not.
    [folder] = [line.split(" folder ", 1)[1] for line in log.splitlines() if " folder " in line]
    where, holds = folder.split(" holds ")
    assert holds == "[]"
    assert not Path(where).is_relative_to(repo.path)
    assert not Path(where).exists()  # removed after the step


FLOODING_DRIVER = """\
import os, sys
if os.environ.get("RECONCILER_OPERATION") == "current":
    sys.exit(1)
out = sys.stdout.buffer
out.write(b"first line\\n")
out.write(b"x" * (8 * 1024 * 1024) + b" end of a long line\\n")
for number in range(200_000):
    out.write(b"line %d\\n" % number)
out.write(b"last line\\n")
"""


def test_a_driver_that_writes_without_end_leaves_a_bounded_log(
    tmp_path: Path, people: People
) -> None:
    _, log = deployed_with(tmp_path, people, FLOODING_DRIVER)
    # It used to hold every line in memory twice and commit 10 MB of log to the repository.
    assert len(log) < 3_000_000
    driver = [
        line.split("] ", 1)[1] for line in log.splitlines() if "[1/1 ecommerce 1.4.0] " in line
    ]
    assert driver[1] == "first line"
    assert driver[2] == "x" * 4096 + " [line cut]"
    assert driver[3] == "line 0"
    assert "[199003 lines of output left out]" in driver
    assert driver[-3:] == ["line 199999", "last line", "ok: " + sys.executable + " exited 0"]


# -- C. values the schema refuses must never reach a driver ----------------------------------

NEWLINE_PLAN = """\
name: 2026-11-dev-build
target: development
applications:
  - {name: ecommerce, version: "9.9\\n"}
state: ready
"""


def test_a_value_ending_in_a_newline_is_invalid_and_never_becomes_a_release_directory(
    tmp_path: Path, people: People, example_copy: Path
) -> None:
    # python-jsonschema's `$` matches before a final newline: its explanation of the
    # Rust validator's refusal found nothing, and nothing was taken for valid.
    (example_copy / DEV_PLAN).write_text(NEWLINE_PLAN)
    for path, old, new in (
        ("teams.yaml", "emails: [bob@example.com]", 'emails: ["bob@example.com\\n"]'),
        ("environments/quality-assurance.yaml", "approval_ttl: 8h", 'approval_ttl: "8h\\n"'),
    ):
        text = (example_copy / path).read_text()
        assert old in text
        (example_copy / path).write_text(text.replace(old, new))
    lines = {
        path: next(
            number
            for number, line in enumerate((example_copy / path).read_text().splitlines(), 1)
            if "\\n" in line
        )
        for path in (DEV_PLAN, "teams.yaml", "environments/quality-assurance.yaml")
    }
    validated = reconciler("validate", "--repo", example_copy)
    assert validated.exit_code == 1, validated.stdout
    assert "Traceback" not in validated.stderr
    for path, line in lines.items():
        assert re.search(rf"^{re.escape(path)}:{line}:\d+: error: ", validated.stdout, re.M), (
            validated.stdout
        )

    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {DEV_PLAN: NEWLINE_PLAN})
    verified = repo.reconciler("verify", "--format", "json")
    assert verified.exit_code == 1, verified.stdout + verified.stderr
    applied = repo.apply("--format", "json")
    assert applied.exit_code == 1, applied.stdout + applied.stderr
    assert applied.json()["runs"] == []
    assert applied.json()["refused"] == [f"{DEV_PLAN}@{repo.blob(DEV_PLAN)}"]
    assert not (repo.driver_root / "development" / "ecommerce").exists()
    assert not [path for path in repo.driver_root.rglob("*") if "\n" in path.name]


def test_an_approval_of_a_tag_from_a_newer_build_never_ships_the_release_of_an_older_one(
    tmp_path: Path, people: People
) -> None:
    # The local driver reused quality-assurance's releases/0.6 whichever build it was
    # tagged from: "0.6 from 0.6-dev.42", approved and triggered, shipped 0.6-dev.41.
    repo = SeedRepo.create(tmp_path, people)
    repo.clock = int(time.time()) - 3600  # QA counts approvals for 8 hours: date them now

    def build_and_tag(build: str) -> None:
        repo.commit(
            people.diana, {DEV_PLAN: dev_plan({"name": "customer-portal", "version": build})}
        )
        assert repo.apply().exit_code == 0
        repo.commit(people.diana, {QA_PLAN: qa_plan({**PORTAL, "from": build})})
        repo.approve(people.ravi, QA_PLAN)
        repo.trigger(people.olga, QA_PLAN)

    build_and_tag("0.6-dev.41")
    assert repo.apply().exit_code == 0
    current = repo.driver_root / "quality-assurance" / "customer-portal" / "current"
    assert (current / "app.bin").read_text() == "built 0.6-dev.41"

    build_and_tag("0.6-dev.42")
    result = repo.apply("--format", "json")

    assert result.exit_code == 1, result.stdout + result.stderr
    [run] = result.json()["runs"]
    assert (run["run"], run["result"]) == ("2026-11-qa-release.2", "failed")
    assert trailers(repo, "main")["Result"] == "failed"
    assert trailers(repo, "main")["Failed-Step"] == "1 customer-portal 0.6"
    record = repo.git("log", "-1", "--format=%B", "main")
    assert "exists as a tag of development's 0.6-dev.41 (made by run 2026-11-qa-release.1)" in (
        record
    )
    assert "this step wants a tag of development's 0.6-dev.42, another build" in record
    assert os.readlink(current) == "releases/0.6"
    assert (current / "app.bin").read_text() == "built 0.6-dev.41"
