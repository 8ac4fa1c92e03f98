"""Signed checkpoints: the service publishes what it verified, a fresh state goes on from it.

`docs/design.md, "Checkpoints"`. Every checkpoint here is made by the real
service (`reconciler apply` with its key) or, for the attacks, as an attacker
would make one and push it; every verification is the real CLI with a fresh
state directory, compared with `verify --full`, which ignores checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.configrepo import Result, reconciler
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import ECOMMERCE, PORTAL, QA_PLAN, proposed_qa_release, qa_plan

CHECKPOINTS = "refs/reconciler/checkpoints/main"


def fresh_verify(repo: SeedRepo, state: Path, *args: str) -> Result:
    """`reconciler verify` as CI runs it: a state directory no one used before."""
    return reconciler(
        "verify", "--repo", repo.path, "--state-dir", state, "--format", "json", *args
    )


def verdicts(result: Result) -> list[dict[str, Any]]:
    landings: list[dict[str, Any]] = result.json()["landings"]
    return landings


def test_a_service_pass_publishes_a_checkpoint_a_fresh_verify_continues_from(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    served = repo.apply()
    assert served.exit_code == 0, served.stderr
    checkpoint = repo.git("rev-parse", CHECKPOINTS)
    of = repo.git("log", "-1", "--format=%(trailers:key=Checkpoint-Of,valueonly)", checkpoint)
    assert of.strip() == repo.head("main")
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="one more")})

    continued = fresh_verify(repo, tmp_path / "ci")
    full = fresh_verify(repo, tmp_path / "audit", "--full")

    assert continued.exit_code == full.exit_code == 0, continued.stderr
    assert continued.json()["checkpoint"]["checkpoint"] == checkpoint
    assert continued.json()["judged"] == 1  # only the commit after the checkpoint
    assert full.json()["checkpoint"] is None
    assert full.json()["judged"] == len(verdicts(full)) > 1
    assert verdicts(continued) == verdicts(full)
