"""Synthetic configuration repositories for benchmarks and scale tests.

Called by `benchmarks.validate` (the validation benchmark), by
`tests/test_benchmarks_generate.py`, and from the command line:

    python -m benchmarks.generate config DIR --plans 2000 --environments 20 --users 1000

It writes a configuration repository that `reconciler validate` accepts with no
findings: one promotion chain of environments (order 1..N, each promoting from
the one before) whose approval gates can all be met, teams that own the
applications, users with emails and (for everyone who must sign) ed25519 keys,
a settings admin and a service account with keys, and plans of one to five
application entries whose `source` is always their target's `promotes_from`.
Everything is a pure function of `GeneratorSettings`, seed included, so two
runs with the same settings write byte-identical files.

The module has three layers, so that the `history` subcommand (a Git history
of M commits over these files, `benchmarks.history`) reuses the first two:

1. `generate_config(settings) -> SyntheticConfig`: pure, in memory. The
   result carries the file texts and, per identity, the ed25519 private key
   behind its public key (`signing_keys`), which a history builder needs to
   sign commits as that identity.
2. `write_config(config, directory)` and `init_repository(directory)`: the
   file-system edge.
3. The CLI: one `argparse` subcommand per entry of `SUBCOMMANDS`: `config`,
   and `history` (`python -m benchmarks.generate history DIR --commits 10000`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from yaml.nodes import ScalarNode

from reconciler.core.resources import schemas_dir

DEFAULT_SEED: Final = 20261122
SETTINGS_ADMINS: Final = ("root", "root-deputy")
PROJECTS_ADMIN: Final = "pm"
SERVICE_ACCOUNT: Final = "reconciler"
OPERATIONS_TEAM: Final = "operations"
ARCHITECTURE_TEAM: Final = "architecture"
# Users outside the application teams: two settings admins, the projects admin,
# at least two operators and at least two architecture reviewers.
RESERVED_USERS: Final = len(SETTINGS_ADMINS) + 1 + 2 + 2
# The strictest gate generated (the last environment): two tech leads and one tester.
LAST_GATE_TECH_LEADS: Final = 2

FIRST_NAMES: Final = (
    "ada", "alan", "barbara", "claude", "dennis", "donald", "edsger", "frances", "grace",
    "guido", "hedy", "ivan", "john", "ken", "linus", "margaret", "niklaus", "radia",
    "rasmus", "shafi", "sophie", "tim", "tony", "yukihiro",
)  # fmt: skip
LAST_NAMES: Final = (
    "allen", "backus", "berners-lee", "dijkstra", "goldwasser", "hamilton", "hoare",
    "hopper", "kay", "knuth", "lamarr", "liskov", "lovelace", "matsumoto", "perlman",
    "ritchie", "rossum", "shannon", "sutherland", "thompson", "torvalds", "turing", "wilson",
    "wirth",
)  # fmt: skip
TEAM_WORDS: Final = (
    "accounts", "billing", "catalog", "checkout", "customer-portal", "delivery", "ecommerce",
    "fraud", "identity", "inventory", "invoicing", "loyalty", "marketing", "mobile",
    "notifications", "orders", "payments", "pricing", "recommendations", "returns", "reviews",
    "search", "shipping", "support",
)  # fmt: skip
COMPONENTS: Final = (
    "api", "web", "worker", "scheduler", "gateway", "admin", "reports", "importer",
    "exporter", "db-migrations", "cache", "events",
)  # fmt: skip
TIMEZONES: Final = ("Europe/Lisbon", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri")


@dataclass(frozen=True, slots=True)
class GeneratorSettings:
    """How large the repository is, and the seed that fixes every choice."""

    plans: int = 2000
    environments: int = 20
    users: int = 1000
    teams: int | None = None  # default: one application team per 25 users, at least 2
    applications: int | None = None  # default: three per application team
    seed: int = DEFAULT_SEED

    @property
    def team_count(self) -> int:
        return self.teams if self.teams is not None else max(2, self.users // 25)

    @property
    def application_count(self) -> int:
        return self.applications if self.applications is not None else 3 * self.team_count

    def check(self) -> None:
        """Raise `ValueError` for sizes that cannot make a valid repository."""
        if self.environments < 1:
            raise ValueError("--environments must be at least 1")
        if self.plans < 0:
            raise ValueError("--plans must not be negative")
        if self.team_count < 1:
            raise ValueError("--teams must be at least 1")
        if self.application_count < 1:
            raise ValueError("--applications must be at least 1")
        # Each application team needs a tech lead and a tester (the last gate's tester).
        needed = RESERVED_USERS + 2 * self.team_count
        if self.users < needed:
            raise ValueError(
                f"--users must be at least {needed} for {self.team_count} team(s): "
                f"{RESERVED_USERS} admins, operators and reviewers, "
                "and a tech lead and a tester per team"
            )


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    email: str
    has_key: bool


@dataclass(frozen=True, slots=True)
class Team:
    name: str
    applications: tuple[str, ...]
    members: dict[str, str]  # user id -> role


@dataclass(frozen=True, slots=True)
class EnvironmentSpec:
    name: str
    order: int
    promotes_from: str | None


@dataclass(slots=True)
class SyntheticConfig:
    """A generated repository, in memory: file texts by repository path, and signing keys."""

    settings: GeneratorSettings
    files: dict[str, str]
    environments: tuple[EnvironmentSpec, ...]
    # Identity id (user or service account) -> the private key behind its listed public key.
    signing_keys: dict[str, Ed25519PrivateKey] = field(repr=False)


def generate_config(settings: GeneratorSettings) -> SyntheticConfig:
    """The whole repository for `settings`, deterministic in `settings.seed`."""
    settings.check()
    rng = random.Random(settings.seed)
    environments = _environment_chain(settings.environments)
    users, teams, settings_admins = _people(settings, rng)
    signing_keys = {
        user.id: identity_private_key(settings.seed, user.id) for user in users if user.has_key
    }
    signing_keys[SERVICE_ACCOUNT] = identity_private_key(settings.seed, SERVICE_ACCOUNT)
    files: dict[str, str] = {
        "teams.yaml": _render_teams(users, teams, settings_admins, signing_keys),
    }
    for environment in environments:
        files[f"environments/{environment.name}.yaml"] = _render_environment(
            environment, len(environments), rng
        )
    applications = [app for team in teams for app in team.applications]
    for index in range(1, settings.plans + 1):
        name, text = _render_plan(index, environments, applications, rng)
        files[f"plans/{name}.yaml"] = text
    return SyntheticConfig(settings, files, tuple(environments), signing_keys)


def identity_private_key(seed: int, identity_id: str) -> Ed25519PrivateKey:
    """The ed25519 key of `identity_id`, derived from the seed (unique per identity)."""
    secret = hashlib.sha256(f"gitops-reconciler-bench:{seed}:{identity_id}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(secret)


def openssh_public_key(key: Ed25519PrivateKey, comment: str) -> str:
    """The authorized_keys line of `key`: 'ssh-ed25519 AAAA... comment'."""
    encoded = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{encoded} {comment}"


def write_config(config: SyntheticConfig, directory: Path, *, replace: bool = False) -> None:
    """Write `config` into `directory`, with the shipped schemas under schemas/.

    Refuses a directory that already holds a configuration unless `replace`,
    which first removes its teams.yaml, environments/, plans/ and schemas/.
    """
    directory.mkdir(parents=True, exist_ok=True)
    owned = ("teams.yaml", "environments", "plans", "schemas", "deployments")
    present = [name for name in owned if (directory / name).exists()]
    if present and not replace:
        raise FileExistsError(
            f"{directory} already holds {', '.join(present)}; pass --replace to overwrite"
        )
    for name in present:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for folder in ("environments", "plans"):
        (directory / folder).mkdir()
    for relative, text in config.files.items():
        (directory / relative).write_text(text, encoding="utf-8")
    shutil.copytree(schemas_dir(), directory / "schemas")


def init_repository(directory: Path) -> None:
    """Make `directory` a Git repository (no commits), so `--repo DIR` resolves to it.

    Without its own `.git`, `reconciler validate --repo DIR` would climb to an
    enclosing repository and validate that one instead.
    """
    if (directory / ".git").exists():
        return
    subprocess.run(
        ["git", "init", "--quiet", "--initial-branch=main", str(directory)],
        check=True,
        capture_output=True,
    )


# -- people and the chain ---------------------------------------------------------------------


def _environment_chain(count: int) -> list[EnvironmentSpec]:
    names = [
        "development" if order == 1 else "production" if order == count else f"stage-{order:02d}"
        for order in range(1, count + 1)
    ]
    return [
        EnvironmentSpec(name, order, names[order - 2] if order > 1 else None)
        for order, name in enumerate(names, start=1)
    ]


def _people(
    settings: GeneratorSettings, rng: random.Random
) -> tuple[list[User], list[Team], tuple[str, ...]]:
    """Users, and teams whose roles keep every generated gate satisfiable."""
    users: list[User] = []

    def add(user_id: str, name: str, *, has_key: bool) -> str:
        users.append(User(user_id, name, f"{user_id}@example.com", has_key))
        return user_id

    # Every settings admin signs policy changes, so all of them hold keys.
    for admin in SETTINGS_ADMINS:
        add(admin, f"{admin.replace('-', ' ').title()} Admin", has_key=True)
    add(PROJECTS_ADMIN, "Pat Manager", has_key=True)
    remaining = settings.users - len(users)
    operators = max(2, settings.users // 50)
    reviewers = max(LAST_GATE_TECH_LEADS, settings.users // 100)
    team_members = remaining - operators - reviewers

    def person(index: int, *, has_key: bool) -> str:
        first = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))]
        last = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
        return add(
            f"{first}-{last}-{index:05d}", f"{first.title()} {last.title()}", has_key=has_key
        )

    serial = iter(range(1, settings.users + 1))
    operations = {person(next(serial), has_key=True): "deployment" for _ in range(operators)}
    # Reviewers: tech leads in no application team, so a plan always has an approver
    # who did not edit it (the seed story's architecture team).
    architecture = {person(next(serial), has_key=True): "tech-lead" for _ in range(reviewers)}

    team_names = _unique_names(TEAM_WORDS, settings.team_count)
    memberships: list[dict[str, str]] = [{} for _ in team_names]
    for position in range(team_members):
        team_index = position % len(team_names)
        rank = position // len(team_names)  # 0: the team's first member, 1: its second, ...
        role = _role_for_rank(rank)
        # Tech leads and testers approve signed gates, so they always hold a key;
        # developers sometimes do.
        has_key = role != "developer" or rng.random() < 0.6
        memberships[team_index][person(next(serial), has_key=has_key)] = role

    applications = _applications(team_names, settings.application_count)
    teams = [
        Team(name, tuple(applications[name]), members)
        for name, members in zip(team_names, memberships, strict=True)
    ]
    teams.append(Team(ARCHITECTURE_TEAM, (), architecture))
    teams.append(Team(OPERATIONS_TEAM, (), operations))
    return users, teams, SETTINGS_ADMINS


def _role_for_rank(rank: int) -> str:
    if rank == 0 or rank % 8 == 7:
        return "tech-lead"
    if rank == 1 or rank % 6 == 5:
        return "tester"
    return "developer"


def _unique_names(words: Sequence[str], count: int) -> list[str]:
    """`count` identifiers: the words first, then the words with a number."""
    return [
        words[index % len(words)]
        if index < len(words)
        else f"{words[index % len(words)]}-{index // len(words) + 1}"
        for index in range(count)
    ]


def _applications(team_names: Sequence[str], count: int) -> dict[str, list[str]]:
    owned: dict[str, list[str]] = {name: [] for name in team_names}
    for index in range(count):
        team = team_names[index % len(team_names)]
        ordinal = len(owned[team])
        component = COMPONENTS[ordinal % len(COMPONENTS)]
        if ordinal >= len(COMPONENTS):
            component = f"{component}-{ordinal // len(COMPONENTS) + 1}"
        owned[team].append(f"{team}-{component}")
    return owned


# -- rendering --------------------------------------------------------------------------------

_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@/+-]*$")
_RESOLVER: Final = yaml.resolver.Resolver()
_STR_TAG: Final = "tag:yaml.org,2002:str"


def _scalar(value: str | int | bool) -> str:
    """`value` as a YAML scalar: plain when YAML 1.1 reads it back as the same string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if (
        _PLAIN_SAFE.match(value)
        and not value.endswith(" ")
        and _RESOLVER.resolve(ScalarNode, value, (True, False)) == _STR_TAG  # type: ignore[no-untyped-call]
    ):
        return value
    return _quoted(value)


def _quoted(value: str) -> str:
    """A double-quoted scalar (a JSON string is a valid YAML one)."""
    return json.dumps(value)


def _flow_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _flow_map(pairs: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in pairs.items()) + "}"


def _render_teams(
    users: Sequence[User],
    teams: Sequence[Team],
    settings_admins: Sequence[str],
    signing_keys: Mapping[str, Ed25519PrivateKey],
    certificates: Mapping[str, str] | None = None,
) -> str:
    """teams.yaml's text; a user in `certificates` lists that armored OpenPGP public key
    instead of an SSH key (benchmarks.history, --openpgp)."""
    lines = [
        "# yaml-language-server: $schema=schemas/teams.schema.json",
        "# Generated by benchmarks/generate.py: synthetic people, teams and keys.",
        "",
        "users:",
    ]
    for user in users:
        fields = {"name": _scalar(user.name), "emails": _flow_list([_scalar(user.email)])}
        if user.has_key and certificates and user.id in certificates:
            fields["keys"] = _flow_list([_quoted(certificates[user.id])])
        elif user.has_key:
            key = openssh_public_key(signing_keys[user.id], user.email)
            fields["keys"] = _flow_list([_quoted(key)])
        lines.append(f"  {user.id}: {_flow_map(fields)}")
    service_key = openssh_public_key(signing_keys[SERVICE_ACCOUNT], "reconciler@example.com")
    lines += [
        "",
        "service_accounts:",
        f"  {SERVICE_ACCOUNT}: "
        + _flow_map(
            {
                "emails": _flow_list(["reconciler@example.com"]),
                "keys": _flow_list([_quoted(service_key)]),
            }
        ),
        "",
        "infrastructure:",
        f"  settings: {_flow_list(settings_admins)}",
        f"  projects: {_flow_list([PROJECTS_ADMIN])}",
        "",
        "teams:",
    ]
    for team in teams:
        lines.append(f"  {team.name}:")
        if team.applications:
            lines.append(f"    applications: {_flow_list(team.applications)}")
        lines.append("    members:")
        lines += [f"      {user}: {role}" for user, role in team.members.items()]
    return "\n".join(lines) + "\n"


def _render_environment(environment: EnvironmentSpec, count: int, rng: random.Random) -> str:
    first = environment.order == 1
    last = environment.order == count and count > 1
    lines = [
        "# yaml-language-server: $schema=../schemas/environment.schema.json",
        f"name: {environment.name}",
        f"order: {environment.order}",
    ]
    if environment.promotes_from is not None:
        lines.append(f"promotes_from: {environment.promotes_from}")
    lines.append("permissions:")
    if first:
        lines += [
            "  plan.edit: [tech-lead, developer]",
            "  plan.approve: [tech-lead]",
            "  plan.deploy: [deployment, tech-lead]   # tech leads deploy their own builds here",
            "gates:",
            "  approvals: []",
            "  signed_commits: false",
        ]
    elif last:
        lines += [
            "  plan.edit: [tech-lead]",
            "  plan.approve: [tech-lead, tester]     # the tester's approval is the test sign-off",
            "  plan.deploy: [deployment]",
            "gates:",
            "  approvals:",
            f"    - {{role: tech-lead, count: {LAST_GATE_TECH_LEADS}}}",
            "    - {role: tester, count: 1}",
            "  signed_commits: true",
            "  approval_ttl: 8h",
            "  windows:",
            '    - {days: [mon, tue, wed, thu], from: "09:00", to: "16:00", '
            "timezone: Europe/Lisbon}",
            "  freezes:",
            '    - {name: year-end freeze, from: "2026-12-21T00:00:00Z", '
            'until: "2027-01-04T00:00:00Z"}',
        ]
    else:
        with_tester = rng.random() < 0.5
        approvers = "[tech-lead, tester]" if with_tester else "[tech-lead]"
        lines += [
            "  plan.edit: [tech-lead, developer]",
            f"  plan.approve: {approvers}",
            "  plan.deploy: [deployment]",
            "gates:",
            "  approvals:",
            "    - {role: tech-lead, count: 1}",
        ]
        if with_tester:
            lines.append("    - {role: tester, count: 1}")
        lines += [
            f"  signed_commits: {_scalar(rng.random() < 0.4)}",
            f"  approval_ttl: {rng.choice(('8h', '12h', '1d', '2d'))}",
        ]
        if rng.random() < 0.3:
            days = sorted(rng.sample(range(len(WEEKDAYS)), rng.randint(2, 5)))
            start = rng.randint(6, 11)
            lines += [
                "  windows:",
                "    - "
                + _flow_map(
                    {
                        "days": _flow_list(WEEKDAYS[day] for day in days),
                        "from": _quoted(f"{start:02d}:00"),
                        "to": _quoted(f"{start + rng.randint(4, 9):02d}:30"),
                        "timezone": rng.choice(TIMEZONES),
                    }
                ),
            ]
        else:
            lines.append("  windows: []")
    if rng.random() < 0.25 and not first:
        lines += [
            "driver:",
            "  type: command",
            f'  argv: ["/opt/deploy/bin/deploy", "--environment", {environment.name}]',
            f"  timeout: {rng.choice((300, 600, 900))}",
            f"  retries: {rng.randint(0, 3)}",
        ]
    else:
        lines.append("driver: {type: local}")
    return "\n".join(lines) + "\n"


def _render_plan(
    index: int,
    environments: Sequence[EnvironmentSpec],
    applications: Sequence[str],
    rng: random.Random,
) -> tuple[str, str]:
    target = rng.choice(environments)
    month = (index - 1) % 12 + 1
    name = f"2026-{month:02d}-{target.name}-{index:05d}"
    lines = [
        "# yaml-language-server: $schema=../schemas/plan.schema.json",
        f"name: {name}",
    ]
    if target.promotes_from is not None:
        lines.append(f"source: {target.promotes_from}")
    lines += [f"target: {target.name}", "applications:"]
    chosen = rng.sample(applications, min(len(applications), rng.randint(1, 5)))
    for application in chosen:
        version = f"{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}"
        entry = {"name": application, "version": _quoted(version)}
        roll = rng.random()
        if target.promotes_from is not None and roll < 0.25:
            entry["action"] = "tag-and-deploy"
            entry["from"] = _quoted(f"{version}-rc.{rng.randint(1, 30)}")
        elif roll > 0.9:
            entry["action"] = "deploy"
        lines.append(f"  - {_flow_map(entry)}")
    if rng.random() < 0.7:
        lines += [
            "notes: |",
            f"  Release {index} into {target.name}: {', '.join(chosen)}.",
            f"  Change ticket CHG-{rng.randint(10000, 99999)}; rollback by redeploying the previous"
            " version.",
        ]
    state = rng.choices(("ready", "draft", "cancelled"), weights=(80, 15, 5))[0]
    lines.append(f"state: {state}")
    return name, "\n".join(lines) + "\n"


# -- command line -----------------------------------------------------------------------------


def _add_size_options(parser: argparse.ArgumentParser) -> None:
    defaults = GeneratorSettings()
    parser.add_argument("--plans", type=int, default=defaults.plans, help="plan files")
    parser.add_argument(
        "--environments", type=int, default=defaults.environments, help="environments"
    )
    parser.add_argument("--users", type=int, default=defaults.users, help="users")
    parser.add_argument("--teams", type=int, default=None, help="application teams")
    parser.add_argument("--applications", type=int, default=None, help="applications")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")


def settings_from_arguments(arguments: argparse.Namespace) -> GeneratorSettings:
    return GeneratorSettings(
        plans=arguments.plans,
        environments=arguments.environments,
        users=arguments.users,
        teams=arguments.teams,
        applications=arguments.applications,
        seed=arguments.seed,
    )


def _command_config(arguments: argparse.Namespace) -> int:
    settings = settings_from_arguments(arguments)
    config = generate_config(settings)
    directory: Path = arguments.directory
    write_config(config, directory, replace=arguments.replace)
    if not arguments.no_git:
        init_repository(directory)
    print(
        f"wrote {directory}: {settings.plans} plans, {settings.environments} environments, "
        f"{settings.users} users, {settings.team_count} application teams, "
        f"{settings.application_count} applications (seed {settings.seed})"
    )
    return 0


def _configure_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, metavar="DIR", help="where to write it")
    _add_size_options(parser)
    parser.add_argument(
        "--replace", action="store_true", help="overwrite a configuration already in DIR"
    )
    parser.add_argument("--no-git", action="store_true", help="do not `git init` DIR")


@dataclass(frozen=True, slots=True)
class Subcommand:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _configure_history(parser: argparse.ArgumentParser) -> None:
    from benchmarks import history  # noqa: PLC0415 - history builds on this module

    history.configure_parser(parser)


def _command_history(arguments: argparse.Namespace) -> int:
    from benchmarks import history  # noqa: PLC0415 - history builds on this module

    return history.run_command(arguments)


SUBCOMMANDS: Final[dict[str, Subcommand]] = {
    "config": Subcommand(
        "write a valid synthetic configuration repository", _configure_config, _command_config
    ),
    # M commits over these files, signed and not, with merges (benchmarks.history).
    "history": Subcommand(
        "write a Git history of a configuration repository (see benchmarks.history)",
        _configure_history,
        _command_history,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generate",
        description="Synthetic configuration repositories for benchmarks and scale tests.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, subcommand in SUBCOMMANDS.items():
        subcommand.configure(commands.add_parser(name, help=subcommand.help))
    arguments = parser.parse_args(argv)
    try:
        return SUBCOMMANDS[arguments.command].run(arguments)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
