"""CLI: `reconciler demo`, the seed story, told step by step on a scratch repository."""

from __future__ import annotations

# The application layer is imported in each command's body, so `--help` loads click and
# the command definitions only (tests/test_startup.py).
# ruff: noqa: PLC0415
import time
from pathlib import Path

import click

from reconciler.cli.errors import Outcome
from reconciler.cli.options import command_with_examples, format_option
from reconciler.cli.reporter import reporter_for


@command_with_examples(
    ("The seed story in a scratch folder, removed afterwards", "reconciler demo"),
    (
        "Keep the repository, the keys and the releases, to carry the story on",
        "reconciler demo --keep /tmp/story",
    ),
    (
        "The story deploying through the gitops driver, into a local GitOps repository",
        "reconciler demo --driver gitops --keep /tmp/story",
    ),
    reports="story",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Play the story in DIR (new or empty) and keep it there to look around.",
)
@click.option(
    "--driver",
    type=click.Choice(["local", "gitops"]),
    default="local",
    show_default=True,
    help="Deploy through the local driver, or commit to a local GitOps repository "
    "(gitops/) as Argo CD or Flux would sync it.",
)
@format_option("text", "json")
def demo(keep: Path | None, driver: str, output_format: str) -> Outcome:
    """Play the seed story end to end on a scratch copy of the example.

    The eCommerce lead saves a plan, the Customer Portal lead adds their
    application, a tech lead approves, a developer's direct push does not
    deploy, ops merge and the deploy runs through the local driver; then the
    pipeline and the audit trail. Your own repositories are never touched.
    With --format json, one object: each scene with the JSON its command gives.
    """
    import shutil
    import tempfile

    from reconciler.adapters.clock import utc_now
    from reconciler.app.demo import tell

    # Absolute: git reads the keys from inside the story's repositories, not from here.
    folder = (
        keep.absolute() if keep is not None else Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    )
    try:
        story = tell(folder, kept=keep is not None, clock=utc_now, sleep=time.sleep, driver=driver)
        reporter_for(output_format).story(story)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return Outcome.OK
