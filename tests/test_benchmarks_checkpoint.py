"""The checkpoint benchmark's pieces on a few hundred commits: verify from a checkpoint agrees
with `verify --full` verdict by verdict, and the pull-request check goes on from one.

`python -m benchmarks.checkpoint --agree` runs the same on 10,000 commits (or more).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from benchmarks.checkpoint import (
    BASE,
    agreement,
    main,
    publish_at,
    pull_request_check,
    service_key,
)
from benchmarks.history import HistorySettings, generate_history

# Merges, policy changes and deliberately unauthorised commits on both sides of the checkpoint.
SETTINGS = HistorySettings(
    commits=400, users=16, plans=30, unauthorised=0.05, merges=0.2, policy_changes=3, seed=5
)


@pytest.mark.slow
def test_verify_from_a_checkpoint_agrees_with_a_full_verify_verdict_by_verdict(
    tmp_path: Path,
) -> None:
    root = tmp_path / "history"
    manifest = generate_history(SETTINGS, root)
    assert len(manifest.refused_landings) > 2

    for back in (1, manifest.landings // 3, manifest.landings - 5):
        found = agreement(root, manifest, tmp_path / f"back-{back}", back)
        assert found["landings"] == manifest.landings
        assert found["judged_from_checkpoint"] == back
        assert found["differing"] == []
        assert found["same_state"]  # sign-offs, records, editors, carriers: every row
        assert found["agree"], found


@pytest.mark.slow
def test_the_pull_request_check_goes_on_from_the_checkpoint_at_its_base(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "history"
    manifest = generate_history(SETTINGS, root)
    checkpoint = publish_at(root, manifest, 10, tmp_path / "service", BASE)

    key_file = tmp_path / "service.pub"
    public = service_key(SETTINGS.seed).public
    key_file.write_text(f"{public.type} {base64.b64encode(public.blob).decode()}\n")
    ours, pinned, reference = pull_request_check(root, tmp_path, checkpoint, 1, key_file)
    assert len(ours) == len(pinned) == len(reference) == 1

    assert main(["--dir", str(root), "--repeat", "1", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pull_request_landings"] == 10
    assert report["ratio"] > 0
    assert report["pinned_ratio"] > 0
