"""CLI: the `reconciler` command, a thin shell over the core.

Each command parses its options, makes one call to the application layer
(`reconciler.app.api`), and hands the result to the reporter its `--format` chose
(`reporter`); it returns an `Outcome`. Outcomes and errors become messages and exit
codes in `errors`, nowhere else.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

import click

from reconciler import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs.

    `reconciler validate` then never loads Git, SQLite or the history modules
    (which keeps a pre-commit hook's start-up short), and the history commands
    never load the validator.
    """

    LAZY: ClassVar[dict[str, str]] = {
        "validate": "reconciler.cli.validate_commands:validate",
        "verify": "reconciler.cli.verify_commands:verify",
        "verify-mergeable": "reconciler.cli.mergeable_commands:verify_mergeable",
        "access": "reconciler.cli.verify_commands:access_command",
        "plan": "reconciler.cli.plan_commands:plan_command",
        "approve": "reconciler.cli.action_commands:approve",
        "deploy": "reconciler.cli.action_commands:deploy",
        "cancel": "reconciler.cli.action_commands:cancel",
        "lock": "reconciler.cli.action_commands:lock",
        "unlock": "reconciler.cli.action_commands:unlock",
        "rollback": "reconciler.cli.action_commands:rollback",
        "apply": "reconciler.cli.apply_commands:apply",
        "watch": "reconciler.cli.watch_commands:watch",
        "status": "reconciler.cli.people_commands:status",
        "serve": "reconciler.cli.serve_commands:serve",
        "history": "reconciler.cli.people_commands:history",
        "demo": "reconciler.cli.demo_commands:demo",
        "init": "reconciler.cli.init_commands:init",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.LAZY.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's first sentence whole, wrapped, where click would cut it with `...`."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=_WHOLE_SENTENCE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_WHOLE_SENTENCE = 300  # longer than any command's first sentence


@click.group(cls=LazyGroup, context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, "-V", "--version", prog_name="reconciler")
@click.pass_context
def main(context: click.Context) -> None:
    """GitOps reconciler for deployment plans.

    Plans, environments and role grants are YAML in a Git repository; the
    reconciler proves from Git history who changed, approved and triggered
    each plan, runs what the right people approved, and records every run
    back into the repository as commits.
    """
    if context.invoked_subcommand is None:
        # A bare `reconciler` asks what it can do: the help, and success (click's default
        # for a group would be a usage error).
        click.echo(context.get_help())
