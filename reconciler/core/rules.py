"""Stage 3, authorise: the per-file rules, may this actor change this value of this file?

Called by `authorise` for every edit a landed commit makes, one field at a
time (see `fields`). Pure: a policy, what the commit proves about its author,
the value before and after. The answer is a `Judgement` whose verdict
carries the reasons `permissions` gives, plus the permission that was needed.

- plans/: an entry needs plan.edit on the target through the team owning its
  application; notes, order and draft/ready need plan.edit for some
  application in the plan; to or from cancelled, plan.deploy; source and
  target, plan.edit on the old and new target for every application.
- teams.yaml: teams.edit (settings); projects may change teams' applications
  and members, granting only tech-lead, developer or tester, never to itself
  (nor its own teams' applications), and the comments and layout that go with
  such a change.
- environments/, schemas/: environments.edit (settings).
- deployments/<env>.yaml: the reconciler service account, in the finish
  record that counts for a run into <env>; logs/: the service account.
- approvals, triggers and retries (`judge_signoff`): plan.approve or plan.deploy
  on the plan's target.
- a landing as a trigger (`landing_style`, `triggers`, `not_a_trigger`): only a
  commit whose actor is the one who landed it triggers what it lands: a merge into
  main (its merger), or a single-parent commit its own actor made; never a host's
  squash (it names the pull request's author, not who merged it) nor a branch that
  merged main in and reached main by fast-forward.
- anything else: listed in teams.yaml `other_paths`, by a user; else refused.

Plan edits into environments without `signed_commits` may be attributed by
committer email; everything else needs a verified signature.
"""

from __future__ import annotations

import fnmatch
from typing import Final, Literal

from msgspec import Struct

from reconciler.core import permissions
from reconciler.core.events import Record
from reconciler.core.fields import (
    APP_PREFIX,
    INVALID,
    TEXT,
    FieldMap,
    plan_applications,
    teams_field_parts,
    value,
)
from reconciler.core.identity import Actor, CommitFacts, resolve
from reconciler.core.layout import place
from reconciler.core.model import Policy
from reconciler.core.permissions import Answers, Verdict

# How a first-parent commit of main landed what it brings, as the commit shows it.
LandingStyle = Literal["merge", "commit", "squash", "branch"]
_TRIGGERING: Final = frozenset({"merge", "commit"})
# Styles that never trigger, whoever landed them: the commit does not say who that was.
UNTRIGGERING_STYLES: Final = frozenset({"squash", "branch"})
# A plan's fields that change what every entry means: where it goes, where from, and
# whether it is a rollback (which skips the promotion order): plan.edit for all of them.
WHOLE_PLAN: Final = frozenset({"source", "target", "rollback"})


class Judgement(Struct, frozen=True):
    verdict: Verdict
    needed: str
    actor: Actor
    # What the commit most likely was and what to do instead, after the verdict's reasons
    # (which stay the permission's own, as `access` gives them).
    hints: tuple[str, ...] = ()


def judge_change(
    policy: Policy,
    facts: CommitFacts,
    path: str,
    field: str,
    old: FieldMap,
    new: FieldMap,
    finish: Record | str | None = None,
    *,
    answers: Answers | None = None,
) -> Judgement:
    """Judge one field of one file changing from `old` to `new` (whole field maps).

    `finish`: the run the commit's record ends, as it counted, or why its record does
    not count (None: the commit is no finish record); only deployments/ asks.
    `answers`: permission answers the caller keeps for `policy` (a walk, across landings).
    """
    placement = place(path)
    kind = placement.kind
    if kind == "plan":
        ask = Answers(policy) if answers is None else answers.for_policy(policy)
        return _plan(policy, facts, field, old, new, ask)
    actor = resolve(facts, policy, signature_required=True)
    if INVALID in new and field == INVALID:
        # The reason is the problem itself: the content is invalid, whoever changes it.
        return Judgement(Verdict.deny(str(value(new, INVALID))), "valid content", actor)
    if kind == "deployment":
        return _deployment(actor, placement.name, finish)
    if kind == "log":
        return _service_only(actor)
    if not actor.known:
        return Judgement(Verdict.deny(actor.how), _needed_for(kind), actor)
    if actor.kind == "service":
        return _service_elsewhere(actor, _needed_for(kind))
    if kind == "teams":
        return _teams(policy, actor, field, old, new)
    if kind in ("environment", "schema"):
        verdict = permissions.may_change_settings(policy, actor.name, permissions.ENVIRONMENTS_EDIT)
        return Judgement(verdict, permissions.ENVIRONMENTS_EDIT, actor)
    return _other_path(policy, actor, path)


def judge_signoff(policy: Policy, facts: CommitFacts, permission: str, target: object) -> Judgement:
    """Judge an approval, trigger or retry (`permission`) of a plan into `target`."""
    environment = policy.environments.get(target) if isinstance(target, str) else None
    signed = environment.gates.signed_commits if environment else True
    actor = resolve(facts, policy, signature_required=signed)
    if not actor.known:
        verdict = Verdict.deny(actor.how)
    elif environment is None:
        verdict = Verdict.deny(f"the plan's target '{target}' is not an environment")
    else:
        verdict = permissions.may_on_environment(policy, actor.name, permission, environment.name)
    return Judgement(verdict, permission, actor)


def judge_lock(policy: Policy, facts: CommitFacts, environment: str) -> Judgement:
    """Judge a lock or unlock of `environment` (or of an application in it): a signed commit
    by a plan.deploy holder there, or by a settings user."""
    actor = resolve(facts, policy, signature_required=True)
    if not actor.known:
        verdict = Verdict.deny(actor.how)
    else:
        verdict = permissions.may_lock(policy, actor.name, environment)
    return Judgement(verdict, permissions.PLAN_DEPLOY, actor)


def landing_style(facts: CommitFacts, actor: Actor, *, onto_main: bool) -> LandingStyle:
    """How the first-parent commit `facts` landed what it brings, and so whether its actor
    is the one who landed it (`onto_main`: its first parent is main's previous commit).

    - merge: a merge into main; its actor (the signer, or the author a host vouches
      for) is whoever merged;
    - commit: a single-parent commit, its own actor's: a direct commit, or the last
      commit of a fast-forward or rebase (the one who fast-forwarded leaves no trace);
    - squash: a host's squash, its actor the pull request's author, not who merged it;
    - branch: main reached by fast-forward to a branch that merged main in (a `git
      pull`, a host's "Update branch"): its tip was never a merge into main.
    """
    if not onto_main:
        return "branch"
    if facts.parents >= 2:
        return "merge"
    if actor.squashed_by is not None:
        return "squash"
    return "commit"


def triggers(style: str) -> bool:
    """Whether a landing of this style is a trigger when its actor holds plan.deploy."""
    return style in _TRIGGERING


def not_a_trigger(
    style: str, commit: str, actor: str | None, squashed_by: str | None = None
) -> str | None:
    """Why a landing by `actor` was no trigger, naming the style it saw; None for a landing
    stored before styles were (`style` ""), whose reasons say why."""
    who = actor or "an unknown actor"
    short = commit[:12]
    if actor is None and style in _TRIGGERING:
        return f"it landed by {short}, whose maker is unknown"
    if style == "squash":
        return (
            f"it landed by {squashed_by}'s squash merge ({short}, authored by {who}), "
            "which does not say who merged it"
        )
    if style == "branch":
        return (
            f"it landed by fast-forward to a branch that merged main in ({short} by {who}), "
            "not by a merge into main"
        )
    if style == "commit":
        return (
            f"it landed by fast-forward, rebase or a direct commit ({short} by {who}): "
            "no merge by a plan.deploy holder to trigger it"
        )
    if style == "merge":
        return f"it landed by {who}'s merge ({short}), and {who} does not hold plan.deploy there"
    return None


def _needed_for(kind: str | None) -> str:
    return {
        "teams": permissions.TEAMS_EDIT,
        "environment": permissions.ENVIRONMENTS_EDIT,
        "schema": permissions.ENVIRONMENTS_EDIT,
    }.get(kind or "", "a listing in teams.yaml other_paths")


def _service_only(actor: Actor) -> Judgement:
    needed = "the reconciler service account's signature"
    if actor.kind == "service":
        return Judgement(
            Verdict.allow(f"{actor.name} is the reconciler service account"), needed, actor
        )
    return Judgement(
        Verdict.deny(
            f"{actor.name} is not the reconciler service account ({actor.how})",
            "deployments/ and logs/ are written only by the reconciler",
        ),
        needed,
        actor,
    )


def _deployment(actor: Actor, environment: str, finish: Record | str | None) -> Judgement:
    """What runs in an environment moves only with the finish record of the run that
    deployed it: a record copied back into the history must not roll it back."""
    judgement = _service_only(actor)
    if not judgement.verdict:
        return judgement
    needed = f"the finish record of a run into {environment}"
    if finish is None:
        problem = "the commit is not the finish record of a run"
    elif isinstance(finish, str):
        problem = f"its record does not count: {finish}"
    elif finish.environment != environment:
        problem = f"its record ends run {finish.run} in {finish.environment}, not {environment}"
    else:
        return Judgement(
            Verdict.allow(f"the finish record of run {finish.run} in {environment}"),
            needed,
            actor,
        )
    return Judgement(Verdict.deny(problem), needed, actor)


def _service_elsewhere(actor: Actor, needed: str) -> Judgement:
    return Judgement(
        Verdict.deny(
            f"{actor.name} is the reconciler service account, "
            "which may only write deployments/ and logs/"
        ),
        needed,
        actor,
    )


def _plan(
    policy: Policy, facts: CommitFacts, field: str, old: FieldMap, new: FieldMap, ask: Answers
) -> Judgement:
    targets = tuple(
        dict.fromkeys(
            target
            for target in (value(old, "target"), value(new, "target"))
            if isinstance(target, str)
        )
    )
    signed = any(
        policy.environments[target].gates.signed_commits
        for target in targets
        if target in policy.environments
    )
    actor = resolve(facts, policy, signature_required=signed)
    if field == INVALID:
        if INVALID in new:
            return Judgement(Verdict.deny(str(value(new, INVALID))), "a valid plan", actor)
        return Judgement(Verdict.allow("replaces content that was refused"), "nothing", actor)
    if not actor.known:
        return Judgement(Verdict.deny(actor.how), _plan_needed(field, targets), actor)
    if actor.kind == "service":
        return _service_elsewhere(actor, _plan_needed(field, targets))
    if not targets:
        return Judgement(Verdict.deny("the plan names no target environment"), "a target", actor)
    verdicts: list[Verdict] = []
    # Most edits are one application's entry, which needs only that application.
    applications = (
        ()
        if field.startswith(APP_PREFIX)
        else tuple(dict.fromkeys((*plan_applications(old), *plan_applications(new))))
    )
    for target in targets:
        if field.startswith(APP_PREFIX):
            application = field[len(APP_PREFIX) :]
            verdicts.append(ask.may_edit_application(actor.name, target, application))
        elif field in WHOLE_PLAN:
            verdicts.extend(
                ask.may_edit_application(actor.name, target, application)
                for application in applications
            )
            if not applications:
                verdicts.append(ask.may_edit_some_application(actor.name, target, ()))
        elif _needs_deploy(field, old, new):
            verdicts.append(ask.may_on_environment(actor.name, permissions.PLAN_DEPLOY, target))
        else:
            verdicts.append(ask.may_edit_some_application(actor.name, target, applications))
    verdict = _all(verdicts)
    hints = _landed_for_others(policy, actor.name, targets) if not verdict else ()
    needed = _plan_needed(field, targets, old, new)
    return Judgement(verdict, needed, actor, hints if facts.parents == 1 else ())


def _landed_for_others(policy: Policy, user: str, targets: tuple[str, ...]) -> tuple[str, ...]:
    """What ops (plan.deploy, and plan.edit for no application) whose single-parent commit's
    plan edit was refused most likely did, and what to do instead: a squash, rebase or
    cherry-pick makes the commits it re-makes its maker's own edits (the authors'
    signatures are not in them), so land others' work with a true merge."""
    if any(
        permissions.may_on_environment(policy, user, permissions.PLAN_DEPLOY, target)
        and not permissions.may_edit_some_application(policy, user, target, ())
        for target in targets
    ):
        return (
            f"{user} holds plan.deploy here: a squash, rebase or cherry-pick by {user} makes "
            f"the changes in it {user}'s own edits; land others' commits with a true merge "
            "(`git merge --no-ff -S`, or the host's merge commit), which keeps them theirs",
        )
    return ()


def _all(verdicts: list[Verdict]) -> Verdict:
    for verdict in verdicts:
        if not verdict:
            return verdict
    reasons = tuple(dict.fromkeys(reason for verdict in verdicts for reason in verdict.reasons))
    return Verdict.allow(*reasons)


def _plan_needed(
    field: str, targets: tuple[str, ...], old: FieldMap | None = None, new: FieldMap | None = None
) -> str:
    where = " and ".join(targets) or "the target"
    if field.startswith(APP_PREFIX):
        return f"plan.edit on {where} for {field[len(APP_PREFIX) :]}"
    if field in WHOLE_PLAN:
        return f"plan.edit on {where} for every application in the plan"
    if _needs_deploy(field, old or {}, new or {}):
        return f"plan.deploy on {where}"
    return f"plan.edit on {where} for some application in the plan"


def _needs_deploy(field: str, old: FieldMap, new: FieldMap) -> bool:
    """Whether a plan field's edit is an operator's call (plan.deploy on the target): a
    cancel or un-cancel, and an `override_drift: true`, which deploys over what someone
    changed outside the reconciler (a run stops before it otherwise)."""
    if field == "state":
        return "cancelled" in (value(old, "state"), value(new, "state"))
    return field == "override_drift" and value(new, "override_drift") is True


def _teams(policy: Policy, actor: Actor, field: str, old: FieldMap, new: FieldMap) -> Judgement:
    if field == TEXT:
        verdict = permissions.may_change_teams_text(policy, actor.name)
        return Judgement(verdict, f"{permissions.TEAMS_EDIT} (comments and layout)", actor)
    parts = teams_field_parts(field)
    if parts[0] == "teams" and len(parts) == 4 and parts[2] == "members":
        old_role, new_role = value(old, field), value(new, field)
        verdict = permissions.may_change_membership(
            policy, actor.name, parts[1], parts[3], old_role, new_role
        )
        return Judgement(verdict, f"{permissions.TEAMS_EDIT} (members of {parts[1]})", actor)
    if parts[0] == "teams" and len(parts) == 3 and parts[2] == "applications":
        verdict = permissions.may_change_applications(policy, actor.name, parts[1])
        return Judgement(verdict, f"{permissions.TEAMS_EDIT} (applications of {parts[1]})", actor)
    verdict = permissions.may_change_settings(policy, actor.name, permissions.TEAMS_EDIT)
    return Judgement(verdict, permissions.TEAMS_EDIT, actor)


def _other_path(policy: Policy, actor: Actor, path: str) -> Judgement:
    needed = "a listing in teams.yaml other_paths"
    for pattern in policy.other_paths:
        if fnmatch.fnmatchcase(path, pattern):
            return Judgement(
                Verdict.allow(f"{path} matches other_paths '{pattern}'"), needed, actor
            )
    return Judgement(
        Verdict.deny(
            f"{path} is not part of the configuration layout and teams.yaml other_paths "
            "does not list it"
        ),
        needed,
        actor,
    )
