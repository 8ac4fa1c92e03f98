"""Core, shared: the domain, as small immutable values every stage passes along.

Nothing here does I/O. `config` builds these from validated documents;
`authorise`, `decide`, `execute` and `record` consume and produce them. A
decision is a value that explains itself: a `Verdict` carries its reasons, so
`plan`, `verify` and `access` print the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Final, Literal

from msgspec import Struct, field

# Roles a team member can hold, and the permissions an environment grants to them.
TEAM_ROLES: Final = ("tech-lead", "developer", "tester", "deployment")
INFRASTRUCTURE_ROLES: Final = ("settings", "projects")
ENVIRONMENT_PERMISSIONS: Final = ("plan.edit", "plan.approve", "plan.deploy")
DEFAULT_PERMISSIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "plan.edit": ("tech-lead", "developer"),
    "plan.approve": ("tech-lead",),
    "plan.deploy": ("deployment",),
}
# What `projects` may grant: never the deployment role.
PROJECTS_GRANTABLE_ROLES: Final = ("tech-lead", "developer", "tester")
PLAN_STATES: Final = ("draft", "ready", "cancelled")
# An email as the policy matches it (`email_key`): its ASCII letters in either case alike.
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def email_key(email: str) -> str:
    """An email as teams.yaml's are matched with a commit's: its ASCII letters in either
    case alike, every other character as written. `str.lower` folds past ASCII: the
    Kelvin sign (U+212A) lowers to `k`, so `eri\u212a@example.com`, another address to
    git, a mail server and a Git host, would count as erik@example.com's."""
    return email.translate(_ASCII_LOWER)


Severity = Literal["error", "warning"]


class Finding(Struct, frozen=True):
    """One problem in one file, with where it is and how to fix it."""

    file: str
    line: int
    column: int
    message: str
    hint: str | None = None
    severity: Severity = "error"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.message)


class Identity(Struct, frozen=True):
    """A user, a reconciler service account or a Git host, as teams.yaml names it."""

    id: str
    name: str
    emails: tuple[str, ...]
    keys: tuple[str, ...]


class Team(Struct, frozen=True):
    name: str
    applications: tuple[str, ...]
    members: Mapping[str, str]  # user id -> role


class ApprovalRule(Struct, frozen=True):
    role: str
    count: int


class Window(Struct, frozen=True):
    """A weekly deploy window in a time zone; `end` before `start` runs past midnight."""

    days: frozenset[int]  # 0 = Monday
    start: time
    end: time
    timezone: str


class Freeze(Struct, frozen=True):
    name: str
    start: datetime
    end: datetime


class Gates(Struct, frozen=True):
    approvals: tuple[ApprovalRule, ...] = ()
    signed_commits: bool = False
    approval_ttl: timedelta | None = None
    windows: tuple[Window, ...] = ()
    freezes: tuple[Freeze, ...] = ()
    rollback_approvals: tuple[ApprovalRule, ...] = ()  # what a rollback plan needs instead
    rollback_ignores_windows: bool = False  # break glass: rollbacks start whenever
    # How long a version must have run verified in promotes_from before it may come here.
    soak: timedelta | None = None


class ArgoCDWait(Struct, frozen=True):
    """gitops, with `verify`: the Argo CD Application (a template of {app} and {environment})
    whose sync to the step's commit, and health, a check waits for; `sync` asks for it at
    once. The server and its token are the service machine's, never in Git."""

    application: str
    sync: bool = False


class FluxWait(Struct, frozen=True):
    """gitops, with `verify`: the Flux GitRepository to ask to reconcile, and the
    Kustomization (a template) whose applied revision and readiness a check waits for."""

    namespace: str
    git_repository: str
    kustomization: str


class GitOpsTarget(Struct, frozen=True):
    """gitops: where in which GitOps repository a step writes its version: a kustomize
    `images[]` entry's newTag (`image`) or any YAML key path (`key`), in the file at
    `path` (a template of {app} and {environment}) on `branch`."""

    repository: str
    path: str
    branch: str = "main"
    image: str | None = None
    key: str | None = None
    argocd: ArgoCDWait | None = None
    flux: FluxWait | None = None


class DriverSpec(Struct, frozen=True):
    type: str
    argv: tuple[str, ...] = ()
    timeout: int = 600
    retries: int = 0
    root: str | None = None
    options: Mapping[str, object] = field(default_factory=dict)
    check: tuple[str, ...] = ()  # local: the command that checks a deployed release
    gitops: GitOpsTarget | None = None  # gitops: the repository, file and value it writes


class Verify(Struct, frozen=True):
    """How a run checks each application it deployed: a check every `interval` until one
    passes, for at most `timeout`."""

    timeout: timedelta
    interval: timedelta


class Environment(Struct, frozen=True):
    name: str
    order: int
    promotes_from: str | None
    permissions: Mapping[str, tuple[str, ...]]  # permission -> roles holding it here
    gates: Gates
    driver: DriverSpec
    verify: Verify | None = None  # None: deployed applications are not checked
    # What a failed run does: stop where it failed, or redeploy what it replaced.
    on_failure: Literal["stop", "rollback"] = "stop"

    def roles_holding(self, permission: str) -> tuple[str, ...]:
        return self.permissions.get(permission, ())

    def takes_source(self, source: str | None, *, rollback: bool) -> bool:
        """Whether a plan into here may name `source`: the environment it promotes from
        (none for the first), or, for a rollback, which goes back rather than forward, none."""
        return source is None if rollback else source == self.promotes_from


class PlanEntry(Struct, frozen=True):
    name: str
    version: str
    action: Literal["deploy", "tag-and-deploy"] = "deploy"
    from_version: str | None = None


class Plan(Struct, frozen=True):
    name: str
    source: str | None
    target: str
    applications: tuple[PlanEntry, ...]
    notes: str
    state: Literal["draft", "ready", "cancelled"]
    rollback: bool = False  # redeploys versions that ran in the target, not a promotion
    # Deploy over drift (the driver reports another version than deployments/ records).
    override_drift: bool = False


class Route(Struct, frozen=True):
    """teams.yaml `notifications:` entry: these events of these environments go to `target`;
    None: every event, or every environment and the service's own."""

    target: str
    events: frozenset[str] | None = None
    environments: frozenset[str] | None = None


class Policy(Struct, frozen=True):
    """The rules in force: teams.yaml and environments/ as one value.

    The indexes (`application_owner`, `key_owner`, `email_owner`, `role_holders`,
    `signers`) are derived once by `config.build_policy`, so lookups during a
    history walk are dict and set reads.
    """

    users: Mapping[str, Identity]
    service_accounts: Mapping[str, Identity]
    hosts: Mapping[str, Identity]
    settings: frozenset[str]
    projects: frozenset[str]
    teams: Mapping[str, Team]
    environments: Mapping[str, Environment]
    application_owner: Mapping[str, str]  # application -> team
    # SSH key fingerprint (SHA256:...) or OpenPGP key fingerprint (hex) -> identity id
    # (first listed wins)
    key_owner: Mapping[str, str]
    email_owner: Mapping[str, str]  # `email_key` of an email -> user id
    other_paths: tuple[str, ...] = ()  # globs outside the layout that signed users may change
    role_holders: Mapping[str, frozenset[str]] = field(default_factory=dict)  # role -> users
    signers: frozenset[str] = frozenset()  # identities owning a key (`key_owner`'s values)
    squash_hosts: frozenset[str] = frozenset()  # hosts vouching for their squash commits' authors
    # OpenPGP keys listed but revoked or expired (`openpgp.unusable`): fingerprint -> why
    unusable_keys: Mapping[str, str] = field(default_factory=dict)
    # The first moment after the time of judging that a listed OpenPGP key expires: until
    # then, `key_owner` and `unusable_keys` hold (None: no listed key expires later).
    keys_change: datetime | None = None
    notifications: tuple[Route, ...] = ()  # who hears what the service says (`notices`)

    def roles_of(self, user: str) -> tuple[tuple[str, str], ...]:
        """(team, role) pairs the user holds, in teams.yaml order."""
        return tuple(
            (team.name, team.members[user]) for team in self.teams.values() if user in team.members
        )

    def environments_in_order(self) -> tuple[Environment, ...]:
        return tuple(sorted(self.environments.values(), key=lambda env: (env.order, env.name)))


class Snapshot(Struct, frozen=True):
    """The configuration files of one tree (working tree or commit), as bytes.

    `refused` holds what the reader would not read: symlinks, submodules,
    files in places the reconciler never looks.
    """

    files: Mapping[str, bytes]
    refused: tuple[Finding, ...] = ()
