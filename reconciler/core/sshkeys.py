"""Stage 3, authorise: OpenSSH public keys as teams.yaml lists them, parsed and fingerprinted.

Pure functions, used by `config` (to index keys by fingerprint), by
`validate` (to refuse keys that do not decode), by `actions` (the user's own
signing key) and by `signatures` (which reads SSHSIG blobs with the
wire-format readers below). A key `parse_public_key` returns is well formed,
so a malformed key in teams.yaml identifies nobody, wherever it is read. A
fingerprint is what `ssh-keygen -l` and git's `%GK` print: `SHA256:` and the
unpadded base64 of the SHA-256 of the key blob.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from typing import Final

from msgspec import Struct


class PublicKey(Struct, frozen=True):
    type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


class KeyFormatError(ValueError):
    """A key line that is not a well-formed OpenSSH public key."""


def fingerprint(blob: bytes) -> str:
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def parse_public_key(line: str) -> PublicKey:
    """Parse 'type base64 [comment]' into a well-formed key, else raise `KeyFormatError`.

    The type inside the blob must match the prefix, and the blob must hold
    exactly the fields of its type (`_check_key_blob`).
    """
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise KeyFormatError("expected 'type base64-key [comment]'")
    key_type, encoded = parts[0], parts[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("the key is not valid base64") from None
    inner_type = read_string(blob, 0)[0]
    if inner_type != key_type.encode("ascii", "replace"):
        raise KeyFormatError(
            f"the key says '{key_type}' but encodes '{inner_type.decode('ascii', 'replace')}'"
        )
    key = PublicKey(key_type, blob, parts[2] if len(parts) > 2 else "")
    _check_key_blob(key)
    return key


# The fields an OpenSSH certificate holds after its type and nonce, before its
# serial: those of the key it certifies (PROTOCOL.certkeys).
_CERT_SUFFIX: Final = "-cert-v01@openssh.com"
_CERTIFIED_FIELDS: Final = {
    "ssh-ed25519": 1,
    "sk-ssh-ed25519@openssh.com": 2,
    "ssh-rsa": 2,
    "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,
    "ssh-dss": 4,
}


def certified_key(key: PublicKey) -> PublicKey:
    """The plain key an OpenSSH certificate certifies; any other key as it is.

    What `ssh-keygen` compares a revoked key with when it ignores certificate
    data, as it does for git's `gpg.ssh.revocationFile`.
    """
    if not key.type.endswith(_CERT_SUFFIX):
        return key
    base = key.type.removesuffix(_CERT_SUFFIX)
    plain = f"{base}@openssh.com" if base.startswith("sk-") else base
    count = _CERTIFIED_FIELDS.get(plain)
    if count is None:
        raise KeyFormatError(f"a certificate of an unknown key type '{key.type}'")
    offset = read_string(key.blob, read_string(key.blob, 0)[1])[1]  # type, nonce
    start = offset
    for _ in range(count):
        offset = read_string(key.blob, offset)[1]
    encoded = plain.encode("ascii")
    blob = struct.pack(">I", len(encoded)) + encoded + key.blob[start:offset]
    certified = PublicKey(plain, blob, key.comment)
    _check_key_blob(certified)
    return certified


# Sizes fixed by RFC 8709 (Ed25519) and RFC 5656 (uncompressed ECDSA points).
_ED25519_BYTES: Final = 32
_ECDSA_POINT_BYTES: Final = {"nistp256": 65, "nistp384": 97, "nistp521": 133}
_ECDSA_TYPES: Final = frozenset(
    {
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


def _check_key_blob(key: PublicKey) -> None:
    """Refuse a key blob whose fields after the type are missing, short or trailed by more.

    Without it 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5' (the type and no key) would
    decode and identify nobody. Only the key types a signature can be
    verified with (those teams.yaml's schema allows) are known here; a key of
    another type is left as it is, and `signatures` refuses its signatures as
    unsupported.
    """
    blob = key.blob
    offset = read_string(blob, 0)[1]
    kind = key.type
    if kind in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        point, offset = read_string(blob, offset)
        if len(point) != _ED25519_BYTES:
            raise KeyFormatError(f"an Ed25519 key is 32 bytes, this one is {len(point)}")
    elif kind == "ssh-rsa":
        for _ in ("exponent", "modulus"):
            number, offset = read_string(blob, offset)
            if not number.strip(b"\x00"):
                raise KeyFormatError("the RSA key's numbers are missing")
    elif kind in _ECDSA_TYPES:
        curve = kind.removeprefix("sk-").removeprefix("ecdsa-sha2-").removesuffix("@openssh.com")
        named, offset = read_string(blob, offset)
        if named != curve.encode("ascii"):
            raise KeyFormatError(f"the key says curve '{curve}' but encodes another")
        point, offset = read_string(blob, offset)
        if len(point) != _ECDSA_POINT_BYTES[curve] or not point.startswith(b"\x04"):
            raise KeyFormatError(f"the key's point is not a {curve} point")
    else:
        return
    if kind.startswith("sk-"):
        offset = read_string(blob, offset)[1]  # the FIDO application, usually 'ssh:'
    if offset != len(blob):
        raise KeyFormatError("unexpected bytes after the key")


def read_string(data: bytes, offset: int) -> tuple[bytes, int]:
    """The SSH wire-format string (uint32 length, bytes) at `offset`, and the offset after it."""
    if offset + 4 > len(data):
        raise KeyFormatError("truncated SSH data")
    (length,) = struct.unpack_from(">I", data, offset)
    start = offset + 4
    end = start + length
    if end > len(data):
        raise KeyFormatError("truncated SSH data")
    return data[start:end], end


def read_uint32(data: bytes, offset: int) -> tuple[int, int]:
    """The big-endian uint32 at `offset`, and the offset after it."""
    if offset + 4 > len(data):
        raise KeyFormatError("truncated SSH data")
    return int.from_bytes(data[offset : offset + 4], "big"), offset + 4


def read_mpint(data: bytes, offset: int) -> tuple[int, int]:
    """The non-negative SSH mpint at `offset`, and the offset after it.

    Only the minimal encoding OpenSSH writes is accepted: OpenSSH would read a
    padded integer and re-encode it minimally, so a padded key blob would
    fingerprint differently here than in `ssh-keygen -l` and git's `%GK`.
    """
    raw, end = read_string(data, offset)
    if raw and raw[0] & 0x80:
        raise KeyFormatError("negative SSH integer")
    if raw[:1] == b"\x00" and (len(raw) == 1 or not raw[1] & 0x80):
        raise KeyFormatError("SSH integer with a needless leading zero byte")
    return int.from_bytes(raw, "big"), end
