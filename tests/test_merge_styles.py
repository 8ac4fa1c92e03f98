"""Every way a pull request lands on main, and what it proves: docs/how-it-works.md's
merge table.

One test per cell of the table (host x merge style), each with the host's exact
commit shape (`tests/hostshapes.py`): whose edits count, whether the landing
triggers the plan, and what `plan` says when it does not. Then the attacks on
those rules, as someone who can push but holds no authority would try them.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.decide import Decision, Status
from tests.gpgkeys import GpgKeys
from tests.hostshapes import (
    Host,
    HostServer,
    OpenPgpSigner,
    Signer,
    SshSigner,
    hosts,
    teams_with_hosts,
)
from tests.people import People, Person
from tests.repositories import SeedRepo, only_refusal
from tests.scenarios import (
    DEV_PLAN,
    ECOMMERCE,
    PORTAL,
    PROD_PLAN,
    QA_PLAN,
    dev_plan,
    plan,
    prod_plan,
    qa_plan,
)

DEPLOY = "`reconciler deploy 2026-11-qa-release`"
TRIGGER = f"a trigger by a plan.deploy holder on quality-assurance (olga): {DEPLOY}"


@pytest.fixture(scope="session")
def the_hosts(people: People, gpg: GpgKeys) -> dict[str, Host]:
    """GitHub (its web-flow key OpenPGP RSA 4096), GitLab and Forgejo (SSH), Gitea (OpenPGP)."""
    return hosts(people, gpg)


def hosted(
    tmp_path: Path, people: People, the_hosts: dict[str, Host], *, vouched: bool = False
) -> SeedRepo:
    """The seed story with every host listed (each vouching for its squash commits'
    authors when `vouched`), development running what QA promotes."""
    listed = the_hosts.values()
    entry = {"vouches_for_squash_author": True} if vouched else {}
    repo = SeedRepo.create(tmp_path, people, teams=teams_with_hosts(people, *listed, **entry))
    repo.deployed("development", {"ecommerce": "1.4.0", "customer-portal": "0.6-dev.41"})
    return repo


def server(repo: SeedRepo, the_hosts: dict[str, Host], host: str) -> HostServer:
    return HostServer(repo, the_hosts[host])


def pull_request(repo: SeedRepo, people: People, *, approved: bool = True) -> str:
    """A pull request's branch on main's tip: alice proposes eCommerce 1.4.0 into QA, and
    ravi approves it there, as docs/walkthroughs.md's flow has it."""
    with repo.branch("release"):
        repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)}, "Propose eCommerce 1.4.0")
        if approved:
            repo.approve(people.ravi, QA_PLAN)
    return "release"


def refused(repo: SeedRepo) -> set[tuple[str, str]]:
    """(commit, actor) of every refusal a verify from the trust anchor makes: a plan created
    by a refused commit is refused field by field."""
    return {
        (refusal.commit, refusal.actor)
        for verdict in repo.verify().judged
        for refusal in verdict.refusals
    }


def qa_state(repo: SeedRepo) -> dict[str, Any]:
    """The QA release as `reconciler plan --format json` shows it."""
    shown = repo.reconciler("plan", "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    plans: list[dict[str, Any]] = shown.json()["plans"]
    [state] = [item for item in plans if item["plan"] == QA_PLAN]
    return state


def decided(repo: SeedRepo) -> Decision:
    return repo.decide()[QA_PLAN]


def landed_as_alices(repo: SeedRepo) -> Decision:
    """The QA plan's decision, once main's history is all authorised and the plan's edits
    are all alice's."""
    assert repo.verify().authorised
    assert repo.editors(QA_PLAN) == {"alice"}
    return decided(repo)


def outcome(decision: Decision) -> tuple[Status, str | None, tuple[str, ...]]:
    """The QA plan's status, who triggered it, and whose approvals count."""
    return decision.status, decision.triggered_by, decision.approvers


def waits(decision: Decision) -> list[str]:
    return [wait.text for wait in decision.waits]


SIGNATURE_FORMATS = {"SSH": "ssh", "PGP": "openpgp"}  # the signature's armor: -----BEGIN X


def shapes(
    repo: SeedRepo, host: Host, commits: list[str]
) -> list[tuple[int, str, str, str, str, bool]]:
    """(parents, author email, committer, signature format, and git's own verdicts: %G? and
    whether `git verify-commit` passes) of each commit, with the host's key as the only
    trusted signer."""
    trusted = repo.path.parent / "trusted"
    config, env = host.signer.trusting(trusted, host.email)
    shown = []
    for commit in commits:
        parents, author, committer, verdict = repo.git(
            *config, *("log", "-1", "--format=%P|%ae|%cn <%ce>|%G?", commit), env=env
        ).split("|")
        armor = re.search(r"^gpgsig -----BEGIN (\w+) SIGNATURE-----$", raw(repo, commit), re.M)
        signature = SIGNATURE_FORMATS[armor.group(1)] if armor else "none"
        verifies = subprocess.run(
            ["git", *config, "verify-commit", commit],
            cwd=repo.path,
            capture_output=True,
            env={**os.environ, **env},
            check=False,
        )
        shown.append(
            (len(parents.split()), author, committer, signature, verdict, verifies.returncode == 0)
        )
    return shown


def raw(repo: SeedRepo, commit: str) -> str:
    return repo.git("cat-file", "commit", commit)


# -- the hosts' own commits, as git itself reads them -------------------------------------


@pytest.mark.parametrize("host", ["github", "gitlab", "forgejo", "gitea"])
def test_each_hosts_merges_have_the_shape_the_host_writes(
    tmp_path: Path, people: People, the_hosts: dict[str, Host], host: str
) -> None:
    repo = hosted(tmp_path, people, the_hosts)
    press = server(repo, the_hosts, host)
    committer = f"{press.host.name} <{press.host.email}>"
    merge = press.merge_commit(people.olga, pull_request(repo, people))
    with repo.branch("squashed"):
        repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.1"})})
    squash = press.squash(people.alice, "squashed")
    with repo.branch("rebased"):
        repo.commit(people.alice, {QA_PLAN: qa_plan({**ECOMMERCE, "version": "1.4.2"})})
    [rebased] = press.rebase("rebased")
    signed = (
        {"github": "openpgp", "gitlab": "ssh", "forgejo": "ssh", "gitea": "openpgp"}[host],
        "G",
        True,
    )
    assert shapes(repo, press.host, [merge, squash, rebased]) == [
        (2, people.olga.email, committer, *signed),  # the merger, as the button's presser
        (1, people.alice.email, committer, *signed),  # the pull request's author
        (1, people.alice.email, committer, *signed),  # the commit's own author, kept
    ]
    subject = repo.git("log", "-1", "--format=%s", merge)
    assert (
        subject
        == {
            "github": "Merge pull request #7 from example/release",
            "gitlab": "Merge branch 'release' into 'main'",
            "forgejo": "Merge pull request 'Release' (#7) from release into main",
            "gitea": "Merge pull request 'Release' (#7) from release into main",
        }[host]
    )


# -- a host's true merge -----------------------------------------------------------------


@pytest.mark.parametrize("host", ["github", "gitlab", "forgejo", "gitea"])
def test_a_hosts_merge_commit_by_ops_triggers_and_keeps_each_commits_author(
    tmp_path: Path, people: People, the_hosts: dict[str, Host], host: str
) -> None:
    repo = hosted(tmp_path, people, the_hosts)
    server(repo, the_hosts, host).merge_commit(people.olga, pull_request(repo, people))
    decision = landed_as_alices(repo)
    assert outcome(decision) == ("executable", "olga", ("ravi",))


def test_a_merge_commit_by_one_without_plan_deploy_lands_the_plan_and_says_who_triggers(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    repo = hosted(tmp_path, people, the_hosts)
    merge = server(repo, the_hosts, "github").merge_commit(people.diana, pull_request(repo, people))
    assert repo.verify().authorised
    decision = decided(repo)
    assert outcome(decision) == ("waiting", None, ("ravi",))
    assert waits(decision) == [
        f"{TRIGGER}; it landed by diana's merge ({merge[:12]}), and diana does not hold "
        "plan.deploy there"
    ]


# -- a host's squash ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["github", "gitlab", "forgejo", "gitea"])
def test_a_hosts_squash_is_its_authors_edit_where_the_host_vouches_and_needs_reconciler_deploy(
    tmp_path: Path, people: People, the_hosts: dict[str, Host], host: str
) -> None:
    """GitHub's and Gitea's "Squash and merge", GitLab's squash under its fast-forward
    method: one commit, the pull request's author, the host's signature. Who pressed the
    button is nowhere in it, so it triggers nothing; and ravi's approval on the branch
    was squashed away with the branch."""
    repo = hosted(tmp_path, people, the_hosts, vouched=True)
    squash = server(repo, the_hosts, host).squash(people.alice, pull_request(repo, people))
    decision = landed_as_alices(repo)
    assert outcome(decision) == ("waiting", None, ())
    assert waits(decision) == [
        f"{TRIGGER}; it landed by {host}'s squash merge ({squash[:12]}, authored by alice), "
        "which does not say who merged it",
        "1 more approval by tech-lead (may approve: diana, ravi)",
    ]
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.olga, QA_PLAN)
    decision = decided(repo)
    assert (decision.status, decision.triggered_by) == ("executable", "olga")


@pytest.mark.parametrize("host", ["github", "gitlab", "forgejo", "gitea"])
def test_a_hosts_squash_is_nobodys_edit_where_the_host_does_not_vouch_for_it(
    tmp_path: Path, people: People, the_hosts: dict[str, Host], host: str
) -> None:
    repo = hosted(tmp_path, people, the_hosts)
    server(repo, the_hosts, host).squash(people.alice, pull_request(repo, people))
    why = (
        f"committed and signed by host {host} as a single-parent commit (a squash or rebase "
        f"merge, a web or API edit) whose author {people.alice.email} it vouches for only "
        "with vouches_for_squash_author"
    )
    refusals = repo.verify().judged[-1].refusals
    assert {(refusal.actor, refusal.reasons) for refusal in refusals} == {
        ("an unknown actor", (why,))
    }
    assert repo.editors(QA_PLAN) == set()
    assert decided(repo).status == "refused"


def test_gitlabs_squash_under_its_merge_commit_method_is_the_authors_and_the_merge_triggers(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    """GitLab's default method with squash: a squash commit (the merge request's author)
    and a merge commit of it (whoever pressed the button), both GitLab's."""
    repo = hosted(tmp_path, people, the_hosts, vouched=True)
    gitlab = server(repo, the_hosts, "gitlab")
    merge = gitlab.squash_and_merge_commit(people.alice, people.olga, pull_request(repo, people))
    squash = repo.head(f"{merge}^2")
    assert shapes(repo, gitlab.host, [merge, squash]) == [
        (2, people.olga.email, "GitLab <noreply@gitlab.com>", "ssh", "G", True),
        (1, people.alice.email, "GitLab <noreply@gitlab.com>", "ssh", "G", True),
    ]
    decision = landed_as_alices(repo)
    assert (decision.status, decision.triggered_by) == ("waiting", "olga")
    assert waits(decision) == ["1 more approval by tech-lead (may approve: diana, ravi)"]


# -- a host's rebase -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "style", ["github", "forgejo", "forgejo rebase then merge", "gitea", "gitea rebase then merge"]
)
def test_a_hosts_rebase_makes_every_commit_nobodys_so_a_plan_edit_in_it_is_refused(
    tmp_path: Path, people: People, the_hosts: dict[str, Host], style: str
) -> None:
    """GitHub's "Rebase and merge", Gitea's "Rebase" (and "Rebase then create merge commit",
    olga's merge of the commits made again): the host makes each commit again, with the
    author the pushed commit wrote; the authors' own signatures are gone."""
    repo = hosted(tmp_path, people, the_hosts)
    press = server(repo, the_hosts, style.split(maxsplit=1)[0])
    if style.endswith("merge"):
        (edit, _approval), _merge = press.rebase_then_merge(people.olga, pull_request(repo, people))
    else:
        edit, _approval = press.rebase(pull_request(repo, people))
    assert shapes(repo, press.host, [edit])[0][1:] == (
        people.alice.email,
        f"{press.host.name} <{press.host.email}>",
        press.host.signer.format,
        "G",
        True,
    )
    assert refused(repo) == {(edit, "an unknown actor")}
    assert decided(repo).status == "refused"


# -- fast-forward, and a rebase by the author ----------------------------------------------


def _fast_forward(repo: SeedRepo, people: People, the_hosts: dict[str, Host], style: str) -> None:
    """Land alice's pull request without a merge commit, as `style` does it."""
    if style in ("gitlab", "forgejo"):
        server(repo, the_hosts, style).fast_forward(pull_request(repo, people))
    elif style == "git merge --ff-only":
        repo.git("merge", "-q", "--ff-only", pull_request(repo, people))
    else:
        repo.git("merge", "-q", "--ff-only", pull_request(repo, people))


def main_moves_on(repo: SeedRepo, people: People) -> None:
    """A commit on main after the pull request's branch left it (a draft: it never runs)."""
    draft = plan("2026-11-dev-build", "development", [ECOMMERCE], state="draft")
    repo.commit(people.alice, {DEV_PLAN: draft})


def rebased_by(repo: SeedRepo, by: Person, branch: str) -> None:
    """`git rebase --gpg-sign main` of the branch by `by` (git makes every commit again,
    committed and signed by `by`, author kept), then main fast-forwarded to it."""
    config, env = repo.identity(by)
    repo.git(*config, "rebase", "-q", "--gpg-sign", "main", branch, env=env)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", branch)


@pytest.mark.parametrize("style", ["gitlab", "forgejo", "git merge --ff-only"])
def test_a_fast_forward_lands_each_commit_as_its_own_signers_and_whoever_merged_triggers_nothing(
    tmp_path: Path, people: People, the_hosts: dict[str, Host], style: str
) -> None:
    """GitLab's fast-forward merge, Gitea's "Fast-forward only", `git merge --ff-only` or a
    push of the branch: the commits land as they were made, approvals included; whoever
    fast-forwarded is nowhere in them."""
    repo = hosted(tmp_path, people, the_hosts)
    _fast_forward(repo, people, the_hosts, style)
    decision = landed_as_alices(repo)
    assert outcome(decision) == ("waiting", None, ("ravi",))
    [wait] = waits(decision)
    landing = repo.plan_versions(QA_PLAN)[-1].landing
    assert wait == (
        f"{TRIGGER}; it landed by fast-forward, rebase or a direct commit ({landing[:12]} by "
        "alice): no merge by a plan.deploy holder to trigger it"
    )


def test_a_rebase_by_the_author_keeps_their_edits_and_makes_the_rebased_approval_theirs(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    """Alice rebases her branch on a main that moved and signs again: her edits stay hers,
    but git made ravi's approval again too, now signed by alice, an editor: approve after
    a rebase. Nothing triggers it."""
    repo = hosted(tmp_path, people, the_hosts)
    branch = pull_request(repo, people)
    main_moves_on(repo, people)
    rebased_by(repo, people.alice, branch)
    assert repo.verify().authorised
    decision = decided(repo)
    assert outcome(decision) == ("waiting", None, ())
    approval = repo.head("main")
    assert (
        f"approval in {approval[:12]} by alice does not count: alice edited the plan, and "
        "editors do not approve their own plans"
    ) in decision.notes
    assert "it landed by fast-forward, rebase or a direct commit" in waits(decision)[0]


def test_reconciler_deploy_triggers_what_a_fast_forward_landed(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    repo = hosted(tmp_path, people, the_hosts)
    _fast_forward(repo, people, the_hosts, "git merge --ff-only")
    shown = repo.reconciler("plan")
    assert "it landed by fast-forward, rebase or a direct commit" in shown.stdout
    assert DEPLOY in shown.stdout
    repo.act_as(people.olga)
    assert repo.reconciler("deploy", "2026-11-qa-release").exit_code == 0
    state = qa_state(repo)
    assert (state["status"], state["triggered_by"]) == ("executable", "olga")


def test_a_commit_into_development_by_a_tech_lead_who_may_deploy_there_triggers_it(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    """A single-parent commit is its own signer's: where that signer holds plan.deploy
    (tech leads in development), landing it, directly or by fast-forward, triggers it."""
    repo = hosted(tmp_path, people, the_hosts)
    with repo.branch("build"):
        repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})
    repo.git("merge", "-q", "--ff-only", "build")
    decision = repo.decide()[DEV_PLAN]
    assert (decision.status, decision.triggered_by) == ("executable", "alice")


# -- merges made with git by ops -----------------------------------------------------------


def test_a_true_merge_by_ops_made_with_git_triggers(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    repo = hosted(tmp_path, people, the_hosts)
    repo.merge(people.olga, pull_request(repo, people))  # git merge --no-ff -S
    decision = landed_as_alices(repo)
    assert outcome(decision) == ("executable", "olga", ("ravi",))


def test_a_squash_by_ops_made_with_git_is_ops_own_edit_and_is_refused_saying_how_to_merge(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    """`git merge --squash` then a signed commit: nothing in it proves who wrote the squashed
    lines, so they are olga's, who may not edit plans. The refusal says what to do instead,
    and doing it (revert, then merge the branch) lands alice's edit and ravi's approval."""
    repo = hosted(tmp_path, people, the_hosts)
    branch = pull_request(repo, people)
    config, env = repo.identity(people.olga)
    repo.git(*config, "merge", "-q", "--squash", branch, env=env)
    repo.git(*config, "commit", "-q", "-S", "-m", "Release (squashed)", env=env)
    squash = repo.head()
    verdict = repo.verify().judged[-1]
    assert {(refusal.commit, refusal.actor) for refusal in verdict.refusals} == {(squash, "olga")}
    hint = (
        "olga holds plan.deploy here: a squash, rebase or cherry-pick by olga makes the "
        "changes in it olga's own edits; land others' commits with a true merge "
        "(`git merge --no-ff -S`, or the host's merge commit), which keeps them theirs"
    )
    assert all(refusal.reasons[-1] == hint for refusal in verdict.refusals)
    state = qa_state(repo)
    assert state["status"] == "refused"
    assert hint in state["reasons"][0]

    repo.git(*config, "revert", "--no-edit", "-S", squash, env=env)
    repo.merge(people.olga, branch)
    assert repo.verify().judged[-1].authorised
    decision = decided(repo)
    assert outcome(decision) == ("executable", "olga", ("ravi",))


def test_a_rebase_by_ops_made_with_git_makes_the_commits_ops_own_edits_and_is_refused(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    repo = hosted(tmp_path, people, the_hosts)
    branch = pull_request(repo, people)
    main_moves_on(repo, people)
    rebased_by(repo, people.olga, branch)
    edit = repo.head("main~1")
    assert repo.git("log", "-1", "--format=%ae %ce", edit) == "alice@example.com olga@example.com"
    assert refused(repo) == {(edit, "olga")}
    assert decided(repo).status == "refused"


# -- attacks -------------------------------------------------------------------------------


def test_a_hosts_squash_of_ops_pull_request_pressed_by_a_developer_does_not_trigger_as_ops(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    """Olga's pull request takes a cancelled plan back to ready: hers to make, not to
    deploy yet. Bob presses "Squash and merge": the squash is olga's edit, and nobody's
    trigger, so the plan waits for one."""
    repo = hosted(tmp_path, people, the_hosts, vouched=True)
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    repo.commit(people.olga, {QA_PLAN: qa_plan(ECOMMERCE, state="cancelled")})
    with repo.branch("uncancel"):
        repo.commit(people.olga, {QA_PLAN: qa_plan(ECOMMERCE)}, "Take the release back")
    squash = server(repo, the_hosts, "github").squash(people.olga, "uncancel")  # pressed by bob
    assert repo.verify().judged[-1].authorised
    applied = repo.apply("--format", "json")
    assert (applied.exit_code, applied.json()["runs"]) == (0, [])
    state = qa_state(repo)
    assert (state["status"], state["triggered_by"]) == ("waiting", None)
    why = (
        f"it landed by github's squash merge ({squash[:12]}, authored by olga), which does "
        "not say who merged it"
    )
    assert state["waits"][0]["text"] == f"{TRIGGER}; {why}"
    history = repo.reconciler("history", "2026-11-qa-release", "--format", "json").json()
    entries = [entry for entry in history["entries"] if entry["commit"] == squash]
    assert [(entry["action"], entry["actor"], entry["counted"]) for entry in entries] == [
        ("un-cancelled", "olga", True),
        ("landed", "olga", False),
    ]
    assert entries[1]["detail"] == f"by landing it on main; not a trigger: {why}"


@pytest.mark.parametrize("made_by", ["github", "git"])
def test_ops_merge_of_main_into_a_branch_brought_to_main_by_fast_forward_does_not_trigger(
    tmp_path: Path, people: People, the_hosts: dict[str, Host], made_by: str
) -> None:
    """Olga presses "Update branch" on alice's pull request (or runs `git merge -S main` on
    it, as `git pull` does): main merged into the branch, her merge. Bob, who may push,
    fast-forwards main to it. It is a merge by olga, but not into main: it is no trigger,
    and `plan` and `history` say how it landed."""
    repo = hosted(tmp_path, people, the_hosts)
    branch = pull_request(repo, people)
    main_moves_on(repo, people)
    assert repo.apply().exit_code == 0  # the service saw main there
    if made_by == "github":
        update = server(repo, the_hosts, "github").update_branch(people.olga, branch)
    else:
        repo.git("checkout", "-q", branch)
        config, env = repo.identity(people.olga)
        repo.git(*config, "merge", "-q", "--no-ff", "-S", "-m", "Merge main", "main", env=env)
        update = repo.head()
        repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", branch)  # bob's push
    assert repo.head("main") == update
    assert repo.verify().authorised
    applied = repo.apply("--format", "json")
    assert (applied.exit_code, applied.json()["runs"]) == (0, [])
    why = (
        f"it landed by fast-forward to a branch that merged main in ({update[:12]} by olga), "
        "not by a merge into main"
    )
    state = qa_state(repo)
    assert (state["status"], state["triggered_by"]) == ("waiting", None)
    assert state["reasons"] == [f"{TRIGGER}; {why}"]
    history = repo.reconciler("history", "2026-11-qa-release", "--format", "json").json()
    assert {
        (entry["action"], entry["actor"], entry["counted"], entry["detail"])
        for entry in history["entries"]
        if entry["commit"] == update
    } == {("landed", "olga", False, f"by landing it on main; not a trigger: {why}")}


@pytest.mark.parametrize("signed_by", [None, "ssh", "openpgp"])
def test_a_commit_shaped_as_a_hosts_merge_by_ops_without_the_hosts_key_is_nobodys(
    tmp_path: Path,
    people: People,
    gpg: GpgKeys,
    the_hosts: dict[str, Host],
    signed_by: str | None,
) -> None:
    """Bob writes a merge commit as GitHub would (two parents, olga as author, GitHub as
    committer, GitHub's message), unsigned or signed with a key of his own (SSH, or
    OpenPGP as GitHub's own), and fast-forwards main to it: no host key, no merger, no
    trigger."""
    repo = hosted(tmp_path, people, the_hosts)
    branch = pull_request(repo, people)
    tree = repo.git("merge-tree", "--write-tree", "main", branch).split()[0]
    signers: dict[str, Signer] = {
        "ssh": SshSigner(people.mallory.key),
        "openpgp": OpenPgpSigner(gpg, gpg["unlisted"]),
    }
    signing, signing_env = signers[signed_by].signing() if signed_by else ([], {})
    env = {
        "GIT_AUTHOR_NAME": people.olga.name,
        "GIT_AUTHOR_EMAIL": people.olga.email,
        "GIT_COMMITTER_NAME": "GitHub",
        "GIT_COMMITTER_EMAIL": "noreply@github.com",
        **signing_env,
    }
    forged = repo.git(
        *signing,
        *("commit-tree", *(["-S"] if signed_by else []), tree),
        *("-p", repo.head("main"), "-p", repo.head(branch)),
        *("-m", "Merge pull request #7 from example/release"),
        env=env,
    )
    assert raw(repo, forged).count("gpgsig") == (1 if signed_by else 0)
    repo.git("merge", "-q", "--ff-only", forged)
    applied = repo.apply("--format", "json")
    assert (applied.exit_code, applied.json()["runs"]) == (0, [])
    state = qa_state(repo)
    assert (state["status"], state["triggered_by"]) == ("waiting", None)
    assert any(f"trigger in {forged[:12]} by an unknown actor" in note for note in state["notes"])


def test_a_squash_that_folds_another_teams_edit_is_the_authors_and_that_entry_is_refused(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    """Bob's commit on alice's pull request changes the customer-portal entry, under
    diana's email; GitHub squashes the branch for alice. The squash is alice's edit, all
    of it: a squash proves no other author, so diana's name gains bob nothing."""
    repo = hosted(tmp_path, people, the_hosts, vouched=True)
    repo.commit(people.diana, {QA_PLAN: qa_plan(PORTAL)})
    with repo.branch("release"):
        repo.commit(people.alice, {QA_PLAN: qa_plan(PORTAL, ECOMMERCE)})
        bumped = {**PORTAL, "version": "0.7", "from": "0.7-dev.1"}
        repo.commit(
            people.bob,
            {QA_PLAN: qa_plan(bumped, ECOMMERCE)},
            signed=False,
            email=(people.diana.email),
        )
    server(repo, the_hosts, "github").squash(people.alice, "release")
    refusal = only_refusal(repo.verify().judged[-1])
    assert (refusal.actor, refusal.field) == ("alice", "app:customer-portal")
    assert decided(repo).status == "refused"


def test_where_signatures_are_required_a_hosts_merge_for_ops_triggers_and_a_forged_one_does_not(
    tmp_path: Path, people: People, the_hosts: dict[str, Host]
) -> None:
    """Production needs signed commits: the host's signature speaks for the merger (a
    host that signs for olga is how she signs a web merge), a committer name does not."""
    repo = hosted(tmp_path, people, the_hosts)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    github = server(repo, the_hosts, "github")
    with repo.branch("prod"):
        repo.commit(people.alice, {PROD_PLAN: prod_plan(ECOMMERCE)})
    github.merge_commit(people.olga, "prod")
    assert repo.decide()[PROD_PLAN].triggered_by == "olga"
    with repo.branch("prod-2"):
        repo.commit(people.alice, {PROD_PLAN: prod_plan({**ECOMMERCE, "version": "1.4.1"})})
    tree = repo.git("merge-tree", "--write-tree", "main", "prod-2").split()[0]
    forged = repo.git(
        *("commit-tree", tree, "-p", repo.head("main"), "-p", repo.head("prod-2")),
        *("-m", "Merge pull request #8 from example/prod-2"),
        env={
            "GIT_AUTHOR_EMAIL": people.olga.email,
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.com",
        },
    )
    repo.git("merge", "-q", "--ff-only", forged)
    assert repo.decide()[PROD_PLAN].triggered_by is None
