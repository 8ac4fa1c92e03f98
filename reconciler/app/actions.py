"""App: the commits people make through the CLI (approve, deploy or retry, cancel, rollback,
lock and unlock).

Called by `reconciler approve`, `deploy`, `cancel`, `rollback`, `lock` and `unlock`. Each
first works out who the commit will be attributed to (the local git identity and signing
key, resolved exactly as `authorise` will resolve the commit), asks
`permissions` whether that actor may do it, and refuses up front with the
same reasons `access` gives. A commit that could not count is refused too,
in `decide`'s words: an approval by an editor of the plan (on main, or on
the pull request's branch HEAD is on) or a second one by the same person;
a trigger off the followed branch, or of a version that already ran. Only
then does it make the commit: empty and
single-parent for approvals, triggers and retries, bound to the plan's full
blob id; for cancel, an edit of the one word of `state:` in the plan as
committed at HEAD (never the working tree's other edits); for rollback, a new
plan file redeploying versions the records show ran in the environment
(`pipeline.versions_ran`), which the same flow of trigger, approvals and records
then runs; for lock and unlock, an empty signed commit with `Lock:` or `Unlock:`
and `Lock-Reason:`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from msgspec import Struct

from reconciler.adapters import process, revocation_file
from reconciler.adapters.gitobjects import HistoryEntry
from reconciler.adapters.readahead import parse_version
from reconciler.app.session import Session
from reconciler.core import approvals, revocation, schema
from reconciler.core.decide import Decision, run_outcome
from reconciler.core.documents import Document
from reconciler.core.errors import ConfigError, GitError, RefusedError, UsageError, unknown_name
from reconciler.core.events import (
    APPROVE,
    DEPLOY,
    LOCK,
    LOCK_REASON,
    RETRY,
    UNLOCK,
    PlanRef,
    read_trailers,
)
from reconciler.core.fields import FieldMap
from reconciler.core.identity import Actor, CommitFacts, resolve
from reconciler.core.layout import place, plan_path
from reconciler.core.loader import dump, load
from reconciler.core.model import Environment, Policy
from reconciler.core.permissions import (
    PLAN_APPROVE,
    PLAN_DEPLOY,
    may_edit_application,
    may_lock,
    may_on_environment,
)
from reconciler.core.signoffs import retry_refusal
from reconciler.core.sshkeys import KeyFormatError, PublicKey, parse_public_key

if TYPE_CHECKING:
    from reconciler.app.pipeline import Ran


class Made(Struct, frozen=True):
    """A commit an action made."""

    kind: Literal["approve", "deploy", "retry", "cancel", "uncancel", "rollback"]
    commit: str
    plan: PlanRef
    environment: str
    actor: str
    message: str
    # A rollback plan's entries: (application, the version running now, the one it redeploys).
    rolled_back: tuple[tuple[str, str | None, str], ...] = ()


class Locked(Struct, frozen=True):
    """A lock or unlock commit an action made."""

    kind: Literal["lock", "unlock"]
    commit: str
    environment: str
    application: str | None
    why: str
    actor: str
    message: str


def lock(
    session: Session, environment_name: str, application: str | None, why: str, *, unlock: bool
) -> Locked:
    """Lock (or unlock) an environment, or one application in it: refused up front unless the
    commit would count (signed, by a plan.deploy holder there or a settings user) and
    change something."""
    kind: Literal["lock", "unlock"] = "unlock" if unlock else "lock"
    seen = session.observe(ask_drivers=False)
    policy = seen.history.policy
    environment = _named_environment(policy, environment_name)
    if application is not None and application not in policy.application_owner:
        raise unknown_name(
            "application", application, sorted(policy.application_owner), "applications"
        )
    actor, signs = local_actor(session, policy, environment, signed=True)
    if not actor.known or not signs:
        raise RefusedError(
            f"a {kind} counts only in a signed commit, and this one would not be: {actor.how}",
            hint="configure git to sign with your key: gpg.format=ssh and user.signingkey your "
            "SSH key file, or user.signingkey your OpenPGP key's fingerprint",
        )
    verdict = may_lock(policy, actor.name, environment.name)
    if not verdict:
        raise RefusedError(
            f"{actor.name} may not {kind} {environment.name}: {verdict.text()} "
            "(or be a settings user)",
            hint=f"see `reconciler access {actor.name}`",
        )
    scope = environment.name if application is None else f"{environment.name}/{application}"
    held = seen.history.locks.get(scope)
    if unlock and held is None:
        raise RefusedError(f"{scope} is not locked", hint="nothing to do")
    if not unlock and held is not None:
        raise RefusedError(
            f"{scope} is already locked by {held.actor} since {held.committed_at.isoformat()}",
            hint=f"nothing to do; `reconciler unlock {environment.name}` lifts it",
        )
    one_line = " ".join(why.split())
    subject = f"{kind.capitalize()} {scope}" + (f": {one_line}" if one_line else "")
    trailers = f"{UNLOCK if unlock else LOCK}: {scope}"
    if one_line:
        trailers += f"\n{LOCK_REASON}: {one_line}"
    message = f"{subject}\n\n{trailers}"
    commit = session.repo.commit_empty(message, sign=True)
    return Locked(kind, commit, environment.name, application, one_line, actor.name, message)


def still_to_do(session: Session) -> str | None:
    """What a commit an action just made on HEAD still needs to count, or None when it
    counts as it is: made off the followed branch, a merge into it; on it, where the branch
    tracks a remote, a push (the service follows the remote, not this clone)."""
    branch = session.branch
    head = session.repo.head_branch()
    if head != branch:
        return (
            f"merge it into {branch} for it to count "
            f"(push {head or 'it'} and merge the pull request)"
        )
    remote = session.repo.config(f"branch.{branch}.remote")
    if remote is not None:
        return f"push it (`git push {remote} {branch}`) for a reconciler following {remote}"
    return None


def plan_file(name_or_path: str) -> str:
    """'2026-11-qa-release' or 'plans/2026-11-qa-release.yaml' -> the plan's path."""
    candidate = name_or_path.strip()
    if place(candidate).kind == "plan":
        return candidate
    path = plan_path(Path(candidate).stem if candidate.endswith(".yaml") else candidate)
    if place(path).kind != "plan":
        raise UsageError(f"'{name_or_path}' is not a plan", hint="name a file in plans/")
    return path


def local_actor(
    session: Session, policy: Policy, environment: Environment, *, signed: bool = False
) -> tuple[Actor, bool]:
    """Who a commit made here will count as, and whether git will sign it (`signed`: as a
    commit that counts only signed, whatever the environment's gates say)."""
    repo = session.repo
    email = repo.committer_email()
    if _signs_with_openpgp(session):
        configured = repo.config("user.signingkey")
        fingerprint = _openpgp_key(policy, configured) if configured else None
        signs = configured is not None
    else:
        key = _signing_key(session)
        fingerprint, signs = (key.fingerprint if key else None), key is not None
    # A key git's revocation file lists signs nothing `authorise` will count.
    status, fingerprint, reason = revocation.screened(
        "good" if fingerprint else "unsigned", fingerprint, "", revocation_file.configured(repo)
    )
    facts = CommitFacts(
        commit="(to be made)",
        signature_status=status,
        fingerprint=fingerprint,
        signature_reason=reason,
        committer_email=email,
        author_email=email,
        parents=1,  # approvals, triggers, cancels: empty commits on the branch's tip
    )
    required = signed or environment.gates.signed_commits
    return resolve(facts, policy, signature_required=required), signs


def _signs_with_openpgp(session: Session) -> bool:
    """git's default signature format; only gpg.format=ssh (or x509) says otherwise."""
    return (session.repo.config("gpg.format") or "openpgp") == "openpgp"


def _openpgp_key(policy: Policy, configured: str) -> str | None:
    """The key of `policy`'s OpenPGP certificates that git's user.signingkey names by its
    fingerprint or key id ('0x' and gpg's '!' allowed), or None: a user id or an email
    names a key only in gpg's own keyring, which the reconciler never reads."""
    wanted = configured.strip().removeprefix("0x").removesuffix("!").replace(" ", "").upper()
    if len(wanted) < 16 or any(digit not in "0123456789ABCDEF" for digit in wanted):
        return None
    listed = (*policy.key_owner, *policy.unusable_keys)
    # A v4 key id is its fingerprint's last 16 digits, a v6 one its first.
    return next(
        (key for key in listed if key == wanted or key.endswith(wanted) or key.startswith(wanted)),
        None,
    )


def _signing_key(session: Session) -> PublicKey | None:
    repo = session.repo
    if (repo.config("gpg.format") or "openpgp") != "ssh":
        return None
    configured = repo.config("user.signingkey")
    if not configured:
        return None
    try:
        if configured.startswith("key::"):
            return parse_public_key(configured[len("key::") :])
        path = Path(configured).expanduser()
        public = path if path.suffix == ".pub" else path.with_name(path.name + ".pub")
        if public.is_file():
            return parse_public_key(public.read_text())
        return parse_public_key(process.output_of(["ssh-keygen", "-y", "-f", str(path)]))
    except (OSError, KeyFormatError) as error:
        raise ConfigError(
            f"cannot read your signing key {configured}: {error}",
            hint="set git config user.signingkey to your SSH public key file",
        ) from None


class _PlanAtHead(Struct, frozen=True):
    """The plan as committed at HEAD: what an approval, trigger or cancel binds to."""

    head: str
    blob: str
    raw: bytes
    document: Document

    @property
    def target(self) -> str:
        target: str = self.document.data["target"]
        return target


def _target(session: Session, path: str) -> _PlanAtHead:
    """The plan at HEAD, which must be a valid plan."""
    head = session.repo.resolve("HEAD")
    blob = session.repo.blob_at(head, path)
    if blob is None:
        plans = sorted(
            found for found in session.repo.folder(head, "plans") if place(found).kind == "plan"
        )
        raise unknown_name("plan", path, plans, "plans at HEAD")
    raw = session.repo.read_blob(blob)
    try:
        document = load(raw, path)
    except ConfigError as error:
        raise ConfigError(
            f"the plan is invalid at HEAD: {error.message}",
            file=path,
            line=error.line,
            column=error.column,
            hint=error.hint,
        ) from None
    findings = schema.check(document, "plan")
    if findings:
        first = findings[0]
        raise ConfigError(
            f"the plan is invalid at HEAD: {first.message}",
            file=path,
            line=first.line,
            column=first.column,
            hint=first.hint or "run `reconciler validate`",
        )
    return _PlanAtHead(head, blob, raw, document)


def _environment(policy: Policy, plan: _PlanAtHead) -> Environment:
    environment = policy.environments.get(plan.target)
    if environment is None:
        where = plan.document.position(("target",))
        raise ConfigError(
            f"the plan's target '{plan.target}' is not an environment",
            file=plan.document.path,
            line=where.line,
            column=where.column,
            hint=f"environments: {', '.join(sorted(policy.environments)) or 'none'}",
        )
    return environment


def _check(session: Session, policy: Policy, permission: str, environment: Environment) -> Actor:
    def may(actor: Actor) -> None:
        verdict = may_on_environment(policy, actor.name, permission, environment.name)
        if not verdict:
            raise RefusedError(
                f"{actor.name} may not {permission.split('.')[1]} into {environment.name}: "
                f"{verdict.text()}",
                hint=f"see `reconciler access {actor.name}`",
            )

    return _attributed(session, policy, environment, may)


def _attributed(
    session: Session, policy: Policy, environment: Environment, may: Callable[[Actor], None]
) -> Actor:
    """The local actor a commit into `environment` will count as, once `may` (which refuses
    what they may not do) let them; refused up front when nobody, or unsigned where
    the environment wants signatures."""
    actor, signs = local_actor(session, policy, environment)
    if not actor.known:
        raise RefusedError(
            f"this commit would not be attributed to any user: {actor.how}",
            hint="configure git to sign with your key: gpg.format=ssh and user.signingkey your "
            "SSH key file, or user.signingkey your OpenPGP key's fingerprint",
        )
    may(actor)
    if environment.gates.signed_commits and not signs:
        raise RefusedError(
            f"{environment.name} requires signed commits and git is not set up to sign",
            hint="git config gpg.format ssh; git config user.signingkey ~/.ssh/id_ed25519.pub",
        )
    return actor


def approve(session: Session, plan: str) -> Made:
    path = plan_file(plan)
    _, policy = session.authorise()
    plan_at_head = _target(session, path)
    blob, target = plan_at_head.blob, plan_at_head.target
    environment = _environment(policy, plan_at_head)
    actor = _check(session, policy, PLAN_APPROVE, environment)
    ref = PlanRef(path, blob)
    # A reviewer may approve on the pull request's branch: its commits count as
    # they will when it lands, beside main's.
    branch = _off_main(session, plan_at_head.head, policy, environment, ref)
    decided = _decided(session, ref)
    would_not_count = f"an approval of {path} by {actor.name} would not count"
    editors = session.store.editors(path) | branch.editors
    approvers = {*branch.approvers, *(decided.approvers if decided else ())}
    problem = approvals.approval_refusal(actor.name, editors, approvers)
    if problem:
        raise RefusedError(f"{would_not_count}: {problem}", hint=_APPROVAL_HINTS[problem.code])
    if decided is not None and decided.status == "done" and decided.run is not None:
        raise RefusedError(
            f"{would_not_count}: {run_outcome(decided.run)}",
            hint="a plan version runs once; a change of the plan is a new version to approve",
        )
    message = f"Approve {Path(path).stem} for {target}\n\n{APPROVE}: {path}@{blob}"
    commit = session.repo.commit_empty(message, sign=_signs(session))
    return Made("approve", commit, PlanRef(path, blob), target, actor.name, message)


_APPROVAL_HINTS = {
    approvals.EDITOR: "ask a reviewer who did not edit the plan",
    approvals.REPEATED: "nothing to do; `reconciler plan` says what the plan still waits for",
}


def deploy(session: Session, plan: str, retry: str | None = None) -> Made:
    path = plan_file(plan)
    _, policy = session.authorise()
    plan_at_head = _target(session, path)
    blob, target = plan_at_head.blob, plan_at_head.target
    if retry is not None:
        _on_followed_branch(session, plan_at_head, path)
        return _retry(session, policy, path, retry)
    environment = _environment(policy, plan_at_head)
    actor = _check(session, policy, PLAN_DEPLOY, environment)
    _on_followed_branch(session, plan_at_head, path)
    decided = _decided(session, PlanRef(path, blob))
    # A version runs once: with a run, only a Retry-Run of an interrupted one counts.
    if decided is not None and decided.run is not None:
        run = decided.run
        hint = (
            f"`reconciler deploy {Path(path).stem} --retry {run.id}` re-runs it"
            if run.result == "interrupted"
            else "a plan version runs once; change the plan (a new version) to deploy again"
        )
        raise RefusedError(
            f"a trigger of {path} by {actor.name} would not count: {run_outcome(run)}",
            hint=hint,
        )
    message = f"Deploy {Path(path).stem} to {target}\n\n{DEPLOY}: {path}@{blob}"
    commit = session.repo.commit_empty(message, sign=_signs(session))
    return Made("deploy", commit, PlanRef(path, blob), target, actor.name, message)


def _on_followed_branch(session: Session, plan: _PlanAtHead, path: str) -> None:
    """A trigger (or retry) is a commit on the followed branch: made on a pull request's
    branch it waits for a merge, and counts only if the host keeps it (a squash does not)."""
    branch = session.branch
    if session.repo.head_branch() == branch:
        return
    on_tip = session.repo.blob_at(session.tip(), path)
    if on_tip != plan.blob:
        there = f"{path}@{on_tip[:12]}" if on_tip else f"no {path}"
        problem = f"{path}@{plan.blob[:12]} is not the version on {branch} ({branch} has {there})"
    else:
        problem = f"HEAD is not {branch}"
    raise RefusedError(
        f"deploy runs on {branch}, where a trigger counts: {problem}",
        hint=f"merge the pull request first (a true merge by a plan.deploy holder is the "
        f"trigger), or `git switch {branch}` and run the deploy there",
    )


class _OffMain(Struct, frozen=True):
    """What the commits HEAD has and the followed branch does not (a pull request's) say
    about one plan version: who edited the plan there, who approved the version there."""

    editors: frozenset[str]
    approvers: frozenset[str]


def _off_main(
    session: Session, head: str, policy: Policy, environment: Environment, ref: PlanRef
) -> _OffMain:
    tip = session.tip()
    walked = session.walked
    if head == tip or walked is None:
        return _OffMain(frozenset(), frozenset())
    signed = environment.gates.signed_commits
    editors: set[str] = set()
    approvers: set[str] = set()
    for entry in session.repo.history(head, tip):
        changed = {change.path for change in entry.changes}
        if ref.path in changed and _edits(session, entry, ref.path):
            edited_by = resolve(walked.facts(entry.id), policy, signature_required=signed)
            editors.update([edited_by.id] if edited_by.id else [])
        elif len(entry.parents) == 1 and not changed:
            info = walked.info(entry.id)
            approved = read_trailers(info.message, info.encoding).counted().get(APPROVE, ())
            if str(ref) in approved:
                by = resolve(walked.facts(entry.id), policy, signature_required=signed)
                approvers.update([by.id] if by.id else [])
    return _OffMain(frozenset(editors), frozenset(approvers))


def _edits(session: Session, entry: HistoryEntry, path: str) -> bool:
    """Whether a commit that changed `path` edited the plan itself: a merge only where a
    value matches none of its parents', as `authorise` blames a merge."""
    if len(entry.parents) <= 1:
        return True
    merged, *parents = (_fields_at(session, commit, path) for commit in (entry.id, *entry.parents))
    keys = set(merged).union(*parents)
    return any(all(parent.get(key) != merged.get(key) for parent in parents) for key in keys)


def _fields_at(session: Session, commit: str, path: str) -> FieldMap:
    blob = session.repo.blob_at(commit, path)
    if blob is None:
        return {}
    return parse_version(path, "plan", place(path).name, blob, session.repo.read_blob(blob))


def _decided(session: Session, ref: PlanRef) -> Decision | None:
    """How `plan` decides this version, when it is the version on the followed branch's tip."""
    if session.repo.blob_at(session.tip(), ref.path) != ref.blob:
        return None
    return next((item for item in session.decisions() if item.ref == ref), None)


def _retry(session: Session, policy: Policy, path: str, run_id: str) -> Made:
    runs = {
        decision.run.id: decision.run
        for decision in session.decisions()
        if decision.run is not None and decision.path == path
    }
    run = runs.get(run_id)
    if run is None:
        known = ", ".join(sorted(runs)) or "none"
        raise RefusedError(
            f"{run_id} is not a run of {path}", hint=f"runs of this plan version: {known}"
        )
    # A retry made now lands after every record on the branch: none retried this run
    # (it is its version's latest), so only the run's result can refuse it.
    if retry_refusal(run, None, run.finished_seq) is not None:
        raise RefusedError(
            f"run {run_id} {run.result}; only interrupted runs are retried",
            hint="change the plan (a new version) to deploy again",
        )
    environment = policy.environments.get(run.environment)
    if environment is None:
        raise RefusedError(
            f"run {run_id} ran in {run.environment}, which is no longer an environment",
            hint="a retry runs where the run started; restore the environment first",
        )
    actor = _check(session, policy, PLAN_DEPLOY, environment)
    message = f"Retry run {run_id} of {Path(path).stem}\n\n{RETRY}: {run_id}"
    commit = session.repo.commit_empty(message, sign=_signs(session))
    return Made("retry", commit, run.plan, environment.name, actor.name, message)


def cancel(session: Session, plan: str, *, undo: bool = False) -> Made:
    path = plan_file(plan)
    _, policy = session.authorise()
    plan_at_head = _target(session, path)
    blob, target = plan_at_head.blob, plan_at_head.target
    environment = _environment(policy, plan_at_head)
    actor = _check(session, policy, PLAN_DEPLOY, environment)
    work_tree = session.repo.work_tree()
    # The commit must hold HEAD's plan with one word changed: uncommitted edits
    # would ride along in it (and, un-cancelled, be triggered by it).
    if session.repo.has_uncommitted_changes(path):
        raise UsageError(
            f"{path} has uncommitted changes",
            hint="commit or stash them first; cancel changes only the committed plan's state",
        )
    document = plan_at_head.document
    state: str = document.data["state"]
    wanted = "ready" if undo else "cancelled"
    where = document.position(("state",))
    if undo and state != "cancelled":
        raise UsageError(
            f"the plan is not cancelled (state: {state})",
            file=path,
            line=where.line,
            column=where.column,
            hint="nothing to undo; `reconciler cancel PLAN` cancels it",
        )
    if not undo and state == "cancelled":
        raise UsageError(
            "the plan is already cancelled",
            file=path,
            line=where.line,
            column=where.column,
            hint="`reconciler cancel PLAN --undo` makes it ready again",
        )
    edited = _with_state(plan_at_head, state, wanted)
    verb = "Un-cancel" if undo else "Cancel"
    message = f"{verb} {Path(path).stem}\n\nstate: {state} -> {wanted}"
    sign = _signs(session)
    file = work_tree / path
    original = file.read_bytes()
    file.write_bytes(edited)
    try:
        commit = session.repo.commit_paths([path], message, sign=sign)
    except BaseException:
        # Left edited (and staged), the plan would refuse the next cancel as
        # uncommitted changes: unless the commit was made after all (an
        # interrupt), it goes back as it was, unchanged from HEAD.
        if session.repo.resolve("HEAD") == plan_at_head.head:
            file.write_bytes(original)
            with contextlib.suppress(GitError):
                session.repo.unstage([path])  # nothing was staged if the index was locked
        raise
    new_blob = session.repo.blob_at(commit, path) or blob
    return Made(
        "uncancel" if undo else "cancel",
        commit,
        PlanRef(path, new_blob),
        target,
        actor.name,
        message,
    )


def _with_state(plan: _PlanAtHead, state: str, wanted: str) -> bytes:
    """The plan's text with the word of `state:` replaced, and nothing else changed."""
    document = plan.document
    where = document.position(("state",))
    lines = plan.raw.decode("utf-8").split("\n")
    line = lines[where.line - 1]
    start = where.column - 1
    if line[start : start + 1] in ("'", '"'):
        start += 1  # keep the quotes; replace the word inside them
    end = start + len(state)
    refusal = ConfigError(
        f"cannot change state: {state} is not written as one word on the line of `state:`",
        file=document.path,
        line=where.line,
        column=where.column,
        hint=f"write it as `state: {state}` on one line, commit, and cancel again",
    )
    if line[start:end] != state:
        raise refusal
    lines[where.line - 1] = line[:start] + wanted + line[end:]
    edited = "\n".join(lines).encode("utf-8")
    # A word of that text elsewhere (a block scalar, a flow mapping) would change
    # another value: the result must be the plan with only its state changed.
    if load(edited, document.path).data != {**document.data, "state": wanted}:
        raise refusal
    return edited


def _signs(session: Session) -> bool:
    if _signs_with_openpgp(session):
        return session.repo.config("user.signingkey") is not None
    return _signing_key(session) is not None


def rollback(
    session: Session, environment_name: str, applications: Sequence[str], to: str | None
) -> Made:
    """Write and commit a rollback plan: into `environment_name`, the version before the
    running one of each of `applications` (all that run there when none are named), or
    `to`, as the records show they ran there. A new plan file each time, so each rollback
    is a version of its own, triggered, approved and recorded like any plan."""
    from reconciler.app.pipeline import versions_ran  # noqa: PLC0415

    if to is not None and len(applications) != 1:
        raise UsageError(
            "--to names one version, so it needs exactly one application",
            hint="e.g. `reconciler rollback quality-assurance ecommerce --to 1.4.0`",
        )
    observation = session.observe(ask_drivers=False)
    policy = observation.history.policy
    environment = _named_environment(policy, environment_name)
    running = observation.history.deployed.get(environment.name, {})
    assert session.walked is not None
    ran = versions_ran(session.walked, environment.name)
    wanted = list(applications) or sorted(running)
    entries: list[tuple[str, str | None, str]] = []
    for application in wanted:
        target = to if to is not None else _previous(ran, application, running.get(application))
        _check_rollback(ran, environment.name, application, running.get(application), target)
        if target is not None:
            entries.append((application, running.get(application), target))
    if not entries:
        raise RefusedError(
            f"nothing ran in {environment.name} before what runs there now",
            hint="name an application and a version with --to, as `reconciler history "
            f"--environment {environment.name}` shows it ran",
        )
    actor = _may_edit(session, policy, environment, [name for name, _, _ in entries])
    head = session.repo.resolve("HEAD")
    name = _rollback_name(session, head, environment.name)
    path = plan_path(name)
    lines = ", ".join(f"{app} {now or '(none)'} -> {then}" for app, now, then in entries)
    text = _rollback_plan(name, environment.name, entries, f"Roll back {lines}.")
    file = session.repo.work_tree() / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    message = f"Roll back {environment.name}: {lines}\n\nA rollback plan, {path}."
    try:
        commit = session.repo.commit_paths([path], message, sign=_signs(session))
    except BaseException:
        if session.repo.resolve("HEAD") == head:
            file.unlink(missing_ok=True)
            with contextlib.suppress(GitError):
                session.repo.unstage([path])
        raise
    blob = session.repo.blob_at(commit, path) or ""
    return Made(
        "rollback",
        commit,
        PlanRef(path, blob),
        environment.name,
        actor.name,
        message,
        tuple(entries),
    )


def _named_environment(policy: Policy, name: str) -> Environment:
    """The environment a user named on the command line (lock, rollback); a typo is a
    usage error naming the closest one."""
    environment = policy.environments.get(name)
    if environment is None:
        raise unknown_name("environment", name, sorted(policy.environments), "environments")
    return environment


def _previous(ran: Sequence[Ran], application: str, running: str | None) -> str | None:
    """The version of `application` that ran before `running`, the latest such: None when
    nothing else ran."""
    versions = [item.version for item in ran if item.application == application]
    return next((version for version in reversed(versions) if version != running), None)


def _check_rollback(
    ran: Sequence[Ran], environment: str, application: str, running: str | None, to: str | None
) -> None:
    """Refuse up front what `decide` would refuse, or what would change nothing."""
    if to is None:
        raise RefusedError(
            f"no version of {application} ran in {environment} before "
            f"{running or 'now'}, as the records show",
            hint=f"`reconciler history --environment {environment}` lists its runs",
        )
    if to == running:
        raise RefusedError(
            f"{application} {to} already runs in {environment}",
            hint="name another version with --to",
        )
    if not any(item.application == application and item.version == to for item in ran):
        raise RefusedError(
            f"{application} {to} never ran in {environment}, as the records show: a rollback "
            "redeploys only what ran there",
            hint="promote it with a plan from the environment it comes from instead",
        )


def _may_edit(
    session: Session, policy: Policy, environment: Environment, applications: Sequence[str]
) -> Actor:
    """The local actor, who must hold plan.edit on `environment` for every application, as
    the landing of the plan file will be judged (`rules`)."""

    def may(actor: Actor) -> None:
        for application in applications:
            verdict = may_edit_application(policy, actor.name, environment.name, application)
            if not verdict:
                raise RefusedError(
                    f"{actor.name} may not write a plan into {environment.name} for "
                    f"{application}: {verdict.text()}",
                    hint=f"see `reconciler access {actor.name}`; a tech lead of the "
                    "application writes the rollback plan, and a plan.deploy holder triggers it",
                )

    return _attributed(session, policy, environment, may)


def _rollback_plan(
    name: str, environment: str, entries: Sequence[tuple[str, str | None, str]], notes: str
) -> str:
    data = {
        "name": name,
        "target": environment,
        "rollback": True,
        "applications": [{"name": app, "version": version} for app, _, version in entries],
        "notes": notes,
        "state": "ready",
    }
    return "# yaml-language-server: $schema=../schemas/plan.schema.json\n" + dump(data)


def _rollback_name(session: Session, head: str, environment: str) -> str:
    """'rollback-quality-assurance-3': the first number whose file is neither at HEAD nor in
    the working tree, so a rollback never edits another plan."""
    taken = set(session.repo.folder(head, "plans"))
    work_tree = session.repo.work_tree()
    number = 1
    while True:
        name = f"rollback-{environment}-{number}"
        path = plan_path(name)
        if path not in taken and not (work_tree / path).exists():
            return name
        number += 1
