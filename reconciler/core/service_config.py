"""Core, shared: the service's configuration file (`watch --config FILE`), TOML to settings.

Called by the CLI, which hands it the file's bytes and the kind of value each
of the command's options takes. One key per option, spelled as the flag
without its dashes (`state-dir = "/var/lib/reconciler"`), so a new option is a
new key with no change here. Anything else is refused with the file, the line
and the fix: an unknown key, a value of the wrong type, a table. Tables are
kept for what flags cannot say (notification targets, Argo CD tokens); none
is read yet. Relative paths are taken from the file's folder, not from
wherever the service happens to start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from msgspec import Struct

from reconciler.core.errors import UsageError

# What an option takes: text, a number (int or float), an integer, true/false, a
# path, or names (a list of strings or one comma-separated string).
Kind = Literal["text", "number", "integer", "flag", "path", "names"]

_WANTED: Mapping[Kind, str] = {
    "text": 'a string, e.g. "value"',
    "number": "a number, e.g. 30 or 0.5",
    "integer": "a whole number, e.g. 3",
    "flag": "true or false",
    "path": 'a path in a string, e.g. "/etc/reconciler/key"',
    "names": 'a list of strings, e.g. ["development", "production"]',
}

# tomllib puts the position in its message on Python 3.11 to 3.13 (3.14 adds attributes).
_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


class Setting(Struct, frozen=True):
    """One key of the file: its value, made what the option takes, and the line it is on."""

    key: str
    value: Any
    line: int | None


def parse_service_config(data: bytes, file: Path, kinds: Mapping[str, Kind]) -> tuple[Setting, ...]:
    """The settings `data` (the bytes of `file`) holds, one per key, each checked against
    `kinds` (key -> what its option takes)."""
    import tomllib  # noqa: PLC0415 - only `watch --config` reads TOML (start-up time)

    name = str(file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"the configuration file is not UTF-8 (byte {error.start})",
            file=name,
            hint="save it as UTF-8 text",
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line, column = _position(error)
        raise UsageError(
            f"the configuration file is not valid TOML: {_POSITION.sub('', str(error)).strip()}",
            file=name,
            line=line,
            column=column,
            hint='write one setting a line, e.g. state-dir = "/var/lib/reconciler"',
        ) from None
    settings = []
    for key, value in document.items():
        line = _line_of(text, key)
        kind = kinds.get(key)
        if kind is None:
            raise _unknown(key, value, kinds, name, line)
        settings.append(Setting(key, _checked(key, value, kind, file, line), line))
    return tuple(settings)


def _position(error: Exception) -> tuple[int | None, int | None]:
    line, column = getattr(error, "lineno", None), getattr(error, "colno", None)
    if isinstance(line, int):
        return line, column if isinstance(column, int) else None
    found = _POSITION.search(str(error))
    return (int(found[1]), int(found[2])) if found else (None, None)


def _unknown(
    key: str, value: Any, kinds: Mapping[str, Kind], file: str, line: int | None
) -> UsageError:
    import difflib  # noqa: PLC0415 - only for a typo (start-up time)

    close = difflib.get_close_matches(key.replace("_", "-"), list(kinds), n=1)
    if close:
        hint = f"did you mean '{close[0]}'? (the keys are watch's options without their dashes)"
    else:
        hint = "the keys are watch's options without their dashes: " + ", ".join(sorted(kinds))
    what = "table" if isinstance(value, dict) else "key"
    if what == "table" and not close:
        # Kept for what a flag cannot say: notification targets, Argo CD tokens.
        hint = "this version reads no tables; every setting is a key before the first [table]"
    return UsageError(
        f"unknown {what} '{key}' in the configuration file", file=file, line=line, hint=hint
    )


def _checked(key: str, value: Any, kind: Kind, file: Path, line: int | None) -> Any:
    """`value` as the option takes it, or the error that says what it should be."""
    if kind == "names" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if kind in ("text", "path", "names") and isinstance(value, str):
        if kind == "path" and value:
            # A path the service reads is found where the file that names it is.
            return file.parent / Path(value).expanduser()
        return value
    # bool is an int in Python, and `interval = true` is a mistake, not 1 second.
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "flag" and isinstance(value, bool):
        return value
    raise UsageError(
        f"'{key}' must be {_WANTED[kind].split(',')[0]}, not {_toml_type(value)}",
        file=str(file),
        line=line,
        hint=f"write {key} = {_WANTED[kind].split('e.g. ', 1)[1]}",
    )


def _toml_type(value: Any) -> str:
    # bool before int: True is an int in Python.
    names: tuple[tuple[type, str], ...] = (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
    )
    return next((name for kind, name in names if isinstance(value, kind)), "a date or time")


def _line_of(text: str, key: str) -> int | None:
    """The line where the top-level `key` is set or opens a table; None when not found.

    tomllib keeps no positions, so the text is searched: a key before the first
    table header, or a header naming it (`[key]`, `[key.sub]`, `[[key]]`).
    """
    quoted = re.escape(key)
    name = rf"(?:{quoted}|\"{quoted}\"|'{quoted}')"
    assignment = re.compile(rf"^\s*{name}\s*[.=]")
    header = re.compile(rf"^\s*\[\[?\s*{name}\s*[.\]]")
    in_root = True
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("["):
            in_root = False
            if header.match(line):
                return number
        elif in_root and assignment.match(line):
            return number
    return None
