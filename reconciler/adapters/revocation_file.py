"""Adapter, files: the revocation file git is configured with (`gpg.ssh.revocationFile`).

Read once per walk, so a key revoked during an incident takes effect at the next
pass; `revocation` parses it and says what a revoked key's signature is worth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from reconciler.adapters.gitrepo import GitRepo
from reconciler.core.errors import ConfigError
from reconciler.core.revocation import HINT, SETTING, Revocations, parse

# About 200,000 keys (an Ed25519 key line is some 80 bytes), parsed at every pass.
MAX_BYTES: Final = 16 * 1024 * 1024


def configured(repo: GitRepo) -> Revocations | None:
    """The revocations git is configured with for `repo`, or None when there are none.

    A file that is configured but cannot be read stops the command: silently
    trusting every key would be the wrong way to fail.
    """
    setting = repo.config_path(SETTING)
    if setting is None:
        return None
    path = Path(setting)
    if not path.is_absolute():
        raise ConfigError(
            f"{SETTING} is '{setting}', a relative path",
            hint="give it an absolute path, outside the repository",
        )
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)  # never more: /dev/zero does not end
    except OSError as error:
        raise ConfigError(
            f"cannot read the revocation file: {error.strerror}",
            file=str(path),
            hint=f"create it, or unset {SETTING}",
        ) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"the revocation file is larger than {MAX_BYTES:,} bytes",
            file=str(path),
            hint=f"{SETTING} names the wrong file? It holds {HINT}",
        )
    return Revocations(parse(data, str(path)))
