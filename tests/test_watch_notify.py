"""`reconciler watch --notify`: real passes and runs tell real local receivers, as routed by
teams.yaml, while a dead target slows nothing; a restart resends what was not delivered;
drift the service finds is told.

The watcher runs as a subprocess (tests/test_watch.py's `Watcher`); the receivers
are tests/test_notify.py's, checking the HMAC and parsing the CloudEvents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.adapters.drivers import LocalDriver
from tests.people import People, seed_teams
from tests.repositories import SeedRepo, build
from tests.runner import DRIVER, command_environment
from tests.scenarios import DEV_PLAN, ECOMMERCE, PORTAL, QA_PLAN, dev_plan, qa_plan
from tests.test_drivers import step
from tests.test_notify import Receiver, receivers, rows
from tests.test_rollback import CHECK, NEW, OLD, argv, development, first_run
from tests.test_rollback_plans import ROLLBACK_QA, qa_ran_1_4_then_1_5, rollback_plan
from tests.test_watch import Watcher, push, push_plan, start_watch, watchers

__all__ = ["receivers", "watchers"]  # fixtures

ROUTES = [
    # Development's news, all of it, to the audit webhook.
    {"target": "audit", "environments": ["development"]},
    # Failures and the service's health, wherever, to the failures webhook.
    {"target": "failures", "events": ["run.failed", "service.unhealthy"]},
    # Quality assurance's waiting plans to the approvers' webhook.
    {"target": "waits", "events": ["plan.waiting"], "environments": ["quality-assurance"]},
    # Everything to a target nobody listens at.
    {"target": "dead"},
]


def notify_file(path: Path, secret: Path, urls: dict[str, str]) -> Path:
    path.write_text(
        "[delivery]\nretry_first = 0.2\nretry_max = 1.0\nattempts = 1000\n\n"
        + "".join(
            f'[targets.{name}]\ntype = "webhook"\nurl = "{url}"\nsecret_file = "{secret}"\n\n'
            for name, url in urls.items()
        )
    )
    return path


def one_target(
    tmp_path: Path, receivers: list[Receiver], name: str, secret: str
) -> tuple[Receiver, Path]:
    """A live receiver holding `secret`, and a --notify file naming it the target `name`."""
    path = tmp_path / "notify-secret"
    path.write_text(secret + "\n")
    receiver = Receiver(secret=secret.encode())
    receivers.append(receiver)
    return receiver, notify_file(tmp_path / "notify.toml", path, {name: receiver.url})


def kinds(receiver: Receiver) -> list[tuple[str, Any]]:
    return [(event.get_type(), event.get_id()) for event in receiver.events()]


def test_a_watched_pass_and_its_runs_tell_the_routed_targets_and_a_restart_resends(
    tmp_path: Path, people: People, watchers: list[Watcher], receivers: list[Receiver]
) -> None:
    teams = seed_teams(people)
    teams["notifications"] = ROUTES
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "driver.out"
    repo = SeedRepo.create(
        tmp_path,
        people,
        teams=teams,
        extra={"environments/development.yaml": command_environment("development", script, out)},
    )
    # What quality assurance promotes; development's runs below deploy ecommerce only.
    repo.deployed("development", {PORTAL["name"]: PORTAL["version"]})
    bare = repo.publish_to_bare_remote()
    secret = tmp_path / "notify-secret"
    secret.write_text("a-long-random-secret\n")
    audit = Receiver(secret=b"a-long-random-secret")
    failures = Receiver(secret=b"a-long-random-secret")
    waits = Receiver(secret=b"a-long-random-secret")
    receivers.extend([audit, failures, waits])
    dead = "http://127.0.0.1:9/nobody"
    targets = {"audit": audit.url, "failures": failures.url, "waits": waits.url, "dead": dead}
    config = notify_file(tmp_path / "notify.toml", secret, targets)

    watcher = start_watch(watchers, repo, people, bare, "--notify", str(config))
    push_plan(repo, people.alice, "first-build", "1.0.0")
    watcher.wait_for_event("run-finished", run="first-build.1", result="succeeded")
    (tmp_path / "driver.out.fail").write_text("ecommerce")
    push_plan(repo, people.alice, "broken-build", "1.0.1")
    watcher.wait_for_event("run-finished", run="broken-build.1", result="failed")
    push(repo, lambda: repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)}))
    waiting = f"plan.waiting/{QA_PLAN}@{repo.blob(QA_PLAN)}"
    watcher.wait_for_event("notify-delivered", notice=waiting, target="waits")
    push_plan(repo, people.alice, "later-build", "1.0.2")  # more passes: still waiting
    watcher.wait_for_event("run-finished", run="later-build.1", result="failed")
    audit.wait(6)
    failures.wait(2)
    assert watcher.stop() == 0

    assert all(
        request["verified"] for item in (audit, failures, waits) for request in item.requests
    )
    # development's runs, in order, each told once; the retry of a 503 aside, nothing twice.
    assert kinds(audit) == [
        ("dev.reconciler.run.started.v1", "run.started/first-build.1"),
        ("dev.cdevents.service.deployed.0.2.0", "run.succeeded/first-build.1"),
        ("dev.reconciler.run.started.v1", "run.started/broken-build.1"),
        ("dev.reconciler.run.failed.v1", "run.failed/broken-build.1"),
        ("dev.reconciler.run.started.v1", "run.started/later-build.1"),
        ("dev.reconciler.run.failed.v1", "run.failed/later-build.1"),
    ]
    assert kinds(failures) == [
        ("dev.reconciler.run.failed.v1", "run.failed/broken-build.1"),
        ("dev.reconciler.run.failed.v1", "run.failed/later-build.1"),
    ]
    # Once per version, though every pass since found it waiting.
    assert kinds(waits) == [("dev.reconciler.plan.waiting.v1", waiting)]
    [failed] = [event for event in audit.events() if event.get_id() == "run.failed/broken-build.1"]
    data = failed.get_data()
    assert isinstance(data, dict)
    assert data["environment"] == "development"
    assert data["applications"] == [{"name": "ecommerce", "version": "1.0.1"}]
    assert "ecommerce 1.0.1" in data["failed_step"]
    # The dead target cost the runs nothing: they ran, and its deliveries wait in the log.
    assert watcher.named("notify-retry")
    state = repo.path.parent / "watch-state"
    undelivered = {row[0] for row in rows(state) if row[1] == "dead" and row[2] == "pending"}
    assert "run.succeeded/first-build.1" in undelivered

    # The dead target comes up; the restarted service resends what it was never told, and
    # tells the others nothing twice (the first pass derives the waiting plan again).
    revived = Receiver(secret=b"a-long-random-secret")
    receivers.append(revived)
    notify_file(config, secret, {**targets, "dead": revived.url})
    watcher = start_watch(watchers, repo, people, bare, "--notify", str(config))
    resend = watcher.wait_for_event("notify-resend")
    assert resend["pending"] >= len(undelivered)
    revived.wait(len(undelivered))
    assert watcher.stop() == 0
    assert {event.get_id() for event in revived.events()} >= undelivered
    assert len(waits.requests) == 1
    assert len(audit.ok()) == 6
    # Beside the state store of the branch it follows.
    assert sorted(path.name for path in state.glob("*.notifications.sqlite")) == [
        "main.notifications.sqlite"
    ]


def test_three_failed_passes_in_a_row_tell_that_the_service_is_unhealthy_once(
    tmp_path: Path, people: People, watchers: list[Watcher], receivers: list[Receiver]
) -> None:
    teams = seed_teams(people)
    teams["notifications"] = [{"target": "failures", "events": ["service.unhealthy"]}]
    repo = SeedRepo.create(tmp_path, people, teams=teams)
    bare = repo.publish_to_bare_remote()
    failures, config = one_target(tmp_path, receivers, "failures", "another-secret")
    watcher = start_watch(watchers, repo, people, bare, "--notify", str(config))
    # A force-push that rewrites history: every pass fails, retried with backoff.
    repo.git("commit", "-q", "--amend", "--no-edit", "-m", "Rewritten seed")
    repo.git("push", "-q", "--force", "origin", "main")
    watcher.wait_for(lambda event: len(watcher.named("pass-failed")) >= 4, timeout=90)
    failures.wait(1)
    assert watcher.stop() == 0
    [event] = failures.events()
    assert event.get_type() == "dev.reconciler.service.unhealthy.v1"
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["failed_passes"] == 3
    assert "history was rewritten" in data["error"]


def test_drift_the_service_finds_is_told_once_per_version_found(
    tmp_path: Path, people: People, watchers: list[Watcher], receivers: list[Receiver]
) -> None:
    teams = seed_teams(people)
    teams["notifications"] = [{"target": "ops", "events": ["drift.found"]}]
    repo = SeedRepo.create(tmp_path, people, teams=teams)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})  # triggered: runs at once
    ops, config = one_target(tmp_path, receivers, "ops", "drift-secret")
    watcher = start_watch(watchers, repo, people, repo.path, "--notify", str(config))
    watcher.wait_for_event("run-finished", result="succeeded")
    # The run's own deploy is no drift.
    assert all(not event["drift"] for event in watcher.named("drift"))
    assert watcher.stop() == 0
    assert ops.requests == []
    # Someone switches development's ecommerce by hand while the service is down.
    build(repo.driver_root, "ecommerce", "1.3.9")
    output: list[str] = []
    assert LocalDriver(repo.driver_root).deploy(step(version="1.3.9"), output.append).ok
    for _ in range(2):  # each start looks again; the second finds what the first told
        watcher = start_watch(watchers, repo, people, repo.path, "--notify", str(config))
        watcher.wait_for(lambda e: e.get("event") == "drift" and len(e["drift"]) == 1)
        ops.wait(1)
        assert watcher.stop() == 0
    [event] = ops.events()
    assert event.get_type() == "dev.reconciler.drift.found.v1"
    assert event.get_subject() == "development"
    data = event.get_data()
    assert isinstance(data, dict)
    assert (data["application"], data["recorded"], data["found"]) == ("ecommerce", "1.4.0", "1.3.9")


def test_a_rollback_plans_run_is_told_as_a_cdevents_rollback(
    tmp_path: Path, people: People, watchers: list[Watcher], receivers: list[Receiver]
) -> None:
    teams = seed_teams(people)
    teams["notifications"] = [{"target": "ops", "events": ["run.rolled-back", "run.succeeded"]}]
    repo = qa_ran_1_4_then_1_5(tmp_path, people, teams=teams)
    # The releases QA ran, as the records say: 1.4.0, then 1.5.0, which the rollback undoes.
    output: list[str] = []
    driver = LocalDriver(repo.driver_root)
    for version in ("1.4.0", "1.5.0"):
        build(repo.driver_root, "ecommerce", version)
        assert driver.deploy(step(version=version), output.append).ok
    for version in ("1.4.0", "1.5.0"):
        qa = step(version=version, environment="quality-assurance", source="development")
        assert driver.deploy(qa, output.append).ok
    rollback = rollback_plan("rollback-quality-assurance-1", "quality-assurance", [ECOMMERCE])
    repo.commit(people.alice, {ROLLBACK_QA: rollback})
    repo.trigger(people.olga, ROLLBACK_QA)
    ops, config = one_target(tmp_path, receivers, "ops", "rollback-secret")
    watcher = start_watch(watchers, repo, people, repo.path, "--notify", str(config))
    finished = watcher.wait_for_event("run-finished")
    assert finished["result"] == "succeeded", finished
    ops.wait(1)
    assert watcher.stop() == 0
    [event] = ops.events()
    assert event.get_type() == "dev.cdevents.service.rolledback.0.2.0"
    assert event.get_id() == f"run.rolled-back/{finished['run']}"
    data = event.get_data()
    assert isinstance(data, dict)
    assert (data["result"], data["applications"]) == (
        "succeeded",
        [{"name": "ecommerce", "version": "1.4.0"}],
    )


def test_a_failed_run_that_rolled_itself_back_is_told_as_a_rollback(
    tmp_path: Path, people: People, watchers: list[Watcher], receivers: list[Receiver]
) -> None:
    teams = seed_teams(people)
    teams["notifications"] = [{"target": "ops", "events": ["run.rolled-back", "run.failed"]}]
    check = tmp_path / "check.py"
    check.write_text(CHECK)
    driver = f"{{type: local, check: {argv(check, NEW['version'])}}}"
    extra = {"environments/development.yaml": development(driver)}
    repo = SeedRepo.create(tmp_path, people, teams=teams, extra=extra)
    for version in ("1.4.0", "1.5.0"):
        build(repo.driver_root, "ecommerce", version)
    first_run(repo, people, OLD)
    repo.commit(people.alice, {DEV_PLAN: dev_plan(NEW)})  # its check fails: rolled back
    ops, config = one_target(tmp_path, receivers, "ops", "rollback-secret")
    watcher = start_watch(watchers, repo, people, repo.path, "--notify", str(config))
    finished = watcher.wait_for_event("run-finished")
    assert finished["result"] == "failed", finished
    ops.wait(1)
    assert watcher.stop() == 0
    [event] = ops.events()
    assert event.get_type() == "dev.cdevents.service.rolledback.0.2.0"
    data = event.get_data()
    assert isinstance(data, dict)
    assert (data["result"], data["rolled_back"]) == ("failed", ["ecommerce 1.4.0"])
