"""Synthetic Git histories of a configuration repository, for the verify benchmark and tests.

Called by `benchmarks.verify` (the history-authorisation benchmark), by
`tests/test_benchmarks_history.py`, and from the command line through
`benchmarks.generate`, whose `history` subcommand is this module:

    python -m benchmarks.generate history DIR --commits 10000 --users 200 --plans 1000 --seed 1

It writes a Git repository whose `main` holds `commits` commits (all of them,
side branches included) by the people of a `benchmarks.generate` configuration:

- the trust anchor, signed by a settings admin: teams.yaml, a few environments,
  the shipped schemas and `plans` plan files;
- landings that edit plan entries of applications the author's team owns,
  where the author's role holds plan.edit on the plan's target: version bumps,
  notes, appended entries, sometimes two plans at once. Authors with a key
  usually sign (always where the target has `signed_commits: true`); authors
  without one commit unsigned, attributed by committer email, only where the
  target allows it;
- true merges (first parent main, second parent a side branch of 1-5 commits
  forked from main a few landings back), signed or not by an operator or a
  tech lead;
- a few policy changes: a settings admin onboards a developer (with a key),
  who then commits like everyone else;
- a share (`unauthorised`, default 1%) of deliberately unauthorised commits:
  an entry of another team's application, a developer editing a plan into an
  environment that grants plan.edit to tech leads only, or an unsigned commit
  where signatures are required. The next authorised commit that touches such
  a plan puts the refused entry back, so only the landing that brought the
  unauthorised commit is refused.

Objects are written fast: blobs and trees through one `git fast-import` stream
of throw-away "scaffold" commits (the trees are what counts), then every real
commit object is built here, SSH-signed in-process with `cryptography` exactly
as `git commit -S` with gpg.format=ssh signs (a `gpgsig` header holding an
SSHSIG armor, namespace "git", sha512; `git verify-commit` accepts them), or,
for the `openpgp` share of the users with a key, with an Ed25519 OpenPGP
certificate Sequoia makes (teams.yaml lists it instead of an SSH key), and
sent as one pack to `git index-pack`; a final `git repack -a -d` drops the
scaffold. Everything is a pure function of `HistorySettings`, seed included:
two runs write the same commit ids.

What the generator knows the reconciler must find is kept in a manifest,
`.git/synthetic-history.json` (`HistoryManifest`): the anchor and tip, how many
landings, and every deliberately unauthorised commit with the landing that
brought it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from benchmarks.generate import (
    DEFAULT_SEED,
    FIRST_NAMES,
    LAST_NAMES,
    GeneratorSettings,
    Team,
    User,
    _render_teams,
    generate_config,
    identity_private_key,
)
from reconciler.core.resources import schemas_dir

MANIFEST_NAME: Final = "synthetic-history.json"
SCAFFOLD_REF: Final = "refs/synthetic-history/scaffold"
# 2026-01-05 08:00 UTC; commits follow at random intervals of 30 s to 15 min, shorter
# in a history longer than `DATED_IN_THE_PAST` commits, so that it still ends before
# 2026-11: a pull request's merge made now, dated before the commits it merges, would
# make git walk back to the first commit dated after it (date order), as no history a
# host holds does.
START_TIME: Final = 1_767_600_000
DATED_IN_THE_PAST: Final = 50_000
NAMESPACE: Final = b"git"
ARMOR_WIDTH: Final = 70  # what ssh-keygen -Y sign writes
PLAN_HEADER: Final = "# yaml-language-server: $schema=../schemas/plan.schema.json"
UNAUTHORISED_KINDS: Final = ("other-team", "role", "unsigned")
_COMMIT_TYPE: Final = 1  # the pack object type of a commit


class HistoryError(RuntimeError):
    """A Git step of the generator failed."""


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """How large the history is, and the seed that fixes every choice."""

    commits: int = 10_000
    users: int = 200
    plans: int = 1_000
    environments: int = 4
    unauthorised: float = 0.01  # share of commits that are deliberately unauthorised
    merges: float = 0.1  # share of landings that are merges of a side branch
    signed: float = 0.7  # how often an author with a key signs where it is optional
    policy_changes: int | None = None  # default: one onboarding per 1,000 commits, at least 1
    seed: int = DEFAULT_SEED
    # Share of the users with a key who sign with an OpenPGP key (a Sequoia-made Ed25519
    # certificate, signing with its subkey) instead of an SSH one; 0 keeps the history a
    # pure function of the settings (Sequoia salts every signature it makes).
    openpgp: float = 0.0
    applications: int | None = None  # default: `GeneratorSettings`'s (three per team)

    @property
    def onboardings(self) -> int:
        if self.policy_changes is not None:
            return self.policy_changes
        return max(1, self.commits // 1000) if self.commits >= 20 else 0

    def config_settings(self) -> GeneratorSettings:
        return GeneratorSettings(
            plans=self.plans,
            environments=self.environments,
            users=self.users,
            applications=self.applications,
            seed=self.seed,
        )

    def check(self) -> None:
        """Raise `ValueError` for settings that cannot make a history."""
        if self.commits < 2:
            raise ValueError("--commits must be at least 2 (the trust anchor and one landing)")
        if self.plans < 1:
            raise ValueError("--plans must be at least 1")
        if self.environments < 2:
            raise ValueError("--environments must be at least 2")
        for name in ("unauthorised", "merges", "signed", "openpgp"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"--{name} must be between 0 and 1")
        if self.onboardings < 0:
            raise ValueError("--policy-changes must not be negative")
        self.config_settings().check()


@dataclass(frozen=True, slots=True)
class Unauthorised:
    """A deliberately unauthorised commit, and the landing the reconciler must refuse for it."""

    commit: str
    landing: str
    path: str
    field: str
    actor: str  # who made it ("" when the reconciler cannot know: an unverifiable commit)
    kind: str  # one of UNAUTHORISED_KINDS


@dataclass(frozen=True, slots=True)
class HistoryManifest:
    """What was generated, and what `reconciler verify` must find in it."""

    settings: HistorySettings
    anchor: str
    tip: str
    commits: int  # reachable from main, the anchor included
    landings: int  # first-parent commits after the anchor: what verify judges
    merges: int
    signed: int
    unsigned: int
    policy_changes: int
    unauthorised: tuple[Unauthorised, ...]
    tainted_at_tip: tuple[str, ...]  # paths where main's tip is not the effective state
    seconds: float = 0.0  # how long generation took
    openpgp_signed: int = 0  # of the signed commits, those signed with an OpenPGP key

    @property
    def refused_landings(self) -> frozenset[str]:
        return frozenset(item.landing for item in self.unauthorised)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["refused_landings"] = sorted(self.refused_landings)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistoryManifest:
        return cls(
            settings=HistorySettings(**data["settings"]),
            anchor=data["anchor"],
            tip=data["tip"],
            commits=data["commits"],
            landings=data["landings"],
            merges=data["merges"],
            signed=data["signed"],
            unsigned=data["unsigned"],
            policy_changes=data["policy_changes"],
            unauthorised=tuple(Unauthorised(**item) for item in data["unauthorised"]),
            tainted_at_tip=tuple(data["tainted_at_tip"]),
            seconds=data.get("seconds", 0.0),
            openpgp_signed=data.get("openpgp_signed", 0),
        )


def manifest_path(directory: Path) -> Path:
    return directory / ".git" / MANIFEST_NAME


def load_manifest(directory: Path) -> HistoryManifest | None:
    """The manifest of a generated history in `directory`, or None when there is none."""
    path = manifest_path(directory)
    if not path.is_file():
        return None
    return HistoryManifest.from_json(json.loads(path.read_text(encoding="utf-8")))


# -- SSH signatures, as `git commit -S` with gpg.format=ssh makes them ----------------------------


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class Signer:
    """Signs commit payloads with one ed25519 key: SSHSIG, namespace "git", sha512."""

    __slots__ = ("_key", "_public_blob")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._public_blob = _ssh_string(b"ssh-ed25519") + _ssh_string(raw)

    def armor(self, payload: bytes) -> bytes:
        """The armored signature `ssh-keygen -Y sign -n git` would write for `payload`."""
        digest = hashlib.sha512(payload).digest()
        signed = (
            b"SSHSIG"
            + _ssh_string(NAMESPACE)
            + _ssh_string(b"")
            + _ssh_string(b"sha512")
            + _ssh_string(digest)
        )
        signature = _ssh_string(b"ssh-ed25519") + _ssh_string(self._key.sign(signed))
        blob = (
            b"SSHSIG"
            + struct.pack(">I", 1)
            + _ssh_string(self._public_blob)
            + _ssh_string(NAMESPACE)
            + _ssh_string(b"")
            + _ssh_string(b"sha512")
            + _ssh_string(signature)
        )
        encoded = base64.b64encode(blob)
        lines = [
            encoded[start : start + ARMOR_WIDTH] for start in range(0, len(encoded), ARMOR_WIDTH)
        ]
        return (
            b"-----BEGIN SSH SIGNATURE-----\n"
            + b"\n".join(lines)
            + b"\n-----END SSH SIGNATURE-----\n"
        )


class OpenPgpSigner:
    """Signs commit payloads as `git commit -S` with gpg.format=openpgp would: a detached
    OpenPGP signature, made in-process by Sequoia with a fresh Ed25519 certificate."""

    __slots__ = ("_signer", "certificate")

    def __init__(self, user_id: str) -> None:
        import pysequoia  # noqa: PLC0415 - only for histories with OpenPGP signers

        key = pysequoia.Tsk.generate(user_id)
        self.certificate = str(key.extract_certificate())  # armored, for teams.yaml
        self._signer = key.signer()

    def armor(self, payload: bytes) -> bytes:
        import pysequoia  # noqa: PLC0415

        return pysequoia.sign(self._signer, payload, mode=pysequoia.SignatureMode.DETACHED)


def commit_object(
    tree: str,
    parents: Sequence[str],
    identity: str,
    message: str,
    signer: Signer | OpenPgpSigner | None,
) -> bytes:
    """A raw commit object; with `signer`, signed in a `gpgsig` header as git does it.

    `identity` is 'Name <email> seconds +0000', used for author and committer.
    """
    headers = [f"tree {tree}", *(f"parent {parent}" for parent in parents)]
    headers += [f"author {identity}", f"committer {identity}"]
    head = "\n".join(headers).encode() + b"\n"
    body = message.encode()
    if signer is None:
        return head + b"\n" + body
    armor = signer.armor(head + b"\n" + body)
    gpgsig = b"gpgsig " + armor.rstrip(b"\n").replace(b"\n", b"\n ") + b"\n"
    return head + gpgsig + b"\n" + body


def object_id(kind: str, data: bytes) -> str:
    """Git's SHA-1 object id of `data` as an object of `kind`."""
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


# -- plans --------------------------------------------------------------------------------------


@dataclass(slots=True)
class PlanDoc:
    """A plan file as the generator edits it, rendered in `benchmarks.generate`'s style."""

    name: str
    source: str | None
    target: str
    entries: list[dict[str, str]]
    notes: str | None
    state: str

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PlanDoc:
        return cls(
            name=data["name"],
            source=data.get("source"),
            target=data["target"],
            entries=[dict(entry) for entry in data["applications"]],
            notes=data.get("notes"),
            state=data["state"],
        )

    def copy(self) -> PlanDoc:
        return PlanDoc(
            self.name,
            self.source,
            self.target,
            [dict(entry) for entry in self.entries],
            self.notes,
            self.state,
        )

    def entry(self, application: str) -> dict[str, str]:
        return next(entry for entry in self.entries if entry["name"] == application)

    def applications(self) -> list[str]:
        return [entry["name"] for entry in self.entries]

    def render(self) -> bytes:
        lines = [PLAN_HEADER, f"name: {self.name}"]
        if self.source is not None:
            lines.append(f"source: {self.source}")
        lines += [f"target: {self.target}", "applications:"]
        for entry in self.entries:
            parts = [f"name: {entry['name']}", f"version: {json.dumps(entry['version'])}"]
            if "action" in entry:
                parts.append(f"action: {entry['action']}")
            if "from" in entry:
                parts.append(f"from: {json.dumps(entry['from'])}")
            lines.append("  - {" + ", ".join(parts) + "}")
        if self.notes:
            lines.append("notes: |")
            lines += [f"  {line}" for line in self.notes.rstrip("\n").split("\n")]
        lines.append(f"state: {self.state}")
        return ("\n".join(lines) + "\n").encode()


def bumped(version: str) -> str:
    """The next patch version: '1.4.0' -> '1.4.1' (a trailing non-number gains '.1')."""
    head, _, last = version.rpartition(".")
    if last.isdigit():
        return f"{head}.{int(last) + 1}" if head else str(int(last) + 1)
    return f"{version}.1"


def bump_entry(entry: dict[str, str], rng: random.Random) -> None:
    entry["version"] = bumped(entry["version"])
    if entry.get("action") == "tag-and-deploy":
        entry["from"] = f"{entry['version']}-rc.{rng.randint(1, 30)}"


# -- the people and what they may do --------------------------------------------------------------


@dataclass(slots=True)
class Person:
    id: str
    name: str
    email: str
    team: str | None
    role: str | None
    signer: Signer | OpenPgpSigner | None

    def identity(self, when: int) -> str:
        return f"{self.name} <{self.email}> {when} +0000"


@dataclass(frozen=True, slots=True)
class EnvironmentRules:
    name: str
    signed: bool
    edit_roles: tuple[str, ...]


@dataclass(slots=True)
class _Spec:
    """One commit to write: its parents and tree by spec index, its author and message."""

    parents: tuple[int, ...]
    author: str  # person id
    signed: bool
    when: int
    message: str


@dataclass(slots=True)
class _Bad:
    spec: int
    path: str
    field: str
    actor: str
    kind: str
    landing: int | None = None


@dataclass(slots=True)
class _Edit:
    """Changes one commit makes: new plan documents (and teams.yaml text), by path."""

    plans: dict[str, PlanDoc] = field(default_factory=dict)
    other: dict[str, bytes] = field(default_factory=dict)
    subjects: list[str] = field(default_factory=list)


class _Scaffold:
    """The `git fast-import` stream: one throw-away commit per real commit, for its tree."""

    def __init__(self, git_dir: Path, repository: Path) -> None:
        self.marks = git_dir / "synthetic-history.marks"
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()
        self._process = subprocess.Popen(
            ["git", "fast-import", "--quiet", f"--export-marks={self.marks}"],
            cwd=repository,
            stdin=subprocess.PIPE,
            stderr=self._errors,
        )
        assert self._process.stdin is not None
        self._stdin: IO[bytes] = self._process.stdin

    def commit(self, mark: int, base: int | None, files: Mapping[str, bytes]) -> None:
        out = [f"commit {SCAFFOLD_REF}\nmark :{mark}\ncommitter s <s> 0 +0000\ndata 0\n".encode()]
        if base is not None:
            out.append(f"from :{base}\n".encode())
        for path, content in files.items():
            out.append(f"M 100644 inline {path}\ndata {len(content)}\n".encode())
            out.append(content)
            out.append(b"\n")
        out.append(b"\n")
        self._stdin.write(b"".join(out))

    def abort(self) -> None:
        self._process.kill()
        self._process.wait()
        with contextlib.suppress(OSError):
            self._stdin.close()
        self._errors.close()

    def finish(self) -> dict[int, str]:
        """Close the stream; the scaffold commit id of every mark."""
        self._stdin.close()
        code = self._process.wait()
        self._errors.seek(0)
        errors = self._errors.read().decode(errors="replace")
        self._errors.close()
        if code != 0:
            raise HistoryError(f"git fast-import exited {code}: {errors.strip()[:2000]}")
        marks: dict[int, str] = {}
        for line in self.marks.read_text().splitlines():
            mark, _, oid = line.partition(" ")
            marks[int(mark[1:])] = oid
        self.marks.unlink()
        return marks


class _Generator:
    """Plays the history forward, one landing at a time, and knows what must be refused."""

    def __init__(self, settings: HistorySettings, scaffold: _Scaffold) -> None:
        self.settings = settings
        self.scaffold = scaffold
        self.rng = random.Random(f"history:{settings.seed}")
        config = generate_config(settings.config_settings())
        self.anchor_files: dict[str, bytes] = {
            path: text.encode() for path, text in config.files.items()
        }
        for schema in sorted(schemas_dir().glob("*.json")):
            self.anchor_files[f"schemas/{schema.name}"] = schema.read_bytes()
        teams = yaml.load(config.files["teams.yaml"], Loader=yaml.CSafeLoader)
        self.teams_users = [
            User(user_id, data["name"], data["emails"][0], bool(data.get("keys")))
            for user_id, data in teams["users"].items()
        ]
        self.teams = [
            Team(name, tuple(data.get("applications", ())), dict(data["members"]))
            for name, data in teams["teams"].items()
        ]
        self.settings_admins: tuple[str, ...] = tuple(teams["infrastructure"]["settings"])
        self.keys = dict(config.signing_keys)
        # Its own random choices, so a history without OpenPGP signers is the same as before.
        chooser = random.Random(f"openpgp:{settings.seed}")
        self.openpgp = {
            user.id: OpenPgpSigner(f"{user.name} <{user.email}>")
            for user in self.teams_users
            if user.has_key
            and user.id not in self.settings_admins
            and chooser.random() < settings.openpgp
        }
        if self.openpgp:
            self.anchor_files["teams.yaml"] = self._render_teams().encode()
        self.people: dict[str, Person] = {}
        for user in self.teams_users:
            self._add_person(user)
        self.owner = {app: team.name for team in self.teams for app in team.applications}
        self.team_apps = {team.name: list(team.applications) for team in self.teams}
        self.environments: dict[str, EnvironmentRules] = {}
        for path, text in config.files.items():
            if path.startswith("environments/"):
                data = yaml.load(text, Loader=yaml.CSafeLoader)
                self.environments[data["name"]] = EnvironmentRules(
                    data["name"],
                    bool(data["gates"].get("signed_commits", False)),
                    tuple(data["permissions"]["plan.edit"]),
                )
        self.plans: dict[str, PlanDoc] = {}
        for path, text in config.files.items():
            if path.startswith("plans/"):
                self.plans[path] = PlanDoc.from_data(yaml.load(text, Loader=yaml.CSafeLoader))
        self.plan_paths = sorted(self.plans)
        self.plans_with: dict[str, set[str]] = {}
        for path, plan in self.plans.items():
            for application in plan.applications():
                self.plans_with.setdefault(application, set()).add(path)
        self.plans_into: dict[str, list[str]] = {}
        for path in self.plan_paths:
            self.plans_into.setdefault(self.plans[path].target, []).append(path)
        self._eligible: dict[tuple[str, str], list[str]] = {}
        # Where main's content is not the effective state: path -> application -> effective entry.
        self.taint: dict[str, dict[str, dict[str, str]]] = {}
        self.last_touched: dict[str, int] = {}  # path -> landing position on main
        self.main_chain: list[int] = []  # spec index of each first-parent commit
        self.specs: list[_Spec] = []
        self.bad: list[_Bad] = []
        self.clock = START_TIME
        self.longest_step = min(900, max(60, 900 * DATED_IN_THE_PAST // max(1, settings.commits)))
        self.merges = 0
        self.onboarded = 0

    # -- people ---------------------------------------------------------------------------------

    def _add_person(self, user: User) -> None:
        team, role = next(
            ((team.name, team.members[user.id]) for team in self.teams if user.id in team.members),
            (None, None),
        )
        signer: Signer | OpenPgpSigner | None = None
        if user.id in self.openpgp:
            signer = self.openpgp[user.id]
        elif user.has_key:
            signer = Signer(self.keys[user.id])
        self.people[user.id] = Person(user.id, user.name, user.email, team, role, signer)

    def _render_teams(self) -> str:
        certificates = {user: signer.certificate for user, signer in self.openpgp.items()}
        return _render_teams(
            self.teams_users, self.teams, self.settings_admins, self.keys, certificates
        )

    def eligible(self, team: str, target: str) -> list[str]:
        """Members of `team` who may edit its entries in plans into `target`, unaided."""
        key = (team, target)
        found = self._eligible.get(key)
        if found is None:
            rules = self.environments[target]
            found = [
                person.id
                for person in self.people.values()
                if person.team == team
                and person.role in rules.edit_roles
                and (person.signer is not None or not rules.signed)
            ]
            self._eligible[key] = found
        return found

    def _sign(self, person: Person, targets: Iterable[str]) -> bool:
        if any(self.environments[target].signed for target in targets):
            return True
        return person.signer is not None and self.rng.random() < self.settings.signed

    def _tick(self) -> int:
        self.clock += self.rng.randint(30, self.longest_step)
        return self.clock

    # -- the walk ---------------------------------------------------------------------------------

    def run(self) -> None:
        seed = _Spec((), self.settings_admins[0], True, self._tick(), "Seed configuration\n")
        anchor = self._emit(seed, None, self.anchor_files)
        self.main_chain.append(anchor)
        total = self.settings.commits
        onboard_at = [
            round(total * (index + 1) / (self.settings.onboardings + 1))
            for index in range(self.settings.onboardings)
        ]
        while len(self.specs) < total:
            remaining = total - len(self.specs)
            if onboard_at and len(self.specs) >= onboard_at[0]:
                onboard_at.pop(0)
                self._onboard()
            elif remaining >= 2 and self.rng.random() < self.settings.merges:
                self._merge(min(self.rng.randint(1, 5), remaining - 1))
            else:
                self._direct()

    def _emit(self, spec: _Spec, base: int | None, files: Mapping[str, bytes]) -> int:
        index = len(self.specs)
        self.specs.append(spec)
        self.scaffold.commit(index + 1, None if base is None else base + 1, files)
        return index

    def _land(self, spec: _Spec, files: Mapping[str, bytes]) -> int:
        """A first-parent commit on main."""
        base = self.main_chain[-1]
        index = self._emit(spec, base, files)
        self.main_chain.append(index)
        position = len(self.main_chain) - 1
        for path in files:
            self.last_touched[path] = position
        return index

    def _direct(self) -> None:
        edit, person, bad = self._make_edit(excluded=frozenset(), base=self.plans)
        self._apply_to_main(edit)
        spec = self._spec(self.main_chain[-1], edit, person, bad)
        index = self._land(spec, {path: plan.render() for path, plan in edit.plans.items()})
        if bad is not None:
            bad.spec = index
            bad.landing = index
            self.bad.append(bad)

    def _spec(self, parent: int, edit: _Edit, person: Person, bad: _Bad | None) -> _Spec:
        """The commit of `edit` by `person`: signed where needed, else as people do."""
        if bad is not None and bad.kind == "unsigned":
            signed = False
        else:
            signed = self._sign(person, (plan.target for plan in edit.plans.values()))
        message = "; ".join(edit.subjects) + "\n"
        return _Spec((parent,), person.id, signed, self._tick(), message)

    def _apply_to_main(self, edit: _Edit) -> None:
        for path, plan in edit.plans.items():
            self.plans[path] = plan
            for application in plan.applications():
                self.plans_with.setdefault(application, set()).add(path)

    def _make_edit(
        self,
        *,
        excluded: frozenset[str],
        base: Mapping[str, PlanDoc],
        fresh: frozenset[str] = frozenset(),
    ) -> tuple[_Edit, Person, _Bad | None]:
        """One commit's edit: authorised, or (at the configured share) deliberately not.

        An unauthorised edit also avoids `fresh`, the plans a side branch already
        changed, so the entry it changes is still main's, hence effective, content.
        """
        if self.rng.random() < self.settings.unauthorised:
            made = self._unauthorised_edit(excluded | fresh, base)
            if made is not None:
                return made
        return (*self._authorised_edit(excluded, base), None)

    def _pick_plan(self, excluded: frozenset[str], candidates: Sequence[str] | None = None) -> str:
        pool = candidates if candidates is not None else self.plan_paths
        for _ in range(200):
            path = pool[self.rng.randrange(len(pool))]
            if path not in excluded:
                return path
        raise ValueError("no plan is free to edit; use more --plans for this many --commits")

    def _authorised_edit(
        self, excluded: frozenset[str], base: Mapping[str, PlanDoc]
    ) -> tuple[_Edit, Person]:
        for _ in range(500):
            path = self._pick_plan(excluded)
            plan = base[path].copy()
            application = self.rng.choice(plan.applications())
            editors = self.eligible(self.owner[application], plan.target)
            if editors:
                break
        else:
            raise ValueError("no user may edit any plan; check --users and --environments")
        person = self.people[self.rng.choice(editors)]
        edit = _Edit()
        self._edit_plan(edit, path, plan, application, person)
        if self.rng.random() < 0.1:  # the same application in a second plan
            others = sorted(
                other
                for other in self.plans_with.get(application, ())
                if other != path
                and other not in excluded
                and person.id in self.eligible(self.owner[application], base[other].target)
            )
            if others:
                second = self.rng.choice(others)
                plan = base[second].copy()
                if application in plan.applications():
                    self._edit_plan(edit, second, plan, application, person)
        return edit, person

    def _restore(self, path: str, plan: PlanDoc) -> dict[str, dict[str, str]]:
        """Put back the effective entries an unauthorised commit changed on main.

        Returns the refused entries, application -> entry, as they are on main.
        """
        refused: dict[str, dict[str, str]] = {}
        for application, effective in self.taint.pop(path, {}).items():
            entry = plan.entry(application)
            refused[application] = dict(entry)
            entry.clear()
            entry.update(effective)
        return refused

    def _edit_plan(
        self, edit: _Edit, path: str, plan: PlanDoc, application: str, person: Person
    ) -> None:
        refused = self._restore(path, plan)
        roll = self.rng.random()
        addable = [
            app
            for app in self.team_apps.get(person.team or "", ())
            if app not in plan.applications()
        ]
        if roll < 0.8 or (roll >= 0.9 and not addable):
            entry = plan.entry(application)
            bump_entry(entry, self.rng)
            edit.subjects.append(f"{plan.name}: {application} {entry['version']}")
        elif roll < 0.9:
            plan.notes = (
                f"{application} {plan.entry(application)['version']}, notes by {person.id}.\n"
                f"Change ticket CHG-{self.rng.randint(10000, 99999)}.\n"
            )
            edit.subjects.append(f"{plan.name}: notes")
        else:
            added = self.rng.choice(addable)
            version = (
                f"{self.rng.randint(0, 9)}.{self.rng.randint(0, 40)}.{self.rng.randint(0, 20)}"
            )
            plan.entries.append({"name": added, "version": version})
            edit.subjects.append(f"{plan.name}: add {added} {version}")
        for refused_application, entry in refused.items():
            # Git sees no change where the owner's new value equals the refused one, and
            # the refused value stays; a value of its own makes the change visible.
            while plan.entry(refused_application) == entry:
                bump_entry(plan.entry(refused_application), self.rng)
        edit.plans[path] = plan

    def _unauthorised_edit(
        self, excluded: frozenset[str], base: Mapping[str, PlanDoc]
    ) -> tuple[_Edit, Person, _Bad] | None:
        """A version bump its author may not make, or None when this history has no such chance."""
        kinds = list(UNAUTHORISED_KINDS)
        self.rng.shuffle(kinds)
        blocked = excluded | frozenset(self.taint)
        for kind in kinds:
            for _ in range(50):
                try:
                    made = self._try_unauthorised(kind, blocked, base)
                except ValueError:  # every candidate plan is blocked
                    made = None
                if made is not None:
                    return made
        return None

    def _try_unauthorised(
        self, kind: str, blocked: frozenset[str], base: Mapping[str, PlanDoc]
    ) -> tuple[_Edit, Person, _Bad] | None:
        if kind == "other-team":
            path = self._pick_plan(blocked)
            plan = base[path].copy()
            application = self.rng.choice(plan.applications())
            owner = self.owner[application]
            intruders = [
                user
                for team in self.team_apps
                if team != owner
                for user in self.eligible(team, plan.target)
            ]
            if not intruders:
                return None
            person = self.people[self.rng.choice(intruders)]
        else:
            targets = [
                name
                for name, rules in self.environments.items()
                if (kind == "role" and "developer" not in rules.edit_roles)
                or (kind == "unsigned" and rules.signed)
            ]
            targets = [target for target in targets if self.plans_into.get(target)]
            if not targets:
                return None
            path = self._pick_plan(blocked, self.plans_into[self.rng.choice(targets)])
            plan = base[path].copy()
            application = self.rng.choice(plan.applications())
            members = [
                person
                for person in self.people.values()
                if person.team == self.owner[application]
                and (
                    (kind == "role" and person.role == "developer" and person.signer is not None)
                    or (kind == "unsigned" and person.signer is None)
                )
            ]
            if not members:
                return None
            person = self.rng.choice(members)
        effective = dict(plan.entry(application))
        bump_entry(plan.entry(application), self.rng)
        edit = _Edit(
            plans={path: plan},
            subjects=[f"{plan.name}: {application} {plan.entry(application)['version']}"],
        )
        self.taint.setdefault(path, {})[application] = effective
        actor = "" if kind == "unsigned" else person.id
        return edit, person, _Bad(-1, path, f"app:{application}", actor, kind)

    def _merge(self, length: int) -> None:
        """A side branch of `length` commits forked a few landings back, merged with --no-ff."""
        fork_position = max(0, len(self.main_chain) - 1 - self.rng.randint(0, 3))
        fork = self.main_chain[fork_position]
        # Plans main changed after the fork, or whose main content is refused, stay out of it.
        excluded = frozenset(
            path for path, position in self.last_touched.items() if position > fork_position
        ) | frozenset(self.taint)
        overlay: dict[str, PlanDoc] = {}
        view = _Overlay(self.plans, overlay)
        previous = fork
        side_bad: list[_Bad] = []
        locked: set[str] = set()
        author = ""
        for _ in range(length):
            edit, person, bad = self._make_edit(
                excluded=excluded | locked, base=view, fresh=frozenset(overlay)
            )
            author = author or person.id
            overlay.update(edit.plans)
            spec = self._spec(previous, edit, person, bad)
            previous = self._emit(
                spec, previous, {path: plan.render() for path, plan in edit.plans.items()}
            )
            if bad is not None:
                bad.spec = previous
                side_bad.append(bad)
                locked.add(bad.path)
        mergers = [
            person
            for person in self.people.values()
            if person.signer is not None and person.role in ("deployment", "tech-lead")
        ]
        merger = self.rng.choice(mergers)
        branch = f"{author}/change-{len(self.specs)}"
        spec = _Spec(
            (self.main_chain[-1], previous),
            merger.id,
            self.rng.random() < 0.85,
            self._tick(),
            f"Merge branch '{branch}'\n",
        )
        self._apply_to_main(_Edit(plans=overlay))
        index = self._land(spec, {path: plan.render() for path, plan in overlay.items()})
        for bad in side_bad:
            bad.landing = index
            self.bad.append(bad)
        self.merges += 1

    def _onboard(self) -> None:
        """A settings admin adds a developer, with a key, to an application team."""
        serial = self.settings.users + self.onboarded + 1
        first = FIRST_NAMES[self.rng.randrange(len(FIRST_NAMES))]
        last = LAST_NAMES[self.rng.randrange(len(LAST_NAMES))]
        user = User(
            f"{first}-{last}-{serial:05d}",
            f"{first.title()} {last.title()}",
            f"{first}-{last}-{serial:05d}@example.com",
            True,
        )
        teams = [team for team in self.teams if team.applications]
        team = self.rng.choice(teams)
        team.members[user.id] = "developer"
        self.keys[user.id] = identity_private_key(self.settings.seed, user.id)
        self.teams_users.append(user)
        self._add_person(user)
        self._eligible.clear()
        text = self._render_teams()
        admin = self.people[self.rng.choice(self.settings_admins)]
        spec = _Spec(
            (self.main_chain[-1],),
            admin.id,
            True,
            self._tick(),
            f"Onboard {user.id} to {team.name} as developer\n",
        )
        self._land(spec, {"teams.yaml": text.encode()})
        self.onboarded += 1


class _Overlay(Mapping[str, PlanDoc]):
    """Main's plans as a side branch sees them: its own edits over main's content."""

    def __init__(self, main: Mapping[str, PlanDoc], overlay: Mapping[str, PlanDoc]) -> None:
        self._main = main
        self._overlay = overlay

    def __getitem__(self, path: str) -> PlanDoc:
        found = self._overlay.get(path)
        return found if found is not None else self._main[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._main)

    def __len__(self) -> int:
        return len(self._main)


# -- writing the repository -------------------------------------------------------------------


def _git(directory: Path, *args: str, data: bytes | None = None) -> bytes:
    completed = subprocess.run(
        ["git", *args], cwd=directory, input=data, capture_output=True, check=False
    )
    if completed.returncode != 0:
        message = completed.stderr.decode(errors="replace").strip()
        raise HistoryError(f"git {' '.join(args[:3])} failed: {message[:2000]}")
    return completed.stdout


def _pack_header(kind: int, size: int) -> bytes:
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def pack_of(objects: Sequence[tuple[int, bytes]]) -> bytes:
    """A version-2 pack of whole (undeltified) objects, as `git index-pack --stdin` reads it."""
    parts = [b"PACK" + struct.pack(">II", 2, len(objects))]
    for kind, data in objects:
        parts.append(_pack_header(kind, len(data)))
        parts.append(zlib.compress(data, 1))
    body = b"".join(parts)
    return body + hashlib.sha1(body, usedforsecurity=False).digest()


def _trees(directory: Path, scaffold_ids: Mapping[int, str], count: int) -> list[str]:
    """The tree of every scaffold commit, in spec order, through one `cat-file` process."""
    query = "".join(f"{scaffold_ids[index + 1]}^{{tree}}\n" for index in range(count))
    output = _git(directory, "cat-file", "--batch-check=%(objectname)", data=query.encode())
    trees = output.decode().split()
    if len(trees) != count:
        raise HistoryError(f"expected {count} trees from git cat-file, got {len(trees)}")
    return trees


def generate_history(
    settings: HistorySettings, directory: Path, *, replace: bool = False, repack: bool = True
) -> HistoryManifest:
    """Write the history for `settings` into a new repository at `directory`."""
    settings.check()
    started = time.perf_counter()
    _prepare_directory(directory, replace=replace)
    _git(directory, "init", "--quiet", "--initial-branch=main")
    git_dir = directory / ".git"
    scaffold = _Scaffold(git_dir, directory)
    generator = _Generator(settings, scaffold)
    try:
        generator.run()
    except BaseException:
        scaffold.abort()
        raise
    scaffold_ids = scaffold.finish()
    specs = generator.specs
    trees = _trees(directory, scaffold_ids, len(specs))
    ids: list[str] = []
    objects: list[tuple[int, bytes]] = []
    signed = openpgp_signed = 0
    for index, spec in enumerate(specs):
        person = generator.people[spec.author]
        signer = person.signer if spec.signed else None
        signed += signer is not None
        openpgp_signed += isinstance(signer, OpenPgpSigner)
        raw = commit_object(
            trees[index],
            [ids[parent] for parent in spec.parents],
            person.identity(spec.when),
            spec.message,
            signer,
        )
        ids.append(object_id("commit", raw))
        objects.append((_COMMIT_TYPE, raw))
    _git(directory, "index-pack", "--stdin", data=pack_of(objects))
    anchor, tip = ids[generator.main_chain[0]], ids[generator.main_chain[-1]]
    _git(directory, "update-ref", "refs/heads/main", tip)
    _git(directory, "update-ref", "-d", SCAFFOLD_REF)
    if repack:
        _git(directory, "repack", "-a", "-d", "-q")
    _git(directory, "reset", "--quiet", "--hard", "main")
    manifest = HistoryManifest(
        settings=settings,
        anchor=anchor,
        tip=tip,
        commits=len(specs),
        landings=len(generator.main_chain) - 1,
        merges=generator.merges,
        signed=signed,
        unsigned=len(specs) - signed,
        policy_changes=generator.onboarded,
        unauthorised=tuple(
            Unauthorised(
                ids[bad.spec],
                ids[bad.landing if bad.landing is not None else bad.spec],
                bad.path,
                bad.field,
                bad.actor,
                bad.kind,
            )
            for bad in generator.bad
        ),
        tainted_at_tip=tuple(sorted(generator.taint)),
        seconds=time.perf_counter() - started,
        openpgp_signed=openpgp_signed,
    )
    manifest_path(directory).write_text(json.dumps(manifest.as_json(), indent=2) + "\n")
    return manifest


def _prepare_directory(directory: Path, *, replace: bool) -> None:
    if directory.exists() and any(directory.iterdir()):
        if not replace:
            raise FileExistsError(f"{directory} is not empty; pass --replace to overwrite")
        if load_manifest(directory) is None:
            raise FileExistsError(
                f"{directory} holds no generated history; refusing to remove it with --replace"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)


# -- one more commit, for incremental runs -------------------------------------------------------


def append_signed_commit(directory: Path, manifest: HistoryManifest) -> str:
    """Add one authorised, signed commit on main (a tech lead bumps their entry); its id.

    Deterministic for the seed and main's tip. It edits a plan whose content on
    main is the effective state, so the new landing is authorised.
    """
    tip = _git(directory, "rev-parse", "--verify", "refs/heads/main").decode().strip()
    teams = yaml.load(_git(directory, "cat-file", "blob", f"{tip}:teams.yaml"), yaml.CSafeLoader)
    owners = {
        app: team for team, data in teams["teams"].items() for app in data.get("applications", ())
    }
    tainted = set(manifest.tainted_at_tip)
    listing = _git(directory, "ls-tree", "-z", "--name-only", f"{tip}", "plans/").decode()
    plans = sorted(path for path in listing.split("\0") if path and path not in tainted)
    rng = random.Random(f"append:{manifest.settings.seed}:{tip}")
    leads: list[str] = []
    while not leads:  # a plan whose first application's team has a tech lead with an SSH key
        path = rng.choice(plans)
        plan = PlanDoc.from_data(
            yaml.load(_git(directory, "cat-file", "blob", f"{tip}:{path}"), yaml.CSafeLoader)
        )
        entry = plan.entries[0]
        team = teams["teams"][owners[entry["name"]]]
        leads = sorted(
            user
            for user, role in team["members"].items()
            if role == "tech-lead"
            and str((teams["users"][user].get("keys") or [""])[0]).startswith("ssh-")
        )
    lead = leads[0]
    bump_entry(entry, rng)
    blob = _git(directory, "hash-object", "-w", "--stdin", data=plan.render()).decode().strip()
    with tempfile.TemporaryDirectory(prefix="synthetic-index-") as scratch:
        index = {**os.environ, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        for args in (
            ["read-tree", tip],
            ["update-index", "--cacheinfo", f"100644,{blob},{path}"],
        ):
            completed = subprocess.run(
                ["git", *args], cwd=directory, env=index, capture_output=True, check=False
            )
            if completed.returncode != 0:
                raise HistoryError(f"git {args[0]} failed: {completed.stderr.decode()}")
        tree = (
            subprocess.run(
                ["git", "write-tree"], cwd=directory, env=index, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
    when_line = _git(directory, "log", "-1", "--format=%ct", tip).decode().strip()
    user = teams["users"][lead]
    person = Person(
        lead,
        user["name"],
        user["emails"][0],
        None,
        None,
        Signer(identity_private_key(manifest.settings.seed, lead)),
    )
    raw = commit_object(
        tree,
        [tip],
        person.identity(int(when_line) + 60),
        f"{plan.name}: {entry['name']} {entry['version']}\n",
        person.signer,
    )
    commit = _git(directory, "hash-object", "-w", "-t", "commit", "--stdin", data=raw)
    oid = commit.decode().strip()
    _git(directory, "update-ref", "refs/heads/main", oid, tip)
    return oid


def allowed_signers(directory: Path) -> str:
    """An allowed-signers file (`gpg.ssh.allowedSignersFile`) for every key of main's teams.yaml."""
    teams = yaml.load(_git(directory, "cat-file", "blob", "main:teams.yaml"), yaml.CSafeLoader)
    lines = []
    for section in ("users", "service_accounts"):
        for identity, data in teams.get(section, {}).items():
            for key in data.get("keys", ()):
                if not key.startswith("ssh-"):
                    continue  # an OpenPGP certificate: gpg's business, not ssh-keygen's
                key_type, encoded = key.split()[:2]
                email = (data.get("emails") or [f"{identity}@example.com"])[0]
                lines.append(f'{email} namespaces="git" {key_type} {encoded}')
    return "\n".join(lines) + "\n"


# -- command line -----------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The `history` subcommand's options (registered by `benchmarks.generate`)."""
    defaults = HistorySettings()
    parser.add_argument("directory", type=Path, metavar="DIR", help="the new repository")
    parser.add_argument(
        "--commits",
        type=int,
        default=defaults.commits,
        help="commits reachable from main, the trust anchor included",
    )
    parser.add_argument("--users", type=int, default=defaults.users, help="users")
    parser.add_argument("--plans", type=int, default=defaults.plans, help="plan files")
    parser.add_argument(
        "--environments", type=int, default=defaults.environments, help="environments"
    )
    parser.add_argument(
        "--unauthorised",
        type=float,
        default=defaults.unauthorised,
        help="share of deliberately unauthorised commits",
    )
    parser.add_argument(
        "--merges",
        type=float,
        default=defaults.merges,
        help="share of landings that merge a side branch",
    )
    parser.add_argument(
        "--policy-changes",
        type=int,
        default=None,
        help="onboardings by a settings admin (default: one per 1,000 commits)",
    )
    parser.add_argument(
        "--openpgp",
        type=float,
        default=defaults.openpgp,
        help="share of the users with a key who sign with an OpenPGP key instead of SSH",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--replace", action="store_true", help="overwrite DIR when it holds a generated history"
    )
    parser.add_argument(
        "--no-repack",
        action="store_true",
        help="keep fast-import's pack and the scaffold commits (faster)",
    )


def settings_from_arguments(arguments: argparse.Namespace) -> HistorySettings:
    return HistorySettings(
        commits=arguments.commits,
        users=arguments.users,
        plans=arguments.plans,
        environments=arguments.environments,
        unauthorised=arguments.unauthorised,
        merges=arguments.merges,
        policy_changes=arguments.policy_changes,
        seed=arguments.seed,
        openpgp=arguments.openpgp,
    )


def run_command(arguments: argparse.Namespace) -> int:
    """`python -m benchmarks.generate history DIR ...`."""
    settings = settings_from_arguments(arguments)
    try:
        manifest = generate_history(
            settings,
            arguments.directory,
            replace=arguments.replace,
            repack=not arguments.no_repack,
        )
    except HistoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(describe(manifest, arguments.directory))
    return 0


def describe(manifest: HistoryManifest, directory: Path) -> str:
    settings = manifest.settings
    return (
        f"wrote {directory} in {manifest.seconds:.1f} s: {manifest.commits} commits "
        f"({manifest.landings} landings after the anchor, {manifest.merges} merges, "
        f"{manifest.signed} signed ({manifest.openpgp_signed} with OpenPGP), "
        f"{manifest.unsigned} unsigned, "
        f"{manifest.policy_changes} policy changes), {settings.users} users, "
        f"{settings.plans} plans, {settings.environments} environments; "
        f"{len(manifest.unauthorised)} deliberately unauthorised commits in "
        f"{len(manifest.refused_landings)} landings (seed {settings.seed})"
    )
