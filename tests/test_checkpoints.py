"""Signed checkpoints: the service publishes what it verified, a fresh state goes on from it.

`docs/design.md, "Checkpoints"`. Every checkpoint here is made by the real
service (`reconciler apply` with its key) or, for the attacks, as an attacker
would make one and push it; every verification is the real CLI with a fresh
state directory, compared with `verify --full`, which ignores checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from benchmarks.checkpoint import state_digest
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.signing import SigningKey
from reconciler.adapters.statestore import StateStore
from reconciler.app import checkpoints
from reconciler.core import checkpoint_sections as sections
from reconciler.core.checkpoint import (
    CheckpointUnreadable,
    Header,
    decode,
    digest,
    encode,
    tables,
)
from tests.clock import SUITE_NOW
from tests.configrepo import Result, reconciler
from tests.people import People, Person, make_mallory_the_settings_user, teams_with
from tests.repositories import SeedRepo, run_git
from tests.scenarios import ECOMMERCE, PORTAL, QA_PLAN, proposed_qa_release, qa_plan

CHECKPOINTS = "refs/reconciler/checkpoints/main"


def fresh_verify(repo: SeedRepo, state: Path, *args: str) -> Result:
    """`reconciler verify` as CI runs it: a state directory no one used before."""
    return reconciler(
        "verify", "--repo", repo.path, "--state-dir", state, "--format", "json", *args
    )


def rotate_service_key(repo: SeedRepo, people: People) -> tuple[Person, str]:
    """root replaces the service account's key with a second one: that key's holder, and
    the commit."""
    rotated = people.second_key(people.reconciler)
    teams = teams_with(
        people,
        lambda data: data["service_accounts"]["reconciler"].update(keys=[rotated.public_key]),
    )
    return rotated, repo.commit(people.root, {"teams.yaml": teams}, "rotate the service key")


def verdicts(result: Result) -> list[dict[str, Any]]:
    landings: list[dict[str, Any]] = result.json()["landings"]
    return landings


def test_a_service_pass_publishes_a_checkpoint_a_fresh_verify_continues_from(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    served = repo.apply()
    assert served.exit_code == 0, served.stderr
    checkpoint = repo.git("rev-parse", CHECKPOINTS)
    of = repo.git("log", "-1", "--format=%(trailers:key=Checkpoint-Of,valueonly)", checkpoint)
    assert of.strip() == repo.head("main")
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="one more")})

    continued = fresh_verify(repo, tmp_path / "ci")
    full = fresh_verify(repo, tmp_path / "audit", "--full")

    assert continued.exit_code == full.exit_code == 0, continued.stderr
    assert continued.json()["checkpoint"]["checkpoint"] == checkpoint
    assert continued.json()["judged"] == 1  # only the commit after the checkpoint
    assert full.json()["checkpoint"] is None
    assert full.json()["judged"] == len(verdicts(full)) > 1
    assert verdicts(continued) == verdicts(full)
    # The records, sign-offs, editors and carriers too: the two states hold the same rows.
    assert state_digest(tmp_path / "ci", "main") == state_digest(tmp_path / "audit", "main")
    # Every commit it landed counts as first seen by this state, as after a walk of its own.
    for state in ("ci", "audit"):
        store = StateStore(tmp_path / state, "main")
        try:
            landed = {commit for item in store.landings() for commit in item.verdict.landed}
            assert set(store.first_seen(landed)) == landed
        finally:
            store.close()


# -- what an attacker can do with the ref: anyone who can push can move it --------------


def checkpoint_bytes(repo: SeedRepo, rev: str = CHECKPOINTS) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "blob", f"{rev}:checkpoint.jsonl"],
        cwd=repo.path,
        capture_output=True,
        check=True,
    ).stdout


def push_checkpoint(
    repo: SeedRepo,
    data: bytes,
    signer: Path,
    *,
    of: str,
    signature: bytes | None = None,
    named: bytes | None = None,
) -> str:
    """What anyone who can push can do: a checkpoint commit of `data`, signed with
    `ssh-keygen -Y sign` by the key `signer` (or carrying `signature` as it is), naming
    the digest of `named` (default: of `data`), put at the checkpoint ref."""
    work = repo.path.parent / f"forged-{time.monotonic_ns()}"
    work.mkdir()
    rows = work / "checkpoint.jsonl"
    rows.write_bytes(data)
    if signature is None:
        subprocess.run(
            ["ssh-keygen", "-q", "-Y", "sign", "-n", "reconciler-checkpoint", "-f", signer, rows],
            check=True,
            capture_output=True,
        )
        signature = (work / "checkpoint.jsonl.sig").read_bytes()
    (work / "checkpoint.sig").write_bytes(signature)
    blobs = [
        repo.git("hash-object", "-w", str(work / name))
        for name in ("checkpoint.jsonl", "checkpoint.sig")
    ]
    listing = f"100644 blob {blobs[0]}\tcheckpoint.jsonl\n100644 blob {blobs[1]}\tcheckpoint.sig\n"
    tree = (
        subprocess.run(
            ["git", "mktree"],
            cwd=repo.path,
            input=listing.encode(),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    digest = "sha256:" + hashlib.sha256(named if named is not None else data).hexdigest()
    message = f"checkpoint\n\nCheckpoint-Of: {of}\nCheckpoint-Digest: {digest}\n"
    previous = repo.git("for-each-ref", "--format=%(objectname)", CHECKPOINTS)
    parent = ["-p", previous] if previous else []  # on top of the genuine ones, if any
    commit = repo.git("commit-tree", tree, *parent, "-m", message)
    repo.git("update-ref", CHECKPOINTS, commit)
    return commit


def lying(data: bytes, commit: str) -> bytes:
    """`data` saying the landing of `commit` was authorised, with no refusal."""
    lines = data.split(b"\n")
    for number, line in enumerate(lines):
        row = json.loads(line) if line.startswith(b'["landings",') else None
        if row is None or row[2] != commit:
            continue
        detail = json.loads(row[-1])
        assert detail["authorised"] is False
        detail.update(authorised=True, refusals=[])
        row[-1] = json.dumps(detail)
        lines[number] = json.dumps(row, separators=(",", ":")).encode()
        return b"\n".join(lines)
    raise AssertionError("no landing of that commit in the checkpoint")


def mallory_takes_over(repo: SeedRepo, people: People) -> str:
    """Mallory's commit making herself the settings user: refused, whoever verifies."""
    return repo.commit(
        people.mallory,
        {
            "teams.yaml": teams_with(
                people, lambda data: make_mallory_the_settings_user(data, people)
            )
        },
        "mallory takes over",
    )


def served_with_a_refusal(tmp_path: Path, people: People) -> tuple[SeedRepo, str]:
    """The seed story, mallory's refused take-over, and a service pass that checkpointed it."""
    repo = proposed_qa_release(tmp_path, people)
    takeover = mallory_takes_over(repo, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="after mallory")})
    served = repo.apply()
    assert "1 unauthorised" in served.stdout, served.stderr
    assert repo.git("rev-parse", "--verify", "-q", CHECKPOINTS)
    return repo, takeover


def assert_still_refused(repo: SeedRepo, state: Path, commit: str, *args: str) -> Result:
    """A fresh verify refuses `commit`'s landing, as `verify --full` does, verdict by verdict."""
    result = fresh_verify(repo, state, *args)
    full = fresh_verify(repo, state.with_name(state.name + "-full"), "--full")
    assert result.exit_code == full.exit_code == 1, result.stderr
    [refused] = [item for item in verdicts(result) if item["commit"] == commit]
    assert refused["authorised"] is False
    assert verdicts(result) == verdicts(full)
    return result


def test_a_checkpoint_signed_by_a_key_nobody_pinned_is_not_trusted(
    tmp_path: Path, people: People
) -> None:
    repo, takeover = served_with_a_refusal(tmp_path, people)
    lie = lying(checkpoint_bytes(repo), takeover)
    push_checkpoint(repo, lie, people.mallory.key, of=repo.head("main"))

    result = assert_still_refused(repo, tmp_path / "ci", takeover)

    assert result.json()["checkpoint"] is not None  # the older, genuine one: still true
    assert "not a trusted key" in result.stderr


def test_a_checkpoint_whose_bytes_changed_after_signing_is_not_trusted(
    tmp_path: Path, people: People
) -> None:
    repo, takeover = served_with_a_refusal(tmp_path, people)
    genuine = checkpoint_bytes(repo)
    signature = subprocess.run(
        ["git", "cat-file", "blob", f"{CHECKPOINTS}:checkpoint.sig"],
        cwd=repo.path,
        capture_output=True,
        check=True,
    ).stdout
    lie = lying(genuine, takeover)
    # The digest the commit names is the lie's: only the signature can tell.
    push_checkpoint(repo, lie, people.mallory.key, of=repo.head("main"), signature=signature)
    result = assert_still_refused(repo, tmp_path / "ci", takeover)
    assert "signature does not verify" in result.stderr
    # And bytes that are not the ones the commit names are refused before their signature.
    push_checkpoint(
        repo, lie, people.mallory.key, of=repo.head("main"), signature=signature, named=genuine
    )
    result = assert_still_refused(repo, tmp_path / "ci2", takeover)
    assert "not the ones its commit names" in result.stderr


def test_a_lying_checkpoint_on_an_empty_ref_leaves_a_full_walk(
    tmp_path: Path, people: People
) -> None:
    repo, takeover = served_with_a_refusal(tmp_path, people)
    lie = lying(checkpoint_bytes(repo), takeover)
    repo.git("update-ref", "-d", CHECKPOINTS)
    push_checkpoint(repo, lie, people.mallory.key, of=repo.head("main"))

    result = assert_still_refused(repo, tmp_path / "ci", takeover)

    assert result.json()["checkpoint"] is None
    assert "not a trusted key" in result.stderr


def describing(data: bytes, old: str, new: str) -> bytes:
    """`data` with its header saying it describes `new`, not `old`."""
    head, _, rows = data.partition(b"\n")
    assert f'"commit":"{old}"'.encode() in head
    return head.replace(old.encode(), new.encode()) + b"\n" + rows


def described(repo: SeedRepo, rev: str = CHECKPOINTS) -> str:
    return repo.git("log", "-1", "--format=%(trailers:key=Checkpoint-Of,valueonly)", rev).strip()


def test_a_checkpoint_of_another_repository_is_not_trusted(tmp_path: Path, people: People) -> None:
    """The same service key checkpoints another repository, one anchored on mallory's take-over
    (its history shared with this one): its rows hold her policy effective."""
    repo, takeover = served_with_a_refusal(tmp_path, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="later")})
    elsewhere = tmp_path / "elsewhere-state"
    anchored = reconciler(
        "verify",
        "--repo",
        repo.path,
        "--state-dir",
        elsewhere,
        "--trust-anchor",
        takeover,
        "--full",
    )
    assert anchored.exit_code == 0, anchored.stderr
    with GitRepo(repo.path) as git:
        store = StateStore(elsewhere, "main")
        try:
            key = SigningKey.load(people.reconciler.key)
            made = checkpoints.publish(git, store, key, "main", None, SUITE_NOW)
        finally:
            store.close()
    assert made is not None

    result = assert_still_refused(repo, tmp_path / "ci", takeover)

    assert "another trust anchor" in result.stderr
    assert result.json()["checkpoint"]["checkpoint"] != made  # the genuine one before it


def test_a_checkpoint_signed_by_a_since_revoked_service_key_is_not_trusted(
    tmp_path: Path, people: People
) -> None:
    """The service key is rotated after a checkpoint; whoever stole the old one signs a lie
    about the history it did sign for. The anchor's policy lists the old key, but the policy
    at the tip does not: every checkpoint it signed is taken back, and the walk is full."""
    repo, takeover = served_with_a_refusal(tmp_path, people)
    rotate_service_key(repo, people)
    of = described(repo)
    push_checkpoint(repo, lying(checkpoint_bytes(repo), takeover), people.reconciler.key, of=of)

    result = assert_still_refused(repo, tmp_path / "ci", takeover)

    assert result.json()["checkpoint"] is None
    assert "no longer a service account's" in result.stderr
    # A key in the revocation file is never trusted, whatever the policy says.
    repo.revoke(people.reconciler.public_key)
    result = assert_still_refused(repo, tmp_path / "ci-revoked", takeover)
    assert result.json()["checkpoint"] is None
    assert "revoked key" in result.stderr


def test_after_a_rotation_the_new_service_key_is_pinned(tmp_path: Path, people: People) -> None:
    repo, takeover = served_with_a_refusal(tmp_path, people)
    rotated, _ = rotate_service_key(repo, people)
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="rotated")})
    assert repo.apply(key=rotated.key).exit_code == 0
    newest = repo.git("rev-parse", CHECKPOINTS)

    unpinned = assert_still_refused(repo, tmp_path / "ci", takeover)
    pinned = assert_still_refused(
        repo, tmp_path / "ci-pinned", takeover, "--checkpoint-key", str(rotated.key) + ".pub"
    )

    assert unpinned.json()["checkpoint"] is None  # the anchor's key: no longer the service's
    assert "not a trusted key" in unpinned.stderr
    assert pinned.json()["checkpoint"]["checkpoint"] == newest
    # Pinned, the key is the only one trusted: not the anchor's service key.
    other = assert_still_refused(
        repo, tmp_path / "ci-other", takeover, "--checkpoint-key", str(people.diana.key) + ".pub"
    )
    assert other.json()["checkpoint"] is None


def test_a_checkpoint_of_a_commit_off_the_first_parent_line_is_not_trusted(
    tmp_path: Path, people: People
) -> None:
    """Even signed by the service key: a side branch's commit never had the branch's state."""
    repo, takeover = served_with_a_refusal(tmp_path, people)
    genuine = checkpoint_bytes(repo)
    of = described(repo)
    with repo.branch("side"):
        side = repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="side")})
    repo.merge(people.diana, "side")
    lie = describing(lying(genuine, takeover), of, side)
    push_checkpoint(repo, lie, people.reconciler.key, of=side)

    result = assert_still_refused(repo, tmp_path / "ci", takeover)

    assert "not on the first-parent line" in result.stderr
    assert result.json()["checkpoint"]["commit"] == of  # the genuine one


def test_a_rolled_back_checkpoint_ref_only_costs_walking(tmp_path: Path, people: People) -> None:
    repo, takeover = served_with_a_refusal(tmp_path, people)
    older = repo.git("rev-parse", CHECKPOINTS)
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="later")})
    assert repo.apply().exit_code == 0
    newer = repo.git("rev-parse", CHECKPOINTS)
    assert repo.git("rev-parse", f"{newer}^") == older
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="latest")})

    from_newer = assert_still_refused(repo, tmp_path / "ci", takeover)
    repo.git("update-ref", CHECKPOINTS, older)
    from_older = assert_still_refused(repo, tmp_path / "ci-rolled-back", takeover)

    assert from_newer.json()["checkpoint"]["checkpoint"] == newer
    assert from_older.json()["checkpoint"]["checkpoint"] == older
    assert from_older.json()["judged"] > from_newer.json()["judged"] == 1


def test_verify_mergeable_with_a_fresh_state_continues_from_the_checkpoint_at_the_base(
    tmp_path: Path, people: People
) -> None:
    repo, _ = served_with_a_refusal(tmp_path, people)
    with repo.branch("pull-request"):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="pull request")})

    def check(state: str, *args: str) -> dict[str, Any]:
        result = reconciler(
            "verify-mergeable",
            "--repo",
            repo.path,
            "--state-dir",
            tmp_path / state,
            "--base",
            "main",
            "--head",
            "pull-request",
            "--format",
            "json",
            *args,
        )
        assert result.exit_code == 0, result.stderr
        found: dict[str, Any] = result.json()
        return found

    continued = check("ci")
    # Pinned to a key that signed nothing: no checkpoint, the base walked in full.
    full = check("ci-full", "--checkpoint-key", str(people.diana.key) + ".pub")

    assert continued.pop("checkpoint")["commit"] == described(repo)
    assert full.pop("checkpoint") is None
    # The merge judged is made anew by each check, at its own second: the same merge only
    # when both ran within one.
    continued.pop("merge")
    full.pop("merge")
    assert continued == full


def ssh_keygen_verifies(
    folder: Path, person: Person, namespace: str, signature: bytes, message: bytes
) -> subprocess.CompletedProcess[bytes]:
    """`ssh-keygen -Y verify` of `signature` over `message` by `person`'s key in `namespace`."""
    (folder / "signature").write_bytes(signature)
    (folder / "allowed").write_text(f"{person.name} {person.public_key}\n")
    verify = ("ssh-keygen", "-Y", "verify", "-f", str(folder / "allowed"), "-I", person.name)
    return subprocess.run(
        [*verify, "-n", namespace, "-s", str(folder / "signature")],
        input=message,
        capture_output=True,
        check=False,
    )


def test_the_checkpoint_signature_is_one_ssh_keygen_verifies(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    assert repo.apply().exit_code == 0
    signature = blob(repo, f"{CHECKPOINTS}:checkpoint.sig")
    verified = ssh_keygen_verifies(
        tmp_path, people.reconciler, "reconciler-checkpoint", signature, checkpoint_bytes(repo)
    )
    assert verified.returncode == 0, verified.stderr


def test_a_checkpoint_is_canonical_and_keeps_file_names_that_are_not_utf8() -> None:
    header = Header("a" * 40, "main", "b" * 40, 1)
    rows: dict[str, list[list[Any]]] = {
        "effective": [[b"plans/caf\xe9.yaml", "content", '"c0ffee"'], ["teams.yaml", "x", "1"]],
        "landings": [[2, "c" * 40, "{}"], [1, "d" * 40, "{}"]],
    }
    data = encode(header, rows)
    shuffled = {table: list(reversed(found)) for table, found in reversed(rows.items())}

    assert encode(header, shuffled) == data  # the same rows, the same bytes
    assert decode(data) == (
        header,
        {table: sorted(found, key=str) for table, found in rows.items()},
    )
    with pytest.raises(CheckpointUnreadable):
        decode(data.replace(b'"checkpoint":1', b'"checkpoint":2'))
    with pytest.raises(CheckpointUnreadable):
        decode(data[:-1])
    # The rows as SQLite reads them: one JSON array a table; with bytes among them, none.
    assert tables(data) == (header, None)
    del rows["effective"][0]
    plain = encode(header, rows)
    found = tables(plain)[1]
    assert found is not None
    assert {table: json.loads(text) for table, text in found.items()} == {
        table: [[table, *row] for row in sorted(found_rows, key=str)]
        for table, found_rows in rows.items()
    }
    # A table's rows apart (another's between them) cannot be read as one run of lines.
    head, _, body = plain.partition(b"\n")
    effective, first, second = body.rstrip(b"\n").split(b"\n")
    unsorted = b"\n".join([head, first, effective, second]) + b"\n"
    with pytest.raises(CheckpointUnreadable):
        tables(unsorted)


def test_a_new_service_machine_goes_on_from_the_checkpoint_the_remote_holds(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    first = repo.clone(remote, "service-a")
    served = first.apply("--remote", "origin", "--format", "json")
    assert served.exit_code == 0, served.stderr
    assert served.json()["landings_verified"] > 2
    pushed = run_git(remote, "rev-parse", CHECKPOINTS)

    second = repo.clone(remote, "service-b")  # a new machine: a fresh clone, a fresh state
    moved = second.apply("--remote", "origin", "--format", "json")

    assert moved.exit_code == 0, moved.stderr
    assert moved.json()["landings_verified"] == 0  # nothing before the checkpoint judged again
    assert second.git("rev-parse", CHECKPOINTS) == pushed
    assert state_digest(second.state_dir, "origin/main") == state_digest(
        first.state_dir, "origin/main"
    )


def test_a_checkpoint_key_file_that_pins_nothing_is_refused_not_ignored(
    tmp_path: Path, people: People
) -> None:
    """Pinning an empty file must not fall back to trusting the anchor's keys."""
    repo = proposed_qa_release(tmp_path, people)
    empty = tmp_path / "empty.pub"
    empty.write_text("# the service's key goes here\n")
    broken = tmp_path / "broken.pub"
    broken.write_text(people.reconciler.public_key + "\nnot a key\n")

    for pinned, named in ((empty, "hold no public key"), (broken, f"{broken}:2")):
        result = fresh_verify(repo, tmp_path / f"ci-{pinned.stem}", "--checkpoint-key", str(pinned))
        assert result.exit_code == 1
        assert named in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_a_checkpoint_ref_moved_onto_a_blob_neither_stops_a_pass_nor_the_next_checkpoint(
    tmp_path: Path, people: People
) -> None:
    repo = proposed_qa_release(tmp_path, people)
    blob = repo.git("hash-object", "-w", "--stdin")  # an empty blob, pushed where one looks
    repo.git("update-ref", CHECKPOINTS, blob)

    assert repo.apply().exit_code == 0
    published = repo.git("rev-parse", CHECKPOINTS)
    assert published != blob
    assert described(repo) == repo.head("main")
    continued = fresh_verify(repo, tmp_path / "ci")
    assert continued.json()["checkpoint"]["checkpoint"] == published


def test_the_service_publishes_again_only_once_a_tenth_of_the_history_has_landed(
    tmp_path: Path, people: People
) -> None:
    """Each checkpoint costs the whole journal to write: one per pass would cost a long
    history's service more than its passes do (`checkpoints.STRIDE`)."""
    repo = proposed_qa_release(tmp_path, people)
    for note in range(20):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes=f"draft {note}")})
    assert repo.apply().exit_code == 0
    first = repo.git("rev-parse", CHECKPOINTS)
    landings = int(repo.git("rev-list", "--count", "--first-parent", "main"))
    assert landings >= 20  # so a tenth of it is two landings or more

    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="one more")})
    assert repo.apply().exit_code == 0
    assert repo.git("rev-parse", CHECKPOINTS) == first

    for note in range(landings // 10):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes=f"more {note}")})
    assert repo.apply().exit_code == 0
    assert repo.git("rev-parse", f"{CHECKPOINTS}^") == first


def test_a_rotated_away_service_key_cannot_vouch_for_itself_in_the_rows_it_signs(
    tmp_path: Path, people: People
) -> None:
    """Whoever stole the old service key signs a checkpoint of the tip, after the rotation
    that removed the key: its rows hold the effective policy from before the rotation,
    which still lists the key. The policy a checkpoint's own rows hold cannot be what
    decides whether its signer may be trusted."""
    repo, takeover = served_with_a_refusal(tmp_path, people)
    _, tip = rotate_service_key(repo, people)
    of = described(repo)
    lie = lying(checkpoint_bytes(repo), takeover).replace(of.encode(), tip.encode())
    push_checkpoint(repo, lie, people.reconciler.key, of=tip)

    result = assert_still_refused(repo, tmp_path / "ci", takeover)

    assert result.json()["checkpoint"] is None
    assert "not a service account's key at" in result.stderr


# Far more than the reconciler and git hold for this history, and far less than the
# objects an attacker puts at the ref.
MEMORY = 200 << 20
_PEAK = (
    "import resource, subprocess, sys; "
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "sys.stdout.write(done.stdout); sys.stderr.write(done.stderr); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(done.returncode)"
)


def measured(repo: SeedRepo, state: Path, *args: str) -> tuple[Result, int]:
    """The real command, and the peak memory (bytes) of its process or any git it ran."""
    completed = subprocess.run(
        [sys.executable, "-c", _PEAK, sys.executable, "-m", "reconciler", *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "RECONCILER_STATE_DIR": str(state)},
    )
    stderr, _, peak = completed.stderr.rstrip("\n").rpartition("\n")
    return Result(completed.returncode, completed.stdout, stderr), int(peak) * 1024


def test_a_checkpoint_ref_moved_onto_a_huge_commit_is_passed_over_unread(
    tmp_path: Path, people: People
) -> None:
    """Spaces compress a thousandfold: a push of a few hundred kilobytes puts a commit of
    hundreds of megabytes at the ref, naming the genuine checkpoint's tree. Neither a fresh
    verify nor the service's pass reads it whole: each goes on as it would without it."""
    repo, _ = served_with_a_refusal(tmp_path, people)
    genuine = repo.git("rev-parse", CHECKPOINTS)
    tree = repo.git("rev-parse", f"{CHECKPOINTS}^{{tree}}")
    who = "mallory <mallory@example.com> 1700000000 +0000"
    message = (
        f"checkpoint\n\nCheckpoint-Of: {described(repo)}\n"
        f"Checkpoint-Digest: {digest(checkpoint_bytes(repo))}\n"
    )
    forged = (
        subprocess.run(
            ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
            cwd=repo.path,
            input=f"tree {tree}\nparent {genuine}\nauthor {who}\ncommitter {who}\n\n".encode()
            + message.encode()
            + b" " * (2 * MEMORY),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    repo.git("update-ref", CHECKPOINTS, forged)

    result, peak = measured(repo, tmp_path / "ci", "verify", "--format", "json")

    assert peak < MEMORY
    full = fresh_verify(repo, tmp_path / "full", "--full")
    assert result.exit_code == full.exit_code == 1, result.stderr
    assert verdicts(result) == verdicts(full)
    assert result.json()["checkpoint"] is None  # its parent is not read either
    # The service, on a new machine, passes over it and publishes a checkpoint in its place.
    served, peak = measured(
        repo,
        tmp_path / "service",
        "apply",
        "--key",
        str(people.reconciler.key),
        "--driver-root",
        str(repo.driver_root),
        "--instance",
        "test-reconciler",
    )
    assert "1 unauthorised" in served.stdout, served.stderr
    assert peak < MEMORY
    assert repo.git("log", "-1", "--format=%P", CHECKPOINTS).strip() == ""  # not built on
    assert described(repo) == repo.head("main")


def test_a_remote_checkpoint_ref_moved_onto_a_blob_does_not_stop_the_service_publishing(
    tmp_path: Path, people: People
) -> None:
    """The ref on the remote moved onto what no checkpoint can be built on: the service's
    checkpoint replaces it there too, not only in its own clone."""
    repo = proposed_qa_release(tmp_path, people)
    remote = repo.publish_to_bare_remote()
    blob = run_git(remote, "hash-object", "-w", "--stdin")
    run_git(remote, "update-ref", CHECKPOINTS, blob)
    service = repo.clone(remote, "service")

    served = service.apply("--remote", "origin")

    assert served.exit_code == 0, served.stderr
    published = run_git(remote, "rev-parse", CHECKPOINTS)
    assert published != blob
    assert published == service.git("rev-parse", CHECKPOINTS)


def test_a_checkpoint_with_a_huge_signature_is_passed_over_unread(
    tmp_path: Path, people: People
) -> None:
    """The genuine rows beside a signature of hundreds of megabytes (a push of a few hundred
    kilobytes): a fresh verify does not read it, and goes on from the genuine one before."""
    repo, takeover = served_with_a_refusal(tmp_path, people)
    genuine = repo.git("rev-parse", CHECKPOINTS)
    rows = repo.git("rev-parse", f"{CHECKPOINTS}:checkpoint.jsonl")
    signature = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=repo.path,
            input=bytes(2 * MEMORY),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    tree = subprocess.run(
        ["git", "mktree"],
        cwd=repo.path,
        input=f"100644 blob {rows}\tcheckpoint.jsonl\n100644 blob {signature}\tcheckpoint.sig\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    message = (
        f"checkpoint\n\nCheckpoint-Of: {described(repo)}\n"
        f"Checkpoint-Digest: {digest(checkpoint_bytes(repo))}\n"
    )
    repo.git("update-ref", CHECKPOINTS, repo.git("commit-tree", tree, "-p", genuine, "-m", message))

    result, peak = measured(repo, tmp_path / "ci", "verify", "--format", "json")

    assert peak < MEMORY
    assert_still_refused(repo, tmp_path / "ci-again", takeover)
    assert result.json()["checkpoint"]["checkpoint"] == genuine
    assert verdicts(result) == verdicts(fresh_verify(repo, tmp_path / "full", "--full"))


# -- written a chunk at a time -----------------------------------------------------------


def verified_state(tmp_path: Path, people: People) -> tuple[SeedRepo, Path]:
    """A repository with plans, runs and sign-offs, and a state that verified all of it."""
    repo = proposed_qa_release(tmp_path, people)
    assert repo.apply().exit_code == 0
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="one more")})
    state = tmp_path / "verified"
    assert fresh_verify(repo, state, "--full").exit_code == 0
    return repo, state


def published_from(repo: SeedRepo, state: Path, people: People, held: int) -> str:
    """A checkpoint of `state` published on the ref, at most `held` characters in memory."""
    with GitRepo(repo.path) as git:
        store = StateStore(state, "main")
        try:
            key = SigningKey.load(people.reconciler.key)
            made = checkpoints.publish(git, store, key, "main", None, SUITE_NOW, held=held)
        finally:
            store.close()
    assert made is not None
    return made


def blob(repo: SeedRepo, rev: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "blob", rev], cwd=repo.path, capture_output=True, check=True
    ).stdout


def journal_of(state: Path) -> tuple[dict[str, list[list[Any]]], list[str], Header]:
    """What `encode` and `cut` are given for the state at `state`."""
    store = StateStore(state, "main")
    try:
        rows, open_runs, position = store.journal_rows(), store.open_runs(), store.position()
        assert position is not None
        header = Header(position.anchor, "main", position.last_verified, store.version)
        return rows, open_runs, header
    finally:
        store.close()


def with_rows(state: Path, rows: dict[str, list[list[Any]]]) -> None:
    """`rows` added to the state at `state`, as a checkpoint's are loaded."""
    store = StateStore(state, "main")
    try:
        with store.transaction():
            store.load_journal(rows, SUITE_NOW)
    finally:
        store.close()


def assert_published_as_encode_and_cut(
    repo: SeedRepo,
    made: str,
    rows: dict[str, list[list[Any]]],
    open_runs: list[str],
    header: Header,
) -> None:
    """The checkpoint commit `made` holds exactly the bytes `encode` and `cut` make."""
    assert blob(repo, f"{made}:checkpoint.jsonl") == encode(header, rows)
    cut = sections.cut(rows, open_runs)
    folder = repo.git("ls-tree", "--name-only", f"{made}:sections").split()
    assert sorted(folder) == sorted(cut)
    for name, part in cut.items():
        assert blob(repo, f"{made}:sections/{name}") == part, name


def test_a_checkpoint_written_in_chunks_is_the_bytes_encode_and_cut_make_of_the_rows(
    tmp_path: Path, people: People
) -> None:
    repo, state = verified_state(tmp_path, people)
    rows, open_runs, header = journal_of(state)

    made = published_from(repo, state, people, held=64)  # a run on disk every few rows

    assert_published_as_encode_and_cut(repo, made, rows, open_runs, header)
    index = sections.decode_index(blob(repo, f"{made}:sections.json"))
    assert index.rows == digest(encode(header, rows))
    cut = sections.cut(rows, open_runs)
    assert index.sections == {name: digest(part) for name, part in cut.items()}


def test_publishing_holds_a_bounded_chunk_of_the_rows_however_many_there_are(
    tmp_path: Path, people: People
) -> None:
    repo, state = verified_state(tmp_path, people)
    carriers = [[f"{n:064x} SHA256:key", "c" * 40] for n in range(40_000)]  # about 5 MB
    with_rows(state, {"payloads": carriers})
    tracemalloc.start()
    try:
        made = published_from(repo, state, people, held=1 << 18)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    size = len(blob(repo, f"{made}:checkpoint.jsonl"))
    assert size > 5_000_000
    assert peak < size / 4, (peak, size)


def test_a_checkpoint_of_odd_rows_written_in_chunks_is_the_bytes_encode_and_cut_make(
    tmp_path: Path, people: People
) -> None:
    # File names that are not UTF-8, control characters JSON escapes (a tab, a NUL, a line
    # break), a row larger than a run and than a chunk of a blob, a commit landed twice.
    repo, state = verified_state(tmp_path, people)
    landings = journal_of(state)[0]["landings"]
    last = max(int(row[0]) for row in landings)
    landed = json.loads(landings[-1][2]).get("landed", [])
    twice = json.dumps({"landed": [*landed, "f" * 40, "f" * 40]})
    with_rows(
        state,
        {
            "effective": [
                [b"plans/caf\xe9\t\x00.yaml", "x\x01\x7f\u2028", '"\\n"'],
                ["plans/\u00e9\n.yaml", "notes", "z" * 300_000],
            ],
            "dirty": [[b"\xff\xfe", "\t"]],
            "landings": [[last + 1, "e" * 40, twice], [last + 2, "1" * 40, twice]],
            "plan_versions": [[99_999, b"plans/\x80.yaml", "b" * 40, "e" * 40, "{}"]],
            "editors": [[b"plans/\x80.yaml", "someone\x00"]],
            "events": [[99_999, last + 1, "e" * 40, "odd\tkind", "{}"]],
        },
    )
    rows, open_runs, header = journal_of(state)

    made = published_from(repo, state, people, held=64)

    assert_published_as_encode_and_cut(repo, made, rows, open_runs, header)


def test_the_sections_signature_is_one_ssh_keygen_verifies(tmp_path: Path, people: People) -> None:
    repo, state = verified_state(tmp_path, people)
    made = published_from(repo, state, people, held=64)
    signature, index = blob(repo, f"{made}:sections.sig"), blob(repo, f"{made}:sections.json")
    verified = ssh_keygen_verifies(
        tmp_path, people.reconciler, "reconciler-checkpoint-sections", signature, index
    )
    assert verified.returncode == 0, verified.stderr


def test_a_checkpoint_is_published_in_a_sha256_repository(tmp_path: Path, people: People) -> None:
    repository = tmp_path / "repository"
    run_git(tmp_path, "init", "-q", "--object-format=sha256", str(repository))
    run_git(repository, "commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", "root")
    root = run_git(repository, "rev-parse", "HEAD")
    store = StateStore(tmp_path / "state", "main")
    try:
        with store.transaction():
            meta = [["anchor", root], ["last_verified", root], ["schema", "1"]]
            carriers = [[f"{n:064x}", root] for n in range(2000)]  # runs on disk at held=64
            store.load_journal({"meta": meta, "payloads": carriers}, SUITE_NOW)
        key = SigningKey.load(people.reconciler.key)
        with GitRepo(repository) as git:
            made = checkpoints.publish(git, store, key, "main", None, SUITE_NOW, held=64)
        rows, header = store.journal_rows(), Header(root, "main", root, store.version)
    finally:
        store.close()
    assert made is not None
    written = subprocess.run(
        ["git", "cat-file", "blob", f"{made}:checkpoint.jsonl"],
        cwd=repository,
        capture_output=True,
        check=True,
    ).stdout
    assert written == encode(header, rows)
    assert run_git(repository, "fsck", "--strict", "--no-dangling") == ""


def test_a_published_checkpoint_s_trees_are_not_kept_for_records_to_build_on(
    tmp_path: Path, people: People
) -> None:
    # The writer keeps the last trees it made for the next record to build on; a
    # checkpoint's sections follow the plans on main, and a service kept eight of them
    # for nobody (4 KiB a plan, most of what a publish left behind).
    repo = proposed_qa_release(tmp_path, people)
    assert fresh_verify(repo, repo.state_dir).exit_code == 0
    with GitRepo(repo.path) as git:
        record = git.tree_with_blobs(
            "", {"logs/development/run.log": git.write_object("blob", b"")}
        )
        store = StateStore(repo.state_dir, "main")
        try:
            made = checkpoints.publish(
                git, store, SigningKey.load(people.reconciler.key), "main", None, SUITE_NOW
            )
        finally:
            store.close()
        assert made is not None
        tree = run_git(repo.path, "rev-parse", f"{made}^{{tree}}")
        folder = run_git(repo.path, "rev-parse", f"{made}:{checkpoints.SECTIONS_FOLDER}")
        assert git._make_tree.made(tree) is None
        assert git._make_tree.made(folder) is None
        assert git._make_tree.made(record) is not None  # a record's, kept as before
