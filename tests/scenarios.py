"""The seed story's steps, as tests take them: its plans, a proposed and an interrupted
QA release, records of runs, and environments whose windows and freezes are built
around SUITE_NOW."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.clock import SUITE_NOW, window_only_tomorrow
from tests.configrepo import dump, example_file
from tests.people import People
from tests.repositories import SeedRepo


def plan(
    name: str,
    target: str,
    applications: list[dict[str, str]],
    *,
    source: str | None = None,
    notes: str = "",
    state: str = "ready",
) -> str:
    """A plan file's YAML text."""
    data: dict[str, Any] = {"name": name}
    if source:
        data["source"] = source
    data["target"] = target
    data["applications"] = applications
    if notes:
        data["notes"] = notes
    data["state"] = state
    return dump(data)


# -- the seed story's plans, as tests write them -------------------------------------

DEV_PLAN = "plans/2026-11-dev-build.yaml"


QA_PLAN = "plans/2026-11-qa-release.yaml"


PROD_PLAN = "plans/2026-11-prod-release.yaml"


ECOMMERCE = {"name": "ecommerce", "version": "1.4.0"}


PORTAL = {
    "name": "customer-portal",
    "version": "0.6",
    "action": "tag-and-deploy",
    "from": "0.6-dev.41",
}


PORTAL_DEV = {"name": "customer-portal", "version": "0.6-dev.41"}


def dev_plan(*applications: dict[str, str]) -> str:
    return plan("2026-11-dev-build", "development", list(applications))


def qa_plan(*applications: dict[str, str], notes: str = "", state: str = "ready") -> str:
    return plan(
        "2026-11-qa-release",
        "quality-assurance",
        list(applications),
        source="development",
        notes=notes,
        state=state,
    )


def prod_plan(*applications: dict[str, str], notes: str = "") -> str:
    return plan(
        "2026-11-prod-release",
        "production",
        list(applications),
        source="quality-assurance",
        notes=notes,
    )


def proposed_qa_release(tmp_path: Path, people: People, **seed: Any) -> SeedRepo:
    """The seed story up to a saved QA plan: alice's entry, diana's entry, development ready."""
    if seed:
        return _proposed_qa_release(tmp_path, people, **seed)
    return SeedRepo.copy_of(_proposed_template(people), tmp_path)


# Told by git once per worker and people, then copied: the same commits (ssh-keygen's
# Ed25519 signatures are deterministic) for a tenth of the cost, and over a hundred
# tests start from it.
_PROPOSED_TEMPLATES: dict[Path, SeedRepo] = {}


def _proposed_template(people: People) -> SeedRepo:
    template = _PROPOSED_TEMPLATES.get(people.directory)
    if template is None:
        root = Path(tempfile.mkdtemp(prefix="proposed-", dir=people.directory))
        template = _PROPOSED_TEMPLATES[people.directory] = _proposed_qa_release(root, people)
    return template


def _proposed_qa_release(tmp_path: Path, people: People, **seed: Any) -> SeedRepo:
    """`proposed_qa_release` committed by git."""
    repo = SeedRepo.create(tmp_path, people, **seed)
    repo.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="November release")})
    return repo


def one_plan_landed(tmp_path: Path, people: People) -> SeedRepo:
    """The seed repository with one plan into development (plans/one.yaml), landed by
    alice: its creation and its trigger are the trail's entries."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.alice, {"plans/one.yaml": plan("one", "development", [ECOMMERCE])})
    return repo


def ran(repo: SeedRepo, path: str, run: str, result: str = "succeeded") -> None:
    repo.record(
        {**_run_trailers(repo, path, run), "Result": "started", "Reconciler": "test-instance"}
    )
    ended(repo, path, run, result)


def ended(repo: SeedRepo, path: str, run: str, result: str) -> str:
    """A record that `run` of the plan at `path` ended with `result`; its commit."""
    return repo.record({**_run_trailers(repo, path, run), "Result": result})


def _run_trailers(repo: SeedRepo, path: str, run: str) -> dict[str, str]:
    return {"Plan": f"{path}@{repo.blob(path)}", "Environment": "quality-assurance", "Run": run}


def interrupted_qa_release(tmp_path: Path, people: People) -> tuple[SeedRepo, str]:
    """The QA release approved by ravi, triggered by olga, its run 1 interrupted; and the
    approval's commit."""
    repo = proposed_qa_release(tmp_path, people)
    approval = repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, f"{Path(QA_PLAN).stem}.1", result="interrupted")
    return repo, approval


def production_with_windows(windows: str, freezes: str = "[]") -> str:
    """The example production environment with these windows and freezes (YAML flow lists)
    instead of its Lisbon office hours and its year-end freeze, which fall differently
    on every day the suite runs."""
    production = example_file("environments/production.yaml")
    start = production.index("  windows:")
    end = production.index("driver:")
    return production[:start] + f"  windows: {windows}\n  freezes: {freezes}\n" + production[end:]


def production_triggered_before_its_window(
    tmp_path: Path, people: People
) -> tuple[SeedRepo, datetime]:
    """The production plan approved by ravi and carol and triggered by olga, in a
    production whose one window opens tomorrow (and no approval_ttl, so nothing lapses
    while it waits); the repository, and when the window opens."""
    window, opens = window_only_tomorrow(SUITE_NOW)
    production = production_with_windows(window).replace("  approval_ttl: 8h\n", "")
    assert "approval_ttl" not in production
    repo = SeedRepo.create(tmp_path, people, extra={"environments/production.yaml": production})
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.approve(people.ravi, PROD_PLAN)
    repo.approve(people.carol, PROD_PLAN)
    repo.trigger(people.olga, PROD_PLAN)
    return repo, opens


def frozen_until_the_end_of_time(tmp_path: Path, people: People) -> SeedRepo:
    """The seed story with development in a freeze until 9999-12-31, and a deploy window."""
    development = example_file("environments/development.yaml").replace(
        "  signed_commits: false",
        "  signed_commits: false\n"
        "  windows: [{days: [mon], from: '09:00', to: '10:00'}]\n"
        "  freezes: [{name: forever, from: '2020-01-01T00:00:00Z', until: '9999-12-31T23:59:00Z'}]",
    )
    return SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": development})
