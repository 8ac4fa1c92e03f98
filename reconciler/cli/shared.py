"""Glue every history-reading command shares: open a session with the common options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.clock import utc_now
from reconciler.session import Session, open_session
from reconciler.worktree import find_root


@contextmanager
def session_for(repo: Path | None, branch: str | None, state_dir: Path | None) -> Iterator[Session]:
    with open_session(
        find_root(repo or Path.cwd()), branch=branch, state_dir=state_dir, now=utc_now()
    ) as session:
        yield session
