"""OpenSSH public keys as teams.yaml lists them: parsing and fingerprints.

Pure functions, used by `config` (to index keys by fingerprint), by
`validate` (to refuse keys that do not decode) and by `signatures` (which
reads SSHSIG blobs with the wire-format readers below). A fingerprint is what
`ssh-keygen -l` and git's `%GK` print: `SHA256:` and the unpadded base64 of
the SHA-256 of the key blob.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PublicKey:
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
    """Parse 'type base64 [comment]'; the type inside the blob must match the prefix."""
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
    return PublicKey(key_type, blob, parts[2] if len(parts) > 2 else "")


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
