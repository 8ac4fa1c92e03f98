"""App: which checkpoints a walk with a fresh state may go on from, as the command says.

Apart from `checkpoints` (which reads, checks and publishes them, with the
signature libraries): every command that reads a branch says which
checkpoints it trusts before it knows whether it has anything to walk, and
one with nothing new never loads what checking a checkpoint takes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from msgspec import Struct

from reconciler.core.errors import ConfigError
from reconciler.core.sshkeys import KeyFormatError, parse_public_key


def _quiet(_: str) -> None:
    """No one to tell."""


class CheckpointTrust(Struct, frozen=True):
    """Which checkpoints a walk with a fresh state may go on from.

    `pinned`: the fingerprints of the keys `--checkpoint-key` names; None: the
    service accounts' keys of the trust anchor's policy. `warn` hears why each
    checkpoint passed over was. `lazy`: a walk whose state is not kept (a
    pull-request check's) loads a checkpoint's sections as it asks for them.
    """

    branch: str  # the branch as the service names it (a remote's, without the remote)
    pinned: frozenset[str] | None = None
    warn: Callable[[str], None] = _quiet
    lazy: bool = False

    @property
    def names_anchor(self) -> bool:
        """Whether a checkpoint names the trust anchor, so a fresh walk on the branch need not
        search the history for its root first: only one a pinned key signed
        (`checkpoints._anchor_refusal` says when its anchor is taken)."""
        return self.pinned is not None


def checkpoint_branch(ref: str) -> str:
    """The branch a checkpoint names for a followed ref: a remote's branch by its name
    there, as the service that publishes it names it."""
    if ref.startswith("refs/remotes/"):
        return ref.removeprefix("refs/remotes/").partition("/")[2]
    return ref.removeprefix("refs/heads/")


def pinned_keys(paths: Sequence[Path]) -> frozenset[str] | None:
    """The fingerprints of the public keys in the files `--checkpoint-key` names, one key
    a line (`ssh-ed25519 AAAA... comment`, as `.pub` files hold it); None when none is
    named (the trust anchor's service keys are trusted)."""
    if not paths:
        return None
    found: set[str] = set()
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(
                f"cannot read the checkpoint key {path}: {error}",
                hint="pass --checkpoint-key with the service's public key file (its .pub)",
            ) from None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                found.add(parse_public_key(line.strip()).fingerprint)
            except KeyFormatError as error:
                raise ConfigError(
                    f"not an SSH public key: {error}",
                    file=str(path),
                    line=number,
                    hint="one public key a line, as ssh-keygen writes it in the .pub file",
                ) from None
    if not found:  # pinning nothing must not fall back to trusting the anchor's keys
        raise ConfigError(
            f"the checkpoint keys {', '.join(map(str, paths))} hold no public key",
            hint="pass --checkpoint-key with the service's public key file (its .pub)",
        )
    return frozenset(found)
