"""Core, shared: text from outside (paths, emails, driver output) made safe to show on one line.

Called by the command line's text output, by the watcher's text log lines,
and by `record` for the run logs and record commits it writes. A file name,
a committer email or a driver's output line can hold terminal escape
sequences (which recolour, hide or rewrite what an operator reads), carriage
returns (which overwrite a line) and line breaks (which forge a line of
their own, a log entry or a workflow command). `printable` writes every such
character as a visible escape, the way Python's `repr` does; everything else,
tabs included, is left as it is.
"""

from __future__ import annotations

import re
from typing import Final

# C0 controls but the tab, DEL and C1 controls; line and paragraph separators, and the
# bidirectional controls (text shown in another order than it is read: "Trojan Source");
# lone surrogates (the bytes of a file name that is not UTF-8, decoded with surrogateescape).
_UNSAFE: Final = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED: Final = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    code = ord(character)
    if character in _NAMED:
        return _NAMED[character]
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape could not decode: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control, line-breaking and bidi character escaped (`\\x1b`, `\\n`)."""
    # Nearly every text is printable ASCII, which holds none of `_UNSAFE`: two scans in C
    # answer for it (`history` shows 23,000 texts).
    if text.isascii() and text.isprintable():
        return text
    return _UNSAFE.sub(_escape, text)
