"""App: signed checkpoints, what the service verified, for any later walk to go on from.

The service (`reconcile`), after a pass that judged new landings, publishes
its state's rows as one checkpoint (`publish`): a commit at
`refs/reconciler/checkpoints/<branch>` whose tree holds the canonical bytes
(`core.checkpoint`) and their SSH signature by the service key, in a namespace
of their own, its parent the previous checkpoint. Anyone can move that ref:
a walk with a fresh state (`authorise`) takes the newest checkpoint it trusts
(`newest`) and tells why it passed over every other, so a bad one costs only
speed, never a verdict (`docs/design.md, "Checkpoints"`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from msgspec import Struct

from reconciler.adapters.gitobjects import CommitInfo, commit_bytes
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.spool import SPOOL_CHARACTERS, SortedSpool, Written, write_lines
from reconciler.adapters.statestore import StateStore
from reconciler.app.checkpoint_trust import CheckpointTrust
from reconciler.core import checkpoint_sections as sections
from reconciler.core import journal
from reconciler.core.checkpoint import (
    NAMESPACE,
    CheckpointUnreadable,
    Header,
    decode,
    digest,
    digest_named,
    header_line,
    tables,
)
from reconciler.core.errors import ReconcilerError
from reconciler.core.printable import printable
from reconciler.core.revocation import Revocations
from reconciler.core.signatures import SignatureCheck, check_signature

if TYPE_CHECKING:  # only publishing signs: reading checkpoints loads no signing library
    from reconciler.adapters.signing import SigningKey

REF_PREFIX: Final = "refs/reconciler/checkpoints/"
ROWS_FILE: Final = "checkpoint.jsonl"
SIGNATURE_FILE: Final = "checkpoint.sig"
# The same rows cut into sections (`core.checkpoint_sections`), for a walk that loads
# only what it asks for: their signed index and the folder holding them.
INDEX_FILE: Final = "sections.json"
INDEX_SIGNATURE_FILE: Final = "sections.sig"
SECTIONS_FOLDER: Final = "sections"
# An index names every section (about 700 of them) by its digest: about 100 bytes each.
INDEX_LIMIT: Final = 1 << 20
# The roots of the described commit's history an index names: two tell a reader what it
# asks (its anchor alone, or more than one root), and a history someone filled with roots
# of their own keeps its index small.
ROOTS_NAMED: Final = 2
# A checkpoint costs the whole journal to write (20 MB at 10,000 commits), so the
# service publishes a new one once a tenth of the history has landed since the last,
# and at least every `STRIDE` landings: a later walk then judges at most that many.
STRIDE: Final = 1000
# Checkpoints looked at before a full walk: a ref moved onto a long line of bad ones
# costs a walk its speed, not its time.
TRIED: Final = 20
# What a walk or the service reads from the ref before any signature is checked: a
# checkpoint commit is a few hundred bytes, so is its signature, and its rows grow
# about 2 KB a commit (200 MB at 100,000). Anything larger, pushed by anyone, is passed
# over unread: reading it would cost more memory than the walk it was to spare.
OBJECT_LIMIT: Final = 1 << 16
ROWS_LIMIT: Final = 1 << 30
_TRAILER: Final = re.compile(r"^(Checkpoint-Of|Checkpoint-Digest): (\S+)$", re.MULTILINE)


class Continued(Struct, frozen=True):
    """The checkpoint a walk went on from."""

    checkpoint: str  # the checkpoint's commit, on the ref
    commit: str  # the verified commit it describes: the walk judged what came after
    digest: str  # its bytes' SHA-256
    signer: str  # the fingerprint of the service key that signed it

    def as_json(self) -> dict[str, str]:
        return {
            "checkpoint": self.checkpoint,
            "commit": self.commit,
            "digest": self.digest,
            "signer": self.signer,
        }


def ref_of(branch: str) -> str:
    return REF_PREFIX + branch


def publish(
    repo: GitRepo,
    store: StateStore,
    key: SigningKey,
    branch: str,
    remote: str | None,
    when: datetime,
    *,
    held: int = SPOOL_CHARACTERS,
) -> str | None:
    """Publish the state's rows as a checkpoint of its last verified commit, on the last
    one published (the remote's, with `remote`); the checkpoint commit, or None when the
    last one describes that commit already or someone moved the ref first. At most `held`
    characters of rows are in memory at a time, twice (`_written`)."""
    position = store.position()
    if position is None:
        return None
    ref = ref_of(branch)
    # Not due after the last one this machine knows: no fetch either, or every pass that
    # judged a landing would pay one.
    if not _due_after(repo, store, ref, position.last_verified):
        return None
    on_remote = remote is not None and repo.fetch_ref(remote, ref)
    current, previous = _last(repo, ref)
    if previous is not None and not _due(
        store, _trailers(repo, previous)[0], position.last_verified
    ):
        return None
    parents = (previous,) if previous is not None else ()
    header = Header(position.anchor, branch, position.last_verified, store.version)
    with repo.scratch() as folder:
        rows, parts = _written(store, header, folder, held)
        named = digest_named(rows.sha256)
        blobs = {name: repo.write_blob_file(part.path) for name, part in parts.items()}
        index = sections.encode_index(
            sections.Index(
                header,
                named,
                {name: digest_named(part.sha256) for name, part in parts.items()},
                blobs,
                tuple(sorted(repo.root_commits(position.last_verified))[:ROOTS_NAMED]),
            )
        )
        small = {
            SIGNATURE_FILE: key.sshsig_of_digest(rows.sha512, NAMESPACE),
            INDEX_FILE: index,
            INDEX_SIGNATURE_FILE: key.sshsig(index, sections.NAMESPACE),
        }
        tree = repo.tree_with_blobs(
            "",
            {
                ROWS_FILE: repo.write_blob_file(rows.path),
                **{name: repo.write_object("blob", data) for name, data in small.items()},
                **{f"{SECTIONS_FOLDER}/{name}": blob for name, blob in blobs.items()},
            },
            remember=False,  # no record is built on it
        )
    identity = f"reconciler <reconciler@reconciler.invalid> {int(when.timestamp())} +0000"
    message = (
        f"reconciler: checkpoint of {position.last_verified}\n\n"
        f"Checkpoint-Of: {position.last_verified}\nCheckpoint-Digest: {named}\n"
    )
    made = repo.write_object("commit", commit_bytes(tree, parents, identity, identity, message))
    if not repo.move_ref(ref, made, current):
        return None
    # What the ref held, if not built on, is replaced on the remote too: else a push of
    # anything but a commit there would stop every checkpoint after it.
    replacing = current if previous is None and on_remote else None
    if remote is not None and not repo.push_ref(remote, ref, replacing):
        return None
    return made


def _written(
    store: StateStore, header: Header, folder: Path, held: int
) -> tuple[Written, dict[str, Written]]:
    """The rows file of the state's rows under `header`, and their sections, written in
    `folder`: the bytes `checkpoint.encode` and `checkpoint_sections.cut` make, made with
    a bounded chunk of the rows in memory, however long the history (`SortedSpool`)."""
    for part in ("rows", "placed", "sections"):
        (folder / part).mkdir()
    lines, placed = SortedSpool(folder / "rows", held), SortedSpool(folder / "placed", held)
    with store.journal() as journal_rows:
        for section, line, own in sections.placed(journal_rows, store.open_runs()):
            placed.add(sections.spooled(section, line))
            if own:
                lines.add(line)
    rows = write_lines(folder / ROWS_FILE, itertools.chain([header_line(header)], lines.sorted()))
    parts: dict[str, Written] = {}
    placed_lines = map(sections.unspooled, placed.sorted())
    for name, pairs in itertools.groupby(placed_lines, key=lambda pair: pair[0]):
        parts[name] = write_lines(folder / "sections" / name, _distinct(line for _, line in pairs))
    if sections.CORE not in parts:  # no row for it: an empty core, as `cut` makes
        parts[sections.CORE] = write_lines(folder / "sections" / sections.CORE, iter(()))
    return rows, parts


def _distinct(lines: Iterable[str]) -> Iterator[str]:
    """Sorted `lines`, each once: a commit landed twice is seen once (`sections.cut`)."""
    previous = None
    for line in lines:
        if line != previous:
            yield line
        previous = line


def _last(repo: GitRepo, ref: str) -> tuple[str | None, str | None]:
    """What `ref` holds here, and the checkpoint commit it is (None: none to build on).

    Anyone can move the ref: onto what is not a checkpoint's commit, it is replaced,
    not built on."""
    current = repo.ref_value(ref)
    read = _checkpoint_commit(repo, current) if current is not None else None
    return current, read.id if isinstance(read, CommitInfo) else None


def _due_after(repo: GitRepo, store: StateStore, ref: str, verified: str) -> bool:
    """Whether a checkpoint of `verified` is due after the one `ref` holds here."""
    previous = _last(repo, ref)[1]
    return previous is None or _due(store, _trailers(repo, previous)[0], verified)


def _due(store: StateStore, described: str | None, verified: str) -> bool:
    """Whether enough landed between the last checkpoint's commit and `verified` for a new
    checkpoint to pay for itself (`STRIDE`)."""
    if described is None:
        return True  # the last one names no commit: replace it
    before, after = store.landing_seq(described), store.landing_seq(verified)
    if before is None or after is None:
        return described != verified  # not a landing of this state's: replace it
    return after - before >= max(1, min(after // 10, STRIDE))


def newest(
    repo: GitRepo,
    store: StateStore,
    *,
    anchor: str | None,
    tip: str,
    trust: CheckpointTrust,
    keys: Callable[[], frozenset[str]],
    keys_at: Callable[[str], frozenset[str]],
    revoked: Revocations | None,
    distrusted: Collection[str],
    back: Callable[[], None],
    now: datetime,
) -> Continued | None:
    """Load into the (fresh) store the newest checkpoint on the ref that a walk to `tip`
    may go on from, and say which; None when there is none (a full walk follows).

    `anchor`: the trust anchor; None only with pinned keys, whose checkpoint names it
    (a root commit: `_anchor_refusal`), sparing the walk to the branch's root;
    `keys`: the trusted keys' fingerprints (asked once, when a checkpoint needs them);
    `keys_at`: the service accounts' keys a commit's own policy file lists;
    `distrusted`: keys found no longer the service's at the tip; `back` forgets what a
    load wrote; `now`: when the commits it landed count as first seen. Every checkpoint
    passed over is warned about, with why.
    """
    checkpoint = repo.ref_value(ref_of(trust.branch))
    trusted: frozenset[str] | None = None
    for _ in range(TRIED):
        if checkpoint is None:
            break
        info = _checkpoint_commit(repo, checkpoint)
        if isinstance(info, str):
            trust.warn(f"warning: checkpoint {checkpoint[:12]} not used: {info}")
            return None
        try:
            if trusted is None:
                trusted = keys() if trust.pinned is None else trust.pinned
            found = _usable(
                repo, checkpoint, anchor, tip, trust, trusted, keys_at, revoked, distrusted
            )
        except ReconcilerError as error:
            found = error.message
        if isinstance(found, str):
            trust.warn(f"warning: checkpoint {checkpoint[:12]} not used: {found}")
            checkpoint = info.parents[0] if info.parents else None
            continue
        continued, load = found
        try:
            load(store, now)
        except ReconcilerError as error:
            back()
            trust.warn(f"warning: checkpoint {checkpoint[:12]} not used: {error.message}")
            checkpoint = info.parents[0] if info.parents else None
            continue
        return continued
    if checkpoint is not None:
        trust.warn(f"warning: no checkpoint among the last {TRIED} could be used")
    return None


def _usable(
    repo: GitRepo,
    checkpoint: str,
    anchor: str | None,
    tip: str,
    trust: CheckpointTrust,
    trusted: frozenset[str],
    keys_at: Callable[[str], frozenset[str]],
    revoked: Revocations | None,
    distrusted: Collection[str],
) -> tuple[Continued, Callable[[StateStore, datetime], None]] | str:
    """The checkpoint and its rows when a walk to `tip` may go on from it; else why not.

    The cheap refusals first: where it claims to be, then its bytes, then its signature.
    A lazy walk (`trust.lazy`) reads its signed section index, not its rows, when it has one.
    """
    described, named = _trailers(repo, checkpoint)
    if described is None or named is None:
        return "its commit does not say which commit it describes and which bytes it holds"
    if not _on_first_parent_line(repo, described, tip):
        return (
            f"the commit it describes, {described[:12]}, is not on the first-parent line "
            f"of {tip[:12]}"
        )
    info = repo.commit(checkpoint)
    if repo.blob_sizes([info.tree]).get(info.tree, 0) > OBJECT_LIMIT:
        return f"its tree holds more than {ROWS_FILE} and {SIGNATURE_FILE}"
    read = (
        _read_index(repo, info, named)
        if trust.lazy and INDEX_FILE in repo.top_entries(info, (INDEX_FILE,))
        else _read_rows(repo, info, named)
    )
    if isinstance(read, str):
        return read
    check, loader = read
    if check.fingerprint is None:
        return f"its signature does not verify: {check.reason}"
    signer = check.fingerprint
    why_not = _untrusted(signer, described, tip, trusted, keys_at, revoked, distrusted)
    if why_not is not None:
        return why_not
    try:
        header, roots, load = loader()
    except CheckpointUnreadable as error:
        return f"it cannot be read: {error}"
    why_not = _anchor_refusal(repo, header.anchor, anchor, described, tip, roots)
    if why_not is not None:
        return why_not
    if header.branch != trust.branch:
        return f"it was made for branch {printable(header.branch)}"
    if header.commit != described:
        return "its rows describe another commit than its commit says"
    if header.journal != journal.VERSION:
        return f"its rows are in journal format {header.journal}, not {journal.VERSION}"
    return Continued(checkpoint, described, named, signer), load


# A checkpoint's header, the roots of its commit's history it names (None: it names none),
# and a load of its rows into a fresh store.
Loaded = tuple[Header, tuple[str, ...] | None, Callable[[StateStore, datetime], None]]
Loader = Callable[[], Loaded]


def _signed_file(
    repo: GitRepo, info: CommitInfo, names: tuple[str, str], limit: int, too_large: str
) -> tuple[bytes, bytes] | str:
    """A file at the checkpoint's top and its signature (`names`), read only when both are
    files and no larger than `limit` and a signature are; else why not (`too_large`)."""
    files = repo.top_entries(info, names)
    if any(files.get(name, ("",))[0] != "100644" for name in names):
        return f"it does not hold {names[0]} and {names[1]} as files"
    blob, signature = files[names[0]][1], files[names[1]][1]
    sizes = repo.blob_sizes([blob, signature])
    if sizes.get(blob, 0) > limit or sizes.get(signature, 0) > OBJECT_LIMIT:
        return too_large
    return repo.read_blob(blob), repo.read_blob(signature)


def _read_rows(repo: GitRepo, info: CommitInfo, named: str) -> tuple[SignatureCheck, Loader] | str:
    """The rows file and its signature's check; the header and a load of every row."""
    found = _signed_file(
        repo,
        info,
        (ROWS_FILE, SIGNATURE_FILE),
        ROWS_LIMIT,
        f"it holds more bytes than a checkpoint does ({ROWS_LIMIT} and {OBJECT_LIMIT})",
    )
    if isinstance(found, str):
        return found
    data, signature = found
    if digest(data) != named:
        return f"its bytes are not the ones its commit names ({printable(named)})"
    check = check_signature(data, signature, namespace=NAMESPACE)

    def loader() -> Loaded:
        header, texts = tables(data)
        rows = decode(data)[1] if texts is None else None

        def load(store: StateStore, now: datetime) -> None:
            if texts is not None:
                store.load_journal_text(texts, now)
            else:
                store.load_journal(rows or {}, now)

        return header, None, load

    return check, loader


def _read_index(repo: GitRepo, info: CommitInfo, named: str) -> tuple[SignatureCheck, Loader] | str:
    """The section index and its signature's check; the header and a load of the core
    section, the others read as the store asks (`StateStore.load_sections`)."""
    found = _signed_file(
        repo,
        info,
        (INDEX_FILE, INDEX_SIGNATURE_FILE),
        INDEX_LIMIT,
        f"its section index is larger than one is ({INDEX_LIMIT} and {OBJECT_LIMIT})",
    )
    if isinstance(found, str):
        return found
    data, signature = found
    check = check_signature(data, signature, namespace=sections.NAMESPACE)

    def loader() -> Loaded:
        index = sections.decode_index(data)
        if index.rows != named:
            raise CheckpointUnreadable("its section index names other rows than its commit")
        folder = repo.top_entries(info, (SECTIONS_FOLDER,)).get(SECTIONS_FOLDER)
        blobs = _section_blobs(repo, info, folder, index)

        def read(name: str) -> sections.SectionRows:
            part = repo.read_blob(blobs[name])
            if digest(part) != index.sections[name]:
                raise ReconcilerError(
                    f"section {printable(name)} of checkpoint {info.id[:12]} is not the one "
                    "its signed index names",
                    hint="run `reconciler verify-mergeable` with --state-dir of a state "
                    "that was walked, or `reconciler verify --full`",
                )
            try:
                return sections.section_rows(part)
            except CheckpointUnreadable as error:
                raise ReconcilerError(
                    f"section {printable(name)} of checkpoint {info.id[:12]} cannot be "
                    f"read: {error}",
                    hint="run `reconciler verify --full`, which takes no checkpoint",
                ) from None

        def load(store: StateStore, now: datetime) -> None:
            store.load_sections(read(sections.CORE), read, frozenset(blobs), now)

        return index.header, index.roots, load

    return check, loader


def _section_blobs(
    repo: GitRepo, info: CommitInfo, folder: tuple[str, str] | None, index: sections.Index
) -> dict[str, str]:
    """The blob of each section the index names, as its folder holds them, every one a
    file no larger than a checkpoint's rows; else `CheckpointUnreadable`."""
    if folder is None or folder[0] != "40000":
        raise CheckpointUnreadable(f"it holds no {SECTIONS_FOLDER} folder")
    if repo.blob_sizes([folder[1]]).get(folder[1], 0) > INDEX_LIMIT:
        raise CheckpointUnreadable(f"its {SECTIONS_FOLDER} folder is larger than one is")
    entries = {
        path.removeprefix(f"{SECTIONS_FOLDER}/"): entry
        for path, entry in repo.folder(info.id, SECTIONS_FOLDER).items()
    }
    if entries != {name: ("100644", oid) for name, oid in index.blobs.items()}:
        raise CheckpointUnreadable("its sections are not the files its index names")
    blobs = dict(index.blobs)
    sizes = repo.blob_sizes(list(blobs.values()))
    if any(sizes.get(oid, ROWS_LIMIT + 1) > ROWS_LIMIT for oid in blobs.values()):
        raise CheckpointUnreadable(f"a section holds more bytes than a checkpoint ({ROWS_LIMIT})")
    return blobs


def _anchor_refusal(
    repo: GitRepo,
    named: str,
    anchor: str | None,
    described: str,
    tip: str,
    roots: tuple[str, ...] | None,
) -> str | None:
    """Why a checkpoint naming the trust anchor `named` is not one of `anchor`'s; None: it
    is. With no anchor known (pinned keys), a root commit is taken as the branch's when
    it is the only root of `tip`'s history, as a walk takes it (`default_anchor`): a
    re-anchored state's anchor (a commit with parents) is the branch's only when the
    user says so (`--trust-anchor`), as for a walk; and where another history was merged
    in, a checkpoint of that history's (its service's key may be this one) names its own
    root. `roots`: those of `described`'s history, as the signed index names them (None:
    searched here)."""
    if anchor is not None:
        if named == anchor:
            return None
        shown = printable(named[:12])
        return f"it was made for another trust anchor ({shown}): another repository's"
    try:
        parents = repo.commit(named).parents
    except ReconcilerError:
        return f"the trust anchor it names, {printable(named[:12])}, is no commit here"
    if parents:
        return (
            f"the trust anchor it names, {named[:12]}, is not a root commit "
            "(name it with --trust-anchor to go on from a re-anchored state)"
        )
    # Those after `described` are found among the commits since, not the whole history.
    found = {*(repo.root_commits(described) if roots is None else roots)}
    found.update(repo.root_commits(tip, outside=described))
    if found != {named}:
        listed = ", ".join(printable(root[:12]) for root in sorted(found))
        return (
            f"the root commits of the history of {tip[:12]} are not {named[:12]} alone "
            f"({listed}): only --trust-anchor says which one to trust"
        )
    return None


def _untrusted(
    signer: str,
    described: str,
    tip: str,
    trusted: frozenset[str],
    keys_at: Callable[[str], frozenset[str]],
    revoked: Revocations | None,
    distrusted: Collection[str],
) -> str | None:
    """Why a checkpoint signed by `signer` and describing `described` is not trusted on a
    walk to `tip`; None: it is."""
    why_revoked = revoked.why(signer) if revoked is not None else None
    if why_revoked is not None:
        return f"it is signed by a revoked key: {why_revoked}"
    if signer in distrusted:
        return f"it is signed by {signer}, no longer a service account's key at {tip[:12]}"
    if signer not in trusted:
        return (
            f"it is signed by {signer}, not a trusted key (the trust anchor's service accounts', "
            "or one pinned with --checkpoint-key)"
        )
    # Whether a key was rotated away before the commit described is read from that
    # commit, not from the rows: a stolen key's checkpoint would hold a policy listing it.
    if signer not in keys_at(described):
        return f"it is signed by {signer}, not a service account's key at {described[:12]}"
    return None


def _on_first_parent_line(repo: GitRepo, commit: str, tip: str) -> bool:
    """Whether `commit` is `tip` or on its first-parent line: a commit of a side branch
    merged in never had the branch's state."""
    if commit == tip:
        return True
    if not repo.is_ancestor(commit, tip):
        return False
    chain = repo.first_parent_chain(tip, commit)
    return bool(chain) and repo.commit(chain[0]).parents[:1] == (commit,)


def _trailers(repo: GitRepo, checkpoint: str) -> tuple[str | None, str | None]:
    """The commit a checkpoint commit says it describes, and the digest of its bytes."""
    found = dict(_TRAILER.findall(repo.commit(checkpoint).message))
    return found.get("Checkpoint-Of"), found.get("Checkpoint-Digest")


def _checkpoint_commit(repo: GitRepo, oid: str) -> CommitInfo | str:
    """The commit at the ref (or a parent of one), read only when no larger than a
    checkpoint's commit is and not peeled (git would read a tag's target whole); else
    why not."""
    size = repo.blob_sizes([oid]).get(oid)
    if size is None:
        return "it is missing from the repository"
    if size > OBJECT_LIMIT:
        return f"its commit is {size} bytes, more than a checkpoint's {OBJECT_LIMIT}"
    try:
        return repo.commit(oid)
    except ReconcilerError as error:
        return error.message
