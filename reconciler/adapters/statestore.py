"""Adapter, store: the reconciler's own memory, kept outside the repository's refs (SQLite).

Called by `authorise` (position, effective state, landing verdicts), `decide`
(when a commit was first seen, which plan versions landed and ran) and the
signature cache. Anyone who can push can move refs, so nothing here lives in
Git. One SQLite file per followed branch; every pass commits its changes in
one transaction, so a crash or `kill -9` leaves the previous pass intact.

Only what does not depend on the policy is cached across policies: a
commit's signature status, key fingerprint and signed payload's digest.
Everything policy-dependent (who an actor is, what they may do) is
recomputed by the landing walk, which also keeps, per signed payload, the
first commit it met carrying it (`payloads`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote, unquote

from msgspec import Struct

from reconciler.core import checkpoint_sections as sections
from reconciler.core import journal
from reconciler.core.errors import ReconcilerError, StateNotWritable, TemporaryError
from reconciler.core.events import Lock, Record, Signoff
from reconciler.core.journal import (
    Blame,
    Event,
    IgnoredTrailer,
    Landing,
    OutboxEntry,
    PlanEdit,
    VersionLanded,
)
from reconciler.core.verdicts import Refusal

# The rows' format is the journal's: a database another format wrote is refused on opening.
SCHEMA_VERSION: Final = journal.VERSION
BATCH: Final = 500  # commits looked up per query
# SQLite's page cache, per connection. Its default, 2 MiB, filled as the store
# grew (1 KiB a commit: a service's passes touch every table), so a service's
# memory grew with the history for its first 2,000 commits. The pages are in
# the OS's file cache anyway: a pass over 1,000 commits, or a full verify of
# 10,000, takes no longer with 256 KiB.
PAGE_CACHE_KIB: Final = 256
# Seconds another process's pass is waited for, when the state is busy with it.
BUSY_TIMEOUT: Final = 15.0
# A list of values as one JSON-array parameter, not one `?` each: every length
# of list would be another SQL text, and SQLite's prepared statements, kept by
# Python's statement cache (128 of them, each the larger the longer its list),
# grew with every new number of plans a pass looks up (0.65 KiB a commit).
_LISTED: Final = "(SELECT value FROM json_each(?))"
# SQLite's primary result codes for a write the file system would not take (sqlite3.h):
# PERM, READONLY, IOERR, FULL, CANTOPEN.
_NOT_WRITTEN: Final = frozenset({3, 8, 10, 13, 14})
# What a checkpoint holds (`journal_rows`): the position's keys of `meta`, and these tables
# whole (table -> its number of columns).
# The branch is not among them: a service's state follows `origin/main` where the
# checkpoint's reader follows `main`; the checkpoint's header names the branch.
_META_KEPT: Final = json.dumps(["anchor", "last_verified", "schema", "anchor_seq", "payloads"])
_CHECKPOINTED: Final = {
    "effective": 3,
    "dirty": 2,
    "payloads": 2,
    "landings": 3,
    "plan_versions": 5,
    "events": 5,
    "editors": 2,
}
# What a checkpoint's sections hold besides (`checkpoint_sections.cut`): the commits that
# count as seen when it is loaded (at that time, `?2`), and the runs still open.
_SECTION_TABLES: Final = {"meta": 2, "seen": 1, "open_runs": 1, **_CHECKPOINTED}
_STAMPED: Final = {"seen": ["?2"]}

# Counts the kept transactions that changed the state (`generation`).
_NEXT_GENERATION: Final = (
    "INSERT INTO meta (key, value) VALUES ('generation', '1') "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
)
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS effective (
    path TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (path, field));
CREATE TABLE IF NOT EXISTS dirty (path TEXT PRIMARY KEY, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signatures (
    commit_id TEXT PRIMARY KEY, status TEXT NOT NULL, fingerprint TEXT, reason TEXT NOT NULL,
    payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payloads (
    digest TEXT PRIMARY KEY, commit_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (commit_id TEXT PRIMARY KEY, first_seen TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS landings (
    seq INTEGER PRIMARY KEY, commit_id TEXT UNIQUE NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plan_versions (
    seq INTEGER PRIMARY KEY, path TEXT NOT NULL, blob TEXT NOT NULL, landing TEXT NOT NULL,
    detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, commit_id TEXT NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (run TEXT PRIMARY KEY, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decided (key TEXT PRIMARY KEY, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
CREATE INDEX IF NOT EXISTS landings_refused ON landings (json_extract(detail, '$.authorised'))
    WHERE json_extract(detail, '$.authorised') = 0;
CREATE INDEX IF NOT EXISTS landings_superseding ON landings (seq)
    WHERE json_array_length(detail, '$.superseded') > 0;
CREATE TABLE IF NOT EXISTS editors (path TEXT NOT NULL, actor TEXT NOT NULL,
    PRIMARY KEY (path, actor));
CREATE INDEX IF NOT EXISTS plan_versions_ref ON plan_versions (path, blob);
CREATE INDEX IF NOT EXISTS events_record_run ON events (json_extract(detail, '$.run'))
    WHERE kind = 'record';
CREATE INDEX IF NOT EXISTS events_record_path ON events (
    substr(json_extract(detail, '$.plan'), 1, instr(json_extract(detail, '$.plan'), '@') - 1))
    WHERE kind = 'record';
CREATE INDEX IF NOT EXISTS events_record_refusing ON events (id)
    WHERE kind = 'record' AND json_array_length(detail, '$.refused') > 0;
CREATE INDEX IF NOT EXISTS events_signoff_plan ON events (json_extract(detail, '$.plan'))
    WHERE kind IN ('approve', 'deploy', 'retry');
CREATE INDEX IF NOT EXISTS events_signoff_run ON events (json_extract(detail, '$.run'))
    WHERE kind IN ('approve', 'deploy', 'retry');
"""
# The runs whose last start record no finish record followed yet, as `decide_values.runs_from`
# folds the records: kept as records are added, so a pass finds them without reading
# every record there ever was. Made (and filled from the records) in one transaction
# when a database from before it is opened.
_OPEN_RUNS: Final = "CREATE TABLE open_runs (run TEXT PRIMARY KEY)"
_FINISHED: Final = ("succeeded", "failed", "interrupted")
# A signature cache from before payload digests (and "malformed" signatures) were
# kept: its verdicts would call a copied commit good, so it is dropped, not migrated.
_SIGNATURES: Final = """CREATE TABLE signatures (
    commit_id TEXT PRIMARY KEY, status TEXT NOT NULL, fingerprint TEXT, reason TEXT NOT NULL,
    payload TEXT NOT NULL)"""
SignatureRow = tuple[str, str | None, str, str]  # status, key fingerprint, reason, payload digest
E = TypeVar("E", PlanEdit, Signoff, Record, Lock, IgnoredTrailer)
# The kinds of the events table each event row is kept under.
_KINDS: Final[Mapping[type[Any], tuple[str, ...]]] = {
    PlanEdit: ("edit",),
    Signoff: ("approve", "deploy", "retry"),
    Record: ("record",),
    Lock: ("lock",),
    IgnoredTrailer: ("ignored",),
}


class Position(Struct, frozen=True):
    anchor: str
    last_verified: str
    branch: str


class Transaction:
    """One pass's writes (`StateStore.transaction`); `kept` says how it ended (None: open)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.kept: bool | None = None

    def keep(self) -> None:
        """Make the writes durable (if they cannot be made, none are, and it raises)."""
        if self.kept is None:
            self.kept = False  # should the commit fail, it was rolled back
            self._store._commit()
            self.kept = True

    def discard(self) -> None:
        """Forget the writes."""
        if self.kept is None:
            self.kept = False
            self._store._rollback()


@dataclass(slots=True)
class _Sections:
    """A checkpoint's sections a lazily loaded state has (`StateStore.load_sections`)."""

    read: Callable[[str], sections.SectionRows]  # a section's rows, its digest checked
    names: frozenset[str]  # every section the checkpoint has
    seen: str  # when its commits count as first seen
    loaded: set[str]

    def snapshot(self) -> frozenset[str]:
        return frozenset(self.loaded)

    def restore(self, loaded: frozenset[str]) -> None:
        self.loaded = set(loaded)


class StateStore:
    """One SQLite database in the state directory."""

    def __init__(self, directory: Path, branch: str, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.directory = directory
        self.path = _database(directory, branch)
        # Signature look-ups since the store opened, answered from the cache or not
        # (the service's metrics read them).
        self.signature_hits = 0
        self.signature_misses = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Worker threads of one reconciler share it, serialised by the reconciler's lock;
            # another process's pass is waited for, up to the timeout.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        except (OSError, sqlite3.Error) as error:
            if self.path.exists():  # a state, maybe with an outbox: never to be left behind
                raise StateNotWritable(
                    f"cannot open the state database: {error}",
                    file=str(self.path),
                    hint=keeping_the_state(directory),
                ) from None
            raise ReconcilerError(
                f"cannot open the state directory {directory}: {error}",
                hint="pass --state-dir with a writable directory",
            ) from None
        try:
            with self._errors():
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")  # negative: KiB, not pages
                self._db.executescript(_SCHEMA)
                self.version = self._format()
                self._add_open_runs()
                self._renew_signatures()
        except BaseException:
            self._db.close()
            raise
        self.branch = branch
        # Writes wait for the next read or commit, per table: each table's
        # statements in order, runs of one statement merged into one
        # `executemany` (a walk writes tens of thousands of rows, and one
        # `execute` each cost a tenth of it). Tables have no triggers or foreign
        # keys, so writes to different tables may go in any order; a landing
        # writes to five tables in turn, and one list of all writes merged nothing.
        self._pending: dict[str, list[tuple[str, list[tuple[Any, ...]]]]] = {}
        self._transaction: Transaction | None = None
        # The changes of the state this object kept (`generation` counts every process's):
        # a reader told apart what it wrote itself from what another process did.
        self.generations_made = 0
        self._changes = 0  # the connection's changes when the open transaction began
        # A checkpoint's sections not yet loaded (`load_sections`); None: none to load.
        self._sections: _Sections | None = None
        self._sections_at_begin: tuple[_Sections | None, frozenset[str]] = (None, frozenset())

    def _format(self) -> int:
        """The journal format the database's rows are in; one this code cannot read is
        refused here, before a walk reads or adds a row."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:  # no position kept yet, or kept before the format was: the first
            return SCHEMA_VERSION
        try:
            version = int(row[0])
        except ValueError:
            raise self._unusable(sqlite3.DatabaseError(f"journal format {row[0]!r}")) from None
        try:
            journal.readable(version)
        except ReconcilerError as error:
            raise ReconcilerError(
                f"the state database {self.path} cannot be used: {error.message}",
                hint=error.hint,
            ) from None
        return version

    def _add_open_runs(self) -> None:
        found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'open_runs'"
        if self._db.execute(found).fetchone() is not None:
            return  # no lock taken: a walk may hold it for a while
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._db.execute(found).fetchone() is None:  # not made meanwhile by another
                self._db.execute(_OPEN_RUNS)
                records = self._db.execute(
                    "SELECT detail FROM events WHERE kind = 'record' ORDER BY id"
                )
                for (detail,) in records:
                    record = journal.decode(Record, detail, self.version)
                    for statement, rows in _open_runs_change(record):
                        self._db.executemany(statement, rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _renew_signatures(self) -> None:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(signatures)")}
        if "payload" in columns:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(signatures)")}
            if "payload" not in columns:  # not renewed meanwhile by another
                self._db.execute("DROP TABLE signatures")
                self._db.execute(_SIGNATURES)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's failures as the reconciler's: the database is busy, damaged or foreign."""
        try:
            yield
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise TemporaryError(
                    f"the state database {self.path} is in use by another reconciler process",
                    hint="try again when it is done, or give each its own --state-dir",
                ) from None
            if error.sqlite_errorcode & 0xFF in _NOT_WRITTEN:
                raise StateNotWritable(
                    f"cannot write the state database: {error}",
                    file=str(self.path),
                    hint=keeping_the_state(self.directory),
                ) from None
            raise self._unusable(error) from None
        except sqlite3.Error as error:
            raise self._unusable(error) from None

    def _unusable(self, error: sqlite3.Error) -> ReconcilerError:
        return ReconcilerError(
            f"the state database {self.path} cannot be used: {error}",
            hint="it may be damaged or another program's; pass --state-dir with a new "
            "directory (verify rebuilds the state from Git history)",
        )

    def _write(self, statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
        if not self._db.in_transaction:  # outside a pass, a write is durable at once
            self.flush()
            rows = list(rows)
            if not rows:
                return
            with self._errors():
                # Counted first: should the write then fail, decisions are only made again.
                # The signature cache is none of the state's (what a signature proves,
                # whatever the policy): a pull-request check adds to it, and changes nothing.
                if _table_of(statement) != "signatures":
                    self._db.execute(_NEXT_GENERATION)
                    self.generations_made += 1
                self._db.executemany(statement, rows)
            return
        queue = self._pending.setdefault(_table_of(statement), [])
        if queue and queue[-1][0] == statement:
            queue[-1][1].extend(rows)
        else:
            queue.append((statement, list(rows)))

    def _read(self, query: str, arguments: Iterable[Any] = ()) -> sqlite3.Cursor:
        self.flush()
        with self._errors():
            return self._db.execute(query, tuple(arguments))

    def flush(self) -> None:
        """Send the waiting writes to SQLite (inside the pass's transaction)."""
        pending, self._pending = self._pending, {}
        with self._errors():
            for queue in pending.values():
                for statement, rows in queue:
                    self._db.executemany(statement, rows)

    @contextlib.contextmanager
    def transaction(self, *, keep: bool = True) -> Iterator[Transaction]:
        """A pass's writes, all or none: kept when the block ends (with `keep`; a dry run,
        a verify of a commit that is not on the branch, does not), rolled back on an
        error. Inside, `keep()` or `discard()` ends it sooner (once what a walk wrote is
        published, or found not to be); writes after that are durable at once."""
        if self._transaction is not None and self._transaction.kept is None:
            raise RuntimeError("a transaction of this state store is open already")
        self._begin()
        transaction = self._transaction = Transaction(self)
        try:
            yield transaction
        except BaseException:
            transaction.discard()
            raise
        else:
            if keep:
                transaction.keep()
            else:
                transaction.discard()
        finally:
            if self._transaction is transaction:
                self._transaction = None

    def _begin(self) -> None:
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
        self._changes = self._db.total_changes
        lazy = self._sections
        self._sections_at_begin = (lazy, lazy.snapshot() if lazy is not None else frozenset())

    def open_transaction(self) -> Transaction | None:
        """The transaction writes go to now, if one is open."""
        transaction = self._transaction
        return transaction if transaction is not None and transaction.kept is None else None

    def _commit(self) -> None:
        """End the pass's transaction; if its writes cannot be made (a full disk), none are."""
        try:
            self.flush()
            with self._errors():
                changed = self._db.total_changes != self._changes
                if changed:
                    self._db.execute(_NEXT_GENERATION)
                self._db.execute("COMMIT")
            self.generations_made += changed
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        self._pending = {}
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        # What the transaction loaded is gone with it, a checkpoint's core included.
        self._sections, loaded = self._sections_at_begin
        if self._sections is not None:
            self._sections.restore(loaded)

    # -- what the state decided ----------------------------------------------

    def generation(self) -> int:
        """How many kept transactions changed the state: what was decided from one
        generation is not made from the next (`kept.state_key`)."""
        row = self._read("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row is not None else 0

    def kept_answer(self, name: str) -> str | None:
        """The answer last kept under `name` (`keep_answer`), as its codec wrote it."""
        row = self._read("SELECT detail FROM decided WHERE key = ?", (name,)).fetchone()
        return str(row[0]) if row is not None else None

    def keep_answer(self, name: str, text: str) -> None:
        """Keep an answer made from the state (`app.kept`: the decisions, the audit trail)
        outside any pass, without counting as a change of the state (it is made from it); a
        state busy or read-only now just does not keep it: it is a shortcut, made again
        when missing."""
        if self._db.in_transaction:
            return
        self.flush()
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO decided (key, detail) VALUES (?, ?)", (name, text)
            )
        except sqlite3.Error:
            return

    # -- position -----------------------------------------------------------

    def position(self) -> Position | None:
        rows = dict(self._read("SELECT key, value FROM meta").fetchall())
        if "anchor" not in rows:
            return None
        followed = rows.get("branch", self.branch)
        if followed != self.branch:
            raise ReconcilerError(
                f"the state database {self.path} follows branch '{followed}', not '{self.branch}'",
                hint="give each followed branch its own --state-dir",
            )
        return Position(rows["anchor"], rows["last_verified"], followed)

    def set_position(self, position: Position) -> None:
        self._write(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [
                ("anchor", position.anchor),
                ("last_verified", position.last_verified),
                ("branch", position.branch),
                ("schema", str(SCHEMA_VERSION)),
            ],
        )

    def reset(self, history: Iterable[str] = ()) -> None:
        """Forget the position, the effective state and the payloads' carriers (re-anchoring);
        keep the signature cache, who edited which plan, and what the landings of `history`
        (the new anchor's commits) recorded: their verdicts, the plan versions they landed,
        their approvals, triggers and records, and so the runs. A landing the rewrite
        dropped takes what it recorded with it, but for the runs its records started and
        ended: the service ran them whatever main holds now, and a version that ran must
        not run again. They are kept as if recorded just after the kept landings."""
        self._need_all("")  # what is dropped and what is kept: every row
        self.flush()  # the deletions below read the landings as they are
        kept = set(history)
        with self._errors():
            landings = self._db.execute("SELECT seq, commit_id FROM landings").fetchall()
            dropped = json.dumps([seq for seq, commit in landings if commit not in kept])
            after = 1 + max((seq for seq, commit in landings if commit in kept), default=0)
            self._db.execute(f"DELETE FROM landings WHERE seq IN {_LISTED}", (dropped,))  # noqa: S608
            self._db.execute(
                "DELETE FROM events WHERE seq NOT IN (SELECT seq FROM landings)"
                " AND NOT (kind = 'record' AND json_extract(detail, '$.run') IS NOT NULL)"
            )
            self._db.execute(
                "UPDATE events SET seq = ?1, detail = json_set(detail, '$.seq', ?1)"
                " WHERE seq NOT IN (SELECT seq FROM landings)",
                (after,),
            )
            self._db.execute(
                "DELETE FROM plan_versions WHERE landing NOT IN (SELECT commit_id FROM landings)"
            )
            # The generation is kept: counting again from one, a state re-anchored on the
            # anchor and tip it once held would answer from what was kept from it then.
            self._db.execute("DELETE FROM meta WHERE key != 'generation'")
            for table in ("effective", "dirty", "open_runs", "payloads"):
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            records = self._db.execute(
                "SELECT detail FROM events WHERE kind = 'record' ORDER BY id"
            ).fetchall()
            for (detail,) in records:
                record = journal.decode(Record, detail, self.version)
                for statement, rows in _open_runs_change(record):
                    self._db.executemany(statement, rows)

    # -- checkpoints: the rows a later walk needs, as published and as loaded -------

    def journal_rows(self) -> dict[str, list[list[Any]]]:
        """Every row a walk from the position on needs, per table (`journal`), in memory."""
        rows: dict[str, list[list[Any]]] = {"meta": [], **{table: [] for table in _CHECKPOINTED}}
        with self.journal() as found:
            for table, row in found:
                rows[table].append(row)
        return rows

    @contextlib.contextmanager
    def journal(self) -> Iterator[Iterator[tuple[str, list[Any]]]]:
        """Every row a walk from the position on needs, one at a time as its table and its
        columns, read in one read transaction (one moment's rows) while the block lasts:
        not the signature cache, first-seen times or the outbox, which are this machine's
        own. A history's rows are hundreds of megabytes: a checkpoint is written from them
        a chunk at a time (`app.checkpoints.publish`)."""
        self._need_all("")
        self.flush()
        alone = not self._db.in_transaction
        with self._errors():
            if alone:
                self._db.execute("BEGIN")
            try:
                yield self._journal_rows()
            finally:
                if alone:
                    self._db.execute("COMMIT")

    def _journal_rows(self) -> Iterator[tuple[str, list[Any]]]:
        """Read while `journal`'s block lasts, whose errors it turns into ours."""
        meta = f"SELECT * FROM meta WHERE key IN {_LISTED}"  # noqa: S608
        for row in self._db.execute(meta, (_META_KEPT,)):
            yield "meta", list(row)
        for table in _CHECKPOINTED:
            for row in self._db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - fixed names
                yield table, list(row)

    def open_runs(self) -> list[str]:
        """The runs whose last start record no finish record followed yet."""
        return [run for (run,) in self._read("SELECT run FROM open_runs ORDER BY run")]

    def fresh(self) -> bool:
        """Whether nothing was walked into this state yet (no position, no landing)."""
        if self.position() is not None:
            return False
        return self._read("SELECT 1 FROM landings LIMIT 1").fetchone() is None

    def load_journal(self, rows: Mapping[str, Iterable[list[Any]]], seen: datetime) -> None:
        """Take a fresh state to the rows `journal_rows` read elsewhere (in the open
        transaction); the runs still open are folded from the records, as on re-anchoring.

        The anchor and every commit the landings landed count as first seen at `seen`, as
        a walk from the anchor would have marked them: a commit dated in the future must
        not age from its own date on a state that never saw it."""
        self.flush()
        with self._errors():
            for table, columns in {"meta": 2, **_CHECKPOINTED}.items():
                marks = ", ".join("?" * columns)
                self._db.executemany(
                    f"INSERT OR REPLACE INTO {table} VALUES ({marks})",  # noqa: S608
                    rows.get(table, ()),
                )
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('branch', ?)", (self.branch,))
            stamp = seen.astimezone(UTC).isoformat()
            self._db.execute(
                "INSERT OR IGNORE INTO seen (commit_id, first_seen)"
                " SELECT value, ?1 FROM meta WHERE key = 'anchor'"
                " UNION ALL SELECT j.value, ?1"
                " FROM landings AS l, json_each(l.detail, '$.landed') AS j",
                (stamp,),
            )
            self._db.execute("DELETE FROM open_runs")
            records = self._db.execute(
                "SELECT detail FROM events WHERE kind = 'record' ORDER BY id"
            ).fetchall()
            for (detail,) in records:
                record = journal.decode(Record, detail, self.version)
                for statement, changes in _open_runs_change(record):
                    self._db.executemany(statement, changes)

    def load_journal_text(self, tables: Mapping[str, str], seen: datetime) -> None:
        """`load_journal` from each table's rows as one JSON array's text, parsed by SQLite:
        a history's rows are hundreds of megabytes, too many to decode in Python. The
        indexes are built once, after the rows are in."""
        self.flush()
        with self._errors():
            names = self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).fetchall()
            for (name,) in names:
                self._db.execute(f"DROP INDEX {name}")
            for table, columns in {"meta": 2, **_CHECKPOINTED}.items():
                if table not in tables:
                    continue
                picked = ", ".join(f"json_extract(value, '$[{n}]')" for n in range(1, columns + 1))
                self._db.execute(
                    f"INSERT OR REPLACE INTO {table} SELECT {picked} FROM json_each(?)",  # noqa: S608
                    (tables[table],),
                )
            for statement in _SCHEMA.split(";"):
                if "CREATE INDEX" in statement:
                    self._db.execute(statement)
        self.load_journal({}, seen)

    # -- a checkpoint loaded section by section (a pull-request check's) -------

    def go_ephemeral(self) -> None:
        """From now on, read and write tables of this connection's own, which shadow the
        file's (SQLite's temp schema): nothing is kept but signature verdicts, so no other
        process ever finds a state holding only the sections one check asked for. Only
        on a fresh state, before any transaction."""
        with self._errors():
            found = self._db.execute(
                "SELECT type, sql FROM sqlite_master WHERE sql IS NOT NULL"
                " AND tbl_name != 'signatures' ORDER BY type = 'index'"
            ).fetchall()
            for kind, sql in found:
                head = "CREATE TABLE " if kind == "table" else "CREATE INDEX "
                if not sql.startswith(head):
                    raise self._unusable(sqlite3.DatabaseError(f"unexpected schema: {sql}"))
                name = sql[len(head) :]
                self._db.execute(
                    ("CREATE TEMP TABLE " if kind == "table" else "CREATE INDEX temp.") + name
                )

    def load_sections(
        self,
        core: sections.SectionRows,
        read: Callable[[str], sections.SectionRows],
        names: frozenset[str],
        seen: datetime,
    ) -> None:
        """Take an ephemeral fresh state (`go_ephemeral`) to a checkpoint's core section;
        every other section is loaded when a question first needs it (`_need`), by `read`."""
        self._sections = _Sections(read, names, seen.astimezone(UTC).isoformat(), set())
        self._sections.loaded.add(sections.CORE)
        self._load_rows(core, self._sections.seen)

    def _need(self, names: Iterable[str]) -> None:
        """Load the sections named that are not loaded yet (with no checkpoint loaded
        section by section, every row is here already)."""
        lazy = self._sections
        if lazy is None:
            return
        for name in sorted(set(names) - lazy.loaded):
            if name in lazy.names:
                self._load_rows(lazy.read(name), lazy.seen)
            lazy.loaded.add(name)

    def _need_all(self, prefix: str) -> None:
        if self._sections is not None:
            self._need(sections.every_section(prefix, self._sections.names))

    def _load_rows(self, rows: sections.SectionRows, stamp: str) -> None:
        """Add a section's rows; its `seen` commits count as first seen at `stamp`, as a
        whole checkpoint's landed commits do (`load_journal`)."""
        self.flush()
        with self._errors():
            for table, given in rows.items():
                columns = _SECTION_TABLES.get(table)
                if columns is None:
                    raise ReconcilerError(
                        f"a checkpoint section holds rows of {table!r}, which no state has",
                        hint="run `reconciler verify --full`, which takes no checkpoint",
                    )
                verb = "INSERT OR IGNORE" if table in ("seen", "open_runs") else "INSERT OR REPLACE"
                if isinstance(given, str):
                    picked = [f"json_extract(value, '$[{n}]')" for n in range(1, columns + 1)]
                    self._db.execute(
                        f"{verb} INTO {table} SELECT {', '.join(picked + _STAMPED.get(table, []))}"  # noqa: S608
                        " FROM json_each(?1)",
                        (given, stamp) if table in _STAMPED else (given,),
                    )
                else:
                    marks = ", ".join("?" * (columns + len(_STAMPED.get(table, []))))
                    extra = (stamp,) if table in _STAMPED else ()
                    self._db.executemany(
                        f"{verb} INTO {table} VALUES ({marks})",
                        [(*row, *extra) for row in given],
                    )

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[Callable[[], None]]:
        """Writes that may be taken back inside the open transaction: the block gets a
        function that forgets every write made since it began (and goes on)."""
        self.flush()
        with self._errors():
            self._db.execute("SAVEPOINT walk_from")
        sections_then = self._sections
        loaded_then = sections_then.snapshot() if sections_then else frozenset()

        def back() -> None:
            self._pending = {}
            with self._errors():
                self._db.execute("ROLLBACK TO walk_from")
            self._sections = sections_then
            if sections_then is not None:
                sections_then.restore(loaded_then)

        try:
            yield back
        finally:
            if self._db.in_transaction:
                self.flush()
                with self._errors():
                    self._db.execute("RELEASE walk_from")

    def anchor_seq(self) -> int:
        """The last landing before the trust anchor (0 but after a re-anchor that kept some):
        reports "after the anchor" start past it, and the anchor's own plan versions land
        just after it."""
        row = self._read("SELECT value FROM meta WHERE key = 'anchor_seq'").fetchone()
        return int(row[0]) if row is not None else 0

    def set_anchor_seq(self, seq: int) -> None:
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [("anchor_seq", seq)])

    # -- effective state ----------------------------------------------------

    def effective(self) -> dict[str, dict[str, str]]:
        state: dict[str, dict[str, str]] = {}
        for path, field, value in self._read("SELECT path, field, value FROM effective"):
            state.setdefault(_path_read(path), {})[field] = value
        return state

    def effective_at(self, paths: Iterable[str]) -> dict[str, dict[str, str]] | None:
        """`effective`, of `paths` alone (those it holds): the plans a command decides
        again, not the rows of every plan. None for a path that is not UTF-8, which the
        store keeps as bytes a JSON list cannot name: the caller reads them all."""
        wanted = list(paths)
        if any(not _is_utf8(path) for path in wanted):
            return None
        state: dict[str, dict[str, str]] = {}
        query = f"SELECT path, field, value FROM effective WHERE path IN {_LISTED}"  # noqa: S608
        for start in range(0, len(wanted), BATCH):
            listed = json.dumps(wanted[start : start + BATCH])
            for found, field, value in self._read(query, (listed,)):
                state.setdefault(_path_read(found), {})[field] = value
        return state

    def effective_of(self, path: str, folder: str) -> dict[str, dict[str, str]]:
        """`effective`, of `path` and the paths under `folder` (ending in '/') alone: a
        policy is built from teams.yaml and environments/, not the rows of every plan. A
        path stored as bytes (not UTF-8) sorts after all text, so under no folder: it is
        no file the layout names."""
        state: dict[str, dict[str, str]] = {}
        after = folder[:-1] + chr(ord(folder[-1]) + 1)  # the first text past the folder
        query = (
            "SELECT path, field, value FROM effective WHERE path = ? OR (path >= ? AND path < ?)"
        )
        for found, field, value in self._read(query, (path, folder, after)):
            state.setdefault(_path_read(found), {})[field] = value
        return state

    def replace_effective(self, path: str, fields: Mapping[str, str]) -> None:
        stored = _path_stored(path)
        self._write("DELETE FROM effective WHERE path = ?", [(stored,)])
        self._write(
            "INSERT INTO effective (path, field, value) VALUES (?, ?, ?)",
            [(stored, field, value) for field, value in fields.items()],
        )

    def dirty(self) -> dict[str, dict[str, Refusal | None]]:
        """Where main's content is not the effective content: per path, per field, the
        refusal that left it so (None: never authorised)."""
        rows = self._read("SELECT * FROM dirty")
        return {
            _path_read(path): journal.decode_blame(detail, self.version) for path, detail in rows
        }

    def set_dirty(self, dirty: Mapping[str, Blame]) -> None:
        self._write("DELETE FROM dirty", [()])
        self._write(
            "INSERT INTO dirty (path, detail) VALUES (?, ?)",
            [(_path_stored(path), journal.encode(blame)) for path, blame in dirty.items()],
        )

    # -- signatures (policy-independent cache) ------------------------------

    def signatures(self, commits: Iterable[str]) -> dict[str, SignatureRow]:
        found: dict[str, SignatureRow] = {}
        columns = "commit_id, status, fingerprint, reason, payload"
        wanted = list(dict.fromkeys(commits))
        for batch in _batches(wanted):
            query = f"SELECT {columns} FROM signatures WHERE commit_id IN {_LISTED}"  # noqa: S608
            for commit_id, status, fingerprint, reason, payload in self._read(query, batch):
                found[commit_id] = (status, fingerprint, reason, payload)
        self.signature_hits += len(found)
        self.signature_misses += len(wanted) - len(found)
        return found

    def remember_signatures(self, checks: Mapping[str, SignatureRow]) -> None:
        """Remember signature verdicts; an OpenPGP signature no certificate at hand could
        check ("unverified") is no verdict yet: a later policy may list its key."""
        from reconciler.core.signatures import UNVERIFIED  # noqa: PLC0415 - a walk's, only

        self._write(
            "INSERT OR REPLACE INTO signatures"
            " (commit_id, status, fingerprint, reason, payload) VALUES (?, ?, ?, ?, ?)",
            [(commit, *check) for commit, check in checks.items() if check[0] != UNVERIFIED],
        )

    # -- signed payloads: the first commit the walk met carrying each ----------

    def carriers(self, digests: Iterable[str]) -> dict[str, str | None]:
        """The first carrier of each payload digest asked for; None: none met yet."""
        wanted = list(dict.fromkeys(digests))
        self._need(map(sections.section_of_payload, wanted))
        found: dict[str, str | None] = dict.fromkeys(wanted)
        for batch in _batches(wanted):
            query = f"SELECT digest, commit_id FROM payloads WHERE digest IN {_LISTED}"  # noqa: S608
            found.update(self._read(query, batch))
        return found

    def add_carriers(self, carriers: Mapping[str, str]) -> None:
        self._need(map(sections.section_of_payload, carriers))
        self._write(
            "INSERT OR IGNORE INTO payloads (digest, commit_id) VALUES (?, ?)",
            list(carriers.items()),
        )

    def payloads_counted(self) -> bool:
        """Whether the walks that made this state kept the payloads' first carriers
        (a state from before they did has them counted afresh, once)."""
        row = self._read("SELECT value FROM meta WHERE key = 'payloads'").fetchone()
        return row is not None

    def mark_payloads_counted(self) -> None:
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [("payloads", "1")])

    # -- what was seen when ---------------------------------------------------

    def first_seen(self, commits: Iterable[str]) -> dict[str, datetime]:
        found: dict[str, datetime] = {}
        commits = list(commits)
        self._need(map(sections.section_of_seen, commits))
        for batch in _batches(commits):
            query = f"SELECT commit_id, first_seen FROM seen WHERE commit_id IN {_LISTED}"  # noqa: S608
            for commit_id, when in self._read(query, batch):
                found[commit_id] = datetime.fromisoformat(when)
        return found

    def mark_seen(self, commits: Iterable[str], when: datetime) -> None:
        commits = list(commits)
        self._need(map(sections.section_of_seen, commits))
        stamp = when.astimezone(UTC).isoformat()
        self._write(
            "INSERT OR IGNORE INTO seen (commit_id, first_seen) VALUES (?, ?)",
            [(commit, stamp) for commit in commits],
        )

    # -- landings -------------------------------------------------------------

    def next_seq(self) -> int:
        (highest,) = self._read("SELECT COALESCE(MAX(seq), 0) FROM landings").fetchone()
        return int(highest) + 1

    def add_judgement(
        self,
        landing: Landing,
        *,
        seen: Iterable[str],
        when: datetime,
        carriers: Mapping[str, str],
        events: Iterable[Event],
        versions: Iterable[VersionLanded],
        editors: Mapping[str, Iterable[str]],
    ) -> None:
        """One landing as the walk judged it, written at once: the commits it landed (seen
        at `when`), the payloads they carried first, its events in the order found, the
        plan versions it made effective, who edited which plan, and its verdict."""
        self.mark_seen(seen, when)
        self.add_carriers(carriers)
        for event in events:
            self.add_event(event)
        for version in versions:
            self.add_plan_version(version)
        for path, actors in editors.items():
            self.add_editors(path, actors)
        self.add_landing(landing)

    def add_landing(self, landing: Landing) -> None:
        self._write(
            "INSERT INTO landings (seq, commit_id, detail) VALUES (?, ?, ?)",
            [(landing.seq, landing.verdict.commit, journal.encode(landing))],
        )

    def landings(self, after_seq: int = 0) -> list[Landing]:
        self._need([sections.LANDINGS])
        rows = self._read(
            "SELECT seq, detail FROM landings WHERE seq > ? ORDER BY seq", (after_seq,)
        )
        return [journal.decode(Landing, detail, self.version, seq=seq) for seq, detail in rows]

    def refusing_landings(self) -> list[Landing]:
        """The landings that refused a change, or refused one that later commits undid: by
        the indexes of those few, not a decode of every landing (the audit trail's)."""
        self._need([sections.LANDINGS])
        rows = self._read(
            "SELECT seq, detail FROM landings WHERE json_extract(detail, '$.authorised') = 0"
            " UNION SELECT seq, detail FROM landings"
            " WHERE json_array_length(detail, '$.superseded') > 0 ORDER BY seq"
        )
        return [journal.decode(Landing, detail, self.version, seq=seq) for seq, detail in rows]

    def landed_in(self, seqs: Iterable[int]) -> dict[int, tuple[str, ...]]:
        """The commits each of the landings `seqs` landed, in the walk's order."""
        self._need([sections.LANDINGS])
        rows = self._read(
            "SELECT seq, json_extract(detail, '$.landed') FROM landings"
            " WHERE seq IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(set(seqs))),),
        )
        return {seq: tuple(json.loads(landed)) for seq, landed in rows}

    def landing_details(
        self, after_seq: int, upto_seq: int | None = None, *, refused_only: bool = False
    ) -> list[str]:
        """The stored verdicts of a range of landings, as the journal's JSON text (not
        decoded: a report of thousands of landings passes them through)."""
        self._need([sections.LANDINGS])
        query = "SELECT detail FROM landings WHERE seq > ?"
        arguments: list[int] = [after_seq]
        if upto_seq is not None:
            query += " AND seq <= ?"
            arguments.append(upto_seq)
        if refused_only:
            query += " AND json_extract(detail, '$.authorised') = 0"
        return [detail for (detail,) in self._read(query + " ORDER BY seq", arguments)]

    def landing_seq(self, commit: str) -> int | None:
        self._need([sections.LANDINGS])
        row = self._read("SELECT seq FROM landings WHERE commit_id = ?", (commit,)).fetchone()
        return int(row[0]) if row else None

    def add_plan_version(self, version: VersionLanded) -> None:
        """A plan version made effective by a landing, and what that landing's actor could do."""
        self._write(
            "INSERT INTO plan_versions (path, blob, landing, detail) VALUES (?, ?, ?, ?)",
            [(version.path, version.blob, version.landing, journal.encode(version))],
        )

    def plan_versions(self, only: Iterable[tuple[str, str]] | None = None) -> list[VersionLanded]:
        """Landed plan versions in landing order; with `only`, those (path, blob) pairs,
        looked up by index (a pass asks for the versions on main, not the history)."""
        if only is not None:
            only = list(only)
            self._need(sections.section_of_versions(path) for path, _ in only)
        else:
            self._need_all("versions.")
        if only is None:
            rows = self._read("SELECT path, blob, landing, detail FROM plan_versions ORDER BY seq")
        else:
            query = """
                SELECT v.path, v.blob, v.landing, v.detail FROM json_each(?) AS w
                    CROSS JOIN plan_versions AS v
                    WHERE v.path = json_extract(w.value, '$[0]')
                        AND v.blob = json_extract(w.value, '$[1]')
                    ORDER BY v.seq
            """
            rows = self._read(query, (json.dumps([list(pair) for pair in only]),))
        return [
            journal.decode(VersionLanded, detail, self.version, path=path, blob=blob, landing=at)
            for path, blob, at, detail in rows
        ]

    def add_event(self, event: Event) -> None:
        """A plan edit, an approval, trigger, retry, record, or an ignored trailer, in
        landing order."""
        self._write(
            "INSERT INTO events (seq, commit_id, kind, detail) VALUES (?, ?, ?, ?)",
            [(event.seq, event.commit, journal.event_kind(event), journal.encode(event))],
        )
        if isinstance(event, Record):
            for statement, rows in _open_runs_change(event):
                self._write(statement, rows)

    def run_records(self, paths: Iterable[str], refs: Iterable[str]) -> list[Record]:
        """The records a decision about the plans at `paths` (versions `refs`) needs, in
        landing order: those of every run of these plans and of every run still open, and
        the records that refuse one of `refs`. A pass reads these, not the whole history."""
        self._need(sections.sections_of_events(["record"]))
        # Each part is driven from the short list and looks events up by index (the
        # `+` drops a column's affinity, without which SQLite would not use it).
        query = """
            WITH runs(run) AS (
                SELECT +run FROM open_runs
                UNION
                SELECT json_extract(e.detail, '$.run') FROM json_each(?) AS p
                    CROSS JOIN events AS e
                    WHERE e.kind = 'record'
                        AND substr(json_extract(e.detail, '$.plan'), 1,
                                   instr(json_extract(e.detail, '$.plan'), '@') - 1) = p.value)
            SELECT e.id, e.detail FROM runs AS r CROSS JOIN events AS e
                WHERE e.kind = 'record' AND json_extract(e.detail, '$.run') = +r.run
            UNION
            SELECT id, detail FROM events INDEXED BY events_record_refusing
                WHERE kind = 'record' AND json_array_length(detail, '$.refused') > 0
                    AND EXISTS (SELECT 1 FROM json_each(detail, '$.refused')
                                WHERE value IN (SELECT value FROM json_each(?)))
            ORDER BY 1
        """
        arguments = (json.dumps(list(paths)), json.dumps(list(refs)))
        return [
            journal.decode(Record, detail, self.version)
            for _, detail in self._read(query, arguments)
        ]

    def finished_in(self, environment: str) -> list[Record]:
        """The succeeded and failed finish records of runs in `environment`, in landing order:
        what ran there, as the records show it (`pipeline.versions_ran`). Read only where a
        rollback plan asks, so a scan of the records will do."""
        self._need(sections.sections_of_events(["record"]))
        rows = self._read(
            """
            SELECT detail FROM events
                WHERE kind = 'record'
                    AND json_extract(detail, '$.environment') = ?
                    AND json_extract(detail, '$.result') IN ('succeeded', 'failed')
                ORDER BY id
            """,
            (environment,),
        )
        return [journal.decode(Record, detail, self.version) for (detail,) in rows]

    def signoff_events(self, refs: Iterable[str], runs: Iterable[str]) -> list[Signoff]:
        """The approvals and triggers of the plan versions `refs`, and the retries of `runs`."""
        self._need(sections.sections_of_events(["approve", "deploy", "retry"]))
        query = """
            SELECT e.id, e.detail FROM json_each(?) AS p CROSS JOIN events AS e
                WHERE e.kind IN ('approve', 'deploy', 'retry')
                    AND json_extract(e.detail, '$.plan') = p.value
            UNION
            SELECT e.id, e.detail FROM json_each(?) AS p CROSS JOIN events AS e
                WHERE e.kind IN ('approve', 'deploy', 'retry')
                    AND json_extract(e.detail, '$.run') = p.value
            ORDER BY 1
        """
        arguments = (json.dumps(list(refs)), json.dumps(list(runs)))
        return [
            journal.decode(Signoff, detail, self.version)
            for _, detail in self._read(query, arguments)
        ]

    def events(self, kind: type[E]) -> list[E]:
        """Every event of one kind (every sign-off for `Signoff`), in landing order."""
        self._need(sections.sections_of_events(_KINDS[kind]))
        query = f"SELECT detail FROM events WHERE kind IN {_LISTED} ORDER BY id"  # noqa: S608
        rows = self._read(query, (json.dumps(_KINDS[kind]),))
        return [journal.decode(kind, detail, self.version) for (detail,) in rows]

    # -- outbox: finish records not yet published --------------------------------

    def put_outbox(self, entry: OutboxEntry) -> None:
        """Keep a finished run's record until it is published: a crash or lost race loses none."""
        self._write(
            "INSERT OR REPLACE INTO outbox (run, detail) VALUES (?, ?)",
            [(entry.run, journal.encode(entry))],
        )

    def outbox(self) -> dict[str, OutboxEntry]:
        return {
            run: journal.decode(OutboxEntry, detail, self.version, run=run)
            for run, detail in self._read("SELECT * FROM outbox")
        }

    def clear_outbox(self, run: str) -> None:
        self._write("DELETE FROM outbox WHERE run = ?", [(run,)])

    def records_of(self, runs: Iterable[str], *, uncounted: bool = False) -> list[Record]:
        """The records of these runs the walk collected, in landing order (by index, and
        one statement however many runs: see `run_records`); with `uncounted`, those
        that did not count as well (a run's second finish record)."""
        self._need(sections.sections_of_events(["record", "ignored"] if uncounted else ["record"]))
        query = """
            SELECT e.id, e.detail FROM json_each(?1) AS r CROSS JOIN events AS e
                WHERE e.kind = 'record' AND json_extract(e.detail, '$.run') = r.value
        """
        if uncounted:  # few: read by kind, not by index
            query += """
            UNION
            SELECT id, json_extract(detail, '$.record') FROM events
                WHERE kind = 'ignored' AND json_extract(detail, '$.record.run')
                    IN (SELECT value FROM json_each(?1))
            """
        wanted = json.dumps(sorted(set(runs)))
        rows = self._read(query + " ORDER BY 1", (wanted,))
        return [journal.decode(Record, detail, self.version) for _, detail in rows]

    def others_starts(self, instance: str, limit: int) -> list[Record]:
        """The start records, among the walk's last `limit` records of any plan, that name a
        reconciler other than `instance` (or none). Read by the index on kind, and decoded
        only when another's: a pass reads what is recent, and a reconciler alone reads
        nothing (`runs.contested` judges them)."""
        self._need(sections.sections_of_events(["record"]))
        rows = self._read(
            """
            SELECT detail FROM events
                WHERE kind = 'record'
                    AND id >= coalesce((SELECT id FROM events WHERE kind = 'record'
                                        ORDER BY id DESC LIMIT 1 OFFSET ?2), 0)
                    AND json_extract(detail, '$.result') = 'started'
                    AND coalesce(json_extract(detail, '$.instance'), '') != ?1
                ORDER BY id DESC
            """,
            (instance, limit - 1),
        )
        return [journal.decode(Record, detail, self.version) for (detail,) in rows]

    def add_editors(self, path: str, actors: Iterable[str]) -> None:
        self._need([sections.section_of_editors(path)])
        self._write(
            "INSERT OR IGNORE INTO editors VALUES (?, ?)",
            [(_path_stored(path), actor) for actor in actors],
        )

    def editors_of(self, paths: list[str]) -> dict[str, frozenset[str]]:
        self._need(map(sections.section_of_editors, paths))
        found: dict[str, set[str]] = {path: set() for path in paths}
        query = (
            "SELECT e.path, e.actor FROM json_each(?) AS p CROSS JOIN editors AS e"
            " WHERE e.path = p.value"
        )
        texts = [path for path in paths if isinstance(_path_stored(path), str)]
        for stored, actor in self._read(query, (json.dumps(texts),)):
            found[_path_read(stored)].add(actor)
        for path in paths:  # names that are not UTF-8 are stored as their bytes
            if path not in texts:
                found[path] = self.editors(path)
        return {path: frozenset(actors) for path, actors in found.items()}

    def editors(self, path: str) -> set[str]:
        self._need([sections.section_of_editors(path)])
        query = "SELECT actor FROM editors WHERE path = ?"
        return {actor for (actor,) in self._read(query, (_path_stored(path),))}


# A file name Git holds may be any bytes; one that is not UTF-8 reaches us decoded with
# surrogateescape, which SQLite's TEXT cannot take: it is kept as its bytes (a BLOB).
def _path_stored(path: str) -> str | bytes:
    if path.isascii() or _is_utf8(path):
        return path
    return path.encode("utf-8", "surrogateescape")


def _is_utf8(path: str) -> bool:
    """Whether `path` is stored as text (`_path_stored`): no lone surrogate in it."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _path_read(stored: str | bytes) -> str:
    return stored.decode("utf-8", "surrogateescape") if isinstance(stored, bytes) else stored


def _open_runs_change(record: Record) -> list[tuple[str, list[tuple[str]]]]:
    """How a record changes the open runs: a start opens its run (again), a finish closes it.

    As `decide_values.runs_from` folds them: a record without a run or a plan counts for nothing.
    """
    run, plan, result = record.run, record.plan, record.result
    if not run or not plan:
        return []
    if result == "started":
        return [("INSERT OR IGNORE INTO open_runs (run) VALUES (?)", [(run,)])]
    if result in _FINISHED:
        return [("DELETE FROM open_runs WHERE run = ?", [(run,)])]
    return []


_TABLE_NAME: Final = re.compile(r"\b(?:INTO|FROM)\s+(\w+)")


@functools.cache
def _table_of(statement: str) -> str:
    """The table a (fixed) write statement changes."""
    found = _TABLE_NAME.search(statement)
    assert found is not None, statement
    return found.group(1)


def _batches(values: Iterable[str]) -> Iterator[tuple[str]]:
    """`values` as the one argument of `_LISTED`: a JSON array, at most `BATCH` at a time."""
    wanted = list(values)
    for start in range(0, len(wanted), BATCH):
        yield (json.dumps(wanted[start : start + BATCH]),)


def keeping_the_state(directory: Path) -> str:
    """How to go on from a state directory that takes no writes without losing it.

    A new, empty state would rebuild everything else from Git, but not the
    finish records waiting in its outbox: their runs would be recorded
    interrupted.
    """
    return (
        f"the state in {directory} is kept as it is, with the finish records waiting in its "
        "outbox: make the directory writable again (or free space on its file system) and "
        f"run again; to move it, stop the reconciler, copy the whole directory (`cp -a "
        f"{directory} NEW`: each database with its -wal file) and pass --state-dir NEW. "
        "A new, empty directory would lose the outbox"
    )


def _database(directory: Path, branch: str) -> Path:
    """The branch's database: its name percent-encoded, so no two branches share one.

    A database named the old way ('/' written '--', which 'a/b' and 'a--b'
    shared) is kept when it exists: a new one would re-anchor from scratch,
    trusting a history rewritten meanwhile. `position` refuses it if it
    follows another branch.
    """
    encoded = directory / f"{quote(branch, safe='')}.sqlite3"
    legacy = directory / f"{branch.replace('/', '--')}.sqlite3"
    if legacy != encoded and legacy.exists() and not encoded.exists():
        return legacy
    return encoded


def service_branches(directory: Path) -> list[str]:
    """The branches a reconciler service (`apply`, `watch`) has followed with the state in
    `directory`: each took its database's lock (`ServiceLock`), whose file stays."""
    suffix = ".sqlite3.lock"
    try:
        names = sorted(path.name for path in directory.glob(f"*{suffix}"))
    except OSError:
        return []
    return [unquote(name.removesuffix(suffix)) for name in names]


class ServiceLock:
    """The one reconciler service (apply or watch) on a state database at a time.

    Two on one state would share an instance name: each would take the other's
    live runs for its own dead ones and record them interrupted. The lock is
    the kernel's (`flock`), so it goes with the process, even on `kill -9`.
    """

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        try:
            self._file = self.path.open("a+", encoding="utf-8")
        except OSError as error:
            raise StateNotWritable(
                f"cannot lock the state database: {error.strerror}",
                file=str(database),
                hint=keeping_the_state(database.parent),
            ) from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise ReconcilerError(
                f"another reconciler ({holder}) is using the state database {database}",
                hint="run one reconciler per state directory: give each its own "
                "--state-dir and --instance",
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        self._file.close()  # closing the descriptor releases the lock
