"""Core, shared: a checkpoint's rows cut into sections, so a reader loads what it asks for.

A pull-request check judges a few commits on top of a checkpoint of a long
history: it asks for the first carriers of a few payloads, the versions, editors
and sign-offs of the few plans the merge reaches, and the runs still open. The
whole rows file (`core.checkpoint`) costs what the history holds to read, hash
and load (200 MB at 100,000 commits); its sections cost what is asked.

The service publishes the sections beside the rows file, in the same checkpoint
commit: one blob each, named by what they hold (`section_of_*`), and one signed
index (`Index`) binding the header, the rows file's digest and every section's
SHA-256. A reader checks the index's signature once, then each section's digest
when it loads it (`docs/design.md, "Checkpoints"`).

Which section holds a row is one rule per key here: the store asks by key and
loads the sections these functions name, and a question with no key (every
event of a kind, every plan version) loads every section of its table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from msgspec import Struct

from reconciler.core.checkpoint import (
    CheckpointUnreadable,
    Header,
    canonical_line,
    column_of,
    row_line,
    split_tables,
)

FORMAT: Final = 1
# Its own namespace: no rows file, commit or tag a key signs passes for an index.
NAMESPACE: Final = b"reconciler-checkpoint-sections"
CORE: Final = "core"
LANDINGS: Final = "landings"
# The events table's kinds, in the sections that hold them (`journal.event_kind`).
EVENT_GROUPS: Final[Mapping[str, str]] = {
    "edit": "events.edit",
    "approve": "events.signoff",
    "deploy": "events.signoff",
    "retry": "events.signoff",
    "record": "events.record",
    "lock": "events.lock",
    "ignored": "events.ignored",
}
OTHER_EVENTS: Final = "events.other"  # a kind this code does not know: read with any kind
# Keyed tables are cut into this many sections each, by the key's hash: a section of a
# 100,000-commit history is a few hundred kilobytes, and the index stays small.
_BUCKETS: Final = 256
# Tables whose integer key SQLite numbers itself: the core holds each one's last row, so
# a row added before its section is loaded is numbered after every row of the checkpoint.
_NUMBERED: Final = ("landings", "plan_versions", "events")


# A section's rows per table: each table's as one JSON array's text (for SQLite to parse),
# or decoded where a row holds bytes (a file name that is not UTF-8).
SectionRows = Mapping[str, str] | Mapping[str, list[list[Any]]]


class Index(Struct, frozen=True):
    """What the service signs: the checkpoint's header, its rows file's digest, and every
    section's SHA-256 by name."""

    header: Header
    rows: str  # the rows file's digest (`checkpoint.digest`), as the commit names it
    sections: Mapping[str, str]  # name -> "sha256:<hex>"
    # name -> its Git blob id: a reader checks the folder holds these before it loads any,
    # so a section swapped on the ref passes the checkpoint over, never stops a walk.
    blobs: Mapping[str, str]
    # The root commits of the described commit's history, as the service's clone holds
    # them: a reader that takes the anchor from a pinned key's checkpoint learns from them,
    # without a search of the history, whether it is the only one (another repository's
    # history merged in brings its own root, and that repository's checkpoints). None: an
    # index from before they were named, which such a reader searches for them.
    roots: tuple[str, ...] | None = None


def section_of_payload(digest: str) -> str:
    return f"payloads.{_bucket(digest)}"


def section_of_seen(commit: str) -> str:
    return f"seen.{_bucket(commit)}"


def section_of_versions(path: str | bytes) -> str:
    return f"versions.{_bucket(path)}"


def section_of_editors(path: str | bytes) -> str:
    return f"editors.{_bucket(path)}"


def sections_of_events(kinds: Iterable[str]) -> frozenset[str]:
    return frozenset(EVENT_GROUPS.get(kind, OTHER_EVENTS) for kind in kinds) | {OTHER_EVENTS}


def _bucket(key: str | bytes) -> str:
    raw = key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
    return f"{hashlib.sha256(raw).digest()[0] % _BUCKETS:02x}"


def every_section(prefix: str, names: Iterable[str]) -> frozenset[str]:
    """The sections named `names` whose name starts with `prefix` (a table's, all)."""
    return frozenset(name for name in names if name.startswith(prefix))


def cut(rows: Mapping[str, list[list[Any]]], open_runs: Iterable[str]) -> dict[str, bytes]:
    """The sections of a checkpoint's rows (`StateStore.journal_rows`): name -> bytes, each
    its distinct `placed` lines, sorted. (The service writes the same bytes a chunk at a
    time: `app.checkpoints.publish`.)"""
    found: dict[str, set[str]] = {CORE: set()}
    every_row = ((table, row) for table, table_rows in rows.items() for row in table_rows)
    for section, line, _ in placed(every_row, open_runs):
        found.setdefault(section, set()).add(line)
    return {
        name: "".join(f"{line}\n" for line in sorted(lines)).encode("ascii")
        for name, lines in found.items()
    }


def placed(
    rows: Iterable[tuple[str, list[Any]]], open_runs: Iterable[str]
) -> Iterator[tuple[str, str, bool]]:
    """Each line of the sections of `rows` (table and row, in any order), with the section
    it goes to and whether it is a row's own line (the rows file holds exactly those), in
    no order, a commit seen as often as it landed. Besides each row's own: two tables a
    fresh state derives when it loads the whole file, `seen` (the anchor and every landed
    commit) and `open_runs`; and in the core, the last row of each table SQLite numbers
    (`_NUMBERED`)."""
    last: dict[str, list[Any]] = {}
    for table, row in rows:
        line = row_line(table, row)
        if table in ("meta", "effective", "dirty"):
            yield CORE, line, True
            if table == "meta" and row[0] == "anchor":
                yield section_of_seen(row[1]), row_line("seen", [row[1]]), False
        elif table == "landings":
            yield LANDINGS, line, True
            for commit in json.loads(row[2]).get("landed", ()):
                yield section_of_seen(commit), row_line("seen", [commit]), False
        elif table == "payloads":
            yield section_of_payload(row[0]), line, True
        elif table == "plan_versions":
            yield section_of_versions(row[1]), line, True
        elif table == "editors":
            yield section_of_editors(row[0]), line, True
        elif table == "events":
            yield EVENT_GROUPS.get(row[3], OTHER_EVENTS), line, True
        if table in _NUMBERED and (table not in last or int(row[0]) > int(last[table][0])):
            last[table] = row
    for run in set(open_runs):
        yield CORE, row_line("open_runs", [run]), False
    for table, row in last.items():
        yield CORE, row_line(table, row), False


def spooled(section: str, line: str) -> str:
    """`section` and `line` as one text that sorts as the pair does: a tab sorts before
    every character of a section's name, and no line holds one (`checkpoint.row_line`)."""
    return f"{section}\t{line}"


def unspooled(text: str) -> tuple[str, str]:
    section, _, line = text.partition("\t")
    return section, line


def encode_index(index: Index) -> bytes:
    head = index.header
    value = {
        "sections": FORMAT,
        "anchor": head.anchor,
        "branch": head.branch,
        "commit": head.commit,
        "journal": head.journal,
        "rows": index.rows,
        "digests": dict(index.sections),
        "blobs": dict(index.blobs),
    }
    if index.roots is not None:
        value["roots"] = sorted(index.roots)
    return (canonical_line(value) + "\n").encode("ascii")


def decode_index(data: bytes) -> Index:
    """The index of signed bytes, or `CheckpointUnreadable`."""
    try:
        value = json.loads(data.decode("ascii"))
        header = Header(value["anchor"], value["branch"], value["commit"], value["journal"])
        found_format, rows, digests = value["sections"], value["rows"], value["digests"]
        blobs, roots = value["blobs"], value.get("roots")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise CheckpointUnreadable("its section index is not one") from None
    if found_format != FORMAT:
        raise CheckpointUnreadable(f"its sections' format is {found_format!r}, not {FORMAT}")
    texts = (header.anchor, header.branch, header.commit, rows)
    if not all(isinstance(part, str) for part in texts) or not isinstance(digests, dict):
        raise CheckpointUnreadable("its section index names no commit")
    if roots is not None and not (
        isinstance(roots, list) and all(isinstance(root, str) for root in roots)
    ):
        raise CheckpointUnreadable("its section index names no root commits")
    if not isinstance(blobs, dict) or set(blobs) != set(digests):
        raise CheckpointUnreadable("its section index names no blob for a section")
    for named in (digests, blobs):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in named.items()):
            raise CheckpointUnreadable("its section index names a section by no digest")
    if CORE not in digests:
        raise CheckpointUnreadable("its section index has no core section")
    return Index(header, rows, digests, blobs, None if roots is None else tuple(roots))


def section_rows(data: bytes) -> SectionRows:
    """A section's rows per table, or `CheckpointUnreadable`."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CheckpointUnreadable("a section is not ASCII") from None
    if text and not text.endswith("\n"):
        raise CheckpointUnreadable("a section does not end with a line break")
    split = split_tables(text)
    if split is not None:
        return split
    decoded: dict[str, list[list[Any]]] = {}
    try:
        for line in text.splitlines():
            row = json.loads(line)
            if not isinstance(row, list) or not row or not isinstance(row[0], str):
                raise CheckpointUnreadable("a row is not a table's")
            decoded.setdefault(row[0], []).append([column_of(value) for value in row[1:]])
    except (ValueError, TypeError) as error:
        if isinstance(error, CheckpointUnreadable):
            raise
        raise CheckpointUnreadable("a section is not rows") from None
    return decoded
