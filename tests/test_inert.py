"""Which commits leave a decision standing (`inert.inert`), on real repositories.

Start records decided on one tip are rebuilt on a newer one, without deciding
again, only when everything in between is inert: single-parent commits that
change nothing the reconciler reads and carry no trailer that may count. Each
test below is a commit an attacker (or a busy bot) could push between a
decision and its start record; all but the first must make the round decide
again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.adapters.gitrepo import GitRepo
from reconciler.app.inert import UNWALKED_AT_MOST, inert, only_people
from reconciler.core.errors import HistoryRewrittenError
from tests.people import People
from tests.repositories import SeedRepo, run_git
from tests.scenarios import dev_plan
from tests.test_attacks_git_objects import commit_tree, entry, stored, tree_of

PLAN = "plans/2026-11-dev-build.yaml"


@pytest.fixture
def repo(tmp_path: Path, people: People) -> SeedRepo:
    """The seed story with one development plan."""
    seeded = SeedRepo.create(tmp_path, people)
    seeded.commit(people.alice, {PLAN: dev_plan()}, "Plan a development build")
    return seeded


def judged(repo: SeedRepo, checked: str) -> bool:
    with GitRepo(repo.path) as git:
        return inert(git, checked, repo.head())


def test_commits_that_change_nothing_read_leave_a_decision_standing(repo: SeedRepo) -> None:
    decided_on = repo.head()
    repo.commit(repo.people.mallory, message="Storm 1")
    repo.commit(repo.people.alice, {"README.md": "notes\n"}, message="Write the notes down")
    repo.commit(repo.people.alice, {"docs/x.md": "more\n"}, message="Storm 3", signed=False)
    assert judged(repo, decided_on)


def test_the_same_tip_is_inert(repo: SeedRepo) -> None:
    assert judged(repo, repo.head())


@pytest.mark.parametrize(
    "path", ["plans/2026-11-dev-build.yaml", "environments/development.yaml", "teams.yaml"]
)
def test_a_change_to_what_the_reconciler_reads_is_decided_again(repo: SeedRepo, path: str) -> None:
    decided_on = repo.head()
    repo.commit(repo.people.mallory, message="Storm 1")
    content = (repo.path / path).read_text() + "# a comment\n"
    repo.commit(repo.people.alice, {path: content}, message="Storm 2")
    assert not judged(repo, decided_on)


@pytest.mark.parametrize("folder", ["plans", "deployments", "schemas", "logs", "environments"])
def test_a_new_file_in_a_folder_the_reconciler_reads_is_decided_again(
    repo: SeedRepo, folder: str
) -> None:
    decided_on = repo.head()
    repo.commit(repo.people.mallory, {f"{folder}/new.yaml": dev_plan()}, message="Storm 1")
    assert not judged(repo, decided_on)


def test_a_cancel_and_its_undo_in_between_are_decided_again(repo: SeedRepo) -> None:
    # The tree ends as it began; the commits in between still changed the plan.
    decided_on = repo.head()
    before = (repo.path / PLAN).read_text()
    repo.commit(repo.people.alice, {PLAN: before.replace("ready", "cancelled")}, message="Storm")
    repo.commit(repo.people.alice, {PLAN: before}, message="Storm")
    assert not judged(repo, decided_on)


@pytest.mark.parametrize(
    "trailer", ["Approve-Plan", "Deploy-Plan", "Retry-Run", "Result", "deploy-plan", "RESULT"]
)
def test_an_empty_commit_with_a_trailer_that_may_count_is_decided_again(
    repo: SeedRepo, trailer: str
) -> None:
    decided_on = repo.head()
    repo.signoff(repo.people.carol, trailer, f"{PLAN}@{repo.blob(PLAN)}")
    assert not judged(repo, decided_on)


def test_a_message_in_another_encoding_is_decided_again(repo: SeedRepo) -> None:
    # Git converts a message before it reads trailers; what the stored bytes say is not
    # what git reads, so no such message is taken for inert, whatever it says.
    decided_on = repo.head()
    tree = repo.git("rev-parse", "HEAD^{tree}")
    who = f"Alice <alice@example.com> {repo.clock} +0000"
    header = f"tree {tree}\nparent {decided_on}\nauthor {who}\ncommitter {who}\n"
    raw = f"{header}encoding ISO-8859-1\n\n".encode() + "Storm \xe9\n".encode("latin-1")
    (repo.path / "raw").write_bytes(raw)
    commit = repo.git("hash-object", "-t", "commit", "-w", "raw")
    repo.git("update-ref", "refs/heads/main", commit)
    assert repo.git("log", "-1", "--format=%B", commit) == "Storm \xe9"
    assert not judged(repo, decided_on)


def test_a_merge_in_between_is_decided_again(repo: SeedRepo) -> None:
    decided_on = repo.head()
    side = repo.commit(repo.people.alice, message="Storm 1")
    repo.git("reset", "-q", "--hard", decided_on)
    repo.commit(repo.people.alice, message="Storm 2")
    tree = repo.git("rev-parse", "HEAD^{tree}")
    repo.land_commit_tree(repo.people.alice, tree, repo.head(), side, message="Storm merge")
    assert not judged(repo, decided_on)


def test_a_tip_that_does_not_descend_from_the_decision_is_decided_again(repo: SeedRepo) -> None:
    decided_on = repo.commit(repo.people.alice, message="Storm 1")
    repo.git("reset", "-q", "--hard", "HEAD~1")
    repo.commit(repo.people.alice, message="Storm 2")
    assert not judged(repo, decided_on)


def test_more_commits_than_are_checked_are_decided_again(repo: SeedRepo) -> None:
    decided_on = repo.head()
    tree = repo.git("rev-parse", "HEAD^{tree}")
    tip = decided_on
    for count in range(UNWALKED_AT_MOST + 1):
        tip = run_git(repo.path, "commit-tree", tree, "-p", tip, "-m", f"Storm {count}")
    repo.git("update-ref", "refs/heads/main", tip)
    assert not judged(repo, decided_on)


def test_a_parent_header_git_does_not_read_as_one_is_decided_again(repo: SeedRepo) -> None:
    # Git reads a commit's parents from the lines right after its tree: a `parent` line
    # after the committer is no parent to git, and the commit a root, a history of its
    # own (force-pushed where main is not protected). Deciding again on it finds the
    # history rewritten, as git would.
    decided_on = repo.head()
    assert repo.decide()[PLAN].status == "executable"
    tree = repo.git("rev-parse", "HEAD^{tree}")
    who = f"Mallory <mallory@example.com> {repo.clock} +0000"
    raw = f"tree {tree}\nauthor {who}\ncommitter {who}\nparent {decided_on}\n\nStorm\n"
    (repo.path / "raw").write_text(raw)
    commit = repo.git("hash-object", "--literally", "-t", "commit", "-w", "raw")
    assert repo.git("rev-list", "--parents", "-n", "1", commit) == commit  # a root, to git
    repo.git("update-ref", "refs/heads/main", commit)
    assert not judged(repo, decided_on)
    with pytest.raises(HistoryRewrittenError):
        repo.decide()


@pytest.mark.parametrize("shape", ["a second plans folder", "a name with a slash"])
def test_a_malformed_root_tree_is_inert_only_where_deciding_again_agrees(
    repo: SeedRepo, shape: str
) -> None:
    # A root tree git fsck refuses, that one reader might take to change plans/: a second
    # `plans` entry after the first (its plan cancelled), or an entry named `plans/<file>`.
    # Read as the walk reads it (the first entry of a name, names git refuses left out),
    # plans/ is as it was: the landing is refused, and the plan still executable, as the
    # decision left standing says.
    decided_on = repo.head()
    assert repo.decide()[PLAN].status == "executable"
    cancelled = stored(repo, (repo.path / PLAN).read_text().replace("ready", "cancelled").encode())
    other = tree_of(repo, entry("100644", Path(PLAN).name, cancelled))
    entries = []
    for line in repo.git("ls-tree", decided_on).splitlines():
        meta, name = line.split("\t")
        mode, _, oid = meta.split(" ")
        mode = "40000" if mode == "040000" else mode
        if name != "plans":
            entries.append(entry(mode, name, oid))
        elif shape == "a second plans folder":
            entries += [entry(mode, name, oid), entry(mode, name, other)]
        else:
            entries += [entry(mode, name, oid), entry("100644", PLAN, cancelled)]
    tree = tree_of(repo, *entries)
    commit = commit_tree(repo, repo.people.mallory, tree, decided_on, signed=False)
    repo.git("update-ref", "refs/heads/main", commit)
    assert judged(repo, decided_on)
    [landing] = repo.verify().judged
    assert not landing.authorised  # git fsck refuses the tree: it is malformed indeed
    assert repo.decide()[PLAN].status == "executable"


# -- only_people: what a finish record lost to a push may be rebuilt over, unwalked ------------


def people_only(repo: SeedRepo, checked: str) -> bool:
    with GitRepo(repo.path) as git:
        return only_people(git, checked, repo.head())


def test_a_line_of_peoples_commits_leaves_a_finish_record_unwalked(repo: SeedRepo) -> None:
    # A person's plan edit changes no record and no key: the finish record reads neither.
    checked = repo.head()
    repo.commit(repo.people.mallory, message="Storm 1")
    content = (repo.path / PLAN).read_text() + "# a comment\n"
    repo.commit(repo.people.alice, {PLAN: content}, message="Storm 2")
    assert people_only(repo, checked)


def test_a_commit_that_may_be_a_record_is_walked(repo: SeedRepo) -> None:
    checked = repo.head()
    repo.commit(repo.people.mallory, message="Storm\n\nresult: succeeded")
    assert not people_only(repo, checked)


def test_a_change_of_teams_undone_later_is_walked(repo: SeedRepo) -> None:
    # The tree ends as it began, but the undoing may be refused where the change was
    # authorised: the effective policy, and the key records are signed with, moved.
    checked = repo.head()
    teams = (repo.path / "teams.yaml").read_text()
    repo.commit(repo.people.root, {"teams.yaml": teams + "# rotated\n"}, message="Rotate")
    repo.commit(repo.people.mallory, {"teams.yaml": teams}, message="Undo")
    assert not people_only(repo, checked)
