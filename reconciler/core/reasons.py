"""Core, shared: reasons as values, why a plan waits or is refused, why a sign-off counts or not.

A `Reason` carries a stable `code` (what a program or a test matches on), the
`text` people read (the CLI and the JSON print exactly this text), and the
`facts` the text was made from (who, which run, until when), so no caller has
to parse prose to learn them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_NO_FACTS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Reason:
    """Why, as a code, a sentence and the facts behind it."""

    code: str  # dotted, stable: "approval.editor", "run.lease-passed"
    text: str
    facts: Mapping[str, Any] = field(default_factory=lambda: _NO_FACTS, hash=False, compare=False)

    def __str__(self) -> str:
        return self.text


def reason(code: str, text: str, **facts: Any) -> Reason:
    """A reason whose facts are read-only."""
    return Reason(code, text, MappingProxyType(dict(facts)) if facts else _NO_FACTS)
