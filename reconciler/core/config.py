"""Stage 2, validate: typed configuration, schema-valid data in, domain values out.

Called by `validate` (for cross-file checks) and `authorise` (for the policy
that judges each landing). The input has passed the schema, so shapes are
trusted here; meaning is not (unknown references are `validate`'s job).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from typing import Any

from msgspec.structs import replace

from reconciler.core import openpgp
from reconciler.core.errors import ConfigError
from reconciler.core.model import (
    DEFAULT_PERMISSIONS,
    ApprovalRule,
    ArgoCDWait,
    DriverSpec,
    Environment,
    FluxWait,
    Freeze,
    Gates,
    GitOpsTarget,
    Identity,
    Plan,
    PlanEntry,
    Policy,
    Route,
    Team,
    Verify,
    Window,
    email_key,
)
from reconciler.core.sshkeys import KeyFormatError, parse_public_key

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION_PART = re.compile(r"([0-9]+)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# How long a run waits between two checks of an application when `verify` does not say.
DEFAULT_CHECK_INTERVAL = "10s"


def parse_duration(text: str) -> timedelta:
    """'8h', '1d12h', '90m' -> timedelta (the schema has checked the shape).

    The schema also caps the text at 32 characters: at most four 6-digit day
    counts, so the sum always fits a timedelta (longer text overflowed it).
    """
    return timedelta(
        seconds=sum(
            int(amount) * _UNIT_SECONDS[unit] for amount, unit in _DURATION_PART.findall(text)
        )
    )


def parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _identity(identity_id: str, data: Mapping[str, Any]) -> Identity:
    return Identity(
        id=identity_id,
        name=data.get("name", identity_id),
        emails=tuple(data.get("emails", ())),
        keys=tuple(data.get("keys", ())),
    )


def build_environment(data: Mapping[str, Any]) -> Environment:
    gates = data.get("gates", {})
    driver = data["driver"]
    permissions = dict(DEFAULT_PERMISSIONS)
    permissions.update({name: tuple(roles) for name, roles in data.get("permissions", {}).items()})
    ttl = gates.get("approval_ttl")
    soak = gates.get("soak")
    return Environment(
        name=data["name"],
        order=data["order"],
        promotes_from=data.get("promotes_from"),
        permissions=permissions,
        gates=Gates(
            approvals=_approval_rules(gates.get("approvals", ())),
            rollback_approvals=_approval_rules(gates.get("rollback_approvals", ())),
            rollback_ignores_windows=gates.get("rollback_ignores_windows", False),
            signed_commits=gates.get("signed_commits", False),
            approval_ttl=parse_duration(ttl) if ttl else None,
            windows=tuple(
                Window(
                    days=frozenset(WEEKDAYS.index(day) for day in window["days"]),
                    start=time.fromisoformat(window["from"]),
                    end=time.fromisoformat(window["to"]),
                    timezone=window.get("timezone", "UTC"),
                )
                for window in gates.get("windows", ())
            ),
            freezes=tuple(
                Freeze(
                    freeze["name"], parse_instant(freeze["from"]), parse_instant(freeze["until"])
                )
                for freeze in gates.get("freezes", ())
            ),
            soak=parse_duration(soak) if soak else None,
        ),
        driver=DriverSpec(
            type=driver["type"],
            argv=tuple(driver.get("argv", ())),
            timeout=driver.get("timeout", 600),
            retries=driver.get("retries", 0),
            root=driver.get("root"),
            options=driver.get("options", {}),
            check=tuple(driver.get("check", ())),
            gitops=_gitops(driver.get("gitops")),
        ),
        verify=_verify(data.get("verify")),
        on_failure=data.get("on_failure", "stop"),
    )


def _gitops(data: Mapping[str, Any] | None) -> GitOpsTarget | None:
    if data is None:
        return None
    argocd, flux = data.get("argocd"), data.get("flux")
    return GitOpsTarget(
        repository=data["repository"],
        path=data["path"],
        branch=data.get("branch", "main"),
        image=data.get("image"),
        key=data.get("key"),
        argocd=(
            None if argocd is None else ArgoCDWait(argocd["application"], argocd.get("sync", False))
        ),
        flux=(
            None
            if flux is None
            else FluxWait(
                flux.get("namespace", "flux-system"), flux["git_repository"], flux["kustomization"]
            )
        ),
    )


def _verify(data: Mapping[str, Any] | None) -> Verify | None:
    if data is None:
        return None
    return Verify(
        timeout=parse_duration(data["timeout"]),
        interval=parse_duration(data.get("interval", DEFAULT_CHECK_INTERVAL)),
    )


def build_policy(
    teams: Mapping[str, Any], environments: Iterable[Environment], now: datetime | None = None
) -> Policy:
    """The policy of a schema-valid teams.yaml and its environments. `now` is the time
    of judging: an OpenPGP key expired then identifies nobody (None: expiry not judged,
    as `validate` reads a policy)."""
    users = {user_id: _identity(user_id, data) for user_id, data in teams["users"].items()}
    services = {
        account_id: _identity(account_id, data)
        for account_id, data in teams["service_accounts"].items()
    }
    hosts = {host_id: _identity(host_id, data) for host_id, data in teams.get("hosts", {}).items()}
    team_values = {
        name: Team(name, tuple(data.get("applications", ())), dict(data["members"]))
        for name, data in teams["teams"].items()
    }
    application_owner: dict[str, str] = {}
    for team in team_values.values():
        for application in team.applications:
            application_owner.setdefault(application, team.name)
    key_owner: dict[str, str] = {}
    unusable: dict[str, str] = {}
    changes: list[datetime] = []
    for identity in (*users.values(), *services.values(), *hosts.values()):
        for key in identity.keys:
            listed, change = _key_fingerprints(key, now)
            if change is not None:
                changes.append(change)
            for fingerprint, why in listed:
                if why is None:
                    key_owner.setdefault(fingerprint, identity.id)
                else:
                    unusable.setdefault(fingerprint, f"{identity.id}'s {why}")
    email_owner: dict[str, str] = {}
    for user in users.values():
        for email in user.emails:
            email_owner.setdefault(email_key(email), user.id)
    infrastructure = teams["infrastructure"]
    return Policy(
        users=users,
        service_accounts=services,
        hosts=hosts,
        settings=frozenset(infrastructure.get("settings", ())),
        projects=frozenset(infrastructure.get("projects", ())),
        teams=team_values,
        environments={env.name: env for env in environments},
        application_owner=application_owner,
        key_owner=key_owner,
        email_owner=email_owner,
        other_paths=tuple(teams.get("other_paths", ())),
        role_holders=_role_holders(team_values, users),
        signers=frozenset(key_owner.values()),
        squash_hosts=frozenset(
            host_id
            for host_id, data in teams.get("hosts", {}).items()
            if data.get("vouches_for_squash_author") is True
        ),
        unusable_keys=unusable,
        keys_change=min(changes, default=None),
        notifications=routes_from(teams.get("notifications")),
    )


def routes_from(entries: Any) -> tuple[Route, ...]:
    """teams.yaml's validated `notifications:` list as routes."""
    return tuple(
        Route(
            target=entry["target"],
            events=frozenset(entry["events"]) if "events" in entry else None,
            environments=frozenset(entry["environments"]) if "environments" in entry else None,
        )
        for entry in entries or ()
    )


def disowned(policy: Policy, keys: Mapping[str, str]) -> Policy:
    """`policy` with `keys` (fingerprint -> why) identifying nobody: listed, but unusable."""
    owned = {key: owner for key, owner in policy.key_owner.items() if key not in keys}
    if len(owned) == len(policy.key_owner):
        return policy
    unusable = dict(policy.unusable_keys)
    for key, why in keys.items():
        if key in policy.key_owner:
            unusable.setdefault(key, f"{policy.key_owner[key]}'s {why}")
    return replace(
        policy, key_owner=owned, signers=frozenset(owned.values()), unusable_keys=unusable
    )


def _key_fingerprints(
    entry: str, now: datetime | None
) -> tuple[list[tuple[str, str | None]], datetime | None]:
    """The fingerprints a teams.yaml key entry lists, each with why it identifies nobody
    (None: it identifies its identity), and the first moment after `now` one more of
    them expires. An SSH key has one, which never expires; an OpenPGP certificate one
    per key, its subkeys included. An entry that does not decode lists none: validate
    reports it."""
    if not openpgp.is_certificate(entry):
        try:
            return [(parse_public_key(entry).fingerprint, None)], None
        except KeyFormatError:
            return [], None
    try:
        found = openpgp.certificates(entry)
    except openpgp.CertificateError:
        return [], None
    listed: list[tuple[str, str | None]] = []
    changes: list[datetime] = []
    for certificate in found:
        unusable = openpgp.unusable(certificate, now)
        listed += [(key.fingerprint, unusable.get(key.fingerprint)) for key in certificate.keys]
        change = openpgp.expires_next(certificate, now) if now is not None else None
        if change is not None:
            changes.append(change)
    return listed, min(changes, default=None)


def _role_holders(
    teams: Mapping[str, Team], users: Mapping[str, Identity]
) -> dict[str, frozenset[str]]:
    holders: dict[str, set[str]] = {}
    for team in teams.values():
        for user, role in team.members.items():
            if user in users:
                holders.setdefault(role, set()).add(user)
    return {role: frozenset(members) for role, members in holders.items()}


def _approval_rules(rules: Iterable[Mapping[str, Any]]) -> tuple[ApprovalRule, ...]:
    return tuple(ApprovalRule(rule["role"], rule.get("count", 1)) for rule in rules)


def build_plan(data: Mapping[str, Any]) -> Plan:
    return Plan(
        name=data["name"],
        source=data.get("source"),
        target=data["target"],
        applications=tuple(
            PlanEntry(
                name=entry["name"],
                version=entry["version"],
                action=entry.get("action", "deploy"),
                from_version=entry.get("from"),
            )
            for entry in data["applications"]
        ),
        notes=data.get("notes", ""),
        state=data["state"],
        rollback=data.get("rollback", False),
        override_drift=data.get("override_drift") is True,
    )


def relative_command(spec: DriverSpec) -> ConfigError | None:
    """A command given as a relative path names nothing in the driver's empty folder
    (the command driver's program, the local driver's check)."""
    argv = spec.argv if spec.type == "command" else spec.check if spec.type == "local" else ()
    program = argv[0] if argv else ""
    if "/" not in program or program.startswith("/"):
        return None
    return ConfigError(
        f"'{program}' is a relative path, and the command runs in an empty folder of its own",
        hint="give a command on PATH (e.g. 'deploy.sh') or an absolute path (e.g. "
        "'/opt/deploy/deploy.sh'); a script in this repository would run whatever was "
        "pushed, authorised or not",
    )
