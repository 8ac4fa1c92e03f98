"""`plan` and `status` answer from the decisions the state keeps, byte for byte what deciding
afresh says, and only while nothing that decides has changed.

Real repositories and states. The story is told through sessions at chosen moments (the
commands read the real clock and take none from outside), each answer compared with the
same session's decision made afresh; the attacks run the real CLI.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from reconciler.adapters.statestore import StateStore
from reconciler.app import kept, pipeline
from reconciler.app.drift import DriftReport
from reconciler.app.session import Session, open_session
from reconciler.cli.people_output import pipeline_json
from reconciler.cli.plan_output import plan_json
from reconciler.core import decided
from reconciler.core.errors import StateMoved
from reconciler.core.gates import Horizon, closed, lapse
from reconciler.core.model import Freeze, Gates, Window
from tests.clock import SUITE_NOW, window_only_tomorrow
from tests.people import People
from tests.repositories import ConfigRepo, SeedRepo
from tests.scenarios import (
    ECOMMERCE,
    PORTAL,
    PROD_PLAN,
    QA_PLAN,
    prod_plan,
    production_triggered_before_its_window,
    production_with_windows,
    proposed_qa_release,
    qa_plan,
    ran,
)
from tests.test_soak import approve_and_trigger, committed_at, ran_in_development, soaking_qa

TTL = timedelta(hours=8)  # production's approval_ttl
NO_DRIFT = DriftReport((), ())


def answers(repo: ConfigRepo, now: datetime) -> tuple[str, bool]:
    """`plan --format json` and `status --format json` as one session answers them at
    `now` from the state (as the commands do), after checking that deciding afresh in the
    same session says the same, byte for byte; and whether the state's decisions answered."""
    with open_session(
        repo.path, branch=None, state_dir=repo.state_dir, now=now, tracking=True
    ) as session:
        kept = session.observe(reuse=True)
        fresh = session.observe()
        shown = [_shown(session.pipeline_of(seen), seen.decisions) for seen in (kept, fresh)]
    assert not fresh.reused
    assert shown[0] == shown[1]
    return shown[0], kept.reused


def _shown(pipeline: Any, decisions: Any) -> str:
    plans = json.dumps(plan_json(decisions, NO_DRIFT), indent=1)
    return plans + json.dumps(pipeline_json(pipeline), indent=1)


def approved_for_production(tmp_path: Path, people: People) -> tuple[SeedRepo, datetime]:
    """A production plan approved by ravi, then carol, production always open (no window:
    the 8 h approval_ttl alone bounds the decisions); and when ravi's approval lapses."""
    production = production_with_windows("[]")
    repo = SeedRepo.create(tmp_path, people, extra={"environments/production.yaml": production})
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    approval = repo.approve(people.ravi, PROD_PLAN)
    repo.approve(people.carol, PROD_PLAN)
    return repo, datetime.fromisoformat(repo.git("log", "-1", "--format=%cI", approval)) + TTL


def test_plan_and_status_from_the_state_say_what_deciding_afresh_says_as_approvals_expire(
    tmp_path: Path, people: People
) -> None:
    # Production always open (no window): an 8 h approval_ttl alone bounds the decisions.
    # Approved, not triggered: the plan waits, and shows who approved it (what may run is
    # decided again each time anyway; what waits is shown as kept).
    repo, expires = approved_for_production(tmp_path, people)

    first, reused = answers(repo, SUITE_NOW)
    assert not reused  # nothing kept yet: decided, and kept
    assert '"status": "waiting"' in first
    assert "older than approval_ttl" not in first
    assert answers(repo, SUITE_NOW + timedelta(minutes=1)) == (first, True)
    assert answers(repo, expires - timedelta(seconds=1)) == (first, True)

    # ravi's approval expires: decided again, and it no longer counts.
    lapsed, reused = answers(repo, expires + timedelta(seconds=1))
    assert not reused
    assert "older than approval_ttl" in lapsed

    # A new commit: decided again.
    repo.approve(people.ravi, PROD_PLAN)
    again, reused = answers(repo, expires + timedelta(seconds=2))
    assert not reused
    assert again != lapsed

    # A clock set back is no later moment: decided again, never answered from the future.
    assert answers(repo, SUITE_NOW)[1] is False


def test_decisions_made_as_an_approval_reaches_its_ttl_are_decided_again_once_it_lapses(
    tmp_path: Path, people: People
) -> None:
    # Decided at the very moment ravi's approval is exactly approval_ttl old: it still counts
    # then (only an older one lapses), and from the next instant on it no longer does.
    repo, expires = approved_for_production(tmp_path, people)

    at_the_limit, reused = answers(repo, expires)
    assert not reused
    assert "older than approval_ttl" not in at_the_limit

    lapsed, reused = answers(repo, expires + timedelta(seconds=1))
    assert not reused
    assert "older than approval_ttl" in lapsed


def test_plan_and_status_from_the_state_say_what_deciding_afresh_says_as_a_window_opens(
    tmp_path: Path, people: People
) -> None:
    repo, opens = production_triggered_before_its_window(tmp_path, people)

    closed_now, reused = answers(repo, SUITE_NOW)
    assert not reused
    assert f"deploys may start at {opens.isoformat()}" in closed_now
    assert answers(repo, opens - timedelta(seconds=1)) == (closed_now, True)

    opened, reused = answers(repo, opens)
    assert not reused
    assert '"status": "executable"' in opened
    assert answers(repo, opens + timedelta(hours=1)) == (opened, True)


def test_a_run_finishing_is_decided_again(tmp_path: Path, people: People) -> None:
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ready, reused = answers(repo, SUITE_NOW)
    assert '"status": "executable"' in ready
    assert answers(repo, SUITE_NOW)[1] is True

    ran(repo, QA_PLAN, f"{Path(QA_PLAN).stem}.1")
    done, reused = answers(repo, SUITE_NOW)
    assert not reused
    assert '"status": "done"' in done
    assert '"status": "executable"' not in done


def test_a_soaking_promotion_is_decided_again_when_its_soak_ends(
    tmp_path: Path, people: People
) -> None:
    repo = soaking_qa(tmp_path, people)
    record = ran_in_development(repo, "earlier.1", Verified="1 ecommerce 1.4.0")
    approve_and_trigger(repo, people)
    until = committed_at(repo, record) + timedelta(minutes=30)
    soaking, reused = answers(repo, until - timedelta(minutes=10))
    assert not reused
    assert "waits for soak until" in soaking
    assert answers(repo, until - timedelta(seconds=1)) == (soaking, True)
    soaked, reused = answers(repo, until)
    assert not reused
    assert '"status": "executable"' in soaked


def test_a_sign_off_given_now_lapsing_before_the_window_is_kept_until_one_would_not(
    tmp_path: Path, people: People
) -> None:
    # Waiting for approvals outside a window, with a TTL that lapses before it opens: the
    # warning names the moment from which a sign-off would still count, not now + TTL (a
    # moment moving with the clock, which would make the decisions hold for no time).
    window, opens = window_only_tomorrow(SUITE_NOW)
    fresh_from = opens - timedelta(hours=8)
    production = production_with_windows(window)
    repo = SeedRepo.create(tmp_path, people, extra={"environments/production.yaml": production})
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    shown, reused = answers(repo, SUITE_NOW)
    assert not reused
    assert "one given now would expire before then too" in shown
    assert answers(repo, SUITE_NOW + timedelta(seconds=1)) == (shown, True)
    assert answers(repo, fresh_from - timedelta(seconds=1)) == (shown, True)
    later, reused = answers(repo, fresh_from)
    assert not reused
    assert "one given now would expire" not in later


# -- the moment, from the rules ------------------------------------------------------------


def test_the_ttl_warning_holds_until_one_given_now_would_count_across_a_clock_change() -> None:
    # Lisbon's clocks go 01:00 -> 02:00 at 01:00 UTC on Sunday 2026-03-29. A Sunday
    # 09:00-16:00 window opens at 08:00 UTC; with a 12 h approval_ttl, a sign-off given
    # from 20:00 UTC on Saturday still counts then. Reckoned on Lisbon's wall clock,
    # `opens - ttl` is 21:00 UTC: kept decisions would warn an hour too long.
    window = Window(frozenset({6}), time(9, 0), time(16, 0), "Europe/Lisbon")
    gates = Gates(windows=(window,), approval_ttl=timedelta(hours=12))
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    horizon = Horizon(now)
    found = lapse(gates, now, [], asked=True, horizon=horizon)
    assert found is not None
    assert found.now_lapses
    flip = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)
    assert found.fresh_from == flip  # what the warning says: "given from ... on"
    assert lapse(gates, flip - timedelta(seconds=1), [], asked=True) is not None
    assert lapse(gates, flip, [], asked=True) is None  # deciding afresh: no warning
    assert horizon.holds_at(flip - timedelta(seconds=1))
    assert not horizon.holds_at(flip)


def test_a_closed_window_may_open_when_its_zone_moves_its_clocks_not_later() -> None:
    # Europe/Lisbon's clocks jump from 01:00 to 02:00 at 01:00 UTC on 2026-03-29, a
    # Sunday. A window from 01:30 local opens at the jump; 01:30 read on the wall clock
    # of before the jump is half an hour later, past the change.
    window = Window(frozenset({6}), time(1, 30), time(4, 0), "Europe/Lisbon")
    gates = Gates(windows=(window,))
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    before = jump - timedelta(minutes=30)
    horizon = Horizon(before)
    assert closed(gates, before, horizon) is not None
    assert horizon.until == jump
    assert closed(gates, jump) is None  # open from the jump on


def test_a_freeze_ending_bounds_the_decisions() -> None:
    start, end = SUITE_NOW - timedelta(days=1), SUITE_NOW + timedelta(hours=5)
    gates = Gates(freezes=(Freeze("maintenance", start, end),))
    horizon = Horizon(SUITE_NOW)
    assert closed(gates, SUITE_NOW, horizon) is not None
    assert horizon.until == end
    assert horizon.holds_at(end - timedelta(seconds=1))
    assert not horizon.holds_at(end)


def test_two_horizons_joined_hold_until_the_sooner_of_their_moments() -> None:
    # A round decides a few plans again over the last round's decisions: together they
    # hold until the first moment either could change.
    older = Horizon(SUITE_NOW)
    older.at(SUITE_NOW + timedelta(hours=8))
    newer = Horizon(SUITE_NOW + timedelta(minutes=1))
    newer.at(SUITE_NOW + timedelta(hours=2))
    joined = older.joined(newer)
    assert joined.holds_at(SUITE_NOW + timedelta(hours=1))
    assert not joined.holds_at(SUITE_NOW + timedelta(hours=2))
    assert joined.now == SUITE_NOW


def test_a_horizon_joined_with_one_that_holds_for_no_time_holds_for_no_time() -> None:
    newer = Horizon(SUITE_NOW)
    newer.unbounded()
    assert not Horizon(SUITE_NOW).joined(newer).holds_at(SUITE_NOW)


# -- attacks: the kept decisions never make a plan look executable or approved ------------


@contextlib.contextmanager
def forged_parse(repo: SeedRepo, path: str) -> Iterator[dict[str, Any]]:
    """The parse of `path` (as on main) the state keeps, to edit by hand in the block:
    written back into the state when it ends, as someone with the state file would."""
    database = repo.state_dir / "main.sqlite3"
    with sqlite3.connect(database) as db:
        [(text,)] = db.execute(
            "SELECT detail FROM decided WHERE key = 'parsed environments'"
        ).fetchall()
    kept_parse = json.loads(text)
    yield kept_parse["documents"][repo.git("rev-parse", f"HEAD:{path}").strip()]
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE decided SET detail = ? WHERE key = 'parsed environments'",
            (json.dumps(kept_parse),),
        )


def test_an_environment_parse_forged_in_the_state_never_reaches_a_command_that_acts(
    tmp_path: Path, people: People
) -> None:
    # olga triggered the QA release and nobody approved it: it waits for a tech lead.
    # Someone with the state file rewrites the kept parse of quality-assurance.yaml to
    # ask for no approval. `apply` parses the files it decides from itself: nothing runs.
    repo = proposed_qa_release(tmp_path, people)
    repo.trigger(people.olga, QA_PLAN)
    for _ in range(2):  # the first walks (and keeps nothing in its walk), the second keeps
        shown = repo.reconciler("plan", "--format", "json")
        assert shown.exit_code == 0, shown.stderr
        assert _status(shown.json(), QA_PLAN) == "waiting"

    with forged_parse(repo, "environments/quality-assurance.yaml") as document:
        assert document["gates"]["approvals"] == [{"role": "tech-lead", "count": 1}]
        document["gates"]["approvals"] = []
    dry_run = repo.reconciler("apply", "--dry-run", "--format", "json")
    assert dry_run.exit_code == 0, dry_run.stderr
    assert QA_PLAN not in dry_run.stdout


def test_a_reading_command_that_walks_judges_from_the_files_not_the_kept_parse(
    tmp_path: Path, people: People
) -> None:
    # alice (ecommerce tech-lead) may edit QA plans: quality-assurance.yaml gives plan.edit
    # to tech-lead and developer. Someone with the state file rewrites the kept parse to
    # give it to deployment alone; then alice edits the plan, and `plan` (which only reads)
    # walks her landing. The verdict it keeps, which `verify` and `apply` go on from, is
    # the one the files make: authorised.
    repo = proposed_qa_release(tmp_path, people)
    for _ in range(2):  # the second keeps the parse
        assert repo.reconciler("plan", "--format", "json").exit_code == 0
    with forged_parse(repo, "environments/quality-assurance.yaml") as document:
        document["permissions"]["plan.edit"] = ["deployment"]
    edited = (repo.path / QA_PLAN).read_text().replace("version: 1.4.0", "version: 1.4.1", 1)
    repo.commit(people.alice, {QA_PLAN: edited})

    assert repo.reconciler("plan", "--format", "json").exit_code == 0  # walks alice's landing
    with sqlite3.connect(repo.state_dir / "main.sqlite3") as db:
        db.execute("DELETE FROM decided")  # whatever was kept beside the rows
    kept_verdicts = repo.reconciler("verify")
    assert kept_verdicts.exit_code == 0, kept_verdicts.stdout + kept_verdicts.stderr
    assert "REFUSED" not in kept_verdicts.stdout


def test_plan_with_nothing_new_reads_the_rows_of_the_plans_it_decides_again_alone(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The QA release may run: `plan` decides it again from its own rows, and reads
    # neither every plan's rows nor every path the state holds.
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    for _ in range(2):  # the first walks, the second keeps the decisions
        warm = repo.reconciler("plan", "--format", "json")
        assert warm.exit_code == 0, warm.stderr
    assert _status(warm.json(), QA_PLAN) == "executable"
    read_whole: list[str] = []
    whole = StateStore.effective

    def counted(store: StateStore) -> dict[str, dict[str, str]]:
        read_whole.append(str(store.path))
        return whole(store)

    monkeypatch.setattr(StateStore, "effective", counted)
    again = repo.reconciler("plan", "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == warm.stdout
    assert read_whole == []


def test_a_walk_with_nothing_new_never_decides_from_rows_another_process_walked_on(
    tmp_path: Path, people: People
) -> None:
    # Nothing new: the walker reads the state when asked. Another process (the service,
    # a page, someone's `plan`) walks diana's new notes in between: the old blob with the
    # new notes must never be one decision.
    repo = proposed_qa_release(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    with open_session(
        repo.path, branch=None, state_dir=repo.state_dir, now=SUITE_NOW, tracking=True
    ) as session:
        verified, _policy = session.authorise()
        walker = session.walked
        assert walker is not None
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="December")})
        assert repo.reconciler("verify").exit_code == 0
        with pytest.raises(StateMoved, match="walked the state"):
            pipeline.observe(walker, verified, SUITE_NOW, drivers=None)


def test_a_command_whose_reads_another_process_walked_past_walks_again_and_decides_there(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    walk = Session.authorise
    raced: list[str] = []

    def then_another_process_walks(session: Session, *args: Any, **kwargs: Any) -> Any:
        walked = walk(session, *args, **kwargs)
        if not raced:
            raced.append(
                repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="Dec")})
            )
            assert repo.reconciler("verify", process=True).exit_code == 0
        return walked

    monkeypatch.setattr(Session, "authorise", then_another_process_walks)
    with open_session(
        repo.path, branch=None, state_dir=repo.state_dir, now=SUITE_NOW, tracking=True
    ) as session:
        seen = session.observe(reuse=True)
    [item] = [plan for plan in seen.history.plans if plan.path == QA_PLAN]
    assert seen.verified.tip == raced[0]
    assert item.blob == repo.blob(QA_PLAN)
    assert item.data is not None
    assert item.data["notes"] == "Dec"


def test_decisions_edited_by_hand_in_the_state_cannot_make_a_plan_executable(
    tmp_path: Path, people: People
) -> None:
    # ravi approved; nobody triggered: the QA release waits. Someone with the state file
    # rewrites the kept decision to "executable, triggered by olga", in the format's own
    # shape (and then as garbage): `plan` must say what the history says.
    repo = proposed_qa_release(tmp_path, people)
    repo.approve(people.ravi, QA_PLAN)
    before = repo.reconciler("plan", "--format", "json")
    assert before.exit_code == 0, before.stderr
    assert _status(before.json(), QA_PLAN) == "waiting"

    database = repo.state_dir / "main.sqlite3"
    with sqlite3.connect(database) as db:
        [(text,)] = db.execute("SELECT detail FROM decided WHERE key = 'decisions'").fetchall()
    kept = decided.decode(text)
    forged = tuple(
        replace(item, status="executable", waits=(), why=(), triggered_by="olga")
        if item.path == QA_PLAN
        else item
        for item in kept.decisions
    )
    for edit in (decided.encode(replace(kept, decisions=forged)), "{", '{"format": 1}'):
        with sqlite3.connect(database) as db:
            db.execute("UPDATE decided SET detail = ? WHERE key = 'decisions'", (edit,))
        after = repo.reconciler("plan", "--format", "json")
        assert after.exit_code == 0, after.stderr
        assert "Traceback" not in after.stderr
        assert after.stdout == before.stdout


def test_a_refused_approval_after_the_decisions_were_kept_does_not_approve(
    tmp_path: Path, people: People
) -> None:
    # bob holds no approving role in QA: his Approve-Plan lands (an empty commit anyone
    # may push) and counts for nothing; the decisions kept before it must not stand in
    # for the decision on the new tip, nor show him as an approver.
    repo = proposed_qa_release(tmp_path, people)
    assert repo.reconciler("plan", "--format", "json").exit_code == 0
    repo.approve(people.bob, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    after = repo.reconciler("plan", "--format", "json")
    assert after.exit_code == 0, after.stderr
    assert _status(after.json(), QA_PLAN) == "waiting"
    assert after.stdout == _afresh(repo, people, tmp_path)


def test_a_key_revoked_after_the_decisions_were_kept_takes_its_approval_away(
    tmp_path: Path, people: People
) -> None:
    # Production takes signed sign-offs only. ravi's approval counted when `plan` kept
    # its decisions; then his key goes into git's revocation file: no commit, the same
    # tip and state. The approval must stop counting at once. Production always open: a
    # closed window more than approval_ttl away (a Sunday evening) would make the decisions
    # unkeepable ("one given now would expire before it opens"), whatever the revocation.
    repo = proposed_qa_release(
        tmp_path, people, extra={"environments/production.yaml": production_with_windows("[]")}
    )
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    repo.approve(people.ravi, PROD_PLAN)
    before = repo.reconciler("plan", "--format", "json")
    assert _plan(before.json(), PROD_PLAN)["approvers"] == ["ravi"]
    repo.revoke(people.ravi.public_key + "\n")
    after = repo.reconciler("plan", "--format", "json")
    assert after.exit_code == 0, after.stderr
    assert _plan(after.json(), PROD_PLAN)["approvers"] == []
    # What it kept now is what deciding afresh on this state says. (A state walked from
    # nothing says it otherwise: it judges the approval's landing with the key revoked.)
    shown, reused = answers(repo, datetime.now(UTC))
    assert reused
    assert '"approvers": []' in shown


def test_a_re_anchor_on_the_anchor_and_tip_the_decisions_were_kept_at_shows_the_run_done(
    tmp_path: Path, people: People
) -> None:
    # `plan` keeps the QA plan waiting for its sign-offs; they land and its run is recorded;
    # a force-push back to that tip drops them all, and the state is re-anchored on its own
    # root: position as it was, rows not (the re-anchor keeps the run the service ran).
    repo = proposed_qa_release(tmp_path, people)
    root = repo.git("rev-list", "--max-parents=0", "HEAD").strip()
    proposed = repo.head()
    before = repo.reconciler("plan", "--format", "json")
    assert _status(before.json(), QA_PLAN) == "waiting", before.stdout
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    ran(repo, QA_PLAN, f"{Path(QA_PLAN).stem}.1")
    assert repo.reconciler("verify").exit_code == 0
    repo.git("reset", "-q", "--hard", proposed)
    # Walked again from the root, the story's own refused deployments entry is reported.
    re_anchored = repo.reconciler("verify", "--re-anchor", root)
    assert f"verified up to {proposed[:12]}" in re_anchored.stdout, re_anchored.stderr
    after = repo.reconciler("plan", "--format", "json")
    assert after.exit_code == 0, after.stderr
    assert _status(after.json(), QA_PLAN) == "done"


def _afresh(repo: ConfigRepo, people: People, tmp_path: Path) -> str:
    """`plan --format json` from a state of its own, walked from nothing."""
    fresh = ConfigRepo(repo.path, people, tmp_path / "fresh-state")
    result = fresh.reconciler("plan", "--format", "json")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _plan(found: Any, path: str) -> dict[str, Any]:
    [decision] = [item for item in found["plans"] if item["plan"] == path]
    assert isinstance(decision, dict)
    return decision


def _status(found: Any, path: str) -> str:
    return str(_plan(found, path)["status"])


def test_decisions_kept_by_other_rules_do_not_answer_for_these(
    tmp_path: Path, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The version number stays 0.1.0 while the rules change: an upgraded reconciler on an
    # old state directory must decide afresh, not show what the old rules decided.
    repo = proposed_qa_release(tmp_path, people)
    assert not answers(repo, SUITE_NOW)[1]  # decided, and kept
    assert answers(repo, SUITE_NOW)[1]  # the same code: the state answers
    monkeypatch.setattr(kept, "rules_digest", lambda: "other rules")
    assert not answers(repo, SUITE_NOW)[1]
