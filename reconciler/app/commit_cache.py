"""Stage 3, authorise: what the walk knows of the commits it reads (`CommitCache`).

The judge's answers about them (`judge.Content`): commit headers, signature checks
and the facts made from them, the blobs just outside each landing, and who carried
each signed payload first. A signed payload counts once: a commit carrying one
another commit carried first holds no identity (`CommitCache.claim`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from reconciler.adapters.gitobjects import FILE_MODES, NULL_OID, CommitInfo, HistoryEntry
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.readahead import (
    PREFETCH,
    STRUCTURED,
    ParsedVersions,
    ReadBatch,
    SignatureCheck,
    parse_version,
)
from reconciler.adapters.statestore import StateStore
from reconciler.core.documents import MAX_FILE_BYTES
from reconciler.core.events import Record
from reconciler.core.fields import (
    CONTENT,
    INVALID,
    FieldMap,
    invalid,
    teams_data,
    value,
    whole_file,
)
from reconciler.core.identity import CommitFacts
from reconciler.core.layout import TEAMS_FILE, place
from reconciler.core.model import Snapshot
from reconciler.core.openpgp import Keyring
from reconciler.core.revocation import Revocations, screened
from reconciler.core.signatures import UNVERIFIED, check_commit_signature
from reconciler.core.signatures import SignatureCheck as SignatureResult


class CommitCache:
    """What the walk knows of the commits it reads, and the judge's answers about them
    (`judge.Content`): commit headers, signature checks and the facts made from them,
    payload carriers, and the blobs just outside each landing. It holds one batch (the
    one the judge reads, `install`); a commit outside it is read when asked for."""

    def __init__(
        self, repo: GitRepo, store: StateStore, versions: ParsedVersions, keyring: Keyring
    ) -> None:
        self.repo = repo
        self.store = store
        self.revoked: Revocations | None = None
        self._versions = versions
        # The OpenPGP certificates of every policy the walk built, and for each commit
        # whose OpenPGP signature none of them could check, the keyring's generation it
        # was last tried with (`_may_settle`).
        self._keyring = keyring
        self._unverified: dict[str, int] = {}
        self._infos: dict[str, CommitInfo] = {}
        self._checks: dict[str, SignatureCheck] = {}  # what `_facts` were made from
        self._facts: dict[str, CommitFacts] = {}
        # The first commit the walk met carrying a payload digest (None: none yet), for
        # the digests of the batch at hand and those looked up since.
        self._carriers: dict[str, str | None] = {}
        self._boundary: dict[tuple[str, str], str | None] = {}

    def install(self, batch: ReadBatch) -> None:
        """Make `batch` the one whose commits the judging reads."""
        self._infos = batch.infos
        self._checks = {
            commit: self._settled(commit, check) for commit, check in batch.checks.items()
        }
        keys = {commit: claim_key(check) for commit, check in self._checks.items()}
        # One look-up for the batch: the landings judged from it then ask the store nothing.
        self._carriers = self.store.carriers(key for key in keys.values() if key is not None)
        self._facts = {}
        for commit, info in batch.infos.items():
            key = keys.get(commit)
            carrier = None if key is None else self._carriers[key]
            check = _copy_of(commit, self._checks[commit], carrier)
            self._facts[commit] = _facts_of(info, check, self.revoked)
        self._boundary = {}

    # -- judge.Content -----------------------------------------------------------

    def info(self, commit: str) -> CommitInfo:
        cached = self._infos.get(commit)
        if cached is None:
            cached = self._infos[commit] = self.repo.commit(commit)
        return cached

    def facts(self, commit: str) -> CommitFacts:
        cached = self._facts.get(commit)
        if cached is not None and (
            cached.signature_status != UNVERIFIED or not self._may_settle(commit)
        ):
            return cached
        # Never read, or its key may be in a certificate the keyring gained since.
        info = self.info(commit)
        stored = self.store.signatures([commit]).get(commit)
        if stored is None:
            stored = self._check(commit)
        self._checks[commit] = stored
        key = claim_key(stored)
        stored = _copy_of(commit, stored, None if key is None else self._carrier(key))
        facts = self._facts[commit] = _facts_of(info, stored, self.revoked)
        return facts

    def committed_at(self, commit: str) -> datetime:
        return self.info(commit).committer.when

    def message(self, commit: str) -> tuple[str, str]:
        info = self.info(commit)
        return info.message, info.encoding

    def blob_at(self, commit: str, path: str) -> str | None:
        key = (commit, path)
        if key not in self._boundary:
            self._boundary[key] = self.repo.blob_at(commit, path)
        return self._boundary[key]

    def fields(self, path: str, blob: str | None, mode: str) -> FieldMap:
        if blob is None:
            return {}
        placement = place(path)
        kind = placement.kind or ""
        if mode and mode not in FILE_MODES:
            return invalid("symlinks and submodules are refused in the configuration")
        if kind not in STRUCTURED:
            return whole_file(blob)
        key = (kind, placement.name, blob)
        cached = self._versions.get(key)
        if cached is None:  # not parsed with its batch (a version outside the walk)
            if self.repo.blob_size(blob) > MAX_FILE_BYTES:
                return invalid(f"larger than {MAX_FILE_BYTES:,} bytes")
            raw = self.repo.read_blob(blob)
            cached = parse_version(path, kind, placement.name, blob, raw)
            self._versions.put(key, cached)
        return cached

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        return self.repo.is_ancestor(ancestor, commit)

    def records_of(self, run: str) -> list[Record]:
        return self.store.records_of([run])

    def policy_problem(
        self, effective: Mapping[str, FieldMap], teams_blob: str | None
    ) -> str | None:
        return policy_problem(effective, self.repo, teams_blob)

    # -- reading ahead -----------------------------------------------------------

    def read_boundaries(self, landings: list[list[HistoryEntry]]) -> None:
        """What the commits just outside each landing hold at the paths it touches.

        The diff against a first parent already says what that parent held; the
        rest (the bases of merged side branches) are looked up in one batch.
        """
        lookups: list[tuple[str, str]] = []
        for landed in landings:
            inside = {entry.id for entry in landed}
            self._boundary.update(_first_parent_blobs(landed, inside))
            lookups.extend(_outside_places(landed, inside))
        missing = [place for place in lookups if place not in self._boundary]
        self._boundary.update(self.repo.blobs_at(missing))

    # -- signed payloads -----------------------------------------------------------

    def claim(self, landed: Sequence[str]) -> dict[str, str]:
        """The payloads the `landed` commits carry first, with their first carriers; and
        the facts of every landed commit, those carrying a payload another commit carried
        first saying they are copies (`_copy_of`), which hold no identity.

        The first carrier counts whatever its landing's verdict: a payload counts
        once, and its first landing may have made some of its values effective.
        Commits of earlier batches (landed by a later merge) are not read again:
        their checks are in the store since their batch.
        """
        checks = self._checks_of(landed)
        digests = _claim_keys_of(checks)
        self._learn_carriers(list(digests.values()))
        first = first_carriers(list(landed), digests, self._carriers)
        self._carriers.update(first)
        self._make_facts(checks, digests)
        return first

    def _learn_carriers(self, digests: list[str]) -> None:
        """The first carriers of `digests` the walk has not looked up yet: one look-up."""
        unknown = [digest for digest in digests if digest not in self._carriers]
        if unknown:
            self._carriers.update(self.store.carriers(unknown))

    def _make_facts(self, checks: Mapping[str, SignatureCheck], digests: Mapping[str, str]) -> None:
        """The facts of every landed commit, those carrying a payload another commit
        carried first saying they are copies (`_copy_of`)."""
        for commit, read in checks.items():
            digest = digests.get(commit)
            check = read if digest is None else _copy_of(commit, read, self._carriers[digest])
            # The judge asks for the facts of every landed commit (one holding no identity
            # refuses its landing): made here, from the checks just read in one batch.
            if check is not read or commit not in self._facts:
                self._facts[commit] = _facts_of(self.info(commit), check, self.revoked)

    def _checks_of(self, landed: Sequence[str]) -> dict[str, SignatureCheck]:
        """The signature checks of `landed`: the batch's, the store's for commits of earlier
        batches (one look-up), and a check for one never read or whose key was unknown."""
        earlier = [commit for commit in landed if commit not in self._checks]
        stored = self.store.signatures(earlier) if earlier else {}
        checks: dict[str, SignatureCheck] = {}
        for commit in landed:
            check = self._checks.get(commit) or stored.get(commit)
            if check is None or check[0] == UNVERIFIED:  # never read, or its key unknown then
                self.facts(commit)
                check = self._checks[commit]
            checks[commit] = check
        return checks

    def claim_keys(self, commits: list[str]) -> dict[str, str]:
        """What each of `commits` would claim (`claim_key`), read and checked in batches;
        commits that claim nothing are left out."""
        keys: dict[str, str] = {}
        for start in range(0, len(commits), PREFETCH):
            infos = self.repo.commits(commits[start : start + PREFETCH])
            for commit, info in infos.items():
                key = claim_key(check_commit_signature(info.raw, keyring=self._keyring))
                if key is not None:
                    keys[commit] = key
        return keys

    def _settled(self, commit: str, check: SignatureCheck) -> SignatureCheck:
        """`check`; while it waits for a certificate ("unverified": an OpenPGP signature
        none at hand holds the key of), checked again when the keyring may hold one."""
        return self._check(commit) if self._may_settle(commit, check) else check

    def _may_settle(self, commit: str, check: SignatureCheck | None = None) -> bool:
        waiting = check is None or check[0] == UNVERIFIED
        return waiting and self._unverified.get(commit) != self._keyring.generation

    def _check(self, commit: str) -> SignatureCheck:
        """The commit's signature checked (with the keyring), and remembered unless it waits
        for a certificate: then the keyring's generation, so it is tried again only after
        the keyring grew."""
        result = check_commit_signature(self.info(commit).raw, keyring=self._keyring)
        check = (result.status, result.fingerprint, result.reason, result.payload)
        if result.status == UNVERIFIED:
            self._unverified[commit] = self._keyring.generation
        else:
            self._unverified.pop(commit, None)
            self.store.remember_signatures({commit: check})
        return check

    def _carrier(self, key: str) -> str | None:
        if key not in self._carriers:
            self._carriers.update(self.store.carriers([key]))
        return self._carriers[key]


def _first_parent_blobs(
    landed: list[HistoryEntry], inside: set[str]
) -> dict[tuple[str, str], str | None]:
    """What the first parents just outside a landing held at the paths their children
    changed: the diff against a first parent already says."""
    held: dict[tuple[str, str], str | None] = {}
    for entry in landed:
        if entry.parents and entry.parents[0] not in inside:
            for change in entry.changes:
                old = None if change.old_blob == NULL_OID else change.old_blob
                held[(entry.parents[0], change.path)] = old
    return held


def _outside_places(landed: list[HistoryEntry], inside: set[str]) -> list[tuple[str, str]]:
    """Each parent just outside a landing with each path the landing touches."""
    paths = {change.path for entry in landed for change in entry.changes}
    return [
        (parent, path)
        for entry in landed
        for parent in entry.parents
        if parent not in inside
        for path in paths
    ]


def _claim_keys_of(checks: Mapping[str, SignatureCheck]) -> dict[str, str]:
    """What each checked commit claims (`claim_key`); commits that claim nothing left out."""
    return {
        commit: key
        for commit, key in ((commit, claim_key(check)) for commit, check in checks.items())
        if key is not None
    }


def _facts_of(info: CommitInfo, check: SignatureCheck, revoked: Revocations | None) -> CommitFacts:
    # The signature cache holds what the commit proves; a revocation is applied on
    # top, so revoking or restoring a key never needs the signatures checked again.
    status, fingerprint, reason = screened(*check[:3], revoked)
    return CommitFacts(
        commit=info.id,
        signature_status=status,
        fingerprint=fingerprint,
        signature_reason=reason,
        committer_email=info.committer.email,
        author_email=info.author.email,
        parents=len(info.parents),
        payload=check[3],
    )


def claim_key(check: SignatureCheck | SignatureResult) -> str | None:
    """What a commit claims when it carries a signed payload first: the payload with the
    key whose good signature covers it; nothing for any other commit.

    So a copy stripped of its signature, or signed over the same bytes by another key,
    claims nothing of the signer's, and cannot void the genuine commit before it lands.
    A copy carrying the signer's own good signature still can (the signer commits
    again: a new payload); what it can never do is count a second time.
    """
    if isinstance(check, SignatureResult):
        check = (check.status, check.fingerprint, check.reason, check.payload)
    status, fingerprint, _, payload = check
    if status != "good" or fingerprint is None:
        return None
    return f"{payload} {fingerprint}"


def _copy_of(commit: str, check: SignatureCheck, carrier: str | None) -> SignatureCheck:
    """A signed payload counts once: `commit`, when it carries the payload another
    commit carried first (the same signed bytes under other signature headers, which
    git still calls good), holds no identity. `check` as `_facts_of` takes it; a
    malformed commit holds none anyway, and keeps saying why."""
    if carrier is None or carrier == commit or check[0] == "malformed":
        return check
    reason = f"a copy of {carrier[:12]}'s signed payload (a signed payload counts once)"
    return ("copied", None, reason, check[3])


def first_carriers(
    commits: list[str], digests: Mapping[str, str], known: Mapping[str, str | None]
) -> dict[str, str]:
    """The payloads of one landing's `commits` that no commit carried before (a carrier
    in `known`), each with its first carrier: the least commit id, as two commits of
    one landing with one payload have the same parents and no order between them."""
    first: dict[str, str] = {}
    for commit in commits:
        digest = digests.get(commit)
        if digest is None or known.get(digest):
            continue
        if digest not in first or commit < first[digest]:
            first[digest] = commit
    return first


def policy_problem(
    effective: Mapping[str, Mapping[str, str]], repo: GitRepo, teams_blob: str | None
) -> str | None:
    """The first validation error of the effective teams.yaml + environments/, if any.

    `teams_blob` is a blob whose content is the effective teams.yaml, when one
    is at hand; otherwise the effective fields are written out as YAML first.
    """
    teams = effective.get(TEAMS_FILE, {})
    if INVALID in teams:
        return str(value(teams, INVALID))
    if teams_blob is not None:
        teams_bytes = repo.read_blob(teams_blob)
    else:
        from reconciler.core.loader import dump  # noqa: PLC0415 - rare: no blob at hand

        teams_bytes = dump(teams_data(teams)).encode()
    files = {TEAMS_FILE: teams_bytes}
    for path, fields in effective.items():
        if place(path).kind == "environment" and CONTENT in fields:
            files[path] = repo.read_blob(value(fields, CONTENT))
    from reconciler.core.validate import validate_snapshot  # noqa: PLC0415 - only when the policy changes

    report = validate_snapshot(Snapshot(files), editor_gates=False)
    errors = [finding for finding in report.findings if finding.severity == "error"]
    if not errors:
        return None
    first = errors[0]
    return f"{first.file}:{first.line}: {first.message}"
