"""Attacks on what an object id reads as, written as the attacker would try them.

Replacement refs: anyone who may push can push `refs/replace/<id>`, and git then
reads that object as another one everywhere: a relaxed production.yaml, a forged
deployments file, a look-alike root commit. Grafts (`info/grafts`) give a commit
other parents. A tree listing one name twice (which no git command writes, but
which push and fetch accept without fsck) is read one way by `git diff`, another by
a path lookup and a third by whatever rebuilds it. The service here applies from
the bare repository everyone pushes to (docs/running.md's service next to the bare
repository on the Git server), or from its own clone with `--remote origin`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.configrepo import dump, example_file
from tests.configrepo import reconciler as run_cli
from tests.people import People, Person
from tests.repositories import ConfigRepo, SeedRepo
from tests.runner import with_command_driver
from tests.scenarios import DEV_PLAN, ECOMMERCE, PROD_PLAN, QA_PLAN, dev_plan, prod_plan, qa_plan

# What an attacker would like production.yaml to say: no signatures, no approvals,
# and developers may edit and deploy.
RELAXED_PRODUCTION = """\
# yaml-language-server: $schema=../schemas/environment.schema.json
name: production
order: 3
promotes_from: quality-assurance
permissions:
  plan.edit: [tech-lead, developer]
  plan.approve: [tech-lead, tester]
  plan.deploy: [deployment, developer]
gates:
  approvals: []
  signed_commits: false
driver: {type: local}
"""


def production_any_day() -> str:
    """The example production.yaml without its windows and freeze (the CLI uses the
    real clock): still two approvals, signed commits, the deployment role."""
    kept = [
        line
        for line in example_file("environments/production.yaml").splitlines()
        if not line.lstrip().startswith(("windows:", "- {days:", "freezes:", "- {name:"))
    ]
    return "\n".join(kept) + "\n"


def served_from_a_bare_remote(tmp_path: Path, people: People) -> tuple[SeedRepo, ConfigRepo]:
    """The seed story (ecommerce 1.4.0 running in QA) on a bare repository, and the
    service that applies from that repository itself. The developers' clone is `repo`."""
    repo = SeedRepo.create(
        tmp_path, people, extra={"environments/production.yaml": production_any_day()}
    )
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    repo.clock = int(time.time()) - 3600  # approvals and triggers are hours old, not weeks
    remote = repo.publish_to_bare_remote()
    return repo, ConfigRepo(remote, people, tmp_path / "service-state")


def forged_deployments(environment: str) -> str:
    """A deployments file saying ecommerce 6.6.6 runs in `environment`."""
    version = {"version": "6.6.6", "plan": "forged", "run": "forged.1"}
    entry = {**version, "deployed_at": "2026-11-01T00:00:00Z"}
    return dump({"environment": environment, "applications": {"ecommerce": entry}})


def stored(repo: ConfigRepo, content: bytes) -> str:
    """The id of `content`, written to `repo` as a blob."""
    return git_in(repo.path, "hash-object", "-w", "--stdin", stdin=content)


def git_in(path: Path, *args: str, stdin: bytes = b"") -> str:
    completed = subprocess.run(
        ["git", *args], cwd=path, input=stdin, capture_output=True, check=False
    )
    assert completed.returncode == 0, completed.stderr.decode()
    return completed.stdout.decode().strip()


def push_replacement(repo: ConfigRepo, original: str, replacement: str) -> None:
    """Push `refs/replace/<original>` (git reads `original` as `replacement` wherever it
    is), then forget it in the attacker's own clone."""
    repo.git("replace", original, replacement)
    repo.git("push", "-q", "origin", f"refs/replace/{original}")
    repo.git("replace", "-d", original)


def push(repo: ConfigRepo) -> None:
    repo.git("push", "-q", "origin", "main")


def refusals(verified: Any) -> list[dict[str, Any]]:
    return [refusal for landing in verified["landings"] for refusal in landing["refusals"]]


def may(access: Any, permission: str, environment: str) -> bool:
    return any(
        entry["allowed"]
        for entry in access["entitlements"]
        if entry["permission"] == permission and entry["environment"] == environment
    )


# -- replacement refs ----------------------------------------------------------------------


def test_a_replacement_ref_cannot_relax_production(tmp_path: Path, people: People) -> None:
    repo, service = served_from_a_bare_remote(tmp_path, people)
    assert service.apply("--format", "json").exit_code == 0  # the service knows the seed
    # bob, a developer without a key, relaxes production.yaml for every git command...
    original = repo.blob("environments/production.yaml")
    push_replacement(repo, original, stored(repo, RELAXED_PRODUCTION.encode()))
    # ...and pushes an unsigned production plan, which he "triggers" by landing it.
    repo.commit(people.bob, {PROD_PLAN: prod_plan(ECOMMERCE)}, signed=False)
    push(repo)
    applied = service.apply("--format", "json")
    assert applied.json()["runs"] == [], applied.stdout
    verified = service.reconciler("verify", "--format", "json")
    assert verified.exit_code == 1
    assert {refusal["path"] for refusal in refusals(verified.json())} == {PROD_PLAN}
    access = service.reconciler("access", "bob", "--format", "json").json()
    assert not may(access, "plan.deploy", "production")
    assert not may(access, "plan.edit", "production")


def test_a_replacement_ref_cannot_skip_promotion(tmp_path: Path, people: People) -> None:
    repo, service = served_from_a_bare_remote(tmp_path, people)
    assert service.apply("--format", "json").exit_code == 0
    # QA's deployments file, as read through a replacement: ecommerce 6.6.6 runs there.
    original = repo.blob("deployments/quality-assurance.yaml")
    forged = forged_deployments("quality-assurance")
    push_replacement(repo, original, stored(repo, forged.encode()))
    # Everything else is as it should be: edited, approved twice, triggered, all signed.
    repo.commit(people.alice, {PROD_PLAN: prod_plan({"name": "ecommerce", "version": "6.6.6"})})
    repo.approve(people.ravi, PROD_PLAN)
    repo.approve(people.carol, PROD_PLAN)
    repo.trigger(people.olga, PROD_PLAN)
    push(repo)
    applied = service.apply("--format", "json")
    assert applied.json()["runs"] == [], applied.stdout
    [planned] = [
        plan
        for plan in service.reconciler("plan", "--format", "json").json()["plans"]
        if plan["plan"] == PROD_PLAN
    ]
    assert "promotion" in [wait["what"] for wait in planned["waits"]]
    status = service.reconciler("status", "--format", "json").json()
    assert status["applications"]["ecommerce"]["quality-assurance"] == "1.4.0"


def test_a_replaced_root_commit_does_not_become_a_fresh_states_anchor(
    tmp_path: Path, people: People
) -> None:
    repo, service = served_from_a_bare_remote(tmp_path, people)
    # Before the service ever ran: a look-alike of the seed commit, with production relaxed.
    root = repo.git("rev-list", "--max-parents=0", "main")
    index = tmp_path / "look-alike-index"
    environment = {"GIT_INDEX_FILE": str(index)}
    repo.git("read-tree", root, env=environment)
    relaxed = stored(repo, RELAXED_PRODUCTION.encode())
    repo.git(
        "update-index",
        "--cacheinfo",
        f"100644,{relaxed},environments/production.yaml",
        env=environment,
    )
    tree = repo.git("write-tree", env=environment)
    config, identity = repo.identity(people.bob, signed=False)
    look_alike = repo.git(*config, "commit-tree", tree, "-m", "Seed configuration", env=identity)
    push_replacement(repo, root, look_alike)
    repo.commit(people.bob, {PROD_PLAN: prod_plan(ECOMMERCE)}, signed=False)
    push(repo)
    applied = service.apply("--format", "json")
    assert applied.json()["runs"] == [], applied.stdout
    verified = service.reconciler("verify", "--format", "json").json()
    assert verified["anchor"] == root
    assert PROD_PLAN in {refusal["path"] for refusal in refusals(verified)}
    access = service.reconciler("access", "bob", "--format", "json").json()
    assert not may(access, "plan.deploy", "production")


# -- grafts, mailmaps ----------------------------------------------------------------------


def test_a_grafts_file_does_not_make_a_refused_commit_a_fresh_states_anchor(
    tmp_path: Path, people: People
) -> None:
    repo, service = served_from_a_bare_remote(tmp_path, people)
    # bob relaxes production.yaml (refused: only settings admins may), then lands a plan.
    relaxing = repo.commit(
        people.bob, {"environments/production.yaml": RELAXED_PRODUCTION}, signed=False
    )
    repo.commit(people.bob, {PROD_PLAN: prod_plan(ECOMMERCE)}, signed=False)
    push(repo)
    # A grafts file on the server (an old tool's leftover, or anyone with its disk) says
    # his first commit has no parents: git then takes it for the history's root.
    (service.path / "info").mkdir(exist_ok=True)
    (service.path / "info/grafts").write_text(f"{relaxing}\n")
    applied = service.apply("--format", "json")
    assert applied.json()["runs"] == [], applied.stdout
    verified = service.reconciler("verify", "--format", "json").json()
    assert verified["anchor"] == repo.git("rev-list", "--max-parents=0", "main")
    refused = {refusal["path"] for refusal in refusals(verified)}
    assert {"environments/production.yaml", PROD_PLAN} <= refused


def test_a_mailmap_does_not_lend_bob_olgas_name(tmp_path: Path, people: People) -> None:
    """A bare repository reads the .mailmap committed on HEAD: bob could map his email to
    olga's. The reconciler never read names through it (this passes on the code before
    the git settings were pinned too); it guards that no reading ever comes to."""
    repo, service = served_from_a_bare_remote(tmp_path, people)
    repo.commit(
        people.bob, {".mailmap": "Olga Ops <olga@example.com> <bob@example.com>\n"}, signed=False
    )
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)}, signed=False)
    repo.approve(people.ravi, QA_PLAN)
    repo.trigger(people.bob, QA_PLAN, signed=False)
    push(repo)
    assert "Olga Ops" in git_in(service.path, "log", "-1", "--format=%aN", "--use-mailmap")
    applied = service.apply("--format", "json")
    assert applied.json()["runs"] == [], applied.stdout
    [planned] = [
        plan
        for plan in service.reconciler("plan", "--format", "json").json()["plans"]
        if plan["plan"] == QA_PLAN
    ]
    assert "trigger" in [wait["what"] for wait in planned["waits"]]


# -- malformed trees -------------------------------------------------------------------------


def entry(mode: str, name: str, oid: str) -> bytes:
    return f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid)


def tree_of(repo: ConfigRepo, *entries: bytes) -> str:
    """A tree object of exactly these entries, in this order, as no git command writes
    one: `git hash-object --literally` stores whatever it is given."""
    raw = b"".join(entries)
    return git_in(repo.path, "hash-object", "--literally", "-t", "tree", "-w", "--stdin", stdin=raw)


def with_folder(repo: ConfigRepo, base: str, name: str, tree: str) -> str:
    """`base`'s root tree with its folder `name` replaced by `tree`."""
    listing = git_in(repo.path, "ls-tree", base)
    kept = [line for line in listing.splitlines() if not line.endswith(f"\t{name}")]
    kept.append(f"040000 tree {tree}\t{name}")
    return git_in(repo.path, "mktree", stdin=("\n".join(kept) + "\n").encode())


def commit_tree(repo: ConfigRepo, by: Person, tree: str, parent: str, *, signed: bool) -> str:
    config, environment = repo.identity(by, signed=signed)
    sign = ["-S"] if signed else []
    return repo.git(
        *config, "commit-tree", *sign, tree, "-p", parent, "-m", "change", env=environment
    )


def runs_in(service: ConfigRepo, environment: str) -> dict[str, str]:
    status = service.reconciler("status", "--format", "json").json()
    return {
        app: versions[environment]
        for app, versions in status["applications"].items()
        if versions.get(environment)
    }


def test_a_tree_listing_a_deployments_file_twice_is_refused_and_records_keep_the_file(
    tmp_path: Path, people: People
) -> None:
    repo, out = with_command_driver(tmp_path, people)
    repo.deployed("quality-assurance", {"ecommerce": "1.4.0"})
    remote = repo.publish_to_bare_remote()
    service = repo.clone(remote, "service")
    repo.commit(people.alice, {DEV_PLAN: dev_plan(ECOMMERCE)})  # a deploy to development
    # bob's commit lists deployments/quality-assurance.yaml twice: the file as it is,
    # then his own, which says ecommerce 6.6.6 runs in QA. Pushed, it is never fscked.
    genuine = repo.blob("deployments/quality-assurance.yaml")
    forged = stored(repo, forged_deployments("quality-assurance").encode())
    deployments = tree_of(
        repo,
        entry("100644", "quality-assurance.yaml", genuine),
        entry("100644", "quality-assurance.yaml", forged),
    )
    tree = with_folder(repo, repo.head(), "deployments", deployments)
    bobs = commit_tree(repo, people.bob, tree, repo.head(), signed=False)
    repo.git("push", "-q", "origin", f"{bobs}:refs/heads/main")
    applied = service.apply("--remote", "origin", "--format", "json")
    assert [(run["plan"], run["result"]) for run in applied.json()["runs"]] == [
        (DEV_PLAN, "succeeded")
    ], applied.stdout
    assert "ecommerce 1.4.0" in out.read_text()
    service.git("update-ref", "refs/heads/main", "origin/main")  # what the next commands read
    # The finish record rewrote deployments/ (for development) well-formed, keeping the file.
    assert runs_in(service, "quality-assurance") == {"ecommerce": "1.4.0"}
    assert runs_in(service, "development") == {"ecommerce": "1.4.0"}
    tip = service.git("rev-parse", "origin/main")
    assert service.git("log", "-1", "--format=%s", tip).startswith("Deploy 2026-11-dev-build")
    listing = service.git("ls-tree", f"{tip}:deployments").splitlines()
    assert [line.split("\t")[1] for line in listing] == [
        "development.yaml",
        "quality-assurance.yaml",
    ]
    assert service.git("rev-parse", f"{tip}:deployments/quality-assurance.yaml") == genuine
    verified = service.reconciler("verify", "--format", "json").json()
    [landing] = [landing for landing in verified["landings"] if landing["commit"] == bobs]
    assert not landing["authorised"]
    assert "two entries are named 'quality-assurance.yaml'" in landing["refusals"][0]["message"]
    fresh = run_cli(
        "verify", "--repo", service.path, "--state-dir", tmp_path / "fresh", "--format", "json"
    )
    assert {
        landing["commit"] for landing in fresh.json()["landings"] if not landing["authorised"]
    } == {bobs}


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@pytest.mark.parametrize(
    ("malformation", "why"),
    [
        ("zero-padded", "has a zero-padded mode"),
        ("unsorted", "out of order"),
        ("dotgit", "is .git"),
        ("slash", "holds a '/'"),
        ("duplicate", "two entries are named"),
    ],
)
def test_a_landing_that_brings_a_malformed_tree_is_refused_whole(
    tmp_path: Path, people: People, malformation: str, why: str
) -> None:
    # alice's signed commit adds a development plan she may deploy: authorised, were
    # it not for how the plans/ folder is written.
    repo = SeedRepo.create(tmp_path, people)
    plan_blob = stored(repo, dev_plan(ECOMMERCE).encode())
    name = Path(DEV_PLAN).name
    entries = {
        "zero-padded": [entry("0100644", name, plan_blob)],
        "unsorted": [entry("100644", name, plan_blob), entry("100644", "0.yaml", plan_blob)],
        "dotgit": [entry("100644", name, plan_blob), entry("40000", ".GIT", EMPTY_TREE)],
        "slash": [entry("100644", name, plan_blob), entry("100644", "x/y.yaml", plan_blob)],
        "duplicate": [entry("100644", name, plan_blob), entry("100644", name, plan_blob)],
    }[malformation]
    tree = with_folder(repo, repo.head(), "plans", tree_of(repo, *entries))
    commit = commit_tree(repo, people.alice, tree, repo.head(), signed=True)
    repo.git("update-ref", "refs/heads/main", commit)
    [verdict] = repo.verify().judged
    assert not verdict.authorised
    assert all(why in refusal.reasons[0] for refusal in verdict.refusals)
    assert (
        f"commit {commit[:12]} holds a malformed tree at plans/" in verdict.refusals[0].reasons[0]
    )
    assert repo.decide()[DEV_PLAN].status != "executable"


def test_a_landing_after_a_malformed_one_is_judged_as_usual(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    plan_blob = stored(repo, dev_plan(ECOMMERCE).encode())
    name = Path(DEV_PLAN).name
    plans = tree_of(repo, entry("100644", name, plan_blob), entry("100644", name, plan_blob))
    tree = with_folder(repo, repo.head(), "plans", plans)
    malformed = commit_tree(repo, people.bob, tree, repo.head(), signed=False)
    # alice's next commit, made by git on top, writes the folder well-formed again.
    repo.git("update-ref", "refs/heads/main", malformed)
    repo.git("read-tree", "main")
    repo.commit(people.alice, {QA_PLAN: qa_plan(ECOMMERCE)})
    first, second = repo.verify().judged
    assert not first.authorised
    assert second.authorised, second.refusals
    assert second.changed == (QA_PLAN,)
    assert set(repo.verify().differs) == {DEV_PLAN}


def test_a_trust_anchor_with_a_malformed_tree_is_refused(tmp_path: Path, people: People) -> None:
    repo = SeedRepo.create(tmp_path, people)
    teams = repo.blob("teams.yaml")
    doubled = tree_of(
        repo, entry("100644", "teams.yaml", teams), entry("100644", "teams.yaml", teams)
    )
    root = repo.git("commit-tree", doubled, "-m", "seed")
    repo.git("update-ref", "refs/heads/main", root)
    result = repo.reconciler("verify")
    assert result.exit_code == 1
    assert "the trust anchor" in result.stderr
    assert "two entries are named 'teams.yaml'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_root_whose_stray_parent_header_names_the_verified_tip_is_a_rewrite(
    tmp_path: Path, people: People
) -> None:
    # Mallory force-pushes a commit of main's tree whose `parent` line comes after the
    # committer: git reads no parent there (a root, a history of its own, which drops every
    # landing that authorised the state). Read as a child of the verified tip, it would
    # have been judged as one more landing on a history git no longer holds.
    repo = SeedRepo.create(tmp_path, people)
    assert repo.reconciler("verify").exit_code == 0
    verified = repo.head()
    who = f"Mallory <{people.mallory.email}> {repo.clock} +0000"
    tree = repo.git("rev-parse", "HEAD^{tree}")
    (tmp_path / "raw").write_text(
        f"tree {tree}\nauthor {who}\ncommitter {who}\nparent {verified}\n\nTidy up\n"
    )
    root = repo.git("hash-object", "--literally", "-t", "commit", "-w", str(tmp_path / "raw"))
    assert repo.git("rev-list", "--count", root) == "1"  # git: a root
    repo.git("update-ref", "refs/heads/main", root)
    after = repo.reconciler("verify")
    assert after.exit_code == 1, after.stdout
    assert "history was rewritten" in after.stderr
