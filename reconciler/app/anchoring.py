"""Stage 3, authorise: anchoring, the trust the walk starts from.

A fresh state trusts one commit's tree wholesale (the trust anchor: the branch's one
root, or the commit the user names); a rewritten history stops the walk until it is
re-anchored on a commit signed by a settings user of the last trusted policy. These
are the anchor's checks; `Authoriser` keeps the state they let in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from reconciler.adapters.gitobjects import FILE_MODES
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.readahead import STRUCTURED
from reconciler.app.commit_cache import policy_problem
from reconciler.core.errors import ConfigError, HistoryRewrittenError, ReconcilerError
from reconciler.core.fields import FieldMap
from reconciler.core.identity import CommitFacts, resolve
from reconciler.core.layout import TEAMS_FILE, place
from reconciler.core.model import Policy
from reconciler.core.permissions import may_change_settings

Fields = Callable[[str, str | None, str], FieldMap]


def refuse_malformed(repo: GitRepo, anchor: str) -> None:
    """An anchor whose trees git fsck would refuse is no anchor."""
    malformed = repo.malformed_tree(anchor)
    if malformed is not None:
        folder, why = malformed
        raise ConfigError(
            f"the trust anchor {anchor[:12]} holds a malformed tree at "
            f"{folder + '/' if folder else 'the root folder'}: {why}",
            hint="anchor on a commit whose trees git fsck accepts",
        )


def structured_versions(
    files: Mapping[str, tuple[str, str]],
) -> list[tuple[str, str, str, str]]:
    """The anchor's plan and teams.yaml versions, to parse in one batch."""
    return [
        (path, str(placement.kind), placement.name, oid)
        for path, (_, oid) in files.items()
        if (placement := place(path)).kind in STRUCTURED
    ]


def anchored_state(
    anchor: str, files: Mapping[str, tuple[str, str]], fields_of: Fields
) -> dict[str, dict[str, str]]:
    """The anchor's tree as the first effective state; its configuration plain files only."""
    effective: dict[str, dict[str, str]] = {}
    for path, (mode, oid) in files.items():
        if mode not in FILE_MODES and place(path).kind is not None:
            raise ConfigError(
                f"the trust anchor {anchor[:12]} holds a symlink or submodule at {path}",
                hint="anchor on a commit whose configuration holds plain files only",
            )
        fields = fields_of(path, oid, mode)
        if fields:
            effective[path] = dict(fields)
    return effective


def refuse_invalid(repo: GitRepo, anchor: str, effective: Mapping[str, Mapping[str, str]]) -> None:
    """An anchor must hold a teams.yaml, and its teams.yaml and environments/ validate."""
    if TEAMS_FILE not in effective:
        raise ConfigError(
            f"the trust anchor {anchor[:12]} has no teams.yaml",
            hint="pass --trust-anchor with the first commit that holds the configuration",
        )
    teams_blob = repo.blob_at(anchor, TEAMS_FILE)
    problem = policy_problem(effective, repo, teams_blob)
    if problem:
        raise ConfigError(
            f"the trust anchor {anchor[:12]}'s configuration is invalid: {problem}",
            hint="anchor on a commit whose teams.yaml and environments/ validate",
        )


def history_rewritten(branch: str, tip: str, last: str) -> HistoryRewrittenError:
    """The branch no longer descends from the last verified commit: the walk stops."""
    return HistoryRewrittenError(
        f"{branch} ({tip[:12]}) does not descend from the last verified "
        f"commit {last[:12]}: "
        "history was rewritten",
        hint="if the rewrite is legitimate, run `reconciler verify --re-anchor REV` with a "
        "commit signed by a settings user; and deny force-pushes to main on the Git host",
    )


def default_anchor(repo: GitRepo, tip: str) -> str:
    """The trust anchor of a fresh state: the one root commit of the followed branch
    (`tip`: the branch's, never a commit under test's, which could bring its own).

    With more than one root there is no safe default: anyone who can push can merge
    an orphan commit of their own, even as a first parent, and commit dates can be
    forged, so neither the first-parent chain nor the oldest root tells which is the
    repository's. The user names it.
    """
    whole_history(repo, None, tip)
    roots = repo.root_commits(tip)
    if len(roots) == 1:
        return roots[0]
    listed = ", ".join(root[:12] for root in roots)
    raise ConfigError(
        f"the history of {tip[:12]} has {len(roots)} root commits ({listed}): a fresh state "
        "cannot tell which one to trust",
        hint="name the repository's first commit (the one `reconciler init` made) with "
        "--trust-anchor COMMIT; anyone who can push can add a root of their own",
    )


def whole_history(repo: GitRepo, start: str | None, tip: str) -> None:
    """A walk from `start` (None: from the root) to `tip` needs every commit between:
    a shallow clone's cut (`--depth`) reads as a root, and trusting it would trust the
    content it holds, refused changes included, with nothing before it to judge."""
    cut = repo.shallow_cut(tip, start)
    if cut:
        listed = ", ".join(commit[:12] for commit in cut[:3])
        raise ConfigError(
            f"this clone is shallow: the history of {tip[:12]} stops at {listed}, whose "
            "parents were not fetched, so what made its content effective cannot be judged",
            hint="fetch the whole history (git fetch --unshallow; in GitHub Actions, "
            "actions/checkout with fetch-depth: 0)",
        )


def re_anchor_allowed(facts: CommitFacts, policy: Policy) -> None:
    """Re-anchoring needs a commit signed by a settings user of the last trusted policy."""
    actor = resolve(facts, policy, signature_required=True)
    if not actor.known:
        raise ReconcilerError(
            f"cannot re-anchor on {facts.commit[:12]}: {actor.how}",
            hint="re-anchor on a commit signed by a user listed under infrastructure.settings",
        )
    verdict = may_change_settings(policy, actor.name, "re-anchoring")
    if not verdict:
        raise ReconcilerError(
            f"cannot re-anchor on {facts.commit[:12]}: {verdict.text()}",
            hint="re-anchor on a commit signed by a user listed under infrastructure.settings",
        )
