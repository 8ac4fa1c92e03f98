"""Stage 3, authorise: what landed commits say (sign-offs, triggers, retries, records).

Called by `authorise` while it walks each landing (it knows the policy that
judged the landing), and read back by `decide` and `history`. A trailer
counts only where docs/design.md, "Sign-offs and triggers" (a record's:
"Records and runs") says it does, and every one that does not is kept with
the reason it was ignored, so `plan` and `history` can say why:

- `Approve-Plan:`, `Deploy-Plan: plans/<file>@<full blob id>` and `Retry-Run:`
  count in single-parent commits that change no files, descend from the
  trust anchor and whose tree holds that path at that blob; never in a merge
  commit's message (hosts copy pull-request descriptions there); never with
  a short blob id; never under a key spelt in other cases (`deploy-plan:`).
- A record (`Result:` with `Plan:`, `Run:`, ...) counts only when signed by a
  service account's key of the judging policy, in a single-parent commit that
  descends from the trust anchor (never one from an unrelated history; a fork
  shares the anchor, so each repository needs its own service key).
- A record counts once (`record_refusal`): one start and one finish per run id,
  the finish built on its run's start; a heartbeat only while its run holds its
  lease; a late record once, after the run was recorded interrupted.
- Trailers are read as `git log --format=%(trailers)` shows them
  (`read_trailers`, held against git in tests/test_trailers.py, which lists
  where and why the two may differ). A message git log shows otherwise (a NUL
  byte, a declared encoding other than UTF-8), or whose trailers git versions
  read differently, holds none that count.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final, Literal

from msgspec import Struct

from reconciler.core.layout import place

APPROVE: Final = "Approve-Plan"
DEPLOY: Final = "Deploy-Plan"
RETRY: Final = "Retry-Run"
RESULT: Final = "Result"
# Stop-the-line locks: `Lock: <env>` or `Lock: <env>/<app>`, `Unlock: ...`, with why in
# `Lock-Reason:`.
LOCK: Final = "Lock"
UNLOCK: Final = "Unlock"
LOCK_REASON: Final = "Lock-Reason"
HUMAN_TRAILERS: Final = (APPROVE, DEPLOY, RETRY, LOCK, UNLOCK)
RESULTS: Final = ("started", "succeeded", "failed", "interrupted", "refused", "heartbeat", "late")
FINISHED: Final = ("succeeded", "failed", "interrupted")
# A heartbeat extends a running run's lease; a late record says what a run did after main
# recorded it interrupted (its lease passed). Neither ends a run.
HEARTBEAT: Final = "heartbeat"
LATE: Final = "late"

# A full blob id: 40 hex digits with SHA-1, 64 in a SHA-256 repository.
_REF = re.compile(r"^(?P<path>plans/[^@\s]+\.yaml)@(?P<blob>[0-9a-f]{40}(?:[0-9a-f]{24})?)$")
_RUN = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*\.[0-9]+$")

Kind = Literal["approve", "deploy", "retry", "record", "ignored"]


class PlanRef(Struct, frozen=True):
    """A plan version: its path and the full id of its blob."""

    path: str
    blob: str

    def __str__(self) -> str:
        return f"{self.path}@{self.blob}"


def parse_plan_ref(text: str) -> PlanRef | None:
    match = _REF.match(text.strip())
    if match is None or place(match["path"]).kind != "plan":
        return None
    return PlanRef(match["path"], match["blob"])


def is_run_id(text: str) -> bool:
    return bool(_RUN.match(text))


# git's isspace() and isalnum(): ASCII only. Python's own also count \v, \f, \x1c-\x1f,
# \x85, U+2028 and letters of every script, which git reads as ordinary bytes.
_SPACE: Final = " \t\n\r"
_KEY_CHARACTERS: Final = frozenset(string.ascii_letters + string.digits + "-")
_COMMENT: Final = "#"  # core.commentChar's default: the reconciler reads no one's git config
_GIT_PREFIXES: Final = ("Signed-off-by: ", "(cherry picked from commit ")
_CUT_LINE: Final = "\n# ------------------------ >8 ------------------------\n"
NUL_MESSAGE: Final = (
    "the message holds a NUL byte, where git log stops showing it: none of its trailers count"
)

Pairs = tuple[tuple[str, str], ...]


class Trailers(Struct, frozen=True):
    """What a commit message says in trailers, as `git log --format=%(trailers:only,unfold)`
    shows them; `refused` says why none of them count (`seen` still shows them)."""

    seen: Pairs
    refused: str | None = None

    def counted(self) -> dict[str, tuple[str, ...]]:
        """The values of each key, in message order; none where the trailers are refused."""
        return {} if self.refused else self.by_key()

    def by_key(self) -> dict[str, tuple[str, ...]]:
        """The values of each key seen, counted or not, in message order."""
        found: dict[str, tuple[str, ...]] = {}
        for key, text in self.seen:
            found[key] = (*found.get(key, ()), text)
        return found


def reads_as_utf8(encoding: str | None) -> bool:
    """Whether `git log` reads a commit's text as its bytes stand, by its `encoding`
    header (None: it has none): else it converts the text from that encoding first,
    and what it shows (a trailer, an email) is not what the bytes hold."""
    return encoding is None or encoding.lower() in ("utf-8", "utf8")


def read_trailers(message: str, encoding: str = "") -> Trailers:
    """A commit message's trailers as `git log` shows them, and whether they count.

    They count only where every reader agrees: the reconciler, `git log` (which
    stops at a NUL byte and converts from a declared encoding, so text after the
    one or in the other is not what an auditor reads) and git before and after
    2.56 (which stopped reading `key://...` lines as trailers).
    """
    if ":" not in message and "\0" not in message:
        return Trailers(())  # every trailer git prints has a colon: most messages end here
    text = _from_subject(message)
    seen = _git_trailers(text, url_keys=True)
    if "\0" in message:
        return Trailers(seen, NUL_MESSAGE)
    if not reads_as_utf8(encoding or None):
        return Trailers(
            seen,
            f"the commit declares the encoding '{encoding}', which git log converts its "
            "message from: none of its trailers count",
        )
    # Only a `key://` line reads differently: without one, the second reading is the first.
    if "://" in text and seen != _git_trailers(text, url_keys=False):
        return Trailers(
            seen,
            "git before 2.56 reads a 'key://...' line as a trailer and later versions do not, "
            "so they read different trailers here: none of them count",
        )
    return Trailers(seen)


def _from_subject(message: str) -> str:
    """The message from its subject on: %(trailers) skips blank lines before it."""
    start = 0
    while start < len(message):
        end = message.find("\n", start)
        end = len(message) if end < 0 else end + 1
        if message[start:end].strip(_SPACE):
            break
        start = end
    return message[start:]


def _git_trailers(text: str, *, url_keys: bool) -> Pairs:
    """(key, value) of each trailer of `text`, as git 2.39's `trailer_info_get` with
    `--no-divider` finds them and `--unfold` prints them (from 2.56 with `url_keys=False`).

    Ported line by line from trailer.c and commit.c (`ignore_non_trailer`), on
    positions in `text`, so that the quirks stay git's: the last paragraph is
    the block when all its lines are trailers, or a quarter of them are and one
    is git's own (`Signed-off-by: `, `(cherry picked from commit `); lines
    starting with whitespace continue the trailer before them; comments,
    blank lines, a `Conflicts:` list and everything from a scissors line on
    end the message.
    """
    end = _trailer_end(text)
    start = _trailer_start(text, end, url_keys)
    lines: list[str] = []
    folding = False  # whether the last line is a trailer a continuation line joins
    for line in _lines(text[start:end]):
        if folding and line[0] in _SPACE:
            lines[-1] += line
            continue
        lines.append(line)
        folding = _separator(line, url_keys) >= 1
    pairs: list[tuple[str, str]] = []
    for line in lines:
        separator = _separator(line, url_keys)
        if separator >= 1:
            key = line[:separator].strip(_SPACE)
            pairs.append((key, _unfold(line[separator + 1 :].strip(_SPACE))))
    return tuple(pairs)


def _lines(block: str) -> list[str]:
    """`strbuf_split_buf(..., '\n')`: each line with its newline, the last one maybe without."""
    pieces = [piece + "\n" for piece in block.split("\n")]
    pieces[-1] = pieces[-1][:-1]
    return [piece for piece in pieces if piece]


def _next_line(text: str, position: int) -> int:
    found = text.find("\n", position)
    return len(text) if found < 0 else found + 1


def _last_line(text: str, length: int) -> int:
    """The start of the last line of `text[:length]` (a final newline belongs to it), or -1."""
    if length == 0:
        return -1
    return text.rfind("\n", 0, max(length - 1, 0)) + 1


def _blank(text: str, position: int) -> bool:
    end = _next_line(text, position)
    return not text[position:end].strip(_SPACE)


def _separator(line: str, url_keys: bool) -> int:
    """`find_separator` with git's default separators (`:` alone): its position, or -1."""
    spaced = False
    for position, character in enumerate(line):
        if character == ":":
            if not url_keys and not spaced and line.startswith("//", position + 1):
                return -1
            return position
        if not spaced and character in _KEY_CHARACTERS:
            continue
        if position and character in " \t":
            spaced = True
            continue
        break
    return -1


def _trailer_end(text: str) -> int:
    """`ignore_non_trailer`: where the trailing comments, blank lines and conflicts start."""
    if text.startswith(_CUT_LINE[1:]):
        cutoff = 0
    else:
        cut = text.find(_CUT_LINE)
        cutoff = len(text) if cut < 0 else cut + 1
    trailing = 0  # 0 for none, as in git (a comment on the first line starts no run)
    conflicts = False
    line = 0
    while line < cutoff:
        following = _next_line(text, line)
        if text[line] in (_COMMENT, "\n"):
            trailing = trailing or line
        elif text.startswith("Conflicts:\n", line):
            conflicts = True
            trailing = trailing or line
        elif conflicts and text[line] == "\t":
            pass
        elif trailing:
            trailing = 0
            conflicts = False
        line = following
    return trailing or cutoff


def _trailer_start(text: str, length: int, url_keys: bool) -> int:
    """`find_trailer_start`: where the trailer block of `text[:length]` starts, or `length`."""
    title = 0
    while title < length:
        if text[title] != _COMMENT and _blank(text, title):
            break
        title = _next_line(text, title)
    only_spaces = True
    recognised = False
    trailer_lines = non_trailer_lines = continuations = 0
    line = _last_line(text, length)
    while line >= title and line >= 0:
        if text.startswith(_COMMENT, line):
            non_trailer_lines += continuations
            continuations = 0
        elif _blank(text, line):
            if not only_spaces:
                non_trailer_lines += continuations
                if recognised and trailer_lines * 3 >= non_trailer_lines:
                    return _next_line(text, line)
                if trailer_lines and not non_trailer_lines:
                    return _next_line(text, line)
                return length
        else:
            only_spaces = False
            if text.startswith(_GIT_PREFIXES, line):
                trailer_lines += 1
                continuations = 0
                recognised = True
            elif _separator(text[line : _next_line(text, line)], url_keys) >= 1:
                trailer_lines += 1
                continuations = 0
            elif text[line] in _SPACE:
                continuations += 1
            else:
                non_trailer_lines += 1 + continuations
                continuations = 0
        line = _last_line(text, line)
    return length


def _unfold(value: str) -> str:
    """Each line break and the whitespace after it become one space (`unfold_value`)."""
    out: list[str] = []
    position = 0
    while position < len(value):
        character = value[position]
        position += 1
        if character == "\n":
            while position < len(value) and value[position] in _SPACE:
                position += 1
            out.append(" ")
        else:
            out.append(character)
    return "".join(out).strip(_SPACE)


def miscased_keys(trailers: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """Keys that spell an approval, trigger or retry in other letter cases: (written, meant).

    Only the exact keys count (a history means what it meant when it landed), but a
    `deploy-plan:` typed by hand should not vanish without a word.
    """
    meant = {key.casefold(): key for key in HUMAN_TRAILERS}
    return tuple(
        (key, meant[key.casefold()])
        for key in trailers
        if key.casefold() in meant and key not in HUMAN_TRAILERS
    )


class Signoff(Struct, frozen=True):
    """An approval, a trigger or a retry that counts, with who made it and what they held."""

    kind: Literal["approve", "deploy", "retry"]
    commit: str
    seq: int  # the landing that brought it to main
    plan: PlanRef | None  # approve and deploy
    run: str | None  # retry
    actor: str | None
    how: str
    verified: bool
    held: bool  # the permission, under the policy that judged its landing
    reasons: tuple[str, ...]
    committed_at: datetime


class Lock(Struct, frozen=True):
    """A lock or unlock of an environment (`application` None) or of one application in it,
    judged: it counts when `held` (`trailer_rules`)."""

    kind: Literal["lock", "unlock"]
    commit: str
    seq: int
    environment: str
    application: str | None
    why: str
    actor: str | None
    how: str
    held: bool  # signed by a plan.deploy holder on the environment or a settings user
    reasons: tuple[str, ...]
    committed_at: datetime

    @property
    def scope(self) -> str:
        """'production', or 'production/ecommerce'."""
        return (
            self.environment
            if self.application is None
            else (f"{self.environment}/{self.application}")
        )


class Record(Struct, frozen=True):
    """A record the reconciler signed: a run started, finished, or refusals of a pass."""

    commit: str
    seq: int
    result: str
    run: str | None
    plan: PlanRef | None
    environment: str | None
    instance: str | None
    lease_until: datetime | None
    triggered_by: str | None
    approved_by: tuple[str, ...]
    refused: tuple[PlanRef, ...]
    committed_at: datetime
    retry_of: str | None = None
    # The applications it says were checked and passed, "<app> <version>" (`verified_steps`).
    verified: tuple[str, ...] = ()


def verified_steps(trailers: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """What a finish record says passed its checks, "<app> <version>" each: its steps
    (`Verified: 1 ecommerce 1.4.0`) and what its rollback put back and verified
    (`Rolled-Back: ecommerce 1.4.0 (verified)`)."""
    steps = (value.split(" ", 1)[-1] for value in trailers.get("Verified", ()))
    suffix = " (verified)"
    rolled = (
        value.removesuffix(suffix)
        for value in trailers.get("Rolled-Back", ())
        if value.endswith(suffix)
    )
    return tuple(dict.fromkeys(item for item in (*steps, *rolled) if item.count(" ") == 1))


def parse_record(
    commit: str, seq: int, trailers: Mapping[str, tuple[str, ...]], committed_at: datetime
) -> Record | str:
    """A record from its trailers, or why the trailers do not make one."""
    result = trailers.get(RESULT, ("",))[0]
    if result not in RESULTS:
        return f"unknown Result '{result}'"

    def one(key: str) -> str | None:
        values = trailers.get(key, ())
        return values[0] if values else None

    plan_text = one("Plan")
    plan = parse_plan_ref(plan_text) if plan_text else None
    run = one("Run")
    if result != "refused" and (plan is None or run is None or not is_run_id(run)):
        return "a run record needs Plan: <path>@<full blob id> and Run: <plan>.<n>"
    lease_text = one("Lease-Until")
    try:
        lease = datetime.fromisoformat(lease_text) if lease_text else None
    except ValueError:
        return f"Lease-Until '{lease_text}' is not an ISO 8601 time"
    approved = one("Approved-By")
    return Record(
        commit=commit,
        seq=seq,
        result=result,
        run=run,
        plan=plan,
        environment=one("Environment"),
        instance=one("Reconciler"),
        lease_until=lease,
        triggered_by=one("Triggered-By"),
        approved_by=tuple(name.strip() for name in approved.split(",")) if approved else (),
        refused=tuple(
            ref
            for ref in (parse_plan_ref(text) for text in trailers.get("Refused-Plan", ()))
            if ref
        ),
        committed_at=committed_at,
        retry_of=one("Retry-Of"),
        verified=verified_steps(trailers) if result in (*FINISHED, LATE) else (),
    )


def record_refusal(
    record: Record, earlier: Sequence[Record], built_on: Callable[[str], bool]
) -> str | None:
    """Why a run's record does not count, or None: a record counts once.

    A run id has one start and one finish. A start counts for a run no record
    counted for yet; a finish for a run that started and has not ended, with
    the start's plan and environment, in a commit built on the start record
    (`built_on(commit)`: the service's own continuation of the run). So a
    record copied back into the history neither opens a run that ended (for
    the service to mark it interrupted, and a retry to deploy it again) nor
    ends one a second time (and so never moves `deployments/`).

    A heartbeat extends the lease of a run that has not ended, by the instance
    that started it, made before the lease it extends passed: past it, any
    reconciler may have marked the run interrupted, so nothing revives it. A late
    record (`late_refusal`) comes once, after the run was recorded interrupted.

    `earlier`: the records of the same run that counted, in landing order.
    """
    if record.run is None or record.result not in ("started", HEARTBEAT, LATE, *FINISHED):
        return None
    start = next((item for item in earlier if item.result == "started"), None)
    end = next((item for item in earlier if item.result in FINISHED), None)
    if record.result == LATE:
        return late_refusal(record, earlier, start, end, built_on)
    if end is not None:
        return f"the run already ended in {end.commit[:12]}"
    if start is not None and record.result == "started":
        return f"the run already started in {start.commit[:12]}"
    if start is None:
        return None if record.result == "started" else "no start record of the run counted"
    why = _continues(record, start, built_on)
    if why is not None or record.result != HEARTBEAT:
        return why
    return heartbeat_refusal(record, earlier, start)


def _continues(record: Record, start: Record, built_on: Callable[[str], bool]) -> str | None:
    """Why `record` is not the service's continuation of the run `start` began, if not."""
    if (record.plan, record.environment) != (start.plan, start.environment):
        return (
            f"the run started for {start.plan} in {start.environment}, "
            f"not {record.plan} in {record.environment}"
        )
    if not built_on(start.commit):
        return f"it is not built on the run's start record {start.commit[:12]}"
    return None


def heartbeat_refusal(record: Record, earlier: Sequence[Record], start: Record) -> str | None:
    """Why a heartbeat of a started, unfinished run does not extend its lease, or None."""
    if record.instance != start.instance:
        return f"the run is {start.instance}'s, not {record.instance}'s: only it extends the lease"
    leases = [item.lease_until for item in earlier if item.result in ("started", HEARTBEAT)]
    lease = leases[-1] if leases else None
    if record.lease_until is None:
        return "a heartbeat needs Lease-Until"
    if lease is not None and record.committed_at > lease:
        return (
            f"it was made at {record.committed_at.isoformat()}, after the run's lease passed "
            f"at {lease.isoformat()}"
        )
    return None


def late_refusal(
    record: Record,
    earlier: Sequence[Record],
    start: Record | None,
    end: Record | None,
    built_on: Callable[[str], bool],
) -> str | None:
    """Why a late record does not count, or None: once per run, after its interrupted record,
    built on its start."""
    if start is None:
        return "no start record of the run counted"
    if end is None or end.result != "interrupted":
        return "a late record follows only a run recorded interrupted"
    late = next((item for item in earlier if item.result == LATE), None)
    if late is not None:
        return f"the run's late record is {late.commit[:12]}"
    return _continues(record, start, built_on)
