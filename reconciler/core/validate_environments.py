"""Stage 2, validate: the rules of one environment against the policy.

Approval gates someone can meet (even when the plan's editor's approval does not
count), windows that open, freezes that end, and a driver that is installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Final

from reconciler.core.approvals import most_approvals
from reconciler.core.config import relative_command
from reconciler.core.documents import Document, JsonPath
from reconciler.core.identity import can_verify
from reconciler.core.model import ApprovalRule, Environment, Gates, GitOpsTarget, Policy
from reconciler.core.validate_findings import Findings

BUILTIN_DRIVERS = ("local", "command", "gitops")
# The approvals a rollback plan needs (`gates.approval_rules`), checked as the others are.
_ROLLBACK: Final = "rollback_approvals"
DRIVER_ENTRY_POINTS = "reconciler.drivers"
# The longest verification of one application: like a driver's timeout (at most 86400 s),
# it goes into every run's lease.
LONGEST_VERIFY: Final = timedelta(days=1)


def check_environment(
    document: Document,
    environment: Environment,
    policy: Policy | None,
    out: Findings,
    *,
    editor_gates: bool,
) -> None:
    gates = environment.gates
    for key, rules in (("approvals", gates.approvals), (_ROLLBACK, gates.rollback_approvals)):
        sound = _check_approvals(document, environment, policy, out, key, rules)
        if editor_gates and policy is not None and rules and sound:
            _check_editors_left_to_approve(document, environment, policy, out, key, rules)
    _check_windows(document, gates, out)
    for index, freeze in enumerate(gates.freezes):
        if freeze.end <= freeze.start:
            out.at(
                document,
                ("gates", "freezes", index, "until"),
                "the freeze ends before it starts",
                "set 'until' after 'from'",
            )
    if gates.soak is not None and environment.promotes_from is None:
        out.at(
            document,
            ("gates", "soak"),
            "a soak is counted in the environment a version is promoted from, and this one "
            "promotes from none",
            "remove 'soak', or set it on the environment that promotes from this one",
        )
    _check_driver(document, environment, out)
    _check_verify(document, environment, out)


def _check_approvals(
    document: Document,
    environment: Environment,
    policy: Policy | None,
    out: Findings,
    key: str,
    rules: Sequence[ApprovalRule],
) -> bool:
    """Check the approval rules at gates.`key` (their meetability only given the `policy`);
    whether each names a role that approves here and, as far as the policy tells, can be met."""
    gates = environment.gates
    approvers = environment.roles_holding("plan.approve")
    needed: set[str] = set()
    total = 0
    unmeetable = False
    misnamed = False
    for index, rule in enumerate(rules):
        path = ("gates", key, index)
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
            _too_few_holders(document, path, rule, len(holders), gates, out)
            unmeetable = True
        needed |= holders
        total += rule.count
    if policy is not None and rules and not unmeetable and len(needed) < total:
        out.at(
            document,
            ("gates", key),
            f"the approval rules need {total} distinct people but only {len(needed)} can approve",
            "lower the counts, or grant the roles to more people",
            key=True,
        )
        unmeetable = True
    return not unmeetable and not misnamed


def _too_few_holders(
    document: Document,
    path: JsonPath,
    rule: ApprovalRule,
    holders: int,
    gates: Gates,
    out: Findings,
) -> None:
    approvals = "approval" if rule.count == 1 else "approvals"
    out.at(
        document,
        path,
        f"needs {rule.count} {approvals} by '{rule.role}', but "
        f"{_how_many(holders, signed=gates.signed_commits)} that role: "
        "the gate can never be met",
        "lower the count, add SSH keys for the role's holders, "
        "or grant the role to more people in teams.yaml"
        if gates.signed_commits
        else "lower the count, or grant the role to more people in teams.yaml",
    )


def _check_windows(document: Document, gates: Gates, out: Findings) -> None:
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


def _check_driver(document: Document, environment: Environment, out: Findings) -> None:
    relative = relative_command(environment.driver)
    if relative is not None:
        # A warning: such a driver cannot run, and plans for it wait (see `drivers`), but
        # the environment is a valid policy all the same.
        program = ("driver", "argv" if environment.driver.type == "command" else "check", 0)
        out.at(document, program, relative.message, relative.hint, severity="warning")
    driver = environment.driver.type
    if environment.driver.check and driver != "local":
        out.at(
            document,
            ("driver", "check"),
            f"'check' is the local driver's; the {driver} driver would ignore it",
            "remove it: the command driver checks with its own program "
            "(RECONCILER_OPERATION=check); a third-party driver takes its settings in 'options'",
        )
    gitops = environment.driver.gitops
    if gitops is not None and driver != "gitops":
        out.at(
            document,
            ("driver", "gitops"),
            f"'gitops' is the gitops driver's; the {driver} driver would ignore it",
            "remove it, or set type: gitops",
        )
    elif gitops is not None:
        for where, message, hint in gitops_problems(gitops):
            out.at(document, ("driver", "gitops", *where), message, hint)
    if driver not in BUILTIN_DRIVERS and driver not in _installed_drivers():
        out.at(
            document,
            ("driver", "type"),
            f"driver '{driver}' is not installed here",
            f"install the package that registers it in '{DRIVER_ENTRY_POINTS}', "
            "or use local or command",
            severity="warning",
        )


# What a gitops template may name: the step's application and environment.
_PLACEHOLDERS: Final = re.compile(r"\{([^{}]*)\}")
GITOPS_FIELDS: Final = ("app", "environment")


def gitops_problems(target: GitOpsTarget) -> list[tuple[JsonPath, str, str]]:
    """What is wrong with a gitops driver's block: (where in it, what, the fix).

    It sets exactly one value (an image's newTag or a key path), in a file inside the
    repository, and its templates name only {app} and {environment}.
    """
    problems: list[tuple[JsonPath, str, str]] = []
    if (target.image is None) == (target.key is None):
        problems.append(
            (
                (),
                "a gitops driver sets one value: an image's newTag or a key path",
                "give exactly one of 'image' (a kustomize images[] name) or 'key' (e.g. image.tag)",
            )
        )
    templates: list[tuple[JsonPath, str]] = [(("path",), target.path)]
    if target.image is not None:
        templates.append((("image",), target.image))
    if target.key is not None:
        templates.append((("key",), target.key))
    if target.argocd is not None:
        templates.append((("argocd", "application"), target.argocd.application))
    if target.flux is not None:
        templates.append((("flux", "kustomization"), target.flux.kustomization))
    for where, template in templates:
        unknown = [name for name in _PLACEHOLDERS.findall(template) if name not in GITOPS_FIELDS]
        if unknown:
            problems.append(
                (
                    where,
                    f"'{{{unknown[0]}}}' is not a placeholder of the gitops driver",
                    "use {app} and {environment} only",
                )
            )
    parts = target.path.split("/")
    if target.path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        problems.append(
            (
                ("path",),
                f"the path {target.path!r} does not name a file inside the repository",
                "give a path relative to its root, without '..' or empty parts, "
                "e.g. apps/{app}/overlays/{environment}/kustomization.yaml",
            )
        )
    if target.key is not None and any(not part for part in target.key.split(".")):
        problems.append(
            (
                ("key",),
                f"the key path {target.key!r} has an empty part",
                "name each key, separated by single dots, e.g. image.tag",
            )
        )
    if target.argocd is not None and target.flux is not None:
        problems.append(
            (
                (),
                "a gitops driver waits for one engine, Argo CD or Flux",
                "keep 'argocd' or 'flux', not both",
            )
        )
    return problems


def _check_verify(document: Document, environment: Environment, out: Findings) -> None:
    """A verification that can check, and whose time a run's lease can hold."""
    verify = environment.verify
    if verify is None:
        return
    if not verify.timeout:
        out.at(
            document,
            ("verify", "timeout"),
            "a verify timeout of 0 leaves no time for any check",
            "give the checks time to pass, e.g. timeout: 5m",
        )
    elif verify.timeout > LONGEST_VERIFY:
        out.at(
            document,
            ("verify", "timeout"),
            "a verify timeout longer than 1d holds the environment's runs (and their lease) "
            "that long",
            "set at most 1d",
        )
    interval = ("verify", "interval") if "interval" in (document.data.get("verify") or {}) else None
    where = interval or ("verify",)
    if not verify.interval:
        out.at(document, where, "a verify interval of 0 checks without pause", "use e.g. 10s")
    elif verify.timeout and verify.interval > verify.timeout:
        default = "" if interval else " (the default interval)"
        out.at(
            document,
            where,
            f"the verify interval{default} is longer than the timeout, so a failed check is "
            "never tried again",
            "set the interval at most the timeout, e.g. timeout: 5m, interval: 10s",
        )


_EDITORS_NAMED = 5


def _check_editors_left_to_approve(
    document: Document,
    environment: Environment,
    policy: Policy,
    out: Findings,
    key: str,
    rules: Sequence[ApprovalRule],
) -> None:
    """Every plan has an editor, whose approval does not count: the gate must be met by
    the others for at least one possible editor, or no plan can ever be approved here."""
    editors = _possible_editors(policy, environment)
    if not editors:
        return  # nobody can propose a plan here: nothing waits on the gate
    signed = environment.gates.signed_commits
    wanted: dict[str, int] = {}
    for rule in rules:
        wanted[rule.role] = wanted.get(rule.role, 0) + rule.count
    holders = {role: _holders(policy, role, signed=signed) for role in wanted}
    total = sum(wanted.values())
    most = _most_left_to_approve(wanted, holders, editors)
    if most >= total:
        return
    who = _one_of(editors)
    kind = "rollback plan" if key == _ROLLBACK else "plan"
    approvals = "approval" if total == 1 else "approvals"
    out.at(
        document,
        ("gates", key),
        f"every {kind} into {environment.name} is edited by {who}, whose approval of it does "
        f"not count: the approval rules need {total} {approvals} but at most {most} can be given",
        "grant the approving roles to someone who does not edit plans here "
        "(a reviewer in a team without applications), or lower the counts",
        key=True,
    )


def _most_left_to_approve(
    wanted: Mapping[str, int], holders: Mapping[str, set[str]], editors: set[str]
) -> int:
    """The most approvals the `holders` of the `wanted` roles can give to a plan of one
    of the `editors`, whose own approval does not count."""
    # Editors who hold the same approving roles leave the same people to approve,
    # so one editor of each kind is enough: a thousand users make a handful of kinds.
    kinds: dict[frozenset[str], str] = {}
    for editor in sorted(editors):
        held = frozenset(role for role, people in holders.items() if editor in people)
        kinds.setdefault(held, editor)
    return max(
        most_approvals(wanted, {role: people - {editor} for role, people in holders.items()})
        for editor in kinds.values()
    )


def _one_of(editors: set[str]) -> str:
    """The editors as a finding names them: 'a, b or c', at most a few."""
    names = sorted(editors)
    if len(names) > _EDITORS_NAMED:  # a thousand users would bury the finding
        names = [*names[: _EDITORS_NAMED - 1], f"one of {len(names) - _EDITORS_NAMED + 1} others"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


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
