"""Throwaway configuration repositories with real people, real keys, real commits.

Every helper does one thing in one line of a test:

    repo = SeedRepo.create(tmp_path, people)          # the seed story, signed by root
    repo.commit(people.alice, {"plans/x.yaml": PLAN})  # a signed commit by Alice
    repo.commit(people.bob, {...}, signed=False)       # an unsigned one under Bob's email
    with repo.branch("feature"): ...                   # work on a branch, then come back
    repo.merge(people.olga, "feature")                 # a true merge by Olga

Commits are made and signed by `git` itself (gpg.format=ssh), so signatures are what
real users produce. Git never sees the developer's own configuration (see conftest).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler.adapters.drivers import ARTIFACTS
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.readahead import PREFETCH
from reconciler.adapters.statestore import StateStore
from reconciler.app.authorise import Authoriser
from reconciler.app.effective_policy import policy_from
from reconciler.app.pipeline import gather
from reconciler.app.verified import VerifyResult
from reconciler.core.decide import Decision, decide
from reconciler.core.journal import VersionLanded
from reconciler.core.model import Policy
from reconciler.core.verdicts import LandingVerdict, Refusal
from tests.clock import SUITE_NOW
from tests.configrepo import Result, dump, example_file, reconciler, reconciler_process
from tests.people import HOST_EMAIL, People, Person, seed_teams


def run_git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    completed = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {completed.stderr}")
    return completed.stdout.strip()


def build(root: Path, application: str, version: str) -> Path:
    """The build of `application` `version` a CI would leave for the local driver, whose
    root is `root` (what it ships into the first environment); its folder."""
    folder = root / ARTIFACTS / application / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.bin").write_text(f"built {version}")
    return folder


def build_what_a_plan_names(root: Path, text: str) -> None:
    """Every version (and `from` version) a plan's text names, built under `root`: the
    suite's stand-in for the CI that builds what people put in plans. Text that is no
    plan builds nothing."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    entries = data.get("applications") if isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _may_name_a_folder(name):
            continue
        for key in ("version", "from"):
            version = entry.get(key)
            if isinstance(version, str) and _may_name_a_folder(version):
                build(root, name, version)


def _may_name_a_folder(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith(".") and name.isprintable()


class ConfigRepo:
    """A real Git repository on `main`, committed to by real people."""

    def __init__(self, path: Path, people: People, state_dir: Path) -> None:
        self.path = path
        self.people = people
        self.state_dir = state_dir
        # Commits start two hours before SUITE_NOW, one minute apart.
        self.clock = int(SUITE_NOW.timestamp()) - 7200
        self.earlier_runs = 0  # runs `deployed` recorded

    @classmethod
    def init(cls, root: Path, people: People) -> ConfigRepo:
        path = root / "repo"
        path.mkdir(parents=True)
        run_git(path, "init", "-q", "-b", "main")
        return cls(path, people, root / "state")

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        return run_git(self.path, *args, env=env)

    def identity(
        self, by: Person, *, signed: bool = True, date: str | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """Config options and environment for a git command run as `by` (merges, reverts)."""
        return self._identity(by, signed=signed, email=None, key=None, date=date)

    def land_commit_tree(
        self, by: Person, tree: str, *parents: str, message: str, signed: bool = False
    ) -> str:
        """A commit of `tree` with exactly `parents` (any order, any number) made as `by`,
        put on main and checked out: merges `git merge` would never make."""
        config, env = self.identity(by, signed=signed)
        sign = ["-S"] if signed else []
        parent_args = [arg for parent in parents for arg in ("-p", parent)]
        commit = self.git(*config, "commit-tree", *sign, tree, *parent_args, "-m", message, env=env)
        self.git("update-ref", "refs/heads/main", commit)
        self.git("reset", "-q", "--hard", "main")
        return commit

    def _identity(
        self, by: Person, *, signed: bool, email: str | None, key: Path | None, date: str | None
    ) -> tuple[list[str], dict[str, str]]:
        self.clock += 60
        when = date or f"{self.clock} +0000"
        config = ["-c", f"user.name={by.name}", "-c", f"user.email={email or by.email}"]
        # No `git maintenance run --auto` after each commit: a process per commit that a
        # person's clone runs, not what any test asks about (the reconciler runs its own).
        config += ["-c", "maintenance.auto=false"]
        if signed:
            config += ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key or by.key}"]
        env = {
            "GIT_AUTHOR_NAME": by.name,
            "GIT_AUTHOR_EMAIL": email or by.email,
            "GIT_COMMITTER_NAME": by.name,
            "GIT_COMMITTER_EMAIL": email or by.email,
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
        }
        return config, env

    def write(self, files: Mapping[str, str | None]) -> None:
        """Stage `files` (None deletes); the builds a plan among them names appear in the
        local driver's artifacts, as a CI would make them."""
        deleted = [relative for relative, content in files.items() if content is None]
        written = {relative: content for relative, content in files.items() if content is not None}
        # One git for all the deletions and one for all the additions: the index ends the same.
        if deleted:
            self.git("rm", "-q", "--", *deleted)
        for relative, content in written.items():
            target = self.path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            if relative.startswith("plans/"):
                build_what_a_plan_names(self.driver_root, content)
        if written:
            self.git("add", "--", *written)

    def commit(
        self,
        by: Person,
        files: Mapping[str, str | None] | None = None,
        message: str = "change",
        *,
        signed: bool = True,
        email: str | None = None,
        key: Path | None = None,
        date: str | None = None,
    ) -> str:
        """Commit `files` (None deletes) as `by`; an empty commit when no files are given."""
        self.write(files or {})
        config, env = self._identity(by, signed=signed, email=email, key=key, date=date)
        args = [*config, "commit", "-q", "--allow-empty", "-m", message]
        if signed:
            args.append("-S")
        self.git(*args, env=env)
        return self.head()

    def head(self, rev: str = "HEAD") -> str:
        return self.git("rev-parse", rev)

    @contextmanager
    def branch(self, name: str, start: str = "main") -> Iterator[None]:
        self.git("checkout", "-q", "-B", name, start)
        try:
            yield
        finally:
            self.git("checkout", "-q", "main")

    def merge(
        self,
        by: Person,
        branch: str,
        message: str | None = None,
        *,
        resolve: Mapping[str, str | None] | None = None,
        signed: bool = True,
    ) -> str:
        """A true merge (--no-ff) of `branch` into main, by `by`.

        With `resolve`, the merge result is edited before it is committed: a
        conflict resolution (or an "evil merge" when there was no conflict).
        """
        config, env = self._identity(by, signed=signed, email=None, key=None, date=None)
        sign = ["-S"] if signed else []
        text = message or f"Merge {branch}"
        if resolve is None:
            self.git(*config, "merge", "-q", "--no-ff", "-m", text, *sign, branch, env=env)
            return self.head()
        subprocess.run(
            ["git", *config, "merge", "-q", "--no-ff", "--no-commit", branch],
            cwd=self.path,
            capture_output=True,
            env={**os.environ, **env},
            check=False,
        )
        self.write(resolve)
        self.git(*config, "commit", "-q", "-m", text, *sign, env=env)
        return self.head()

    def blob(self, path: str, rev: str = "HEAD") -> str:
        return self.git("rev-parse", f"{rev}:{path}")

    def verify(
        self,
        *,
        now: datetime = SUITE_NOW,
        tip: str = "main",
        batch: int = PREFETCH,
        workers: int | None = None,
        state_dir: Path | None = None,
        **options: Any,
    ) -> VerifyResult:
        with GitRepo(self.path) as repo:
            store = StateStore(state_dir or self.state_dir, "main")
            try:
                authoriser = Authoriser(repo, store, now=now, batch=batch, workers=workers)
                return authoriser.run(repo.resolve(tip), **options)
            finally:
                store.close()

    def signoff(
        self,
        by: Person,
        trailer: str,
        value: str,
        *,
        signed: bool = True,
        date: str | None = None,
        key: Path | None = None,
    ) -> str:
        """An empty commit carrying one trailer, as `reconciler approve/deploy` makes it."""
        return self.commit(
            by,
            message=f"{trailer} by {by.id}\n\n{trailer}: {value}",
            signed=signed,
            date=date,
            key=key,
        )

    def approve(self, by: Person, path: str, **options: Any) -> str:
        return self.signoff(by, "Approve-Plan", f"{path}@{self.blob(path)}", **options)

    def trigger(self, by: Person, path: str, **options: Any) -> str:
        return self.signoff(by, "Deploy-Plan", f"{path}@{self.blob(path)}", **options)

    def record(
        self, trailers: Mapping[str, str], files: Mapping[str, str | None] | None = None
    ) -> str:
        """A record signed by the reconciler service account."""
        body = "\n".join(f"{key}: {value}" for key, value in trailers.items())
        return self.commit(self.people.reconciler, files, f"Record\n\n{body}")

    def revoke(self, listed: str | bytes) -> Path:
        """Make `listed` the revocation file git (and so the reconciler) reads: a file
        beside the repository, never in it. The file."""
        revoked = self.path.parent / "revoked-keys"
        revoked.write_bytes(listed.encode() if isinstance(listed, str) else listed)
        self.git("config", "gpg.ssh.revocationFile", str(revoked))
        return revoked

    def deployed(self, environment: str, versions: Mapping[str, str]) -> str:
        """deployments/<env>.yaml as the reconciler writes it: a run of a plan `earlier`
        (not on main), its start record and its finish record, signed by its key; the
        finish record's commit."""
        self.earlier_runs += 1
        run = f"earlier.{self.earlier_runs}"
        content = dump(
            {
                "environment": environment,
                "applications": {
                    app: {
                        "version": version,
                        "plan": "earlier",
                        "run": run,
                        "deployed_at": "2026-11-01T00:00:00Z",
                    }
                    for app, version in versions.items()
                },
            }
        )
        trailers = {"Plan": f"plans/earlier.yaml@{'e' * 40}", "Environment": environment}
        self.record({**trailers, "Result": "started", "Run": run, "Reconciler": "earlier"})
        return self.record(
            {**trailers, "Result": "succeeded", "Run": run},
            {f"deployments/{environment}.yaml": content},
        )

    def decide(self, *, now: datetime = SUITE_NOW) -> dict[str, Decision]:
        """Verify to main's tip, then decide every plan on it; by plan path."""
        with GitRepo(self.path) as repo:
            store = StateStore(self.state_dir, "main")
            try:
                authoriser = Authoriser(repo, store, now=now)
                tip = repo.resolve("main")
                authoriser.run(tip)
                decisions = decide(gather(authoriser, tip), now)
            finally:
                store.close()
        return {decision.path: decision for decision in decisions}

    def act_as(self, person: Person, *, signed: bool = True) -> None:
        """Make `person` the repository's git user, as their own clone would be configured."""
        self.git("config", "user.name", person.name)
        self.git("config", "user.email", person.email)
        if signed:
            self.git("config", "gpg.format", "ssh")
            self.git("config", "user.signingkey", str(person.key))
        else:
            subprocess.run(
                ["git", "config", "--unset-all", "user.signingkey"], cwd=self.path, check=False
            )

    def reconciler(self, *args: str, process: bool = False) -> Result:
        """The `reconciler` command, run in this repository with its state directory: in
        this process (`configrepo.reconciler`), or with `process` in one of its own.

        The identity comes from the repository's git config (see `act_as`), as
        in a person's own clone: the test-wide GIT_AUTHOR_*/GIT_COMMITTER_*
        variables are removed.
        """
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))
        }
        run = reconciler_process if process else reconciler
        return run(
            *args, "--repo", self.path, "--state-dir", self.state_dir, cwd=self.path, env=env
        )

    def apply(self, *args: str, key: Path | None = None, driver_root: Path | None = None) -> Result:
        """`reconciler apply` as the service, with the reconciler's key and a driver root."""
        return self.reconciler(
            "apply",
            "--key",
            str(key or self.people.reconciler.key),
            "--driver-root",
            str(driver_root or self.driver_root),
            "--instance",
            "test-reconciler",
            *args,
        )

    # -- commits a Git host makes on its server, in GitHub's exact shape ---------------------

    def host_commit(
        self,
        host_key: Path,
        tree: str,
        parents: tuple[str, ...],
        author: Mapping[str, str],
        message: str,
    ) -> str:
        """A commit as GitHub writes it: committed by GitHub <noreply@github.com>, signed
        with the host's key, with `author` (GIT_AUTHOR_* variables) as the host was given
        it; put on main and checked out."""
        self.clock += 60
        env = {
            "GIT_AUTHOR_DATE": f"{self.clock} +0000",
            **author,
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": HOST_EMAIL,
            "GIT_COMMITTER_DATE": f"{self.clock} +0000",
        }
        signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={host_key}"]
        parent_args = [arg for parent in parents for arg in ("-p", parent)]
        commit = self.git(*signing, "commit-tree", "-S", tree, *parent_args, "-m", message, env=env)
        self.git("update-ref", "refs/heads/main", commit)
        self.git("reset", "-q", "--hard", "main")
        return commit

    def host_merge(self, host_key: Path, by: Person, branch: str) -> str:
        """GitHub's "Create a merge commit": two parents, the author the person who merged."""
        tree = self.git("merge-tree", "--write-tree", "main", branch).split()[0]
        return self.host_commit(
            host_key,
            tree,
            (self.head("main"), self.head(branch)),
            {"GIT_AUTHOR_NAME": by.name, "GIT_AUTHOR_EMAIL": by.email},
            f"Merge pull request #7 from example/{branch}",
        )

    def host_rebase_merge(self, host_key: Path, branch: str) -> list[str]:
        """GitHub's "Rebase and merge" of a branch on main's tip: each commit again, with
        its own author and message, committed and signed by the host."""
        assert self.git("merge-base", "main", branch) == self.head("main"), "rebase it first"
        landed = []
        for commit in self.git("rev-list", "--reverse", f"main..{branch}").split():
            name, email, date, message = self.git(
                "show", "-s", "--format=%an%x00%ae%x00%ad%x00%B", "--date=raw", commit
            ).split("\0")
            author = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
            tree = self.git("rev-parse", f"{commit}^{{tree}}")
            landed.append(self.host_commit(host_key, tree, (self.head("main"),), author, message))
        return landed

    def host_squash(self, host_key: Path, author: Person, branch: str) -> str:
        """GitHub's "Squash and merge" of a branch on main's tip: one commit of its tree."""
        assert self.git("merge-base", "main", branch) == self.head("main"), "rebase it first"
        return self.host_commit(
            host_key,
            self.git("rev-parse", f"{branch}^{{tree}}"),
            (self.head("main"),),
            {"GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email},
            f"Squashed {branch} (#7)",
        )

    def publish_to_bare_remote(self) -> Path:
        """A bare repository next to this one, holding main, added as `origin`."""
        remote = self.path.parent / "remote.git"
        run_git(self.path.parent, "init", "-q", "--bare", "-b", "main", str(remote))
        self.git("remote", "add", "origin", str(remote))
        self.git("push", "-q", "origin", "main")
        return remote

    def clone(self, remote: Path, name: str) -> ConfigRepo:
        """Another clone of `remote` (a second person's, or a reconciler's), with its own state."""
        path = self.path.parent / name
        run_git(self.path.parent, "clone", "-q", str(remote), str(path))
        clone = ConfigRepo(path, self.people, self.path.parent / f"{name}-state")
        clone.clock = self.clock + 3600
        return clone

    def apply_command(self, *args: str, instance: str = "test-reconciler") -> list[str]:
        """The argv of `reconciler apply` as the service (for running it in the background)."""
        return [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            "--repo",
            str(self.path),
            "--state-dir",
            str(self.state_dir),
            "--key",
            str(self.people.reconciler.key),
            "--driver-root",
            str(self.driver_root),
            "--instance",
            instance,
            *args,
        ]

    @property
    def driver_root(self) -> Path:
        return self.state_dir.parent / "releases"

    def store(self) -> StateStore:
        return StateStore(self.state_dir, "main")

    def plan_versions(self, path: str) -> list[VersionLanded]:
        """Versions of `path` that landed, each with what its landing's actor could do."""
        store = self.store()
        try:
            return [version for version in store.plan_versions() if version.path == path]
        finally:
            store.close()

    def editors(self, path: str) -> set[str]:
        store = self.store()
        try:
            return store.editors(path)
        finally:
            store.close()

    def effective_policy(self) -> Policy:
        store = self.store()
        try:
            with GitRepo(self.path) as repo:
                return policy_from(store.effective(), repo)
        finally:
            store.close()


class SeedRepo(ConfigRepo):
    """The seed-story configuration committed by root, the trust anchor."""

    @classmethod
    def create(
        cls,
        root: Path,
        people: People,
        *,
        teams: dict[str, Any] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> SeedRepo:
        if teams is None and not extra:
            return cls.copy_of(_seed_template(people), root)
        return cls._made(root, people, teams=teams, extra=extra)

    @classmethod
    def _made(
        cls,
        root: Path,
        people: People,
        *,
        teams: dict[str, Any] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> SeedRepo:
        """The seed story committed by git, as `create` describes it."""
        repo = cls(root / "repo", people, root / "state")
        repo.path.mkdir(parents=True)
        repo.git("init", "-q", "-b", "main")
        files = {
            "teams.yaml": dump(teams or seed_teams(people)),
            "environments/development.yaml": example_file("environments/development.yaml"),
            "environments/quality-assurance.yaml": example_file(
                "environments/quality-assurance.yaml"
            ),
            "environments/production.yaml": example_file("environments/production.yaml"),
            **(extra or {}),
        }
        repo.commit(people.root, files, "Seed configuration")
        return repo

    @classmethod
    def copy_of(cls, template: SeedRepo, root: Path) -> SeedRepo:
        """`template` copied under `root`, as `create(root, ...)` lays a repository out."""
        return cls(root / "repo", template.people, root / "state")._copied_from(template)

    def _copied_from(self, template: SeedRepo) -> SeedRepo:
        """This repository as a copy of `template`: its commits, the builds its plans named
        (the driver's artifacts), and its clock and count of records where the template's
        stand. A template's story never verifies or applies, so it has no state to copy."""
        assert not template.state_dir.exists(), "a template holds commits only"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(template.path, self.path, symlinks=True)
        if template.driver_root.exists():
            shutil.copytree(template.driver_root, self.driver_root, symlinks=True)
        self.clock = template.clock
        self.earlier_runs = template.earlier_runs
        return self


# The seed story as most tests start from it, made by git once per worker and people: a
# copy is the same commit (ssh-keygen's Ed25519 signatures are deterministic) for an
# eighth of the cost, and the suite starts from it hundreds of times.
_SEED_TEMPLATES: dict[Path, SeedRepo] = {}


def _seed_template(people: People) -> SeedRepo:
    template = _SEED_TEMPLATES.get(people.directory)
    if template is None:
        template = SeedRepo._made(
            Path(tempfile.mkdtemp(prefix="seed-", dir=people.directory)), people
        )
        _SEED_TEMPLATES[people.directory] = template
    return template


def trailers(repo: SeedRepo, rev: str) -> dict[str, str]:
    text = repo.git("log", "-1", "--format=%(trailers:only,unfold)", rev)
    return dict(line.split(": ", 1) for line in text.splitlines() if line)


def only_refusal(verdict: LandingVerdict) -> Refusal:
    """The one refusal of a refused landing."""
    assert not verdict.authorised
    assert len(verdict.refusals) == 1, verdict.refusals
    return verdict.refusals[0]
