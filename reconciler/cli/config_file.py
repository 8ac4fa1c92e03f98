"""CLI: `--config FILE`, a TOML file whose keys are the command's options (`watch --config`).

The file's settings become click's `default_map`: the defaults the command
starts from, so a flag on the command line (or an option's environment
variable) overrides the file, one option at a time, and a setting goes through
the same checks as the flag it stands for. Each is checked when the file is
read, so a bad value is reported with the file and line (never click's
"Invalid value for '--interval'", which names no file).

The file says which key signs records and which repository is the truth: one
that others may write is refused. It holds no secrets itself (the key and the
webhook secret are files it names), but one readable by every user gets a
warning, since the tables kept for notification targets and Argo CD tokens
will.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from reconciler.cli.errors import reported
from reconciler.core.errors import UsageError
from reconciler.core.service_config import Kind

FC = TypeVar("FC", bound=Callable[..., object])


def _flag(param: click.Parameter) -> str | None:
    """The option's long flag without its dashes: its key in the file."""
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return longs[0][2:] if longs and isinstance(param, click.Option) else None


def _kind(param: click.Parameter) -> Kind:
    kind = param.type
    if isinstance(kind, click.Path):
        return "path"
    if isinstance(kind, click.types.FloatParamType):
        return "number"
    if isinstance(kind, click.types.IntParamType):
        return "integer"
    if isinstance(kind, click.types.BoolParamType):
        return "flag"
    # A comma-separated list of names, which TOML says better as an array.
    if param.metavar is not None and "," in param.metavar:
        return "names"
    return "text"


def _options(ctx: click.Context) -> dict[str, click.Parameter]:
    return {
        key: param
        for param in ctx.command.get_params(ctx)
        if (key := _flag(param)) is not None and param.expose_value and key != "config"
    }


def _refuse_writable_by_others(path: Path, mode: int, owner: int) -> None:
    # Its owner may write it whatever its mode says (or chmod it so): only root and the
    # service's own user may own it.
    if hasattr(os, "geteuid") and owner not in (0, os.geteuid()):
        raise UsageError(
            f"the configuration file is owned by another user (uid {owner}): whoever owns it "
            "chooses the key that signs records and the repository the service trusts",
            file=str(path),
            hint=f"chown root {path} (or the service's user), then chmod go-w {path}",
        )
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            "the configuration file may be written by others: whoever can write it chooses "
            "the key that signs records and the repository the service trusts",
            file=str(path),
            hint=f"chmod go-w {path} (and keep it owned by root or the service's user)",
        )


def read_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """The `--config` callback (eager: it runs before every other option is read)."""
    if value is None or ctx.resilient_parsing:
        return value
    from reconciler.core.service_config import parse_service_config  # noqa: PLC0415

    with reported():
        try:
            status = os.stat(value)
            mode = status.st_mode
            if not stat.S_ISREG(mode):
                raise UsageError(
                    "the configuration file is not a file", file=str(value), hint="name a TOML file"
                )
            _refuse_writable_by_others(value, mode, status.st_uid)
            data = value.read_bytes()
        except OSError as error:
            raise UsageError(
                f"cannot read the configuration file: {error.strerror}",
                file=str(value),
                hint="name a TOML file the service's user can read",
            ) from None
        if mode & stat.S_IROTH:
            click.echo(
                f"{value}: warning: the configuration file may be read by every user; "
                f"chmod o-r {value}",
                err=True,
            )
        options = _options(ctx)
        settings = parse_service_config(
            data, value, {key: _kind(option) for key, option in options.items()}
        )
        defaults = dict(ctx.default_map or {})
        for setting in settings:
            option = options[setting.key]
            try:
                option.process_value(ctx, setting.value)
            except click.BadParameter as error:
                raise UsageError(
                    f"{setting.key}: {error.message}",
                    file=str(value),
                    line=setting.line,
                    hint=f"fix it, or leave it out and pass --{setting.key} instead",
                ) from None
            assert option.name is not None
            defaults[option.name] = setting.value
        ctx.default_map = defaults
    return value


def config_option(command: FC) -> FC:
    return click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        is_eager=True,
        expose_value=False,
        callback=read_config,
        metavar="FILE",
        help="Read the options from this TOML file, one key per option without its dashes "
        '(state-dir = "/var/lib/reconciler"); flags and environment variables override it.',
    )(command)
