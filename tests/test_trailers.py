"""The reconciler reads a commit's trailers as git 2.39 shows them, held against git itself.

`events.read_trailers` is the one reader of trailers. Generated messages (body
paragraphs, trailer-ish lines under the reconciler's own keys and others,
continuation lines, comments, blank lines, CR, NUL, Unicode) are written into
real commit objects, and git's own readings are the oracle: `git log
--format=%(trailers:only,unfold)`, what an auditor reads, and `git
interpret-trailers --parse --no-divider` on the message from its subject on.
Git runs without any configuration (see conftest), as the reconciler reads
trailers: with no one's `trailer.*` or `core.commentChar` settings.

Allowed differences, each on purpose:

- A message with a NUL byte: git reads it up to the NUL; the reconciler counts
  none of its trailers (an auditor's `git log` never shows what follows it).
- A commit that declares an encoding other than UTF-8: `git log` converts the
  message from it (an EBCDIC or UTF-16 message shows as something else
  entirely); none of its trailers count.
- A trailer block git 2.56 reads otherwise (it stopped reading `key://...`
  lines as trailers): none of its trailers count, whichever git the auditor has.
- `git interpret-trailers` without `--no-divider` ends the message at a `---`
  line (it reads patch emails); `git log`'s `%(trailers)` does not, nor do we.
- `git interpret-trailers` reads a message from its first line; `git log`, and
  we, from its subject on (blank lines before it are skipped).
- Bytes that are not UTF-8 become U+FFFD before we read them; every rule looks
  at ASCII only (git's `isspace` and `isalnum`), so the reading is the same.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.core.events import NUL_MESSAGE, read_trailers

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HEADERS = (
    "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
    "author A <a@example.com> 1700000000 +0000\n"
    "committer A <a@example.com> 1700000000 +0000\n"
)
BLOB = "0123456789abcdef0123456789abcdef01234567"


def git(repo: Path, *args: str, data: bytes | None = None) -> bytes:
    completed = subprocess.run(
        ["git", *args], cwd=repo, input=data, capture_output=True, check=False
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    return completed.stdout


def pairs(output: bytes) -> tuple[tuple[str, str], ...]:
    """`key: value` lines as git prints them (values are unfolded: no line breaks)."""
    found = []
    for line in output.decode("utf-8", "replace").split("\n"):
        if line:
            key, _, value = line.partition(": ")
            found.append((key, value))
    return tuple(found)


def commit_object(repo: Path, message: str, headers: str = HEADERS) -> str:
    raw = (headers + "\n").encode() + message.encode("utf-8", "surrogatepass")
    out = git(repo, "hash-object", "-t", "commit", "-w", "--stdin", "--literally", data=raw)
    return out.decode().strip()


def git_log_trailers(repo: Path, commit: str) -> tuple[tuple[str, str], ...]:
    return pairs(git(repo, "show", "-s", "--format=%(trailers:only,unfold)", commit))


def interpret_trailers(repo: Path, message: str) -> tuple[tuple[str, str], ...]:
    from_subject = re.sub(r"\A(?:[ \t\r]*\n)+", "", message)
    return pairs(
        git(repo, "interpret-trailers", "--parse", "--no-divider", data=from_subject.encode())
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trailers")
    git(path, "init", "-q")
    return path


# -- generated messages -------------------------------------------------------------------------

KEYS = (
    "Deploy-Plan",
    "Approve-Plan",
    "Retry-Run",
    "Plan",
    "Run",
    "Result",
    "Environment",
    "Triggered-By",
    "deploy-plan",
    "DEPLOY-PLAN",
    "Signed-off-by",
    "Co-authored-by",
    "https",
    "Bug",
    "X",
    "Déploy-Plan",
    "Deploy_Plan",
    "Deploy Plan",
    "-",
    "",
)
SEPARATORS = (": ", ":", " : ", "\t: ", "  :", ":  ", "://", ": //", " ://", " = ", "# ")
TEXT = st.text(
    alphabet=st.sampled_from(
        [*"abcXYZ019 :-/@.#()\t\r", "é", "€", "\u0085", "\u2028", "\x0b", "\x0c", "\x1c"]
    ),
    max_size=12,
)
VALUE = st.one_of(TEXT, st.sampled_from([f"plans/a.yaml@{BLOB}", "a.1", "started", ""]))
TRAILER = st.builds(
    lambda key, separator, value: f"{key}{separator}{value}",
    st.sampled_from(KEYS),
    st.sampled_from(SEPARATORS),
    VALUE,
)
OTHER = st.one_of(
    st.just("Signed-off-by: Root Admin <root@example.com>"),
    st.just(f"(cherry picked from commit {BLOB})"),
    st.builds(lambda lead, text: lead + text, st.sampled_from([" ", "\t", "  ", "\r"]), TEXT),
    TEXT,
    st.sampled_from(
        [
            "",
            " ",
            "\t",
            "\r",
            "# a comment",
            "#",
            "---",
            "--- a/file",
            "Conflicts:",
            "\tplans/a.yaml",
            "# ------------------------ >8 ------------------------",
            "Body text: with a colon later",
            "https://example.com/ci/1",
        ]
    ),
)
LINE = st.one_of(TRAILER, TRAILER, OTHER)


@st.composite
def messages(draw: st.DrawFn) -> str:
    """A title, body paragraphs and a last paragraph that is mostly trailer-ish."""
    paragraphs = [[draw(TEXT)]]
    for _ in range(draw(st.integers(0, 2))):
        paragraphs.append(draw(st.lists(OTHER, min_size=1, max_size=3)))
    if draw(st.booleans()):
        paragraphs.append(draw(st.lists(LINE, min_size=1, max_size=6)))
    else:  # near the quarter rule: one line of git's own, trailers, and plain lines
        own = draw(
            st.sampled_from(
                ["Signed-off-by: R <r@example.com>", f"(cherry picked from commit {BLOB})"]
            )
        )
        trailers = draw(st.lists(TRAILER, max_size=3))
        plain = draw(st.lists(st.sampled_from(["plain", "more text", " folded"]), max_size=9))
        paragraphs.append(draw(st.permutations([own, *trailers, *plain])))
    lines = [line for paragraph in paragraphs for line in [*paragraph, ""]][:-1]
    if draw(st.booleans()):
        lines = draw(st.lists(LINE, max_size=3)) + lines  # leading junk or blank lines
    end = draw(st.sampled_from(["\n", "", "\n\n", "\r\n", "\n# comment\n"]))
    newline = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    message = newline.join(lines) + end
    if draw(st.sampled_from([False, False, False, False, False, True])):
        at = draw(st.integers(0, len(message)))
        message = message[:at] + "\0" + message[at:]
    return message


# -- the property -------------------------------------------------------------------------------


@PROPERTY
@given(message=messages())
@example(message=f"Deploy\n\nDeploy-Plan: plans/a.yaml@{BLOB}\n")
@example(message=f"Deploy\n\nbody\0\n\nDeploy-Plan: plans/a.yaml@{BLOB}\n")
@example(message=f"\n\nDeploy-Plan: plans/a.yaml@{BLOB}\n")
@example(message=f"Deploy\n\nDeploy-Plan: plans/a.yaml@{BLOB}\nhttps://ci.example.com/1\n")
@example(message="T\n\nSigned-off-by: r\nx\ny\nz\nPlan: p\n")
@example(message="T\n\nSigned-off-by: r\nw\nx\ny\nz\n")
@example(message="T\n\nKey: a\n  folded\n\tagain\r\n# c\n\n")
@example(message="T\n\nA: 1\r\n# ------------------------ >8 ------------------------\r\nB: 2\n")
def test_trailers_are_read_as_git_log_shows_them(repo: Path, message: str) -> None:
    shown = message.split("\0", maxsplit=1)[0]  # what git reads of it
    commit = commit_object(repo, message)
    seen_by_git = git_log_trailers(repo, commit)
    assert interpret_trailers(repo, shown) == seen_by_git
    read = read_trailers(message)
    if "\0" in message:
        assert read.refused == NUL_MESSAGE
        assert read_trailers(shown).seen == seen_by_git
    elif read.refused is not None:
        assert "2.56" in read.refused
        assert read.seen == seen_by_git
        assert any(key + "://" in message for key, _ in read.seen)
    else:
        assert read.seen == seen_by_git
    grouped: dict[str, tuple[str, ...]] = {}
    for key, value in read.seen:
        grouped[key] = (*grouped.get(key, ()), value)
    assert read.counted() == ({} if read.refused else grouped)


# -- what the reconciler keeps from a commit git log reads otherwise ----------------------------


def test_a_declared_encoding_other_than_utf8_holds_no_trailers(repo: Path) -> None:
    message = f"Deploy\n\nDeploy-Plan: plans/a.yaml@{BLOB}\n"
    commit = commit_object(repo, message, HEADERS + "encoding IBM037\n")
    assert git_log_trailers(repo, commit) == ()  # git log shows EBCDIC, not this text
    read = read_trailers(message, "IBM037")
    assert read.counted() == {}
    assert read.refused is not None
    assert "IBM037" in read.refused
    assert read_trailers(message, "utf8").counted() == {"Deploy-Plan": (f"plans/a.yaml@{BLOB}",)}


def test_a_record_reads_the_same_as_in_git_log(repo: Path) -> None:
    """A finish record as the reconciler writes it."""
    message = (
        "Finish 2026-11-qa-release in quality-assurance: succeeded\n\n"
        "deployed ecommerce 1.4.0\n\n"
        f"Plan: plans/2026-11-qa-release.yaml@{BLOB}\n"
        "Environment: quality-assurance\nRun: 2026-11-qa-release.1\nResult: succeeded\n"
    )
    assert read_trailers(message).counted() == {
        "Plan": (f"plans/2026-11-qa-release.yaml@{BLOB}",),
        "Environment": ("quality-assurance",),
        "Run": ("2026-11-qa-release.1",),
        "Result": ("succeeded",),
    }
    assert read_trailers(message).seen == git_log_trailers(repo, commit_object(repo, message))
