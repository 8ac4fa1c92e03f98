"""In-process SSH commit signatures, held against git 2.39 / OpenSSH 9.2 on real commits.

Keys come from ssh-keygen and commits from git itself; git's own verdicts (%G?, %GK, with an
allowed-signers file listing every key) are the oracle. FIDO (sk-*) keys need a token to
generate, so those signatures are built here with `cryptography` following OpenSSH's format,
and git (through ssh-keygen) is still the judge of them.
"""

from __future__ import annotations

import base64
import hashlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization.ssh import SSHPrivateKeyTypes
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.core.signatures import SignatureCheck, check_commit_signature, split_signed_object
from reconciler.core.sshkeys import parse_public_key

ARMOR_BEGIN = b"-----BEGIN SSH SIGNATURE-----"
ARMOR_END = b"-----END SSH SIGNATURE-----"
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# -- helpers: git, keys, SSHSIG blobs ---------------------------------------------------------


def run(*args: str | Path, cwd: Path | None = None, data: bytes | None = None) -> bytes:
    completed = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, input=data, capture_output=True, check=False
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    return completed.stdout


@dataclass(frozen=True)
class Key:
    name: str
    path: Path
    public_line: str
    keygen_fingerprint: str

    @property
    def blob(self) -> bytes:
        return parse_public_key(self.public_line).blob

    def private(self) -> SSHPrivateKeyTypes:
        return serialization.load_ssh_private_key(self.path.read_bytes(), None)


def generate_key(directory: Path, name: str, *keygen_args: str) -> Key:
    path = directory / name
    run("ssh-keygen", "-q", *keygen_args, "-N", "", "-C", name, "-f", path)
    public_line = path.with_suffix(".pub").read_text().strip()
    listing = run("ssh-keygen", "-lf", path.with_suffix(".pub")).decode().split()
    return Key(name, path, public_line, listing[1])


KEY_SPECS = {
    "ed25519": ("-t", "ed25519"),
    "ecdsa256": ("-t", "ecdsa", "-b", "256"),
    "ecdsa384": ("-t", "ecdsa", "-b", "384"),
    "ecdsa521": ("-t", "ecdsa", "-b", "521"),
    "rsa3072": ("-t", "rsa", "-b", "3072"),
}


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    directory = tmp_path_factory.mktemp("keys")
    return {name: generate_key(directory, name, *spec) for name, spec in KEY_SPECS.items()}


def ssh_string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def mpint(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big") if value else b""
    return ssh_string(raw)


def sshsig_signed_data(
    payload: bytes, namespace: bytes = b"git", algorithm: bytes = b"sha512"
) -> bytes:
    """PROTOCOL.sshsig: the blob a signer signs, written out independently of the module."""
    digest = hashlib.new(algorithm.decode(), payload).digest()
    return (
        b"SSHSIG"
        + ssh_string(namespace)
        + ssh_string(b"")
        + ssh_string(algorithm)
        + ssh_string(digest)
    )


def sshsig_blob(
    public_blob: bytes,
    signature_blob: bytes,
    *,
    namespace: bytes = b"git",
    algorithm: bytes = b"sha512",
    reserved: bytes = b"",
    version: int = 1,
) -> bytes:
    return (
        b"SSHSIG"
        + version.to_bytes(4, "big")
        + ssh_string(public_blob)
        + ssh_string(namespace)
        + ssh_string(reserved)
        + ssh_string(algorithm)
        + ssh_string(signature_blob)
    )


def armor(blob: bytes) -> bytes:
    encoded = base64.b64encode(blob)
    lines = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
    return b"\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + b"\n"


def dearmor(text: bytes) -> bytes:
    body = text.split(ARMOR_BEGIN)[1].split(ARMOR_END)[0]
    return base64.b64decode(b"".join(body.split()))


def splice(unsigned: bytes, signature: bytes, header: bytes = b"gpgsig") -> bytes:
    """Put `signature` into a commit object's headers the way git writes it."""
    lines = signature.rstrip(b"\n").split(b"\n")
    block = header + b" " + lines[0] + b"\n" + b"".join(b" " + line + b"\n" for line in lines[1:])
    end_of_headers = unsigned.index(b"\n\n") + 1
    return unsigned[:end_of_headers] + block + unsigned[end_of_headers:]


def sign_in_process(key: Key, payload: bytes, *, namespace: bytes = b"git") -> bytes:
    """An SSHSIG armor over `payload` made with `cryptography`, as ssh-keygen makes it."""
    private = key.private()
    data = sshsig_signed_data(payload, namespace)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        signature = ssh_string(b"ssh-ed25519") + ssh_string(private.sign(data))
    elif isinstance(private, rsa.RSAPrivateKey):
        raw = private.sign(data, padding.PKCS1v15(), hashes.SHA512())
        signature = ssh_string(b"rsa-sha2-512") + ssh_string(raw)
    else:
        raise AssertionError(f"no in-process signer for {key.name}")
    return armor(sshsig_blob(key.blob, signature, namespace=namespace))


# -- helpers: throwaway repositories ------------------------------------------------------------


@dataclass(frozen=True)
class Repo:
    path: Path
    allowed_signers: Path

    def git(self, *args: str | Path, data: bytes | None = None) -> bytes:
        return run("git", *args, cwd=self.path, data=data)

    def signing(self, key: Key) -> list[str]:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key.path}"]

    def commit(self, message: str, key: Key | None = None, *extra: str) -> str:
        sign = [*self.signing(key), "commit", "-S"] if key else ["commit"]
        self.git(*sign, "-q", "--allow-empty", "-m", message, *extra)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").decode().strip()

    def raw(self, commit: str) -> bytes:
        return self.git("cat-file", "commit", commit)

    def write(self, raw: bytes) -> str:
        """Store a hand-made commit object; --literally so git does not judge it first."""
        written = self.git("hash-object", "-t", "commit", "-w", "--stdin", "--literally", data=raw)
        return written.decode().strip()

    def verdict(self, commit: str) -> tuple[str, str]:
        """git's %G? and %GK for one commit, judged with the allowed-signers file."""
        out = self.git(*self.allowed(), "log", "-1", "--format=%G? %GK", commit).decode()
        status, _, fingerprint = out.strip().partition(" ")
        return status, fingerprint

    def allowed(self) -> list[str]:
        return ["-c", f"gpg.ssh.allowedSignersFile={self.allowed_signers}"]


def make_repo(tmp_path: Path, keys: dict[str, Key], object_format: str = "sha1") -> Repo:
    # The allowed-signers file lives outside the repository: a file inside it
    # would be something the committers control.
    allowed = tmp_path / "allowed_signers"
    lines = [f'{key.name}@example.com namespaces="git" {key.public_line}' for key in keys.values()]
    allowed.write_text("".join(line + "\n" for line in lines))
    path = tmp_path / "repo"
    run("git", "init", "-q", f"--object-format={object_format}", path)
    return Repo(path, allowed)


@pytest.fixture
def repo(tmp_path: Path, keys: dict[str, Key]) -> Repo:
    return make_repo(tmp_path, keys)


def assert_agrees(repo: Repo, commit: str) -> SignatureCheck:
    """Our verdict on the object matches git's: 'G' exactly when good, the same %GK."""
    check = check_commit_signature(repo.raw(commit))
    status, git_fingerprint = repo.verdict(commit)
    assert (status == "G") == check.good, (status, check)
    if check.good:
        assert check.fingerprint == git_fingerprint
    return check


# -- real keys, real commits --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KEY_SPECS))
def test_a_commit_signed_by_git_is_good_with_gits_and_ssh_keygens_fingerprint(
    repo: Repo, keys: dict[str, Key], name: str
) -> None:
    key = keys[name]
    commit = repo.commit("subject\n\nbody line one\nbody line two\n\ntrailer: x", key)
    check = assert_agrees(repo, commit)
    assert check.status == "good"
    assert check.fingerprint == key.keygen_fingerprint == repo.verdict(commit)[1]
    assert check.key_type == key.public_line.split()[0]


def test_a_sha256_repository_signs_with_gpgsig_sha256(tmp_path: Path, keys: dict[str, Key]) -> None:
    repo = make_repo(tmp_path, keys, object_format="sha256")
    commit = repo.commit("in a SHA-256 repository", keys["ed25519"])
    assert b"\ngpgsig-sha256 " in repo.raw(commit)
    assert assert_agrees(repo, commit).fingerprint == keys["ed25519"].keygen_fingerprint


def test_an_unsigned_commit_is_unsigned(repo: Repo) -> None:
    commit = repo.commit("plain")
    raw = repo.raw(commit)
    # An unsigned commit's payload is the commit itself.
    assert check_commit_signature(raw) == SignatureCheck(
        "unsigned", None, None, "the commit is not signed", hashlib.sha256(raw).hexdigest()
    )
    assert repo.verdict(commit) == ("N", "")


def test_one_byte_changed_in_the_payload_is_bad(repo: Repo, keys: dict[str, Key]) -> None:
    raw = repo.raw(repo.commit("deploy 1.2.3", keys["ed25519"]))
    forged = repo.write(raw.replace(b"deploy 1.2.3", b"deploy 1.2.4"))
    check = assert_agrees(repo, forged)
    assert check.status == "bad"
    assert check.fingerprint is None
    assert check.reason.startswith("signature does not match the commit (ssh-ed25519 key SHA256:")
    assert repo.verdict(forged)[0] == "B"


def test_a_signature_for_another_namespace_is_bad(
    repo: Repo, keys: dict[str, Key], tmp_path: Path
) -> None:
    unsigned = repo.raw(repo.commit("plain"))
    payload = tmp_path / "payload"
    payload.write_bytes(unsigned)
    for namespace, ours, gits in (("git", "good", "G"), ("file", "bad", "B")):
        run("ssh-keygen", "-q", "-Y", "sign", "-n", namespace, "-f", keys["ed25519"].path, payload)
        signature = payload.with_name("payload.sig").read_bytes()
        payload.with_name("payload.sig").unlink()
        commit = repo.write(splice(unsigned, signature))
        check = assert_agrees(repo, commit)
        assert (check.status, repo.verdict(commit)[0]) == (ours, gits)
    assert check.reason == "namespace is 'file', not 'git'"


def test_a_merge_and_a_merged_signed_tag_are_good(repo: Repo, keys: dict[str, Key]) -> None:
    ed25519_key, rsa_key = keys["ed25519"], keys["rsa3072"]
    repo.commit("base", ed25519_key)
    repo.git("checkout", "-q", "-b", "topic")
    repo.commit("on topic", rsa_key)
    repo.git(*repo.signing(rsa_key), "tag", "-s", "-m", "release\n\nnotes", "v1")
    repo.git("checkout", "-q", "-")
    repo.commit("on main", ed25519_key)
    repo.git(
        *repo.signing(ed25519_key), "merge", "-q", "-S", "--no-ff", "-m", "merge topic", "topic"
    )
    merge = repo.head()
    repo.git("checkout", "-q", "-b", "other", "HEAD~1")
    repo.git(
        *repo.signing(keys["ecdsa384"]), "merge", "-q", "-S", "--no-ff", "-m", "merge v1", "v1"
    )
    tag_merge = repo.head()

    assert assert_agrees(repo, merge).fingerprint == ed25519_key.keygen_fingerprint
    raw = repo.raw(tag_merge)
    assert b"\nmergetag object " in raw
    payload, signature = split_signed_object(raw)
    # The tag's own signature stays in the payload, inside the mergetag header.
    assert b"\n " + ARMOR_BEGIN in payload
    assert signature is not None
    assert signature.count(ARMOR_BEGIN) == 1
    assert assert_agrees(repo, tag_merge).fingerprint == keys["ecdsa384"].keygen_fingerprint


def test_a_signature_header_that_is_not_the_last_header_still_verifies(
    repo: Repo, keys: dict[str, Key]
) -> None:
    raw = repo.raw(repo.commit("moved header", keys["ecdsa256"]))
    header_end = raw.index(b"\n\n") + 1
    start = raw.index(b"\ngpgsig ") + 1
    block = raw[start:header_end]
    moved = raw[:start] + raw[header_end:]
    after_tree = moved.index(b"\n") + 1
    moved = moved[:after_tree] + block + moved[after_tree:]
    assert moved.split(b"\n")[1].startswith(b"gpgsig ")
    assert split_signed_object(moved) == split_signed_object(raw)
    commit = repo.write(moved)
    assert assert_agrees(repo, commit).status == "good"
    assert repo.verdict(commit)[0] == "G"


def test_the_other_hashs_signature_header_is_left_out_of_both(
    repo: Repo, keys: dict[str, Key]
) -> None:
    raw = repo.raw(repo.commit("with a stray gpgsig-sha256", keys["ed25519"]))
    stray = b"gpgsig-sha256 not a signature\n continued\n  twice\n"
    end = raw.index(b"\n\n") + 1
    copy = raw[:end] + stray + raw[end:]
    assert split_signed_object(copy) == split_signed_object(raw)
    # git still calls it good: a new commit id over the same signed payload.
    assert repo.verdict(repo.write(copy))[0] == "G"
    check = check_commit_signature(copy)
    assert (check.status, check.fingerprint) == ("malformed", None)
    assert "2 signature headers" in check.reason
    assert check.payload == check_commit_signature(raw).payload


@pytest.mark.parametrize(
    ("object_format", "extra"),
    [
        ("sha1", b"gpgsig "),
        ("sha1", b"gpgsig-sha256 "),
        ("sha1", b"gpgsigx "),
        ("sha256", b"gpgsig "),
        ("sha256", b"gpgsig-sha256 "),
    ],
)
def test_any_second_signature_header_makes_a_commit_malformed(
    tmp_path: Path, keys: dict[str, Key], object_format: str, extra: bytes
) -> None:
    repo = make_repo(tmp_path, keys, object_format)
    raw = repo.raw(repo.commit("signed once", keys["ed25519"]))
    _, signature = split_signed_object(raw)
    assert signature is not None
    end = raw.index(b"\n\n") + 1
    for copy in (
        splice(raw, signature, extra.strip()),  # before the signature
        raw[:end] + extra + b"x\n" + raw[end:],  # after it
    ):
        check = check_commit_signature(copy)
        assert (check.status, check.fingerprint) == ("malformed", None), check
        assert check.payload == check_commit_signature(raw).payload


@pytest.mark.parametrize("name", ["author", "committer"])
def test_a_second_author_or_committer_line_makes_a_commit_malformed(
    repo: Repo, keys: dict[str, Key], name: str
) -> None:
    # Git's readers take such a commit apart: `git log`'s %an/%cn name the last line,
    # the history's dates come from the first, and `git fsck` refuses two authors.
    for signed in (keys["ed25519"], None):
        raw = repo.raw(repo.commit(f"{name} twice", signed))
        end = raw.index(b"\n\n") + 1
        line = f"{name} Someone Else <else@example.com> 1700000000 +0000\n".encode()
        check = check_commit_signature(raw[:end] + line + raw[end:])
        assert (check.status, check.fingerprint) == ("malformed", None), check
        assert check.reason == f"it carries 2 {name} lines, where git writes one"


def test_an_author_or_committer_named_in_the_message_is_not_a_second_line(
    repo: Repo, keys: dict[str, Key]
) -> None:
    message = "subject\n\nauthor Someone <s@example.com> 1 +0000\ncommitter x <x@y> 1 +0000"
    assert check_commit_signature(repo.raw(repo.commit(message, keys["ed25519"]))).good


def test_a_lone_signature_header_git_does_not_read_makes_a_commit_malformed(
    repo: Repo, keys: dict[str, Key]
) -> None:
    unsigned = repo.raw(repo.commit("plain"))
    copy = splice(unsigned, sign_in_process(keys["ed25519"], unsigned), b"gpgsig-sha256")
    assert repo.verdict(repo.write(copy))[0] == "N"
    check = check_commit_signature(copy)
    assert (check.status, check.payload) == ("malformed", check_commit_signature(unsigned).payload)


def non_canonical_armors(blob: bytes) -> Iterator[tuple[str, bytes]]:
    """The blob armored in ways ssh-keygen reads but never writes."""
    encoded = base64.b64encode(blob)
    canonical = armor(blob)
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    yield "wrapped at 64", b"\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + b"\n"
    yield "one long line", b"\n".join([ARMOR_BEGIN, encoded, ARMOR_END]) + b"\n"
    yield "trailing space", canonical.replace(b"\n", b" \n", 2)
    yield "CRLF", canonical.replace(b"\n", b"\r\n")
    yield "blank line", canonical.replace(ARMOR_BEGIN + b"\n", ARMOR_BEGIN + b"\n\n")
    yield "blank line before END", canonical.replace(b"\n" + ARMOR_END, b"\n\n" + ARMOR_END)
    yield "leading space", b" " + canonical


def test_a_signature_rewrapped_as_git_still_accepts_it_is_malformed(
    repo: Repo, keys: dict[str, Key]
) -> None:
    raw = repo.raw(repo.commit("wrapped", keys["ed25519"]))
    payload, signature = split_signed_object(raw)
    assert signature is not None
    assert signature == armor(dearmor(signature)), "git writes the canonical armor"
    accepted_by_git = []
    for label, text in non_canonical_armors(dearmor(signature)):
        copy = splice(payload, text)
        verdict = subprocess.run(
            ["git", *repo.allowed(), "log", "-1", "--format=%G?", repo.write(copy)],
            cwd=repo.path,
            capture_output=True,
            check=False,
        )
        if verdict.stdout.strip() == b"G":
            accepted_by_git.append(label)
        check = check_commit_signature(copy)
        assert (check.status, check.fingerprint) == ("malformed", None), (label, check)
        assert check.payload == hashlib.sha256(payload).hexdigest()
    # Each a new commit id over the same payload, which git calls good.
    assert {"wrapped at 64", "one long line", "blank line"} <= set(accepted_by_git), accepted_by_git


def test_a_message_that_looks_like_headers_is_payload(repo: Repo, keys: dict[str, Key]) -> None:
    message = "subject\n\ngpgsig not a header\n -----BEGIN SSH SIGNATURE-----\n\n\nlast"
    raw = repo.raw(repo.commit(message, keys["ed25519"], "--cleanup=verbatim"))
    payload, _ = split_signed_object(raw)
    assert payload.endswith(message.encode() + b"\n")
    assert check_commit_signature(raw).status == "good"


# -- splitting, on literal objects ---------------------------------------------------------------

TREE = b"tree " + b"a" * 40 + b"\n"


def test_split_removes_the_header_and_strips_continuation_spaces() -> None:
    raw = TREE + b"gpgsig line1\n line2\n  line3\nauthor x\n\nmsg\n gpgsig body\n"
    payload, signature = split_signed_object(raw)
    assert payload == TREE + b"author x\n\nmsg\n gpgsig body\n"
    assert signature == b"line1\nline2\n line3\n"


def test_split_of_an_unsigned_object_is_the_object_itself() -> None:
    raw = TREE + b"author x\n\nmessage"
    assert split_signed_object(raw) == (raw, None)


def test_a_sha1_object_whose_second_line_ends_at_the_64th_digit_is_still_sha1() -> None:
    raw = TREE + b"author AB <a@x> 1 +0000\ngpgsig-sha256 x\ngpgsig y\n\nm"
    assert raw[69:70] == b"\n"
    assert split_signed_object(raw) == (TREE + b"author AB <a@x> 1 +0000\n\nm", b"y\n")


def test_split_picks_the_header_for_the_object_format() -> None:
    sha256_tree = b"tree " + b"b" * 64 + b"\n"
    raw = sha256_tree + b"gpgsig one\n more\ngpgsig-sha256 two\n more\n\nm"
    assert split_signed_object(raw) == (sha256_tree + b"\nm", b"two\nmore\n")
    assert split_signed_object(raw, "sha1") == (sha256_tree + b"\nm", b"one\nmore\n")


# -- signatures built in-process: FIDO keys, refused algorithms, malformed blobs -----------------


def sk_public_blob(key_type: bytes, public: bytes, application: bytes = b"ssh:") -> bytes:
    if key_type.startswith(b"sk-ecdsa"):
        return (
            ssh_string(key_type)
            + ssh_string(b"nistp256")
            + ssh_string(public)
            + ssh_string(application)
        )
    return ssh_string(key_type) + ssh_string(public) + ssh_string(application)


def sk_signature(
    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
    payload: bytes,
    *,
    flags: int = 0x01,
    counter: int = 7,
    application: bytes = b"ssh:",
    signed_application: bytes | None = None,
) -> tuple[bytes, bytes]:
    """(public blob, armor) as OpenSSH makes them with a FIDO token.

    The token signs authenticatorData (H(application), flags, counter) || H(message).
    """
    signed = (
        hashlib.sha256(application if signed_application is None else signed_application).digest()
        + bytes([flags])
        + counter.to_bytes(4, "big")
        + hashlib.sha256(sshsig_signed_data(payload)).digest()
    )
    tail = bytes([flags]) + counter.to_bytes(4, "big")
    if isinstance(private, ed25519.Ed25519PrivateKey):
        key_type = b"sk-ssh-ed25519@openssh.com"
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        body = ssh_string(private.sign(signed))
    else:
        key_type = b"sk-ecdsa-sha2-nistp256@openssh.com"
        public = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        r, s = decode_dss_signature(private.sign(signed, ec.ECDSA(hashes.SHA256())))
        body = ssh_string(mpint(r) + mpint(s))
    blob = sk_public_blob(key_type, public, application)
    return blob, armor(sshsig_blob(blob, ssh_string(key_type) + body + tail))


SK_KEYS: dict[str, Callable[[], ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey]] = {
    "sk-ed25519": ed25519.Ed25519PrivateKey.generate,
    "sk-ecdsa": lambda: ec.generate_private_key(ec.SECP256R1()),
}


@pytest.mark.parametrize("name", list(SK_KEYS))
def test_security_key_signatures_are_judged_as_ssh_keygen_judges_them(
    tmp_path: Path, keys: dict[str, Key], name: str
) -> None:
    private = SK_KEYS[name]()
    repo = make_repo(tmp_path, keys)
    unsigned = repo.raw(repo.commit("by a security key"))
    blob, signature = sk_signature(private, unsigned)
    key_type = blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode()
    public_line = f"{key_type} {base64.b64encode(blob).decode()}"
    with repo.allowed_signers.open("a") as allowed:
        allowed.write(f'sk@example.com namespaces="git" {public_line}\n')

    good = repo.write(splice(unsigned, signature))
    check = assert_agrees(repo, good)
    assert (check.status, check.key_type) == ("good", key_type)
    assert check.fingerprint == parse_public_key(public_line).fingerprint

    untouched = repo.write(splice(unsigned, sk_signature(private, unsigned, flags=0x04)[1]))
    check = check_commit_signature(repo.raw(untouched))
    assert check.status == "bad"
    assert "without user presence" in check.reason
    # Stricter than git on purpose: ssh-keygen -Y verify ignores the touch flag.
    assert repo.verdict(untouched)[0] == "G"

    # The application is part of what the token signs, not only of the key.
    signed_for_another_application = sk_signature(private, unsigned, signed_application=b"ssh:x")[1]
    other_application = repo.write(splice(unsigned, signed_for_another_application))
    check = assert_agrees(repo, other_application)
    assert check.reason.startswith("signature does not match the commit")


def test_an_rsa_sha1_signature_is_unsupported(repo: Repo, keys: dict[str, Key]) -> None:
    key = keys["rsa3072"]
    unsigned = repo.raw(repo.commit("sha-1"))
    private = key.private()
    assert isinstance(private, rsa.RSAPrivateKey)
    raw = private.sign(sshsig_signed_data(unsigned), padding.PKCS1v15(), hashes.SHA1())
    signature = armor(sshsig_blob(key.blob, ssh_string(b"ssh-rsa") + ssh_string(raw)))
    commit = repo.write(splice(unsigned, signature))
    check = assert_agrees(repo, commit)
    assert check.status == "unsupported"
    assert "SHA-1" in check.reason


def test_in_process_signatures_match_what_git_accepts(repo: Repo, keys: dict[str, Key]) -> None:
    # Guards the helpers below: what they build, git calls good.
    unsigned = repo.raw(repo.commit("plain"))
    for name in ("ed25519", "rsa3072"):
        commit = repo.write(splice(unsigned, sign_in_process(keys[name], unsigned)))
        assert repo.verdict(commit)[0] == "G"
        assert check_commit_signature(repo.raw(commit)).good


def test_an_x509_signature_is_unsupported() -> None:
    # OpenPGP signatures are verified too (tests/test_openpgp.py); X.509 (gpgsm) ones are not.
    x509 = b"-----BEGIN SIGNED MESSAGE-----\nMIAGCSqGSIb3DQEHAqCA\n-----END SIGNED MESSAGE-----\n"
    check = check_commit_signature(splice(TREE + b"author x\n\nm\n", x509))
    assert (check.status, check.fingerprint, check.reason) == (
        "unsupported",
        None,
        "X.509 signatures are not verified; SSH or OpenPGP signatures are required",
    )


@pytest.fixture
def signed(keys: dict[str, Key]) -> tuple[Key, bytes]:
    """An unsigned object and the ed25519 key, for blobs built by hand."""
    return keys["ed25519"], TREE + b"author A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nmsg\n"


def verdict_for(unsigned: bytes, blob: bytes) -> SignatureCheck:
    return check_commit_signature(splice(unsigned, armor(blob)))


def good_blob(key: Key, unsigned: bytes) -> bytes:
    return dearmor(sign_in_process(key, unsigned))


def test_a_blob_signed_in_process_is_good(signed: tuple[Key, bytes]) -> None:
    key, unsigned = signed
    assert verdict_for(unsigned, good_blob(key, unsigned)).fingerprint == key.keygen_fingerprint


def malformed_cases(key: Key, unsigned: bytes) -> Iterator[tuple[str, bytes, str, str]]:
    """(label, whole armor text, status, a phrase of the reason)."""
    blob = good_blob(key, unsigned)
    ed_sig = blob[blob.rindex(ssh_string(b"ssh-ed25519")) :]
    yield "no END line", armor(blob).replace(ARMOR_END, b""), "bad", "no END"
    yield "bad base64", armor(blob).replace(b"\n", b"\n!", 1), "bad", "not valid base64"
    yield "text after END", armor(blob) + b"extra\n", "malformed", "text follows"
    yield "second armor", armor(blob) + armor(blob), "malformed", "text follows"
    for label, text in non_canonical_armors(blob):
        yield label, text, "malformed", "ssh-keygen"
    yield "wrong magic", armor(b"SSHSIH" + blob[6:]), "bad", "SSHSIG magic"
    yield "trailing data", armor(blob + b"\0"), "bad", "trailing data"
    yield "truncated", armor(blob[:-1]), "bad", "truncated"
    yield (
        "version 2",
        armor(blob[:6] + (2).to_bytes(4, "big") + blob[10:]),
        "unsupported",
        "version 2",
    )
    yield (
        "md5",
        armor(sshsig_blob(key.blob, ed_sig[4:], algorithm=b"md5")),
        "unsupported",
        "'md5' is not sha256 or sha512",
    )
    yield (
        "reserved",
        armor(sshsig_blob(key.blob, ed_sig[4:], reserved=b"x")),
        "unsupported",
        "reserved",
    )
    yield (
        "unknown key type",
        armor(sshsig_blob(ssh_string(b"ssh-foo") + ssh_string(b"k"), b"s")),
        "unsupported",
        "key type 'ssh-foo' is not supported",
    )
    cert = ssh_string(b"ssh-ed25519-cert-v01@openssh.com") + ssh_string(b"nonce")
    yield "certificate", armor(sshsig_blob(cert, b"s")), "unsupported", "certificates"
    yield "dsa", armor(sshsig_blob(ssh_string(b"ssh-dss"), b"s")), "unsupported", "DSA"
    yield (
        "key with trailing data",
        armor(sshsig_blob(key.blob + b"\0", ed_sig[4:])),
        "bad",
        "the signing key has trailing data",
    )
    yield (
        "signature type for another key",
        armor(sshsig_blob(key.blob, ssh_string(b"rsa-sha2-512") + ed_sig[4 + 15 :])),
        "bad",
        "does not fit a ssh-ed25519 key",
    )
    yield "not SSH at all", b"hello\n", "bad", "not an SSH signature"


def test_malformed_signatures_get_a_reason_and_never_raise(signed: tuple[Key, bytes]) -> None:
    key, unsigned = signed
    for label, text, status, phrase in malformed_cases(key, unsigned):
        check = check_commit_signature(splice(unsigned, text))
        assert (check.status, check.fingerprint) == (status, None), (label, check)
        assert phrase in check.reason, (label, check.reason)


def rsa_key_blob(exponent: bytes, modulus: bytes) -> bytes:
    return ssh_string(b"ssh-rsa") + ssh_string(exponent) + ssh_string(modulus)


def test_keys_that_would_fingerprint_differently_in_openssh_are_refused(
    signed: tuple[Key, bytes], keys: dict[str, Key]
) -> None:
    _, unsigned = signed
    numbers = parse_rsa(keys["rsa3072"].blob)
    padded_e = rsa_key_blob(b"\0" + numbers[0], numbers[1])
    assert "leading zero" in verdict_for(unsigned, sshsig_blob(padded_e, b"")).reason
    small = rsa.generate_private_key(65537, 1024).public_key().public_numbers()
    small_blob = ssh_string(b"ssh-rsa") + mpint(small.e) + mpint(small.n)
    check = verdict_for(unsigned, sshsig_blob(small_blob, b""))
    assert (check.status, check.key_type) == ("unsupported", "ssh-rsa")
    assert "1024-bit RSA key is too short" in check.reason
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    )
    compressed = ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(b"nistp256") + ssh_string(point)
    assert "uncompressed" in verdict_for(unsigned, sshsig_blob(compressed, b"")).reason
    off_curve = (
        ssh_string(b"ecdsa-sha2-nistp256")
        + ssh_string(b"nistp256")
        + ssh_string(b"\x04" + b"\1" * 64)
    )
    assert verdict_for(unsigned, sshsig_blob(off_curve, b"")).reason == (
        "the ecdsa-sha2-nistp256 key is not a valid public key"
    )


def parse_rsa(blob: bytes) -> tuple[bytes, bytes]:
    offset = 4 + int.from_bytes(blob[:4], "big")
    e_length = int.from_bytes(blob[offset : offset + 4], "big")
    exponent = blob[offset + 4 : offset + 4 + e_length]
    modulus = blob[offset + 8 + e_length :]
    return exponent, modulus


def test_every_truncation_of_a_good_blob_is_refused(signed: tuple[Key, bytes]) -> None:
    key, unsigned = signed
    blob = good_blob(key, unsigned)
    for length in range(len(blob)):
        check = verdict_for(unsigned, blob[:length])
        assert check.status in {"bad", "unsupported"}, length
        assert not check.reason.startswith("internal error"), (length, check)


def assert_sane(check: SignatureCheck) -> None:
    assert isinstance(check, SignatureCheck)
    assert not check.reason.startswith("internal error"), check
    assert (check.fingerprint is not None) == check.good
    assert len(check.payload) == 64, check


@pytest.mark.parametrize("name", list(KEY_SPECS))
def test_every_byte_changed_in_a_good_blob_is_refused(
    repo: Repo, keys: dict[str, Key], name: str
) -> None:
    raw = repo.raw(repo.commit("flip me", keys[name]))
    payload, signature = split_signed_object(raw)
    assert signature is not None
    blob = dearmor(signature)
    for position in range(len(blob)):
        for mask in (0x01, 0x80):
            changed = bytearray(blob)
            changed[position] ^= mask
            check = check_commit_signature(splice(payload, armor(bytes(changed))))
            assert_sane(check)
            assert not check.good, (position, mask)


@FUZZ
@given(body=st.binary(max_size=600))
def test_arbitrary_bytes_inside_the_armor_never_raise(
    signed: tuple[Key, bytes], body: bytes
) -> None:
    _, unsigned = signed
    assert_sane(verdict_for(unsigned, body))
    text = ARMOR_BEGIN + b"\n" + body + b"\n" + ARMOR_END + b"\n"
    assert_sane(check_commit_signature(splice(unsigned, text)))


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_arbitrary_commit_bytes_never_raise(raw: bytes) -> None:
    assert_sane(check_commit_signature(raw))
    assert_sane(check_commit_signature(b"tree x\ngpgsig " + ARMOR_BEGIN + b"\n " + raw))


@FUZZ
@given(
    parts=st.lists(
        st.sampled_from([b"gpgsig ", b"gpgsig-sha256 ", b" ", b"\n", b"x", b"mergetag ", b"tree "]),
        max_size=30,
    )
)
def test_splitting_finds_a_signature_exactly_when_a_header_line_carries_one(
    parts: list[bytes],
) -> None:
    raw = b"".join(parts)
    payload, signature = split_signed_object(raw)
    assert len(payload) + len(signature or b"") <= len(raw)
    assert (signature is not None) == any(line.startswith(b"gpgsig ") for line in headers(raw))


def headers(raw: bytes) -> list[bytes]:
    """The header lines of an object: those before the first empty line."""
    lines = raw.split(b"\n")
    for index, line in enumerate(lines[:-1]):
        if not line:
            return lines[:index]
    return lines


# -- git's own traps, measured: why the actor comes from the key ----------------------------------


def test_git_accepts_a_key_whatever_email_the_commit_carries(
    repo: Repo, keys: dict[str, Key], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "alice@example.com")
    commit = repo.commit("claims to be alice", keys["ed25519"])
    out = repo.git(*repo.allowed(), "log", "-1", "--format=%G?|%GS|%ce", commit).decode().strip()
    assert out == "G|ed25519@example.com|alice@example.com"


def test_git_checks_valid_before_against_the_committer_date_the_signer_writes(
    tmp_path: Path, keys: dict[str, Key], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = keys["ed25519"]
    repo = make_repo(tmp_path, {})
    repo.allowed_signers.write_text(
        f'k@x namespaces="git",valid-before="20200101" {key.public_line}\n'
    )
    current = repo.commit("signed today", key)
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2019-06-01T00:00:00Z")
    backdated = repo.commit("signed today, dated 2019", key)
    # The expired key's fingerprint is printed either way: only 'G' means verified.
    assert repo.verdict(current) == ("U", key.keygen_fingerprint)
    assert repo.verdict(backdated) == ("G", key.keygen_fingerprint)


# -- a batch against git log, and speed -----------------------------------------------------------


@pytest.mark.slow
def test_200_commits_by_four_key_types_agree_with_git_log(
    tmp_path: Path, keys: dict[str, Key]
) -> None:
    signers = [keys[name] for name in ("ed25519", "ecdsa256", "ecdsa521", "rsa3072")]
    repo = make_repo(tmp_path, {key.name: key for key in signers})
    tree = repo.git("hash-object", "-t", "tree", "-w", "--stdin", data=b"").decode().strip()
    parent: list[str] = []
    for number in range(200):
        unsigned = number % 23 == 0
        command = (
            ["commit-tree"]
            if unsigned
            else [*repo.signing(signers[number % 4]), "commit-tree", "-S"]
        )
        message = f"commit {number}\n\nline"
        commit = repo.git(*command, tree, *parent, "-m", message).decode().strip()
        parent = ["-p", commit]
    tip = parent[1]
    # The tip tampered with, so "bad" is in the batch too.
    forged = repo.write(repo.raw(tip).replace(b"commit 199", b"commit 999"))
    log = repo.git(*repo.allowed(), "log", "--format=%H %G? %GK", forged).decode().splitlines()
    assert len(log) == 200
    assert log[0].split(" ")[1] == "B"
    statuses = {"good": "G", "bad": "B", "unsigned": "N"}
    seen: list[str] = []
    for line in log:
        commit, status, git_fingerprint = line.split(" ")
        check = check_commit_signature(repo.raw(commit))
        assert statuses[check.status] == status, (commit, check)
        assert (check.fingerprint or "") == git_fingerprint
        seen.append(check.status)
    assert (seen.count("good"), seen.count("unsigned"), seen.count("bad")) == (190, 9, 1)
    fingerprints = {check_commit_signature(repo.raw(line.split()[0])).fingerprint for line in log}
    assert fingerprints - {None} == {key.keygen_fingerprint for key in signers}


def test_in_process_verification_is_fast(repo: Repo, keys: dict[str, Key]) -> None:
    raw = repo.raw(repo.commit("speed", keys["ed25519"]))
    start = time.perf_counter()
    for _ in range(1000):
        assert check_commit_signature(raw).good
    elapsed = time.perf_counter() - start
    # ~125 µs each measured here, about OpenSSL's own Ed25519 verify on this machine
    # (`openssl speed ed25519`: 8,400/s); the bound only catches a fall to subprocess speeds.
    assert elapsed < 2.0


# -- a differential guard: generated commits, some tampered, judged by both ------------------------

LISTED = ("ed25519", "ecdsa256", "rsa3072")  # in the allowed-signers file
UNLISTED = "ecdsa384"  # a good signature by a key git was not told about
TAMPERINGS = ("none", "unsigned", "another-key", "flipped-byte", "swapped-key", "truncated")
DIFFERENTIAL = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def listed_repo(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Key]) -> Repo:
    return make_repo(tmp_path_factory.mktemp("differential"), {name: keys[name] for name in LISTED})


def sshsig_strings(blob: bytes) -> list[bytes]:
    """An SSHSIG blob's strings after its magic and version: key, namespace, reserved,
    hash algorithm, signature."""
    strings, at = [], 10
    while at < len(blob):
        size = int.from_bytes(blob[at : at + 4], "big")
        strings.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    return strings


def tampered(
    repo: Repo, keys: dict[str, Key], signer: Key, message: str, how: str, where: int
) -> str:
    """A commit of `message` signed by `signer`, then changed `how` (`where` picks a byte)."""
    tree = repo.git("hash-object", "-t", "tree", "-w", "--stdin", data=b"").decode().strip()
    if how == "unsigned":
        return repo.git("commit-tree", tree, "-m", message).decode().strip()
    key = keys[UNLISTED] if how == "another-key" else signer
    commit = repo.git(*repo.signing(key), "commit-tree", "-S", tree, "-m", message).decode().strip()
    if how in ("none", "another-key"):
        return commit
    raw = repo.raw(commit)
    payload, armored = split_signed_object(raw)
    assert armored is not None
    if how == "flipped-byte":  # a byte of the message, after the signature was made
        start = raw.index(b"\n\n") + 2
        at = start + where % (len(raw) - start)
        return repo.write(raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :])
    if how == "swapped-key":  # the signature names another listed key than the one that signed
        other = next(keys[name] for name in LISTED if keys[name] is not signer)
        _, namespace, _, algorithm, signature = sshsig_strings(dearmor(armored))
        forged = armor(sshsig_blob(other.blob, signature, namespace=namespace, algorithm=algorithm))
        return repo.write(splice(payload, forged))
    body = armored.split(b"\n")[1:-2]  # the base64 lines between the armor lines
    text = b"".join(body)
    cut = where % (len(text) - 4)
    short = text[:cut] + text[cut + 4 :]
    lines = [short[i : i + 70] for i in range(0, len(short), 70)]
    return repo.write(splice(payload, b"\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + b"\n"))


def git_verdict(repo: Repo, commit: str) -> tuple[str, str]:
    """`Repo.verdict`, where git dying of SIGPIPE is git unable to check: ssh-keygen refuses
    an unreadable armor before it reads the payload git is still writing to it."""
    completed = subprocess.run(
        ["git", *repo.allowed(), "log", "-1", "--format=%G? %GK", commit],
        cwd=repo.path,
        capture_output=True,
        check=False,
    )
    if completed.returncode == -signal.SIGPIPE:
        return "E", ""
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    status, _, fingerprint = completed.stdout.decode().strip().partition(" ")
    return status, fingerprint


@pytest.mark.slow
@DIFFERENTIAL
@given(
    message=st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\0"),
        min_size=1,
        max_size=60,
    ),
    signer=st.sampled_from(LISTED),
    how=st.sampled_from(TAMPERINGS),
    where=st.integers(0, 10_000),
)
@example(message="x", signer="ed25519", how="none", where=0)
@example(message="x", signer="ecdsa256", how="another-key", where=0)
@example(message="x", signer="rsa3072", how="flipped-byte", where=3)
@example(message="x", signer="ed25519", how="swapped-key", where=0)
@example(message="x", signer="ecdsa256", how="truncated", where=100)
@example(message="x", signer="rsa3072", how="unsigned", where=0)
def test_verdicts_and_keys_agree_with_git_verify_commit_on_generated_tampered_commits(
    listed_repo: Repo, keys: dict[str, Key], message: str, signer: str, how: str, where: int
) -> None:
    repo = listed_repo
    commit = tampered(repo, keys, keys[signer], message, how, where)
    check = check_commit_signature(repo.raw(commit))
    status, git_key = git_verdict(repo, commit)
    verified = subprocess.run(
        ["git", *repo.allowed(), "verify-commit", commit],
        cwd=repo.path,
        capture_output=True,
        check=False,
    )
    listed = {keys[name].keygen_fingerprint for name in LISTED}
    # git: G good and listed, U good and unlisted, N unsigned, B/E bad or unreadable.
    if check.good:
        assert git_key == check.fingerprint
        assert status == ("G" if check.fingerprint in listed else "U")
    elif check.status == "unsigned":
        assert status == "N"
    else:
        assert status in ("B", "E")
    assert (verified.returncode == 0) == (status == "G")
    # The tampering did what it says, so each kind is compared where it matters.
    expected = {
        "none": ("good", keys[signer].keygen_fingerprint),
        "another-key": ("good", keys[UNLISTED].keygen_fingerprint),
        "unsigned": ("unsigned", None),
    }
    assert (check.status, check.fingerprint) == expected.get(how, (check.status, None))
    assert check.good == (how in ("none", "another-key"))
