"""Stage 2, validate: the findings the cross-file rules collect, and the names they suggest."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core.documents import Document, JsonPath
from reconciler.core.model import Finding


class Findings:
    """Collects cross-file findings positioned in one document."""

    def __init__(self) -> None:
        self.items: list[Finding] = []

    def at(
        self,
        document: Document,
        path: JsonPath,
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        severity: str = "error",
    ) -> None:
        where = document.key_position(path) if key else document.position(path)
        self.items.append(
            Finding(document.path, where.line, where.column, message, hint, severity)  # type: ignore[arg-type]
        )


def suggest(name: str, known: Iterable[str], what: str) -> str:
    import difflib  # noqa: PLC0415 - only with a finding to explain (start-up time)

    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"add it to {what} first, or fix the name"
