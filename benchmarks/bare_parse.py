"""The floor of the validation benchmark: parse every configuration YAML file, nothing else.

Called by `benchmarks.validate` twice: in-process (`parse_configuration`), and
as a script in a subprocess of the same Python (`python .../bare_parse.py DIR`),
so that interpreter startup counts the same way as for `reconciler validate`.
It imports only PyYAML and the standard library, never `reconciler`, so the
subprocess pays for nothing the bare parse does not need.

The files are the YAML files `reconciler validate` reads: teams.yaml, then
environments/, plans/ and deployments/ (`*.yaml`, sorted).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

import yaml

YAML_DIRECTORIES: Final = ("environments", "plans", "deployments")


def configuration_yaml_files(root: Path) -> list[Path]:
    """teams.yaml and the `*.yaml` files of the configuration directories under `root`."""
    files = [root / "teams.yaml"] if (root / "teams.yaml").is_file() else []
    for directory in YAML_DIRECTORIES:
        if (root / directory).is_dir():
            files += sorted((root / directory).glob("*.yaml"))
    return files


def parse_configuration(root: Path) -> int:
    """Read and parse every file with libyaml's C loader; the number of files parsed."""
    files = configuration_yaml_files(root)
    for path in files:
        yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    return len(files)


if __name__ == "__main__":
    print(parse_configuration(Path(sys.argv[1])))
