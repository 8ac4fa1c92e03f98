"""The gitops driver: a step is one signed commit to a GitOps repository (real bare
repositories, a person pushing meanwhile), and its check waits for Argo CD or Flux
(small local HTTP servers answering as those APIs document)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from msgspec.structs import replace

from reconciler.adapters.drivers import Outcome, Step, load_driver
from reconciler.adapters.gitops import Committer, GitOpsDriver
from reconciler.adapters.signing import SigningKey, signed_commit
from reconciler.cli import main
from reconciler.core.model import ArgoCDWait, DriverSpec, FluxWait, GitOpsTarget
from tests.configrepo import example_file
from tests.configrepo import reconciler as reconciler_cli
from tests.configrepo import replace as replace_in
from tests.people import People, make_key
from tests.repositories import SeedRepo, run_git, trailers
from tests.scenarios import DEV_PLAN, ECOMMERCE, dev_plan

KUSTOMIZATION = "apps/ecommerce/overlays/development/kustomization.yaml"
# A file as people write it: comments, an indented sequence, quotes, a blank line.
KUSTOMIZATION_TEXT = """\
# Managed by hand and by the reconciler: keep the comments.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
    - ../../base   # the shared base

images:
    - name: registry.example/sidecar
      newTag: "2.0"     # pinned by the platform team
    - name: registry.example/ecommerce
      newTag: 1.3.0 # set by the reconciler
      newName: registry.example/ecommerce
"""
VALUES = "apps/ecommerce/values-development.yaml"
VALUES_TEXT = """\
replicaCount: 2
image:
  repository: registry.example/ecommerce
  tag: '1.3.0'   # quoted on purpose
  pullPolicy: IfNotPresent
"""
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def clock() -> datetime:
    return NOW


@dataclass
class GitOpsRepo:
    """A bare GitOps repository and a person's clone of it."""

    remote: Path
    person: Path

    def push(self, path: str, text: str, message: str = "a person's change") -> str:
        file = self.person / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        run_git(self.person, "add", path)
        run_git(self.person, "commit", "-q", "-m", message)
        run_git(self.person, "push", "-q", "origin", "HEAD:main")
        return self.tip()

    def tip(self) -> str:
        return run_git(self.remote, "rev-parse", "main")

    def show(self, path: str, rev: str = "main") -> str:
        return run_git(self.remote, "show", f"{rev}:{path}") + "\n"

    def pull(self) -> None:
        run_git(self.person, "pull", "-q", "--rebase", "origin", "main")


@pytest.fixture
def gitops(tmp_path: Path) -> GitOpsRepo:
    remote = tmp_path / "gitops.git"
    run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    person = tmp_path / "person"
    run_git(tmp_path, "clone", "-q", str(remote), str(person))
    for name, value in (("user.name", "Pat Person"), ("user.email", "pat@example.org")):
        run_git(person, "config", name, value)
    run_git(person, "config", "commit.gpgsign", "false")
    run_git(person, "checkout", "-q", "-b", "main")
    repo = GitOpsRepo(remote, person)
    (person / VALUES).parent.mkdir(parents=True)
    (person / VALUES).write_text(VALUES_TEXT)
    run_git(person, "add", VALUES)
    repo.push(KUSTOMIZATION, KUSTOMIZATION_TEXT, "the ecommerce overlay")
    return repo


@pytest.fixture(scope="module")
def service_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_key(tmp_path_factory.mktemp("keys"), "service")


def committer(key: Path, before_signing: Callable[[], None] = lambda: None) -> Committer:
    loaded = SigningKey.load(key)

    def sign(payload: bytes) -> bytes:
        before_signing()  # the middle of a step: after it read the branch, before it pushes
        return signed_commit(payload, loaded)

    return Committer("Reconciler", "reconciler@example.org", sign, clock)


def target(repo: GitOpsRepo, **changes: Any) -> GitOpsTarget:
    values: dict[str, Any] = {
        "repository": str(repo.remote),
        "path": "apps/{app}/overlays/{environment}/kustomization.yaml",
        "image": "registry.example/{app}",
    }
    values.update(changes)
    return GitOpsTarget(**values)


def step(version: str = "1.4.0", **changes: Any) -> Step:
    values: dict[str, Any] = {
        "application": "ecommerce",
        "version": version,
        "environment": "development",
        "plan": "plans/dev.yaml",
        "run": "dev.1",
        "action": "deploy",
        "from_version": None,
        "source": None,
        "lease_until": NOW + timedelta(minutes=10),
    }
    values.update(changes)
    return Step(**values)


def driver(repo: GitOpsRepo, tmp_path: Path, signer: Path, **changes: Any) -> GitOpsDriver:
    return GitOpsDriver(target(repo, **changes), tmp_path / "state", committer(signer))


def deploy(driver: GitOpsDriver, the_step: Step | None = None) -> Outcome:
    return driver.deploy(the_step or step(), lambda line: None)


def diff_lines(repo: GitOpsRepo, old: str, new: str) -> list[str]:
    shown = run_git(repo.remote, "diff", "--unified=0", old, new)
    return [
        line
        for line in shown.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


# -- deploy: what it writes -----------------------------------------------------------


def test_a_step_changes_only_the_images_new_tag_line(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    before = gitops.tip()
    outcome = deploy(driver(gitops, tmp_path, service_key))
    assert outcome.ok, outcome.summary
    after = gitops.tip()
    assert run_git(gitops.remote, "rev-parse", f"{after}^") == before
    assert diff_lines(gitops, before, after) == [
        "-      newTag: 1.3.0 # set by the reconciler",
        "+      newTag: 1.4.0 # set by the reconciler",
    ]
    assert gitops.show(KUSTOMIZATION) == KUSTOMIZATION_TEXT.replace(
        "newTag: 1.3.0", "newTag: 1.4.0"
    )


def test_a_helm_values_key_keeps_its_quotes_and_comment(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    before = gitops.tip()
    values = driver(
        gitops, tmp_path, service_key, path="apps/{app}/values-{environment}.yaml",
        image=None, key="image.tag",
    )  # fmt: skip
    assert deploy(values, step("1.10")).ok
    assert diff_lines(gitops, before, gitops.tip()) == [
        "-  tag: '1.3.0'   # quoted on purpose",
        "+  tag: '1.10'   # quoted on purpose",
    ]
    assert values.current("ecommerce", "development") == "1.10"


def test_a_plain_value_that_would_read_as_a_number_is_quoted(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    the_driver = driver(gitops, tmp_path, service_key)
    assert deploy(the_driver, step("1.10")).ok
    assert '      newTag: "1.10" # set by the reconciler\n' in gitops.show(KUSTOMIZATION)
    assert the_driver.current("ecommerce", "development") == "1.10"


def test_the_commit_is_signed_by_the_service_key_with_trailers(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    assert deploy(driver(gitops, tmp_path, service_key)).ok
    trailers = run_git(
        gitops.remote, "log", "-1", "--format=%(trailers:only,unfold)", "main"
    ).splitlines()
    assert trailers == [
        "Plan: plans/dev.yaml",
        "Run: dev.1",
        "Environment: development",
        "Application: ecommerce",
        "Version: 1.4.0",
    ]
    assert run_git(gitops.remote, "log", "-1", "--format=%an <%ae>", "main") == (
        "Reconciler <reconciler@example.org>"
    )
    signers = tmp_path / "allowed_signers"
    public = service_key.with_suffix(".pub").read_text().strip()
    signers.write_text(f"reconciler@example.org {public}\n")
    checked = run_git(
        gitops.remote, "-c", f"gpg.ssh.allowedSignersFile={signers}",
        "verify-commit", "--raw", "main",
    )  # fmt: skip
    assert checked == ""  # --raw's status goes to stderr; a bad signature fails run_git
    shown = subprocess.run(
        ["git", "-c", f"gpg.ssh.allowedSignersFile={signers}", "log", "-1", "--format=%G?"],
        cwd=gitops.remote, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shown.stdout.strip() == "G"


def test_a_version_already_set_makes_no_commit(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    assert deploy(driver(gitops, tmp_path, service_key)).ok
    tip = gitops.tip()
    again = deploy(driver(gitops, tmp_path, service_key), step(run="dev.2"))
    assert again.ok
    assert "already" in again.summary
    assert gitops.tip() == tip


def test_a_person_pushing_during_a_step_keeps_their_change(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    pushed: list[str] = []

    def meanwhile() -> None:
        if not pushed:  # once: the step's retry then lands on the person's tip
            gitops.pull()
            pushed.append(gitops.push("apps/shop/values.yaml", "replicas: 3\n"))

    the_driver = GitOpsDriver(target(gitops), tmp_path / "state", committer(service_key, meanwhile))
    lines: list[str] = []
    outcome = the_driver.deploy(step(), lines.append)
    assert outcome.ok, outcome.summary
    assert run_git(gitops.remote, "rev-parse", "main^") == pushed[0]
    assert gitops.show("apps/shop/values.yaml") == "replicas: 3\n"
    assert "newTag: 1.4.0" in gitops.show(KUSTOMIZATION)
    assert any("moved" in line for line in lines)


def test_a_later_step_on_a_stale_view_is_made_again_on_the_new_tip(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    the_driver = driver(gitops, tmp_path, service_key)
    assert deploy(the_driver).ok
    gitops.pull()
    edited = gitops.show(KUSTOMIZATION).replace("# pinned", "# still pinned")
    person = gitops.push(KUSTOMIZATION, edited, "the platform team's comment")
    assert deploy(the_driver, step("1.5.0")).ok
    assert run_git(gitops.remote, "rev-parse", "main^") == person
    assert gitops.show(KUSTOMIZATION) == edited.replace("newTag: 1.4.0", "newTag: 1.5.0")


def test_a_file_people_added_after_the_drivers_last_look_is_found(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    the_driver = driver(gitops, tmp_path, service_key)
    assert deploy(the_driver).ok
    gitops.pull()
    shop = KUSTOMIZATION_TEXT.replace("registry.example/ecommerce", "registry.example/shop")
    gitops.push(KUSTOMIZATION.replace("ecommerce", "shop"), shop, "a new application")
    outcome = deploy(the_driver, step(application="shop"))
    assert outcome.ok, outcome.summary
    assert "newTag: 1.4.0" in gitops.show(KUSTOMIZATION.replace("ecommerce", "shop"))


# -- deploy: clear failures, nothing half-written ------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"image": "registry.example/nope"}, "no images[] entry named registry.example/nope"),
        ({"path": "apps/{app}/missing.yaml"}, "apps/ecommerce/missing.yaml is not a file"),
        ({"image": None, "key": "image.digest", "path": "apps/{app}/values-{environment}.yaml"},
         "no value at image.digest"),
    ],
)  # fmt: skip
def test_a_step_that_cannot_set_its_value_fails_and_writes_nothing(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path, changes: dict[str, Any], expected: str
) -> None:
    before = gitops.tip()
    outcome = deploy(driver(gitops, tmp_path, service_key, **changes))
    assert not outcome.ok
    assert not outcome.transient
    assert expected in outcome.summary
    assert gitops.tip() == before
    assert gitops.show(KUSTOMIZATION) == KUSTOMIZATION_TEXT


def test_a_push_the_repository_refuses_fails_the_step(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    hook = gitops.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = gitops.tip()
    outcome = deploy(driver(gitops, tmp_path, service_key))
    assert not outcome.ok
    assert "refused the push" in outcome.summary
    assert "protected branch" in outcome.summary
    assert gitops.tip() == before


def test_no_push_once_the_runs_lease_has_passed(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    before = gitops.tip()
    outcome = deploy(driver(gitops, tmp_path, service_key), step(lease_until=NOW))
    assert not outcome.ok
    assert "lease ended" in outcome.summary
    assert gitops.tip() == before


def test_without_the_service_key_it_reads_but_does_not_deploy(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    spec = DriverSpec(type="gitops", gitops=target(gitops))
    reader = load_driver(spec, tmp_path / "state")
    assert reader.current("ecommerce", "development") == "1.3.0"
    outcome = reader.deploy(step(), lambda line: None)
    assert not outcome.ok
    assert "--key" in outcome.summary


def test_a_repository_url_that_names_a_command_runs_nothing(
    tmp_path: Path, service_key: Path
) -> None:
    # An environment file's author may not run commands on the service's machine, even
    # where the machine's git configuration allows git's ext:: transport.
    witness = tmp_path / "pwned"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[protocol]\n\tallow = always\n")
    url = f"ext::sh -c touch% {witness}"
    the_driver = GitOpsDriver(
        GitOpsTarget(repository=url, path="a.yaml", key="tag"),
        tmp_path / "state",
        committer(service_key),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.delenv("GIT_CONFIG_GLOBAL", raising=False)
        outcome = deploy(the_driver)
    assert not outcome.ok
    assert not witness.exists()


# -- check: the branch, Argo CD, Flux -------------------------------------------------


def test_check_without_an_engine_reads_the_branch(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    the_driver = driver(gitops, tmp_path, service_key)
    assert not the_driver.check(step(), lambda line: None, 5).ok
    assert deploy(the_driver).ok
    assert the_driver.check(step(), lambda line: None, 5).ok
    gitops.pull()
    gitops.push(KUSTOMIZATION, KUSTOMIZATION_TEXT, "a person sets it back")
    assert not the_driver.check(step(), lambda line: None, 5).ok


@dataclass
class Recorded:
    """What a stand-in server was asked, and what it answers next."""

    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def serve() -> Iterator[
    Callable[[Callable[[str, str, Any], tuple[int, Any]]], tuple[str, Recorded]]
]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Callable[[str, str, Any], tuple[int, Any]]) -> tuple[str, Recorded]:
        recorded = Recorded()

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                recorded.requests.append((self.command, self.path, dict(self.headers), body))
                status, reply = answer(self.command, self.path, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", recorded

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def argocd_application(name: str, revision: str, sync: str, health: str) -> dict[str, Any]:
    """An Application as `GET /api/v1/applications/{name}` returns it (the fields read here):
    https://argo-cd.readthedocs.io/en/stable/developer-guide/api-docs/ (v1alpha1Application,
    its status.sync: SyncStatus {status, revision}, status.health: HealthStatus {status})."""
    return {
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"source": {"repoURL": "git@example.org:gitops.git", "targetRevision": "main"}},
        "status": {
            "sync": {"status": sync, "revision": revision},
            "health": {"status": health},
            "operationState": {"phase": "Succeeded"},
        },
    }


def test_the_argocd_check_asks_for_the_sync_and_waits_for_synced_and_healthy(
    gitops: GitOpsRepo,
    tmp_path: Path,
    service_key: Path,
    serve: Callable[[Callable[[str, str, Any], tuple[int, Any]]], tuple[str, Recorded]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = gitops.tip()
    application = {"revision": old, "sync": "Synced", "health": "Healthy"}

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        if path != "/api/v1/applications/ecommerce-development" and not path.endswith("/sync"):
            return 404, {"error": "not found", "code": 5}
        if method == "POST":
            # Argo CD starts the sync; the application is OutOfSync and Progressing meanwhile.
            application.update(revision=body["revision"], sync="OutOfSync", health="Progressing")
            return 200, argocd_application("ecommerce-development", old, "OutOfSync", "Healthy")
        shown = argocd_application("ecommerce-development", **application)
        if application["health"] == "Progressing":
            application["health"] = "Healthy"
        else:
            application["sync"] = "Synced"
        return 200, shown

    url, recorded = serve(answer)
    token = tmp_path / "argocd-token"
    token.write_text("s3cret-token\n")
    monkeypatch.setenv("RECONCILER_ARGOCD_SERVER", url)
    monkeypatch.setenv("RECONCILER_ARGOCD_TOKEN_FILE", str(token))
    the_driver = driver(
        gitops, tmp_path, service_key, argocd=ArgoCDWait("{app}-{environment}", sync=True)
    )
    assert deploy(the_driver).ok
    ours = gitops.tip()
    checks = [the_driver.check(step(), lambda line: None, 5) for _ in range(3)]
    assert [check.ok for check in checks] == [False, False, True]
    assert "has not applied" in checks[0].summary
    posts = [request for request in recorded.requests if request[0] == "POST"]
    assert [(path, body["revision"]) for _, path, _, body in posts] == [
        ("/api/v1/applications/ecommerce-development/sync", ours)
    ]
    assert {headers["Authorization"] for _, _, headers, _ in recorded.requests} == {
        "Bearer s3cret-token"
    }


def test_the_argocd_check_fails_clearly_without_its_token(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILER_ARGOCD_SERVER", raising=False)
    monkeypatch.delenv("RECONCILER_ARGOCD_TOKEN_FILE", raising=False)
    the_driver = driver(gitops, tmp_path, service_key, argocd=ArgoCDWait("ecommerce"))
    assert deploy(the_driver).ok
    checked = the_driver.check(step(), lambda line: None, 5)
    assert not checked.ok
    assert "RECONCILER_ARGOCD_TOKEN_FILE" in checked.summary


def flux_kustomization(name: str, revision: str, ready: str) -> dict[str, Any]:
    """A Flux Kustomization as the Kubernetes API returns it (the fields read here):
    https://fluxcd.io/flux/components/kustomize/kustomizations/#kustomization-status
    (status.lastAppliedRevision "<branch>@sha1:<commit>", status.conditions[type=Ready])."""
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system"},
        "spec": {"sourceRef": {"kind": "GitRepository", "name": "gitops"}, "path": "./apps"},
        "status": {
            "lastAppliedRevision": revision,
            "conditions": [{"type": "Ready", "status": ready, "reason": "ReconciliationSucceeded"}],
        },
    }


def test_the_flux_check_annotates_the_git_repository_and_waits_for_the_kustomization(
    gitops: GitOpsRepo,
    tmp_path: Path,
    service_key: Path,
    serve: Callable[[Callable[[str, str, Any], tuple[int, Any]]], tuple[str, Recorded]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = gitops.tip()
    applied = {"revision": f"main@sha1:{old}", "ready": "True"}
    repository_path = (
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/gitops"
    )
    kustomization_path = (
        "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/"
        "ecommerce-development"
    )

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "PATCH" and path == repository_path:
            # The GitRepository (https://fluxcd.io/flux/components/source/gitrepositories/),
            # annotated: source-controller fetches, kustomize-controller applies the new tip.
            applied.update(revision=f"main@sha1:{gitops.tip()}", ready="Unknown")
            return 200, {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": "gitops", "annotations": body["metadata"]["annotations"]},
                "status": {"artifact": {"revision": f"main@sha1:{gitops.tip()}"}},
            }
        if method == "GET" and path == kustomization_path:
            shown = flux_kustomization("ecommerce-development", **applied)
            applied["ready"] = "True"
            return 200, shown
        return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}

    url, recorded = serve(answer)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": "k8s-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    the_driver = driver(
        gitops, tmp_path, service_key, flux=FluxWait("flux-system", "gitops", "{app}-{environment}")
    )
    assert deploy(the_driver).ok
    checks = [the_driver.check(step(), lambda line: None, 5) for _ in range(2)]
    assert [check.ok for check in checks] == [False, True]
    patches = [request for request in recorded.requests if request[0] == "PATCH"]
    assert len(patches) == 1
    assert "reconcile.fluxcd.io/requestedAt" in patches[0][3]["metadata"]["annotations"]


# -- the environment file -------------------------------------------------------------


def test_a_gitops_block_that_sets_two_values_is_refused_at_its_line(example_copy: Path) -> None:
    subprocess.run(["git", "init", "-q", str(example_copy)], check=True)
    replace_in(
        example_copy,
        "environments/production.yaml",
        "driver: {type: local}",
        "driver:\n  type: gitops\n  gitops:\n    repository: git@example.org:gitops.git\n"
        "    path: apps/{app}/{cluster}/kustomization.yaml\n    image: x\n    key: image.tag",
    )
    result = CliRunner().invoke(main, ["validate", "--repo", str(example_copy), "--format", "json"])
    assert result.exit_code == 1
    found = [
        (item["file"], item["line"], item["message"], item["hint"])
        for item in json.loads(result.stdout)["findings"]
    ]
    assert [message for _, _, message, _ in found] == [
        "a gitops driver sets one value: an image's newTag or a key path",
        "'{cluster}' is not a placeholder of the gitops driver",
    ]
    assert {file for file, _, _, _ in found} == {"environments/production.yaml"}
    assert all(line is not None and hint for _, line, _, hint in found)


def test_a_step_with_a_replaced_version_never_reaches_the_trailers(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    before = gitops.tip()
    outcome = deploy(driver(gitops, tmp_path, service_key), replace(step(), run="dev.1\nX: y"))
    assert not outcome.ok
    assert gitops.tip() == before


# -- the demo -------------------------------------------------------------------------


def test_the_demo_with_the_gitops_driver_commits_each_step_to_its_gitops_repository(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    result = reconciler_cli("demo", "--driver", "gitops", "--keep", folder, timeout=300)
    assert result.exit_code == 0, result.stderr
    gitops = folder / "gitops"
    made = run_git(gitops, "log", "--reverse", "--format=%an|%s", "main").splitlines()
    assert made == [
        "Platform Team|Overlays for every application",
        "reconciler|deploy ecommerce 1.4.0 to development",
        "reconciler|deploy customer-portal 0.6-dev.41 to development",
        "reconciler|deploy ecommerce 1.4.0 to quality-assurance",
        "reconciler|deploy customer-portal 0.6 to quality-assurance",
    ]
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"reconciler@example.com {(folder / 'keys/reconciler.pub').read_text()}")
    verified = run_git(
        gitops, "-c", f"gpg.ssh.allowedSignersFile={signers}", "log", "--format=%G?", "main"
    ).splitlines()
    assert verified == ["G", "G", "G", "G", "N"]
    trailers = run_git(gitops, "log", "-1", "--format=%(trailers:only,unfold)", "main")
    assert trailers.splitlines() == [
        "Plan: 2026-11-qa-release",
        "Run: 2026-11-qa-release.1",
        "Environment: quality-assurance",
        "Application: customer-portal",
        "Version: 0.6",
    ]
    overlay = run_git(
        gitops, "show", "main:apps/ecommerce/overlays/quality-assurance/kustomization.yaml"
    )
    assert "# Kept by the platform team" in overlay
    assert 'newTag: "1.4.0"  # nothing deployed yet' in overlay
    assert "deploy customer-portal 0.6 to quality-assurance, Run: 2026-11-qa-release.1" in (
        result.stdout
    )


# -- end to end: a run through the reconciler ----------------------------------------


def test_a_run_commits_to_the_gitops_repository_and_waits_for_argocd(
    gitops: GitOpsRepo,
    tmp_path: Path,
    people: People,
    serve: Callable[[Callable[[str, str, Any], tuple[int, Any]]], tuple[str, Recorded]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    application = {"revision": gitops.tip(), "sync": "Synced", "health": "Healthy"}

    def answer(method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "POST":  # synced at once, as a small application is
            application.update(revision=body["revision"])
        return 200, argocd_application("ecommerce-development", **application)

    url, recorded = serve(answer)
    token = tmp_path / "argocd-token"
    token.write_text("s3cret-token\n")
    monkeypatch.setenv("RECONCILER_ARGOCD_SERVER", url)
    monkeypatch.setenv("RECONCILER_ARGOCD_TOKEN_FILE", str(token))
    driver_block = (
        "\n  type: gitops\n  gitops:\n"
        f"    repository: {json.dumps(str(gitops.remote))}\n"
        "    path: apps/{app}/overlays/{environment}/kustomization.yaml\n"
        "    image: registry.example/{app}\n"
        '    argocd: {application: "{app}-{environment}", sync: true}'
    )
    environment = (
        example_file("environments/development.yaml").replace(" {type: local}", driver_block)
        + "verify: {timeout: 30s, interval: 1s}\n"
    )
    repo = SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": environment})
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "succeeded 2026-11-dev-build.1" in result.stdout
    assert trailers(repo, "main")["Verified"] == "1 ecommerce 1.4.0"
    ours = gitops.tip()
    assert run_git(gitops.remote, "log", "-1", "--format=%(trailers:only,unfold)", ours).split(
        "\n"
    )[1:3] == ["Run: 2026-11-dev-build.1", "Environment: development"]
    assert "newTag: 1.4.0 # set by the reconciler" in gitops.show(KUSTOMIZATION)
    posts = [body["revision"] for method, _, _, body in recorded.requests if method == "POST"]
    assert posts == [ours]
