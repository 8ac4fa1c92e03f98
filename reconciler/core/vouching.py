"""Stage 3, authorise: the vouching of an edit, what a landed commit vouches for at one
path, value by value, from what its parents vouch for and hold (the three rules of
`judge`'s docstring), and whose edit a change of a superseded value is.

It asks the judge two things: who put each unvouched value a parent holds, and
whether an edit of the commit's own is refused (`judge_landing` judges it by `rules`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reconciler.core.fields import APP_PREFIX, ORDER, TEXT, FieldMap, changed_keys, value
from reconciler.core.journal import Blame
from reconciler.core.rules import WHOLE_PLAN
from reconciler.core.verdicts import Refusal


@dataclass(slots=True)
class Vouched:
    """What a commit vouches for at one path, who put each value it does not vouch for,
    and the values that are its own edits, in the order judged."""

    own: dict[str, str]
    blame: dict[str, Refusal | None] = field(default_factory=dict)
    own_edits: list[str] = field(default_factory=list)


def vouch_values(
    actual: FieldMap,
    parent_vouched: Sequence[FieldMap],
    parent_actual: Sequence[FieldMap],
    inherited: Callable[[int], Blame],
    own_edit: Callable[[str], Refusal | None],
) -> Vouched:
    """What a commit holding `actual` vouches for, given what its parents vouch for and
    hold; `inherited(i)`: who put the unvouched values parent `i` holds; `own_edit(key)`:
    the refusal of the commit's own edit of `key` (None: authorised)."""
    # A value equal to the first parent's vouched one is vouched as it is:
    # only the others need a look.
    vouched = Vouched(own=dict(actual))
    for key in _text_last(changed_keys(parent_vouched[0], actual)):
        current = actual.get(key)
        if _vouched_by_a_parent(key, current, parent_vouched):
            put(vouched.own, key, current)
            continue
        same = _held_by(key, current, parent_actual)
        if same is not None:
            put(vouched.own, key, parent_vouched[same].get(key))
            culprit = inherited(same).get(key)
            if culprit is not None:
                vouched.blame[key] = culprit
            continue
        vouched.own_edits.append(key)
        refusal = _edit_refusal(vouched, key, own_edit)
        if refusal is None:
            put(vouched.own, key, current)
        else:
            put(vouched.own, key, parent_vouched[0].get(key))
            vouched.blame[key] = refusal
    return vouched


def _vouched_by_a_parent(key: str, current: str | None, parents: Sequence[FieldMap]) -> bool:
    """Rule 1: the value is one a parent vouches for (or an order that keeps theirs)."""
    return any(candidate.get(key) == current for candidate in parents) or (
        key == ORDER and _order_kept(current, parents)
    )


def _held_by(key: str, current: str | None, parent_actual: Sequence[FieldMap]) -> int | None:
    """Rule 2: the first parent holding the value as it is (None: the commit's own edit)."""
    return next(
        (i for i, candidate in enumerate(parent_actual) if candidate.get(key) == current),
        None,
    )


def _edit_refusal(
    vouched: Vouched, key: str, own_edit: Callable[[str], Refusal | None]
) -> Refusal | None:
    """Rule 3: the refusal of the commit's own edit of `key` (None: authorised)."""
    if key == TEXT and len(vouched.own_edits) > 1:
        # teams.yaml's text changes with every edit of it: it follows
        # the commit's other edits there, and a refusal is told once.
        blame = vouched.blame
        return next((blame[edit] for edit in vouched.own_edits if edit in blame), None)
    return own_edit(key)


def edit_author(commit: str, landing: str, key: str, base: FieldMap, vouched: FieldMap) -> str:
    """Whose edit it is when `commit` changes `key` from a parent's content `base`, where
    the walk vouches for `vouched`.

    The commit's own while the value it changed is the vouched one. Otherwise that
    value was superseded (or never authorised) by the time the change lands, and
    the signature would let a change made against it (a long-lived branch, an old
    commit merged again) undo a later authorised one: the change is then the edit
    of whoever brought it in, the landing's first-parent commit (`landing`, the
    merge; itself when it is that commit). Like gittuf's reference authorizations,
    which bind an approval to the state it was made from, not to the change alone.

    A plan's entry means what the plan's whole-plan values (source, target, rollback)
    make it mean: an entry added or changed where those were other than the vouched
    ones (a branch made before the plan became a rollback, or moved to production) is
    superseded too, and the edit of whoever brought it into the plan as it is now.
    """
    if base.get(key) != vouched.get(key):
        return landing
    # (Where no target is vouched, the plan's creation was refused, and so is the entry.)
    if (
        key.startswith(APP_PREFIX)
        and "target" in vouched
        and any(base.get(whole) != vouched.get(whole) for whole in WHOLE_PLAN)
    ):
        return landing
    return commit


def stale_reasons(commit: str, author: str) -> tuple[str, ...]:
    """Why `commit`'s change is `author`'s edit, when it is not its own."""
    if author == commit:
        return ()
    return (
        f"{commit[:12]} changed a value that is no longer the effective one, "
        f"so the change counts as an edit by whoever landed it ({author[:12]})",
    )


def put(target: dict[str, str], key: str, text: str | None) -> None:
    """Set `key` to `text` in `target`; None: `key` is gone."""
    if text is None:
        target.pop(key, None)
    else:
        target[key] = text


def _text_last(keys: list[str]) -> list[str]:
    """`keys` with `TEXT` (if there) moved last, to be judged after the others."""
    if TEXT not in keys:
        return keys
    return [key for key in keys if key != TEXT] + [TEXT]


def _order_kept(order: str | None, parents: Sequence[FieldMap]) -> bool:
    """An order that only adds or drops entries keeps every pair each parent ordered.

    So two leads appending to one plan merge cleanly; a real reorder is an edit.
    """
    if order is None:
        return False
    names: list[str] = json.loads(order)
    for parent in parents:
        before = value(parent, ORDER) or []
        common = set(names) & set(before)
        if [name for name in names if name in common] != [
            name for name in before if name in common
        ]:
            return False
    return True
