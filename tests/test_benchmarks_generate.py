"""The benchmark generator: its repositories pass the real `reconciler validate`, seed for seed.

Small sizes (30 plans, 4 environments, 40 users), so it runs in a second; the
benchmark itself (`python -m benchmarks.validate`) uses the same code at 2,000 plans.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.generate import (
    SERVICE_ACCOUNT,
    GeneratorSettings,
    generate_config,
    identity_private_key,
    init_repository,
    main,
    openssh_public_key,
    write_config,
)
from reconciler.core.sshkeys import parse_public_key
from tests.configrepo import reconciler

SMALL = GeneratorSettings(plans=30, environments=4, users=40, seed=7)


def written(settings: GeneratorSettings, directory: Path) -> Path:
    write_config(generate_config(settings), directory)
    init_repository(directory)
    return directory


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)


def test_generated_repository_is_valid_for_the_real_cli(tmp_path: Path) -> None:
    root = written(SMALL, tmp_path / "config")
    result = reconciler("validate", "--repo", root, "--format", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = result.json()
    assert report["findings"] == []
    assert report["files_checked"] == 1 + 4 + 30 + 4  # teams, environments, plans, schemas


def test_generation_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = read_tree(written(SMALL, tmp_path / "first"))
    second = read_tree(written(SMALL, tmp_path / "second"))
    assert first == second
    other_seed = GeneratorSettings(plans=30, environments=4, users=40, seed=8)
    assert generate_config(other_seed).files != generate_config(SMALL).files


def test_every_plan_promotes_from_its_targets_promotes_from(tmp_path: Path) -> None:
    root = written(SMALL, tmp_path / "config")
    environments = {
        data["name"]: data
        for data in map(load_yaml, sorted((root / "environments").glob("*.yaml")))
    }
    assert sorted(environment["order"] for environment in environments.values()) == [1, 2, 3, 4]
    plans = sorted((root / "plans").glob("*.yaml"))
    assert len(plans) == 30
    for path in plans:
        plan = load_yaml(path)
        assert plan["name"] == path.stem
        assert plan.get("source") == environments[plan["target"]].get("promotes_from")
        assert 1 <= len(plan["applications"]) <= 5
    targets = {load_yaml(path)["target"] for path in plans}
    assert "development" in targets
    assert len(targets) > 1


def test_keys_are_valid_openssh_keys_unique_per_identity() -> None:
    config = generate_config(SMALL)
    teams = yaml.safe_load(config.files["teams.yaml"])
    identities = {**teams["users"], **teams["service_accounts"]}
    fingerprints = {
        parse_public_key(key).fingerprint: identity
        for identity, data in identities.items()
        for key in data.get("keys", ())
    }
    keyed = [identity for identity, data in identities.items() if data.get("keys")]
    assert len(fingerprints) == len(keyed)
    assert 0 < len(keyed) - 1 < len(teams["users"])  # some users have keys, not all
    assert any(teams["users"][admin].get("keys") for admin in teams["infrastructure"]["settings"])
    service_key = identity_private_key(SMALL.seed, SERVICE_ACCOUNT)
    assert teams["service_accounts"][SERVICE_ACCOUNT]["keys"] == [
        openssh_public_key(service_key, "reconciler@example.com")
    ]


def test_sizes_that_cannot_be_valid_are_refused() -> None:
    with pytest.raises(ValueError, match="--users must be at least"):
        generate_config(GeneratorSettings(plans=1, environments=2, users=8))


def test_command_line_writes_once_and_replaces_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "config"
    arguments = ["config", str(target), "--plans", "3", "--environments", "2", "--users", "20"]
    assert main(arguments) == 0
    assert (target / ".git").is_dir()
    assert len(list((target / "plans").glob("*.yaml"))) == 3
    assert main(arguments) == 2
    assert "--replace" in capsys.readouterr().err
    assert main([*arguments[:-1], "25", "--replace"]) == 0
    assert reconciler("validate", "--repo", target).exit_code == 0
