"""App: the application layer, one call per command, returning what the command reports.

The CLI parses a command line, makes one of these calls and hands its result
to the reporter `--format` chose (`cli.reporter`). Each call opens what it
needs (the repository, the state, the followed branch), runs the stages, and
returns frozen values, so that no command reaches into a session's walk.
What a person should know before the result (a note about the branch read,
a progress bar) goes to the callbacks the CLI passes: `Note`, `Progress`.
`reconciler validate` has its own, Git-free call (`validating`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from msgspec import Struct
from msgspec.structs import replace

from reconciler.adapters.clock import utc_now
from reconciler.adapters.worktree import find_root
from reconciler.core.errors import UsageError
from reconciler.core.layout import place
from reconciler.core.printable import printable

# Each call imports what its command needs: this module is every command's one entry,
# and a command loads the repository, the state or the walker only when it uses them.
if TYPE_CHECKING:
    from reconciler.adapters.drivers import Step
    from reconciler.app.actions import Locked, Made
    from reconciler.app.authorise import Progress
    from reconciler.app.checkpoint_trust import CheckpointTrust
    from reconciler.app.drift import DriftReport
    from reconciler.app.init import Initialised
    from reconciler.app.mergeable import MergeCheck
    from reconciler.app.passes import Options, PassReport
    from reconciler.app.session import Session
    from reconciler.app.trail import Entry
    from reconciler.app.verified import VerifyResult
    from reconciler.app.watch_values import LogEvent, WatchedPages
    from reconciler.core.access import AccessReport
    from reconciler.core.decide import Decision
    from reconciler.core.decide_values import History
    from reconciler.core.journal import IgnoredTrailer
    from reconciler.core.model import Policy
    from reconciler.core.status import Pipeline
    from reconciler.core.verdicts import LandingVerdict

Note = Callable[[str], None]  # a line for people (stderr), said as soon as it is known


def _quiet(_: str) -> None:
    """No one to tell."""


class Source(Struct, frozen=True):
    """Where a command reads: the repository (default: the one around the current
    directory), the followed branch or a remote's, and the state directory."""

    repo: Path | None = None
    branch: str | None = None
    state_dir: Path | None = None
    remote: str | None = None


@contextmanager
def _session(source: Source) -> Iterator[Session]:
    """A session on a local branch, for a command that commits (`approve`, ...)."""
    from reconciler.app.session import open_session  # noqa: PLC0415

    with open_session(
        find_root(source.repo or Path.cwd()),
        branch=source.branch,
        state_dir=source.state_dir,
        now=utc_now(),
    ) as session:
        yield session


@contextmanager
def _reading(source: Source, note: Note, *, busy_timeout: float | None = None) -> Iterator[Session]:
    """A session for a command that only reports (`plan`, `status`, `history`, `verify`,
    `access`): it may read a remote's branch, and says when the service that keeps its
    state here follows another branch than the one it reads. `busy_timeout`: the seconds
    another process's pass is waited for (None: the store's own)."""
    from reconciler.adapters.statestore import BUSY_TIMEOUT  # noqa: PLC0415
    from reconciler.app.session import open_session  # noqa: PLC0415

    with open_session(
        find_root(source.repo or Path.cwd()),
        branch=source.branch,
        state_dir=source.state_dir,
        now=utc_now(),
        remote=source.remote,
        tracking=True,
        busy_timeout=BUSY_TIMEOUT if busy_timeout is None else busy_timeout,
    ) as session:
        other = other_branch_note(session)
        if other is not None:
            note(other)
        yield session


def other_branch_note(session: Session) -> str | None:
    """Where a reconciler service (apply, watch) keeps its state beside this one but
    follows another branch (on its clone, `origin/main` while local main stands still):
    which branch this command reads, and how to read the service's."""
    from reconciler.adapters.statestore import service_branches  # noqa: PLC0415

    followed = service_branches(session.store.directory)
    if not followed or session.branch in followed:
        return None
    others = ", ".join(printable(name) for name in followed)
    return (
        f"note: this reads {printable(session.branch)} ({session.tip()[:12]}); the reconciler "
        f"service with this state directory follows {others}: pass --branch "
        f"{printable(followed[0])} to read what it does"
    )


# -- verify and access ---------------------------------------------------------------


class VerifyRequest(Struct, frozen=True):
    """`reconciler verify`'s revisions, as typed (resolved before the walk)."""

    from_rev: str | None = None
    to_rev: str | None = None
    trust_anchor: str | None = None
    re_anchor: str | None = None
    every_verdict: bool = False  # decode every landing's verdict, not only the refused
    full: bool = False  # a fresh state walks from the trust anchor, whatever checkpoint there is
    checkpoint_keys: tuple[Path, ...] = ()  # --checkpoint-key: the checkpoints' trusted keys


class Verification(Struct, frozen=True):
    """What `verify` found: the walk, and the landings after --from it reports."""

    result: VerifyResult
    landings: tuple[str, ...]  # every landing's verdict, as the store keeps it (JSON text)
    refused: tuple[LandingVerdict, ...]
    shown: tuple[LandingVerdict, ...]  # every verdict when asked for, else the refused
    ignored: tuple[IgnoredTrailer, ...]  # trailers that count for nothing, and why

    @property
    def authorised(self) -> bool:
        return not self.refused


def verify(
    source: Source, request: VerifyRequest, *, progress: Progress, note: Note = _quiet
) -> Verification:
    """Walk the branch to its tip (or --to), and the landings after --from it judged."""
    with _reading(source, note) as session:
        keys = request.checkpoint_keys
        session.checkpoints = _checkpoint_trust(session, request.full, keys, note)
        # Every revision typed is resolved before the walk: a typo stops it before it starts.
        start = session.typed_revision("--from", request.from_rev) if request.from_rev else None
        to = session.typed_revision("--to", request.to_rev) if request.to_rev else None
        anchor = (
            session.typed_revision("--trust-anchor", request.trust_anchor)
            if request.trust_anchor
            else None
        )
        if request.re_anchor:
            trusted = session.typed_revision("--re-anchor", request.re_anchor)
            result, _ = session.re_anchor(trusted, progress)
        else:
            # Reported from the store after the anchor: a copy of every verdict of a long
            # history held in memory through the walk would serve nothing.
            result = session.verify(
                to,
                trust_anchor=anchor,
                progress=progress,
                to_name=request.to_rev,
                verdicts=start is not None,
            )
        refused = session.landings_between(start, result.tip, result.judged, refused_only=True)
        ignored = session.ignored_between(start, result.tip, result)
        landings = session.landing_texts(start, result.tip, result.judged)
        shown = (
            session.landings_between(start, result.tip, result.judged)
            if request.every_verdict
            else refused
        )
        return Verification(result, tuple(landings), tuple(refused), tuple(shown), tuple(ignored))


def _checkpoint_trust(
    session: Session, full: bool, keys: tuple[Path, ...], note: Note
) -> CheckpointTrust | None:
    """Which checkpoints the command's walk may go on from, telling `note` why it passed
    over any; None with `full`."""
    from reconciler.app.checkpoint_trust import CheckpointTrust, pinned_keys  # noqa: PLC0415

    if full or session.checkpoints is None:
        return None
    return CheckpointTrust(session.checkpoints.branch, pinned_keys(keys), note)


def access(
    source: Source, user: str, environment: str | None, *, note: Note = _quiet
) -> AccessReport:
    """What `user` may do where, by the effective policy at the branch tip."""
    from reconciler.core import access as access_rules  # noqa: PLC0415

    with _reading(source, note) as session:
        policy, revoked = session.policy()  # one read of the revocations per command
        return access_rules.report(
            policy, user, environment, revoked.fingerprints if revoked else frozenset()
        )


# -- plan, status, history -----------------------------------------------------------


class PlanView(Struct, frozen=True):
    """`reconciler plan`: every plan on the branch decided now, and the drift."""

    decisions: tuple[Decision, ...]
    drift: DriftReport
    branch: str


def plan(source: Source, driver_root: Path | None, *, note: Note = _quiet) -> PlanView:
    with _reading(source, note) as session:
        uncommitted = uncommitted_note(session)
        if uncommitted is not None:
            note(uncommitted)
        seen = session.observe(reuse=True)
        drift = drift_finder(session, driver_root)(seen.history)
        return PlanView(seen.decisions, drift, session.branch)


def drift_finder(session: Session, driver_root: Path | None) -> Callable[[History], DriftReport]:
    """Where each environment's driver reports another version than `deployments/` records
    (`plan`, `status`, the pipeline pages); drivers load from `driver_root`, by default the
    state directory's `releases`."""
    from reconciler.adapters.drivers import load_driver  # noqa: PLC0415
    from reconciler.app.drift import find_drift  # noqa: PLC0415 - `verify` never needs them

    root = driver_root or session.store.directory / "releases"
    return lambda history: find_drift(
        history.policy,
        history.deployed,
        lambda environment: load_driver(environment.driver, root),
    )


def uncommitted_note(session: Session) -> str | None:
    """`plan` reads the branch's commits: which plan files the working tree holds that it
    does not see, if any (a plan written and not committed is no plan yet)."""
    pending = [
        f"{printable(path)} ({how})"
        for path, how in session.repo.uncommitted("plans")
        if place(path).kind == "plan"
    ]
    if not pending:
        return None
    these = "this plan file is" if len(pending) == 1 else "these plan files are"
    return (
        f"note: plan reads what is committed on {printable(session.branch)}, and {these} "
        f"not committed: {', '.join(pending)}"
    )


def status(
    source: Source,
    *,
    include_deployed: bool,
    driver_root: Path | None = None,
    note: Note = _quiet,
) -> Pipeline:
    """`reconciler status`: the pipeline, and the drift its drivers report."""
    with _reading(source, note) as session:
        return session.pipeline(
            include_deployed=include_deployed,
            drift=drift_finder(session, driver_root),
            reuse=True,
        )


class HistoryQuery(Struct, frozen=True):
    """`reconciler history`'s filters (each None: not filtered on)."""

    plan: str | None = None  # a plan's name or path
    environment: str | None = None
    user: str | None = None
    since: datetime | None = None
    by: Literal["time", "plan"] = "time"


def history(
    source: Source,
    query: HistoryQuery,
    *,
    note: Note = _quiet,
    busy_timeout: float | None = None,
) -> tuple[Entry, ...]:
    """The audit trail from the state, filtered and ordered; `busy_timeout` as `_reading`'s."""
    from reconciler.app.history import audit_trail, ordered, select  # noqa: PLC0415

    with _reading(source, note, busy_timeout=busy_timeout) as session:
        session.verify()  # the trail is the state's, up to the tip: with nothing new, no walk

        @functools.cache
        def policy() -> Policy:
            """The effective policy at the tip, only for a name to check (nothing to walk)."""
            return session.authorise()[1]

        def effective() -> tuple[str, ...]:
            policy()
            return session.effective_paths()

        plan = None
        if query.plan:
            from reconciler.app.actions import plan_file  # noqa: PLC0415 - only to name a plan

            plan = plan_file(query.plan)
        selected = select(
            audit_trail(session.store),
            policy,
            effective,
            plan=plan,
            environment=query.environment,
            user=query.user,
            since=query.since,
        )
        return ordered(selected, query.by)


# -- verify-mergeable ----------------------------------------------------------------


def verify_mergeable(
    source: Source,
    head: str,
    trust_anchor: str | None,
    *,
    progress: Progress,
    checkpoint_keys: tuple[Path, ...] = (),
    note: Note = _quiet,
) -> MergeCheck:
    """Judge what merging `head` into the base (`source.branch`) would land."""
    from reconciler.app import mergeable  # noqa: PLC0415
    from reconciler.app.session import open_session  # noqa: PLC0415

    with open_session(
        find_root(source.repo or Path.cwd()),
        branch=source.branch,
        state_dir=source.state_dir,
        now=utc_now(),
        option="--base",
    ) as session:
        trust = _checkpoint_trust(session, False, checkpoint_keys, note)
        # Every revision typed is resolved before the walk: a typo stops it before it starts.
        tested = session.typed_revision("--head", head)
        if trust_anchor:
            session.typed_revision("--trust-anchor", trust_anchor)
        if trust is not None and session.store.fresh():
            # A fresh state is left fresh: the check keeps nothing of its walk, so it may
            # load of a checkpoint only the sections its questions need.
            session.store.go_ephemeral()
            trust = replace(trust, lazy=True)
        session.checkpoints = trust
        return mergeable.check(session, tested, head, trust_anchor=trust_anchor, progress=progress)


# -- approve, deploy, cancel ---------------------------------------------------------


class Acted(Struct, frozen=True):
    """A commit `approve`, `deploy` or `cancel` made, and what it still needs to count."""

    made: Made
    still_to_do: str | None


class Action(Struct, frozen=True):
    """What a person asked: approve, deploy (or retry `retry`), cancel (or `undo` it), roll
    an environment back."""

    kind: Literal["approve", "deploy", "cancel", "rollback"]
    plan: str  # rollback: the environment
    retry: str | None = None
    undo: bool = False
    applications: tuple[str, ...] = ()  # rollback: which (none: all that run there)
    to: str | None = None  # rollback: the version to go back to


def act(source: Source, action: Action) -> Acted:
    from reconciler.app import actions  # noqa: PLC0415

    with _session(source) as session:
        # Refuse a bare repository before the history walk, not when `git commit` fails
        # after it: its failure would be blamed on the git identity and signing setup.
        session.repo.work_tree()
        if action.kind == "approve":
            made = actions.approve(session, action.plan)
        elif action.kind == "deploy":
            made = actions.deploy(session, action.plan, action.retry)
        elif action.kind == "rollback":
            made = actions.rollback(session, action.plan, action.applications, action.to)
        else:
            made = actions.cancel(session, action.plan, undo=action.undo)
        return Acted(made, actions.still_to_do(session))


class LockActed(Struct, frozen=True):
    """A commit `lock` or `unlock` made, and what it still needs to count."""

    locked: Locked
    still_to_do: str | None


def lock(
    source: Source, environment: str, application: str | None, why: str, *, unlock: bool
) -> LockActed:
    from reconciler.app import actions  # noqa: PLC0415

    with _session(source) as session:
        session.repo.work_tree()
        locked = actions.lock(session, environment, application, why, unlock=unlock)
        return LockActed(locked, actions.still_to_do(session))


# -- apply ---------------------------------------------------------------------------


def apply(
    repo: Path | None,
    options: Options,
    *,
    stop_requested: Callable[[], bool],
    progress: Progress,
    on_step: Callable[[int, int, Step], None] | None,
) -> PassReport:
    """One reconcile pass (`reconcile.Reconciler.pass_once`)."""
    import time  # noqa: PLC0415

    from reconciler.app.reconcile import Reconciler  # noqa: PLC0415

    with Reconciler(
        find_root(repo or Path.cwd()),
        options,
        clock=utc_now,
        sleep=time.sleep,
        stop_requested=stop_requested,
        progress=progress,
        on_step=on_step,
    ) as reconciler:
        return reconciler.pass_once()


# -- init ----------------------------------------------------------------------------

# What the first admin is called when neither an option nor git's configuration says.
STAND_INS: Final = {"user.name": "Admin", "user.email": "admin@example.com"}


class Founded(Struct, frozen=True):
    """A new configuration repository, and which of its first admin's values are made up."""

    made: Initialised
    stand_ins: tuple[str, ...]  # git configuration keys, as `STAND_INS` names them


def init(
    directory: Path,
    *,
    name: str | None,
    email: str | None,
    admin: str | None,
    key: Path | None,
) -> Founded:
    from reconciler.app.init import initialise  # noqa: PLC0415

    stand_ins: list[str] = []
    made = initialise(
        directory,
        name=_from_git(name, "user.name", stand_ins),
        email=_from_git(email, "user.email", stand_ins),
        public_key=_public_key(key),
        admin=admin,
    )
    return Founded(made, tuple(stand_ins))


def _public_key(given: Path | None) -> str:
    from reconciler.adapters.gitrepo import user_config  # noqa: PLC0415

    candidates: list[Path] = []
    if given is not None:
        candidates.append(given)
    else:
        configured = user_config("user.signingkey")
        if configured:
            path = Path(configured).expanduser()
            candidates += [path if path.suffix == ".pub" else path.with_name(path.name + ".pub")]
        candidates.append(Path("~/.ssh/id_ed25519.pub").expanduser())
    for candidate in candidates:
        if candidate.is_file():
            return _read_key(candidate)
    raise UsageError(
        "no SSH public key for the first admin",
        hint="pass --key ~/.ssh/id_ed25519.pub (the key you sign commits with)",
    )


def _read_key(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(
            f"{path} is not an SSH public key", hint="pass --key ~/.ssh/id_ed25519.pub"
        ) from None
    except OSError as error:
        raise UsageError(
            f"cannot read {path}: {error.strerror}", hint="pass --key ~/.ssh/id_ed25519.pub"
        ) from None


def _from_git(given: str | None, key: str, stand_ins: list[str]) -> str:
    """The option as given, else git's `key`, else a stand-in (its key added to `stand_ins`).

    An option given empty is checked as given, not replaced.
    """
    from reconciler.adapters.gitrepo import user_config  # noqa: PLC0415

    if given is not None:
        return given
    configured = user_config(key)
    if configured is not None:
        return configured
    stand_ins.append(key)
    return STAND_INS[key]


# -- watch ---------------------------------------------------------------------------


def read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as error:
        raise UsageError(
            f"cannot read the webhook secret {path}: {error.strerror}",
            hint="pass --webhook-secret-file with a readable file",
        ) from None
    if not secret:
        raise UsageError(
            f"the webhook secret file {path} is empty",
            hint="put a long random secret in it, e.g. `openssl rand -hex 32 > FILE`",
        )
    return secret


def repository_dir(repo: Path | None) -> Path:
    """`--repo` as given when it is a git directory itself (a bare repository), else its root."""
    if repo is not None and (repo / "HEAD").is_file() and (repo / "objects").is_dir():
        return repo
    return find_root(repo or Path.cwd())


def watch(
    repo: Path | None,
    options: Options,
    *,
    interval: float,
    listen: tuple[str, int] | None,
    secret_file: Path | None,
    log: Callable[[LogEvent], None],
    on_start: Callable[[Callable[[], None]], None],
    notify_file: Path | None = None,
    pages: WatchedPages | None = None,
) -> None:
    """Reconcile on every change of the branch until stopped (`watch.Watch.run`).

    `on_start` is handed the watcher's `stop` before it starts (the CLI's signal handlers);
    `pages`, when listening, are served beside the webhook.
    """
    from reconciler.adapters.notify import load_config  # noqa: PLC0415
    from reconciler.app.watch import Watch  # noqa: PLC0415
    from reconciler.app.watch_values import WatchSettings  # noqa: PLC0415

    settings = WatchSettings(
        interval=interval,
        listen=listen,
        webhook_secret=read_secret(secret_file) if secret_file else None,
        notify=load_config(notify_file) if notify_file is not None else None,
        pages=pages,
    )
    watcher = Watch(repository_dir(repo), options, settings, clock=utc_now, log=log)
    on_start(watcher.stop)
    watcher.run()
