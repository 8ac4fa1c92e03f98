"""CLI: exit codes and error messages, in one place (docs/design.md, "Exit codes").

Every command body runs inside `reported()`. A `ReconcilerError` becomes a
message on stderr naming the file, line and fix, with the exit code of its
kind; anything else is a bug in the reconciler: one line saying so, and the
traceback only when RECONCILER_DEBUG is set. Under `--format json` the error
is also a JSON object on stdout, where a JSON consumer reads. Usage errors
that click itself detects keep click's exit code 2.
"""

from __future__ import annotations

import json
import os
import select
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, NoReturn

import click

from reconciler.errors import ReconcilerError, UsageError
from reconciler.printable import printable

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # invalid input, unauthorised change, refused or failed run
EXIT_USAGE: Final = 2
EXIT_INTERNAL: Final = 3  # a bug in the reconciler
EXIT_INTERRUPTED: Final = 130  # stopped by SIGINT or SIGTERM, as a shell reports Ctrl-C


def exit_code_for(error: ReconcilerError) -> int:
    return EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED


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
        raise SystemExit(code) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except BrokenPipeError as error:
        if _reader_gone():
            # `reconciler history | head`: the reader had all it wanted. Success, quietly, so
            # a pipeline under `set -o pipefail` does not fail; stdout goes to /dev/null first,
            # else flushing it at exit fails again, and loudly.
            _discard_stdout()
            raise SystemExit(EXIT_OK) from None
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
    raise SystemExit(EXIT_INTERNAL) from None
