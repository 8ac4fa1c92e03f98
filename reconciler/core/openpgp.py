"""Stage 3, authorise: OpenPGP certificates (teams.yaml's) and commit signatures, via Sequoia.

Role: `config` maps every usable key of a listed certificate to its identity
(`certificates`, `unusable`); `validate` refuses an entry that is not one
(`certificates` raises `CertificateError`); `signatures` hands a `gpgsig`
armored as an OpenPGP signature to `check`, with the `Keyring` of the
certificates the walk's policies listed. `git verify-commit` would run gpg once
a commit, against whatever keyring the machine holds; Sequoia (pysequoia)
verifies in about 0.1 ms, against exactly the certificates teams.yaml lists.

Pure: no subprocess, no git, no files. A crafted signature or certificate
yields a verdict or a `CertificateError`, never another exception.

What counts, as git with gpg counts it (tests/test_openpgp.py holds the two
side by side on real commits):

- A signature by the primary key, or by a signing subkey bound to it (gpg's
  own key layout signs with a subkey). The verdict names the key that signed,
  git's %GK; `config` maps that key to whoever lists its certificate.
- Sequoia judges the key as it was when the signature says it was made: bound,
  allowed to sign, alive, not revoked (a revocation for a compromised key, or
  one without a reason, voids every signature). On top, a certificate or subkey
  that is revoked, or expired at the time the reconciler judges, identifies
  nobody (`unusable`): gpg calls a signature by an expired key 'Y' and git
  refuses it, and the creation time is the signer's word, so a thief cannot
  keep an expired key alive by back-dating.
- Signatures over anything but the commit as binary data (text-mode, or any
  signature type git never makes), SHA-1 and MD5 digests, and certificates
  Sequoia's standard policy refuses (SHA-1 self-signatures, short RSA keys)
  prove nothing, though gpg may still call some good.

OpenPGP writers armor differently (gpg's old-format packet headers and
checksum line, Sequoia without a checksum, Go's library with new-format
headers), so unlike SSH there is no one armor to demand: an armor is
"malformed" only where git and gpg would read past something (a carriage
return, text after the END line, a second signature packet). Any other
variant is another commit id over the same signed payload, which the walk
counts once (see `signatures`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, Literal

from msgspec import Struct
from msgspec.structs import replace

# Sequoia loads with the first certificate or signature read (1.5 ms of every command's
# start otherwise): a command whose policy lists no OpenPGP key, and that checks no
# OpenPGP signature, never loads it. Each function that reads one imports it.
if TYPE_CHECKING:
    import pysequoia

KEY_BEGIN: Final = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
KEY_END: Final = "-----END PGP PUBLIC KEY BLOCK-----"
SIGNATURE_BEGIN: Final = b"-----BEGIN PGP SIGNATURE-----"
MESSAGE_BEGIN: Final = b"-----BEGIN PGP MESSAGE-----"
_SIGNATURE_END: Final = b"-----END PGP SIGNATURE-----"
_ARMOR_LINE_MAX: Final = 76  # RFC 9580, 6.2: armored lines are at most 76 characters
HINT: Final = (
    "paste the whole output of `gpg --armor --export-options export-minimal --export "
    "FINGERPRINT` as a block scalar: '- |' with the key indented below it"
)


class CertificateError(ValueError):
    """A teams.yaml key entry that is not one or more OpenPGP public certificates."""


class Key(Struct, frozen=True):
    """One key of a certificate: the primary key or a subkey."""

    fingerprint: str  # upper-case hex, as gpg prints it
    key_id: str  # upper-case hex, the 64 bits an older signature names its key by
    expires: datetime | None  # a subkey's own expiry (the primary's is the certificate's)
    revoked: bool  # a subkey's own revocation (the primary's is the certificate's)


class Certificate(Struct, frozen=True):
    """An OpenPGP certificate (a public key, its subkeys and their signatures)."""

    fingerprint: str  # the primary key's: the certificate's name
    keys: tuple[Key, ...]  # the primary key first, then the subkeys
    revoked: bool
    expires: datetime | None
    data: bytes  # the certificate as Sequoia reads it, for the keyring


def is_certificate(entry: str) -> bool:
    """Whether a teams.yaml key entry is meant as an OpenPGP certificate (else SSH)."""
    return entry.lstrip().startswith("-----BEGIN PGP")


@lru_cache(maxsize=4096)  # teams.yaml's entries, parsed at every policy built from them
def certificates(entry: str) -> tuple[Certificate, ...]:
    """The certificates of one teams.yaml key entry: one ASCII-armored public key
    block, as `gpg --armor --export` writes it (one may hold several certificates).

    Raises `CertificateError` for anything else: another armor, secret key
    material, a block Sequoia cannot read, or a certificate its standard policy
    refuses (then its keys could never verify a signature).
    """
    text = entry.strip()
    if not text.startswith(KEY_BEGIN) or not text.endswith(KEY_END):
        raise CertificateError(f"not one armored block from '{KEY_BEGIN}' to '{KEY_END}'")
    if text.count(KEY_BEGIN) > 1:
        raise CertificateError("more than one armored block: give each its own entry")
    import pysequoia  # noqa: PLC0415 - see the note at the imports
    from pysequoia.packet import PacketPile, Tag  # noqa: PLC0415

    try:
        packets = list(PacketPile.from_bytes(text.encode("utf-8")))
    except Exception as error:  # Sequoia's parse errors are plain exceptions
        raise CertificateError(
            f"the armored block does not decode ({_first_line(error)})"
        ) from None
    if any(packet.tag in (Tag.SecretKey, Tag.SecretSubkey) for packet in packets):
        raise CertificateError(
            "it holds secret key material: never paste a private key, only the public one"
        )
    try:
        certs = pysequoia.Cert.split_bytes(text.encode("utf-8"))
    except Exception as error:
        raise CertificateError(f"not an OpenPGP certificate ({_first_line(error)})") from None
    if not certs:
        raise CertificateError("the armored block holds no certificate")
    return tuple(_certificate(cert) for cert in certs)


def _certificate(cert: pysequoia.Cert) -> Certificate:
    fingerprint = cert.fingerprint.upper()
    try:
        # Both read the certificate through Sequoia's standard policy, which must
        # accept one of its self-signatures for any key of it to verify anything.
        expires, revoked = cert.expiration, cert.is_revoked
    except Exception as error:
        raise CertificateError(
            f"Sequoia's standard policy accepts none of the self-signatures of {fingerprint} "
            f"({_first_line(error)}); renew them, e.g. `gpg --quick-set-expire {fingerprint} 2y`"
        ) from None
    data = bytes(cert)
    return Certificate(fingerprint, _keys(data), revoked, expires, data)


def _keys(data: bytes) -> tuple[Key, ...]:
    """The primary key and subkeys, each subkey with the expiry of its newest binding
    and whether a revocation of it is listed.

    Read from the packets as teams.yaml lists them, signatures unchecked: they
    only ever take a key away (a subkey's expiry, its revocation), and whoever
    may change teams.yaml may list any key anyway. Whether a subkey is bound at
    all, and may sign, Sequoia checks with each signature. The primary key's
    expiry and revocation are the certificate's, which Sequoia reads.
    """
    from pysequoia.packet import PacketPile, SignatureType, Tag  # noqa: PLC0415 - as above

    keys: list[Key] = []
    created: datetime | None = None
    bound: datetime | None = None  # when the newest binding of the subkey at hand was made
    for packet in PacketPile.from_bytes(data):
        if packet.tag in (Tag.PublicKey, Tag.PublicSubkey):
            keys.append(
                Key((packet.fingerprint or "").upper(), (packet.key_id or "").upper(), None, False)
            )
            created, bound = packet.key_created, None
        elif packet.tag == Tag.Signature and len(keys) > 1:
            kind, key = packet.signature_type, keys[-1]
            if kind == SignatureType.SubkeyRevocation:
                keys[-1] = replace(key, revoked=True)
            elif kind == SignatureType.SubkeyBinding:
                made = packet.signature_created
                if made is not None and (bound is None or made >= bound):
                    bound = made
                    period = packet.key_validity_period
                    expires = created + period if period and created else None
                    keys[-1] = replace(key, expires=expires)
    return tuple(keys)


def unusable(certificate: Certificate, now: datetime | None) -> dict[str, str]:
    """The keys of `certificate` that identify nobody, each with why: every key of a
    revoked certificate, or of one expired at `now` (the time of judging); a subkey
    revoked or expired on its own. With `now` None, expiry is not judged."""
    name = f"OpenPGP certificate {certificate.fingerprint}"
    whole: str | None = None
    if certificate.revoked:
        whole = f"{name} is revoked"
    elif now is not None and certificate.expires is not None and certificate.expires <= now:
        whole = f"{name} expired on {_day(certificate.expires)}"
    found: dict[str, str] = {}
    for key in certificate.keys:
        if whole is not None:
            found[key.fingerprint] = whole
        elif key.revoked:
            found[key.fingerprint] = f"subkey {key.fingerprint} of {name} is revoked"
        elif now is not None and key.expires is not None and key.expires <= now:
            found[key.fingerprint] = (
                f"subkey {key.fingerprint} of {name} expired on {_day(key.expires)}"
            )
    return found


def expires_next(certificate: Certificate, now: datetime) -> datetime | None:
    """The first moment after `now` at which `unusable` finds one more key of `certificate`
    expired, or None: until then, its answer at `now` holds."""
    if certificate.revoked:
        return None
    expiries = [key.expires for key in certificate.keys if not key.revoked]
    moments = [when for when in (certificate.expires, *expiries) if when is not None and when > now]
    return min(moments, default=None)


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _first_line(error: Exception) -> str:
    # Sequoia's messages may carry a Rust backtrace (RUST_BACKTRACE) after the first line.
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# The keyring -------------------------------------------------------------------


class Keyring:
    """The certificates the policies met so far list, each one merged over the versions
    seen (a revocation, once listed, stays), found by the fingerprint or key id of any
    of their keys. `generation` grows with every certificate added, so a signature that
    found no certificate is tried again only when there may be one."""

    def __init__(self) -> None:
        self._certs: dict[str, pysequoia.Cert] = {}
        self._versions: set[bytes] = set()
        self._handles: dict[str, set[str]] = {}  # lower-case fingerprint or key id -> primaries
        self.generation = 0

    def add(self, entries: Iterable[str]) -> None:
        """Add the certificates of teams.yaml key entries; SSH keys and entries that are
        no certificate (validate reports them) are passed over."""
        for entry in entries:
            if not is_certificate(entry):
                continue
            try:
                found = certificates(entry)
            except CertificateError:
                continue
            for certificate in found:
                self._add(certificate)

    def _add(self, certificate: Certificate) -> None:
        if certificate.data in self._versions:
            return
        self._versions.add(certificate.data)
        import pysequoia  # noqa: PLC0415 - see the note at the imports

        cert = pysequoia.Cert.from_bytes(certificate.data)
        known = self._certs.get(certificate.fingerprint)
        self._certs[certificate.fingerprint] = cert if known is None else known.merge(cert)
        for key in certificate.keys:
            for handle in (key.fingerprint, key.key_id):
                self._handles.setdefault(handle.lower(), set()).add(certificate.fingerprint)
        self.generation += 1

    def holds(self, handle: str) -> bool:
        return handle.lower() in self._handles

    def shared(self, fingerprints: Iterable[str]) -> dict[str, str]:
        """Those of `fingerprints` that more than one certificate lists, each with why it
        identifies nobody. A certificate lists its subkeys unchecked (`_keys`), so one
        pasted with another's subkey appended (a flooded keyserver's copy) lists a key
        Sequoia binds only to that other certificate: whose key it is, is not known."""
        found: dict[str, str] = {}
        for fingerprint in fingerprints:
            primaries = sorted(self._handles.get(fingerprint.lower(), ()))
            if len(primaries) > 1:
                found[fingerprint] = (
                    f"OpenPGP key {fingerprint} is listed in the certificates "
                    f"{', '.join(primaries)}, so whose key it is is not known"
                )
        return found

    def lookup(self, handles: Iterable[str]) -> list[pysequoia.Cert]:
        """The certificates holding any of `handles` (what Sequoia asks for)."""
        primaries = sorted({p for handle in handles for p in self._handles.get(handle.lower(), ())})
        return [self._certs[primary] for primary in primaries]

    def certificate(self, handle: str) -> pysequoia.Cert | None:
        found = self.lookup([handle])
        return found[0] if found else None


# Signatures --------------------------------------------------------------------

# "unverified": no certificate at hand holds the key, a verdict that waits for one.
Status = Literal["good", "bad", "unverified", "unsupported", "malformed"]


class Verdict(Struct, frozen=True):
    """What an OpenPGP signature proves; `fingerprint` (the signing key's) only when good."""

    status: Status
    fingerprint: str | None
    reason: str


class _Refused(Exception):
    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status: Status = status
        self.reason = reason


def check(payload: bytes, armor: bytes, keyring: Keyring | None) -> Verdict:
    """Verify an armored OpenPGP signature over `payload` with the certificate of
    `keyring` that holds its key. Raises for no signature, only for a Sequoia that does
    not load (a broken install): a verdict is kept, and none is Sequoia's to give then.

    "unverified" when no certificate at hand holds the key: a verdict that waits
    for a policy listing one, never to be remembered as final.
    """
    # Loaded here, outside the net below: an ImportError is no verdict on the signature.
    import pysequoia  # noqa: PLC0415 - see the note at the imports
    import pysequoia.packet  # noqa: PLC0415, F401

    try:
        return _check(payload, armor, keyring)
    except _Refused as refusal:
        return Verdict(refusal.status, None, refusal.reason)
    except Exception as error:  # only a bug: a pushed object still gets a verdict
        return Verdict(
            "bad", None, f"internal error while checking the signature ({type(error).__name__})"
        )


def _check(payload: bytes, armor: bytes, keyring: Keyring | None) -> Verdict:
    if armor.startswith(MESSAGE_BEGIN):
        raise _Refused("unsupported", "an OpenPGP message, not the detached signature git makes")
    signature = _signature(_dearmor(armor))
    issuer = (signature.issuer_fingerprint or signature.issuer_key_id or "").upper()
    if not issuer:
        raise _Refused("bad", "the OpenPGP signature names no key")
    if keyring is None or not keyring.holds(issuer):
        return Verdict(
            "unverified", None, f"signed with OpenPGP key {issuer}, which teams.yaml does not list"
        )
    import pysequoia  # noqa: PLC0415 - see the note at the imports

    try:
        result = pysequoia.verify(bytes=payload, store=keyring.lookup, signature=signature)
    except Exception:  # Sequoia found no valid signature; why, it does not say
        raise _Refused("bad", _why_not(signature, issuer, keyring)) from None
    valid: Any = result.valid_sigs[0]
    signer, primary = str(valid.signing_key).upper(), str(valid.certificate).upper()
    whose = "" if signer == primary else f", a subkey of {primary}"
    return Verdict("good", signer, f"good OpenPGP signature by key {signer}{whose}")


def _signature(binary: bytes) -> pysequoia.Sig:
    import pysequoia  # noqa: PLC0415 - see the note at the imports
    from pysequoia.packet import HashAlgorithm, PacketPile, SignatureType, Tag  # noqa: PLC0415

    try:
        packets = list(PacketPile.from_bytes(binary))
    except Exception as error:
        raise _Refused(
            "bad", f"the OpenPGP signature does not parse ({_first_line(error)})"
        ) from None
    if len(packets) != 1 or packets[0].tag != Tag.Signature:
        kinds = ", ".join(str(packet.tag).removeprefix("Tag.") for packet in packets)
        raise _Refused(
            "malformed", f"the OpenPGP armor holds {kinds}, where git writes one signature"
        )
    signature = pysequoia.Sig.from_bytes(binary)
    if signature.signature_type != SignatureType.Binary:
        kind = str(signature.signature_type).removeprefix("SignatureType.")
        raise _Refused(
            "unsupported", f"a {kind} signature, where git signs the commit as binary data"
        )
    # Sequoia's enums are not hashable: pairs, compared with ==.
    weak_hashes = ((HashAlgorithm.SHA1, "SHA-1"), (HashAlgorithm.MD5, "MD5"))
    weak = next(
        (name for algorithm, name in weak_hashes if algorithm == signature.hash_algorithm), None
    )
    if weak is not None:
        raise _Refused("unsupported", f"the OpenPGP signature uses {weak}, which is not accepted")
    return signature


def _why_not(signature: pysequoia.Sig, issuer: str, keyring: Keyring) -> str:
    cert = keyring.certificate(issuer)
    name = f"certificate {cert.fingerprint.upper()}" if cert is not None else f"key {issuer}"
    created = signature.created
    try:
        if cert is not None and cert.is_revoked:
            return f"OpenPGP {name} is revoked"
        expires = cert.expiration if cert is not None else None
    except Exception:  # no self-signature Sequoia accepts: say only that it failed
        expires = None
    if expires is not None and created is not None and expires <= created:
        return f"OpenPGP {name} had expired when the signature says it was made"
    return (
        f"the OpenPGP signature does not verify with {name} (the commit was changed, or "
        "the key could not sign at the time the signature names)"
    )


def _dearmor(armor: bytes) -> bytes:
    """The binary signature inside an OpenPGP armor (RFC 9580, 6.2), read strictly enough
    that nothing git or gpg would skip can hide in it: gpg reads past much of the
    framing (an END line with more on it, say), so any framing but the RFC's is
    "malformed", as is data that is not strict base64 (gpg skips characters it cannot
    decode, so a changed byte there may leave its signature good); data that decodes
    but fails its checksum is "bad", as gpg calls it."""
    if b"\r" in armor:
        raise _Refused("malformed", "the OpenPGP armor holds a carriage return")
    lines = armor.split(b"\n")
    if lines[-1] != b"":
        raise _Refused("malformed", "the OpenPGP armor does not end with a line break")
    lines.pop()
    if _SIGNATURE_END not in lines:
        raise _Refused("malformed", "the OpenPGP armor has no END PGP SIGNATURE line")
    end = lines.index(_SIGNATURE_END)
    if end != len(lines) - 1:
        raise _Refused("malformed", "text follows the OpenPGP signature's END line")
    if lines[0] != SIGNATURE_BEGIN:
        raise _Refused("malformed", "text precedes the OpenPGP signature's BEGIN line")
    if b"" not in lines[1:end]:
        raise _Refused("malformed", "the OpenPGP armor has no blank line before its data")
    blank = lines.index(b"", 1)
    if any(b": " not in header for header in lines[1:blank]):
        raise _Refused("malformed", "the OpenPGP armor's headers are not 'Name: value' lines")
    body = lines[blank + 1 : end]
    checksum = body.pop() if body and body[-1].startswith(b"=") else None
    if not body or any(
        not line or len(line) > _ARMOR_LINE_MAX or line.strip() != line for line in body
    ):
        raise _Refused(
            "malformed",
            f"the OpenPGP armor's data is not lines of at most {_ARMOR_LINE_MAX} characters",
        )
    try:
        binary = base64.b64decode(b"".join(body), validate=True)
        crc = base64.b64decode(checksum[1:], validate=True) if checksum is not None else None
    except (binascii.Error, ValueError):
        raise _Refused("malformed", "the OpenPGP signature is not strict base64") from None
    if crc is not None and crc != _crc24(binary):
        raise _Refused("bad", "the OpenPGP armor's checksum does not match its data")
    return binary


def _crc24_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
        table.append(crc & 0xFFFFFF)
    return tuple(table)


_CRC24: Final = _crc24_table()


def _crc24(data: bytes) -> bytes:
    """The armor checksum of RFC 9580, 6.1 (gpg refuses a signature whose checksum is
    wrong; Sequoia ignores it, as the RFC now asks)."""
    crc = 0xB704CE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ _CRC24[((crc >> 16) ^ byte) & 0xFF]
    return crc.to_bytes(3, "big")
