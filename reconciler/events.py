"""What landed commits say: approvals, triggers, retries, and the reconciler's records.

Called by `authorise` while it walks each landing (it knows the policy that
judged the landing), and read back by `decide` and `history`. A trailer
counts only where DESIGN.md says it does, and every one that does not is
kept with the reason it was ignored, so `plan` and `history` can say why:

- `Approve-Plan:`, `Deploy-Plan: plans/<file>@<full blob id>` and `Retry-Run:`
  count in single-parent commits that change no files, descend from the
  trust anchor and whose tree holds that path at that blob; never in a merge
  commit's message (hosts copy pull-request descriptions there); never with
  a short blob id; never under a key spelt in other cases (`deploy-plan:`).
- A record (`Result:` with `Plan:`, `Run:`, ...) counts only when signed by a
  service account's key of the judging policy, in a single-parent commit that
  descends from the trust anchor (never one from an unrelated history; a fork
  shares the anchor, so each repository needs its own service key).
- A record counts once (`record_refusal`): one start and one finish per run id,
  the finish built on its run's start.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from reconciler.layout import place

APPROVE: Final = "Approve-Plan"
DEPLOY: Final = "Deploy-Plan"
RETRY: Final = "Retry-Run"
RESULT: Final = "Result"
HUMAN_TRAILERS: Final = (APPROVE, DEPLOY, RETRY)
RESULTS: Final = ("started", "succeeded", "failed", "interrupted", "refused")
FINISHED: Final = ("succeeded", "failed", "interrupted")

# A full blob id: 40 hex digits with SHA-1, 64 in a SHA-256 repository.
_REF = re.compile(r"^(?P<path>plans/[^@\s]+\.yaml)@(?P<blob>[0-9a-f]{40}(?:[0-9a-f]{24})?)$")
_RUN = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*\.[0-9]+$")
_TRAILER_KEY = re.compile(r"[A-Za-z0-9-]+")

Kind = Literal["approve", "deploy", "retry", "record", "ignored"]


@dataclass(frozen=True, slots=True)
class PlanRef:
    """A plan version: its path and the full id of its blob."""

    path: str
    blob: str

    def __str__(self) -> str:
        return f"{self.path}@{self.blob}"


def parse_plan_ref(text: str) -> PlanRef | None:
    match = _REF.match(text.strip())
    if match is None or place(match["path"]).kind != "plan":
        return None
    return PlanRef(match["path"], match["blob"])


def is_run_id(text: str) -> bool:
    return bool(_RUN.match(text))


def parse_trailers(message: str) -> dict[str, tuple[str, ...]]:
    """`Key: value` lines of the message's last paragraph (git's trailer block)."""
    paragraphs = [part for part in message.strip().split("\n\n") if part.strip()]
    if len(paragraphs) < 2:
        return {}
    found: dict[str, list[str]] = {}
    for line in paragraphs[-1].splitlines():
        key, separator, value = line.partition(": ")
        if not separator or not _TRAILER_KEY.fullmatch(key):
            return {}
        found.setdefault(key, []).append(value.strip())
    return {key: tuple(values) for key, values in found.items()}


def miscased_keys(trailers: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """Keys that spell an approval, trigger or retry in other letter cases: (written, meant).

    Only the exact keys count (a history means what it meant when it landed), but a
    `deploy-plan:` typed by hand should not vanish without a word.
    """
    meant = {key.casefold(): key for key in HUMAN_TRAILERS}
    return tuple(
        (key, meant[key.casefold()])
        for key in trailers
        if key.casefold() in meant and key not in HUMAN_TRAILERS
    )


@dataclass(frozen=True, slots=True)
class Signoff:
    """An approval, a trigger or a retry that counts, with who made it and what they held."""

    kind: Literal["approve", "deploy", "retry"]
    commit: str
    seq: int  # the landing that brought it to main
    plan: PlanRef | None  # approve and deploy
    run: str | None  # retry
    actor: str | None
    how: str
    verified: bool
    held: bool  # the permission, under the policy that judged its landing
    reasons: tuple[str, ...]
    committed_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "commit": self.commit,
            "seq": self.seq,
            "plan": str(self.plan) if self.plan else None,
            "run": self.run,
            "actor": self.actor,
            "how": self.how,
            "verified": self.verified,
            "held": self.held,
            "reasons": list(self.reasons),
            "committed_at": self.committed_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signoff:
        return cls(
            kind=data["kind"],
            commit=data["commit"],
            seq=data["seq"],
            plan=parse_plan_ref(data["plan"]) if data["plan"] else None,
            run=data["run"],
            actor=data["actor"],
            how=data["how"],
            verified=data["verified"],
            held=data["held"],
            reasons=tuple(data["reasons"]),
            committed_at=datetime.fromisoformat(data["committed_at"]),
        )


@dataclass(frozen=True, slots=True)
class Record:
    """A record the reconciler signed: a run started, finished, or refusals of a pass."""

    commit: str
    seq: int
    result: str
    run: str | None
    plan: PlanRef | None
    environment: str | None
    instance: str | None
    lease_until: datetime | None
    triggered_by: str | None
    approved_by: tuple[str, ...]
    refused: tuple[PlanRef, ...]
    committed_at: datetime
    retry_of: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": "record",
            "retry_of": self.retry_of,
            "commit": self.commit,
            "seq": self.seq,
            "result": self.result,
            "run": self.run,
            "plan": str(self.plan) if self.plan else None,
            "environment": self.environment,
            "instance": self.instance,
            "lease_until": self.lease_until.isoformat() if self.lease_until else None,
            "triggered_by": self.triggered_by,
            "approved_by": list(self.approved_by),
            "refused": [str(ref) for ref in self.refused],
            "committed_at": self.committed_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        lease = data["lease_until"]
        return cls(
            commit=data["commit"],
            seq=data["seq"],
            result=data["result"],
            run=data["run"],
            plan=parse_plan_ref(data["plan"]) if data["plan"] else None,
            environment=data["environment"],
            instance=data["instance"],
            lease_until=datetime.fromisoformat(lease) if lease else None,
            triggered_by=data["triggered_by"],
            approved_by=tuple(data["approved_by"]),
            refused=tuple(ref for ref in (parse_plan_ref(text) for text in data["refused"]) if ref),
            committed_at=datetime.fromisoformat(data["committed_at"]),
            retry_of=data.get("retry_of"),
        )


def parse_record(
    commit: str, seq: int, trailers: Mapping[str, tuple[str, ...]], committed_at: datetime
) -> Record | str:
    """A record from its trailers, or why the trailers do not make one."""
    result = trailers.get(RESULT, ("",))[0]
    if result not in RESULTS:
        return f"unknown Result '{result}'"

    def one(key: str) -> str | None:
        values = trailers.get(key, ())
        return values[0] if values else None

    plan_text = one("Plan")
    plan = parse_plan_ref(plan_text) if plan_text else None
    run = one("Run")
    if result != "refused" and (plan is None or run is None or not is_run_id(run)):
        return "a run record needs Plan: <path>@<full blob id> and Run: <plan>.<n>"
    lease_text = one("Lease-Until")
    try:
        lease = datetime.fromisoformat(lease_text) if lease_text else None
    except ValueError:
        return f"Lease-Until '{lease_text}' is not an ISO 8601 time"
    approved = one("Approved-By")
    return Record(
        commit=commit,
        seq=seq,
        result=result,
        run=run,
        plan=plan,
        environment=one("Environment"),
        instance=one("Reconciler"),
        lease_until=lease,
        triggered_by=one("Triggered-By"),
        approved_by=tuple(name.strip() for name in approved.split(",")) if approved else (),
        refused=tuple(
            ref
            for ref in (parse_plan_ref(text) for text in trailers.get("Refused-Plan", ()))
            if ref
        ),
        committed_at=committed_at,
        retry_of=one("Retry-Of"),
    )


def record_refusal(
    record: Record, earlier: Sequence[Record], built_on: Callable[[str], bool]
) -> str | None:
    """Why a run's record does not count, or None: a record counts once.

    A run id has one start and one finish. A start counts for a run no record
    counted for yet; a finish for a run that started and has not ended, with
    the start's plan and environment, in a commit built on the start record
    (`built_on(commit)`: the service's own continuation of the run). So a
    record copied back into the history neither opens a run that ended (for
    the service to mark it interrupted, and a retry to deploy it again) nor
    ends one a second time (and so never moves `deployments/`).

    `earlier`: the records of the same run that counted, in landing order.
    """
    if record.run is None or record.result not in ("started", *FINISHED):
        return None
    start = next((item for item in earlier if item.result == "started"), None)
    end = next((item for item in earlier if item.result in FINISHED), None)
    if end is not None:
        return f"the run already ended in {end.commit[:12]}"
    if start is not None and record.result == "started":
        return f"the run already started in {start.commit[:12]}"
    if start is None:
        return None if record.result == "started" else "no start record of the run counted"
    if (record.plan, record.environment) != (start.plan, start.environment):
        return (
            f"the run started for {start.plan} in {start.environment}, "
            f"not {record.plan} in {record.environment}"
        )
    if not built_on(start.commit):
        return f"it is not built on the run's start record {start.commit[:12]}"
    return None
