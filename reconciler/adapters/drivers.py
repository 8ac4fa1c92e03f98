"""Adapter, process: the deploy drivers (stage 5, execute), one application version at a time.

Called by `execute`. A driver implements the small `Driver` protocol:
`deploy(step) -> Outcome` and `current(application, environment)`. Built in:

- `local` (the embedded default): releases in `<root>/<env>/<app>/releases/
  <version>` and an atomic `current` symlink switch; no server needed. It
  ships builds, never a bare version string: in the first environment a
  release is a copy of the build a CI put in `<root>/artifacts/<app>/
  <version>/` (no build there: the step fails); later, `tag-and-deploy`
  creates the release from the source environment's `from` release and a
  plain deploy copies the source environment's release. Each release it makes
  records how (`.provenance.json`: the step's action, source and `from`, the
  build's digest in the first environment, and a digest of its content), so a
  release that exists is reused only for the same ask and unchanged content,
  never shipped for another build of the same version.
- `command`: an argv list from the environment file; the step reaches it as
  `RECONCILER_*` environment variables, never through a shell, in an empty
  temporary directory of its own (never the reconciler's working directory,
  often the configuration repository's work tree). Exit 0 is success, 75
  (EX_TEMPFAIL) and timeouts are transient, anything else is permanent.

With the environment's `verify`, each deployed application is checked
(`check(step, on_line, timeout) -> Outcome`, `Checker`): `local` checks that
the release is current and runs the environment's `driver.check` command if it
names one; `command` runs its program with `RECONCILER_OPERATION=check`.

Third-party drivers register a factory in the `reconciler.drivers`
entry-point group: `factory(spec: DriverSpec, root: Path) -> Driver`; `check`
is an optional method of theirs.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol, runtime_checkable

from msgspec import Struct

from reconciler.adapters import process
from reconciler.core.config import relative_command
from reconciler.core.errors import CannotStart, ConfigError
from reconciler.core.layout import environment_path
from reconciler.core.model import DriverSpec, Environment
from reconciler.core.printable import printable

if TYPE_CHECKING:
    from reconciler.adapters.gitops import Committer

ENTRY_POINT_GROUP: Final = "reconciler.drivers"
EX_TEMPFAIL: Final = 75
# What a command driver inherits from the reconciler's environment; nothing else leaks.
_PASSED_THROUGH: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
# How the local driver made a release: a file at the top of the release, left out of
# its digest (and never copied into a release made from it).
PROVENANCE: Final = ".provenance.json"
# Where the local driver finds the builds it ships into the first environment:
# <root>/artifacts/<app>/<version>/, put there by a CI (the demo makes its own).
ARTIFACTS: Final = "artifacts"


class Step(Struct, frozen=True):
    """One application version to deploy, and where it comes from."""

    application: str
    version: str
    environment: str
    plan: str
    run: str
    # "rollback": back to `version`, which ran here before this run deployed `from_version`.
    action: Literal["deploy", "tag-and-deploy", "rollback"]
    from_version: str | None
    source: str | None  # the environment it is promoted from
    # The run's lease when the step starts: a driver that can fence refuses to act past it.
    lease_until: datetime | None = None

    def variables(self) -> dict[str, str]:
        return {
            "RECONCILER_APP": self.application,
            "RECONCILER_VERSION": self.version,
            "RECONCILER_ENVIRONMENT": self.environment,
            "RECONCILER_PLAN": self.plan,
            "RECONCILER_RUN": self.run,
            "RECONCILER_ACTION": self.action,
            "RECONCILER_FROM_VERSION": self.from_version or "",
            "RECONCILER_SOURCE_ENVIRONMENT": self.source or "",
            "RECONCILER_LEASE_UNTIL": self.lease_until.isoformat() if self.lease_until else "",
        }


class Outcome(Struct, frozen=True):
    ok: bool
    transient: bool  # worth retrying
    lines: tuple[str, ...]
    summary: str

    @classmethod
    def success(cls, summary: str, lines: tuple[str, ...] = ()) -> Outcome:
        return cls(True, False, lines, summary)

    @classmethod
    def failure(
        cls, summary: str, lines: tuple[str, ...] = (), *, transient: bool = False
    ) -> Outcome:
        return cls(False, transient, lines, summary)


class Driver(Protocol):
    def deploy(self, step: Step, on_line: Callable[[str], None]) -> Outcome: ...

    def current(self, application: str, environment: str) -> str | None: ...


@runtime_checkable
class Checker(Protocol):
    """A driver that can check a step it deployed: an optional method of a third-party one."""

    def check(self, step: Step, on_line: Callable[[str], None], timeout: float) -> Outcome:
        """Whether `step`'s application works as deployed, in at most `timeout` seconds."""
        ...


class LocalDriver:
    """Releases in a directory tree, switched atomically with a `current` symlink."""

    def __init__(self, root: Path, check: tuple[str, ...] = ()) -> None:
        self.root = root
        self.check_argv = check

    def _app_dir(self, environment: str, application: str) -> Path:
        return self.root / environment / application

    def deploy(self, step: Step, on_line: Callable[[str], None]) -> Outcome:
        unsafe = _unsafe_name(step)
        if unsafe is not None:
            return Outcome.failure(unsafe)
        if ARTIFACTS in (step.environment, step.source):
            return Outcome.failure(
                f"local driver: {self.root / ARTIFACTS} holds the builds, so an environment "
                f"named {ARTIFACTS} cannot keep its releases beside them; give it a root of "
                "its own (driver: {type: local, root: DIR})"
            )
        target = self._app_dir(step.environment, step.application)
        release = target / "releases" / step.version
        lines: list[str] = []

        def say(line: str) -> None:
            lines.append(line)
            on_line(line)

        if step.action == "rollback":
            return self._restore(release, target, step, say)
        try:
            build = self._build(step)
            if step.source is None and build is None:
                return Outcome.failure(self._no_build(step))
            asked = _asked(step, build)
            if release.exists() or release.is_symlink():
                refused = _reusable(release, step, asked)
                if refused is not None:
                    return Outcome.failure(refused, tuple(lines))
                say(f"release {release} exists as {_made(asked)}: not copied again")
            else:
                origin = self._origin(step) if build is None else build[0]
                if origin is None:
                    return Outcome.failure(
                        f"release {step.application} {_source_version(step)} not found in "
                        f"{step.source}",
                        tuple(lines),
                    )
                self._create(release, origin, asked, step.run)
                say(f"created release {release}" + (f" from {origin}" if origin else ""))
            self._switch(target / "current", Path("releases") / step.version)
            say(f"current -> releases/{step.version}")
        except OSError as error:
            return Outcome.failure(f"local driver: {error}", tuple(lines), transient=True)
        return Outcome.success(f"{step.application} {step.version} is current", tuple(lines))

    def _restore(
        self, release: Path, target: Path, step: Step, say: Callable[[str], None]
    ) -> Outcome:
        """A rollback: switch back to the release this driver made of `step`'s version here,
        unchanged since; never a release made anew (the build may be gone, or another)."""
        asked = {
            "application": step.application,
            "version": step.version,
            "environment": step.environment,
        }
        if not release.exists() and not release.is_symlink():
            return Outcome.failure(
                f"cannot roll back to {step.application} {step.version} in {step.environment}: "
                f"its release {release} is not there any more"
            )
        refused = _reusable(release, step, asked)
        if refused is not None:
            return Outcome.failure(f"cannot roll back: {refused}")
        try:
            self._switch(target / "current", Path("releases") / step.version)
        except OSError as error:
            return Outcome.failure(f"local driver: {error}", transient=True)
        say(f"current -> releases/{step.version} (rolled back from {step.from_version})")
        return Outcome.success(f"{step.application} {step.version} is current again")

    def _build(self, step: Step) -> tuple[Path, str] | None:
        """The build a step into the first environment ships, and its digest; None elsewhere,
        or when no build of the step's version is there."""
        if step.source is not None:
            return None
        build = self.root / ARTIFACTS / step.application / step.version
        return (build, _digest(build)) if build.is_dir() else None

    def _no_build(self, step: Step) -> str:
        builds = self.root / ARTIFACTS / step.application
        found = sorted(path.name for path in builds.iterdir()) if builds.is_dir() else []
        there = f"builds there: {', '.join(found[:5])}" if found else "no build of it is there"
        return (
            f"local driver: no build of {step.application} {step.version} in {builds} "
            f"({there}); put the build in {builds / step.version}/, or fix the version "
            "in the plan"
        )

    def _origin(self, step: Step) -> Path | None:
        version = _source_version(step) or ""
        assert step.source is not None
        candidate = self._app_dir(step.source, step.application) / "releases" / version
        return candidate if candidate.is_dir() else None

    def _create(self, release: Path, origin: Path, asked: Mapping[str, object], run: str) -> None:
        import shutil  # noqa: PLC0415 - with tempfile, loaded by the commands that deploy alone
        import tempfile  # noqa: PLC0415

        release.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=release.parent))
        try:
            # The origin's own provenance describes the origin, not this release. A link is
            # copied as the link (as `_digest` reads it), never as the host file it names.
            shutil.copytree(
                origin,
                staging,
                symlinks=True,
                dirs_exist_ok=True,
                ignore=lambda folder, _: [PROVENANCE] if Path(folder) == origin else [],
            )
            build = asked.get("build")
            if build is not None and _digest(staging) != build:
                # Changed while copied: the release would record one build and hold another.
                raise OSError(f"the build in {origin} changed while it was copied; try again")
            (staging / "VERSION").write_text(f"{asked['application']} {asked['version']}\n")
            record = {**asked, "run": run, "digest": _digest(staging)}
            (staging / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n")
            # A release appears whole, its provenance with it, or not at all.
            os.rename(staging, release)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _switch(self, link: Path, destination: Path) -> None:
        temporary = link.with_name(f".current-{os.getpid()}")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(destination)
        os.replace(temporary, link)  # atomic: readers see the old or the new release

    def current(self, application: str, environment: str) -> str | None:
        link = self._app_dir(environment, application) / "current"
        if not link.is_symlink():
            return None
        return Path(os.readlink(link)).name

    def check(self, step: Step, on_line: Callable[[str], None], timeout: float) -> Outcome:
        """The release is current and the environment's check command, if any, passes."""
        unsafe = _unsafe_name(step)
        if unsafe is not None:
            return Outcome.failure(unsafe)
        current = self.current(step.application, step.environment)
        release = self._app_dir(step.environment, step.application) / "releases" / step.version
        if current != step.version or not release.is_dir():
            now = f"current is {printable(current)}" if current else "nothing is current"
            return Outcome.failure(
                f"{step.application} {step.version} is not current in {step.environment} ({now})"
            )
        if not self.check_argv:
            return Outcome.success(f"{step.application} {step.version} is current")
        variables = {
            **step.variables(),
            "RECONCILER_OPERATION": "check",
            "RECONCILER_RELEASE": str(release),
        }
        return _checked(self.check_argv, variables, timeout, on_line, step, "driver.check")


def _unsafe_name(step: Step) -> str | None:
    """Why a name of `step` cannot be part of a release's path, if it cannot.

    The schemas refuse such names; this is the defence behind them: a release
    directory named with a newline, a '/' or '..' is never made.
    """
    names = (
        ("application", step.application),
        ("version", step.version),
        ("environment", step.environment),
        ("source environment", step.source),
        ("from version", step.from_version),
    )
    for what, name in names:
        if name is not None and (
            not name or name.startswith(".") or "/" in name or printable(name) != name
        ):
            return (
                f"local driver: the {what} {printable(repr(name))} cannot name a release "
                "directory (no '/', control characters or leading '.'); fix the plan"
            )
    return None


def _source_version(step: Step) -> str | None:
    """The version in the source environment a release of `step` is made from."""
    if step.source is None:
        return None
    return step.from_version if step.action == "tag-and-deploy" else step.version


def _asked(step: Step, build: tuple[Path, str] | None = None) -> dict[str, object]:
    """What a release made for `step` records of its making, and what `step` asks of one
    that exists; in the first environment, the `build` it copies, by its digest."""
    asked: dict[str, object] = {
        "application": step.application,
        "version": step.version,
        "environment": step.environment,
        "action": step.action,
        "source": step.source,
        "from": _source_version(step),
    }
    if build is not None:
        asked["build"] = build[1]
    return asked


def _made(fields: Mapping[str, object]) -> str:
    """What a release was (or is to be) made as, in words, from `_asked`'s fields."""
    if fields.get("source") is None:
        build = fields.get("build")
        which = f" {build.removeprefix('sha256:')[:12]}" if isinstance(build, str) else ""
        return f"a copy of the build{which} of {fields.get('application')} {fields.get('version')}"
    kind = "a tag" if fields.get("action") == "tag-and-deploy" else "a copy"
    return f"{kind} of {fields.get('source')}'s {fields.get('from')}"


def _reusable(release: Path, step: Step, asked: Mapping[str, object]) -> str | None:
    """Why the existing `release` must not be switched to for `step`, if it must not.

    It must have been made for what `step` asks (`asked`: same action, source and
    `from`, so an approval of 0.6 from 0.6-dev.42 never ships the 0.6 made from
    0.6-dev.41; in the first environment, the same build) and be unchanged since
    (its digest). A release that records nothing was not made by this driver.
    """
    label = f"{step.application} {step.version} in {step.environment}"
    remove = f"remove {release} to have it made again as {_made(asked)}"
    if not release.is_dir() or release.is_symlink():
        return f"release {label}: {release} is not a directory; {remove}"
    try:
        recorded = json.loads((release / PROVENANCE).read_text())
    except FileNotFoundError:
        return (
            f"release {label} exists but records no provenance, so it may be another build "
            f"than the one wanted ({_made(asked)}): {remove}"
        )
    except (OSError, ValueError) as error:
        return f"release {label}: its {PROVENANCE} cannot be read ({error}); {remove}"
    if not isinstance(recorded, dict) or not isinstance(recorded.get("digest"), str):
        return f"release {label}: its {PROVENANCE} is not a provenance record; {remove}"
    made = {key: recorded.get(key) for key in asked}
    if made != asked:
        how = _made(made)
        where = (made["application"], made["version"], made["environment"])
        if where != (step.application, step.version, step.environment):
            how += f" as {where[0]} {where[1]} in {where[2]}"
        return (
            f"release {label} exists as {how} (made by run {recorded.get('run')}); this step "
            f"wants {_made(asked)}, another build: {remove}, or deploy another version"
        )
    if _digest(release) != recorded["digest"]:
        return (
            f"release {label} changed after it was made (its content no longer has the "
            f"digest in its {PROVENANCE}): {remove}"
        )
    return None


def _digest(release: Path) -> str:
    """sha256 of a release's tree: each entry's path, kind, mode and content (a file's
    bytes, a link's target), in path order; the provenance file at its top left out."""
    total = hashlib.sha256()
    for path in sorted(_entries(release), key=lambda entry: os.fsencode(entry[0])):
        relative, full = path
        info = full.lstat()
        if stat.S_ISREG(info.st_mode):
            kind = b"f"
            with full.open("rb") as handle:
                content = hashlib.file_digest(handle, "sha256").hexdigest().encode()
        elif stat.S_ISLNK(info.st_mode):
            kind, content = b"l", os.fsencode(os.readlink(full))
        else:
            kind, content = (b"d" if stat.S_ISDIR(info.st_mode) else b"o"), b""
        # NUL ends each field: no path or link target holds one.
        total.update(
            b"%s %o %s\0%s\0" % (kind, stat.S_IMODE(info.st_mode), os.fsencode(relative), content)
        )
    return f"sha256:{total.hexdigest()}"


def _entries(release: Path) -> Iterable[tuple[str, Path]]:
    for folder, directories, files in os.walk(release):
        for name in [*directories, *files]:
            full = Path(folder) / name
            relative = full.relative_to(release).as_posix()
            if relative != PROVENANCE:
                yield relative, full


def _run(
    argv: tuple[str, ...],
    variables: Mapping[str, str],
    timeout: float,
    on_line: Callable[[str], None] | None,
) -> process.Completed:
    """Run a driver's program in an empty folder of its own, with `variables` and the little
    it inherits (`_PASSED_THROUGH`)."""
    import tempfile  # noqa: PLC0415 - `plan` and `status` import this module, and run nothing

    inherited = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    with tempfile.TemporaryDirectory(prefix="reconciler-driver-") as folder:
        return process.run(
            argv,
            env={**inherited, **variables},
            cwd=Path(folder),
            timeout=timeout,
            on_line=on_line,
        )


def _checked(
    argv: tuple[str, ...],
    variables: Mapping[str, str],
    timeout: float,
    on_line: Callable[[str], None],
    step: Step,
    key: str,
) -> Outcome:
    """A check by `argv` (the environment's `key`): exit 0 passes, anything else fails."""
    try:
        completed = _run(argv, variables, timeout, on_line)
    except CannotStart as error:
        return Outcome.failure(
            f"{error.message} (check {key} in {environment_path(step.environment)})"
        )
    if completed.timed_out:
        return Outcome.failure(f"check {argv[0]} timed out after {timeout:g} s", completed.output)
    if completed.exit_code == 0:
        return Outcome.success(f"check {argv[0]} exited 0", completed.output)
    return Outcome.failure(f"check {argv[0]} exited {completed.exit_code}", completed.output)


class CommandDriver:
    """Runs an argv list per step; the step arrives as RECONCILER_* variables."""

    def __init__(self, argv: tuple[str, ...], timeout: int) -> None:
        self.argv = argv
        self.timeout = timeout

    def _run(
        self, variables: Mapping[str, str], timeout: int, on_line: Callable[[str], None] | None
    ) -> process.Completed:
        return _run(self.argv, variables, timeout, on_line)

    def deploy(self, step: Step, on_line: Callable[[str], None]) -> Outcome:
        try:
            completed = self._run(
                {**step.variables(), "RECONCILER_OPERATION": "deploy"}, self.timeout, on_line
            )
        except CannotStart as error:
            # A failed step like any other, so the run ends and is recorded; permanent,
            # since retrying does not install or chmod the program.
            return Outcome.failure(
                f"{error.message} (check driver.argv in {environment_path(step.environment)})"
            )
        if completed.timed_out:
            return Outcome.failure(
                f"{self.argv[0]} timed out after {self.timeout} s", completed.output, transient=True
            )
        if completed.exit_code == 0:
            return Outcome.success(f"{self.argv[0]} exited 0", completed.output)
        return Outcome.failure(
            f"{self.argv[0]} exited {completed.exit_code}",
            completed.output,
            transient=completed.exit_code == EX_TEMPFAIL,
        )

    def check(self, step: Step, on_line: Callable[[str], None], timeout: float) -> Outcome:
        """The same program, with RECONCILER_OPERATION=check: exit 0 passes."""
        variables = {**step.variables(), "RECONCILER_OPERATION": "check"}
        return _checked(
            self.argv, variables, min(self.timeout, timeout), on_line, step, "driver.argv"
        )

    def current(self, application: str, environment: str) -> str | None:
        completed = self._run(
            {
                "RECONCILER_OPERATION": "current",
                "RECONCILER_APP": application,
                "RECONCILER_ENVIRONMENT": environment,
            },
            min(self.timeout, 60),
            None,
        )
        if not completed.ok or not completed.output:
            return None
        return completed.output[-1].strip() or None


def load_driver(spec: DriverSpec, default_root: Path, committer: Committer | None = None) -> Driver:
    """The driver an environment file names; `committer` signs the gitops driver's
    commits (without one it reads, for `current` and checks, and cannot deploy)."""
    relative = relative_command(spec)
    if relative is not None:
        raise relative
    if spec.type == "local":
        root = Path(spec.root).expanduser() if spec.root else default_root
        return LocalDriver(root, spec.check)
    if spec.type == "command":
        return CommandDriver(spec.argv, spec.timeout)
    if spec.type == "gitops":
        # Imported here: only gitops environments pay for ruamel.yaml and its module.
        from reconciler.adapters.gitops import GitOpsDriver  # noqa: PLC0415

        if spec.gitops is None:
            raise ConfigError(
                "the gitops driver needs its 'gitops' block", hint="see docs/running.md"
            )
        return GitOpsDriver(spec.gitops, default_root, committer)
    # Imported here: only a plug-in's type looks the installed packages up.
    from importlib import metadata  # noqa: PLC0415

    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == spec.type:
            factory = entry.load()
            driver: Driver = factory(spec, default_root)
            return driver
    raise _not_installed(spec)


def _not_installed(spec: DriverSpec) -> ConfigError:
    return ConfigError(
        f"driver '{spec.type}' is not installed",
        hint=f"install the package that registers it in the '{ENTRY_POINT_GROUP}' group",
    )


def unavailable(
    environments: Iterable[Environment],
    read: Callable[[str], bytes | None],
    default_root: Path | None = None,
) -> dict[str, ConfigError]:
    """The environments whose driver cannot be loaded here, and why, at the file's line.

    With `default_root` each driver is loaded (a factory may fail too);
    without, only its type is looked up. `read` gives an environment file's
    content, for the line of its `driver`.
    """
    installed: set[str] | None = None
    problems: dict[str, ConfigError] = {}
    for environment in environments:
        spec = environment.driver
        try:
            if default_root is not None:
                load_driver(spec, default_root)
            elif (relative := relative_command(spec)) is not None:
                raise relative
            elif spec.type not in {"local", "command", "gitops"}:
                if installed is None:
                    from importlib import metadata  # noqa: PLC0415

                    group = metadata.entry_points(group=ENTRY_POINT_GROUP)
                    installed = {entry.name for entry in group}
                if spec.type not in installed:
                    raise _not_installed(spec)
        except (ConfigError, ImportError) as error:
            # ImportError: a registered plug-in whose module is broken or gone.
            message, hint = (
                (error.message, error.hint)
                if isinstance(error, ConfigError)
                else (f"driver '{spec.type}' cannot be imported: {error}", "reinstall it")
            )
            path = environment_path(environment.name)
            problems[environment.name] = ConfigError(
                message, file=path, line=_driver_line(path, read), hint=hint
            )
    return problems


def _driver_line(path: str, read: Callable[[str], bytes | None]) -> int | None:
    # YAML loads only to place an error: `plan` asks the drivers on every call (drift).
    from reconciler.core.loader import load  # noqa: PLC0415

    raw = read(path)
    if raw is None:
        return None
    try:
        return load(raw, path).position(("driver", "type")).line
    except ConfigError:
        return None
