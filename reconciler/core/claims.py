"""Stage 3, authorise: the claims a landing's commit messages make, its sign-offs,
records and ignored trailers as `trailer_rules` reads them, and the runs its records
end (or why they do not count), with the landing answering the rules' questions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from msgspec import Struct

from reconciler.core.events import Record, read_trailers
from reconciler.core.fields import value
from reconciler.core.landed import Content, LandedCommit, Landing, blob_and_mode
from reconciler.core.model import Policy
from reconciler.core.trailer_rules import Carrier, Found, read_commit


@dataclass(slots=True)
class Claims:
    """What one landing's trailers claim, in the order found."""

    policy: Policy
    landing: Landing
    content: Content
    anchor: str  # the trust anchor
    commits: Mapping[str, LandedCommit]  # the landing's, by id
    found: list[Found] = field(default_factory=list)
    # The runs its records end (commit -> the record, as it counted), and why the others'
    # records do not count: deployments/ moves only with a finish record that counts.
    finishes: dict[str, Record] = field(default_factory=dict)
    void: dict[str, str] = field(default_factory=dict)

    def read(self, landed: LandedCommit) -> None:
        """Read the trailers of `landed`: what they claim, and the run it ends or voids."""
        commit = landed.id
        trailers = read_trailers(*self.content.message(commit))
        if not trailers.seen and trailers.refused is None:
            return  # most commits: no trailer, so nothing that counts or is ignored
        carrier = Carrier(
            commit=commit,
            seq=self.landing.seq,
            parents=len(landed.parents),
            lands=commit == self.landing.commit,
            changes_files=bool(landed.changes),
            trailers=trailers,
            facts=self.content.facts(commit),
            committed_at=self.content.committed_at(commit),
        )
        trailed = read_commit(carrier, self.policy, _Asked(self, landed))
        self.found.extend(trailed.found)
        if trailed.finish is not None:
            self.finishes[commit] = trailed.finish
        if trailed.void is not None:
            self.void[commit] = trailed.void

    def descends_from_anchor(self, landed: LandedCommit) -> bool:
        """Whether a single-parent landed commit descends from the trust anchor; a commit
        on main's first-parent chain (every record the reconciler publishes) without asking,
        as its parent does."""
        first_parent = self.landing.first_parent
        if first_parent is not None and landed.parents[0] == first_parent:
            return True
        return self.content.is_ancestor(self.anchor, landed.id)

    def built_on(self, landed: LandedCommit, ancestor: str) -> bool:
        """Whether a commit that landed (`ancestor`: earlier, or in this landing) is an
        ancestor of a landed commit. Without asking for one whose parent is main's
        previous commit (every record the reconciler publishes): everything an earlier
        landing brought in is an ancestor of that commit."""
        if ancestor not in self.commits:
            first_parent = self.landing.first_parent
            if first_parent is not None and landed.parents[:1] == (first_parent,):
                return True
            return self.content.is_ancestor(ancestor, landed.id)
        # Inside the landing, every commit between the two is in it too.
        stack, seen = [landed.id], {landed.id}
        while stack:
            current = stack.pop()
            if current == ancestor:
                return True
            for parent in self.commits[current].parents:
                if parent in self.commits and parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return False

    def records_of(self, run: str) -> list[Record]:
        """The records of `run` that counted: in earlier landings, then in this one."""
        earlier = list(self.content.records_of(run))
        return earlier + [
            item for item in self.found if isinstance(item, Record) and item.run == run
        ]


class _Asked(Struct, frozen=True):
    """The trailer rules' questions about one landed commit, answered by the landing."""

    claims: Claims
    landed: LandedCommit

    def blob(self, path: str) -> str | None:
        claims = self.claims
        return blob_and_mode(claims.commits, claims.content, self.landed.id, path)[0]

    def target(self, path: str, blob: str) -> object:
        return value(self.claims.content.fields(path, blob, ""), "target")

    def descends_from_anchor(self) -> bool:
        return self.claims.descends_from_anchor(self.landed)

    def built_on(self, ancestor: str) -> bool:
        return self.claims.built_on(self.landed, ancestor)

    def records_of(self, run: str) -> Sequence[Record]:
        return self.claims.records_of(run)
