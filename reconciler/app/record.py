"""Stage 6, record: the reconciler's own commits, signed, published by compare-and-swap.

Called by `reconcile`. Every record is a commit by the service account,
signed in-process with its key (`signing`), whose trailers `events` reads
back:

- a *start* record (`Result: started`, the instance, a lease deadline)
  before the first driver call: publishing it is the lock;
- a *heartbeat* record (`Result: heartbeat`, a later lease deadline) before a
  step the run's lease would not cover with its margin (`runs.may_step`);
- a *finish* record with the run's log and the new `deployments/<env>.yaml`;
  published after main recorded the run interrupted, it is a *late* record
  (`Result: late`, "finished after its lease", `late_message`);
- an *interrupted* record for a run that was started and never finished;
- one *refusal* record per pass naming every newly refused plan version.

Publishing moves the branch only if it still points where we built on: a
`git push` that the remote rejects unless it fast-forwards, or a local
`update-ref` with the old value. A lost race is not an error: the caller
fetches, re-verifies and re-decides.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from reconciler.adapters.gitobjects import commit_bytes
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.gitwriting import PushRejected
from reconciler.adapters.signing import SigningKey, signed_commit
from reconciler.app.execute import Execution, StepResult, Undo
from reconciler.core.decide import Decision
from reconciler.core.decide_values import Run
from reconciler.core.errors import GitError, ReconcilerError, UsageError
from reconciler.core.events import HEARTBEAT, LATE, PlanRef
from reconciler.core.layout import deployment_path
from reconciler.core.loader import dump
from reconciler.core.printable import printable

Clock = Callable[[], datetime]
# Like every other configuration file, so editors check it against its schema.
DEPLOYMENT_MODELINE: Final = "# yaml-language-server: $schema=../schemas/deployment.schema.json"


# Seconds between two runs of git's housekeeping (`Publisher.maintain`).
MAINTAIN_EVERY: Final = 60.0

# How `git push --porcelain` says the remote's branch is not the commit the push built on:
# seen before the push sent anything (git's status of the branch), or at the host's ref
# lock, when a push landed while ours was received (a quarter of the lost races in
# `python -m benchmarks.storm`): the host's status of the branch, with its reason.
_LOST_BEFORE: Final = frozenset({"[rejected] (fetch first)", "[rejected] (non-fast-forward)"})
_LOST_AT_LOCK: Final = "[remote rejected] (failed to update ref)"
_LOCK_MOVED: Final = re.compile(
    r"cannot lock ref '([^']*)': is at [0-9a-f]+ but expected [0-9a-f]+"
)


class Publisher:
    """Where records go: a remote's branch (pushed) or the local branch (update-ref).

    It remembers the last tip it saw or published, so a record can be built on
    it without asking the remote again; if someone pushed meanwhile, the
    publish fails and the caller fetches (`tip()`) and rebuilds.
    """

    def __init__(self, repo: GitRepo, branch: str, remote: str | None) -> None:
        self.repo = repo
        self.branch = branch
        self.remote = remote
        self.known: str | None = None
        self.ours = False  # `known` is a commit we just published: nobody has moved it since
        self._maintain_at = 0.0

    def tip(self) -> str:
        if self.remote is not None:
            # Records race other pushes from this fetch on: housekeeping waits (`maintain`).
            self.known = self.repo.fetch(self.remote, self.branch, maintain=False)
        else:
            self.known = self.repo.resolve(f"refs/heads/{self.branch}")
        self.ours = False
        return self.known

    def maintain(self) -> None:
        """Git's housekeeping of the clone, which the fetches of `tip` leave out: at the start
        of a pass, at most once a `MAINTAIN_EVERY` (a watcher passes every few seconds)."""
        if self.remote is not None and time.monotonic() >= self._maintain_at:
            self.repo.maintain()
            self._maintain_at = time.monotonic() + MAINTAIN_EVERY

    def current(self) -> str:
        """The tip to decide on: our own last publish, else fetched.

        Deciding on our own last publish is safe: if anyone pushed since, the
        next publish fails (compare-and-swap) and the caller fetches.
        """
        return self.known if self.ours and self.known else self.tip()

    def last_known(self) -> str:
        return self.known or self.tip()

    def publish(self, commit: str, expected: str) -> bool:
        """Move the branch from `expected` to `commit`; False when someone moved it first.

        A remote that rejects the push while its branch is still at `expected`
        did not lose us a race: it refuses the service's records (branch
        protection, a hook). Taken for a race, it was pushed to again and
        again, a thousand times a pass.
        """
        if self.remote is not None:
            rejected = self.repo.push(self.remote, commit, self.branch)
            published = rejected is None
            # Git's own verdict that the branch is not at `expected` any more is a lost
            # race for sure; any other rejection is one only if the branch moved.
            if rejected is not None and not self._race_lost(rejected) and self.tip() == expected:
                raise GitError(
                    f"{self.remote} refused the push to {self.branch}: {rejected.said}",
                    hint=f"let the reconciler's service account push to {self.branch} "
                    "(branch protection, or a hook that refuses its record commits)",
                )
        else:
            published = self.repo.update_ref(self.branch, commit, expected)
            if published:
                self.repo.follow_worktree(self.branch, expected, commit)
        if published:
            self.known = commit
        self.ours = published
        return published

    def _race_lost(self, rejected: PushRejected) -> bool:
        """Whether git itself says the branch was not at the commit the push built on. A
        hook's words are in `rejected.said` too ("remote: ..."), so they count only beside
        the status a hook cannot give: a refusal that reads like a lost race is a refusal."""
        if rejected.status in _LOST_BEFORE:
            return True
        if rejected.status != _LOST_AT_LOCK:
            return False
        return any(
            found.group(1) == f"refs/heads/{self.branch}"
            for found in _LOCK_MOVED.finditer(rejected.said)
        )


class RecordWriter:
    """Makes signed record commits on top of a given parent."""

    def __init__(self, repo: GitRepo, key: SigningKey, name: str, email: str, clock: Clock) -> None:
        self.repo = repo
        self.key = key
        self.name = name
        self.email = email
        self.clock = clock

    def commit(self, parent: str, message: str, files: Mapping[str, bytes] | None = None) -> str:
        base_tree = self.repo.commit(parent).tree
        tree = self.repo.tree_with(base_tree, files) if files else base_tree
        identity = f"{self.name} <{self.email}> {int(self.clock().timestamp())} +0000"
        payload = commit_bytes(tree, (parent,), identity, identity, message)
        return self.repo.write_object("commit", signed_commit(payload, self.key))

    def chain(self, parent: str, records: Sequence[tuple[str, Mapping[str, bytes] | None]]) -> str:
        """Several records, each on the previous one; the last one's id."""
        tip = parent
        for message, files in records:
            tip = self.commit(tip, message, files)
        return tip


# A reconciler's name goes into every start record's `Reconciler:` trailer.
_INSTANCE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,99}")


def check_instance_name(name: str) -> None:
    """Refuse a name that could not stand in one trailer line as it is."""
    if not _INSTANCE_NAME.fullmatch(name):
        raise UsageError(
            f"--instance {name!r} is not a reconciler name",
            hint="use at most 100 letters, digits and . _ : @ / -, starting with a letter or digit",
        )


def _trailers(pairs: Sequence[tuple[str, str | None]]) -> str:
    for key, value in pairs:
        # A line break would end the trailer block early: the record would
        # lose the trailers after it (its plan, its result, its run).
        if value and ("\n" in value or "\r" in value):
            raise ReconcilerError(
                f"the {key} trailer of a record would span lines: {value!r}",
                hint="this is a bug: a value that reaches a record must be one line",
            )
    return "\n".join(f"{key}: {value}" for key, value in pairs if value)


def _stem(ref: PlanRef) -> str:
    return ref.path.rsplit("/", 1)[-1].removesuffix(".yaml")


# A finish record's trailer for each step checked (`Verified: 1 ecommerce 1.4.0`); a step
# with neither was not checked, as in records from before checks.
_VERIFICATION_TRAILERS: Final[Mapping[str, str]] = {
    "verified": "Verified",
    "failed verification": "Failed-Verification",
}


def start_message(decision: Decision, run: str, instance: str, lease_until: datetime) -> str:
    environment = decision.environment or ""
    trailers = _trailers(
        [
            ("Plan", str(decision.ref)),
            ("Environment", environment),
            ("Triggered-By", decision.triggered_by),
            ("Approved-By", ", ".join(decision.approvers)),
            ("Result", "started"),
            ("Run", run),
            ("Retry-Of", decision.retry_of),
            ("Reconciler", instance),
            ("Lease-Until", lease_until.isoformat()),
        ]
    )
    return f"Start {_stem(decision.ref)} in {environment}: run {run}\n\n{trailers}\n"


def finish_message(decision: Decision, run: str, execution: Execution) -> str:
    environment = decision.environment or ""
    failed = execution.failed_step
    resumed = execution.resumed_at
    summary = "\n".join(
        f"{result.position}. {result.step.application} {result.step.version}: "
        f"{_verdict(result)} ({printable(result.outcome.summary)})"
        + ("" if result.skipped else f"; {result.verification}")
        for result in execution.steps
    )
    trailers = _trailers(
        [
            ("Plan", str(decision.ref)),
            ("Environment", environment),
            ("Triggered-By", decision.triggered_by),
            ("Approved-By", ", ".join(decision.approvers)),
            ("Result", execution.result),
            ("Run", run),
            ("Retry-Of", decision.retry_of),
            ("Resumed-At", _step_named(resumed) if resumed else None),
            ("Failed-Step", _step_named(failed) if failed else None),
            *(
                (_VERIFICATION_TRAILERS[result.verification], _step_named(result))
                for result in execution.steps
                if result.verification in _VERIFICATION_TRAILERS and not result.skipped
            ),
            *_rollback_trailers(execution),
        ]
    )
    if execution.reason is not None:
        reason = printable(execution.reason)
        summary = f"{summary}\n\n{reason}" if summary else reason
    if execution.rollback:
        summary += "\n\nRolled back (on_failure: rollback), last step first:\n" + "\n".join(
            _undone(undo) for undo in execution.rollback
        )
    if execution.half_deployed:
        summary += "\n\nLeft half-deployed:\n" + "\n".join(
            f"- {printable(line)}" for line in execution.half_deployed
        )
    return (
        f"Deploy {_stem(decision.ref)} to {environment}: {execution.result}\n\n"
        f"{summary or 'no applications'}\n\n{trailers}\n"
    )


def _rollback_trailers(execution: Execution) -> list[tuple[str, str | None]]:
    """`Rolled-Back: ecommerce 1.4.0 (verified)` for each application a rollback put back
    (with its check), `Rollback-Failed: ecommerce 1.4.0` for each it could not, and
    `Left-Deployed: ecommerce 1.5.0` for each version a failed run leaves running."""
    pairs: list[tuple[str, str | None]] = []
    for undo in execution.rollback:
        redeploy = undo.redeploy
        if redeploy is None:
            continue
        named = f"{redeploy.step.application} {redeploy.step.version}"
        if redeploy.outcome.ok:
            pairs.append(("Rolled-Back", f"{named} ({redeploy.verification})"))
        else:
            pairs.append(("Rollback-Failed", named))
    if execution.result == "failed":
        undone = {undo.step.step.application for undo in execution.rollback if undo.switched}
        pairs.extend(
            ("Left-Deployed", f"{result.step.application} {result.step.version}")
            for result in execution.steps
            if result.outcome.ok and not result.skipped and result.step.application not in undone
        )
    return pairs


def _undone(undo: Undo) -> str:
    """One line of a finish record's rollback: what it put back, and how that went."""
    step = undo.step.step
    replaced = f"{step.application} {step.version}"
    redeploy = undo.redeploy
    if redeploy is None:
        return printable(f"- {replaced}: not rolled back ({undo.why})")
    verdict = "ok" if redeploy.outcome.ok else "FAILED"
    back = f"- {replaced} back to {undo.to}: {verdict} ({redeploy.outcome.summary})"
    if not undo.switched:
        back += "; it runs whatever the failed redeploy left"
    return printable(back) + f"; {redeploy.verification}"


def _verdict(result: StepResult) -> str:
    if result.skipped:
        return "skipped"
    return "ok" if result.outcome.ok else "FAILED"


def _step_named(result: StepResult) -> str:
    """A step as the `Failed-Step` and `Resumed-At` trailers name it: '2 ecommerce 1.4.0'."""
    return f"{result.position} {result.step.application} {result.step.version}"


def heartbeat_message(
    run: str, plan: PlanRef, environment: str, instance: str, lease_until: datetime
) -> str:
    trailers = _trailers(
        [
            ("Plan", str(plan)),
            ("Environment", environment),
            ("Result", HEARTBEAT),
            ("Run", run),
            ("Reconciler", instance),
            ("Lease-Until", lease_until.isoformat()),
        ]
    )
    return f"Extend the lease of run {run}\n\n{trailers}\n"


def late_message(message: str) -> str:
    """A finish record's message (`finish_message`) as it is published once main records its
    run interrupted: finished after its lease, what it did kept, `Result: late`."""
    subject, _, rest = message.partition("\n")
    head, _, result = subject.rpartition(": ")
    lines = rest.split("\n")
    # The trailer block's, the last one: a line of the body never becomes the result.
    last = max(number for number, line in enumerate(lines) if line.startswith("Result: "))
    lines[last] = f"Result: {LATE}"
    note = (
        "Its lease passed and main records the run interrupted: this record does not end "
        "it, and says what it did."
    )
    return f"{head}: finished after its lease ({result})\n\n{note}\n" + "\n".join(lines)


def interrupted_message(run: Run, why: str, instance: str) -> str:
    trailers = _trailers(
        [
            ("Plan", str(run.plan)),
            ("Environment", run.environment),
            ("Result", "interrupted"),
            ("Run", run.id),
            ("Reconciler", instance),
        ]
    )
    return f"Mark run {run.id} interrupted\n\n{printable(why)}\n\n{trailers}\n"


def refusal_message(refused: Sequence[Decision], instance: str) -> str:
    body = "\n".join(
        printable(f"{decision.ref}: {'; '.join(decision.reasons)}") for decision in refused
    )
    trailers = _trailers(
        [
            ("Result", "refused"),
            *(("Refused-Plan", str(decision.ref)) for decision in refused),
            ("Reconciler", instance),
        ]
    )
    count = len(refused)
    return f"Refuse {count} plan version{'s' * (count != 1)}\n\n{body}\n\n{trailers}\n"


def log_path(environment: str, plan: str, run: str) -> str:
    return f"logs/{environment}/{plan}/{run}.log"


def log_bytes(decision: Decision, run: str, execution: Execution) -> bytes:
    header = [
        f"run {run}",
        f"plan {decision.ref}",
        f"environment {decision.environment}",
        f"triggered by {decision.triggered_by}",
        f"approved by {', '.join(decision.approvers) or 'nobody'}",
        *([f"retry of {decision.retry_of}"] if decision.retry_of else []),
    ]
    lines = [*header, "", *map(printable, execution.log), f"result {execution.result}"]
    return ("\n".join(lines) + "\n").encode()


def deployments_bytes(
    environment: str,
    previous: Mapping[str, Any] | None,
    deployed: Sequence[tuple[str, str]],
    plan: str,
    run: str,
    when: datetime,
) -> bytes:
    """The new deployments/<env>.yaml: what runs there now, after this run's successful steps."""
    applications = dict((previous or {}).get("applications") or {})
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    for application, version in deployed:
        applications[application] = {
            "version": version,
            "plan": plan,
            "run": run,
            "deployed_at": stamp,
        }
    data = {"environment": environment, "applications": dict(sorted(applications.items()))}
    header = (
        f"{DEPLOYMENT_MODELINE}\n"
        "# Written by the reconciler; do not edit. What runs in this environment now.\n"
    )
    return (header + dump(data)).encode()


def deployments_file(environment: str) -> str:
    return deployment_path(environment)
