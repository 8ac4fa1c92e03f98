"""Attacks on `verify` and `history` with nothing new (issue 22, item 3).

When the state's last verified commit is the branch's tip, `verify` answers from the
state without loading the walker (`Session.verify`), and `history` walks nothing. A
shortcut that answered otherwise than the walk it stands for would be a way past it: each
test does what someone who can push, who can write the reconciler's configuration, or
whose command races the service would try, and compares the shortcut with a walk of the
same state (`--trust-anchor` the state's own anchor takes no shortcut) and, where the
design says they agree, with a fresh state's full walk. Racing the service found a walk
that took a tip read before the service moved the state for main moved back: the tip a
walk goes to is now read under the state's lock (`Session.authorise`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

from tests.configrepo import Result, reconciler
from tests.people import People, grant_bob_deployment, make_mallory_the_settings_user, teams_with
from tests.repositories import SeedRepo

FORMATS = ("text", "json", "github")
Said = list[tuple[int, str, str]]  # per format: exit code, stdout, stderr


def root_of(repo: SeedRepo) -> str:
    """The branch's one root commit: the trust anchor a fresh state chooses."""
    return repo.git("rev-list", "--max-parents=0", "main")


def outputs(repo: SeedRepo, *args: str) -> Said:
    """`verify ARGS` in every format: exit code, stdout, stderr."""
    results = [repo.reconciler("verify", "--format", form, *args) for form in FORMATS]
    return [(result.exit_code, result.stdout, result.stderr) for result in results]


def shortcut_and_walk(repo: SeedRepo, *args: str) -> tuple[Said, Said]:
    """`verify ARGS` answered from the state, and the same verify walked (with nothing new,
    from the same state): a trust anchor given, even the state's own, takes no shortcut."""
    return outputs(repo, *args), outputs(repo, *args, "--trust-anchor", root_of(repo))


def with_a_refusal_and_a_difference(tmp_path: Path, people: People) -> SeedRepo:
    """A history with an authorised landing, a refused one that leaves main differing from
    the effective state, and one more authorised after it; verified once (walked)."""
    repo = SeedRepo.create(tmp_path, people)
    teams = (repo.path / "teams.yaml").read_text()
    repo.commit(people.root, {"teams.yaml": teams + "# reviewed\n"}, "Settings: a comment")
    repo.commit(
        people.alice, {"deployments/production.yaml": "environment: production\napplications: {}\n"}
    )
    repo.commit(people.root, {"teams.yaml": teams + "# reviewed twice\n"}, "Settings: again")
    assert repo.reconciler("verify").exit_code == 1  # walked: the state holds the tip now
    return repo


def test_verify_with_nothing_new_prints_byte_for_byte_what_a_walk_with_nothing_new_prints(
    tmp_path: Path, people: People
) -> None:
    """In every format, with every option that picks what is reported: a shortcut that
    said anything else (a refusal left out, main's difference forgotten) would be a way
    past the walk."""
    repo = with_a_refusal_and_a_difference(tmp_path, people)
    repo.git("tag", "-a", "-m", "released", "v1", "main")  # a tag object, not the commit
    second = repo.git("rev-list", "--reverse", "main").splitlines()[1]
    for args in (
        (),
        ("--all",),
        ("--from", second),
        ("--to", "main"),
        ("--to", "v1"),
        ("--to", "v1", "--from", second, "--all"),
    ):
        shortcut, walked = shortcut_and_walk(repo, *args)
        assert shortcut == walked, args
        assert [code for code, _, _ in shortcut] == [1, 1, 1], args
        assert "deployments/production.yaml" in shortcut[0][1], args


def test_a_key_revoked_while_the_tip_stands_still_answers_as_the_walk_does(
    tmp_path: Path, people: People
) -> None:
    """DESIGN (State): a state keeps what it judged before a key was revoked on its machine;
    only a fresh state judges those landings again. The shortcut must still read the
    revocation file as the walk does, and answer exactly what that walk answers."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.root, {"teams.yaml": teams_with(people, grant_bob_deployment)}, "Bob: ops")
    assert repo.reconciler("verify").exit_code == 0
    repo.revoke(people.root.public_key + "\n")  # an incident: root's key is revoked
    shortcut, walked = shortcut_and_walk(repo)
    assert shortcut == walked
    assert [code for code, _, _ in shortcut] == [0, 0, 0]
    fresh = reconciler("verify", "--repo", repo.path, "--state-dir", tmp_path / "fresh", "--full")
    assert fresh.exit_code == 1  # a fresh state's walk finds the landing proves nobody now


def test_history_rewritten_away_from_the_verified_tip_and_back_stops_every_read_until_it_is_back(
    tmp_path: Path, people: People
) -> None:
    """A force-push to another history stops `verify` and `history` (neither takes the
    shortcut: the tip is not the state's), moves nothing in the state, and once main is
    back at the tip the state verified, both answer what they answered before."""
    repo = with_a_refusal_and_a_difference(tmp_path, people)
    verified = repo.head()
    before = outputs(repo), repo.reconciler("history", "--format", "json")
    # mallory force-pushes main to a history without the refused landing
    repo.git("reset", "-q", "--hard", "HEAD~2")
    repo.commit(people.mallory, {"teams.yaml": "users: {}\n"}, "Rewritten", signed=False)
    for command in (("verify",), ("verify", "--format", "json"), ("history",)):
        rewritten: Result = repo.reconciler(*command)
        assert rewritten.exit_code == 1, command
        assert "history was rewritten" in rewritten.stderr, command
    repo.git("reset", "-q", "--hard", verified)  # and back
    assert (outputs(repo), repo.reconciler("history", "--format", "json")) == before


def test_history_with_nothing_new_lists_what_the_walking_history_listed(
    tmp_path: Path, people: People
) -> None:
    """`history` with nothing new reads the trail without walking: the same entries, and a
    name neither the policy nor the trail knows is still refused as a typo."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(
        people.alice, {"deployments/production.yaml": "environment: production\napplications: {}\n"}
    )
    walked = repo.reconciler("history", "--format", "json")  # the walk to the tip
    again = repo.reconciler("history", "--format", "json")  # nothing new
    assert walked.exit_code == again.exit_code == 0
    assert again.stdout == walked.stdout
    assert "deployments/production.yaml" in again.stdout
    for named in (("--user",), ("--env",), ()):  # a user, an environment, a plan
        typo = repo.reconciler("history", *named, "nobody-by-that-name")
        assert typo.exit_code == 2, named
        assert "nobody-by-that-name" in typo.stderr, named


def test_a_state_anchored_past_a_refusal_answers_for_its_own_branch_only(
    tmp_path: Path, people: People
) -> None:
    """main's state, anchored after a refused landing (`--trust-anchor`), holds the tip of
    main; a branch, or a remote's branch, at that very commit has its own state and walks
    from its own anchor: the shortcut never answers for it from main's."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(
        people.alice, {"deployments/production.yaml": "environment: production\napplications: {}\n"}
    )
    later = repo.commit(people.root, {"teams.yaml": teams_with(people, grant_bob_deployment)})
    assert repo.reconciler("verify", "--trust-anchor", later).exit_code == 0
    assert repo.reconciler("verify").exit_code == 0  # main's state holds the tip
    repo.git("branch", "release", "main")
    repo.publish_to_bare_remote()
    repo.git("fetch", "-q", "origin")
    for other in (("--branch", "release"), ("--remote", "origin"), ("--branch", "origin/main")):
        result = repo.reconciler("verify", "--format", "json", *other)
        assert result.exit_code == 1, other
        assert result.json()["anchor"] == root_of(repo), other
        assert "deployments/production.yaml" in result.stdout, other


def _racing_the_service(repo: SeedRepo, fifo: Path, *command: str) -> tuple[Result, str]:
    """`reconciler COMMAND` that reads the revocation file (a named pipe: the point where it
    waits is the test's to choose) while the service lands a record and walks the state to
    it. What the command said, and the service's tip."""
    os.mkfifo(fifo)
    repo.git("config", "gpg.ssh.revocationFile", str(fifo))
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))
    }
    argv = [sys.executable, "-m", "reconciler", *command]
    argv += ["--repo", str(repo.path), "--state-dir", str(repo.state_dir)]
    with subprocess.Popen(argv, cwd=repo.path, env=env, stdout=PIPE, stderr=PIPE, text=True) as run:
        with fifo.open("wb"):  # waits for the command to open the file
            service = repo.record({"Result": "refused", "Reason": "test"})
            repo.decide()  # the service's walk, to its record
        # Every later read of the revocation file finds it empty at once.
        while run.poll() is None:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader yet
                time.sleep(0.01)
        stdout, stderr = run.communicate(timeout=120)
    return Result(run.returncode, stdout, stderr), service


def test_a_verify_with_nothing_new_that_the_service_overtakes_answers_for_the_services_tip(
    tmp_path: Path, people: People
) -> None:
    """Between reading main's tip and reading the state, the service moved both: the state
    no longer holds the tip verify read, so it walks, to where main is now; never a
    rewrite reported, nor an answer for a state it did not read."""
    repo = SeedRepo.create(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0  # the state holds the tip
    result, service = _racing_the_service(repo, tmp_path / "revoked", "verify", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["tip"] == service


def test_a_walk_the_service_overtakes_goes_to_the_services_tip_and_reports_no_rewrite(
    tmp_path: Path, people: People
) -> None:
    """A command that walks (`access`; `verify` given a trust anchor) read main's tip, then
    waited while the service landed a record and walked the state past that tip: the tip
    it walks to is read under the state's lock, never one the state already left behind
    (which the walk would take for main moved back, and stop on as a rewrite)."""
    repo = SeedRepo.create(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    walk = ("verify", "--format", "json", "--trust-anchor", root_of(repo))
    result, service = _racing_the_service(repo, tmp_path / "revoked", *walk)
    assert result.exit_code == 0, result.stderr
    assert result.json()["tip"] == service
    repo.git("config", "--unset", "gpg.ssh.revocationFile")
    result, _ = _racing_the_service(repo, tmp_path / "revoked-again", "access", "root")
    assert result.exit_code == 0, result.stderr


def accesses(repo: SeedRepo, state_dir: Path, *users: str) -> Said:
    """`access USER` for each of `users`, in text and JSON, answered from `state_dir`."""
    results = [
        reconciler("access", user, "--format", form, "--repo", repo.path, "--state-dir", state_dir)
        for user in users
        for form in ("text", "json")
    ]
    return [(result.exit_code, result.stdout, result.stderr) for result in results]


def test_access_with_nothing_new_says_what_access_that_walks_to_the_tip_says(
    tmp_path: Path, people: People
) -> None:
    """`access` answers from the effective policy the state holds when it holds the tip
    already (`Session.policy`), without the walker. mallory pushes a teams.yaml that makes
    her the settings user, signed with a key she adds herself: refused, it stays main's
    content but is not the effective policy, and the shortcut must say so exactly as a
    state one landing behind says it after walking that landing; with root's key revoked
    since, both read the revocation file alike."""
    repo = SeedRepo.create(tmp_path, people)
    repo.commit(people.root, {"teams.yaml": teams_with(people, grant_bob_deployment)}, "Bob: ops")
    repo.commit(
        people.mallory,
        {
            "teams.yaml": teams_with(
                people, lambda teams: make_mallory_the_settings_user(teams, people)
            )
        },
        "Settings: mine",
    )
    at = ("--repo", str(repo.path))
    held = tmp_path / "held"
    assert reconciler("verify", *at, "--state-dir", held).exit_code == 1  # holds the tip
    # States one landing behind, made before root's key is revoked (one for each round):
    # their `access` walks mallory's landing first.
    behind = [tmp_path / "behind", tmp_path / "behind-too"]
    for state in behind:
        walk = reconciler("verify", *at, "--state-dir", state, "--to", repo.head("HEAD~1"))
        assert walk.exit_code == 0
    users = ("mallory", "bob", "root")
    answers = []
    for revoked, state in zip((False, True), behind, strict=True):
        if revoked:
            repo.revoke(people.root.public_key + "\n")
        walked = accesses(repo, state, *users)
        shortcut = accesses(repo, held, *users)
        # mallory is nobody in the effective policy: her teams.yaml was refused
        assert [code for code, _, _ in shortcut] == [2, 2, 0, 0, 0, 0], shortcut
        assert "deployment" in shortcut[2][1]  # bob's grant is effective
        assert shortcut == walked, revoked
        answers.append(shortcut)
    assert answers[0] != answers[1]  # root's keys are revoked now, and both say so
