"""Stage 3, authorise: a landing as the judge sees it: its commits, the state that judges
it, and what the judge may ask about Git's immutable objects and the journal (`Content`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from msgspec import Struct

from reconciler.core.events import Record
from reconciler.core.fields import FieldMap
from reconciler.core.identity import CommitFacts
from reconciler.core.journal import Blame


class LandedCommit(Struct, frozen=True):
    """One commit of a landing: its parents and what it changed against its first parent."""

    id: str
    parents: tuple[str, ...]
    changes: Mapping[str, tuple[str | None, str]]  # path -> (blob, None: deleted; mode)
    # A folder whose tree is malformed and why (None: well-formed): it holds no content.
    malformed: tuple[str, str] | None = None


class Landing(Struct, frozen=True):
    """A first-parent commit of the followed branch and the commits it lands, parents first."""

    seq: int
    commit: str
    first_parent: str | None
    commits: tuple[LandedCommit, ...]


class State(Struct, frozen=True):
    """What judges a landing: the effective state before it, where the branch's content
    differs from it (and who put it there), and the trust anchor."""

    effective: Mapping[str, FieldMap]
    dirty: Mapping[str, Blame]
    anchor: str


class Content(Protocol):
    """What the judge asks about Git's immutable objects and the journal before the landing."""

    def facts(self, commit: str) -> CommitFacts: ...

    def committed_at(self, commit: str) -> datetime: ...

    def message(self, commit: str) -> tuple[str, str]:
        """The commit message and its declared encoding ("" when none)."""
        ...

    def blob_at(self, commit: str, path: str) -> str | None:
        """The blob at `path` in a commit outside the landing (None: no such file)."""
        ...

    def fields(self, path: str, blob: str | None, mode: str) -> FieldMap:
        """The values of `path` holding `blob` (None: absent) with `mode` ("": a file)."""
        ...

    def is_ancestor(self, ancestor: str, commit: str) -> bool: ...

    def records_of(self, run: str) -> Sequence[Record]:
        """The records of `run` that counted in earlier landings, in landing order."""
        ...

    def policy_problem(
        self, effective: Mapping[str, FieldMap], teams_blob: str | None
    ) -> str | None:
        """The first validation error of the policy `effective` describes, if any
        (`teams_blob`: a blob holding the effective teams.yaml, when one is at hand)."""
        ...


def blob_and_mode(
    commits: Mapping[str, LandedCommit], content: Content, commit: str, path: str
) -> tuple[str | None, str]:
    """The blob at `path` (None: no such file) and its mode in `commit`, one of a landing's
    `commits` (by id) or a commit just outside it."""
    current = commit
    while current in commits:
        landed = commits[current]
        change = landed.changes.get(path)
        if change is not None:
            return change
        if not landed.parents:
            return None, ""
        current = landed.parents[0]
    return content.blob_at(current, path), "100644"
