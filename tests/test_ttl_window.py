"""Saying ahead of time that approvals or a trigger will be too old when the window opens.

Production takes approvals for 8 h (`approval_ttl`) and, here, deploys only from
09:00 tomorrow (`window_only_tomorrow`, built around SUITE_NOW): whatever is
given today has lapsed by then, and `plan`, `status` and the JSON say so now,
naming both times. Real repositories, the real CLI.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests import builders
from tests.builders import Story
from tests.clock import SUITE_NOW, window_only_tomorrow
from tests.people import People
from tests.repositories import SeedRepo
from tests.scenarios import ECOMMERCE, PROD_PLAN, prod_plan, production_with_windows

TTL = timedelta(hours=8)


def production_opening_tomorrow(tmp_path: Path, people: People) -> tuple[SeedRepo, datetime]:
    """The seed story with production's window only tomorrow from 09:00 UTC, ecommerce
    1.4.0 in QA and the production plan landed; and when the window opens."""
    window, opens = window_only_tomorrow(SUITE_NOW)
    production = production_with_windows(window)
    assert "approval_ttl: 8h" in production
    repo = SeedRepo.create(tmp_path, people, extra={"environments/production.yaml": production})
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    return repo, opens


def prod_reasons(repo: SeedRepo) -> list[str]:
    result = repo.reconciler("plan", "--format", "json")
    assert (result.exit_code, result.stderr) == (0, ""), result.stderr
    [decision] = [item for item in result.json()["plans"] if item["plan"] == PROD_PLAN]
    assert decision["status"] == "waiting"
    reasons: list[str] = decision["reasons"]
    return reasons


def expires(repo: SeedRepo, commit: str) -> str:
    committed = datetime.fromisoformat(repo.git("log", "-1", "--format=%cI", commit).strip())
    return (committed + TTL).astimezone(SUITE_NOW.tzinfo).isoformat()


def test_plan_says_today_that_approvals_and_a_trigger_given_today_lapse_before_tomorrows_window(
    tmp_path: Path, people: People
) -> None:
    repo, opens = production_opening_tomorrow(tmp_path, people)
    fresh_from = (opens - TTL).isoformat()

    # Nothing given yet: a sign-off given now would lapse too, and from when one would not.
    asked = prod_reasons(repo)
    [warning] = [text for text in asked if text.startswith("approval_ttl")]
    assert asked[-1] == warning
    assert warning.startswith(
        f"approval_ttl (8h) runs out before deploys may start at {opens.isoformat()}: "
        "one given now would expire before then too; "
        f"approvals and triggers given from {fresh_from} on still count then"
    ), warning

    # Given today: each one named, with the moment it lapses.
    ravi = repo.approve(people.ravi, PROD_PLAN)
    carol = repo.approve(people.carol, PROD_PLAN)
    olga = repo.trigger(people.olga, PROD_PLAN)
    assert prod_reasons(repo) == [
        f"a deploy window: deploys may start at {opens.isoformat()}",
        f"approval_ttl (8h) runs out before deploys may start at {opens.isoformat()}: "
        f"the approval by ravi expires at {expires(repo, ravi)}, "
        f"and the approval by carol expires at {expires(repo, carol)}, "
        f"and the trigger by olga expires at {expires(repo, olga)}; "
        f"approvals and triggers given from {fresh_from} on still count then",
    ]
    # `plan` and `status` say it to people too.
    text = repo.reconciler("plan")
    assert f"approval_ttl (8h) runs out before deploys may start at {opens.isoformat()}" in (
        text.stdout
    )
    status = repo.reconciler("status", "--format", "json")
    assert status.exit_code == 0, status.stderr
    assert f"runs out before deploys may start at {opens.isoformat()}" in status.stdout


def test_no_warning_where_approvals_last_until_the_window_or_there_is_no_ttl(
    tmp_path: Path, people: People
) -> None:
    window, opens = window_only_tomorrow(SUITE_NOW)
    environments = {"production": production_with_windows(window)}
    # Approved and triggered an hour before the window opens: fresh at 09:00.
    story = Story(builders.policy(environments=environments), clock=opens - timedelta(hours=1))
    story.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    story.land("alice", PROD_PLAN, prod_plan(ECOMMERCE))
    story.approve("ravi", PROD_PLAN)
    story.approve("carol", PROD_PLAN)
    story.trigger("olga", PROD_PLAN)
    decision = story.decide(now=opens - timedelta(minutes=30))[PROD_PLAN]
    assert decision.reasons == (f"a deploy window: deploys may start at {opens.isoformat()}",)

    # Without approval_ttl nothing lapses, however far the window is.
    untimed = production_with_windows(window).replace("  approval_ttl: 8h\n", "")
    story = Story(builders.policy(environments={"production": untimed}))
    story.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    story.land("alice", PROD_PLAN, prod_plan(ECOMMERCE))
    decision = story.decide()[PROD_PLAN]
    assert not [text for text in decision.reasons if "approval_ttl" in text]
    assert "approval" in [wait.what for wait in decision.waits]


@pytest.mark.parametrize("given", [False, True])
def test_the_warning_is_a_reason_value_with_both_times_as_facts(given: bool) -> None:
    window, opens = window_only_tomorrow(SUITE_NOW)
    story = Story(builders.policy(environments={"production": production_with_windows(window)}))
    story.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    story.land("alice", PROD_PLAN, prod_plan(ECOMMERCE))
    if given:
        story.approve("ravi", PROD_PLAN)
    why = story.decide()[PROD_PLAN].why
    [lapse] = [item for item in why if item.code == "gate.ttl-before-window"]
    assert lapse.facts["opens"] == opens
    assert lapse.facts["fresh_from"] == opens - TTL
    assert len(lapse.facts["expires"]) == int(given)
    assert lapse.facts["now_lapses"] is True  # still asked: a second approval, a trigger
