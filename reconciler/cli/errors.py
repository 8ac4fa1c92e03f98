"""CLI: exit codes and error messages, in one place (docs/design.md, "Exit codes").

A command returns its `Outcome`; `EXIT_CODES` maps it to the process's exit
code, here and nowhere else (`exit_with`). Every command body runs inside
`reported()` (`options.WithExamples.invoke` puts it there). A
`ReconcilerError` becomes a message on stderr naming the file, line and fix,
with the outcome of its kind; anything else is a bug in the reconciler: one
line saying so, and the traceback only when RECONCILER_DEBUG is set. Under
`--format json` the error is also a JSON object on stdout, where a JSON
consumer reads. Usage errors that click itself detects keep click's exit
code 2, which `EXIT_CODES[Outcome.USAGE]` is.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from typing import Any, Final, NoReturn

import click

from reconciler.core.errors import ReconcilerError, UsageError
from reconciler.core.printable import printable


class Outcome(Enum):
    """How a command ended, as its exit code tells a script."""

    OK = "ok"
    FAILED = "failed"  # invalid input, unauthorised change, refused or failed run
    USAGE = "usage"  # the command line is wrong
    INTERNAL = "internal"  # a bug in the reconciler
    INTERRUPTED = "interrupted"  # stopped by SIGINT or SIGTERM


EXIT_CODES: Final[Mapping[Outcome, int]] = {
    Outcome.OK: 0,
    Outcome.FAILED: 1,
    Outcome.USAGE: 2,
    Outcome.INTERNAL: 3,
    Outcome.INTERRUPTED: 130,  # as a shell reports Ctrl-C
}


def exit_with(outcome: Outcome) -> NoReturn:
    """End the process with `outcome`'s exit code: the one place a command exits."""
    raise SystemExit(EXIT_CODES[outcome]) from None


def leave(code: str | int | None) -> NoReturn:
    """End the `reconciler` process with the exit code a command ended with (`exit_with`,
    or click's for a usage error), as `sys.exit(code)` would, but without freeing every
    object first when nothing is left to finish: that teardown was an eighth of `plan`'s
    time (mypy exits so too).

    Anything left to finish takes the usual way out: an exit hook (`atexit`), a thread
    that is no daemon, a message for an exit code. The command has closed its state and
    its git processes by now, and what it wrote is flushed here."""
    if not (code is None or isinstance(code, int)) or not _nothing_left():
        sys.exit(code)
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: Python started with that descriptor closed
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)  # the usual way reports what failed, as before
    os._exit(code or 0)


def _nothing_left() -> bool:
    """Whether a normal exit would run nothing but the teardown: no exit hook, of
    `atexit` or of `threading` (executors register theirs there), and no other thread."""
    hooks = getattr(atexit, "_ncallbacks", None)  # CPython's; elsewhere, exit as usual
    threading_hooks = getattr(threading, "_threading_atexits", None)
    return (
        hooks is not None
        and hooks() == 0
        and threading_hooks is not None
        and not threading_hooks
        and threading.active_count() == 1
    )


def outcome_of(error: ReconcilerError) -> Outcome:
    return Outcome.USAGE if isinstance(error, UsageError) else Outcome.FAILED


def exit_code_for(error: ReconcilerError) -> int:
    return EXIT_CODES[outcome_of(error)]


def render(error: ReconcilerError) -> str:
    where = error.location()
    text = printable(f"{where}: error: {error.message}" if where else f"error: {error.message}")
    if error.hint:
        text += f"\n  hint: {printable(error.hint)}"
    return text


def error_json(error: ReconcilerError, exit_code: int) -> dict[str, Any]:
    """The error as `--format json` prints it on stdout (docs/output-formats.md)."""
    return {
        "error": {
            "message": error.message,
            "file": error.file,
            "line": error.line,
            "column": error.column,
            "hint": error.hint,
            "exit_code": exit_code,
        }
    }


def _wants_json() -> bool:
    """Whether the running command was asked for `--format json`."""
    context = click.get_current_context(silent=True)
    return context is not None and context.params.get("output_format") == "json"


@contextmanager
def reported() -> Iterator[None]:
    try:
        yield
    except ReconcilerError as error:
        code = exit_code_for(error)
        if _wants_json():
            # Compact, one line: whatever the command printed before stays parseable line by line.
            click.echo(json.dumps(error_json(error, code)))
        click.echo(render(error), err=True)
        exit_with(outcome_of(error))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        exit_with(Outcome.INTERRUPTED)
    except BrokenPipeError as error:
        if _reader_gone():
            # `reconciler history | head`: the reader had all it wanted. Success, quietly, so
            # a pipeline under `set -o pipefail` does not fail; stdout goes to /dev/null first,
            # else flushing it at exit fails again, and loudly.
            _discard_stdout()
            exit_with(Outcome.OK)
        _internal(error)
    except Exception as error:
        _internal(error)


def _reader_gone() -> bool:
    """Whether our stdout is a pipe or socket whose reader has gone (not a pipe to git or
    a driver).

    Such a pipe polls as an error, such a socket as a hang-up; a file, a terminal or a
    live pipe or socket does neither (a terminal that hung up fails writes with EIO, not
    as a broken pipe).
    """
    try:
        stdout = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(stdout, select.POLLOUT)
    gone = select.POLLERR | select.POLLHUP
    return any(events & gone for _, events in poller.poll(0))


def _discard_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _internal(error: Exception) -> NoReturn:
    if os.environ.get("RECONCILER_DEBUG"):
        traceback.print_exc()
    click.echo(
        f"internal error: {type(error).__name__}: {printable(str(error))}\n"
        "  hint: this is a bug in gitops-reconciler; please report it with the command you ran "
        "(set RECONCILER_DEBUG=1 to see the traceback)",
        err=True,
    )
    exit_with(Outcome.INTERNAL)
