"""App: one command's view of a configuration repository (Git, the state store, the branch).

Called by the application layer (`app`) for every command that reads history (`verify`,
`access`, `plan`, `approve`, ...). It opens the repository and the state directory,
resolves the followed branch, and runs the authorisation walk up to its tip,
so each command starts from the effective state and the policy in force.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from msgspec.structs import replace

from reconciler.adapters import revocation_file
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.statestore import BUSY_TIMEOUT, Position, StateStore
from reconciler.app.checkpoint_trust import CheckpointTrust, checkpoint_branch
from reconciler.app.verified import VerifyResult, differs
from reconciler.core import journal
from reconciler.core.errors import GitError, ReconcilerError, StateMoved, UsageError
from reconciler.core.journal import IgnoredTrailer
from reconciler.core.layout import TEAMS_FILE
from reconciler.core.verdicts import LandingVerdict

# The walker and what it judges with load only when there is something to walk
# (`verify`): a command whose state already holds the branch's tip never needs them.
if TYPE_CHECKING:
    from reconciler.app.authorise import Authoriser, Progress
    from reconciler.app.drift import DriftReport
    from reconciler.app.pipeline import Observation
    from reconciler.core.decide import Decision
    from reconciler.core.decide_values import History
    from reconciler.core.model import Policy
    from reconciler.core.revocation import Revocations
    from reconciler.core.status import Pipeline as StatusView


@dataclass
class Session:
    repo: GitRepo
    store: StateStore
    branch: str
    now: datetime
    walked: Authoriser | None = None  # the last walk, with its effective state and caches
    persisted: bool = True  # whether the last walk was kept (it is, on the branch)
    ref: str = ""  # the branch's ref (default: refs/heads/<branch>)
    # Which checkpoints a fresh state goes on from (None: none, `verify --full`).
    checkpoints: CheckpointTrust | None = None
    # (tip, root) when the last walk's default anchor found `root` the one root commit of the
    # branch at `tip`: every commit whose roots are the tip's descends from it.
    sole_root: tuple[str, str] | None = None
    # A command that only reads (`plan`, `status`, `history`, `verify`, `access`): it reads
    # the environment and deployment files' YAML the state keeps parsed (`kept`); a command
    # that acts parses what its decisions read.
    reads_only: bool = False

    @property
    def parse_cache(self) -> StateStore | None:
        """Where a command that only reads finds the files' kept parses (`reads_only`)."""
        return self.store if self.reads_only else None

    def tip(self) -> str:
        return self.repo.resolve(self.ref or f"refs/heads/{self.branch}")

    def typed_revision(self, option: str, rev: str) -> str:
        """The commit a revision the user typed after `option` names.

        A typo is a usage error (exit 2), not a GitError: `verify` exits 1
        only for unauthorised history, and CI must tell the two apart.
        """
        commit = self.repo.try_resolve(rev)
        if commit is None:
            raise UsageError(
                f"unknown revision '{rev}' given to {option}",
                hint="name a commit, branch or tag of this repository "
                "(`git log --oneline` lists them)",
            )
        return commit

    def authoriser(self, progress: Progress | None = None, cap: int | None = None) -> Authoriser:
        from reconciler.app.authorise import DEFAULT_CAP, Authoriser  # noqa: PLC0415

        return Authoriser(
            self.repo,
            self.store,
            now=self.now,
            progress=progress,
            cap=DEFAULT_CAP if cap is None else cap,
            revoked=revocation_file.configured(self.repo),
            checkpoints=self.checkpoints,
            parse_cache=self.parse_cache,
        )

    def authorise(
        self,
        to: str | None = None,
        *,
        trust_anchor: str | None = None,
        progress: Progress | None = None,
        re_anchor: bool = False,
        to_name: str | None = None,
        verdicts: bool = True,
    ) -> tuple[VerifyResult, Policy]:
        """Walk to `to` (default: the branch tip); persist only what is on the branch.

        `to_name`: how the user named `to`, for messages. `verdicts=False`: a walk kept
        on the branch returns no verdicts; the caller reads them from the store.
        """
        from reconciler.app.anchoring import default_anchor  # noqa: PLC0415

        authoriser = self.authoriser(progress)
        with self.store.transaction() as transaction:
            # The tip is read under the lock a walk takes: a service that moved the branch
            # while this waited for it walked the state past a tip read before, which the
            # walk would take for main moved back (a rewrite).
            tip = self.tip()
            target = self.repo.resolve(to) if to else tip
            on_branch = target == tip or self.repo.is_ancestor(target, tip)
            anchor = self.repo.resolve(trust_anchor) if trust_anchor else None
            position = self.store.position()
            if (
                not re_anchor
                and anchor is not None
                and position is not None
                and anchor != position.anchor
            ):
                # The anchor is chosen once; ignoring another would report a trust the user
                # did not get, and moving it silently would skip re_anchor's settings-user
                # check.
                raise UsageError(
                    f"already anchored at {position.anchor[:12]}",
                    hint="use --re-anchor REV to trust another commit, "
                    "or --state-dir for a fresh state",
                )
            # A pinned key's checkpoint names the anchor, and the walk takes it from there
            # (`checkpoints.newest`); a commit off the branch is checked against it first.
            named = self.checkpoints is not None and self.checkpoints.names_anchor
            if position is None and anchor is None and not (named and on_branch):
                anchor = default_anchor(self.repo, tip)
                self.sole_root = (tip, anchor)
            if not on_branch:
                self.under_test(target, to_name, position.anchor if position else anchor)
            authoriser.keep_verdicts = verdicts or not on_branch
            result = authoriser.run(
                target,
                trust_anchor=anchor,
                older=target != tip,
                re_anchor=re_anchor,
            )
            if not on_branch:  # a commit off the branch is judged, then forgotten
                transaction.discard()
        self.persisted = on_branch
        # After the lock is let go, so that the parses a reading command reads are kept
        # (`kept.parsed_documents`); should another process walk on in between, the
        # walker says so (`StateMoved`), and `observe` walks again.
        policy = authoriser.policy()
        self.walked = authoriser
        return result, policy

    def verify(
        self,
        to: str | None = None,
        *,
        trust_anchor: str | None = None,
        progress: Progress | None = None,
        to_name: str | None = None,
        verdicts: bool = True,
    ) -> VerifyResult:
        """`authorise`, for a command that needs no policy (`verify`): when the state holds
        the branch's tip already, what the walk would find is read from it, and the
        walker is not even loaded."""
        if trust_anchor is None:
            unmoved = self._nothing_new(to)
            if unmoved is not None:
                return unmoved
        result, _ = self.authorise(
            to, trust_anchor=trust_anchor, progress=progress, to_name=to_name, verdicts=verdicts
        )
        return result

    def _nothing_new(self, to: str | None) -> VerifyResult | None:
        """What a walk to the branch tip returns when the state holds that tip already (no
        landing to judge, no checkpoint to go on from), else None: there is a walk to make."""
        tip = self.tip()
        if to is not None and self.repo.resolve(to) != tip:
            return None
        # A revocation file that cannot be read stops a walk before it starts: this too.
        revocation_file.configured(self.repo)
        with self.store.transaction():  # read under the lock a walk takes
            position = self._holding(tip)
            if position is None:
                return None
            dirty = self.store.dirty()
        self.persisted = True
        return VerifyResult(anchor=position.anchor, tip=tip, judged=(), differs=differs(dirty))

    def _holding(self, tip: str) -> Position | None:
        """The state's position when a walk to `tip` would have nothing to do (the state
        holds `tip` already), else None; read in the store's transaction."""
        position = self.store.position()
        if (
            position is None
            or position.last_verified != tip
            or not self.store.payloads_counted()  # the walk would count them, once
        ):
            return None
        return position

    def policy(self) -> tuple[Policy, Revocations | None]:
        """The effective policy at the branch tip, and the key revocations read with it
        (`access`): when the state holds the tip already, built from the state's effective
        teams.yaml and environments/ as the walk builds it, without loading the walker;
        else walked to."""
        from reconciler.app.effective_policy import learn_keys, policy_from  # noqa: PLC0415
        from reconciler.core.openpgp import Keyring  # noqa: PLC0415

        tip = self.tip()
        revoked = revocation_file.configured(self.repo)  # as the walk reads it
        with self.store.transaction():  # read under the lock a walk takes
            held = self._holding(tip) is not None
            effective = self.store.effective_of(TEAMS_FILE, "environments/") if held else None
        if effective is None:
            _, policy = self.authorise()
            return policy, self.revoked()
        # A fresh keyring, as a walk with nothing to judge has: only this policy's keys.
        policy = policy_from(effective, self.repo, self.now, self.parse_cache)
        return learn_keys(Keyring(), policy), revoked

    def revoked(self) -> Revocations | None:
        """The key revocations the last walk read (one read per command)."""
        assert self.walked is not None
        return self.walked.revoked

    def effective_paths(self) -> tuple[str, ...]:
        """The paths of the effective state the last walk reached."""
        assert self.walked is not None
        return tuple(self.walked.effective)

    def under_test(
        self, target: str, name: str | None, anchor: str | None, reached: str | None = None
    ) -> None:
        """A commit off the branch (a pull request's HEAD) is judged from the trust anchor
        the state or the branch gives, never one it chooses (an orphan root of its own,
        making its author a settings user): it must descend from that anchor.

        `reached`: a commit a walk from the anchor reached (the one a trusted checkpoint
        describes): descending from it is descending from the anchor, and finding that
        out reads the pull request's commits, not the whole history."""
        if anchor is None or anchor == target:
            return
        if reached is not None and (reached == target or self.repo.is_ancestor(reached, target)):
            return
        if self.repo.is_ancestor(anchor, target):
            return
        named = f"{name} ({target[:12]})" if name else target[:12]
        raise ReconcilerError(
            f"{named} does not descend from the trust anchor {anchor[:12]} of {self.branch}: "
            "its history is not the branch's, and is not verified against it",
            hint=f"base the commit on {self.branch} (rebase or merge {self.branch} into it); "
            f"the trust anchor comes from {self.branch}, or from --trust-anchor, never from "
            "the commit under test",
        )

    def judge_merge(
        self, merge: str, changed: Collection[str]
    ) -> tuple[Observation, Authoriser, frozenset[str] | None]:
        """Judge `merge`, a commit whose first parent is the branch tip (walked), as one more
        landing; decide the plans it can change (`judge.reached`, from `changed`: the files
        it changes on the tip), every plan when it can change any; then forget it: the state
        stays the branch's. The walk, for what it read (its effective state after the
        merge), and the plans reached (None: every plan)."""
        from reconciler.app.pipeline import observe, plans_on  # noqa: PLC0415
        from reconciler.core.judge import reached  # noqa: PLC0415

        authoriser = self.authoriser()
        with self.store.transaction(keep=False):
            verified = authoriser.run(merge)
            judgement = authoriser.judgement
            reach = (
                reached(changed, judgement)
                if judgement is not None and judgement.verdict.commit == merge
                else None
            )
            only = None if reach is None else plans_on(authoriser, merge, reach)
            # The merge's plans run on the service's machine: its drivers are not asked here.
            seen = observe(authoriser, verified, self.now, drivers=None, only=only)
        return seen, authoriser, reach

    def pipeline(
        self,
        *,
        include_deployed: bool = False,
        drift: Callable[[History], DriftReport] | None = None,
        reuse: bool = False,
    ) -> StatusView:
        """What runs where and what is moving (`reconciler status`), as of the branch tip;
        with `drift`, what the drivers report besides (`reuse`: as `observe`)."""
        seen = self.observe(reuse=reuse)
        return self.pipeline_of(seen, include_deployed=include_deployed, drift=drift)

    def pipeline_of(
        self,
        seen: Observation,
        *,
        include_deployed: bool = False,
        drift: Callable[[History], DriftReport] | None = None,
    ) -> StatusView:
        """The pipeline of an observation this session made (the pages also need its plans)."""
        # Imported here, as in `observe`: `verify` and `access` never need them.
        from reconciler.core.decide_values import runs_from  # noqa: PLC0415
        from reconciler.core.status import pipeline  # noqa: PLC0415

        # The runs still open, whatever their plan: one of a version edited or deleted since
        # it started is running all the same.
        records = self.store.run_records([], [])
        view = pipeline(
            seen.history.policy,
            seen.history.deployed,
            seen.decisions,
            include_deployed=include_deployed,
            open_runs=[run for run in runs_from(records) if run.finished is None],
            locks=seen.history.locks.values(),
        )
        if drift is None:
            return view
        found = drift(seen.history)
        return replace(view, drift=found.drift, drift_notes=found.notes)

    def decisions(self) -> tuple[Decision, ...]:
        """Every plan on the branch tip, decided now (after walking to the tip)."""
        return self.observe().decisions

    def observe(
        self,
        *,
        trust_anchor: str | None = None,
        progress: Progress | None = None,
        ask_drivers: bool = True,
        reuse: bool = False,
    ) -> Observation:
        """Verify up to the branch tip (`authorise`), then decide every plan there now.

        A driver is only looked up, not loaded: the read-only commands have no driver
        root and start nothing (`ask_drivers=False`: not even that). `reuse`: answer from
        the decisions the state keeps while they hold (`pipeline.decided_from_state`), and
        keep these.
        """
        from reconciler.app.pipeline import DriverCheck, observe  # noqa: PLC0415

        drivers = DriverCheck() if ask_drivers else None

        def walked_and_decided() -> Observation:
            verified, _ = self.authorise(trust_anchor=trust_anchor, progress=progress)
            assert self.walked is not None
            return observe(
                self.walked, verified, self.now, drivers=drivers, reuse=reuse and self.persisted
            )

        try:
            return walked_and_decided()
        except StateMoved:
            # Another process walked on between this walk and its reads: walk again, to
            # where it went, and decide from there (a second race in a row is told).
            return walked_and_decided()

    def landings_between(
        self,
        start: str | None,
        tip: str,
        judged: tuple[LandingVerdict, ...],
        *,
        refused_only: bool = False,
    ) -> list[LandingVerdict]:
        """Verdicts of the landings after `start` (default: the trust anchor) up to `tip`."""
        texts = self.landing_texts(start, tip, judged, refused_only=refused_only)
        return [journal.decode(LandingVerdict, text, self.store.version) for text in texts]

    def landing_texts(
        self,
        start: str | None,
        tip: str,
        judged: tuple[LandingVerdict, ...],
        *,
        refused_only: bool = False,
    ) -> list[str]:
        """The same verdicts as JSON text, read from the store without decoding them."""
        after = self._seq_after(start)
        if after is None:
            verdicts = self._landings_on_chain(start, tip, judged)
            return [
                json.dumps(verdict.as_json())
                for verdict in verdicts
                if not refused_only or not verdict.authorised
            ]
        texts = self.store.landing_details(
            after, self.store.landing_seq(tip), refused_only=refused_only
        )
        if not self.persisted:  # a walk off the branch: its verdicts are only in `judged`
            texts += [
                json.dumps(verdict.as_json())
                for verdict in judged
                if not refused_only or not verdict.authorised
            ]
        return texts

    def ignored_between(
        self, start: str | None, tip: str, result: VerifyResult
    ) -> list[IgnoredTrailer]:
        """The trailers that count for nothing in the landings after `start` up to `tip`,
        and why: the same landings `landing_texts` reports."""
        events = self.store.events(IgnoredTrailer)
        if not self.persisted:  # a walk off the branch: its events are only in `result`
            events += result.ignored
        after = self._seq_after(start)
        if after is None:
            verdicts = self._landings_on_chain(start, tip, result.judged)
            landed = {commit for verdict in verdicts for commit in verdict.landed}
            return [event for event in events if event.commit in landed]
        upto = self.store.landing_seq(tip)
        return [
            event for event in events if event.seq > after and (upto is None or event.seq <= upto)
        ]

    def _seq_after(self, start: str | None) -> int | None:
        """The landing sequence number a report after `start` begins past, or None when
        `start` is no landing (the trust anchor, or none given: the last landing before the
        anchor, which a re-anchor keeps)."""
        position = self.store.position()
        if start is None or (position is not None and start == position.anchor):
            return self.store.anchor_seq()
        return self.store.landing_seq(start)

    def _landings_on_chain(
        self, start: str | None, tip: str, judged: tuple[LandingVerdict, ...]
    ) -> list[LandingVerdict]:
        """For a `start` that is no landing: select by main's first-parent chain."""
        found = {item.verdict.commit: item.verdict for item in self.store.landings()}
        found.update({verdict.commit: verdict for verdict in judged})
        chain = self.repo.first_parent_chain(tip, start)
        return [found[commit] for commit in chain if commit in found]

    def re_anchor(self, rev: str, progress: Progress | None = None) -> tuple[VerifyResult, Policy]:
        """Trust `rev` anew after a rewrite; it must be signed by a settings user."""
        from reconciler.app.anchoring import re_anchor_allowed  # noqa: PLC0415
        from reconciler.app.effective_policy import policy_from  # noqa: PLC0415

        anchor = self.repo.resolve(rev)
        tip = self.tip()
        if anchor != tip and not self.repo.is_ancestor(anchor, tip):
            raise UsageError(
                f"cannot re-anchor on {anchor[:12]}: it is not on {self.branch} ({tip[:12]})",
                hint=f"name a commit of {self.branch}'s history, signed by a settings user",
            )
        if self.store.position() is not None:
            authoriser = self.authoriser()
            trusted = authoriser.learn_keys(
                policy_from(self.store.effective(), self.repo, self.now)
            )
            re_anchor_allowed(authoriser.facts(anchor), trusted)
        return self.authorise(trust_anchor=anchor, progress=progress, re_anchor=True)


def state_directory(repo: GitRepo, state_dir: Path | None) -> Path:
    """Where the state lives: `state_dir`, else <git-dir>/reconciler; never in the checkout.

    A state directory inside the working tree could hold a database that a
    pushed commit put there (anyone who can push can), anchored wherever its
    author liked: the state must be the reconciler's own.
    """
    if state_dir is None:
        return repo.git_dir / "reconciler"
    chosen = state_dir.resolve()
    work_tree = repo.path.resolve()
    git_dir = repo.git_dir.resolve()
    if chosen.is_relative_to(work_tree) and not chosen.is_relative_to(git_dir):
        raise UsageError(
            f"the state directory {state_dir} is inside the repository's working tree",
            hint="keep it outside the checkout (the default is <git-dir>/reconciler): "
            "a pushed commit could put a state there",
        )
    return state_dir


def followed_branch(repo: GitRepo, branch: str | None, option: str = "--branch") -> str:
    """`branch`, else main, else the branch HEAD points at; it must exist.

    The one rule for every command that reads a local branch, `apply` and
    `watch` included (they follow the remote's main when given a remote).
    `option`: how the command names the branch, for the hint.
    """
    if branch is None and repo.try_resolve("refs/heads/main"):
        return "main"
    followed = branch or repo.head_branch()
    if followed is None:
        raise UsageError("cannot tell which branch to follow", hint="pass --branch")
    if repo.try_resolve(f"refs/heads/{followed}") is None:
        if not repo.has_commits():  # no branch can be meant: passing --branch will not help
            raise GitError(
                f"{repo.path} has no commits yet",
                hint="commit the configuration first "
                "(`reconciler init DIR` makes a repository with its first commit)",
            )
        # A --branch typo is a usage error: for verify, exit 1 would read as a refusal.
        error = UsageError if branch is not None else GitError
        raise error(
            f"branch '{followed}' does not exist in {repo.path}",
            hint=f"pass {option} with one of its branches: {', '.join(repo.branches())}",
        )
    return followed


def read_branch(repo: GitRepo, branch: str | None, remote: str | None) -> tuple[str, str]:
    """The branch a command that only reads follows (its state's name) and its ref.

    `remote`, or a `branch` that names a remote-tracking branch (`origin/main`) where
    no local branch has that name, is the remote's branch as last fetched here, read
    with the state `apply --remote` and `watch --remote` keep for it: on the service's
    clone, whose local branches the service never moves, what the service follows.
    """
    tracking = f"{remote}/{branch or 'main'}" if remote is not None else branch
    if remote is None and (
        branch is None
        or repo.try_resolve(f"refs/heads/{branch}") is not None
        or repo.try_resolve(f"refs/remotes/{branch}") is None
    ):
        followed = followed_branch(repo, branch)
        return followed, f"refs/heads/{followed}"
    assert tracking is not None
    ref = f"refs/remotes/{tracking}"
    if repo.try_resolve(ref) is None:
        name = remote or tracking.split("/", 1)[0]
        raise UsageError(
            f"{tracking} has not been fetched into {repo.path}",
            hint=f"`git fetch {name}` (the service's `apply --remote {name}` fetches at every "
            "pass); `git remote` lists the remotes, `git branch -r` what was fetched",
        )
    return tracking, ref


@contextmanager
def open_session(
    repo_dir: Path,
    *,
    branch: str | None,
    state_dir: Path | None,
    now: datetime,
    option: str = "--branch",
    remote: str | None = None,
    tracking: bool = False,
    busy_timeout: float = BUSY_TIMEOUT,
) -> Iterator[Session]:
    """`tracking`: a command that only reads, which may follow a remote's branch
    (`read_branch`); the others follow a local branch (`followed_branch`). `busy_timeout`:
    the seconds another process's pass is waited for (`TemporaryError` after)."""
    with GitRepo(repo_dir) as repo:
        if tracking:
            followed, ref = read_branch(repo, branch, remote)
        else:
            followed = followed_branch(repo, branch, option)
            ref = f"refs/heads/{followed}"
        store = StateStore(state_directory(repo, state_dir), followed, busy_timeout=busy_timeout)
        try:
            trust = CheckpointTrust(checkpoint_branch(ref))
            yield Session(
                repo, store, followed, now, ref=ref, checkpoints=trust, reads_only=tracking
            )
        finally:
            store.close()
