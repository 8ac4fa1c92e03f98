"""Throwaway OpenPGP keys made by gpg itself, and commits git signs with them.

    keys = GpgKeys.create(directory)        # once per session: RSA 4096 takes seconds
    keys.signing(keys.ed25519)              # -c options: git signs with it (gpg.format openpgp)
    keys.env                                # GNUPGHOME for those git commands
    keys.verifier([...])                    # a GNUPGHOME that knows only these certificates
    keys.close()                            # no gpg-agent left behind

Every key lives in one temporary GNUPGHOME made here (never the user's), without
a passphrase (`%no-protection`). Times are counted from SUITE_NOW, never from a
calendar date: the expired key is made and used by a gpg that believes it is 30
days earlier (`--faked-system-time`), through a gpg.program wrapper.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from tests.clock import SUITE_NOW

# The expired key's life, as its gpg believes it: made 30 days before the suite started,
# valid for one day, used an hour after it was made.
EXPIRED_MADE = SUITE_NOW - timedelta(days=30)
EXPIRED_USED = EXPIRED_MADE + timedelta(hours=1)


def gpg_time(when: datetime) -> str:
    """`when` as --faked-system-time takes it ('!' freezes the clock there)."""
    return when.strftime("%Y%m%dT%H%M%S") + "!"


@dataclass(frozen=True)
class GpgKey:
    name: str
    fingerprint: str  # the primary key's
    signs_with: str  # the key gpg signs with: a subkey, where the certificate has one
    public: str  # the armored certificate, as teams.yaml lists it
    faked_time: str | None = None  # the time gpg must believe to sign with it
    revocation: str | None = None  # its revocation certificate, importable


@dataclass
class GpgKeys:
    home: Path
    wrapper: Path  # gpg.program: gpg, at the time $FAKED_TIME names when it is set
    by_name: dict[str, GpgKey] = field(default_factory=dict)
    homes: list[Path] = field(default_factory=list)  # every GNUPGHOME made, for close()
    _revoked: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path) -> GpgKeys:
        home = _short_home()
        wrapper = directory / "gpg-at"
        wrapper.write_text(
            '#!/bin/sh\nexec gpg ${FAKED_TIME:+--faked-system-time "$FAKED_TIME"} "$@"\n'
        )
        wrapper.chmod(0o755)
        keys = cls(home, wrapper, homes=[home])
        try:
            keys._generate()
        except BaseException:
            keys.close()
            raise
        return keys

    def _generate(self) -> None:
        # GitHub's web-flow key is RSA 4096, signing with its primary key.
        self._make("rsa4096", "GitHub", "noreply@github.com", "Key-Type: RSA\nKey-Length: 4096")
        self._make("ed25519", "Erin Ed", "erin@example.com", _ED25519)
        # A Gitea instance's signing key (tests/hostshapes.py).
        self._make("gitea", "Gitea", "gitea@gitea.example.com", _ED25519)
        # gpg's own default layout: a certify-only primary key and a signing subkey.
        subkey = "Key-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: cert\n"
        subkey += "Subkey-Type: EDDSA\nSubkey-Curve: ed25519\nSubkey-Usage: sign"
        self._make("subkey", "Sam Sub", "sam@example.com", subkey)
        self._make(
            "expired", "Eve Expired", "eve@example.com", _ED25519, "1d", gpg_time(EXPIRED_MADE)
        )
        self._make("revoked", "Rex Revoked", "rex@example.com", _ED25519)
        self._make("unlisted", "Mallory", "mallory@example.com", _ED25519)
        # Self-signatures over SHA-1, as gpg made them years ago: Sequoia accepts none.
        self._make(
            "sha1", "Old Key", "old@example.com", _ED25519, options=("--cert-digest-algo", "SHA1")
        )

    def _make(
        self,
        name: str,
        real: str,
        email: str,
        kind: str,
        expires: str = "0",
        faked_time: str | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        parameters = (
            f"%no-protection\n{kind}\nName-Real: {real}\nName-Email: {email}\n"
            f"Expire-Date: {expires}\n%commit\n"
        )
        self.gpg(*options, "--batch", "--gen-key", data=parameters, faked_time=faked_time)
        listing = self.gpg("--with-colons", "--list-keys", f"<{email}>")
        fingerprints = [line.split(":")[9] for line in listing.splitlines() if line[:4] == "fpr:"]
        usages = [
            line.split(":")[11] for line in listing.splitlines() if line[:4] in ("pub:", "sub:")
        ]
        signs_with = next(
            fpr for fpr, usage in zip(fingerprints, usages, strict=True) if "s" in usage
        )
        revocation = (self.home / "openpgp-revocs.d" / f"{fingerprints[0]}.rev").read_text()
        self.by_name[name] = GpgKey(
            name,
            fingerprints[0],
            signs_with,
            self.gpg("--armor", "--export-options", "export-minimal", "--export", fingerprints[0]),
            faked_time,
            # gpg writes it with a ':' before the armor so that it is not imported by mistake.
            revocation.replace(
                ":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK"
            ),
        )

    def __getitem__(self, name: str) -> GpgKey:
        return self.by_name[name]

    def gpg(
        self,
        *args: str,
        data: str | None = None,
        home: Path | None = None,
        faked_time: str | None = None,
    ) -> str:
        argv = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
        if faked_time:
            argv += ["--faked-system-time", faked_time]
        completed = subprocess.run(
            [*argv, *args],
            input=data,
            capture_output=True,
            text=True,
            env={**os.environ, "GNUPGHOME": str(home or self.home)},
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        return completed.stdout

    @property
    def env(self) -> dict[str, str]:
        """The environment of a git command that signs with these keys."""
        return {"GNUPGHOME": str(self.home)}

    def signing(self, key: GpgKey) -> tuple[list[str], dict[str, str]]:
        """The -c options and environment with which git signs as `key` (gpg.format openpgp,
        the key named by its primary fingerprint: gpg picks its signing subkey)."""
        config = ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={key.fingerprint}"]
        config += ["-c", f"gpg.program={self.wrapper}"]
        env = {**self.env, **({"FAKED_TIME": key.faked_time} if key.faked_time else {})}
        return config, env

    def revoked_public(self, key: GpgKey) -> str:
        """`key`'s certificate with its revocation in it, as its owner would publish it
        (exported from a GNUPGHOME of its own: this one keeps signing with it)."""
        if key.name not in self._revoked:
            home = self.verifier([key.public])
            self.gpg("--import", data=key.revocation, home=home)
            export = ("--armor", "--export-options", "export-minimal", "--export")
            self._revoked[key.name] = self.gpg(*export, key.fingerprint, home=home)
        return self._revoked[key.name]

    def verifier(self, certificates: Iterable[str]) -> Path:
        """A GNUPGHOME that knows `certificates` (armored) and nothing else: what git
        verify-commit judges with, as the reconciler judges with teams.yaml."""
        home = _short_home()
        self.homes.append(home)
        for certificate in certificates:
            self.gpg("--import", data=certificate, home=home)
        return home

    def close(self) -> None:
        """Stop every gpg-agent (and dirmngr) the homes started."""
        for home in self.homes:
            subprocess.run(
                ["gpgconf", "--kill", "all"],
                env={**os.environ, "GNUPGHOME": str(home)},
                capture_output=True,
                check=False,
            )
            shutil.rmtree(home, ignore_errors=True)


def _short_home() -> Path:
    """A new GNUPGHOME with a short path: without /run/user/<uid>, gpg-agent puts its
    socket in the home, and a socket path may not exceed 107 bytes (pytest's folders
    under -n 4, a few hundred runs in, come close)."""
    return Path(tempfile.mkdtemp(prefix="gnupg-"))


_ED25519 = "Key-Type: EDDSA\nKey-Curve: ed25519"


def git_verifies(repo: Path, commit: str, home: Path, env: Mapping[str, str] | None = None) -> bool:
    """Whether `git verify-commit` (gpg, with the certificates `home` holds) accepts it."""
    completed = subprocess.run(
        ["git", "-c", "gpg.format=openpgp", "verify-commit", commit],
        cwd=repo,
        capture_output=True,
        env={**os.environ, **(env or {}), "GNUPGHOME": str(home)},
        check=False,
    )
    if completed.returncode != 0:
        # Shown with a failing test's captured output: gpg says why (a bad signature, or
        # an agent or keyring lock timing out under load, which one full run once met).
        print(f"git verify-commit {commit} exited {completed.returncode}:")
        print(completed.stderr.decode("utf-8", "replace"))
    return completed.returncode == 0
