"""CLI: reporters for `reconciler demo`, each scene with the output of the command it shows."""

from __future__ import annotations

import shlex
import textwrap
from typing import Any

import click

from reconciler.app.demo import Scene, Story
from reconciler.app.drift import DriftReport
from reconciler.app.passes import PassReport
from reconciler.app.trail import Entry
from reconciler.cli.apply_output import pass_json, pass_text
from reconciler.cli.output import emit_json
from reconciler.cli.people_output import pipeline_json, render_entry, render_pipeline
from reconciler.cli.plan_output import plan_json, plan_text
from reconciler.core.decide import Decision
from reconciler.core.status import Pipeline


def story_json(story: Story) -> None:
    """One object: each scene with the JSON its command gives."""
    emit_json(
        {
            "repository": str(story.folder / "config") if story.kept else None,
            "scenes": [_scene_json(scene) for scene in story.scenes],
            "look_around": story.look_around() if story.kept else [],
        }
    )


def story_text(story: Story) -> None:
    """Each scene as it is played."""
    click.echo(click.style("gitops-reconciler: the seed story", bold=True))
    click.echo(f"scratch repository: {story.folder / 'config'}")
    for number, scene in enumerate(story.scenes, start=1):
        _show(number, scene)
    click.echo()
    if story.kept:
        click.echo(click.style("Look around:", bold=True))
        for command in story.look_around():
            click.echo(f"  {command}")
        click.echo()
        click.echo(click.style("Or look at it in a browser:", bold=True))
        click.echo(f"  reconciler serve --repo {shlex.quote(str(story.folder / 'config'))}")
        click.echo("  then open http://127.0.0.1:8080/")
    else:
        click.echo(
            "The scratch repository is removed now; run `reconciler demo --keep DIR` to "
            "keep it and then `git -C DIR/config log` to read the story in Git."
        )


def _scene_json(scene: Scene) -> dict[str, Any]:
    """A scene as the JSON of the command whose output it shows (apply, plan, status, history)."""
    shown: dict[str, Any] = {"title": scene.title, "narration": scene.narration}
    if scene.lines:
        shown["lines"] = list(scene.lines)
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
    if scene.lines:
        click.echo()
    for line in scene.lines:
        click.echo(f"   {line}")
    payload = scene.payload
    if payload is None:
        return
    click.echo()
    if isinstance(payload, PassReport):
        pass_text(payload)
    elif isinstance(payload, Pipeline):
        for line in render_pipeline(payload):
            click.echo(line)
    elif payload and isinstance(payload[0], Entry):
        for entry in payload:
            assert isinstance(entry, Entry)
            click.echo(render_entry(entry))
    else:
        decisions = tuple(item for item in payload if isinstance(item, Decision))
        plan_text(decisions, DriftReport(drift=(), notes=()))
