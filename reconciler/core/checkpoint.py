"""Core, shared: a checkpoint, what a walk verified up to one commit, as canonical bytes.

Made by the service (`app.checkpoints.publish`) from its state's rows, and read
back by any later walk that trusts its signature (`app.checkpoints.newest`):
one header line binding the rows to a repository (its trust anchor), a branch,
the commit they describe and the journal format of their rows, then one JSON
line per row, sorted, so the same state always makes the same bytes, named by
their SHA-256 (`docs/design.md, "Checkpoints"`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from msgspec import Struct

FORMAT: Final = 1
# The SSHSIG namespace checkpoints are signed in: no commit, tag or other file a
# key signs in another namespace can pass for one, nor a checkpoint for them.
NAMESPACE: Final = b"reconciler-checkpoint"


class CheckpointUnreadable(ValueError):
    """Bytes that are no checkpoint of this format; the message says why."""


class Header(Struct, frozen=True):
    anchor: str  # the trust anchor of the state the rows are
    branch: str  # the branch it follows
    commit: str  # the last verified commit: the walk goes on from here
    journal: int  # the journal format of the rows (`journal.VERSION`)


def encode(header: Header, rows: Mapping[str, Iterable[list[Any]]]) -> bytes:
    """The canonical bytes of `rows` (table -> rows of column values) under `header`: its
    `header_line`, then every `row_line`, sorted. (The service writes the same bytes a
    chunk at a time: `app.checkpoints.publish`.)"""
    lines = sorted(row_line(table, row) for table, table_rows in rows.items() for row in table_rows)
    return "".join(f"{line}\n" for line in [header_line(header), *lines]).encode("ascii")


def header_line(header: Header) -> str:
    """The first line of a checkpoint (without its line break)."""
    head = {
        "checkpoint": FORMAT,
        "anchor": header.anchor,
        "branch": header.branch,
        "commit": header.commit,
        "journal": header.journal,
    }
    return canonical_line(head)


def row_line(table: str, row: Iterable[object]) -> str:
    """The line of one row of `table` (without its line break): ASCII, no tab or line break
    in it (JSON escapes them), so lines sort and split alike everywhere."""
    return canonical_line([table, *(json_column(column) for column in row)])


def decode(data: bytes) -> tuple[Header, dict[str, list[list[Any]]]]:
    """The header and the rows of checkpoint bytes, or `CheckpointUnreadable`."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CheckpointUnreadable("it is not ASCII") from None
    lines = text.split("\n")
    if len(lines) < 2 or lines[-1] != "":
        raise CheckpointUnreadable("it does not end with a line break")
    try:
        head = json.loads(lines[0])
        header = Header(head["anchor"], head["branch"], head["commit"], head["journal"])
        if head["checkpoint"] != FORMAT:
            raise CheckpointUnreadable(f"its format is {head['checkpoint']!r}, not {FORMAT}")
        if not all(isinstance(part, str) for part in (header.anchor, header.branch, header.commit)):
            raise CheckpointUnreadable("its header names no commit")
        # One parse of every row (a history's worth of them): not one call a line.
        parsed = json.loads("[" + ",".join(lines[1:-1]) + "]")
        # Only a file name that is not UTF-8 is written as an object (`json_column`).
        objects = '{"bytes":' in text
        rows: dict[str, list[list[Any]]] = {}
        for row in parsed:
            if not isinstance(row, list) or not row or not isinstance(row[0], str):
                raise CheckpointUnreadable("a row is not a table's")
            values = [column_of(value) for value in row[1:]] if objects else row[1:]
            rows.setdefault(row[0], []).append(values)
    except (ValueError, KeyError, TypeError) as error:
        if isinstance(error, CheckpointUnreadable):
            raise
        raise CheckpointUnreadable(f"it is not a checkpoint ({type(error).__name__})") from None
    return header, rows


def tables(data: bytes) -> tuple[Header, dict[str, str] | None]:
    """The header, and each table's rows as one JSON array's text, not parsed here (the state
    store parses them, in SQLite); None for the rows when one holds bytes (`decode` them)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CheckpointUnreadable("it is not ASCII") from None
    end = text.find("\n")
    if end < 0 or not text.endswith("\n"):
        raise CheckpointUnreadable("it does not end with a line break")
    return _header(text[:end]), split_tables(text[end + 1 :])


def split_tables(body: str) -> dict[str, str] | None:
    """Sorted row lines, each table's as one JSON array's text; None when one holds bytes."""
    if '{"bytes":' in body:
        return None
    found: dict[str, str] = {}
    start = 0
    while start < len(body):
        if not body.startswith('["', start):
            raise CheckpointUnreadable("a row is not a table's")
        name = body[start + 2 : body.find('"', start + 2)]
        # Sorted: a table's rows are one run of lines, the last one found from the end.
        last = max(start, body.rfind(f'\n["{name}",') + 1)
        stop = body.index("\n", last) + 1
        chunk = body[start:stop]
        if name in found or chunk.count('\n["') != chunk.count(f'\n["{name}",'):
            raise CheckpointUnreadable("its rows are not sorted")
        found[name] = "[" + chunk[:-1].replace("\n", ",") + "]"
        start = stop
    return found


def _header(line: str) -> Header:
    try:
        head = json.loads(line)
        header = Header(head["anchor"], head["branch"], head["commit"], head["journal"])
        checkpoint_format = head["checkpoint"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointUnreadable("its header is not a checkpoint's") from None
    if checkpoint_format != FORMAT:
        raise CheckpointUnreadable(f"its format is {checkpoint_format!r}, not {FORMAT}")
    if not all(isinstance(part, str) for part in (header.anchor, header.branch, header.commit)):
        raise CheckpointUnreadable("its header names no commit")
    return header


def digest(data: bytes) -> str:
    """What a checkpoint is named by: the SHA-256 of its bytes."""
    return digest_named(hashlib.sha256(data).hexdigest())


def digest_named(sha256: str) -> str:
    """`digest` of the bytes whose SHA-256 is `sha256` (hex), made as they were written."""
    return f"sha256:{sha256}"


def canonical_line(value: object) -> str:
    return json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def json_column(column: object) -> object:
    """A column as JSON holds it: bytes (a file name that is not UTF-8) as base64."""
    if isinstance(column, bytes):
        return {"bytes": base64.b64encode(column).decode("ascii")}
    return column


def column_of(value: object) -> object:
    if isinstance(value, dict):
        return base64.b64decode(value["bytes"], validate=True)
    if isinstance(value, list):
        raise CheckpointUnreadable("a column holds a list")
    return value
