"""App: an entry of the audit trail (`Entry`), and the trail as the state keeps it.

`history.audit_trail` reads the kept trail (`decode_trail`) and, when there is none for
the state as it is, has `history_entries.trail_of` make it from the rows and keeps it
(`encode_trail`). Apart from the builders, so that `history` answering from the kept trail
loads none of the rules they word entries with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
from msgspec import Struct


class Entry(Struct, frozen=True):
    seq: int
    when: datetime
    commit: str
    plan: str | None  # the plan's path
    environment: str | None
    action: str
    actor: str | None
    counted: bool  # authorised, a sign-off that counted when it landed, or a run's first end
    detail: str
    rank: int = 0  # within a landing: edits and sign-offs, then the landing's trigger, then runs
    why_not: str | None = None  # why a sign-off, trigger or record does not count

    @property
    def text(self) -> str:
        """The detail, and why the entry does not count when there is a reason to give."""
        return self.detail + (f"; does not count: {self.why_not}" if self.why_not else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "when": self.when.isoformat(),
            "commit": self.commit,
            "plan": self.plan,
            "environment": self.environment,
            "action": self.action,
            "actor": self.actor,
            "counted": self.counted,
            "detail": self.text,
        }


def encode_trail(key: str, entries: Sequence[Entry]) -> str:
    """The trail as the state keeps it (`app.kept`), under the key of what it was made from."""
    rows = [
        [
            entry.seq,
            entry.when.isoformat(),
            entry.commit,
            entry.plan,
            entry.environment,
            entry.action,
            entry.actor,
            entry.counted,
            entry.detail,
            entry.rank,
            entry.why_not,
        ]
        for entry in entries
    ]
    return json.dumps({"key": key, "entries": rows})


def decode_trail(text: str, key: str) -> tuple[Entry, ...] | None:
    """The trail `encode_trail` kept under `key`; None for another key, or for a text this
    code did not write (a state edited by hand): it is made again. The key names this
    code (`kept.rules_digest`), so another version's trail is another key's."""
    try:
        kept = _TRAIL.decode(text)
    except msgspec.DecodeError:  # not JSON, or a row of other types (JSON's true is no seq)
        return None
    if kept.key != key:
        return None
    return tuple(Entry(*row) for row in kept.entries)


class _KeptTrail(Struct, frozen=True):
    """`encode_trail`'s text as msgspec reads it: typed in C, a row as Entry's fields."""

    key: str
    entries: tuple[
        tuple[
            int, datetime, str, str | None, str | None, str, str | None, bool, str, int, str | None
        ],
        ...,
    ]


_TRAIL: Final = msgspec.json.Decoder(_KeptTrail)
