"""Stage 2, validate: one loaded document against the shipped JSON Schema
(and the one rule of a single file that a schema cannot state, see `_beyond_schema`).

Called by `validate`. Every document is judged by the Rust validator
(`jsonschema-rs`, about 40x faster), and its verdict decides; only an invalid
one is walked again by python-jsonschema, whose errors carry the keyword, the
schema and the instance, so each becomes a finding at the offending key or
value with a message a person can act on. That walk matches `pattern` with the
Rust validator's ECMA-262 regular expressions, not Python's `re` (whose `$`
also matches before a final newline), and when it still finds nothing the
document is refused all the same.

python-jsonschema (about 95 ms to import) and difflib are imported only when a
document is invalid: a valid repository, the common case, never needs them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Any, Final

from msgspec import Struct

from reconciler.core import resources
from reconciler.core.documents import Document, JsonPath, Position
from reconciler.core.model import Finding


@cache
def _fast(kind: str) -> Any:
    # Imported at the first validator built: a command that validates no document (a
    # `verify` with nothing new, `--help`) never loads it.
    import jsonschema_rs  # noqa: PLC0415

    return jsonschema_rs.validator_for(resources.schema(kind))


@cache
def _detailed(kind: str) -> Any:
    import jsonschema  # noqa: PLC0415 - only for invalid documents (start-up time)

    explaining = jsonschema.validators.extend(
        jsonschema.Draft202012Validator, {"pattern": _pattern}
    )
    return explaining(resources.schema(kind))


@cache
def _definition(kind: str, name: str) -> Any:
    import jsonschema_rs  # noqa: PLC0415 - as in _fast

    whole = resources.schema(kind)
    return jsonschema_rs.validator_for(
        {"$schema": whole["$schema"], "$defs": whole["$defs"], "$ref": f"#/$defs/{name}"}
    )


def is_identifier(value: Any) -> bool:
    """Whether `value` is a name the schemas accept (a plan's target, an application):
    one that a document failing its schema elsewhere still gives the cross-file checks."""
    return bool(_definition("plan", "identifier").is_valid(value))


@cache
def _matcher(pattern: str) -> Any:
    import jsonschema_rs  # noqa: PLC0415 - as in _fast

    return jsonschema_rs.validator_for({"pattern": pattern})


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """`pattern` as the fast validator (and the JSON Schema spec, ECMA-262) reads it.

    python-jsonschema's own uses `re.search`, whose `$` also matches before a
    final newline: it found nothing wrong with `version: "9.9\\n"`.
    """
    from jsonschema.exceptions import ValidationError  # noqa: PLC0415 - as in _detailed

    if isinstance(instance, str) and not _matcher(pattern).is_valid(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# How a hint names the file a schema describes.
_KIND_TEXT = {
    "teams": "teams.yaml",
    "environment": "an environment",
    "plan": "a plan",
    "deployment": "a deployment record",
}
_WHOLE_NUMBER = re.compile(r"[-+]?[0-9]+")
# Required keys whose absence needs more than the key's description.
_REQUIRED_HINTS = {
    "from": "action: tag-and-deploy tags a version that runs in the source; "
    "name it with from: <source version>",
    "argv": "driver type command runs a program: add argv: [program, its arguments]",
}


def check(document: Document, kind: str) -> list[Finding]:
    """Every schema violation in `document`, one finding each (empty when valid)."""
    if _fast(kind).is_valid(document.data):
        return _beyond_schema(document, kind)
    if document.data is None:
        return [Finding(document.path, 1, 1, "the file is empty", _needs(kind))]
    findings = {
        finding.sort_key(): finding
        for error in _detailed(kind).iter_errors(document.data)
        for finding in _explain(document, kind, error)
    }
    return [findings[key] for key in sorted(findings)] or [_unexplained(document, kind)]


def _unexplained(document: Document, kind: str) -> Finding:
    """The fast validator refused `document` and the explanation found nothing: an error
    in the reconciler, never a pass (a refused value must not reach a driver)."""
    first = next(iter(_fast(kind).iter_errors(document.data)), None)
    where = ""
    if first is not None and first.instance_path:
        where = f"at {_field_name(tuple(first.instance_path))}: "
    return Finding(
        document.path,
        1,
        1,
        "the document does not match its schema",
        f"{where}{first.message if first is not None else 'refused'}; check the file against "
        f"schemas/{resources.SCHEMA_FILES[kind]} (validate could not explain this refusal: "
        "please report it)",
    )


def _beyond_schema(document: Document, kind: str) -> list[Finding]:
    """The rules of one file that a JSON Schema cannot state: a plan lists each
    application once (`uniqueItems` compares whole entries, not names).

    Here rather than among validate's cross-file checks, so that the history
    walk, which checks every plan version with `check`, refuses such a plan
    too: its entries could not be judged one application at a time.
    """
    if kind != "plan":
        return []
    findings: list[Finding] = []
    seen: set[str] = set()
    for index, entry in enumerate(document.data["applications"]):
        application: str = entry["name"]
        if application in seen:
            where = document.position(("applications", index, "name"))
            findings.append(
                Finding(
                    document.path,
                    where.line,
                    where.column,
                    f"application '{application}' is listed twice",
                    "a plan deploys each application once; remove one entry",
                )
            )
        seen.add(application)
    return findings


def _needs(kind: str) -> str:
    required = resources.schema(kind).get("required", [])
    return f"{_KIND_TEXT.get(kind, kind)} needs the keys: {', '.join(required)}"


def _explain(document: Document, kind: str, error: Any) -> Iterator[Finding]:
    refused = _Refused.of(document, kind, error)
    if "propertyNames" in error.schema_path:
        # A key that is not a valid name: python-jsonschema reports the inner
        # keyword (pattern, maxLength) at the mapping; the mistake is the key.
        return _bad_name(refused)
    return _EXPLAINED.get(error.validator, _plain)(refused)


class _Refused(Struct, frozen=True):
    """One schema error of a document, and what every explanation of it needs."""

    document: Document
    kind: str
    error: Any
    path: JsonPath
    here: Position
    rule: str | None
    where: str  # "<field>: " or "", to open a message with

    @classmethod
    def of(cls, document: Document, kind: str, error: Any) -> _Refused:
        path: JsonPath = tuple(error.absolute_path)
        here = document.position(path)
        where = _where(_field_name(path))
        return cls(document, kind, error, path, here, _describe_rule(error.schema), where)

    def at(self, position_path: JsonPath, message: str, hint: str | None = None) -> Finding:
        """A finding at a key (the value's place when `position_path` is empty)."""
        where = self.document.key_position(position_path) if position_path else self.here
        return Finding(self.document.path, where.line, where.column, message, hint)

    def value_at(self, message: str, hint: str | None = None) -> Finding:
        return Finding(self.document.path, self.here.line, self.here.column, message, hint)


def _bad_name(refused: _Refused) -> Iterator[Finding]:
    instance = refused.error.instance
    yield refused.at(
        (*refused.path, instance),
        f"{refused.where}'{instance}' is not a valid name",
        refused.rule or "use lowercase letters, digits and single . _ -",
    )


def _unknown_keys(refused: _Refused) -> Iterator[Finding]:
    instance = refused.error.instance
    if not isinstance(instance, dict):
        yield from _plain(refused)
        return
    import difflib  # noqa: PLC0415 - only for invalid documents

    allowed = sorted(refused.error.schema.get("properties", {}))
    for key in instance:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            if hint is None and allowed:
                hint = "allowed keys: " + ", ".join(allowed)
            yield refused.at((*refused.path, key), f"{refused.where}unknown key '{key}'", hint)


def _missing_keys(refused: _Refused) -> Iterator[Finding]:
    error = refused.error
    properties = error.schema.get("properties", {})
    for missing in error.validator_value:
        if isinstance(error.instance, dict) and missing not in error.instance:
            yield refused.value_at(
                f"{refused.where}missing required key '{missing}'",
                _required_hint(missing, properties.get(missing)),
            )


def _keys_not_allowed(refused: _Refused) -> Iterator[Finding]:
    if not isinstance(refused.error.validator_value, dict):
        yield from _plain(refused)
        return
    for key in refused.error.validator_value.get("required", ()):
        yield refused.at((*refused.path, key), f"key '{key}' is not allowed here", _not_hint(key))


def _wrong_type(refused: _Refused) -> Iterator[Finding]:
    error = refused.error
    yield refused.value_at(
        f"{refused.where}expected {_article(error.validator_value)}, "
        f"got {_json_type(error.instance)}",
        _type_hint(refused.document, refused.kind, error, refused.path, refused.rule),
    )


def _surprise_hint(document: Document, path: JsonPath, instance: Any) -> str | None:
    # The loader's hints load YAML, which a command that only names documents never does.
    from reconciler.core.loader import surprise_hint  # noqa: PLC0415 - an invalid document

    return surprise_hint(document, path, instance)


def _not_an_option(refused: _Refused) -> Iterator[Finding]:
    instance = refused.error.instance
    options = list(refused.error.validator_value)
    listed = ", ".join(str(option) for option in options)
    hint = None
    if any(isinstance(option, str) for option in options):
        hint = _surprise_hint(refused.document, refused.path, instance)
    if hint is None and isinstance(instance, str):
        import difflib  # noqa: PLC0415 - only for invalid documents

        close = difflib.get_close_matches(instance, [str(option) for option in options], n=1)
        if close:
            hint = f"did you mean '{close[0]}'? (one of: {listed})"
    yield refused.value_at(
        f"{refused.where}{_shown(instance)} is not allowed", hint or f"one of: {listed}"
    )


def _no_match(refused: _Refused) -> Iterator[Finding]:
    yield refused.value_at(
        f"{refused.where}{_cut(refused.error.instance)} is not allowed",
        refused.rule or f"must match {refused.error.validator_value}",
    )


def _out_of_limits(refused: _Refused) -> Iterator[Finding]:
    error = refused.error
    message = _limit_message(error.validator, error.validator_value)
    yield refused.value_at(f"{refused.where}{message}", refused.rule)


def _out_of_range(refused: _Refused) -> Iterator[Finding]:
    error = refused.error
    word = "at least" if error.validator == "minimum" else "at most"
    yield refused.value_at(
        f"{refused.where}must be {word} {error.validator_value}, got {error.instance}",
        refused.rule,
    )


def _repeated(refused: _Refused) -> Iterator[Finding]:
    yield refused.value_at(f"{refused.where}lists the same value twice", "remove the repeated item")


def _not_the_constant(refused: _Refused) -> Iterator[Finding]:
    yield refused.value_at(
        f"{refused.where}must be {refused.error.validator_value!r}", refused.rule
    )


def _plain(refused: _Refused) -> Iterator[Finding]:
    yield refused.value_at(f"{refused.where}{refused.error.message}", refused.rule)


# How each JSON Schema keyword's refusal is explained (`_plain`: any other keyword's).
_EXPLAINED: Final[Mapping[str, Callable[[_Refused], Iterator[Finding]]]] = {
    "additionalProperties": _unknown_keys,
    "required": _missing_keys,
    "not": _keys_not_allowed,
    "type": _wrong_type,
    "enum": _not_an_option,
    "pattern": _no_match,
    "maxLength": _out_of_limits,
    "minLength": _out_of_limits,
    "maxItems": _out_of_limits,
    "minItems": _out_of_limits,
    "minProperties": _out_of_limits,
    "minimum": _out_of_range,
    "maximum": _out_of_range,
    "uniqueItems": _repeated,
    "const": _not_the_constant,
}


def _required_hint(key: str, schema: Any) -> str:
    if key in _REQUIRED_HINTS:
        return _REQUIRED_HINTS[key]
    described = _describe_rule(schema)
    return f"add '{key}': {described}" if described else f"add '{key}'"


def _type_hint(
    document: Document, kind: str, error: Any, path: JsonPath, rule: str | None
) -> str | None:
    expected, instance = error.validator_value, error.instance
    expects = set(expected) if isinstance(expected, list) else {expected}
    if "string" in expects:
        return _surprise_hint(document, path, instance) or "quote it"
    if not path:
        return _needs(kind)
    if isinstance(instance, str) and _fits_unquoted(instance, expects):
        return f"remove the quotes: {instance}"
    if instance is None:
        return f"give it a value: {_article(expected)}"
    if expects == {"array"}:
        return "write a list: one item per line after '- ', or [first, second]"
    if expects == {"object"}:
        return "write a mapping: 'key: value' lines indented below it, or {key: value}"
    return rule


def _fits_unquoted(text: str, expects: set[str]) -> bool:
    """Would `text`, written without quotes, be a value of one of the `expects` types?"""
    if "boolean" in expects and text in ("true", "false"):
        return True
    return bool(expects & {"integer", "number"}) and _WHOLE_NUMBER.fullmatch(text) is not None


def _cut(value: Any, limit: int = 120) -> str:
    """A refused value as a message shows it: quoted, and cut short when it is long
    (an armored OpenPGP key is kilobytes; its first line says what it is)."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else _json_type(value)


def _field_name(path: JsonPath) -> str:
    return ".".join(str(part) for part in path)


def _where(field: str) -> str:
    return f"{field}: " if field else ""


def _describe_rule(schema: Any) -> str | None:
    """A schema's description, phrased as a hint: lower case, no final full stop."""
    if isinstance(schema, dict):
        description = schema.get("description")
        if isinstance(description, str) and description.strip(". "):
            text = description.strip().rstrip(".")
            first_word = text.split(maxsplit=1)[0]
            if first_word[0].isupper() and not any(c.isupper() for c in first_word[1:]):
                text = text[0].lower() + text[1:]  # but not an acronym: IANA stays
            return text
    return None


def _not_hint(key: str) -> str:
    if key == "from":
        return "'from' names the version to tag; it goes with action: tag-and-deploy"
    return f"remove '{key}'"


def _article(expected: Any) -> str:
    names = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "a whole number",
        "number": "a number",
        "boolean": "true or false",
        "null": "nothing",
    }
    if isinstance(expected, list):
        return " or ".join(names.get(item, str(item)) for item in expected)
    return names.get(expected, str(expected))


def _json_type(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _limit_message(keyword: str, limit: int) -> str:
    return {
        "maxLength": f"is longer than {limit} characters",
        "minLength": f"must have at least {limit} character{'s' * (limit != 1)}",
        "maxItems": f"has more than {limit} items",
        "minItems": f"needs at least {limit} item{'s' * (limit != 1)}",
        "minProperties": f"needs at least {limit} entr{'ies' if limit != 1 else 'y'}",
    }[keyword]
