"""Adapter, files: record commits signed in-process (stage 6), as `git commit -S` would.

Called by `record`. Git signs a commit by running `ssh-keygen -Y sign` on the
commit object and storing the armored SSHSIG in a `gpgsig` header; that costs
a process and about 12 ms per commit. Here the same bytes are produced with
`cryptography`, and `signatures.check_commit_signature` (and `git
verify-commit`, in the tests) accept them.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from msgspec import Struct

from reconciler.core.errors import ConfigError
from reconciler.core.sshkeys import PublicKey, parse_public_key

_NAMESPACE = b"git"
_HASH = b"sha512"
_CURVES = {
    "secp256r1": (b"nistp256", hashes.SHA256()),
    "secp384r1": (b"nistp384", hashes.SHA384()),
    "secp521r1": (b"nistp521", hashes.SHA512()),
}


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _mpint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return _string(raw)


class SigningKey(Struct, frozen=True):
    """An OpenSSH private key and its public half."""

    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    public: PublicKey

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            loaded = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise ConfigError(
                f"cannot read the reconciler's signing key {path}: {error}",
                hint="pass --key with an unencrypted OpenSSH private key (ssh-keygen -t ed25519)",
            ) from None
        if not isinstance(
            loaded, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        ):
            raise ConfigError(f"{path}: only ed25519, ecdsa and rsa keys can sign records")
        line = loaded.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return cls(loaded, parse_public_key(line.decode("ascii")))

    def _signature_blob(self, data: bytes) -> bytes:
        key = self.private
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return _string(b"ssh-ed25519") + _string(key.sign(data))
        if isinstance(key, ec.EllipticCurvePrivateKey):
            curve, digest = _CURVES[key.curve.name]
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
            return _string(b"ecdsa-sha2-" + curve) + _string(_mpint(r) + _mpint(s))
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA512())
        return _string(b"rsa-sha2-512") + _string(signature)

    def sshsig(self, message: bytes, namespace: bytes = _NAMESPACE) -> bytes:
        """The armored SSHSIG of `message` in `namespace` (default: git's, for commits)."""
        return self.sshsig_of_digest(hashlib.sha512(message).digest(), namespace)

    def sshsig_of_digest(self, digest: bytes, namespace: bytes = _NAMESPACE) -> bytes:
        """`sshsig` of the message whose SHA-512 is `digest`: SSHSIG signs the message's
        hash, so a file too large to hold is signed from the hash made as it was written."""
        signed = b"SSHSIG" + _string(namespace) + _string(b"") + _string(_HASH) + _string(digest)
        blob = (
            b"SSHSIG"
            + struct.pack(">I", 1)
            + _string(self.public.blob)
            + _string(namespace)
            + _string(b"")
            + _string(_HASH)
            + _string(self._signature_blob(signed))
        )
        encoded = base64.b64encode(blob).decode("ascii")
        lines = [encoded[index : index + 70] for index in range(0, len(encoded), 70)]
        return (
            "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----\n"
        ).encode()


def new_key_pair(path: Path, comment: str) -> str:
    """A new ed25519 key: the private half at `path` (0600), the public at `path.pub`.

    For the demo's throwaway people and `init`'s service account; the public
    line (`ssh-ed25519 AAAA... comment`) is returned for teams.yaml.
    """
    private = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = f"{public.decode()} {comment}"
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


def signed_commit(payload: bytes, key: SigningKey) -> bytes:
    """Insert a `gpgsig` header after the committer line, exactly where git puts it."""
    head, separator, message = payload.partition(b"\n\n")
    armor = key.sshsig(payload).rstrip(b"\n").split(b"\n")
    header = b"gpgsig " + armor[0] + b"".join(b"\n " + line for line in armor[1:])
    return head + b"\n" + header + separator + message
