"""Core, shared: the configuration repository's layout, which path holds which kind of file.

One place that knows docs/design.md, "The repository", used by
`worktree` and the git adapter (what to read), `validate` (what to check) and
`authorise` (which rule judges a change to a path).
"""

from __future__ import annotations

import functools
import re
from typing import Final, Literal

from msgspec import Struct

Kind = Literal["teams", "environment", "plan", "deployment", "schema", "log"]

TEAMS_FILE: Final = "teams.yaml"
CONFIG_DIRS: Final = {
    "environments": "environment",
    "plans": "plan",
    "deployments": "deployment",
    "schemas": "schema",
}
# Directories the reconciler reads, in the order a person would explain them.
READ_DIRS: Final = ("environments", "plans", "deployments", "schemas")
SUFFIX: Final = {"environment": ".yaml", "plan": ".yaml", "deployment": ".yaml", "schema": ".json"}
# The schemas' `identifier`: a plan, environment or deployment file is named
# for what it holds, whose name must match it.
_NAME: Final = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*")


class Placement(Struct, frozen=True):
    """What a path is: its kind and, for per-item files, the item's name ('' otherwise).

    `misplaced` explains a path inside a configuration directory that the
    reconciler would never read (a `.yml` suffix, a nested folder).
    """

    kind: Kind | None
    name: str = ""
    misplaced: str | None = None


def place(path: str) -> Placement:
    """Classify a repository-relative POSIX path."""
    if path.startswith("logs/") and len(path) > len("logs/"):
        # Not cached: every run adds a log that a walk places once or twice, and
        # a service's cache filled with them (270 bytes each) up to its cap, 4 MiB.
        return Placement("log", path[len("logs/") :])
    return _place(path)


@functools.lru_cache(maxsize=16384)  # a history walk asks about the same paths again and again
def _place(path: str) -> Placement:
    if path == TEAMS_FILE:
        return Placement("teams")
    top, _, rest = path.partition("/")
    kind = CONFIG_DIRS.get(top)
    if kind is None or not rest:
        return Placement(None)
    suffix = SUFFIX[kind]
    if rest.startswith("."):
        return Placement(None)  # .gitkeep and the like: not configuration
    if "/" in rest:
        return Placement(None, misplaced=f"{top}/ holds files directly, not in sub-folders")
    if not rest.endswith(suffix):
        if kind == "schema":
            return Placement(None)
        return Placement(None, misplaced=f"{top}/ files end in '{suffix}'")
    name = rest[: -len(suffix)]
    # A file whose name no plan (or environment) can have is never read as one:
    # it could not be valid, and its path would not survive a record's trailer.
    if kind != "schema" and not (len(name) <= 63 and _NAME.fullmatch(name)):
        return Placement(
            None,
            misplaced=f"{top}/ file names are lowercase letters and digits, "
            "words joined by single '.', '_' or '-'",
        )
    return Placement(kind, name)  # type: ignore[arg-type]


# The folders of per-item YAML files, which a misnamed folder may have been meant as.
_MEANT_FOLDERS: Final = ("plans", "environments", "deployments")


def meant_folder(name: str) -> str | None:
    """The configuration folder a top-level folder's name looks meant as ('plan' ->
    'plans', 'Environments' -> 'environments'), or None."""
    if name.startswith(".") or name in CONFIG_DIRS or name == "logs":
        return None
    import difflib  # noqa: PLC0415 - only for a folder the layout does not know (start-up time)

    close = difflib.get_close_matches(name.lower(), _MEANT_FOLDERS, n=1, cutoff=0.8)
    return close[0] if close else None


def meant_path(path: str) -> str | None:
    """Where a YAML file the reconciler never reads belongs, when its place looks meant
    for configuration (`plan/x.yaml` -> `plans/x.yaml`, `teams.yml` -> `teams.yaml`)."""
    top, _, rest = path.partition("/")
    name = rest or top
    stem, dot, suffix = name.rpartition(".")
    if not dot or suffix not in ("yaml", "yml") or name.startswith(".") or "/" in rest:
        return None
    if not rest:
        return TEAMS_FILE if path != TEAMS_FILE and stem.lower() in ("teams", "team") else None
    folder = meant_folder(top)
    return f"{folder}/{stem}.yaml" if folder else None


def plan_path(name: str) -> str:
    return f"plans/{name}.yaml"


def environment_path(name: str) -> str:
    return f"environments/{name}.yaml"


def deployment_path(environment: str) -> str:
    return f"deployments/{environment}.yaml"
