"""App: the seed story, end to end, on a scratch copy of the example (`reconciler demo`).

Called by the CLI, which prints each `Scene` as it comes. It never touches
the user's repository: it copies the shipped example into a scratch folder,
gives everyone with a key in `teams.yaml` a throwaway ed25519 key, and plays
the story with real, signed commits by each person and real reconcile passes
through the `local` driver:

    the eCommerce lead saves a plan, the Customer Portal lead adds their
    application and notes, a reviewing tech lead approves, a developer who
    pushes straight to main does not deploy (and `plan` says why), and ops
    merge: the deploy runs; a Customer Portal version fails QA's smoke test and
    QA rolls it back, then the fixed version passes; then the pipeline and the
    audit trail.

With `gitops`, the environments deploy through the `gitops` driver instead:
into a local GitOps repository (`gitops/`, one kustomization per application
and environment, as Argo CD or Flux would sync), whose signed commits the
story shows at its end.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from msgspec import Struct

from reconciler.adapters.drivers import ARTIFACTS
from reconciler.adapters.gitobjects import Someone
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.signing import new_key_pair
from reconciler.app.history import audit_trail
from reconciler.app.passes import Options, PassReport
from reconciler.app.reconcile import Reconciler
from reconciler.app.session import open_session
from reconciler.app.trail import Entry
from reconciler.core.decide import Decision
from reconciler.core.errors import UsageError
from reconciler.core.loader import load
from reconciler.core.resources import example_dir, schemas_dir
from reconciler.core.status import Pipeline

QA_PLAN = "plans/2026-11-qa-release.yaml"
DEV_PLAN = "plans/2026-11-dev-build.yaml"
HOTFIX_PLAN = "plans/2026-11-qa-hotfix.yaml"
PORTAL_PLAN = "plans/2026-12-portal.yaml"
# The demo's GitOps repository: a kustomization per application and environment.
GITOPS_PATH = "apps/{app}/overlays/{environment}/kustomization.yaml"
_LOCAL_DRIVER = "driver: {type: local}"


class Scene(Struct, frozen=True):
    """One step of the story: what happens, and what the reconciler shows for it."""

    title: str
    narration: str
    payload: PassReport | tuple[Decision, ...] | Pipeline | tuple[Entry, ...] | None = None
    lines: tuple[str, ...] = ()  # shown as they are, after the narration


class Cast(Struct, frozen=True):
    people: dict[str, Someone]
    reconciler_key: Path


def _stage(folder: Path, keys: Path, gitops: Path | None = None) -> Cast:
    """Copy the example, swapping each public key for a throwaway one whose private half we
    hold; with `gitops`, each environment deploys into that GitOps repository."""
    example = example_dir()
    shutil.copytree(example / "environments", folder / "environments")
    if gitops is not None:
        block = (
            "driver:\n  type: gitops\n  gitops:\n"
            f"    repository: {json.dumps(str(gitops))}\n"
            f"    path: {GITOPS_PATH}\n    image: registry.example/{{app}}"
        )
        for environment in (folder / "environments").glob("*.yaml"):
            text = environment.read_text()
            if _LOCAL_DRIVER not in text:
                raise UsageError("the example environments are not the ones the demo knows")
            environment.write_text(text.replace(_LOCAL_DRIVER, block))
    if gitops is None:
        _checked_qa(folder / "environments" / "quality-assurance.yaml", keys.parent / "checks")
    shutil.copytree(schemas_dir(), folder / "schemas")
    (folder / "plans").mkdir()
    text = (example / "teams.yaml").read_text()
    teams = load(text.encode(), "teams.yaml").data
    people: dict[str, Someone] = {}
    for user_id, user in teams["users"].items():
        key_path = None
        for old_key in user.get("keys", ()):
            key_path = keys / user_id
            line = new_key_pair(key_path, user["emails"][0])
            text = text.replace(old_key, line)
        people[user_id] = Someone(user["name"], user["emails"][0], key_path)
    reconciler_key = keys / "reconciler"
    for account in teams["service_accounts"].values():
        for old_key in account["keys"]:
            line = new_key_pair(reconciler_key, account["emails"][0])
            text = text.replace(old_key, line)
    if "root" not in people or not reconciler_key.exists():
        raise UsageError("the example teams.yaml is not the seed story the demo knows")
    (folder / "teams.yaml").write_text(text)
    return Cast(people, reconciler_key)


# The smoke test QA's deploys pass (`driver.check`): the release's page, as a probe would.
_SMOKE = """\
import os, pathlib, sys
page = (pathlib.Path(os.environ["RECONCILER_RELEASE"]) / "index.html").read_text()
if "HTTP 500" in page:
    print("smoke test: GET /checkout answered 500")
    sys.exit(1)
print("smoke test: GET /checkout answered 200")
"""


def _checked_qa(environment: Path, checks: Path) -> None:
    """QA checks each deploy with a smoke test and rolls a failed run back (the demo's own
    script: an environment file names the check's absolute path, never one in the repository)."""
    checks.mkdir()
    smoke = checks / "smoke.py"
    smoke.write_text(_SMOKE)
    check = json.dumps([sys.executable, str(smoke)])
    text = environment.read_text()
    if _LOCAL_DRIVER not in text:
        raise UsageError("the example environments are not the ones the demo knows")
    text = text.replace(_LOCAL_DRIVER, f"driver: {{type: local, check: {check}}}")
    environment.write_text(
        text + "verify: {timeout: 2s, interval: 1s}   # a smoke test after each deploy\n"
        "on_failure: rollback                  # a failed run puts back what it replaced\n"
    )


def _write(folder: Path, path: str, content: str) -> None:
    target = folder / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)


def play(
    folder: Path,
    *,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    driver: str = "local",
) -> Iterator[Scene]:
    """Play the seed story in `folder` (empty or new), one scene at a time, deploying
    through the `driver` (local or gitops)."""
    repository = folder / "config"
    keys = folder / "keys"
    try:
        occupied = folder.exists() and any(folder.iterdir())
        if not occupied:
            repository.mkdir(parents=True)
            keys.mkdir()
    except OSError as error:
        raise UsageError(
            f"cannot create {folder}: {error.strerror}",
            hint="give --keep a new or empty folder you can write to",
        ) from None
    if occupied:
        raise UsageError(f"{folder} is not empty", hint="give --keep a new or empty folder")
    gitops = folder / "gitops" if driver == "gitops" else None
    cast = _stage(repository, keys, gitops)
    people = cast.people
    if gitops is not None:
        _gitops_repository(gitops, repository)
    with GitRepo.init(repository, "main") as repo:
        yield from _story(repo, repository, folder, cast, people, clock, sleep, gitops)
    if gitops is not None:
        yield _gitops_scene(gitops)


def _gitops_repository(path: Path, config: Path) -> None:
    """The GitOps repository the platform team keeps: a kustomization per application and
    environment, on main; the clone stays on a branch of its own, so pushes to main land."""
    teams = load((config / "teams.yaml").read_bytes(), "teams.yaml").data["teams"]
    applications = sorted(
        {name for team in teams.values() for name in team.get("applications", ())}
    )
    environments = sorted(entry.stem for entry in (config / "environments").glob("*.yaml"))
    with GitRepo.init(path, "main") as repo:
        paths = []
        for application in applications:
            for environment in environments:
                relative = GITOPS_PATH.format(app=application, environment=environment)
                _write(path, relative, _kustomization(application))
                paths.append(relative)
        platform = Someone("Platform Team", "platform@example.com")
        repo.commit_paths(paths, "Overlays for every application", sign=False, who=platform)
        repo.checkout("platform", start="main")


def _kustomization(application: str) -> str:
    return (
        "# Kept by the platform team; the reconciler sets newTag, and nothing else.\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "resources:\n"
        "  - ../../base\n"
        "images:\n"
        f"  - name: registry.example/{application}\n"
        '    newTag: "0.0.0"  # nothing deployed yet\n'
    )


def _gitops_scene(gitops: Path) -> Scene:
    """The GitOps repository's main, newest first: the service's signed commits, one per
    step, with the trailers that lead back to the plan and the run."""
    with GitRepo(gitops) as repo:
        tip = repo.resolve("main")
        lines = []
        for oid in repo.first_parent_chain(tip, None):
            commit = repo.commit(oid)
            subject = commit.message.split("\n", 1)[0]
            run = [line for line in commit.message.splitlines() if line.startswith("Run: ")]
            signed = "signed" if b"\ngpgsig " in commit.raw else "unsigned"
            lines.append(
                f"{oid[:12]} {commit.author.name} ({signed}): {subject}"
                + (f", {run[0]}" if run else "")
            )
    return Scene(
        "The GitOps repository: one signed commit per step",
        f"Argo CD or Flux would sync {gitops} (branch main). Each step of each run set one "
        "newTag there in a commit signed by the service key, with Plan, Run, Environment, "
        "Application and Version trailers (`git log main` there, oldest first):",
        lines=tuple(lines),
    )


def _story(
    repo: GitRepo,
    repository: Path,
    folder: Path,
    cast: Cast,
    people: dict[str, Someone],
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    gitops: Path | None = None,
) -> Iterator[Scene]:
    example = example_dir()
    root, alice, diana = people["root"], people["alice"], people["diana"]
    ravi, bob, olga = people["ravi"], people["bob"], people["olga"]
    repo.commit_paths(
        ["teams.yaml", "environments", "schemas"],
        "Seed configuration: teams, roles and three environments",
        sign=True,
        who=root,
    )
    yield Scene(
        "Root Admin commits the configuration",
        "teams.yaml (eCommerce, Customer Portal, architecture and operations teams) and three "
        "environments, development -> quality-assurance -> production. This signed commit is "
        "the trust anchor: every later change is judged by the policy before it.",
    )

    options = Options(
        key=cast.reconciler_key,
        instance="demo",
        driver_root=folder / "releases",
    )

    def reconcile() -> PassReport:
        with Reconciler(repository, options, clock=clock, sleep=sleep) as reconciler:
            return reconciler.pass_once()

    _builds(folder / "releases", (example / DEV_PLAN).read_bytes())
    _write(repository, DEV_PLAN, _dev_plan(["ecommerce: 1.4.0"]))
    repo.commit_paths([DEV_PLAN], "Development build: eCommerce 1.4.0", sign=True, who=alice)
    _write(repository, DEV_PLAN, (example / DEV_PLAN).read_text())
    repo.commit_paths(
        [DEV_PLAN], "Development build: Customer Portal 0.6-dev.41", sign=True, who=diana
    )
    yield Scene(
        "The development builds deploy",
        "Alice (eCommerce lead) and Diana (Customer Portal lead) put their builds into one "
        "development plan. Development lets tech leads deploy, so Diana's commit is the trigger; "
        f"a reconcile pass runs it through {_shipping(gitops)}.",
        reconcile(),
    )

    repo.checkout("release/2026-11-qa", start="main")
    draft = (example / QA_PLAN).read_text()
    saved = draft.replace(
        '  - {name: customer-portal, version: "0.6", action: tag-and-deploy, from: "0.6-dev.41"}\n',
        "",
    ).replace("state: ready", "state: draft")
    saved = re.sub(r"notes: \|\n(  .*\n)+", "notes: |\n  eCommerce: new checkout.\n", saved)
    _write(repository, QA_PLAN, saved)
    repo.commit_paths([QA_PLAN], "QA release: eCommerce 1.4.0 (draft)", sign=True, who=alice)
    yield Scene(
        "Alice saves the QA release plan",
        "On a branch, as a draft: eCommerce 1.4.0 from development to quality-assurance. "
        "Alice may propose her own team's application; she cannot deploy to QA.",
    )

    _write(repository, QA_PLAN, draft)
    repo.commit_paths(
        [QA_PLAN], "QA release: add Customer Portal 0.6, notes, ready", sign=True, who=diana
    )
    yield Scene(
        "Diana adds the Customer Portal and the notes",
        "Customer Portal 0.6 as tag-and-deploy of 0.6-dev.41 (so the approval covers exactly "
        "what will ship), the deployment notes, and state: ready.",
    )

    blob = repo.blob_at(repo.resolve("HEAD"), QA_PLAN)
    repo.commit_empty(
        f"Approve 2026-11-qa-release for quality-assurance\n\nApprove-Plan: {QA_PLAN}@{blob}",
        sign=True,
        who=ravi,
    )
    yield Scene(
        "Ravi approves",
        "A tech lead who edited nothing in the plan signs off the exact version "
        f"{(blob or '')[:12]}: "
        "an empty commit whose Approve-Plan trailer names the plan's full blob id.",
    )

    repo.checkout("main")
    _write(repository, HOTFIX_PLAN, _hotfix_plan())
    repo.commit_paths([HOTFIX_PLAN], "Ship it now", sign=False, who=bob)
    report = reconcile()
    with open_session(repository, branch="main", state_dir=None, now=clock()) as session:
        decisions = session.decisions()
    yield Scene(
        "Bob pushes straight to main, and nothing deploys",
        "Bob (developer) commits his own QA plan directly on main. The content is his to "
        f"propose, so it is saved; the pass that follows {_ran(report)}, and "
        "`reconciler plan` says what the plan waits for:",
        tuple(decision for decision in decisions if decision.path == HOTFIX_PLAN),
    )

    repo.merge("release/2026-11-qa", "Merge release/2026-11-qa", sign=True, who=olga)
    yield Scene(
        "Olga merges the release: the deploy runs",
        "Olga holds the deployment role on quality-assurance, so her merge triggers the plan. "
        "The pass checks the approval, the promotion (both versions run in development), then "
        f"commits a signed start record, runs the {'gitops' if gitops else 'local'} driver, "
        "and commits the log and "
        "deployments/quality-assurance.yaml.",
        reconcile(),
    )

    if gitops is None:
        yield from _after_the_deploy(repo, repository, folder, people, reconcile)

    with open_session(repository, branch="main", state_dir=None, now=clock()) as session:
        view = session.pipeline()
        trail = audit_trail(session.store)
    yield Scene("`reconciler status`: what runs where", "", view)
    yield Scene("`reconciler history`: who did what", "", trail)


def _after_the_deploy(
    repo: GitRepo,
    repository: Path,
    folder: Path,
    people: dict[str, Someone],
    reconcile: Callable[[], PassReport],
) -> Iterator[Scene]:
    """Customer Portal 0.7 fails QA's smoke test and QA rolls back; 0.7.1 passes."""
    diana, ravi, olga = people["diana"], people["ravi"], people["olga"]
    for build, broken in (("0.7-dev.1", True), ("0.7-dev.2", False)):
        version = build.replace("-dev.1", "").replace("0.7-dev.2", "0.7.1")
        _build(folder / "releases", "customer-portal", build, broken=broken)
        _write(repository, DEV_PLAN, _dev_plan(["ecommerce: 1.4.0", f"customer-portal: {build}"]))
        repo.commit_paths(
            [DEV_PLAN], f"Development build: Customer Portal {build}", sign=True, who=diana
        )
        reconcile()
        _write(repository, PORTAL_PLAN, _portal_plan(version, build))
        repo.commit_paths([PORTAL_PLAN], f"QA: Customer Portal {version}", sign=True, who=diana)
        blob = repo.blob_at(repo.resolve("HEAD"), PORTAL_PLAN)
        for who, trailer, verb in (
            (ravi, "Approve-Plan", "Approve"),
            (olga, "Deploy-Plan", "Deploy"),
        ):
            repo.commit_empty(
                f"{verb} 2026-12-portal for quality-assurance\n\n{trailer}: {PORTAL_PLAN}@{blob}",
                sign=True,
                who=who,
            )
        report = reconcile()
        finish = repo.commit(repo.resolve("main")).message
        if broken:
            yield Scene(
                "Customer Portal 0.7 fails QA's smoke test, and QA rolls back",
                f"Diana's {build} ran in development; she proposes 0.7 for QA, Ravi approves "
                "and Olga triggers it. QA checks each deploy (verify) and rolls a failed run "
                "back (on_failure: rollback): the smoke test fails, so the run puts 0.6 back, "
                "checks it, and its finish record says so:",
                report,
                lines=tuple(finish.strip().splitlines()),
            )
        else:
            yield Scene(
                "The fix passes",
                f"Diana fixes the checkout in {build} and proposes 0.7.1 (a new plan version, "
                "approved and triggered again): the smoke test passes, and the record says "
                "it was verified.",
                report,
                lines=tuple(line for line in finish.splitlines() if line.startswith("Verified:")),
            )


def _build(root: Path, application: str, version: str, *, broken: bool) -> None:
    build = root / ARTIFACTS / application / version
    build.mkdir(parents=True)
    fault = "<!-- HTTP 500 on /checkout -->\n" if broken else ""
    (build / "index.html").write_text(f"<h1>{application} {version}</h1>\n{fault}")


def _portal_plan(version: str, build: str) -> str:
    return (
        "# yaml-language-server: $schema=../schemas/plan.schema.json\n"
        "name: 2026-12-portal\n"
        "source: development\n"
        "target: quality-assurance\n"
        "applications:\n"
        f'  - {{name: customer-portal, version: "{version}", action: tag-and-deploy, '
        f'from: "{build}"}}\n'
        "state: ready\n"
    )


def _shipping(gitops: Path | None) -> str:
    if gitops is None:
        return "the local driver, which ships the builds a CI left in releases/artifacts/"
    return (
        "the gitops driver, which sets each version's newTag in the GitOps repository "
        "(gitops/), one signed commit per application"
    )


def _builds(root: Path, plan: bytes) -> None:
    """What a CI would have built for the development plan: each application version's
    build, where the local driver looks for it (`<root>/artifacts/<app>/<version>/`)."""
    for entry in load(plan, DEV_PLAN).data["applications"]:
        build = root / ARTIFACTS / entry["name"] / entry["version"]
        build.mkdir(parents=True)
        (build / "index.html").write_text(f"<h1>{entry['name']} {entry['version']}</h1>\n")


def _ran(report: PassReport) -> str:
    if not report.runs:
        return "deploys nothing"
    return "runs " + ", ".join(run.run for run in report.runs)


def _dev_plan(entries: list[str]) -> str:
    lines = [
        "# yaml-language-server: $schema=../schemas/plan.schema.json",
        "name: 2026-11-dev-build",
        "target: development",
        "applications:",
    ]
    for entry in entries:
        name, version = entry.split(": ")
        lines.append(f'  - {{name: {name}, version: "{version}"}}')
    lines += ["state: ready", ""]
    return "\n".join(lines)


def _hotfix_plan() -> str:
    return (
        "# yaml-language-server: $schema=../schemas/plan.schema.json\n"
        "name: 2026-11-qa-hotfix\n"
        "source: development\n"
        "target: quality-assurance\n"
        "applications:\n"
        '  - {name: ecommerce, version: "1.4.0"}\n'
        "notes: Straight to QA, please.\n"
        "state: ready\n"
    )


def where_to_look(folder: Path) -> list[str]:
    gitops = folder / "gitops"
    shown = (
        [f"git -C {gitops} log --format='%h %an: %s%n%(trailers:only,unfold)' -p main"]
        if gitops.is_dir()
        else []
    )
    return shown + _where_to_look(folder)


def _where_to_look(folder: Path) -> list[str]:
    """Commands to read the kept story, then to carry it on as its people: Ravi approves
    Bob's hotfix, Olga triggers it, and a pass as the service deploys it."""
    repository = folder / "config"
    keys = folder / "keys"
    users = load((repository / "teams.yaml").read_bytes(), "teams.yaml").data["users"]
    git = f"git -C {shlex.quote(str(repository))} config"
    at = f"--repo {shlex.quote(str(repository))}"
    hotfix = HOTFIX_PLAN.removeprefix("plans/").removesuffix(".yaml")

    def act_as(user_id: str) -> list[str]:
        # A person's commits need git to sign with their key (gpg.format ssh: the keys
        # are SSH keys) and to know their name and email, not the machine's.
        user = users[user_id]
        return [
            f"{git} user.name {shlex.quote(user['name'])}",
            f"{git} user.email {shlex.quote(user['emails'][0])}",
            f"{git} user.signingkey {shlex.quote(str(keys / user_id))}",
        ]

    return [
        f"git -C {repository} log --graph --format='%h %an: %s%n%(trailers:only,unfold)'",
        f"reconciler status --repo {repository}",
        f"reconciler history --repo {repository}",
        *(
            []
            if (folder / "gitops").is_dir()
            else [f"ls -l {folder / 'releases' / 'quality-assurance' / 'customer-portal'}"]
        ),
        "# Carry it on as its people: Ravi approves Bob's hotfix, Olga triggers it",
        f"{git} gpg.format ssh",
        *act_as("ravi"),
        f"reconciler approve {hotfix} {at}",
        *act_as("olga"),
        f"reconciler deploy {hotfix} {at}",
        # The service's key, and the releases the story made.
        f"reconciler apply --repo {repository} --key {keys / 'reconciler'} "
        f"--driver-root {folder / 'releases'}",
    ]


class Story(Struct, frozen=True):
    """The seed story as `reconciler demo` tells it: its scenes are played as they are read."""

    folder: Path
    kept: bool  # whether the folder stays, to look around
    scenes: Iterator[Scene]

    def look_around(self) -> list[str]:
        """`where_to_look`, once every scene is played."""
        return where_to_look(self.folder)


def tell(
    folder: Path,
    *,
    kept: bool,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
    driver: str = "local",
) -> Story:
    """The story played in `folder` (`play`), one scene per read."""
    return Story(folder, kept, play(folder, clock=clock, sleep=sleep, driver=driver))
