"""CLI: `reconciler watch`, reconcile on every change of the branch, until stopped."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import click

from reconciler.cli.collector import collect_as_a_service
from reconciler.cli.config_file import config_option
from reconciler.cli.errors import Outcome
from reconciler.cli.options import (
    Seconds,
    command_with_examples,
    format_option,
    service_options,
)
from reconciler.cli.output import FORMATS
from reconciler.cli.reporter import reporter_for
from reconciler.core.errors import UsageError

DEFAULT_INTERVAL = 15.0
# A day: a longer poll is a typo, and a watch that never looks is not watching.
MAX_INTERVAL = 86400.0


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT`, `:PORT` or `PORT`; the host defaults to loopback."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    # ASCII digits: str.isdigit() also takes '\u00b2', which int() refuses.
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise UsageError(
            f"--listen {text!r} is not HOST:PORT",
            hint="e.g. --listen 127.0.0.1:8080 (or 0.0.0.0:8080 behind a TLS proxy)",
        )
    return host, int(port)


@command_with_examples(
    (
        "The bare repository on the Git server itself, on every change of main",
        "reconciler watch --repo /srv/git/config.git --key /etc/reconciler/key",
    ),
    (
        "A clone: poll the remote, and wake at once on its push webhooks",
        "reconciler watch --remote origin --key /etc/reconciler/key \\\n"
        "    --listen 127.0.0.1:8181 --webhook-secret-file /etc/reconciler/webhook-secret",
    ),
    (
        "Everything from a file (flags given as well override it)",
        "reconciler watch --config /etc/reconciler/watch.toml",
    ),
    reports="log_event",
)
@config_option
@service_options
@click.option(
    "--interval",
    type=Seconds(0.1, MAX_INTERVAL),
    default=DEFAULT_INTERVAL,
    show_default=True,
    metavar="S",
    help="With --remote: seconds between `git ls-remote` polls. Local: the safety poll "
    "behind file events.",
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Serve GitHub/GitLab push webhooks on POST /webhook, GET /healthz, /readyz and "
    "/metrics, and the pipeline pages on / (host defaults to 127.0.0.1; needs "
    "--webhook-secret-file).",
)
@click.option(
    "--webhook-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The webhooks' shared secret (GitHub: the HMAC key; GitLab: the token).",
)
@click.option(
    "--notify",
    "notify_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RECONCILER_NOTIFY",
    help="A TOML file naming the notification targets (webhook URLs and secrets, apprise "
    "URLs); teams.yaml `notifications:` says which events go to which (env RECONCILER_NOTIFY).",
)
@format_option(*FORMATS)
def watch(
    repo: Path | None,
    remote: str | None,
    branch: str | None,
    state_dir: Path | None,
    key: Path | None,
    instance: str | None,
    driver_root: Path | None,
    environments: frozenset[str] | None,
    checkpoint_keys: tuple[Path, ...],
    interval: float,
    listen: str | None,
    webhook_secret_file: Path | None,
    notify_file: Path | None,
    output_format: str,
) -> Outcome:
    """Reconcile on every change of the branch, for as long as it runs.

    A local repository (the source of truth itself, e.g. a bare repository on
    the Git server) is watched through file events on the branch's ref; a
    --remote is polled with `git ls-remote` every --interval seconds. With
    --listen, push webhooks trigger a pass at once, and the same address serves the
    pipeline pages (as `serve` does), read again after each pass. Runs go to one worker
    per environment. Log lines (--format text|json) go to stderr. SIGTERM or
    SIGINT: finish the driver step in progress, record the run, exit 0.
    """
    from reconciler.app import api
    from reconciler.app.passes import Options

    collect_as_a_service()
    if listen is not None and webhook_secret_file is None:
        raise UsageError(
            "refusing to listen for webhooks without a secret",
            hint="pass --webhook-secret-file FILE with the secret set on GitHub/GitLab",
        )
    if webhook_secret_file is not None and listen is None:
        raise UsageError(
            "--webhook-secret-file needs --listen HOST:PORT",
            hint="add --listen 127.0.0.1:8080",
        )
    where = parse_listen(listen) if listen is not None else None
    options = Options(
        branch=branch,
        remote=remote,
        state_dir=state_dir,
        key=key,
        instance=instance,
        driver_root=driver_root,
        environments=environments,
        checkpoint_keys=checkpoint_keys,
    )

    def stop_on_signals(stop: Callable[[], None]) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> Any:
            stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    pages = None
    if where is not None:
        from reconciler.web.server import WatchPages

        # What `status` on this repository shows, as the service keeps it.
        source = api.Source(repo, branch, state_dir, remote)
        pages = WatchPages(source, driver_root=driver_root, host=where[0])
    api.watch(
        repo,
        options,
        interval=interval,
        listen=where,
        secret_file=webhook_secret_file,
        log=reporter_for(output_format).log_event,
        on_start=stop_on_signals,
        notify_file=notify_file,
        pages=pages,
    )
    return Outcome.OK
