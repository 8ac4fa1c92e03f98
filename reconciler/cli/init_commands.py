"""CLI: `reconciler init DIR`, a new configuration repository."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
from pathlib import Path

import click

from reconciler.cli.errors import Outcome
from reconciler.cli.options import command_with_examples, format_option
from reconciler.cli.output import FORMATS
from reconciler.cli.reporter import reporter_for


@command_with_examples(
    (
        "A new configuration repository, with you as its first admin",
        "reconciler init deploy-config",
    ),
    ("In a fresh clone of an empty repository from your Git host", "reconciler init ."),
    reports="founded",
)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="The first admin's name (default: git config user.name).")
@click.option("--email", help="The first admin's email (default: git config user.email).")
@click.option("--admin", metavar="ID", help="The first admin's user id (default: from the email).")
@click.option(
    "--key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The first admin's SSH public key (default: git's user.signingkey, else "
    "~/.ssh/id_ed25519.pub).",
)
@format_option(*FORMATS)
def init(
    directory: Path,
    name: str | None,
    email: str | None,
    admin: str | None,
    key: Path | None,
    output_format: str,
) -> Outcome:
    """Create a configuration repository in DIRECTORY (new or empty).

    Schemas, a commented teams.yaml with you as the first admin, three
    environments, an empty plans/, a pre-commit configuration (`pre-commit
    install` makes validate a hook, run by this reconciler), a CI workflow that
    validates and verifies pull requests, the reconciler's service key pair (the
    private half in .git/reconciler/, never committed), and an initial commit on
    main that becomes the trust anchor. DIRECTORY may be a fresh clone of an
    empty repository (nothing but .git): push main when done. Without --name or
    --email and git's user.name or user.email, it warns and makes them up.
    """
    from reconciler.app import api

    founded = api.init(directory, name=name, email=email, admin=admin, key=key)
    reporter_for(output_format).founded(founded)
    return Outcome.OK
