"""Stage 2, validate: the rules of teams.yaml, once it passed its schema.

Users named where users are meant, one team per application, and one identity per
id, key and email; and a settings user who can sign, or nobody could change the policy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from reconciler.core import openpgp
from reconciler.core.documents import Document, JsonPath
from reconciler.core.model import email_key
from reconciler.core.sshkeys import KeyFormatError, parse_public_key
from reconciler.core.validate_findings import Findings, suggest


def check_teams(document: Document, out: Findings) -> None:
    data: Mapping[str, Any] = document.data
    users = data["users"]
    for role in ("settings", "projects"):
        for index, user in enumerate(data["infrastructure"].get(role, ())):
            if user not in users:
                out.at(
                    document,
                    ("infrastructure", role, index),
                    f"unknown user '{user}'",
                    suggest(user, users, "users:"),
                )
    _check_team_entries(document, out)
    _check_identities(document, out)
    if not any(
        users.get(user, {}).get("keys") for user in data["infrastructure"].get("settings", ())
    ):
        out.at(
            document,
            ("infrastructure",),
            "no settings user has an SSH key, so nobody could ever sign a change to the policy",
            "add a key to at least one user listed under infrastructure.settings",
            key=True,
        )


def _check_team_entries(document: Document, out: Findings) -> None:
    """Each team's members are users, and each application belongs to one team."""
    users = document.data["users"]
    owners: dict[str, str] = {}
    for team_name, team in document.data["teams"].items():
        for user in team["members"]:
            if user not in users:
                out.at(
                    document,
                    ("teams", team_name, "members", user),
                    f"unknown user '{user}'",
                    suggest(user, users, "users:"),
                    key=True,
                )
        for index, application in enumerate(team.get("applications", ())):
            if application in owners:
                out.at(
                    document,
                    ("teams", team_name, "applications", index),
                    f"application '{application}' already belongs to team '{owners[application]}'",
                    "an application belongs to exactly one team; remove it from one of them",
                )
            else:
                owners[application] = team_name


def _check_identities(document: Document, out: Findings) -> None:
    """Ids, keys and users' emails each belong to one identity."""
    key_holders: dict[str, str] = {}
    email_holders: dict[str, str] = {}
    # identity.resolve looks an id up in users first: a service account or host
    # sharing a user's id would act as that user.
    id_sections: dict[str, str] = {}
    for section in ("users", "service_accounts", "hosts"):
        for identity_id, identity in document.data.get(section, {}).items():
            first = id_sections.setdefault(identity_id, section)
            if first != section:
                out.at(
                    document,
                    (section, identity_id),
                    f"'{identity_id}' is in both {first} and {section}",
                    "ids must be unique across users, service accounts and hosts; rename one",
                    key=True,
                )
            _check_keys_held(document, (section, identity_id), identity, key_holders, out)
            if section == "users":
                _check_emails_held(document, identity_id, identity, email_holders, out)


def _check_keys_held(
    document: Document,
    at: tuple[str, str],
    identity: Mapping[str, Any],
    key_holders: dict[str, str],
    out: Findings,
) -> None:
    """An identity's keys (`at`: its section and id) belong to no other identity."""
    identity_id = at[1]
    for index, key in enumerate(identity.get("keys", ())):
        path = (*at, "keys", index)
        fingerprints = _key_fingerprints(key, document, path, out)
        for fingerprint in fingerprints:
            if fingerprint in key_holders and key_holders[fingerprint] != identity_id:
                out.at(
                    document,
                    path,
                    f"this key already belongs to '{key_holders[fingerprint]}'",
                    "one key belongs to one identity; each person needs their own key",
                )
                break
        for fingerprint in fingerprints:
            key_holders.setdefault(fingerprint, identity_id)


def _check_emails_held(
    document: Document,
    identity_id: str,
    identity: Mapping[str, Any],
    email_holders: dict[str, str],
    out: Findings,
) -> None:
    """A user's emails belong to no other user."""
    for index, email in enumerate(identity.get("emails", ())):
        owner = email_holders.setdefault(email_key(email), identity_id)
        if owner != identity_id:
            out.at(
                document,
                ("users", identity_id, "emails", index),
                f"email '{email}' already belongs to '{owner}'",
                "an email identifies one user; remove it from one of them",
            )


def _key_fingerprints(key: str, document: Document, path: JsonPath, out: Findings) -> list[str]:
    """The fingerprints of one key entry (an OpenPGP certificate's: each of its keys),
    or none, reported, when it does not decode."""
    if openpgp.is_certificate(key):
        try:
            found = openpgp.certificates(key)
        except openpgp.CertificateError as exc:
            out.at(document, path, f"not a valid OpenPGP public key: {exc}", openpgp.HINT)
            return []
        return [subkey.fingerprint for certificate in found for subkey in certificate.keys]
    try:
        return [parse_public_key(key).fingerprint]
    except KeyFormatError as exc:
        out.at(
            document,
            path,
            f"not a valid SSH public key: {exc}",
            "paste the whole line of the .pub file",
        )
        return []


def check_notification_routes(
    document: Document, environments: Collection[str], unsettled: Collection[str], out: Findings
) -> None:
    """Each environment a notification route names is defined: a typo would route nothing,
    silently. One whose file did not validate is left to that file's own findings."""
    for index, route in enumerate(document.data.get("notifications", ())):
        for position, name in enumerate(route.get("environments", ())):
            if name not in environments and name not in unsettled:
                out.at(
                    document,
                    ("notifications", index, "environments", position),
                    f"unknown environment '{name}'",
                    suggest(name, environments, "environments/"),
                )
