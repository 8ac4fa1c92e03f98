"""The documentation's own links: every relative link and #anchor in README.md and docs/*.md
leads somewhere, as GitHub renders them; every section of docs/design.md the code cites
exists; every module says where it belongs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# Inline links, their text possibly wrapped over lines; images too (a leading `!`).
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text outside fenced code blocks (each code line blanked, so line numbers hold)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return "\n".join(lines)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text lowercased, punctuation other than
    hyphens and underscores dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path.read_text()).splitlines():
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """Every inline link's target in `path`, with its line; code spans and blocks hold none."""
    text = CODE_SPAN.sub(lambda code: re.sub(r"[^\n]", "x", code.group(0)), prose(path.read_text()))
    found = LINK.finditer(text)
    return [(text.count("\n", 0, match.start()) + 1, match.group(2)) for match in found]


def broken(path: Path, target: str) -> str | None:
    """Why `target`, linked from `path`, leads nowhere; None when it resolves."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE):
        return None  # https:, mailto: and the like: not this repository's
    file_part, _, fragment = target.partition("#")
    destination = (path.parent / unquote(file_part)).resolve() if file_part else path
    if ROOT not in destination.parents and destination != ROOT:
        return "leads out of the repository"
    if not destination.exists():
        return f"{destination.relative_to(ROOT)} does not exist"
    if fragment and destination.suffix == ".md" and fragment not in anchors(destination):
        return f"{destination.relative_to(ROOT)} has no heading #{fragment}"
    return None


def test_the_slug_is_githubs() -> None:
    assert slug("The landing rule and the effective state") == (
        "the-landing-rule-and-the-effective-state"
    )
    assert slug("`reconciler verify-mergeable`") == "reconciler-verify-mergeable"
    assert slug("Keys in teams.yaml") == "keys-in-teamsyaml"
    assert slug("Roles, and *permissions*: [why](x.md)") == "roles-and-permissions-why"
    assert slug("From plan to deployment ") == "from-plan-to-deployment"


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    # The checker itself, on a document written to fail it: it must not pass everything.
    page = ROOT / "docs" / "how-it-works.md"
    assert broken(page, "#no-such-heading") is not None
    assert broken(page, "missing.md") is not None
    assert broken(page, "../../outside.md") is not None
    assert broken(page, "https://example.com/#anything") is None
    sample = tmp_path / "sample.md"
    sample.write_text("# Title\n\n```\n# no heading\n[a](#nowhere)\n```\n[b `](#x)` c](#title)\n")
    assert anchors(sample) == {"title"}
    assert links(sample) == [(7, "#title")]


def test_every_relative_link_and_anchor_in_the_documentation_resolves() -> None:
    problems = []
    checked = 0
    for path in documents():
        for line, target in links(path):
            checked += 1
            reason = broken(path, target)
            if reason is not None:
                problems.append(f"{path.relative_to(ROOT)}:{line}: ({target}) {reason}")
    assert problems == []
    assert checked >= 20, checked


def test_the_readme_links_every_page_of_the_docs_and_stays_short() -> None:
    readme = ROOT / "README.md"
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in links(readme)}
    pages = set((ROOT / "docs").glob("*.md"))
    assert len(pages) == 8
    assert pages - linked == set()
    # The README is the way in; reference material belongs in docs/. (Issues 18, 19 and 20
    # ask for sections of its own on what follows a deploy, Argo CD and Flux, notifications,
    # metrics and the pipeline page, each a paragraph: 150 left no room for them.)
    assert len(readme.read_text().splitlines()) < 185


# How code cites the design: the path, a comma, and a section's heading as written, in
# quotes; a comment may wrap between the two.
CITATION = re.compile(r'docs/design\.md,\s*(?:#\s*)?"([^"\n]+)"')
DESIGN = ROOT / "docs" / "design.md"
# What the code cited before the project held its design: a file it did not have.
STALE = "DESIGN" + ".md"


def code() -> list[Path]:
    folders = ("reconciler", "tests", "benchmarks")
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def headings(path: Path) -> set[str]:
    """The text of every heading of a Markdown page, as written."""
    found = (HEADING.match(line) for line in prose(path.read_text()).splitlines())
    return {match.group(2) for match in found if match is not None}


def miscited(path: Path, sections: set[str]) -> list[str]:
    """Each citation in `path` of a section the design does not have, with its line, and
    each mention of the file the code used to cite."""
    text = path.read_text()
    problems = [
        f"{path.name}:{text.count(chr(10), 0, match.start()) + 1}: "
        f'no section "{match.group(1)}" in docs/design.md'
        for match in CITATION.finditer(text)
        if match.group(1) not in sections
    ]
    problems += [
        f"{path.name}:{number}: cites {STALE}, which this project does not hold"
        for number, line in enumerate(text.splitlines(), start=1)
        if STALE in line
    ]
    return problems


def test_a_wrong_citation_of_the_design_is_found(tmp_path: Path) -> None:
    # The checker itself, on code written to fail it: it must not pass everything.
    cite = "docs/design.md, "
    sample = tmp_path / "sample.py"
    sample.write_text(
        f'"""Pure, as {cite}"Trust anchor" says."""\n'
        f"# {cite}\n"
        f'# "No such section": a citation wrapped in a comment\n'
        f'x = 1  # see {STALE}, "Trust anchor"\n'
    )
    assert "Trust anchor" in headings(DESIGN)
    assert miscited(sample, headings(DESIGN)) == [
        'sample.py:2: no section "No such section" in docs/design.md',
        f"sample.py:4: cites {STALE}, which this project does not hold",
    ]


def test_every_section_of_the_design_the_code_cites_exists() -> None:
    sections = headings(DESIGN)
    problems = [problem for path in code() for problem in miscited(path, sections)]
    assert problems == []
    cited = {match.group(1) for path in code() for match in CITATION.finditer(path.read_text())}
    assert len(cited) >= 4, cited


# Where a module belongs, as its docstring's first words say it (reconciler/__init__.py
# lists them): a stage of the core, shared by the core, an adapter, the app, the CLI.
PLACE = re.compile(
    r"(Stage (1, load|2, validate|3, authorise|4, decide|5, execute|6, record)"
    r"|Core, shared|Adapter, (git|process|store|clock|files|http|watcher)|App|Web|CLI): \S"
)


# Which places each layer's package holds: the core's stages and shared values, the
# adapters, the app (which wires stages to adapters), the pages (over the app), the CLI.
LAYERS = {
    "core": ("Stage", "Core, shared"),
    "adapters": ("Adapter",),
    "app": ("App", "Stage"),
    "web": ("Web",),
    "cli": ("CLI",),
}


def misplaced(path: Path, layer: str | None = None) -> str | None:
    """Why the module at `path` does not say where it belongs, or says a place its
    layer's package (`layer`) does not hold; None when all is well."""
    docstring = ast.get_docstring(ast.parse(path.read_text()), clean=False)
    if docstring is None:
        return "has no docstring"
    if PLACE.match(docstring) is None:
        return f"opens with {docstring.splitlines()[0]!r}, not with its place"
    if layer is not None and not docstring.startswith(LAYERS[layer]):
        return f"says {docstring.split(':')[0]!r}, a place reconciler/{layer}/ does not hold"
    return None


def test_a_module_that_does_not_say_where_it_belongs_is_found(tmp_path: Path) -> None:
    cases = {
        '"""Stage 3, authorise: who made a commit."""\n': None,
        '"""Adapter, git: the only module that talks to Git."""\n': None,
        '"""CLI: `reconciler plan`."""\n': None,
        "import os\n": "has no docstring",
        '"""Who made a commit."""\n': "opens with 'Who made a commit.', not with its place",
        '"""Stage 4, authorise: a stage under the wrong number."""\n': "opens with",
        '"""Adapter, ftp: an edge nobody named."""\n': "opens with",
    }
    for text, expected in cases.items():
        module = tmp_path / "module.py"
        module.write_text(text)
        found = misplaced(module)
        assert (found is None) == (expected is None), (text, found)
        assert found is None or (expected is not None and found.startswith(expected)), found


def test_a_module_in_the_wrong_layer_is_found(tmp_path: Path) -> None:
    cases = {
        ("core", '"""Stage 4, decide: what may run now."""\n'): None,
        ("app", '"""Stage 3, authorise: the walk."""\n'): None,
        ("adapters", '"""Adapter, git: the only module that talks to Git."""\n'): None,
        ("core", '"""Adapter, git: Git, where the core may not reach."""\n'): "says 'Adapter, git'",
        ("adapters", '"""Stage 4, decide: a rule among the edges."""\n'): "says 'Stage 4, decide'",
        ("app", '"""Core, shared: a value above its layer."""\n'): "says 'Core, shared'",
    }
    for (layer, text), expected in cases.items():
        module = tmp_path / "module.py"
        module.write_text(text)
        found = misplaced(module, layer)
        assert (found is None) == (expected is None), (text, found)
        assert found is None or (expected is not None and found.startswith(expected)), found


def test_every_module_says_where_it_belongs() -> None:
    package = ROOT / "reconciler"
    # The layers' own __init__.py say what the layer is, not a place in it.
    layers = {package / "__init__.py", *(package / layer / "__init__.py" for layer in LAYERS)}
    modules = sorted(set(package.rglob("*.py")) - layers)
    problems = [
        f"{path.relative_to(ROOT)}: {reason} (one of {PLACE.pattern})"
        for path in modules
        if (reason := misplaced(path, layer_of(path))) is not None
    ]
    assert problems == []
    assert len(modules) > 40, len(modules)
    assert {layer_of(path) for path in modules} == {None, *LAYERS}


def layer_of(path: Path) -> str | None:
    """The layer whose package holds `path` (None: the package's top, `__main__`)."""
    layer = path.relative_to(ROOT / "reconciler").parts[0]
    return layer if layer in LAYERS else None


def test_the_readme_starts_with_the_two_commands_ci_runs() -> None:
    # .ci/run runs the README's first two `sh` blocks as written: the user's, then the
    # developer's. Nothing may come before them.
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    user, developer = blocks[0], blocks[1]
    assert user.startswith("python3 -m venv .venv && ")
    assert user.endswith(" .venv/bin/reconciler demo\n")
    assert developer.startswith("python3 -m venv .venv && ")
    assert developer.endswith(" .venv/bin/pytest -q -n 4\n")
    assert text.index(developer) < len("\n".join(text.splitlines()[:20]))


# What the quick start says each command prints, as it quotes it.
QUICK_START = """\
. .venv/bin/activate
reconciler demo --keep ~/story && cd ~/story/config
reconciler validate
reconciler verify
reconciler plan
reconciler history
"""
SHOWS = {
    "reconciler validate": ["valid: 14 file(s) checked, 0 error(s), 0 warning(s)"],
    "reconciler verify": ["24 landing(s), 0 refused"],
    "reconciler plan": [
        "done",
        "run 2026-11-qa-release.1 succeeded",
        "waiting",
        "a trigger by a plan.deploy holder on quality-assurance (olga)",
        "1 more approval by tech-lead",
    ],
    "reconciler history": [
        "created",
        "edited",
        "approved",
        "triggered",
        "run started",
        "run succeeded",
    ],
}


def quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]


def test_the_quick_start_prints_what_the_readme_says_it_shows(tmp_path: Path) -> None:
    section = quick_start()
    assert f"```sh\n{QUICK_START}```" in section
    for command, quotes in SHOWS.items():
        for quote in quotes:
            assert f"`{quote}`" in " ".join(section.split()), (command, quote)
    # The block as a user runs it, in a fresh home: `reconciler` is this checkout's (the
    # tests' interpreter stands in for the activated .venv), each command's output apart.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "reconciler").write_text(f'#!/bin/sh\nexec {sys.executable} -m reconciler "$@"\n')
    (bin_dir / "reconciler").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    commands = QUICK_START.splitlines()[1:]
    script = "".join(f"{command}\nprintf '\\0'\n" for command in commands)
    env = {**os.environ, "HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outputs = dict(zip(commands, done.stdout.split("\0"), strict=False))
    assert len(outputs) == len(commands) == 5
    for kept in ("config", "keys", "releases", "releases/artifacts"):
        assert (home / "story" / kept).is_dir(), kept
    assert "Bob pushes straight to main, and nothing deploys" in outputs[commands[0]]
    for command, quotes in SHOWS.items():
        for quote in quotes:
            assert quote in outputs[command], (command, quote)
