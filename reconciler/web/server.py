"""Web: `reconciler serve`, the pipeline pages on Starlette and uvicorn, read-only; the
same pages on `watch --listen` (`WatchPages`, served by the webhook receiver).

A poller re-reads the branch after each pass (its tip moved: every record is a commit;
on `watch`, the watcher wakes it after each pass it makes) and at least every
`REFRESH` seconds (windows open, approvals expire); each page is
rendered from the last `Snapshot`, and `/events` tells the open pages to swap their
content (Server-Sent Events, `static/live.js`). Only GET and HEAD are routed: the
service changes nothing. Every response carries a strict Content-Security-Policy (no
inline script, no inline style but the package's stylesheet by its hash, no other
origin) and `X-Content-Type-Options: nosniff`; bound to a
loopback address, only loopback names are accepted in `Host` (a DNS-rebinding page
cannot read it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.adapters.webhook import MAX_HEAD, pages_protocol
from reconciler.app import api, pages
from reconciler.app.api import HistoryQuery, Source
from reconciler.core.errors import ReconcilerError, UsageError
from reconciler.web import render

if TYPE_CHECKING:
    from reconciler.app.pages import Snapshot

REFRESH: Final = 60.0  # seconds: a page's "now" (windows, expiries) is never older
HEARTBEAT: Final = 15.0  # seconds between SSE comments, so proxies keep the stream open
RETRY: Final = 1.0  # seconds before a failed read of the branch is tried again
MAX_STREAMS: Final = 64  # event streams open at once (a page each); any more get 503

# The one inline style admitted is the package's stylesheet, by its hash (`render`).
POLICY: Final = (
    f"default-src 'none'; script-src 'self'; style-src 'self' {render.style_source()}; "
    "img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS: Final = (
    (b"content-security-policy", POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
STATIC: Final = {"page.css": "text/css", "live.js": "text/javascript"}


class SecurityHeaders:
    """Adds `HEADERS` to every response, the errors Starlette makes itself included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass
class Live:
    """The last snapshot of the branch, its number, and the poller that renews it."""

    source: Source
    interval: float
    driver_root: Path | None = None
    snapshot: Snapshot | None = None
    version: int = 0
    tip: str | None = None
    read_at: float = 0.0
    problem: str | None = None
    # Told each new problem with a read (once, not at every look) and when reads recover.
    on_problem: Callable[[str | None], None] = lambda _: None
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # read now, not at the interval
    lock: threading.Lock = field(default_factory=threading.Lock)
    streams: int = 0  # event streams open (touched from the server's event loop only)

    def refresh(self) -> None:
        """Read the branch again if it moved (or `REFRESH` passed); a failure is shown
        on the pages and the last good snapshot kept."""
        current = self.snapshot
        tip = pages.mark(self.source, current.branch) if current else None
        fresh = current is not None and time.monotonic() - self.read_at < REFRESH
        if fresh and tip == self.tip:
            return
        try:
            # Pushes that change no decision (empty commits, a README) move only the tip
            # the pages name: every plan decided again after each was most of their work.
            kept = pages.moved_to(self.source, current, tip) if current and fresh and tip else None
            snapshot = kept or pages.snapshot(self.source, driver_root=self.driver_root)
        except ReconcilerError as error:
            self._failed(str(error))
            return
        if self.problem is not None:
            self.on_problem(None)
        with self.lock:
            self.snapshot, self.tip, self.problem = snapshot, snapshot.tip, None
            if kept is None:  # a kept snapshot's "now" is no newer: `REFRESH` counts on
                self.read_at = time.monotonic()
            self.version += 1

    def poll(self) -> None:
        while not self.stop.is_set():
            # After a failed read (a state store busy with the pass that woke it), look again
            # soon: the next wake may be an hour away on a watcher only webhooks trigger.
            self.wake.wait(self.interval if self.problem is None else min(self.interval, RETRY))
            self.wake.clear()
            if self.stop.is_set():
                return
            try:
                self.refresh()
            except Exception as error:
                # A git that fails to start, a state store that is busy: the next look may
                # succeed; a dead poller would freeze every page without a word.
                self._failed(f"{type(error).__name__}: {error}")

    def _failed(self, problem: str) -> None:
        if problem != self.problem:
            self.problem = problem
            self.on_problem(problem)

    def current(self) -> tuple[Snapshot, int]:
        with self.lock:
            assert self.snapshot is not None
            return self.snapshot, self.version


class _Counted(StreamingResponse):
    """An event stream that gives its place among `live.streams` back when it ends."""

    def __init__(self, live: Live, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.live.streams -= 1


def _page(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status, headers={"cache-control": "no-store"})


def app(live: Live, *, allowed_hosts: list[str]) -> Starlette:
    """The pages of `live`'s snapshot (taken once before, then by its poller)."""

    def pipeline(_: Request) -> Response:
        snapshot, version = live.current()
        return _page(render.pipeline_page(snapshot.pipeline, snapshot=snapshot, version=version))

    def plan(request: Request) -> Response:
        snapshot, version = live.current()
        name = request.path_params["name"]
        try:
            page = pages.plan_page(live.source, snapshot, name)
        except ReconcilerError as error:
            return _page(render.problem_page(snapshot, "Plan", str(error)), 503)
        if page is None:
            text = f"no plan {name} on {snapshot.branch}"
            return _page(render.problem_page(snapshot, "No such plan", text), 404)
        return _page(render.plan_page(snapshot, page, version))

    def environment(request: Request) -> Response:
        snapshot, version = live.current()
        name = request.path_params["name"]
        try:
            page = pages.environment_page(live.source, snapshot, name)
        except ReconcilerError as error:
            return _page(render.problem_page(snapshot, "Environment", str(error)), 503)
        if page is None:
            text = f"no environment {name}"
            return _page(render.problem_page(snapshot, "No such environment", text), 404)
        return _page(render.environment_page(snapshot, page, version))

    def history(request: Request) -> Response:
        snapshot, version = live.current()
        filters = {
            key: request.query_params.get(key, "").strip()
            for key in ("plan", "env", "user", "since")
        }
        try:
            query = HistoryQuery(
                plan=filters["plan"] or None,
                environment=filters["env"] or None,
                user=filters["user"] or None,
                since=pages.since(filters["since"]) if filters["since"] else None,
            )
            trail = pages.trail(
                live.source, query, pages.page_number(request.query_params.get("page", ""))
            )
        except UsageError as error:  # the query's: a filter naming no one, no page number
            return _page(render.problem_page(snapshot, "Audit trail", str(error)), 400)
        except ReconcilerError as error:  # not the query's: a pass holds the state, a damaged one
            return _page(render.problem_page(snapshot, "Audit trail", str(error)), 503)
        return _page(render.history_page(snapshot, trail, filters, version))

    def access(request: Request) -> Response:
        snapshot, version = live.current()
        filters = {key: request.query_params.get(key, "").strip() for key in ("user", "env")}
        if not filters["user"]:
            return _page(render.access_page(snapshot, None, filters, None, version))
        try:
            report = api.access(live.source, filters["user"], filters["env"] or None)
        except ReconcilerError as error:
            return _page(render.access_page(snapshot, None, filters, str(error), version), 404)
        return _page(render.access_page(snapshot, report, filters, None, version))

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found\n", 404, media_type="text/plain")
        return Response(render.static_file(name), media_type=STATIC[name])

    async def events(_: Request) -> Response:
        if live.streams >= MAX_STREAMS:
            # A stream lasts as long as its page is open: capped, so open pages cannot
            # take every descriptor (the page still works, without live updates).
            return Response("too many open pages\n", 503, media_type="text/plain")

        async def stream() -> AsyncIterator[str]:
            shown, quiet = -1, 0.0
            while True:
                if live.version != shown:
                    shown, quiet = live.version, 0.0
                    yield f"event: pass\ndata: {shown}\n\n"
                elif quiet >= HEARTBEAT:
                    quiet = 0.0
                    yield ": still here\n\n"
                await asyncio.sleep(0.2)
                quiet += 0.2

        # Counted as the cap is checked (a burst of requests would all pass the check
        # before one stream began), and given back when the answer ends, begun or not.
        live.streams += 1
        return _Counted(
            live,
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        poller = threading.Thread(target=live.poll, name="pages-poller", daemon=True)
        poller.start()
        try:
            yield
        finally:
            live.stop.set()

    routes = [
        Route("/", pipeline, methods=["GET"]),
        Route("/plans/{name}", plan, methods=["GET"]),
        Route("/environments/{name}", environment, methods=["GET"]),
        Route("/history", history, methods=["GET"]),
        Route("/access", access, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


class WatchPages:
    """The pages on `watch --listen`, served by the webhook receiver beside `/webhook`:
    read again after each pass the watcher makes (`passed`), and every `REFRESH`."""

    def __init__(self, source: Source, *, driver_root: Path | None, host: str) -> None:
        self.live = Live(source, REFRESH, driver_root)
        self._app = app(self.live, allowed_hosts=allowed_hosts(host))
        self._poller = threading.Thread(target=self.live.poll, name="pages-poller", daemon=True)

    def serves(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is not Match.NONE for route in self._app.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.live.snapshot is None:
            # Read after the first pass: not yet, or not readable (the watcher's log
            # says why, as it does for a pass).
            text = self.live.problem or "the pages are being read; try again in a moment"
            answer = Response(text + "\n", 503, media_type="text/plain")
            await SecurityHeaders(answer)(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def start(self, on_problem: Callable[[str | None], None]) -> None:
        """Read the branch after each pass (in the poller's thread), the first included:
        never beside it, which would check its signatures first (and fill the cache the
        pass's metrics count) and slow the service's start."""
        self.live.on_problem = on_problem
        self._poller.start()

    def passed(self) -> None:
        self.live.wake.set()

    def close(self) -> None:
        self.live.stop.set()
        self.live.wake.set()


def allowed_hosts(host: str) -> list[str]:
    """Loopback: only loopback names in `Host` (DNS rebinding); elsewhere, the proxy in
    front decides which names reach it."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return ["127.0.0.1", "localhost", "[::1]", "::1"] if loopback else ["*"]


def serve(
    source: Source,
    listen: tuple[str, int],
    *,
    driver_root: Path | None,
    interval: float,
    on_listening: Callable[[str], None],
    on_problem: Callable[[str | None], None],
) -> None:
    """Read the branch once (a problem stops here, before listening), then serve until
    interrupted; `on_listening` gets the address, the port an OS-chosen one if 0;
    `on_problem` a read that failed afterwards (the pages keep the last good one), and
    None when reads succeed again."""
    import uvicorn  # noqa: PLC0415

    live = Live(source, interval, driver_root)
    live.refresh()
    if live.snapshot is None:
        raise ReconcilerError(live.problem or "cannot read the branch")
    live.on_problem = on_problem
    host, port = listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening before the address is told: a client that connects at once waits in
        # the backlog until uvicorn accepts, instead of being refused.
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise ReconcilerError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    config: Any = uvicorn.Config(
        app(live, allowed_hosts=allowed_hosts(host)),
        # uvicorn has no deadline for a request's head nor a cap on connections: the
        # receiver's protocol keeps both, as on `watch --listen`.
        http=pages_protocol(),
        h11_max_incomplete_event_size=2 * MAX_HEAD,
        log_level="warning",
        timeout_graceful_shutdown=1,
        server_header=False,
    )
    on_listening(f"http://{shown}:{bound}/")
    uvicorn.Server(config).run(sockets=[sock])
