"""App: answers the state keeps beside its rows, and the key each is kept under.

The last decisions (`pipeline.decided_from_state`) and the audit trail
(`history.audit_trail`) are made from the state's rows by this code. Kept, they
answer `plan`, `status` and `history` without reading every row again, but
only under the key of the state and code that made them: the state's position
and generation (every kept change of its rows), its journal format, and a
digest of the code. A key that differs, or a text that does not decode, and
the answer is made again; a kept answer is a shortcut, never a source.

The environment and deployment files' parsed YAML (`parsed_documents`) is
kept by blob, which names its bytes, under the digest of the code that parsed
them: the same blob parses to the same values whatever the state, so `plan`,
`status` and `access` build the policy and read what runs where without
loading YAML.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec
from msgspec import Struct

from reconciler.core import journal
from reconciler.core.documents import yaml_data

if TYPE_CHECKING:
    from reconciler.adapters.gitrepo import GitRepo
    from reconciler.adapters.statestore import StateStore

# The names the state keeps each answer under (`StateStore.keep_answer`).
DECISIONS: Final = "decisions"
TRAIL: Final = "trail"
PARSED: Final = "parsed"


@functools.cache
def rules_digest() -> str:
    """The code that decides, as one digest: its version number stays 0.1.0 while its
    rules change, and answers kept by other rules must not answer for these."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # The adapters too: the state's queries and Git's reading feed the rules their inputs.
    # Listed and read with os, not pathlib's glob: a third of what `plan` spends here.
    sources = []
    for part in ("adapters", "app", "core"):
        with os.scandir(os.path.join(package, part)) as listed:
            sources += [
                (f"{part}/{entry.name}", entry.path)
                for entry in listed
                if entry.name.endswith(".py")
            ]
    digest = hashlib.sha256()
    for name, path in sorted(sources):
        with open(path, "rb") as source:
            digest.update(name.encode() + b"\0" + source.read() + b"\0")
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


class _KeptParsed(Struct, frozen=True, forbid_unknown_fields=True):
    key: str  # the code that parsed them (`rules_digest`)
    documents: dict[str, Any]  # blob -> the document's data


_PARSED: Final = msgspec.json.Decoder(_KeptParsed)


def parsed_documents(
    store: StateStore | None, repo: GitRepo, files: Mapping[str, str], kind: str
) -> dict[str, Any]:
    """The data of `files` (path -> blob) of one `kind` (environments, deployments) as the
    loader reads it, by path: those the state keeps parsed by this code (by blob) read
    back, the others parsed and then kept in their place (`ConfigError` for one that does
    not load). Without a store, each is parsed."""
    known = parsed(store, kind, files.values()) if store is not None else {}
    found = {
        path: known[blob] if blob in known else yaml_data(repo.read_blob(blob), path)
        for path, blob in files.items()
    }
    if store is not None and not set(files.values()) <= set(known):
        keep_parsed(store, kind, {blob: found[path] for path, blob in files.items()})
    return found


def parsed(store: StateStore, kind: str, blobs: Iterable[str]) -> dict[str, Any]:
    """The data of the documents in `blobs` that the state keeps parsed by this code."""
    text = store.kept_answer(f"{PARSED} {kind}")
    if text is None:
        return {}
    try:
        kept = _PARSED.decode(text)
    except msgspec.DecodeError:  # edited by hand, or another version's: parsed again
        return {}
    if kept.key != rules_digest():
        return {}
    return {blob: kept.documents[blob] for blob in blobs if blob in kept.documents}


def keep_parsed(store: StateStore, kind: str, found: Mapping[str, Any]) -> None:
    """Keep `found` (blob -> data) in place of the `kind` kept before: each that reads
    back identical (JSON holds what the loader makes, which keeps timestamps as text; a
    key that is no string, or a NaN, does not, and that document is parsed each time)."""
    same = {}
    for blob, data in found.items():
        try:
            again = msgspec.json.decode(msgspec.json.encode(data))
        except (msgspec.EncodeError, msgspec.DecodeError, TypeError, ValueError):
            continue
        if identical(again, data):
            same[blob] = data
    if same:
        text = msgspec.json.encode(_KeptParsed(rules_digest(), same)).decode()
        store.keep_answer(f"{PARSED} {kind}", text)


def identical(left: object, right: object) -> bool:
    """Equal and of the same types all the way down (to Python, 1 == 1.0 == True)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return list(left) == list(right) and all(
            identical(key, other) and identical(left[key], right[other])
            for key, other in zip(left, right, strict=True)
        )
    if isinstance(left, list):
        assert isinstance(right, list)
        return len(left) == len(right) and all(
            identical(one, two) for one, two in zip(left, right, strict=True)
        )
    return left == right
