"""App: one reconcile pass, fetch, verify, decide, execute, record, publish (`reconciler apply`).

Called by `reconciler apply` (one pass) and by the watcher (`watch`, a pass
per change). A pass has two halves, so that the watcher can hand runs to
long-lived per-environment workers while `apply` keeps its one-shot loop:

*decide and start* (`plan_pass`):

1. publish finish records left in the outbox by an earlier pass (one the
   branch already holds, from a pass that died before clearing it, just
   leaves the outbox);
2. fetch (with a remote) and verify the new landings;
3. decide; mark runs that were started and never finished `interrupted`
   (by their own instance once it is not running them any more, or by anyone
   once their lease has passed) and record new refusals, in one publish
   (after a round whose start records are all that landed since, with its own
   finish records, only what those records change is decided again: `RoundDecisions`);
4. per environment without a run in progress (of its shard, with
   `--environments`), publish a start record for the first executable plan:
   the publish is the lock, so two reconcilers never start the same run; a
   lost race means fetch, re-verify, re-decide;

What to start (run id, lease), to mark interrupted, to record refused and to hold
for a driver is `runs.decide_runs`'s to say, as one `RunDecisions` value; this
module carries it out: it publishes, runs and records.

*run and finish* (`run_started`, one call per started run):

5. run the drivers, each step only while the run holds its lease (extended by
   a heartbeat record when it would not cover the step with its margin:
   `runs.may_step`), and publish the finish record (`finishing`: rebuilt on the
   new tip when a human pushed meanwhile; a late record once main records the
   run interrupted).

`pass_once` (apply) runs the started runs at once, a thread per environment,
and repeats from 2 until nothing more may run; `watch_pass` (the watcher)
returns them to its workers instead. Git and the state store are used under
one re-entrant lock, so a pass and the workers' finish records never
interleave.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from msgspec import Struct
from msgspec.structs import replace

from reconciler.adapters import revocation_file
from reconciler.adapters.drivers import Driver, Outcome, Step, load_driver
from reconciler.adapters.gitops import Committer
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.signing import SigningKey, signed_commit
from reconciler.adapters.statestore import ServiceLock, StateStore, Transaction
from reconciler.app import checkpoints
from reconciler.app.authorise import Authoriser, Progress
from reconciler.app.checkpoint_trust import CheckpointTrust, pinned_keys
from reconciler.app.drift import DriftReport, drift_in, find_drift, stops_run
from reconciler.app.execute import Execution, execute, finished_steps, steps_for
from reconciler.app.finishing import PUBLISH_BUDGET, PUBLISH_JITTER, FinishRecords, deployments_in
from reconciler.app.inert import inert
from reconciler.app.passes import (
    Clock,
    Options,
    PassReport,
    RoundDecisions,
    RunReport,
    StartedRun,
    default_instance,
)
from reconciler.app.pipeline import DriverCheck, driver_problems, observe
from reconciler.app.record import (
    Publisher,
    RecordWriter,
    check_instance_name,
    deployments_file,
    heartbeat_message,
    interrupted_message,
    refusal_message,
    start_message,
)
from reconciler.app.session import followed_branch, state_directory
from reconciler.app.verified import VerifyResult
from reconciler.core.decide import Decision, executable, next_up, ordered
from reconciler.core.decide_values import History
from reconciler.core.errors import (
    ConfigError,
    HistoryRewrittenError,
    ReconcilerError,
    TemporaryError,
    UsageError,
)
from reconciler.core.events import PlanRef
from reconciler.core.gates import Horizon
from reconciler.core.journal import OutboxEntry
from reconciler.core.model import Environment, Plan, Policy
from reconciler.core.revocation import Revocations
from reconciler.core.runs import (
    EXTEND,
    RECENT_RECORDS,
    STEP,
    RunDecisions,
    RunFacts,
    Start,
    contested,
    decide_runs,
    dependents,
    in_shard,
    lease_for,
    may_ride,
    may_step,
    step_budget,
    touched_by,
    unknown_environments,
)

# How long start records decided on one tip may be rebuilt on newer tips that change nothing
# a decision reads (`inert`) before the round decides again: the clock moves gates too.
REDECIDE_AFTER = 2.0
# How long decisions a round did not make again may serve later rounds of a pass (`RoundDecisions`)
# before one decides every plan again: the clock moves gates in every environment, but
# deciding 2,000 plans takes a run's time, so not every round.
DECIDE_ALL_AFTER = 30.0


class Reconciler:
    """A configuration repository, the reconciler's state, key and drivers, for many passes."""

    def __init__(
        self,
        repo_dir: Path,
        options: Options,
        *,
        clock: Clock,
        sleep: Callable[[float], None],
        stop_requested: Callable[[], bool] = lambda: False,
        progress: Progress | None = None,
        on_step: Callable[[int, int, Step], None] | None = None,
        on_driver_step: Callable[[str, float], None] | None = None,
    ) -> None:
        self.options = options
        self.on_step = on_step
        self.on_driver_step = on_driver_step  # driver type, seconds an attempt took
        self.clock = clock
        self.sleep = sleep
        self.stop_requested = stop_requested
        self.progress = progress
        if options.instance is not None:
            check_instance_name(options.instance)
        self.repo = GitRepo(repo_dir)
        try:
            if options.remote is not None:
                # The remote's branch: it need not exist here before the first fetch.
                self.branch = options.branch or "main"
            else:
                self.branch = followed_branch(self.repo, options.branch)
            followed = f"{options.remote}/{self.branch}" if options.remote else self.branch
            self.state_dir = state_directory(self.repo, options.state_dir)
            self.store = StateStore(self.state_dir, followed)
        except BaseException:
            self.repo.close()
            raise
        self._service_lock: ServiceLock | None = None
        try:  # a failure lets go of what was taken: the state's lock above all
            self.publisher = Publisher(self.repo, self.branch, options.remote)
            self.instance = options.instance or default_instance(self.state_dir)
            self.key = SigningKey.load(options.key) if options.key else None
            if not options.dry_run:
                self._ready_to_record(options)
            self._walker = Authoriser(
                self.repo,
                self.store,
                now=clock(),
                progress=progress,
                revoked=revocation_file.configured(self.repo),
                checkpoints=CheckpointTrust(self.branch, pinned_keys(options.checkpoint_keys)),
            )
        except BaseException:
            self.close()
            raise
        self.in_flight: set[str] = set()
        # The last round's decisions, while its start records are main's tip (`RoundDecisions`).
        self._decided: RoundDecisions | None = None
        self._round: RoundDecisions | None = None  # the round's, until its start records are out
        # What each environment's driver said runs there, this pass (`_Looked`): app -> version.
        self._looks: dict[str, dict[str, str | None]] = {}
        # What the last pass read (policy, deployments/), for drift between passes.
        self.observed: History | None = None
        self._last_published = ""
        self._refusals_recorded: set[PlanRef] = set()
        # Re-entrant: the watcher holds it over a whole pass, whose steps take it again.
        self._git_lock = threading.RLock()
        self._finishing = FinishRecords(
            self.repo,
            self.store,
            self.publisher,
            self._walker,
            clock=clock,
            sleep=sleep,
            git_lock=self._git_lock,
            writer=self._writer,
        )

    def _ready_to_record(self, options: Options) -> None:
        """What a service that records runs needs, checked before any run starts."""
        if self.key is None:
            made_by_init = self.repo.git_dir / "reconciler" / "service-key"
            where = (
                f": `reconciler init` left it in {made_by_init}" if made_by_init.is_file() else ""
            )
            raise UsageError(
                "the reconciler needs its service account's private key to sign records",
                hint=f"pass --key FILE (or set RECONCILER_KEY){where}; "
                "`apply --dry-run` needs none",
            )
        self._service_lock = ServiceLock(self.store.path)
        if options.driver_root is not None:
            # Found out only at the first step, an unusable root would fail a run,
            # and a failed run is never retried.
            try:
                options.driver_root.mkdir(parents=True, exist_ok=True)
                problem = None if os.access(options.driver_root, os.W_OK) else "it is not writable"
            except OSError as error:
                problem = error.strerror
            if problem is not None:
                raise ConfigError(
                    f"cannot use the driver root {options.driver_root}: {problem}",
                    hint="pass --driver-root (or RECONCILER_DRIVER_ROOT) with a folder the "
                    "reconciler can write",
                )

    def close(self) -> None:
        if self._service_lock is not None:
            self._service_lock.release()
            self._service_lock = None
        self.store.close()
        self.repo.close()

    def recycle(self) -> None:
        """Let Git's persistent helper processes start afresh on their next use.

        A terminal's Ctrl-C reaches the whole process group, Git's helpers
        included; the watcher calls this when it stops, before its workers
        publish their finish records.
        """
        with self._git_lock:
            self.repo.close()

    def flush_outbox(self) -> int:
        """Publish the finish records a failed publish left in the outbox; how many it published.

        Those the branch already holds (published by a process that died before
        it cleared them) leave the outbox unpublished, and are not counted.
        """
        with self._git_lock:
            return self._finishing.flush_outbox()

    def __enter__(self) -> Reconciler:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the pass ---------------------------------------------------------------

    def pass_once(self) -> PassReport:
        """Decide, start, run and finish until nothing more may run (`reconciler apply`)."""
        report = PassReport(dry_run=self.options.dry_run, shard=self.shard)
        self.publisher.ours = False  # every pass starts from what the branch holds now
        self.publisher.maintain()
        self._looks = {}  # a pass looks at each driver afresh
        if not self.options.dry_run:
            self._finishing.flush_outbox()
        # As many rounds as the backlog needs: the pass ends when a round starts nothing,
        # or nothing new (a plan version it ran already: no progress, a racing loop).
        ran: set[PlanRef] = set()
        while started := self.plan_pass(report):
            again = all(run.plan in ran for run in started)
            ran.update(run.plan for run in started)
            self._run_all(started, report)
            if again:
                self._finishing.flush_outbox()
                raise TemporaryError(
                    "the pass did not settle: a round started only plan versions it ran already",
                    hint="check for a reconciler racing in a loop",
                )
        self._publish_checkpoint(report)
        return report

    def watch_pass(self) -> tuple[PassReport, list[StartedRun]]:
        """The watcher's pass: decide and publish start records; the runs go to its workers.

        Holds the Git lock throughout, so a worker's finish record waits for it.
        """
        report = PassReport(dry_run=self.options.dry_run, shard=self.shard)
        with self._git_lock:
            self.publisher.ours = False  # every pass starts from what the branch holds now
            self.publisher.maintain()
            self._looks = {}  # a pass looks at each driver afresh
            if not self.options.dry_run:
                self._finishing.flush_outbox()
            started = self.plan_pass(report)
            self._publish_checkpoint(report)
        return report, started

    def _publish_checkpoint(self, report: PassReport) -> None:
        """After a pass that judged new landings, publish a checkpoint of what the state
        holds now: at most one a pass, and never the pass's failure (a lost race, a
        remote that will not take it: the next pass publishes)."""
        if self.options.dry_run or self.key is None or not report.landings:
            return
        with self._git_lock, contextlib.suppress(ReconcilerError, OSError):
            made = checkpoints.publish(
                self.repo, self.store, self.key, self.branch, self.options.remote, self.clock()
            )
            report.checkpoint = made or ""

    def plan_pass(self, report: PassReport) -> list[StartedRun]:
        """Verify, decide, record bookkeeping and publish start records; the runs started.

        Finish records waiting in the outbox (`apply` keeps them there while its
        runs finish) are built first and published together with whatever this
        round records, but for start records in the environments they free
        where other reconcilers take work (`runs.may_ride`): those go in a push
        of their own, after the finish records, so any reconciler may take such
        an environment. Empty when
        nothing may start now (or on a dry run, or when stopping).
        """
        for _ in range(self.options.max_rounds):
            decided, self._decided = self._decided, None  # serves one round at most
            base = self.publisher.current()
            pending = {} if self.options.dry_run else self.store.outbox()
            tip, pending = (
                self._finishing.finish_chain(base, pending) if pending else (base, pending)
            )
            # The walk of unpublished finish records stays open until their publish keeps
            # or discards it; an error in between rolls it back, and a dry run keeps nothing.
            with self.store.transaction(keep=not self.options.dry_run) as walk:
                try:
                    history, runs = self._observe(
                        report,
                        tip,
                        walk,
                        persist=not pending,
                        narrowed=self._narrowed(decided, base, pending),
                    )
                except HistoryRewrittenError:
                    if self._finishing.left_behind(base) is None:
                        raise
                    continue  # `base` is stale: the round again, on the branch as it is
                report.settled = tip
                report.policy = history.policy
                report.deployed = history.deployed
                if self.options.dry_run:
                    report.would_run = tuple(
                        queue[0]
                        for name, queue in executable(runs.decisions).items()
                        if in_shard(name, self.options.environments)
                    )
                    return []
                writer = self._writer(history.policy)
                records = self._bookkeeping(runs)
                if records:
                    if self._publish(writer.chain(tip, records), base, pending, walk):
                        report.interrupted.extend(item.run.id for item in runs.interrupted)
                        report.interrupted_in.update(
                            (item.run.id, item.run.environment) for item in runs.interrupted
                        )
                        report.refused.extend(item.ref for item in runs.refused)
                        report.why_refused.update((item.ref, item.reasons) for item in runs.refused)
                        # Once per version even were a record not read back as one:
                        # each round would record it again, and the pass never settle.
                        self._refusals_recorded.update(item.ref for item in runs.refused)
                    continue  # published or not, look again
                if not runs.starts:
                    if pending and not self._publish(tip, base, pending, walk):
                        continue
                    # Main is `tip`, as decided on: the next pass starts from these
                    # decisions if nothing that changes one lands before it (`_narrowed`).
                    self._decided = self._round
                    return []
                freed = {detail.environment for detail in pending.values()}
                recent = self.store.others_starts(self.instance, RECENT_RECORDS)
                others = contested(recent, self.instance, self.clock())
                starting = {start.environment for start in runs.starts}
                if pending and not may_ride(starting, freed, others):
                    # The finish records alone first: the environments they free are
                    # anyone's until a start record lands, this reconciler's included.
                    if not self._publish(tip, base, pending, walk):
                        continue
                    # Main is `tip` now, as decided on: the starts are built on it, and
                    # whoever started there first meanwhile wins the compare-and-swap.
                    base, pending = tip, {}
                started, starts = self._starts(writer, history, runs.starts)
                tried = time.monotonic()
                published = self._publish(writer.chain(tip, starts), base, pending, walk)
                if not published and (
                    pending or not self._starts_through(tip, starts, writer, tried)
                ):
                    continue  # lost the race: decide again on the branch as it is
                self._finishing.fileless_records = (tip, self._last_published)
                if self._round is not None:
                    self._decided = replace(
                        self._round,
                        on=self._last_published,
                        started={run.run_id: run.plan for run in started},
                    )
                self.in_flight.update(run.run_id for run in started)
                report.settled = self._last_published
                return started
        raise TemporaryError(
            "the pass did not settle", hint="check for a reconciler racing in a loop"
        )

    def _starts_through(
        self, decided_on: str, starts: list[tuple[str, None]], writer: RecordWriter, tried: float
    ) -> bool:
        """After start records decided on `decided_on` lost their race, publish them on each
        newer tip that changes nothing a decision reads (`inert`), for `REDECIDE_AFTER`
        seconds from their first try (`tried`, monotonic); whether they landed.

        Deciding again walks and judges the new commits and every plan, which
        takes longer than the gap between a busy branch's pushes: each round
        would lose its race to the next push, and no run would ever start.
        Rebuilding the same records on the new tip takes a few milliseconds.

        The decision read more than the branch: the clock (windows, freezes, the
        age of approvals), the revocation file, whether a stop was asked for. So
        it is rebuilt only until `REDECIDE_AFTER` after its first try, never past
        that on the back of a slow fetch, and never once a stop is asked for
        (rebuilt, the record would start a run that stops before its first step,
        and the version would wait for a retry).
        """
        deadline = tried + REDECIDE_AFTER
        checked = decided_on
        while time.monotonic() < deadline:
            self.sleep(random.uniform(0, PUBLISH_JITTER))  # noqa: S311 - spacing, not secrecy
            with self._git_lock:
                tip = self.publisher.tip()
                # A fetch takes as long as what was pushed takes to bring, a lost push as
                # long as the link: the deadline holds after them, or a pusher would choose
                # how stale a decision may be when its record lands.
                if (
                    time.monotonic() >= deadline
                    or self.stop_requested()
                    or not inert(self.repo, checked, tip)
                ):
                    return False
                checked = tip
                if self.publisher.publish(writer.chain(tip, starts), tip):
                    self._last_published = self.publisher.known or ""
                    return True
        return False

    def _publish(
        self, commit: str, base: str, pending: dict[str, OutboxEntry], walk: Transaction
    ) -> bool:
        """Publish `commit` (built on `base`); settle the walk and the outbox either way."""
        with self._git_lock:
            published = self.publisher.publish(commit, base)
        if published:
            self._last_published = commit
        if pending:
            if published:
                self._published(pending, walk)
            else:
                # Someone pushed first: forget the walk of our unpublished records and
                # publish each finish record on its own, rebuilt on the new tip.
                walk.discard()
                self._finishing.flush_outbox()
        return published

    def _published(self, pending: dict[str, OutboxEntry], walk: Transaction) -> None:
        """The finish records `pending` are on the branch: the walk over them is kept, and
        the outbox lets go of them."""
        walk.keep()
        for run_id in pending:
            self.store.clear_outbox(run_id)

    def _observe(
        self,
        report: PassReport,
        tip: str,
        walk: Transaction,
        *,
        persist: bool,
        narrowed: tuple[RoundDecisions, dict[str, str]] | None = None,
    ) -> tuple[History, RunDecisions]:
        """Walk to `tip` and decide: every plan, or with `narrowed` the last round's decisions
        and the plans (path -> blob) to decide again (`_narrowed`); and what this round is
        to do."""
        now = self.clock()
        # One walker for the reconciler's life: it keeps the effective state between passes.
        authoriser = self._walker
        authoriser.now = now
        # Read again every pass: a key revoked during an incident takes effect at once.
        revoked = revocation_file.configured(self.repo)
        if narrowed is not None and _fingerprints(revoked) != narrowed[0].history.revoked:
            narrowed = None  # who counts changed: every plan again
        authoriser.revoked = revoked
        if self.options.remote is not None and self.store.fresh():
            # A new machine goes on from the checkpoint another one published, if it may.
            with contextlib.suppress(ReconcilerError):
                self.repo.fetch_ref(self.options.remote, checkpoints.ref_of(self.branch))
        verified = authoriser.run(tip)
        if persist and not self.options.dry_run:
            walk.keep()
        report.landings.extend(verified.judged)
        self._round = None
        if narrowed is None:
            horizon = Horizon(now)
            seen = observe(authoriser, verified, now, drivers=None, horizon=horizon)
            history, every = seen.history, {item.path: item for item in seen.decisions}
            since = time.monotonic()
            plans = dependents(seen.decisions)
            report.decided += len(seen.decisions)
        else:
            decided, only = narrowed
            history, every, horizon = self._decide_again(report, verified, now, decided, only)
            since, plans = decided.since, decided.plans
        self.observed = history
        self._check_shard(history.policy)
        decisions = ordered(every.values())
        self._round = RoundDecisions(tip, every, history, since, plans, horizon)
        # Before any start record: a plan whose environment's driver cannot load waits;
        # only where this reconciler may start runs (another shard's driver need not load here).
        drivers = DriverCheck(self.options.driver_root or self.state_dir / "releases")
        mine = tuple(
            decision
            for decision in decisions
            if in_shard(decision.environment, self.options.environments)
        )
        problems = driver_problems(authoriser, history, mine, drivers)
        runs = decide_runs(history, decisions, self.clock(), self._facts(problems))
        report.tip, report.decisions, report.held = tip, runs.decisions, dict(runs.held)
        return history, runs

    def _narrowed(
        self, decided: RoundDecisions | None, base: str, pending: Mapping[str, OutboxEntry]
    ) -> tuple[RoundDecisions, dict[str, str]] | None:
        """The last round's decisions and the plans (path -> blob) its start records and the
        finish records `pending` change (`runs.touched_by`), when those records, and
        commits that change no decision (`inert`), are all that landed since it decided
        (in this pass, or the last one: a watcher's pass after a push to the README);
        None: decide every plan."""
        if (
            decided is None
            or self.options.dry_run
            # Someone else pushed what may change a decision: an approval, an edit, a
            # record. Commits that change nothing a decision reads (`inert`: an empty
            # commit, a README) leave them as they were, whoever made them.
            or (base != decided.on and not inert(self.repo, decided.on, base))
            or not set(pending) <= set(decided.started)  # records of runs it did not start
            or not decided.horizon.holds_at(self.clock())  # a window opened, an approval lapsed
            or time.monotonic() - decided.since >= DECIDE_ALL_AFTER
        ):
            return None
        deployed: dict[str, dict[str, str]] = {}
        for detail in pending.values():  # in the order they land: the last one's stands
            deployed.setdefault(detail.environment, {}).update(detail.deployed)
        history = decided.history
        ran = set(decided.started.values())
        touched = touched_by(history.policy, decided.plans, ran, deployed, history.deployed)
        return decided, {ref.path: ref.blob for ref in touched}

    def _decide_again(
        self,
        report: PassReport,
        verified: VerifyResult,
        now: datetime,
        decided: RoundDecisions,
        only: dict[str, str],
    ) -> tuple[History, dict[str, Decision], Horizon]:
        """Decide the plans `only` names again, and the next plan to start in each environment
        of the shard, as of `now`, over the last round's decisions; the history of those
        plans (with every refusal the last round knew), every plan's decision, and until
        when the clock leaves them all as they are.

        The next plan of an environment is decided now, not taken from a round before:
        a window may have closed, an approval lapsed; when it waits now, the next one is.
        """
        every = dict(decided.decisions)
        ran = set(decided.started.values())
        waiting = (item for item in every.values() if item.ref not in ran)
        only = {**only, **self._next_up(waiting)}  # those the started runs leave first
        horizon = Horizon(now)
        while True:
            seen = observe(self._walker, verified, now, drivers=None, only=only, horizon=horizon)
            report.decided += len(seen.decisions)
            every.update((item.path, item) for item in seen.decisions)
            stale = {
                path: blob
                for path, blob in self._next_up(every.values()).items()
                if path not in only
            }
            if not stale:
                refused = seen.history.refused | decided.history.refused
                holds = decided.horizon.joined(horizon)
                return replace(seen.history, refused=refused), every, holds
            only = {**only, **stale}

    def _next_up(self, decisions: Iterable[Decision]) -> dict[str, str]:
        """The first executable plan of each environment of the shard (path -> blob)."""
        return {
            decision.path: decision.blob
            for name, decision in next_up(decisions).items()
            if in_shard(name, self.options.environments)
        }

    def _facts(self, drivers: Mapping[str, ConfigError]) -> RunFacts:
        """What this reconciler knows beyond the history: its runs, its outbox, its records."""
        return RunFacts(
            instance=self.instance,
            in_flight=frozenset(self.in_flight),
            unpublished=frozenset() if self.options.dry_run else frozenset(self.store.outbox()),
            recorded=frozenset(self._refusals_recorded),
            drivers=drivers,
            stopping=self.stop_requested(),
            shard=self.options.environments,
        )

    @property
    def shard(self) -> tuple[str, ...] | None:
        """The environments this reconciler may start runs in, sorted; None: any."""
        shard = self.options.environments
        return None if shard is None else tuple(sorted(shard))

    def _check_shard(self, policy: Policy) -> None:
        """`--environments` names only environments main defines (read at every pass: an
        environment file can be removed)."""
        shard = self.options.environments
        unknown = [] if shard is None else unknown_environments(shard, policy.environments)
        if unknown:
            known = ", ".join(sorted(policy.environments)) or "none"
            raise UsageError(
                f"--environments names {', '.join(unknown)}, which no file in environments/ "
                "on main defines",
                hint=f"the environments are: {known}",
            )

    def _writer(self, policy: Policy) -> RecordWriter:
        assert self.key is not None
        fingerprint = self.key.public.fingerprint
        owner = policy.key_owner.get(fingerprint)
        if owner is None or owner not in policy.service_accounts:
            raise ConfigError(
                f"the reconciler's key {fingerprint} is not a service account's key in teams.yaml; "
                "the reconciler refuses to start",
                hint="add its public key under service_accounts in teams.yaml (a signed change "
                "by a settings user), or pass the right --key",
            )
        # Read now, not at the last walk: a pass publishes its outbox before it walks.
        revocations = revocation_file.configured(self.repo)
        revoked = revocations.why(fingerprint) if revocations is not None else None
        if revoked is not None:
            # Its records would count for nothing: no run would ever be seen started.
            raise ConfigError(
                f"the reconciler's own {revoked}; the reconciler refuses to sign records with it",
                hint="rotate it: a settings user adds a new key under service_accounts in "
                "teams.yaml, then restart the reconciler with that key's --key",
            )
        account = policy.service_accounts[owner]
        email = account.emails[0] if account.emails else f"{owner}@reconciler.invalid"
        return RecordWriter(self.repo, self.key, account.name or owner, email, self.clock)

    # -- bookkeeping: interrupted runs and refusals -------------------------------

    def _bookkeeping(self, runs: RunDecisions) -> list[tuple[str, None]]:
        """Records for runs started and never finished, and for new refusals."""
        records: list[tuple[str, None]] = [
            (interrupted_message(item.run, item.reason.text, self.instance), None)
            for item in runs.interrupted
        ]
        if runs.refused:
            records.append((refusal_message(runs.refused, self.instance), None))
        return records

    # -- starting runs ------------------------------------------------------------

    def _starts(
        self, writer: RecordWriter, history: History, starts: tuple[Start, ...]
    ) -> tuple[list[StartedRun], list[tuple[str, None]]]:
        """The start records of the runs decided, and the runs as the drivers will take them."""
        started: list[StartedRun] = []
        records: list[tuple[str, None]] = []
        for start in starts:
            decision = start.decision
            environment = history.policy.environments[start.environment]
            message = start_message(decision, start.run_id, self.instance, start.lease_until)
            records.append((message, None))
            finished = self._finished(history, decision, environment) if decision.retry_of else ()
            started.append(
                StartedRun(decision, start.run_id, environment, writer, finished, start.lease_until)
            )
        return started, records

    def _finished(
        self, history: History, decision: Decision, environment: Environment
    ) -> tuple[str, ...]:
        """The steps a retry skips (`finished_steps`), as the effective deployments/ says."""
        assert decision.plan is not None
        path = deployments_file(environment.name)
        running = deployments_in(self._walker.effective_file(path), path) or {}
        return finished_steps(
            steps_for(decision.plan, environment, ""),
            running.get("applications") or {},
            {run.id for run in history.runs if run.plan == decision.ref},
        )

    # -- running and finishing ------------------------------------------------------

    def _run_all(self, started: list[StartedRun], report: PassReport) -> None:
        """Run them, environments in parallel; their finish records wait in the outbox,
        to be published by the next round (`plan_pass`)."""
        with ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
            report.runs.extend(pool.map(lambda run: self.run_started(run, publish=False), started))

    def run_started(self, started: StartedRun, *, publish: bool = True) -> RunReport:
        """Run the drivers for a started run and record its finish (any thread).

        With `publish`, the finish record is published at once (the watcher's
        workers); otherwise it is left in the outbox for the next round.
        """
        decision, run_id, environment = started.decision, started.run_id, started.environment
        try:
            try:
                fence = None if started.lease_until is None else self._fence(started)
                execution = self._execute(
                    decision, run_id, environment, started.finished, fence, started.writer
                )
            except ReconcilerError as error:
                # The start record is out: a run that ends in an error must still be
                # recorded as ended, or it stays 'started' until a restart or its lease.
                execution = self._ended_by(error)
            self._finishing.finish(started.writer, decision, run_id, execution, publish=publish)
        finally:
            self.in_flight.discard(run_id)
        failed = execution.failed_step
        return RunReport(
            run=run_id,
            plan=decision.ref,
            environment=environment.name,
            result=execution.result,
            failed_step=(
                f"{failed.position} {failed.step.application} {failed.step.version}"
                if failed
                else None
            ),
            retry_of=decision.retry_of,
            reason=execution.why_failed,
            rolled_back=tuple(
                f"{undo.step.step.application} {undo.to}"
                for undo in execution.rollback
                if undo.switched
            ),
        )

    def _ended_by(self, error: ReconcilerError) -> Execution:
        """A failed execution for a run that `error` stopped outside any driver step."""
        stamp = self.clock().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        return Execution("failed", (), (f"{stamp}Z run failed: {error}",), reason=str(error))

    def _execute(
        self,
        decision: Decision,
        run_id: str,
        environment: Environment,
        finished: tuple[str, ...] = (),
        fence: Callable[[Step], Step | str] | None = None,
        writer: RecordWriter | None = None,
    ) -> Execution:
        assert decision.plan is not None
        driver = self._driver(environment, writer)
        drifted = self._drifted(decision.plan, environment, driver)
        if drifted is not None:
            stamp = self.clock().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            return Execution("failed", (), (f"{stamp}Z run stopped: {drifted}",), reason=drifted)
        running = self._running(environment) if decision.plan.rollback else None
        execution = execute(
            steps_for(decision.plan, environment, run_id, running),
            driver,
            retries=environment.driver.retries,
            clock=self.clock,
            sleep=self._sleep_unless_stopping,
            stop_requested=self.stop_requested,
            on_step=self.on_step,
            finished=finished,
            fence=fence,
            timed=(
                None
                if self.on_driver_step is None
                else functools.partial(self.on_driver_step, environment.driver.type)
            ),
            verify=environment.verify,
            on_failure=environment.on_failure,
            previous=self._running(environment) if environment.on_failure == "rollback" else None,
        )
        self._ran(environment.name, execution)
        return execution

    def _ran(self, environment: str, execution: Execution) -> None:
        """Carry this pass's look at `environment` (`_Looked`) past a run: what a succeeded run
        deployed is what runs there now. After any other end (a failed step, a rollback, a
        stop) what runs is not known for sure, and the next run asks the driver again."""
        look = self._looks.get(environment)
        if look is None:
            return
        if execution.result != "succeeded":
            self._looks.pop(environment, None)
            return
        look.update((step.application, step.version) for step in execution.deployed)

    def _running(self, environment: Environment) -> dict[str, str]:
        """What runs in `environment` before a run (application -> version), as the effective
        deployments/ says: what its rollback goes back to. The records', never the driver's
        `current`: only a version a run deployed and recorded is known to be one to go back to."""
        path = deployments_file(environment.name)
        with self._git_lock:  # a watcher walks main during runs
            running = deployments_in(self._walker.effective_file(path), path) or {}
        return {
            application: str(entry["version"])
            for application, entry in (running.get("applications") or {}).items()
            if isinstance(entry, Mapping) and "version" in entry
        }

    def _drifted(self, plan: Plan, environment: Environment, driver: Driver) -> str | None:
        """Why the run stops before its first step for drift (`drift.stops_run`), or None."""
        path = deployments_file(environment.name)
        with self._git_lock:  # main as last walked: a watcher walks it during runs
            running = deployments_in(self._walker.effective_file(path), path) or {}
        entries = running.get("applications") or {}
        wanted = {entry.name for entry in plan.applications}
        recorded = {
            name: str(entry["version"])
            for name, entry in entries.items()
            if name in wanted and isinstance(entry, Mapping) and "version" in entry
        }
        look = self._looks.setdefault(environment.name, {})
        return stops_run(plan, drift_in(environment, recorded, lambda: _Looked(driver, look)))

    def drift(self, history: History, environments: Collection[str]) -> DriftReport:
        """Drift in `environments`, against deployments/ as `history` (a pass's) read it."""
        deployed = {
            name: versions for name, versions in history.deployed.items() if name in environments
        }
        return find_drift(history.policy, deployed, self._driver)

    def _fence(self, started: StartedRun) -> Callable[[Step], Step | str]:
        """What a run asks before each step (`runs.may_step`): the step with its lease, after
        a heartbeat when the lease would not cover it with its margin; or why it stops (its
        lease passed, or main as this reconciler last saw it records the run ended)."""
        assert started.lease_until is not None
        lease = started.lease_until
        budget = step_budget(started.environment)

        def fence(step: Step) -> Step | str:
            nonlocal lease
            with self._git_lock:  # main as last walked: a watcher walks it during runs
                ended = self._finishing.ended(started.run_id)
            seen = None if ended is None else f"{ended.result} in {ended.commit[:12]}"
            why = may_step(lease, self.clock(), budget, ended=seen)
            if why.code == EXTEND:
                try:
                    lease, seen = self._heartbeat(started, lease)
                except ReconcilerError:
                    # The remote refused it, or cannot be reached: the lease it has stands,
                    # and the run stops (interrupted, not failed) if that will not do.
                    seen = None
                why = may_step(lease, self.clock(), budget, ended=seen, extended=True)
            if why.code != STEP:
                return f"run {started.run_id} may not take another step: {why}"
            return replace(step, lease_until=lease)

        return fence

    def _heartbeat(self, started: StartedRun, lease: datetime) -> tuple[datetime, str | None]:
        """Publish a heartbeat extending the run's lease, as a finish record is published
        (`FinishRecords.racing`); the lease it holds then, and the record that ended the
        run if main has one.

        It tries while the lease lasts, never after: made once the lease has passed,
        the rules would refuse it (`heartbeat_refusal`), and the run would step under
        a lease main does not grant, beside the next run there.
        """
        run_id, environment = started.run_id, started.environment
        deadline = time.monotonic() + PUBLISH_BUDGET
        with self._git_lock:
            for tip, writer in self._finishing.racing(
                started.writer, lambda: self._finishing.ended(run_id) is None
            ):
                if self.clock() >= lease or time.monotonic() >= deadline:
                    return lease, None  # the lease it has stands: `may_step` says if it will do
                extended = self.clock() + lease_for(environment, 1)
                message = heartbeat_message(
                    run_id, started.plan, environment.name, self.instance, extended
                )
                if self.publisher.publish(writer.commit(tip, message), tip):
                    self._last_published = self.publisher.last_known()
                    return extended, None
            ended = self._finishing.ended(run_id)
            assert ended is not None  # `racing` stops early only for that
            return lease, f"{ended.result} in {ended.commit[:12]}"

    def _sleep_unless_stopping(self, seconds: float) -> None:
        """A retry's backoff, cut short when the reconciler is asked to stop."""
        remaining = seconds
        while remaining > 0 and not self.stop_requested():
            step = min(remaining, 0.2)
            self.sleep(step)
            remaining -= step

    def _driver(self, environment: Environment, writer: RecordWriter | None = None) -> Driver:
        root = self.options.driver_root or self.state_dir / "releases"
        # The gitops driver's commits are the service's, signed as its records are.
        committer = (
            None
            if writer is None
            else Committer(
                writer.name,
                writer.email,
                functools.partial(signed_commit, key=writer.key),
                self.clock,
            )
        )
        return load_driver(environment.driver, root, committer)

    def driver(self, environment: Environment) -> Driver:
        """The driver the runs in `environment` use (the service asks it for drift)."""
        return self._driver(environment)


class _Looked(Struct, frozen=True):
    """A driver whose `current` answers from the pass's look at its environment (`look`:
    application -> what the driver said), asking the driver only for an application the
    look lacks.

    The drift check before each run asked the driver about every application the plan
    deploys: with the command driver a process each, per run, which cost a backlog's
    runs more than their records. Within a pass, what runs in an environment changes
    only by this reconciler's runs there, one at a time (`Reconciler._ran` carries the
    look past each); drift someone makes meanwhile is found by the next pass's look.
    """

    driver: Driver
    look: dict[str, str | None]

    def deploy(self, step: Step, on_line: Callable[[str], None]) -> Outcome:
        return self.driver.deploy(step, on_line)

    def current(self, application: str, environment: str) -> str | None:
        if application not in self.look:
            self.look[application] = self.driver.current(application, environment)
        return self.look[application]


def _fingerprints(revoked: Revocations | None) -> frozenset[str]:
    """The revoked keys' fingerprints, as `History.revoked` holds them."""
    return revoked.fingerprints if revoked is not None else frozenset()


@contextmanager
def reconciler_for(
    repo_dir: Path,
    options: Options,
    *,
    clock: Clock,
    sleep: Callable[[float], None],
    progress: Progress | None = None,
) -> Iterator[Reconciler]:
    with Reconciler(repo_dir, options, clock=clock, sleep=sleep, progress=progress) as reconciler:
        yield reconciler
