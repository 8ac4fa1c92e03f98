"""Stage 3, authorise: what the walk finds of a landing, its verdict and the refused changes in it.

Values, made by `authorise` and kept by the journal (`journal`), and how refusals are
worded for people (`group_refusals`): `verify`, `plan` and `history` say them alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from msgspec import Struct

from reconciler.core.fields import CONTENT, INVALID, describe_field


class Refusal(Struct, frozen=True):
    """One change that was not allowed, with everything needed to understand why."""

    commit: str
    path: str
    field: str
    actor: str
    how: str
    needed: str
    reasons: tuple[str, ...]

    def what(self) -> str:
        if self.field in ("", CONTENT):
            return self.path
        return f"{self.path} ({describe_field(self.field)})"

    def message(self) -> str:
        return group_refusals([self])[0].text()

    def as_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "path": self.path,
            "field": self.field,
            "actor": self.actor,
            "how": self.how,
            "needed": self.needed,
            "reasons": list(self.reasons),
            "message": self.message(),
        }


class RefusalGroup(Struct, frozen=True):
    """The refused changes one commit's actor made to one file, said once.

    How `verify`, `plan` and `history` word refusals: a file's fields that one
    commit changed without permission share one line, which names each permission
    needed and each reason once (a plan's entry, source and target are refused for
    the same reasons, and were told three times). Content that is invalid is said to
    be invalid, with why: no permission would make it valid.
    """

    path: str
    commit: str
    actor: str
    how: str
    invalid: bool
    fields: tuple[str, ...]  # as `describe_field` words them; empty for a whole file
    needed: tuple[str, ...]
    reasons: tuple[str, ...]

    def text(self, *, path: bool = True, who: bool = True) -> str:
        """The line; without `path` (the plan is named already) or `who` (so are the actor
        and the commit, in `history`'s columns)."""
        by = f" by {self.actor} in {self.commit[:12]}" if who else ""
        why = "; ".join(self.reasons)
        if self.invalid:
            subject = f"{self.path} is invalid" if path else "invalid"
            return f"{subject}{f' (committed{by})' if who else ''}: {why}"
        fields = ", ".join(self.fields)
        if path:
            subject = f"{self.path} ({fields})" if fields else self.path
        else:
            subject = fields or describe_field(CONTENT)
        needs = f"changed{by}, which needs" if who else "needs"
        return f"{subject}: {needs} {_needs(self.needed)}: {why}"


def _needs(needed: tuple[str, ...]) -> str:
    """'plan.edit on qa for customer-portal and every application in the plan': what
    several refused fields needed, the permission and environment they share said once."""
    words = [text.split(" ") for text in needed]
    shared = 0
    while (
        all(len(split) > shared + 1 for split in words)
        and len({split[shared] for split in words}) == 1
    ):
        shared += 1
    if len(needed) > 1 and shared and words[0][shared - 1] == "for":
        rest = [" ".join(split[shared:]) for split in words]
        return f"{' '.join(words[0][:shared])} {' and '.join(rest)}"
    return " and ".join(needed)


def group_refusals(refusals: Iterable[Refusal]) -> list[RefusalGroup]:
    """`refusals` by file, commit and actor, in the order they come."""
    groups: dict[tuple[str, str, str, str, bool], list[Refusal]] = {}
    for refusal in refusals:
        invalid = refusal.field == INVALID
        key = (refusal.path, refusal.commit, refusal.actor, refusal.how, invalid)
        groups.setdefault(key, []).append(refusal)
    return [
        RefusalGroup(
            path,
            commit,
            actor,
            how,
            invalid,
            tuple(
                dict.fromkeys(
                    describe_field(refusal.field)
                    for refusal in members
                    if refusal.field not in ("", CONTENT, INVALID)
                )
            ),
            tuple(dict.fromkeys(refusal.needed for refusal in members)),
            tuple(dict.fromkeys(reason for refusal in members for reason in refusal.reasons)),
        )
        for (path, commit, actor, how, invalid), members in groups.items()
    ]


class LandingVerdict(Struct, frozen=True):
    """The judgement of one first-parent commit on main and everything it landed."""

    commit: str
    first_parent: str | None
    landed: tuple[str, ...]
    actor: str
    refusals: tuple[Refusal, ...]
    changed: tuple[str, ...]  # paths whose effective content changed
    superseded: tuple[Refusal, ...] = ()  # refused edits that later commits undid
    # Landed commits that hold no identity (malformed, copies): (commit, why).
    unattributed: tuple[tuple[str, str], ...] = ()

    @property
    def authorised(self) -> bool:
        return not self.refusals and not self.unattributed

    def as_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "first_parent": self.first_parent,
            "landed": list(self.landed),
            "actor": self.actor,
            "authorised": self.authorised,
            "refusals": [refusal.as_json() for refusal in self.refusals],
            "changed": list(self.changed),
            "superseded": [refusal.as_json() for refusal in self.superseded],
            "unattributed": [
                {"commit": commit, "reason": reason} for commit, reason in self.unattributed
            ],
        }
