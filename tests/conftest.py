"""Shared fixtures: every test runs with Git shielded from the user's configuration."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.configrepo import copy_example
from tests.gpgkeys import GpgKeys
from tests.people import People


def pytest_configure(config: pytest.Config) -> None:
    """Where the environment asks Python not to write bytecode (PYTHONDONTWRITEBYTECODE),
    every `reconciler` the suite starts would compile the whole package from source
    again: a third of its start-up, and the suite starts it hundreds of times. Its
    subprocesses write and reuse bytecode in one folder instead, outside the source
    tree. xdist's workers inherit the controller's, and so cache the test modules as
    pytest rewrites their asserts too: each worker of a run would otherwise rewrite
    every one again (6 of its 7 CPU-seconds of collection)."""
    _hand_out_tests_two_at_a_time(config)
    if hasattr(config, "workerinput") or "PYTHONDONTWRITEBYTECODE" not in os.environ:
        return
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    if "PYTHONPYCACHEPREFIX" in os.environ:
        return
    cache = _bytecode_cache()
    if cache is None:  # a folder for this run only, removed at its end
        cache = Path(tempfile.mkdtemp(prefix="reconciler-pycache-"))
        config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)


def _bytecode_cache() -> Path | None:
    """The user's folder for the suite's bytecode, kept from run to run (the next run, and
    CI's second one, collects in a quarter of the time): beside the system's temporary
    files, as __pycache__ would be beside the sources. A `.pyc` holds its source's size
    and modification time and is compiled again when they differ; the cache mirrors
    each source's absolute path, so checkouts never share an entry. None when the folder
    is not the user's own."""
    cache = Path(tempfile.gettempdir()) / f"reconciler-pycache-{os.getuid()}"
    try:
        cache.mkdir(mode=0o700, exist_ok=True)
    except FileExistsError:  # something that is no folder holds the name
        return None
    found = cache.lstat()
    # Bytecode is code the suite runs: a folder someone else made or may write is no cache.
    if found.st_uid != os.getuid() or not stat.S_ISDIR(found.st_mode) or found.st_mode & 0o022:
        return None
    return cache


def _hand_out_tests_two_at_a_time(config: pytest.Config) -> None:
    """xdist's `load` scheduling first gives each worker a quarter of its share in one run
    of consecutive tests: every `slow` test (sorted first, below) would go to the first
    worker, one after another. Two at a time, the slow ones start on every worker at once
    and the rest fill in behind them as workers free up. A chunk size asked for on the
    command line stands."""
    if getattr(config.option, "maxschedchunk", "no xdist") is None:
        config.option.maxschedchunk = 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` run first, in the order collected; the rest keep theirs. A
    slow test picked up last would leave its worker running alone at the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def machine_share(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """A test marked `alone` runs while no other test of the run does; the others share.

    A push storm of 20 commits a second leaves gaps between pushes only on a
    machine that can make them faster: under the load of the other xdist
    workers, each push takes longer than its 50 ms slot, the storm pushes back
    to back, and no compare-and-swap by anyone lands through it (a limit of Git
    hosts, measured in docs/performance.md, not what the test asks about).

    Two locks shared by the run's workers: a test takes the gate only to pass
    it and holds the run lock while it runs, shared; an `alone` test holds the
    gate, so no test starts meanwhile, and waits for the run lock alone.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        yield  # one process: nothing else of the run runs meanwhile anyway
        return
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's
    alone = request.node.get_closest_marker("alone") is not None
    with ExitStack() as held:
        gate = held.enter_context((shared / "machine-gate.lock").open("a"))
        running = held.enter_context((shared / "machine-run.lock").open("a"))
        fcntl.flock(gate, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(running, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No global or system git config, a fixed default identity, no pager, no prompts."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Test Author",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test Author",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
        }
    )
    for variable in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "RECONCILER_DEBUG"):
        os.environ.pop(variable, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """A scratch copy of the seed-story configuration, as a plain directory."""
    return copy_example(tmp_path / "config")


@pytest.fixture(scope="session")
def people(tmp_path_factory: pytest.TempPathFactory) -> People:
    """The seed story's cast with real ed25519 keys, made once per session."""
    return People.create(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def gpg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKeys]:
    """Throwaway OpenPGP keys made by gpg, once per session (RSA 4096 takes seconds); every
    gpg-agent they started is stopped at the end."""
    keys = GpgKeys.create(tmp_path_factory.mktemp("gpg"))
    try:
        yield keys
    finally:
        keys.close()
