"""App: answers the state keeps beside its rows, and the key each is kept under.

The last decisions (`pipeline.decided_from_state`) and the audit trail
(`history.audit_trail`) are made from the state's rows by this code. Kept, they
answer `plan`, `status` and `history` without reading every row again, but
only under the key of the state and code that made them: the state's position
and generation (every kept change of its rows), its journal format, and a
digest of the code. A key that differs, or a text that does not decode, and
the answer is made again; a kept answer is a shortcut, never a source.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Final

from reconciler.core import journal

if TYPE_CHECKING:
    from reconciler.adapters.statestore import StateStore

# The names the state keeps each answer under (`StateStore.keep_answer`).
DECISIONS: Final = "decisions"
TRAIL: Final = "trail"


@functools.cache
def rules_digest() -> str:
    """The code that decides, as one digest: its version number stays 0.1.0 while its
    rules change, and answers kept by other rules must not answer for these."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    # The adapters too: the state's queries and Git's reading feed the rules their inputs.
    for path in sorted(
        path for part in ("core", "app", "adapters") for path in root.glob(f"{part}/*.py")
    ):
        digest.update(
            f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes() + b"\0"
        )
    return digest.hexdigest()


def state_key(store: StateStore, *inputs: object) -> str:
    """The state's rows and this code, with `inputs` (JSON values) besides, as one digest."""
    position = store.position()
    named = [
        rules_digest(),
        journal.VERSION,
        store.version,
        position.anchor if position else None,
        position.last_verified if position else None,
        store.generation(),
        *inputs,
    ]
    return hashlib.sha256(json.dumps(named).encode()).hexdigest()
