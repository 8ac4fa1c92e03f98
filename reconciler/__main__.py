"""CLI: `python -m reconciler`, the `reconciler` command (`run`), for tests and workers."""

from typing import NoReturn

from reconciler.cli import main
from reconciler.cli.collector import collect_as_a_command
from reconciler.cli.errors import leave


def run() -> NoReturn:
    """The `reconciler` command, in a process of its own, ended by `errors.leave`.

    It collects cycles as a command does (`collector`); `watch` and `serve` switch to
    a service's collection as they start. Tests that call `cli.main` in their own
    process keep their settings."""
    collect_as_a_command()
    try:
        main(prog_name="reconciler")
    except SystemExit as stop:  # the exit code the command ended with, passed on as it is
        leave(stop.code)
    leave(0)


# Guarded: a worker process started by `process.worker_pool` imports this module again.
if __name__ == "__main__":
    run()
