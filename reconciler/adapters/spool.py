"""Adapter, files: text lines sorted on disk, and files written with their digests, so
what a checkpoint holds (a history's rows: 200 MB at 100,000 commits) is never in memory
whole, only a bounded chunk of it.

Called by `app.checkpoints.publish`, in a folder of the repository's (`GitRepo.scratch`).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from msgspec import Struct

# Characters of lines held before a sorted run is written: the memory a checkpoint costs
# the service whatever the history's length (about 2 MB with the strings' own overhead).
SPOOL_CHARACTERS: Final = 1 << 18
# Runs open at once, at most: past that they are merged into one (a checkpoint of 100,000
# commits is about 800 runs), so the files held open stay few.
MAX_RUNS: Final = 64


class SortedSpool:
    """Lines (no line break in one) taken in any order and given back sorted, as `sorted`
    would. Past `limit` characters, those held are sorted and written to a run file in
    `folder`; the runs and what is held are merged as they are read back."""

    def __init__(self, folder: Path, limit: int = SPOOL_CHARACTERS) -> None:
        self._folder = folder
        self._limit = limit
        self._held: list[str] = []
        self._size = 0
        self._runs: list[Path] = []
        self._made = 0

    def add(self, line: str) -> None:
        self._held.append(line)
        self._size += len(line)
        if self._size >= self._limit:
            self._held.sort()
            self._runs.append(self._run(self._held))
            self._held, self._size = [], 0
            if len(self._runs) >= MAX_RUNS:
                with _read(self._runs) as runs:
                    merged = self._run(heapq.merge(*runs))
                for run in self._runs:
                    run.unlink()
                self._runs = [merged]

    def sorted(self) -> Iterator[str]:
        """Every line added, sorted: the runs, each read a line at a time, and what is held,
        merged."""
        self._held.sort()
        with _read(self._runs) as runs:
            yield from heapq.merge(*runs, self._held)

    def _run(self, lines: Iterable[str]) -> Path:
        """A new run file of `lines`, sorted already."""
        run = self._folder / f"run-{self._made}"
        self._made += 1
        with run.open("w", encoding="utf-8", newline="\n") as written:
            written.writelines(f"{line}\n" for line in lines)
        return run


@contextlib.contextmanager
def _read(runs: list[Path]) -> Iterator[list[Iterator[str]]]:
    """The lines of each of `runs`, without their line breaks (merged with them, a line
    holding a character below the line break would sort after one it sorts before)."""
    with contextlib.ExitStack() as files:
        opened = [files.enter_context(run.open(encoding="utf-8", newline="\n")) for run in runs]
        yield [(line[:-1] for line in file) for file in opened]


class Written(Struct, frozen=True):
    """A file `write_lines` wrote, and the digests of its bytes."""

    path: Path
    sha256: str  # hex
    sha512: bytes


def write_lines(path: Path, lines: Iterator[str]) -> Written:
    """`lines` written to `path`, each ended with a line break (ASCII), its SHA-256 and
    SHA-512 made as it is written, 256 lines at a time: one write and one hash update a
    chunk rather than a line."""
    sha256, sha512 = hashlib.sha256(), hashlib.sha512()
    with path.open("wb") as written:
        while batch := list(itertools.islice(lines, 256)):
            data = "".join(f"{line}\n" for line in batch).encode("ascii")
            sha256.update(data)
            sha512.update(data)
            written.write(data)
    return Written(path, sha256.hexdigest(), sha512.digest())
