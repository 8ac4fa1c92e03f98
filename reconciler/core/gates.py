"""Stage 4, decide: time gates (windows, freezes, the age of approvals); pure, given the clock.

Called by `decide`. Outside a window (or inside a freeze) an executable plan
waits; `closed` says until when, so `plan` can print it. `lapse` says ahead of
time when approvals or a trigger will be older than `approval_ttl` by then. Both tell
a `Horizon` the next moment their answer could change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from msgspec import Struct

from reconciler.core.model import ApprovalRule, Gates, Plan, Window

if TYPE_CHECKING:  # zoneinfo loads with the first window read (`_zone`)
    from zoneinfo import ZoneInfo


@dataclass(slots=True)
class Horizon:
    """Until when decisions made at `now` hold with the clock alone, their other inputs
    unchanged: each rule that reads the clock says the next moment its answer could change
    (`at`), or that it changes with every instant (`continuous`), so the moment comes from
    the rules themselves, never from a second copy of them."""

    now: datetime
    until: datetime | None = None  # None: no rule's answer changes with time
    continuous: bool = False

    def at(self, moment: datetime | None) -> None:
        """A rule's answer may change at `moment` (None, or one not after `now`: never)."""
        if moment is not None and moment > self.now and (self.until is None or moment < self.until):
            self.until = moment

    def unbounded(self) -> None:
        """A rule's answer changes with every instant: the decisions hold for no time."""
        self.continuous = True

    def joined(self, other: Horizon) -> Horizon:
        """Until when these decisions and `other`'s, made later, hold together: the
        sooner of their moments, from this one's `now`."""
        joined = Horizon(self.now, self.until, self.continuous or other.continuous)
        joined.at(other.until)
        return joined

    def holds_at(self, moment: datetime) -> bool:
        """Whether decisions made at `now` are still the decisions at `moment`, as far as
        the clock goes (not before `now`: a clock set back is no later moment)."""
        if self.continuous or moment < self.now:
            return False
        return self.until is None or moment < self.until


def _zone(name: str) -> ZoneInfo:
    # Loaded here, not with the module: 2.4 ms of every command's start, and most
    # environments have no window.
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    return ZoneInfo(name)


def _window_open(window: Window, now: datetime) -> bool:
    local = now.astimezone(_zone(window.timezone))
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    moment = local.time().replace(tzinfo=None)
    if window.start < window.end:
        return today in window.days and window.start <= moment < window.end
    # Runs past midnight: opened today, or opened yesterday and not yet closed.
    return (today in window.days and moment >= window.start) or (
        yesterday in window.days and moment < window.end
    )


def _next_window_start(window: Window, now: datetime) -> datetime:
    zone = _zone(window.timezone)
    local = now.astimezone(zone)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in window.days:
            continue
        start = datetime.combine(day, window.start, tzinfo=zone)
        if start > now:
            return start
    raise AssertionError("a window with at least one day opens within a week")


def _freeze_at(gates: Gates, now: datetime) -> datetime | None:
    """When the freeze covering `now` ends, or None."""
    ends = [freeze.end for freeze in gates.freezes if freeze.start <= now < freeze.end]
    return max(ends) if ends else None


def is_open(gates: Gates, now: datetime) -> bool:
    if _freeze_at(gates, now) is not None:
        return False
    return not gates.windows or any(_window_open(window, now) for window in gates.windows)


class Closed(Struct, frozen=True):
    """Deploys may not start now: the freeze that stops them (None: outside every window),
    and when they may start.

    `opens` is None when that moment lies past 9999-12-31, the last day a
    datetime holds: a freeze "until 9999-12-31" with deploy windows. The plan
    then simply waits for as long as the freeze stands, which is what its
    author asked for; ending the freeze earlier is how to deploy again.
    """

    freeze: str | None
    opens: datetime | None


def closed(gates: Gates, now: datetime, horizon: Horizon | None = None) -> Closed | None:
    """None when deploys may start now; otherwise why not, and until when."""
    if horizon is not None:
        horizon.at(_next_change(gates, now))
    if is_open(gates, now):
        return None
    return Closed(blocking_freeze(gates, now), _next_opening(gates, now))


def _next_opening(gates: Gates, now: datetime) -> datetime | None:
    moment = now
    try:
        for _ in range(64):  # alternating freezes and windows settle quickly
            if is_open(gates, moment):
                return moment
            freeze_end = _freeze_at(gates, moment)
            if freeze_end is not None:
                moment = freeze_end
                continue
            moment = min(_next_window_start(window, moment) for window in gates.windows)
    except OverflowError:
        return None  # the next window would open after 9999-12-31
    return moment


def _next_change(gates: Gates, now: datetime) -> datetime | None:
    """The first moment after `now` at which `closed` could answer otherwise (whether
    deploys may start, the freeze that stops them, when they may): a freeze starting or
    ending, a window opening or closing, or a window's zone changing its UTC offset (the
    wall clock a window is read on jumps). None: none comes before the year 9999 ends."""
    moments = [
        moment for freeze in gates.freezes for moment in (freeze.start, freeze.end) if moment > now
    ]
    for window in gates.windows:
        try:
            moments.extend(_window_edges(window, now))
        except OverflowError:
            continue  # past 9999-12-31: no moment a datetime holds
    return min(moments, default=None)


def _window_edges(window: Window, now: datetime) -> list[datetime]:
    """The next opening and closing of `window` after `now`, and the first change of its
    zone's UTC offset before them (between two such changes, wall time runs with UTC)."""
    zone = _zone(window.timezone)
    local = now.astimezone(zone)
    overnight = not window.start < window.end  # `_window_open`'s reading
    edges: list[datetime] = []
    for offset in range(-1, 9):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in window.days:
            continue
        ends_on = day + timedelta(days=1) if overnight else day
        for moment in (
            datetime.combine(day, window.start, tzinfo=zone),
            datetime.combine(ends_on, window.end, tzinfo=zone),
        ):
            if moment > now:
                edges.append(moment)
    if not edges:
        return []
    first = min(edges)
    shift = _offset_change(zone, now, first)
    return [first] if shift is None else [first, shift]


def _offset_change(zone: ZoneInfo, start: datetime, end: datetime) -> datetime | None:
    """The first moment after `start`, up to `end`, at which `zone`'s UTC offset differs
    from its offset at `start` (to the microsecond), or None. Looked for a day at a time,
    then narrowed: no zone changes its offset twice within a day."""
    # In UTC: a moment in the zone itself keeps the offset it was made with, even one the
    # zone skips.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    before = start.astimezone(zone).utcoffset()
    low = start
    while low < end:
        high = min(low + timedelta(days=1), end)
        if high.astimezone(zone).utcoffset() != before:
            while high - low > timedelta(microseconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() != before:
                    high = middle
                else:
                    low = middle
            return high
        low = high
    return None


def blocking_freeze(gates: Gates, now: datetime) -> str | None:
    for freeze in gates.freezes:
        if freeze.start <= now < freeze.end:
            return freeze.name
    return None


class Lapse(Struct, frozen=True):
    """Sign-offs too old (`approval_ttl`) by the time deploys may next start (`opens`):
    those given (`expiring`: what, and when it expires), or any given now (`now_lapses`,
    when still asked for); one given from `fresh_from` on still counts at `opens`."""

    opens: datetime
    ttl: timedelta
    expiring: tuple[tuple[str, datetime], ...]
    now_lapses: bool
    fresh_from: datetime


def lapse(
    gates: Gates,
    now: datetime,
    given: Sequence[tuple[str, datetime]],
    *,
    asked: bool,
    horizon: Horizon | None = None,
) -> Lapse | None:
    """Whether sign-offs will have lapsed when the next window opens, or None.

    `given`: each sign-off that counts now, as (what, the moment its age runs from,
    `age`'s start); `asked`: whether the plan still waits for one. A sign-off counts
    at `opens` while its age is at most the TTL (`signoffs._fresh`). None when there
    is no TTL, deploys may start now, or nothing opens before the year 9999 ends.
    """
    ttl = gates.approval_ttl
    if ttl is None:
        return None
    shut = closed(gates, now, horizon)
    if shut is None or shut.opens is None:
        return None
    opens = shut.opens
    # Compared as spans, not as moments: a TTL the schema allows (some 10,950 years) added
    # to today passes the last day a datetime holds. Only an expiry before `opens` is made.
    ends = sorted(
        ((start + ttl, what) for what, start in given if opens - start > ttl),
        key=lambda end: end[0],
    )
    expiring = tuple((what, end) for end, what in ends)
    # When one given now would lapse too, the warning names the moment from which one
    # would not (`fresh_from`), never now + TTL: a moment that moves with the clock would
    # make every decision hold for no time, and be decided again on every call.
    now_lapses = asked and opens - now > ttl
    # Reckoned in UTC: `opens` is on the window's wall clock, and a TTL is time that
    # passes, whatever that clock does in between (12 h before a Sunday 09:00 in Lisbon,
    # the night its clocks go forward, is 20:00 UTC on Saturday, not 21:00).
    fresh_from = shifted(opens.astimezone(UTC), -ttl)
    if horizon is not None and asked:
        horizon.at(fresh_from)  # from then on, one given now would still count
    if fresh_from is None or (not expiring and not now_lapses):
        return None
    return Lapse(opens, ttl, expiring, now_lapses, fresh_from.astimezone(opens.tzinfo))


def age(committed_at: datetime, first_seen: datetime | None, now: datetime) -> timedelta:
    """Counted from the earlier of the commit date and when we first saw it on main.

    A commit dated in the future gains nothing: its age runs from first sight.
    """
    return now - aged_from(committed_at, first_seen)


def shifted(moment: datetime, span: timedelta) -> datetime | None:
    """`moment + span`, or None past the days a datetime holds (a TTL the schema allows
    reaches some 10,950 years): a moment no clock reaches, so none that changes anything."""
    try:
        return moment + span
    except OverflowError:
        return None


def aged_from(committed_at: datetime, first_seen: datetime | None) -> datetime:
    """The moment a sign-off's age runs from (`age`)."""
    return committed_at if first_seen is None else min(committed_at, first_seen)


def approval_rules(gates: Gates, plan: Plan) -> tuple[ApprovalRule, ...]:
    """The approvals `plan` needs: a rollback plan's own (`rollback_approvals`, none unless
    the environment names some), any other plan's `approvals`."""
    return gates.rollback_approvals if plan.rollback else gates.approvals


def time_gated(gates: Gates, plan: Plan) -> bool:
    """Whether windows and freezes hold `plan` back: always, but for a rollback plan where
    the environment breaks the glass for rollbacks (`rollback_ignores_windows`)."""
    return not (plan.rollback and gates.rollback_ignores_windows)
