"""CLI: options every command shares, declared once."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from reconciler.cli.errors import Outcome, exit_with, reported

FC = TypeVar("FC", bound=Callable[..., object])


class Seconds(click.FloatRange):
    """A number of seconds from `low` to `high`, both included.

    Plain FloatRange lets NaN through (every comparison with it is false), and
    a watch loop that waits NaN seconds never waits: it spins a core at 100%.
    """

    name = "seconds"

    def __init__(self, low: float, high: float) -> None:
        super().__init__(min=low, max=high)  # FloatRange shows the range in --help
        self.low = low
        self.high = high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(seconds) or not self.low <= seconds <= self.high:
            self.fail(
                f"{value!r} is not a number of seconds from {self.low:g} to {self.high:g}.",
                param,
                ctx,
            )
        return seconds


class WithExamples(click.Command):
    """A command whose epilog is its examples: an Examples section after the options,
    printed as written (click would rewrap it into one paragraph).

    Its body runs inside `errors.reported()` and returns the command's `Outcome`,
    which `errors.exit_with` turns into the exit code. `reports`: the `Reporter`
    method that shows its result, in every format its --format offers.
    """

    def __init__(self, *args: Any, reports: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reports = reports

    def invoke(self, ctx: click.Context) -> NoReturn:
        with reported():
            outcome = super().invoke(ctx)
        exit_with(outcome if isinstance(outcome, Outcome) else Outcome.OK)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if not self.epilog:
            return
        with formatter.section("Examples"):
            for line in self.epilog.splitlines():
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n" if line else "\n")


def command_with_examples(
    *shown: tuple[str, str], reports: str, name: str | None = None
) -> Callable[[Callable[..., Outcome]], WithExamples]:
    """`click.command`, with the command's examples (what it does, the line to type) as
    its epilog: each a comment line, then the line; `reports`: see `WithExamples`."""
    epilog = "\n\n".join(f"# {what}\n{line}" for what, line in shown)
    return click.command(name, cls=WithExamples, epilog=epilog, reports=reports)


repo_option = click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The configuration repository (default: the one containing the current directory).",
)

branch_option = click.option(
    "--branch",
    default=None,
    metavar="NAME",
    help="The branch whose history is the source of truth (default: main, else HEAD's branch).",
)

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RECONCILER_STATE_DIR",
    default=None,
    help="Where the reconciler keeps its position and effective state, outside the "
    "repository's refs (default: <git-dir>/reconciler; env RECONCILER_STATE_DIR).",
)

driver_root_option = click.option(
    "--driver-root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RECONCILER_DRIVER_ROOT",
    help="Where the local driver keeps releases when an environment sets no root "
    "(default: <state-dir>/releases; env RECONCILER_DRIVER_ROOT).",
)


def format_option(*choices: str) -> Callable[[FC], FC]:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default="text",
        show_default=True,
        help="Output for people (text"
        + (", markdown for a pull-request comment" if "markdown" in choices else "")
        + ") or machines (json"
        + (", github workflow annotations" if "github" in choices else "")
        + ")"
        + (", or one self-contained page (html)" if "html" in choices else "")
        + ".",
    )


read_remote_option = click.option(
    "--remote",
    metavar="NAME",
    help="Read NAME's branch as last fetched here, with the state `apply --remote NAME` "
    "keeps for it (default: a local branch; --branch NAME/BRANCH says the same).",
)
remote_option = click.option(
    "--remote", metavar="NAME", help="Fetch from and push records to this remote (default: none)."
)
checkpoint_key_option = click.option(
    "--checkpoint-key",
    "checkpoint_keys",
    type=click.Path(dir_okay=False, path_type=Path),
    multiple=True,
    envvar="RECONCILER_CHECKPOINT_KEY",
    help="Trust checkpoints signed by the SSH public key(s) in FILE (repeatable; default: "
    "the trust anchor's service account keys; env RECONCILER_CHECKPOINT_KEY).",
)
key_option = click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RECONCILER_KEY",
    help="The service account's private SSH key that signs records (env RECONCILER_KEY).",
)
instance_option = click.option(
    "--instance",
    metavar="NAME",
    help="This reconciler's name in start records: letters, digits and . _ : @ / - "
    "(default: host name and state directory).",
)


def _environment_names(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> frozenset[str] | None:
    if value is None:
        return None
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise click.BadParameter("name at least one environment, e.g. development,production")
    return names


environments_option = click.option(
    "--environments",
    metavar="A,B",
    callback=_environment_names,
    help="Start runs only in these environments (comma-separated): a shard of the work "
    "several reconcilers share. It still verifies all of main, records refusals and "
    "marks runs interrupted anywhere (default: any free environment).",
)


def service_options(command: FC) -> FC:
    """The options of the commands that run as the reconciler service: apply and watch."""
    for option in reversed(
        (
            repo_option,
            remote_option,
            branch_option,
            state_dir_option,
            key_option,
            instance_option,
            driver_root_option,
            environments_option,
            checkpoint_key_option,
        )
    ):
        command = option(command)
    return command
