"""Adapter, git: reading `git log --raw -t -z` output into history entries.

Pure: functions over the text `gitrepo.GitRepo.history` streams from its process.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from typing import Final

from reconciler.adapters.gitobjects import TREE_MODE, Change, HistoryEntry

RECORD_SEPARATOR: Final = "\x1e"


def decoded(blocks: Iterable[bytes]) -> Iterator[str]:
    # Incremental: a character split between two blocks is decoded whole.
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    for block in blocks:
        yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


def parse_log(chunks: Iterator[str]) -> Iterator[HistoryEntry]:
    """Parse `git log --raw -t -z --format=<RS>%H %P` output, one commit at a time.

    Tokens are NUL-separated; a path always follows its `:meta` token, so a
    path containing any byte (even the record separator) is read as a path.
    """
    current: list[str] | None = None
    changes: list[Change] = []
    folders: list[Change] = []
    meta: str | None = None
    for token in _tokens(chunks):
        if meta is not None:
            old_mode, new_mode, old_blob, new_blob, _status = meta[1:].split(" ")
            change = Change(token, old_mode, new_mode, old_blob, new_blob)
            (folders if TREE_MODE in (old_mode, new_mode) else changes).append(change)
            meta = None
            continue
        text = token.lstrip("\n")
        if text.startswith(RECORD_SEPARATOR):
            if current is not None:
                yield HistoryEntry(current[0], tuple(current[1:]), tuple(changes), tuple(folders))
            current = text[1:].split()
            changes = []
            folders = []
        elif text.startswith(":"):
            meta = text
    if current is not None:
        yield HistoryEntry(current[0], tuple(current[1:]), tuple(changes), tuple(folders))


def _tokens(chunks: Iterator[str]) -> Iterator[str]:
    pending = ""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split("\0")
        yield from complete
    if pending:
        yield pending
