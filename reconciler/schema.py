"""Stage 2a, validate one file: a loaded document against the shipped JSON Schema.

Called by `validate`. Valid documents, the common case, are checked by the
Rust validator (`jsonschema-rs`, about 40x faster); only an invalid one is
walked again by python-jsonschema, whose errors carry the keyword, the schema
and the instance, so each becomes a finding at the offending key or value
with a message a person can act on.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import jsonschema_rs

from reconciler import resources
from reconciler.loader import Document, JsonPath, surprise_hint
from reconciler.model import Finding


@cache
def _fast(kind: str) -> Any:
    return jsonschema_rs.validator_for(resources.schema(kind))


@cache
def _detailed(kind: str) -> Any:
    return jsonschema.Draft202012Validator(resources.schema(kind))


def check(document: Document, kind: str) -> list[Finding]:
    """Every schema violation in `document`, one finding each (empty when valid)."""
    if _fast(kind).is_valid(document.data):
        return []
    if document.data is None:
        return [Finding(document.path, 1, 1, "the file is empty", "see the schema for its keys")]
    findings = {
        finding.sort_key(): finding
        for error in _detailed(kind).iter_errors(document.data)
        for finding in _explain(document, error)
    }
    return [findings[key] for key in sorted(findings)]


def _explain(document: Document, error: Any) -> Iterator[Finding]:
    path: JsonPath = tuple(error.absolute_path)
    keyword = error.validator
    instance = error.instance
    here = document.position(path)

    def at(position_path: JsonPath, message: str, hint: str | None = None) -> Finding:
        where = document.key_position(position_path) if position_path else here
        return Finding(document.path, where.line, where.column, message, hint)

    def value_at(message: str, hint: str | None = None) -> Finding:
        return Finding(document.path, here.line, here.column, message, hint)

    field = _field_name(path)
    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        for key in instance:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else None
                if hint is None and allowed:
                    hint = "allowed keys: " + ", ".join(allowed)
                yield at((*path, key), f"{_where(field)}unknown key '{key}'", hint)
        return
    if keyword == "propertyNames":
        name = instance
        yield at(
            (*path, name),
            f"{_where(field)}'{name}' is not a valid name",
            _describe_rule(error.schema) or "use lowercase letters, digits and single . _ -",
        )
        return
    if keyword == "required":
        for missing in error.validator_value:
            if isinstance(instance, dict) and missing not in instance:
                yield value_at(f"{_where(field)}missing required key '{missing}'")
        return
    if keyword == "not" and isinstance(error.validator_value, dict):
        for key in error.validator_value.get("required", ()):
            yield at((*path, key), f"key '{key}' is not allowed here", _not_hint(key))
        return
    if keyword == "type":
        expected = error.validator_value
        hint = surprise_hint(document, path, instance)
        yield value_at(
            f"{_where(field)}expected {_article(expected)}, got {_json_type(instance)}",
            hint or ("quote it" if expected == "string" else None),
        )
        return
    if keyword == "enum":
        options = ", ".join(str(option) for option in error.validator_value)
        hint = surprise_hint(document, path, instance) or f"one of: {options}"
        yield value_at(f"{_where(field)}{instance!r} is not allowed", hint)
        return
    if keyword == "pattern":
        yield value_at(
            f"{_where(field)}{instance!r} is not allowed",
            _describe_rule(error.schema) or f"must match {error.validator_value}",
        )
        return
    if keyword in ("maxLength", "minLength", "maxItems", "minItems", "minProperties"):
        yield value_at(f"{_where(field)}{_limit_message(keyword, error.validator_value)}")
        return
    if keyword in ("minimum", "maximum"):
        word = "at least" if keyword == "minimum" else "at most"
        yield value_at(f"{_where(field)}must be {word} {error.validator_value}, got {instance}")
        return
    if keyword == "uniqueItems":
        yield value_at(f"{_where(field)}lists the same value twice", "remove the repeated item")
        return
    if keyword == "const":
        yield value_at(f"{_where(field)}must be {error.validator_value!r}")
        return
    yield value_at(f"{_where(field)}{error.message}")


def _field_name(path: JsonPath) -> str:
    return ".".join(str(part) for part in path)


def _where(field: str) -> str:
    return f"{field}: " if field else ""


def _describe_rule(schema: Any) -> str | None:
    if isinstance(schema, dict):
        description = schema.get("description")
        if isinstance(description, str):
            return description
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
