"""The webhook receiver: GitHub and GitLab push events over HTTP, and `GET /healthz`.

Called by `watch` when `--listen HOST:PORT` is given. Standard library only:
`http.server` in a thread of its own. It authenticates and parses; what a
delivery means (a pass, or nothing) is the caller's business, through the
`Receiver` callbacks.

`POST /webhook` (also `/webhook/github`, `/webhook/gitlab`):

- a body over `MAX_BODY` (1 MiB) is refused with 413 from its Content-Length,
  before a byte of it is read; a body without a length (or sent with a
  Transfer-Encoding) gets 411, one whose length is not 1 to 10 ASCII digits 400;
- a request, headers and body, must arrive within `READ_TIMEOUT` of the
  moment the server starts waiting for it (a client that sends a byte now and
  then is cut off, not waited for); at most `MAX_CONNECTIONS` connections
  are served at once, any more are answered 503 and closed, so clients that
  hold connections cannot take the process's threads, memory or descriptors;
- GitHub deliveries carry `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256
  of the body under the shared secret; GitLab deliveries carry the secret
  itself in `X-Gitlab-Token`. Both are compared with `hmac.compare_digest`;
  a missing or wrong one gets 401 and is reported to `refused`;
- an authenticated delivery is answered 202 at once; `delivered` (which only
  wakes the watcher up) says what it will do with it. A delivery whose body
  was already received (GitHub signs the body alone, so a captured delivery
  can be sent again, under any delivery id) is marked `replayed`.

`GET /healthz` answers the `health` callback's JSON. Any other path is 404,
a known path with another method 405.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Literal

from reconciler.errors import ReconcilerError

MAX_BODY: Final = 1024 * 1024
READ_TIMEOUT: Final = 10.0  # seconds a client may take to send its request, all of it
MAX_CONNECTIONS: Final = 32  # served at once; GitHub and GitLab send one delivery at a time
REMEMBERED: Final = 1024  # bodies remembered, to tell a replayed delivery
WEBHOOK_PATHS: Final = frozenset({"/webhook", "/webhook/github", "/webhook/gitlab"})
HEALTH_PATH: Final = "/healthz"

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


def github_signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256` is `sha256=` and the hex HMAC-SHA256 of `body` under `secret`."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def gitlab_token_ok(secret: bytes, header: str | None) -> bool:
    if not header:
        return False
    return hmac.compare_digest(secret, header.encode("utf-8", "replace"))


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        receiver: Receiver,
        secret: bytes,
        read_timeout: float,
        max_connections: int,
    ) -> None:
        self.receiver = receiver
        self.secret = secret
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._seen_lock = threading.Lock()
        super().__init__(address, _Handler)

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

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, while there are slots; else 503, closed at once."""
        if not self._slots.acquire(blocking=False):
            self._turn_away(request, str(client_address[0]))
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _turn_away(self, request: socket.socket, client: str) -> None:
        reason = "too many connections"
        body = (json.dumps({"error": reason}) + "\n").encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 10\r\n\r\n"
        )
        # Told before the answer goes out, so whoever reads the answer finds it in the log.
        self.receiver.refused(client, 503, reason)
        try:
            request.setblocking(False)  # the accepting thread never waits for a client
            request.send(head.encode() + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Never a traceback on stderr: a failed request is reported like a refused one."""
        error = sys.exc_info()[1]
        self.receiver.refused(str(client_address[0]), 500, f"{type(error).__name__}: {error}")


class _Server6(_Server):
    address_family = socket.AF_INET6


class _DeadlineReader(io.RawIOBase):
    """A socket's input that ends in TimeoutError once `deadline` (monotonic) has passed,
    however the client spaces its bytes (a socket timeout alone restarts at every byte)."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self.deadline = time.monotonic()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._connection.settimeout(left)
        return self._connection.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = READ_TIMEOUT  # a write to the client; reads run to the request's deadline
    server_version = "gitops-reconciler"
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return self.server_version  # not Python's version: nothing a caller needs

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader: replaced by one that keeps the deadline
        self._input = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._input)

    def handle_one_request(self) -> None:
        # The clock starts when the server waits for the request: an idle keep-alive
        # connection and a slow request count alike.
        self._input.deadline = time.monotonic() + self.server.read_timeout
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        """The watcher logs what matters itself; http.server's own stderr lines are not wanted."""

    def _client(self) -> str:
        return str(self.client_address[0])

    def _answer(self, status: int, payload: Mapping[str, Any], *, close: bool = False) -> None:
        body = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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
        if path == HEALTH_PATH:
            status, payload = self.server.receiver.health()
            self._answer(status, payload)
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
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if not secret:
            raise ReconcilerError(
                "the webhook secret is empty", hint="put a long random secret in the file"
            )
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class(
                (host, port), receiver, secret, read_timeout, max_connections
            )
        except OSError as error:
            raise ReconcilerError(
                f"cannot listen on {host}:{port}: {error.strerror or error}",
                hint="choose another --listen address or port",
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.25},
            name="webhook",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
