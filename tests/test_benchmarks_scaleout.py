"""The scale-out benchmark's push-rate half works on every transport it measures: pushes
land on the bare repository by path, over `git daemon` and over smart HTTP (real git,
real servers on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.scaleout import push_rate
from benchmarks.watch import git


@pytest.mark.parametrize("transport", ["local", "git daemon", "smart http"])
def test_each_push_lands_on_the_host(tmp_path: Path, transport: str) -> None:
    rate = push_rate(tmp_path / "push", transport, 3)  # raises unless the last push landed
    assert rate.pushes == 3
    assert rate.as_json()["pushes_per_s"] > 0
    history = git(tmp_path / "push" / "host.git", "rev-list", "--count", "main")
    assert history == "4"  # the first commit, then each push's
