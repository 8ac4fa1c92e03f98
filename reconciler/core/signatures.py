"""Stage 3, authorise: SSH and OpenPGP signatures on git commits, verified in-process.

Role: the identity stage of `reconciler verify` reads each landed commit's raw
object (what `git cat-file commit` prints) and asks `check_commit_signature`
whether it carries a good signature, and by which key. OpenPGP signatures
(gpg's, and Git hosts' such as GitHub's web-flow key) go to `openpgp`, which
verifies them with the certificates teams.yaml lists (the `Keyring` the
caller holds); without one holding its key, an OpenPGP signature is
"unverified", a verdict that waits for a certificate and is never remembered.
The rest of this module is about SSH. `git verify-commit`
runs `ssh-keygen` twice per commit (~12 ms); this module makes the checks of
OpenSSH's sshsig.c with `cryptography` instead (and libsodium, through
PyNaCl, for plain Ed25519 keys: two and a half times faster than OpenSSL
there), so a 10,000-commit signed history verifies in about half a second.

Pure: no subprocess, no git, no files. Bytes in, a `SignatureCheck` out, and
never an exception: the objects are written by whoever can push, and a crafted
one must yield a verdict, not stop the reconciler.

Trust is not decided here. "good" says only that the key embedded in the
signature signed exactly this commit for the "git" namespace; the caller maps
`fingerprint` to a user of the judging policy, or to nobody. Traps measured
with git 2.39 and OpenSSH 9.2, which is why nothing downstream may lean on
git's own identity fields:

- git never compares the commit's author or committer email with the signing
  key: a commit by "a@x" signed with bob's key shows %G? = 'G' and %GS =
  bob's principal. The actor comes from the key fingerprint (git's %GK, our
  `fingerprint`), never from the email, nor from %GS (a name from whichever
  allowed-signers file was used).
- Only %G? = 'G' means verified: an expired key gives 'U' with %GK still set.
- `valid-before`/`valid-after` in an allowed-signers file are checked against
  the committer date, which the signer writes: a key past its `valid-before`
  still makes 'G' commits by back-dating them. Which keys a user holds is the
  policy's business at the judged landing, not the signature's.
- `ssh-keygen -Y verify`, hence git, calls a security-key (sk-*) signature
  made without a touch 'G'; this module requires the user-presence flag.
- libsodium refuses a few Ed25519 signatures OpenSSH's reference code accepts
  (non-canonical encodings, small-order keys): only crafted ones, never an
  honest signer's, and refusing is the safe side.

Deliberately stricter than OpenSSH elsewhere too: a non-empty reserved field,
RSA keys under 2048 bits, and key blobs that OpenSSH would re-encode before
fingerprinting (padded integers, compressed points) are refused. SSH
certificates, WebAuthn signatures and DSA keys are "unsupported".

A commit git would still call 'G' is "malformed" when it carries more than
one signature header (`gpgsig`, `gpgsig-sha256`, any other `gpgsig...`), or
a signature not armored exactly as ssh-keygen writes it (lines of 70 base64
characters, nothing after the END line, no CR, no blank line): git and
ssh-keygen skip such extras, so each one makes another commit id over the
same signed payload, a copy that would count as a new commit. `payload` (the
SHA-256 of what was signed) lets the walk count each payload once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeVar

from msgspec import Struct

from reconciler.core import openpgp
from reconciler.core.sshkeys import (
    KeyFormatError,
    fingerprint,
    read_mpint,
    read_string,
    read_uint32,
)

if TYPE_CHECKING:
    # The other key types go through OpenSSL (`cryptography`), imported when one
    # is met: a history signed with Ed25519 keys, the common case, never loads it.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

Status = Literal["good", "bad", "unsigned", "unsupported", "malformed", "unverified"]
# An OpenPGP signature no certificate at hand could check: not a verdict to remember.
UNVERIFIED: Final = "unverified"
ObjectFormat = Literal["sha1", "sha256"]

NAMESPACE = b"git"
_MAGIC = b"SSHSIG"
_BEGIN_LINE = b"-----BEGIN SSH SIGNATURE-----"
_END_LINE = b"-----END SSH SIGNATURE-----"
_ARMOR_WIDTH = 70  # ssh-keygen's base64 lines (sshbuf_dtob64)
# The other armor git itself recognises (gpg-interface.c), so the reason names the format.
_OTHER_ARMORS = {
    b"-----BEGIN SIGNED MESSAGE-----": (
        "X.509 signatures are not verified; SSH or OpenPGP signatures are required"
    ),
}
_OPENPGP_ARMORS = (openpgp.SIGNATURE_BEGIN, openpgp.MESSAGE_BEGIN)
_SHA256_TREE_LINE = re.compile(rb"tree [0-9a-f]{64}\n")
_SIGNATURE_HEADERS: dict[ObjectFormat, bytes] = {"sha1": b"gpgsig", "sha256": b"gpgsig-sha256"}
_MESSAGE_HASHES: dict[bytes, Callable[[bytes], bytes]] = {
    b"sha256": lambda data: hashlib.sha256(data).digest(),
    b"sha512": lambda data: hashlib.sha512(data).digest(),
}
_RSA_HASHES: Final = {b"rsa-sha2-256": "SHA256", b"rsa-sha2-512": "SHA512"}
# OpenSSH accepts 1024-bit RSA; an authorisation decision should not.
_RSA_MIN_BITS = 2048
_RSA_MAX_BITS = 16384  # OpenSSH's own ceiling (SSHBUF_MAX_BIGNUM)
_SK_USER_PRESENT = 0x01
_ED25519_KEY = 32
_ED25519_SIGNATURE = 64

_T = TypeVar("_T")


class SignatureCheck(Struct, frozen=True):
    """What a commit's signature proves.

    `fingerprint` is set only when `status` is "good", so no caller can
    attribute a commit to a key whose signature failed: an SSH fingerprint
    ("SHA256:..."), or an OpenPGP key's (upper-case hex, the key that signed);
    `key_type` (the SSH name, e.g. "ssh-ed25519", or "openpgp") is set
    whenever the key was read.
    `payload` is the SHA-256 (hex) of the signed payload (the commit without
    its signature headers, what git verify-commit verifies), set by
    `check_commit_signature`, whatever the status.
    """

    status: Status
    fingerprint: str | None
    key_type: str | None
    reason: str
    payload: str = ""

    @property
    def good(self) -> bool:
        return self.status == "good"


def split_signed_object(
    raw: bytes, object_format: ObjectFormat | None = None
) -> tuple[bytes, bytes | None]:
    """The signed payload and the signature (None if unsigned) of a raw commit object.

    A port of git's parse_buffer_signed_by_header (commit.c), because the
    payload must be byte-for-byte what was signed. The signature is the header
    named for the repository's hash (`gpgsig` with SHA-1, `gpgsig-sha256` with
    SHA-256) and its continuation lines, each without its leading space; the
    other hash's signature header signs another object and is left out of
    both. Headers end at the first empty line; the message stays as it is.
    `object_format` is read from the `tree` line when not given; a caller
    that knows the repository's format should pass it.
    """
    header = _SIGNATURE_HEADERS[object_format or _object_format(raw)] + b" "
    payload = bytearray()
    signature = bytearray()
    saw_signature = in_signature = other_signature = False
    position = 0
    while position < len(raw):
        newline = raw.find(b"\n", position)
        end = len(raw) if newline < 0 else newline + 1
        line = raw[position:end]
        value: bytes | None = None
        if in_signature and line.startswith(b" "):
            value = line[1:]
        elif line.startswith(header):
            value = line[len(header) :]
            other_signature = False
        elif line.startswith(b"gpgsig"):
            other_signature = True
        elif other_signature and not line.startswith(b" "):
            other_signature = False
        if value is not None:
            signature += value
            saw_signature = in_signature = True
        elif line.startswith(b"\n"):
            payload += raw[position:]
            break
        else:
            if not other_signature:
                payload += line
            in_signature = False
        position = end
    return bytes(payload), bytes(signature) if saw_signature else None


def check_commit_signature(
    raw: bytes, object_format: ObjectFormat | None = None, keyring: openpgp.Keyring | None = None
) -> SignatureCheck:
    """Verify the signature of a raw commit object: an SSH one with the key it embeds, an
    OpenPGP one with the certificate of `keyring` holding its key. Never raises."""
    try:
        payload, armor = split_signed_object(raw, object_format)
        headers = _signature_headers(raw)
    except Exception as error:  # see _fail_closed
        failed = _fail_closed(error)
        return SignatureCheck(
            failed.status, None, None, failed.reason, hashlib.sha256(raw).hexdigest()
        )
    digest = hashlib.sha256(payload).hexdigest()
    if headers > 1:
        reason = f"it carries {headers} signature headers, where git writes one"
        return SignatureCheck("malformed", None, None, reason, digest)
    repeated = _repeated_person(raw)
    if repeated is not None:
        return SignatureCheck("malformed", None, None, repeated, digest)
    if armor is None:
        if headers:
            reason = "its signature header is not one git reads for this repository's hash"
            return SignatureCheck("malformed", None, None, reason, digest)
        return SignatureCheck("unsigned", None, None, "the commit is not signed", digest)
    check = check_signature(payload, armor, keyring)
    return SignatureCheck(check.status, check.fingerprint, check.key_type, check.reason, digest)


def _repeated_person(raw: bytes) -> str | None:
    """Why a commit's author or committer is not one person, or None: more than one such
    line, which git's own readers take apart (`git log`'s %an/%cn the last, the history's
    dates the first; `git fsck` refuses two authors)."""
    head = b"\n" + _headers(raw)
    for name in (b"author", b"committer"):
        count = head.count(b"\n" + name + b" ")
        if count > 1:
            return f"it carries {count} {name.decode()} lines, where git writes one"
    return None


def _signature_headers(raw: bytes) -> int:
    """How many header lines are signature headers: every name git sets apart as one
    (`gpgsig`, `gpgsig-sha256`, anything else starting with `gpgsig`)."""
    head = _headers(raw)
    return head.count(b"\ngpgsig") + head.startswith(b"gpgsig")


def _headers(raw: bytes) -> bytes:
    """A raw commit's header lines, each with its line break: up to the first empty line."""
    end = raw.find(b"\n\n")
    return raw if end < 0 else raw[: end + 1]


def check_signature(
    payload: bytes,
    armor: bytes,
    keyring: openpgp.Keyring | None = None,
    *,
    namespace: bytes = NAMESPACE,
) -> SignatureCheck:
    """Verify an armored SSHSIG over `payload` in the "git" namespace, or an armored
    OpenPGP signature with `keyring` (`openpgp.check`). Never raises.

    Public for the other signed objects git makes with the same namespace
    (tags, push certificates), whose payload is split differently, and for the
    service's checkpoints, SSHSIGs in a namespace of their own (`namespace`),
    which no OpenPGP signature stands for.
    """
    if armor.lstrip().startswith(_OPENPGP_ARMORS):
        if namespace != NAMESPACE:
            return SignatureCheck("bad", None, "openpgp", "an OpenPGP signature has no namespace")
        verdict = openpgp.check(payload, armor, keyring)
        return SignatureCheck(verdict.status, verdict.fingerprint, "openpgp", verdict.reason)
    try:
        return _check(payload, armor, namespace)
    except _Refused as refusal:
        return SignatureCheck(refusal.status, None, refusal.key_type, refusal.reason)
    except Exception as error:  # see _fail_closed
        return _fail_closed(error)


def _fail_closed(error: Exception) -> SignatureCheck:
    # Only a bug reaches here; the tests feed arbitrary bytes and assert it never
    # does. Should one slip through, a pushed object must still get a verdict
    # that grants nothing rather than stop the reconciler.
    return SignatureCheck(
        "bad", None, None, f"internal error while checking the signature ({type(error).__name__})"
    )


class _Refused(Exception):
    """A verdict other than "good", carried from deep in the parse to `check_signature`."""

    def __init__(self, status: Status, reason: str, key_type: str | None = None) -> None:
        super().__init__(reason)
        self.status: Status = status
        self.reason = reason
        self.key_type = key_type


class _SshSig(Struct, frozen=True):
    public_key: bytes
    namespace: bytes
    hash_algorithm: bytes
    signature: bytes


def _check(payload: bytes, armor: bytes, namespace: bytes = NAMESPACE) -> SignatureCheck:
    sshsig = _parse_sshsig(_dearmor(armor))
    if sshsig.namespace != namespace:
        raise _Refused("bad", f"namespace is {_shown(sshsig.namespace)}, not {_shown(namespace)}")
    message_hash = _MESSAGE_HASHES.get(sshsig.hash_algorithm)
    if message_hash is None:
        raise _Refused(
            "unsupported",
            f"hash algorithm {_shown(sshsig.hash_algorithm)} is not sha256 or sha512",
        )
    key = _load_key(sshsig.public_key)
    key_fingerprint = fingerprint(sshsig.public_key)
    signed = _signed_data(sshsig.hash_algorithm, message_hash(payload), namespace)
    try:
        key.verify(sshsig.signature, signed)
    except _Refused as refusal:
        raise _Refused(
            refusal.status, f"{refusal.reason} ({key.type} key {key_fingerprint})", key.type
        ) from None
    return SignatureCheck(
        "good", key_fingerprint, key.type, f"good signature by {key.type} key {key_fingerprint}"
    )


def _object_format(raw: bytes) -> ObjectFormat:
    # A SHA-256 repository names the tree with 64 hex digits, a SHA-1 one with 40.
    return "sha256" if _SHA256_TREE_LINE.match(raw) else "sha1"


def _dearmor(armor: bytes) -> bytes:
    """The SSHSIG blob inside the armor, which must be exactly as ssh-keygen writes it."""
    start = armor.find(_BEGIN_LINE)
    if start < 0 or armor[:start].strip():
        for prefix, reason in _OTHER_ARMORS.items():
            if armor.lstrip().startswith(prefix):
                raise _Refused("unsupported", reason)
        raise _Refused("bad", "the signature is not an SSH signature (no BEGIN SSH SIGNATURE line)")
    body = start + len(_BEGIN_LINE)
    end = armor.find(_END_LINE, body)
    if end < 0:
        raise _Refused("bad", "the SSH signature has no END SSH SIGNATURE line")
    try:
        blob = base64.b64decode(b"".join(armor[body:end].split()), validate=True)
    except (binascii.Error, ValueError):
        raise _Refused("bad", "the SSH signature is not valid base64") from None
    # ssh-keygen reads through any wrapping, whitespace or CR, and past what follows
    # END (a second signature header, concatenated): each variant would be another
    # commit id over the same signed payload.
    if armor != _armored(blob):
        if armor[end + len(_END_LINE) :].strip():
            raise _Refused("malformed", "text follows the SSH signature's END line")
        raise _Refused(
            "malformed",
            f"the SSH signature is not armored as ssh-keygen writes it "
            f"(lines of {_ARMOR_WIDTH} base64 characters, nothing else)",
        )
    return blob


def _armored(blob: bytes) -> bytes:
    """`blob` armored as ssh-keygen armors a signature (sshsig_armor), the one canonical form."""
    encoded = base64.b64encode(blob)
    lines = [
        encoded[start : start + _ARMOR_WIDTH] for start in range(0, len(encoded), _ARMOR_WIDTH)
    ]
    return _BEGIN_LINE + b"\n" + b"".join(line + b"\n" for line in lines) + _END_LINE + b"\n"


def _parse_sshsig(blob: bytes) -> _SshSig:
    if not blob.startswith(_MAGIC):
        raise _Refused("bad", "the signature does not start with the SSHSIG magic")
    reader = _Reader(blob, "the SSHSIG blob", len(_MAGIC))
    version = reader.uint32()
    if version != 1:
        raise _Refused("unsupported", f"SSHSIG version {version} is not supported (only 1)")
    public_key = reader.string()
    namespace = reader.string()
    reserved = reader.string()
    hash_algorithm = reader.string()
    signature = reader.string()
    reader.finish()
    # OpenSSH verifies as if it were empty, whatever it holds; a non-empty one is
    # no signature OpenSSH ever made.
    if reserved:
        raise _Refused("unsupported", "the SSHSIG reserved field is not empty")
    return _SshSig(public_key, namespace, hash_algorithm, signature)


def _signed_data(hash_algorithm: bytes, digest: bytes, namespace: bytes = NAMESPACE) -> bytes:
    """What OpenSSH's sshsig_wrap_sign signs for a message with this digest."""
    return _MAGIC + _string(namespace) + _string(b"") + _string(hash_algorithm) + _string(digest)


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _shown(value: bytes, limit: int = 40) -> str:
    """Attacker-written bytes, quoted, escaped and cut short for a reason text."""
    text = repr(value[:limit].decode("utf-8", "replace"))
    return text + "…" if len(value) > limit else text


class _Reader:
    """A cursor over SSH wire data; every shortfall is a "bad" verdict naming `what`."""

    __slots__ = ("_data", "_offset", "_what")

    def __init__(self, data: bytes, what: str, offset: int = 0) -> None:
        self._data = data
        self._what = what
        self._offset = offset

    def string(self) -> bytes:
        return self._read(read_string)

    def uint32(self) -> int:
        return self._read(read_uint32)

    def mpint(self) -> int:
        return self._read(read_mpint)

    def byte(self) -> int:
        if self._offset >= len(self._data):
            raise _Refused("bad", f"{self._what} is malformed: truncated SSH data")
        self._offset += 1
        return self._data[self._offset - 1]

    def finish(self) -> None:
        if self._offset != len(self._data):
            raise _Refused("bad", f"{self._what} has trailing data")

    def _read(self, read: Callable[[bytes, int], tuple[_T, int]]) -> _T:
        try:
            value, self._offset = read(self._data, self._offset)
        except KeyFormatError as error:
            raise _Refused("bad", f"{self._what} is malformed: {error}") from None
        return value


# Keys ----------------------------------------------------------------------


class _Key(Protocol):
    @property
    def type(self) -> str: ...

    def verify(self, signature: bytes, data: bytes) -> None:
        """Return if `signature` (an SSH signature blob) signs `data`, else raise _Refused."""


@lru_cache(maxsize=1024)
def _load_key(blob: bytes) -> _Key:
    # Cached: a history has few signers, and building an RSA key costs more
    # than verifying with it.
    reader = _Reader(blob, "the signing key")
    key_type = reader.string()
    loader = _KEY_LOADERS.get(key_type)
    if loader is None:
        raise _Refused("unsupported", _unsupported_key_reason(key_type))
    name = key_type.decode("ascii")
    try:
        return loader(name, reader)
    except _Refused as refusal:
        raise _Refused(refusal.status, refusal.reason, name) from None
    except ValueError:
        raise _Refused("bad", f"the {name} key is not a valid public key", name) from None


def _unsupported_key_reason(key_type: bytes) -> str:
    if key_type == b"ssh-dss":
        return "DSA keys are not accepted"
    if key_type.endswith(b"-cert-v01@openssh.com"):
        return "signatures by SSH certificates are not supported; sign with a plain key"
    return f"key type {_shown(key_type)} is not supported"


def _verified(check: Callable[[], None]) -> None:
    """Run an OpenSSL verification; a mismatch is a bad signature."""
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - see TYPE_CHECKING

    try:
        check()
    except InvalidSignature:
        raise _Refused("bad", "signature does not match the commit") from None


def _openssl_key(build: Callable[[], _T]) -> _T:
    """An OpenSSL key object; one OpenSSL cannot load is an invalid key (ValueError)."""
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415 - see TYPE_CHECKING

    try:
        return build()
    except UnsupportedAlgorithm as error:
        raise ValueError(str(error)) from None


def _signature_reader(signature: bytes, key_type: str, expected: bytes) -> _Reader:
    reader = _Reader(signature, f"the {key_type} signature")
    signature_type = reader.string()
    if signature_type != expected:
        raise _Refused(
            "bad", f"signature type {_shown(signature_type)} does not fit a {key_type} key"
        )
    return reader


def _ecdsa_der(blob: bytes, key_type: str) -> bytes:
    reader = _Reader(blob, f"the {key_type} signature")
    r = reader.mpint()
    s = reader.mpint()
    reader.finish()
    from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: PLC0415
        encode_dss_signature,
    )

    return encode_dss_signature(r, s)


def _sk_signed_data(application: bytes, flags: int, counter: int, data: bytes) -> bytes:
    """What a FIDO authenticator signs: its authenticatorData, then the client data hash."""
    return (
        hashlib.sha256(application).digest()
        + bytes([flags])
        + counter.to_bytes(4, "big")
        + hashlib.sha256(data).digest()
    )


def _require_user_presence(flags: int) -> None:
    # ssh-keygen refuses these too unless allowed-signers says no-touch-required,
    # an option this reconciler does not offer.
    if not flags & _SK_USER_PRESENT:
        raise _Refused("bad", "the security key signed without user presence (no touch)")


class _Ed25519(Struct, frozen=True):
    """A plain Ed25519 key, the common case: verified by libsodium (PyNaCl), which
    takes 54 µs a signature where OpenSSL through `cryptography` took 135 µs."""

    key: bytes  # the 32-byte public key
    type: str = "ssh-ed25519"

    def verify(self, signature: bytes, data: bytes) -> None:
        reader = _signature_reader(signature, self.type, b"ssh-ed25519")
        raw = _ed25519_signature(reader, self.type)
        reader.finish()
        sign_open, bad_signature = _libsodium()
        try:
            sign_open(raw + data, self.key)
        except bad_signature:
            raise _Refused("bad", "signature does not match the commit") from None


@cache
def _libsodium() -> tuple[Callable[[bytes, bytes], bytes], type[Exception]]:
    """PyNaCl's Ed25519 check and its error, imported at the first signature checked: a
    command that checks none (`plan`, a `verify` with nothing new) never loads libsodium."""
    from nacl.bindings import crypto_sign_open  # noqa: PLC0415
    from nacl.exceptions import BadSignatureError  # noqa: PLC0415

    return crypto_sign_open, BadSignatureError


class _Ecdsa(Struct, frozen=True):
    key: ec.EllipticCurvePublicKey
    hash: hashes.HashAlgorithm
    type: str

    def verify(self, signature: bytes, data: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

        reader = _signature_reader(signature, self.type, self.type.encode("ascii"))
        der = _ecdsa_der(reader.string(), self.type)
        reader.finish()
        _verified(lambda: self.key.verify(der, data, ec.ECDSA(self.hash)))


class _Rsa(Struct, frozen=True):
    key: rsa.RSAPublicKey
    type: str = "ssh-rsa"

    def verify(self, signature: bytes, data: bytes) -> None:
        reader = _Reader(signature, "the ssh-rsa signature")
        signature_type = reader.string()
        if signature_type == b"ssh-rsa":
            raise _Refused(
                "unsupported",
                "the RSA signature uses SHA-1 (ssh-rsa); only rsa-sha2-256 and rsa-sha2-512 "
                "are accepted",
            )
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import padding  # noqa: PLC0415

        hash_name = _RSA_HASHES.get(signature_type)
        if hash_name is None:
            raise _Refused(
                "bad", f"signature type {_shown(signature_type)} does not fit an ssh-rsa key"
            )
        raw = reader.string()
        reader.finish()
        size = (self.key.key_size + 7) // 8
        if len(raw) > size:
            raise _Refused("bad", "the ssh-rsa signature is longer than the key's modulus")
        # OpenSSH left-pads short signatures the same way (ssh-rsa.c).
        padded = raw.rjust(size, b"\0")
        algorithm = getattr(hashes, hash_name)()
        _verified(lambda: self.key.verify(padded, data, padding.PKCS1v15(), algorithm))


class _SkEd25519(Struct, frozen=True):
    key: ed25519.Ed25519PublicKey
    application: bytes
    type: str = "sk-ssh-ed25519@openssh.com"

    def verify(self, signature: bytes, data: bytes) -> None:
        reader = _signature_reader(signature, self.type, b"sk-ssh-ed25519@openssh.com")
        raw = _ed25519_signature(reader, self.type)
        flags = reader.byte()
        counter = reader.uint32()
        reader.finish()
        signed = _sk_signed_data(self.application, flags, counter, data)
        _verified(lambda: self.key.verify(raw, signed))
        _require_user_presence(flags)


class _SkEcdsa(Struct, frozen=True):
    key: ec.EllipticCurvePublicKey
    application: bytes
    type: str = "sk-ecdsa-sha2-nistp256@openssh.com"

    def verify(self, signature: bytes, data: bytes) -> None:
        reader = _Reader(signature, f"the {self.type} signature")
        signature_type = reader.string()
        if signature_type == b"webauthn-sk-ecdsa-sha2-nistp256@openssh.com":
            raise _Refused("unsupported", "WebAuthn security-key signatures are not supported")
        if signature_type != self.type.encode("ascii"):
            raise _Refused(
                "bad", f"signature type {_shown(signature_type)} does not fit a {self.type} key"
            )
        der = _ecdsa_der(reader.string(), self.type)
        flags = reader.byte()
        counter = reader.uint32()
        reader.finish()
        signed = _sk_signed_data(self.application, flags, counter, data)
        from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

        _verified(lambda: self.key.verify(der, signed, ec.ECDSA(hashes.SHA256())))
        _require_user_presence(flags)


def _ed25519_signature(reader: _Reader, key_type: str) -> bytes:
    raw = reader.string()
    if len(raw) != _ED25519_SIGNATURE:
        raise _Refused("bad", f"the {key_type} signature is not {_ED25519_SIGNATURE} bytes")
    return raw


def _ed25519_bytes(reader: _Reader, key_type: str) -> bytes:
    raw = reader.string()
    if len(raw) != _ED25519_KEY:
        raise _Refused("bad", f"the {key_type} key is not {_ED25519_KEY} bytes")
    return raw


# SSH key type -> (curve name inside the blob, curve, signature hash), by class name
_CURVES: Final = {
    "ecdsa-sha2-nistp256": (b"nistp256", "SECP256R1", "SHA256"),
    "ecdsa-sha2-nistp384": (b"nistp384", "SECP384R1", "SHA384"),
    "ecdsa-sha2-nistp521": (b"nistp521", "SECP521R1", "SHA512"),
    "sk-ecdsa-sha2-nistp256@openssh.com": (b"nistp256", "SECP256R1", "SHA256"),
}


def _curve(key_type: str) -> tuple[bytes, ec.EllipticCurve, hashes.HashAlgorithm]:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    curve_name, curve, hash_name = _CURVES[key_type]
    return curve_name, getattr(ec, curve)(), getattr(hashes, hash_name)()


def _ecdsa_point(reader: _Reader, key_type: str) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    curve_name, curve, _ = _curve(key_type)
    if reader.string() != curve_name:
        raise _Refused("bad", f"the {key_type} key names another curve")
    point = reader.string()
    # Only the uncompressed form: OpenSSH re-encodes a compressed point before
    # fingerprinting it, so its fingerprint would not be that of this blob.
    if point[:1] != b"\x04" or len(point) != 1 + 2 * ((curve.key_size + 7) // 8):
        raise _Refused("bad", f"the {key_type} key is not an uncompressed curve point")
    return _openssl_key(lambda: ec.EllipticCurvePublicKey.from_encoded_point(curve, point))


def _load_ed25519(key_type: str, reader: _Reader) -> _Key:
    key = _ed25519_bytes(reader, key_type)
    reader.finish()
    return _Ed25519(key)


def _load_ecdsa(key_type: str, reader: _Reader) -> _Key:
    key = _ecdsa_point(reader, key_type)
    reader.finish()
    return _Ecdsa(key, _curve(key_type)[2], key_type)


def _load_rsa(key_type: str, reader: _Reader) -> _Key:
    exponent = reader.mpint()
    modulus = reader.mpint()
    reader.finish()
    bits = modulus.bit_length()
    if bits < _RSA_MIN_BITS:
        raise _Refused(
            "unsupported", f"the {bits}-bit RSA key is too short (at least {_RSA_MIN_BITS})"
        )
    if bits > _RSA_MAX_BITS:
        raise _Refused(
            "unsupported", f"the {bits}-bit RSA key is too long (at most {_RSA_MAX_BITS})"
        )
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    return _Rsa(_openssl_key(lambda: rsa.RSAPublicNumbers(exponent, modulus).public_key()))


def _load_sk_ed25519(key_type: str, reader: _Reader) -> _Key:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    raw = _ed25519_bytes(reader, key_type)
    application = reader.string()
    reader.finish()
    return _SkEd25519(
        _openssl_key(lambda: ed25519.Ed25519PublicKey.from_public_bytes(raw)), application
    )


def _load_sk_ecdsa(key_type: str, reader: _Reader) -> _Key:
    key = _ecdsa_point(reader, key_type)
    application = reader.string()
    reader.finish()
    return _SkEcdsa(key, application)


_KEY_LOADERS: dict[bytes, Callable[[str, _Reader], _Key]] = {
    b"ssh-ed25519": _load_ed25519,
    b"ecdsa-sha2-nistp256": _load_ecdsa,
    b"ecdsa-sha2-nistp384": _load_ecdsa,
    b"ecdsa-sha2-nistp521": _load_ecdsa,
    b"ssh-rsa": _load_rsa,
    b"sk-ssh-ed25519@openssh.com": _load_sk_ed25519,
    b"sk-ecdsa-sha2-nistp256@openssh.com": _load_sk_ecdsa,
}
