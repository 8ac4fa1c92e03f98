"""App: the audit trail, who created, edited, approved, triggered, cancelled and ran what.

Called by `reconciler history` (and the demo). Everything comes from what the
authorisation walk read out of Git (edits and their actors, landings,
trailers, the reconciler's records), so the trail agrees with `git log` and
its trailers; each entry names its commit so anyone can check it there.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Final, Literal

from reconciler.adapters.statestore import StateStore
from reconciler.app.kept import TRAIL, state_key
from reconciler.app.trail import Entry, decode_trail, encode_trail
from reconciler.core.errors import unknown_name
from reconciler.core.identity import UNKNOWN_ACTOR
from reconciler.core.layout import place
from reconciler.core.model import Policy

# One trail made from the rows at a time in a process: after each pass every open page of
# `serve` asks for its entries at once (`live.js`), each in a thread of its own, and each
# made it (0.23 s at 10,000 commits, the threads taking turns on the GIL) where the first
# keeps it for the others to read (0.017 s).
_MAKING: Final = threading.Lock()


def audit_trail(store: StateStore) -> tuple[Entry, ...]:
    """Every entry of the trail, in order: the one the state keeps when it was made from the
    state as it is by this code (`app.kept`), else made from the rows (`trail_of`) and
    kept. The rows are a history's worth (28,850 at 10,000 commits); the kept trail is one
    text."""
    key = state_key(store)
    kept = _kept(store, key)
    if kept is not None:
        return kept
    with _MAKING:
        kept = _kept(store, key)  # made meanwhile by another reader of this process
        if kept is not None:
            return kept
        # The builders load with the rules they word entries with: the kept trail needs none.
        from reconciler.app.history_entries import trail_of  # noqa: PLC0415

        entries = trail_of(store)
        store.keep_answer(TRAIL, encode_trail(key, entries))
        return entries


def _kept(store: StateStore, key: str) -> tuple[Entry, ...] | None:
    """The trail the state keeps under `key`, if it does."""
    text = store.kept_answer(TRAIL)
    return decode_trail(text, key) if text is not None else None


def select(
    entries: Sequence[Entry],
    policy: Callable[[], Policy],
    effective: Callable[[], Iterable[str]],
    *,
    plan: str | None = None,
    environment: str | None = None,
    user: str | None = None,
    since: datetime | None = None,
) -> tuple[Entry, ...]:
    """The entries that pass every filter given.

    A plan, environment or user that neither the effective policy and state
    (`effective`: its paths) nor the trail knows is a typo, refused rather than
    answered with an empty trail. The trail counts: a removed user or a
    deleted plan keeps its history. Both are asked for only when a name is given (a plan
    or environment only when the trail does not hold it): without one, `history` needs no
    policy, nor the walker that builds it.
    """
    if plan is not None:
        _known_plan(plan, entries, effective)
    if environment is not None:
        _known_environment(environment, entries, policy)
    if user is not None:
        _known_user(user, entries, policy())
    return tuple(entry for entry in entries if _passes(entry, plan, environment, user, since))


def _passes(
    entry: Entry,
    plan: str | None,
    environment: str | None,
    user: str | None,
    since: datetime | None,
) -> bool:
    """Whether `entry` passes every filter given (None: no filter)."""
    return (
        (plan is None or entry.plan == plan)
        and (environment is None or entry.environment == environment)
        and (user is None or entry.actor == user)
        and (since is None or entry.when >= since)
    )


def _known_plan(
    plan: str, entries: Sequence[Entry], effective: Callable[[], Iterable[str]]
) -> None:
    # The trail first: each plan page filters by its plan, which its own entries name, and
    # reading the policy at the tip was a third of its time (34 ms of 78 at 10,000 commits).
    if any(entry.plan == plan for entry in entries):
        return
    plans = sorted(path for path in effective() if place(path).kind == "plan")
    plans += sorted({entry.plan for entry in entries if entry.plan})
    if plan not in plans:
        raise unknown_name("plan", plan, plans, "plans on the branch or in the trail")


def _known_environment(
    environment: str, entries: Sequence[Entry], policy: Callable[[], Policy]
) -> None:
    if any(entry.environment == environment for entry in entries):  # as `_known_plan`
        return
    environments = [env.name for env in policy().environments_in_order()]
    environments += sorted({entry.environment for entry in entries if entry.environment})
    if environment not in environments:
        raise unknown_name(
            "environment",
            environment,
            environments,
            "environments in environments/ or the trail",
        )


def _known_user(user: str, entries: Sequence[Entry], policy: Policy) -> None:
    actors = {entry.actor for entry in entries if entry.actor and entry.actor != UNKNOWN_ACTOR}
    users = sorted({*policy.users, *policy.service_accounts, *policy.hosts, *actors})
    if user not in users:
        raise unknown_name("user", user, users, "users in teams.yaml or the trail")


def ordered(entries: Sequence[Entry], by: Literal["time", "plan"]) -> tuple[Entry, ...]:
    """The trail (`entries`, in landing order) by time or by plan.

    By time: by date, as `git log --date-order` shows commits, so a landing's own
    entries keep the order they were made in whatever the committers' clocks said
    (a pull request's commits, then its merge, then its runs). By plan: each plan's
    entries together in landing order, the plans in the order they first appear.
    """
    if by == "plan":
        first: dict[str | None, int] = {}
        for index, entry in enumerate(entries):
            first.setdefault(entry.plan, index)
        return tuple(sorted(entries, key=lambda entry: first[entry.plan]))
    if _each_landing_in_time_order(entries):
        # Merging runs that are each in order, ties to the earlier run, is a stable sort:
        # Timsort's, in C, over a trail nearly in order already (a tenth of the merge's cost).
        return tuple(sorted(entries, key=_when))
    landings = [list(group) for _, group in itertools.groupby(entries, lambda entry: entry.seq)]
    heads = [(landing[0].when, index, 0) for index, landing in enumerate(landings)]
    heapq.heapify(heads)
    merged: list[Entry] = []
    while heads:
        _, index, position = heapq.heappop(heads)
        merged.append(landings[index][position])
        if position + 1 < len(landings[index]):
            following = landings[index][position + 1]
            heapq.heappush(heads, (following.when, index, position + 1))
    return tuple(merged)


def _each_landing_in_time_order(entries: Sequence[Entry]) -> bool:
    """Whether the entries of each landing (next to each other, one `seq`) are in time
    order: one pass, no landing's list made (11,340 entries in half a millisecond)."""
    for earlier, later in itertools.pairwise(entries):
        if earlier.seq == later.seq and later.when < earlier.when:
            return False
    return True


def _when(entry: Entry) -> datetime:
    return entry.when
