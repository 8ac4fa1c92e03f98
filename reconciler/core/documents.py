"""Core, shared: a loaded YAML file as the rules read it (`Document`), and where its
values stand (`Position`, `JsonPath`).

`loader` makes them from bytes with PyYAML; the schema checks, the validators and the
read-ahead name them without loading PyYAML, so a command that parses nothing (`plan`,
`status`, `history` and `access` on a state that holds the tip) never imports it.
`yaml_data` is the one way to a file's data that loads PyYAML at its first use.
"""

from __future__ import annotations

from typing import Any, Final

from msgspec import Struct

MAX_FILE_BYTES: Final = 4 * 1024 * 1024

JsonPath = tuple[str | int, ...]


class Position(Struct, frozen=True):
    """1-based line and column of a node's first character."""

    line: int
    column: int


# Where a node starts: 0-based line and column, as libyaml counts them.
Where = tuple[int, int]


class Document(Struct, frozen=True):
    """One loaded file: its data and where every value (and every key) stands."""

    path: str
    data: Any
    # Plain (line, column) tuples, 0-based: a `Position` is built only for
    # the few paths a finding asks about, not for every node loaded. (Tuples
    # of small ints also cost the garbage collector nothing once it has seen
    # them; a Position or a libyaml mark it would scan again and again.)
    values: dict[JsonPath, Where]
    keys: dict[JsonPath, Where]
    # Original text of plain scalars that did not load as strings, for hints
    # such as "1.10 was read as the number 1.1".
    plain_text: dict[JsonPath, str]

    def __repr__(self) -> str:  # the maps of positions say nothing to a reader
        return f"Document(path={self.path!r}, data={self.data!r})"

    def position(self, path: JsonPath) -> Position:
        """The value at `path`, or the nearest ancestor that exists."""
        while path not in self.values and path:
            path = path[:-1]
        where = self.values.get(path)
        return Position(1, 1) if where is None else Position(where[0] + 1, where[1] + 1)

    def key_position(self, path: JsonPath) -> Position:
        """The key of the mapping entry at `path` (its value when it has no key)."""
        where = self.keys.get(path)
        return self.position(path) if where is None else Position(where[0] + 1, where[1] + 1)


def yaml_data(raw: bytes, path: str) -> Any:
    """The data of one YAML file as the loader reads it (`ConfigError` if it does not
    load), PyYAML loaded at the first file that needs it: a command that reads its files'
    data from the state, or only names documents, never imports it."""
    from reconciler.core.loader import load  # noqa: PLC0415

    return load(raw, path).data
