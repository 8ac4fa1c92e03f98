"""Adapter, process: the `gitops` driver, which deploys by committing to a GitOps
repository that Argo CD or Flux syncs (stage 5, execute).

A step sets one value in one file of the repository's branch: a kustomize
`images[]` entry's `newTag`, or the value at a key path (`image.tag` in a Helm
values file). The file is read with ruamel.yaml's composer only to find where the
value stands; the new value is spliced into the text there, so the rest of the
file (comments, quoting, indentation) is left byte for byte as people wrote it.

Each step is one commit on the branch's tip, signed by the service key (the
`Committer` the application layer hands in) with `Plan:`, `Run:`,
`Environment:`, `Application:` and `Version:` trailers, pushed with
compare-and-swap (`--force-with-lease` on the tip it was made on). When people
pushed meanwhile, it fetches, makes the change again on their tip and pushes
again. A value already set makes no commit. No push happens once the run's
lease (`Step.lease_until`) has passed: the push is the run's fence.

The clone is a bare repository under the driver's root; git reaches the remote
with the service's own credentials (ssh-agent, a key file, git's credential
helper), never anything from the configuration repository.

`check` reads the value back from the branch and, configured, asks the engine:
Argo CD's REST API (`urllib`, a bearer token from a file on the service's
machine) or Flux's objects through the Kubernetes API (the official client,
imported only then).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from msgspec import Struct

from reconciler.adapters.gitobjects import commit_bytes
from reconciler.adapters.gitprocess import git_argv, git_environment
from reconciler.adapters.process import capture
from reconciler.core.errors import ReconcilerError, TimedOut
from reconciler.core.model import ArgoCDWait, FluxWait, GitOpsTarget
from reconciler.core.printable import printable

if TYPE_CHECKING:
    from reconciler.adapters.drivers import Outcome, Step

# Fetch and push talk to another machine: one that stops answering fails the step
# (transient), it does not hold the run.
NETWORK_TIMEOUT: Final = 120.0
# Pushes lost to people pushing meanwhile before the step gives up (transient).
PUSH_ATTEMPTS: Final = 5
# Where the service's machine keeps Argo CD's address and token; never the config repo.
ARGOCD_SERVER: Final = "RECONCILER_ARGOCD_SERVER"
ARGOCD_TOKEN_FILE: Final = "RECONCILER_ARGOCD_TOKEN_FILE"  # noqa: S105 - a variable's name
REQUESTED_AT: Final = "reconcile.fluxcd.io/requestedAt"
_STRING_TAG: Final = "tag:yaml.org,2002:str"
_FULL_ID: Final = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
# One step at a time in one clone: the environments of a pass run in parallel threads.
_CLONE_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


class Committer(Struct, frozen=True):
    """Who the driver's commits are by, and how they are signed: the service's identity,
    its key (`sign` turns a commit object into the same object with its signature) and
    its clock (for the commit's time and the lease)."""

    name: str
    email: str
    sign: Callable[[bytes], bytes]
    clock: Callable[[], datetime]


class EditError(ReconcilerError):
    """The file cannot take the step's value: no such image or key, or not YAML."""


def expand(template: str, application: str, environment: str) -> str:
    return template.replace("{app}", application).replace("{environment}", environment)


# -- the file: find the value, splice it -------------------------------------------


def _compose(text: str, path: str) -> Any:
    from ruamel.yaml import YAML  # noqa: PLC0415 - only gitops environments need it
    from ruamel.yaml.error import YAMLError  # noqa: PLC0415

    try:
        return YAML(typ="rt").compose(text)
    except YAMLError as error:
        raise EditError(
            f"{path} is not a YAML document: {printable(str(error).splitlines()[0])}"
        ) from None


def _mapping_value(node: Any, key: str, path: str) -> Any:
    from ruamel.yaml.nodes import MappingNode  # noqa: PLC0415

    if not isinstance(node, MappingNode):
        return None
    found = [
        value_node for key_node, value_node in node.value if getattr(key_node, "value", None) == key
    ]
    if len(found) > 1:
        # Which one counts is the reader's choice: the driver would set and read back one
        # while the engine applies the other, and nobody would see the difference.
        raise EditError(
            f"{path}: the key {printable(key)} is there more than once in one mapping "
            f"(line {found[0].start_mark.line + 1} and line {found[1].start_mark.line + 1})",
            hint="keep one of them",
        )
    return found[0] if found else None


def _value_node(root: Any, image: str | None, key: str | None, path: str) -> Any:
    """The scalar node the target names in the composed file at `path`."""
    from ruamel.yaml.nodes import ScalarNode, SequenceNode  # noqa: PLC0415

    passed: list[Any] = []  # the nodes on the way to the value, the value last
    if image is not None:
        images = _mapping_value(root, "images", path)
        entries = images.value if isinstance(images, SequenceNode) else []
        names = [getattr(_mapping_value(entry, "name", path), "value", None) for entry in entries]
        if image not in names:
            there = ", ".join(str(name) for name in names if name) or "none"
            raise EditError(
                f"{path} has no images[] entry named {printable(image)} (images there: "
                f"{printable(there)})",
                hint="fix driver.gitops.image in the environment file, or add the image to "
                "the kustomization",
            )
        if names.count(image) > 1:
            raise EditError(
                f"{path}: the images[] entry {printable(image)} is there more than once",
                hint="keep one of them",
            )
        entry = entries[names.index(image)]
        node = _mapping_value(entry, "newTag", path)
        if node is None:
            raise EditError(
                f"{path}: the images[] entry {printable(image)} has no newTag",
                hint="add `newTag:` to that entry once; the driver sets it from then on",
            )
        passed = [images, entry, node]
        what = f"images[{image}].newTag"
    else:
        assert key is not None
        node = root
        for part in key.split("."):
            if isinstance(node, SequenceNode) and part.isdigit():
                node = node.value[int(part)] if int(part) < len(node.value) else None
            else:
                node = _mapping_value(node, part, path)
            if node is None:
                raise EditError(
                    f"{path} has no value at {printable(key)} (no {printable(part)} there)",
                    hint="fix driver.gitops.key in the environment file, or add the key to "
                    "the file",
                )
            passed.append(node)
        what = key
    shared = next((item for item in passed if getattr(item, "anchor", None)), None)
    if shared is not None:
        # An alias reads the anchored node itself: set through one name, the value would
        # change under every other name too (another environment's, another application's).
        raise EditError(
            f"{path}: {printable(what)} is reached through the anchor "
            f"&{printable(str(shared.anchor))} (line {shared.start_mark.line + 1}), which "
            "other places may share",
            hint="give the value its own line, without anchors or aliases on the way to it",
        )
    if not isinstance(node, ScalarNode) or node.style in ("|", ">"):
        raise EditError(
            f"{path}: {printable(what)} is not a one-line value",
            hint="the driver sets a plain or quoted scalar; make it one",
        )
    return node


def read_value(text: str, image: str | None, key: str | None, path: str) -> str:
    return str(_value_node(_compose(text, path), image, key, path).value)


def set_value(text: str, image: str | None, key: str | None, path: str, version: str) -> str:
    """`text` with the target's value set to `version`, every other byte as it was; the
    same text when it is set already."""
    node = _value_node(_compose(text, path), image, key, path)
    if node.value == version and node.tag == _STRING_TAG:
        return text
    start, end = node.start_mark.index, node.end_mark.index
    for rendered in _renderings(version, node.style):
        edited = text[:start] + rendered + text[end:]
        after = _value_node(_compose(edited, path), image, key, path)
        if after.value == version and after.tag == _STRING_TAG:
            return edited
    raise EditError(f"{path}: cannot write {printable(version)} as a YAML string there")


def _renderings(version: str, style: str | None) -> list[str]:
    """How `version` may be written in place of a scalar of `style`, best first: in the
    same quotes, or plain if it reads back as that string, else double-quoted."""
    double = json.dumps(version)
    if style == '"':
        return [double]
    if style == "'":
        return ["'" + version.replace("'", "''") + "'", double]
    return [version, double]


# -- the repository: a bare clone, commits, pushes ---------------------------------


class _GitFailed(ReconcilerError):
    def __init__(self, message: str, stderr: str, status: int = -1) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.status = status


class Clone:
    """A bare clone of the GitOps repository's branch, in `directory`."""

    def __init__(self, url: str, branch: str, directory: Path) -> None:
        self.url = url
        self.branch = branch
        self.directory = directory
        self.tracking = f"refs/remotes/origin/{branch}"

    def git(
        self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
    ) -> bytes:
        try:
            done = capture(
                # The URL comes from an environment file: whatever the machine's git
                # configuration allows, it never names a command for git to run.
                git_argv("-c", "protocol.ext.allow=never", *args),
                cwd=self.directory,
                env=git_environment({"GIT_TERMINAL_PROMPT": "0", **(env or {})}),
                stdin=stdin,
                timeout=NETWORK_TIMEOUT,
            )
        except TimedOut as error:
            raise _GitFailed(error.message, "") from None
        if done.returncode != 0:
            raise _GitFailed(
                f"git {args[0]} failed: {done.stderr.strip()}", done.stderr, done.returncode
            )
        return done.stdout

    def ready(self) -> None:
        if (self.directory / "HEAD").is_file():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "--bare")
        # Set as a value, never an argument: a URL from the environment file that starts
        # with '-' must not become an option of git's.
        self.git("config", "remote.origin.url", self.url)
        self.git("config", "remote.origin.fetch", f"+refs/heads/{self.branch}:{self.tracking}")

    def fetch(self) -> str | None:
        """The branch's tip on the remote now (None: no such branch)."""
        self.git("fetch", "-q", "--no-tags", "--prune", "origin")
        return self.tip()

    def tip(self) -> str | None:
        try:
            return (
                self.git("rev-parse", "-q", "--verify", f"{self.tracking}^{{commit}}")
                .decode("ascii")
                .strip()
                or None
            )
        except _GitFailed:
            return None

    def read(self, commit: str, path: str) -> tuple[str, str] | None:
        """The file at `path` in `commit`: its mode and text; None if there is none (or
        not a regular file)."""
        listed = self.git("ls-tree", "-z", commit, "--", path).decode("utf-8", "replace")
        if not listed:
            return None
        mode, kind, rest = listed.split(" ", 2)
        # A symbolic link's blob is the path it points to, not the file the engine reads.
        if kind != "blob" or mode not in ("100644", "100755"):
            return None
        oid = rest.split("\t", 1)[0]
        return mode, self.git("cat-file", "blob", oid).decode("utf-8")

    def commit(
        self, parent: str, path: str, mode: str, text: str, message: str, by: Committer
    ) -> str:
        """A signed commit on `parent` whose tree has `text` at `path`, nothing else new."""
        blob = self.git("hash-object", "-w", "--stdin", stdin=text.encode()).decode().strip()
        with tempfile.TemporaryDirectory(prefix="gitops-index-") as folder:
            index = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
            self.git("read-tree", parent, env=index)
            self.git("update-index", "--cacheinfo", f"{mode},{blob},{path}", env=index)
            tree = self.git("write-tree", env=index).decode().strip()
        identity = f"{by.name} <{by.email}> {int(by.clock().timestamp())} +0000"
        payload = commit_bytes(tree, (parent,), identity, identity, message)
        signed = by.sign(payload)
        return (
            self.git("hash-object", "-t", "commit", "-w", "--stdin", stdin=signed)
            .decode("ascii")
            .strip()
        )

    def push(self, commit: str, expected: str) -> str | None:
        """Move the remote's branch from `expected` to `commit`; None, or why it refused."""
        ref = f"refs/heads/{self.branch}"
        try:
            self.git(
                "push", "-q", "--porcelain", f"--force-with-lease={ref}:{expected}", "origin",
                f"{commit}:{ref}",
            )  # fmt: skip
        except _GitFailed as error:
            return error.stderr.strip() or str(error)
        return None  # git moved the remote-tracking branch too

    def contains(self, ancestor: str, commit: str) -> bool:
        """Whether `commit` is `ancestor` or comes after it (fetching it if need be).

        `commit` is what an engine says it applied: only a full commit id counts, since
        git would resolve a name (`origin/main`) in this clone, where it leads to what
        the driver itself pushed."""
        if ancestor == commit:
            return True
        if _FULL_ID.fullmatch(commit) is None:
            return False
        for attempt in range(2):
            try:
                self.git("merge-base", "--is-ancestor", ancestor, commit)
            except _GitFailed as error:
                if error.status == 1:  # git's answer: it is not
                    return False
                if attempt == 0:  # a commit this clone has not fetched yet
                    self.fetch()
                    continue
                return False
            return True
        return False


@contextmanager
def _alone(directory: Path) -> Iterator[None]:
    with _LOCKS_LOCK:
        lock = _CLONE_LOCKS.setdefault(directory, threading.Lock())
    with lock:
        yield


# -- the driver ---------------------------------------------------------------------


@dataclass
class GitOpsDriver:
    """Deploys by committing a version to a GitOps repository (see the module's doc)."""

    target: GitOpsTarget
    root: Path
    committer: Committer | None = None
    # The commit that holds each step's version on the branch, for its check.
    _commits: dict[tuple[str, str], str] = field(default_factory=dict)
    _fetched: bool = False
    # The branch's tip as this driver last saw or made it: the next step's parent.
    _tip: str | None = None
    _asked: set[tuple[str, str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        where = f"{self.target.repository}\0{self.target.branch}".encode()
        name = hashlib.sha256(where).hexdigest()[:16]
        self.clone = Clone(self.target.repository, self.target.branch, self.root / ".gitops" / name)

    def _where(self, application: str, environment: str) -> tuple[str, str | None, str | None]:
        target = self.target
        path = expand(target.path, application, environment)
        image = None if target.image is None else expand(target.image, application, environment)
        key = None if target.key is None else expand(target.key, application, environment)
        return path, image, key

    def deploy(self, step: Step, on_line: Callable[[str], None]) -> Outcome:
        from reconciler.adapters.drivers import Outcome  # noqa: PLC0415

        if self.committer is None:
            return Outcome.failure(
                "gitops driver: no service key to sign its commits with; pass --key"
            )
        lines: list[str] = []

        def say(line: str) -> None:
            lines.append(line)
            on_line(line)

        path, image, key = self._where(step.application, step.environment)
        repository = self.target.repository
        try:
            with _alone(self.clone.directory):
                self.clone.ready()
                # The tip last seen: a push on it is a compare-and-swap, so a stale view
                # costs a retry, never a lost change; "already set" is confirmed fresh.
                tip, fresh = self._tip, False
                if tip is None or not self._fetched:
                    tip, fresh = self.clone.fetch(), True
                    self._fetched = True
                for _ in range(PUSH_ATTEMPTS):
                    if tip is None:
                        return Outcome.failure(
                            f"gitops driver: {repository} has no branch {self.target.branch}",
                            tuple(lines),
                        )
                    try:
                        mode, text, edited = self._edited(tip, path, image, key, step.version)
                    except EditError:
                        if fresh:
                            raise
                        # Seen on an old tip: people may have fixed the file since.
                        tip, fresh = self.clone.fetch(), True
                        continue
                    if edited == text:
                        if not fresh:
                            tip, fresh = self.clone.fetch(), True
                            continue
                        self._commits[(step.application, step.environment)] = tip
                        self._tip = tip
                        say(f"{path} already sets {step.version} at {tip[:12]}: no commit")
                        return Outcome.success(
                            f"{step.application} {step.version} is already set in {repository}",
                            tuple(lines),
                        )
                    commit = self.clone.commit(
                        tip, path, mode, edited, _message(step, path), self.committer
                    )
                    fenced = _past_lease(step, self.committer.clock())
                    if fenced is not None:
                        return Outcome.failure(fenced, tuple(lines))
                    refused = self.clone.push(commit, tip)
                    if refused is None:
                        self._commits[(step.application, step.environment)] = commit
                        self._tip = commit
                        say(f"committed {commit[:12]} to {self.target.branch}: {path}")
                        return Outcome.success(
                            f"{step.application} {step.version} committed to {repository} "
                            f"({commit[:12]})",
                            tuple(lines),
                        )
                    moved = self.clone.fetch()
                    if moved == tip:
                        return Outcome.failure(
                            f"gitops driver: {repository} refused the push to "
                            f"{self.target.branch}: {printable(refused)}; let the service's "
                            "credentials push there",
                            tuple(lines),
                        )
                    say(f"{self.target.branch} moved to {str(moved)[:12]} meanwhile: again on it")
                    tip, fresh = moved, True
                return Outcome.failure(
                    f"gitops driver: {self.target.branch} of {repository} kept moving; "
                    f"{PUSH_ATTEMPTS} pushes lost",
                    tuple(lines),
                    transient=True,
                )
        except EditError as error:
            hint = f" ({error.hint})" if error.hint else ""
            return Outcome.failure(f"gitops driver: {error.message}{hint}", tuple(lines))
        except _GitFailed as error:
            return Outcome.failure(
                f"gitops driver: {printable(error.message)}", tuple(lines), transient=True
            )
        except (OSError, UnicodeDecodeError) as error:
            return Outcome.failure(f"gitops driver: {error}", tuple(lines), transient=True)

    def _edited(
        self, tip: str, path: str, image: str | None, key: str | None, version: str
    ) -> tuple[str, str, str]:
        """The file at `path` in `tip`: its mode, its text, and its text with `version` set."""
        found = self.clone.read(tip, path)
        if found is None:
            raise EditError(
                f"{path} is not a file on {self.target.branch} of {self.target.repository} "
                f"(at {tip[:12]})",
                hint="add it there, or fix driver.gitops.path in the environment file",
            )
        mode, text = found
        return mode, text, set_value(text, image, key, path, version)

    def current(self, application: str, environment: str) -> str | None:
        path, image, key = self._where(application, environment)
        try:
            with _alone(self.clone.directory):
                self.clone.ready()
                if not self._fetched:
                    self.clone.fetch()
                    self._fetched = True
                tip = self._tip = self.clone.tip()
                found = None if tip is None else self.clone.read(tip, path)
                return None if found is None else read_value(found[1], image, key, path)
        except (EditError, _GitFailed, OSError, UnicodeDecodeError):
            return None

    def check(self, step: Step, on_line: Callable[[str], None], timeout: float) -> Outcome:
        """The version is on the branch and, configured, the engine applied it, healthy."""
        from reconciler.adapters.drivers import Outcome  # noqa: PLC0415

        self._fetched = False  # people may have changed it since the step
        now = self.current(step.application, step.environment)
        if now != step.version:
            there = f"it sets {printable(now)}" if now is not None else "it cannot be read"
            return Outcome.failure(
                f"{step.application} {step.version} is not set on {self.target.branch} of "
                f"{self.target.repository} ({there})"
            )
        commit = self._commits.get((step.application, step.environment)) or self.clone.tip()
        assert commit is not None  # `current` read the version from it
        engine = self.target.argocd or self.target.flux
        if engine is None:
            return Outcome.success(f"{step.application} {step.version} is set at {commit[:12]}")
        try:
            if isinstance(engine, ArgoCDWait):
                waited = self._argocd(engine, step, commit, min(timeout, 30.0))
            else:
                waited = self._flux(engine, step, commit)
        except ReconcilerError as error:
            return Outcome.failure(error.message)
        on_line(waited[1])
        return Outcome.success(waited[1]) if waited[0] else Outcome.failure(waited[1])

    # -- Argo CD --------------------------------------------------------------------

    def _argocd(
        self, engine: ArgoCDWait, step: Step, commit: str, timeout: float
    ) -> tuple[bool, str]:
        server, token = _argocd_access()
        name = expand(engine.application, step.application, step.environment)
        from urllib.parse import quote  # noqa: PLC0415 - only Argo CD waits need the web

        base = f"{server.rstrip('/')}/api/v1/applications/{quote(name, safe='')}"
        asked = (step.run, step.application, commit)
        if engine.sync and asked not in self._asked:
            self._asked.add(asked)
            body = {"revision": commit, "prune": False}
            _request(f"{base}/sync", token, timeout, body)
        status = _field(_request(base, token, timeout), "status")
        sync, health = _field(status, "sync"), _field(status, "health")
        revision = str(sync.get("revision") or "")
        state = f"sync {sync.get('status')} at {revision[:12] or 'none'}, {health.get('status')}"
        applied = bool(revision) and self.clone.contains(commit, revision)
        if applied and sync.get("status") == "Synced" and health.get("status") == "Healthy":
            return True, f"Argo CD application {name}: {state}"
        return False, f"Argo CD application {name} has not applied {commit[:12]}: {state}"

    # -- Flux -----------------------------------------------------------------------

    def _flux(self, engine: FluxWait, step: Step, commit: str) -> tuple[bool, str]:
        try:
            from kubernetes import client, config  # noqa: PLC0415
            from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
            from kubernetes.config.config_exception import ConfigException  # noqa: PLC0415
        except ImportError:
            raise ReconcilerError(
                "gitops driver: waiting for Flux needs the kubernetes client",
                hint="pip install 'gitops-reconciler[flux]'",
            ) from None
        try:
            try:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            except (ConfigException, OSError):
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            api = client.CustomObjectsApi()
            asked = (step.run, step.application, commit)
            if asked not in self._asked:
                self._asked.add(asked)
                stamp = datetime.now(UTC).isoformat()
                api.patch_namespaced_custom_object(
                    "source.toolkit.fluxcd.io", "v1", engine.namespace, "gitrepositories",
                    engine.git_repository, {"metadata": {"annotations": {REQUESTED_AT: stamp}}},
                )  # fmt: skip
            name = expand(engine.kustomization, step.application, step.environment)
            found = api.get_namespaced_custom_object(
                "kustomize.toolkit.fluxcd.io", "v1", engine.namespace, "kustomizations", name
            )
        except (ApiException, ConfigException, OSError) as error:
            raise ReconcilerError(
                f"gitops driver: the Kubernetes API did not answer about Flux: "
                f"{printable(str(error).splitlines()[0] if str(error) else type(error).__name__)}"
            ) from None
        status = _field(found, "status")
        revision = str(status.get("lastAppliedRevision") or "")
        # "main@sha1:<sha>" since Flux 2.0, "main/<sha>" before.
        applied_sha = re.split(r"[:/]", revision)[-1] if revision else ""
        conditions = status.get("conditions") or []
        ready = any(
            isinstance(condition, dict)
            and condition.get("type") == "Ready"
            and condition.get("status") == "True"
            for condition in conditions
        )
        state = f"applied {revision or 'nothing'}, Ready {ready}"
        applied = bool(applied_sha) and self.clone.contains(commit, applied_sha)
        if applied and ready:
            return True, f"Flux Kustomization {name}: {state}"
        return False, f"Flux Kustomization {name} has not applied {commit[:12]}: {state}"


def _field(document: object, name: str) -> dict[str, Any]:
    """An object field of an API's JSON answer; empty when it has none (or not an object)."""
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, dict) else {}


def _message(step: Step, path: str) -> str:
    trailers = [
        ("Plan", step.plan),
        ("Run", step.run),
        ("Environment", step.environment),
        ("Application", step.application),
        ("Version", step.version),
    ]
    for name, value in trailers:
        if "\n" in value or "\r" in value:
            raise EditError(f"the {name} trailer would span lines: {value!r}")
    return (
        f"deploy {step.application} {step.version} to {step.environment}\n\n"
        f"Sets {path}.\n\n" + "\n".join(f"{name}: {value}" for name, value in trailers) + "\n"
    )


def _past_lease(step: Step, now: datetime) -> str | None:
    """Why the commit must not be pushed: the run's lease has passed (another run may
    hold the environment now)."""
    if step.lease_until is not None and now >= step.lease_until:
        return (
            f"gitops driver: run {step.run}'s lease ended at {step.lease_until.isoformat()}; "
            "not pushing (another run may hold the environment now)"
        )
    return None


def _argocd_access() -> tuple[str, str]:
    """Argo CD's address and token, from the service's machine (never from Git)."""
    server = os.environ.get(ARGOCD_SERVER)
    token_file = os.environ.get(ARGOCD_TOKEN_FILE)
    if not server or not token_file:
        raise ReconcilerError(
            f"gitops driver: waiting for Argo CD needs {ARGOCD_SERVER} (its URL) and "
            f"{ARGOCD_TOKEN_FILE} (a file holding a token) in the service's environment"
        )
    try:
        token = Path(token_file).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise ReconcilerError(
            f"gitops driver: cannot read the Argo CD token file {token_file}: {why}"
        ) from None
    # A header cannot carry a line break, and the error that says so quotes the header,
    # token and all, into the run's log, which is committed: say what is wrong, not what
    # the file holds.
    if not token or not all(char.isprintable() and not char.isspace() for char in token):
        raise ReconcilerError(
            f"gitops driver: the Argo CD token file {token_file} does not hold one token "
            "on one line",
            hint="write the token alone into the file",
        )
    return server, token


# The most of an Argo CD answer read: an Application with its resource tree is far
# smaller; a server that sends more is not answering as Argo CD does.
ARGOCD_ANSWER_LIMIT: Final = 32 * 2**20


def _request(url: str, token: str, timeout: float, body: object | None = None) -> Any:
    """One call of Argo CD's REST API: its JSON answer, read within `timeout` seconds and
    `ARGOCD_ANSWER_LIMIT` bytes (a byte now and then keeps a socket's timeout from
    firing; the run's lease counts on the check ending by its timeout)."""
    import urllib.error  # noqa: PLC0415 - only Argo CD waits need the web
    import urllib.request  # noqa: PLC0415

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        """Redirects are not followed: urllib would send the token along to wherever
        one points, another host included."""

        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    deadline = time.monotonic() + timeout
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is the service's own setting
        url,
        data=data,
        method="GET" if body is None else "POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as answer:
            chunks: list[bytes] = []
            read = 0
            while chunk := answer.read1(65536):
                read += len(chunk)
                if read > ARGOCD_ANSWER_LIMIT:
                    raise ReconcilerError(
                        f"gitops driver: Argo CD at {url} answered more than "
                        f"{ARGOCD_ANSWER_LIMIT >> 20} MiB"
                    )
                if time.monotonic() > deadline:
                    raise ReconcilerError(
                        f"gitops driver: Argo CD at {url} did not answer within {timeout:g} s"
                    )
                chunks.append(chunk)
            return json.loads(b"".join(chunks) or b"{}")
    except urllib.error.HTTPError as error:
        raise ReconcilerError(
            f"gitops driver: Argo CD answered {error.code} to {request.get_method()} {url}"
        ) from None
    except RecursionError:  # JSON nested deeper than Python's stack: no Application
        raise ReconcilerError(f"gitops driver: Argo CD at {url} answered no JSON object") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ReconcilerError(f"gitops driver: Argo CD at {url} did not answer: {error}") from None
