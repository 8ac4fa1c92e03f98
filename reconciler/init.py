"""A new configuration repository (`reconciler init DIR`).

Called by the CLI. It writes the shipped schemas, a commented `teams.yaml`
with the first admin (settings, a tech lead and the deployment role, so
every gate can be met from day one), three environments, an empty `plans/`,
a pre-commit configuration using our hook, and a CI workflow that validates
and verifies pull requests (never `apply`). It generates the reconciler
service account's key pair, keeping the private half outside the worktree,
and makes the initial commit: the trust anchor.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from reconciler.errors import UsageError
from reconciler.gitrepo import GitRepo, Someone
from reconciler.resources import schemas_dir
from reconciler.signing import new_key_pair
from reconciler.sshkeys import KeyFormatError, parse_public_key

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True, slots=True)
class Initialised:
    path: Path
    commit: str
    admin: str
    service_key: Path  # the reconciler's private key; move it to the service host
    files: tuple[str, ...]


def _admin_id(email: str) -> str:
    local = re.sub(r"[^a-z0-9]+", "-", email.split("@", 1)[0].lower()).strip("-")
    return local or "admin"


def initialise(
    path: Path, *, name: str, email: str, public_key: str, admin: str | None = None
) -> Initialised:
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"{path} is not empty", hint="give init a new or empty folder")
    try:
        key = parse_public_key(public_key)
    except KeyFormatError as error:
        raise UsageError(
            f"the admin's public key is not valid: {error}", hint="pass --key FILE.pub"
        ) from None
    admin_id = admin or _admin_id(email)
    path.mkdir(parents=True, exist_ok=True)
    with GitRepo.init(path, "main") as repo:
        service_key = repo.git_dir / "reconciler" / "service-key"
        service_key.parent.mkdir(parents=True, exist_ok=True)
        service_public = new_key_pair(service_key, "reconciler@example.com")
        teams = (
            (TEMPLATES / "teams.yaml")
            .read_text()
            .format(
                admin=admin_id,
                name=name.replace(",", " ").replace("}", ""),
                email=email,
                key=f"{key.type} {_b64(public_key)} {email}",
                service_key=service_public,
            )
        )
        files = {
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
        for relative, content in files.items():
            target = path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        shutil.copytree(schemas_dir(), path / "schemas")
        written = sorted([*files, *(f"schemas/{p.name}" for p in (path / "schemas").iterdir())])
        commit = repo.commit_paths(
            written,
            "Initial configuration (the reconciler's trust anchor)",
            sign=False,
            who=Someone(name, email),
        )
    return Initialised(path, commit, admin_id, service_key, tuple(written))


def _b64(line: str) -> str:
    return line.split()[1]
