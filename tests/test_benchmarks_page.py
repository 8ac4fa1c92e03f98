"""The pipeline page benchmark at a tiny size: it runs the real server and the reference,
and the page it measures shows the landing added after the first read.

`python -m benchmarks.page` uses the same code at 100 applications x 5 environments x
500 plans.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.page import main


def test_the_benchmark_reports_the_page_and_status_json_on_the_same_data(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sizes = ["--applications", "6", "--environments", "3", "--plans", "20", "--commits", "40"]
    code = main([*sizes, "--users", "60", "--rounds", "1", "--format", "json"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["applications"], figures["environments"], figures["plans"]) == (6, 3, 20)
    assert figures["status_json_bytes"] > 1000
    assert 0 < figures["page_server_seconds"] < 30
    assert figures["page_shows_a_new_landing_after_seconds"] > 0
    # The weight counts the stylesheet and the script with the page.
    assert figures["page_weight_bytes"] > figures["page_bytes"] > 1000
