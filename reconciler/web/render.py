"""Web: the pages as HTML, from Jinja2 templates shipped in the package, autoescaped.

Plan notes, names, commit messages and logs are whatever someone pushed: every value
goes through Jinja2's autoescaping (always on, whatever a template's name), and no
template marks a value safe; before that, through `printable` line by line (controls,
bidi characters and the bytes of a file name that is not UTF-8 shown as escapes).
The stylesheet is the package's own (no CDN, no fonts), inlined in every page: a
linked one is a request the first paint waits for. The served pages' policy admits
that one stylesheet by its hash (`style_source`), no other inline style.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

import jinja2
import markupsafe

from reconciler.core.printable import printable

if TYPE_CHECKING:
    from reconciler.app.pages import EnvironmentPage, PlanPage, Snapshot, Trail
    from reconciler.core.access import AccessReport
    from reconciler.core.status import Move, Pipeline


def static_file(name: str) -> bytes:
    """A file of the package's static folder (the stylesheet, the live-update script)."""
    return files("reconciler.web").joinpath("static", name).read_bytes()


@cache
def stylesheet() -> str:
    """The package's stylesheet, as every page inlines it."""
    return static_file("page.css").decode()


def style_source() -> str:
    """The Content-Security-Policy source that admits the inlined stylesheet and nothing
    else: its SHA-256, over the bytes the `<style>` element holds."""
    digest = hashlib.sha256(stylesheet().encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("reconciler.web", "templates"),
        autoescape=True,  # every template, not only *.html: nothing is rendered unescaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_shown,
    )
    environment.filters["when"] = _when
    environment.filters["short"] = lambda commit: (commit or "")[:12]
    environment.globals["lane_of"] = lanes
    environment.globals["lane_cards"] = LANE_CARDS
    environment.globals["drift_of"] = drift_by_cell
    environment.filters["clip"] = _clip
    return environment


def _shown(value: object) -> object:
    """Every value a page shows, as `printable` shows it in a terminal, line by line (notes
    and logs keep their lines): a bidi control in a pushed name or message would show
    what follows it in another order than it is read, and a file name that is not UTF-8
    (its bytes as lone surrogates) cannot be sent at all, which failed the whole page."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return "\n".join(printable(line) for line in value.split("\n"))
    return value


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip() if moment else ""


# A lane shows this many plans as cards, the most pressing first; the rest as a list of
# names and labels (a page of 500 plans stays light; each plan's page says everything).
LANE_CARDS: Final = 6
# A reason on a card is cut here (a list of who may approve can name hundreds of people).
CARD_REASON: Final = 140
# What a person looks at first: what moves now, then what waits for them, then the rest.
PRESSING: Final = (
    "running",
    "ready to run",
    "triggered",
    "failed",
    "interrupted",
    "approved",
    "ready",
    "saved",
    "draft",
    "refused",
)


def lanes(view: Pipeline) -> dict[str, list[Move]]:
    """The plans on their way into each environment (its lane, before its column), the
    most pressing first; a plan whose target is no environment under "" (it cannot be
    read)."""
    into: dict[str, list[Move]] = {name: [] for name in view.environments}
    for move in view.moves:
        into.setdefault(move.target if move.target in into else "", []).append(move)
    rank = {label: index for index, label in enumerate(PRESSING)}
    for moves in into.values():
        moves.sort(key=lambda move: (rank.get(move.label, len(rank)), move.plan))
    return into


def drift_by_cell(view: Pipeline) -> dict[tuple[str, str], str]:
    """(environment, application) -> what its driver reports, where that is not what
    `deployments/` records."""
    return {(item.environment, item.application): item.current or "nothing" for item in view.drift}


def _clip(text: str, limit: int = CARD_REASON) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def _chrome(export: bool) -> dict[str, Any]:
    """Every page inlines the package's stylesheet; served pages link the live-update
    script, an export has no script at all."""
    # The package's own stylesheet, not data: inlined as it is (escaped, its quotes
    # would break it; it holds no `</style>`).
    return {"export": export, "css": markupsafe.Markup(stylesheet())}  # noqa: S704


def pipeline_page(
    view: Pipeline,
    *,
    snapshot: Snapshot | None = None,
    version: int = 0,
    export: bool = False,
) -> str:
    return _render(
        "pipeline.html",
        view=view,
        s=snapshot,
        version=version,
        links=not export,
        **_chrome(export),
    )


def plan_page(snapshot: Snapshot, page: PlanPage, version: int) -> str:
    return _render(
        "plan.html",
        s=snapshot,
        d=page.decision,
        label=page.label,
        entries=page.trail.entries,
        total=page.trail.total,
        more=_more(page.trail, {"plan": page.decision.path}),
        trail_problem=page.trail.problem,
        editors=page.editors,
        runs=page.runs,
        run_count=page.run_count,
        version=version,
        links=True,
        **_chrome(False),
    )


def environment_page(snapshot: Snapshot, page: EnvironmentPage, version: int) -> str:
    return _render(
        "environment.html",
        s=snapshot,
        env=page.environment,
        running=page.running,
        moves=page.moves,
        locks=page.locks,
        entries=page.trail.entries,
        total=page.trail.total,
        more=_more(page.trail, {"env": page.environment.name}),
        trail_problem=page.trail.problem,
        version=version,
        links=True,
        **_chrome(False),
    )


def history_page(snapshot: Snapshot, trail: Trail, filters: dict[str, str], version: int) -> str:
    def at(page: int) -> str:
        return _history_link({**filters, "page": str(page) if page > 1 else ""})

    return _render(
        "history.html",
        s=snapshot,
        entries=trail.entries,
        trail=trail,
        newer=at(trail.page - 1) if trail.page > 1 else None,
        older=at(trail.page + 1) if trail.page < trail.pages else None,
        filters=filters,
        version=version,
        links=True,
        **_chrome(False),
    )


def _more(trail: Trail, filters: dict[str, str]) -> str | None:
    """Where the rest of a page's entries are, when it shows only the newest."""
    return _history_link(filters) if trail.total > len(trail.entries) else None


def _history_link(filters: dict[str, str]) -> str:
    """The audit trail's page with `filters` (those given), as its form would ask."""
    given = {key: value for key, value in filters.items() if value}
    return "/history" + (f"?{urlencode(given)}" if given else "")


def access_page(
    snapshot: Snapshot,
    report: AccessReport | None,
    filters: dict[str, str],
    problem: str | None,
    version: int,
) -> str:
    return _render(
        "access.html",
        s=snapshot,
        report=report,
        filters=filters,
        problem=problem,
        version=version,
        links=True,
        **_chrome(False),
    )


def problem_page(snapshot: Snapshot | None, title: str, text: str) -> str:
    return _render(
        "problem.html", s=snapshot, title=title, text=text, version=0, links=True, **_chrome(False)
    )
