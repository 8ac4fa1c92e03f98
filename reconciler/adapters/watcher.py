"""Adapter, watcher: file events on a local repository's refs; the one user of watchdog.

Called by `watch` when the repository itself is the source of truth (a bare
repository on the Git server, or a clone nobody fetches into). It decides
nothing: an event only says "re-read the branch now". Events are hints, not
facts, because of what Git and inotify really do (measured):

- Git updates a ref by writing `<ref>.lock` and renaming it over the ref, so a
  commit arrives as a *moved* event (`main.lock` -> `main`), never a modify;
- one commit makes well over a hundred events under the git directory, and
  watchdog's default opened/closed events turn the reconciler's own reads of
  the ref into a feedback loop: those event types are not even subscribed
  (`event_filter`), and only the branch's ref, its lock and `packed-refs`
  (with its lock) are listened to;
- `git pack-refs` and `git gc` delete the loose ref although the branch did
  not move;
- the kernel drops events when its queue overflows.

So the caller re-reads the ref on every hint, acts only when the commit
changed, and keeps a slow safety poll.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from reconciler.core.errors import ReconcilerError

# Creation, rename, deletion and in-place writes; never opened/closed/attribute events.
_EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
]


class _RefEvents(FileSystemEventHandler):
    """Calls `notify` for an event on one of the `interesting` paths, ignores the rest."""

    def __init__(self, interesting: frozenset[str], notify: Callable[[str], None]) -> None:
        super().__init__()
        self._interesting = interesting
        self._notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        for raw in (event.src_path, event.dest_path):
            path = os.fsdecode(raw) if raw else ""
            if path in self._interesting:
                self._notify(f"{event.event_type} {os.path.basename(path)}")
                return


class RefWatcher:
    """Watches `refs/heads/<branch>` and `packed-refs` under a repository's common git dir."""

    def __init__(self, common_dir: Path, branch: str, notify: Callable[[str], None]) -> None:
        self.common_dir = common_dir
        self.branch = branch
        self.ref = common_dir / "refs" / "heads" / branch
        self.packed = common_dir / "packed-refs"
        self._locks = (self.ref.with_name(self.ref.name + ".lock"), Path(f"{self.packed}.lock"))
        self._interesting = frozenset(str(path) for path in (self.ref, self.packed, *self._locks))
        self._notify = notify
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        handler = _RefEvents(self._interesting, self._notify)
        observer = Observer()
        heads = self.common_dir / "refs" / "heads"
        try:
            # Branch names may hold slashes (refs/heads/release/2026): recursive.
            observer.schedule(handler, str(heads), recursive=True, event_filter=_EVENT_TYPES)
            observer.schedule(
                handler, str(self.common_dir), recursive=False, event_filter=_EVENT_TYPES
            )
            observer.start()
        except OSError as error:
            raise ReconcilerError(
                f"cannot watch {heads} for changes: {error.strerror or error}",
                hint="raise fs.inotify.max_user_watches / max_user_instances, or use a remote "
                "(--remote) to poll instead",
            ) from None
        self._observer = observer

    def lock_held(self) -> bool:
        """A ref update is under way (Git holds the ref's or packed-refs' lock file)."""
        return any(lock.exists() for lock in self._locks)

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
