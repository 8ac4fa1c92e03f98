"""Stage 2, validate: a snapshot of the configuration in, every finding out.

Called by `reconciler validate` (working tree) and by `authorise` (committed
trees). Each file is loaded and checked against its schema, then the
cross-file rules run on what passed: references between files, names that
match file names, one promotion chain, one owner per key and application,
and a policy that cannot wedge itself. Every finding is collected, none
stops the others, and each names its file, line and fix.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import zoneinfo
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import resources, schema
from reconciler.config import build_environment, build_plan, build_policy
from reconciler.errors import ConfigError
from reconciler.layout import TEAMS_FILE, Kind, place
from reconciler.loader import Document, JsonPath, load
from reconciler.model import Environment, Finding, Plan, Policy, Snapshot
from reconciler.sshkeys import KeyFormatError, parse_public_key

BUILTIN_DRIVERS = ("local", "command")
DRIVER_ENTRY_POINTS = "reconciler.drivers"


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]
    files_checked: int

    @property
    def valid(self) -> bool:
        return not any(finding.severity == "error" for finding in self.findings)

    @property
    def errors(self) -> int:
        return sum(finding.severity == "error" for finding in self.findings)

    @property
    def warnings(self) -> int:
        return sum(finding.severity == "warning" for finding in self.findings)


@dataclass(slots=True)
class _Checked:
    """Documents that loaded and passed their schema, by path."""

    teams: Document | None = None
    environments: dict[str, Document] = field(default_factory=dict)
    plans: dict[str, Document] = field(default_factory=dict)
    deployments: dict[str, Document] = field(default_factory=dict)


def validate_snapshot(snapshot: Snapshot, only: Collection[str] | None = None) -> Report:
    """Check every file of `snapshot`; report findings for `only` those paths when given."""
    findings: list[Finding] = list(snapshot.refused)
    checked = _Checked()
    for path in sorted(snapshot.files):
        placement = place(path)
        if placement.kind is None or placement.kind == "log":
            continue
        if placement.kind == "schema":
            findings.extend(_compare_schema(path, snapshot.files[path]))
            continue
        document = _load_and_check(path, placement.kind, snapshot.files[path], findings)
        if document is not None:
            _file(checked, placement.kind, document)
    findings.extend(_cross_file(checked, snapshot))
    if only is not None:
        wanted = set(only)
        findings = [
            finding
            for finding in findings
            if finding.file in wanted or any(finding.file.startswith(f"{p}/") for p in wanted)
        ]
    unique = {finding.sort_key(): finding for finding in findings}
    return Report(
        findings=tuple(unique[key] for key in sorted(unique)),
        files_checked=len(snapshot.files),
    )


def _load_and_check(path: str, kind: Kind, raw: bytes, findings: list[Finding]) -> Document | None:
    try:
        document = load(raw, path)
    except ConfigError as exc:
        findings.append(Finding(path, exc.line or 1, exc.column or 1, exc.message, exc.hint))
        return None
    problems = schema.check(document, kind)
    findings.extend(problems)
    return None if problems else document


def _file(checked: _Checked, kind: Kind, document: Document) -> None:
    if kind == "teams":
        checked.teams = document
    elif kind == "environment":
        checked.environments[document.path] = document
    elif kind == "plan":
        checked.plans[document.path] = document
    elif kind == "deployment":
        checked.deployments[document.path] = document


def _compare_schema(path: str, raw: bytes) -> list[Finding]:
    name = path.removeprefix("schemas/")
    for kind, file_name in resources.SCHEMA_FILES.items():
        if file_name == name and raw != resources.schema_bytes(kind):
            return [
                Finding(
                    path,
                    1,
                    1,
                    "differs from the schema this reconciler ships; "
                    "validation always uses the shipped one",
                    f"refresh it from {resources.schemas_dir() / file_name}",
                    severity="warning",
                )
            ]
    return []


class _Findings:
    """Collects cross-file findings positioned in one document."""

    def __init__(self) -> None:
        self.items: list[Finding] = []

    def at(
        self,
        document: Document,
        path: JsonPath,
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        severity: str = "error",
    ) -> None:
        where = document.key_position(path) if key else document.position(path)
        self.items.append(
            Finding(document.path, where.line, where.column, message, hint, severity)  # type: ignore[arg-type]
        )


def _suggest(name: str, known: Iterable[str], what: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"add it to {what} first, or fix the name"


def _cross_file(checked: _Checked, snapshot: Snapshot) -> list[Finding]:
    out = _Findings()
    environments: dict[str, Environment] = {}
    for path, document in checked.environments.items():
        environment = build_environment(document.data)
        expected = place(path).name
        if environment.name != expected:
            out.at(
                document,
                ("name",),
                f"name '{environment.name}' does not match the file name",
                f"rename the file to environments/{environment.name}.yaml or set name: {expected}",
            )
            continue
        environments[environment.name] = environment
    policy: Policy | None = None
    if checked.teams is not None:
        policy = build_policy(checked.teams.data, environments.values())
        _check_teams(checked.teams, out)
    elif snapshot.files and TEAMS_FILE not in snapshot.files:
        out.items.append(
            Finding(
                TEAMS_FILE,
                1,
                1,
                "teams.yaml is missing",
                "every configuration repository needs one; see `reconciler init`",
            )
        )
    _check_chain(checked.environments, environments, out)
    for path, document in checked.environments.items():
        valid_environment = environments.get(place(path).name)
        if valid_environment is not None:
            _check_environment(document, valid_environment, policy, out)
    for path, document in checked.plans.items():
        plan = build_plan(document.data)
        _check_plan(
            document, plan, place(path).name, environments=environments, policy=policy, out=out
        )
    for path, document in checked.deployments.items():
        _check_deployment(document, place(path).name, environments, out)
    return out.items


def _check_teams(document: Document, out: _Findings) -> None:
    data: Mapping[str, Any] = document.data
    users = data["users"]
    for role in ("settings", "projects"):
        for index, user in enumerate(data["infrastructure"].get(role, ())):
            if user not in users:
                out.at(
                    document,
                    ("infrastructure", role, index),
                    f"unknown user '{user}'",
                    _suggest(user, users, "users:"),
                )
    owners: dict[str, str] = {}
    for team_name, team in data["teams"].items():
        for user in team["members"]:
            if user not in users:
                out.at(
                    document,
                    ("teams", team_name, "members", user),
                    f"unknown user '{user}'",
                    _suggest(user, users, "users:"),
                    key=True,
                )
        for index, application in enumerate(team.get("applications", ())):
            if application in owners:
                out.at(
                    document,
                    ("teams", team_name, "applications", index),
                    f"application '{application}' already belongs to team '{owners[application]}'",
                    "an application belongs to exactly one team; remove it from one of them",
                )
            else:
                owners[application] = team_name
    key_holders: dict[str, str] = {}
    email_holders: dict[str, str] = {}
    for section in ("users", "service_accounts", "hosts"):
        for identity_id, identity in data.get(section, {}).items():
            for index, key in enumerate(identity.get("keys", ())):
                path = (section, identity_id, "keys", index)
                try:
                    fingerprint = parse_public_key(key).fingerprint
                except KeyFormatError as exc:
                    out.at(
                        document,
                        path,
                        f"not a valid SSH public key: {exc}",
                        "paste the whole line of the .pub file",
                    )
                    continue
                if fingerprint in key_holders and key_holders[fingerprint] != identity_id:
                    out.at(
                        document,
                        path,
                        f"this key already belongs to '{key_holders[fingerprint]}'",
                        "one key belongs to one identity; each person needs their own key",
                    )
                key_holders.setdefault(fingerprint, identity_id)
            if section != "users":
                continue
            for index, email in enumerate(identity.get("emails", ())):
                owner = email_holders.setdefault(email.lower(), identity_id)
                if owner != identity_id:
                    out.at(
                        document,
                        (section, identity_id, "emails", index),
                        f"email '{email}' already belongs to '{owner}'",
                        "an email identifies one user; remove it from one of them",
                    )
    if not any(
        users.get(user, {}).get("keys") for user in data["infrastructure"].get("settings", ())
    ):
        out.at(
            document,
            ("infrastructure",),
            "no settings user has an SSH key, so nobody could ever sign a change to the policy",
            "add a key to at least one user listed under infrastructure.settings",
            key=True,
        )


def _check_chain(
    documents: Mapping[str, Document], environments: Mapping[str, Environment], out: _Findings
) -> None:
    by_name = {place(path).name: document for path, document in documents.items()}
    ordered = sorted(environments.values(), key=lambda env: (env.order, env.name))
    previous: Environment | None = None
    for environment in ordered:
        document = by_name[environment.name]
        # Each branch reports one broken link; later links are judged on their own.
        if previous is not None and previous.order == environment.order:
            out.at(
                document,
                ("order",),
                f"order {environment.order} is also used by '{previous.name}'",
                "environments form one chain: give each a distinct order",
            )
        elif (
            environment.promotes_from is not None and environment.promotes_from not in environments
        ):
            out.at(
                document,
                ("promotes_from",),
                f"unknown environment '{environment.promotes_from}'",
                _suggest(environment.promotes_from, environments, "environments/"),
            )
        elif previous is None and environment.promotes_from is not None:
            out.at(
                document,
                ("promotes_from",),
                f"'{environment.name}' comes first (order {environment.order}) "
                f"but promotes from '{environment.promotes_from}'",
                "the first environment promotes from nothing: remove promotes_from, or fix order",
            )
        elif previous is not None and environment.promotes_from != previous.name:
            out.at(
                document,
                ("promotes_from",) if environment.promotes_from else ("order",),
                f"'{environment.name}' follows '{previous.name}' in order "
                f"but promotes from {_quoted(environment.promotes_from)}",
                f"environments form one chain: set promotes_from: {previous.name}",
            )
        previous = environment


def _quoted(name: str | None) -> str:
    return f"'{name}'" if name else "nothing"


def _check_environment(
    document: Document, environment: Environment, policy: Policy | None, out: _Findings
) -> None:
    gates = environment.gates
    approvers = environment.roles_holding("plan.approve")
    needed: set[str] = set()
    total = 0
    for index, rule in enumerate(gates.approvals):
        path = ("gates", "approvals", index)
        if rule.role not in approvers:
            out.at(
                document,
                (*path, "role"),
                f"approvals by '{rule.role}' are required, but '{rule.role}' does not hold "
                "plan.approve here",
                f"add {rule.role} to permissions.plan.approve, or change the rule",
            )
            continue
        if policy is None:
            continue
        holders = _holders(policy, rule.role, signed=gates.signed_commits)
        if len(holders) < rule.count:
            signed = " with an SSH key" if gates.signed_commits else ""
            out.at(
                document,
                path,
                f"needs {rule.count} approvals by '{rule.role}', but only {len(holders)} "
                f"user(s){signed} hold that role: the gate can never be met",
                "lower the count, or grant the role to more people in teams.yaml",
            )
        needed |= holders
        total += rule.count
    if policy is not None and gates.approvals and len(needed) < total:
        out.at(
            document,
            ("gates", "approvals"),
            f"the approval rules need {total} distinct people but only {len(needed)} can approve",
            "lower the counts, or grant the roles to more people",
            key=True,
        )
    for index, window in enumerate(gates.windows):
        try:
            zoneinfo.ZoneInfo(window.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            out.at(
                document,
                ("gates", "windows", index, "timezone"),
                f"unknown time zone '{window.timezone}'",
                "use an IANA name such as Europe/Lisbon",
            )
        if window.start == window.end:
            out.at(
                document,
                ("gates", "windows", index),
                "the window opens and closes at the same time, so it is never open",
                "set 'to' after 'from'",
            )
    for index, freeze in enumerate(gates.freezes):
        if freeze.end <= freeze.start:
            out.at(
                document,
                ("gates", "freezes", index, "until"),
                "the freeze ends before it starts",
                "set 'until' after 'from'",
            )
    driver = environment.driver.type
    if driver not in BUILTIN_DRIVERS and driver not in _installed_drivers():
        out.at(
            document,
            ("driver", "type"),
            f"driver '{driver}' is not installed here",
            f"install the package that registers it in '{DRIVER_ENTRY_POINTS}', "
            "or use local or command",
            severity="warning",
        )


def _holders(policy: Policy, role: str, *, signed: bool) -> set[str]:
    return {
        user
        for team in policy.teams.values()
        for user, held in team.members.items()
        if held == role and user in policy.users and (not signed or policy.users[user].keys)
    }


def _installed_drivers() -> set[str]:
    return {entry.name for entry in importlib.metadata.entry_points(group=DRIVER_ENTRY_POINTS)}


def _check_plan(
    document: Document,
    plan: Plan,
    file_name: str,
    *,
    environments: Mapping[str, Environment],
    policy: Policy | None,
    out: _Findings,
) -> None:
    if plan.name != file_name:
        out.at(
            document,
            ("name",),
            f"name '{plan.name}' does not match the file name",
            f"rename the file to plans/{plan.name}.yaml or set name: {file_name}",
        )
    target = environments.get(plan.target)
    if target is None:
        if environments:
            out.at(
                document,
                ("target",),
                f"unknown environment '{plan.target}'",
                _suggest(plan.target, environments, "environments/"),
            )
    elif target.promotes_from is None and plan.source is not None:
        out.at(
            document,
            ("source",),
            f"'{plan.target}' is the first environment; it promotes from nothing",
            "remove source",
        )
    elif target.promotes_from is not None and plan.source != target.promotes_from:
        where: JsonPath = ("source",) if plan.source is not None else ("target",)
        out.at(
            document,
            where,
            f"'{plan.target}' promotes from '{target.promotes_from}', not {_quoted(plan.source)}",
            f"set source: {target.promotes_from}",
        )
    seen: set[str] = set()
    for index, entry in enumerate(plan.applications):
        if entry.name in seen:
            out.at(
                document,
                ("applications", index, "name"),
                f"application '{entry.name}' is listed twice",
                "a plan deploys each application once; remove one entry",
            )
        seen.add(entry.name)
        if policy is not None and entry.name not in policy.application_owner:
            out.at(
                document,
                ("applications", index, "name"),
                f"unknown application '{entry.name}'",
                _suggest(
                    entry.name, policy.application_owner, "a team's applications in teams.yaml"
                ),
            )


def _check_deployment(
    document: Document, file_name: str, environments: Mapping[str, Environment], out: _Findings
) -> None:
    environment = document.data["environment"]
    if environment != file_name:
        out.at(
            document,
            ("environment",),
            f"environment '{environment}' does not match the file name",
            "deployments/ is written by the reconciler; do not edit it by hand",
        )
    elif environments and environment not in environments:
        out.at(
            document,
            ("environment",),
            f"unknown environment '{environment}'",
            "deployments/ is written by the reconciler; do not edit it by hand",
        )
