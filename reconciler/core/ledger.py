"""Stage 3, authorise: the ledger of one landing's changes to the effective state, and to
where the branch's content parts from it, kept in the order made (to replay them).

The judge reads through it: a path's fields as the landing has left them so far, over
the state before the landing, which stays as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.fields import FieldMap
from reconciler.core.journal import Blame
from reconciler.core.verdicts import Refusal


@dataclass(slots=True)
class Ledger:
    """The effective state and where content differs from it, as a landing changes them."""

    before: Mapping[str, FieldMap]  # the effective state before the landing
    dirty_before: Mapping[str, Blame]
    # The changes, in order, and each path's last one (what the landing reads).
    effective_changes: list[tuple[str, FieldMap]] = field(default_factory=list)
    dirty_changes: list[tuple[str, Blame | None]] = field(default_factory=list)
    effective: dict[str, FieldMap] = field(default_factory=dict)
    dirty: dict[str, Blame | None] = field(default_factory=dict)

    def fields(self, path: str) -> FieldMap:
        """`path`'s effective fields as the landing has left them so far."""
        if path in self.effective:
            return self.effective[path]
        return self.before.get(path, {})

    def whole(self) -> dict[str, FieldMap]:
        """The effective state as the landing leaves it, in the order the walker keeps it."""
        whole = dict(self.before)
        apply_changes(whole, self.effective_changes)
        return whole

    def set_fields(self, path: str, fields: FieldMap) -> None:
        self.effective[path] = fields
        self.effective_changes.append((path, fields))

    def blame(self, path: str) -> Blame | None:
        """Who put each field where `path`'s content parts from the effective state."""
        if path in self.dirty:
            return self.dirty[path]
        return self.dirty_before.get(path)

    def mark_dirty(self, path: str, actual: FieldMap, blame: Mapping[str, Refusal]) -> None:
        """Note where `actual` parts from `path`'s effective fields, and who put it there."""
        effective = self.fields(path)
        differs = None
        if dict(actual) != effective:
            differs = {
                key: blame.get(key)
                for key in sorted(set(actual) | set(effective))
                if actual.get(key) != effective.get(key)
            }
        self.dirty[path] = differs
        self.dirty_changes.append((path, differs))


def apply_changes(
    target: dict[str, Any], changes: Iterable[tuple[str, Mapping[str, Any] | None]]
) -> None:
    """Replay a judgement's changes (`LandingJudgement.effective` or `.dirty`) on `target`,
    as the judge made them: a path without a value is gone."""
    for path, fields in changes:
        if fields:
            target[path] = dict(fields)
        else:
            target.pop(path, None)
