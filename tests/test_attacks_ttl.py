"""Attacks on the TTL-before-window warning: an environment file whose approval_ttl is the
longest the schema lets through, with a deploy window that is closed now."""

from __future__ import annotations

from pathlib import Path

from tests.clock import SUITE_NOW, window_only_tomorrow
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import ECOMMERCE, PROD_PLAN, prod_plan, production_with_windows

# Four six-digit day counts: 32 characters at most, as the schema allows; some 10,950
# years, past the last day a datetime holds when added to today.
LONGEST_TTL = "999999d999999d999999d999999d"


def test_the_longest_approval_ttl_outside_a_window_is_no_traceback(
    tmp_path: Path, people: People
) -> None:
    window, _opens = window_only_tomorrow(SUITE_NOW)
    production = production_with_windows(window).replace(
        "approval_ttl: 8h", f"approval_ttl: {LONGEST_TTL}"
    )
    assert LONGEST_TTL in production
    repo = SeedRepo.create(tmp_path, people, extra={"environments/production.yaml": production})
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.approve(people.ravi, PROD_PLAN)
    result = repo.reconciler("plan", "--format", "json")
    assert (result.exit_code, result.stderr) == (0, ""), result.stderr
    # And again, from the decisions the first one kept.
    assert repo.reconciler("plan", "--format", "json").stdout == result.stdout
    [decision] = [item for item in result.json()["plans"] if item["plan"] == PROD_PLAN]
    assert decision["status"] == "waiting"
    # Nothing lapses before the window opens: no warning about it.
    assert not any(text.startswith("approval_ttl") for text in decision["reasons"])
