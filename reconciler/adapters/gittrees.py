"""Adapter, git: the one rule for a well-formed tree object, and the one way to read any tree.

Pure: functions over a tree object's bytes, no process (`TreeChecks` decides which
trees of a walk to read whole; `gitrepo` reads them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from reconciler.adapters.gitobjects import GITLINK_MODE, SYMLINK_MODE
from reconciler.core.printable import printable

_MODES: Final = frozenset({b"100644", b"100755", b"120000", b"40000", b"160000"})
# git fsck lets this one pass unless --strict (older gits wrote it); git reads it as 100644.
_LENIENT_MODE: Final = b"100664"
_OCTAL: Final = re.compile(rb"[0-7]+")
_NULL_ID: Final = bytes(20)
# What HFS+ leaves out of a name, and what NTFS reads as .git (git's is_hfs_dotgit and
# is_ntfs_dotgit): a name git refuses on those file systems, so git fsck refuses it.
_HFS_IGNORED: Final = re.compile("[\\u200c-\\u200f\\u202a-\\u202e\\u206a-\\u206f\\ufeff]")
_NTFS_DOTGIT: Final = re.compile(rb"(?:\.git|git~1)[. ]*(?:[\\:].*)?", re.IGNORECASE | re.DOTALL)


def name_problem(name: bytes) -> str | None:
    """Why git fsck objects to `name` as the name of a tree's entry; None when it does not."""
    if not name:
        return "an entry has an empty name"
    if b"/" in name:
        why = "holds a '/'"
    elif name in (b".", b".."):
        why = "is no name"
    elif _dotgit(name):
        why = "is .git (to git, HFS+ or NTFS)"
    else:
        return None
    return f"the name '{printable(name.decode('utf-8', 'surrogateescape'))}' {why}"


def _dotgit(name: bytes) -> bool:
    if name.isascii() and b"git" not in name.lower():
        return False  # nearly every name: no HFS+ ignorable, no .git to spell
    return bool(_NTFS_DOTGIT.fullmatch(name)) or _hfs_name(name) == b".git"


def _hfs_name(name: bytes) -> bytes:
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return name
    return _HFS_IGNORED.sub("", text).encode().lower()


def tree_problem(data: bytes) -> str | None:
    """Why git fsck refuses this tree object (the content of one), or None: the one rule.

    Entries must be readable, sorted the way git sorts them (a folder as if its name
    ended in '/'), each name once (a file and a folder of one name count twice), with
    one of git's modes written git's way (never zero-padded) and a name `name_problem`
    accepts, and no all-zero object id.
    """
    previous: bytes | None = None
    names: set[bytes] = set()
    read = 0
    for mode, name, oid, end in raw_entries(data):
        read = end
        problem = _entry_problem(mode, name, oid)
        if problem is not None:
            return problem
        if name in names:
            return f"two entries are named '{_shown(name)}'"
        key = name + b"/" if mode == b"40000" else name
        if previous is not None and key < previous:
            return f"the entries are out of order ('{_shown(name)}' comes too late)"
        names.add(name)
        previous = key
    if read != len(data):
        return f"the entry at byte {read} is cut short"
    return None


def _entry_problem(mode: bytes, name: bytes, oid: bytes) -> str | None:
    """Why git fsck refuses one entry of a tree, whatever the others; None when it does not."""
    if mode.startswith(b"0"):
        return f"'{_shown(name)}' has a zero-padded mode ({mode.decode('ascii', 'replace')})"
    if mode not in _MODES and mode != _LENIENT_MODE:
        return f"'{_shown(name)}' has a bad mode ({printable(mode.decode('ascii', 'replace'))})"
    problem = name_problem(name)
    if problem is not None:
        return problem
    if oid == _NULL_ID:
        return f"'{_shown(name)}' names the all-zero object id"
    return None


def _shown(name: bytes) -> str:
    return printable(name.decode("utf-8", "surrogateescape"))


def tree_entries(data: bytes) -> dict[str, tuple[str, str]]:
    """A tree's entries as the reconciler reads them: name -> (mode, object id).

    For a well-formed tree, what git reads. A malformed one (refused wherever it
    lands, see `tree_problem`) is read this one way, by the walk and by the records
    that rebuild a folder: an entry counts under its first name only, one whose name
    git fsck refuses is left out, and a mode is read as git reads it (canon_mode).
    """
    entries: dict[str, tuple[str, str]] = {}
    for mode, name, oid, _ in raw_entries(data):
        canonical = _canonical_mode(mode)
        if canonical is None or name_problem(name) is not None:
            continue
        entries.setdefault(name.decode("utf-8", "surrogateescape"), (canonical, oid.hex()))
    return entries


def raw_entries(data: bytes) -> Iterator[tuple[bytes, bytes, bytes, int]]:
    """(mode, name, object id, end) of each readable entry, in order, up to one that is not."""
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        nul = data.find(b"\0", space + 1) if space >= 0 else -1
        if nul < 0 or nul + 21 > len(data):
            return
        yield data[position:space], data[space + 1 : nul], data[nul + 1 : nul + 21], nul + 21
        position = nul + 21


def _canonical_mode(mode: bytes) -> str | None:
    """A mode as git reads it (canon_mode); None when it is no octal number."""
    if not _OCTAL.fullmatch(mode):
        return None
    value = int(mode, 8)
    kind = value & 0o170000
    if kind == 0o100000:
        return "100755" if value & 0o100 else "100644"
    if kind == 0o120000:
        return SYMLINK_MODE
    if kind == 0o040000:
        return "40000"
    return GITLINK_MODE
