"""Shared fixtures: every test runs with Git shielded from the user's configuration."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.configrepo import copy_example
from tests.gpgkeys import GpgKeys
from tests.people import People


def pytest_configure(config: pytest.Config) -> None:
    """Where the environment asks Python not to write bytecode (PYTHONDONTWRITEBYTECODE),
    every `reconciler` the suite starts would compile the whole package from source
    again: a third of its start-up, and the suite starts it hundreds of times. Its
    subprocesses write and reuse bytecode in one folder for the run instead, outside
    the source tree, removed at the end. xdist's workers inherit the controller's."""
    _hand_out_tests_two_at_a_time(config)
    if hasattr(config, "workerinput") or "PYTHONDONTWRITEBYTECODE" not in os.environ:
        return
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    if "PYTHONPYCACHEPREFIX" not in os.environ:
        cache = tempfile.mkdtemp(prefix="reconciler-pycache-")
        os.environ["PYTHONPYCACHEPREFIX"] = cache
        config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))


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
