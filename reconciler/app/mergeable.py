"""App: the pull-request check, would merging it be authorised, and what would it do?

Called by `reconciler verify-mergeable`. It judges exactly what a true merge of
the pull request into its base would land, the way the base's own walk will
judge it once merged:

1. The base is walked to its tip as every command walks it: its effective
   state and policy, from the trust anchor the state or the base gives, never
   one the pull request brings. The pull request's head must descend from it.
2. The merge of the head into that tip is made here as git makes it (`git
   merge-tree`; an unreferenced commit, nobody's) and judged as one more
   landing, then forgotten: a grant in the pull request authorises nothing
   landed with it, its commits count as their authors', and a change only a
   merger could make (an edit of a value the base has changed since, a file
   both sides changed) is refused, naming who could merge it. A real merger
   can only bring more authority than this nobody, so a merge judged
   authorised here is authorised whoever merges it by a true merge.
3. Refusals the landing repeats from the base (main already holds a refused
   value in a file the pull request touches) are not the pull request's: they
   are reported apart and never fail the check.

What CI checks out is often not the pull request's head but the host's test
merge of it (GitHub's refs/pull/N/merge, GitLab's merged results): a merge
onto the base whose tree is exactly git's merge of its parents. Its second
parent is then the head (`pull_request_head`), merged again onto the base's
tip as it is now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from msgspec import Struct
from msgspec.structs import replace

from reconciler.adapters.gitobjects import commit_bytes
from reconciler.adapters.gitrepo import GitRepo
from reconciler.app.authorise import Authoriser, Progress
from reconciler.app.checkpoints import Continued
from reconciler.app.pipeline import observe, plans_on
from reconciler.app.session import Session
from reconciler.core.access import who_may_change
from reconciler.core.decide import Decision
from reconciler.core.documents import MAX_FILE_BYTES, Document
from reconciler.core.errors import ConfigError, ReconcilerError
from reconciler.core.fields import FieldMap, field_position
from reconciler.core.identity import NO_IDENTITY, resolve
from reconciler.core.journal import IgnoredTrailer
from reconciler.core.layout import place
from reconciler.core.loader import load
from reconciler.core.model import Policy
from reconciler.core.rules import not_a_trigger
from reconciler.core.verdicts import LandingVerdict, Refusal

# The merge judged here is made by nobody: unsigned, with an email no user can have.
MERGER: Final = "reconciler verify-mergeable <>"

ChangeKind = Literal["added", "modified", "deleted"]


Author = Literal["commit", "landed", "merge"]


class RefusedChange(Struct, frozen=True):
    """One change the pull request would land without authority, where it stands in the
    pull request's file, and who could make it."""

    refusal: Refusal
    line: int
    column: int
    # Whose change it is: its commit's; whoever lands it (a change of a value the base no
    # longer holds); or the merge's own (a file both sides changed).
    author: Author
    may: tuple[str, ...]  # who could make it (merge it, unless `author` is the commit)

    @property
    def merger(self) -> bool:
        """Whether whoever merges is its author: only their merge could land it."""
        return self.author != "commit"

    def message(self, base: str) -> str:
        """The refusal as the check tells it: a merger's change as the merge's, never as
        the change of the nobody who makes the merge judged here."""
        refusal = self.refusal
        if self.author == "commit":
            return refusal.message()
        if not refusal.how:  # refused whole, an invalid policy, content never authorised
            return (
                f"{refusal.what()}: merging would land this, which needs {refusal.needed}: "
                f"{'; '.join(refusal.reasons)}"
            )
        if self.author == "merge":
            how = "the merge itself makes this change (both sides changed it)"
        else:
            how = (
                f"changed in {refusal.commit[:12]} from a value that is not {base}'s effective "
                "one (superseded since, or never authorised), so once merged it is the change "
                "of whoever merges"
            )
        return f"{refusal.what()}: {how}, which needs {refusal.needed}"


class FileChange(Struct, frozen=True):
    path: str
    kind: str  # the layout's kind of file (plan, environment, teams, ...), or "other"
    change: ChangeKind


class PlanOutlook(Struct, frozen=True):
    """A plan the merge changes, or whose decision it changes: now, and once merged."""

    path: str
    change: ChangeKind | None  # what the merge does to its file (None: nothing)
    before: Decision | None  # on the base now (None: not there)
    after: Decision | None  # once merged (None: the merge removes it)


class MergeCheck(Struct, frozen=True):
    base: str
    base_tip: str
    tested: str  # the commit named (HEAD: the head, or CI's test merge of it)
    head: str  # the pull request's head
    anchor: str
    merge_base: str | None
    merge: str | None  # the merge judged; None when the head is already in the base
    landed: tuple[str, ...]  # the pull request's commits the merge lands
    refused: tuple[RefusedChange, ...]
    unattributed: tuple[tuple[str, str], ...]  # landed commits that hold no identity, and why
    inherited: tuple[Refusal, ...]  # refused on the base already: not the pull request's
    changes: tuple[FileChange, ...]
    plans: tuple[PlanOutlook, ...]
    ignored: tuple[IgnoredTrailer, ...]  # trailers in the pull request that count for nothing
    continued: Continued | None = None  # the checkpoint a fresh state walked the base from

    @property
    def authorised(self) -> bool:
        return not self.refused and not self.unattributed


def pull_request_head(walk: Authoriser, tested: str, base_tip: str) -> str:
    """The pull request's head in `tested`: its second parent when `tested` is the test
    merge CI checks out (a true merge onto the base's tip, or onto a commit the base has
    moved past, holding nothing but git's merge of its parents), else `tested` itself.

    A merge that holds anything of its own is the pull request's head, as it would land:
    its own edits are judged, not skipped; so is one whose signature holds no identity
    (malformed, a copy), which a landing of it reports. `walk`: the base's.
    """
    repo = walk.repo
    info = repo.commit(tested)
    if len(info.parents) != 2:
        return tested
    first, second = info.parents
    if first != base_tip and not repo.is_ancestor(first, base_tip):
        return tested
    if walk.facts(tested).signature_status in NO_IDENTITY:
        return tested
    if repo.merge_base(first, second) is None:  # unrelated histories: no host merges them
        return tested
    tree, _ = repo.merge_tree(first, second)
    return second if tree == info.tree else tested


def check(
    session: Session,
    tested: str,
    name: str,
    *,
    trust_anchor: str | None = None,
    progress: Progress | None = None,
) -> MergeCheck:
    """Judge the merge of `tested` (named `name`) into the session's branch."""
    repo = session.repo
    base_result, policy = session.authorise(trust_anchor=trust_anchor, progress=progress)
    base_walk = session.walked
    assert base_walk is not None
    base_tip, anchor = base_result.tip, base_result.anchor
    head = pull_request_head(base_walk, tested, base_tip)
    brought = repo.root_commits(tested, outside=base_tip)  # its own commits' roots only
    if brought or session.sole_root != (base_tip, anchor):
        reached = base_walk.continued.commit if base_walk.continued else None
        session.under_test(head, name if head == tested else f"{name}^2", anchor, reached)
    # Else it descends from the anchor without a search of the whole history: every root it
    # reaches is one the base reaches, and the base reaches one, the anchor.
    _no_root_of_its_own(repo, tested, name, session.branch, base_tip, brought)
    if head == base_tip or repo.is_ancestor(head, base_tip):  # nothing to merge
        return MergeCheck(
            base=session.branch,
            base_tip=base_tip,
            tested=tested,
            head=head,
            anchor=anchor,
            merge_base=head,
            merge=None,
            landed=(),
            refused=(),
            unattributed=(),
            inherited=(),
            changes=(),
            plans=(),
            ignored=(),
            continued=base_result.continued,
        )
    merge = _merge(session, base_tip, head, name)
    merged_files = repo.tree_files(merge)
    changes = _changes(repo.tree_files(base_tip), merged_files)
    merged, walk, reach = session.judge_merge(merge, [item.path for item in changes])
    # The base's plans that the merge can change, decided now that its walk says which (the
    # merge's transaction is discarded: the store is the base's again).
    only = None if reach is None else plans_on(base_walk, base_tip, reach)
    before = observe(base_walk, base_result, session.now, drivers=None, only=only).decisions
    result, after = merged.verified, merged.decisions
    [verdict] = [judged for judged in result.judged if judged.commit == merge]
    landed = tuple(commit for commit in verdict.landed if commit != merge)
    carried = set(verdict.landed)
    ours = [refusal for refusal in verdict.refusals if refusal.commit in carried]
    revoked = walk.revoked.fingerprints if walk.revoked else frozenset()
    files = _Files(walk, merged_files, repo.tree_files(head) if ours else {})
    return MergeCheck(
        base=session.branch,
        base_tip=base_tip,
        tested=tested,
        head=head,
        anchor=anchor,
        merge_base=repo.merge_base(base_tip, head),
        merge=merge,
        landed=landed,
        refused=tuple(
            _refused(refusal, verdict, policy, base_walk, walk, revoked, files) for refusal in ours
        ),
        unattributed=verdict.unattributed,
        inherited=tuple(refusal for refusal in verdict.refusals if refusal.commit not in carried),
        changes=changes,
        plans=_outlook(changes, before, _without(after, merge)),
        ignored=result.ignored,
        continued=base_result.continued,
    )


def _no_root_of_its_own(
    repo: GitRepo, tested: str, name: str, branch: str, base_tip: str, brought: list[str]
) -> None:
    """The pull request's history must be the base's: a root commit of its own (an
    unrelated history merged in) changes no file, so every landing of it is authorised,
    but merged it is a second root of the base, and no fresh state (CI's) could then tell
    which one to trust."""
    # `brought`: the roots only `tested` reaches, found among the pull request's own commits;
    # the base's roots are counted for the message alone (a walk of the whole history, which
    # a green check never makes).
    if not brought:
        return
    roots = repo.root_commits(base_tip)
    listed = ", ".join(root[:12] for root in sorted(brought))
    raise ReconcilerError(
        f"{name} ({tested[:12]}) brings a root commit of its own ({listed}): merged, {branch} "
        f"would have {len(roots) + len(brought)}, and a fresh state could not tell which to trust",
        hint="take the unrelated history out of the pull request (it was merged in with "
        f"--allow-unrelated-histories): all of it must come from {branch}'s own history",
    )


def _merge(session: Session, base_tip: str, head: str, name: str) -> str:
    """The true merge of `head` into the branch's tip, as git makes it, by nobody."""
    repo = session.repo
    tree, conflicts = repo.merge_tree(base_tip, head)
    if tree is None:
        listed = ", ".join(conflicts) or "some paths"
        raise ReconcilerError(
            f"{name} ({head[:12]}) does not merge cleanly into {session.branch}: {listed} conflict",
            hint=f"merge {session.branch} into the pull request (or rebase it on "
            f"{session.branch}) and resolve the conflicts; the check judges the merge",
        )
    stamp = f"{int(session.now.timestamp())} +0000"
    message = f"Merge {head} into {session.branch}\n\nThe merge verify-mergeable judges.\n"
    raw = commit_bytes(tree, (base_tip, head), f"{MERGER} {stamp}", f"{MERGER} {stamp}", message)
    return repo.write_object("commit", raw)


def _refused(
    refusal: Refusal,
    verdict: LandingVerdict,
    policy: Policy,
    base_walk: Authoriser,
    walk: Authoriser,
    revoked: frozenset[str],
    files: _Files,
) -> RefusedChange:
    line, column = _position(refusal, files)
    author = _author(refusal, verdict.commit, policy, walk)
    if not refusal.how:  # refused whole, an invalid policy, unexplained: no rule to ask
        return RefusedChange(refusal, line, column, author, ())
    may = who_may_change(
        policy,
        refusal.path,
        refusal.field,
        base_walk.effective.get(refusal.path, {}),
        files.values(refusal.path),
        merge=author != "commit",
        revoked=revoked,
    )
    return RefusedChange(refusal, line, column, author, may)


def _author(refusal: Refusal, merge: str, policy: Policy, walk: Authoriser) -> Author:
    """Whose the refused change is: the merge's own; a commit's that counts as the change
    of whoever lands it (the refusal then names how the merge's actor is known, not how
    its commit's is); or its commit's.

    An unsigned commit where signatures are required is known the same way as the
    merge: its change is told as its own, whose fix (the change made again, signed, by
    someone who may) is right either way."""
    if refusal.commit == merge:
        return "merge"

    def hows(commit: str) -> set[str]:
        facts = walk.facts(commit)
        return {resolve(facts, policy, signature_required=need).how for need in (True, False)}

    if refusal.how in hows(merge) and refusal.how not in hows(refusal.commit):
        return "landed"
    return "commit"


@dataclass(slots=True)
class _Files:
    """What refusals are told from, each read once: the merge's files and the pull
    request's (one listing each, since git reads a path's whole folder to find it), and
    each refused file of the pull request, loaded."""

    walk: Authoriser
    merged: Mapping[str, tuple[str, str]]  # path -> (mode, object id), in the merge
    pulled: Mapping[str, tuple[str, str]]  # in the pull request's head
    documents: dict[str, Document | ConfigError | None] = field(default_factory=dict)

    def values(self, path: str) -> FieldMap:
        """`path`'s values once merged, read as the walk reads them."""
        mode, blob = self.merged.get(path, ("", None))
        return self.walk.fields_of(path, blob, mode)

    def document(self, path: str) -> Document | ConfigError | None:
        """`path` in the pull request's head, loaded; why it cannot be; None when it is gone
        or too large."""
        if path not in self.documents:
            self.documents[path] = _load(self.walk.repo, self.pulled.get(path, ("", None))[1], path)
        return self.documents[path]


def _load(repo: GitRepo, blob: str | None, path: str) -> Document | ConfigError | None:
    if blob is None or repo.blob_size(blob) > MAX_FILE_BYTES:
        return None
    try:
        return load(repo.read_blob(blob), path)
    except ConfigError as error:
        return error


def _position(refusal: Refusal, files: _Files) -> tuple[int, int]:
    """Where the refused value stands in the pull request's own file (line, column);
    the first line when the file is gone, too large or unreadable (then where the
    loader stopped)."""
    if place(refusal.path).kind not in ("plan", "teams"):
        return 1, 1
    document = files.document(refusal.path)
    if document is None:
        return 1, 1
    if isinstance(document, ConfigError):
        return document.line or 1, document.column or 1
    where = field_position(document, refusal.path, refusal.field)
    return where.line, where.column


def _changes(
    before: Mapping[str, tuple[str, str]], after: Mapping[str, tuple[str, str]]
) -> tuple[FileChange, ...]:
    """Every file the merge adds, modifies or deletes on the base (its files, and the
    merge's)."""
    changes = []
    for path in sorted(before.keys() | after.keys()):
        if before.get(path) == after.get(path):
            continue
        change: ChangeKind = (
            "added" if path not in before else "deleted" if path not in after else "modified"
        )
        changes.append(FileChange(path, place(path).kind or "other", change))
    return tuple(changes)


def _without(decisions: tuple[Decision, ...], merge: str) -> tuple[Decision, ...]:
    """The decisions without what they say of the merge judged here (that its nobody's
    landing triggers nothing): whoever merges for real is someone, whose true merge
    triggers where they hold plan.deploy."""
    # What decide adds to a trigger's wait for this merge, worded by the one rule that words it.
    said = f"; {not_a_trigger('merge', merge, None)}"

    def merged(text: str) -> str:
        return text.replace(said, ", or their true merge")

    return tuple(
        replace(
            decision,
            why=tuple(replace(why, text=merged(why.text)) for why in decision.why),
            waits=tuple(
                replace(wait, reason=replace(wait.reason, text=merged(wait.text)))
                for wait in decision.waits
            ),
            verdicts=tuple(
                verdict
                for verdict in decision.verdicts
                if verdict.refused is None or merge[:12] not in verdict.note
            ),
        )
        for decision in decisions
    )


def _outlook(
    changes: tuple[FileChange, ...], before: tuple[Decision, ...], after: tuple[Decision, ...]
) -> tuple[PlanOutlook, ...]:
    """The plans the merge changes, and those whose decision it changes (an approval in
    the pull request, an environment it edits), in the order `plan` lists them after.
    `before` and `after` need hold only the plans the merge can reach (`judge.reached`):
    any other is decided the same on both sides."""
    now = {decision.path: decision for decision in before}
    then = {decision.path: decision for decision in after}
    changed = {item.path: item.change for item in changes if item.kind == "plan"}
    order = [*then, *(path for path in changed if path not in then)]
    outlook = []
    for path in order:
        old, new = now.get(path), then.get(path)
        moved = (old.status, old.reasons) != (new.status, new.reasons) if old and new else False
        if path in changed or moved:
            outlook.append(PlanOutlook(path, changed.get(path), old, new))
    return tuple(outlook)


def fix(item: RefusedChange, base: str) -> str:
    """What would let the refused change land, in the words every format prints."""
    refusal = item.refusal
    if not refusal.how:
        return f"it needs {refusal.needed}"
    who = _names(item.may)
    if item.merger:
        merged = (
            f"only a merge by {who} could land it (their signed true merge makes it theirs)"
            if item.may
            else "nobody's merge could land it"
        )
        if item.author == "landed":  # rebased, it would still change the same value
            return merged
        # Both sides changed the file: rebased, the change is its own commit's.
        return (
            f"{merged}; or rebase the pull request on {base}, its commits signed again by "
            "their authors"
        )
    if not item.may:
        return f"nobody may make this change under {base}'s policy: take it out of the pull request"
    them = "them" if len(item.may) == 1 else "one of them"
    return (
        f"only {who} may make this change: have {them} commit it, "
        "or take it out of the pull request"
    )


def outlook(item: PlanOutlook) -> str:
    """What a plan would do once merged, as `plan` would say it then."""
    after = item.after
    if after is None:
        return "removed by the merge"
    if after.status == "executable":
        return f"would run once merged: {'; '.join(after.reasons)}"
    if after.status == "waiting":
        return f"would wait for: {'; '.join(wait.text for wait in after.waits)}"
    if after.status == "refused":
        return f"would be refused: {'; '.join(after.reasons)}"
    return f"{after.status}: {'; '.join(after.reasons)}"


_LISTED: Final = 10


def _names(users: tuple[str, ...]) -> str:
    shown = ", ".join(users[:_LISTED])
    return shown if len(users) <= _LISTED else f"{shown}, ... ({len(users)} in all)"
