"""Stage 2, validate: a snapshot of the configuration in, every finding out.

Called by `reconciler validate` (working tree) and by `authorise` (committed
trees). Each file is loaded and checked against its schema, then the
cross-file rules run on what passed: references between files, names that
match file names, one promotion chain, one owner per key and application,
and a policy that cannot wedge itself. Every finding is collected, none
stops the others, and each names its file, line and fix.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import openpgp, resources, schema
from reconciler.approvals import most_approvals
from reconciler.config import build_environment, build_policy, parse_instant, relative_command
from reconciler.errors import ConfigError
from reconciler.identity import can_verify
from reconciler.layout import TEAMS_FILE, Kind, place
from reconciler.loader import Document, JsonPath, load
from reconciler.model import Environment, Finding, Policy, Snapshot
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
    # Plans that loaded but failed their schema: their names that are still names
    # get the cross-file checks too, so one run reports every finding.
    broken_plans: dict[str, Document] = field(default_factory=dict)
    deployments: dict[str, Document] = field(default_factory=dict)
    # The item name of every environment, plan and deployment file, by path,
    # and the names of all environment files, also those that did not pass.
    names: dict[str, str] = field(default_factory=dict)
    environment_files: set[str] = field(default_factory=set)


def validate_snapshot(
    snapshot: Snapshot, only: Collection[str] | None = None, *, editor_gates: bool = True
) -> Report:
    """Check every file of `snapshot`; report findings for `only` those paths when given.

    `editor_gates=False` leaves out the check that some approval gate could be met
    by people other than a plan's editors. `authorise` judges policies in history
    without it: such a gate holds plans back (a settings user can always fix it)
    but never the policy, and a check added after a repository's policy was accepted
    must not turn that history invalid and refuse every later policy change.
    """
    findings: list[Finding] = list(snapshot.refused)
    checked = _Checked()
    for path in sorted(snapshot.files):
        placement = place(path)
        if placement.kind is None or placement.kind == "log":
            continue
        if placement.kind == "schema":
            findings.extend(_compare_schema(path, snapshot.files[path]))
            continue
        checked.names[path] = placement.name
        if placement.kind == "environment":
            checked.environment_files.add(placement.name)
        document, passed = _load_and_check(path, placement.kind, snapshot.files[path], findings)
        if document is not None and passed:
            _file(checked, placement.kind, document)
        elif document is not None and placement.kind == "plan":
            checked.broken_plans[path] = document
    findings.extend(_cross_file(checked, snapshot, editor_gates=editor_gates))
    files_checked = len(snapshot.files)
    if only is not None:
        wanted = set(only)
        findings = [finding for finding in findings if _named(finding.file, wanted)]
        # The rest were read as context, not checked for the report: `validate plans/x.yaml`
        # checked one file, however big the repository.
        files_checked = sum(_named(path, wanted) for path in snapshot.files)
    unique = {finding.sort_key(): finding for finding in findings}
    return Report(
        findings=tuple(unique[key] for key in sorted(unique)),
        files_checked=files_checked,
    )


def _named(path: str, wanted: set[str]) -> bool:
    """Whether `path` is one of the `wanted` files or inside one of the `wanted` folders."""
    return path in wanted or any(path.startswith(f"{folder}/") for folder in wanted)


def _load_and_check(
    path: str, kind: Kind, raw: bytes, findings: list[Finding]
) -> tuple[Document | None, bool]:
    """The document (None when it does not load), and whether it passed its schema."""
    try:
        document = load(raw, path)
    except ConfigError as exc:
        findings.append(Finding(path, exc.line or 1, exc.column or 1, exc.message, exc.hint))
        return None, False
    problems = schema.check(document, kind)
    findings.extend(problems)
    return document, not problems


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
    import difflib  # noqa: PLC0415 - only with a finding to explain (start-up time)

    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"add it to {what} first, or fix the name"


def _cross_file(checked: _Checked, snapshot: Snapshot, *, editor_gates: bool) -> list[Finding]:
    out = _Findings()
    environments: dict[str, Environment] = {}
    for path, document in checked.environments.items():
        if not _instants_exist(document, out):
            continue
        environment = build_environment(document.data)
        expected = checked.names[path]
        if environment.name != expected:
            out.at(
                document,
                ("name",),
                f"name '{environment.name}' does not match the file name",
                f"rename the file to environments/{environment.name}.yaml or set name: {expected}",
            )
            continue
        environments[environment.name] = environment
    # Environments whose file exists but did not make it this far: references
    # to them are neither confirmed nor reported, their own findings say why.
    broken = checked.environment_files - environments.keys()
    policy: Policy | None = None
    if checked.teams is not None:
        policy = build_policy(checked.teams.data, environments.values())
        _check_teams(checked.teams, out)
    elif TEAMS_FILE not in snapshot.files and not any(
        finding.file == TEAMS_FILE for finding in snapshot.refused
    ):
        # Also when nothing at all was found: an empty folder (or the wrong
        # --repo) is not a valid configuration.
        out.items.append(
            Finding(
                TEAMS_FILE,
                1,
                1,
                "teams.yaml is missing",
                "every configuration repository needs one; see `reconciler init`",
            )
        )
    unchained = _check_chain(checked, environments, broken, out)
    for path, document in checked.environments.items():
        valid_environment = environments.get(checked.names[path])
        if valid_environment is not None:
            _check_environment(document, valid_environment, policy, out, editor_gates=editor_gates)
    unsettled = broken | unchained
    for plans, whole in ((checked.plans, True), (checked.broken_plans, False)):
        for path, document in plans.items():
            _check_plan(
                document,
                checked.names[path],
                environments=environments,
                unsettled=unsettled,
                policy=policy,
                out=out,
                whole=whole,
            )
    for path, document in checked.deployments.items():
        _check_deployment(document, checked.names[path], environments, broken, out)
    return out.items


def _instants_exist(document: Document, out: _Findings) -> bool:
    """The schema checks an instant's shape; whether the day exists needs a calendar."""
    exists = True
    for index, freeze in enumerate(document.data.get("gates", {}).get("freezes", ())):
        for key in ("from", "until"):
            try:
                parse_instant(freeze[key])
            except ValueError as exc:
                out.at(
                    document,
                    ("gates", "freezes", index, key),
                    f"'{freeze[key]}' is not a real date and time: {exc}",
                    "write a real date and time, e.g. 2026-12-20T00:00:00Z",
                )
                exists = False
    return exists


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
    # identity.resolve looks an id up in users first: a service account or host
    # sharing a user's id would act as that user.
    id_sections: dict[str, str] = {}
    for section in ("users", "service_accounts", "hosts"):
        for identity_id, identity in data.get(section, {}).items():
            first = id_sections.setdefault(identity_id, section)
            if first != section:
                out.at(
                    document,
                    (section, identity_id),
                    f"'{identity_id}' is in both {first} and {section}",
                    "ids must be unique across users, service accounts and hosts; rename one",
                    key=True,
                )
            for index, key in enumerate(identity.get("keys", ())):
                path = (section, identity_id, "keys", index)
                fingerprints = _key_fingerprints(key, document, path, out)
                for fingerprint in fingerprints:
                    if fingerprint in key_holders and key_holders[fingerprint] != identity_id:
                        out.at(
                            document,
                            path,
                            f"this key already belongs to '{key_holders[fingerprint]}'",
                            "one key belongs to one identity; each person needs their own key",
                        )
                        break
                for fingerprint in fingerprints:
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


def _key_fingerprints(key: str, document: Document, path: JsonPath, out: _Findings) -> list[str]:
    """The fingerprints of one key entry (an OpenPGP certificate's: each of its keys),
    or none, reported, when it does not decode."""
    if openpgp.is_certificate(key):
        try:
            found = openpgp.certificates(key)
        except openpgp.CertificateError as exc:
            out.at(document, path, f"not a valid OpenPGP public key: {exc}", openpgp.HINT)
            return []
        return [subkey.fingerprint for certificate in found for subkey in certificate.keys]
    try:
        return [parse_public_key(key).fingerprint]
    except KeyFormatError as exc:
        out.at(
            document,
            path,
            f"not a valid SSH public key: {exc}",
            "paste the whole line of the .pub file",
        )
        return []


def _check_chain(
    checked: _Checked,
    environments: Mapping[str, Environment],
    broken: Collection[str],
    out: _Findings,
) -> set[str]:
    """Report each environment's broken link; return the environments reported."""
    by_name = {checked.names[path]: document for path, document in checked.environments.items()}
    groups: dict[int, list[Environment]] = {}
    for environment in sorted(environments.values(), key=lambda env: (env.order, env.name)):
        groups.setdefault(environment.order, []).append(environment)
    reported: set[str] = set()

    def report(environment: Environment, path: JsonPath, message: str, hint: str) -> None:
        out.at(by_name[environment.name], path, message, hint)
        reported.add(environment.name)

    previous: list[Environment] = []
    for order in sorted(groups):
        group = groups[order]
        for environment in group:
            others = [other.name for other in group if other is not environment]
            if others:
                report(
                    environment,
                    ("order",),
                    f"order {order} is also used by {_listed(others)}",
                    "environments form one chain: give each a distinct order",
                )
            elif (
                environment.promotes_from is not None
                and environment.promotes_from not in environments
            ):
                if environment.promotes_from not in broken:
                    report(
                        environment,
                        ("promotes_from",),
                        f"unknown environment '{environment.promotes_from}'",
                        _suggest(environment.promotes_from, environments, "environments/"),
                    )
            elif broken or len(previous) > 1:
                # Next to a file that did not load, or an order two share, the
                # chain cannot be judged; those findings come first.
                continue
            elif not previous and environment.promotes_from is not None:
                report(
                    environment,
                    ("promotes_from",),
                    f"'{environment.name}' comes first (order {environment.order}) "
                    f"but promotes from '{environment.promotes_from}'",
                    "the first environment promotes from nothing: "
                    "remove promotes_from, or fix order",
                )
            elif previous and environment.promotes_from != previous[0].name:
                report(
                    environment,
                    ("promotes_from",) if environment.promotes_from else ("order",),
                    f"'{environment.name}' follows '{previous[0].name}' in order "
                    f"but promotes from {_quoted(environment.promotes_from)}",
                    f"environments form one chain: set promotes_from: {previous[0].name}",
                )
        previous = group
    return reported


def _listed(names: list[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _quoted(name: str | None) -> str:
    return f"'{name}'" if name else "nothing"


def _check_environment(
    document: Document,
    environment: Environment,
    policy: Policy | None,
    out: _Findings,
    *,
    editor_gates: bool,
) -> None:
    gates = environment.gates
    approvers = environment.roles_holding("plan.approve")
    needed: set[str] = set()
    total = 0
    unmeetable = False
    misnamed = False
    for index, rule in enumerate(gates.approvals):
        path = ("gates", "approvals", index)
        if rule.role not in approvers:
            misnamed = True
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
            approvals = "approval" if rule.count == 1 else "approvals"
            out.at(
                document,
                path,
                f"needs {rule.count} {approvals} by '{rule.role}', but "
                f"{_how_many(len(holders), signed=gates.signed_commits)} that role: "
                "the gate can never be met",
                "lower the count, add SSH keys for the role's holders, "
                "or grant the role to more people in teams.yaml"
                if gates.signed_commits
                else "lower the count, or grant the role to more people in teams.yaml",
            )
            unmeetable = True
        needed |= holders
        total += rule.count
    if policy is not None and gates.approvals and not unmeetable and len(needed) < total:
        out.at(
            document,
            ("gates", "approvals"),
            f"the approval rules need {total} distinct people but only {len(needed)} can approve",
            "lower the counts, or grant the roles to more people",
            key=True,
        )
        unmeetable = True
    if editor_gates and policy is not None and gates.approvals and not unmeetable and not misnamed:
        _check_editors_left_to_approve(document, environment, policy, out)
    for index, window in enumerate(gates.windows):
        if not _time_zone_exists(window.timezone):
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
    relative = relative_command(environment.driver)
    if relative is not None:
        # A warning: such a driver cannot run, and plans for it wait (see `drivers`), but
        # the environment is a valid policy all the same.
        out.at(document, ("driver", "argv", 0), relative.message, relative.hint, severity="warning")
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


_EDITORS_NAMED = 5


def _check_editors_left_to_approve(
    document: Document, environment: Environment, policy: Policy, out: _Findings
) -> None:
    """Every plan has an editor, whose approval does not count: the gate must be met by
    the others for at least one possible editor, or no plan can ever be approved here."""
    editors = _possible_editors(policy, environment)
    if not editors:
        return  # nobody can propose a plan here: nothing waits on the gate
    signed = environment.gates.signed_commits
    wanted: dict[str, int] = {}
    for rule in environment.gates.approvals:
        wanted[rule.role] = wanted.get(rule.role, 0) + rule.count
    holders = {role: _holders(policy, role, signed=signed) for role in wanted}
    total = sum(wanted.values())
    # Editors who hold the same approving roles leave the same people to approve,
    # so one editor of each kind is enough: a thousand users make a handful of kinds.
    kinds: dict[frozenset[str], str] = {}
    for editor in sorted(editors):
        held = frozenset(role for role, people in holders.items() if editor in people)
        kinds.setdefault(held, editor)
    most = max(
        most_approvals(wanted, {role: people - {editor} for role, people in holders.items()})
        for editor in kinds.values()
    )
    if most >= total:
        return
    names = sorted(editors)
    if len(names) > _EDITORS_NAMED:  # a thousand users would bury the finding
        names = [*names[: _EDITORS_NAMED - 1], f"one of {len(names) - _EDITORS_NAMED + 1} others"]
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    out.at(
        document,
        ("gates", "approvals"),
        f"every plan into {environment.name} is edited by {who}, whose approval of it does "
        f"not count: the approval rules need {total} {'approval' if total == 1 else 'approvals'} "
        f"but at most {most} can be given",
        "grant the approving roles to someone who does not edit plans here "
        "(a reviewer in a team without applications), or lower the counts",
        key=True,
    )


def _possible_editors(policy: Policy, environment: Environment) -> set[str]:
    """Users who may add an application's entry to a plan into `environment`."""
    roles = environment.roles_holding("plan.edit")
    signed = environment.gates.signed_commits
    return {
        user
        for team in policy.teams.values()
        if team.applications
        for user, role in team.members.items()
        if role in roles and user in policy.users and (not signed or can_verify(policy, user))
    }


def _time_zone_exists(name: str) -> bool:
    import zoneinfo  # noqa: PLC0415 - only for deploy windows (start-up time)

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _how_many(count: int, *, signed: bool) -> str:
    """'no user holds', 'only 1 user with an SSH key holds', 'only 3 users hold'."""
    keyed = " with an SSH key" if signed else ""
    if count == 0:
        return f"no user{keyed} holds"
    if count == 1:
        return f"only 1 user{keyed} holds"
    return f"only {count} users{keyed} hold"


def _holders(policy: Policy, role: str, *, signed: bool) -> set[str]:
    """Who holds `role` in some team; where signatures are required, only those whose
    signed commits can be attributed to them (their own key, or a host's)."""
    return {
        user
        for user in policy.role_holders.get(role, frozenset())
        if not signed or can_verify(policy, user)
    }


def _installed_drivers() -> set[str]:
    # Imported here: importlib.metadata costs ~40 ms of start-up, and only an
    # environment with a third-party driver needs it.
    import importlib.metadata  # noqa: PLC0415

    return {entry.name for entry in importlib.metadata.entry_points(group=DRIVER_ENTRY_POINTS)}


def _check_plan(
    document: Document,
    file_name: str,
    *,
    environments: Mapping[str, Environment],
    unsettled: Collection[str],
    policy: Policy | None,
    out: _Findings,
    whole: bool = True,
) -> None:
    """The cross-file rules of one plan; of a plan that failed its schema (not `whole`),
    those whose values are still names (its schema findings say what the others lack)."""
    # Read from the schema-valid data itself: building a `Plan` for each of
    # thousands of plans only to read four fields was a tenth of validation.
    plan: Mapping[str, Any] = document.data if isinstance(document.data, dict) else {}

    def usable(value: Any) -> bool:
        return whole or schema.is_identifier(value)

    name: Any = plan.get("name")
    target_name: Any = plan.get("target")
    source: Any = plan.get("source")
    if usable(name) and name != file_name:
        out.at(
            document,
            ("name",),
            f"name '{name}' does not match the file name",
            f"rename the file to plans/{name}.yaml or set name: {file_name}",
        )
    target = environments.get(target_name) if usable(target_name) else None
    if not usable(target_name) or target_name in unsettled:
        pass  # the environment's own findings (or the plan's) come first
    elif target is None:
        out.at(
            document,
            ("target",),
            f"unknown environment '{target_name}'",
            _suggest(target_name, environments, "environments/"),
        )
    elif source is not None and not usable(source):
        pass  # its own finding says what is wrong with it
    elif target.promotes_from is None and source is not None:
        out.at(
            document,
            ("source",),
            f"'{target_name}' is the first environment; it promotes from nothing",
            "remove source",
        )
    elif target.promotes_from is not None and source != target.promotes_from:
        where: JsonPath = ("source",) if source is not None else ("target",)
        out.at(
            document,
            where,
            f"'{target_name}' promotes from '{target.promotes_from}', not {_quoted(source)}",
            f"set source: {target.promotes_from}",
        )
    entries = plan.get("applications")
    for index, entry in enumerate(entries if isinstance(entries, list) else ()):
        application: Any = entry.get("name") if isinstance(entry, dict) else None
        if not usable(application):
            continue
        if policy is not None and application not in policy.application_owner:
            out.at(
                document,
                ("applications", index, "name"),
                f"unknown application '{application}'",
                _suggest(
                    application, policy.application_owner, "a team's applications in teams.yaml"
                ),
            )


def _check_deployment(
    document: Document,
    file_name: str,
    environments: Mapping[str, Environment],
    broken: Collection[str],
    out: _Findings,
) -> None:
    environment = document.data["environment"]
    if environment != file_name:
        out.at(
            document,
            ("environment",),
            f"environment '{environment}' does not match the file name",
            "deployments/ is written by the reconciler; do not edit it by hand",
        )
    elif environment not in environments and environment not in broken:
        out.at(
            document,
            ("environment",),
            f"unknown environment '{environment}'",
            "deployments/ is written by the reconciler; do not edit it by hand",
        )
