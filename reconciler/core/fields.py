"""Stage 3, authorise: how a file is split into values that are judged one by one.

Called by `authorise`. Plans are judged per application entry and per field,
`teams.yaml` per user, team membership and application list, so that two
people's independent edits to one file merge cleanly and a merge that changes
someone else's value is caught. Every other file is one value, its blob id.
`teams.yaml` also has its text as a value (`TEXT`, the blob id): a change to
its comments or layout alone changes no other field, and still needs a
signed user who may edit the file.

A `FieldMap` maps a field key to its canonical JSON text; a missing key means
the field is absent. Content that cannot be read (invalid YAML, a schema
error, a symlink) is the single field `INVALID`, which no edit may create.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from reconciler.core.layout import place

# The journal's rows name fields (`describe_field`): reading them must not load YAML.
if TYPE_CHECKING:
    from reconciler.core.documents import Document, Position

FieldMap = Mapping[str, str]

INVALID: Final = "invalid"
CONTENT: Final = "content"
TEXT: Final = "text"
APP_PREFIX: Final = "app:"
PLAN_SCALARS: Final = (
    "name",
    "source",
    "target",
    "notes",
    "state",
    "rollback",
    "override_drift",
)
ORDER: Final = "order"


# One encoder for every value: json.dumps with options would build a new one per call.
_ENCODER: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_FAST: Final = msgspec.json.Encoder(order="sorted")


def canonical(value: Any) -> str:
    """`value` as one JSON text: keys sorted, no spaces, UTF-8; the field's text the state
    keeps and compares, so the same bytes whichever code wrote them.

    msgspec writes it in C, a tenth of the time (a walk of 10,000 commits makes 140,000):
    byte for byte what `_ENCODER` writes for every value without a float, which the
    values here never hold (schema-valid plans and teams.yaml, whose schemas allow no
    number, and texts; `tests/test_fields_text.py` holds both). A text holding a lone
    surrogate (a file name that is not UTF-8) UTF-8 cannot hold: `_ENCODER` escapes it."""
    try:
        return _FAST.encode(value).decode("utf-8")
    except UnicodeEncodeError:
        return _ENCODER.encode(value)


def changed_keys(before: FieldMap, after: FieldMap) -> list[str]:
    """The keys whose text differs between two field maps (or is in one only), sorted.

    Most edits change one field of many: the set difference of the items finds
    it without visiting every key in Python.
    """
    return sorted({key for key, _ in before.items() ^ after.items()})


def value(fields: FieldMap, key: str) -> Any:
    text = fields.get(key)
    if text is None:
        return None
    if text[:1] == '"' and "\\" not in text:
        return text[1:-1]  # a string with nothing escaped, the common case: no decoder needed
    return json.loads(text)


def invalid(reason: str) -> FieldMap:
    return {INVALID: canonical(reason)}


def whole_file(blob: str | None) -> FieldMap:
    return {} if blob is None else {CONTENT: canonical(blob)}


# -- plans -------------------------------------------------------------------


def plan_fields(data: Mapping[str, Any]) -> FieldMap:
    fields = {key: canonical(data[key]) for key in PLAN_SCALARS if key in data}
    entries = data.get("applications", [])
    fields[ORDER] = canonical([entry["name"] for entry in entries])
    for entry in entries:
        body = {key: entry[key] for key in ("version", "action", "from") if key in entry}
        fields[APP_PREFIX + entry["name"]] = canonical(body)
    return fields


def plan_applications(fields: FieldMap) -> tuple[str, ...]:
    order = value(fields, ORDER)
    return tuple(order) if isinstance(order, list) else ()


def plan_data(fields: FieldMap) -> dict[str, Any]:
    """The plan document these fields describe (for effective plans)."""
    data: dict[str, Any] = {key: value(fields, key) for key in PLAN_SCALARS if key in fields}
    data["applications"] = [
        {"name": name, **value(fields, APP_PREFIX + name)}
        for name in plan_applications(fields)
        if APP_PREFIX + name in fields
    ]
    return data


def describe_field(key: str) -> str:
    """How a person names a field: 'the ecommerce entry', 'notes', 'teams.x.members.y'."""
    if key.startswith(APP_PREFIX):
        return f"the {key[len(APP_PREFIX) :]} entry"
    if key == ORDER:
        return "the order of applications"
    if key == INVALID:
        return "its content"
    if key == CONTENT:
        return "its content"
    if key == TEXT:
        return "its comments and layout"
    return key.replace("/", ".")


def field_position(document: Document, path: str, key: str) -> Position:
    """Where the value `key` of file `path` stands in `document`: an application's entry,
    a plan's field, a user, a role, a member (its key's line); where it no longer stands,
    the nearest part of the file that holds it; a file judged whole, its first line."""
    from reconciler.core.documents import Position  # noqa: PLC0415

    kind = place(path).kind
    data = document.data if isinstance(document.data, dict) else {}
    if kind == "plan" and key.startswith(APP_PREFIX):
        entries = data.get("applications")
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and entry.get("name") == key[len(APP_PREFIX) :]:
                return document.position(("applications", index))
        return document.key_position(("applications",))
    if kind == "plan" and key in (*PLAN_SCALARS, ORDER):
        return document.key_position(("applications",) if key == ORDER else (key,))
    if kind == "teams" and key not in (TEXT, INVALID):
        return document.key_position(teams_field_parts(key))
    return Position(1, 1)


# -- teams.yaml ----------------------------------------------------------------

_IDENTITY_SECTIONS: Final = ("users", "service_accounts", "hosts")


def teams_fields(data: Mapping[str, Any], blob: str) -> FieldMap:
    fields: dict[str, str] = {TEXT: canonical(blob)}
    for section in _IDENTITY_SECTIONS:
        for identity_id, identity in data.get(section, {}).items():
            fields[f"{section}/{identity_id}"] = canonical(identity)
    for role, members in data.get("infrastructure", {}).items():
        fields[f"infrastructure/{role}"] = canonical(members)
    for team_id, team in data.get("teams", {}).items():
        fields[f"teams/{team_id}/applications"] = canonical(team.get("applications", []))
        for member, role in team.get("members", {}).items():
            fields[f"teams/{team_id}/members/{member}"] = canonical(role)
    if "other_paths" in data:
        fields["other_paths"] = canonical(data["other_paths"])
    if "notifications" in data:
        # A field of its own, so that only settings may change it (`rules._teams`): in the
        # text, projects could (`may_change_teams_text`), and route a production's news away.
        fields["notifications"] = canonical(data["notifications"])
    return fields


def teams_data(fields: FieldMap) -> dict[str, Any]:
    """The teams.yaml document these fields describe (for the effective policy)."""
    data: dict[str, Any] = {"users": {}, "service_accounts": {}, "infrastructure": {}, "teams": {}}
    for key in sorted(fields):
        parsed = json.loads(fields[key])
        parts = key.split("/")
        if parts[0] in _IDENTITY_SECTIONS:
            data.setdefault(parts[0], {})[parts[1]] = parsed
        elif parts[0] == "infrastructure":
            data["infrastructure"][parts[1]] = parsed
        elif parts[0] == "teams" and parts[2] == "applications":
            team = data["teams"].setdefault(parts[1], {"members": {}})
            if parsed:
                team["applications"] = parsed
        elif parts[0] == "teams" and parts[2] == "members":
            data["teams"].setdefault(parts[1], {"members": {}})["members"][parts[3]] = parsed
        elif key == "other_paths":
            data["other_paths"] = parsed
        elif key == "notifications":
            data["notifications"] = parsed
    return data


def teams_field_parts(key: str) -> tuple[str, ...]:
    return tuple(key.split("/"))
