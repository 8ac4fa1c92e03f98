"""Adapter, http: the webhook receiver (GitHub and GitLab push events), `GET /healthz`,
`/readyz`, `/metrics`, and the pipeline pages beside them when given.

Called by `watch` when `--listen HOST:PORT` is given. Starlette on uvicorn, in a
thread of its own with its own event loop; uvicorn reads HTTP/1.1 with h11,
through `_Protocol`, which keeps the limits below (uvicorn has no deadline for
a request's headers). It authenticates and parses; what a delivery means (a
pass, or nothing) is the caller's business, through the `Receiver` callbacks.

`POST /webhook` (also `/webhook/github`, `/webhook/gitlab`):

- a body over `MAX_BODY` (1 MiB) is refused with 413 from its Content-Length,
  before a byte of it is read; a body without a length (or sent with a
  Transfer-Encoding) gets 411, one whose length is not 1 to 10 ASCII digits 400
  (any request's, before h11 reads it);
- a connection waits for its request line without a task or a thread: only
  a connection that has shown a whole request line is served. At most
  `MAX_WAITING` connections wait, `MAX_PER_CLIENT` of them from one address;
  a connection beyond either cap pushes out the one that has waited longest
  (of that address, or of all), which had its chance: idle connections never
  keep out a client that sends its request at once;
- the request line and headers must arrive within `HEADER_TIMEOUT` of the
  moment the server starts waiting for them (the connection, or the previous
  answer on a kept-alive one), and the whole request within `READ_TIMEOUT`
  (a client that sends a byte now and then is cut off, not waited for);
- at most `MAX_CONNECTIONS` requests are read at once (from the request line
  to the end of the body), `MAX_PER_CLIENT` of them for one address; any more
  are answered 503 and closed, so clients that hold connections cannot take
  the process's memory or descriptors. A kept-alive connection goes back to
  waiting after each answer;
- what is written to a client must be taken (read), some of it every
  `READ_TIMEOUT` from the moment the kernel stops taking it, or the connection
  is dropped with it: a client that asks and never reads (pipelined requests
  behind a shut window) holds neither the answers nor a descriptor. At most
  `MAX_PER_CLIENT` connections of an address, `MAX_WAITING` of all, wait for
  their client to read; one more pushes out the one that has waited longest (of
  that address, or of all);
- a head over `MAX_HEAD` bytes or with more than `MAX_HEADERS` fields is refused
  with 431; what h11 cannot read as HTTP/1.1 (a TLS hello on the plain port) 400;
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
its path is 404; a path the `pages` serve goes to them (GET and HEAD); any other
path is 404, a webhook path with GET 405, a method other than GET and POST (HEAD
on the pages) 501. Every answer names the server `gitops-reconciler`, without
uvicorn's or Python's version.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http
import json
import logging
import re
import select
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, Protocol
from urllib.parse import quote

import h11
import msgspec
import uvicorn
from msgspec import Struct
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from reconciler.core.errors import ReconcilerError

MAX_BODY: Final = 1024 * 1024
HEADER_TIMEOUT: Final = 2.0  # seconds a client may take to send its request line and headers
READ_TIMEOUT: Final = 10.0  # seconds a client may take to send its request, all of it
MAX_CONNECTIONS: Final = 32  # requests served at once; GitHub and GitLab send one at a time
MAX_PER_CLIENT: Final = 8  # per source address: requests served at once, connections waiting
MAX_WAITING: Final = 256  # connections waiting for a request line: a descriptor each, no task
MAX_HEAD: Final = 65536  # bytes of request line and headers (any more: 431)
MAX_HEADERS: Final = 100  # header fields (any more: 431)
REMEMBERED: Final = 1024  # bodies remembered, to tell a replayed delivery
WEBHOOK_PATHS: Final = frozenset({"/webhook", "/webhook/github", "/webhook/gitlab"})
HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"
SERVER_NAME: Final = b"gitops-reconciler"
BAD_SYNTAX: Final = "400 - Bad request syntax: not an HTTP/1.1 request"

Provider = Literal["github", "gitlab"]


class Delivery(Struct, frozen=True):
    """An authenticated webhook delivery."""

    provider: Provider
    event: str  # "push" for pushes; GitHub's "ping", anything else
    ref: str | None  # e.g. refs/heads/main
    after: str | None  # the commit the ref points at after the push
    delivery_id: str | None
    client: str
    replayed: bool = False  # the same body (so the same signature) was received before


class Receiver(Struct, frozen=True):
    """What the server calls: each from the server's event loop, so each quick (one
    that waits holds up every request meanwhile)."""

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

    Header values are decoded as Latin-1 (by Starlette, from h11's bytes), a
    character a byte, so encoding them back gives the bytes the client sent: a
    token GitLab sends in UTF-8 matches the secret file's UTF-8 bytes.
    """
    if not header:
        return False
    try:
        sent = header.encode("latin-1")
    except UnicodeEncodeError:  # not a header as read off the wire: nothing it could have sent
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


def body_length(content_length: str | None, transfer_encoding: bool) -> int | tuple[int, str]:
    """A request body's length, or the refusal (status, reason) when it has no usable one."""
    if content_length is None or transfer_encoding:
        # Chunked bodies are not read: with a Content-Length beside, the two would
        # disagree on where the body ends (and the next request begins).
        return 411, "a Content-Length is required (and no Transfer-Encoding)"
    text = content_length.strip()
    # ASCII digits only: str.isdigit() also takes '\u00b2', which int() refuses. Ten at
    # most: int() refuses thousands of digits, and ten already say more than MAX_BODY.
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        return 400, "the Content-Length is not a number of bytes (1 to 10 digits)"
    return int(text)


class Pages(Protocol):
    """Pages served beside the webhook (`reconciler.web.server.WatchPages`)."""

    def serves(self, scope: Scope) -> bool:
        """Whether the request is for one of the pages."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class _Limits(Struct, frozen=True):
    header_timeout: float
    read_timeout: float
    max_connections: int
    max_per_client: int
    max_waiting: int


_HEAD_END: Final = re.compile(rb"\n\r?\n")  # where h11 ends a head, too


class _Listener:
    """What the connections share: the callbacks, the secret, the limits, who waits and
    who is served. Touched from the server's event loop only, so without a lock."""

    def __init__(self, receiver: Receiver, secret: bytes, limits: _Limits) -> None:
        self.receiver = receiver
        self.secret = secret
        self.limits = limits
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._waiting: dict[_Protocol, str] = {}  # in the order they began to wait
        self._waiting_from: dict[str, int] = {}
        self._serving = 0
        self._served: dict[str, int] = {}  # requests being served, by client address
        self._stalled: dict[_Protocol, str] = {}  # waiting for their client to read, in order

    def seen_before(self, body: bytes) -> bool:
        """Whether this body was received before; remembers it (the last `REMEMBERED`)."""
        digest = hashlib.sha256(body).digest()
        if digest in self._seen:
            self._seen.move_to_end(digest)
            return True
        self._seen[digest] = None
        if len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        return False

    def seat(self, connection: _Protocol, client: str) -> list[_Protocol]:
        """`connection` waits for its request line; the connections it pushes out (the
        longest waiting of its address, or of all), to be closed by the caller.

        One that has sent what the loop has not read yet is not pushed out: a burst of
        connections is accepted before any of them is read, and the requests among them
        are served before newcomers can push them out (the room is over its cap until).
        """
        out = []
        if self._waiting_from.get(client, 0) >= self.limits.max_per_client:
            out += self._push_out(lambda address: address == client)
        if len(self._waiting) >= self.limits.max_waiting:
            out += self._push_out(lambda address: True)
        self._waiting[connection] = client
        self._waiting_from[client] = self._waiting_from.get(client, 0) + 1
        return out

    def _push_out(self, among: Callable[[str], bool]) -> list[_Protocol]:
        for waiting, address in self._waiting.items():
            if among(address) and not waiting.unread():
                self.unseat(waiting)
                return [waiting]
        return []

    def unseat(self, connection: _Protocol) -> None:
        client = self._waiting.pop(connection, None)
        if client is None:
            return
        left = self._waiting_from[client] - 1
        if left:
            self._waiting_from[client] = left
        else:
            del self._waiting_from[client]

    def stall(self, connection: _Protocol, client: str) -> list[_Protocol]:
        """`connection` waits for its client to read; the one it pushes out (the longest
        stalled of its address, or of all), to be dropped by the caller."""
        mine = [stalled for stalled, address in self._stalled.items() if address == client]
        out = []
        if len(mine) >= self.limits.max_per_client:
            out = mine[:1]
        elif len(self._stalled) >= self.limits.max_waiting:
            out = [next(iter(self._stalled))]
        for stalled in out:
            del self._stalled[stalled]
        self._stalled[connection] = client
        return out

    def unstall(self, connection: _Protocol) -> None:
        self._stalled.pop(connection, None)

    def take_slot(self, client: str) -> str | None:
        """A slot for a request from `client`, or why there is none."""
        if self._serving >= self.limits.max_connections:
            return "too many connections"
        if self._served.get(client, 0) >= self.limits.max_per_client:
            return "too many connections from one address"
        self._serving += 1
        self._served[client] = self._served.get(client, 0) + 1
        return None

    def release_slot(self, client: str) -> None:
        self._serving -= 1
        left = self._served[client] - 1
        if left:
            self._served[client] = left
        else:
            del self._served[client]


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 over h11, with the limits h11 and uvicorn do not keep.

    A request's head (request line and headers) is read here first, under the header
    deadline, and handed to a fresh h11 connection only once whole and checked; its
    body then runs to the request deadline. A kept-alive connection gets a new h11
    connection after each answer and waits again, as a new one does.
    """

    listener: _Listener  # set by `_protocol_class`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Writing pauses as soon as the kernel leaves a byte to the transport's buffer:
        # a client that does not read is then on the clock (`pause_writing`).
        transport.set_write_buffer_limits(high=0)
        self._peer = str(self.client[0]) if self.client else "unknown"
        self._stall: asyncio.TimerHandle | None = None
        self._head = b""  # what was read of the request not yet handed to h11
        self._phase: Literal["waiting", "head", "request", "closed"] = "waiting"
        self._slot = False  # holds one of the requests read at once
        self._deadline: asyncio.TimerHandle | None = None
        self._since = 0.0
        self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self._close()
        self._unstall()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The client does not take what it is sent (an answer being written, or bytes
        left unsent on a closing connection): it has until the request deadline to take
        some of it, again and again, or it is dropped."""
        super().pause_writing()
        self._stalled(self.transport.get_write_buffer_size() + 1)
        for pushed_out in self.listener.stall(self, self._peer):
            pushed_out._drop()

    def _stalled(self, unsent_before: int) -> None:
        unsent = self.transport.get_write_buffer_size()
        if unsent >= unsent_before:  # not a byte taken since: a slow reader reads
            self._drop()
            return
        timeout = self.listener.limits.read_timeout
        self._stall = self.loop.call_later(timeout, self._stalled, unsent)

    def resume_writing(self) -> None:
        self._unstall()
        super().resume_writing()

    def unread(self) -> bool:
        """Whether the client sent something the loop has not read yet (or hung up)."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    # -- the phases of a request -------------------------------------------------------

    def _wait(self) -> None:
        """Wait for a request, the header deadline running from now."""
        limits = self.listener.limits
        self._phase, self._head = "waiting", b""
        self._since = self.loop.time()
        self._arm(self._since + min(limits.header_timeout, limits.read_timeout))
        for pushed_out in self.listener.seat(self, self._peer):
            pushed_out._close()
            pushed_out.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._phase == "closed":
            return
        if self._phase == "request":
            super().data_received(data)
            self._check_body()
            return
        self._head += data
        if self._phase == "waiting":
            if b"\n" not in self._head and len(self._head) <= MAX_HEAD:
                return
            self.listener.unseat(self)
            refusal = self.listener.take_slot(self._peer)
            if refusal is not None:
                self._refuse(503, refusal, b"Retry-After: 10\r\n")
                return
            self._phase, self._slot = "head", True
        end = _HEAD_END.search(self._head)
        if end is None or end.end() > MAX_HEAD:
            if len(self._head) > MAX_HEAD:
                self._refuse(431, f"the request line and headers are over {MAX_HEAD} bytes")
            return
        head, rest = self._head[: end.end()], self._head[end.end() :]
        problem = _head_refusal(head)
        if problem is not None:
            self._refuse(*problem)
            return
        self._phase, self._head = "request", b""
        cycle = self.cycle
        self.conn.receive_data(_printable_target(head) + rest)
        self.handle_events()
        if self.cycle is not cycle and self._phase == "request":
            # The headers are in: the rest of the request has until the request deadline.
            self._arm(self._since + self.listener.limits.read_timeout)
            self._check_body()

    def _check_body(self) -> None:
        if self.conn.their_state is not h11.SEND_BODY:  # all of it read, or the end of it
            # Read: the answer (quick, but for the pages' event stream, which they cap
            # themselves) takes no slot from the requests still being read.
            self._disarm()
            self._release()

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self._phase != "request":
            return
        self._release()
        self._phase = "closed"
        if self.transport.is_closing():
            return
        if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
            # Answered before the request was read whole (refused unread): where it ends
            # is not known, so neither is where the next one begins.
            self._close()
            self.transport.close()
            return
        pending, _closed = self.conn.trailing_data
        self.conn = h11.Connection(h11.SERVER, 2 * MAX_HEAD)
        self.flow.resume_reading()
        self._wait()
        if pending:
            self.data_received(pending)

    def send_400_response(self, msg: str) -> None:
        """What h11 cannot read as HTTP/1.1."""
        self._refuse(400, BAD_SYNTAX)

    # -- the deadline, and the end ------------------------------------------------------

    def _arm(self, when: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_at(when, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        """Closed without an answer: whatever it sent, it did not send it in time."""
        self._deadline = None
        self._close()
        self.transport.close()

    def _unstall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self.listener.unstall(self)

    def _drop(self) -> None:
        """Closed at once, what was not taken of its answers with it."""
        self._unstall()
        self._close()
        self.transport.abort()

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            self.listener.release_slot(self._peer)

    def _close(self) -> None:
        self._phase = "closed"
        self._disarm()
        self.listener.unseat(self)
        self._release()

    def _refuse(self, status: int, reason: str, extra: bytes = b"") -> None:
        """An answer from here, before the application sees the request; then closed."""
        self.listener.receiver.refused(self._peer, status, reason)
        self._close()
        body = (json.dumps({"error": reason}) + "\n").encode()
        phrase = http.HTTPStatus(status).phrase.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nServer: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n%s\r\n%s"
            % (status, phrase, SERVER_NAME, len(body), extra, body)
        )
        self.transport.close()


def _head_refusal(head: bytes) -> tuple[int, str] | None:
    """What is wrong with a request's head before h11 reads it: too many fields, or a
    Content-Length h11 would refuse without a word of why (or take, at 11 digits)."""
    fields = [line.rstrip(b"\r") for line in head.split(b"\n")[1:]]
    fields = [line for line in fields if line]
    if len(fields) > MAX_HEADERS:
        return 431, f"more than {MAX_HEADERS} header fields"
    named: dict[bytes, str] = {}
    for line in fields:
        name, _, value = line.partition(b":")
        named.setdefault(name.strip().lower(), value.decode("latin-1"))
    if b"content-length" not in named:
        return None
    length = body_length(named[b"content-length"], b"transfer-encoding" in named)
    return length if isinstance(length, tuple) else None


def _printable_target(head: bytes) -> bytes:
    """The head with its request target's bytes outside printable ASCII %-escaped: h11
    refuses them, and the path they make is only ever echoed escaped (in a 404)."""
    line, newline, rest = head.partition(b"\n")
    parts = line.split(b" ")
    if len(parts) != 3:
        return head  # not a request line: h11 says so
    target = parts[1]
    if all(0x21 <= byte <= 0x7E for byte in target):
        return head
    escaped = quote(target, safe=bytes(range(0x21, 0x7F)))
    return b" ".join((parts[0], escaped.encode("ascii"), parts[2])) + newline + rest


def pages_protocol() -> type[asyncio.Protocol]:
    """The receiver's HTTP/1.1 protocol for a server of pages alone (`reconciler serve`):
    the same deadlines and caps, its refusals unreported (an attacker's say no log line)."""
    limits = _Limits(HEADER_TIMEOUT, READ_TIMEOUT, MAX_CONNECTIONS, MAX_PER_CLIENT, MAX_WAITING)
    receiver = Receiver(
        delivered=lambda _: "ignored", refused=lambda *_: None, health=lambda: (404, {})
    )
    return _protocol_class(_Listener(receiver, b"", limits))


def _protocol_class(listener: _Listener) -> type[_Protocol]:
    """`_Protocol` bound to `listener`: uvicorn makes a protocol per connection from its class."""

    class Bound(_Protocol):
        pass

    Bound.listener = listener
    return Bound


# -- the application ------------------------------------------------------------------


async def _answer(send: Send, status: int, payload: Mapping[str, Any], close: bool = False) -> None:
    await _send(send, status, (json.dumps(payload) + "\n").encode(), "application/json", close)


async def _send(send: Send, status: int, body: bytes, content_type: str, close: bool) -> None:
    headers = [
        (b"Content-Type", content_type.encode("latin-1")),
        (b"Content-Length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"Connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Application:
    """The ASGI application: the webhook, health, readiness and metrics, the pages."""

    def __init__(self, listener: _Listener, pages: Pages | None) -> None:
        self.listener = listener
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else reaches an HTTP/1.1 server

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"Server", SERVER_NAME)]
            await send(message)

        client = str(scope["client"][0]) if scope.get("client") else "unknown"
        try:
            await self._route(scope, receive, named, client)
        except Exception as error:  # never a traceback on stderr: reported like a refusal
            self.listener.receiver.refused(client, 500, f"{type(error).__name__}: {error}")
            raise

    async def _route(self, scope: Scope, receive: Receive, send: Send, client: str) -> None:
        method, path = scope["method"], scope["path"]
        receiver = self.listener.receiver
        pages = self.pages if self.pages is not None and self.pages.serves(scope) else None
        if method not in ("GET", "POST") and not (method == "HEAD" and pages is not None):
            await _answer(send, 501, {"error": f"unsupported method {method}"}, close=True)
        elif method == "POST" and path in WEBHOOK_PATHS:
            await self._webhook(Request(scope, receive), send, client)
        elif method == "POST" or path in WEBHOOK_PATHS:
            await _answer(send, 404 if method == "POST" else 405, _wrong(method, path), True)
        elif path == HEALTH_PATH:
            status, payload = receiver.health()
            await _answer(send, status, payload)
        elif path == READY_PATH and receiver.ready is not None:
            status, payload = receiver.ready()
            await _answer(send, status, payload)
        elif path == METRICS_PATH and receiver.metrics is not None:
            body, content_type = receiver.metrics()
            await _send(send, 200, body, content_type, False)
        elif pages is not None:
            await pages(scope, receive, send)
        else:
            await _answer(send, 404, {"error": f"no such path: {path}"})

    async def _webhook(self, request: Request, send: Send, client: str) -> None:
        refused = self.listener.receiver.refused

        async def refuse(status: int, reason: str, close: bool = False) -> None:
            refused(client, status, reason)
            await _answer(send, status, {"error": reason}, close)

        length = body_length(
            request.headers.get("content-length"), "transfer-encoding" in request.headers
        )
        if not isinstance(length, int):
            await refuse(*length, close=True)
            return
        if length > MAX_BODY:
            # Refused from the header alone: the body is never read, the connection closed.
            reason = f"a body of {length} bytes is over the {MAX_BODY} byte limit"
            await refuse(413, reason, close=True)
            return
        headers = {key.lower(): value for key, value in request.headers.items()}
        provider = provider_of(request.url.path, headers)
        try:
            body = await request.body()
        except ClientDisconnect:  # gone, or cut off at the request deadline
            return
        secret = self.listener.secret
        if provider is None:
            await refuse(401, "neither X-Hub-Signature-256 nor X-Gitlab-Token")
            return
        if provider == "github" and not github_signature_ok(
            secret, body, headers.get("x-hub-signature-256")
        ):
            await refuse(401, "bad or missing X-Hub-Signature-256")
            return
        if provider == "gitlab" and not gitlab_token_ok(secret, headers.get("x-gitlab-token")):
            await refuse(401, "bad or missing X-Gitlab-Token")
            return
        try:
            delivery = parse_delivery(provider, headers, body, client)
        except (ValueError, UnicodeDecodeError) as error:
            await refuse(400, f"the body is not a JSON push event: {error}")
            return
        if self.listener.seen_before(body):
            delivery = msgspec.structs.replace(delivery, replayed=True)
        action = self.listener.receiver.delivered(delivery)
        await _answer(send, 202, {"accepted": True, "event": delivery.event, "action": action})


def _wrong(method: str, path: str) -> dict[str, str]:
    if method == "POST":
        return {"error": f"no such path: {path}"}
    return {"error": "webhooks are POSTed"}


class WebhookServer:
    """The HTTP endpoint, served by a daemon thread until `stop()`."""

    def __init__(
        self,
        host: str,
        port: int,
        secret: bytes,
        receiver: Receiver,
        *,
        pages: Pages | None = None,
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
        limits = _Limits(header_timeout, read_timeout, max_connections, max_per_client, max_waiting)
        listener = _Listener(receiver, secret, limits)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
            # Listening before the address is told: a client that connects at once waits
            # in the backlog until the loop accepts, instead of being refused.
            self._socket.listen(128)
        except OSError as error:
            self._socket.close()
            raise ReconcilerError(
                f"cannot listen on {host}:{port}: {error.strerror or error}",
                hint="choose another --listen address or port",
            ) from None
        # uvicorn's own loggers say nothing the watcher's log does not (its access log
        # is off): an error is reported through `refused`, never as a traceback.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL + 1)
        config = uvicorn.Config(
            _Application(listener, pages),
            http=_protocol_class(listener),
            ws="none",
            lifespan="off",
            loop="asyncio",
            log_config=None,
            access_log=False,
            server_header=False,
            # The head is limited by `_Protocol`; h11's own limit is the body's chunks.
            h11_max_incomplete_event_size=2 * MAX_HEAD,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.name = "webhook"

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise ReconcilerError("the webhook listener did not start")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=5)
        self._socket.close()
