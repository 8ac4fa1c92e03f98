"""Adapter, clock: the wall clock, an edge like Git; the core is always handed the time.

Called by the CLI commands alone, which pass `utc_now` (or the time it
returns) down; the core never reads the wall clock itself (timeouts use
`time.monotonic`), so tests hand it a fixed one.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
