"""App: what the pipeline pages show (`reconciler serve`, `status --format html`), as frozen values.

One walk of the branch gives one `Snapshot`: the pipeline `status` computes, every plan
decided as `plan` decides it, and each environment's gates. The pages are views of it and
decide nothing: a plan's words are `plan`'s words (its reasons, waits and sign-off
verdicts), a pipeline cell is `status`'s, an entry is `history`'s. The audit trail is
history, not what is on main: it is read from the state a page at a time when a page shows
it (`trail`), never held between passes. `access` is asked per user (`api.access`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from msgspec import Struct

from reconciler.adapters.worktree import find_root
from reconciler.app.api import HistoryQuery, Note, Source, _quiet, _reading, drift_finder, history
from reconciler.app.trail import Entry
from reconciler.core import gates as gate_rules
from reconciler.core.model import Gates
from reconciler.core.status import label as status_label

PAGE: Final = 100  # entries on one page of the audit trail
RUNS_SHOWN: Final = 20  # a plan's newest runs its page shows, each with its log
# Seconds a page that shows entries waits for a pass holding the state (a walk, a push to
# a slow remote): the page answers at once, as when the snapshot held the trail.
TRAIL_WAIT: Final = 1.0
_PAGE_DIGITS: Final = 18  # a page number of more digits is past the last page of any trail

if TYPE_CHECKING:
    from reconciler.adapters.gitrepo import GitRepo
    from reconciler.core.decide import Decision
    from reconciler.core.decide_values import Run
    from reconciler.core.status import Move, Pipeline


class Gate(Struct, frozen=True):
    """One environment's gates as people read them."""

    approvals: tuple[str, ...]  # "2 approvals by tech-lead"
    rollback_approvals: tuple[str, ...]
    signed_commits: bool
    approval_ttl: str | None
    closed: bool  # deploys may not start now (a freeze, or outside every window)
    freeze: str | None  # the freeze that holds it, if one does
    opens: datetime | None  # when deploys may start again, if closed
    windows: tuple[str, ...]  # "Mon-Thu 09:00-17:00 Europe/Berlin"


class EnvironmentInfo(Struct, frozen=True):
    name: str
    promotes_from: str | None
    driver: str
    gate: Gate
    roles: tuple[tuple[str, tuple[str, ...]], ...]  # permission -> roles holding it here


class RunLog(Struct, frozen=True):
    run: Run
    log: str | None  # the finish record's log, None while it runs or when absent


class Snapshot(Struct, frozen=True):
    """Everything the pages show, read in one walk at `tip` of `branch`, as of `now`."""

    branch: str
    tip: str
    now: datetime
    pipeline: Pipeline
    decisions: tuple[Decision, ...]
    environments: tuple[EnvironmentInfo, ...]  # in promotion order
    editors: dict[str, tuple[str, ...]]  # plan path -> who edited it
    # plan path -> its runs, oldest first; their logs are read when its page is asked (a
    # long-lived plan's runs, each log held and read again after every pass, grew without end)
    runs: dict[str, tuple[Run, ...]]
    users: tuple[str, ...]

    def decision(self, name: str) -> Decision | None:
        """The plan called `name` (its name, or its file's stem), if on the branch."""
        for decision in self.decisions:
            stem = decision.path.rsplit("/", 1)[-1].removesuffix(".yaml")
            if name in (stem, decision.plan.name if decision.plan else None):
                return decision
        return None

    def environment(self, name: str) -> EnvironmentInfo | None:
        return next((env for env in self.environments if env.name == name), None)


class Trail(Struct, frozen=True):
    """One page of the audit trail as `history` gives it, newest first."""

    entries: tuple[Entry, ...]  # newest first
    page: int  # 1 is the newest
    total: int  # entries that pass the filters, on every page
    problem: str | None = None  # why none could be read now: the page says so in their place

    @property
    def pages(self) -> int:
        return _pages(self.total)

    @property
    def first(self) -> int:
        """The place of the page's newest entry, counted from the newest of all (1)."""
        return (self.page - 1) * PAGE + 1


def page_of(entries: Sequence[Entry], page: int) -> Trail:
    """Page `page` of `entries` (the trail in date order, as `history` gives it): `PAGE`
    of them, newest first, page 1 the newest; a page past the last is the last."""
    total = len(entries)
    page = min(max(page, 1), _pages(total))
    end = total - (page - 1) * PAGE
    return Trail(tuple(reversed(entries[max(0, end - PAGE) : end])), page, total)


def _pages(total: int) -> int:
    """Pages of `PAGE` entries that `total` entries fill; one when there are none."""
    return max(1, -(-total // PAGE))


def trail(source: Source, query: HistoryQuery, page: int = 1) -> Trail:
    """A page of the audit trail from the state, as `history` reads it (`api.history`):
    read when a page shows it, so that nothing of it is held between passes. A pass that
    holds the state is waited for `TRAIL_WAIT` only (`TemporaryError` after)."""
    return page_of(history(source, query, busy_timeout=TRAIL_WAIT), page)


def _newest(source: Source, query: HistoryQuery) -> Trail:
    """A plan's or environment's newest entries, or why they cannot be read now (a pass
    holds the state, the state cannot be used): the rest of its page is the snapshot's,
    served all the same, as the pages keep the last snapshot when a read fails."""
    from reconciler.core.errors import ReconcilerError  # noqa: PLC0415

    try:
        return trail(source, query)
    except ReconcilerError as error:
        return Trail((), 1, 0, problem=str(error))


class PlanPage(Struct, frozen=True):
    """One plan: its decision, its newest entries in the audit trail, who edited it, its
    newest runs with their logs."""

    decision: Decision
    label: str  # as the pipeline shows it: running, deployed, saved... (`status.label`)
    trail: Trail
    editors: tuple[str, ...]
    runs: tuple[RunLog, ...]  # the newest `RUNS_SHOWN`, oldest first
    run_count: int  # all of its runs


def plan_page(source: Source, snapshot: Snapshot, name: str) -> PlanPage | None:
    decision = snapshot.decision(name)
    if decision is None:
        return None
    runs = snapshot.runs.get(decision.path, ())
    return PlanPage(
        decision=decision,
        label=status_label(decision),
        trail=_newest(source, HistoryQuery(plan=decision.path)),
        editors=snapshot.editors.get(decision.path, ()),
        runs=_logs(source, runs[-RUNS_SHOWN:], decision.plan.name if decision.plan else None),
        run_count=len(runs),
    )


def _logs(source: Source, runs: Sequence[Run], name: str | None) -> tuple[RunLog, ...]:
    """`runs` with their logs, read from Git when a page shows them."""
    from reconciler.adapters.gitrepo import GitRepo  # noqa: PLC0415

    if not runs:
        return ()
    with GitRepo(find_root(source.repo or Path.cwd())) as repo:
        return tuple(RunLog(run, _log(repo, run, name)) for run in runs)


class EnvironmentPage(Struct, frozen=True):
    """One environment: what runs there, its gates, the run holding it, the plans into it,
    its entries in the audit trail."""

    environment: EnvironmentInfo
    running: tuple[tuple[str, str], ...]  # (application, version)
    moves: tuple[Move, ...]
    locks: tuple[Move, ...]  # the runs that hold it
    trail: Trail


def environment_page(source: Source, snapshot: Snapshot, name: str) -> EnvironmentPage | None:
    environment = snapshot.environment(name)
    if environment is None:
        return None
    view = snapshot.pipeline
    moves = tuple(move for move in view.moves if move.target == name)
    return EnvironmentPage(
        environment=environment,
        running=tuple(
            (app, versions[name]) for app, versions in view.versions.items() if name in versions
        ),
        moves=moves,
        locks=tuple(move for move in moves if move.label == "running"),
        trail=_newest(source, HistoryQuery(environment=name)),
    )


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def snapshot(source: Source, *, driver_root: Path | None = None, note: Note = _quiet) -> Snapshot:
    """One walk to the branch tip, and every page's values from it; drift as `plan` finds
    it, its drivers loaded from `driver_root` (`api.drift_finder`)."""
    with _reading(source, note) as session:
        seen = session.observe()
        view = session.pipeline_of(seen, drift=drift_finder(session, driver_root))
        policy = seen.history.policy
        environments = tuple(
            EnvironmentInfo(
                name=env.name,
                promotes_from=env.promotes_from,
                driver=env.driver.type,
                gate=_gate(env.gates, session.now),
                roles=tuple(sorted((key, tuple(roles)) for key, roles in env.permissions.items())),
            )
            for env in policy.environments_in_order()
        )
        editors = {
            path: tuple(sorted(names)) for path, names in seen.history.editors.items() if names
        }
        on_main = {decision.path for decision in seen.decisions}
        runs: dict[str, list[Run]] = {}
        for run in seen.history.runs:
            if run.plan.path in on_main:
                runs.setdefault(run.plan.path, []).append(run)
        return Snapshot(
            branch=session.branch,
            # The commit the walk read, not the branch as it stands now: a record pushed
            # meanwhile would be taken for read, and the poller would skip its next look.
            tip=seen.verified.tip,
            now=session.now,
            pipeline=view,
            decisions=seen.decisions,
            environments=environments,
            editors=editors,
            runs={path: tuple(items) for path, items in runs.items()},
            users=tuple(sorted(policy.users)),
        )


def _gate(gates: Gates, now: datetime) -> Gate:
    closed = gate_rules.closed(gates, now)
    return Gate(
        approvals=tuple(_approvals(rule.count, rule.role) for rule in gates.approvals),
        rollback_approvals=tuple(
            _approvals(rule.count, rule.role) for rule in gates.rollback_approvals
        ),
        signed_commits=gates.signed_commits,
        approval_ttl=str(gates.approval_ttl) if gates.approval_ttl else None,
        closed=closed is not None,
        freeze=closed.freeze if closed else None,
        opens=closed.opens if closed else None,
        windows=tuple(
            f"{' '.join(_DAYS[day] for day in sorted(window.days))} "
            f"{window.start:%H:%M}-{window.end:%H:%M} {window.timezone}"
            for window in gates.windows
        ),
    )


def _approvals(count: int, role: str) -> str:
    return f"{count} approval{'s' * (count != 1)} by {role}"


def _log(repo: GitRepo, run: Run, name: str | None) -> str | None:
    """The log the run's finish record committed (`record.log_path`), if it has ended."""
    from reconciler.app.record import log_path  # noqa: PLC0415

    if run.finished is None or name is None:
        return None
    blob = repo.blob_at(run.finished, log_path(run.environment, name, run.id))
    if blob is None:
        return None
    return repo.read_blob(blob).decode("utf-8", errors="replace")


def mark(source: Source, branch: str) -> str | None:
    """What changes when a pass (or a push) changes what the pages show: the branch's tip
    (every record a pass makes is a commit on it). Cheap, so it can be polled."""
    from reconciler.adapters.gitrepo import GitRepo  # noqa: PLC0415

    with GitRepo(find_root(source.repo or Path.cwd())) as repo:
        # A remote's branch (`origin/main`, as `watch --remote` follows it) as last fetched.
        tip = repo.try_resolve(f"refs/heads/{branch}")
        return tip if tip is not None else repo.try_resolve(f"refs/remotes/{branch}")


def moved_to(source: Source, snapshot: Snapshot, tip: str) -> Snapshot | None:
    """`snapshot` as of `tip`, when all that lies between the commit it read and `tip`
    changes no decision (`inert`: a short line of commits that change nothing the
    reconciler reads and carry no trailer that may count); None: read the branch again."""
    from msgspec.structs import replace  # noqa: PLC0415

    from reconciler.adapters.gitrepo import GitRepo  # noqa: PLC0415
    from reconciler.app.inert import inert  # noqa: PLC0415

    with GitRepo(find_root(source.repo or Path.cwd())) as repo:
        return replace(snapshot, tip=tip) if inert(repo, snapshot.tip, tip) else None


def since(text: str) -> datetime:
    """The audit trail's `since` filter as typed on the page: a date or an ISO 8601 time
    (UTC unless it says), as `history --since` reads it."""
    from datetime import UTC  # noqa: PLC0415

    from reconciler.core.errors import UsageError  # noqa: PLC0415

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"since '{text}' is not a date", hint="use YYYY-MM-DD") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def page_number(text: str) -> int:
    """The audit trail's page as the page's links give it (none: the first, the newest)."""
    from reconciler.core.errors import UsageError  # noqa: PLC0415

    if not text:
        return 1
    digits = text.lstrip("0") if text.isascii() and text.isdigit() else ""
    if not digits:
        raise UsageError(f"page '{text}' is not a page number", hint="1 is the newest page")
    # Past the last page is the last page (`page_of`): a number longer than Python reads
    # as one (4,300 digits; a request's head holds 64 KiB) is past any trail's.
    return int(digits) if len(digits) <= _PAGE_DIGITS else 10**_PAGE_DIGITS
