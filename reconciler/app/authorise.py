"""Stage 3, authorise: prove from Git history that every landed change was allowed.

Called by `reconciler verify` and by every reconcile pass before deciding what
to run. It walks main's first-parent chain from the last verified commit L.
Each first-parent commit M with first parent P is one *landing*: the commits
reachable from M and not from P (capped). The policy that judges a landing is
the *effective* teams.yaml and environments/ before it, never main's tree, so
a grant never authorises the commit that makes it.

The rule is `judge.judge_landing` (what each commit vouches for, and why); the
trailer rules are `trailer_rules`. This module is the walker around them: it
reads the history in batches (`readahead`), gathers each landing's commits and
what the judge asks about them (`CommitCache`), applies each judgement to the
effective state it keeps, and persists it in one store call, all in the pass's
transaction (`StateStore.transaction`).

A signed payload counts once: a commit whose payload (the commit without its
signature headers) another commit carried first, and a malformed commit (two
signature headers, a signature not armored as ssh-keygen writes it, two author or
committer lines), hold no
identity, and the landing that brings one in is refused (`CommitCache.claim`).

Where main's content and the effective state part, `verify` says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final, TypeVar

from reconciler.adapters.gitobjects import NULL_OID, CommitInfo, HistoryEntry
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.readahead import (
    PREFETCH,
    ParsedVersions,
    ReadAhead,
    ReadBatch,
    prepare,
)
from reconciler.adapters.statestore import Position, StateStore, Transaction
from reconciler.app.anchoring import (
    anchored_state,
    default_anchor,
    history_rewritten,
    refuse_invalid,
    refuse_malformed,
    structured_versions,
    whole_history,
)
from reconciler.app.checkpoint_trust import CheckpointTrust
from reconciler.app.commit_cache import CommitCache, first_carriers
from reconciler.app.effective_policy import learn_keys, policy_from
from reconciler.app.verified import VerifyResult, differs
from reconciler.core.errors import ReconcilerError, StateMoved
from reconciler.core.fields import (
    CONTENT,
    FieldMap,
    value,
)
from reconciler.core.identity import CommitFacts
from reconciler.core.journal import IgnoredTrailer
from reconciler.core.journal import Landing as LandingRow
from reconciler.core.landed import LandedCommit, Landing, State
from reconciler.core.layout import TEAMS_FILE, place
from reconciler.core.ledger import apply_changes
from reconciler.core.model import Policy
from reconciler.core.openpgp import Keyring
from reconciler.core.permissions import Answers
from reconciler.core.revocation import Revocations
from reconciler.core.verdicts import LandingVerdict, Refusal

# A walk that has landings to judge loads the judge, and one that goes on from a
# checkpoint the checkpoints' checks and their signature library: `plan`, `status` and
# `access` with nothing new never need them.
if TYPE_CHECKING:
    from reconciler.app.checkpoints import Continued
    from reconciler.core.judge import LandingJudgement

DEFAULT_CAP: Final = 1000
T = TypeVar("T")
Progress = Callable[[int, int], None]


class Authoriser:
    """Walks main from the last verified commit and keeps the effective state."""

    def __init__(
        self,
        repo: GitRepo,
        store: StateStore,
        *,
        now: datetime,
        cap: int = DEFAULT_CAP,
        progress: Progress | None = None,
        batch: int = PREFETCH,
        workers: int | None = None,
        revoked: Revocations | None = None,
        checkpoints: CheckpointTrust | None = None,
        parse_cache: StateStore | None = None,
    ) -> None:
        self.repo = repo
        # The state whose kept parses of environment and deployment files this walker's
        # policy and decisions read (`kept.parsed_documents`): a command that only reads,
        # and never while walking (`run`).
        self.parse_cache = parse_cache
        self._judging = False
        self._policy_from_cache = False
        # Which checkpoints a fresh state may go on from (None: none, a full walk).
        self.checkpoints = checkpoints
        self.continued: Continued | None = None
        self.store = store
        self.now = now
        self.cap = cap
        self.progress = progress
        # The effective state, path -> field -> value; None: as the store holds it, not
        # read yet (`effective` reads it whole; `effective_at` reads only some paths).
        self._effective: dict[str, dict[str, str]] | None = {}
        # The state's generation, and how many of its changes this process had kept, when
        # `_restore` left it to be read when asked, under the walk's lock: a read after the
        # lock is let go checks that no other process kept a change since.
        self._restored_at: tuple[int, int] | None = None
        # Where main's content is not the effective state: path -> field -> who put it there.
        self.dirty: dict[str, dict[str, Refusal | None]] = {}
        self._policy: Policy | None = None
        # The judge's permission answers under the judging policy, kept across the
        # landings it judges: a new policy starts a new memo (`Answers.for_policy`).
        self._answers: Answers | None = None
        self._versions = ParsedVersions()  # parsed plan and teams.yaml versions
        self._reader = ReadAhead(repo, store, self._versions, size=batch, workers=workers)
        self._keyring = Keyring()
        self.commits = CommitCache(repo, store, self._versions, self._keyring)
        self.commits.revoked = revoked
        # The tip whose state this object holds, and the transaction that wrote it there:
        # the store holds it too while that transaction is open or once it was kept.
        self._held: tuple[str, Transaction] | None = None
        self._touched: set[str] = set()
        self.anchor = ""
        # False: `run` returns no verdicts (the store has them), so a walk of a long history
        # does not hold one per landing in memory.
        self.keep_verdicts = True
        self._count = 0  # landings the last walk judged
        # The last landing judged, whole: what a merge judged before it lands changes
        # (`judge.reached`).
        self.judgement: LandingJudgement | None = None

    @property
    def revoked(self) -> Revocations | None:
        return self.commits.revoked

    @revoked.setter
    def revoked(self, revoked: Revocations | None) -> None:
        self.commits.revoked = revoked

    # -- public -------------------------------------------------------------

    def run(
        self,
        tip: str,
        *,
        trust_anchor: str | None = None,
        older: bool = False,
        re_anchor: bool = False,
    ) -> VerifyResult:
        """Walk to `tip`, in the store's open transaction (the caller's, which keeps or
        discards what the walk wrote), else in one of its own, kept.

        `older=True` lets `tip` be an older commit of the verified history (a
        report up to it). Otherwise `tip` is where the branch is now, and a
        branch moved back behind the last verified commit was rewritten: the
        commits it dropped may be what made its content effective.

        `re_anchor=True` anchors anew on `trust_anchor`, keeping only what the
        landings of its history recorded (`StateStore.reset`), in the walk's one
        transaction: should anchoring fail (or the process die), the old state
        stands, and the rewrite still stops the next run instead of being
        trusted from its root.
        """
        transaction = self.store.open_transaction()
        if transaction is None:
            with self.store.transaction():
                return self.run(tip, trust_anchor=trust_anchor, older=older, re_anchor=re_anchor)
        # The position is read inside the transaction: another process's pass
        # may have moved it while this one waited for the lock.
        # A walk judges from the files alone: a verdict is kept, and a command that acts
        # goes on from it. So the state's kept parses (`parse_cache`) are never read while
        # walking, and a policy a reading command built from them judges nothing.
        if self._policy_from_cache:
            self._policy = None
        self._judging = True
        try:
            self.continued = None
            self._count = 0
            if self.checkpoints is not None and not re_anchor and self.store.fresh():
                named = self.checkpoints.names_anchor
                anchor = trust_anchor or (None if named else default_anchor(self.repo, tip))
                position, (judged, ignored) = self._walk_from_checkpoint(
                    tip, anchor, self.checkpoints, older=older
                )
            else:
                position = self._position(tip, trust_anchor, re_anchor=re_anchor)
                self.anchor = position.anchor
                judged, ignored = self._walk(tip, position, older=older)
        except BaseException:
            # What the walk wrote is forgotten, and the caller's transaction with it.
            transaction.discard()
            self._held = None
            raise
        finally:
            self._judging = False
        self._held = (tip, transaction)
        return VerifyResult(
            anchor=position.anchor,
            tip=tip,
            judged=judged,
            differs=differs(self.dirty),
            ignored=ignored,
            continued=self.continued,
            count=self._count,
        )

    def _walk_from_checkpoint(
        self, tip: str, anchor: str | None, trust: CheckpointTrust, *, older: bool
    ) -> tuple[Position, tuple[tuple[LandingVerdict, ...], tuple[IgnoredTrailer, ...]]]:
        """A fresh state's walk: from the newest checkpoint it trusts, else from the anchor.

        A checkpoint's key that the effective policy at `tip` no longer lists as a
        service account's was revoked since: what it signed is taken back, and the
        walk goes again from an older checkpoint signed by another key, or in full.
        """
        from reconciler.app import checkpoints  # noqa: PLC0415

        distrusted: set[str] = set()
        with self.store.savepoint() as back:
            while True:
                self.continued = checkpoints.newest(
                    self.repo,
                    self.store,
                    anchor=anchor,
                    tip=tip,
                    trust=trust,
                    keys=lambda: self._service_keys_of(anchor) if anchor else frozenset(),
                    keys_at=self._service_keys_of,
                    revoked=self.revoked,
                    distrusted=distrusted,
                    back=back,
                    now=self.now,
                )
                position = self._position(tip, anchor, re_anchor=False)
                self.anchor = position.anchor
                walked = self._walk(tip, position, older=older)
                continued = self.continued
                if continued is None or continued.signer in _service_keys(
                    self.policy(), self.revoked
                ):
                    return position, walked
                signer = continued.signer
                trust.warn(
                    f"warning: checkpoint {continued.checkpoint[:12]} not used: its key "
                    f"{signer} is no longer a service account's at {tip[:12]}"
                )
                distrusted.add(signer)
                back()
                self._forget()

    def _service_keys_of(self, commit: str) -> frozenset[str]:
        """The service accounts' keys of a commit's policy file, as git holds it: the
        anchor's are the checkpoints' signers a walk trusts unless keys are pinned, and a
        checkpoint's signer must be one at the commit it describes."""
        blob = self.repo.blob_at(commit, TEAMS_FILE)
        if blob is None:
            return frozenset()
        fields = self.commits.fields(TEAMS_FILE, blob, "100644")
        try:
            policy = policy_from({TEAMS_FILE: dict(fields)}, self.repo, self.now)
        except ReconcilerError:
            return frozenset()  # the walk from the anchor says what is wrong with it
        return _service_keys(policy, self.revoked)

    def _forget(self) -> None:
        """Hold nothing a walk from a checkpoint taken back read or judged."""
        self.effective = {}
        self.dirty = {}
        self._policy = None
        self._answers = None
        self._held = None
        self._touched.clear()
        self._keyring = Keyring()
        revoked = self.commits.revoked
        self.commits = CommitCache(self.repo, self.store, self._versions, self._keyring)
        self.commits.revoked = revoked
        self.continued = None
        self.judgement = None

    def _position(self, tip: str, trust_anchor: str | None, *, re_anchor: bool) -> Position:
        """The position the walk starts from: anchored anew (`re_anchor`), anchored on a
        fresh state, or the store's, this object holding the state the store holds."""
        if re_anchor:
            assert trust_anchor is not None
            self.store.reset(self.repo.ancestors(trust_anchor))
            self._held = None
        position = self.store.position()
        if position is None:
            return self._anchor(trust_anchor or default_anchor(self.repo, tip))
        if position.last_verified != self._holds():
            self._restore()
        if not self.store.payloads_counted():
            self._count_payloads(position.anchor)
        return position

    def _holds(self) -> str | None:
        """The tip whose state this object holds as the store holds it: as a walk left
        it, unless that walk's transaction was discarded (a dry run, a commit off the
        branch) or failed."""
        if self._held is None:
            return None
        tip, transaction = self._held
        return None if transaction.kept is False else tip

    def _restore(self) -> None:
        """Hold the effective state as the store has it, and judge by its policy.

        The policy built from the state this object held before (a walk that
        was discarded, or one another walker has since moved past) must not
        judge a single landing more. The state is read when first asked for: a command
        with nothing new to walk reads only the rows it decides from (`effective_at`).
        """
        self._effective = None
        self._restored_at = (self.store.generation(), self.store.generations_made)
        self.dirty = self.store.dirty()
        self._policy = None

    @property
    def effective(self) -> dict[str, dict[str, str]]:
        """The effective state, whole: read from the store at first use after `_restore`."""
        if self._effective is None:
            self._effective = self._as_restored(self.store.effective)
        return self._effective

    @effective.setter
    def effective(self, state: dict[str, dict[str, str]]) -> None:
        self._effective = state

    def _as_restored(self, read: Callable[[], T]) -> T:
        """`read` of the store as `_restore` left it: under a lock (the open transaction's,
        else one taken for the read), if no other process kept a change since (this one's
        own, records and the outbox, leave the effective state as it was; `StateMoved`:
        another walked on, and the rows would not be those of this walk's tip)."""
        held = self.store.open_transaction() is not None
        with contextlib.nullcontext() if held else self.store.transaction(keep=False):
            assert self._restored_at is not None
            generation, made = self._restored_at
            if self.store.generation() - generation != self.store.generations_made - made:
                raise StateMoved(
                    f"another reconciler walked the state {self.store.path} on while this "
                    "command read it",
                    hint="run the command again",
                )
            return read()

    def effective_at(self, paths: Collection[str]) -> dict[str, dict[str, str]]:
        """The effective fields of `paths` that have any, without reading every path's
        (1,000 plans on main; `plan` decides a few of them again)."""
        if self._effective is None:
            found = self._as_restored(lambda: self.store.effective_at(paths))
            if found is not None:
                return found
        state = self.effective
        return {path: state[path] for path in paths if path in state}

    def effective_under(self, path: str, folder: str) -> dict[str, dict[str, str]]:
        """The effective fields of `path` and the paths under `folder` (ending in '/')."""
        if self._effective is None:
            return self._as_restored(lambda: self.store.effective_of(path, folder))
        return {
            found: fields
            for found, fields in self._effective.items()
            if found == path or found.startswith(folder)
        }

    def effective_file(self, path: str) -> bytes | None:
        """The effective content of a file judged whole (environments/, deployments/)."""
        blob = value(self.effective_at([path]).get(path, {}), CONTENT)
        return None if blob is None else self.repo.read_blob(blob)

    def fields_of(self, path: str, blob: str | None, mode: str) -> FieldMap:
        """The values of `path` holding `blob` (None: absent) with `mode`, read as the
        walk reads them."""
        return self.commits.fields(path, blob, mode)

    def facts(self, commit: str) -> CommitFacts:
        return self.commits.facts(commit)

    def info(self, commit: str) -> CommitInfo:
        return self.commits.info(commit)

    def prefetch(self, commits: list[str]) -> None:
        """Read many commits and check their signatures in one batch (`pipeline.gather`)."""
        self._install(self._reader.read_now(commits))

    def policy(self) -> Policy:
        if self._policy is None:
            cache = self.parses
            settings = self.effective_under(TEAMS_FILE, "environments/")
            self._policy = self.learn_keys(policy_from(settings, self.repo, self.now, cache))
            self._policy_from_cache = cache is not None
        return self._policy

    @property
    def parses(self) -> StateStore | None:
        """Where the decisions may read the files' kept parses: `parse_cache`, but never
        while walking (`run`)."""
        return None if self._judging else self.parse_cache

    def learn_keys(self, policy: Policy) -> Policy:
        """Check OpenPGP signatures with the certificates `policy` lists, too: those of
        every policy the walk builds, and of one judged outside it (re-anchoring's).
        Returns `policy` as the walk may use it: a key two certificates met so far list
        is nobody's."""
        return learn_keys(self._keyring, policy)

    # -- anchoring ------------------------------------------------------------

    def _anchor(self, anchor: str) -> Position:
        """Trust `anchor`'s tree wholesale as the first effective state."""
        refuse_malformed(self.repo, anchor)
        self.effective = {}
        files = self.repo.tree_files(anchor)
        self._versions.add(prepare(self.repo, [], frozenset(), structured_versions(files))[2])
        self.effective = anchored_state(anchor, files, self.commits.fields)
        refuse_invalid(self.repo, anchor, self.effective)
        self._policy = None
        self.dirty = {}
        for path, fields in self.effective.items():
            self.store.replace_effective(path, fields)
        self.store.set_dirty({})
        position = Position(anchor, anchor, self.store.branch)
        self.store.set_position(position)
        self.store.mark_seen([anchor], self.now)
        self._claim_history(anchor)
        self.store.mark_payloads_counted()
        self._land_with_anchor(anchor, {path: oid for path, (_, oid) in files.items()})
        return position

    def _land_with_anchor(self, anchor: str, blobs: Mapping[str, str]) -> None:
        """The plan versions of the anchor's tree that no landing kept by a re-anchor
        made effective land with the anchor, just after those landings: trusted with
        its tree, never refused as "never landed". A trust anchor triggers nothing."""
        from reconciler.core.judge import plan_version  # noqa: PLC0415

        seq = self.store.next_seq()
        self.store.set_anchor_seq(seq - 1)
        plans = {
            (path, blobs[path])
            for path in self.effective
            if place(path).kind == "plan" and path in blobs
        }
        carried = {(item.path, item.blob) for item in self.store.plan_versions(only=plans)}
        policy = self.policy()
        for path, blob in sorted(plans - carried):
            version = plan_version(
                path,
                blob,
                anchor,
                seq,
                fields=self.effective.get(path, {}),
                policy=policy,
                facts=self.commits.facts(anchor),
                committed_at=self.commits.committed_at(anchor),
                may_trigger=False,
            )
            self.store.add_plan_version(version)

    def _claim_history(self, anchor: str) -> None:
        """The anchor and everything before it carried their signed payloads first: a
        copy of a commit signed before the anchor (a re-anchor, a --trust-anchor) must
        not count as its signer's later. One pass over the commits, at anchoring."""
        carriers: dict[str, str] = {}
        self.policy()  # its certificates in the keyring
        for commit, key in self.commits.claim_keys(self.repo.ancestors(anchor)).items():
            carriers.setdefault(key, commit)
        self.store.add_carriers(carriers)

    def _count_payloads(self, anchor: str) -> None:
        """A state kept before payloads were counted: count those of the anchor and of
        every commit its walks landed, in their order, so no copy of one counts later."""
        self._claim_history(anchor)
        landings = [list(item.verdict.landed) for item in self.store.landings()]
        commits = [commit for landed in landings for commit in landed]
        digests = self.commits.claim_keys(commits)
        carriers: dict[str, str] = {}
        for landed in landings:
            for digest, carrier in first_carriers(landed, digests, carriers).items():
                carriers[digest] = carrier
        self.store.add_carriers(carriers)
        self.store.mark_payloads_counted()

    # -- the walk ------------------------------------------------------------

    def _walk(
        self, tip: str, position: Position, *, older: bool
    ) -> tuple[tuple[LandingVerdict, ...], tuple[IgnoredTrailer, ...]]:
        """The verdicts of the landings from the last verified commit to `tip`, and the
        trailers they hold that count for nothing."""
        last = position.last_verified
        if last == tip:
            return (), ()
        whole_history(self.repo, last, tip)
        chain = self.repo.first_parent_chain(tip, last)
        first = self.repo.commit(chain[0]) if chain else None
        # The common case needs no merge-base: last is the first parent of the chain's start.
        off_chain = first is None or first.parents[:1] != (last,)
        if off_chain and not self.repo.is_ancestor(last, tip):
            if older and self.repo.is_ancestor(tip, last):
                return (), ()  # an older commit of the verified history: nothing new to judge
            raise history_rewritten(self.store.branch, tip, last)
        targets = {tip} if off_chain else set(chain)
        judged = self._judge_all(tip, last, targets, off_chain=off_chain)
        self.store.set_position(Position(position.anchor, tip, self.store.branch))
        for path in self._touched:
            self.store.replace_effective(path, self.effective.get(path, {}))
        self._touched.clear()
        self._save_dirty()
        return judged

    def _judge_all(
        self, tip: str, last: str, targets: set[str], *, off_chain: bool
    ) -> tuple[tuple[LandingVerdict, ...], tuple[IgnoredTrailer, ...]]:
        """Judge the landings from `last` to `tip` in order, reporting progress."""
        self._touched.clear()
        verdicts: list[LandingVerdict] = []
        ignored: list[IgnoredTrailer] = []
        first = seq = self.store.next_seq()
        for landings in self._landings(tip, last, targets, off_chain=off_chain):
            for commit, first_parent, landed in landings:
                judgement = self._judge(Landing(seq, commit, first_parent, landed))
                seq += 1
                if self.keep_verdicts:
                    verdicts.append(judgement.verdict)
                ignored.extend(judgement.ignored)
                if self.progress is not None:
                    self.progress(seq - first, len(targets))
        self._count = seq - first
        return tuple(verdicts), tuple(ignored)

    def _landings(
        self, tip: str, last: str, targets: set[str], *, off_chain: bool
    ) -> Iterator[list[tuple[str, str | None, tuple[LandedCommit, ...]]]]:
        """The landings from `last` to `tip`, a batch of them at a time: their commits
        read, checked and installed (`CommitCache.install`), and what the commits just
        outside them hold looked up."""
        pending: dict[str, HistoryEntry] = {}
        with contextlib.closing(self._reader.batches(self.repo.history(tip, last))) as batches:
            for batch in batches:
                self._install(batch)
                landings: list[tuple[str, str | None, list[HistoryEntry]]] = []
                for entry in batch.entries:
                    pending[entry.id] = entry
                    if entry.id in targets:
                        first_parent = last if off_chain else (entry.parents[:1] or (None,))[0]
                        landings.append((entry.id, first_parent, _take_landed(pending, entry.id)))
                self.commits.read_boundaries([landed for _, _, landed in landings])
                yield [
                    (commit, first_parent, tuple(_landed(entry) for entry in landed))
                    for commit, first_parent, landed in landings
                ]

    def _install(self, batch: ReadBatch) -> None:
        """Make `batch` the one whose commits the judging reads; the cache holds one batch."""
        self.policy()  # its certificates in the keyring
        self.commits.install(batch)

    def _judge(self, landing: Landing) -> LandingJudgement:
        """Judge one landing, apply the judgement to the effective state, and persist it."""
        from reconciler.core.judge import judge_landing  # noqa: PLC0415

        policy = self.policy()
        landed = [commit.id for commit in landing.commits]
        carriers = self.commits.claim(landed)
        state = State(self.effective, self.dirty, self.anchor)
        answers = self._answers = (self._answers or Answers(policy)).for_policy(policy)
        judgement = judge_landing(
            policy, state, landing, self.commits, cap=self.cap, answers=answers
        )
        self._apply(judgement)
        self.judgement = judgement
        self.store.add_judgement(
            LandingRow(landing.seq, judgement.verdict, judgement.committed_at),
            seen=landed,
            when=self.now,
            carriers=carriers,
            events=(*judgement.found, *judgement.edits),
            versions=judgement.versions,
            editors=judgement.editors,
        )
        return judgement

    def _apply(self, judgement: LandingJudgement) -> None:
        """Make the judgement's effective state this object's (the store's at the walk's end)."""
        apply_changes(self.effective, judgement.effective)
        apply_changes(self.dirty, judgement.dirty)
        for path, _ in judgement.effective:
            self._touched.add(path)  # written to the store once, at the end of the walk
            if place(path).kind in ("teams", "environment"):
                self._policy = None

    def _save_dirty(self) -> None:
        self.store.set_dirty(self.dirty)


def _landed(entry: HistoryEntry) -> LandedCommit:
    """A landed commit as the judge reads it."""
    return LandedCommit(
        entry.id,
        entry.parents,
        {
            change.path: (
                None if change.new_blob == NULL_OID else change.new_blob,
                change.new_mode,
            )
            for change in entry.changes
        },
        entry.malformed,
    )


def _take_landed(pending: dict[str, HistoryEntry], commit: str) -> list[HistoryEntry]:
    """Remove and return the pending commits reachable from `commit`, in pending (topo) order."""
    reached = {commit}
    stack = [commit]
    while stack:
        for parent in pending[stack.pop()].parents:
            if parent in pending and parent not in reached:
                reached.add(parent)
                stack.append(parent)
    landed = [entry for entry_id, entry in pending.items() if entry_id in reached]
    for entry_id in reached:
        del pending[entry_id]
    return landed


def _service_keys(policy: Policy, revoked: Revocations | None) -> frozenset[str]:
    """The fingerprints of the service accounts' keys `policy` lists, but the revoked."""
    return frozenset(
        key
        for key, owner in policy.key_owner.items()
        if owner in policy.service_accounts and (revoked is None or revoked.why(key) is None)
    )
