"""The suite's clock: SUITE_NOW, and deploy windows built around it.

Git-free, so value specifications (tests/builders.py) and Git-backed stories share it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# The suite's "now": the real time when the suite started, to the minute. Fixture
# commits are dated from it and in-process decisions are handed it, so they agree with
# the CLI run in a subprocess, which reads the real clock (the commands take no clock
# from outside: a settable clock could fool the service's TTLs and windows). A test
# that needs a weekday, a window or a freeze builds it around SUITE_NOW (see
# `window_only_tomorrow`), never around a calendar date, so the suite passes on any day.
SUITE_NOW = datetime.now(UTC).replace(second=0, microsecond=0)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def window_only_tomorrow(now: datetime) -> tuple[str, datetime]:
    """A 09:00-16:00 UTC window on the weekday after `now` alone, and when it opens."""
    tomorrow = (now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    window = f"[{{days: [{WEEKDAYS[tomorrow.weekday()]}], from: '09:00', to: '16:00'}}]"
    return window, tomorrow
