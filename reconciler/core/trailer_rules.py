"""Stage 3, authorise: which trailers of a landed commit count (approvals, triggers, records).

The judge (`judge`) asks these rules about every commit of a landing, before it
judges the landing's edits (an edit of deployments/ asks whether its record
counts). The rules ask back what only the landing knows (`Asked`): the commit's
tree, whether it descends from the trust anchor, the run's earlier records. So
they run without Git: tests/test_judge.py answers from values.

- `Approve-Plan:`, `Deploy-Plan: plans/<file>@<full blob id>` and `Retry-Run:`
  count in single-parent commits that change no files, descend from the trust
  anchor and whose tree holds that path at that blob; never in a merge commit's
  message (hosts copy pull-request descriptions there); never under a key spelt
  in other cases (`deploy-plan:`), which is ignored with the key to write.
- `Lock:` and `Unlock: <env>[/<app>]` (with `Lock-Reason:`) count on the same
  terms, and only when signed by a plan.deploy holder on the environment or a
  settings user (`rules.judge_lock`), whatever the environment's gates say.
- A record (`Result:` with `Plan:`, `Run:`, ...) counts only when signed by a
  service account's key of the judging policy, in a single-parent commit that
  descends from the trust anchor and is itself a landing, on the branch's
  first-parent line, and once (`events.record_refusal`). The reconciler pushes
  its records straight onto the branch it follows; one that arrives inside a
  merge was made on another branch, for that branch's reconciler.

Every trailer that does not count is kept with why (`journal.IgnoredTrailer`), for
`plan` and `history`. How trailers are read (`events.read_trailers`) is held against git.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final, Literal, Protocol

from msgspec import Struct

from reconciler.core.events import (
    APPROVE,
    DEPLOY,
    FINISHED,
    HUMAN_TRAILERS,
    LATE,
    LOCK,
    LOCK_REASON,
    RESULT,
    RETRY,
    UNLOCK,
    Lock,
    PlanRef,
    Record,
    Signoff,
    Trailers,
    is_run_id,
    miscased_keys,
    parse_plan_ref,
    parse_record,
    record_refusal,
)
from reconciler.core.identity import CommitFacts, resolve
from reconciler.core.journal import IgnoredTrailer
from reconciler.core.model import Policy
from reconciler.core.permissions import PLAN_APPROVE, PLAN_DEPLOY
from reconciler.core.rules import judge_lock, judge_signoff

MERGE_MESSAGE: Final = "a merge commit's message never counts (hosts copy pull-request text there)"
NOT_FROM_ANCHOR: Final = "the commit does not descend from the trust anchor"
CHANGES_FILES: Final = "the commit also changes files; approvals and triggers are empty commits"
OFF_THE_LINE: Final = (
    "a record counts only on the first-parent line of the branch it was made for; "
    "this one came in through a merge, from another branch"
)
_SIGNOFFS: Final[tuple[tuple[str, Literal["approve", "deploy"], str], ...]] = (
    (APPROVE, "approve", PLAN_APPROVE),
    (DEPLOY, "deploy", PLAN_DEPLOY),
)


Found = Signoff | Record | Lock | IgnoredTrailer


class Asked(Protocol):
    """What the trailer rules ask about the commit that carries the trailers."""

    def blob(self, path: str) -> str | None:
        """The blob at `path` in the commit's tree (None: no such file)."""
        ...

    def target(self, path: str, blob: str) -> object:
        """The `target` of the plan `path` holding `blob`."""
        ...

    def descends_from_anchor(self) -> bool: ...

    def built_on(self, ancestor: str) -> bool:
        """Whether the commit is built on `ancestor`, a commit that landed."""
        ...

    def records_of(self, run: str) -> Sequence[Record]:
        """The records of `run` that counted before this commit, in landing order."""
        ...


class Trailed(Struct, frozen=True):
    """What one commit's trailers say: what counts and what is ignored, in the order
    found; the run its record finishes (deployments/ moves only with one that counts),
    or why its record does not count."""

    found: tuple[Found, ...] = ()
    finish: Record | None = None
    void: str | None = None


class Carrier(Struct, frozen=True):
    """The commit whose message is read, as the rules need it."""

    commit: str
    seq: int
    parents: int
    lands: bool  # it is the landing's own commit, on the branch's first-parent line
    changes_files: bool
    trailers: Trailers  # its message's, as `read_trailers` read them
    facts: CommitFacts
    committed_at: datetime


def read_commit(carrier: Carrier, policy: Policy, asked: Asked) -> Trailed:
    """Approvals, triggers, retries and records `carrier` holds, and what it holds that
    counts for nothing."""
    read = carrier.trailers
    if read.refused is not None:
        return Trailed((_ignored(carrier, policy, read.by_key(), read.refused),))
    trailers = read.counted()
    if not trailers:
        return Trailed()

    def ignore(reason: str, record: Record | None = None) -> IgnoredTrailer:
        return _ignored(carrier, policy, trailers, reason, record)

    if carrier.parents != 1:
        return Trailed((ignore(MERGE_MESSAGE),))
    if RESULT in trailers:
        # A record from an unrelated history (one service key signing for two
        # repositories) must not say that a run started or ended here. A fork shares
        # the anchor, so this does not tell its records apart: one key per repository.
        if not asked.descends_from_anchor():
            return Trailed((ignore(NOT_FROM_ANCHOR),))
        return _record(carrier, policy, trailers, asked, ignore)
    found: list[Found] = [
        ignore(
            f"'{written}' is not a key the reconciler reads: "
            f"trailer keys are exact, write '{meant}'"
        )
        for written, meant in miscased_keys(trailers)
    ]
    if not any(key in trailers for key in HUMAN_TRAILERS):
        return Trailed(tuple(found))
    if carrier.changes_files:
        return Trailed((*found, ignore(CHANGES_FILES)))
    if not asked.descends_from_anchor():
        return Trailed((*found, ignore(NOT_FROM_ANCHOR)))
    return Trailed((*found, *_signoffs(carrier, policy, trailers, asked, ignore)))


def _signoffs(
    carrier: Carrier,
    policy: Policy,
    trailers: Mapping[str, tuple[str, ...]],
    asked: Asked,
    ignore: _Ignore,
) -> list[Found]:
    """The approvals, triggers and retries of a commit where they may count, each judged,
    or ignored with why."""
    found: list[Found] = []
    for key, kind, permission in _SIGNOFFS:
        for text in trailers.get(key, ()):
            ref = parse_plan_ref(text)
            if ref is None:
                found.append(ignore(f"{key}: '{text}' is not plans/<file>.yaml@<full blob id>"))
            elif asked.blob(ref.path) != ref.blob:
                found.append(
                    ignore(f"{key}: the commit's tree does not hold {ref.path} at {ref.blob[:12]}")
                )
            else:
                target = asked.target(ref.path, ref.blob)
                found.append(_signoff(carrier, policy, kind, permission, ref, None, target))
    locks: tuple[tuple[str, Literal["lock", "unlock"]], ...] = ((LOCK, "lock"), (UNLOCK, "unlock"))
    for key, lock in locks:
        for text in trailers.get(key, ()):
            found.append(_lock(carrier, policy, lock, key, text, trailers, ignore))
    for run in trailers.get(RETRY, ()):
        environment = run_environment(run, asked)
        if environment is None:
            found.append(ignore(f"{RETRY}: '{run}' is not a run the reconciler recorded"))
        else:
            found.append(_signoff(carrier, policy, "retry", PLAN_DEPLOY, None, run, environment))
    return found


def _lock(
    carrier: Carrier,
    policy: Policy,
    kind: Literal["lock", "unlock"],
    key: str,
    text: str,
    trailers: Mapping[str, tuple[str, ...]],
    ignore: _Ignore,
) -> Found:
    """A lock or unlock of `<env>` or `<env>/<app>`, judged (`rules.judge_lock`); ignored
    when it names no environment of the policy."""
    environment, _, application = text.partition("/")
    if environment not in policy.environments:
        return ignore(f"{key}: '{text}' names no environment (write <env> or <env>/<app>)")
    if application and application not in policy.application_owner:
        return ignore(f"{key}: no team owns application '{application}'")
    judgement = judge_lock(policy, carrier.facts, environment)
    reasons = trailers.get(LOCK_REASON, ())
    return Lock(
        kind=kind,
        commit=carrier.commit,
        seq=carrier.seq,
        environment=environment,
        application=application or None,
        why=reasons[0] if reasons else "",
        actor=judgement.actor.id,
        how=judgement.actor.how,
        held=judgement.verdict.allowed,
        reasons=judgement.verdict.reasons,
        committed_at=carrier.committed_at,
    )


def run_environment(run: str, asked: Asked) -> str | None:
    """The environment a recorded run deployed to; None when `run` is no run recorded."""
    if not is_run_id(run):
        return None
    for record in asked.records_of(run):
        if record.environment:
            return str(record.environment)
    return None


def _record(
    carrier: Carrier,
    policy: Policy,
    trailers: Mapping[str, tuple[str, ...]],
    asked: Asked,
    ignore: _Ignore,
) -> Trailed:
    actor = resolve(carrier.facts, policy, signature_required=True)
    if actor.kind != "service":
        why = f"a record counts only when signed by the reconciler service account ({actor.how})"
        return Trailed((ignore(why),))
    record = parse_record(carrier.commit, carrier.seq, trailers, carrier.committed_at)
    if isinstance(record, str):
        return Trailed((ignore(record),))
    if not carrier.lands:
        return Trailed((ignore(OFF_THE_LINE, record),), void=OFF_THE_LINE)
    if record.run is not None:
        void = record_refusal(record, asked.records_of(record.run), asked.built_on)
        if void is not None:
            return Trailed((ignore(void, record),), void=void)
    # A late record writes what its run deployed after all (`runs.late_steps`).
    return Trailed((record,), finish=record if record.result in (*FINISHED, LATE) else None)


class _Ignore(Protocol):
    def __call__(self, reason: str, record: Record | None = None) -> IgnoredTrailer: ...


def _ignored(
    carrier: Carrier,
    policy: Policy,
    trailers: Mapping[str, tuple[str, ...]],
    reason: str,
    record: Record | None = None,
) -> IgnoredTrailer:
    actor = resolve(carrier.facts, policy, signature_required=False).id
    return IgnoredTrailer(
        commit=carrier.commit,
        seq=carrier.seq,
        committed_at=carrier.committed_at,
        trailers=tuple((key, tuple(values)) for key, values in trailers.items()),
        reason=reason,
        actor=actor,
        record=record,
    )


def _signoff(
    carrier: Carrier,
    policy: Policy,
    kind: Literal["approve", "deploy", "retry"],
    permission: str,
    ref: PlanRef | None,
    run: str | None,
    target: object,
) -> Signoff:
    judgement = judge_signoff(policy, carrier.facts, permission, target)
    actor, verdict = judgement.actor, judgement.verdict
    return Signoff(
        kind=kind,
        commit=carrier.commit,
        seq=carrier.seq,
        plan=ref,
        run=run,
        actor=actor.id,
        how=actor.how,
        verified=actor.verified,
        held=verdict.allowed,
        reasons=verdict.reasons,
        committed_at=carrier.committed_at,
    )
