"""`watch --listen`'s `GET /metrics` and `GET /readyz`: what a pass, a run, a refusal and
a webhook delivery count, scraped over real HTTP from a real `reconciler watch` and
read back with the Prometheus client's own parser."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.app.passes import Options
from reconciler.app.watch import Watch
from reconciler.app.watch_values import LogEvent, Request, WatchSettings
from tests.people import People
from tests.repositories import run_git
from tests.scenarios import ECOMMERCE, plan, proposed_qa_release
from tests.test_watch import (
    SECRET,
    Watcher,
    github_push,
    gitlab_push,
    push,
    push_plan,
    request,
    watch_with_webhooks,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SUCCEEDED_IN_DEVELOPMENT = {"environment": "development", "result": "succeeded"}


@pytest.fixture
def watching() -> Iterator[list[Watcher]]:
    """Watchers started by a test; any still running at its end are killed."""
    started: list[Watcher] = []
    yield started
    for watcher in started:
        watcher.kill()


def scrape(port: int) -> tuple[str, Samples]:
    """GET /metrics: its content type, and every sample by name and labels."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        text = response.read().decode("utf-8")
        content_type = response.getheader("Content-Type") or ""
    finally:
        connection.close()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_passes_runs_refusals_waits_and_webhook_deliveries(
    tmp_path: Path, people: People, watching: list[Watcher]
) -> None:
    # A QA release that waits for its approvals from the start.
    repo = proposed_qa_release(tmp_path, people)
    remote, watcher, port = watch_with_webhooks(repo, people, watching, SECRET)
    content_type, samples = scrape(port)
    # Prometheus's text format (its version is the client's to choose).
    assert content_type.startswith("text/plain; version=")
    assert value(samples, "reconciler_plans_waiting", reason="approval") == 1
    assert value(samples, "reconciler_pass_duration_seconds_count") == 1
    assert value(samples, "reconciler_passes_total", result="ok") == 1
    assert value(samples, "reconciler_last_successful_pass_timestamp_seconds") > 0
    assert value(samples, "reconciler_signature_cache_misses_total") >= 1
    assert value(samples, "reconciler_runs_total", **SUCCEEDED_IN_DEVELOPMENT) == 0
    assert request(port, "GET", "/readyz") == (
        200,
        {"status": "ready", "branch": "main", "instance": "test-watch", "passes": 1},
    )

    # A plan for development, announced by a signed GitHub delivery: its run succeeds.
    first = push_plan(repo, people.alice, "metered", "1.0.0")
    body, headers = github_push("refs/heads/main", first)
    assert request(port, "POST", "/webhook", body, headers)[0] == 202
    watcher.wait_for_event("run-finished", 30, run="metered.1", result="succeeded")
    # The same delivery again, a badly signed one, and a push to another branch.
    assert request(port, "POST", "/webhook", body, headers)[1]["action"].startswith("ignored")
    bad_body, bad_headers = github_push("refs/heads/main", first, secret="wrong")
    assert request(port, "POST", "/webhook", bad_body, bad_headers)[0] == 401
    other_body, other_headers = github_push("refs/heads/feature", first)
    assert request(port, "POST", "/webhook", other_body, other_headers)[0] == 202

    # A QA plan that names no source: refused (a record of it), announced by GitLab.
    unsourced = plan("unsourced-qa", "quality-assurance", [ECOMMERCE])
    second = push(repo, lambda: repo.commit(people.alice, {"plans/unsourced-qa.yaml": unsourced}))
    body, headers = gitlab_push("refs/heads/main", second, SECRET)
    assert request(port, "POST", "/webhook", body, headers)[0] == 202
    watcher.wait_for(lambda event: event.get("event") == "pass" and bool(event.get("refused")))
    tip = run_git(remote, "rev-parse", "main")
    watcher.wait_for_event("pass", commit=tip)

    _, samples = scrape(port)
    passes = len(watcher.named("pass"))
    assert value(samples, "reconciler_runs_total", **SUCCEEDED_IN_DEVELOPMENT) == 1
    assert value(samples, "reconciler_refusals_total") == 1
    assert value(samples, "reconciler_plans_waiting", reason="approval") == 1
    assert value(samples, "reconciler_pass_duration_seconds_count") == passes
    assert value(samples, "reconciler_passes_total", result="ok") == passes
    assert value(samples, "reconciler_commits_behind") == 0
    assert value(samples, "reconciler_webhook_deliveries_total", result="triggered") == 2
    assert value(samples, "reconciler_webhook_deliveries_total", result="replayed") == 1
    assert value(samples, "reconciler_webhook_deliveries_total", result="ignored") == 1
    assert value(samples, "reconciler_webhook_deliveries_total", result="unauthorised") == 1
    # One step of one run, by the local driver the seed's environments name.
    assert value(samples, "reconciler_driver_step_duration_seconds_count", driver="local") == 1
    # Later passes find the signatures the first one checked.
    assert value(samples, "reconciler_signature_cache_hits_total") >= 1
    assert watcher.stop() == 0


def test_readyz_is_503_until_a_pass_has_verified_the_branch_and_healthz_stays_as_it_was(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    logged: list[LogEvent] = []
    watch = Watch(
        repo.path,
        Options(
            state_dir=tmp_path / "watch-state",
            key=people.reconciler.key,
            driver_root=repo.driver_root,
            instance="test-ready",
        ),
        WatchSettings(interval=3600, listen=("127.0.0.1", 0), webhook_secret=SECRET.encode()),
        clock=lambda: datetime.now(UTC),
        log=logged.append,
    )
    try:
        # The listener is up, the first pass has not run: not ready, though healthy.
        watch._open_sources()
        address = watch.webhook_address
        assert address is not None
        port = address[1]
        status, ready = request(port, "GET", "/readyz")
        assert (status, ready["status"], ready["passes"]) == (503, "starting", 0)
        status, health = request(port, "GET", "/healthz")
        assert (status, health["status"], health["last_pass"]) == (200, "starting", None)
        _, samples = scrape(port)
        assert value(samples, "reconciler_pass_duration_seconds_count") == 0
        # The first pass verifies the branch: ready.
        assert watch._pass(Request(frozenset({"start"}), True)) is not None
        status, ready = request(port, "GET", "/readyz")
        assert (status, ready["status"], ready["passes"]) == (200, "ready", 1)
        _, samples = scrape(port)
        assert value(samples, "reconciler_pass_duration_seconds_count") == 1
        # Two commits the watcher has seen and no pass has reconciled yet, then a pass.
        for name in ("behind-1", "behind-2"):
            content = plan(name, "development", [ECOMMERCE])
            repo.commit(people.alice, {f"plans/{name}.yaml": content})
        assert watch._branch_moved()
        assert value(scrape(port)[1], "reconciler_commits_behind") == 2
        assert watch._pass(Request(frozenset({"event"}), False)) is not None
        assert value(scrape(port)[1], "reconciler_commits_behind") == 0
        # Another method, or a path nobody serves: as before.
        assert request(port, "POST", "/readyz", b"{}")[0] == 404
        assert request(port, "GET", "/readyz/more")[0] == 404
    finally:
        watch._close()
    assert logged[-1].event == "stopped"
