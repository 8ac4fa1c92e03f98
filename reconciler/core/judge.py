"""Stage 3, authorise: the landing judge, one landing judged from the state before it, without Git.

`judge_landing` is the rule of `authorise` (see its docstring for the walk): given
the policy and effective state that judge a landing, the landing's commits, and
answers about their content (`Content`: commit facts, parsed fields, blobs,
messages, the journal's earlier records), it returns a `LandingJudgement`: the
verdict, the effective-state delta, and the plan edits, plan versions, sign-offs,
records and ignored trailers it found, as frozen values. It reads no clock, no
Git and no store: `authorise.Authoriser` (the walker) gathers the answers and
persists the judgement; tests/test_judge.py answers from values.

For every commit X of the landing, parents first, and every value (see
`fields`) of every path the landing touches, the judge computes the value X
*vouches* for:

1. X's value equals a vouched value of some parent: vouched (merges of
   independent, authorised edits; reverts of refused ones).
2. Else X's value equals some parent's actual value: X did not change it, so X
   vouches for what that parent vouched (a refused value stays refused and
   keeps the name of whoever introduced it).
3. Else it is X's own edit, judged by `rules` from a parent's vouched value;
   if refused, X keeps vouching for the old value and the refusal is kept.
   An edit of a value that is no longer the one vouched for there (superseded
   since X was made, or never authorised) is judged as the edit of whoever
   landed it (`vouching.edit_author`): an old signed change cannot undo a later one.

A landing is authorised when M's content equals what M vouches for wherever it
differs from the effective state, and every commit it lands holds an identity
(`Content.facts`: a malformed commit, or a copy of a signed payload another
commit carried first, holds none). The effective state takes, per path and per
field, the new content only where it is vouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from msgspec import Struct

from reconciler.core.claims import Claims
from reconciler.core.events import Record, Signoff
from reconciler.core.fields import (
    INVALID,
    FieldMap,
    changed_keys,
    describe_field,
    value,
)
from reconciler.core.identity import NO_IDENTITY, Actor, CommitFacts, resolve
from reconciler.core.journal import Blame, IgnoredTrailer, PlanEdit, VersionLanded
from reconciler.core.landed import Content, LandedCommit, Landing, State, blob_and_mode
from reconciler.core.layout import TEAMS_FILE, place
from reconciler.core.ledger import Ledger
from reconciler.core.model import Policy
from reconciler.core.permissions import PLAN_DEPLOY, Answers, Verdict
from reconciler.core.rules import judge_change, landing_style, triggers
from reconciler.core.trailer_rules import Found
from reconciler.core.verdicts import LandingVerdict, Refusal
from reconciler.core.vouching import edit_author, put, stale_reasons, vouch_values


# The walker replays a judgement's changes with `apply_changes`, kept by the ledger.
class LandingJudgement(Struct, frozen=True):
    """Everything the judge found in one landing, to apply and persist at once."""

    verdict: LandingVerdict
    committed_at: datetime  # the landing commit's
    # The effective state's changes, in the order made (to replay them): a path and its
    # new fields (empty: gone).
    effective: tuple[tuple[str, FieldMap], ...]
    # Where the landing commit's content now parts from the effective state, in the order
    # found: a path and who put each differing field there; None where it no longer parts.
    dirty: tuple[tuple[str, Blame | None], ...]
    found: tuple[Found, ...]  # sign-offs, records and ignored trailers, in the order found
    edits: tuple[PlanEdit, ...]
    versions: tuple[VersionLanded, ...]
    editors: Mapping[str, frozenset[str]]  # plan path -> who edited it with permission

    @property
    def signoffs(self) -> tuple[Signoff, ...]:
        return tuple(item for item in self.found if isinstance(item, Signoff))

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(item for item in self.found if isinstance(item, Record))

    @property
    def ignored(self) -> tuple[IgnoredTrailer, ...]:
        return tuple(item for item in self.found if isinstance(item, IgnoredTrailer))


def reached(changed: Iterable[str], judgement: LandingJudgement) -> frozenset[str] | None:
    """The plans (their paths) whose decision a landing can change, from the files it
    changes (`changed`: its first parent's tree to its own) and what judging it found;
    None when it can change any plan's.

    A plan is decided on its own file, effective values and blame, landing, editors and
    sign-offs (`pipeline.gather`), and on what every plan shares: the policy (teams.yaml,
    environments/), deployments/, the records of runs and the locks. A landing that
    changes what all share reaches every plan; one that changes only plans and signs
    them off reaches those alone. A retry names a run, not a plan: it reaches all.
    Trailers that count for nothing reach none.
    """
    paths = {
        *changed,
        *(path for path, _ in judgement.effective),
        *(path for path, _ in judgement.dirty),
        *(edit.path for edit in judgement.edits),
        *(version.path for version in judgement.versions),
        *judgement.editors,
    }
    kinds = {path: place(path).kind for path in paths}
    if any(kind not in (None, "plan") for kind in kinds.values()):
        return None
    plans = {path for path, kind in kinds.items() if kind == "plan"}
    for found in judgement.found:
        if isinstance(found, Signoff) and found.plan is not None:
            plans.add(found.plan.path)
        elif not isinstance(found, IgnoredTrailer):
            return None
    return frozenset(plans)


def judge_landing(
    policy: Policy,
    state: State,
    landing: Landing,
    content: Content,
    *,
    cap: int,
    answers: Answers | None = None,
) -> LandingJudgement:
    """Judge `landing` by `policy` (the effective one before it) from `state`; a landing
    of more than `cap` commits is refused whole. `answers`: the permission answers the
    caller keeps for `policy` across landings (used only when they are `policy`'s)."""
    answers = Answers(policy) if answers is None else answers.for_policy(policy)
    return _Judging(policy, state, landing, content, answers).judge(cap)


def plan_version(
    path: str,
    blob: str,
    commit: str,
    seq: int,
    *,
    fields: FieldMap,
    policy: Policy,
    facts: CommitFacts,
    committed_at: datetime,
    may_trigger: bool,
    onto_main: bool = True,
) -> VersionLanded:
    """That `commit` landed `path`@`blob` (effective now, holding `fields`), and whether its
    actor triggered it by landing it (`may_trigger`: a landing may, a trust anchor never;
    `onto_main`: its first parent was main's previous commit)."""
    target = value(fields, "target")
    actor = resolve(facts, policy, signature_required=_signature_required(policy, target))
    return _version(
        path,
        blob,
        commit,
        seq,
        fields=fields,
        target=target,
        actor=actor,
        answers=Answers(policy),
        facts=facts,
        committed_at=committed_at,
        may_trigger=may_trigger,
        onto_main=onto_main,
    )


def _version(
    path: str,
    blob: str,
    commit: str,
    seq: int,
    *,
    fields: FieldMap,
    target: object,
    actor: Actor,
    answers: Answers,
    facts: CommitFacts,
    committed_at: datetime,
    may_trigger: bool,
    onto_main: bool,
) -> VersionLanded:
    """`plan_version`, with `fields`' target and its actor under the judging policy
    (`answers.policy`) known."""
    # An anchor's plans have no style: its reason says why nothing triggered them.
    style = landing_style(facts, actor, onto_main=onto_main) if may_trigger else ""
    verdict: Verdict | None = (
        answers.may_on_environment(actor.name, PLAN_DEPLOY, target)
        if may_trigger and actor.known and isinstance(target, str) and triggers(style)
        else None
    )
    return VersionLanded(
        path=path,
        blob=blob,
        landing=commit,
        seq=seq,
        committed_at=committed_at,
        actor=actor.id,
        how=actor.how,
        verified=actor.verified,
        triggered=bool(verdict),
        style=style,
        squashed_by=actor.squashed_by,
        state=None if INVALID in fields else value(fields, "state"),
        reasons=_trigger_reasons(verdict, actor, may_trigger=may_trigger),
    )


def _trigger_reasons(
    verdict: Verdict | None, actor: Actor, *, may_trigger: bool
) -> tuple[str, ...]:
    """Why a plan version landing did (or did not) trigger it."""
    if verdict is not None:
        return tuple(verdict.reasons)
    if may_trigger:
        return (actor.how,)
    return ("it came with the trust anchor, which triggers nothing",)


def _signature_required(policy: Policy, target: object) -> bool:
    """Whether a plan for `target` needs signed commits (so does one for no known environment)."""
    environment = policy.environments.get(target) if isinstance(target, str) else None
    return environment.gates.signed_commits if environment else True


@dataclass(slots=True)
class _Judging:
    """One landing's working memory: what each commit vouches for, who is to blame, and
    the effective state as the landing changes it (over `state`, which stays as it is)."""

    policy: Policy
    state: State
    landing: Landing
    content: Content
    answers: Answers  # `policy`'s, kept by the caller across landings
    commits: dict[str, LandedCommit] = field(init=False)
    vouched: dict[str, dict[str, FieldMap]] = field(default_factory=dict)
    culprits: dict[str, dict[str, Blame]] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)
    editors: dict[str, set[str]] = field(default_factory=dict)
    claims: Claims = field(init=False)
    edits: list[PlanEdit] = field(default_factory=list)
    versions: list[VersionLanded] = field(default_factory=list)
    ledger: Ledger = field(init=False)
    actors: dict[tuple[str, bool], Actor] = field(default_factory=dict)
    # What each commit holds at each path, asked again for every child and settling.
    actuals: dict[tuple[str, str], FieldMap] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.commits = {commit.id: commit for commit in self.landing.commits}
        self.ledger = Ledger(self.state.effective, self.state.dirty)
        self.claims = Claims(
            self.policy, self.landing, self.content, self.state.anchor, self.commits
        )

    # -- the landing -----------------------------------------------------------

    def judge(self, cap: int) -> LandingJudgement:
        landing = self.landing
        commit = landing.commit
        paths = sorted({path for landed in landing.commits for path in landed.changes})
        whole = _refused_whole(landing.commits, cap)
        if whole is not None:
            return self._refuse_whole(paths, *whole)
        # Trailers first: judging an edit of deployments/ asks whether its record counts.
        for landed in landing.commits:
            self.claims.read(landed)
        for landed in landing.commits:
            self._vouch(landed, paths)
        before = {path: dict(self.ledger.fields(path)) for path in paths}
        refusals: list[Refusal] = []
        changed: list[str] = []
        for path in paths:
            refusals.extend(self._settle(commit, path, changed))
        refusals.extend(self._check_policy(commit, changed, before))
        final = set(refusals)
        superseded = tuple(refusal for refusal in self.refused if refusal not in final)
        self._note_plan_versions(commit, paths)
        return self._judgement(tuple(refusals), tuple(changed), superseded)

    def _refuse_whole(
        self, paths: list[str], needed: str, reason: str, where: str
    ) -> LandingJudgement:
        """Nothing the landing changes counts: each of `paths` parts from the effective state."""
        commit = self.landing.commit
        actor = self._display_actor(commit)
        refused = tuple(
            Refusal(commit, path, "", actor, "", needed, (reason,)) for path in paths or [where]
        )
        blame = {refusal.path: refusal for refusal in refused}
        for path in paths:
            actual = self._actual(commit, path)
            self.ledger.mark_dirty(path, actual, dict.fromkeys(actual, blame[path]))
        return self._judgement(refused, (), ())

    def _judgement(
        self,
        refusals: tuple[Refusal, ...],
        changed: tuple[str, ...],
        superseded: tuple[Refusal, ...],
    ) -> LandingJudgement:
        landing = self.landing
        unattributed = tuple(
            (commit, facts.signature_reason)
            for commit in self.commits
            if (facts := self.content.facts(commit)).signature_status in NO_IDENTITY
        )
        verdict = LandingVerdict(
            commit=landing.commit,
            first_parent=landing.first_parent,
            landed=tuple(self.commits),
            actor=self._display_actor(landing.commit),
            refusals=refusals,
            changed=changed,
            superseded=superseded,
            unattributed=unattributed,
        )
        return LandingJudgement(
            verdict=verdict,
            committed_at=self.content.committed_at(landing.commit),
            effective=tuple(self.ledger.effective_changes),
            dirty=tuple(self.ledger.dirty_changes),
            found=tuple(self.claims.found),
            edits=tuple(self.edits),
            versions=tuple(self.versions),
            editors={path: frozenset(actors) for path, actors in self.editors.items()},
        )

    # -- vouching --------------------------------------------------------------

    def _vouch(self, landed: LandedCommit, paths: list[str]) -> None:
        """What `landed` vouches for at each of `paths`, and who put each unvouched value."""
        parents = landed.parents
        vouched: dict[str, FieldMap] = {}
        culprits: dict[str, Blame] = {}
        for path in paths:
            if len(parents) == 1 and path not in landed.changes:
                vouched[path] = self._vouched(parents[0], path)
                culprits[path] = self._culprits(parents[0], path)
            else:
                vouched[path], culprits[path] = self._vouch_path(landed, path)
        self.vouched[landed.id] = vouched
        self.culprits[landed.id] = culprits

    def _vouch_path(self, landed: LandedCommit, path: str) -> tuple[FieldMap, Blame]:
        """The three rules of the module's docstring, for one path `landed` may change."""
        commit, parents = landed.id, landed.parents
        actual = self._actual(commit, path)
        parent_vouched = [self._vouched(parent, path) for parent in parents] or [
            self.state.effective.get(path, {})
        ]
        parent_actual = [self._actual(parent, path) for parent in parents] or [{}]
        vouched = vouch_values(
            actual,
            parent_vouched,
            parent_actual,
            lambda i: self._culprits(parents[i], path) if parents else {},
            lambda key: self._own_edit(landed, path, key, parent_vouched, parent_actual, actual),
        )
        own, blame, own_edits = vouched.own, vouched.blame, vouched.own_edits
        if place(path).kind == "plan" and (len(parents) <= 1 or own_edits):
            if len(parents) == 1:
                self._note_edit(landed, path, parent_actual[0], actual, blame)
            else:  # a merge's edits are the values no parent has, not its branches'
                self._note_edit(landed, path, parent_vouched[0], actual, blame, own_edits)
        return own, blame

    def _own_edit(
        self,
        landed: LandedCommit,
        path: str,
        key: str,
        parent_vouched: list[FieldMap],
        parent_actual: list[FieldMap],
        actual: FieldMap,
    ) -> Refusal | None:
        commit = landed.id
        finish = self.claims.finishes.get(commit) or self.claims.void.get(commit)
        first = None
        for base, found in zip(parent_vouched, parent_actual, strict=True):
            author = edit_author(commit, self.landing.commit, key, found, base)
            # A record speaks for its own commit only, never for one who landed it stale.
            record = finish if author == commit else None
            facts = self.content.facts(author)
            judgement = judge_change(
                self.policy, facts, path, key, base, actual, record, answers=self.answers
            )
            if judgement.verdict:
                self._credit_bringer(landed, path, author, judgement.actor.id)
                return None
            if first is None:
                first = (judgement, stale_reasons(commit, author))
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
        self.refused.append(refusal)
        return refusal

    def _credit_bringer(
        self, landed: LandedCommit, path: str, author: str, actor: str | None
    ) -> None:
        """The merger edits what a merge changes, and who lands a stale edit edits it."""
        brought = len(landed.parents) > 1 or author != landed.id
        if brought and place(path).kind == "plan" and actor:
            self.editors.setdefault(path, set()).add(actor)

    def _note_edit(
        self,
        landed: LandedCommit,
        path: str,
        before: FieldMap,
        after: FieldMap,
        blame: Blame,
        edited: list[str] | None = None,
    ) -> None:
        """Remember who edited a plan, and what, for approvals (editors) and `history`;
        `edited`: the fields the commit changed, when not all that differ from `before`."""
        commit = landed.id
        fields = after or before
        target = value(fields, "target")
        actor = self._actor(commit, signed=_signature_required(self.policy, target))
        if actor.id:
            self.editors.setdefault(path, set()).add(actor.id)
        changed = changed_keys(before, after) if edited is None else sorted(edited)
        refused = _refused_by(blame, commit)
        self.edits.append(
            PlanEdit(
                commit=commit,
                seq=self.landing.seq,
                path=path,
                change=_change_kind(before, after),
                fields=tuple(describe_field(key) for key in changed),
                state=(value(before, "state"), value(after, "state")),
                environment=target if isinstance(target, str) else None,
                actor=actor.id,
                claimed=self._display_actor(commit),
                how=actor.how,
                refused=tuple(describe_field(key) for key in refused),
                merge=len(landed.parents) > 1,
                committed_at=self.content.committed_at(commit),
            )
        )

    # -- settling ----------------------------------------------------------------

    def _settle(self, commit: str, path: str, changed: list[str]) -> list[Refusal]:
        """Compare M's content with what M vouches for; update the effective state."""
        actual = self._actual(commit, path)
        vouched = self.vouched[commit][path]
        before = self.ledger.fields(path)
        after = dict(before)
        refusals: dict[str, Refusal] = {}
        for key in changed_keys(before, actual):
            current = actual.get(key)
            if vouched.get(key) == current:
                put(after, key, current)
                continue
            culprit = self.culprits[commit][path].get(key)
            refusals[key] = culprit or self._unexplained(commit, path, key)
        if after != before:
            self.ledger.set_fields(path, after)
            changed.append(path)
        self.ledger.mark_dirty(path, actual, refusals)
        return list(dict.fromkeys(refusals.values()))

    def _unexplained(self, commit: str, path: str, key: str) -> Refusal:
        return Refusal(
            commit,
            path,
            key,
            self._display_actor(commit),
            "",
            "an authorised edit",
            (
                "no landed commit made this change with permission (a merge kept content "
                "that was never authorised)",
            ),
        )

    def _check_policy(
        self, commit: str, changed: list[str], before: Mapping[str, FieldMap]
    ) -> list[Refusal]:
        """A landing may not leave the policy invalid; if it would, its policy edits are refused."""
        policy_paths = [path for path in changed if place(path).kind in ("teams", "environment")]
        if not policy_paths:
            return []
        teams_blob, _ = self._blob_and_mode(commit, TEAMS_FILE)
        if self.content.fields(TEAMS_FILE, teams_blob, "") != self.ledger.fields(TEAMS_FILE):
            teams_blob = None  # the effective teams.yaml is no blob: validate its fields
        problem = self.content.policy_problem(self.ledger.whole(), teams_blob)
        if not problem:
            return []
        refusals = []
        for path in policy_paths:
            self.ledger.set_fields(path, before[path])
            changed.remove(path)
            refusal = Refusal(
                commit,
                path,
                "",
                self._display_actor(commit),
                "",
                "a valid policy",
                (f"the resulting configuration is invalid: {problem}",),
            )
            actual = self._actual(commit, path)
            self.ledger.mark_dirty(path, actual, dict.fromkeys(actual, refusal))
            refusals.append(refusal)
        return refusals

    def _note_plan_versions(self, commit: str, paths: list[str]) -> None:
        """Plan versions this landing made effective, and whether it triggered them."""
        first_parent = self.landing.first_parent
        for path in paths:
            if place(path).kind != "plan" or self.ledger.blame(path) is not None:
                continue
            blob = self._blob_and_mode(commit, path)[0]
            if blob is None:
                continue
            if first_parent is not None and self._blob_and_mode(first_parent, path)[0] == blob:
                continue
            parents = self.commits[commit].parents
            fields = self.ledger.fields(path)
            target = value(fields, "target")
            self.versions.append(
                _version(
                    path,
                    blob,
                    commit,
                    self.landing.seq,
                    fields=fields,
                    target=target,
                    actor=self._actor(commit, signed=_signature_required(self.policy, target)),
                    answers=self.answers,
                    facts=self.content.facts(commit),
                    committed_at=self.content.committed_at(commit),
                    may_trigger=True,
                    onto_main=not parents or parents[0] == first_parent,
                )
            )

    # -- state -------------------------------------------------------------------

    def _culprits(self, commit: str, path: str) -> Blame:
        """Who introduced each unvouched value at `commit` (known inside the landing, and at P)."""
        if commit in self.culprits:
            return self.culprits[commit].get(path, {})
        if commit == self.landing.first_parent:
            return self.ledger.blame(path) or {}
        return {}

    def _vouched(self, commit: str, path: str) -> FieldMap:
        if commit in self.vouched:
            return self.vouched[commit][path]
        return self.state.effective.get(path, {})

    # -- content -------------------------------------------------------------------

    def _actual(self, commit: str, path: str) -> FieldMap:
        key = (commit, path)
        actual = self.actuals.get(key)
        if actual is None:
            blob, mode = blob_and_mode(self.commits, self.content, commit, path)
            actual = self.actuals[key] = self.content.fields(path, blob, mode)
        return actual

    def _blob_and_mode(self, commit: str, path: str) -> tuple[str | None, str]:
        return blob_and_mode(self.commits, self.content, commit, path)

    # -- identities ------------------------------------------------------------------

    def _display_actor(self, commit: str) -> str:
        return self._actor(commit, signed=False).name

    def _actor(self, commit: str, *, signed: bool) -> Actor:
        """`commit`'s actor under the judging policy when a signature is (not) required."""
        key = (commit, signed)
        actor = self.actors.get(key)
        if actor is None:
            facts = self.content.facts(commit)
            actor = self.actors[key] = resolve(facts, self.policy, signature_required=signed)
        return actor


def _refused_whole(landed: Sequence[LandedCommit], cap: int) -> tuple[str, str, str] | None:
    """What a landing refused whole (nothing it changes counts, nor anything it says)
    needed, why it is refused, and what to name when it changes no file; None when it
    is judged change by change."""
    if len(landed) > cap:
        holds = f"this landing holds {len(landed)} commits"
        return f"a landing of at most {cap} commits", holds, ""
    for commit in landed:
        if commit.malformed is not None:
            # Git's own readings of a malformed tree disagree with one another (a
            # diff, a path lookup, a rebuilt index): it holds no content to judge.
            folder, problem = commit.malformed
            where = f"{folder}/" if folder else "the root folder"
            reason = f"commit {commit.id[:12]} holds a malformed tree at {where}: {problem}"
            return "well-formed Git objects (as git fsck checks them)", reason, where
    return None


def _change_kind(before: FieldMap, after: FieldMap) -> Literal["created", "deleted", "edited"]:
    return "created" if not before else "deleted" if not after else "edited"


def _refused_by(blame: Blame, commit: str) -> list[str]:
    """The fields whose value `commit` was refused, sorted."""
    return sorted(
        key for key, refusal in blame.items() if refusal is not None and refusal.commit == commit
    )
