"""Stage 3, authorise: keys revoked outside Git (git's `gpg.ssh.revocationFile`), as values.

`revocation_file` reads the file for `session` and `reconcile` before they walk
history. Retiring a key from teams.yaml takes a signed commit that must land, and in an incident
whoever holds the stolen key races that commit. The revocation file lives on
the reconciler's machine, beyond the reach of anyone who can push: from the
moment it is read, a signature by a key it lists proves nothing, whatever the
commit's dates and whatever teams.yaml says (landings judged before keep their
verdicts, as with any policy). It is the file `git verify-commit` honours, in
the form both read: one public key a line, as in authorized_keys. OpenSSH's
binary KRL is refused with a hint rather than read as no revocations at all.
"""

from __future__ import annotations

import re
from typing import Final

from msgspec import Struct

from reconciler.core.errors import ConfigError
from reconciler.core.sshkeys import KeyFormatError, certified_key, parse_public_key

SETTING: Final = "gpg.ssh.revocationFile"
_KRL_MAGIC: Final = b"SSHKRL\n"
HINT: Final = "one revoked public key a line, as in authorized_keys ('ssh-ed25519 AAAA... who')"


class Revocations(Struct, frozen=True):
    """The fingerprints of the keys the revocation file lists."""

    fingerprints: frozenset[str]

    def why(self, fingerprint: str) -> str | None:
        """Why a signature by `fingerprint` proves nothing, or None when it is not revoked."""
        if fingerprint in self.fingerprints:
            # Not the file's path: reasons reach record commits on the shared branch,
            # and where a machine keeps its revocations is nobody else's business.
            return f"key {fingerprint} is revoked ({SETTING})"
        return None


def screened(
    status: str, fingerprint: str | None, reason: str, revoked: Revocations | None
) -> tuple[str, str | None, str]:
    """A signature check as the rules see it: a good signature by a revoked key is
    `revoked`, with no fingerprint to map to anyone, and says why."""
    why = revoked.why(fingerprint) if revoked is not None and fingerprint else None
    return ("revoked", None, why) if why is not None else (status, fingerprint, reason)


def parse(data: bytes, source: str) -> frozenset[str]:
    """The fingerprints of the keys a revocation file lists."""
    if data.startswith(_KRL_MAGIC):
        raise ConfigError(
            "an OpenSSH KRL, which the reconciler does not read", file=source, hint=HINT
        )
    revoked: set[str] = set()
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        options = _options_before_key(line)
        if options is not None:
            raise ConfigError(
                f"options before the key, as in authorized_keys, are not read ('{options}')",
                file=source,
                line=number,
                hint="list the key alone: ssh-ed25519 AAAA... (git verify-commit refuses the "
                "line too)",
            )
        try:
            # A certificate revokes the key it certifies, as ssh-keygen reads the file.
            revoked.add(certified_key(parse_public_key(line)).fingerprint)
        except KeyFormatError as error:
            raise ConfigError(
                f"not a public key: {error}", file=source, line=number, hint=HINT
            ) from None
    return frozenset(revoked)


# A key's type and the start of its base64 (every key blob begins with a length
# under 2**24: 'AAAA'), after something else: authorized_keys' options.
_KEY_AFTER_OPTIONS: Final = re.compile(r"\s((?:ssh|ecdsa|sk)-[\w.@-]+)\s+AAAA")


def _options_before_key(line: str) -> str | None:
    """The options an authorized_keys line puts before its key, or None."""
    if line.startswith(("ssh-", "ecdsa-", "sk-")):
        return None
    found = _KEY_AFTER_OPTIONS.search(line)
    return line[: found.start()].strip() if found else None
