"""`reconciler init DIR`: a new configuration repository."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.errors import EXIT_OK, reported
from reconciler.cli.options import format_option
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


@click.command()
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
    install` makes validate a hook), a CI workflow that validates and verifies
    pull requests, the reconciler's service key pair (the private half in
    .git/reconciler/, never committed), and an initial commit that becomes the
    trust anchor.
    """
    with reported():
        made = initialise(
            directory,
            # An option given empty is checked as given, not replaced by a default.
            name=name if name is not None else user_config("user.name") or "Admin",
            email=email if email is not None else user_config("user.email") or "admin@example.com",
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
    raise SystemExit(EXIT_OK)
