"""Stage 4, decide: the approval rules: whose approval counts, and how approvers meet the gates.

Called by `decide` (which approvals of a plan version count, and what the
gates still wait for), `validate` (can the gates ever be met, by people who
did not edit the plan) and `actions` (would an approval made now count), so
that the three never disagree. Pure: users, roles and counts come in as values.

- An editor of a plan never approves it (`editor_refusal`), and each person
  counts once (`repeated_approval`).
- Each approver fills at most one rule's place, and the places are filled as
  a maximum matching (`match_approvers`): how many approvals people can give
  (`most_approvals`) is the same matching, over everyone who could approve.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from reconciler.core.reasons import Reason, reason

EDITOR: str = "approval.editor"
REPEATED: str = "approval.repeated"


def editor_refusal(actor: str, editors: Collection[str]) -> Reason | None:
    """Why `actor`'s approval does not count because they edited the plan, or None."""
    if actor in editors:
        return reason(
            EDITOR,
            f"{actor} edited the plan, and editors do not approve their own plans",
            actor=actor,
        )
    return None


def repeated_approval(actor: str, approvers: Collection[str]) -> Reason | None:
    """Why another approval by `actor` adds nothing, or None: each person counts once."""
    if actor in approvers:
        return reason(
            REPEATED,
            f"{actor} already approved this version, and each person counts once",
            actor=actor,
        )
    return None


def approval_refusal(
    actor: str, editors: Collection[str], approvers: Collection[str]
) -> Reason | None:
    """Why an approval by `actor` would not count on a version `editors` edited and
    `approvers` approved already, or None (what `actions` checks before the commit)."""
    return editor_refusal(actor, editors) or repeated_approval(actor, approvers)


def match_approvers(
    approvers: Sequence[str], counts: Sequence[int], roles: Sequence[Collection[str]]
) -> list[list[str]]:
    """Each approver to at most one rule they hold the role for, meeting as many as can be.

    A maximum matching (augmenting paths; rule i has counts[i] places): taken
    in turn, an approver holding two roles would fill the first rule's place
    and leave the second waiting, although another approver could have taken
    the first.
    """
    assigned: list[list[str]] = [[] for _ in counts]

    def place(user: str, tried: set[int]) -> bool:
        for index, holders_of_role in enumerate(roles):
            if index in tried or user not in holders_of_role:
                continue
            tried.add(index)
            if len(assigned[index]) < counts[index]:
                assigned[index].append(user)
                return True
            for other in list(assigned[index]):
                if place(other, tried):  # `other` moved to another rule: take its place
                    assigned[index].remove(other)
                    assigned[index].append(user)
                    return True
        return False

    for user in approvers:
        place(user, set())
    return assigned


def most_approvals(wanted: Mapping[str, int], holders: Mapping[str, Collection[str]]) -> int:
    """How many of the approvals wanted (role -> count) distinct people can give: the
    matching `decide` makes, were every holder of a wanted role to approve."""
    roles = sorted(wanted)
    everyone = sorted({user for role in roles for user in holders.get(role, ())})
    matched = match_approvers(
        everyone, [wanted[role] for role in roles], [holders.get(role, ()) for role in roles]
    )
    return sum(len(users) for users in matched)
