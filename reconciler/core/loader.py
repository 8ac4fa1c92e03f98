"""Stage 1, load: YAML bytes in, plain JSON-compatible data with positions out.

Called by `validate` for the working tree and by `authorise` for committed
blobs. It trusts nothing about its input and refuses, each with its own
message, what PyYAML would otherwise accept or choke on:

- more than `MAX_FILE_BYTES`, or bytes that are not UTF-8;
- anchors and aliases (a 338-byte alias bomb takes python-jsonschema minutes,
  and `&x [*x]` is a cycle), custom tags and merge keys;
- nesting deeper than `MAX_DEPTH`, checked on the event stream *before* any
  node exists (libyaml's composer segfaults at ~30,000 levels);
- duplicate keys (PyYAML keeps the last one silently), including keys that
  collide once resolved (`1` and `true`), and keys that are not strings;
- more than one document in a file.

It composes the data itself from libyaml's events (C parser when present), so
depth, anchors and duplicates are checked in the same pass that builds the
values and records where each one stands. Plain scalars resolve as YAML 1.1
does, except timestamps, which stay strings: JSON has no dates. A plain
scalar that YAML 1.2's core schema, which editors read (yaml-language-server),
resolves to another value or type is refused (`yes`, `1_000`, `10:30`, `1e3`,
`0o17`, `010`): the file would not mean what its author sees.

Loading is most of `reconciler validate`'s time (docs/performance.md), so
the composing loop is written for speed; the comments there say what each
choice saves, and `tests/test_loader.py` holds it to libyaml's own composer.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.parser import Parser as _PyParser
from yaml.reader import Reader as _Reader
from yaml.scanner import Scanner as _Scanner

from reconciler.core.documents import MAX_FILE_BYTES, Document, JsonPath, Where
from reconciler.core.errors import ConfigError


class _PureParser(_Reader, _Scanner, _PyParser):
    """PyYAML's pure-Python parser, with the C parser's `dispose`."""

    def __init__(self, stream: bytes) -> None:
        _Reader.__init__(self, stream)
        _Scanner.__init__(self)
        _PyParser.__init__(self)

    def dispose(self) -> None:
        pass


_Parser: Any
try:
    from yaml._yaml import CParser as _Parser

    WITH_LIBYAML = True
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _Parser = _PureParser
    WITH_LIBYAML = False

MAX_DEPTH: Final = 20

_STR: Final = "tag:yaml.org,2002:str"
_ALLOWED_TAGS: Final = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
) | {"!"}


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1 plain-scalar resolution without timestamps (JSON has no dates)."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_RESOLVER: Final = _Resolver()
_CONSTRUCTOR: Final = SafeConstructor()
_CONSTRUCT = {
    "tag:yaml.org,2002:int": _CONSTRUCTOR.construct_yaml_int,
    "tag:yaml.org,2002:float": _CONSTRUCTOR.construct_yaml_float,
    "tag:yaml.org,2002:bool": _CONSTRUCTOR.construct_yaml_bool,
    "tag:yaml.org,2002:null": _CONSTRUCTOR.construct_yaml_null,
}
# Characters YAML does not allow (C0 and C1 controls but tab and line breaks,
# surrogates, U+FFFE/U+FFFF) and the line breaks of `_HIDDEN_LINE_BREAKS`
# (NEL U+0085 is a C1 control). Written as the refused set rather than the
# complement of the allowed one, which takes ten times as long to compile at
# every start-up (7 ms); both match exactly the same code points.
_NON_PRINTABLE: Final = re.compile(
    r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\u2028\u2029\uD800-\uDFFF\uFFFE\uFFFF]"
)


def load(raw: bytes, path: str) -> Document:
    """Load one YAML file; raise `ConfigError` naming the line for anything refused."""
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"file is larger than the limit of {MAX_FILE_BYTES:,} bytes",
            file=path,
            line=1,
            column=1,
            hint="configuration files are small; split it or remove what does not belong",
        )
    _check_utf8(raw, path)
    return _Composer(raw, path).compose()


_BYTE_ORDER_MARKS: Final = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
# Line breaks that YAML counts but editors do not show as new lines: with them
# in a file, every line number after them would point at the wrong line.
_HIDDEN_LINE_BREAKS: Final = {
    "\x85": "NEL",
    "\u2028": "LINE SEPARATOR",
    "\u2029": "PARAGRAPH SEPARATOR",
}


def _check_utf8(raw: bytes, path: str) -> None:
    for mark, encoding in _BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            raise ConfigError(
                f"not UTF-8: the file is {encoding} (it starts with a {encoding} byte order mark)",
                file=path,
                line=1,
                column=1,
                hint="save the file as UTF-8",
            )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_column(raw[: exc.start].decode("utf-8", "replace"))
        raise ConfigError(
            f"not UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded",
            file=path,
            line=line,
            column=column,
            hint="save the file as UTF-8",
        ) from None
    bad = _NON_PRINTABLE.search(text)
    if bad:
        line, column = _line_column(text[: bad.start()])
        character = bad.group()
        if character in _HIDDEN_LINE_BREAKS:
            raise ConfigError(
                f"line break character U+{ord(character):04X} "
                f"({_HIDDEN_LINE_BREAKS[character]}) is not allowed",
                file=path,
                line=line,
                column=column,
                hint="YAML counts it as a new line but editors do not; "
                "replace it with a plain new line or a space",
            )
        raise ConfigError(
            f"control character U+{ord(character):04X} is not allowed in YAML",
            file=path,
            line=line,
            column=column,
            hint="a NUL byte: the file may be UTF-16; save it as UTF-8"
            if character == "\x00"
            else "remove it; write special characters in a quoted string as escapes",
        )


def _line_column(before: str) -> tuple[int, int]:
    """1-based line and column of the character that follows `before`."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


# A mapping whose next node is a key, not a value, has no pending key yet.
_NO_KEY: Final = object()
# What `_PLAIN_VALUES.get` returns for a text not resolved yet (None is a value: '~').
_UNRESOLVED: Final = object()
# Plain scalars' texts and their YAML 1.1 values, remembered across files:
# keys (`name`, `version`) and many values (environment and application names)
# repeat in every file, and resolving one runs up to four regular expressions.
# Every value is immutable (str, int, float, bool, None), so sharing is safe;
# the bound keeps a long-running `watch` from collecting every text it sees.
_PLAIN_VALUES: dict[str, Any] = {}
_PLAIN_VALUES_LIMIT: Final = 20_000


# YAML 1.2's core schema (yaml-language-server's reading): the plain scalars it reads
# as something other than a string. Its nulls are YAML 1.1's.
_CORE_BOOLS: Final = {
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
}
_CORE_NULLS: Final = frozenset(("", "~", "null", "Null", "NULL"))
_CORE_INT: Final = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_CORE_FLOAT: Final = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
# Only texts starting so can read differently in YAML 1.1 and 1.2: numbers, and
# YAML 1.1's yes/no/on/off (its other booleans and its nulls are YAML 1.2's too).
_MAYBE_AMBIGUOUS: Final = frozenset("0123456789+-.yYnNoO")


def _yaml_1_2_value(text: str) -> Any:
    """A plain scalar's value as YAML 1.2's core schema reads it."""
    if text in _CORE_NULLS:
        return None
    if text in _CORE_BOOLS:
        return _CORE_BOOLS[text]
    if _CORE_INT.fullmatch(text):
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        try:
            return int(text[2:] if base != 10 else text, base)
        except ValueError:  # more digits than Python converts: a number all the same
            return float(text)
    if _CORE_FLOAT.fullmatch(text):
        if text[-3:] in ("inf", "Inf", "INF"):
            return -math.inf if text[0] == "-" else math.inf
        if text[-3:] in ("nan", "NaN", "NAN"):
            return math.nan
        return float(text)
    return text


def _same_reading(ours: Any, theirs: Any) -> bool:
    if type(ours) is not type(theirs):
        return False
    return bool(ours == theirs) or (type(ours) is float and math.isnan(ours) and math.isnan(theirs))


def _reading(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is str:
        return f'the string "{value}"'
    return f"the number {_spelling(value)}"


def _spelling(number: int | float) -> str:
    """`number` written so that YAML 1.1 and 1.2 both read it back as itself."""
    if type(number) is int:
        return str(number)
    if math.isnan(number):
        return ".nan"
    if math.isinf(number):
        return "-.inf" if number < 0 else ".inf"
    text = repr(number)
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:  # YAML 1.1 reads a float only with a point: 1e+16 is a string
        mantissa += ".0"
    return f"{mantissa}e{exponent}" if exponent else mantissa


_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """PyYAML's safe dumper, quoting also the strings YAML 1.2 reads as something else."""


def _represent_str(dumper: Any, text: str) -> Any:
    # PyYAML quotes a string YAML 1.1 would read as another type (`yes`, `1_000`); a
    # string only YAML 1.2 would (`1e3`, `0o17`) it writes plain, which `load` refuses.
    if text[:1] in _MAYBE_AMBIGUOUS and type(_yaml_1_2_value(text)) is not str:
        return dumper.represent_scalar(_STR, text, style="'")
    return dumper.represent_str(text)


_Dumper.add_representer(str, _represent_str)


def dump(data: Any, **options: Any) -> str:
    """`data` as YAML that `load` takes back as it is: YAML 1.1 and 1.2 read it alike.
    `options`: `yaml.dump`'s (keys keep their order unless `sort_keys=True`)."""
    text: str = yaml.dump(data, Dumper=_Dumper, **{"sort_keys": False, **options})
    return text


class _Composer:
    def __init__(self, raw: bytes, path: str) -> None:
        self.raw = raw
        self.path = path
        self.values: dict[JsonPath, Where] = {}
        self.keys: dict[JsonPath, Where] = {}
        self.plain_text: dict[JsonPath, str] = {}

    def error(self, message: str, mark: Any, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message, file=self.path, line=mark.line + 1, column=mark.column + 1, hint=hint
        )

    def compose(self) -> Document:
        parser = _Parser(self.raw)
        try:
            data = self._compose(parser)
        except yaml.MarkedYAMLError as exc:
            ours = self._refusal_of_the_pure_parser() if WITH_LIBYAML else None
            raise (ours or self._syntax_error(exc)) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"YAML error: {exc}", file=self.path, line=1, column=1) from None
        finally:
            parser.dispose()
        return Document(self.path, data, self.values, self.keys, self.plain_text)

    def _refusal_of_the_pure_parser(self) -> ConfigError | None:
        """Our own refusal, where libyaml stopped first on a limit of its own.

        libyaml reads ahead of the events it hands us and has limits that vary by
        release (0.2.6 refuses flow nesting past 1,000 levels with its own words),
        so its error may come before our checks see the node that breaks them. The
        pure-Python parser has no such limits: run the same checks on its events,
        and if one of ours refuses first, that is the finding. Only invalid files
        pay for this second pass.
        """
        parser = _PureParser(self.raw)
        try:
            _Composer(self.raw, self.path)._compose(parser)
        except ConfigError as refusal:
            return refusal
        except yaml.YAMLError:
            return None
        finally:
            parser.dispose()
        return None

    def _syntax_error(self, exc: yaml.MarkedYAMLError) -> ConfigError:
        """libyaml's complaint, moved to where the mistake is and explained."""
        problem = exc.problem or exc.context or "invalid YAML"
        context = exc.context or ""
        mark = exc.problem_mark or exc.context_mark
        opened = exc.context_mark
        if "quoted scalar" in context and "end of stream" in problem and opened is not None:
            # libyaml reports the end of the file; the mistake is the opening quote.
            return self.error(
                "YAML syntax error: this quoted string is never closed",
                opened,
                "add the closing quote; inside '...' write a quote as '', inside \"...\" as \\\"",
            )
        hint = _syntax_hint(problem)
        if "cannot start any token" in problem and mark is not None:
            character = self._character_at(mark)
            if character == "\t":
                problem = "found a tab character where indentation or a value was expected"
                hint = "indent with spaces, never tabs"
            elif character:
                problem = f"found character {character!r} that cannot start any token"
        brackets = _FLOW_BRACKETS.get(context)
        if brackets is not None and opened is not None:
            hint = (
                f"close the '{brackets[0]}' opened at line {opened.line + 1}, "
                f"column {opened.column + 1} with '{brackets[1]}', "
                "and separate its items with ','"
            )
        if mark is None:  # pragma: no cover - libyaml always marks its errors
            return ConfigError(f"YAML syntax error: {problem}", file=self.path, hint=hint)
        return self.error(f"YAML syntax error: {problem}", mark, hint)

    def _character_at(self, mark: Any) -> str:
        lines = self.raw.decode("utf-8").split("\n")
        if mark.line >= len(lines) or mark.column >= len(lines[mark.line]):
            return ""
        character: str = lines[mark.line][mark.column]
        return character

    def _compose(self, parser: Any) -> Any:
        """The data of the file's one document, built from libyaml's events in one pass.

        Each node event is checked (anchor, tag, key, depth) before it becomes
        a value, so nothing refused is ever built. This loop is most of the
        time `reconciler validate` takes, hence its shape: `parser.get_event`
        is called directly (a generator around it cost a fifth of the loop),
        node events are tested first (most events are scalars), and the
        innermost open container lives in local variables rather than in an
        object on `stack` (locals are Python's fastest look-up; a flag says
        whether it is a mapping, cheaper than `isinstance` on every event).
        """
        next_event = parser.get_event
        values = self.values
        # The innermost open mapping or sequence (None before the root opens),
        # its path, and whether it is a mapping. In a mapping, `key` is the key
        # whose value comes next, or _NO_KEY when the next node is a key.
        container: Any = None
        path: JsonPath = ()
        in_mapping = False
        key: Any = _NO_KEY
        # The containers around it, outermost first, restored as each one ends.
        stack: list[tuple[Any, JsonPath, bool]] = []
        root: Any = None
        documents = 0
        while True:
            event = next_event()
            kind = type(event)
            # Scalars are most events, then collection starts and ends; stream
            # and document events come once per file.
            if kind is ScalarEvent or kind is MappingStartEvent or kind is SequenceStartEvent:
                tag = event.tag
                if event.anchor is not None or (tag is not None and tag not in _ALLOWED_TAGS):
                    raise self._refused_node(event)
                if in_mapping and key is _NO_KEY:
                    key = self._key(event, path, container)
                    continue
                # Where the node goes: under the pending key, at the end of the
                # open sequence, or at the top. (`path + (key,)` builds the
                # tuple faster than `(*path, key)`, which goes through a list.)
                if in_mapping:
                    node_path = path + (key,)  # noqa: RUF005
                elif container is not None:
                    node_path = path + (len(container),)  # noqa: RUF005
                else:
                    node_path = ()
                mark = event.start_mark
                values[node_path] = (mark.line, mark.column)
                value: Any
                if kind is ScalarEvent:
                    value = self._scalar(event)
                    if type(value) is not str and not event.style and event.implicit[0]:
                        self.plain_text[node_path] = event.value  # for hints: 1.10 became 1.1
                else:
                    if len(stack) >= MAX_DEPTH:
                        raise self.error(
                            f"nesting deeper than {MAX_DEPTH} levels",
                            mark,
                            "configuration files are shallow; "
                            "this looks like a mistake or an attack",
                        )
                    value = {} if kind is MappingStartEvent else []
                if in_mapping:
                    container[key] = value
                    key = _NO_KEY
                elif container is not None:
                    container.append(value)
                else:
                    root = value
                if kind is not ScalarEvent:
                    stack.append((container, path, in_mapping))
                    container, path, in_mapping = value, node_path, kind is MappingStartEvent
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                container, path, in_mapping = stack.pop()
            elif kind is AliasEvent:
                raise self.error(
                    f"alias '*{event.anchor}' is not allowed",
                    event.start_mark,
                    "anchors and aliases are refused (they allow 'billion laughs' bombs); "
                    "write the value out in full",
                )
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise self.error(
                        "more than one YAML document in this file",
                        event.start_mark,
                        "keep one document per file; remove the '---' separator",
                    )
            elif kind is StreamEndEvent or event is None:
                return root
            # StreamStartEvent and DocumentEndEvent need nothing.

    def _refused_node(self, event: Any) -> ConfigError:
        """The error for a node with an anchor (checked first) or a tag outside `_ALLOWED_TAGS`."""
        if event.anchor is not None:
            return self.error(
                f"anchor '&{event.anchor}' is not allowed",
                event.start_mark,
                "anchors and aliases are refused; write the value out in full",
            )
        return self.error(
            f"tag '{event.tag}' is not allowed",
            event.start_mark,
            "remove the tag; only plain YAML values are accepted",
        )

    def _key(self, event: Any, path: JsonPath, mapping: dict[str, Any]) -> str:
        """Check the key `event` of `mapping` (at `path`), record where it stands, return it."""
        mark = event.start_mark
        if type(event) is not ScalarEvent:
            raise self.error(
                "a mapping key must be a plain string, not a collection",
                mark,
                "use a simple name as the key",
            )
        key = self._scalar(event, key=True)
        if type(key) is not str:
            raise self.error(
                f"key {event.value!r} is read as {_describe(key)}, not a string",
                mark,
                f"quote it: '{event.value}'",
            )
        if key == "<<":
            raise self.error(
                "merge keys ('<<') are not allowed", mark, "write the keys out in full"
            )
        key_path = path + (key,)  # noqa: RUF005 - faster, see _compose
        if key in mapping:  # every earlier key of this mapping already holds its value
            raise self.error(
                f"duplicate key '{key}' (first defined at line {self.keys[key_path][0] + 1})",
                mark,
                "YAML keeps only the last one; remove or rename one of them",
            )
        self.keys[key_path] = (mark.line, mark.column)
        return key

    def _resolve_plain(self, event: Any, key: bool) -> Any:
        """A plain scalar's YAML 1.1 value, worked out and remembered in `_PLAIN_VALUES`;
        refused where YAML 1.2 reads it otherwise (and so never remembered)."""
        text: str = event.value
        tag = _RESOLVER.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        value = self._construct(tag, event)
        if text[:1] in _MAYBE_AMBIGUOUS:
            editors = _yaml_1_2_value(text)
            if not _same_reading(value, editors):
                raise self._read_differently(event, value, editors, key)
        if len(_PLAIN_VALUES) >= _PLAIN_VALUES_LIMIT:
            _PLAIN_VALUES.clear()
        _PLAIN_VALUES[text] = value
        return value

    def _scalar(self, event: Any, key: bool = False) -> Any:
        """A scalar event's value: as its tag says, as YAML 1.1 resolves it if plain, else text."""
        if event.tag is not None and event.tag != "!":
            return self._construct(event.tag, event)
        if event.style or not event.implicit[0]:
            return event.value  # quoted or a block: a string
        # Plain: most are remembered from an earlier file or an earlier key.
        value = _PLAIN_VALUES.get(event.value, _UNRESOLVED)
        return self._resolve_plain(event, key) if value is _UNRESOLVED else value

    def _read_differently(self, event: Any, ours: Any, editors: Any, key: bool) -> ConfigError:
        """The refusal of a plain scalar that YAML 1.1 (ours) and 1.2 (editors') read apart."""
        text: str = event.value
        hint = f'quote it: "{text}"'
        # A key is a string, and `16:00` a time of day, not 960: quoting is the one way.
        if not key and type(ours) is bool:
            hint += ", or write true/false"
        elif not key and ":" not in text:
            number = editors if type(editors) in (int, float) else ours
            hint += f", or write {_spelling(number)}"
        return self.error(
            f"`{text}` reads as {_reading(ours)} in YAML 1.1 but as {_reading(editors)} "
            "in YAML 1.2 (your editor)",
            event.start_mark,
            hint,
        )

    def _construct(self, tag: str, event: Any) -> Any:
        """The scalar `event`'s text as a value of type `tag` (an allowed one)."""
        text: str = event.value
        if tag in (_STR, "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
            return text
        construct = _CONSTRUCT.get(tag)
        if construct is None:  # pragma: no cover - guarded by _ALLOWED_TAGS
            return text
        try:
            return construct(ScalarNode(tag, text))
        except (ValueError, IndexError, KeyError, yaml.constructor.ConstructorError):
            # PyYAML's constructors trust the resolver's regexps; an explicit tag
            # bypasses them ('!!int ""' is an IndexError, '!!bool x' a KeyError),
            # and some texts pass a regexp but not the constructor ('0x_').
            name = tag.rsplit(":", 1)[-1]
            if event.tag is not None and event.tag != "!":
                hint = f"remove the tag, or write a valid {name}"
            else:
                # Plain text that YAML resolves as a number it then cannot read
                # ('0x_', an int of over 4,300 digits): there is no tag to remove.
                article = "an" if name[0] in "aeiou" else "a"
                hint = f"quote it to keep it as text (unquoted, YAML reads it as {article} {name})"
            raise self.error(f"{text!r} is not a valid {name}", event.start_mark, hint) from None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return type(value).__name__


_FLOW_BRACKETS: Final = {
    "while parsing a flow sequence": "[]",
    "while parsing a flow mapping": "{}",
}


def _syntax_hint(problem: str) -> str | None:
    if "tab" in problem:
        return "indent with spaces, never tabs"
    if "mapping values are not allowed" in problem:
        return "quote a value that contains ': ', or check this line's indentation"
    if "could not find expected ':'" in problem:
        return "each line of a mapping needs 'key: value'; check indentation and quotes"
    if "expected '-' indicator" in problem:
        return "every item of a list starts with '- ' at the same indentation; check this line"
    if "did not find expected key" in problem:
        return (
            "every key of a mapping starts at the same indentation; check this line, "
            "and quote a value that starts with a quote but goes on after it"
        )
    if "found character that cannot start any token" in problem:
        return "quote values that start with special characters such as @ ` % or |"
    return "check indentation, colons and quotes around this line"


_TRAILING_ZERO: Final = re.compile(r"^[-+]?[0-9_]*\.[0-9_]*0$")


def surprise_hint(document: Document, path: JsonPath, value: Any) -> str | None:
    """Explain a YAML 1.1 surprise at `path`: the text the author wrote and what it became."""
    text = document.plain_text.get(path)
    if text is None:
        return None
    if isinstance(value, bool):
        return (
            f"'{text}' is read by YAML as the boolean {str(value).lower()}; "
            f'quote it if you mean the text: "{text}"'
        )
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"'{text}' is read by YAML as the special number {value!r}; quote it: \"{text}\""
        lost = ""
        if _TRAILING_ZERO.match(text) and repr(value) != text:
            lost = f" (the trailing zero is lost: {value!r})"
        return f"'{text}' is read by YAML as a number{lost}; quote it: \"{text}\""
    if isinstance(value, int):
        if text.startswith("0") and len(text) > 1:
            return f"'{text}' is read by YAML as the number {value} (leading zero); quote it"
        return f"'{text}' is read by YAML as a number; quote it: \"{text}\""
    if value is None:
        return f"'{text}' is read by YAML as null; quote it or give a value"
    return None
