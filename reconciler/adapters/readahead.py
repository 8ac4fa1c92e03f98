"""Adapter, process: history read ahead of the walk (stage 3), what no policy changes.

Called by `authorise`, whose walk judges landings in history order. What it
needs of a batch of commits that does not depend on the policy is prepared
here: the commits read, their SSHSIG signatures checked (unless the state
store remembers them), the trees they bring checked (`treechecks.TreeChecks`),
and the plan and teams.yaml versions they change read and parsed into fields
(`ParsedVersions` keeps them for the judging).

A long walk hands this work to worker processes: the next batches are sent
before this one is judged, so every core works, and while the workers are
still on the batch the walk needs, the walk reads a queued one itself rather
than wait. A walk of one batch (every pass of a service) starts none.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from msgspec import Struct, field
from msgspec.structs import replace

from reconciler.adapters.gitobjects import NULL_OID, CommitInfo, HistoryEntry
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.statestore import SignatureRow, StateStore
from reconciler.core import schema
from reconciler.core.documents import MAX_FILE_BYTES
from reconciler.core.errors import ConfigError
from reconciler.core.fields import FieldMap, invalid, plan_fields, teams_fields
from reconciler.core.layout import place
from reconciler.core.signatures import check_commit_signature

if TYPE_CHECKING:
    from concurrent.futures import Executor

PREFETCH: Final = 512  # commits read, checked and parsed per batch
MAX_WORKERS: Final = 3  # worker processes of a long walk, at most (one core stays the walk's)
FIELDS_MEMO: Final = 2048  # recently parsed plan and teams.yaml versions kept, per generation
STRUCTURED: Final = ("plan", "teams")  # kinds judged per field, so read and parsed

SignatureCheck = SignatureRow  # status, key fingerprint, reason, payload digest
VersionKey = tuple[str, str, str]  # kind, name, blob
Wanted = tuple[str, str, str, str]  # a version to parse: path, kind, name, blob
# What `prepare` returns: the commits read, their signature checks, the versions parsed,
# and the history entries to take otherwise after their trees were checked.
Prepared = tuple[
    dict[str, CommitInfo],
    dict[str, SignatureCheck],
    dict[VersionKey, FieldMap],
    dict[str, HistoryEntry],
]
Inputs = tuple[list[str], frozenset[str], list[Wanted], list[HistoryEntry]]


class ParsedVersions:
    """Parsed versions by (kind, name, blob), bounded by the files, not the history: the
    newest version parsed of each file (where its next change starts from), and the
    versions parsed lately in two generations, the older dropped when the newer fills,
    so what the last batch parsed is still at hand."""

    def __init__(self, limit: int = FIELDS_MEMO) -> None:
        self._limit = limit
        self._newer: dict[VersionKey, FieldMap] = {}
        self._older: dict[VersionKey, FieldMap] = {}
        self._latest: dict[tuple[str, str], tuple[str, FieldMap]] = {}  # (kind, name)

    def __len__(self) -> int:
        """Versions held, each once."""
        held = self._newer.keys() | self._older.keys()
        return len(held | {(*file, blob) for file, (blob, _) in self._latest.items()})

    def get(self, key: VersionKey) -> FieldMap | None:
        found = self._newer.get(key)
        if found is None:
            found = self._older.get(key)
        if found is None:
            kind, name, blob = key
            latest = self._latest.get((kind, name))
            found = latest[1] if latest is not None and latest[0] == blob else None
        return found

    def put(self, key: VersionKey, fields: FieldMap) -> None:
        self.add({key: fields})

    def add(self, parsed: Mapping[VersionKey, FieldMap]) -> None:
        """Remember `parsed` together: a batch's versions all stay until the next batch."""
        if len(self._newer) + len(parsed) > self._limit:
            self._older, self._newer = self._newer, {}
        self._newer.update(parsed)
        for (kind, name, blob), fields in parsed.items():
            self._latest[(kind, name)] = (blob, fields)


class ReadBatch(Struct, frozen=True):
    """A batch of history, read: its commits and what their signatures prove."""

    entries: list[HistoryEntry]
    infos: dict[str, CommitInfo]
    checks: dict[str, SignatureCheck]


class ReadAhead:
    """Batches of a walk's history, each read (and its versions parsed) when it is needed."""

    def __init__(
        self,
        repo: GitRepo,
        store: StateStore,
        versions: ParsedVersions,
        *,
        size: int = PREFETCH,
        workers: int | None = None,
    ) -> None:
        self.repo = repo
        self.store = store
        self.versions = versions
        self.size = size
        # One worker per core beside the walk's own; none where there is only one core.
        self.workers = workers if workers is not None else min(MAX_WORKERS, _cores() - 1)

    def batches(self, history: Iterator[HistoryEntry]) -> Generator[ReadBatch, None, None]:
        """`history` in batches, in order, each read. Close it when stopping early."""
        batches = _batched(history, self.size)
        opening = next(batches, None)
        flight: deque[_Batch] = deque([_Batch(opening)] if opening else [])
        worker: Executor | None = None
        try:
            for entries in batches:
                if worker is None and self.workers > 0:
                    from reconciler.adapters.process import worker_pool  # noqa: PLC0415 - long walks only

                    worker = worker_pool(self.workers)
                asked: frozenset[VersionKey] = frozenset().union(
                    *(batch.versions for batch in flight)
                )
                flight.append(self._send(entries, worker, asked))
                # Each worker has a batch to work on and one waiting.
                if len(flight) > 2 * self.workers:
                    yield self._resolve(self._next(flight))
            while flight:
                yield self._resolve(self._next(flight))
        finally:
            if worker is not None:
                worker.shutdown(cancel_futures=True)

    def read_now(self, commits: list[str]) -> ReadBatch:
        """Many commits read and their signatures checked in one batch, here and now."""
        entries = [HistoryEntry(commit, (), ()) for commit in commits]
        return self._resolve(self._send(entries, None, frozenset(), walked=False))

    def _next(self, flight: deque[_Batch]) -> _Batch:
        """The next batch in order.

        While the workers are still on it, this process reads a batch queued
        behind it that no worker has started (the last one), rather than wait:
        how the reading's cost compares with the judging's depends on the
        machine and the history, so the cores share it as it comes.
        """
        head = flight.popleft()
        while head.prepared is not None and not head.prepared.done():
            queued = next(
                (
                    index
                    for index in reversed(range(len(flight)))
                    if (outcome := flight[index].prepared) is not None and outcome.cancel()
                ),
                None,
            )
            if queued is None:
                break
            batch = flight[queued]
            flight[queued] = replace(batch, prepared=_Done(prepare(self.repo, *batch.inputs)))
        return head

    def _send(
        self,
        entries: list[HistoryEntry],
        worker: Executor | None,
        asked: frozenset[VersionKey],
        *,
        walked: bool = True,
    ) -> _Batch:
        """Have a batch's commits read and checked (and their trees, when `walked`), and
        the plan and teams.yaml versions it needs read and parsed: by `worker`, or here
        and now without one.

        Versions already parsed, or `asked` for by the batches in flight, are not read again.
        A version is its file's kind and name and its blob, not the blob alone: the same
        bytes are another plan's fields under another name (or invalid there).
        """
        commits = [entry.id for entry in entries]
        stored = self.store.signatures(commits)
        wanted: dict[VersionKey, Wanted] = {}
        # Versions parsed before, taken along: the cache may drop them before this batch
        # is judged, and reading one then costs a round trip to git.
        held: dict[VersionKey, FieldMap] = {}
        for entry in entries:
            for change in entry.changes:
                placement = place(change.path)
                if placement.kind not in STRUCTURED:
                    continue
                for blob in (change.old_blob, change.new_blob):
                    key = (placement.kind, placement.name, blob)
                    if blob == NULL_OID or key in asked:
                        continue
                    known = self.versions.get(key)
                    if known is None:
                        wanted[key] = (change.path, placement.kind, placement.name, blob)
                    else:
                        held[key] = known
        inputs: Inputs = (
            commits,
            frozenset(stored),
            list(wanted.values()),
            entries if walked else [],
        )
        prepared: _Outcome | None = None
        if worker is not None:
            with contextlib.suppress(RuntimeError):  # a broken worker: work here instead
                prepared = worker.submit(prepare, self.repo.path, *inputs)
        if prepared is None:
            prepared = _Done(prepare(self.repo, *inputs))
        return _Batch(entries, stored, prepared, frozenset(wanted), inputs, held)

    def _resolve(self, batch: _Batch) -> ReadBatch:
        """`batch` read (here and now if it was never sent), its results remembered.

        The parsed versions stay for a few batches, so memory stays flat however
        long the history.
        """
        if batch.prepared is None:
            batch = self._send(batch.entries, None, frozenset())
        assert batch.prepared is not None
        try:
            infos, checked, parsed, taken = batch.prepared.result()
        except Exception:  # the worker could not start, or died: do it here instead
            infos, checked, parsed, taken = prepare(self.repo, *batch.inputs)
        self.store.remember_signatures(checked)
        self.versions.add({**batch.held, **parsed})
        checks = {commit: batch.stored.get(commit) or checked[commit] for commit in infos}
        entries = [taken.get(entry.id, entry) for entry in batch.entries]
        return ReadBatch(entries, infos, checks)


class _Outcome(Protocol):
    """A worker's future, or `_Done` work (concurrent.futures is imported by long walks only)."""

    def result(self) -> Prepared: ...

    def done(self) -> bool: ...

    def cancel(self) -> bool: ...


class _Done(Struct, frozen=True):
    prepared: Prepared

    def result(self) -> Prepared:
        return self.prepared

    def done(self) -> bool:
        return True

    def cancel(self) -> bool:
        return False


class _Batch(Struct, frozen=True):
    """A batch of the walk, sent to be read (`prepared`), or not yet."""

    entries: list[HistoryEntry]
    stored: dict[str, SignatureCheck] = field(default_factory=dict)  # from the state store
    prepared: _Outcome | None = None  # commits, their checks, the versions parsed
    versions: frozenset[VersionKey] = frozenset()  # versions asked for this batch
    inputs: Inputs = ([], frozenset(), [], [])
    held: Mapping[VersionKey, FieldMap] = field(default_factory=dict)  # parsed before


def prepare(
    source: GitRepo | Path,
    commits: list[str],
    checked: frozenset[str],
    wanted: list[Wanted],
    walked: list[HistoryEntry] | None = None,
) -> Prepared:
    """Read the commits and check the signatures not `checked` before; check the trees
    the `walked` history entries bring; read and parse the `wanted` versions.

    Runs in a worker process, which opens the repository at `source` once (so
    it is a top-level function of plain data), or in the walk itself.
    """
    repo = source if isinstance(source, GitRepo) else _worker_repository(source)
    infos = repo.commits(commits)
    checks: dict[str, SignatureCheck] = {}
    for commit, info in infos.items():
        if commit not in checked:
            result = check_commit_signature(info.raw)
            checks[commit] = (result.status, result.fingerprint, result.reason, result.payload)
    taken: dict[str, HistoryEntry] = {}
    if walked:
        parents = {entry.parents[0] for entry in walked if entry.parents}
        roots = {commit: info.tree for commit, info in infos.items()}
        roots |= {
            commit: info.tree
            for commit, info in repo.commits(sorted(parents - roots.keys())).items()
        }
        taken = repo.check_trees(walked, roots)
    # Larger versions are left out: the walk reads their size and calls them invalid.
    contents, _ = repo.blobs(list(dict.fromkeys(blob for *_, blob in wanted)), MAX_FILE_BYTES)
    parsed = {
        (kind, name, blob): parse_version(path, kind, name, blob, contents[blob])
        for path, kind, name, blob in wanted
        if blob in contents
    }
    return infos, checks, parsed, taken


def parse_version(path: str, kind: str, name: str, blob: str, raw: bytes) -> FieldMap:
    """The fields of one plan or teams.yaml version; one `INVALID` field if it is not valid."""
    # YAML loads with the first version to parse: `plan` with nothing new parses none.
    from reconciler.core.loader import load  # noqa: PLC0415

    if len(raw) > MAX_FILE_BYTES:
        return invalid(f"larger than {MAX_FILE_BYTES:,} bytes")
    try:
        document = load(raw, path)
    except ConfigError as error:
        return invalid(str(error))
    findings = schema.check(document, kind)
    if findings:
        first = findings[0]
        return invalid(f"{first.file}:{first.line}:{first.column}: {first.message}")
    if kind == "plan":
        if document.data["name"] != name:
            return invalid(f"{path}: name '{document.data['name']}' does not match the file name")
        return plan_fields(document.data)
    return teams_fields(document.data, blob)


_WORKER_REPOSITORIES: dict[Path, GitRepo] = {}


def _worker_repository(path: Path) -> GitRepo:
    if path not in _WORKER_REPOSITORIES:
        _WORKER_REPOSITORIES[path] = GitRepo(path)
    return _WORKER_REPOSITORIES[path]


def _cores() -> int:
    """The cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _batched(entries: Iterator[HistoryEntry], size: int) -> Iterator[list[HistoryEntry]]:
    batch: list[HistoryEntry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
