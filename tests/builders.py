"""decide's inputs as plain values, built without Git: decision specifications in milliseconds.

A `Story` is the seed story told as values: each step lands one commit on main and
leaves what authorisation would have stored for it, judged by the same pure rules
(`identity.resolve`, `rules.judge_signoff`, `permissions.may_on_environment`):

    story = Story()                                    # the seed story's policy
    story.deployed("development", {"ecommerce": "1.4.0"})
    story.land("alice", QA_PLAN, qa_plan(ECOMMERCE))   # a plan version, committed by alice
    story.approve("ravi", QA_PLAN)                     # an Approve-Plan by ravi
    story.trigger("olga", QA_PLAN)                     # a Deploy-Plan by olga
    decision = story.decide()[QA_PLAN]                 # decide(story.history(), SUITE_NOW)

Commit ids are made up; blob ids are git's own for the text. Keys are well-formed
ssh-ed25519 public keys made from a person's name, with no private half: nothing here
signs, a commit's facts say whose key signed it. What Git itself decides (which commits
landed, trailer parsing, reverts, merges) stays with the Git-backed stories.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import yaml
from msgspec.structs import replace

from reconciler.core.config import build_environment, build_policy
from reconciler.core.decide import Decision, decide
from reconciler.core.decide_values import History, Landed, OnMain, Run, RunResult
from reconciler.core.events import PlanRef, Signoff
from reconciler.core.identity import CommitFacts, resolve
from reconciler.core.loader import load
from reconciler.core.model import Environment, Policy
from reconciler.core.permissions import PLAN_APPROVE, PLAN_DEPLOY, may_on_environment
from reconciler.core.resources import example_dir
from reconciler.core.rules import judge_signoff, landing_style, triggers
from reconciler.core.sshkeys import parse_public_key
from tests.clock import SUITE_NOW
from tests.configrepo import example_file
from tests.scenarios import ECOMMERCE, PORTAL, QA_PLAN, qa_plan

ENVIRONMENTS = ("development", "quality-assurance", "production")


def public_key(person: str, label: str = "") -> str:
    """A well-formed ssh-ed25519 public key for `person` (`label`: another of theirs)."""
    point = hashlib.sha256(f"{person}/{label}".encode()).digest()
    blob = b"".join(len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", point))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {person}@example.com"


def fingerprint(person: str, label: str = "") -> str:
    return parse_public_key(public_key(person, label)).fingerprint


def email(person: str) -> str:
    return f"{person}@example.com"


def seed_teams() -> dict[str, Any]:
    """The example teams.yaml with `public_key`s (bob and erik have none), as data."""
    data: dict[str, Any] = yaml.safe_load((example_dir() / "teams.yaml").read_text())
    for user_id, user in data["users"].items():
        if "keys" in user:
            user["keys"] = [public_key(user_id)]
    data["service_accounts"]["reconciler"]["keys"] = [public_key("reconciler")]
    return data


def environment(name: str, text: str | None = None) -> Environment:
    """An environment from its YAML `text` (default: the example's)."""
    path = f"environments/{name}.yaml"
    raw = (text if text is not None else example_file(path)).encode()
    return build_environment(load(raw, path).data)


def policy(
    teams: Mapping[str, Any] | None = None, environments: Mapping[str, str] | None = None
) -> Policy:
    """The seed story's policy; `teams` data and environments' YAML texts (by name)
    replace the example's."""
    texts: dict[str, str | None] = dict.fromkeys(ENVIRONMENTS)
    texts.update(environments or {})
    return build_policy(
        teams or seed_teams(), [environment(name, text) for name, text in texts.items()]
    )


def blob_id(text: str) -> str:
    """The id git gives a blob holding `text`."""
    raw = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(raw) + raw, usedforsecurity=False).hexdigest()


def on_main(path: str, text: str) -> OnMain:
    """A plan file on main's tip, its content effective (valid and authorised)."""
    return OnMain(path, blob_id(text), load(text.encode(), path).data, ())


def ref(path: str, text: str) -> PlanRef:
    return PlanRef(path, blob_id(text))


@dataclass
class Story:
    """decide's inputs, one landed commit at a time; `history()` is the `History`."""

    policy: Policy = field(default_factory=policy)
    clock: datetime = SUITE_NOW - timedelta(hours=2)  # commits a minute apart from here
    seq: int = 0
    plans: dict[str, OnMain] = field(default_factory=dict)
    landings: dict[PlanRef, Landed] = field(default_factory=dict)
    signoffs: list[Signoff] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    editors: dict[str, set[str]] = field(default_factory=dict)
    first_seen: dict[str, datetime] = field(default_factory=dict)
    commit_times: dict[str, datetime] = field(default_factory=dict)
    facts: dict[str, CommitFacts] = field(default_factory=dict)
    versions: dict[str, dict[str, str]] = field(default_factory=dict)  # History.deployed
    head: str = ""  # the latest commit

    def commit(
        self,
        by: str,
        *,
        signed: bool = True,
        key: str = "",
        date: datetime | None = None,
        parents: int = 1,
    ) -> str:
        """One more commit on main by `by` (signed with their key `key`, `date` its
        committer date); its made-up id."""
        self.seq += 1
        self.clock += timedelta(minutes=1)
        commit = hashlib.sha1(f"commit {self.seq}".encode(), usedforsecurity=False).hexdigest()
        self.commit_times[commit] = date or self.clock
        self.head = commit
        self.facts[commit] = CommitFacts(
            commit=commit,
            signature_status="good" if signed else "unsigned",
            fingerprint=fingerprint(by, key) if signed else None,
            signature_reason="",
            committer_email=email(by),
            author_email=email(by),
            parents=parents,
        )
        return commit

    def land(self, by: str, path: str, text: str, *, signed: bool = True) -> str:
        """`by` commits `text` as the plan at `path`, straight onto main; the commit."""
        version = on_main(path, text)
        data = version.data or {}
        target = data.get("target")
        env = self.policy.environments.get(target) if isinstance(target, str) else None
        commit = self.commit(by, signed=signed)
        facts = self.facts[commit]
        actor = resolve(
            facts, self.policy, signature_required=env.gates.signed_commits if env else True
        )
        style = landing_style(facts, actor, onto_main=True)
        verdict = (
            may_on_environment(self.policy, actor.name, PLAN_DEPLOY, target)
            if actor.known and isinstance(target, str) and triggers(style)
            else None
        )
        self.plans[path] = version
        self.landings[PlanRef(path, version.blob)] = Landed(
            seq=self.seq,
            commit=commit,
            actor=actor.id,
            how=actor.how,
            triggered=bool(verdict),
            reasons=tuple(verdict.reasons) if verdict is not None else (actor.how,),
            style=style,
            squashed_by=actor.squashed_by,
        )
        if actor.id is not None:
            self.editors.setdefault(path, set()).add(actor.id)
        return commit

    def signoff(
        self,
        kind: Literal["approve", "deploy", "retry"],
        by: str,
        *,
        plan: PlanRef | None = None,
        run: str | None = None,
        signed: bool = True,
        key: str = "",
        date: datetime | None = None,
    ) -> str:
        """An empty commit carrying one sign-off trailer, judged as it lands; the commit."""
        commit = self.commit(by, signed=signed, key=key, date=date)
        if plan is not None:
            target = (self.plans[plan.path].data or {}).get("target")
        else:
            target = next(item.environment for item in self.runs if item.id == run)
        permission = PLAN_APPROVE if kind == "approve" else PLAN_DEPLOY
        judgement = judge_signoff(self.policy, self.facts[commit], permission, target)
        self.signoffs.append(
            Signoff(
                kind=kind,
                commit=commit,
                seq=self.seq,
                plan=plan,
                run=run,
                actor=judgement.actor.id,
                how=judgement.actor.how,
                verified=judgement.actor.verified,
                held=judgement.verdict.allowed,
                reasons=judgement.verdict.reasons,
                committed_at=self.commit_times[commit],
            )
        )
        return commit

    def current(self, path: str) -> PlanRef:
        return PlanRef(path, self.plans[path].blob)

    def approve(self, by: str, path: str, **options: Any) -> str:
        return self.signoff("approve", by, plan=self.current(path), **options)

    def trigger(self, by: str, path: str, **options: Any) -> str:
        return self.signoff("deploy", by, plan=self.current(path), **options)

    def retry(self, by: str, run: str, **options: Any) -> str:
        return self.signoff("retry", by, run=run, **options)

    def ran(
        self,
        path: str,
        run: str,
        result: RunResult = "succeeded",
        environment: str = "quality-assurance",
    ) -> Run:
        """A run of the current version of `path`: its start record, then (unless it is
        still `started`) its finish record, both by the reconciler."""
        started = self.commit("reconciler")
        begun = Run(
            id=run,
            plan=self.current(path),
            environment=environment,
            result="started",
            instance="test-instance",
            lease_until=None,
            started=started,
            finished=None,
            triggered_by=None,
            approved_by=(),
            retry_of=None,
            started_at=self.commit_times[started],
            started_seq=self.seq,
        )
        if result != "started":
            finished = self.commit("reconciler")
            begun = replace(begun, result=result, finished=finished, finished_seq=self.seq)
        self.runs.append(begun)
        return begun

    def deployed(self, environment: str, versions: Mapping[str, str]) -> None:
        """What runs in `environment` (its deployments/ file), by application."""
        self.versions[environment] = dict(versions)

    def history(self) -> History:
        """decide's inputs; as `gather` reads them, only the landings of the versions on
        main."""
        current = {self.current(path) for path in self.plans}
        return History(
            policy=self.policy,
            plans=tuple(self.plans[path] for path in sorted(self.plans)),
            landings={ref: landed for ref, landed in self.landings.items() if ref in current},
            signoffs=tuple(self.signoffs),
            runs=tuple(self.runs),
            editors={path: frozenset(actors) for path, actors in self.editors.items()},
            first_seen=dict(self.first_seen),
            commit_times=dict(self.commit_times),
            facts=dict(self.facts),
            deployed={env: dict(apps) for env, apps in self.versions.items()},
        )

    def decide(self, *, now: datetime = SUITE_NOW) -> dict[str, Decision]:
        """Every plan decided at `now`, by path; the commits not seen before are first
        seen now, as a reconciler pass marks them."""
        for commit in self.commit_times:
            self.first_seen.setdefault(commit, now)
        return {decision.path: decision for decision in decide(self.history(), now)}


def proposed_qa_release() -> Story:
    """The seed story up to a saved QA plan: alice's entry, diana's entry, development
    ready (`scenarios.proposed_qa_release`, as values)."""
    story = Story()
    story.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    story.land("alice", QA_PLAN, qa_plan(ECOMMERCE))
    story.land("diana", QA_PLAN, qa_plan(ECOMMERCE, PORTAL, notes="November release"))
    return story


def interrupted_qa_release() -> Story:
    """The QA release approved by ravi, triggered by olga, its run 1 interrupted
    (`scenarios.interrupted_qa_release`, as values)."""
    story = proposed_qa_release()
    story.approve("ravi", QA_PLAN)
    story.trigger("olga", QA_PLAN)
    story.ran(QA_PLAN, "2026-11-qa-release.1", "interrupted")
    return story
