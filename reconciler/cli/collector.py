"""CLI: how often Python's cyclic collector runs in the `reconciler` process.

A command allocates its values in bursts that hold no cycles (the imports' classes,
the 1,000 decisions `plan` reads back from the state): Python's collector, which
runs after every 700 net allocations, scanned them again and again for about a
tenth of `status`'s time. So a command collects far less often, as mypy does; what
a cycle holds is freed a little later, or with the process.

A service (`watch`, `serve`) lives for months, and each pass leaves a few cycles
behind (a repository and the tree checks that read through it, a page's closures).
Collected that rarely, they reached the oldest generation and waited there for a
full collection: the watcher grew 9 KiB a commit (`benchmarks.watch`). A service
collects as Python does.
"""

from __future__ import annotations

import gc
from typing import Final

COMMAND: Final = (200_000, 30, 30)
SERVICE: Final = (700, 10, 10)  # CPython's own thresholds


def collect_as_a_command() -> None:
    gc.set_threshold(*COMMAND)


def collect_as_a_service() -> None:
    gc.set_threshold(*SERVICE)
