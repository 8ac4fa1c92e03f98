"""When the watcher's clock asks for a pass (`watch._Schedule`): specifications with values,
monotonic seconds given (a failure reads the monotonic clock), no process and no waiting."""

from __future__ import annotations

import time

from reconciler.app.watch import _Schedule
from reconciler.app.watch_values import WatchSettings

SETTINGS = WatchSettings(interval=15.0, resync=300.0, backoff_first=1.0, backoff_max=4.0)


def test_nothing_is_asked_before_the_first_poll_and_the_poll_then_comes_every_interval() -> None:
    schedule = _Schedule.starting(SETTINGS, 1000.0)
    assert not schedule.clocked(1014.9).reasons
    assert not schedule.poll_due(1014.9)
    assert schedule.poll_due(1015.0)
    assert not schedule.poll_due(1029.9)
    assert schedule.poll_due(1030.0)


def test_a_resync_is_asked_for_and_forced_once_its_time_comes() -> None:
    schedule = _Schedule.starting(SETTINGS, 1000.0)
    asked = schedule.clocked(1300.0)
    assert asked.reasons == frozenset({"resync"})
    assert asked.force


def test_a_failed_pass_is_retried_after_a_backoff_that_doubles_up_to_its_cap() -> None:
    schedule = _Schedule.starting(SETTINGS, time.monotonic())
    waits = []
    for _ in range(4):
        schedule.failed()
        assert schedule.retry_at is not None
        waits.append(schedule.backoff)
    assert waits == [2.0, 4.0, 4.0, 4.0]  # the wait after each failure: 1, 2, 4, 4


def test_a_retry_due_is_asked_for_once_and_a_pass_that_works_starts_the_backoff_anew() -> None:
    # A failure is timed from the monotonic clock itself, as the loop's requests are.
    schedule = _Schedule.starting(SETTINGS, time.monotonic())
    schedule.failed()
    schedule.failed()
    assert schedule.retry_at is not None
    due = schedule.retry_at
    assert schedule.clocked(due).reasons == frozenset({"retry"})
    assert not schedule.clocked(due).reasons  # asked for once
    schedule.succeeded(None)
    assert schedule.backoff == SETTINGS.backoff_first
    assert schedule.retry_at is None


def test_a_window_opening_wakes_the_loop_for_one_forced_pass() -> None:
    schedule = _Schedule.starting(SETTINGS, 1000.0)
    schedule.succeeded(1100.0)
    assert schedule.wake_at == 1100.0
    assert not schedule.clocked(1099.9).reasons
    asked = schedule.clocked(1100.0)
    assert asked.reasons == frozenset({"window"})
    assert asked.force
    assert not schedule.clocked(1100.1).reasons
