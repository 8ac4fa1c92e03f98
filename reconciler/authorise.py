"""Stage 3, authorise: prove from Git history that every landed change was allowed.

Called by `reconciler verify` and by every reconcile pass before deciding what
to run. It walks main's first-parent chain from the last verified commit L.
Each first-parent commit M with first parent P is one *landing*: the commits
reachable from M and not from P (capped). The policy that judges a landing is
the *effective* teams.yaml and environments/ before it, never main's tree, so
a grant never authorises the commit that makes it.

For every commit X of the landing, parents first, and every value (see
`fields`) of every path the landing touches, the walk computes the value
X *vouches* for:

1. X's value equals a vouched value of some parent: vouched (merges of
   independent, authorised edits; reverts of refused ones).
2. Else X's value equals some parent's actual value: X did not change it, so X
   vouches for what that parent vouched (a refused value stays refused and
   keeps the name of whoever introduced it).
3. Else it is X's own edit, judged by `rules` from a parent's vouched value;
   if refused, X keeps vouching for the old value and the refusal is kept.
   An edit of a value that is no longer the one vouched for there (superseded
   since X was made, or never authorised) is judged as the edit of whoever
   landed it (`_edit_author`): an old signed change cannot undo a later one.

A signed payload counts once: a commit whose payload (the commit without its
signature headers) another commit carried first, and a malformed commit (two
signature headers, a signature not armored as ssh-keygen writes it), hold no
identity, and the landing that brings one in is refused (`_claim_payloads`).

A landing is authorised when M's content equals what M vouches for wherever it
differs from the effective state. The effective state takes, per path and
per field, the new content only where it is vouched; a refused change never
becomes policy nor a base for later edits. Where main's content and the
effective state part, `verify` says so.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from reconciler.config import build_environment, build_policy, disowned
from reconciler.errors import ConfigError, HistoryRewrittenError, ReconcilerError
from reconciler.events import (
    APPROVE,
    DEPLOY,
    FINISHED,
    HUMAN_TRAILERS,
    RESULT,
    RETRY,
    PlanRef,
    Record,
    Signoff,
    is_run_id,
    miscased_keys,
    parse_plan_ref,
    parse_record,
    read_trailers,
    record_refusal,
)
from reconciler.fields import (
    CONTENT,
    INVALID,
    ORDER,
    TEXT,
    FieldMap,
    changed_keys,
    describe_field,
    invalid,
    teams_data,
    value,
    whole_file,
)
from reconciler.gitrepo import FILE_MODES, NULL_OID, CommitInfo, GitRepo, HistoryEntry
from reconciler.identity import NO_IDENTITY, Actor, CommitFacts, resolve
from reconciler.journal import IgnoredTrailer, Landing, PlanEdit, VersionLanded
from reconciler.layout import TEAMS_FILE, place
from reconciler.loader import MAX_FILE_BYTES, dump, load
from reconciler.model import Policy, Snapshot
from reconciler.openpgp import Keyring
from reconciler.permissions import (
    PLAN_APPROVE,
    PLAN_DEPLOY,
    Verdict,
    may_change_settings,
    may_on_environment,
)
from reconciler.readahead import (
    PREFETCH,
    STRUCTURED,
    ParsedVersions,
    ReadAhead,
    ReadBatch,
    SignatureCheck,
    parse_version,
    prepare,
)
from reconciler.revocation import Revocations, screened
from reconciler.rules import judge_change, judge_signoff, landing_style, triggers
from reconciler.signatures import UNVERIFIED, check_commit_signature
from reconciler.signatures import SignatureCheck as SignatureResult
from reconciler.statestore import Position, StateStore
from reconciler.verdicts import LandingVerdict, Refusal

DEFAULT_CAP: Final = 1000
Progress = Callable[[int, int], None]


class Ignore(Protocol):
    """Keeps a trailer that does not count, with why (and the record, when it is one)."""

    def __call__(self, reason: str, record: Record | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class VerifyResult:
    anchor: str
    tip: str
    judged: tuple[LandingVerdict, ...]  # landings judged by this pass, oldest first
    differs: Mapping[str, tuple[str, ...]]  # path -> fields where main is not effective
    ignored: tuple[IgnoredTrailer, ...] = ()  # trailers this pass found counting for nothing

    @property
    def authorised(self) -> bool:
        return all(verdict.authorised for verdict in self.judged)


@dataclass(slots=True)
class _Landing:
    """Per-landing working memory: what each commit vouches for, and who is to blame."""

    seq: int
    commit: str  # the first-parent commit that lands the others
    first_parent: str | None
    entries: dict[str, HistoryEntry]
    changes: dict[str, dict[str, Any]]
    vouched: dict[str, dict[str, FieldMap]] = field(default_factory=dict)
    culprits: dict[str, dict[str, Mapping[str, Refusal | None]]] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)
    editors: dict[str, set[str]] = field(default_factory=dict)
    # The runs its records end (commit -> the record, as it counted), and why the others'
    # records do not count: deployments/ moves only with a finish record that counts.
    finishes: dict[str, Record] = field(default_factory=dict)
    void: dict[str, str] = field(default_factory=dict)
    unattributed: list[tuple[str, str]] = field(default_factory=list)  # (commit, why)


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
    ) -> None:
        self.repo = repo
        self.revoked = revoked
        self.store = store
        self.now = now
        self.cap = cap
        self.progress = progress
        self.effective: dict[str, dict[str, str]] = {}
        # Where main's content is not the effective state: path -> field -> who put it there.
        self.dirty: dict[str, dict[str, Refusal | None]] = {}
        self._policy: Policy | None = None
        self._versions = ParsedVersions()  # parsed plan and teams.yaml versions
        self._reader = ReadAhead(repo, store, self._versions, size=batch, workers=workers)
        self._boundary_blobs: dict[tuple[str, str], str | None] = {}
        self._facts: dict[str, CommitFacts] = {}
        self._checks: dict[str, SignatureCheck] = {}  # what `_facts` were made from
        # The OpenPGP certificates of every policy built so far (`policy`), and for each
        # commit whose OpenPGP signature none of them could check, the keyring's
        # generation it was last tried with (`_settled`).
        self._keyring = Keyring()
        self._unverified: dict[str, int] = {}
        # The first commit the walk met carrying a payload digest (None: none yet), for
        # the digests of the batch at hand and those looked up since.
        self._carriers: dict[str, str | None] = {}
        # Every rule that judges a commit asks who made it: answers last for the
        # batch and the policy (`_actor`, `_may_deploy`).
        self._actors: dict[tuple[str, bool], Actor] = {}
        self._deploy_verdicts: dict[tuple[str, str], Verdict] = {}
        self._answers_policy: Policy | None = None
        self._stamps: dict[str, datetime] = {}  # commit -> committer date
        self._infos: dict[str, CommitInfo] = {}
        self._next_seq = 0
        self._loaded: str | None = None  # the tip whose state this object holds, as stored
        self._walked: str | None = None
        self._touched: set[str] = set()
        self._ignored: list[IgnoredTrailer] = []  # this run's ignored trailers
        self.anchor = ""

    # -- public -------------------------------------------------------------

    def run(
        self,
        tip: str,
        *,
        trust_anchor: str | None = None,
        persist: bool = True,
        older: bool = False,
        re_anchor: bool = False,
    ) -> VerifyResult:
        """Walk to `tip`; with `persist=False` the caller must `discard()` afterwards.

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
        # The position is read inside the transaction: another process's pass
        # may have moved it while this one waited for the lock.
        self._ignored = []
        self.store.begin()
        try:
            if re_anchor:
                assert trust_anchor is not None
                self.store.reset(self.repo.ancestors(trust_anchor))
                self._loaded = None
            position = self.store.position()
            if position is None:
                anchor = trust_anchor or default_anchor(self.repo, tip)
                position = self._anchor(anchor)
            else:
                if position.last_verified != self._loaded:
                    self._restore()
                if not self.store.payloads_counted():
                    self._count_payloads(position.anchor)
            self.anchor = position.anchor
            judged = self._walk(tip, position, older=older)
        except BaseException:
            self.store.rollback()
            self._loaded = None
            self._touched.clear()
            raise
        if persist:
            self._loaded = None  # should the commit fail, what this object holds is ahead
            self.store.commit()
            # What this object holds is what the store holds: the next run may skip reloading.
            self._loaded = tip
        else:
            # The walk's writes stay uncommitted, readable by `decide.gather` on
            # this store, until `keep()` commits or `discard()` rolls them back.
            self._loaded = None
        self._walked = tip
        return VerifyResult(
            anchor=position.anchor,
            tip=tip,
            judged=judged,
            differs={
                path: tuple(describe_field(key) for key in sorted(detail))
                for path, detail in self.dirty.items()
            },
            ignored=tuple(self._ignored),
        )

    def _restore(self) -> None:
        """Hold the effective state as the store has it, and judge by its policy.

        The policy built from the state this object held before (a walk that
        was discarded, or one another walker has since moved past) must not
        judge a single landing more.
        """
        self.effective = self.store.effective()
        self.dirty = self.store.dirty()
        self._policy = None

    def keep(self) -> None:
        """Commit what a `run(persist=False)` wrote, once what it walked is published."""
        self.store.commit()
        self._loaded = self._walked

    def discard(self) -> None:
        """Forget what a `run(persist=False)` wrote (a dry run, a commit off the branch)."""
        self.store.rollback()
        self._loaded = None

    def effective_file(self, path: str) -> bytes | None:
        """The effective content of a file judged whole (environments/, deployments/)."""
        blob = value(self.effective.get(path, {}), CONTENT)
        return None if blob is None else self.repo.read_blob(blob)

    def fields_of(self, path: str, blob: str | None, mode: str) -> FieldMap:
        """The values of `path` holding `blob` (None: absent) with `mode`, read as the
        walk reads them."""
        return self._fields_for(path, blob, mode)

    def policy(self) -> Policy:
        if self._policy is None:
            self._policy = self.learn_keys(policy_from(self.effective, self.repo, self.now))
        return self._policy

    def learn_keys(self, policy: Policy) -> Policy:
        """Check OpenPGP signatures with the certificates `policy` lists, too: those of
        every policy the walk builds, and of one judged outside it (re-anchoring's).
        Returns `policy` as the walk may use it: a key two certificates met so far list
        is nobody's."""
        identities = (policy.users, policy.service_accounts, policy.hosts)
        self._keyring.add(key for ids in identities for i in ids.values() for key in i.keys)
        return disowned(policy, self._keyring.shared(policy.key_owner))

    # -- anchoring ------------------------------------------------------------

    def _anchor(self, anchor: str) -> Position:
        """Trust `anchor`'s tree wholesale as the first effective state."""
        malformed = self.repo.malformed_tree(anchor)
        if malformed is not None:
            folder, why = malformed
            raise ConfigError(
                f"the trust anchor {anchor[:12]} holds a malformed tree at "
                f"{folder + '/' if folder else 'the root folder'}: {why}",
                hint="anchor on a commit whose trees git fsck accepts",
            )
        self.effective = {}
        files = self.repo.tree_files(anchor)
        wanted = [
            (path, str(placement.kind), placement.name, oid)
            for path, (_, oid) in files.items()
            if (placement := place(path)).kind in STRUCTURED
        ]
        self._versions.add(prepare(self.repo, [], frozenset(), wanted)[2])
        for path, (mode, oid) in files.items():
            if mode not in FILE_MODES and place(path).kind is not None:
                raise ConfigError(
                    f"the trust anchor {anchor[:12]} holds a symlink or submodule at {path}",
                    hint="anchor on a commit whose configuration holds plain files only",
                )
            fields = self._fields_for(path, oid, mode)
            if fields:
                self.effective[path] = dict(fields)
        if TEAMS_FILE not in self.effective:
            raise ConfigError(
                f"the trust anchor {anchor[:12]} has no teams.yaml",
                hint="pass --trust-anchor with the first commit that holds the configuration",
            )
        teams_blob = self.repo.blob_at(anchor, TEAMS_FILE)
        problem = _policy_problem(self.effective, self.repo, teams_blob)
        if problem:
            raise ConfigError(
                f"the trust anchor {anchor[:12]}'s configuration is invalid: {problem}",
                hint="anchor on a commit whose teams.yaml and environments/ validate",
            )
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
            self._add_plan_version(path, blob, anchor, seq, policy, may_trigger=False)

    def _claim_history(self, anchor: str) -> None:
        """The anchor and everything before it carried their signed payloads first: a
        copy of a commit signed before the anchor (a re-anchor, a --trust-anchor) must
        not count as its signer's later. One pass over the commits, at anchoring."""
        carriers: dict[str, str] = {}
        for commit, key in self._claim_keys(self.repo.ancestors(anchor)).items():
            carriers.setdefault(key, commit)
        self.store.add_carriers(carriers)

    def _claim_keys(self, commits: list[str]) -> dict[str, str]:
        """What each of `commits` would claim (`claim_key`), read and checked in batches;
        commits that claim nothing are left out."""
        keys: dict[str, str] = {}
        self.policy()  # its certificates in the keyring
        for start in range(0, len(commits), PREFETCH):
            infos = self.repo.commits(commits[start : start + PREFETCH])
            for commit, info in infos.items():
                key = claim_key(check_commit_signature(info.raw, keyring=self._keyring))
                if key is not None:
                    keys[commit] = key
        return keys

    def _count_payloads(self, anchor: str) -> None:
        """A state kept before payloads were counted: count those of the anchor and of
        every commit its walks landed, in their order, so no copy of one counts later."""
        self._claim_history(anchor)
        landings = [list(item.verdict.landed) for item in self.store.landings()]
        digests = self._claim_keys([commit for landed in landings for commit in landed])
        carriers: dict[str, str] = {}
        for landed in landings:
            for digest, carrier in _first_carriers(landed, digests, carriers).items():
                carriers[digest] = carrier
        self.store.add_carriers(carriers)
        self.store.mark_payloads_counted()

    # -- the walk ------------------------------------------------------------

    def _walk(self, tip: str, position: Position, *, older: bool) -> tuple[LandingVerdict, ...]:
        last = position.last_verified
        if last == tip:
            return ()
        chain = self.repo.first_parent_chain(tip, last)
        first = self.repo.commit(chain[0]) if chain else None
        # The common case needs no merge-base: last is the first parent of the chain's start.
        off_chain = first is None or first.parents[:1] != (last,)
        if off_chain and not self.repo.is_ancestor(last, tip):
            if older and self.repo.is_ancestor(tip, last):
                return ()  # an older commit of the verified history: nothing new to judge
            raise HistoryRewrittenError(
                f"{self.store.branch} ({tip[:12]}) does not descend from the last verified "
                f"commit {last[:12]}: "
                "history was rewritten",
                hint="if the rewrite is legitimate, run `reconciler verify --re-anchor REV` with a "
                "commit signed by a settings user; and deny force-pushes to main on the Git host",
            )
        verdicts: list[LandingVerdict] = []
        pending: dict[str, HistoryEntry] = {}
        targets = {tip} if off_chain else set(chain)
        total = len(targets)
        self._next_seq = self.store.next_seq()

        def judge(batch: ReadBatch) -> None:
            self._install(batch)
            landings: list[tuple[str, str | None, list[HistoryEntry]]] = []
            for entry in batch.entries:
                pending[entry.id] = entry
                if entry.id in targets:
                    first_parent = last if off_chain else (entry.parents[:1] or (None,))[0]
                    landings.append((entry.id, first_parent, _take_landed(pending, entry.id)))
            self._read_boundaries([landed for _, _, landed in landings])
            for commit, first_parent, landed in landings:
                verdicts.append(self._judge(commit, first_parent, landed))
                if self.progress is not None:
                    self.progress(len(verdicts), total)

        with contextlib.closing(self._reader.batches(self.repo.history(tip, last))) as batches:
            for batch in batches:
                judge(batch)
        self.store.set_position(Position(position.anchor, tip, self.store.branch))
        for path in self._touched:
            self.store.replace_effective(path, self.effective.get(path, {}))
        self._touched.clear()
        self._save_dirty()
        return tuple(verdicts)

    def prefetch(self, commits: list[str]) -> None:
        """Read many commits and check their signatures in one batch (`decide.gather`)."""
        self._install(self._reader.read_now(commits))

    def _install(self, batch: ReadBatch) -> None:
        """Make `batch` the one whose commits the judging reads; the caches hold one batch."""
        self._infos = batch.infos
        self.policy()  # its certificates in the keyring
        self._checks = {
            commit: self._settled(commit, check) for commit, check in batch.checks.items()
        }
        keys = {commit: claim_key(check) for commit, check in self._checks.items()}
        # One look-up for the batch: the landings judged from it then ask the store nothing.
        self._carriers = self.store.carriers(key for key in keys.values() if key is not None)
        self._facts = {}
        for commit, info in batch.infos.items():
            key = keys.get(commit)
            carrier = None if key is None else self._carriers[key]
            check = _copy_of(commit, self._checks[commit], carrier)
            self._facts[commit] = _facts_of(info, check, self.revoked)
        self._boundary_blobs = {}
        self._actors = {}
        self._stamps = {}

    def _read_boundaries(self, landings: list[list[HistoryEntry]]) -> None:
        """What the commits just outside each landing hold at the paths it touches.

        The diff against a first parent already says what that parent held; the
        rest (the bases of merged side branches) are looked up in one batch.
        """
        lookups: list[tuple[str, str]] = []
        for landed in landings:
            inside = {entry.id for entry in landed}
            paths = {change.path for entry in landed for change in entry.changes}
            for entry in landed:
                if entry.parents and entry.parents[0] not in inside:
                    for change in entry.changes:
                        old = None if change.old_blob == NULL_OID else change.old_blob
                        self._boundary_blobs[(entry.parents[0], change.path)] = old
            for entry in landed:
                for parent in entry.parents:
                    if parent not in inside:
                        lookups.extend((parent, path) for path in paths)
        missing = [place for place in lookups if place not in self._boundary_blobs]
        self._boundary_blobs.update(self.repo.blobs_at(missing))

    def _judge(
        self, commit: str, first_parent: str | None, landed: list[HistoryEntry]
    ) -> LandingVerdict:
        policy = self.policy()
        seq = self._next_seq
        self._next_seq += 1
        work = _Landing(
            seq=seq,
            commit=commit,
            first_parent=first_parent,
            entries={entry.id: entry for entry in landed},
            changes={
                entry.id: {change.path: change for change in entry.changes} for entry in landed
            },
        )
        paths = sorted({path for changes in work.changes.values() for path in changes})
        self.store.mark_seen(work.entries, self.now)
        self._claim_payloads(work)
        whole = _refused_whole(landed, self.cap)
        if whole is not None:
            needed, reason, where = whole
            actor = self._display_actor(commit, policy)
            refused = tuple(
                Refusal(commit, path, "", actor, "", needed, (reason,)) for path in paths or [where]
            )
            blame = {refusal.path: refusal for refusal in refused}
            for path in paths:
                actual = self._actual(commit, path, work)
                self._mark_dirty(path, actual, dict.fromkeys(actual, blame[path]))
            return self._record(work, commit, policy, refused, (), ())
        # Events first: judging an edit of deployments/ asks whether its record counts.
        for entry in landed:
            self._collect_events(entry, work, policy)
        for entry in landed:
            self._vouch(entry, paths, policy, work)
        before = {path: dict(self.effective.get(path, {})) for path in paths}
        refusals: list[Refusal] = []
        changed: list[str] = []
        for path in paths:
            refusals.extend(self._settle(commit, path, work, changed))
        refusals.extend(self._check_policy(commit, changed, policy, before, work))
        final = set(refusals)
        superseded = tuple(refusal for refusal in work.refused if refusal not in final)
        self._note_plan_versions(commit, first_parent, paths, work, policy)
        for path, actors in work.editors.items():
            self.store.add_editors(path, actors)
        return self._record(work, commit, policy, tuple(refusals), tuple(changed), superseded)

    def _vouch(self, entry: HistoryEntry, paths: list[str], policy: Policy, work: _Landing) -> None:
        commit = entry.id
        parents = entry.parents
        vouched: dict[str, FieldMap] = {}
        culprits: dict[str, Mapping[str, Refusal | None]] = {}
        changes = work.changes[commit]
        for path in paths:
            if len(parents) == 1 and path not in changes:
                vouched[path] = self._vouched(parents[0], path, work)
                culprits[path] = self._culprits(parents[0], path, work)
                continue
            actual = self._actual(commit, path, work)
            parent_vouched = [self._vouched(parent, path, work) for parent in parents] or [
                self.effective.get(path, {})
            ]
            parent_actual = [self._actual(parent, path, work) for parent in parents] or [{}]
            # A value equal to the first parent's vouched one is vouched as it is:
            # only the others need a look.
            own: dict[str, str] = dict(actual)
            blame: dict[str, Refusal | None] = {}
            own_edits: list[str] = []
            for key in _text_last(changed_keys(parent_vouched[0], actual)):
                current = actual.get(key)
                if any(candidate.get(key) == current for candidate in parent_vouched) or (
                    key == ORDER and _order_kept(current, parent_vouched)
                ):
                    _put(own, key, current)
                    continue
                same = next(
                    (
                        i
                        for i, candidate in enumerate(parent_actual)
                        if candidate.get(key) == current
                    ),
                    None,
                )
                if same is not None:
                    _put(own, key, parent_vouched[same].get(key))
                    inherited = self._culprits(parents[same], path, work) if parents else {}
                    if inherited.get(key) is not None:
                        blame[key] = inherited[key]
                    continue
                own_edits.append(key)
                if key == TEXT and len(own_edits) > 1:
                    # teams.yaml's text changes with every edit of it: it follows
                    # the commit's other edits there, and a refusal is told once.
                    refusal = next((blame[edit] for edit in own_edits if edit in blame), None)
                else:
                    refusal = self._own_edit(
                        commit, path, key, parent_vouched, parent_actual, actual, policy, work
                    )
                if refusal is None:
                    _put(own, key, current)
                else:
                    _put(own, key, parent_vouched[0].get(key))
                    blame[key] = refusal
            if place(path).kind == "plan" and (len(parents) <= 1 or own_edits):
                if len(parents) == 1:
                    self._note_edit(commit, path, parent_actual[0], actual, blame, policy, work)
                else:  # a merge's edits are the values no parent has, not its branches'
                    self._note_edit(
                        commit, path, parent_vouched[0], actual, blame, policy, work, own_edits
                    )
            vouched[path] = own
            culprits[path] = blame
        work.vouched[commit] = vouched
        work.culprits[commit] = culprits

    def _own_edit(
        self,
        commit: str,
        path: str,
        key: str,
        parent_vouched: list[FieldMap],
        parent_actual: list[FieldMap],
        actual: FieldMap,
        policy: Policy,
        work: _Landing,
    ) -> Refusal | None:
        finish = work.finishes.get(commit) or work.void.get(commit)
        first = None
        for base, found in zip(parent_vouched, parent_actual, strict=True):
            author = _edit_author(commit, work.commit, key, found, base)
            # A record speaks for its own commit only, never for one who landed it stale.
            record = finish if author == commit else None
            judgement = judge_change(policy, self.facts(author), path, key, base, actual, record)
            if judgement.verdict:
                # The merger edits what a merge changes, and who lands a stale edit edits it.
                brought = len(work.entries[commit].parents) > 1 or author != commit
                if brought and place(path).kind == "plan" and judgement.actor.id:
                    work.editors.setdefault(path, set()).add(judgement.actor.id)
                return None
            if first is None:
                stale = (
                    (
                        f"{commit[:12]} changed a value that is no longer the effective one, "
                        f"so the change counts as an edit by whoever landed it ({author[:12]})",
                    )
                    if author != commit
                    else ()
                )
                first = (judgement, stale)
        assert first is not None
        judgement, stale = first
        refusal = Refusal(
            commit,
            path,
            key,
            judgement.actor.name,
            judgement.actor.how,
            judgement.needed,
            stale + judgement.verdict.reasons + judgement.hints,
        )
        work.refused.append(refusal)
        return refusal

    def _note_edit(
        self,
        commit: str,
        path: str,
        before: FieldMap,
        after: FieldMap,
        blame: Mapping[str, Refusal | None],
        policy: Policy,
        work: _Landing,
        edited: list[str] | None = None,
    ) -> None:
        """Remember who edited a plan, and what, for approvals (editors) and `history`;
        `edited`: the fields the commit changed, when not all that differ from `before`."""
        fields = after or before
        target = value(fields, "target")
        environment = policy.environments.get(target) if isinstance(target, str) else None
        signed = environment.gates.signed_commits if environment else True
        actor = self._actor(commit, policy, signed=signed)
        if actor.id:
            work.editors.setdefault(path, set()).add(actor.id)
        changed = changed_keys(before, after) if edited is None else sorted(edited)
        refused = sorted(
            key
            for key, refusal in blame.items()
            if refusal is not None and refusal.commit == commit
        )
        self.store.add_event(
            PlanEdit(
                commit=commit,
                seq=work.seq,
                path=path,
                change="created" if not before else "deleted" if not after else "edited",
                fields=tuple(describe_field(key) for key in changed),
                state=(value(before, "state"), value(after, "state")),
                environment=target if isinstance(target, str) else None,
                actor=actor.id,
                claimed=self._display_actor(commit, policy),
                how=actor.how,
                refused=tuple(describe_field(key) for key in refused),
                merge=len(work.entries[commit].parents) > 1,
                committed_at=self._committed_at(commit),
            )
        )

    def _settle(self, commit: str, path: str, work: _Landing, changed: list[str]) -> list[Refusal]:
        """Compare M's content with what M vouches for; update the effective state."""
        actual = self._actual(commit, path, work)
        vouched = work.vouched[commit][path]
        before = self.effective.get(path, {})
        after = dict(before)
        refusals: dict[str, Refusal] = {}
        for key in changed_keys(before, actual):
            current = actual.get(key)
            if vouched.get(key) == current:
                _put(after, key, current)
                continue
            culprit = work.culprits[commit][path].get(key)
            refusals[key] = culprit or self._unexplained(commit, path, key)
        if after != before:
            self._set_effective(path, after)
            changed.append(path)
        self._mark_dirty(path, actual, refusals)
        return list(dict.fromkeys(refusals.values()))

    def _unexplained(self, commit: str, path: str, key: str) -> Refusal:
        return Refusal(
            commit,
            path,
            key,
            self._display_actor(commit, self.policy()),
            "",
            "an authorised edit",
            (
                "no landed commit made this change with permission (a merge kept content "
                "that was never authorised)",
            ),
        )

    def _check_policy(
        self,
        commit: str,
        changed: list[str],
        judging: Policy,
        before: Mapping[str, Mapping[str, str]],
        work: _Landing,
    ) -> list[Refusal]:
        """A landing may not leave the policy invalid; if it would, its policy edits are refused."""
        policy_paths = [path for path in changed if place(path).kind in ("teams", "environment")]
        if not policy_paths:
            return []
        teams_blob, _ = self._blob_and_mode(commit, TEAMS_FILE, work)
        if self._fields_for(TEAMS_FILE, teams_blob, "") != self.effective.get(TEAMS_FILE, {}):
            teams_blob = None  # the effective teams.yaml is no blob: validate its fields
        problem = _policy_problem(self.effective, self.repo, teams_blob)
        self._policy = None
        if not problem:
            return []
        refusals = []
        for path in policy_paths:
            self._set_effective(path, before[path])
            changed.remove(path)
            refusal = Refusal(
                commit,
                path,
                "",
                self._display_actor(commit, judging),
                "",
                "a valid policy",
                (f"the resulting configuration is invalid: {problem}",),
            )
            actual = self._actual(commit, path, work)
            self._mark_dirty(path, actual, dict.fromkeys(actual, refusal))
            refusals.append(refusal)
        self._policy = None
        return refusals

    def _note_plan_versions(
        self,
        commit: str,
        first_parent: str | None,
        paths: list[str],
        work: _Landing,
        policy: Policy,
    ) -> None:
        """Plan versions this landing made effective, and whether it triggered them."""
        for path in paths:
            if place(path).kind != "plan" or path in self.dirty:
                continue
            blob = self._blob(commit, path, work)
            if blob is None:
                continue
            if first_parent is not None and self._blob(first_parent, path, work) == blob:
                continue
            parents = work.entries[commit].parents
            onto_main = not parents or parents[0] == first_parent
            self._add_plan_version(
                path, blob, commit, work.seq, policy, may_trigger=True, onto_main=onto_main
            )

    def _add_plan_version(
        self,
        path: str,
        blob: str,
        commit: str,
        seq: int,
        policy: Policy,
        *,
        may_trigger: bool,
        onto_main: bool = True,
    ) -> None:
        """Remember that `commit` landed `path`@`blob` (effective now), and whether its actor
        triggered it by landing it (`may_trigger`: a landing may, a trust anchor never;
        `onto_main`: its first parent was main's previous commit)."""
        fields = self.effective.get(path, {})
        target = value(fields, "target")
        environment = policy.environments.get(target) if isinstance(target, str) else None
        signed = environment.gates.signed_commits if environment else True
        actor = self._actor(commit, policy, signed=signed)
        # An anchor's plans have no style: its reason says why nothing triggered them.
        style = landing_style(self.facts(commit), actor, onto_main=onto_main) if may_trigger else ""
        verdict = (
            self._may_deploy(policy, actor.name, target)
            if may_trigger and actor.known and isinstance(target, str) and triggers(style)
            else None
        )
        if verdict is not None:
            reasons = list(verdict.reasons)
        elif may_trigger:
            reasons = [actor.how]
        else:
            reasons = ["it came with the trust anchor, which triggers nothing"]
        self.store.add_plan_version(
            VersionLanded(
                path=path,
                blob=blob,
                landing=commit,
                seq=seq,
                committed_at=self._committed_at(commit),
                actor=actor.id,
                how=actor.how,
                verified=actor.verified,
                triggered=bool(verdict),
                # How it landed: a squash or a branch that merged main in is no trigger.
                style=style,
                squashed_by=actor.squashed_by,
                # Only a ready, valid version runs, so only its landing is a trigger
                # (history); None: invalid.
                state=None if INVALID in fields else value(fields, "state"),
                reasons=tuple(reasons),
            )
        )

    def _record(
        self,
        work: _Landing,
        commit: str,
        judging: Policy,
        refusals: tuple[Refusal, ...],
        changed: tuple[str, ...],
        superseded: tuple[Refusal, ...],
    ) -> LandingVerdict:
        verdict = LandingVerdict(
            commit=commit,
            first_parent=work.first_parent,
            landed=tuple(work.entries),
            actor=self._display_actor(commit, judging),
            refusals=refusals,
            changed=changed,
            superseded=superseded,
            unattributed=tuple(work.unattributed),
        )
        self.store.add_landing(Landing(work.seq, verdict, self._committed_at(commit)))
        return verdict

    def _save_dirty(self) -> None:
        self.store.set_dirty(self.dirty)

    # -- state ---------------------------------------------------------------

    def _set_effective(self, path: str, fields: Mapping[str, str]) -> None:
        if fields:
            self.effective[path] = dict(fields)
        else:
            self.effective.pop(path, None)
        self._touched.add(path)  # written to the store once, at the end of the walk
        if place(path).kind in ("teams", "environment"):
            self._policy = None

    def _mark_dirty(self, path: str, actual: FieldMap, blame: Mapping[str, Refusal]) -> None:
        effective = self.effective.get(path, {})
        if dict(actual) == effective:
            self.dirty.pop(path, None)
            return
        self.dirty[path] = {
            key: blame.get(key)
            for key in sorted(set(actual) | set(effective))
            if actual.get(key) != effective.get(key)
        }

    def _culprits(self, commit: str, path: str, work: _Landing) -> Mapping[str, Refusal | None]:
        """Who introduced each unvouched value at `commit` (known inside the landing, and at P)."""
        if commit in work.culprits:
            return work.culprits[commit].get(path, {})
        if commit == work.first_parent:
            return self.dirty.get(path, {})
        return {}

    def _vouched(self, commit: str, path: str, work: _Landing) -> FieldMap:
        if commit in work.vouched:
            return work.vouched[commit][path]
        return self.effective.get(path, {})

    # -- content -------------------------------------------------------------

    def _actual(self, commit: str, path: str, work: _Landing) -> FieldMap:
        blob, mode = self._blob_and_mode(commit, path, work)
        return self._fields_for(path, blob, mode)

    def _blob(self, commit: str, path: str, work: _Landing) -> str | None:
        return self._blob_and_mode(commit, path, work)[0]

    def _blob_and_mode(self, commit: str, path: str, work: _Landing) -> tuple[str | None, str]:
        current = commit
        while current in work.entries:
            change = work.changes[current].get(path)
            if change is not None:
                blob = None if change.new_blob == NULL_OID else change.new_blob
                return blob, change.new_mode
            parents = work.entries[current].parents
            if not parents:
                return None, ""
            current = parents[0]
        key = (current, path)
        if key not in self._boundary_blobs:
            self._boundary_blobs[key] = self.repo.blob_at(current, path)
        return self._boundary_blobs[key], "100644"

    def _fields_for(self, path: str, blob: str | None, mode: str) -> FieldMap:
        if blob is None:
            return {}
        placement = place(path)
        kind = placement.kind or ""
        if mode and mode not in FILE_MODES:
            return invalid("symlinks and submodules are refused in the configuration")
        if kind not in STRUCTURED:
            return whole_file(blob)
        key = (kind, placement.name, blob)
        cached = self._versions.get(key)
        if cached is None:  # not parsed with its batch (a version outside the walk)
            if self.repo.blob_size(blob) > MAX_FILE_BYTES:
                return invalid(f"larger than {MAX_FILE_BYTES:,} bytes")
            raw = self.repo.read_blob(blob)
            cached = parse_version(path, kind, placement.name, blob, raw)
            self._versions.put(key, cached)
        return cached

    def facts(self, commit: str) -> CommitFacts:
        cached = self._facts.get(commit)
        if cached is not None:
            if cached.signature_status != UNVERIFIED or not self._may_settle(commit):
                return cached
            # Its key may be in a certificate the keyring gained since: who it was is asked again.
            self._actors.pop((commit, True), None)
            self._actors.pop((commit, False), None)
        info = self.info(commit)
        stored = self.store.signatures([commit]).get(commit)
        if stored is None:
            stored = self._check(commit)
        self._checks[commit] = stored
        key = claim_key(stored)
        stored = _copy_of(commit, stored, None if key is None else self._carrier(key))
        facts = self._facts[commit] = _facts_of(info, stored, self.revoked)
        return facts

    def _settled(self, commit: str, check: SignatureCheck) -> SignatureCheck:
        """`check`; while it waits for a certificate ("unverified": an OpenPGP signature
        none at hand holds the key of), checked again when the keyring may hold one."""
        return self._check(commit) if self._may_settle(commit, check) else check

    def _may_settle(self, commit: str, check: SignatureCheck | None = None) -> bool:
        waiting = check is None or check[0] == UNVERIFIED
        return waiting and self._unverified.get(commit) != self._keyring.generation

    def _check(self, commit: str) -> SignatureCheck:
        """The commit's signature checked (with the keyring), and remembered unless it waits
        for a certificate: then the keyring's generation, so it is tried again only after
        the keyring grew."""
        result = check_commit_signature(self.info(commit).raw, keyring=self._keyring)
        check = (result.status, result.fingerprint, result.reason, result.payload)
        if result.status == UNVERIFIED:
            self._unverified[commit] = self._keyring.generation
        else:
            self._unverified.pop(commit, None)
            self.store.remember_signatures({commit: check})
        return check

    def _carrier(self, key: str) -> str | None:
        if key not in self._carriers:
            self._carriers.update(self.store.carriers([key]))
        return self._carriers[key]

    def _claim_payloads(self, work: _Landing) -> None:
        """Record the payloads this landing carries first, and the landed commits that
        hold no identity: malformed ones, and those carrying a payload another commit
        carried first (`_copy_of`).

        The first carrier counts whatever its landing's verdict: a payload counts
        once, and its first landing may have made some of its values effective.
        Commits of earlier batches (landed by a later merge) are not read again:
        their checks are in the store since their batch.
        """
        earlier = [commit for commit in work.entries if commit not in self._checks]
        stored = self.store.signatures(earlier) if earlier else {}
        checks: dict[str, SignatureCheck] = {}
        for commit in work.entries:
            check = self._checks.get(commit) or stored.get(commit)
            if check is None or check[0] == UNVERIFIED:  # never read, or its key unknown then
                self.facts(commit)
                check = self._checks[commit]
            checks[commit] = check
        digests = {
            commit: key
            for commit, key in ((commit, claim_key(check)) for commit, check in checks.items())
            if key is not None
        }
        unknown = [digest for digest in digests.values() if digest not in self._carriers]
        if unknown:
            self._carriers.update(self.store.carriers(unknown))
        first = _first_carriers(list(work.entries), digests, self._carriers)
        self._carriers.update(first)
        self.store.add_carriers(first)
        for commit, read in checks.items():
            digest = digests.get(commit)
            check = read if digest is None else _copy_of(commit, read, self._carriers[digest])
            if check is not read and commit in self._facts:
                self._facts[commit] = _facts_of(self.info(commit), check, self.revoked)
                self._actors.pop((commit, True), None)
                self._actors.pop((commit, False), None)
            if check[0] in NO_IDENTITY:
                work.unattributed.append((commit, check[2]))

    def info(self, commit: str) -> CommitInfo:
        cached = self._infos.get(commit)
        if cached is None:
            cached = self._infos[commit] = self.repo.commit(commit)
        return cached

    # -- events ----------------------------------------------------------------

    def _collect_events(self, entry: HistoryEntry, work: _Landing, policy: Policy) -> None:
        """Approvals, triggers, retries and records this landed commit carries."""
        info = self.info(entry.id)
        read = read_trailers(info.message, info.encoding)
        if read.refused is not None:
            self._ignorer(entry.id, work.seq, read.by_key(), policy)(read.refused)
            return
        trailers = read.counted()
        if not trailers:
            return
        ignore = self._ignorer(entry.id, work.seq, trailers, policy)
        if len(entry.parents) != 1:
            ignore("a merge commit's message never counts (hosts copy pull-request text there)")
            return
        if RESULT in trailers:
            # A record from an unrelated history (one service key signing for two
            # repositories) must not say that a run started or ended here. A fork shares
            # the anchor, so this does not tell its records apart: one key per repository.
            if self._descends_from_anchor(entry, work):
                self._collect_record(entry, work, policy, trailers, ignore)
            else:
                ignore("the commit does not descend from the trust anchor")
            return
        for written, meant in miscased_keys(trailers):
            ignore(
                f"'{written}' is not a key the reconciler reads: "
                f"trailer keys are exact, write '{meant}'"
            )
        if not any(key in trailers for key in HUMAN_TRAILERS):
            return
        if work.changes[entry.id]:
            ignore("the commit also changes files; approvals and triggers are empty commits")
            return
        if not self._descends_from_anchor(entry, work):
            ignore("the commit does not descend from the trust anchor")
            return
        kinds: tuple[tuple[str, Literal["approve", "deploy"], str], ...] = (
            (APPROVE, "approve", PLAN_APPROVE),
            (DEPLOY, "deploy", PLAN_DEPLOY),
        )
        for key, kind, permission in kinds:
            for text in trailers.get(key, ()):
                ref = parse_plan_ref(text)
                if ref is None:
                    ignore(f"{key}: '{text}' is not plans/<file>.yaml@<full blob id>")
                elif self._blob(entry.id, ref.path, work) != ref.blob:
                    ignore(f"{key}: the commit's tree does not hold {ref.path} at {ref.blob[:12]}")
                else:
                    target = value(self._fields_for(ref.path, ref.blob, ""), "target")
                    self._signoff(entry.id, work, policy, kind, permission, ref, None, target)
        for run in trailers.get(RETRY, ()):
            target = self._run_environment(run)
            if target is None:
                ignore(f"{RETRY}: '{run}' is not a run the reconciler recorded")
            else:
                self._signoff(entry.id, work, policy, "retry", PLAN_DEPLOY, None, run, target)

    def _descends_from_anchor(self, entry: HistoryEntry, work: _Landing) -> bool:
        """Whether a single-parent landed commit descends from the trust anchor; a commit
        on main's first-parent chain (every record the reconciler publishes) without asking
        git, as its parent does."""
        if work.first_parent is not None and entry.parents[0] == work.first_parent:
            return True
        return self.repo.is_ancestor(self.anchor, entry.id)

    def _signoff(
        self,
        commit: str,
        work: _Landing,
        policy: Policy,
        kind: Literal["approve", "deploy", "retry"],
        permission: str,
        ref: PlanRef | None,
        run: str | None,
        target: Any,
    ) -> None:
        judgement = judge_signoff(policy, self.facts(commit), permission, target)
        actor, verdict = judgement.actor, judgement.verdict
        signoff = Signoff(
            kind=kind,
            commit=commit,
            seq=work.seq,
            plan=ref,
            run=run,
            actor=actor.id,
            how=actor.how,
            verified=actor.verified,
            held=verdict.allowed,
            reasons=verdict.reasons,
            committed_at=self.info(commit).committer.when,
        )
        self.store.add_event(signoff)

    def _collect_record(
        self,
        entry: HistoryEntry,
        work: _Landing,
        policy: Policy,
        trailers: Mapping[str, tuple[str, ...]],
        ignore: Ignore,
    ) -> None:
        commit = entry.id
        actor = resolve(self.facts(commit), policy, signature_required=True)
        if actor.kind != "service":
            ignore(
                f"a record counts only when signed by the reconciler service account ({actor.how})"
            )
            return
        record = parse_record(commit, work.seq, trailers, self.info(commit).committer.when)
        if isinstance(record, str):
            ignore(record)
            return
        if record.run is not None:
            earlier = self.store.records_of([record.run])
            void = record_refusal(record, earlier, lambda start: self._built_on(entry, start, work))
            if void is not None:
                work.void[commit] = void
                ignore(void, record)
                return
        self.store.add_event(record)
        if record.result in FINISHED:
            work.finishes[commit] = record

    def _built_on(self, entry: HistoryEntry, ancestor: str, work: _Landing) -> bool:
        """Whether a commit that landed (`ancestor`: earlier, or in this landing) is an
        ancestor of a landed commit. Without asking git for one whose parent is main's
        previous commit (every record the reconciler publishes): everything an earlier
        landing brought in is an ancestor of that commit."""
        if ancestor not in work.entries:
            if work.first_parent is not None and entry.parents[:1] == (work.first_parent,):
                return True
            return self.repo.is_ancestor(ancestor, entry.id)
        # Inside the landing, every commit between the two is in it too.
        stack, seen = [entry.id], {entry.id}
        while stack:
            current = stack.pop()
            if current == ancestor:
                return True
            for parent in work.entries[current].parents:
                if parent in work.entries and parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return False

    def _run_environment(self, run: str) -> str | None:
        if not is_run_id(run):
            return None
        for record in self.store.records_of([run]):
            if record.environment:
                return record.environment
        return None

    def _ignorer(
        self, commit: str, seq: int, trailers: Mapping[str, tuple[str, ...]], policy: Policy
    ) -> Ignore:
        # Who wrote the trailers (by signature, else by email): an ignored trailer grants
        # nothing, but `history --user` still shows whose it was, as git log does.
        actor = self._actor(commit, policy, signed=False).id

        def ignore(reason: str, record: Record | None = None) -> None:
            # A record that does not count goes with it: `history` shows it as one.
            ignored = IgnoredTrailer(
                commit=commit,
                seq=seq,
                committed_at=self._committed_at(commit),
                trailers=tuple((key, tuple(values)) for key, values in trailers.items()),
                reason=reason,
                actor=actor,
                record=record,
            )
            self.store.add_event(ignored)
            self._ignored.append(ignored)

        return ignore

    def _display_actor(self, commit: str, policy: Policy) -> str:
        return self._actor(commit, policy, signed=False).name

    def _actor(self, commit: str, policy: Policy, *, signed: bool) -> Actor:
        """`commit`'s actor under `policy` when a signature is (not) required."""
        self._answering(policy)
        key = (commit, signed)
        actor = self._actors.get(key)
        if actor is None:
            actor = self._actors[key] = resolve(
                self.facts(commit), policy, signature_required=signed
            )
        return actor

    def _may_deploy(self, policy: Policy, user: str, environment: str) -> Verdict:
        self._answering(policy)
        key = (user, environment)
        verdict = self._deploy_verdicts.get(key)
        if verdict is None:
            verdict = self._deploy_verdicts[key] = may_on_environment(
                policy, user, PLAN_DEPLOY, environment
            )
        return verdict

    def _answering(self, policy: Policy) -> None:
        """Forget the remembered answers when another policy asks."""
        if policy is not self._answers_policy:
            self._answers_policy = policy
            self._actors = {}
            self._deploy_verdicts = {}

    def _committed_at(self, commit: str) -> datetime:
        stamp = self._stamps.get(commit)
        if stamp is None:
            stamp = self._stamps[commit] = self.info(commit).committer.when
        return stamp


def _facts_of(info: CommitInfo, check: SignatureCheck, revoked: Revocations | None) -> CommitFacts:
    # The signature cache holds what the commit proves; a revocation is applied on
    # top, so revoking or restoring a key never needs the signatures checked again.
    status, fingerprint, reason = screened(*check[:3], revoked)
    return CommitFacts(
        commit=info.id,
        signature_status=status,
        fingerprint=fingerprint,
        signature_reason=reason,
        committer_email=info.committer.email,
        author_email=info.author.email,
        parents=len(info.parents),
        payload=check[3],
    )


def claim_key(check: SignatureCheck | SignatureResult) -> str | None:
    """What a commit claims when it carries a signed payload first: the payload with the
    key whose good signature covers it; nothing for any other commit.

    So a copy stripped of its signature, or signed over the same bytes by another key,
    claims nothing of the signer's, and cannot void the genuine commit before it lands.
    A copy carrying the signer's own good signature still can (the signer commits
    again: a new payload); what it can never do is count a second time.
    """
    if isinstance(check, SignatureResult):
        check = (check.status, check.fingerprint, check.reason, check.payload)
    status, fingerprint, _, payload = check
    if status != "good" or fingerprint is None:
        return None
    return f"{payload} {fingerprint}"


def _copy_of(commit: str, check: SignatureCheck, carrier: str | None) -> SignatureCheck:
    """A signed payload counts once: `commit`, when it carries the payload another
    commit carried first (the same signed bytes under other signature headers, which
    git still calls good), holds no identity. `check` as `_facts_of` takes it; a
    malformed commit holds none anyway, and keeps saying why."""
    if carrier is None or carrier == commit or check[0] == "malformed":
        return check
    reason = f"a copy of {carrier[:12]}'s signed payload (a signed payload counts once)"
    return ("copied", None, reason, check[3])


def _first_carriers(
    commits: list[str], digests: Mapping[str, str], known: Mapping[str, str | None]
) -> dict[str, str]:
    """The payloads of one landing's `commits` that no commit carried before (a carrier
    in `known`), each with its first carrier: the least commit id, as two commits of
    one landing with one payload have the same parents and no order between them."""
    first: dict[str, str] = {}
    for commit in commits:
        digest = digests.get(commit)
        if digest is None or known.get(digest):
            continue
        if digest not in first or commit < first[digest]:
            first[digest] = commit
    return first


def _edit_author(commit: str, landing: str, key: str, base: FieldMap, vouched: FieldMap) -> str:
    """Whose edit it is when `commit` changes `key` from a parent's content `base`, where
    the walk vouches for `vouched`.

    The commit's own while the value it changed is the vouched one. Otherwise that
    value was superseded (or never authorised) by the time the change lands, and
    the signature would let a change made against it (a long-lived branch, an old
    commit merged again) undo a later authorised one: the change is then the edit
    of whoever brought it in, the landing's first-parent commit (`landing`, the
    merge; itself when it is that commit). Like gittuf's reference authorizations,
    which bind an approval to the state it was made from, not to the change alone.
    """
    if base.get(key) == vouched.get(key):
        return commit
    return landing


def _put(target: dict[str, str], key: str, text: str | None) -> None:
    if text is None:
        target.pop(key, None)
    else:
        target[key] = text


def _text_last(keys: list[str]) -> list[str]:
    """`keys` with `TEXT` (if there) moved last, to be judged after the others."""
    if TEXT not in keys:
        return keys
    return [key for key in keys if key != TEXT] + [TEXT]


def _order_kept(order: str | None, parents: list[FieldMap]) -> bool:
    """An order that only adds or drops entries keeps every pair each parent ordered.

    So two leads appending to one plan merge cleanly; a real reorder is an edit.
    """
    if order is None:
        return False
    names: list[str] = json.loads(order)
    for parent in parents:
        before = value(parent, ORDER) or []
        common = set(names) & set(before)
        if [name for name in names if name in common] != [
            name for name in before if name in common
        ]:
            return False
    return True


def _refused_whole(landed: list[HistoryEntry], cap: int) -> tuple[str, str, str] | None:
    """What a landing refused whole (nothing it changes counts, nor anything it says)
    needed, why it is refused, and what to name when it changes no file; None when it
    is judged change by change."""
    if len(landed) > cap:
        holds = f"this landing holds {len(landed)} commits"
        return f"a landing of at most {cap} commits", holds, ""
    for entry in landed:
        if entry.malformed is not None:
            # Git's own readings of a malformed tree disagree with one another (a
            # diff, a path lookup, a rebuilt index): it holds no content to judge.
            folder, problem = entry.malformed
            where = f"{folder}/" if folder else "the root folder"
            reason = f"commit {entry.id[:12]} holds a malformed tree at {where}: {problem}"
            return "well-formed Git objects (as git fsck checks them)", reason, where
    return None


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


def default_anchor(repo: GitRepo, tip: str) -> str:
    """The trust anchor of a fresh state: the one root commit of the followed branch
    (`tip`: the branch's, never a commit under test's, which could bring its own).

    With more than one root there is no safe default: anyone who can push can merge
    an orphan commit of their own, even as a first parent, and commit dates can be
    forged, so neither the first-parent chain nor the oldest root tells which is the
    repository's. The user names it.
    """
    roots = repo.root_commits(tip)
    if len(roots) == 1:
        return roots[0]
    listed = ", ".join(root[:12] for root in roots)
    raise ConfigError(
        f"the history of {tip[:12]} has {len(roots)} root commits ({listed}): a fresh state "
        "cannot tell which one to trust",
        hint="name the repository's first commit (the one `reconciler init` made) with "
        "--trust-anchor COMMIT; anyone who can push can add a root of their own",
    )


def policy_from(
    effective: Mapping[str, Mapping[str, str]], repo: GitRepo, now: datetime | None = None
) -> Policy:
    """The policy the effective teams.yaml and environments/ describe, at `now` (the time
    of judging, for OpenPGP keys' expiry; None: expiry not judged)."""
    teams = effective.get(TEAMS_FILE, {})
    environments = []
    for path, fields in effective.items():
        # The prefix first: the effective state holds every plan too.
        if (
            path.startswith("environments/")
            and place(path).kind == "environment"
            and CONTENT in fields
        ):
            data = load(repo.read_blob(value(fields, CONTENT)), path).data
            environments.append(build_environment(data))
    return build_policy(teams_data(teams), environments, now)


def _policy_problem(
    effective: Mapping[str, Mapping[str, str]], repo: GitRepo, teams_blob: str | None
) -> str | None:
    """The first validation error of the effective teams.yaml + environments/, if any.

    `teams_blob` is a blob whose content is the effective teams.yaml, when one
    is at hand; otherwise the effective fields are written out as YAML first.
    """
    teams = effective.get(TEAMS_FILE, {})
    if INVALID in teams:
        return str(value(teams, INVALID))
    if teams_blob is not None:
        teams_bytes = repo.read_blob(teams_blob)
    else:
        teams_bytes = dump(teams_data(teams)).encode()
    files = {TEAMS_FILE: teams_bytes}
    for path, fields in effective.items():
        if place(path).kind == "environment" and CONTENT in fields:
            files[path] = repo.read_blob(value(fields, CONTENT))
    from reconciler.validate import validate_snapshot  # noqa: PLC0415 - only when the policy changes

    report = validate_snapshot(Snapshot(files), editor_gates=False)
    errors = [finding for finding in report.findings if finding.severity == "error"]
    if not errors:
        return None
    first = errors[0]
    return f"{first.file}:{first.line}: {first.message}"


def re_anchor_allowed(facts: CommitFacts, policy: Policy) -> None:
    """Re-anchoring needs a commit signed by a settings user of the last trusted policy."""
    actor = resolve(facts, policy, signature_required=True)
    if not actor.known:
        raise ReconcilerError(
            f"cannot re-anchor on {facts.commit[:12]}: {actor.how}",
            hint="re-anchor on a commit signed by a user listed under infrastructure.settings",
        )
    verdict = may_change_settings(policy, actor.name, "re-anchoring")
    if not verdict:
        raise ReconcilerError(
            f"cannot re-anchor on {facts.commit[:12]}: {verdict.text()}",
            hint="re-anchor on a commit signed by a user listed under infrastructure.settings",
        )
