"""App: verify, then decide, the one pipeline behind `plan`, `status`, `verify-mergeable` and the
service's passes (`apply`, `watch`).

A walk brings the effective state to a tip (`authorise`); `decide` reads its inputs from
that walk (`gather`) and decides every plan on the tip; plans into an environment
whose driver cannot load here wait for it (`runs.hold`). The read-only
commands (`session.Session.observe`) and the service (`reconcile.Reconciler`) both call
`verify_then_decide` (or `observe`, after a walk of their own), and get the same frozen
value back, so the two can never decide differently on the same history.

`plan` and `status` answer from the decisions the state keeps (`decided`) while nothing
that decides has changed: the same tip, the same state, the same revocations, and a clock
before the moment the rules said their answers hold until.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from msgspec import Struct

from reconciler.adapters.drivers import unavailable
from reconciler.app.kept import DECISIONS, parsed_documents, state_key
from reconciler.core import decided
from reconciler.core.decide import (
    Decision,
    decide,
    deployed_runs,
    effective_plan,
    not_authorised,
    soak_sources,
    verified_since,
)
from reconciler.core.decide_values import History, Landed, OnMain, Run, locks_from, runs_from
from reconciler.core.documents import yaml_data
from reconciler.core.errors import ConfigError
from reconciler.core.events import Lock, PlanRef
from reconciler.core.fields import CONTENT, INVALID, value
from reconciler.core.gates import Horizon
from reconciler.core.layout import deployment_path, place
from reconciler.core.runs import driver_targets, hold

if TYPE_CHECKING:
    from reconciler.app.authorise import Authoriser
    from reconciler.app.verified import VerifyResult


class DriverCheck(Struct, frozen=True):
    """Whether an executable plan waits for its environment's driver, and how that is asked.

    `root`: load each driver with it as the default root (the service, which is about
    to run them); None: only look each driver's type up (`plan` starts nothing).
    """

    root: Path | None = None


class Observation(Struct, frozen=True):
    """One pass of the pipeline: the walk's result, the decision's inputs, every plan decided."""

    verified: VerifyResult
    history: History
    decisions: tuple[Decision, ...]
    # Environments whose next plan waits because their driver cannot load here, and why.
    held: Mapping[str, ConfigError]
    # Whether `decisions` came from the state (`decided_from_state`): `history` then holds
    # the inputs of the plans decided again alone (the policy, deployments/, the locks and
    # the open runs whole, as ever).
    reused: bool = False


def observe(
    walker: Authoriser,
    verified: VerifyResult,
    now: datetime,
    *,
    drivers: DriverCheck | None,
    only: Mapping[str, str] | None = None,
    reuse: bool = False,
    horizon: Horizon | None = None,
) -> Observation:
    """Decide every plan on the tip `walker` has just walked to (`verified`), as of `now`;
    with `only` (path -> blob, as on the tip), those plans alone (`gather`).

    `drivers` None: the drivers are not asked (a merge judged before it lands, whose
    plans run on the service's machine, not this one). `reuse`: the walk was kept on the
    branch, and the decisions the state keeps may answer (`decided_from_state`), which
    are kept again when decided anew. `horizon` learns until when the decisions hold
    with the clock alone (not with `reuse`, whose kept decisions know their own).
    """
    reused = False
    if reuse and only is None:
        history, decisions, reused = decided_from_state(walker, verified.tip, now)
    else:
        history = gather(walker, verified.tip, only)
        decisions = decide(history, now, horizon)
    held: Mapping[str, ConfigError] = {}
    if drivers is not None:
        decisions, held = hold(decisions, driver_problems(walker, history, decisions, drivers))
    return Observation(verified, history, decisions, dict(held), reused)


def decided_from_state(
    walker: Authoriser, tip: str, now: datetime
) -> tuple[History, tuple[Decision, ...], bool]:
    """Every plan on `tip` decided as of `now`: the decisions the state keeps when they
    were made from the same inputs (`decided_key`) and still hold at `now` (their
    `Horizon`), else decided anew and kept. Whether they came from the state, last.

    What the kept decisions say may run is decided again now and must come out the same,
    else everything is: a state edited by hand cannot make a plan look executable that is
    not. That is the few plans ready to run, not every plan on main."""
    key = decided_key(walker, tip)
    kept = _kept(walker, key, now)
    if kept is not None:
        ready = {item.path: item.blob for item in kept if item.status == "executable"}
        history = gather(walker, tip, ready)
        again = decide(history, now)
        if set(again) == {item for item in kept if item.status == "executable"}:
            return history, kept, True
    history = gather(walker, tip)
    horizon = Horizon(now)
    decisions = decide(history, now, horizon)
    if not horizon.continuous:
        try:
            text = decided.encode(decided.Decided(key, now, horizon.until, decisions))
        except ValueError:
            return history, decisions, False  # a fact the format cannot hold: not kept
        walker.store.keep_answer(DECISIONS, text)
    return history, decisions, False


def decided_key(walker: Authoriser, tip: str) -> str:
    """What decides besides the clock, as one digest: the state and this code
    (`kept.state_key`), the tip (the plans on it) and the keys revoked here."""
    revoked = sorted(walker.revoked.fingerprints) if walker.revoked else []
    return state_key(walker.store, tip, revoked)


def _kept(walker: Authoriser, key: str, now: datetime) -> tuple[Decision, ...] | None:
    """The decisions the state keeps for `key`, if they hold at `now`; a text that does
    not decode (edited by hand, another version's) is none."""
    text = walker.store.kept_answer(DECISIONS)
    if text is None:
        return None
    try:
        kept = decided.decode(text)
    except ValueError:
        return None
    return kept.decisions if kept.holds(key, now) else None


def driver_problems(
    walker: Authoriser, history: History, decisions: tuple[Decision, ...], check: DriverCheck
) -> Mapping[str, ConfigError]:
    """Why the drivers of the executable plans' environments cannot load here, if so,
    read from the walk's effective state (so before a dry run discards it)."""
    environments = [history.policy.environments[name] for name in driver_targets(decisions)]
    return unavailable(environments, walker.effective_file, check.root)


def verify_then_decide(
    walker: Authoriser,
    tip: str,
    now: datetime,
    *,
    drivers: DriverCheck | None,
) -> Observation:
    """Walk to `tip`, then decide (`observe`), in the store's open transaction, whose
    owner keeps or discards what the walk wrote (`Authoriser.run`)."""
    return observe(walker, walker.run(tip), now, drivers=drivers)


def plans_on(authoriser: Authoriser, tip: str, paths: Collection[str]) -> dict[str, str]:
    """The plans at `paths` that `tip` holds (path -> blob), listed as `gather` lists every
    plan: its `only` for a decision of those plans alone."""
    listed = authoriser.repo.folder(tip, "plans")
    return {path: blob for path, (_mode, blob) in listed.items() if path in paths}


def gather(authoriser: Authoriser, tip: str, only: Mapping[str, str] | None = None) -> History:
    """Read the decision's inputs from the walk's state and main's tip: of every plan on the
    tip, or of the plans `only` names (path -> blob, as on the tip), which the service
    re-decides after its own records (`runs.touched_by`). The rest of the history (the
    policy, deployments/, the runs still open) is read whole either way."""
    store, repo = authoriser.store, authoriser.repo
    dirty = authoriser.dirty
    plans: list[OnMain] = []
    listed = (
        {path: blob for path, (_mode, blob) in repo.folder(tip, "plans").items()}
        if only is None
        else only
    )
    # Every plan's rows, or those of the plans named alone (with nothing new to walk, the
    # state is not read whole: 1,000 plans' rows for the few `plan` decides again).
    effective = authoriser.effective if only is None else authoriser.effective_at(list(listed))
    for path, blob in sorted(listed.items()):
        if place(path).kind != "plan":
            continue
        fields = effective.get(path, {})
        problems: tuple[str, ...] = ()
        if path in dirty:
            problems = not_authorised(dirty[path])
        elif INVALID in fields:
            problems = (f"invalid: {value(fields, INVALID)}",)
        plans.append(OnMain(path, blob, None if problems else effective_plan(fields), problems))
    # Only what the plans on main need: each is decided on its own version's
    # landing, sign-offs and runs, so older versions' commits are never read.
    current = {PlanRef(item.path, item.blob) for item in plans}
    landings: dict[PlanRef, Landed] = {}
    wanted = {(ref.path, ref.blob) for ref in current}
    for version in store.plan_versions(only=wanted):
        landings[version.ref] = Landed(
            seq=version.seq,
            commit=version.landing,
            actor=version.actor,
            how=version.how,
            triggered=version.triggered,
            reasons=version.reasons,
            style=version.style,
            squashed_by=version.squashed_by,
        )
    # The runs of these plans (every version: run ids are numbered per plan), the
    # runs still open (whatever their plan: they hold their environment), and the
    # refusals of these versions; read by index, so a pass costs what is on main,
    # not what the history holds.
    records = store.run_records({ref.path for ref in current}, map(str, current))
    runs = runs_from(records)
    current_runs = {run.id for run in runs if run.plan in current}
    signoffs = tuple(store.signoff_events(map(str, current), current_runs))
    commits = {item.commit for item in signoffs} | {item.commit for item in landings.values()}
    authoriser.prefetch(sorted(commits))
    # Versions a sign-off of their own predates: back on main since (a revert, an un-cancel).
    # Rare, so only these are read again, to tell an un-cancel from a revert.
    of_run = {run.id: run.plan for run in runs}
    signed = ((item.plan or of_run.get(item.run or ""), item.seq) for item in signoffs)
    back = {ref for ref, seq in signed if ref in landings and seq < landings[ref].seq}
    # Only deployments/ (a range of the store, or a prefix test, not a `place` per path):
    # the effective state holds every plan and run log too, and the service gathers once
    # per run.
    files = {
        path: value(fields, CONTENT)
        for path, fields in authoriser.effective_under("", "deployments/").items()
        if CONTENT in fields and place(path).kind == "deployment"
    }
    deployed = deployed_runs(parsed_documents(authoriser.parses, repo, files, "deployments"))
    # The records a soak gate counts from: only those of the runs that deployed what runs
    # in a soak gate's source environment.
    policy = authoriser.policy()
    soaking = {name: deployed.get(name, {}) for name in soak_sources(policy)}
    soaked_runs = {run for running in soaking.values() for _version, run in running.values()}
    return History(
        policy=policy,
        plans=tuple(plans),
        landings=landings,
        signoffs=signoffs,
        runs=runs,
        editors=store.editors_of([item.path for item in plans]),
        first_seen=store.first_seen(commits),
        commit_times={commit: authoriser.info(commit).committer.when for commit in commits},
        facts={commit: authoriser.facts(commit) for commit in commits},
        deployed={
            environment: {app: version for app, (version, _run) in running.items()}
            for environment, running in deployed.items()
        },
        refused=frozenset(ref for record in records for ref in record.refused),
        revoked=authoriser.revoked.fingerprints if authoriser.revoked else frozenset(),
        uncancelled=frozenset(ref for ref in back if _uncancels(authoriser, ref, landings[ref])),
        ran=_ran_where_rollbacks_go(authoriser, plans, runs),
        verified_since=verified_since(soaking, store.records_of(soaked_runs)),
        locks=locks_from(store.events(Lock)),
    )


class Ran(Struct, frozen=True):
    """An application version a run deployed, as its finish record's deployments file says."""

    run: str
    application: str
    version: str
    commit: str  # the finish record


def versions_ran(authoriser: Authoriser, environment: str) -> tuple[Ran, ...]:
    """What ran in `environment`, in the order it was deployed: each succeeded or failed
    finish record's own entries of the deployments file it wrote (those naming its run).

    The record's tree is the reconciler's, checked when it was judged, so the versions
    in it are what the records show, not what a plan asked for."""
    repo, path = authoriser.repo, deployment_path(environment)
    ran: list[Ran] = []
    for record in authoriser.store.finished_in(environment):
        blob = repo.blob_at(record.commit, path)
        if blob is None or record.run is None:
            continue
        try:
            data = yaml_data(repo.read_blob(blob), path)
        except ConfigError:
            continue
        entries = data.get("applications") if isinstance(data, dict) else None
        for application, entry in (entries if isinstance(entries, dict) else {}).items():
            if isinstance(entry, dict) and entry.get("run") == record.run:
                ran.append(Ran(record.run, application, str(entry.get("version")), record.commit))
    return tuple(ran)


def _ran_where_rollbacks_go(
    authoriser: Authoriser, plans: Sequence[OnMain], runs: Sequence[Run]
) -> Mapping[str, Mapping[str, frozenset[str]]]:
    """`versions_ran` of the environments that rollback plans on main, not yet run, go to."""
    finished = {run.plan for run in runs if run.result != "interrupted"}
    targets = {
        str(item.data.get("target"))
        for item in plans
        if item.data is not None
        and item.data.get("rollback") is True
        and PlanRef(item.path, item.blob) not in finished
    }
    ran: dict[str, dict[str, set[str]]] = {}
    for environment in sorted(targets):
        versions = ran.setdefault(environment, {})
        for item in versions_ran(authoriser, environment):
            versions.setdefault(item.application, set()).add(item.version)
    return {
        environment: {app: frozenset(found) for app, found in versions.items()}
        for environment, versions in ran.items()
    }


def _uncancels(authoriser: Authoriser, ref: PlanRef, landed: Landed) -> bool:
    """Whether the landing of `ref` un-cancelled the plan: main held it cancelled before."""
    parents = authoriser.info(landed.commit).parents
    blob = authoriser.repo.blob_at(parents[0], ref.path) if parents else None
    if blob is None:
        return False
    try:
        data = yaml_data(authoriser.repo.read_blob(blob), ref.path)
    except ConfigError:
        return False
    return isinstance(data, dict) and data.get("state") == "cancelled"
