"""OpenPGP commit signatures, verified in-process with Sequoia, held against git with gpg.

Keys come from gpg (tests/gpgkeys.py: RSA 4096, GitHub's web-flow key type, and
Ed25519, one with gpg's usual signing subkey, one expired, one revoked) and
commits from git itself (gpg.format openpgp); `git verify-commit`, with a
GNUPGHOME holding exactly the certificates teams.yaml lists, is the oracle.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pysequoia
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.adapters import readahead
from reconciler.adapters.statestore import SignatureRow
from reconciler.app import commit_cache
from reconciler.core.config import build_policy
from reconciler.core.events import Signoff
from reconciler.core.openpgp import (
    CertificateError,
    Keyring,
    certificates,
    expires_next,
    unusable,
)
from reconciler.core.resources import example_dir
from reconciler.core.signatures import SignatureCheck, check_commit_signature, split_signed_object
from tests.clock import SUITE_NOW
from tests.configrepo import dump, reconciler, write
from tests.gpgkeys import EXPIRED_MADE, GpgKey, GpgKeys, git_verifies
from tests.people import People, seed_teams
from tests.repositories import SeedRepo
from tests.scenarios import (
    ECOMMERCE,
    PORTAL,
    PROD_PLAN,
    QA_PLAN,
    plan,
    proposed_qa_release,
    qa_plan,
)

LISTED = ("rsa4096", "ed25519", "subkey", "expired", "revoked")


def git(
    repo: Path, *args: str, env: Mapping[str, str] | None = None, data: bytes | None = None
) -> str:
    completed = subprocess.run(
        ["git", *args], cwd=repo, input=data, capture_output=True, env=_env(env), check=False
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    return completed.stdout.decode().strip()


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    import os  # noqa: PLC0415

    return {**os.environ, **(extra or {})}


def plain_repo(tmp_path: Path, object_format: str = "sha1") -> Path:
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", f"--object-format={object_format}", str(path)], check=True)
    return path


def commit_as(repo: Path, gpg: GpgKeys, key: GpgKey, message: str) -> str:
    """An empty commit made and signed by git (gpg.format openpgp) as `key`."""
    config, env = gpg.signing(key)
    git(repo, *config, "commit", "-q", "--allow-empty", "-S", "-m", message, env=env)
    return git(repo, "rev-parse", "HEAD")


def raw(repo: Path, commit: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "commit", commit], cwd=repo, capture_output=True, check=True
    ).stdout


def store_literally(repo: Path, data: bytes) -> str:
    return git(repo, "hash-object", "-t", "commit", "-w", "--stdin", "--literally", data=data)


def listed_certificates(gpg: GpgKeys) -> dict[str, str]:
    """The certificates teams.yaml lists, as their owners publish them (the revoked one
    with its revocation)."""
    listed = {name: gpg[name].public for name in LISTED}
    listed["revoked"] = gpg.revoked_public(gpg["revoked"])
    return listed


def teams_listing(certificates_by_user: Mapping[str, list[str]]) -> dict[str, Any]:
    return {
        "users": {
            user: {"name": user, "emails": [f"{user}@example.com"], "keys": keys}
            for user, keys in certificates_by_user.items()
        },
        "service_accounts": {},
        "infrastructure": {},
        "teams": {},
    }


class Judge:
    """Our verdict on a commit as `verify` reaches it: the signature checked with the
    keyring of the listed certificates, the key mapped by the policy at SUITE_NOW."""

    def __init__(self, listed: Mapping[str, str]) -> None:
        self.keyring = Keyring()
        self.keyring.add(listed.values())
        teams = teams_listing({name: [certificate] for name, certificate in listed.items()})
        self.policy = build_policy(teams, [], SUITE_NOW)

    def check(self, data: bytes) -> SignatureCheck:
        return check_commit_signature(data, keyring=self.keyring)

    def identifies(self, data: bytes) -> str | None:
        check = self.check(data)
        return self.policy.key_owner.get(check.fingerprint or "") if check.good else None


@pytest.fixture
def listed(gpg: GpgKeys) -> dict[str, str]:
    return listed_certificates(gpg)


# -- the differential: our verdict is git's -----------------------------------------------------


def test_our_verdict_on_openpgp_signed_commits_is_gits(
    tmp_path: Path, gpg: GpgKeys, listed: dict[str, str]
) -> None:
    repo = plain_repo(tmp_path)
    commits = {
        name: commit_as(repo, gpg, gpg[name], f"signed by {name}\n\nbody\n")
        for name in (*LISTED, "unlisted")
    }
    good = raw(repo, commits["ed25519"])
    commits["tampered"] = store_literally(repo, good.replace(b"body", b"bodY"))
    home = gpg.verifier(listed.values())
    judge = Judge(listed)

    verdicts = {}
    for name, commit in commits.items():
        ours = judge.identifies(raw(repo, commit))
        verdicts[name] = (git_verifies(repo, commit, home), ours is not None)
        if ours is not None:
            shown = git(repo, "log", "-1", "--format=%GF %GP", commit, env={"GNUPGHOME": str(home)})
            signer, primary = shown.split()
            assert (judge.check(raw(repo, commit)).fingerprint, ours) == (signer, name)
            assert primary == gpg[name].fingerprint
    counted = {"rsa4096", "ed25519", "subkey"}
    assert verdicts == {name: (name in counted, name in counted) for name in commits}
    # gpg's layout signs with the subkey: the verdict names it, the certificate maps it.
    assert judge.check(raw(repo, commits["subkey"])).fingerprint == gpg["subkey"].signs_with
    assert gpg["subkey"].signs_with != gpg["subkey"].fingerprint


def test_why_each_refused_openpgp_commit_proves_nothing(
    tmp_path: Path, gpg: GpgKeys, listed: dict[str, str]
) -> None:
    repo = plain_repo(tmp_path)
    judge = Judge(listed)
    expired = judge.check(raw(repo, commit_as(repo, gpg, gpg["expired"], "late")))
    # Good as Sequoia judges it when made (back then the key was alive); expired now.
    assert expired.good
    assert judge.policy.unusable_keys[gpg["expired"].fingerprint].startswith(
        f"expired's OpenPGP certificate {gpg['expired'].fingerprint} expired on "
    )
    revoked = judge.check(raw(repo, commit_as(repo, gpg, gpg["revoked"], "revoked")))
    assert (revoked.status, revoked.reason) == (
        "bad",
        f"OpenPGP certificate {gpg['revoked'].fingerprint} is revoked",
    )
    unlisted = judge.check(raw(repo, commit_as(repo, gpg, gpg["unlisted"], "mallory")))
    assert (unlisted.status, unlisted.fingerprint) == ("unverified", None)
    assert unlisted.reason == (
        f"signed with OpenPGP key {gpg['unlisted'].fingerprint}, which teams.yaml does not list"
    )


FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def signed_once(
    tmp_path_factory: pytest.TempPathFactory, gpg: GpgKeys
) -> tuple[Path, dict[str, bytes], Path]:
    """A repository with one commit signed by each of two keys (one signs with a subkey),
    their raw objects, and a GNUPGHOME that knows both certificates."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    repo = plain_repo(tmp_path)
    names = ("ed25519", "subkey")
    originals = {
        name: raw(repo, commit_as(repo, gpg, gpg[name], "subject\n\nbody\n")) for name in names
    }
    home = gpg.verifier([gpg[name].public for name in names])
    return repo, originals, home


@FUZZ
@given(data=st.data())
def test_no_changed_byte_of_a_signed_commit_is_good_where_git_refuses_it(
    signed_once: tuple[Path, dict[str, bytes], Path], gpg: GpgKeys, data: st.DataObject
) -> None:
    """Any one byte of a gpg-signed commit changed: ours is good only where git's is, and
    where git still calls it good and ours does not, ours calls it malformed (an armor
    variant git and gpg read past, refused by design)."""
    repo, originals, home = signed_once
    name = data.draw(st.sampled_from(sorted(originals)))
    original = originals[name]
    position = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.sampled_from(b" \n\r=-+/:Aaz09\t\x00\xff"))
    changed = original[:position] + bytes([byte]) + original[position + 1 :]
    commit = store_literally(repo, changed)
    ours = Judge({name: gpg[name].public}).check(changed)
    theirs = git_verifies(repo, commit, home)
    assert ours.good == theirs or (theirs and ours.status == "malformed"), (changed, ours)


def test_a_sha256_repositorys_gpgsig_sha256_header_is_the_signature(
    tmp_path: Path, gpg: GpgKeys, listed: dict[str, str]
) -> None:
    repo = plain_repo(tmp_path, "sha256")
    commit = commit_as(repo, gpg, gpg["ed25519"], "in a SHA-256 repository")
    data = raw(repo, commit)
    assert b"\ngpgsig-sha256 -----BEGIN PGP SIGNATURE-----\n" in data
    assert git_verifies(repo, commit, gpg.verifier(listed.values()))
    assert Judge(listed).check(data).good
    # The other hash's header signs another object: git reads only its own, and so do we.
    renamed = data.replace(b"\ngpgsig-sha256 ", b"\ngpgsig ")
    assert Judge(listed).check(renamed).status == "malformed"


# -- the armor: nothing git or gpg would read past -----------------------------------------


def armor_variant(data: bytes, change: Callable[[bytes], bytes]) -> bytes:
    payload, armor = split_signed_object(data)
    assert armor is not None
    changed = change(armor)
    lines = changed.rstrip(b"\n").split(b"\n")
    block = b"gpgsig " + lines[0] + b"\n" + b"".join(b" " + line + b"\n" for line in lines[1:])
    end = payload.index(b"\n\n") + 1
    return payload[:end] + block + payload[end:]


def packets(armor: bytes) -> bytes:
    body = armor.split(b"\n\n", 1)[1].split(b"\n=")[0]
    return base64.b64decode(b"".join(body.split()))


def rearmored(armor: bytes, binary: bytes, width: int = 64, header: bytes = b"") -> bytes:
    encoded = base64.b64encode(binary)
    lines = [encoded[i : i + width] for i in range(0, len(encoded), width)]
    head = b"-----BEGIN PGP SIGNATURE-----\n" + header + b"\n"
    return head + b"".join(line + b"\n" for line in lines) + b"-----END PGP SIGNATURE-----\n"


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        (
            lambda armor: armor + b"trailing\n",
            "malformed",
            "text follows the OpenPGP signature's END line",
        ),
        (
            lambda armor: armor.replace(b"\n", b"\r\n", 2),
            "malformed",
            "the OpenPGP armor holds a carriage return",
        ),
        (
            lambda armor: rearmored(armor, packets(armor) * 2),
            "malformed",
            "the OpenPGP armor holds Signature, Signature, where git writes one signature",
        ),
        (
            lambda armor: armor.rpartition(b"\n=")[0] + b"\n=AAAA\n-----END PGP SIGNATURE-----\n",
            "bad",
            "the OpenPGP armor's checksum does not match its data",
        ),
        (
            lambda armor: armor.replace(b"BEGIN PGP SIGNATURE", b"BEGIN PGP MESSAGE"),
            "unsupported",
            "an OpenPGP message, not the detached signature git makes",
        ),
    ],
    ids=["text-after-end", "carriage-return", "two-signatures", "broken-checksum", "message"],
)
def test_an_armor_git_would_read_past_is_refused(
    tmp_path: Path,
    gpg: GpgKeys,
    listed: dict[str, str],
    change: Callable[[bytes], bytes],
    status: str,
    reason: str,
) -> None:
    repo = plain_repo(tmp_path)
    data = raw(repo, commit_as(repo, gpg, gpg["ed25519"], "armored"))
    check = Judge(listed).check(armor_variant(data, change))
    assert (check.status, check.reason) == (status, reason)


def test_two_signature_headers_are_malformed(
    tmp_path: Path, gpg: GpgKeys, listed: dict[str, str]
) -> None:
    repo = plain_repo(tmp_path)
    data = raw(repo, commit_as(repo, gpg, gpg["ed25519"], "two headers"))
    end = data.index(b"\n\n") + 1
    check = Judge(listed).check(data[:end] + b"gpgsig-sha256 x\n" + data[end:])
    assert (check.status, check.reason) == (
        "malformed",
        "it carries 2 signature headers, where git writes one",
    )


def test_other_writers_armors_verify(tmp_path: Path, gpg: GpgKeys, listed: dict[str, str]) -> None:
    """Sequoia writes no checksum, Go's library (GitHub's) other lines and headers: still
    the signature, each variant another commit id the walk counts once."""
    repo = plain_repo(tmp_path)
    data = raw(repo, commit_as(repo, gpg, gpg["rsa4096"], "armors"))
    judge = Judge(listed)
    for change in (
        lambda armor: rearmored(armor, packets(armor), width=76),
        lambda armor: rearmored(armor, packets(armor), header=b"Comment: GitHub\n"),
    ):
        variant = armor_variant(data, change)
        assert variant != data
        check = judge.check(variant)
        assert check.good, check
        assert check.payload == judge.check(data).payload


# -- certificates in teams.yaml ------------------------------------------------------------


def test_a_certificate_says_the_moment_its_keys_next_expire(gpg: GpgKeys) -> None:
    # The policy judged now holds until then (`Policy.keys_change`): `plan` and `status`
    # decide again from that moment, when `unusable` answers otherwise.
    [expired] = certificates(gpg["expired"].public)
    assert expired.expires is not None
    before = expired.expires - timedelta(hours=1)
    assert unusable(expired, before) == {}
    assert expires_next(expired, before) == expired.expires
    assert set(unusable(expired, expired.expires)) == {gpg["expired"].fingerprint}
    assert expires_next(expired, expired.expires) is None
    [revoked] = certificates(gpg.revoked_public(gpg["revoked"]))
    assert expires_next(revoked, before) is None  # revoked: nothing left to expire
    teams = yaml.safe_load((example_dir() / "teams.yaml").read_text())
    teams["users"]["alice"]["keys"] = [gpg["expired"].public]
    assert build_policy(teams, (), before).keys_change == expired.expires
    assert build_policy(teams, (), expired.expires).keys_change is None


def test_a_certificate_lists_its_keys_and_what_makes_them_unusable(gpg: GpgKeys) -> None:
    [subkey] = certificates(gpg["subkey"].public)
    assert [key.fingerprint for key in subkey.keys] == [
        gpg["subkey"].fingerprint,
        gpg["subkey"].signs_with,
    ]
    assert unusable(subkey, SUITE_NOW) == {}
    [expired] = certificates(gpg["expired"].public)
    assert expired.expires is not None
    assert unusable(expired, None) == {}  # validate judges no expiry
    assert set(unusable(expired, SUITE_NOW)) == {gpg["expired"].fingerprint}
    [revoked] = certificates(gpg.revoked_public(gpg["revoked"]))
    assert unusable(revoked, None) == {
        revoked.fingerprint: f"OpenPGP certificate {revoked.fingerprint} is revoked"
    }
    both = gpg["ed25519"].public + gpg["rsa4096"].public
    with pytest.raises(CertificateError, match="more than one armored block"):
        certificates(both)


def test_a_certificate_sequoias_policy_cannot_read_is_refused_with_a_way_out(
    gpg: GpgKeys,
) -> None:
    fingerprint = gpg["sha1"].fingerprint
    with pytest.raises(CertificateError) as refused:
        certificates(gpg["sha1"].public)
    assert str(refused.value).startswith(
        f"Sequoia's standard policy accepts none of the self-signatures of {fingerprint} ("
    )
    assert str(refused.value).endswith(f"`gpg --quick-set-expire {fingerprint} 2y`")


def test_a_secret_key_pasted_as_a_public_one_is_refused_before_it_is_read(gpg: GpgKeys) -> None:
    secret = gpg.gpg("--armor", "--export-secret-keys", gpg["unlisted"].fingerprint)
    relabelled = secret.replace("PRIVATE KEY BLOCK", "PUBLIC KEY BLOCK")
    with pytest.raises(CertificateError, match="never paste a private key"):
        certificates(relabelled)


def with_block_key(teams: str, user: str, entry: str) -> str:
    """teams.yaml's text with `user`'s one-line entry rewritten as a block mapping whose
    one key is `entry`, a block scalar, as docs/how-it-works.md shows it."""
    [line] = [line for line in teams.splitlines() if line.startswith(f"  {user}: {{")]
    name = line.split("name: ")[1].split(",")[0]
    block = "\n".join("      " + text for text in entry.splitlines())
    mapping = f"  {user}:\n    name: {name}\n    emails: [{user}@example.com]\n    keys:\n    - |\n"
    return teams.replace(line, mapping + block)


def test_a_malformed_armored_key_gets_its_file_line_and_a_hint(
    example_copy: Path, gpg: GpgKeys
) -> None:
    lines = gpg["ed25519"].public.splitlines()
    truncated = "\n".join([*lines[:3], lines[3][:20], *lines[-1:]])
    teams = with_block_key((example_copy / "teams.yaml").read_text(), "bob", truncated)
    write(example_copy, "teams.yaml", teams)
    result = reconciler("validate", "--repo", example_copy)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr + result.stdout
    line = teams.splitlines().index("    - |") + 1
    [finding] = [text for text in result.stdout.splitlines() if "OpenPGP" in text]
    assert finding.startswith(f"teams.yaml:{line}:")
    assert "not a valid OpenPGP public key: " in finding
    assert "gpg --armor --export-options export-minimal --export" in result.stdout


def test_one_openpgp_key_belongs_to_one_identity(example_copy: Path, gpg: GpgKeys) -> None:
    teams = (example_copy / "teams.yaml").read_text()
    for user in ("bob", "erik"):
        teams = with_block_key(teams, user, gpg["subkey"].public)
    write(example_copy, "teams.yaml", teams)
    result = reconciler("validate", "--repo", example_copy)
    assert result.exit_code == 1
    assert "this key already belongs to 'bob'" in result.stdout


# -- the walk: checked with the certificates the policies list, remembered once checked ------


def with_openpgp_key(people: People, user: str, certificate: str) -> dict[str, Any]:
    teams = seed_teams(people)
    teams["users"][user]["keys"] = [certificate]
    return teams


def gpg_commit(
    repo: SeedRepo, gpg: GpgKeys, key: GpgKey, who: str, files: Mapping[str, str], message: str
) -> str:
    """A commit of `files` by `who` (a person of the seed story), signed with `key`."""
    repo.write(files)
    person = repo.people.by_id[who]
    config, env = gpg.signing(key)
    identity = {
        "GIT_AUTHOR_NAME": person.name,
        "GIT_AUTHOR_EMAIL": person.email,
        "GIT_COMMITTER_NAME": person.name,
        "GIT_COMMITTER_EMAIL": person.email,
    }
    repo.git(*config, "commit", "-q", "--allow-empty", "-S", "-m", message, env={**env, **identity})
    return repo.head()


def alice_puts_ecommerce_in_production(repo: SeedRepo, gpg: GpgKeys, key: GpgKey) -> str:
    """alice's commit of a production plan for ecommerce (production requires signatures),
    signed with `key`."""
    return gpg_commit(
        repo,
        gpg,
        key,
        "alice",
        {PROD_PLAN: plan("2026-11-prod-release", "production", [ECOMMERCE])},
        "prod",
    )


def remembered_signature(repo: SeedRepo, commit: str) -> SignatureRow:
    """What the state remembers of `commit`'s signature: status, key fingerprint, reason,
    payload digest."""
    store = repo.store()
    try:
        return store.signatures([commit])[commit]
    finally:
        store.close()


def test_a_commit_signed_before_its_certificate_landed_counts_once_the_policy_lists_it(
    tmp_path: Path, people: People, gpg: GpgKeys
) -> None:
    """alice signs on a branch with a GPG key teams.yaml does not list yet; root lists it on
    main; olga merges. The walk meets alice's commit before the certificate (the verdict
    "unverified" is never remembered) and judges it with the merge's policy."""
    repo = SeedRepo.create(tmp_path, people)
    with repo.branch("pr"):
        edit = alice_puts_ecommerce_in_production(repo, gpg, gpg["subkey"])
    listed = with_openpgp_key(people, "alice", gpg["subkey"].public)
    repo.commit(people.root, {"teams.yaml": dump(listed)}, "alice signs with GPG")
    repo.merge(people.olga, "pr")
    result = repo.verify(workers=0)
    assert result.authorised, [verdict.refusals for verdict in result.judged]
    assert remembered_signature(repo, edit)[:2] == ("good", gpg["subkey"].signs_with)


def test_an_openpgp_verdict_is_checked_once(
    tmp_path: Path, people: People, gpg: GpgKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = SeedRepo.create(
        tmp_path, people, teams=with_openpgp_key(people, "alice", gpg["rsa4096"].public)
    )
    anchor = repo.head()
    edit = alice_puts_ecommerce_in_production(repo, gpg, gpg["rsa4096"])
    assert repo.verify(workers=0).authorised
    assert remembered_signature(repo, edit)[:2] == ("good", gpg["rsa4096"].fingerprint)

    def refuse(data: bytes, *args: Any, **options: Any) -> SignatureCheck:
        assert b"BEGIN PGP SIGNATURE" not in data, "an OpenPGP signature checked again"
        return check_commit_signature(data, *args, **options)

    monkeypatch.setattr(commit_cache, "check_commit_signature", refuse)
    monkeypatch.setattr(readahead, "check_commit_signature", refuse)
    again = repo.verify(workers=0, trust_anchor=anchor, re_anchor=True)
    assert again.authorised
    assert [verdict.commit for verdict in again.judged] == [edit]


def test_a_revoked_or_expired_certificate_in_teams_yaml_proves_nothing(
    tmp_path: Path, people: People, gpg: GpgKeys
) -> None:
    expires = (EXPIRED_MADE + timedelta(days=1)).strftime("%Y-%m-%d %H:%M UTC")
    for name, listed, why in (
        (
            "expired",
            gpg["expired"].public,
            f"alice's OpenPGP certificate {{}} expired on {expires}",
        ),
        ("revoked", gpg.revoked_public(gpg["revoked"]), "OpenPGP certificate {} is revoked"),
    ):
        repo = SeedRepo.create(
            tmp_path / name, people, teams=with_openpgp_key(people, "alice", listed)
        )
        alice_puts_ecommerce_in_production(repo, gpg, gpg[name])
        verified = repo.reconciler("verify", "--format", "json")
        assert verified.exit_code == 1, verified.stderr
        refusals = verified.json()["landings"][-1]["refusals"]
        because = why.format(gpg[name].fingerprint)
        assert {refusal["how"] for refusal in refusals} == {
            f"signature not accepted ({because}), and this change needs a verified signature"
        }


# -- GitHub's merge button ------------------------------------------------------------------------

GITHUB = "noreply@github.com"


def teams_with_web_flow(people: People, gpg: GpgKeys) -> dict[str, Any]:
    """The seed teams.yaml with GitHub as a host, its web-flow key an RSA 4096 certificate."""
    teams = seed_teams(people)
    teams["hosts"] = {
        "github": {"identity": "author", "emails": [GITHUB], "keys": [gpg["rsa4096"].public]}
    }
    return teams


def approved_pull_request_on_github(tmp_path: Path, people: People, gpg: GpgKeys) -> SeedRepo:
    """The QA release proposed on a main that lists GitHub, and a pull request, branch
    portal-0.7, in which diana moves customer-portal on and ravi approves."""
    repo = proposed_qa_release(tmp_path, people, teams=teams_with_web_flow(people, gpg))
    with repo.branch("portal-0.7"):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="0.7 next")})
        repo.approve(people.ravi, QA_PLAN)
    return repo


def merge_button(repo: SeedRepo, gpg: GpgKeys, by: str, branch: str, number: int = 7) -> str:
    """What GitHub's "Create a merge commit" writes: a true merge of `branch` into main,
    authored by whoever pressed the button, committed by GitHub and signed with its web-flow
    key (RSA 4096, gpg.format openpgp), with GitHub's message."""
    person = repo.people.by_id[by]
    tree = repo.git("merge-tree", "--write-tree", "main", branch).split()[0]
    config, env = gpg.signing(gpg["rsa4096"])
    env |= {
        "GIT_AUTHOR_NAME": person.name,
        "GIT_AUTHOR_EMAIL": person.email,
        "GIT_COMMITTER_NAME": "GitHub",
        "GIT_COMMITTER_EMAIL": GITHUB,
    }
    message = f"Merge pull request #{number} from example/{branch}\n\nNovember release"
    parents = ("-p", repo.head("main"), "-p", repo.head(branch))
    commit = repo.git(*config, "commit-tree", "-S", tree, *parents, "-m", message, env=env)
    repo.git("update-ref", "refs/heads/main", commit)
    repo.git("reset", "-q", "--hard", "main")
    return commit


def test_githubs_merge_button_counts_as_the_mergers_signed_merge(
    tmp_path: Path, people: People, gpg: GpgKeys
) -> None:
    repo = approved_pull_request_on_github(tmp_path, people, gpg)
    merge = merge_button(repo, gpg, "olga", "portal-0.7")
    shown = repo.git("log", "-1", "--format=%P|%an <%ae>|%cn <%ce>", merge)
    parents, author, committer = shown.split("|")
    assert (len(parents.split()), author, committer) == (
        2,
        f"{people.olga.name} <{people.olga.email}>",
        f"GitHub <{GITHUB}>",
    )
    home = gpg.verifier([gpg["rsa4096"].public])
    assert git_verifies(repo.path, merge, home)

    verified = repo.reconciler("verify", "--format", "json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    [state] = repo.reconciler("plan", "--format", "json").json()["plans"]
    assert (state["approvers"], state["triggered_by"]) == (["ravi"], "olga")
    runs = repo.apply("--format", "json").json()["runs"]
    assert [run["run"] for run in runs] == ["2026-11-qa-release.1"]


def test_githubs_merge_button_pressed_by_someone_without_plan_deploy_triggers_nothing(
    tmp_path: Path, people: People, gpg: GpgKeys
) -> None:
    repo = approved_pull_request_on_github(tmp_path, people, gpg)
    merge_button(repo, gpg, "alice", "portal-0.7")
    [state] = repo.reconciler("plan", "--format", "json").json()["plans"]
    assert (state["approvers"], state["triggered_by"]) == (["ravi"], None)


# -- the CLI's own commits, signed with gpg ------------------------------------------------------


def test_a_reviewer_who_signs_with_gpg_approves_through_the_cli(
    tmp_path: Path, people: People, gpg: GpgKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production requires signatures: `approve` predicts ravi's actor from the fingerprint
    git's user.signingkey names (his certificate's primary key; gpg signs with the subkey),
    and his gpg-signed approval counts."""
    key = gpg["subkey"]
    repo = SeedRepo.create(tmp_path, people, teams=with_openpgp_key(people, "ravi", key.public))
    repo.commit(people.alice, {PROD_PLAN: plan("2026-11-prod-release", "production", [ECOMMERCE])})
    config, env = gpg.signing(key)
    repo.act_as(people.ravi, signed=False)
    for setting in config[1::2]:  # as ravi's own clone is configured
        repo.git("config", *setting.split("=", 1))
    monkeypatch.setenv("GNUPGHOME", env["GNUPGHOME"])
    approved = repo.reconciler("approve", PROD_PLAN, "--format", "json")
    assert approved.exit_code == 0, approved.stderr
    assert approved.json()["actor"] == "ravi"
    assert "-----BEGIN PGP SIGNATURE-----" in repo.git("cat-file", "commit", "HEAD")
    [entry] = [
        entry
        for entry in repo.reconciler("history", "--format", "json").json()["entries"]
        if entry["commit"] == repo.head()
    ]
    assert (entry["action"], entry["actor"], entry["counted"]) == ("approved", "ravi", True)

    repo.git("config", "user.signingkey", "ravi@example.com")  # gpg's keyring alone knows it
    refused = repo.reconciler("approve", PROD_PLAN)
    assert refused.exit_code == 1
    assert "user.signingkey your OpenPGP key's fingerprint" in refused.stderr


def test_a_re_armored_copy_of_a_gpg_signed_approval_does_not_count_a_second_time(
    tmp_path: Path, people: People, gpg: GpgKeys
) -> None:
    """mallory re-armors ravi's gpg-signed approval (a Comment header, as other writers
    add): another commit id over the same signed payload, which git calls good, merged
    in later. The payload counts once: the copy holds no identity."""
    key = gpg["subkey"]
    repo = proposed_qa_release(tmp_path, people, teams=with_openpgp_key(people, "ravi", key.public))
    message = f"Approve\n\nApprove-Plan: {QA_PLAN}@{repo.blob(QA_PLAN)}"
    approval = gpg_commit(repo, gpg, key, "ravi", {}, message)
    repo.commit(people.alice, {"README.md": "notes\n"}, "notes")
    copy = armor_variant(
        raw(repo.path, approval),
        lambda armor: rearmored(armor, packets(armor), header=b"Comment: re-armored\n"),
    )
    forged = git(repo.path, "hash-object", "-t", "commit", "-w", "--stdin", data=copy)
    assert forged != approval
    assert git_verifies(repo.path, forged, gpg.verifier([key.public]))
    tree = repo.git("rev-parse", "main^{tree}")
    repo.land_commit_tree(people.mallory, tree, repo.head(), forged, message="Merge")
    repo.trigger(people.olga, QA_PLAN)
    assert repo.decide()[QA_PLAN].approvers == ("ravi",)
    store = repo.store()
    try:
        approvals = {e.commit: e for e in store.events(Signoff) if e.kind == "approve"}
        merge = {row.verdict.commit: row.verdict for row in store.landings()}[repo.head("main~1")]
    finally:
        store.close()
    assert (approvals[approval].actor, approvals[approval].held) == ("ravi", True)
    assert (approvals[forged].actor, approvals[forged].held) == (None, False)
    assert [commit for commit, _ in merge.unattributed] == [forged]


def _packets(data: bytes) -> list[bytes]:
    """The packets of binary OpenPGP data, each with its header, as they are (old-format
    headers, as gpg writes them, or new-format ones; no partial lengths in a certificate)."""
    found: list[bytes] = []
    at = 0
    while at < len(data):
        tag = data[at]
        if tag & 0x40:  # new format: one, two or five length octets
            first = data[at + 1]
            if first < 192:
                head, size = 2, first
            elif first < 224:
                head, size = 3, ((first - 192) << 8) + data[at + 2] + 192
            else:
                head, size = 6, int.from_bytes(data[at + 2 : at + 6], "big")
        else:  # old format: the length type in the tag's two low bits
            octets = (1, 2, 4)[tag & 3]
            head, size = 1 + octets, int.from_bytes(data[at + 1 : at + 1 + octets], "big")
        found.append(data[at : at + head + size])
        at += head + size
    return found


def binary_certificate(armored: str) -> bytes:
    lines = armored.strip().splitlines()
    blank = lines.index("")
    body = [line for line in lines[blank + 1 : -1] if not line.startswith("=")]
    return base64.b64decode("".join(body))


def test_a_subkey_appended_to_a_certificate_without_its_binding_is_not_its_owners(
    tmp_path: Path, people: People, gpg: GpgKeys
) -> None:
    """bob once listed his own gpg certificate (a signing subkey under his primary key), so
    the keyring holds it. Later root lists olga's certificate as a keyserver served it,
    flooded with bob's subkey and its binding (a signature by bob's primary key, not
    olga's: Sequoia never binds it to olga's key). bob signs a Deploy-Plan with his
    subkey: it verifies through his own certificate, but it is not olga's trigger."""
    bobs, olgas = gpg["subkey"], gpg["ed25519"]
    subkey_and_binding = _packets(binary_certificate(bobs.public))[-2:]
    flooded = binary_certificate(olgas.public) + b"".join(subkey_and_binding)
    poisoned = str(pysequoia.armor(flooded, pysequoia.ArmorKind.PublicKey))
    assert bobs.signs_with in [key.fingerprint for key in certificates(poisoned)[0].keys]
    teams = with_openpgp_key(people, "bob", bobs.public)
    repo = proposed_qa_release(tmp_path, people, teams=teams)
    repo.approve(people.ravi, QA_PLAN)
    rotated = seed_teams(people)
    rotated["users"]["olga"]["keys"].append(poisoned)
    repo.commit(people.root, {"teams.yaml": dump(rotated)}, "olga signs with GPG too")
    message = f"Deploy\n\nDeploy-Plan: {QA_PLAN}@{repo.blob(QA_PLAN)}"
    trigger = gpg_commit(repo, gpg, bobs, "bob", {}, message)
    decision = repo.decide()[QA_PLAN]
    assert decision.triggered_by is None
    store = repo.store()
    try:
        [event] = [e for e in store.events(Signoff) if e.kind == "deploy" and e.commit == trigger]
    finally:
        store.close()
    assert event.actor != "olga"


def test_a_sequoia_that_does_not_load_gives_no_verdict_on_an_openpgp_signature(
    tmp_path: Path, gpg: GpgKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sequoia loads at the first signature. A broken install (a wheel for another libc, a
    # partial upgrade) must stop the command, not judge the signature "bad": a verdict
    # other than "unverified" is kept for good.
    repo = plain_repo(tmp_path)
    commit = commit_as(repo, gpg, gpg["ed25519"], "signed")
    assert check_commit_signature(raw(repo, commit)).status == "unverified"  # not listed
    monkeypatch.setitem(sys.modules, "pysequoia", None)
    monkeypatch.setitem(sys.modules, "pysequoia.packet", None)
    with pytest.raises(ImportError):
        check_commit_signature(raw(repo, commit))
