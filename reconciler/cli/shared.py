"""CLI: glue every history-reading command shares, a session opened with the common options."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from reconciler.clock import utc_now
from reconciler.printable import printable
from reconciler.session import Session, open_session
from reconciler.statestore import service_branches
from reconciler.worktree import find_root


@contextmanager
def session_for(repo: Path | None, branch: str | None, state_dir: Path | None) -> Iterator[Session]:
    with open_session(
        find_root(repo or Path.cwd()), branch=branch, state_dir=state_dir, now=utc_now()
    ) as session:
        yield session


@contextmanager
def reading_session(
    repo: Path | None, branch: str | None, remote: str | None, state_dir: Path | None
) -> Iterator[Session]:
    """A session for a command that only reports (`plan`, `status`, `history`, `verify`,
    `access`): it may read a remote's branch, and says when the service that keeps its
    state here follows another branch than the one it reads."""
    with open_session(
        find_root(repo or Path.cwd()),
        branch=branch,
        state_dir=state_dir,
        now=utc_now(),
        remote=remote,
        tracking=True,
    ) as session:
        note = other_branch_note(session)
        if note is not None:
            click.echo(note, err=True)
        yield session


def other_branch_note(session: Session) -> str | None:
    """Where a reconciler service (apply, watch) keeps its state beside this one but
    follows another branch (on its clone, `origin/main` while local main stands still):
    which branch this command reads, and how to read the service's."""
    followed = service_branches(session.store.directory)
    if not followed or session.branch in followed:
        return None
    others = ", ".join(printable(name) for name in followed)
    return (
        f"note: this reads {printable(session.branch)} ({session.tip()[:12]}); the reconciler "
        f"service with this state directory follows {others}: pass --branch "
        f"{printable(followed[0])} to read what it does"
    )
