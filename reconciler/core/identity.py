"""Stage 3, authorise: who made a commit, as far as the judging policy lets us trust it.

Called by `authorise` (the actor of every landed edit) and `decide` (approvers
and triggerers). Two steps, kept apart because only the first may be cached:

1. `CommitFacts`: what the commit itself proves, independent of any policy:
   the fingerprint of a good SSH or OpenPGP signature, the committer's and
   author's emails.
2. `resolve`: the actor under one policy. The key fingerprint maps to exactly
   one identity of that policy (never the email, never git's `%GS`); a key the
   policy no longer lists proves nothing, whatever the commit's dates say, nor
   does an OpenPGP key it lists revoked or expired (`Policy.unusable_keys`).
   Where no signature is required, a user may be named by the committer's
   email. A commit that a Git host committed and signed (`identity: author`)
   counts as its author's only where the host wrote that field itself: a true
   merge's author is whoever pressed the button; a squash commit's only where
   teams.yaml says the host vouches for it (a squash then counts as its author's
   edit, never as who merged it: see `rules.landing_style`). A rebase merge, a
   web or API edit keeps an author the pusher wrote, and proves nobody. An unknown or
   unverifiable actor holds nothing; a malformed commit (two signature
   headers, a signature not armored as ssh-keygen writes it) or a copy (a
   signed payload another commit carried first) holds no identity at all, not
   even by email.
"""

from __future__ import annotations

from typing import Final, Literal

from msgspec import Struct

from reconciler.core.model import Policy, email_key

# Signature statuses of commits that hold no identity, whatever their emails say.
NO_IDENTITY: Final = frozenset({"malformed", "copied"})


class CommitFacts(Struct, frozen=True):
    """Policy-independent facts about a commit's authorship."""

    commit: str
    # good, bad, unsigned, unsupported, revoked, malformed, copied, unverified (an OpenPGP
    # signature no certificate at hand could check)
    signature_status: str
    fingerprint: str | None  # set only for a good signature
    signature_reason: str
    committer_email: str
    author_email: str
    parents: int  # 2 for a true merge: what a host's signature vouches for depends on it
    payload: str = ""  # the SHA-256 of its signed payload, when read from the commit


# How an actor no policy knows is named where a name is wanted: never a user's.
UNKNOWN_ACTOR: Final = "an unknown actor"


class Actor(Struct, frozen=True):
    """The identity a commit is attributed to under one policy, and how we know."""

    id: str | None
    kind: Literal["user", "service", "unknown"]
    verified: bool  # from a signature (the user's own or a trusted host's)
    how: str
    # The host that vouched for a single-parent commit's author (a squash merge): the
    # author wrote the change, but the commit does not say who landed it.
    squashed_by: str | None = None

    @property
    def known(self) -> bool:
        return self.id is not None

    @property
    def name(self) -> str:
        return self.id or UNKNOWN_ACTOR


def resolve(facts: CommitFacts, policy: Policy, *, signature_required: bool) -> Actor:
    """The actor of `facts` under `policy`."""
    owner = policy.key_owner.get(facts.fingerprint) if facts.fingerprint else None
    if owner is not None:
        if owner in policy.users:
            return Actor(owner, "user", True, f"signed with {owner}'s key {facts.fingerprint}")
        if owner in policy.service_accounts:
            return Actor(owner, "service", True, f"signed with service account {owner}'s key")
        if owner in policy.hosts:
            return _host_author(facts, policy, owner)
    unsigned = _why_unverified(facts, policy)
    if facts.signature_status in NO_IDENTITY:
        return Actor(None, "unknown", False, f"{unsigned}, which holds no identity")
    if signature_required:
        return Actor(
            None, "unknown", False, f"{unsigned}, and this change needs a verified signature"
        )
    user = policy.email_owner.get(email_key(facts.committer_email))
    if user is None:
        return Actor(
            None,
            "unknown",
            False,
            f"{unsigned}; committer email {facts.committer_email} is no user's",
        )
    return Actor(user, "user", False, f"committer email {facts.committer_email} ({unsigned})")


def can_verify(policy: Policy, user: str, revoked: frozenset[str] = frozenset()) -> bool:
    """Whether `resolve` can attribute some signed commit to `user` as verified: one of
    their own keys, or a host that commits and signs for an author with their email;
    keys whose fingerprints are `revoked` sign nothing."""
    if signs_for_itself(policy, user, revoked):
        return True
    emails = (
        {email_key(email) for email in policy.users[user].emails} if user in policy.users else set()
    )
    return any(policy.email_owner.get(email) == user for email in emails) and any(
        host.emails and signs_for_itself(policy, host_id, revoked)
        for host_id, host in policy.hosts.items()
    )


def signs_for_itself(policy: Policy, identity: str, revoked: frozenset[str] = frozenset()) -> bool:
    """Whether `identity` owns a key (first listed wins) that is not revoked."""
    if not revoked:
        return identity in policy.signers
    return any(
        owner == identity and fingerprint not in revoked
        for fingerprint, owner in policy.key_owner.items()
    )


def _host_author(facts: CommitFacts, policy: Policy, host: str) -> Actor:
    host_emails = {email_key(email) for email in policy.hosts[host].emails}
    # Only a commit the host itself committed speaks for its author: with no
    # emails to tell, the host's key alone would vouch for any committer.
    if email_key(facts.committer_email) not in host_emails:
        return Actor(
            None,
            "unknown",
            False,
            f"signed with host {host}'s key but committed as {facts.committer_email}",
        )
    style = _host_vouches(facts, policy, host)
    if style is None:
        return Actor(
            None,
            "unknown",
            False,
            (
                f"committed and signed by host {host} as a single-parent commit (a squash or "
                f"rebase merge, a web or API edit) whose author {facts.author_email} it "
                "vouches for only with vouches_for_squash_author"
            )
            if facts.parents == 1
            else f"committed and signed by host {host} as a commit with {facts.parents} "
            f"parents, whose author {facts.author_email} it does not vouch for",
        )
    user = policy.email_owner.get(email_key(facts.author_email))
    if user is None:
        return Actor(
            None, "unknown", False, f"{style} by host {host} for {facts.author_email}, no user's"
        )
    squashed_by = host if facts.parents == 1 else None
    return Actor(user, "user", True, f"{style} and signed by host {host} for {user}", squashed_by)


def _host_vouches(facts: CommitFacts, policy: Policy, host: str) -> str | None:
    """What a commit the host committed and signed is, when the host wrote its author
    itself: a true merge (the merger), or a squash where teams.yaml says the host
    vouches for its author. None for the rest, whose author the pusher chose."""
    if facts.parents == 2:
        return "merged"
    if facts.parents == 1 and host in policy.squash_hosts:
        return "squash-merged"
    return None


def _why_unverified(facts: CommitFacts, policy: Policy) -> str:
    if facts.signature_status == "good":
        unusable = policy.unusable_keys.get(facts.fingerprint or "")
        if unusable is not None:
            return f"signature not accepted ({unusable})"
        return f"signed with key {facts.fingerprint}, which teams.yaml does not list"
    if facts.signature_status == "unsigned":
        return "unsigned commit"
    if facts.signature_status == "malformed":
        return f"malformed commit ({facts.signature_reason})"
    if facts.signature_status == "copied":
        return facts.signature_reason
    return f"signature not accepted ({facts.signature_reason})"
