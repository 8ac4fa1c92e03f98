"""The shipped JSON Schemas: well-formed, documented, closed, and strict about names and versions.

Editors read these files for completion and hover help, and `validate` checks
every configuration file against them, so each property explains itself, no
object takes keys the reconciler would ignore, and nothing that could become a
path or reach a shell passes as a name or a version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest

from reconciler.core import loader
from reconciler.core.resources import SCHEMA_FILES, example_dir, schemas_dir

TOP_LEVEL = Path(__file__).resolve().parents[1] / "schemas"
NAMES = sorted(SCHEMA_FILES.values())
# Keywords whose value is one subschema, a list of them, or a mapping of names to them.
ONE = ("items", "additionalProperties", "propertyNames", "not", "then", "else", "contains")
MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
NAMED = ("properties", "$defs", "patternProperties")


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((TOP_LEVEL / name).read_text(encoding="utf-8"))
    return loaded


def subschemas(schema: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object inside `schema` with its JSON pointer, except `if` conditions.

    An `if` is a test on the instance, not a description of it: it names the
    property it tests without describing or closing the object.
    """
    if not isinstance(schema, dict):
        return
    yield where, schema
    for keyword in ONE:
        yield from subschemas(schema.get(keyword), f"{where}/{keyword}")
    for keyword in MANY:
        for index, item in enumerate(schema.get(keyword, ())):
            yield from subschemas(item, f"{where}/{keyword}/{index}")
    for keyword in NAMED:
        for name, item in schema.get(keyword, {}).items():
            yield from subschemas(item, f"{where}/{keyword}/{name}")


def test_the_package_ships_exactly_the_top_level_schemas() -> None:
    shipped = {path.name: path.read_bytes() for path in schemas_dir().glob("*.schema.json")}
    top_level = {path.name: path.read_bytes() for path in TOP_LEVEL.glob("*.schema.json")}
    assert shipped == top_level
    assert sorted(shipped) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_schema_declares_draft_2020_12_and_its_own_id(name: str) -> None:
    schema = load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://gitops-reconciler.dev/schemas/{name}"


@pytest.mark.parametrize("name", NAMES)
def test_schema_passes_the_2020_12_metaschema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(load(name))


@pytest.mark.parametrize("name", NAMES)
def test_schema_compiles_in_the_rust_validator(name: str) -> None:
    assert jsonschema_rs.validator_for(load(name)) is not None


@pytest.mark.parametrize("name", NAMES)
def test_every_reference_points_at_a_local_definition(name: str) -> None:
    schema = load(name)
    references = [node["$ref"] for _, node in subschemas(schema) if "$ref" in node]
    assert references
    for reference in references:
        assert reference.startswith("#/$defs/"), reference
        assert reference.removeprefix("#/$defs/") in schema["$defs"], reference


@pytest.mark.parametrize("name", NAMES)
def test_every_property_has_a_description(name: str) -> None:
    undescribed = [
        f"{where}/properties/{key}"
        for where, node in subschemas(load(name))
        for key, property_schema in node.get("properties", {}).items()
        if not property_schema.get("description")
    ]
    assert undescribed == []


@pytest.mark.parametrize("name", NAMES)
def test_every_object_with_properties_refuses_other_keys(name: str) -> None:
    open_objects = [
        where
        for where, node in subschemas(load(name))
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert open_objects == []


@pytest.mark.parametrize("name", NAMES)
def test_every_mapping_keyed_by_name_requires_an_identifier(name: str) -> None:
    schema = load(name)
    keyed = [node["propertyNames"] for _, node in subschemas(schema) if "propertyNames" in node]
    assert all(names == {"$ref": "#/$defs/identifier"} for names in keyed)


IDENTIFIERS = [(name, load(name)["$defs"]["identifier"]) for name in NAMES]
UNSAFE_NAMES = ["../x", "a/b", "a b", "a;b", "$(x)", "`x`", "A|b", "", "a..b", "-a", "a-", "é"]
SAFE_NAMES = ["ecommerce", "customer-portal", "2026-11-qa-release", "a.b_c-d", "x"]


@pytest.mark.parametrize(("name", "identifier"), IDENTIFIERS, ids=NAMES)
@pytest.mark.parametrize("unsafe", UNSAFE_NAMES)
def test_identifier_pattern_rejects_names_that_could_become_paths_or_shell_words(
    name: str, identifier: dict[str, Any], unsafe: str
) -> None:
    assert not jsonschema.Draft202012Validator(identifier).is_valid(unsafe)


@pytest.mark.parametrize(("name", "identifier"), IDENTIFIERS, ids=NAMES)
@pytest.mark.parametrize("safe", SAFE_NAMES)
def test_identifier_pattern_accepts_plain_names(
    name: str, identifier: dict[str, Any], safe: str
) -> None:
    assert jsonschema.Draft202012Validator(identifier).is_valid(safe)


def test_identifiers_are_at_most_63_characters() -> None:
    for _, identifier in IDENTIFIERS:
        validator = jsonschema.Draft202012Validator(identifier)
        assert validator.is_valid("a" * 63)
        assert not validator.is_valid("a" * 64)


VERSIONS = [
    (name, load(name)["$defs"]["version"]) for name in NAMES if "version" in load(name)["$defs"]
]


def test_plans_and_deployments_define_versions() -> None:
    assert [name for name, _ in VERSIONS] == ["deployment.schema.json", "plan.schema.json"]


@pytest.mark.parametrize(("name", "version"), VERSIONS, ids=[name for name, _ in VERSIONS])
@pytest.mark.parametrize("number", [1, 1.1, 2.0, True, None])
def test_a_version_must_be_a_string(name: str, version: dict[str, Any], number: Any) -> None:
    assert version["type"] == "string"
    assert not jsonschema.Draft202012Validator(version).is_valid(number)


@pytest.mark.parametrize(("name", "version"), VERSIONS, ids=[name for name, _ in VERSIONS])
@pytest.mark.parametrize("unsafe", ["1.4.0; rm -rf /", "$(reboot)", "`id`", "1 2", "../1", ""])
def test_a_version_refuses_shell_and_path_characters(
    name: str, version: dict[str, Any], unsafe: str
) -> None:
    assert not jsonschema.Draft202012Validator(version).is_valid(unsafe)


@pytest.mark.parametrize(("name", "version"), VERSIONS, ids=[name for name, _ in VERSIONS])
@pytest.mark.parametrize("safe", ["1.4.0", "1.10", "0.6-dev.41", "2.0.0+build.5", "v3_1"])
def test_a_version_accepts_usual_version_strings(
    name: str, version: dict[str, Any], safe: str
) -> None:
    assert jsonschema.Draft202012Validator(version).is_valid(safe)


def test_a_plan_with_a_numeric_version_is_invalid() -> None:
    plan = {
        "name": "p",
        "target": "development",
        "applications": [{"name": "ecommerce", "version": 1.1}],
        "state": "draft",
    }
    validator = jsonschema.Draft202012Validator(load("plan.schema.json"))
    # Which keyword refuses, and where: not how python-jsonschema words it.
    assert [
        (error.validator, list(error.absolute_path)) for error in validator.iter_errors(plan)
    ] == [("type", ["applications", 0, "version"])]


def with_a_final_newline(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[str, Any]]:
    """`data` with one string (a value or a mapping key) ending in a newline, each way."""
    if isinstance(data, str):
        yield "/".join(map(str, path)), data + "\n"
    elif isinstance(data, list):
        for index, item in enumerate(data):
            for where, changed in with_a_final_newline(item, (*path, index)):
                yield where, [*data[:index], changed, *data[index + 1 :]]
    elif isinstance(data, dict):
        for key, value in data.items():
            for where, changed in with_a_final_newline(value, (*path, key)):
                yield where, {**data, key: changed}
            renamed = {(f"{k}\n" if k == key else k): v for k, v in data.items()}
            yield "/".join(map(str, (*path, f"{key}<key>"))), renamed


EXAMPLES = {
    "teams.yaml": "teams",
    "environments/development.yaml": "environment",
    "environments/quality-assurance.yaml": "environment",
    "environments/production.yaml": "environment",
    "plans/2026-11-dev-build.yaml": "plan",
    "plans/2026-11-qa-release.yaml": "plan",
}
DEPLOYMENT = {
    "environment": "development",
    "applications": {
        "ecommerce": {
            "version": "1.4.0",
            "plan": "2026-11-dev-build",
            "run": "2026-11-dev-build.1",
            "deployed_at": "2026-11-02T10:00:00Z",
        }
    },
}


def test_every_pattern_refuses_a_final_newline_in_python_jsonschema_as_in_ecma_262() -> None:
    # ECMA-262's `$` (JSON Schema's regexes) is the end of the string; Python's `re`, which
    # plain python-jsonschema uses, also matches it before a final newline. A value like
    # "9.9\n" passed there and became a release directory named with a newline.
    documents = [
        (path, kind, loader.load((example_dir() / path).read_bytes(), path).data)
        for path, kind in EXAMPLES.items()
    ]
    documents.append(("deployments/development.yaml", "deployment", DEPLOYMENT))
    refused: set[str] = set()
    disagreements: list[str] = []
    for path, kind, data in documents:
        python = jsonschema.Draft202012Validator(load(SCHEMA_FILES[kind]))
        rust = jsonschema_rs.validator_for(load(SCHEMA_FILES[kind]))
        assert python.is_valid(data), path
        assert rust.is_valid(data), path
        for where, changed in with_a_final_newline(data):
            verdicts = (python.is_valid(changed), rust.is_valid(changed))
            if verdicts[0] != verdicts[1]:
                disagreements.append(f"{path}: {where} (python {verdicts[0]}, rust {verdicts[1]})")
            if not any(verdicts):
                refused.add(f"{path}: {where}")
    assert disagreements == []
    assert {
        "plans/2026-11-dev-build.yaml: applications/0/version",
        "plans/2026-11-dev-build.yaml: applications/0/name",
        "teams.yaml: users/bob/emails/0",
        "teams.yaml: users/bob<key>",
        "environments/quality-assurance.yaml: gates/approval_ttl",
        "deployments/development.yaml: applications/ecommerce/deployed_at",
    } <= refused
