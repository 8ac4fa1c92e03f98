"""App: what lies between two tips that changes no decision (`inert`) or no finish record
(`only_people`), told without walking it.

Called by the pass (`reconcile`). A short line of single-parent commits that
leave what the reconciler reads as their parents had it, and carry no trailer
that may count, lets start records decided on the old tip be rebuilt on the new
one after a lost race, and a pass start from the last one's decisions (`inert`);
one in which no commit may be a record or changes teams.yaml lets a finish
record or heartbeat be rebuilt on it (`only_people`). Anything longer, merged or
in doubt is walked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from reconciler.adapters.gitobjects import CommitInfo
from reconciler.adapters.gitrepo import GitRepo
from reconciler.core.events import HUMAN_TRAILERS, RESULT, reads_as_utf8
from reconciler.core.layout import READ_DIRS, TEAMS_FILE

# The most commits a lost race may have let in that are checked, not walked: past that,
# walking them is worth its time.
UNWALKED_AT_MOST = 200
# Any mention of a result: a commit that might be a record is walked, never just checked.
_MAY_BE_A_RECORD: Final = re.compile(r"result", re.IGNORECASE)
# Any mention of a trailer that may count (`trailer_rules`): a person's approval, trigger or
# retry, or a record. Keys are ASCII and never folded, so a mention in any case will do.
_MAY_COUNT: Final = re.compile("|".join(map(re.escape, (*HUMAN_TRAILERS, RESULT))), re.IGNORECASE)
# What of a commit's tree the reconciler reads (`layout`): a commit that leaves all of it
# as its parent had it changes no decision.
_READ: Final = (TEAMS_FILE, *READ_DIRS, "logs")


def inert(repo: GitRepo, checked: str, tip: str) -> bool:
    """Whether all that lies between `checked` and `tip` is a short line of single-parent
    commits that change nothing the reconciler reads and carry no trailer that may
    count: a decision made on `checked` holds on `tip`, whoever made them.

    A trailer is looked for in the message as stored, so a message in another
    encoding (which git would convert before reading its trailers) or with a
    NUL in it is never taken for inert.
    """

    def holds(commit: CommitInfo, parent: CommitInfo) -> bool:
        return (
            reads_as_utf8(commit.encoding or None)
            and "\0" not in commit.message
            and not _MAY_COUNT.search(commit.message)
            and repo.top_entries(commit, _READ) == repo.top_entries(parent, _READ)
        )

    return _short_line(repo, checked, tip, holds)


def only_people(repo: GitRepo, checked: str, tip: str) -> bool:
    """Whether all that lies between `checked` and `tip` is a short line of single-parent
    commits none of which may be a record or changes teams.yaml: nothing a finish
    record reads, nor the key it must be signed with, changes.

    A finish record reads the effective `deployments/` and the records of its
    run, which only records change (a person's edit of `deployments/` is
    refused, and never effective); a commit that mentions a result anywhere in
    its message is walked, however it is signed. So is each change to
    teams.yaml, even one undone later: the undoing may be refused, and the
    effective policy left rotated.
    """
    teams = (TEAMS_FILE,)  # read as the walk reads a tree, not as git looks a path up

    def holds(commit: CommitInfo, parent: CommitInfo) -> bool:
        return not _MAY_BE_A_RECORD.search(commit.message) and repo.top_entries(
            commit, teams
        ) == repo.top_entries(parent, teams)

    return _short_line(repo, checked, tip, holds)


def _short_line(
    repo: GitRepo, checked: str, tip: str, holds: Callable[[CommitInfo, CommitInfo], bool]
) -> bool:
    """Whether `tip` descends from `checked` by at most `UNWALKED_AT_MOST` single-parent
    commits each of which `holds` (given it and its parent).

    The one parent is the one git reads (`gitobjects.parse_commit`): a commit
    whose `parent` line stands after its committer is a root, a history of its
    own (force-pushed), and ends the line.
    """
    commit = repo.commit(tip)
    for _ in range(UNWALKED_AT_MOST):
        if commit.id == checked:
            return True
        if len(commit.parents) != 1:
            return False
        parent = repo.commit(commit.parents[0])
        if not holds(commit, parent):
            return False
        commit = parent
    return commit.id == checked
