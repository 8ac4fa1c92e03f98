"""Adapter, git: which trees the commits of a walk bring are malformed, read as little as proves it.

Pure but for the trees it asks its `TreeSource` (a `GitRepo`) for.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Iterable, Mapping
from typing import ClassVar, Final, Protocol

from msgspec import Struct, field
from msgspec.structs import replace

from reconciler.adapters.gitobjects import ABSENT_MODE, NULL_OID, TREE_MODE, Change, HistoryEntry
from reconciler.adapters.gittrees import name_problem, raw_entries, tree_entries, tree_problem


class TreeSource(Protocol):
    """What `TreeChecks` reads trees through (`GitRepo`)."""

    @property
    def object_format(self) -> str: ...

    def blob_sizes(self, oids: list[str]) -> dict[str, int]: ...

    def tree_data(self, oid: str) -> bytes | None: ...


class _Sound(Struct, frozen=True):
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


class _Level(Struct, frozen=True):
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

    # Well-formed trees remembered (and as many malformed ones), for the commits after them
    # to be checked as edits. Each is one of main's folders, so together they hold this
    # many times main's largest: 512 held about 34 MB at the end of a full verify of 10,000
    # commits, and a service's grew with every plan. With 64, a walk of a history merging
    # every third landing reads no more trees whole than with no limit (32 read 14 where 8:
    # a merge's first parent's trees forgotten; `tests/test_walk_memory.py`), and a full
    # verify of the 10,000-commit history is no slower.
    KEPT: Final = 64

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
        sizes = self._repo.blob_sizes(self._unknown(found for _, found in levels))
        taken: dict[str, HistoryEntry] = {}
        for entry, found in levels:
            if found is None:  # a commit or first parent that could not be read
                continue
            retaken = self._retaken(entry, found, sizes, roots)
            if retaken is not None:
                taken[entry.id] = retaken
        return taken

    def _unknown(self, levels: Iterable[list[_Level] | None]) -> list[str]:
        """The new trees of `levels` not known well-formed, whose sizes the checks need."""
        return sorted(
            {
                level.new
                for found in levels
                for level in found or ()
                if level.new is not None and level.new not in self._sound
            }
        )

    def _retaken(
        self,
        entry: HistoryEntry,
        levels: list[_Level],
        sizes: Mapping[str, int],
        roots: Mapping[str, str],
    ) -> HistoryEntry | None:
        """`entry` as the walk must take it; None when as git's diff shows it."""
        problem: tuple[str, str] | None = None
        as_diffed = True
        for level in levels:
            new_problem, reliable = self._check(level, sizes)
            if new_problem is not None and problem is None:
                problem = (level.path, f"{new_problem} (tree {level.new})")
            as_diffed = as_diffed and reliable
        if problem is None and as_diffed:
            return None
        changes = entry.changes
        if not as_diffed:
            first = entry.parents[0] if entry.parents else None
            old = roots.get(first) if first is not None else None
            changes = tuple(self._compare(old, roots[entry.id], ""))
        return replace(entry, changes=changes, malformed=problem)

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
        base = self._base(level)
        if base is None or level.changes is None or size is None or level.new is None:
            return False
        sound = self._edit(base, _edits(level.path, level.changes), level.new)
        if sound is None or len(sound.data) != size:
            return False
        self._remember(level.new, sound)
        return True

    def _base(self, level: _Level) -> _Sound | None:
        """The level's old tree, when it is absent or known well-formed."""
        return _EMPTY_TREE if level.old is None else self._sound.get(level.old)

    def _edit(self, base: _Sound, edits: list[tuple[Change, bytes]], tree: str) -> _Sound | None:
        """`base` with the edits, when they fit it (see `_patch` and `_rebuilt`)."""
        # Nearly every commit changes files in place: the entries keep their order and,
        # their modes as long as before, their places in the bytes.
        patched = dict(base.patched)
        for change, name in edits:
            if ABSENT_MODE in (change.old_mode, change.new_mode):
                return self._rebuilt(base, edits, tree)
            patch = _patch(base, change, name)
            if patch is None:
                return None
            patched[patch[0]] = patch[1]
        return base.with_patches(patched)

    def _rebuilt(self, base: _Sound, edits: list[tuple[Change, bytes]], tree: str) -> _Sound | None:
        """`base` with the edits' old sides out and new sides in, when that is the tree
        named `tree`; None when it is not, or when an edit does not fit `base`."""
        keys, entries = list(base.keys), base.entries()
        # Every old side out first, then every new side in (a file becoming a folder
        # of the same name is shown as the one's deletion and the other's addition).
        if not _took_out(keys, entries, edits) or not _put_in(keys, entries, edits):
            return None
        data = b"".join(entries)
        header = b"tree %d\0" % len(data)
        added = any(change.old_mode == ABSENT_MODE for change, _ in edits)
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
            was = before.get(name, (ABSENT_MODE, NULL_OID))
            now = after.get(name, (ABSENT_MODE, NULL_OID))
            if was == now:
                continue
            old_tree, old_mode, old_id = _sides(*was)
            new_tree, new_mode, new_id = _sides(*now)
            if old_tree is not None or new_tree is not None:
                changes += self._compare(old_tree, new_tree, here)
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
    found = _root_trees(entry, roots)
    if found is None:
        return None
    old_root, root = found
    if root == old_root:
        return []  # an empty commit (an approval, a trigger, a start record)
    shown: dict[str, list[Change]] = {}
    for folder in entry.folders:
        shown.setdefault(folder.path, []).append(folder)
    direct = _direct_changes(entry, shown)
    levels = [_Level("", old_root, root, direct.get("", []))]
    for path, folders in shown.items():
        inside = direct.get(path, []) if len(folders) == 1 else None
        for folder in folders:
            old = _tree_side(folder.old_mode, folder.old_blob)
            levels.append(_Level(path, old, _tree_side(folder.new_mode, folder.new_blob), inside))
    return levels


def _root_trees(entry: HistoryEntry, roots: Mapping[str, str]) -> tuple[str | None, str] | None:
    """The root trees of `entry`'s first parent (None: it has none) and of `entry`; None
    when one of them could not be read."""
    root = roots.get(entry.id)
    first = entry.parents[0] if entry.parents else None
    old_root = roots.get(first) if first is not None else None
    if root is None or (first is not None and old_root is None):
        return None
    return old_root, root


def _direct_changes(
    entry: HistoryEntry, shown: Mapping[str, list[Change]]
) -> dict[str, list[Change]]:
    """`entry`'s changes by the closest folder above each that `shown` holds ("": the root)."""
    direct: dict[str, list[Change]] = {}
    for change in (*entry.changes, *entry.folders):
        parent = change.path.rpartition("/")[0]
        while parent and parent not in shown:
            parent = parent.rpartition("/")[0]
        direct.setdefault(parent, []).append(change)
    return direct


def _edits(path: str, changes: list[Change]) -> list[tuple[Change, bytes]]:
    """The changes in folder `path`, each with its name in that folder."""
    cut = len(path) + 1 if path else 0
    return [(change, change.path[cut:].encode("utf-8", "surrogateescape")) for change in changes]


def _patch(base: _Sound, change: Change, name: bytes) -> tuple[int, bytes] | None:
    """Where in `base` the entry `change` edits in place sits, and its new bytes; None
    when it is not there, turns file to folder or back, or changes length."""
    folder = change.new_mode == TREE_MODE
    key = name + b"/" if folder else name
    at = bisect.bisect_left(base.keys, key)
    if at == len(base.keys) or base.keys[at] != key or (change.old_mode == TREE_MODE) != folder:
        return None
    mode = b"40000" if folder else change.new_mode.encode()
    entry = mode + b" " + name + b"\0" + _raw_id(change.new_blob)
    end = base.starts[at + 1] if at + 1 < len(base.starts) else len(base.data)
    if len(entry) != end - base.starts[at]:
        return None  # no mode git writes changes length in place: read it whole
    return at, entry


def _took_out(keys: list[bytes], entries: list[bytes], edits: list[tuple[Change, bytes]]) -> bool:
    """Take every edit's old side out of `keys` and `entries`; False when one is not there."""
    for change, name in edits:
        if change.old_mode == ABSENT_MODE:
            continue
        key = name + b"/" if change.old_mode == TREE_MODE else name
        at = bisect.bisect_left(keys, key)
        if at == len(keys) or keys[at] != key or entries[at][-20:] != _raw_id(change.old_blob):
            return False
        del keys[at], entries[at]
    return True


def _put_in(keys: list[bytes], entries: list[bytes], edits: list[tuple[Change, bytes]]) -> bool:
    """Put every edit's new side into `keys` and `entries`; False when one cannot go in
    (its name taken, as a file or a folder, or one git fsck refuses)."""
    for change, name in edits:
        if change.new_mode == ABSENT_MODE:
            continue
        folder = change.new_mode == TREE_MODE
        key, other = (name + b"/", name) if folder else (name, name + b"/")
        at = bisect.bisect_left(keys, key)
        if (at < len(keys) and keys[at] == key) or _holds(keys, other) or name_problem(name):
            return False
        mode = b"40000" if folder else change.new_mode.encode()
        keys.insert(at, key)
        entries.insert(at, mode + b" " + name + b"\0" + _raw_id(change.new_blob))
    return True


def _sides(mode: str, oid: str) -> tuple[str | None, str, str]:
    """A tree's entry as a folder (its tree; None: a file) and as a file (mode, id;
    absent for a folder)."""
    if mode == "40000":
        return oid, ABSENT_MODE, NULL_OID
    return None, mode, oid


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
