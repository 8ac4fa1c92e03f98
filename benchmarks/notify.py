"""The notification benchmark: what telling people costs a pass, on the run's path.

Run by people as `python -m benchmarks.notify [--passes 20] [--events 100] [--format json]`.
Each pass's result holds `--events` events (half plan versions refused, half
runs marked interrupted), routed by three teams.yaml routes to two targets
each: a live local webhook receiver (a threaded
`http.server`, which checks nothing and answers 200) and a dead one (nothing
listens; each delivery is tried once and given up). It times what the pass's
thread pays (`Notifications.after_pass`: derive the notices from the result,
route them, put them on the courier's queue) per event, and, apart, how long
the worker took to deliver them all, off that path.

The goal (issue 19): under 5 ms per event on the run's path, judged on the
median pass. A dead target must not change it: its deliveries are the
worker's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from reconciler.adapters.notify import Courier, Delivery, NotifyConfig, Target
from reconciler.app.notices import Notifications
from reconciler.app.passes import PassReport
from reconciler.core.events import PlanRef
from reconciler.core.model import Policy, Route

GOAL_MS = 5.0


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _policy(routes: tuple[Route, ...]) -> Policy:
    return Policy(
        users={},
        service_accounts={},
        hosts={},
        settings=frozenset(),
        projects=frozenset(),
        teams={},
        environments={},
        application_owner={},
        key_owner={},
        email_owner={},
        notifications=routes,
    )


def _report(number: int, events: int, policy: Policy) -> PassReport:
    """A pass's result with `events` events, named apart from every other pass's."""
    report = PassReport(policy=policy)
    refused = events // 2
    for index in range(refused):
        ref = PlanRef(f"plans/p{number}-{index}.yaml", f"{number:08x}{index:032x}")
        report.refused.append(ref)
        report.why_refused[ref] = ("production promotes from quality-assurance, not nothing",)
    for index in range(events - refused):
        run = f"run-{number}-{index}.1"
        report.interrupted.append(run)
        report.interrupted_in[run] = "production"
    return report


def measure(passes: int, events: int, state: Path) -> dict[str, Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    live = f"http://127.0.0.1:{server.server_address[1]}/hook"
    targets = {
        "live": Target("live", "webhook", (live,), b"benchmark-secret", timeout=5.0),
        "dead": Target("dead", "webhook", ("http://127.0.0.1:9/nobody",), None, timeout=1.0),
    }
    routes = (
        Route("live", frozenset({"plan.refused", "run.interrupted"})),
        Route("dead"),
        # Matches nothing here: routing still looks.
        Route("live", frozenset({"run.failed"}), frozenset({"production"})),
    )
    policy = _policy(routes)
    lines: list[str] = []
    courier = Courier(
        state / "main.notifications.sqlite",
        NotifyConfig(targets, Delivery(queue=passes * events * 2 + 10, attempts=1)),
        source="/reconciler/benchmark",
        log=lambda level, event, message, fields: lines.append(event),
    )
    notifications = Notifications(courier, "benchmark", lambda *args: None)
    notifications.start()
    per_event_ms: list[float] = []
    began = time.monotonic()
    try:
        for number in range(passes):
            report = _report(number, events, policy)
            at = datetime.now(UTC)
            start = time.perf_counter()
            notifications.after_pass(report, [], at)
            per_event_ms.append((time.perf_counter() - start) * 1000 / events)
        idle = courier.wait_idle(600)
        drained = time.monotonic() - began
    finally:
        notifications.close()
        server.shutdown()
        server.server_close()
    return {
        "passes": passes,
        "events_per_pass": events,
        "deliveries": passes * events * 2,
        "per_event_ms_median": statistics.median(per_event_ms),
        "per_event_ms_max": max(per_event_ms),
        "goal_ms": GOAL_MS,
        "delivered": lines.count("notify-delivered"),
        "gave_up": lines.count("notify-gave-up"),
        "dropped": courier.dropped,
        "worker_seconds": round(drained, 3),
        "worker_done": idle,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="notify-bench-") as folder:
        figures = measure(arguments.passes, arguments.events, Path(folder))
    if arguments.format == "json":
        print(json.dumps(figures, indent=2))
        return
    verdict = "within" if figures["per_event_ms_median"] < GOAL_MS else "OVER"
    print(
        f"{figures['passes']} passes x {figures['events_per_pass']} events, each to 2 targets "
        f"(one live, one dead); load {figures['load']:.2f}\n"
        f"on the run's path: {figures['per_event_ms_median']:.4f} ms per event (median pass), "
        f"{figures['per_event_ms_max']:.4f} ms at most; goal < {GOAL_MS:g} ms: {verdict}\n"
        f"off it: {figures['delivered']} delivered, {figures['gave_up']} given up (dead target), "
        f"{figures['dropped']} dropped, in {figures['worker_seconds']} s by the worker"
    )


if __name__ == "__main__":
    main()
