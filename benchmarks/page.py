"""The pipeline page benchmark: `reconciler serve`'s pipeline page against `status --format json`.

Run by people as `python -m benchmarks.page [--applications 100] [--environments 5]
[--plans 500] [--commits 2000] [--rounds 9] [--format json]`.

It generates a signed history (`benchmarks.history`: 100 applications, 5
environments, 500 plans by default), starts the real `reconciler serve` on it (a
subprocess, port chosen by the system) and measures, in the same run:

- `status --format json` on the same repository and state, as a whole process: its
  wall time (median of `--rounds`) and its output's size, the reference;
- the server's first read of the branch (until it listens);
- after one new signed landing (a pass's worth of change), how long until the page
  shows it (the server looks every 0.1 s here);
- server time for the pipeline page after that pass: GET / over loopback, median of
  `--rounds` (the goal: under 0.1 s);
- the page's weight: the HTML with its stylesheet and script (goal: under 150 KB); and,
  since a generated history runs nothing, the weight of the same page with every cell
  holding a version (rendered from the same pipeline);
- first paint in Debian's headless Chromium (Playwright, `first-contentful-paint`),
  median of `--rounds` fresh pages (goal: under 0.3 s), and a one-line page's, the
  browser's own floor on this machine at this moment.

Goals are reported, not enforced: exit 0 unless something failed to run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

from msgspec.structs import replace

from benchmarks.history import HistorySettings, append_signed_commit, generate_history
from benchmarks.verify import reconciler_launcher

SERVER_GOAL: Final = 0.1  # seconds
WEIGHT_GOAL: Final = 150 * 1024  # bytes
PAINT_GOAL: Final = 0.3  # seconds
CHROMIUM: Final = "/usr/bin/chromium"
FLAGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _get(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
    return time.perf_counter() - started, body


def _version(page: bytes) -> int:
    found = re.search(rb'data-version="(\d+)"', page)
    return int(found.group(1)) if found else -1


def _status_json(root: Path, state: Path, rounds: int) -> tuple[float, int]:
    argv = [*reconciler_launcher(), "status", "--repo", str(root), "--state-dir", str(state)]
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        done = subprocess.run(
            [*argv, "--format", "json"], capture_output=True, check=True, timeout=600
        )
        times.append(time.perf_counter() - started)
        size = len(done.stdout)
    return statistics.median(times), size


def _full_weight(root: Path, state: Path) -> int:
    """The pipeline page's HTML with a version in every cell, from the same pipeline."""
    from reconciler.app import pages  # noqa: PLC0415
    from reconciler.app.api import Source  # noqa: PLC0415
    from reconciler.web.render import pipeline_page  # noqa: PLC0415

    snapshot = pages.snapshot(Source(root, None, state))
    view = snapshot.pipeline
    full = {
        app: {env: f"{index}.{position}.0" for position, env in enumerate(view.environments)}
        for index, app in enumerate(view.applications)
    }
    filled = replace(view, versions=full)
    return len(pipeline_page(filled, snapshot=snapshot, version=1).encode())


def _first_paint(address: str, rounds: int) -> float | None:
    """Median first-contentful-paint of `address` over `rounds` fresh pages, in seconds."""
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        return None
    if not Path(CHROMIUM).is_file():
        return None
    paints = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            for _ in range(rounds):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(address, wait_until="load")
                paint = None
                for _ in range(100):  # the entry comes after the frame is presented
                    paint = page.evaluate(
                        "performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
                    )
                    if paint is not None:
                        break
                    page.wait_for_timeout(20)
                if paint is None:
                    raise RuntimeError("Chromium reported no first-contentful-paint")
                paints.append(float(paint) / 1000)
                page.close()
        finally:
            browser.close()
    return statistics.median(paints)


def measure(settings: HistorySettings, rounds: int, scratch: Path) -> dict[str, Any]:
    root, state = scratch / "config", scratch / "state"
    made = time.perf_counter()
    manifest = generate_history(settings, root)
    generated = time.perf_counter() - made
    status_time, status_size = _status_json(root, state, rounds)
    argv = [*reconciler_launcher(), "serve", "--repo", str(root), "--state-dir", str(state)]
    argv += ["--listen", "127.0.0.1:0", "--interval", "0.1"]
    started = time.perf_counter()
    server = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert server.stderr is not None
    try:
        said = server.stderr.readline()
        listening = time.perf_counter() - started
        found = re.search(r"http://127\.0\.0\.1:\d+/", said)
        if not found:
            raise RuntimeError(f"serve did not start: {said}{server.stderr.read()}")
        address = found.group(0)
        _, before = _get(address)
        append_signed_commit(root, manifest)
        moved = time.perf_counter()
        while True:
            _, page = _get(address)
            if _version(page) > _version(before):
                break
            if time.perf_counter() - moved > 120:
                raise RuntimeError("the page never showed the new landing")
            time.sleep(0.01)
        shown = time.perf_counter() - moved
        times = []
        for _ in range(rounds):
            took, page = _get(address)
            times.append(took)
        # The stylesheet is inlined in the page; the live-update script is its one request.
        script = _get(address + "static/live.js")[1]
        paint = _first_paint(address, rounds)
        # The floor on this machine now: a one-line page, with nothing to fetch or lay out.
        floor = _first_paint("data:text/html,<p>pipeline</p>", rounds)
    finally:
        server.terminate()
        server.wait(10)
        server.stderr.close()
    weight = len(page) + len(script)
    return {
        "applications": settings.applications,
        "environments": settings.environments,
        "plans": settings.plans,
        "commits": settings.commits,
        "generated_seconds": round(generated, 2),
        "status_json_seconds": round(status_time, 4),
        "status_json_bytes": status_size,
        "serve_first_read_seconds": round(listening, 3),
        "page_shows_a_new_landing_after_seconds": round(shown, 3),
        "page_server_seconds": round(statistics.median(times), 4),
        "page_server_goal_seconds": SERVER_GOAL,
        "page_bytes": len(page),
        "page_weight_bytes": weight,
        "page_weight_every_cell_bytes": _full_weight(root, state) + len(script),
        "page_weight_goal_bytes": WEIGHT_GOAL,
        "first_paint_seconds": None if paint is None else round(paint, 4),
        "first_paint_goal_seconds": PAINT_GOAL,
        "first_paint_one_line_page_seconds": None if floor is None else round(floor, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.page", description=__doc__)
    parser.add_argument("--applications", type=int, default=100)
    parser.add_argument("--environments", type=int, default=5)
    parser.add_argument("--plans", type=int, default=500)
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--users", type=int, default=850)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    arguments = parser.parse_args(argv)
    settings = HistorySettings(
        commits=arguments.commits,
        users=arguments.users,
        plans=arguments.plans,
        environments=arguments.environments,
        applications=arguments.applications,
    )
    with tempfile.TemporaryDirectory(prefix="page-bench-") as scratch:
        figures = measure(settings, arguments.rounds, Path(scratch))
    figures["load_average"] = os.getloadavg()[0]
    if arguments.format == "json":
        print(json.dumps(figures, indent=2))
        return 0
    for key, value in figures.items():
        print(f"{key:42} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
