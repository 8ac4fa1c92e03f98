"""CLI: `python -m reconciler`, the `reconciler` command (`run`), for tests and workers."""

import gc

from reconciler.cli import main


def run() -> None:
    """The `reconciler` command, in a process of its own.

    Python's collector runs after every 700 net allocations. A command allocates its
    values in bursts (the imports' classes, the 1,000 decisions `plan` reads back from the
    state) that hold no cycles, and scanning them again and again cost `status` about a
    tenth of its time. As mypy does, collect far less often: what a cycle holds is freed a
    little later. Tests that call `cli.main` in their own process keep their settings."""
    gc.set_threshold(200_000, 30, 30)
    main(prog_name="reconciler")


# Guarded: a worker process started by `process.worker_pool` imports this module again.
if __name__ == "__main__":
    run()
