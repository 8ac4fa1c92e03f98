"""How often the `reconciler` process collects cycles: rarely for a command, as Python
does for a service (`cli.collector`), which would otherwise grow with every pass."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.cli.collector import COMMAND, SERVICE, collect_as_a_command


@pytest.fixture
def as_the_reconciler_process() -> Iterator[None]:
    """The thresholds `reconciler`'s entry sets, put back as they were afterwards."""
    before = gc.get_threshold()
    collect_as_a_command()
    try:
        yield
    finally:
        gc.set_threshold(*before)


def test_a_command_collects_far_less_often_than_python() -> None:
    assert COMMAND[0] > 100 * SERVICE[0]
    assert SERVICE == (700, 10, 10)


@pytest.mark.usefixtures("as_the_reconciler_process")
def test_watch_collects_as_python_does_from_its_start() -> None:
    # Refused before it watches anything (a listener needs a secret): the switch came first.
    outcome = CliRunner().invoke(main, ["watch", "--listen", "127.0.0.1:1"])
    assert outcome.exit_code == 2, outcome.output
    assert gc.get_threshold() == SERVICE


@pytest.mark.usefixtures("as_the_reconciler_process")
def test_serve_collects_as_python_does_from_its_start() -> None:
    outcome = CliRunner().invoke(main, ["serve", "--listen", "not-a-port"])
    assert outcome.exit_code == 2, outcome.output
    assert gc.get_threshold() == SERVICE


@pytest.mark.usefixtures("as_the_reconciler_process")
def test_other_commands_keep_collecting_rarely() -> None:
    outcome = CliRunner().invoke(main, ["plan", "--repo", "/nonexistent/repository"])
    assert outcome.exit_code != 0
    assert gc.get_threshold() == COMMAND
