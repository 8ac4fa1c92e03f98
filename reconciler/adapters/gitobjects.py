"""Adapter, git: the plain data Git's objects are read into, and reading a commit object.

Pure: functions over bytes and text, no process. `gitrepo` returns these values;
`gittrees` holds the rules for tree objects and `gitlog` reads `git log`'s stream.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Final

from msgspec import Struct

from reconciler.core.events import reads_as_utf8

NULL_OID: Final = "0" * 40
FILE_MODES: Final = frozenset({"100644", "100755"})
SYMLINK_MODE: Final = "120000"
GITLINK_MODE: Final = "160000"
TREE_MODE: Final = "040000"  # as `git log --raw` shows a folder (its trees say 40000)
ABSENT_MODE: Final = "000000"
_FULL_OID = re.compile(r"[0-9a-f]{40}")


class Change(Struct, frozen=True):
    """One path a commit changed relative to its first parent (blob ids, modes)."""

    path: str
    old_mode: str
    new_mode: str
    old_blob: str  # NULL_OID when added
    new_blob: str  # NULL_OID when deleted


class Someone(Struct, frozen=True):
    """Who to commit as: a name, an email, and the SSH key to sign with (if any)."""

    name: str
    email: str
    key: Path | None = None


class Person(Struct, frozen=True):
    name: str
    email: str
    when: datetime


class CommitInfo(Struct, frozen=True):
    """A commit as the reconciler needs it: who, when, what it says, and its raw bytes."""

    id: str
    parents: tuple[str, ...]
    tree: str
    author: Person
    committer: Person
    message: str
    encoding: str  # the `encoding` header ("" when absent: UTF-8), which git log converts from
    raw: bytes  # the whole commit object, for signature checks


class HistoryEntry(Struct, frozen=True):
    """A commit in a history walk, with its changes against its first parent."""

    id: str
    parents: tuple[str, ...]
    changes: tuple[Change, ...]
    # The folders it changed (trees, `git log -t`), for `TreeChecks`; and, once they
    # are checked, a folder whose new tree is malformed and why (None: well-formed,
    # or unchecked).
    folders: tuple[Change, ...] = ()
    malformed: tuple[str, str] | None = None


def commit_bytes(
    tree: str, parents: tuple[str, ...], author: str, committer: str, message: str
) -> bytes:
    """A raw commit object; `author`/`committer` are 'Name <email> <seconds> <+hhmm>'."""
    lines = [f"tree {tree}", *(f"parent {parent}" for parent in parents)]
    lines += [f"author {author}", f"committer {committer}"]
    text = message if message.endswith("\n") else message + "\n"
    return ("\n".join(lines) + "\n\n" + text).encode("utf-8")


def parse_commit(oid: str, raw: bytes) -> CommitInfo:
    """Parse a raw commit object (headers, blank line, message); a header is its first line
    of that name, as git finds it, and the parents are those git reads (`_parents`)."""
    head, _, body = raw.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").split("\n")
    # The first line is a header whatever it starts with; after it, a line starting with
    # a space continues the header before it (gpgsig, mergetag). Every commit of a walk
    # is parsed, so only the first line of each name is kept, as it is found.
    key, _, text = lines[0].partition(" ")
    headers = {key: text}
    for line in itertools.islice(lines, 1, None):
        if line[:1] != " ":
            key, _, text = line.partition(" ")
            headers.setdefault(key, text)
    author, committer = headers.get("author", ""), headers.get("committer", "")
    who = _person(author)
    # Read once when the lines are the same: most commits are committed by their author
    # as they were written.
    by = who if committer == author else _person(committer)
    if not _split_as_git_log_splits(head, headers.get("encoding")):
        who, by = _nobody(who), _nobody(by)
    return CommitInfo(
        id=oid,
        parents=_parents(lines),
        tree=headers.get("tree", ""),
        author=who,
        committer=by,
        message=body.decode("utf-8", "replace"),
        encoding=headers.get("encoding", ""),
        raw=raw,
    )


def _split_as_git_log_splits(head: bytes, encoding: str | None) -> bool:
    """Whether `git log` (%an, %ae, %cn, %ce) reads the author and committer lines of
    this header as they stand, which the email an unsigned change counts under must be.

    Not where the header holds a NUL byte: git log ends a line at one and starts the
    next after it, so a committer line hidden behind one is the one it shows. Nor where
    the commit declares an encoding other than UTF-8 (an empty one too: git converts
    from that): git log converts the whole header from it before it splits a line, and
    iconv's UTF-7 reads `+ADw-` as a `<`, its ISO-2022-JP reads `<bob@...>` after an
    escape as other letters; which conversion iconv makes is not ours to guess.
    """
    return b"\0" not in head and reads_as_utf8(encoding)


def _nobody(person: Person) -> Person:
    """A person git's readers do not agree on: no name, no email; the date as read, which
    an unsigned commit's pusher writes as they like in any case."""
    return Person("", "", person.when)


def _parents(lines: list[str]) -> tuple[str, ...]:
    """The `parent` lines right after the tree line, which git reads as the parents.

    A `parent` line anywhere else is a header git does not know (fsck lets it
    be): a commit whose only one stands after its committer is a root to git,
    a history of its own, whatever it names.
    """
    if not lines[0].startswith("tree "):
        return ()
    parents: list[str] = []
    for line in itertools.islice(lines, 1, None):
        if not line.startswith("parent "):
            break
        parents.append(line[len("parent ") :])
    return tuple(parents)


_SPACE: Final = " \t\n\r"  # git's isspace: these four, ASCII alone
_DIGITS: Final = "0123456789"  # git's digits: ASCII alone, never another script's
_EPOCH: Final = datetime.fromtimestamp(0, UTC)
_TIME_T_END: Final = 1 << 63  # git takes a date from here on for an overflow, and reads 0


def _person(text: str) -> Person:
    """An author or committer line as git splits it (ident.c, `split_ident_line`).

    The email is what stands between the first `<` and the first `>` after it, the
    name what stands before that `<` less its trailing spaces, however many `<` and `>`
    follow. The date follows the last `>`: ASCII digits, then a sign and ASCII digits;
    anything else there is no date, which git shows as 0, and so is it read here.
    A line without `<` and `>` names nobody: git shows no name and no email.
    """
    opens = text.find("<")
    closes = text.find(">", opens + 1) if opens >= 0 else -1
    if closes < 0:
        return Person("", "", _EPOCH)
    return Person(
        text[:opens].rstrip(_SPACE), text[opens + 1 : closes], _date(text[text.rfind(">") + 1 :])
    )


def _date(rest: str) -> datetime:
    """The date after an ident's last `>`, as git reads it (`%ad` with `--date=unix`)."""
    rest = rest.lstrip(_SPACE)
    seconds = _leading_digits(rest)
    rest = rest[len(seconds) :].lstrip(_SPACE)
    sign, zone = rest[:1], _leading_digits(rest[1:])
    if not seconds or sign not in ("+", "-") or not zone:
        return _EPOCH
    moment = int(seconds)
    if moment >= _TIME_T_END:
        return _EPOCH
    try:
        return datetime.fromtimestamp(moment, _zone(sign, zone))
    except (OverflowError, OSError, ValueError):
        # Past the year 9999, which git reads and Python cannot hold: read at 0, as
        # git reads a date it cannot hold.
        return _EPOCH


def _leading_digits(text: str) -> str:
    return text[: len(text) - len(text.lstrip(_DIGITS))]


_DAY_MINUTES: Final = 24 * 60


@lru_cache(maxsize=64)
def _zone(sign: str, digits: str) -> timezone:
    """The time zone of a `+hhmm` offset as git reads it (`strtol`, any number of digits,
    the last two the minutes); kept, as a history holds few and every commit names one or
    two (a walk parses every commit). UTC for one a day or more away, which git takes and
    Python cannot hold: the time read is git's all the same, only the zone it is shown in
    differs."""
    hhmm = int(digits) if len(digits) <= 12 else 10**12  # git's `strtol` saturates: past a day
    minutes = hhmm // 100 * 60 + hhmm % 100
    if minutes >= _DAY_MINUTES:
        return UTC
    return timezone(timedelta(minutes=-minutes if sign == "-" else minutes))


def is_full_oid(text: str) -> bool:
    return bool(_FULL_OID.fullmatch(text))
