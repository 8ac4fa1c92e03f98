"""Core, shared: where the files shipped with the reconciler live (its schemas, the example).

The project's top-level `schemas/`, `teams.yaml`, `environments/` and
`plans/` are the single source. A built wheel carries a copy under
`reconciler/_shipped/` (see `pyproject.toml`); a source checkout (an editable
install, or tests run from the tree) reads the top level directly.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Final

from reconciler.core.errors import ReconcilerError

SCHEMA_FILES: Final = {
    "teams": "teams.schema.json",
    "environment": "environment.schema.json",
    "plan": "plan.schema.json",
    "deployment": "deployment.schema.json",
}

_PACKAGE: Final = Path(__file__).resolve().parents[1]  # the reconciler package
_SHIPPED: Final = _PACKAGE / "_shipped"
_CHECKOUT: Final = _PACKAGE.parent


def schemas_dir() -> Path:
    for candidate in (_SHIPPED / "schemas", _CHECKOUT / "schemas"):
        if (candidate / SCHEMA_FILES["plan"]).is_file():
            return candidate
    raise ReconcilerError(
        "the reconciler's own schemas are missing",
        hint="reinstall gitops-reconciler (pip install --force-reinstall gitops-reconciler)",
    )


def example_dir() -> Path:
    """The seed-story configuration: teams.yaml, environments/, plans/."""
    for candidate in (_SHIPPED / "example", _CHECKOUT):
        if (candidate / "teams.yaml").is_file() and (candidate / "environments").is_dir():
            return candidate
    raise ReconcilerError(
        "the example configuration is missing",
        hint="reinstall gitops-reconciler (pip install --force-reinstall gitops-reconciler)",
    )


@cache
def schema_bytes(kind: str) -> bytes:
    return (schemas_dir() / SCHEMA_FILES[kind]).read_bytes()


@cache
def schema(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_bytes(kind))
    return loaded
