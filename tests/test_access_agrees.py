"""`reconciler access` and `verify` never disagree.

Every answer `access.report` gives is turned into the change it speaks of,
made by that user (signed with their key where they have one, through a host
that commits merges for them where there is one, else unsigned under their
email), and judged by the rules `verify` applies (`rules.judge_change` for
files, `rules.judge_signoff` for approvals and triggers). Access must say yes
exactly where the rules allow, and give the rules' reasons wherever the rules
could tell who made the change.

First over the example policy, every user x environment x application x
permission; then over policies hypothesis varies from it (roles moved, keys
dropped, signatures required or not, a host added).
"""

from __future__ import annotations

import base64
import copy
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cli.verify_output import access_text
from reconciler.core import access, permissions
from reconciler.core.config import build_environment, build_policy
from reconciler.core.fields import APP_PREFIX, CONTENT, ORDER, TEXT, FieldMap, canonical
from reconciler.core.identity import CommitFacts
from reconciler.core.loader import load
from reconciler.core.model import PROJECTS_GRANTABLE_ROLES, Policy
from reconciler.core.permissions import Verdict
from reconciler.core.resources import example_dir
from reconciler.core.rules import Judgement, judge_change, judge_signoff
from reconciler.core.sshkeys import parse_public_key

PLAN = "plans/probe.yaml"
HOST_EMAIL = "noreply@host.example"


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


HOST_KEY = "ssh-ed25519 " + base64.b64encode(
    _ssh_string(b"ssh-ed25519") + _ssh_string(bytes(range(32)))
).decode("ascii")


def example_teams() -> dict[str, Any]:
    root = example_dir()
    return dict(load((root / "teams.yaml").read_bytes(), "teams.yaml").data)


def example_environments() -> list[dict[str, Any]]:
    root = example_dir()
    return [
        dict(load(path.read_bytes(), f"environments/{path.name}").data)
        for path in sorted((root / "environments").glob("*.yaml"))
    ]


def policy_of(teams: dict[str, Any], environments: list[dict[str, Any]]) -> Policy:
    return build_policy(teams, [build_environment(env) for env in environments])


def facts_for(policy: Policy, user: str, revoked: frozenset[str] = frozenset()) -> CommitFacts:
    """The best-attributed commit `user` can make: own key, else a host's true merge, else
    signed with a revoked key of theirs (as `authorise` sees it), else unsigned."""
    identity = policy.users[user]
    email = identity.emails[0]
    for key in identity.keys:
        fingerprint = parse_public_key(key).fingerprint
        if fingerprint not in revoked:
            return CommitFacts("c0ffee", "good", fingerprint, "", email, email, 1)
    for host in policy.hosts.values():
        for key in host.keys if host.emails else ():
            fingerprint = parse_public_key(key).fingerprint
            if fingerprint not in revoked:
                return CommitFacts("c0ffee", "good", fingerprint, "", host.emails[0], email, 2)
    if identity.keys:
        return CommitFacts("c0ffee", "revoked", None, "key is revoked", email, email, 1)
    return CommitFacts("c0ffee", "unsigned", None, "", email, email, 1)


# -- the change each answer speaks of ----------------------------------------------


def plan_fields(target: str, applications: tuple[str, ...], state: str = "ready") -> FieldMap:
    fields = {
        "name": canonical("probe"),
        "target": canonical(target),
        "state": canonical(state),
        "notes": canonical("before"),
        ORDER: canonical(list(applications)),
    }
    fields.update({APP_PREFIX + app: canonical({"version": "1.0.0"}) for app in applications})
    return fields


def add_entry(
    policy: Policy, user: str, env: str, application: str, revoked: frozenset[str] = frozenset()
) -> Judgement:
    old = plan_fields(env, ())
    new = plan_fields(env, (application,))
    return judge_change(
        policy, facts_for(policy, user, revoked), PLAN, APP_PREFIX + application, old, new
    )


def edit_notes(
    policy: Policy, user: str, env: str, revoked: frozenset[str] = frozenset()
) -> Judgement:
    applications = tuple(sorted(policy.application_owner))
    old = plan_fields(env, applications)
    new = {**old, "notes": canonical("after")}
    return judge_change(policy, facts_for(policy, user, revoked), PLAN, "notes", old, new)


def cancel(policy: Policy, user: str, env: str, revoked: frozenset[str] = frozenset()) -> Judgement:
    applications = tuple(sorted(policy.application_owner))
    old = plan_fields(env, applications)
    new = plan_fields(env, applications, state="cancelled")
    return judge_change(policy, facts_for(policy, user, revoked), PLAN, "state", old, new)


def sign_off(
    policy: Policy, user: str, permission: str, env: str, revoked: frozenset[str] = frozenset()
) -> Judgement:
    return judge_signoff(policy, facts_for(policy, user, revoked), permission, env)


def teams_change(
    policy: Policy, user: str, field: str, old: Any, new: Any, revoked: frozenset[str] = frozenset()
) -> Judgement:
    before = {TEXT: canonical("a"), field: canonical(old)} if old is not None else {}
    after = {TEXT: canonical("b"), field: canonical(new)} if new is not None else {}
    return judge_change(
        policy, facts_for(policy, user, revoked), "teams.yaml", field, before, after
    )


def whole_file(
    policy: Policy, user: str, path: str, revoked: frozenset[str] = frozenset()
) -> Judgement:
    old, new = {CONTENT: canonical("a")}, {CONTENT: canonical("b")}
    return judge_change(policy, facts_for(policy, user, revoked), path, CONTENT, old, new)


# -- agreement ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disagreement:
    user: str
    answer: str
    access: Verdict
    rules: Verdict


def agree(
    user: str, answer: str, said: Verdict, judged: Judgement, *, same_reasons: bool = True
) -> Iterator[Disagreement]:
    """The same yes or no, and the same reasons wherever the rules could tell who it was."""
    if said.allowed != judged.verdict.allowed or (
        same_reasons and judged.actor.known and said.reasons != judged.verdict.reasons
    ):
        yield Disagreement(user, answer, said, judged.verdict)


def disagreements(
    policy: Policy, user: str, revoked: frozenset[str] = frozenset()
) -> list[Disagreement]:
    return list(_disagreements(policy, user, revoked))


def _disagreements(policy: Policy, user: str, revoked: frozenset[str]) -> Iterator[Disagreement]:
    report = access.report(policy, user, revoked=revoked)
    for item in report.entitlements:
        env, application, said = item.environment, item.application, item.verdict
        label = " ".join(part for part in (item.permission, env, application) if part)
        if item.permission == permissions.PLAN_EDIT:
            assert env is not None
            assert application is not None
            yield from agree(user, label, said, add_entry(policy, user, env, application, revoked))
        elif item.permission in (permissions.PLAN_APPROVE, permissions.PLAN_DEPLOY):
            assert env is not None
            yield from agree(
                user, label, said, sign_off(policy, user, item.permission, env, revoked)
            )
            if item.permission == permissions.PLAN_DEPLOY:
                yield from agree(
                    user, f"{label} (cancel)", said, cancel(policy, user, env, revoked)
                )
        elif item.permission == permissions.TEAMS_EDIT:
            for field, old, new in (
                (f"users/{user}", {"name": "x"}, {"name": "y"}),
                ("infrastructure/settings", ["root"], ["root", user]),
            ):
                judged = teams_change(policy, user, field, old, new, revoked)
                yield from agree(user, f"{label} {field}", said, judged)
        elif item.permission == permissions.ENVIRONMENTS_EDIT:
            for path in ("environments/development.yaml", "schemas/plan.schema.json"):
                yield from agree(
                    user, f"{label} {path}", said, whole_file(policy, user, path, revoked)
                )
        else:
            yield from projects_disagreements(policy, user, label, said, revoked)
    yield from notes_disagreements(policy, user, report, revoked)


def projects_disagreements(
    policy: Policy, user: str, label: str, said: Verdict, revoked: frozenset[str]
) -> Iterator[Disagreement]:
    """teams.edit (applications and members), a summary: yes for the applications of every
    team but its own and for granting any grantable role to anyone else (its reasons name
    the limits: "never to itself")."""
    assert label == f"{permissions.TEAMS_EDIT} (applications and members)", label
    assert said.reasons[-1].endswith("never to itself"), said.reasons
    for team in sorted(policy.teams):
        field = f"teams/{team}/applications"
        applications = list(policy.teams[team].applications)
        judged = teams_change(
            policy, user, field, applications, [*applications, "new-app"], revoked
        )
        members = policy.teams[team].members
        if user in members:
            # New applications for its own team would be new rights for itself.
            if judged.verdict.allowed:
                yield Disagreement(user, f"{label} {field} (its own team)", said, judged.verdict)
        else:
            yield from agree(user, f"{label} {field}", said, judged, same_reasons=False)
        for other in sorted(set(policy.users) - {user}):
            if members.get(other, "tester") not in PROJECTS_GRANTABLE_ROLES:
                continue  # taking away a role it may not grant is outside the summary
            field = f"teams/{team}/members/{other}"
            for role in PROJECTS_GRANTABLE_ROLES:
                judged = teams_change(policy, user, field, members.get(other), role, revoked)
                yield from agree(user, f"{label} {field}", said, judged, same_reasons=False)


def notes_disagreements(
    policy: Policy, user: str, report: access.AccessReport, revoked: frozenset[str]
) -> Iterator[Disagreement]:
    """Notes and draft/ready need plan.edit for some application of the plan: the first
    application access says yes to, with its reasons."""
    for env in policy.environments_in_order():
        said = next(
            (
                item.verdict
                for item in report.entitlements
                if item.permission == permissions.PLAN_EDIT
                and item.environment == env.name
                and item.verdict
            ),
            None,
        )
        judged = edit_notes(policy, user, env.name, revoked)
        if said is not None:
            yield from agree(user, f"notes {env.name}", said, judged)
        elif judged.verdict:
            yield Disagreement(user, f"notes {env.name}", Verdict.deny(), judged.verdict)


def with_host(teams: dict[str, Any]) -> dict[str, Any]:
    teams = copy.deepcopy(teams)
    teams["hosts"] = {"forge": {"identity": "author", "emails": [HOST_EMAIL], "keys": [HOST_KEY]}}
    return teams


# -- the promise --------------------------------------------------------------------


def test_access_agrees_with_the_rules_for_every_user_of_the_example_policy() -> None:
    policy = policy_of(example_teams(), example_environments())
    assert len(policy.users) == 10
    for user in policy.users:
        assert disagreements(policy, user) == []


def keyless_tech_lead_approving_production(teams: dict[str, Any]) -> Verdict:
    """erik (no key) made a tech lead: access's answer on approving into production,
    after checking it agrees with the rules on everything."""
    teams["teams"]["architecture"]["members"]["erik"] = "tech-lead"
    policy = policy_of(teams, example_environments())
    assert disagreements(policy, "erik") == []
    [approve] = [
        item.verdict
        for item in access.report(policy, "erik", "production").entitlements
        if item.permission == permissions.PLAN_APPROVE
    ]
    return approve


def test_access_counts_a_host_that_signs_merges_for_a_user_without_a_key() -> None:
    # erik has no key; the host's merge of his pull request is verified as his
    # (DESIGN, Authorisation: identity: author), so he may approve into production.
    approve = keyless_tech_lead_approving_production(with_host(example_teams()))
    assert approve.reasons == (
        "erik is tech-lead in architecture",
        "production grants plan.approve to tech-lead, tester",
    )


def test_access_text_says_a_host_signs_for_a_user_without_a_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = policy_of(with_host(example_teams()), example_environments())
    access_text(access.report(policy, "erik", "production"))
    assert (
        capsys.readouterr()
        .out.splitlines()[0]
        .endswith("; has no SSH key (a host signs the merges it commits for them)")
    )
    access_text(access.report(policy_of(example_teams(), example_environments()), "erik"))
    assert capsys.readouterr().out.splitlines()[0].endswith("; has no SSH key (cannot sign)")


def test_access_still_refuses_a_user_without_a_key_where_no_host_signs_for_them() -> None:
    approve = keyless_tech_lead_approving_production(example_teams())
    assert not approve
    assert approve.reasons[0] == (
        "erik has no SSH key in teams.yaml, and an approval of a plan into production "
        "needs a verified signature"
    )


def test_the_projects_limits_access_names_are_the_limits_the_rules_enforce() -> None:
    policy = policy_of(example_teams(), example_environments())
    [summary] = [
        item.verdict
        for item in access.report(policy, "pm").entitlements
        if item.permission.endswith("(applications and members)")
    ]
    assert summary.reasons == (
        "pm holds infrastructure projects: teams' applications and members, "
        "granting only tech-lead, developer, tester, never to itself",
    )
    to_itself = teams_change(policy, "pm", "teams/ecommerce/members/pm", None, "developer")
    deployment = teams_change(policy, "pm", "teams/operations/members/bob", None, "deployment")
    assert not to_itself.verdict
    assert not deployment.verdict
    assert disagreements(policy, "pm") == []
    teams = example_teams()
    teams["teams"]["architecture"]["members"]["pm"] = "tech-lead"
    member = policy_of(teams, example_environments())
    own_team = teams_change(member, "pm", "teams/architecture/applications", [], ["ecommerce"])
    assert not own_team.verdict
    assert disagreements(member, "pm") == []


ROLES = ("tech-lead", "developer", "tester", "deployment")


def synthetic_key(seed: int) -> str:
    """A well-formed ed25519 public key no one holds (a second laptop's, in these tests)."""
    point = bytes((seed + i) % 256 for i in range(32))
    blob = _ssh_string(b"ssh-ed25519") + _ssh_string(point)
    return "ssh-ed25519 " + base64.b64encode(blob).decode("ascii")


@st.composite
def varied_policies(draw: st.DrawFn, second_keys: bool = False) -> Policy:
    """The example policy with roles moved, keys dropped, signatures toggled, maybe a host;
    with `second_keys`, maybe a second key for some users."""
    teams = example_teams()
    users = sorted(teams["users"])
    for number, user in enumerate(users, start=1):
        if draw(st.booleans()):
            teams["users"][user] = {k: v for k, v in teams["users"][user].items() if k != "keys"}
        if second_keys and draw(st.booleans()):
            keys = teams["users"][user].get("keys", [])
            teams["users"][user] = {**teams["users"][user], "keys": [*keys, synthetic_key(number)]}
    for team in teams["teams"].values():
        team["members"] = draw(
            st.dictionaries(st.sampled_from(users), st.sampled_from(ROLES), max_size=4)
        )
    infrastructure = teams["infrastructure"]
    infrastructure["settings"] = draw(st.lists(st.sampled_from(users), max_size=2, unique=True))
    infrastructure["projects"] = draw(st.lists(st.sampled_from(users), max_size=2, unique=True))
    if draw(st.booleans()):
        teams = with_host(teams)
    environments = example_environments()
    for env in environments:
        env["gates"]["signed_commits"] = draw(st.booleans())
        env["permissions"] = {
            permission: draw(st.lists(st.sampled_from(ROLES), max_size=3, unique=True))
            for permission in ("plan.edit", "plan.approve", "plan.deploy")
        }
    return policy_of(teams, environments)


@settings(max_examples=60, deadline=None)
@given(policy=varied_policies())
def test_access_agrees_with_the_rules_on_any_variation_of_the_example_policy(
    policy: Policy,
) -> None:
    for user in policy.users:
        assert disagreements(policy, user) == []


def every_key(policy: Policy) -> list[str]:
    """The fingerprints of every key teams.yaml lists, users' and hosts'."""
    return sorted(policy.key_owner)


@st.composite
def varied_policies_and_revocations(draw: st.DrawFn) -> tuple[Policy, frozenset[str]]:
    """A varied policy, and some of its keys (a user's, a second one, the host's) revoked."""
    policy = draw(varied_policies(second_keys=True))
    keys = every_key(policy)
    return policy, frozenset(draw(st.lists(st.sampled_from(keys), unique=True)) if keys else ())


@settings(max_examples=60, deadline=None)
@given(case=varied_policies_and_revocations())
def test_access_agrees_with_the_rules_when_keys_are_revoked(
    case: tuple[Policy, frozenset[str]],
) -> None:
    # What `authorise` sees of a revoked key's signature (`_facts_of`: no fingerprint, a
    # reason) against what `access` says with the same revocations.
    policy, revoked = case
    for user in policy.users:
        assert disagreements(policy, user, revoked) == []
