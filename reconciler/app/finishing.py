"""App: finish records, built on the branch's tip and published by compare-and-swap
(`FinishRecords`).

A run's finish record goes to the outbox in the state first, then to the
branch: at once (the watcher's workers), or with the next round's records
(`apply`). A lost race rebuilds it on the new tip, walking what came in only
when that may change what the record reads (`inert.only_people`); a record the
branch already holds leaves the outbox unpublished; one for a run main records
ended since comes late (`record.late_message`). The pass (`reconcile`) holds one
and lends it its Git lock, so records and passes never interleave.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from reconciler.adapters import revocation_file
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.statestore import StateStore
from reconciler.app.authorise import Authoriser
from reconciler.app.execute import Execution
from reconciler.app.inert import only_people
from reconciler.app.passes import Clock
from reconciler.app.record import (
    Publisher,
    RecordWriter,
    deployments_bytes,
    deployments_file,
    finish_message,
    late_message,
    log_bytes,
    log_path,
)
from reconciler.core.decide import Decision
from reconciler.core.errors import (
    ConfigError,
    HistoryRewrittenError,
    ReconcilerError,
    StateNotWritable,
    TemporaryError,
)
from reconciler.core.events import FINISHED, Record
from reconciler.core.journal import OutboxEntry
from reconciler.core.loader import load
from reconciler.core.model import Policy
from reconciler.core.runs import late_steps

# How long a finish record may try to land before the pass leaves it to the next one.
PUBLISH_BUDGET = 60.0
# The most a lost race waits before trying again, at random: reconcilers that lost together
# try apart, and the commits that pile up meanwhile are few (under one at 20 pushes a second).
PUBLISH_JITTER = 0.02


class FinishRecords:
    """The finish records of one reconciler's runs: kept, built and published on its branch."""

    def __init__(
        self,
        repo: GitRepo,
        store: StateStore,
        publisher: Publisher,
        walker: Authoriser,
        *,
        clock: Clock,
        sleep: Callable[[float], None],
        git_lock: threading.RLock,
        writer: Callable[[Policy], RecordWriter],
    ) -> None:
        self.repo = repo
        self.store = store
        self.publisher = publisher
        # The reconciler's own walker: it keeps the effective state between passes.
        self._walker = walker
        self.clock = clock
        self.sleep = sleep
        # The reconciler's re-entrant lock: a pass and a finish record never interleave.
        self._git_lock = git_lock
        self._writer = writer  # a record writer for a policy, signing with the service's key
        # (a, b): b is a's descendant by this reconciler's start records and commits that
        # change nothing it reads (`inert`) alone: a's effective state is b's.
        self.fileless_records: tuple[str, str] | None = None

    def finish(
        self,
        writer: RecordWriter,
        decision: Decision,
        run_id: str,
        execution: Execution,
        *,
        publish: bool,
    ) -> None:
        assert decision.plan is not None
        detail = OutboxEntry(
            run=run_id,
            message=finish_message(decision, run_id, execution),
            environment=decision.plan.target,
            plan=decision.plan.name,
            log_path=log_path(decision.plan.target, decision.plan.name, run_id),
            log=log_bytes(decision, run_id, execution).decode(),
            deployed=tuple((step.application, step.version) for step in execution.deployed),
            when=self.clock(),
        )
        with self._git_lock:
            try:
                self.store.put_outbox(detail)
            except StateNotWritable as error:
                raise self._publish_unkept(writer, run_id, detail, error) from None
            if publish:
                self._publish_finish(writer, run_id, detail)

    def _publish_unkept(
        self, writer: RecordWriter, run_id: str, detail: OutboxEntry, error: StateNotWritable
    ) -> StateNotWritable:
        """Publish a finish record the outbox could not keep, writing nothing to the state;
        the error that stops the pass, saying where the record went.

        Published, the record is where the next pass reads it, whatever becomes
        of this state: kept nowhere, the run would be recorded interrupted and
        its deploys forgotten. The walk to the tip it is built on goes in a
        transaction that is never kept (the file system takes changes into
        SQLite's cache, not its files).
        """
        try:
            with self.store.transaction(keep=False):
                self._publish_finish(writer, run_id, detail)
        except ReconcilerError as failure:
            went = (
                f"could not be published either ({failure.message}): the run will be "
                "recorded interrupted"
            )
        else:
            went = "was published directly, without the outbox"
        return StateNotWritable(
            f"{error.message}; the finish record of {run_id} {went}",
            file=error.file,
            hint=error.hint,
        )

    def _publish_finish(self, writer: RecordWriter, run_id: str, detail: OutboxEntry) -> bool:
        """Build the finish record on the current tip and publish it, rebuilding on lost races
        (`racing`) for `PUBLISH_BUDGET` seconds, not a number of times; False when the
        branch holds it already."""
        deadline = time.monotonic() + PUBLISH_BUDGET

        def unpublished() -> bool:
            return bool(self._unpublished({run_id: detail}))

        for attempts, (tip, signer) in enumerate(self.racing(writer, unpublished), start=1):
            files = self._finish_files(tip, run_id, detail)
            commit = signer.commit(tip, self._finish_message(run_id, detail), files)
            if self.publisher.publish(commit, tip):
                self.store.clear_outbox(run_id)
                return True
            if time.monotonic() >= deadline:
                raise TemporaryError(
                    f"could not publish the finish record of {run_id} in {PUBLISH_BUDGET:.0f} s "
                    f"({attempts} attempts lost a race with another push)",
                    hint="it is kept in the state directory and published by the next pass",
                )
        return False  # a publish the process died after (or reported failed)

    def racing(
        self, writer: RecordWriter, wanted: Callable[[], bool]
    ) -> Iterator[tuple[str, RecordWriter]]:
        """The tips to build a record on, with the writer to sign it: the tip last seen or
        published first, then the new tip after each lost race; it stops when, after a
        walk, `wanted()` says the record is not to be published any more.

        A race is lost to whoever pushed between the fetch and the push, so that
        window is kept short: after a lost race, the commits that came in are
        walked only when one may be a record or change teams.yaml (`only_people`);
        else the record is built on the new tip from the state as walked, which
        those commits cannot change, and they are judged by the next pass. The
        writer is rebuilt after each walk: a record signed with a key rotated out
        since would count for nothing. Between tries, a wait of a few
        milliseconds at random, never a growing backoff, which lets the commits to
        check pile up.
        """
        tip = self.publisher.last_known()
        checked: str | None = None  # the walk's state holds for this tip, walked or checked
        while True:
            if checked is None or not only_people(self.repo, checked, tip):
                self._walk_to(tip)
                if not wanted():
                    return
                writer = self._writer(self._walker.policy())
            checked = tip
            yield tip, writer
            self.sleep(random.uniform(0, PUBLISH_JITTER))  # noqa: S311 - spacing, not secrecy
            tip = self.publisher.tip()

    def finish_chain(
        self, base: str, pending: dict[str, OutboxEntry]
    ) -> tuple[str, dict[str, OutboxEntry]]:
        """The outbox's finish records `base` does not hold yet as commits on it, unpublished;
        the last one, and those records."""
        with self._git_lock:
            self._walk_to(base)
            pending = self._unpublished(pending)
            if not pending:
                return base, pending
            writer = self._writer(self._walker.policy())
            tip = base
            ours: set[str] = set()  # environments whose file a record of this chain wrote
            for run_id, detail in pending.items():
                files = self._finish_files(tip, run_id, detail, ours=ours)
                tip = writer.commit(tip, self._finish_message(run_id, detail), files)
                ours.add(detail.environment)
        return tip, pending

    def _unpublished(self, pending: dict[str, OutboxEntry]) -> dict[str, OutboxEntry]:
        """The finish records of `pending` not on the branch as walked; the others leave the
        outbox.

        One the branch holds went out in a publish whose process died before it
        cleared the outbox (or whose push was reported failed): published again,
        the run would end twice. Only that very record counts, not another finish
        record of the run (one marking it interrupted once its lease passed):
        this one still says what the run deployed.
        """
        published = {
            record.run
            for record in self.store.records_of(pending, uncounted=True)
            if record.run is not None
            and record.result != "started"
            and any(
                _same_message(self.repo.commit(record.commit).message, message)
                for message in (
                    pending[record.run].message,
                    late_message(pending[record.run].message),
                )
            )
        }
        for run_id in published:
            self.store.clear_outbox(run_id)
        return {run_id: detail for run_id, detail in pending.items() if run_id not in published}

    def _walk_to(self, tip: str) -> None:
        """Bring the walker's effective deployments/ to `tip` (a commit on the branch).

        Records read nothing else of the effective state. When all that lies
        between the walker's position and `tip` is this reconciler's own start
        records, which change no file, and commits that change nothing it reads
        (`Reconciler._starts_through`), the state there will do: a walk would
        cost a run a sixth of its time, and the round walks on to `tip` anyway.
        """
        self._walker.now = self.clock()
        position = self.store.position()
        target = tip
        if position is not None and (position.last_verified, tip) == self.fileless_records:
            target = position.last_verified  # holds the state as stored
        try:
            self._walker.run(target)
        except HistoryRewrittenError:
            # `target` is stale, not rewritten: a walk beside the service (a page, a
            # verify) took the state past it, even to `tip` itself, after the position was
            # read. The state past it serves; a push expecting a stale tip then loses its
            # race, and the record is rebuilt on the branch as it is.
            moved = self.left_behind(target)
            if moved is None:
                raise
            self._walker.run(moved)

    def left_behind(self, tip: str) -> str | None:
        """Where a walk beside the service (a `verify`, a page) took the state past `tip`,
        the tip it last saw or published, when the branch has left `tip` for a history
        that holds where the state went: `tip` is stale.

        None when the state is not past `tip`, or the branch no longer holds where the
        state went: back at `tip`, or anywhere that dropped what the walk beside judged
        (a rewrite, even one to a commit that descends from `tip`). A walk beside the
        service keeps only a tip it read under the walk's lock, so a stale tip always
        leaves the state on the branch.
        """
        moved = self.store.position()
        if moved is None or moved.last_verified == tip:
            return None
        if not self.repo.is_ancestor(tip, moved.last_verified):
            return None
        branch = self.publisher.tip()
        if branch == tip or not self.repo.is_ancestor(moved.last_verified, branch):
            return None
        return moved.last_verified

    def ended(self, run_id: str) -> Record | None:
        """The record that ended the run on the branch as walked (another reconciler's, once
        its lease passed), if one did."""
        return next(
            (record for record in self.store.records_of([run_id]) if record.result in FINISHED),
            None,
        )

    def _finish_message(self, run_id: str, detail: OutboxEntry) -> str:
        """The finish record's message; a late record's once main records the run ended."""
        return detail.message if self.ended(run_id) is None else late_message(detail.message)

    def _finish_files(
        self, tip: str, run_id: str, detail: OutboxEntry, *, ours: Collection[str] = ()
    ) -> dict[str, bytes]:
        """The run's log and `deployments/<env>.yaml` as they become on top of `tip`.

        What already runs there is the file's effective content, as the walker
        holds it at `tip`, never main's file as it stands: a person's refused
        edit of deployments/ must not become the base of the next record, which
        the service signs (nor, unreadable, erase what runs). Only what a record
        of the same chain just wrote is read from `tip`.

        A run that already ended comes late: its lease passed, another
        reconciler recorded it interrupted (and may have gone on to the next run
        there). Its late record writes what it deployed after all, but not over
        what a run started since deployed (`runs.late_steps`).
        """
        environment = detail.environment
        path = deployments_file(environment)
        if environment in ours:
            blob = self.repo.blob_at(tip, path)
            raw = None if blob is None else self.repo.read_blob(blob)
        else:
            raw = self._walker.effective_file(path)
        files = {detail.log_path: detail.log.encode()}
        running = deployments_in(raw, path)
        deployed = detail.deployed
        ended = self.ended(run_id)
        if ended is not None:
            applications = (running or {}).get("applications") or {}
            deployed_by = {
                application: entry["run"]
                for application, entry in applications.items()
                if isinstance(entry, dict) and isinstance(entry.get("run"), str)
            }
            started = {
                str(record.run): record.seq
                for record in self.store.records_of(set(deployed_by.values()))
                if record.result == "started"
            }
            deployed = late_steps(deployed, deployed_by, ended.seq, started)
            if not deployed:
                return files if raw is None else {**files, path: raw}
        files[path] = deployments_bytes(
            environment, running, list(deployed), detail.plan, run_id, detail.when
        )
        return files

    def flush_outbox(self) -> int:
        """Publish the outbox's finish records one by one; how many were published."""
        pending = self.store.outbox()
        if not pending:
            return 0
        with self._git_lock:
            # The reconciler's own walker: it walks only what came since it last walked.
            self._walker.revoked = revocation_file.configured(self.repo)
            self._walk_to(self.publisher.tip())
            writer = self._writer(self._walker.policy())
            return sum(
                self._publish_finish(writer, run_id, detail) for run_id, detail in pending.items()
            )


def deployments_in(raw: bytes | None, path: str) -> dict[str, Any] | None:
    """What a deployments/ file says runs there (nothing, when it is absent or unreadable)."""
    if raw is None:
        return None
    try:
        data = load(raw, path).data
    except ConfigError:
        return None
    return data if isinstance(data, dict) else None


def _same_message(committed: str, message: str) -> bool:
    """Whether a commit's message is `message` (a commit's always ends with a line break)."""
    return committed.rstrip("\n") == message.rstrip("\n")
