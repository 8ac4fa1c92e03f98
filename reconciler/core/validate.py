"""Stage 2, validate: a snapshot of the configuration in, every finding out.

Called by `reconciler validate` (working tree) and by `authorise` (committed
trees). Each file is loaded and checked against its schema, then the
cross-file rules run on what passed: references between files, names that
match file names, one promotion chain, one owner per key and application,
and a policy that cannot wedge itself. Every finding is collected, none
stops the others, and each names its file, line and fix.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from msgspec import Struct

from reconciler.core import resources, schema
from reconciler.core.config import build_environment, build_policy, parse_instant
from reconciler.core.documents import Document, JsonPath
from reconciler.core.errors import ConfigError
from reconciler.core.layout import TEAMS_FILE, Kind, place
from reconciler.core.loader import load
from reconciler.core.model import Environment, Finding, Policy, Snapshot
from reconciler.core.validate_environments import check_environment
from reconciler.core.validate_findings import Findings, suggest
from reconciler.core.validate_teams import check_notification_routes, check_teams


class Report(Struct, frozen=True):
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
        _check_file(checked, path, snapshot.files[path], findings)
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


def _check_file(checked: _Checked, path: str, raw: bytes, findings: list[Finding]) -> None:
    """Check one file on its own, and keep what the cross-file checks need of it."""
    placement = place(path)
    if placement.kind is None or placement.kind == "log":
        return
    if placement.kind == "schema":
        findings.extend(_compare_schema(path, raw))
        return
    checked.names[path] = placement.name
    if placement.kind == "environment":
        checked.environment_files.add(placement.name)
    document, passed = _load_and_check(path, placement.kind, raw, findings)
    if document is not None and passed:
        _file(checked, placement.kind, document)
    elif document is not None and placement.kind == "plan":
        checked.broken_plans[path] = document


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


def _cross_file(checked: _Checked, snapshot: Snapshot, *, editor_gates: bool) -> list[Finding]:
    out = Findings()
    environments = _environments(checked, out)
    # Environments whose file exists but did not make it this far: references
    # to them are neither confirmed nor reported, their own findings say why.
    broken = checked.environment_files - environments.keys()
    policy: Policy | None = None
    if checked.teams is not None:
        policy = build_policy(checked.teams.data, environments.values())
        check_teams(checked.teams, out)
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
    if checked.teams is not None:
        check_notification_routes(checked.teams, environments.keys(), broken, out)
    for path, document in checked.environments.items():
        valid_environment = environments.get(checked.names[path])
        if valid_environment is not None:
            check_environment(document, valid_environment, policy, out, editor_gates=editor_gates)
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


def _environments(checked: _Checked, out: Findings) -> dict[str, Environment]:
    """The environments built from their files, by name: those whose instants exist and
    whose name is their file's."""
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
    return environments


def _instants_exist(document: Document, out: Findings) -> bool:
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


def _check_chain(
    checked: _Checked,
    environments: Mapping[str, Environment],
    broken: Collection[str],
    out: Findings,
) -> set[str]:
    """Report each environment's broken link; return the environments reported."""
    by_name = {checked.names[path]: document for path, document in checked.environments.items()}
    groups: dict[int, list[Environment]] = {}
    for environment in sorted(environments.values(), key=lambda env: (env.order, env.name)):
        groups.setdefault(environment.order, []).append(environment)
    reported: set[str] = set()
    previous: list[Environment] = []
    for order in sorted(groups):
        group = groups[order]
        for environment in group:
            problem = _link_problem(environment, group, previous, environments, broken)
            if problem is not None:
                out.at(by_name[environment.name], *problem)
                reported.add(environment.name)
        previous = group
    return reported


# Where a finding points, its message and its hint.
_Problem = tuple[JsonPath, str, str]


def _link_problem(
    environment: Environment,
    group: list[Environment],
    previous: list[Environment],
    environments: Mapping[str, Environment],
    broken: Collection[str],
) -> _Problem | None:
    """What is wrong with `environment`'s link in the chain: `group` shares its order,
    `previous` is the group of the order before."""
    others = [other.name for other in group if other is not environment]
    if others:
        return (
            ("order",),
            f"order {environment.order} is also used by {_listed(others)}",
            "environments form one chain: give each a distinct order",
        )
    source = environment.promotes_from
    if source is not None and source not in environments:
        if source in broken:
            return None
        return (
            ("promotes_from",),
            f"unknown environment '{source}'",
            suggest(source, environments, "environments/"),
        )
    if broken or len(previous) > 1:
        # Next to a file that did not load, or an order two share, the
        # chain cannot be judged; those findings come first.
        return None
    return _order_problem(environment, previous)


def _order_problem(environment: Environment, previous: list[Environment]) -> _Problem | None:
    """Whether `environment` promotes from the one before it in order (`previous`: it
    alone, or nothing when `environment` comes first)."""
    if not previous and environment.promotes_from is not None:
        return (
            ("promotes_from",),
            f"'{environment.name}' comes first (order {environment.order}) "
            f"but promotes from '{environment.promotes_from}'",
            "the first environment promotes from nothing: remove promotes_from, or fix order",
        )
    if previous and environment.promotes_from != previous[0].name:
        return (
            ("promotes_from",) if environment.promotes_from else ("order",),
            f"'{environment.name}' follows '{previous[0].name}' in order "
            f"but promotes from {_quoted(environment.promotes_from)}",
            f"environments form one chain: set promotes_from: {previous[0].name}",
        )
    return None


def _listed(names: list[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _quoted(name: str | None) -> str:
    return f"'{name}'" if name else "nothing"


def _check_plan(
    document: Document,
    file_name: str,
    *,
    environments: Mapping[str, Environment],
    unsettled: Collection[str],
    policy: Policy | None,
    out: Findings,
    whole: bool = True,
) -> None:
    """The cross-file rules of one plan; of a plan that failed its schema (not `whole`),
    those whose values are still names (its schema findings say what the others lack)."""
    # Read from the schema-valid data itself: building a `Plan` for each of
    # thousands of plans only to read four fields was a tenth of validation.
    plan: Mapping[str, Any] = document.data if isinstance(document.data, dict) else {}
    name: Any = plan.get("name")
    if _usable(name, whole=whole) and name != file_name:
        out.at(
            document,
            ("name",),
            f"name '{name}' does not match the file name",
            f"rename the file to plans/{name}.yaml or set name: {file_name}",
        )
    _check_plan_target(document, plan, environments, unsettled, out, whole=whole)
    if policy is not None:
        _check_plan_applications(document, plan, policy, out, whole=whole)


def _usable(value: Any, *, whole: bool) -> bool:
    """Whether a plan's value can be checked against other files (see `_check_plan`)."""
    return whole or schema.is_identifier(value)


def _check_plan_target(
    document: Document,
    plan: Mapping[str, Any],
    environments: Mapping[str, Environment],
    unsettled: Collection[str],
    out: Findings,
    *,
    whole: bool,
) -> None:
    """A plan's target is a known environment, and its source the one that promotes to it."""
    target_name: Any = plan.get("target")
    source: Any = plan.get("source")
    if not _usable(target_name, whole=whole) or target_name in unsettled:
        return  # the environment's own findings (or the plan's) come first
    target = environments.get(target_name)
    if target is None:
        out.at(
            document,
            ("target",),
            f"unknown environment '{target_name}'",
            suggest(target_name, environments, "environments/"),
        )
    elif source is not None and not _usable(source, whole=whole):
        pass  # its own finding says what is wrong with it
    elif not target.takes_source(source, rollback=plan.get("rollback") is True):
        problem = _source_problem(target_name, target, source)
        if problem is not None:
            out.at(document, *problem)


def _source_problem(target_name: str, target: Environment, source: str | None) -> _Problem | None:
    """Whether a plan for `target` (named `target_name`) names the source it promotes from."""
    if target.promotes_from is None and source is not None:
        return (
            ("source",),
            f"'{target_name}' is the first environment; it promotes from nothing",
            "remove source",
        )
    if target.promotes_from is not None and source != target.promotes_from:
        return (
            ("source",) if source is not None else ("target",),
            f"'{target_name}' promotes from '{target.promotes_from}', not {_quoted(source)}",
            f"set source: {target.promotes_from}",
        )
    return None


def _check_plan_applications(
    document: Document, plan: Mapping[str, Any], policy: Policy, out: Findings, *, whole: bool
) -> None:
    """A plan's applications are ones a team owns."""
    entries = plan.get("applications")
    for index, entry in enumerate(entries if isinstance(entries, list) else ()):
        application: Any = entry.get("name") if isinstance(entry, dict) else None
        if _usable(application, whole=whole) and application not in policy.application_owner:
            out.at(
                document,
                ("applications", index, "name"),
                f"unknown application '{application}'",
                suggest(
                    application, policy.application_owner, "a team's applications in teams.yaml"
                ),
            )


def _check_deployment(
    document: Document,
    file_name: str,
    environments: Mapping[str, Environment],
    broken: Collection[str],
    out: Findings,
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
