"""Adapter, http: the webhook receiver (GitHub and GitLab push events) and `GET /healthz`.

Called by `watch` when `--listen HOST:PORT` is given. Standard library only:
`http.server` in a thread of its own. It authenticates and parses; what a
delivery means (a pass, or nothing) is the caller's business, through the
`Receiver` callbacks.

`POST /webhook` (also `/webhook/github`, `/webhook/gitlab`):

- a body over `MAX_BODY` (1 MiB) is refused with 413 from its Content-Length,
  before a byte of it is read; a body without a length (or sent with a
  Transfer-Encoding) gets 411, one whose length is not 1 to 10 ASCII digits 400;
- a connection waits for its request line without a thread: one loop reads
  what every waiting connection sends, and only a connection that has shown a
  whole request line is served, by a thread of its own. At most `MAX_WAITING`
  connections wait, `MAX_PER_CLIENT` of them from one address; a connection
  beyond either cap pushes out the one that has waited longest (of that
  address, or of all), which had its chance: idle connections never keep out
  a client that sends its request at once;
- the request line and headers must arrive within `HEADER_TIMEOUT` of the
  moment the server starts waiting for them (the connection, or the previous
  answer on a kept-alive one), and the whole request within `READ_TIMEOUT`
  (a client that sends a byte now and then is cut off, not waited for);
- at most `MAX_CONNECTIONS` requests are served at once, `MAX_PER_CLIENT` of
  them for one address; any more are answered 503 and closed, so clients that
  hold connections cannot take the process's threads, memory or descriptors.
  A kept-alive connection goes back to waiting after each answer;
- GitHub deliveries carry `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256
  of the body under the shared secret; GitLab deliveries carry the secret
  itself in `X-Gitlab-Token`, compared as the bytes sent (a non-ASCII token
  too). Both are compared with `hmac.compare_digest`; a missing or wrong one
  gets 401 and is reported to `refused`;
- an authenticated delivery is answered 202 at once; `delivered` (which only
  wakes the watcher up) says what it will do with it. A delivery whose body
  was already received (GitHub signs the body alone, so a captured delivery
  can be sent again, under any delivery id) is marked `replayed`.

`GET /healthz` answers the `health` callback's JSON; `GET /readyz` the `ready`
callback's (503 until the service is ready); `GET /metrics` what the `metrics`
callback gives (the Prometheus text and its content type). Without a callback
its path is 404, as is any other path; a known path with another method is 405.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import io
import json
import selectors
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Literal

from reconciler.core.errors import ReconcilerError

MAX_BODY: Final = 1024 * 1024
HEADER_TIMEOUT: Final = 2.0  # seconds a client may take to send its request line and headers
READ_TIMEOUT: Final = 10.0  # seconds a client may take to send its request, all of it
MAX_CONNECTIONS: Final = 32  # requests served at once; GitHub and GitLab send one at a time
MAX_PER_CLIENT: Final = 8  # per source address: requests served at once, connections waiting
MAX_WAITING: Final = 256  # connections waiting for a request line: a descriptor each, no thread
_ACCEPTED_AT_ONCE: Final = 4  # new connections per turn of the loop, after the waiting ones
_REQUEST_LINE: Final = 65537  # what http.server reads of a request line (any longer: 414)
REMEMBERED: Final = 1024  # bodies remembered, to tell a replayed delivery
WEBHOOK_PATHS: Final = frozenset({"/webhook", "/webhook/github", "/webhook/gitlab"})
HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"

Provider = Literal["github", "gitlab"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """An authenticated webhook delivery."""

    provider: Provider
    event: str  # "push" for pushes; GitHub's "ping", anything else
    ref: str | None  # e.g. refs/heads/main
    after: str | None  # the commit the ref points at after the push
    delivery_id: str | None
    client: str
    replayed: bool = False  # the same body (so the same signature) was received before


@dataclass(frozen=True, slots=True)
class Receiver:
    """What the server calls: each from its request's thread, each quick."""

    delivered: Callable[[Delivery], str]  # says what will happen, e.g. "pass triggered"
    refused: Callable[[str, int, str], None]  # client, HTTP status, reason
    health: Callable[[], tuple[int, Mapping[str, Any]]]  # status code, JSON body
    ready: Callable[[], tuple[int, Mapping[str, Any]]] | None = None  # as `health`
    metrics: Callable[[], tuple[bytes, str]] | None = None  # body, content type


def github_signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256` is `sha256=` and the hex HMAC-SHA256 of `body` under `secret`."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def gitlab_token_ok(secret: bytes, header: str | None) -> bool:
    """`X-Gitlab-Token` is the secret itself, byte for byte.

    http.server decodes header values as Latin-1, a character a byte, so
    encoding them back gives the bytes the client sent: a token GitLab sends
    in UTF-8 matches the secret file's UTF-8 bytes.
    """
    if not header:
        return False
    try:
        sent = header.encode("latin-1")
    except UnicodeEncodeError:  # not a header http.server read: nothing it could have sent
        return False
    return hmac.compare_digest(secret, sent)


def provider_of(path: str, headers: Mapping[str, str]) -> Provider | None:
    """Who sent it, by path or headers (`headers` keyed by lower-case names)."""
    if path == "/webhook/github" or {"x-github-event", "x-hub-signature-256"} & headers.keys():
        return "github"
    if path == "/webhook/gitlab" or {"x-gitlab-event", "x-gitlab-token"} & headers.keys():
        return "gitlab"
    return None


def parse_delivery(
    provider: Provider, headers: Mapping[str, str], body: bytes, client: str
) -> Delivery:
    """The delivery's event, ref and new commit; ValueError when the body is not JSON.

    `headers` are keyed by lower-case names (HTTP header names are case-blind).
    """
    payload = json.loads(body.decode("utf-8")) if body.strip() else {}
    if not isinstance(payload, dict):
        raise ValueError("the body is not a JSON object")
    if provider == "github":
        event = headers.get("x-github-event", "push")
        delivery_id = headers.get("x-github-delivery")
    else:
        kind = headers.get("x-gitlab-event", "")
        # "Push Hook", or "System Hook" whose payload says event_name: push
        is_push = kind == "Push Hook" or payload.get("event_name") == "push"
        event = "push" if is_push or payload.get("object_kind") == "push" else kind or "unknown"
        delivery_id = headers.get("x-gitlab-event-uuid")
    ref = payload.get("ref")
    after = payload.get("after")
    return Delivery(
        provider=provider,
        event=event,
        ref=ref if isinstance(ref, str) else None,
        after=after if isinstance(after, str) else None,
        delivery_id=delivery_id,
        client=client,
    )


@dataclass(frozen=True, slots=True)
class _Limits:
    header_timeout: float
    read_timeout: float
    max_connections: int
    max_per_client: int
    max_waiting: int


@dataclass(slots=True)
class _Waiting:
    """A connection that has not yet sent a whole request line, and what it sent."""

    sock: socket.socket
    address: Any
    client: str
    since: float  # monotonic: when the server started waiting for its request
    data: bytes


class _WaitingRoom:
    """Connections waiting for their request line, by arrival: the oldest goes first."""

    def __init__(self, limits: _Limits) -> None:
        self._limits = limits
        self._waiting: dict[socket.socket, _Waiting] = {}  # in arrival order
        self._per_client: dict[str, int] = {}

    def __contains__(self, sock: object) -> bool:
        return sock in self._waiting

    def __getitem__(self, sock: socket.socket) -> _Waiting:
        return self._waiting[sock]

    def add(self, waiting: _Waiting) -> list[_Waiting]:
        """Seat `waiting`; the connections it pushes out (closed by the caller)."""
        out = []
        if self._per_client.get(waiting.client, 0) >= self._limits.max_per_client:
            out.append(next(w for w in self._waiting.values() if w.client == waiting.client))
            self.remove(out[-1])
        if len(self._waiting) >= self._limits.max_waiting:
            out.append(next(iter(self._waiting.values())))
            self.remove(out[-1])
        self._waiting[waiting.sock] = waiting
        self._per_client[waiting.client] = self._per_client.get(waiting.client, 0) + 1
        return out

    def remove(self, waiting: _Waiting) -> None:
        del self._waiting[waiting.sock]
        left = self._per_client[waiting.client] - 1
        if left:
            self._per_client[waiting.client] = left
        else:
            del self._per_client[waiting.client]

    def _deadline(self, waiting: _Waiting) -> float:
        limits = self._limits
        return waiting.since + min(limits.header_timeout, limits.read_timeout)

    def timeout(self, now: float) -> float | None:
        """How long until the oldest connection's time is up (None: nobody waits)."""
        oldest = next(iter(self._waiting.values()), None)
        return None if oldest is None else max(0.0, self._deadline(oldest) - now)

    def expired(self, now: float) -> list[_Waiting]:
        """The connections whose time is up, taken out (in arrival order, so deadline order)."""
        out = []
        for waiting in list(self._waiting.values()):
            if self._deadline(waiting) > now:
                break
            self.remove(waiting)
            out.append(waiting)
        return out

    def clear(self) -> list[_Waiting]:
        out = list(self._waiting.values())
        self._waiting.clear()
        self._per_client.clear()
        return out


class _Server(ThreadingHTTPServer):
    """http.server's request handling, behind a loop of its own (`serve`) that keeps
    connections waiting for their request line without a thread each."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # a burst of connections waits in the kernel's queue, not refused

    def __init__(
        self, address: tuple[str, int], receiver: Receiver, secret: bytes, limits: _Limits
    ) -> None:
        self.receiver = receiver
        self.secret = secret
        self.limits = limits
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._serving = 0
        self._served: dict[str, int] = {}  # requests being served, by client address
        self._read_ahead: dict[socket.socket, tuple[float, bytes]] = {}  # for the handlers
        self._slots_lock = threading.Lock()
        self._returned: deque[tuple[socket.socket, Any, bytes]] = deque()  # kept alive
        self._stopping = threading.Event()
        super().__init__(address, _Handler)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)

    def seen_before(self, body: bytes) -> bool:
        """Whether this body was received before; remembers it (the last `REMEMBERED`)."""
        digest = hashlib.sha256(body).digest()
        with self._seen_lock:
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return True
            self._seen[digest] = None
            if len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
            return False

    # -- the loop: accepting, and reading request lines --------------------------------

    def serve(self) -> None:
        """Accept connections and read what they send until each has shown a request line,
        then hand it to a thread of its own; until `stop`."""
        room = _WaitingRoom(self.limits)
        with selectors.DefaultSelector() as selector:
            self.socket.setblocking(False)
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            try:
                while not self._stopping.is_set():
                    events = selector.select(room.timeout(time.monotonic()))
                    ready = {key.fileobj for key, _events in events}
                    # Request lines first, then newcomers: a client that connected and sent
                    # its request is served before new connections can push it out.
                    for sock in ready:
                        if isinstance(sock, socket.socket) and sock in room:
                            self._read(selector, room, room[sock])
                    if self._wake_reader in ready:
                        self._drain_wake()
                    while self._returned:
                        sock, address, data = self._returned.popleft()
                        self._wait(selector, room, sock, address, data)
                    if self.socket in ready:
                        self._accept(selector, room)
                    for waiting in room.expired(time.monotonic()):
                        self._close_waiting(selector, waiting)
            finally:
                for waiting in room.clear():
                    self._close_waiting(selector, waiting)

    def stop(self) -> None:
        self._stopping.set()
        self._wake()

    def _wake(self) -> None:
        # Full: the loop wakes up anyway; closed: it has stopped.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_reader.recv(4096):
                pass

    def _accept(self, selector: selectors.BaseSelector, room: _WaitingRoom) -> None:
        for _ in range(_ACCEPTED_AT_ONCE):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of descriptors: the rest stay in the kernel's queue; a pause, rather
                # than a loop that spins on a listening socket it cannot accept from.
                time.sleep(0.05)
                return
            sock.setblocking(False)
            self._wait(selector, room, sock, address, b"")

    def _wait(
        self,
        selector: selectors.BaseSelector,
        room: _WaitingRoom,
        sock: socket.socket,
        address: Any,
        data: bytes,
    ) -> None:
        """Seat a connection until its request line is in; read what it sent already."""
        sock.setblocking(False)
        waiting = _Waiting(sock, address, str(address[0]), time.monotonic(), data)
        for pushed_out in room.add(waiting):
            self._close_waiting(selector, pushed_out)
        selector.register(sock, selectors.EVENT_READ)
        self._read(selector, room, waiting)

    def _read(
        self, selector: selectors.BaseSelector, room: _WaitingRoom, waiting: _Waiting
    ) -> None:
        if b"\n" not in waiting.data:
            try:
                chunk = waiting.sock.recv(_REQUEST_LINE - len(waiting.data))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:  # gone before it asked for anything
                room.remove(waiting)
                self._close_waiting(selector, waiting)
                return
            waiting.data += chunk
            if b"\n" not in waiting.data and len(waiting.data) < _REQUEST_LINE:
                return
        room.remove(waiting)
        selector.unregister(waiting.sock)
        try:
            self._serve(waiting)
        except Exception:  # as in socketserver: a request's failure, never the loop's
            self.handle_error(waiting.sock, waiting.address)
            self.shutdown_request(waiting.sock)

    def _close_waiting(self, selector: selectors.BaseSelector, waiting: _Waiting) -> None:
        """Closed without an answer: it asked for nothing."""
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(waiting.sock)
        waiting.sock.close()

    # -- serving: a thread per request ---------------------------------------------------

    def _serve(self, waiting: _Waiting) -> None:
        """A thread for the request, while there are slots; else 503, closed at once."""
        refusal = self._take_slot(waiting.client)
        if refusal is not None:
            self._turn_away(waiting.sock, waiting.client, refusal)
            return
        with self._slots_lock:
            self._read_ahead[waiting.sock] = (waiting.since, waiting.data)
        waiting.sock.setblocking(True)
        try:
            self.process_request(waiting.sock, waiting.address)
        except BaseException:  # no thread to be had: the slot is free again
            with self._slots_lock:
                self._read_ahead.pop(waiting.sock, None)
            self._release_slot(waiting.client)
            raise

    def read_ahead(self, sock: socket.socket) -> tuple[float, bytes]:
        """When the wait for the request on `sock` began, and what the loop read of it."""
        with self._slots_lock:
            return self._read_ahead.pop(sock, (time.monotonic(), b""))

    def _take_slot(self, client: str) -> str | None:
        """A slot for a request from `client`, or why there is none."""
        with self._slots_lock:
            if self._serving >= self.limits.max_connections:
                return "too many connections"
            if self._served.get(client, 0) >= self.limits.max_per_client:
                return "too many connections from one address"
            self._serving += 1
            self._served[client] = self._served.get(client, 0) + 1
            return None

    def _release_slot(self, client: str) -> None:
        with self._slots_lock:
            self._serving -= 1
            left = self._served[client] - 1
            if left:
                self._served[client] = left
            else:
                del self._served[client]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """ThreadingMixIn's, but a connection kept alive goes back to the loop to wait
        for its next request, instead of holding this thread while it idles."""
        handler: _Handler | None = None
        try:
            handler = _Handler(request, client_address, self)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._release_slot(str(client_address[0]))
            read = handler.next_request if handler is not None else None
            if read is None or self._stopping.is_set():
                self.shutdown_request(request)
            else:
                self._returned.append((request, client_address, read))
                self._wake()

    def _turn_away(self, request: socket.socket, client: str, reason: str) -> None:
        body = (json.dumps({"error": reason}) + "\n").encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 10\r\n\r\n"
        )
        # Told before the answer goes out, so whoever reads the answer finds it in the log.
        self.receiver.refused(client, 503, reason)
        try:
            request.setblocking(False)  # the loop never waits for a client
            request.send(head.encode() + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Never a traceback on stderr: a failed request is reported like a refused one."""
        error = sys.exc_info()[1]
        self.receiver.refused(str(client_address[0]), 500, f"{type(error).__name__}: {error}")

    def server_close(self) -> None:
        super().server_close()
        while self._returned:
            self.shutdown_request(self._returned.popleft()[0])
        self._wake_reader.close()
        self._wake_writer.close()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _DeadlineReader(io.RawIOBase):
    """A socket's input that ends in TimeoutError once `deadline` (monotonic) has passed,
    however the client spaces its bytes (a socket timeout alone restarts at every byte).

    It begins with what the server's loop read already (`ahead`); once `done`, it
    reads nothing more: what the buffer above holds then is the next request's start.
    """

    def __init__(self, connection: socket.socket, ahead: bytes) -> None:
        self._connection = connection
        self._ahead = ahead
        self.deadline = time.monotonic()
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._ahead:
            count = min(len(buffer), len(self._ahead))
            buffer[:count] = self._ahead[:count]
            self._ahead = self._ahead[count:]
            return count
        if self.done:
            return 0
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._connection.settimeout(left)
        return self._connection.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = READ_TIMEOUT  # a write to the client; reads run to the request's deadline
    next_request: bytes | None = None  # kept alive: what was read of the next request
    server_version = "gitops-reconciler"
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return self.server_version  # not Python's version: nothing a caller needs

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader: replaced by one that keeps the deadline
        self._since, ahead = self.server.read_ahead(self.connection)
        self._input = _DeadlineReader(self.connection, ahead)
        self._buffer = io.BufferedReader(self._input)
        self.rfile = self._buffer

    def handle(self) -> None:
        """One request: a connection kept alive waits for the next in the server's loop."""
        self.close_connection = True
        # The clock started when the server began waiting for the request: an idle
        # keep-alive connection and a slow request count alike.
        limits = self.server.limits
        self._input.deadline = self._since + min(limits.header_timeout, limits.read_timeout)
        self.handle_one_request()
        if not self.close_connection:
            self._input.done = True
            self.next_request = self._buffer.peek(1)  # what is buffered, and nothing more

    def log_message(self, format: str, *args: Any) -> None:
        """The watcher logs what matters itself; http.server's own stderr lines are not wanted."""

    def _client(self) -> str:
        return str(self.client_address[0])

    def _answer(self, status: int, payload: Mapping[str, Any], *, close: bool = False) -> None:
        self._send(status, (json.dumps(payload) + "\n").encode(), "application/json", close=close)

    def _send(self, status: int, body: bytes, content_type: str, *, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: int, reason: str, *, close: bool = False) -> None:
        self.server.receiver.refused(self._client(), status, reason)
        self._answer(status, {"error": reason}, close=close)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def _length(self) -> int | tuple[int, str]:
        """The body's length, or the refusal (status, reason) when there is no usable one."""
        text = self.headers.get("Content-Length")
        if text is None or "Transfer-Encoding" in self.headers:
            # Chunked bodies are not read: with a Content-Length beside, the two would
            # disagree on where the body ends (and the next request begins).
            return 411, "a Content-Length is required (and no Transfer-Encoding)"
        text = text.strip()
        # ASCII digits only: str.isdigit() also takes '\u00b2', which int() refuses. Ten at
        # most: int() refuses thousands of digits, and ten already say more than MAX_BODY.
        if not (text.isascii() and text.isdigit() and len(text) <= 10):
            return 400, "the Content-Length is not a number of bytes (1 to 10 digits)"
        return int(text)

    def _too_large(self, length: int) -> None:
        # Refused from the header alone: the body is never read, the connection is closed.
        self._refuse(413, f"a body of {length} bytes is over the {MAX_BODY} byte limit", close=True)

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue` (curl, for large bodies): refuse before the body is sent."""
        length = self._length()
        if isinstance(length, int) and length > MAX_BODY and self._path() in WEBHOOK_PATHS:
            self._too_large(length)
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        path = self._path()
        receiver = self.server.receiver
        if path == HEALTH_PATH:
            status, payload = receiver.health()
            self._answer(status, payload)
        elif path == READY_PATH and receiver.ready is not None:
            status, payload = receiver.ready()
            self._answer(status, payload)
        elif path == METRICS_PATH and receiver.metrics is not None:
            body, content_type = receiver.metrics()
            self._send(200, body, content_type)
        elif path in WEBHOOK_PATHS:
            self._answer(405, {"error": "webhooks are POSTed"})
        else:
            self._answer(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:
        path = self._path()
        if path not in WEBHOOK_PATHS:
            self._answer(404, {"error": f"no such path: {path}"}, close=True)
            return
        length = self._length()
        if not isinstance(length, int):
            status, reason = length
            self._refuse(status, reason, close=True)
            return
        if length > MAX_BODY:
            self._too_large(length)
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        provider = provider_of(path, headers)
        self._input.deadline = self._since + self.server.limits.read_timeout
        try:
            body = self.rfile.read(length)
        except OSError:
            self.close_connection = True
            return
        if len(body) != length:
            self._refuse(400, "the body is shorter than its Content-Length", close=True)
            return
        secret = self.server.secret
        if provider is None:
            self._refuse(401, "neither X-Hub-Signature-256 nor X-Gitlab-Token")
            return
        if provider == "github" and not github_signature_ok(
            secret, body, headers.get("x-hub-signature-256")
        ):
            self._refuse(401, "bad or missing X-Hub-Signature-256")
            return
        if provider == "gitlab" and not gitlab_token_ok(secret, headers.get("x-gitlab-token")):
            self._refuse(401, "bad or missing X-Gitlab-Token")
            return
        try:
            delivery = parse_delivery(provider, headers, body, self._client())
        except (ValueError, UnicodeDecodeError) as error:
            self._refuse(400, f"the body is not a JSON push event: {error}")
            return
        if self.server.seen_before(body):
            delivery = dataclasses.replace(delivery, replayed=True)
        action = self.server.receiver.delivered(delivery)
        self._answer(202, {"accepted": True, "event": delivery.event, "action": action})


class WebhookServer:
    """The HTTP endpoint, served by a daemon thread until `stop()`."""

    def __init__(
        self,
        host: str,
        port: int,
        secret: bytes,
        receiver: Receiver,
        *,
        read_timeout: float = READ_TIMEOUT,
        header_timeout: float = HEADER_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_per_client: int = MAX_PER_CLIENT,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        if not secret:
            raise ReconcilerError(
                "the webhook secret is empty", hint="put a long random secret in the file"
            )
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class(
                (host, port),
                receiver,
                secret,
                _Limits(header_timeout, read_timeout, max_connections, max_per_client, max_waiting),
            )
        except OSError as error:
            raise ReconcilerError(
                f"cannot listen on {host}:{port}: {error.strerror or error}",
                hint="choose another --listen address or port",
            ) from None
        self._thread = threading.Thread(target=self._server.serve, name="webhook", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.stop()
            self._thread.join(timeout=5)
        self._server.server_close()
