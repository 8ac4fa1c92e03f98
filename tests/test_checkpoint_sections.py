"""A checkpoint's sections: a pull-request check with a fresh state loads what it asks for.

`docs/design.md, "Checkpoints"`. The cut and the index are specified with values;
the store's loading with a real SQLite state; the check with the real service's
checkpoints and the real CLI, against a check that walked, and as an attacker
who can move the checkpoint ref (or holds the pinned key) would try it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from reconciler.adapters.statestore import StateStore
from reconciler.core import checkpoint_sections as sections
from reconciler.core.checkpoint import CheckpointUnreadable, Header, digest
from tests.configrepo import reconciler
from tests.people import People, make_mallory_the_settings_user, seed_teams, teams_with
from tests.repositories import SeedRepo
from tests.scenarios import ECOMMERCE, PORTAL, QA_PLAN, interrupted_qa_release, qa_plan
from tests.test_attacks import raw_commit, stored_copy, with_the_signature_header_moved

CHECKPOINTS = "refs/reconciler/checkpoints/main"
SIGN = ("ssh-keygen", "-q", "-Y", "sign", "-n", "reconciler-checkpoint-sections", "-f")
HEADER = Header("a" * 40, "main", "b" * 40, 7)
WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def landing(commit: str, landed: list[str]) -> str:
    return json.dumps(
        {
            "commit": commit,
            "first_parent": "a" * 40,
            "landed": landed,
            "actor": "alice",
            "authorised": True,
            "refusals": [],
            "changed": [],
            "superseded": [],
            "unattributed": [],
            "committed_at": "2026-01-05T08:17:40+00:00",
        }
    )


def version(seq: int) -> str:
    return json.dumps(
        {
            "seq": seq,
            "committed_at": "2026-01-05T08:12:03+00:00",
            "actor": "alice",
            "how": "signed with alice's key",
            "verified": True,
            "triggered": False,
            "style": "",
            "squashed_by": None,
            "state": "ready",
            "reasons": [],
        }
    )


def rows() -> dict[str, list[list[Any]]]:
    """A few rows of every table a checkpoint holds, as `StateStore.journal_rows` reads them."""
    return {
        "meta": [["anchor", "a" * 40], ["last_verified", "b" * 40]],
        "effective": [["teams.yaml", "content", '"e"']],
        "dirty": [],
        "payloads": [["f" * 64 + " SHA256:x", "c" * 40], ["0" * 64 + " SHA256:y", "d" * 40]],
        "landings": [
            [1, "c" * 40, landing("c" * 40, ["c" * 40, "d" * 40])],
            [2, "d" * 40, landing("d" * 40, ["d" * 40])],
        ],
        "plan_versions": [
            [1, "plans/one.yaml", "1" * 40, "c" * 40, version(1)],
            [2, "plans/two.yaml", "2" * 40, "d" * 40, version(2)],
        ],
        "events": [
            [1, 1, "c" * 40, "edit", '{"path": "plans/one.yaml"}'],
            [2, 2, "d" * 40, "approve", '{"plan": "plans/two.yaml@2"}'],
            [3, 2, "d" * 40, "record", '{"run": "two.1"}'],
            [4, 2, "d" * 40, "someday", "{}"],
        ],
        "editors": [["plans/one.yaml", "alice"], [b"plans/\xff.yaml", "bob"]],
    }


def lines_of(cut: dict[str, bytes]) -> dict[str, list[str]]:
    return {name: data.decode().splitlines() for name, data in cut.items()}


# -- the cut and the index, as values ---------------------------------------------------


def test_every_row_is_in_the_one_section_its_key_names() -> None:
    cut = lines_of(sections.cut(rows(), ["two.1"]))
    payloads = cut[sections.section_of_payload("f" * 64 + " SHA256:x")]
    assert any(line.startswith('["payloads","ffff') for line in payloads)
    versions = cut[sections.section_of_versions("plans/two.yaml")]
    assert any('"plans/two.yaml"' in line for line in versions)
    assert any('"alice"' in line for line in cut[sections.section_of_editors("plans/one.yaml")])
    assert any('"bob"' in line for line in cut[sections.section_of_editors("plans/\udcff.yaml")])
    assert any('"approve"' in line for line in cut["events.signoff"])
    assert any('"record"' in line for line in cut["events.record"])
    assert any('"someday"' in line for line in cut[sections.OTHER_EVENTS])
    # Outside the core, no row is in two sections, and none is left out.
    outside = [line for name, found in cut.items() if name != sections.CORE for line in found]
    assert len(outside) == len(set(outside))
    tables = sum(
        len(table) for name, table in rows().items() if name not in ("meta", "effective", "dirty")
    )
    assert len([line for line in outside if not line.startswith('["seen"')]) == tables


def test_the_core_holds_the_position_the_open_runs_and_each_numbered_tables_last_row() -> None:
    core = lines_of(sections.cut(rows(), ["two.1"]))[sections.CORE]
    assert '["meta","anchor","' + "a" * 40 + '"]' in core
    assert '["open_runs","two.1"]' in core
    assert any(line.startswith('["landings",2,') for line in core)
    assert any(line.startswith('["plan_versions",2,') for line in core)
    assert any(line.startswith('["events",4,') for line in core)
    assert not any(line.startswith('["landings",1,') for line in core)


def test_the_anchor_and_every_landed_commit_count_as_seen() -> None:
    cut = lines_of(sections.cut(rows(), []))
    for commit in ("a" * 40, "c" * 40, "d" * 40):
        assert f'["seen","{commit}"]' in cut[sections.section_of_seen(commit)]


def test_the_same_rows_cut_the_same_bytes_whatever_their_order() -> None:
    shuffled = {table: list(reversed(found)) for table, found in reversed(rows().items())}
    assert sections.cut(shuffled, ["two.1"]) == sections.cut(rows(), ["two.1"])


def index_of(cut: dict[str, bytes]) -> sections.Index:
    return sections.Index(
        HEADER,
        "sha256:" + "9" * 64,
        {name: digest(data) for name, data in cut.items()},
        {name: f"{n:040x}" for n, name in enumerate(sorted(cut))},
    )


def test_an_index_reads_back_as_it_was_written() -> None:
    index = index_of(sections.cut(rows(), []))
    assert sections.decode_index(sections.encode_index(index)) == index


def test_an_index_reads_back_the_roots_it_names_and_none_when_it_names_none() -> None:
    index = index_of(sections.cut(rows(), []))
    named = replace(index, roots=("a" * 40,))
    assert sections.decode_index(sections.encode_index(named)).roots == ("a" * 40,)
    assert b'"roots"' not in sections.encode_index(index)
    assert sections.decode_index(sections.encode_index(index)).roots is None


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda value: value.update(sections=2), "format is 2"),
        (lambda value: value["digests"].pop("core") and value["blobs"].pop("core"), "no core"),
        (lambda value: value["blobs"].popitem(), "no blob"),
        (lambda value: value.update(commit=None), "names no commit"),
        (lambda value: value["digests"].update(core=1), "by no digest"),
        (lambda value: value.pop("rows"), "not one"),
        (lambda value: value.update(roots="a" * 40), "no root commits"),
    ],
)
def test_an_index_that_is_not_one_is_refused_with_why(change: Any, said: str) -> None:
    value = json.loads(sections.encode_index(index_of(sections.cut(rows(), []))))
    change(value)
    with pytest.raises(CheckpointUnreadable, match=said):
        sections.decode_index(json.dumps(value).encode())


# -- the store, loading sections as asked (a real SQLite state) ---------------------------


def lazy_store(tmp_path: Path, asked: list[str]) -> StateStore:
    """A fresh ephemeral state holding the core of `rows()`; `asked` hears each section read."""
    cut = sections.cut(rows(), ["two.1"])
    store = StateStore(tmp_path / "state", "main")
    store.go_ephemeral()

    def read(name: str) -> sections.SectionRows:
        asked.append(name)
        return sections.section_rows(cut[name])

    store.load_sections(sections.section_rows(cut[sections.CORE]), read, frozenset(cut), WHEN)
    return store


def test_a_question_by_key_loads_only_the_section_of_its_key(tmp_path: Path) -> None:
    asked: list[str] = []
    store = lazy_store(tmp_path, asked)
    assert store.carriers(["f" * 64 + " SHA256:x"]) == {"f" * 64 + " SHA256:x": "c" * 40}
    assert asked == [sections.section_of_payload("f" * 64 + " SHA256:x")]
    assert store.editors("plans/one.yaml") == {"alice"}
    assert store.first_seen(["d" * 40]) == {"d" * 40: WHEN}
    assert len(asked) == 3
    store.close()


def test_a_question_with_no_key_loads_every_section_of_its_table(tmp_path: Path) -> None:
    asked: list[str] = []
    store = lazy_store(tmp_path, asked)
    assert [version.path for version in store.plan_versions()] == [
        "plans/one.yaml",
        "plans/two.yaml",
    ]
    assert set(asked) == {
        sections.section_of_versions("plans/one.yaml"),
        sections.section_of_versions("plans/two.yaml"),
    }
    assert [item.verdict.commit for item in store.landings()] == ["c" * 40, "d" * 40]
    store.close()


def test_rows_added_before_their_section_is_loaded_are_numbered_after_the_checkpoints(
    tmp_path: Path,
) -> None:
    store = lazy_store(tmp_path, [])
    assert store.next_seq() == 3  # the core holds the last landing
    store.close()


def test_a_section_loaded_in_a_discarded_transaction_is_loaded_again(tmp_path: Path) -> None:
    asked: list[str] = []
    store = lazy_store(tmp_path, asked)
    payload = "0" * 64 + " SHA256:y"
    with store.transaction(keep=False):
        assert store.carriers([payload]) == {payload: "d" * 40}
    # The rows went with the transaction: a section marked loaded would now answer nothing.
    assert store.carriers([payload]) == {payload: "d" * 40}
    assert asked == [sections.section_of_payload(payload)] * 2
    store.close()


def test_a_section_loaded_in_a_savepoint_taken_back_is_loaded_again(tmp_path: Path) -> None:
    asked: list[str] = []
    store = lazy_store(tmp_path, asked)
    payload = "0" * 64 + " SHA256:y"
    with store.transaction(), store.savepoint() as back:
        assert store.carriers([payload]) == {payload: "d" * 40}
        back()
        assert store.carriers([payload]) == {payload: "d" * 40}
    assert asked == [sections.section_of_payload(payload)] * 2
    store.close()


def test_a_checkpoint_loaded_in_a_discarded_transaction_is_gone_with_it(tmp_path: Path) -> None:
    # A walk that loads a checkpoint and fails is rolled back: its core's rows are gone,
    # and no later question may load the rest of that checkpoint onto nothing.
    cut = sections.cut(rows(), ["two.1"])
    asked: list[str] = []
    store = StateStore(tmp_path / "state", "main")
    store.go_ephemeral()

    def read(name: str) -> sections.SectionRows:
        asked.append(name)
        return sections.section_rows(cut[name])

    with store.transaction(keep=False):
        store.load_sections(sections.section_rows(cut[sections.CORE]), read, frozenset(cut), WHEN)
        assert not store.fresh()
    assert store.fresh()
    assert store.carriers(["0" * 64 + " SHA256:y"]) == {"0" * 64 + " SHA256:y": None}
    assert asked == []
    store.close()


def test_an_ephemeral_state_leaves_the_state_directory_fresh(tmp_path: Path) -> None:
    store = lazy_store(tmp_path, [])
    with store.transaction():
        store.add_editors("plans/one.yaml", ["carol"])
    assert store.position() is not None
    store.close()
    again = StateStore(tmp_path / "state", "main")
    assert again.fresh()
    assert again.position() is None
    again.close()


# -- the check, with the real service's checkpoint -----------------------------------------


def served(tmp_path: Path, people: People) -> SeedRepo:
    """The QA release approved, triggered and interrupted, then a service pass: a checkpoint
    holding sign-offs, records, an open run's end and plan versions."""
    repo, _ = interrupted_qa_release(tmp_path, people)
    result = repo.apply()
    assert result.exit_code == 0, result.stderr
    assert repo.git("rev-parse", "--verify", "-q", CHECKPOINTS)
    repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, PORTAL, notes="after the pass")})
    return repo


def a_pull_request(repo: SeedRepo, people: People) -> None:
    with repo.branch("pull-request"):
        repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, notes="pull request")})


def check(
    repo: SeedRepo, state: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    result = reconciler(
        "verify-mergeable",
        "--repo",
        repo.path,
        "--state-dir",
        state,
        "--base",
        "main",
        "--head",
        "pull-request",
        "--format",
        "json",
        *args,
        env=env,
    )
    assert result.exit_code in (0, 1), result.stderr
    found: dict[str, Any] = result.json()
    found["stderr"] = result.stderr
    return found


def walked_check(repo: SeedRepo, state: Path) -> dict[str, Any]:
    """The check on a state a `verify` walked first: no checkpoint, every row its own."""
    verified = reconciler("verify", "--repo", repo.path, "--state-dir", state, "--full")
    assert verified.exit_code in (0, 1), verified.stderr
    return check(repo, state)


def same_judgement(lazy: dict[str, Any], walked: dict[str, Any]) -> None:
    assert lazy.pop("checkpoint") is not None, lazy["stderr"]
    assert walked.pop("checkpoint") is None
    for report in (lazy, walked):
        report.pop("merge")  # made anew by each check, at its own second
        report.pop("stderr")
    assert lazy == walked


@pytest.mark.parametrize(
    "change",
    ["the plan that ran", "the policy, which reaches every plan", "a new plan"],
)
def test_a_check_from_the_sections_judges_as_a_check_that_walked(
    tmp_path: Path, people: People, change: str
) -> None:
    repo = served(tmp_path, people)
    with repo.branch("pull-request"):
        if change == "the plan that ran":
            repo.commit(people.diana, {QA_PLAN: qa_plan(ECOMMERCE, notes="pull request")})
        elif change == "the policy, which reaches every plan":
            repo.commit(
                people.mallory,
                {
                    "teams.yaml": teams_with(
                        people, lambda d: make_mallory_the_settings_user(d, people)
                    )
                },
            )
        else:
            repo.commit(people.diana, {"plans/another.yaml": qa_plan(PORTAL)})
    same_judgement(check(repo, tmp_path / "ci"), walked_check(repo, tmp_path / "walked"))


def whole_history_root_searches(trace: Path) -> tuple[list[Any], list[list[str]]]:
    """The events of a GIT_TRACE2_EVENT file, and the git commands among them that search
    the whole history for root commits (none excluded with `^`)."""
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    searches = [
        event["argv"]
        for event in events
        if event["event"] == "start"
        and "--max-parents=0" in event["argv"]
        and not any(arg.startswith("^") for arg in event["argv"])
    ]
    return events, searches


def test_a_check_with_the_service_key_pinned_names_no_walk_to_the_root(
    tmp_path: Path, people: People
) -> None:
    repo = served(tmp_path, people)
    a_pull_request(repo, people)
    trace = tmp_path / "trace.json"
    pinned = check(
        repo,
        tmp_path / "ci",
        "--checkpoint-key",
        f"{people.reconciler.key}.pub",
        env={**os.environ, "GIT_TRACE2_EVENT": str(trace)},
    )
    started, root_searches = whole_history_root_searches(trace)
    assert started
    assert root_searches == []
    same_judgement(pinned, walked_check(repo, tmp_path / "walked"))


def test_without_a_pinned_key_the_check_searches_the_root_that_names_the_trusted_keys(
    tmp_path: Path, people: People
) -> None:
    # The counterpart of the test above: the search it spares is the one this makes.
    repo = served(tmp_path, people)
    a_pull_request(repo, people)
    trace = tmp_path / "trace.json"
    check(repo, tmp_path / "ci", env={**os.environ, "GIT_TRACE2_EVENT": str(trace)})
    assert whole_history_root_searches(trace)[1]


# -- as an attacker who can move the ref -------------------------------------------------


def mktree(repo: SeedRepo, entries: dict[str, tuple[str, str, str]]) -> str:
    """A tree of `entries` (name -> mode, type, id), made by git."""
    listing = "".join(
        f"{mode} {kind} {oid}\t{name}\n" for name, (mode, kind, oid) in entries.items()
    )
    made = subprocess.run(
        ["git", "mktree"], cwd=repo.path, input=listing.encode(), capture_output=True, check=True
    )
    return made.stdout.decode().strip()


def entries_of(repo: SeedRepo, tree: str) -> dict[str, tuple[str, str, str]]:
    found: dict[str, tuple[str, str, str]] = {}
    for line in repo.git("ls-tree", tree).splitlines():
        meta, name = line.split("\t")
        mode, kind, oid = meta.split()
        found[name] = (mode, kind, oid)
    return found


def blob(repo: SeedRepo, data: bytes) -> str:
    made = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=repo.path,
        input=data,
        capture_output=True,
        check=True,
    )
    return made.stdout.decode().strip()


def push_forged(
    repo: SeedRepo,
    *,
    section: tuple[str, bytes] | None = None,
    index: dict[str, Any] | None = None,
    signer: Path | None = None,
) -> str:
    """The genuine checkpoint with a section's bytes replaced, or its index replaced and
    signed by `signer` (`ssh-keygen -Y sign`), committed on top of it at the ref."""
    genuine = repo.git("rev-parse", CHECKPOINTS)
    top = entries_of(repo, f"{genuine}^{{tree}}")
    if section is not None:
        name, data = section
        folder = entries_of(repo, top["sections"][2])
        folder[name] = ("100644", "blob", blob(repo, data))
        top["sections"] = ("040000", "tree", mktree(repo, folder))
    if index is not None and signer is not None:
        work = repo.path.parent / "forged-index"
        work.mkdir(exist_ok=True)
        text = (json.dumps(index, separators=(",", ":"), sort_keys=True) + "\n").encode()
        (work / "sections.json").write_bytes(text)
        subprocess.run(
            [*SIGN, signer, work / "sections.json"],
            check=True,
            capture_output=True,
        )
        top["sections.json"] = ("100644", "blob", blob(repo, text))
        signature = (work / "sections.json.sig").read_bytes()
        top["sections.sig"] = ("100644", "blob", blob(repo, signature))
    message = repo.git("log", "-1", "--format=%B", genuine)
    forged = repo.git("commit-tree", mktree(repo, top), "-p", genuine, "-m", message)
    repo.git("update-ref", CHECKPOINTS, forged)
    return genuine


def passed_over_for(report: dict[str, Any], genuine: str, why: str) -> None:
    """The check said why it passed the forged checkpoint over, and went on from the
    genuine one under it."""
    assert why in report["stderr"]
    assert report["checkpoint"]["checkpoint"] == genuine


def genuine_index(repo: SeedRepo) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(repo.git("show", f"{CHECKPOINTS}:sections.json"))
    return found


def test_a_section_swapped_on_the_ref_passes_the_checkpoint_over_for_the_one_before(
    tmp_path: Path, people: People
) -> None:
    repo = served(tmp_path, people)
    a_pull_request(repo, people)
    # Every landing authorised: what the swap would have the check believe.
    landings = subprocess.run(
        ["git", "cat-file", "blob", f"{CHECKPOINTS}:sections/landings"],
        cwd=repo.path,
        capture_output=True,
        check=True,
    ).stdout
    lie = landings.replace(b'\\"actor\\":\\"diana\\"', b'\\"actor\\":\\"root\\"')
    assert lie != landings
    genuine = push_forged(repo, section=("landings", lie))

    lazy = check(repo, tmp_path / "ci")
    passed_over_for(lazy, genuine, "its sections are not the files its index names")
    same_judgement(lazy, walked_check(repo, tmp_path / "walked"))


def test_an_index_signed_by_a_key_nobody_trusts_is_passed_over(
    tmp_path: Path, people: People
) -> None:
    repo = served(tmp_path, people)
    a_pull_request(repo, people)
    genuine = push_forged(repo, index=genuine_index(repo), signer=people.mallory.key)

    lazy = check(repo, tmp_path / "ci")
    passed_over_for(lazy, genuine, "not a trusted key")
    same_judgement(lazy, walked_check(repo, tmp_path / "walked"))


def test_a_pinned_keys_checkpoint_naming_an_anchor_with_parents_is_not_taken_as_the_root(
    tmp_path: Path, people: People
) -> None:
    # The service key itself signs it (a re-anchored state's, or a stolen key's): without
    # --trust-anchor, the anchor of a walk that searched no root must be a root.
    repo = served(tmp_path, people)
    a_pull_request(repo, people)
    index = genuine_index(repo)
    index["anchor"] = repo.git("rev-parse", "main~1")
    push_forged(repo, index=index, signer=people.reconciler.key)

    pinned = check(repo, tmp_path / "ci", "--checkpoint-key", f"{people.reconciler.key}.pub")
    assert "is not a root commit" in pinned["stderr"]
    walked = walked_check(repo, tmp_path / "walked")
    assert pinned["checkpoint"] is not None  # the genuine one, under it
    same_judgement(pinned, walked)


def another_repository_served_by_the_same_key(
    tmp_path: Path, people: People, merging: SeedRepo | None = None
) -> SeedRepo:
    """A second configuration repository, its own root, whose service signs with the same
    key (one organisation's reconciler), where mallory is the settings user; one landing
    of hers (then a pass, and a merge of `merging`'s main), and a service pass that
    publishes its checkpoint."""
    teams = seed_teams(people)
    make_mallory_the_settings_user(teams, people)
    other = SeedRepo.create(tmp_path / "other", people, teams=teams)
    other.commit(people.mallory, {"notes.txt": "mallory's sandbox\n"})
    if merging is not None:  # its state anchored first: a fresh one could not choose a root
        assert other.apply().exit_code == 0
        other.git("fetch", "-q", str(merging.path), "main:refs/heads/theirs")
        other.land_commit_tree(
            people.mallory,
            other.git("rev-parse", "main^{tree}"),
            other.head("main"),
            other.head("theirs"),
            message="Merge their history into ours",
            signed=True,
        )
    result = other.apply()
    assert result.exit_code == 0, result.stderr
    assert other.git("rev-parse", "--verify", "-q", CHECKPOINTS)
    return other


def pinned_and_full_checks(repo: SeedRepo, tmp_path: Path, people: People) -> None:
    """A pull request of what only the other repository's settings user may do, checked
    with a fresh state and the service key pinned, and with a key that signed nothing: a
    walk that refuses to choose between two roots, and so must the pinned check."""
    with repo.branch("pull-request"):
        repo.commit(
            people.mallory,
            {"teams.yaml": teams_with(people, lambda d: make_mallory_the_settings_user(d, people))},
        )
    assert len(repo.git("rev-list", "--max-parents=0", "main").split()) == 2
    results = {}
    for name, key in (("pinned", people.reconciler.key), ("full", people.ravi.key)):
        results[name] = reconciler(
            "verify-mergeable",
            "--repo",
            repo.path,
            "--state-dir",
            tmp_path / name,
            "--base",
            "main",
            "--head",
            "pull-request",
            "--format",
            "json",
            "--checkpoint-key",
            f"{key}.pub",
        )
    pinned, full = results["pinned"], results["full"]
    assert "2 root commits" in full.stderr, full.stderr
    assert pinned.exit_code == full.exit_code, pinned.stdout + pinned.stderr
    assert "2 root commits" in pinned.stderr, pinned.stdout
    assert "only --trust-anchor says which one to trust" in pinned.stderr


def test_a_pinned_keys_checkpoint_of_another_repository_merged_in_first_is_not_taken(
    tmp_path: Path, people: People
) -> None:
    # Anyone who can push merges the other repository's history into main as its FIRST
    # parent, and moves the checkpoint ref onto the other repository's checkpoint: it is
    # signed by the pinned key, names a root, describes a commit on main's first-parent
    # line. Main then has two roots.
    repo = SeedRepo.create(tmp_path / "ours", people)
    other = another_repository_served_by_the_same_key(tmp_path, people)
    repo.git("fetch", "-q", str(other.path), "main:refs/heads/theirs")
    repo.git("fetch", "-q", "-f", str(other.path), f"{CHECKPOINTS}:{CHECKPOINTS}")
    repo.land_commit_tree(
        people.mallory,
        repo.git("rev-parse", "theirs^{tree}"),
        repo.head("theirs"),
        repo.head("main"),
        message="Merge our history into theirs",
        signed=True,
    )
    pinned_and_full_checks(repo, tmp_path, people)


def test_a_pinned_keys_checkpoint_of_a_history_that_merged_ours_in_is_not_taken(
    tmp_path: Path, people: People
) -> None:
    # The other repository merged ours before its service's checkpoint, and main is moved
    # onto its history: no root came after the commit the checkpoint describes, and the
    # roots it names in its signed index are two.
    repo = SeedRepo.create(tmp_path / "ours", people)
    other = another_repository_served_by_the_same_key(tmp_path, people, merging=repo)
    repo.git("fetch", "-q", str(other.path), "main:refs/heads/theirs")
    repo.git("fetch", "-q", "-f", str(other.path), f"{CHECKPOINTS}:{CHECKPOINTS}")
    repo.git("update-ref", "refs/heads/main", repo.head("theirs"))
    repo.git("reset", "-q", "--hard", "main")
    assert "Checkpoint-Of: " + repo.head("main") in repo.git("log", "-1", CHECKPOINTS)
    assert len(genuine_index(repo)["roots"]) == 2
    pinned_and_full_checks(repo, tmp_path, people)


@pytest.mark.parametrize("pinned", [False, True])
def test_a_pull_request_replaying_an_approval_main_carried_is_judged_as_by_a_walk(
    tmp_path: Path, people: People, pinned: bool
) -> None:
    # The payload's first carrier is in a payloads section the check must load: else the
    # copy would be the first to carry it, and its signature ravi's.
    repo, approval = interrupted_qa_release(tmp_path, people)
    assert repo.apply().exit_code == 0
    forged = stored_copy(repo, with_the_signature_header_moved(raw_commit(repo, approval)))
    merge = repo.git(
        "commit-tree",
        repo.git("rev-parse", "main^{tree}"),
        "-p",
        "main",
        "-p",
        forged,
        "-m",
        "Merge",
    )
    repo.git("update-ref", "refs/heads/pull-request", merge)
    key = ("--checkpoint-key", f"{people.reconciler.key}.pub") if pinned else ()
    lazy = check(repo, tmp_path / "ci", *key)
    walked = walked_check(repo, tmp_path / "walked")
    assert [item["commit"] for item in walked["unattributed"]] == [forged]
    same_judgement(lazy, walked)


def test_a_pinned_check_takes_an_index_that_names_no_roots_and_searches_them(
    tmp_path: Path, people: People
) -> None:
    # An index published before they were named: still the service's, at a root search's cost.
    repo = served(tmp_path, people)
    a_pull_request(repo, people)
    index = genuine_index(repo)
    assert index.pop("roots") == [repo.git("rev-list", "--max-parents=0", "main")]
    push_forged(repo, index=index, signer=people.reconciler.key)
    forged = repo.git("rev-parse", CHECKPOINTS)

    pinned = check(repo, tmp_path / "ci", "--checkpoint-key", f"{people.reconciler.key}.pub")
    assert pinned["checkpoint"]["checkpoint"] == forged, pinned["stderr"]
    same_judgement(pinned, walked_check(repo, tmp_path / "walked"))


def test_a_checkpoint_stripped_of_its_sections_is_loaded_whole_and_the_state_kept_fresh(
    tmp_path: Path, people: People
) -> None:
    # Anyone can push the genuine rows without the index: the check loads them whole into
    # its connection's own tables (their indexes dropped and made again there, not in the
    # state file's), and judges as a walk.
    repo = served(tmp_path, people)
    a_pull_request(repo, people)
    genuine = repo.git("rev-parse", CHECKPOINTS)
    top = entries_of(repo, f"{genuine}^{{tree}}")
    kept = {name: top[name] for name in ("checkpoint.jsonl", "checkpoint.sig")}
    message = repo.git("log", "-1", "--format=%B", genuine)
    stripped = repo.git("commit-tree", mktree(repo, kept), "-p", genuine, "-m", message)
    repo.git("update-ref", CHECKPOINTS, stripped)
    state = tmp_path / "ci"

    lazy = check(repo, state)
    assert lazy["checkpoint"]["checkpoint"] == stripped, lazy["stderr"]
    store = StateStore(state, "main")
    try:
        assert store.fresh()
    finally:
        store.close()
    StateStore(tmp_path / "new", "main").close()
    named = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    indexes = []
    for made in (state, tmp_path / "new"):
        with contextlib.closing(sqlite3.connect(made / "main.sqlite3")) as database:
            indexes.append(sorted(database.execute(named).fetchall()))
    assert indexes[0] == indexes[1] != []
    same_judgement(lazy, walked_check(repo, tmp_path / "walked"))


@pytest.mark.parametrize("trick", ["an extra file", "a symlink", "a folder", "a missing section"])
def test_a_sections_folder_not_the_one_the_index_names_passes_the_checkpoint_over(
    tmp_path: Path, people: People, trick: str
) -> None:
    # The genuine index and signature, over a folder someone else made: each section it
    # names must be there, a file, and nothing else.
    repo = served(tmp_path, people)
    a_pull_request(repo, people)
    genuine = repo.git("rev-parse", CHECKPOINTS)
    top = entries_of(repo, f"{genuine}^{{tree}}")
    folder = entries_of(repo, top["sections"][2])
    _, _, core = folder["core"]
    if trick == "an extra file":
        folder["extra"] = ("100644", "blob", core)
    elif trick == "a symlink":
        folder["landings"] = ("120000", "blob", folder["landings"][2])
    elif trick == "a folder":
        folder["landings"] = ("040000", "tree", mktree(repo, {"x": folder["landings"]}))
    else:
        del folder["landings"]
    top["sections"] = ("040000", "tree", mktree(repo, folder))
    message = repo.git("log", "-1", "--format=%B", genuine)
    forged = repo.git("commit-tree", mktree(repo, top), "-p", genuine, "-m", message)
    repo.git("update-ref", CHECKPOINTS, forged)

    lazy = check(repo, tmp_path / "ci")
    # Judged as a walk: tests above.
    passed_over_for(lazy, genuine, "its sections are not the files its index names")
