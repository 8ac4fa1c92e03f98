"""Adapter, git: which trees the commits of a walk bring are malformed, read as little as proves it.

Pure but for the trees it asks its `TreeSource` (a `GitRepo`) for.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, Final, Protocol

from reconciler.gitobjects import ABSENT_MODE, NULL_OID, TREE_MODE, Change, HistoryEntry
from reconciler.gittrees import name_problem, raw_entries, tree_entries, tree_problem


class TreeSource(Protocol):
    """What `TreeChecks` reads trees through (`GitRepo`)."""

    @property
    def object_format(self) -> str: ...

    def blob_sizes(self, oids: list[str]) -> dict[str, int]: ...

    def tree_data(self, oid: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class _Sound:
    """A tree known to be well-formed: its bytes, and its entries' sort keys and offsets.

    The bytes are shared with the tree it was found from, but for the entries in
    `patched` (a copy of 56 KB per commit was most of what checking it cost).
    """

    data: bytes
    keys: list[bytes]
    starts: list[int]
    patched: Mapping[int, bytes] = field(default_factory=dict)  # entry index -> its bytes

    PATCHES: ClassVar[int] = 64  # at most, then the bytes are copied with them

    def entry(self, at: int) -> bytes:
        patch = self.patched.get(at)
        if patch is not None:
            return patch
        end = self.starts[at + 1] if at + 1 < len(self.starts) else len(self.data)
        return self.data[self.starts[at] : end]

    def entries(self) -> list[bytes]:
        return [self.entry(at) for at in range(len(self.starts))]

    def with_patches(self, patched: dict[int, bytes]) -> _Sound:
        if len(patched) <= self.PATCHES:
            return _Sound(self.data, self.keys, self.starts, patched)
        data = bytearray(self.data)
        for at, entry in patched.items():
            data[self.starts[at] : self.starts[at] + len(entry)] = entry
        return _Sound(bytes(data), self.keys, self.starts)


_EMPTY_TREE: Final = _Sound(b"", [], [])


@dataclass(frozen=True, slots=True)
class _Level:
    """A folder a commit changed (the root: ""), its trees before and after (None: absent),
    and the changes git's diff shows directly in it (None: unknown, the folder was shown
    more than once)."""

    path: str
    old: str | None
    new: str | None
    changes: list[Change] | None


class TreeChecks:
    """Which trees the commits of a walk bring are malformed, by `tree_problem`.

    Reading every new tree whole would cost more than the walk (a plans/ folder of
    a thousand files is a new 56 KB tree at nearly every commit). So a tree is read
    whole only when nothing else proves it well-formed. What does: its id was found
    well-formed before (remembered by id), or it is its first parent's well-formed
    tree with exactly the changes git's diff shows in that folder. Git's diff walks
    both trees' entries in order; when it shows no added entry, every entry of the
    new tree was paired, in order, with one of the old (sorted) tree, so the new
    tree is sorted, its names are the old ones, and its size, which git reports
    cheaply, tells that no mode is zero-padded (a file mode spelt otherwise with
    as many digits, such as 100600, which git reads as 100644 everywhere, is seen
    only where a tree is read whole). When the diff shows added entries, the tree
    the changes describe is rebuilt here and its id computed: the new tree is
    well-formed exactly when the ids are equal.

    Where a tree on either side is malformed, git's diff pairs entries at random:
    the commit's changes there are read again with `tree_entries`, so the walk
    takes them the way records rebuild such a folder.
    """

    KEPT: Final = 512  # well-formed trees remembered (and as many malformed ones)

    def __init__(self, repo: TreeSource) -> None:
        self._repo = repo
        self._sound: dict[str, _Sound] = {}
        self._bad: dict[str, str] = {}
        self._hash = hashlib.sha256 if repo.object_format == "sha256" else hashlib.sha1

    def read(
        self, entries: list[HistoryEntry], roots: Mapping[str, str]
    ) -> dict[str, HistoryEntry]:
        """The `entries` (parents first) the walk must take otherwise: those that bring a
        malformed tree (`malformed` says which and why) or whose changes were read again.

        `roots`: the root tree of every entry and of its first parent.
        """
        levels = [(entry, _levels_of(entry, roots)) for entry in entries]
        unknown = {
            level.new
            for _, found in levels
            for level in found or ()
            if level.new is not None and level.new not in self._sound
        }
        sizes = self._repo.blob_sizes(sorted(unknown))
        taken: dict[str, HistoryEntry] = {}
        for entry, found in levels:
            if found is None:  # a commit or first parent that could not be read
                continue
            problem: tuple[str, str] | None = None
            as_diffed = True
            for level in found:
                new_problem, reliable = self._check(level, sizes)
                if new_problem is not None and problem is None:
                    problem = (level.path, f"{new_problem} (tree {level.new})")
                as_diffed = as_diffed and reliable
            if problem is None and as_diffed:
                continue
            changes = entry.changes
            if not as_diffed:
                first = entry.parents[0] if entry.parents else None
                old = roots.get(first) if first is not None else None
                changes = tuple(self._compare(old, roots[entry.id], ""))
            taken[entry.id] = replace(entry, changes=changes, malformed=problem)
        return taken

    def _check(self, level: _Level, sizes: Mapping[str, int]) -> tuple[str | None, bool]:
        """Why the level's new tree is malformed (None: it is not), and whether git's diff
        of the level can be taken as it is (both trees well-formed)."""
        old_problem = None if level.old is None else self.problem(level.old)
        if level.new is None or level.new == level.old:
            return None, old_problem is None
        if level.new in self._sound:
            new_problem = None
        elif level.new in self._bad:
            new_problem = self._bad[level.new]
        elif old_problem is None and self._edited(level, sizes.get(level.new)):
            new_problem = None
        else:
            new_problem = self.problem(level.new)
        return new_problem, old_problem is None and new_problem is None

    def problem(self, tree: str) -> str | None:
        """`tree_problem` of a tree read whole (when not known already)."""
        if tree in self._sound:
            return None
        known = self._bad.get(tree)
        if known is not None:
            return known
        data = self._repo.tree_data(tree)
        if data is None:
            problem: str | None = "the object is missing or is no tree"
        else:
            problem = tree_problem(data)
            if problem is None:
                self._remember(tree, _sound(data))
                return None
        if len(self._bad) >= self.KEPT:
            del self._bad[next(iter(self._bad))]
        self._bad[tree] = problem or ""
        return problem

    def _edited(self, level: _Level, size: int | None) -> bool:
        """Whether the level's new tree is its old one (well-formed) with the diff's changes."""
        if level.changes is None or size is None or level.new is None:
            return False
        base = _EMPTY_TREE if level.old is None else self._sound.get(level.old)
        if base is None:
            return False
        cut = len(level.path) + 1 if level.path else 0
        edits = [
            (change, change.path[cut:].encode("utf-8", "surrogateescape"))
            for change in level.changes
        ]
        # Nearly every commit changes files in place: the entries keep their order and,
        # their modes as long as before, their places in the bytes.
        patched = dict(base.patched)
        keys, starts = base.keys, base.starts
        for change, name in edits:
            if ABSENT_MODE in (change.old_mode, change.new_mode):
                sound = self._rebuilt(base, edits, level.new)
                break
            folder = change.new_mode == TREE_MODE
            key = name + b"/" if folder else name
            at = bisect.bisect_left(keys, key)
            if at == len(keys) or keys[at] != key or (change.old_mode == TREE_MODE) != folder:
                return False
            mode = b"40000" if folder else change.new_mode.encode()
            entry = mode + b" " + name + b"\0" + _raw_id(change.new_blob)
            end = starts[at + 1] if at + 1 < len(starts) else len(base.data)
            if len(entry) != end - starts[at]:
                return False  # no mode git writes changes length in place: read it whole
            patched[at] = entry
        else:
            sound = base.with_patches(patched)
        if sound is None or len(sound.data) != size:
            return False
        self._remember(level.new, sound)
        return True

    def _rebuilt(self, base: _Sound, edits: list[tuple[Change, bytes]], tree: str) -> _Sound | None:
        """`base` with the edits' old sides out and new sides in, when that is the tree
        named `tree`; None when it is not, or when an edit does not fit `base`."""
        keys, entries = list(base.keys), base.entries()
        added = False
        # Every old side out first, then every new side in (a file becoming a folder
        # of the same name is shown as the one's deletion and the other's addition).
        for change, name in edits:
            if change.old_mode == ABSENT_MODE:
                added = True
                continue
            key = name + b"/" if change.old_mode == TREE_MODE else name
            at = bisect.bisect_left(keys, key)
            if at == len(keys) or keys[at] != key or entries[at][-20:] != _raw_id(change.old_blob):
                return None
            del keys[at], entries[at]
        for change, name in edits:
            if change.new_mode == ABSENT_MODE:
                continue
            folder = change.new_mode == TREE_MODE
            key, other = (name + b"/", name) if folder else (name, name + b"/")
            at = bisect.bisect_left(keys, key)
            if (at < len(keys) and keys[at] == key) or _holds(keys, other) or name_problem(name):
                return None
            mode = b"40000" if folder else change.new_mode.encode()
            keys.insert(at, key)
            entries.insert(at, mode + b" " + name + b"\0" + _raw_id(change.new_blob))
        data = b"".join(entries)
        header = b"tree %d\0" % len(data)
        if added and self._hash(header + data, usedforsecurity=False).hexdigest() != tree:
            return None  # an added entry out of its place, or an entry git did not show
        starts = list(itertools.accumulate((len(entry) for entry in entries[:-1]), initial=0))
        return _Sound(data, keys, starts if entries else [])

    def _remember(self, tree: str, sound: _Sound) -> None:
        if len(self._sound) >= self.KEPT:
            del self._sound[next(iter(self._sound))]  # the oldest
        self._sound[tree] = sound

    def _compare(self, old: str | None, new: str | None, path: str) -> list[Change]:
        """The file changes from tree `old` to tree `new` (None: absent) under `path`,
        both read with `tree_entries`."""
        before = self._entries(old)
        after = self._entries(new)
        changes: list[Change] = []
        for name in sorted(before.keys() | after.keys()):
            here = f"{path}/{name}" if path else name
            old_mode, old_id = before.get(name, (ABSENT_MODE, NULL_OID))
            new_mode, new_id = after.get(name, (ABSENT_MODE, NULL_OID))
            if (old_mode, old_id) == (new_mode, new_id):
                continue
            old_folder, new_folder = old_mode == "40000", new_mode == "40000"
            if old_folder or new_folder:
                changes += self._compare(
                    old_id if old_folder else None, new_id if new_folder else None, here
                )
            if old_folder:
                old_mode, old_id = ABSENT_MODE, NULL_OID
            if new_folder:
                new_mode, new_id = ABSENT_MODE, NULL_OID
            if (old_mode, new_mode) != (ABSENT_MODE, ABSENT_MODE):
                changes.append(Change(here, old_mode, new_mode, old_id, new_id))
        return changes

    def _entries(self, tree: str | None) -> dict[str, tuple[str, str]]:
        if tree is None:
            return {}
        data = self._repo.tree_data(tree)
        return {} if data is None else tree_entries(data)


def _levels_of(entry: HistoryEntry, roots: Mapping[str, str]) -> list[_Level] | None:
    """The folders `entry` changed, each with the changes git's diff shows directly in it.

    A change goes to the closest folder above it that the diff shows as changed (a
    name holding '/' in a malformed tree looks like a path into a folder that is not).
    """
    root = roots.get(entry.id)
    first = entry.parents[0] if entry.parents else None
    old_root = roots.get(first) if first is not None else None
    if root is None or (first is not None and old_root is None):
        return None
    if root == old_root:
        return []  # an empty commit (an approval, a trigger, a start record)
    shown: dict[str, list[Change]] = {}
    for folder in entry.folders:
        shown.setdefault(folder.path, []).append(folder)
    direct: dict[str, list[Change]] = {}
    for change in (*entry.changes, *entry.folders):
        parent = change.path.rpartition("/")[0]
        while parent and parent not in shown:
            parent = parent.rpartition("/")[0]
        direct.setdefault(parent, []).append(change)
    levels = [_Level("", old_root, root, direct.get("", []))]
    for path, folders in shown.items():
        inside = direct.get(path, []) if len(folders) == 1 else None
        for folder in folders:
            old = _tree_side(folder.old_mode, folder.old_blob)
            levels.append(_Level(path, old, _tree_side(folder.new_mode, folder.new_blob), inside))
    return levels


def _tree_side(mode: str, oid: str) -> str | None:
    return oid if mode == TREE_MODE else None


def _holds(keys: list[bytes], key: bytes) -> bool:
    at = bisect.bisect_left(keys, key)
    return at < len(keys) and keys[at] == key


def _raw_id(oid: str) -> bytes:
    return bytes.fromhex(oid)


def _sound(data: bytes) -> _Sound:
    """The parts of a tree `tree_problem` accepted."""
    keys: list[bytes] = []
    starts: list[int] = []
    start = 0
    for mode, name, _, end in raw_entries(data):
        keys.append(name + b"/" if mode == b"40000" else name)
        starts.append(start)
        start = end
    return _Sound(data, keys, starts)
