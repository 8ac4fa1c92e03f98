"""CLI: `reconciler demo`, the seed story, told step by step on a scratch repository."""

from __future__ import annotations

import shutil
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import click

from reconciler.cli.apply_commands import emit_pass, pass_json
from reconciler.cli.errors import EXIT_OK, reported
from reconciler.cli.options import command_with_examples, format_option
from reconciler.cli.output import emit_json
from reconciler.cli.people_commands import pipeline_json, render_entry, render_pipeline
from reconciler.cli.plan_commands import emit_plan, plan_json
from reconciler.clock import utc_now
from reconciler.decide import Decision
from reconciler.demo import Scene, play, where_to_look
from reconciler.drift import DriftReport
from reconciler.history import Entry
from reconciler.reconcile import PassReport
from reconciler.status import Pipeline


def _scene_json(scene: Scene) -> dict[str, Any]:
    """A scene as the JSON of the command whose output it shows (apply, plan, status, history)."""
    shown: dict[str, Any] = {"title": scene.title, "narration": scene.narration}
    payload = scene.payload
    if payload is None:
        return shown
    if isinstance(payload, PassReport):
        shown["apply"] = pass_json(payload)
    elif isinstance(payload, Pipeline):
        shown["status"] = pipeline_json(payload)
    elif payload and isinstance(payload[0], Entry):
        shown["history"] = {"entries": [e.as_json() for e in payload if isinstance(e, Entry)]}
    else:
        decisions = tuple(item for item in payload if isinstance(item, Decision))
        shown["plan"] = plan_json(decisions, DriftReport(drift=(), notes=()))
    return shown


def _show(number: int, scene: Scene) -> None:
    click.echo()
    click.echo(click.style(f"{number}. {scene.title}", bold=True))
    for line in textwrap.wrap(scene.narration, width=78):
        click.echo(f"   {line}")
    payload = scene.payload
    if payload is None:
        return
    click.echo()
    if isinstance(payload, PassReport):
        emit_pass(payload, "text")
    elif isinstance(payload, Pipeline):
        for line in render_pipeline(payload):
            click.echo(line)
    elif payload and isinstance(payload[0], Entry):
        for entry in payload:
            assert isinstance(entry, Entry)
            click.echo(render_entry(entry))
    else:
        decisions = tuple(item for item in payload if isinstance(item, Decision))
        emit_plan(decisions, DriftReport(drift=(), notes=()), "text")


@command_with_examples(
    ("The seed story in a scratch folder, removed afterwards", "reconciler demo"),
    (
        "Keep the repository, the keys and the releases, to carry the story on",
        "reconciler demo --keep /tmp/story",
    ),
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Play the story in DIR (new or empty) and keep it there to look around.",
)
@format_option("text", "json")
def demo(keep: Path | None, output_format: str) -> None:
    """Play the seed story end to end on a scratch copy of the example.

    The eCommerce lead saves a plan, the Customer Portal lead adds their
    application, a tech lead approves, a developer's direct push does not
    deploy, ops merge and the deploy runs through the local driver; then the
    pipeline and the audit trail. Your own repositories are never touched.
    With --format json, one object: each scene with the JSON its command gives.
    """
    # Absolute: git reads the keys from inside the story's repositories, not from here.
    folder = (
        keep.absolute() if keep is not None else Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    )
    try:
        with reported():
            if output_format == "json":
                scenes = play(folder, clock=utc_now, sleep=time.sleep)
                emit_json(
                    {
                        "repository": str(folder / "config") if keep is not None else None,
                        "scenes": [_scene_json(scene) for scene in scenes],
                        "look_around": where_to_look(folder) if keep is not None else [],
                    }
                )
                raise SystemExit(EXIT_OK)
            click.echo(click.style("gitops-reconciler: the seed story", bold=True))
            click.echo(f"scratch repository: {folder / 'config'}")
            for number, scene in enumerate(play(folder, clock=utc_now, sleep=time.sleep), start=1):
                _show(number, scene)
            click.echo()
            if keep is not None:
                click.echo(click.style("Look around:", bold=True))
                for command in where_to_look(folder):
                    click.echo(f"  {command}")
            else:
                click.echo(
                    "The scratch repository is removed now; run `reconciler demo --keep DIR` to "
                    "keep it and then `git -C DIR/config log` to read the story in Git."
                )
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    raise SystemExit(EXIT_OK)
