"""Core, shared: reasons as values, why a plan waits or is refused, why a sign-off counts or not.

A `Reason` carries a stable `code` (what a program or a test matches on), the
`text` people read (the CLI and the JSON print exactly this text), and the
`facts` the text was made from (who, which run, until when), so no caller has
to parse prose to learn them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from msgspec import Struct, field

_NO_FACTS: Mapping[str, Any] = MappingProxyType({})


class Reason(Struct, frozen=True):
    """Why, as a code, a sentence and the facts behind it."""

    code: str  # dotted, stable: "approval.editor", "run.lease-passed"
    text: str
    facts: Mapping[str, Any] = field(default_factory=lambda: _NO_FACTS)

    def __str__(self) -> str:
        return self.text

    # Two reasons are the same reason when they say the same: the facts are how the text
    # was made, read-only mappings that hash no further (a decision is hashed whole).
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reason):
            return NotImplemented
        return (self.code, self.text) == (other.code, other.text)

    def __hash__(self) -> int:
        return hash((self.code, self.text))


def reason(code: str, text: str, **facts: Any) -> Reason:
    """A reason whose facts are read-only."""
    return Reason(code, text, MappingProxyType(dict(facts)) if facts else _NO_FACTS)
