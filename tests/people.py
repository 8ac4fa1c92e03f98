"""The seed story's people: identities with real ssh-keygen keys, and the teams.yaml
that lists them.

Keys are made once per test session with `ssh-keygen` (see conftest's `people`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.resources import example_dir
from tests.configrepo import dump


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    email: str
    key: Path  # private key file; the public key is key.pub

    @property
    def public_key(self) -> str:
        return self.key.with_suffix(".pub").read_text().strip()


def make_key(directory: Path, name: str) -> Path:
    """An ed25519 key made by ssh-keygen (once: the session's people share their keys)."""
    key = directory / name
    if key.exists():
        return key
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


@dataclass
class People:
    """The seed story's cast, each with a key, plus Mallory who is nobody."""

    directory: Path
    by_id: dict[str, Person] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Person:
        try:
            return self.by_id[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def create(cls, directory: Path) -> People:
        cast = {
            "alice": "Alice Tech",
            "bob": "Bob Dev",
            "carol": "Carol Test",
            "diana": "Diana Lead",
            "erik": "Erik Dev",
            "fiona": "Fiona Test",
            "ravi": "Ravi Review",
            "olga": "Olga Ops",
            "pm": "Pat Manager",
            "root": "Root Admin",
            "reconciler": "Reconciler",
            "mallory": "Mallory",
        }
        people = cls(directory)
        for person_id, name in cast.items():
            people.by_id[person_id] = Person(
                person_id, name, f"{person_id}@example.com", make_key(directory, person_id)
            )
        return people

    def second_key(self, person: Person, label: str = "2") -> Person:
        """The same person with another key (a new laptop)."""
        return Person(
            person.id, person.name, person.email, make_key(self.directory, f"{person.id}-{label}")
        )


def seed_teams(people: People) -> dict[str, Any]:
    """The example teams.yaml with the people's real public keys (bob and erik have none)."""
    data: dict[str, Any] = yaml.safe_load((example_dir() / "teams.yaml").read_text())
    for user_id, user in data["users"].items():
        if "keys" in user:
            user["keys"] = [people.by_id[user_id].public_key]
    data["service_accounts"]["reconciler"]["keys"] = [people.reconciler.public_key]
    return data


HOST_EMAIL = "noreply@github.com"


def teams_with_host(people: People, host_key: Path, **entry: Any) -> dict[str, Any]:
    """The seed teams.yaml with GitHub as a host that signs with `host_key` (more of its
    entry, such as vouches_for_squash_author, in `entry`)."""
    teams = seed_teams(people)
    teams["hosts"] = {
        "github": {
            "identity": "author",
            "emails": [HOST_EMAIL],
            "keys": [host_key.with_suffix(".pub").read_text().strip()],
            **entry,
        }
    }
    return teams


def grant_bob_deployment(data: dict[str, Any]) -> None:
    """A teams.yaml change (for `teams_with`): bob joins operations as a deployer."""
    data["teams"]["operations"]["members"]["bob"] = "deployment"


def teams_with(people: People, change: Callable[[dict[str, Any]], object]) -> str:
    """The seed teams.yaml after `change` edits its data."""
    data = seed_teams(people)
    change(data)
    return dump(data)


def make_mallory_the_settings_user(teams: dict[str, Any], people: People) -> None:
    """Edit teams.yaml's `teams` as mallory would take over: she is a user, with her key,
    and the only one who may change the settings."""
    teams["users"]["mallory"] = {
        "name": "Mallory",
        "emails": ["mallory@example.com"],
        "keys": [people.mallory.public_key],
    }
    teams["infrastructure"]["settings"] = ["mallory"]
