"""Core, shared: the one family of expected errors.

Every stage raises a `ReconcilerError` (or a subclass) for anything a user can
cause or fix: broken input, a refused action, a rewritten history, a missing
key. Each carries the file, line and column it concerns and a hint that says
how to fix it. The CLI (`reconciler.cli.errors`) turns them into messages and
exit codes in one place; anything else that escapes is a bug in the
reconciler and is reported as such, never as a bare traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class ReconcilerError(Exception):
    """An expected failure, explained: what went wrong, where, and how to fix it."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.hint = hint

    def location(self) -> str:
        """`file:line:col`, as far as it is known ('' when nothing is)."""
        parts = [part for part in (self.file, self.line, self.column) if part is not None]
        return ":".join(str(part) for part in parts)

    def __str__(self) -> str:
        where = self.location()
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} ({self.hint})" if self.hint else text


class UsageError(ReconcilerError):
    """The command line itself is wrong (an unknown plan, a bad option value)."""


_LISTED = 10


def unknown_name(kind: str, name: str, known: Iterable[str], listed_as: str) -> UsageError:
    """A `kind` the user named that is not among `known`: the closest match, then the list.

    The list is cut short: thousands of plans would bury the suggestion.
    """
    import difflib  # noqa: PLC0415 - only for a typo (start-up time)

    names = list(dict.fromkeys(known))
    shown = ", ".join(names[:_LISTED]) or "none"
    if len(names) > _LISTED:
        shown += f", ... ({len(names)} in all)"
    hint = f"{listed_as}: {shown}"
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        hint = f"did you mean '{close[0]}'? ({hint})"
    return UsageError(f"unknown {kind} '{name}'", hint=hint)


class ConfigError(ReconcilerError):
    """A configuration file cannot be read or fails validation."""


class GitError(ReconcilerError):
    """Git could not do what we asked (no repository, unknown revision, failed push)."""


class NotARepositoryError(GitError, UsageError):
    """The folder named (by --repo, or the current directory) holds no Git repository.

    A usage error, exit 2, as for a --repo that does not exist: the command
    line names the wrong folder.
    """


class HistoryRewrittenError(ReconcilerError):
    """Main no longer descends from the last verified commit."""


class StateNotWritable(ReconcilerError):
    """The state directory takes no more writes (read-only, full, failing).

    The pass stops; the state is kept as it is, the outbox of finish records
    still to publish above all, for a pass that can write it again.
    """


class RefusedError(ReconcilerError):
    """The acting user lacks the permission for what they asked to do."""


class TimedOut(ReconcilerError):
    """A command did not finish in the time it was given (and was killed)."""


class CannotStart(ReconcilerError):
    """A program could not be started at all (missing, not executable)."""


class TemporaryError(ReconcilerError):
    """A failure that may pass if tried again later (a lost push race, a busy driver)."""


class StateMoved(TemporaryError):
    """Another reconciler process walked the state on while this one read it: what it
    read last would not be the state of the tip it walked to. Read again from the top."""


class PermanentError(ReconcilerError):
    """A failure that retrying will not change."""
