"""Stage 3, authorise: who holds which permission where, and why; the one source of reasons.

Called by `authorise` (is this edit allowed?), `decide` (do approvers and the
triggerer hold their permission?) and `reconciler access` (what may a user
do?). Every answer is a `Verdict` whose reasons name the user's roles, the
roles the environment grants the permission to, and who holds it, so
`verify`, `plan` and `access` print the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from msgspec import Struct

from reconciler.core.identity import can_verify
from reconciler.core.model import PROJECTS_GRANTABLE_ROLES, Policy

PLAN_EDIT: Final = "plan.edit"
PLAN_APPROVE: Final = "plan.approve"
PLAN_DEPLOY: Final = "plan.deploy"
TEAMS_EDIT: Final = "teams.edit"
ENVIRONMENTS_EDIT: Final = "environments.edit"


class Verdict(Struct, frozen=True):
    """A decision and the reasons for it, in words a person can act on."""

    allowed: bool
    reasons: tuple[str, ...]

    @classmethod
    def allow(cls, *reasons: str) -> Verdict:
        return cls(True, reasons)

    @classmethod
    def deny(cls, *reasons: str) -> Verdict:
        return cls(False, reasons)

    def __bool__(self) -> bool:
        return self.allowed

    def text(self) -> str:
        return "; ".join(self.reasons)


def describe_roles(policy: Policy, user: str) -> str:
    """'developer in ecommerce, tester in portal', or what the user lacks."""
    if user not in policy.users:
        return f"{user} is not a user in teams.yaml"
    held = [f"{role} in {team}" for team, role in policy.roles_of(user)]
    held += [f"infrastructure {role}" for role in _infrastructure_roles(policy, user)]
    return f"{user} holds " + (", ".join(held) if held else "no role")


def _infrastructure_roles(policy: Policy, user: str) -> list[str]:
    return [
        role
        for role, members in (("settings", policy.settings), ("projects", policy.projects))
        if user in members
    ]


def holders(
    policy: Policy, permission: str, environment: str, revoked: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """Users who can use an environment-wide permission (plan.approve, plan.deploy) there:
    holders of a role it is granted to; where signatures are required, only those who
    can sign with a key that is not `revoked` (fingerprints), their own or a host's.
    Elsewhere an email makes a sign-off count, so every holder can."""
    env = policy.environments.get(environment)
    if env is None:
        return ()
    roles = env.roles_holding(permission)
    users = {user for role in roles for user in policy.role_holders.get(role, ())}
    if env.gates.signed_commits:
        users = {user for user in users if can_verify(policy, user, revoked)}
    return tuple(sorted(users))


def _grant_text(environment: str, permission: str, roles: tuple[str, ...]) -> str:
    if not roles:
        return f"{environment} grants {permission} to no role"
    return f"{environment} grants {permission} to {', '.join(roles)}"


def may_edit_application(policy: Policy, user: str, environment: str, application: str) -> Verdict:
    """plan.edit for one application's entry in a plan into `environment`."""
    env = policy.environments.get(environment)
    if env is None:
        return Verdict.deny(f"environment '{environment}' does not exist")
    if user not in policy.users:
        return Verdict.deny(describe_roles(policy, user))
    roles = env.roles_holding(PLAN_EDIT)
    grant = _grant_text(environment, PLAN_EDIT, roles)
    owner = policy.application_owner.get(application)
    if owner is None:
        return Verdict.deny(f"no team owns application '{application}'")
    role = policy.teams[owner].members.get(user)
    if role is None:
        return Verdict.deny(
            f"{application} belongs to team {owner}, and {user} is not a member of it",
            describe_roles(policy, user),
        )
    if role not in roles:
        return Verdict.deny(f"{user} is {role} in {owner}, which owns {application}", grant)
    return Verdict.allow(f"{user} is {role} in {owner}, which owns {application}", grant)


def may_edit_some_application(
    policy: Policy, user: str, environment: str, applications: tuple[str, ...]
) -> Verdict:
    """plan.edit for at least one of `applications` (notes, state draft/ready, order).

    A plan with no applications yet accepts anyone who may edit some
    application of their own teams into the environment.
    """
    candidates = applications or tuple(
        application
        for team, _role in policy.roles_of(user)
        for application in policy.teams[team].applications
    )
    denials: list[str] = []
    for application in candidates:
        verdict = may_edit_application(policy, user, environment, application)
        if verdict:
            return verdict
        denials.extend(verdict.reasons)
    if not candidates:
        return Verdict.deny(
            f"{user} is in no team that owns an application", describe_roles(policy, user)
        )
    return Verdict.deny(
        f"{user} may not edit any application of this plan in {environment}",
        *dict.fromkeys(denials),
    )


def may_on_environment(
    policy: Policy,
    user: str,
    permission: str,
    environment: str,
    revoked: frozenset[str] = frozenset(),
) -> Verdict:
    """plan.approve or plan.deploy: held through a role in any team (`revoked`: for the
    `holders` a denial names)."""
    env = policy.environments.get(environment)
    if env is None:
        return Verdict.deny(f"environment '{environment}' does not exist")
    roles = env.roles_holding(permission)
    grant = _grant_text(environment, permission, roles)
    if user in policy.users:
        for team, role in policy.roles_of(user):
            if role in roles:
                return Verdict.allow(f"{user} is {role} in {team}", grant)
    who = holders(policy, permission, environment, revoked)
    held_by = f"held by {', '.join(who)}" if who else "held by nobody"
    return Verdict.deny(describe_roles(policy, user), f"{grant} ({held_by})")


@dataclass(slots=True)
class Answers:
    """The answers the permission rules gave under one policy, remembered.

    A walk judges thousands of landings by one policy and asks the same few
    questions in each (may this user trigger plans into that environment?):
    the walker keeps one `Answers` while its policy stands and starts a new one
    when the policy changes, and hands it to the judge, which stays a function
    of its inputs. Answers under another policy are never given (`for_policy`).
    """

    policy: Policy
    _on_environment: dict[tuple[str, str, str], Verdict] = field(default_factory=dict)
    _edit: dict[tuple[str, str, str], Verdict] = field(default_factory=dict)
    _edit_some: dict[tuple[str, str, tuple[str, ...]], Verdict] = field(default_factory=dict)

    def for_policy(self, policy: Policy) -> Answers:
        """These answers when they are `policy`'s, else a fresh memo for it."""
        return self if policy is self.policy else Answers(policy)

    def may_on_environment(self, user: str, permission: str, environment: str) -> Verdict:
        key = (user, permission, environment)
        verdict = self._on_environment.get(key)
        if verdict is None:
            verdict = may_on_environment(self.policy, user, permission, environment)
            self._on_environment[key] = verdict
        return verdict

    def may_edit_application(self, user: str, environment: str, application: str) -> Verdict:
        key = (user, environment, application)
        verdict = self._edit.get(key)
        if verdict is None:
            verdict = may_edit_application(self.policy, user, environment, application)
            self._edit[key] = verdict
        return verdict

    def may_edit_some_application(
        self, user: str, environment: str, applications: tuple[str, ...]
    ) -> Verdict:
        key = (user, environment, applications)
        verdict = self._edit_some.get(key)
        if verdict is None:
            verdict = may_edit_some_application(self.policy, user, environment, applications)
            self._edit_some[key] = verdict
        return verdict


def may_lock(policy: Policy, user: str, environment: str) -> Verdict:
    """Lock or unlock an environment or an application in it: a plan.deploy holder there,
    or a settings user."""
    if user in policy.settings:
        return Verdict.allow(f"{user} holds infrastructure settings")
    return may_on_environment(policy, user, PLAN_DEPLOY, environment)


def may_change_settings(policy: Policy, user: str, permission: str) -> Verdict:
    """teams.edit or environments.edit in full: the `settings` role."""
    if user in policy.settings:
        return Verdict.allow(f"{user} holds infrastructure settings")
    settings = ", ".join(sorted(policy.settings)) or "nobody"
    return Verdict.deny(
        describe_roles(policy, user),
        f"{permission} is held by infrastructure settings ({settings})",
    )


def may_change_membership(
    policy: Policy, user: str, team: str, member: str, old_role: str | None, new_role: str | None
) -> Verdict:
    """A `projects` user may grant and remove tech-lead, developer and tester, never to itself."""
    if user in policy.settings:
        return Verdict.allow(f"{user} holds infrastructure settings")
    if user not in policy.projects:
        return may_change_settings(policy, user, TEAMS_EDIT)
    if member == user:
        return Verdict.deny(
            f"{user} holds infrastructure projects, which never changes its own roles"
        )
    for role in (old_role, new_role):
        if role is not None and role not in PROJECTS_GRANTABLE_ROLES:
            return Verdict.deny(
                f"{user} holds infrastructure projects, which may grant only "
                f"{', '.join(PROJECTS_GRANTABLE_ROLES)}, not {role}"
            )
    return Verdict.allow(f"{user} holds infrastructure projects (members of team {team})")


def may_change_as_projects(policy: Policy, user: str) -> Verdict:
    """The part of teams.edit `projects` holds: every team's applications and members,
    within the limits `may_change_membership` applies (`reconciler access`'s summary)."""
    if user not in policy.projects:
        return may_change_settings(policy, user, TEAMS_EDIT)
    return Verdict.allow(
        f"{user} holds infrastructure projects: teams' applications and members, granting "
        f"only {', '.join(PROJECTS_GRANTABLE_ROLES)}, never to itself"
    )


def may_change_teams_text(policy: Policy, user: str) -> Verdict:
    """teams.yaml's comments and layout: whoever may edit some of it (settings, projects)."""
    if user in policy.settings:
        return Verdict.allow(f"{user} holds infrastructure settings")
    if user in policy.projects:
        return Verdict.allow(f"{user} holds infrastructure projects (comments and layout)")
    return may_change_settings(policy, user, TEAMS_EDIT)


def may_change_applications(policy: Policy, user: str, team: str) -> Verdict:
    """A `projects` user may move applications between teams, but never into or out of a
    team it is a member of: that would change what it may do itself."""
    if user in policy.settings:
        return Verdict.allow(f"{user} holds infrastructure settings")
    if user in policy.projects and team in policy.teams and user in policy.teams[team].members:
        return Verdict.deny(
            f"{user} holds infrastructure projects, which never changes the applications "
            f"of its own team {team}"
        )
    if user in policy.projects:
        return Verdict.allow(f"{user} holds infrastructure projects (applications of team {team})")
    return may_change_settings(policy, user, TEAMS_EDIT)
