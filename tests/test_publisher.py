"""Where records go: the `Publisher`'s compare-and-swap against a real bare remote.

A push that loses its race is told from a push the host refuses: the first
is built again on the new tip, the second stops the pass. Git says a race was
lost in two places, and both are a lost race.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.adapters.gitrepo import GitRepo
from reconciler.app.record import Publisher
from reconciler.core.errors import GitError
from tests.repositories import run_git

IDENTITY = ("-c", "user.name=Alice", "-c", "user.email=alice@example.com")

# Moves the branch while the push is received, as a person's push landing in that instant
# would: git then fails ours at the ref lock ("cannot lock ref ... but expected ...").
# The update runs outside the push's quarantine, where git allows ref updates.
LAND_MEANWHILE = """#!/bin/sh
env -u GIT_QUARANTINE_PATH git update-ref refs/heads/main {landed}
"""


def remote_and_clone(tmp_path: Path) -> tuple[Path, Path]:
    remote, clone = tmp_path / "remote.git", tmp_path / "clone"
    run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    run_git(tmp_path, "clone", "-q", str(remote), str(clone))
    run_git(clone, *IDENTITY, "commit", "-q", "--allow-empty", "-m", "first")
    run_git(clone, "push", "-q", "origin", "HEAD:refs/heads/main")
    run_git(clone, "fetch", "-q", "origin")
    return remote, clone


def commit_on(clone: Path, parent: str, message: str) -> str:
    return run_git(
        clone, *IDENTITY, "commit-tree", f"{parent}^{{tree}}", "-p", parent, "-m", message
    )


def refused_by(tmp_path: Path, hook_body: str) -> tuple[Path, str]:
    """A record pushed to a remote whose pre-receive hook is `hook_body` (`{base}`: the
    branch's commit), which must refuse it as a refusal: the remote, and that commit."""
    remote, clone = remote_and_clone(tmp_path)
    base = run_git(clone, "rev-parse", "origin/main")
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\n" + hook_body.format(base=base))
    hook.chmod(0o755)
    record = commit_on(clone, base, "a record")
    with GitRepo(clone) as repo:
        publisher = Publisher(repo, "main", "origin")
        with pytest.raises(GitError, match="refused the push to main"):
            publisher.publish(record, base)
    return remote, base


def test_a_race_lost_at_the_hosts_ref_lock_is_a_lost_race_asked_no_second_fetch(
    tmp_path: Path,
) -> None:
    remote, clone = remote_and_clone(tmp_path)
    base = run_git(clone, "rev-parse", "origin/main")
    landed = commit_on(clone, base, "a person's push")
    run_git(clone, "push", "-q", "origin", f"{landed}:refs/heads/person")
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(LAND_MEANWHILE.format(landed=landed))
    hook.chmod(0o755)
    record = commit_on(clone, base, "a record")
    with GitRepo(clone) as repo:
        publisher = Publisher(repo, "main", "origin")
        published = publisher.publish(record, base)
    assert not published
    assert run_git(remote, "rev-parse", "refs/heads/main") == landed
    # No fetch after the rejection: the next try's fetch is the one that counts, and one
    # here would only widen the window another push can land in.
    assert run_git(clone, "rev-parse", "refs/remotes/origin/main") == base


def test_a_push_the_host_refuses_while_the_branch_stays_put_stops_the_pass(
    tmp_path: Path,
) -> None:
    remote, base = refused_by(tmp_path, "echo 'records are not welcome here' >&2\nexit 1\n")
    assert run_git(remote, "rev-parse", "refs/heads/main") == base


@pytest.mark.parametrize(
    "said",
    [
        "error: cannot lock ref 'refs/heads/main': is at {base} but expected {base}",
        "! {base}:refs/heads/main [rejected] (fetch first)",
    ],
    ids=["ref-lock", "fetch-first"],
)
def test_a_hook_refusing_in_the_words_of_a_lost_race_stops_the_pass(
    tmp_path: Path, said: str
) -> None:
    # A hook's words reach git push's stderr as "remote: ...": only git's own status of the
    # branch (its porcelain line) says whether the race was lost. Taken for a lost race, a
    # refusal is pushed again and again until the pass gives up, blaming another reconciler.
    remote, base = refused_by(tmp_path, f'echo "{said}" >&2\nexit 1\n')
    assert run_git(remote, "rev-parse", "refs/heads/main") == base
