"""CLI: `reconciler init DIR`, a new configuration repository."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click

from reconciler.cli.errors import EXIT_OK, reported
from reconciler.cli.options import command_with_examples, format_option
from reconciler.cli.output import FORMATS, emit_json
from reconciler.errors import UsageError
from reconciler.gitrepo import user_config
from reconciler.init import initialise


def _public_key(given: Path | None) -> str:
    candidates: list[Path] = []
    if given is not None:
        candidates.append(given)
    else:
        configured = user_config("user.signingkey")
        if configured:
            path = Path(configured).expanduser()
            candidates += [path if path.suffix == ".pub" else path.with_name(path.name + ".pub")]
        candidates.append(Path("~/.ssh/id_ed25519.pub").expanduser())
    for candidate in candidates:
        if candidate.is_file():
            return _read_key(candidate)
    raise UsageError(
        "no SSH public key for the first admin",
        hint="pass --key ~/.ssh/id_ed25519.pub (the key you sign commits with)",
    )


def _read_key(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(
            f"{path} is not an SSH public key", hint="pass --key ~/.ssh/id_ed25519.pub"
        ) from None
    except OSError as error:
        raise UsageError(
            f"cannot read {path}: {error.strerror}", hint="pass --key ~/.ssh/id_ed25519.pub"
        ) from None


@command_with_examples(
    (
        "A new configuration repository, with you as its first admin",
        "reconciler init deploy-config",
    ),
    ("In a fresh clone of an empty repository from your Git host", "reconciler init ."),
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
) -> None:
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
    with reported():
        stand_ins: list[str] = []
        made = initialise(
            directory,
            name=_from_git(name, "user.name", stand_ins),
            email=_from_git(email, "user.email", stand_ins),
            public_key=_public_key(key),
            admin=admin,
        )
        if output_format == "json":
            emit_json(
                {
                    "path": str(made.path),
                    "commit": made.commit,
                    "admin": made.admin,
                    "service_key": str(made.service_key),
                    "files": list(made.files),
                }
            )
        else:
            click.echo(
                f"created {made.path} with {len(made.files)} files; trust anchor {made.commit[:12]}"
            )
            click.echo(f"first admin: {made.admin} (settings, tech-lead in platform, deployment)")
            click.echo(f"the reconciler's private key: {made.service_key}")
            click.echo("  move it to the machine that runs `reconciler watch`; it never goes in CI")
            click.echo(f"next: cd {made.path} && reconciler validate && reconciler plan")
        if stand_ins:
            click.echo(_stand_in_warning(stand_ins, made.admin), err=True)
    raise SystemExit(EXIT_OK)


# What the first admin is called when neither an option nor git's configuration says.
_STAND_INS: Final = {"user.name": "Admin", "user.email": "admin@example.com"}


def _from_git(given: str | None, key: str, stand_ins: list[str]) -> str:
    """The option as given, else git's `key`, else a stand-in (its key added to `stand_ins`).

    An option given empty is checked as given, not replaced.
    """
    if given is not None:
        return given
    configured = user_config(key)
    if configured is not None:
        return configured
    stand_ins.append(key)
    return _STAND_INS[key]


def _stand_in_warning(stand_ins: list[str], admin: str) -> str:
    """Which of the first admin's values were made up, and how to make them theirs: git
    attributes an unsigned commit by its email, and a made-up one is nobody's."""
    values = {"user.name": "name", "user.email": "email"}
    made_up = " and ".join(values[key] for key in stand_ins)
    verb = "are" if len(stand_ins) > 1 else "is"
    return (
        f"warning: git has no {' or '.join(stand_ins)}, so the first admin's {made_up} in "
        f"teams.yaml {verb} made up: {', '.join(_STAND_INS[key] for key in stand_ins)} "
        f"(user id {admin})\n"
        "  hint: set yours (git config --global user.name and user.email, or pass --name and "
        "--email) and run init again in a new folder before you push; once pushed, correct "
        f"users.{admin} in teams.yaml in a signed commit"
    )
