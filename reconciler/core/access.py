"""Stage 3, authorise: what a user may do, where, and why (`reconciler access USER`).

Called by the CLI. It asks `permissions` the same questions `authorise` and
`decide` ask, for every environment and application, so `access` can never
disagree with `verify` or `plan`; and `rules` who could make one refused change
(`who_may_change`, for `verify-mergeable`).
"""

from __future__ import annotations

from msgspec import Struct

from reconciler.core import permissions
from reconciler.core.errors import unknown_name
from reconciler.core.fields import FieldMap
from reconciler.core.identity import CommitFacts, can_verify, signs_for_itself
from reconciler.core.model import Policy
from reconciler.core.permissions import Verdict
from reconciler.core.revocation import SETTING
from reconciler.core.rules import judge_change


class Entitlement(Struct, frozen=True):
    permission: str
    environment: str | None
    application: str | None
    verdict: Verdict


class AccessReport(Struct, frozen=True):
    user: str
    name: str
    roles: str
    has_key: bool
    entitlements: tuple[Entitlement, ...]
    host_signs: bool = False  # no key of their own, but a host commits and signs for them
    keys_revoked: bool = False  # keys in teams.yaml, all in the revocation file


_SIGNOFF = {permissions.PLAN_APPROVE: "an approval", permissions.PLAN_DEPLOY: "a trigger"}


def report(
    policy: Policy,
    user: str,
    environment: str | None = None,
    revoked: frozenset[str] = frozenset(),
) -> AccessReport:
    """What `user` may do, and why; `revoked`: fingerprints of keys that sign nothing."""
    if user not in policy.users:
        raise unknown_name("user", user, sorted(policy.users), "users in teams.yaml")
    if environment is not None and environment not in policy.environments:
        known = (env.name for env in policy.environments_in_order())
        raise unknown_name("environment", environment, known, "environments")
    signs = can_verify(policy, user, revoked)
    # Keys teams.yaml lists, every one of them revoked on this machine.
    keys_revoked = user in policy.signers and not signs_for_itself(policy, user, revoked)
    unsigned = (
        f"{user}'s SSH keys are revoked ({SETTING})"
        if keys_revoked
        else f"{user} has no SSH key in teams.yaml"
    )

    def signed(verdict: Verdict, what: str, required: bool = True) -> Verdict:
        # verify takes the actor of such a change from its signature alone: a user
        # with no key (and no host that signs for them) holds the role and still
        # cannot make the change count.
        if not verdict or signs or not required:
            return verdict
        return Verdict.deny(f"{unsigned}, and {what} needs a verified signature", *verdict.reasons)

    entitlements: list[Entitlement] = [
        Entitlement(
            permissions.TEAMS_EDIT,
            None,
            None,
            signed(
                permissions.may_change_settings(policy, user, permissions.TEAMS_EDIT),
                "a change to teams.yaml",
            ),
        ),
        Entitlement(
            permissions.ENVIRONMENTS_EDIT,
            None,
            None,
            signed(
                permissions.may_change_settings(policy, user, permissions.ENVIRONMENTS_EDIT),
                "a change to environments/",
            ),
        ),
    ]
    if user in policy.projects and user not in policy.settings:
        entitlements.append(
            Entitlement(
                f"{permissions.TEAMS_EDIT} (applications and members)",
                None,
                None,
                signed(permissions.may_change_as_projects(policy, user), "a change to teams.yaml"),
            )
        )
    applications = sorted(policy.application_owner)
    for env in policy.environments_in_order():
        if environment is not None and env.name != environment:
            continue
        for application in applications:
            entitlements.append(
                Entitlement(
                    permissions.PLAN_EDIT,
                    env.name,
                    application,
                    signed(
                        permissions.may_edit_application(policy, user, env.name, application),
                        f"a plan edit into {env.name}",
                        env.gates.signed_commits,
                    ),
                )
            )
        for permission in (permissions.PLAN_APPROVE, permissions.PLAN_DEPLOY):
            entitlements.append(
                Entitlement(
                    permission,
                    env.name,
                    None,
                    signed(
                        permissions.may_on_environment(policy, user, permission, env.name),
                        f"{_SIGNOFF[permission]} of a plan into {env.name}",
                        env.gates.signed_commits,
                    ),
                )
            )
    identity = policy.users[user]
    return AccessReport(
        user=user,
        name=identity.name,
        roles=permissions.describe_roles(policy, user),
        has_key=bool(identity.keys),
        entitlements=tuple(entitlements),
        host_signs=signs and not signs_for_itself(policy, user, revoked),
        keys_revoked=keys_revoked,
    )


def who_may_change(
    policy: Policy,
    path: str,
    field: str,
    old: FieldMap,
    new: FieldMap,
    *,
    merge: bool = False,
    revoked: frozenset[str] = frozenset(),
) -> tuple[str, ...]:
    """The users whose own commit making this change of one field would be authorised
    (with `merge`: whose true merge would, as the author of a change it lands): the rule
    `verify` applies, asked as if each user in turn had made it."""
    return tuple(
        sorted(
            user
            for user in policy.users
            if judge_change(
                policy, _made_by(policy, user, merge, revoked), path, field, old, new
            ).verdict
        )
    )


def _made_by(policy: Policy, user: str, merge: bool, revoked: frozenset[str]) -> CommitFacts:
    """What a commit `user` makes proves: a good signature by a key of theirs that is not
    revoked; for a merge without one, a host's that commits and signs merges for them;
    else only their email."""
    email = next(iter(policy.users[user].emails), "")
    signer: tuple[str, str] | None = next(
        (
            (fingerprint, email)
            for fingerprint, owner in policy.key_owner.items()
            if owner == user and fingerprint not in revoked
        ),
        None,
    )
    if signer is None and merge:
        signer = next(
            (
                (fingerprint, host.emails[0])
                for fingerprint, owner in policy.key_owner.items()
                if (host := policy.hosts.get(owner)) is not None
                and host.emails
                and fingerprint not in revoked
            ),
            None,
        )
    fingerprint, committer = signer if signer is not None else (None, email)
    return CommitFacts(
        commit="",
        signature_status="good" if fingerprint else "unsigned",
        fingerprint=fingerprint,
        signature_reason="",
        committer_email=committer,
        author_email=email,
        parents=2 if merge else 1,
    )
