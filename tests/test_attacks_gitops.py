"""Attacks on the gitops driver: its Argo CD token, Argo CD's answers, and GitOps files
written so that the one value a step sets is not the one value it changes.

Each test is one attempt, as the attacker (or an accident an attacker waits for) would
make it, against real bare repositories, a real run through the reconciler and small
local HTTP servers standing in for Argo CD. The defences these tests pin:

- the token reaches Argo CD's server and nothing else: never a run's log (which is
  committed to the configuration repository), never another host a redirect names;
- no answer, however slow or large, holds a check past its timeout or fills memory;
- a step changes exactly the value its key path names: a value shared through a YAML
  anchor (a deploy to development moving production) or hidden behind a duplicate key
  (the engine reads one, the driver sets and reads back the other) is refused.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.model import ArgoCDWait
from tests import test_gitops_driver
from tests.configrepo import example_file
from tests.people import People
from tests.repositories import SeedRepo, run_git
from tests.scenarios import DEV_PLAN, ECOMMERCE, dev_plan
from tests.test_gitops_driver import (
    KUSTOMIZATION,
    KUSTOMIZATION_TEXT,
    GitOpsRepo,
    argocd_application,
    deploy,
    driver,
    step,
)

# The fixtures of the driver's own tests: a GitOps repository, the service key.
gitops = test_gitops_driver.gitops
service_key = test_gitops_driver.service_key

TOKEN = "s3cret-argocd-token"  # a stand-in, looked for where it must not be


@pytest.fixture
def servers() -> Iterator[Callable[[type[BaseHTTPRequestHandler]], str]]:
    """Start a local HTTP server with a handler class; its URL."""
    started: list[ThreadingHTTPServer] = []

    def start(handler: type[BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        started.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def use_argocd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, token: str) -> None:
    file = tmp_path / "argocd-token"
    file.write_text(token)
    monkeypatch.setenv("RECONCILER_ARGOCD_SERVER", url)
    monkeypatch.setenv("RECONCILER_ARGOCD_TOKEN_FILE", str(file))


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- the token ------------------------------------------------------------------------


def test_an_argocd_token_file_of_two_lines_never_reaches_the_committed_log(
    gitops: GitOpsRepo,
    tmp_path: Path,
    people: People,
    servers: Callable[[type[BaseHTTPRequestHandler]], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token file with a second line (a note, a rotated token left below the new one):
    Python refuses the header, and its error quotes the header's value, token and all.
    That error must not become the check's summary, which the run's log, committed to
    the configuration repository for everyone who reads it, carries."""
    asked: list[str] = []

    class Argocd(_Quiet):
        def do_GET(self) -> None:
            asked.append(self.path)
            data = json.dumps(argocd_application("x", "", "Synced", "Healthy")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

    use_argocd(monkeypatch, tmp_path, servers(Argocd), f"{TOKEN}\nold-{TOKEN}\n")
    driver_block = (
        "\n  type: gitops\n  gitops:\n"
        f"    repository: {json.dumps(str(gitops.remote))}\n"
        "    path: apps/{app}/overlays/{environment}/kustomization.yaml\n"
        "    image: registry.example/{app}\n"
        '    argocd: {application: "{app}-{environment}"}'
    )
    environment = (
        example_file("environments/development.yaml").replace(" {type: local}", driver_block)
        + "verify: {timeout: 1s, interval: 1s}\n"
    )
    repo = SeedRepo.create(tmp_path, people, extra={"environments/development.yaml": environment})
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    result = repo.apply()
    assert "failed 2026-11-dev-build.1" in result.stdout, result.stdout + result.stderr
    everything = run_git(repo.path, "log", "-p", "--all", "--format=%B")
    assert TOKEN not in everything
    assert "token file" in everything  # the log says what is wrong with it
    assert TOKEN not in result.stdout + result.stderr
    assert asked == []  # nothing was sent with a broken header


class _Redirect(_Quiet):
    """Argo CD's address answering with a redirect to `elsewhere` (another host: a login
    page, a moved server, or someone who took the old name)."""

    elsewhere = ""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.elsewhere + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET


def test_the_argocd_token_never_follows_a_redirect(
    gitops: GitOpsRepo,
    tmp_path: Path,
    service_key: Path,
    servers: Callable[[type[BaseHTTPRequestHandler]], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    class Elsewhere(_Quiet):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            data = json.dumps(argocd_application("x", "", "Synced", "Healthy")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

    class Redirect(_Redirect):
        elsewhere = servers(Elsewhere)

    use_argocd(monkeypatch, tmp_path, servers(Redirect), TOKEN)
    the_driver = driver(gitops, tmp_path, service_key, argocd=ArgoCDWait("{app}-{environment}"))
    assert deploy(the_driver).ok
    checked = the_driver.check(step(), lambda line: None, 5)
    assert not checked.ok
    assert not any(TOKEN in header for header in seen), seen
    assert TOKEN not in checked.summary


# -- Argo CD's answers ---------------------------------------------------------------------


def test_an_argocd_answer_dripping_slowly_cannot_hold_a_check_past_its_timeout(
    gitops: GitOpsRepo,
    tmp_path: Path,
    service_key: Path,
    servers: Callable[[type[BaseHTTPRequestHandler]], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each byte comes well within the socket's timeout, the whole answer never does: the
    run's lease counts the check's timeout, so the check must end by it."""
    stop = threading.Event()

    class Drip(_Quiet):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "150")
            self.end_headers()
            for _ in range(150):  # 15 s in all, a byte every 0.1 s
                if stop.is_set():
                    return
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)

    use_argocd(monkeypatch, tmp_path, servers(Drip), TOKEN)
    the_driver = driver(gitops, tmp_path, service_key, argocd=ArgoCDWait("{app}-{environment}"))
    assert deploy(the_driver).ok
    began = time.monotonic()
    try:
        checked = the_driver.check(step(), lambda line: None, 1.0)
    finally:
        took = time.monotonic() - began
        stop.set()
    assert not checked.ok
    assert took < 10, f"the check took {took:.1f} s of a 1 s timeout"


def test_a_huge_argocd_answer_is_refused_not_read_into_memory(
    gitops: GitOpsRepo,
    tmp_path: Path,
    service_key: Path,
    servers: Callable[[type[BaseHTTPRequestHandler]], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = [0]

    class Huge(_Quiet):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()  # no length: read until the server closes
            chunk = b" " * 65536
            try:
                for _ in range(4096):  # 256 MiB of white space before any JSON
                    self.wfile.write(chunk)
                    sent[0] += len(chunk)
            except OSError:
                return

    use_argocd(monkeypatch, tmp_path, servers(Huge), TOKEN)
    the_driver = driver(gitops, tmp_path, service_key, argocd=ArgoCDWait("{app}-{environment}"))
    assert deploy(the_driver).ok
    checked = the_driver.check(step(), lambda line: None, 20.0)
    assert not checked.ok
    assert sent[0] < 128 * 2**20, f"the check read {sent[0] >> 20} MiB"


def test_an_argocd_answer_nested_past_pythons_stack_fails_the_check_cleanly(
    gitops: GitOpsRepo,
    tmp_path: Path,
    service_key: Path,
    servers: Callable[[type[BaseHTTPRequestHandler]], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Nested(_Quiet):
        def do_GET(self) -> None:
            data = b"[" * 200_000
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    use_argocd(monkeypatch, tmp_path, servers(Nested), TOKEN)
    the_driver = driver(gitops, tmp_path, service_key, argocd=ArgoCDWait("{app}-{environment}"))
    assert deploy(the_driver).ok
    checked = the_driver.check(step(), lambda line: None, 5.0)
    assert not checked.ok
    assert "Argo CD" in checked.summary


@pytest.mark.parametrize("revision", ["origin/main", "refs/remotes/origin/main"])
def test_argocd_naming_a_branch_instead_of_a_commit_has_not_applied_the_step(
    gitops: GitOpsRepo,
    tmp_path: Path,
    service_key: Path,
    servers: Callable[[type[BaseHTTPRequestHandler]], str],
    monkeypatch: pytest.MonkeyPatch,
    revision: str,
) -> None:
    """Git resolves a name in the driver's own clone, where it names the commit the step
    just pushed: the check must ask whether the engine applied that commit, not whether
    some name the answer holds leads to it."""

    class Symbolic(_Quiet):
        def do_GET(self) -> None:
            data = json.dumps(argocd_application("x", revision, "Synced", "Healthy")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    use_argocd(monkeypatch, tmp_path, servers(Symbolic), TOKEN)
    the_driver = driver(gitops, tmp_path, service_key, argocd=ArgoCDWait("{app}-{environment}"))
    assert deploy(the_driver).ok
    checked = the_driver.check(step(), lambda line: None, 5.0)
    assert not checked.ok, checked.summary
    assert "has not applied" in checked.summary


# -- the file a step edits ----------------------------------------------------------------

SHARED_VALUES = """\
# One tag for every environment, written once.
defaults: &defaults
  tag: "1.3.0"
development:
  image: *defaults
production:
  image: *defaults
"""


def test_a_step_into_development_cannot_move_production_through_a_yaml_anchor(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    """Both environments read their tag through one anchor: setting development's would
    set production's too, a deploy to production that nobody approved."""
    gitops.push("values.yaml", SHARED_VALUES, "share the tag")
    before = gitops.tip()
    shared = driver(
        gitops, tmp_path, service_key, path="values.yaml", image=None, key="{environment}.image.tag"
    )
    outcome = deploy(shared)
    assert not outcome.ok
    assert "anchor" in outcome.summary
    assert gitops.tip() == before
    assert gitops.show("values.yaml") == SHARED_VALUES


def test_a_duplicate_key_cannot_hide_the_value_the_engine_reads(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    """A second `image:` below the first: the driver would set and read back the first,
    report the version deployed and no drift, while the engine applies the other one."""
    values = "apps/ecommerce/values-development.yaml"
    hidden = 'image:\n  tag: "1.3.0"\nreplicaCount: 2\nimage:\n  tag: "1.0.0-vulnerable"\n'
    gitops.push(values, hidden, "tidy the values")
    before = gitops.tip()
    the_driver = driver(
        gitops, tmp_path, service_key, path="apps/{app}/values-{environment}.yaml",
        image=None, key="image.tag",
    )  # fmt: skip
    outcome = deploy(the_driver)
    assert not outcome.ok
    assert "more than once" in outcome.summary
    assert gitops.tip() == before
    assert the_driver.current("ecommerce", "development") is None


def test_two_images_entries_of_one_name_are_refused(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    doubled = KUSTOMIZATION_TEXT + (
        "    - name: registry.example/ecommerce\n      newTag: 1.0.0-vulnerable\n"
    )
    gitops.push(KUSTOMIZATION, doubled, "another entry")
    before = gitops.tip()
    outcome = deploy(driver(gitops, tmp_path, service_key))
    assert not outcome.ok
    assert "more than once" in outcome.summary
    assert gitops.tip() == before


def test_a_symbolic_link_in_the_gitops_repository_is_not_edited_as_a_file(
    gitops: GitOpsRepo, tmp_path: Path, service_key: Path
) -> None:
    """A link's blob is the path it points to, and a path may read as YAML: the driver
    would rewrite where the link points, report the version set and read it back."""
    values = "apps/ecommerce/values-development.yaml"
    run_git(gitops.person, "rm", "-q", values)
    (gitops.person / values).symlink_to("image: {tag: '1.3.0'}")
    run_git(gitops.person, "add", values)
    run_git(gitops.person, "commit", "-q", "-m", "a link")
    run_git(gitops.person, "push", "-q", "origin", "HEAD:main")
    before = gitops.tip()
    the_driver = driver(
        gitops, tmp_path, service_key, path="apps/{app}/values-{environment}.yaml",
        image=None, key="image.tag",
    )  # fmt: skip
    outcome = deploy(the_driver)
    assert not outcome.ok
    assert "is not a file" in outcome.summary
    assert gitops.tip() == before
    assert the_driver.current("ecommerce", "development") is None
