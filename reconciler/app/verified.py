"""App: what a walk of the branch found (`VerifyResult`), as `verify` reports it.

Apart from the walker (`authorise`), which makes it: a `verify` with nothing
new since the last run answers from the state alone (`Session.verify`), and
loads neither the walker nor what it judges with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from msgspec import Struct

from reconciler.core.fields import describe_field

if TYPE_CHECKING:
    from reconciler.app.checkpoints import Continued
    from reconciler.core.journal import IgnoredTrailer
    from reconciler.core.verdicts import LandingVerdict, Refusal


class VerifyResult(Struct, frozen=True):
    anchor: str
    tip: str
    judged: tuple[LandingVerdict, ...]  # landings judged by this pass, oldest first
    differs: Mapping[str, tuple[str, ...]]  # path -> fields where main is not effective
    ignored: tuple[IgnoredTrailer, ...] = ()  # trailers this pass found counting for nothing
    continued: Continued | None = None  # the checkpoint a fresh state went on from
    # How many landings this pass judged: `judged` holds their verdicts only where the
    # caller asked to keep them (`Authoriser.keep_verdicts`).
    count: int = 0

    @property
    def authorised(self) -> bool:
        return all(verdict.authorised for verdict in self.judged)


def differs(dirty: Mapping[str, Mapping[str, Refusal | None]]) -> dict[str, tuple[str, ...]]:
    """Where main's content is not the effective state: path -> the fields, described."""
    return {
        path: tuple(describe_field(key) for key in sorted(detail)) for path, detail in dirty.items()
    }
