"""App: a new configuration repository (`reconciler init DIR`).

Called by the CLI, on a new or empty folder or on a repository without history
(a fresh clone of an empty one, ready to push). It writes the shipped schemas,
a commented `teams.yaml` with the first admin (settings, a tech lead and the
deployment role, so every gate can be met from day one), three environments,
an empty `plans/`, a pre-commit configuration running the installed
reconciler's hook, and a CI workflow that validates and verifies pull requests
(never `apply`). It generates the reconciler service account's key pair,
keeping the private half outside the worktree, and makes the initial commit:
the trust anchor.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Final

import jsonschema_rs
import yaml
from msgspec import Struct

from reconciler.adapters.gitobjects import Someone
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.signing import new_key_pair
from reconciler.core import resources
from reconciler.core.errors import NotARepositoryError, UsageError
from reconciler.core.model import Snapshot
from reconciler.core.resources import schemas_dir
from reconciler.core.sshkeys import KeyFormatError, parse_public_key
from reconciler.core.validate import validate_snapshot

TEMPLATES: Final = Path(__file__).resolve().parents[1] / "templates"
# Where teams.schema.json states the rule each of the first admin's values must meet.
_NAME_RULE: Final = ("$defs", "user", "properties", "name")
_EMAIL_RULE: Final = ("$defs", "emails", "items")
_ID_RULE: Final = ("$defs", "identifier")


class Initialised(Struct, frozen=True):
    path: Path
    commit: str
    admin: str
    service_key: Path  # the reconciler's private key; move it to the service host
    files: tuple[str, ...]


# A derived user id is cut to the schemas' `identifier` length.
_ID_LENGTH: Final = 63


def _admin_id(text: str) -> str:
    """A user id made from an email's local part (or any text): lowercase words joined by '-'."""
    local = re.sub(r"[^a-z0-9]+", "-", text.split("@", 1)[0].lower()).strip("-")
    return local[:_ID_LENGTH].rstrip("-") or "admin"


def _fits(value: str, *rule: str) -> bool:
    """Whether `value` meets the teams schema's rule at `rule` (a path into the schema)."""
    found: Any = resources.schema("teams")
    for step in rule:
        found = found[step]
    return bool(jsonschema_rs.validator_for(found).is_valid(value))


def _printable(text: str) -> bool:
    # Git would drop or refuse control characters in an identity, and a lone
    # surrogate (undecodable bytes on the command line) cannot be written as UTF-8.
    return not any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def _check_identity(name: str, email: str, admin: str) -> None:
    """Refuse what teams.yaml's schema would refuse, before anything is written."""
    if not name.strip() or not _printable(name) or not _fits(name, *_NAME_RULE):
        raise UsageError(
            f"--name {name!r} is not a display name",
            hint="give 1 to 200 characters, no control characters, e.g. --name 'Ann Admin'",
        )
    if not _printable(email) or not _fits(email, *_EMAIL_RULE):
        raise UsageError(
            f"--email {email!r} is not an email address",
            hint="pass the address you commit with: no spaces or < >, one @, "
            "e.g. --email ann@example.com",
        )
    if not _fits(admin, *_ID_RULE):
        raise UsageError(
            f"--admin {admin!r} is not a user id",
            hint="use lowercase letters and digits, words joined by single '.', '_' or '-', "
            f"at most {_ID_LENGTH} characters, e.g. --admin {_admin_id(admin)}",
        )


def _quoted(text: str) -> str:
    """`text` as a double-quoted YAML scalar, read back exactly (flow context, comments)."""
    dumped: str = yaml.safe_dump(text, default_style='"', allow_unicode=True, width=math.inf)
    return dumped.rstrip("\n")


def _require_valid(files: dict[str, bytes]) -> None:
    """Refuse to commit a trust anchor that would not validate: it could never be repaired."""
    report = validate_snapshot(Snapshot(files))
    errors = [finding for finding in report.findings if finding.severity == "error"]
    if errors:
        first = errors[0]
        raise UsageError(
            f"the new configuration would not be valid: {first.file}:{first.line}:"
            f"{first.column}: {first.message}",
            hint=first.hint or "check --name, --email and --admin",
        )


def initialise(
    path: Path, *, name: str, email: str, public_key: str, admin: str | None = None
) -> Initialised:
    admin_id = admin if admin is not None else _admin_id(email)
    _check_identity(name, email, admin_id)
    try:
        present = {entry.name for entry in path.iterdir()} if path.exists() else set()
    except OSError as error:
        raise _cannot_create(path, error) from None
    if present - {".git"}:
        raise UsageError(f"{path} is not empty", hint=_WHERE)
    cloned = bool(present)
    if cloned:
        _require_no_history(path)
    try:
        key = parse_public_key(public_key)
    except KeyFormatError as error:
        raise UsageError(
            f"the admin's public key is not valid: {error}", hint="pass --key FILE.pub"
        ) from None
    with tempfile.TemporaryDirectory(prefix="reconciler-init-") as scratch:
        # The service key is made first: teams.yaml names it, and the whole tree
        # is validated before the folder or its repository exist.
        made_key = Path(scratch) / "service-key"
        service_public = new_key_pair(made_key, "reconciler@example.com")
        teams = (
            (TEMPLATES / "teams.yaml")
            .read_text()
            .format(
                admin=admin_id,
                name=_quoted(name),
                email=_quoted(email),
                key=_quoted(f"{key.type} {_b64(public_key)} {email}"),
                service_key=_quoted(service_public),
            )
        )
        texts = {
            "teams.yaml": teams,
            "environments/development.yaml": (TEMPLATES / "development.yaml").read_text(),
            "environments/quality-assurance.yaml": (
                TEMPLATES / "quality-assurance.yaml"
            ).read_text(),
            "environments/production.yaml": (TEMPLATES / "production.yaml").read_text(),
            "plans/.gitkeep": "",
            ".pre-commit-config.yaml": (TEMPLATES / "pre-commit-config.yaml").read_text(),
            ".github/workflows/reconciler.yml": (TEMPLATES / "workflow.yml").read_text(),
            "README.md": (TEMPLATES / "README.md").read_text(),
        }
        files = {relative: content.encode() for relative, content in texts.items()}
        files |= {
            f"schemas/{p.name}": p.read_bytes() for p in schemas_dir().iterdir() if p.is_file()
        }
        _require_valid(files)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _cannot_create(path, error) from None
        with GitRepo(path) if cloned else GitRepo.init(path, "main") as repo:
            if cloned:
                # A clone's HEAD names the remote's default branch, which may be another.
                repo.start_on("main")
            service_key = repo.git_dir / "reconciler" / "service-key"
            service_key.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", ".pub"):
                shutil.move(f"{made_key}{suffix}", f"{service_key}{suffix}")
            for relative, content in files.items():
                target = path / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            written = sorted(files)
            commit = repo.commit_paths(
                written,
                "Initial configuration (the reconciler's trust anchor)",
                sign=False,
                who=Someone(name, email),
            )
    return Initialised(path, commit, admin_id, service_key, tuple(written))


_WHERE: Final = "give init a new or empty folder, or a fresh clone of an empty repository"


def _require_no_history(path: Path) -> None:
    """A folder holding only `.git` is taken as it is when that repository has no history
    at all: init's commit must be its first, the trust anchor every later one descends from.
    """
    try:
        with GitRepo(path) as repo:
            history = repo.has_references()
    except NotARepositoryError:
        raise UsageError(f"{path}/.git is not a Git repository", hint=_WHERE) from None
    if history:
        raise UsageError(
            f"{path} already has history: init makes a repository's first commit",
            hint=_WHERE,
        )


def _cannot_create(path: Path, error: OSError) -> UsageError:
    return UsageError(
        f"cannot create {path}: {error.strerror}",
        hint="give init a new or empty folder you can write to",
    )


def _b64(line: str) -> str:
    return line.split()[1]
