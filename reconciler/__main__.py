"""CLI: `python -m reconciler`, the `reconciler` command (`cli.main`), for tests and workers."""

from reconciler.cli import main

# Guarded: a worker process started by `process.worker_pool` imports this module again.
if __name__ == "__main__":
    main(prog_name="reconciler")
