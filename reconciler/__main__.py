"""CLI: `python -m reconciler`, the `reconciler` command (`run`), for tests and workers."""

import gc
from typing import NoReturn

from reconciler.cli import main
from reconciler.cli.errors import leave


def run() -> NoReturn:
    """The `reconciler` command, in a process of its own, ended by `errors.leave`.

    Python's collector runs after every 700 net allocations. A command allocates its
    values in bursts (the imports' classes, the 1,000 decisions `plan` reads back from the
    state) that hold no cycles, and scanning them again and again cost `status` about a
    tenth of its time. As mypy does, collect far less often: what a cycle holds is freed a
    little later. Tests that call `cli.main` in their own process keep their settings."""
    gc.set_threshold(200_000, 30, 30)
    try:
        main(prog_name="reconciler")
    except SystemExit as stop:  # the exit code the command ended with, passed on as it is
        leave(stop.code)
    leave(0)


# Guarded: a worker process started by `process.worker_pool` imports this module again.
if __name__ == "__main__":
    run()
