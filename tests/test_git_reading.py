"""What the reconciler reads of Git is what git says, whatever the repository holds.

Three parts. The differential guard: hypothesis builds histories with git itself
(files named with spaces, quotes, line breaks and non-ASCII letters, random
contents, deletions, renames, executable bits, symlinks, submodules, merges) and
the reconciler's reading of every commit's changed paths must be what
`git diff-tree -r -z --no-renames` says against its first parent, its reading of
every blob what `git cat-file blob` says, its listing of a folder what
`git ls-tree` says, and its path lookups what `git rev-parse <commit>:<path>` says.
Then the settings: each one a repository (or a history) may hold that changed what
the reconciler read is set, and the reading must not move. Then the rule for a
well-formed tree (`gitrepo.tree_problem`), case by case.

Allowed differences between the reconciler's reading and git's, each for a reason:

- A path lookup (`GitRepo.blobs_at`) answers None for a path holding a line break:
  `cat-file --batch-check` takes one request a line. No configuration path can
  hold one (`layout.place` gives such a path no kind).
- Symlinks and submodules are read as git shows them (modes 120000 and 160000);
  refusing them is the walk's rule (`authorise`), not the reading's.
- A tree git fsck refuses is read with `gitrepo.tree_entries` (the first entry of
  a name counts, entries with names git refuses are left out), where git's own
  commands disagree with one another; the landing that brings one is refused. The
  histories here are made by git, so their trees are all well-formed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.adapters.gitobjects import HistoryEntry, parse_commit
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.gittrees import name_problem, tree_entries, tree_problem
from reconciler.adapters.readahead import prepare
from tests.repositories import run_git

# -- histories made by git ------------------------------------------------------------

# Letters that cannot spell .git or .gitmodules, with what trips up parsers.
NAME_LETTERS = "ab01 '\"\n\t-.ü日"
FILE = "100644"
EXECUTABLE = "100755"
SYMLINK = "120000"
SUBMODULE = "160000"


def _usable(name: str) -> bool:
    return name_problem(name.encode()) is None


names = st.text(alphabet=NAME_LETTERS, min_size=1, max_size=6).filter(_usable)
paths = st.lists(names, min_size=1, max_size=3).map("/".join)
modes = st.sampled_from([FILE, FILE, FILE, EXECUTABLE, SYMLINK, SUBMODULE])
contents = st.binary(max_size=40)


@dataclass(frozen=True)
class Write:
    path: str
    mode: str
    content: bytes


@dataclass(frozen=True)
class Delete:
    index: int  # of the files there are, modulo


@dataclass(frozen=True)
class Rename:
    index: int
    to: str


@dataclass(frozen=True)
class Flip:
    """Make an existing file executable or plain again (its content unchanged)."""

    index: int


Operation = Write | Delete | Rename | Flip
operations = st.one_of(
    st.builds(Write, paths, modes, contents),
    st.builds(Write, paths, modes, contents),
    st.builds(Delete, st.integers(0, 50)),
    st.builds(Rename, st.integers(0, 50), paths),
    st.builds(Flip, st.integers(0, 50)),
)
# A commit: its operations, and whether it merges a side branch that made its own.
commits = st.tuples(st.lists(operations, min_size=0, max_size=5), st.booleans())
histories = st.lists(commits, min_size=1, max_size=5)

Files = dict[str, tuple[str, bytes]]


def applied(files: Files, operation: Operation) -> Files:
    """`files` after `operation`, with no file where another one's folder is."""
    after = dict(files)
    listed = sorted(after)
    if isinstance(operation, Write):
        after[operation.path] = (operation.mode, operation.content)
    elif listed and isinstance(operation, Delete):
        del after[listed[operation.index % len(listed)]]
    elif listed and isinstance(operation, Rename):
        after[operation.to] = after.pop(listed[operation.index % len(listed)])
    elif listed and isinstance(operation, Flip):
        path = listed[operation.index % len(listed)]
        mode, content = after[path]
        if mode in (FILE, EXECUTABLE):
            after[path] = (EXECUTABLE if mode == FILE else FILE, content)
    if isinstance(operation, Write | Rename):
        written = operation.path if isinstance(operation, Write) else operation.to
        for other in list(after):
            if other != written and (
                other.startswith(written + "/") or written.startswith(other + "/")
            ):
                del after[other]
    return after


class Maker:
    """Commits made by git's plumbing: blobs, an index per commit, write-tree, commit-tree."""

    def __init__(self, path: Path) -> None:
        self.path = path
        run_git(path.parent, "init", "-q", "-b", "main", str(path))
        self.count = 0

    def git(self, *args: str, stdin: bytes = b"", env: Mapping[str, str] | None = None) -> str:
        completed = subprocess.run(
            ["git", *args],
            cwd=self.path,
            input=stdin,
            capture_output=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
        assert completed.returncode == 0, completed.stderr.decode()
        return completed.stdout.decode().strip()

    def tree(self, files: Files) -> str:
        ordered = sorted(files.items())
        blobs = [content for _, (mode, content) in ordered if mode != SUBMODULE]
        written = iter(self.blobs(blobs))
        listing = b""
        for path, (mode, content) in ordered:
            # A submodule's commit is never in the repository: any id will do.
            oid = hashlib.sha1(content).hexdigest() if mode == SUBMODULE else next(written)
            listing += f"{mode} {oid}\t".encode() + path.encode() + b"\0"
        index = self.path.parent / f"index-{self.count}"
        self.count += 1
        environment = {"GIT_INDEX_FILE": str(index)}
        self.git("update-index", "-z", "--index-info", stdin=listing, env=environment)
        return self.git("write-tree", env=environment)

    def blobs(self, contents: list[bytes]) -> list[str]:
        """The ids of `contents`, written by one `git hash-object -w`."""
        if not contents:
            return []
        places = []
        for number, content in enumerate(contents):
            place = self.path.parent / f"blob-{self.count}-{number}"
            place.write_bytes(content)
            places.append(str(place))
        listed = "\n".join(places).encode() + b"\n"
        return self.git("hash-object", "-w", "--stdin-paths", stdin=listed).split()

    def commit(self, files: Files, *parents: str) -> str:
        arguments = [argument for parent in parents for argument in ("-p", parent)]
        return self.git("commit-tree", self.tree(files), *arguments, "-m", f"c{self.count}")


def made(path: Path, history: list[tuple[list[Operation], bool]]) -> str:
    """The history's last commit, made with git (each commit's files on its parent's)."""
    maker = Maker(path)
    files: Files = {}
    tip: str | None = None
    for operations_, merges in history:
        parents = [] if tip is None else [tip]
        if merges and tip is not None:
            side_files = applied(files, Write("side", FILE, b"side"))
            parents.append(maker.commit(side_files, tip))
        for operation in operations_:
            files = applied(files, operation)
        tip = maker.commit(files, *parents)
    assert tip is not None
    maker.git("update-ref", "refs/heads/main", tip)
    return tip


# -- what git says ------------------------------------------------------------------------


def git_changes(path: Path, commit: str, first_parent: str | None) -> set[tuple[str, ...]]:
    """`git diff-tree -r -z --no-renames` of `commit` against its first parent."""
    sides = [first_parent, commit] if first_parent else ["--root", commit]
    output = subprocess.run(
        ["git", "diff-tree", "-r", "-z", "--no-renames", "--no-abbrev", *sides],
        cwd=path,
        capture_output=True,
        check=True,
    ).stdout
    tokens = output.split(b"\0")
    if not first_parent:
        tokens = tokens[1:]  # the commit id, first
    found: set[tuple[str, ...]] = set()
    for meta, name in zip(tokens[::2], tokens[1::2], strict=False):
        old_mode, new_mode, old_blob, new_blob, _ = meta.decode()[1:].split(" ")
        found.add((name.decode("utf-8", "surrogateescape"), old_mode, new_mode, old_blob, new_blob))
    return found


def read_entries(repo: GitRepo, tip: str) -> list[HistoryEntry]:
    """The history entries as the walk takes them (after `readahead.prepare`)."""
    entries = list(repo.history(tip, None))
    *_, taken = prepare(repo, [entry.id for entry in entries], frozenset(), [], entries)
    return [taken.get(entry.id, entry) for entry in entries]


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(history=histories)
def test_the_reading_of_a_history_made_by_git_is_gits(
    history: list[tuple[list[Operation], bool]],
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "repo"
        tip = made(path, history)
        with GitRepo(path) as repo:
            entries = read_entries(repo, tip)
            assert len(entries) == int(run_git(path, "rev-list", "--count", tip))
            blobs: set[str] = set()
            for entry in entries:
                assert entry.malformed is None
                first = entry.parents[0] if entry.parents else None
                ours = {
                    (c.path, c.old_mode, c.new_mode, c.old_blob, c.new_blob) for c in entry.changes
                }
                assert ours == git_changes(path, entry.id, first)
                blobs |= {
                    c.new_blob for c in entry.changes if c.new_mode not in ("000000", SUBMODULE)
                }
            contents, _ = repo.blobs(sorted(blobs), 1 << 20)
            for blob in blobs:
                assert (
                    contents[blob]
                    == subprocess.run(
                        ["git", "cat-file", "blob", blob], cwd=path, capture_output=True, check=True
                    ).stdout
                )
            listed = run_git(path, "ls-tree", "-r", "-z", "--full-tree", tip).split("\0")
            files = {line.split("\t", 1)[1]: line.split("\t", 1)[0] for line in listed if line}
            lookups = repo.blobs_at([(tip, file) for file in files])
            for file, meta in files.items():
                _, kind, oid = meta.split(" ")
                expected = oid if kind == "blob" and "\n" not in file else None
                assert lookups[(tip, file)] == expected
            for folder in {file.split("/", 1)[0] for file in files if "/" in file}:
                out = run_git(path, "ls-tree", "-z", f"{tip}:{folder}").split("\0")
                by_git = {
                    f"{folder}/{line.split(chr(9), 1)[1]}": (
                        line.split(" ")[0].lstrip("0"),
                        line.split("\t")[0].split(" ")[2],
                    )
                    for line in out
                    if line
                }
                assert repo.folder(tip, folder) == by_git


# -- settings that would change the reading ---------------------------------------------


def reading(path: Path, tip: str) -> object:
    """Everything the adapter reads of a repository, as plain data."""
    with GitRepo(path) as repo:
        entries = read_entries(repo, tip)
        ids = [entry.id for entry in entries]
        infos = repo.commits(ids)
        lookups = [(tip, "plans/p.yaml"), (tip, "teams.yaml"), (tip, "sub")]
        return (
            [(entry.id, entry.parents, entry.changes) for entry in entries],
            {
                commit: (info.tree, info.parents, info.message, info.raw)
                for commit, info in infos.items()
            },
            repo.first_parent_chain(tip, None),
            repo.root_commits(tip),
            repo.tree_files(tip),
            repo.folder(tip, "plans"),
            repo.blobs_at(lookups),
            repo.blobs(
                sorted({c.new_blob for e in entries for c in e.changes if c.new_mode != SUBMODULE}),
                1 << 20,
            ),
            repo.resolve("main"),
            repo.is_ancestor(ids[0], tip),
        )


@pytest.fixture
def history_with_everything(tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    """A history with a root commit, an unrelated root merged in, a submodule, a signed
    commit (ssh) and a merge; its path, tip and some of its commits by name."""
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    maker = Maker(tmp_path / "repo")
    root = maker.commit({"teams.yaml": (FILE, b"users: {}\n"), "plans/p.yaml": (FILE, b"a: 1\n")})
    other_root = maker.commit({"elsewhere": (FILE, b"x\n")})
    both = {"teams.yaml": (FILE, b"users: {}\n"), "plans/p.yaml": (FILE, b"a: 2\n")}
    merged = maker.commit({**both, "elsewhere": (FILE, b"x\n")}, root, other_root)
    with_submodule = maker.commit({**both, "sub": (SUBMODULE, b"")}, merged)
    maker.git("update-ref", "refs/heads/main", with_submodule)
    maker.git("checkout", "-q", "main")
    maker.git("config", "gpg.format", "ssh")
    maker.git("config", "user.signingkey", str(key))
    (maker.path / "plans/p.yaml").write_text("a: 3\n")
    maker.git("commit", "-q", "-S", "-am", "signed")
    tip = maker.git("rev-parse", "HEAD")
    commits = {"root": root, "other_root": other_root, "merged": merged, "tip": tip}
    return maker.path, tip, commits


def gitmodules_ignoring_all(path: Path) -> None:
    """A .gitmodules saying to ignore the submodule: anyone who may push can commit one."""
    (path / ".gitmodules").write_text(
        '[submodule "sub"]\n\tpath = sub\n\turl = ./x\n\tignore = all\n'
    )
    run_git(path, "add", ".gitmodules")
    run_git(path, "commit", "-q", "-m", "ignore the submodule")


PINNED = {
    # git log prints signature checks into the stream parsed (many set it globally)
    "log.showSignature": "true",
    # the root commits' files vanish from the log
    "log.showRoot": "false",
    # submodule changes vanish from the log
    "diff.ignoreSubmodules": "all",
    # a commit's changes come in another order
    "diff.orderFile": "order",
}
# Settings that never changed the reading (it asks for -z, full ids and raw objects):
# set here so that a reading which comes to depend on one is noticed.
UNCHANGED = {
    "log.mailmap": "true",
    "mailmap.file": ".mailmap",
    "core.quotePath": "true",
    "i18n.logOutputEncoding": "ISO-8859-1",
    "diff.renames": "copies",
    "diff.noprefix": "true",
    "color.ui": "always",
    "diff.relative": "true",
    "core.abbrev": "7",
    "log.decorate": "full",
    "format.pretty": "oneline",
    "log.abbrevCommit": "true",
}


@pytest.mark.parametrize("key", [*PINNED, *UNCHANGED])
def test_a_setting_of_the_repository_does_not_change_the_reading(
    history_with_everything: tuple[Path, str, dict[str, str]], key: str
) -> None:
    path, tip, _ = history_with_everything
    (path / ".mailmap").write_text("Someone Else <else@example.com> <test@example.com>\n")
    (path / "order").write_text("teams.yaml\n")
    before = reading(path, tip)
    run_git(path, "config", key, {**PINNED, **UNCHANGED}[key])
    assert reading(path, tip) == before


def test_a_gitmodules_in_the_history_does_not_hide_a_submodule(
    history_with_everything: tuple[Path, str, dict[str, str]],
) -> None:
    path, _, _ = history_with_everything
    gitmodules_ignoring_all(path)
    run_git(path, "update-index", "--cacheinfo", f"{SUBMODULE},{'1' * 40},sub")
    run_git(path, "commit", "-q", "-m", "move the submodule")
    with GitRepo(path) as repo:
        [entry] = list(repo.history("main", "main~1"))
    assert [(change.path, change.new_mode) for change in entry.changes] == [("sub", SUBMODULE)]


def test_replacement_refs_do_not_change_what_an_id_reads_as(
    history_with_everything: tuple[Path, str, dict[str, str]],
) -> None:
    path, tip, commits = history_with_everything
    before = reading(path, tip)
    blob = run_git(path, "rev-parse", f"{tip}:plans/p.yaml")
    forged_blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=path,
            input=b"a: 666\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    run_git(path, "replace", blob, forged_blob)
    # A look-alike root: other content, and the tip made to have it for its only parent.
    look_alike = run_git(path, "commit-tree", f"{commits['other_root']}^{{tree}}", "-m", "seed")
    run_git(path, "replace", commits["root"], look_alike)
    run_git(path, "replace", "--graft", tip, commits["root"])
    assert run_git(path, "show", f"{tip}:plans/p.yaml") == "a: 666"  # git itself is fooled
    assert reading(path, tip) == before


def test_grafts_do_not_change_what_a_commit_s_parents_are(
    history_with_everything: tuple[Path, str, dict[str, str]],
) -> None:
    path, tip, commits = history_with_everything
    before = reading(path, tip)
    (path / ".git/info").mkdir(exist_ok=True)
    (path / ".git/info/grafts").write_text(f"{tip}\n{commits['merged']} {commits['other_root']}\n")
    assert run_git(path, "rev-list", "--count", tip) == "1"  # git itself is fooled
    assert reading(path, tip) == before


# -- a commit's headers, as git reads them ------------------------------------------------


@contextmanager
def scratch_repository() -> Iterator[tuple[Path, str]]:
    """A repository in a folder of its own and the id of its empty tree, for commit
    objects written by hand: each hypothesis example gets a new one."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch)
        run_git(path, "init", "-q")
        yield path, run_git(path, "hash-object", "-t", "tree", "-w", "/dev/null")


def stored_commit(path: Path, raw: bytes, *, literally: bool = True) -> str:
    """The id of the commit object `raw`, stored as it stands (`literally`: unchecked, as
    a pusher can store anything; else as `hash-object` checks it)."""
    (path / "raw").write_bytes(raw)
    unchecked = ("--literally",) if literally else ()
    return run_git(path, "hash-object", *unchecked, "-t", "commit", "-w", "raw")


_PARENTS = ("one", "two", "three")  # the messages of three root commits, made per example
_OTHER_HEADERS = [
    "author A <a@example.com> 1 +0000",
    "committer C <c@example.com> 2 +0000",
    "encoding ISO-8859-1",
    "x-note parent",
    "mergetag object 1\n continued",
]
# Each header line of a commit after its tree line: a parent or another header, any order.
header_lines = st.lists(
    st.one_of(
        st.sampled_from(_PARENTS).map(lambda name: f"parent {name}"),
        st.sampled_from(_OTHER_HEADERS),
    ),
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=header_lines)
def test_a_commits_parents_are_the_ones_git_reads(lines: list[str]) -> None:
    # Git reads parents from the lines right after the tree; a `parent` line anywhere
    # else is a header it does not know, and fsck lets it be.
    with scratch_repository() as (path, tree):
        made = {name: run_git(path, "commit-tree", tree, "-m", name) for name in _PARENTS}
        lines = [" ".join(made.get(word, word) for word in line.split(" ")) for line in lines]
        raw = "\n".join([f"tree {tree}", *lines]) + "\n\nmessage\n"
        oid = stored_commit(path, raw.encode())
        git_reads = run_git(path, "show", "-s", "--format=%P", oid).split()
        assert list(parse_commit(oid, raw.encode()).parents) == git_reads


_AUTHOR: Final = ("Ann", "ann@example.com", "2026-03-01T10:00:00+01:00")


@pytest.mark.parametrize(
    "committer",
    [
        _AUTHOR,
        ("Ann", "ann@example.com", "2026-03-01T10:00:01+01:00"),  # a second later
        ("Ann", "ann@example.com", "2026-03-01T09:00:00+00:00"),  # the same time, in UTC
        ("Ann", "ann@other.example", "2026-03-01T10:00:00+01:00"),
        ("Bob", "ann@example.com", "2026-03-01T10:00:00+01:00"),
    ],
)
def test_a_commits_author_and_committer_are_the_ones_git_reads(
    committer: tuple[str, str, str],
) -> None:
    # Most commits are committed by their author as written (the reading makes one
    # person of both then): a committer that differs in anything must stay its own.
    with scratch_repository() as (path, tree):
        names = ("NAME", "EMAIL", "DATE")
        env = {f"GIT_AUTHOR_{key}": item for key, item in zip(names, _AUTHOR, strict=True)}
        env |= {f"GIT_COMMITTER_{key}": item for key, item in zip(names, committer, strict=True)}
        oid = run_git(path, "commit-tree", tree, "-m", "message", env=env)
        raw = subprocess.run(
            ["git", "cat-file", "commit", oid], cwd=path, capture_output=True, check=True
        ).stdout
        info = parse_commit(oid, raw)
        people = run_git(path, "show", "-s", "--format=%an%n%ae%n%aI%n%cn%n%ce%n%cI", oid)
        read = [
            (person.name, person.email, person.when.isoformat())
            for person in (info.author, info.committer)
        ]
        assert [item for person in read for item in person] == people.split("\n")
        assert read == [_AUTHOR, committer]


# The pieces an author line is made of here: brackets in any number, the spaces git skips
# and one it does not, signs, ASCII digits and digits of other scripts (which git never
# reads as digits), and whole idents, so that most lines are near a real one.
_IDENT_PIECES: Final = (
    "<",
    ">",
    " ",
    "\t",
    "\r",
    "\v",
    "+",
    "-",
    "0",
    "7",
    "12",
    "\u0661",
    "\uff10",
    "a",
    "@",
    "\u00e9",
    "Mallory",
    "root@example.com",
    "<m@x.test>",
    " 1700000000 +0100",
)
idents = st.lists(st.sampled_from(_IDENT_PIECES), max_size=10).map("".join)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ident=idents)
def test_an_author_line_is_split_into_the_name_email_and_date_git_reads(ident: str) -> None:
    # The email says who made an unsigned commit: a line git splits one way and this
    # reading another would let a pusher show one person to `git log` and count as
    # another here ("M <m@x> <root@example.com> 1 +0000" is m@x to git).
    with scratch_repository() as (path, tree):
        raw = f"tree {tree}\nauthor {ident}\ncommitter C <c@example.com> 2 +0000\n\nm\n"
        oid = stored_commit(path, raw.encode())
        shown = subprocess.run(
            ["git", "show", "-s", "--date=unix", "--format=%an%x00%ae%x00%ad%x00", oid],
            cwd=path,
            capture_output=True,
            check=True,
        ).stdout.decode()
        name, email, seconds, _ = shown.split("\0")
        author = parse_commit(oid, raw.encode()).author
        assert (author.name, author.email) == (name, email)
        # No date to git (it shows none) is the moment 0 here.
        assert int(author.when.timestamp()) == int(seconds or 0)


# Pieces of the header lines after an author line: NUL bytes (git log ends a line at one
# and reads on after it), a committer line hidden behind one, an `encoding` header git
# converts the whole header from (UTF-7's `+ADw-` is a `<`), bytes that are not UTF-8,
# and a line continued with a space. No second committer line at the start of a line:
# `signatures` holds such a commit malformed, whatever its emails.
_HEADER_PIECES: Final = (
    b"\0",
    b"\0committer M <m@x.test> 1 -0000",
    b"\nencoding ",
    b"UTF-7",
    b"UTF-8",
    b"ISO-8859-1",
    b"\nx-note ",
    b"\n ",
    b"+ADw-",
    b"+AD4-",
    b"<",
    b">",
    b" ",
    b"\xff",
    b"\xe9",
    b"root@example.com",
    b" 1 -0000",
)
headers = st.lists(st.sampled_from(_HEADER_PIECES), max_size=8).map(b"".join)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(author=headers, committer=headers)
def test_an_email_read_from_a_commit_is_the_one_git_log_shows_or_none(
    author: bytes, committer: bytes
) -> None:
    # Where no signature is needed, the committer's email is who made a change: an email
    # read here that `git log` does not show would count a pusher as someone else.
    with scratch_repository() as (path, tree):
        raw = b"tree %s\nauthor A %s\ncommitter C %s\n\nm\n" % (tree.encode(), author, committer)
        oid = stored_commit(path, raw)
        shown = subprocess.run(
            ["git", "log", "-1", "--format=%ae%x00%ce", oid],
            cwd=path,
            capture_output=True,
            check=True,
        ).stdout.decode("utf-8", "replace")
        emails = shown.removesuffix("\n").split("\0")
        read = parse_commit(oid, raw)
        for email, shown_email in zip(
            (read.author.email, read.committer.email), emails, strict=True
        ):
            assert email in ("", shown_email)


@pytest.mark.parametrize(
    ("date", "seconds"),
    [
        ("1700000000 +0100", 1700000000),
        ("\u0661\u0667\u0660\u0660 +0000", 0),  # Arabic-Indic digits: no date to git
        ("1700000000 +\uff10\uff11\uff10\uff10", 0),  # full-width digits in the zone
        ("-1700000000 +0000", 0),  # a sign before the seconds: no date to git
        ("253402300800 +0000", 0),  # the year 10000: git reads it, Python cannot hold it
    ],
)
def test_a_date_is_read_only_from_ascii_digits(date: str, seconds: int) -> None:
    raw = (
        f"tree {'1' * 40}\nauthor A <a@example.com> {date}\ncommitter A <a@example.com> 1 +0000\n\n"
    )
    assert int(parse_commit("0" * 40, raw.encode()).author.when.timestamp()) == seconds


@pytest.mark.parametrize("zone", ["+2400", "-2400", "+9999"])
def test_a_time_zone_a_day_or_more_away_is_read_with_the_time_git_reads(zone: str) -> None:
    # Git takes any four digits as a zone (hash-object checks it, fsck --strict lets it
    # be), hours and minutes past their ranges too; Python holds none a day or more from
    # UTC. Whoever pushes such a commit must not stop the reading of a history.
    with scratch_repository() as (path, tree):
        raw = f"tree {tree}\nauthor A <a@example.com> 1000 {zone}\n"
        raw += f"committer C <c@example.com> 2000 {zone}\n\nmessage\n"
        oid = stored_commit(path, raw.encode(), literally=False)
        assert run_git(path, "fsck", "--strict", "--no-dangling", oid) == ""
        info = parse_commit(oid, raw.encode())
        seconds = run_git(path, "show", "-s", "--format=%at %ct", oid).split()
        assert [int(info.author.when.timestamp()), int(info.committer.when.timestamp())] == [
            int(second) for second in seconds
        ]
        assert (info.author.name, info.committer.email) == ("A", "c@example.com")


# -- the rule for a well-formed tree ------------------------------------------------------


def entry(mode: bytes, name: bytes, oid: bytes = b"\x11" * 20) -> bytes:
    return mode + b" " + name + b"\0" + oid


def test_a_tree_as_git_writes_it_is_well_formed() -> None:
    git_order = [
        entry(b"100644", b"a b"),
        entry(b"100755", b"a.b"),
        entry(b"40000", b"a"),  # a folder sorts as if its name ended in '/'
        entry(b"100644", b"a0"),
        entry(b"120000", b"l"),
        entry(b"160000", b"s"),
        entry(b"100664", b"z"),  # git fsck lets it pass (unless --strict)
    ]
    assert tree_problem(b"".join(git_order)) is None
    assert tree_problem(b"") is None


MALFORMED = {
    "two entries are named 'a'": [entry(b"100644", b"a"), entry(b"100644", b"a", b"\x22" * 20)],
    "two entries are named 'x'": [  # a file and a folder of one name
        entry(b"100644", b"x"),
        entry(b"100644", b"x.y"),
        entry(b"40000", b"x"),
    ],
    "out of order": [entry(b"100644", b"b"), entry(b"100644", b"a")],
    "out of order ": [entry(b"40000", b"a"), entry(b"100644", b"a.b")],
    "zero-padded mode": [entry(b"040000", b"d")],
    "bad mode (100600)": [entry(b"100600", b"a")],
    "bad mode (12345)": [entry(b"12345", b"a")],
    "bad mode (1x0644)": [entry(b"1x0644", b"a")],
    "empty name": [entry(b"100644", b"")],
    "holds a '/'": [entry(b"100644", b"a/b")],
    "'.' is no name": [entry(b"40000", b".")],
    "'..' is no name": [entry(b"40000", b"..")],
    "'.git' is .git": [entry(b"40000", b".git")],
    "'.GiT' is .git": [entry(b"40000", b".GiT")],
    "'GIT~1' is .git": [entry(b"40000", b"GIT~1")],
    "'.git. .' is .git": [entry(b"40000", b".git. .")],
    "is .git (to git, HFS+": [entry(b"40000", ".g\u200cit".encode())],
    "'.git::$INDEX_ALLOCATION' is .git": [entry(b"40000", b".git::$INDEX_ALLOCATION")],
    "all-zero object id": [entry(b"100644", b"a", bytes(20))],
    "cut short": [entry(b"100644", b"a")[:-3]],
}


@pytest.mark.parametrize("why", MALFORMED)
def test_a_malformed_tree_is_told_apart_with_the_reason(why: str) -> None:
    problem = tree_problem(b"".join(MALFORMED[why]))
    assert problem is not None
    assert why.strip() in problem


def test_a_name_git_accepts_is_accepted() -> None:
    for name in ("a", ".gitignore", ".github", "git", "gît", "a b", "日本", ".git-x", "git~2"):
        assert name_problem(name.encode()) is None, name


def test_a_malformed_tree_is_read_the_one_way_records_rebuild_it() -> None:
    tree = b"".join(
        [
            entry(b"100644", b"q", b"\x01" * 20),
            entry(b"100644", b"q", b"\x02" * 20),  # the second entry of a name does not count
            entry(b"100664", b"r"),  # read as git reads it
            entry(b"040000", b"s"),
            entry(b"40000", b".git"),  # left out
            entry(b"100644", b"a/b"),  # left out
            entry(b"100644", b"b"),  # out of order, still read
        ]
    )
    assert tree_entries(tree) == {
        "q": ("100644", "01" * 20),
        "r": ("100644", "11" * 20),
        "s": ("40000", "11" * 20),
        "b": ("100644", "11" * 20),
    }


def test_the_roots_outside_a_commit_are_those_only_the_tip_reaches(
    history_with_everything: tuple[Path, str, dict[str, str]],
) -> None:
    # A pull request's own roots: what it brings that its base does not hold already.
    path, tip, commits = history_with_everything
    with GitRepo(path) as repo:
        assert sorted(repo.root_commits(tip)) == sorted([commits["root"], commits["other_root"]])
        assert repo.root_commits(tip, outside=commits["root"]) == [commits["other_root"]]
        assert repo.root_commits(tip, outside=commits["merged"]) == []
        assert repo.root_commits(commits["root"], outside=tip) == []
