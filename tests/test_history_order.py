"""`history`'s order by time: a landing's own entries keep their order, and the landings
merge by date as `git log --date-order` merges commits. The sort that answers when every
landing is in time order must agree with the merge that answers for any trail."""

from __future__ import annotations

import heapq
import itertools
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from reconciler.app.history import ordered
from reconciler.app.trail import Entry

START = datetime(2026, 1, 1, tzinfo=UTC)


def entry(seq: int, minutes: int, name: str, offset_hours: int = 0) -> Entry:
    zone = timezone(timedelta(hours=offset_hours))
    when = (START + timedelta(minutes=minutes)).astimezone(zone)
    return Entry(seq, when, f"{seq:040x}", None, None, name, "alice", True, name)


def merged_by_date(entries: list[Entry]) -> tuple[Entry, ...]:
    """The merge itself: each landing's next entry, the earliest first, ties to the
    earlier landing."""
    landings = [list(group) for _, group in itertools.groupby(entries, lambda item: item.seq)]
    heads = [(landing[0].when, index, 0) for index, landing in enumerate(landings)]
    heapq.heapify(heads)
    merged = []
    while heads:
        _, index, position = heapq.heappop(heads)
        merged.append(landings[index][position])
        if position + 1 < len(landings[index]):
            heapq.heappush(heads, (landings[index][position + 1].when, index, position + 1))
    return tuple(merged)


def test_a_landing_keeps_its_own_order_whatever_its_clocks_said() -> None:
    # A pull request's commit dated after its merge still comes before it.
    trail = [entry(1, 10, "edit"), entry(1, 5, "merge"), entry(2, 7, "approve")]
    assert [item.action for item in ordered(trail, "time")] == ["approve", "edit", "merge"]


def test_landings_in_order_merge_by_date_ties_to_the_earlier_landing() -> None:
    trail = [entry(1, 0, "a"), entry(1, 9, "b"), entry(2, 5, "c"), entry(3, 9, "d")]
    assert [item.action for item in ordered(trail, "time")] == ["a", "c", "b", "d"]


def test_the_same_moment_in_two_zones_is_one_moment() -> None:
    trail = [entry(1, 60, "later", offset_hours=-5), entry(2, 30, "earlier", offset_hours=9)]
    assert [item.action for item in ordered(trail, "time")] == ["earlier", "later"]


landing_minutes = st.lists(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(-12, 12)),
        min_size=1,
        max_size=4,
    ),
    max_size=30,
)


@given(landing_minutes, st.booleans())
def test_any_trail_comes_out_as_the_merge_puts_it(
    landings: list[list[tuple[int, int]]], each_in_order: bool
) -> None:
    trail = [
        entry(seq, minutes, f"{seq}.{position}", offset)
        for seq, moments in enumerate(landings, start=1)
        for position, (minutes, offset) in enumerate(sorted(moments) if each_in_order else moments)
    ]
    assert ordered(trail, "time") == merged_by_date(trail)
